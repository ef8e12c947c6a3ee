//! The Postgres host's key restricted on the backup host with `barman-ssh-gate` as its
//! forced command (the recipe in `packaging/etc/authorized_keys.example`): PostgreSQL
//! archives and restores through it with the documented lines, and anything else the key
//! asks for is refused, logged, and changes nothing.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_integration::cmd::{as_user, execute, Outcome};
use barman_integration::pg::SYSTEM_PATH;
use barman_integration::{
    cargo_bin, skip_unless, BarmanHome, BarmanServerOptions, OsUser, PgCluster, PgOptions, Scratch, Sshd, SshdOptions,
};

/// Runs `program args…` as postgres with the sshd's ssh wrapper on PATH.
fn as_postgres(sshd: &Sshd, program: &Path, args: &[&str]) -> Result<Outcome> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    as_user(&mut cmd, &OsUser::lookup("postgres")?);
    cmd.env("PATH", format!("{}:{SYSTEM_PATH}", sshd.ssh_wrapper_dir_for("postgres")?.display()));
    execute(&mut cmd, None, Duration::from_mins(1))
}

#[test]
fn postgres_host_key_can_only_archive_and_restore_its_own_server() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let scratch = Scratch::new("forced command")?;
    let sshd = Sshd::start(&scratch, SshdOptions::default())?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    let cfg = barman.config_path();
    // The key may only run the gate for server pg.
    let keys = scratch.join("sshd/authorized_keys");
    let key = fs::read_to_string(&keys)?;
    let gate = cargo_bin("barman-ssh-gate")?;
    fs::write(&keys, format!("restrict,command=\"{} -c {} pg\" {key}", gate.display(), cfg.display()))?;

    let archive = format!("{} -c {} 127.0.0.1 pg %p", cargo_bin("barman-wal-archive")?.display(), cfg.display());
    let opts = PgOptions::default().archive_command(archive).path_prefix(sshd.ssh_wrapper_dir_for("postgres")?);
    let pg = PgCluster::start(&scratch, opts)?;
    barman.add_server("pg", &pg, &BarmanServerOptions::default())?;
    barman.add_raw_server(
        "other",
        &["description = other", "conninfo = host=/nonexistent", "backup_method = postgres"],
    )?;

    // Allowed: archiving (put-wal) and restoring (get-wal, --batch prefetch) for pg.
    pg.psql("create table t as select generate_series(1, 1000) id")?;
    let seg = pg.switch_wal()?;
    pg.wait_for_archived(&seg, Duration::from_mins(1))?;
    barman.run(&["cron"])?;
    let dest = scratch.mkdir_owned("restored", "postgres")?;
    let restored = dest.join("seg");
    let wal_restore = cargo_bin("barman-wal-restore")?;
    let cfg_arg = cfg.display().to_string();
    let out =
        as_postgres(&sshd, &wal_restore, &["-c", &cfg_arg, "127.0.0.1", "pg", &seg, &restored.display().to_string()])?;
    out.success()?;
    let stored = barman_common::compress::read_maybe_compressed(
        &barman_common::catalogue::ServerLayout::default_for(&barman.home(), "pg").wal_path(&seg.parse()?),
    )?;
    ensure!(fs::read(&restored)? == stored.0, "restored segment differs from the archived one");

    // Refused: another server, other subcommands, arbitrary commands, another config file.
    let ssh = sshd.ssh_wrapper_dir_for("postgres")?.join("ssh");
    let marker = scratch.join("pwned");
    let attempts: [&[&str]; 5] = [
        &["barman@127.0.0.1", "barman", "put-wal", "other"],
        &["barman@127.0.0.1", "barman", "delete", "pg", "oldest"],
        &["barman@127.0.0.1", "touch", &marker.display().to_string()],
        &["barman@127.0.0.1", "barman", "--config=/tmp/evil.conf", "get-wal", "pg", &seg],
        &["barman@127.0.0.1", "barman", "get-wal", "-o", "/tmp", "pg", &seg],
    ];
    for args in attempts {
        let out = as_postgres(&sshd, &ssh, args)?;
        ensure!(out.code() == Some(1), "{args:?} was not refused: {:?} {}", out.code(), out.stderr_str());
        out.stderr_contains("refused by barman-ssh-gate")?;
    }
    let log = barman.log();
    let refusals = log.lines().filter(|l| l.contains("barman.ssh_gate WARNING: refused ssh command")).count();
    ensure!(refusals == attempts.len(), "{refusals} refusals logged, expected {}:\n{log}", attempts.len());
    ensure!(!marker.exists(), "an arbitrary command ran on the backup host");
    ensure!(
        !barman.server_dir("other").join("incoming").read_dir().is_ok_and(|mut d| d.next().is_some()),
        "something reached another server's incoming/"
    );
    // barman-wal-archive for the other server fails as a remote put-wal failure.
    let copy = dest.join(&seg);
    fs::copy(&restored, &copy)?;
    barman_integration::scratch::chown(&copy, &OsUser::lookup("postgres")?)?;
    let other = as_postgres(
        &sshd,
        &cargo_bin("barman-wal-archive")?,
        &["-c", &cfg_arg, "127.0.0.1", "other", &copy.display().to_string()],
    )?;
    ensure!(other.code() == Some(1), "archiving to another server: {:?}", other.code());
    let _ = pg.psql("select 1").context("cluster still up")?;
    Ok(())
}
