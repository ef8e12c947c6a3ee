//! `barman backup`'s rsync copy options (issue 18), each against its real effect on a
//! PostgreSQL 15 cluster backed up over the private sshd as `postgres`:
//! `--jobs-start-batch-size/-period` delay the second worker by the period (the copy lasts at
//! least that long); `--keepalive-interval` sends `SELECT 1` on the backup's SQL session during
//! the copy (PostgreSQL logs them; 0 sends none); `autogenerate_manifest = on` writes a
//! `backup_manifest` that `pg_verifybackup` accepts (and that catches a flipped byte), and
//! `--no-manifest` overrides it.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::PyValue;
use barman_integration::cmd::{execute, DEFAULT_TIMEOUT};
use barman_integration::fixtures::{backup_info, ArchivingCluster as Setup};
use barman_integration::pg::PG_BIN;
use barman_integration::{skip_unless, BarmanServerOptions, PgCluster, Sshd};

/// `copy_time` of a backup's `copy_stats`, in seconds.
fn copy_time(s: &Setup, id: &str) -> Result<f64> {
    let info = backup_info(&s.layout(), id)?;
    let stats = info.copy_stats.context("no copy_stats")?;
    match stats.iter().find(|(k, _)| k == "copy_time").map(|(_, v)| v) {
        Some(PyValue::Float(secs)) => Ok(*secs),
        other => anyhow::bail!("copy_time: {other:?}"),
    }
}

/// The newest DONE backup.
fn newest_done(s: &Setup) -> Result<String> {
    s.barman.done_backups("pg")?.into_iter().max().context("no DONE backup")
}

/// The heartbeat queries PostgreSQL logged so far.
fn heartbeats(pg: &PgCluster) -> usize {
    pg.log().lines().filter(|l| l.contains("statement: SELECT 1")).count()
}

fn verifybackup(data: &Path) -> Result<(bool, String)> {
    let mut cmd = Command::new(Path::new(PG_BIN).join("pg_verifybackup"));
    cmd.arg("-n").arg("-m").arg(data.join("backup_manifest")).arg(data);
    let o = execute(&mut cmd, None, DEFAULT_TIMEOUT)?;
    Ok((o.code() == Some(0), format!("{}{}", o.stdout_str(), o.stderr_str())))
}

/// Flips one byte in the middle of the largest file under `dir/base`.
fn flip_a_byte(dir: &Path) -> Result<()> {
    let mut largest = (0, None);
    for db in fs::read_dir(dir.join("base"))? {
        for f in fs::read_dir(db?.path())? {
            let path = f?.path();
            let len = fs::metadata(&path)?.len();
            if len > largest.0 {
                largest = (len, Some(path));
            }
        }
    }
    let path = largest.1.context("no relation file")?;
    let mut bytes = fs::read(&path)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, bytes)?;
    Ok(())
}

#[test]
fn batch_start_keepalive_and_manifest_options_have_their_effect() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let s = Setup::start_with_options("rsync options", |_| {
        Ok(BarmanServerOptions {
            backup_method: "rsync".into(),
            extra: vec![
                "ssh_command = ssh postgres@127.0.0.1".into(),
                "reuse_backup = link".into(),
                "autogenerate_manifest = on".into(),
            ],
            ..BarmanServerOptions::default()
        })
    })?;
    s.pg.psql("alter system set log_statement = 'all'")?;
    s.pg.psql("select pg_reload_conf()")?;
    s.pg.pgbench_init(1)?;

    // 1. Two workers, one started per 5-second batch, a heartbeat every second, no manifest.
    let before = heartbeats(&s.pg);
    s.barman.run(&[
        "backup",
        "pg",
        "--wait",
        "--immediate-checkpoint",
        "--jobs",
        "2",
        "--jobs-start-batch-size",
        "1",
        "--jobs-start-batch-period",
        "5",
        "--keepalive-interval",
        "1",
        "--no-manifest",
    ])?;
    let first = newest_done(&s)?;
    let slow = copy_time(&s, &first)?;
    ensure!(slow >= 5.0, "the second worker started before its batch period: copy_time {slow}");
    let beats = heartbeats(&s.pg) - before;
    ensure!(beats >= 3, "{beats} heartbeat queries during a copy of {slow} s with --keepalive-interval 1");
    let data = s.layout().backup_dir(&first.parse()?).join("data");
    ensure!(!data.join("backup_manifest").exists(), "--no-manifest did not override autogenerate_manifest");

    // 2. Both workers in the first batch, no heartbeat, the configured manifest.
    let before = heartbeats(&s.pg);
    let out = s.barman.run(&[
        "backup",
        "pg",
        "--wait",
        "--immediate-checkpoint",
        "--jobs",
        "2",
        "--jobs-start-batch-size",
        "2",
        "--jobs-start-batch-period",
        "5",
        "--keepalive-interval",
        "0",
    ])?;
    let second = newest_done(&s)?;
    ensure!(second != first, "no second backup");
    let fast = copy_time(&s, &second)?;
    ensure!(fast < 5.0, "both workers were in the first batch, yet copy_time {fast}");
    ensure!(heartbeats(&s.pg) == before, "heartbeat queries with --keepalive-interval 0");
    ensure!(
        out.contains(&format!("Backup manifest for backup '{second}' successfully generated for server pg")),
        "{out}"
    );
    let data = s.layout().backup_dir(&second.parse()?).join("data");
    let (ok, text) = verifybackup(&data)?;
    ensure!(ok && text.contains("backup successfully verified"), "pg_verifybackup: {text}");
    flip_a_byte(&data)?;
    let (ok, text) = verifybackup(&data)?;
    ensure!(!ok, "pg_verifybackup accepted a flipped byte: {text}");
    eprintln!("rsync options: copy_time {slow:.2} s (batched) vs {fast:.2} s, {beats} heartbeats");
    Ok(())
}
