//! One fault of each kind. Each returns whether the fault really hit (a SIGKILL that found
//! its process, a disk that was full while the tool wrote); the caller then runs the tools
//! normally ([`super::checks::heal`]) and checks the invariants.

use std::process::Child;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rand::Rng;

use super::checks;
use super::env::Env;
use super::procs::{kill9, kill_when_seen};

/// The data paths the soak injects faults into (the table's rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// SIGKILL of `barman-wal-archive` (PostgreSQL's `archive_command`).
    WalArchive,
    /// SIGKILL of `barman put-wal` on the backup host.
    PutWal,
    /// SIGKILL of `barman cron` while it archives.
    Archiver,
    /// SIGKILL of `barman-receive-wal` at a random moment.
    ReceiveWal,
    /// SIGKILL of `barman-receive-wal` right after a segment switch.
    ReceiveWalSwitch,
    /// SIGKILL of `barman backup` (postgres method: `barman-backup`).
    BackupPostgres,
    /// SIGKILL of `barman backup` (rsync method).
    BackupRsync,
    /// SIGKILL of `barman recover`.
    Recover,
    /// PostgreSQL crashed (SIGKILL) or restarted while streaming.
    PgRestart,
    /// ENOSPC on the catalogue while WAL arrives (`incoming/`, `streaming/`).
    EnospcWal,
    /// ENOSPC on the catalogue during a backup (`base/`).
    EnospcBase,
    /// ENOSPC on a recovery destination.
    EnospcRecovery,
}

impl Path {
    /// Every path, in the table's order.
    pub const ALL: [Path; 12] = [
        Path::WalArchive,
        Path::PutWal,
        Path::Archiver,
        Path::ReceiveWal,
        Path::ReceiveWalSwitch,
        Path::BackupPostgres,
        Path::BackupRsync,
        Path::Recover,
        Path::PgRestart,
        Path::EnospcWal,
        Path::EnospcBase,
        Path::EnospcRecovery,
    ];

    /// The table's label.
    pub fn label(self) -> &'static str {
        match self {
            Path::WalArchive => "kill barman-wal-archive",
            Path::PutWal => "kill put-wal",
            Path::Archiver => "kill cron archiver",
            Path::ReceiveWal => "kill receive-wal (random)",
            Path::ReceiveWalSwitch => "kill receive-wal (after switch)",
            Path::BackupPostgres => "kill backup (postgres)",
            Path::BackupRsync => "kill backup (rsync)",
            Path::Recover => "kill recover",
            Path::PgRestart => "postgres crash/restart mid-stream",
            Path::EnospcWal => "ENOSPC incoming/ + streaming/",
            Path::EnospcBase => "ENOSPC base/",
            Path::EnospcRecovery => "ENOSPC recovery destination",
        }
    }

    /// Whether the normal run after the fault includes a backup of the server (so a
    /// backup the fault left STARTED is marked FAILED and a new one is DONE).
    pub fn backup_server(self) -> Option<&'static str> {
        match self {
            Path::BackupPostgres | Path::EnospcBase => Some("pg"),
            Path::BackupRsync => Some("pgr"),
            _ => None,
        }
    }
}

fn ms(rng: &mut impl Rng, max: u64) -> Duration {
    Duration::from_millis(rng.gen_range(0..=max))
}

/// Segments are switched while a killer waits for `needle` and strikes.
fn kill_archiving(env: &Env, needle: &str, max_delay: u64) -> Result<bool> {
    let scope = env.scope();
    std::thread::scope(|s| {
        let killer =
            s.spawn(|| kill_when_seen(&scope, needle, Duration::from_secs(8), Duration::from_millis(max_delay)));
        for _ in 0..4 {
            env.write_and_switch()?;
            if killer.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        killer.join().map_err(|_| anyhow::anyhow!("killer panicked"))
    })
}

fn spawn(env: &Env, args: &[&str]) -> Result<Child> {
    env.barman
        .command(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("spawn barman")
}

/// Kills `child` (and any `needle` process of the soak) after a random delay; true when
/// the child was still running.
fn kill_child_later(env: &Env, mut child: Child, needles: &[&str], max: u64) -> Result<bool> {
    std::thread::sleep(ms(&mut rand::thread_rng(), max));
    let alive = child.try_wait()?.is_none();
    let pid = i32::try_from(child.id())?;
    let helpers: Vec<i32> = needles.iter().flat_map(|n| super::procs::matching(&env.scope(), n)).collect();
    let hit = helpers.into_iter().filter(|&p| kill9(p)).count() > 0;
    if alive {
        kill9(pid);
    }
    child.wait()?;
    Ok(alive || hit)
}

fn kill_receive_wal(env: &Env, after_switch: bool) -> Result<bool> {
    let mut rng = rand::thread_rng();
    if after_switch {
        env.write_and_switch()?;
        std::thread::sleep(ms(&mut rng, 20));
    } else {
        env.pg.psql("insert into soak(pad) select repeat('y', 200) from generate_series(1, 3000)")?;
        std::thread::sleep(ms(&mut rng, 300));
    }
    let pids = super::procs::matching(&env.scope(), "barman-receive-wal");
    Ok(pids.into_iter().filter(|&p| kill9(p)).count() > 0)
}

fn kill_backup(env: &mut Env, server: &str, helpers: &[&str]) -> Result<bool> {
    let before = env.rows()?;
    env.pg.psql("insert into soak(pad) select repeat('b', 200) from generate_series(1, 2000)")?;
    let child = spawn(env, &["backup", server, "--immediate-checkpoint"])?;
    let hit = kill_child_later(env, child, helpers, 2500)?;
    checks::note_rows(env, server, before)?;
    Ok(hit)
}

/// The last DONE backup of `pg`, taking one first if there is none.
fn last_done(env: &Env) -> Result<String> {
    if env.barman.done_backups("pg")?.is_empty() {
        env.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    }
    env.barman.done_backups("pg")?.pop().context("no DONE backup of pg")
}

fn kill_recover(env: &Env) -> Result<bool> {
    let id = last_done(env)?;
    let dir = env.recovery_dir("killed-recover")?;
    let dest = dir.join("pgdata");
    let child = spawn(env, &["recover", "pg", &id, dest.to_str().context("utf8")?])?;
    let hit = kill_child_later(env, child, &[], 1500)?;
    // The same command again on the same destination must work with no manual step.
    env.barman.run(&["recover", "pg", &id, dest.to_str().context("utf8")?]).context("recover again after a kill")?;
    ensure!(dest.join("global/pg_control").is_file(), "recover again left no pg_control");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(hit)
}

fn pg_restart(env: &mut Env, round: u32) -> Result<bool> {
    env.pg.psql("insert into soak(pad) select repeat('r', 200) from generate_series(1, 3000)")?;
    if round.is_multiple_of(2) {
        env.pg.kill9()?;
    } else {
        env.pg.stop()?;
    }
    env.pg.start_again()?;
    Ok(true)
}

fn enospc_wal(env: &Env) -> Result<bool> {
    env.tmpfs.fill(2 << 20)?;
    let result = (|| -> Result<()> {
        for _ in 0..3 {
            env.write_and_switch()?;
            let _ = env.barman.outcome(&["cron"])?;
        }
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    })();
    env.tmpfs.drain()?;
    result.map(|()| true)
}

fn enospc_base(env: &mut Env) -> Result<bool> {
    let before = env.rows()?;
    env.tmpfs.fill(4 << 20)?;
    let out = env.barman.outcome(&["backup", "pg", "--immediate-checkpoint"]);
    env.tmpfs.drain()?;
    let out = out?;
    checks::note_rows(env, "pg", before)?;
    Ok(out.code() != Some(0))
}

fn enospc_recovery(env: &Env) -> Result<bool> {
    let id = last_done(env)?;
    let dir = env.recovery_dir("full-dest")?;
    let small = super::procs::Tmpfs::mount(&dir, "8m", "barman")?;
    let dest = dir.join("pgdata");
    let out = env.barman.outcome(&["recover", "pg", &id, dest.to_str().context("utf8")?])?;
    drop(small);
    ensure!(out.code() != Some(0), "recover into an 8 MiB destination succeeded?");
    ensure!(!out.stderr_str().is_empty() || !out.stdout_str().is_empty(), "recover failed silently");
    Ok(true)
}

/// Injects one fault on `path` (round `round` of it).
pub fn inject(env: &mut Env, path: Path, round: u32) -> Result<bool> {
    match path {
        Path::WalArchive => kill_archiving(env, "barman-wal-archive", 40),
        Path::PutWal => kill_archiving(env, "put-wal", 40),
        Path::Archiver => {
            for _ in 0..3 {
                env.write_and_switch()?;
            }
            let child = spawn(env, &["cron"])?;
            kill_child_later(env, child, &[], 400)
        }
        Path::ReceiveWal => kill_receive_wal(env, false),
        Path::ReceiveWalSwitch => kill_receive_wal(env, true),
        Path::BackupPostgres => kill_backup(env, "pg", &["barman-backup"]),
        Path::BackupRsync => kill_backup(env, "pgr", &["barman-backup", "rsync"]),
        Path::Recover => kill_recover(env),
        Path::PgRestart => pg_restart(env, round),
        Path::EnospcWal => enospc_wal(env),
        Path::EnospcBase => enospc_base(env),
        Path::EnospcRecovery => enospc_recovery(env),
    }
}
