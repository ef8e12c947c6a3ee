//! Issue 20, least privilege: Barman 3.20.1's documented non-superuser set-up
//! (`docs/user_guide/pre_requisites.rst`): a NOSUPERUSER `barman` login that is a member of
//! `barman_role`, which holds exactly the grants the manual lists (EXECUTE on
//! `pg_backup_start(text, boolean)`, `pg_backup_stop(boolean)`, `pg_switch_wal()`,
//! `pg_create_restore_point(text)`; the roles `pg_read_all_settings`, `pg_read_all_stats`,
//! and `pg_checkpoint` for `switch-wal --force`), and a `streaming_barman` login with
//! REPLICATION only. With it `barman check` is all OK, backups with the postgres and the rsync
//! method are DONE, receive-wal streams, `switch-wal --force --archive` and
//! `replication-status` work. Then each grant in turn is revoked: our `barman check` fails
//! the same check lines as real Barman 3.20.1 on the same configuration, and its hint names
//! the missing grant (Barman's only says "see documentation").

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_integration::cmd::{as_user, execute};
use barman_integration::pg::{PG_BIN, SYSTEM_PATH};
use barman_integration::{
    cargo_bin, skip_unless, wait_until, BarmanHome, PgCluster, PgOptions, RealBarman, Scratch, Sshd, SshdOptions,
};

/// The manual's grants, as `GRANT <object> TO barman_role` / `REVOKE <object> FROM ...`,
/// with the words our check's hint must name when it is missing.
const GRANTS: &[(&str, &str)] = &[
    ("EXECUTE ON FUNCTION pg_backup_start(text, boolean)", "EXECUTE on pg_backup_start(text,bool)"),
    ("EXECUTE ON FUNCTION pg_backup_stop(boolean)", "EXECUTE on pg_backup_stop(bool)"),
    ("EXECUTE ON FUNCTION pg_switch_wal()", "EXECUTE on pg_switch_wal()"),
    ("EXECUTE ON FUNCTION pg_create_restore_point(text)", "EXECUTE on pg_create_restore_point(text)"),
    ("pg_read_all_settings", "role pg_read_all_settings"),
    ("pg_read_all_stats", "role pg_read_all_stats"),
];

const SSH_POSTGRES: &str = "ssh postgres@127.0.0.1";

/// Fields drop in order: the cluster stops before the sshd it archives through.
struct Setup {
    pg: PgCluster,
    barman: BarmanHome,
    sshd: Sshd,
    _scratch: Scratch,
}

/// Roles as the manual creates them; `barman` inherits `barman_role`'s grants.
fn create_roles(pg: &PgCluster) -> Result<()> {
    let mut sql = String::from("CREATE ROLE barman_role NOLOGIN;\n");
    for (object, _) in GRANTS {
        sql.push_str(&format!("GRANT {object} TO barman_role;\n"));
    }
    sql.push_str(
        "GRANT pg_checkpoint TO barman_role;\n\
         CREATE ROLE barman LOGIN NOSUPERUSER NOREPLICATION IN ROLE barman_role;\n\
         CREATE ROLE streaming_barman LOGIN NOSUPERUSER REPLICATION;\n",
    );
    pg.psql(&sql)?;
    Ok(())
}

/// Server `pg` (postgres method, archive_command and a streaming slot) and server `pgr`
/// (rsync method over ssh as `postgres`, streaming slot only), both as `barman` /
/// `streaming_barman`.
fn setup() -> Result<Setup> {
    let scratch = Scratch::new("least privilege")?;
    let sshd = Sshd::start(&scratch, SshdOptions::default())?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    barman.add_path_prefix(sshd.ssh_wrapper_dir_for("barman")?);
    let archive_command = barman_integration::fixtures::archive_line(&barman, &sshd)?;
    let opts = PgOptions::default().archive_command(archive_command).path_prefix(sshd.ssh_wrapper_dir_for("postgres")?);
    let pg = PgCluster::start(&scratch, opts)?;
    create_roles(&pg)?;
    let sock = format!("host={} port={}", pg.socket_dir().display(), pg.port());
    let client_bin = pg.version().client_bin().display().to_string();
    let common = |slot: &str| {
        vec![
            format!("conninfo = {sock} user=barman dbname=postgres"),
            format!("streaming_conninfo = {sock} user=streaming_barman"),
            format!("path_prefix = {client_bin}"),
            "streaming_archiver = on".into(),
            format!("slot_name = {slot}"),
            "create_slot = auto".into(),
        ]
    };
    let mut pg_lines = common("barman");
    pg_lines.extend(["backup_method = postgres".into(), "archiver = on".into()]);
    let mut rsync_lines = common("barman_rsync");
    rsync_lines.extend([
        "backup_method = rsync".into(),
        "archiver = off".into(),
        format!("ssh_command = {SSH_POSTGRES}"),
    ]);
    barman.add_raw_server("pg", &pg_lines.iter().map(String::as_str).collect::<Vec<_>>())?;
    barman.add_raw_server("pgr", &rsync_lines.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(Setup { pg, barman, sshd, _scratch: scratch })
}

/// Real Barman 3.20.1 on the same configuration; returns (exit code, stdout).
fn real_barman(s: &Setup, real: &RealBarman, args: &[&str]) -> Result<(Option<i32>, String)> {
    let mut cmd = Command::new(real.bin("barman"));
    as_user(&mut cmd, s.barman.user());
    let path = format!(
        "{}:{}:{PG_BIN}:{SYSTEM_PATH}",
        s.sshd.ssh_wrapper_dir_for("barman")?.display(),
        real.bin_dir().display()
    );
    cmd.env("PATH", path).arg("-c").arg(s.barman.config_path()).args(args);
    let o = execute(&mut cmd, None, Duration::from_mins(2))?;
    Ok((o.code(), o.stdout_str()))
}

/// Ours: (exit code, stdout).
fn ours(s: &Setup, args: &[&str]) -> Result<(Option<i32>, String)> {
    let o = s.barman.outcome(args)?;
    Ok((o.code(), format!("{}{}", o.stdout_str(), o.stderr_str())))
}

/// The names of the check lines that say FAILED.
fn failed_checks(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.contains(": FAILED"))
        .filter_map(|l| l.trim().split_once(": FAILED").map(|(k, _)| k.to_owned()))
        .collect()
}

/// `barman cron` until both slots stream.
fn wait_streaming(s: &Setup) -> Result<()> {
    wait_until(Duration::from_mins(1), "both slots streaming", || {
        s.barman.run(&["cron"])?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(s.pg.psql("select count(*) from pg_replication_slots where active")? == "2")
    })
}

fn all_ok(s: &Setup, server: &str) -> Result<()> {
    let (code, out) = ours(s, &["check", server])?;
    ensure!(code == Some(0) && failed_checks(&out).is_empty(), "our check {server} is not all OK:\n{out}");
    Ok(())
}

/// A backup of `server` that ends DONE (cron brings the streamed WAL it waits for).
fn backup_done(s: &Setup, server: &str) -> Result<String> {
    s.barman.run(&["backup", server, "--immediate-checkpoint"])?;
    let mut done = Vec::new();
    wait_until(Duration::from_mins(1), &format!("a DONE backup of {server}"), || {
        s.pg.psql("select pg_switch_wal()")?;
        s.barman.run(&["cron"])?;
        done = s.barman.done_backups(server)?;
        Ok(!done.is_empty())
    })?;
    done.pop().context("no DONE backup")
}

/// Every path works with the documented grants alone.
fn everything_works(s: &Setup) -> Result<()> {
    wait_streaming(s)?;
    ensure!(
        s.pg.psql("select rolsuper::text from pg_roles where rolname = 'barman'")? == "false",
        "barman is superuser"
    );
    s.pg.psql("create table t(id int); insert into t select generate_series(1, 1000)")?;
    for server in ["pg", "pgr"] {
        let out = s.barman.run(&["switch-wal", "--force", "--archive", "--archive-timeout", "60", server])?;
        ensure!(out.contains("The WAL file") && out.contains("has been closed"), "switch-wal {server}:\n{out}");
        all_ok(s, server)?;
    }
    let id = backup_done(s, "pg")?;
    let id_r = backup_done(s, "pgr")?;
    let base = s.barman.server_dir("pgr").join("base").join(&id_r).join("data");
    ensure!(base.join("global/pg_control").is_file(), "rsync backup {id_r} has no pg_control");
    let rs = s.barman.run(&["replication-status", "pg"])?;
    ensure!(rs.contains("streaming_barman") || rs.contains("barman_receive_wal"), "replication-status:\n{rs}");
    all_ok(s, "pg")?;
    eprintln!("least privilege: postgres backup {id}, rsync backup {id_r}, switch-wal and replication-status OK");
    Ok(())
}

/// Revokes one grant: real Barman's and our check fail the same lines, ours naming it.
fn revoke_one(s: &Setup, real: &RealBarman, object: &str, named: &str) -> Result<()> {
    s.pg.psql(&format!("REVOKE {object} FROM barman_role"))?;
    let (rc, rout) = real_barman(s, real, &["check", "pg"])?;
    let (oc, oout) = ours(s, &["check", "pg"])?;
    s.pg.psql(&format!("GRANT {object} TO barman_role"))?;
    let (rf, of) = (failed_checks(&rout), failed_checks(&oout));
    ensure!(!rf.is_empty() && rc == Some(1), "real Barman does not fail without {object}:\n{rout}");
    ensure!(
        rf == of && oc == rc,
        "without {object}: barman fails {rf:?} (exit {rc:?}), ours {of:?} (exit {oc:?})\n{oout}"
    );
    let line = oout.lines().find(|l| l.contains(": FAILED")).unwrap_or_default();
    ensure!(line.contains(&format!("missing {named}")), "without {object} our check does not name it:\n{line}");
    eprintln!(
        "without {object}:\n  barman: {}\n  ours:  {}",
        rout.lines().find(|l| l.contains(": FAILED")).unwrap_or_default().trim(),
        line.trim()
    );
    Ok(())
}

/// REPLICATION taken from the streaming user: the same failed lines as Barman.
fn no_replication(s: &Setup, real: &RealBarman) -> Result<()> {
    s.barman.run(&["receive-wal", "--stop", "pg"]).ok();
    s.pg.psql("ALTER ROLE streaming_barman NOREPLICATION")?;
    let (rc, rout) = real_barman(s, real, &["check", "pg"])?;
    let (oc, oout) = ours(s, &["check", "pg"])?;
    s.pg.psql("ALTER ROLE streaming_barman REPLICATION")?;
    let (rf, of) = (failed_checks(&rout), failed_checks(&oout));
    ensure!(rf.iter().any(|c| c == "PostgreSQL streaming"), "real Barman without REPLICATION:\n{rout}");
    ensure!(rf == of && oc == rc, "without REPLICATION: barman fails {rf:?}, ours {of:?}\n{oout}\n--- barman\n{rout}");
    let line = oout.lines().find(|l| l.contains("PostgreSQL streaming: FAILED")).unwrap_or_default();
    ensure!(
        line.contains("replication role") || line.contains("REPLICATION"),
        "our streaming check does not name REPLICATION:\n{line}"
    );
    eprintln!("without REPLICATION:\n  ours:  {}", line.trim());
    Ok(())
}

/// `pg_checkpoint` revoked: check stays OK (as in Barman, it is needed only by `switch-wal
/// --force`), and `switch-wal --force` refuses, naming the role.
fn no_checkpoint(s: &Setup, real: &RealBarman) -> Result<()> {
    s.pg.psql("REVOKE pg_checkpoint FROM barman_role")?;
    let (rc, _) = real_barman(s, real, &["check", "pg"])?;
    let (oc, oout) = ours(s, &["check", "pg"])?;
    let (sc, sout) = ours(s, &["switch-wal", "--force", "pg"])?;
    s.pg.psql("GRANT pg_checkpoint TO barman_role")?;
    ensure!(rc == oc, "without pg_checkpoint: barman check exit {rc:?}, ours {oc:?}\n{oout}");
    ensure!(
        sc == Some(1) && sout.contains("pg_checkpoint"),
        "switch-wal --force without pg_checkpoint ({sc:?}):\n{sout}"
    );
    Ok(())
}

#[test]
fn barman_role_with_the_manuals_grants_is_enough_and_each_missing_grant_is_named() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(RealBarman::require());
    let t0 = Instant::now();
    let s = setup()?;
    everything_works(&s)?;
    for (object, named) in GRANTS {
        revoke_one(&s, &real, object, named)?;
    }
    no_checkpoint(&s, &real)?;
    no_replication(&s, &real)?;
    eprintln!("least privilege test: {:?}", t0.elapsed());
    Ok(())
}
