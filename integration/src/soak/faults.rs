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
use super::sites;

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
    /// The root ↔ A link cut while PostgreSQL archives over ssh.
    CutArchive,
    /// SIGKILL of `barman-relay` (or of the passive's `barman cron` that started it) mid-copy.
    KillRelay,
    /// The A ↔ B link cut while the passive relays WAL and backups.
    CutRelay,
    /// ENOSPC on the passive's catalogue while it relays.
    EnospcPassive,
    /// SIGKILL of `barman-cloud-wal-archive` mid-upload to SeaweedFS.
    KillCloudWal,
    /// SIGKILL of `barman-cloud-backup`.
    KillCloudBackup,
    /// The link to the object store cut during an upload (WAL or backup).
    CutCloud,
}

impl Path {
    /// Every path, in the table's order.
    pub const ALL: [Path; 19] = [
        Path::WalArchive,
        Path::PutWal,
        Path::Archiver,
        Path::ReceiveWal,
        Path::ReceiveWalSwitch,
        Path::CutArchive,
        Path::KillRelay,
        Path::CutRelay,
        Path::EnospcPassive,
        Path::BackupPostgres,
        Path::BackupRsync,
        Path::Recover,
        Path::PgRestart,
        Path::EnospcWal,
        Path::EnospcBase,
        Path::EnospcRecovery,
        Path::KillCloudWal,
        Path::KillCloudBackup,
        Path::CutCloud,
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
            Path::CutArchive => "link cut: archive over ssh",
            Path::KillRelay => "kill barman-relay / passive cron",
            Path::CutRelay => "link cut: relay",
            Path::EnospcPassive => "ENOSPC passive catalogue",
            Path::KillCloudWal => "kill barman-cloud-wal-archive",
            Path::KillCloudBackup => "kill barman-cloud-backup",
            Path::CutCloud => "link cut: cloud upload",
        }
    }

    /// For a cloud path, whether its normal run includes a cloud backup.
    pub fn cloud_backup(self) -> Option<bool> {
        match self {
            Path::KillCloudWal => Some(false),
            Path::KillCloudBackup | Path::CutCloud => Some(true),
            _ => None,
        }
    }

    /// Whether the path involves the passive node (healed and checked after the fault).
    pub fn passive(self) -> bool {
        matches!(self, Path::KillRelay | Path::CutRelay | Path::EnospcPassive)
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

/// The link cut while PostgreSQL archives: segments switched, the link down for 1-6 s (a
/// switch during the cut), then up again.
fn cut_archive(env: &Env) -> Result<bool> {
    let mut rng = rand::thread_rng();
    env.write_and_switch()?;
    std::thread::sleep(ms(&mut rng, 300));
    env.sites.root_a.set_down()?;
    let during = env.write_and_switch();
    std::thread::sleep(Duration::from_secs(1) + ms(&mut rng, 5000));
    env.sites.root_a.set_up()?;
    during.map(|_| true)
}

/// Something for the relay to copy: new WAL in the primary catalogue and, on even rounds, a
/// new backup.
fn relay_work(env: &mut Env, round: u32) -> Result<()> {
    if round.is_multiple_of(2) {
        let before = env.rows()?;
        env.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
        checks::note_rows(env, "pg", before)?;
    }
    env.write_and_switch()?;
    env.write_and_switch()?;
    std::thread::sleep(Duration::from_millis(500));
    env.barman.run(&["cron"])?;
    sites::wait_relay_idle(env, Duration::from_mins(2))
}

/// The relay killed mid-copy: the passive's cron (which starts a detached pass) on odd
/// rounds, a foreground `barman-relay` on even ones.
fn kill_relay(env: &mut Env, round: u32) -> Result<bool> {
    relay_work(env, round)?;
    let child = if round.is_multiple_of(2) {
        env.sites.spawn_relay()?
    } else {
        env.sites
            .passive
            .home
            .command(&["cron"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?
    };
    kill_child_later(env, child, &["barman-relay"], 1500)
}

/// The A ↔ B link cut for 1-9 s while a relay pass copies; the pass must end by itself
/// (keep-alives), successfully or not.
fn cut_relay(env: &mut Env, round: u32) -> Result<bool> {
    relay_work(env, round)?;
    let mut rng = rand::thread_rng();
    let child = env.sites.spawn_relay()?;
    std::thread::sleep(ms(&mut rng, 800));
    env.sites.ab.set_down()?;
    std::thread::sleep(Duration::from_secs(1) + ms(&mut rng, 8000));
    env.sites.ab.set_up()?;
    sites::wait_child(child, Duration::from_mins(3), "barman-relay after a link cut")?;
    Ok(true)
}

/// The passive's catalogue full (256 KiB left) during a relay pass; a hit when it failed.
fn enospc_passive(env: &mut Env, round: u32) -> Result<bool> {
    relay_work(env, round)?;
    env.sites.passive_tmpfs.fill(256 << 10)?;
    let out = env.sites.passive.relay(&["pg"]);
    env.sites.passive_tmpfs.drain()?;
    let out = out?;
    ensure!(
        out.code() == Some(0) || !out.stderr_str().is_empty() || !out.stdout_str().is_empty(),
        "the relay failed silently on a full disk"
    );
    Ok(out.code() != Some(0))
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
        Path::CutArchive => cut_archive(env),
        Path::KillRelay => kill_relay(env, round),
        Path::CutRelay => cut_relay(env, round),
        Path::EnospcPassive => enospc_passive(env, round),
        Path::KillCloudWal => super::cloud::inject(env, super::cloud::Fault::KillWalArchive, round),
        Path::KillCloudBackup => super::cloud::inject(env, super::cloud::Fault::KillBackup, round),
        Path::CutCloud => super::cloud::inject(env, super::cloud::Fault::Cut, round),
    }
}
