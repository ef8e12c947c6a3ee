//! libpq connection options our client honours instead of ignoring, each checked against a
//! real PostgreSQL 15 primary and its streaming standby with `barman-receive-wal`
//! (`--create-slot` shows which server a connection landed on): several hosts tried in
//! order, `target_session_attrs`, `requirepeer` on the Unix socket, service files, and the
//! options this client refuses as a libpq without GSSAPI would.

use std::fs;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use barman_integration::cmd::execute;
use barman_integration::{cargo_bin, free_port, skip_unless, Outcome, PgCluster, PgOptions, Scratch};

fn receive_wal(args: &[&str], env: &[(&str, &str)]) -> Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(cargo_bin("barman-receive-wal")?);
    cmd.arg("-D").arg(dir.path()).args(args).env("HOME", dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    execute(&mut cmd, None, Duration::from_mins(1))
}

fn slots(pg: &PgCluster) -> Result<String> {
    pg.psql("select coalesce(string_agg(slot_name, ',' order by slot_name), '') from pg_replication_slots")
}

#[test]
fn hosts_and_session_attrs_as_libpq() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("conninfo")?;
    let primary = PgCluster::start(&scratch, PgOptions::default())?;
    let standby = PgCluster::from_basebackup(&scratch, &primary, true, PgOptions::default())?;
    let (p, s, dead) = (primary.port(), standby.port(), free_port()?);
    let two = |first: u16, second: u16, attrs: &str| {
        format!("host=127.0.0.1,127.0.0.1 port={first},{second} user=postgres target_session_attrs={attrs}")
    };
    // (connection string, slot, where it must land)
    let cases = [
        (two(s, p, "read-write"), "rw", "primary"),
        (two(s, p, "primary"), "prim", "primary"),
        (two(p, s, "standby"), "stby", "standby"),
        (two(p, s, "read-only"), "ro", "standby"),
        (two(p, s, "prefer-standby"), "pref", "standby"),
        (two(dead, p, "any"), "failover", "primary"),
        (two(s, p, "any"), "first", "standby"),
    ];
    for (conninfo, slot, expected) in &cases {
        let out = receive_wal(&["--create-slot", "-S", slot, "-d", conninfo], &[])?;
        ensure!(out.code() == Some(0), "{conninfo}: {}", out.stderr_str());
        let (on_primary, on_standby) = (slots(&primary)?, slots(&standby)?);
        let landed = if on_primary.split(',').any(|n| n == *slot) {
            "primary"
        } else if on_standby.split(',').any(|n| n == *slot) {
            "standby"
        } else {
            "nowhere"
        };
        ensure!(landed == *expected, "{conninfo}: slot {slot} on {landed}, expected {expected}");
    }
    // prefer-standby with no standby up takes the primary; primary alone on a standby fails.
    let out = receive_wal(&["--create-slot", "-S", "pref2", "-d", &two(dead, p, "prefer-standby")], &[])?;
    ensure!(
        out.code() == Some(0) && slots(&primary)?.contains("pref2"),
        "prefer-standby fallback: {}",
        out.stderr_str()
    );
    let only_standby = format!("host=127.0.0.1 port={s} user=postgres target_session_attrs=primary");
    let out = receive_wal(&["--identify", "-d", &only_standby], &[])?;
    ensure!(
        out.code() != Some(0) && out.stderr_str().contains("server is in hot standby mode"),
        "primary on a standby: {}{}",
        out.stdout_str(),
        out.stderr_str()
    );
    Ok(())
}

#[test]
fn requirepeer_service_files_and_refusals() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("conninfo-peer")?;
    let pg = PgCluster::start(&scratch, PgOptions::default())?;
    let system_id = pg.system_identifier()?.to_string();
    let socket = format!("host={} port={} user=postgres", pg.socket_dir().display(), pg.port());

    let out = receive_wal(&["--identify", "-d", &format!("{socket} requirepeer=postgres")], &[])?;
    ensure!(
        out.code() == Some(0) && out.stdout_str().contains(&system_id),
        "requirepeer=postgres: {}",
        out.stderr_str()
    );
    let out = receive_wal(&["--identify", "-d", &format!("{socket} requirepeer=nobody")], &[])?;
    ensure!(
        out.code() != Some(0)
            && out.stderr_str().contains("requirepeer specifies \"nobody\", but actual peer user name is \"postgres\""),
        "requirepeer=nobody: {}",
        out.stderr_str()
    );

    // A service file fills what the string leaves unset; the string wins over it.
    let services = scratch.write(
        "services.conf",
        format!("[main]\nhost=127.0.0.1\nport={}\nuser=postgres\n[wrongport]\nhost=127.0.0.1\nport=1\n", pg.port()),
    )?;
    let file = services.display().to_string();
    let env = [("PGSERVICEFILE", file.as_str())];
    let out = receive_wal(&["--identify", "-d", "service=main"], &env)?;
    ensure!(out.code() == Some(0) && out.stdout_str().contains(&system_id), "service=main: {}", out.stderr_str());
    let out = receive_wal(&["--identify", "-d", &format!("service=wrongport port={} user=postgres", pg.port())], &env)?;
    ensure!(out.code() == Some(0), "an explicit port beats the service's: {}", out.stderr_str());
    let out = receive_wal(&["--identify", "-d", "service=missing"], &env)?;
    ensure!(
        out.code() != Some(0) && out.stderr_str().contains("definition of service \"missing\" not found"),
        "missing service: {}",
        out.stderr_str()
    );

    // What this client cannot do is refused, as a libpq without GSSAPI refuses it.
    for (extra, msg) in [
        ("gssencmode=require", "GSSAPI support is not compiled in"),
        ("sslpassword=secret", "sslpassword is not supported"),
        ("target_session_attrs=sometimes", "invalid target_session_attrs value"),
        ("channel_binding=always", "invalid channel_binding value"),
        ("host=a,b,c port=1,2", "could not match 2 port numbers to 3 hosts"),
    ] {
        let out = receive_wal(&["--identify", "-d", &format!("{socket} {extra}")], &[])?;
        ensure!(out.code() != Some(0) && out.stderr_str().contains(msg), "{extra}: {}", out.stderr_str());
        ensure!(!out.stderr_str().contains("secret"), "a refused sslpassword is echoed: {}", out.stderr_str());
    }
    fs::remove_file(services)?;
    Ok(())
}
