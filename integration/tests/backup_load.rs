//! `barman backup` / `barman-backup` under load and on a refused replication connection,
//! against a real PostgreSQL 15 archiving through our `barman-wal-archive` into the same
//! catalogue: a backup taken while pgbench writes reaches DONE, `pg_verifybackup` accepts
//! it with its WAL read from our archive, and `barman recover --target-name` of it holds
//! exactly the source's tables as of the restore point; a role without REPLICATION gets
//! one clear error and leaves no backup behind.
//!
//! (A PostgreSQL going away mid-copy is `backup.rs`'s `interrupted_copy_is_marked_failed`,
//! which also checks that the backup lock is free again.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{BackupId, BackupInfo, BackupStatus, ServerLayout, ServerLock};
use barman_common::wal::WalSegSize;
use barman_integration::cmd::{as_user, execute, DEFAULT_TIMEOUT};
use barman_integration::pg::PG_BIN;
use barman_integration::{cargo_bin, skip_unless, wait_until, BarmanHome, PgCluster, PgOptions, Scratch, Sshd};

/// The pgbench tables, compared one by one after the recovery.
const TABLES: [&str; 5] = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history", "marker"];

use barman_integration::fixtures::{backup_ids, backup_info as info, ArchivingCluster as Setup};

fn setup(name: &str) -> Result<Setup> {
    Setup::start(name)
}

fn layout(barman: &BarmanHome) -> ServerLayout {
    ServerLayout::default_for(&barman.home(), "pg")
}

/// Fails unless the server's backup lock can be taken (and releases it again).
fn assert_backup_lock_free(layout: &ServerLayout) -> Result<()> {
    let lock = layout.lock_directory.join(".pg-backup.lock");
    if lock.exists() {
        ServerLock::try_acquire(&lock).context("backup lock still held")?.release()?;
    }
    Ok(())
}

/// A background `pgbench`, killed on drop if still running.
struct Load(Child);

impl Load {
    fn start(pg: &PgCluster, args: &[&str]) -> Result<Load> {
        let mut cmd = pg.pg_command("pgbench");
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        Ok(Load(cmd.spawn().context("starting pgbench")?))
    }

    fn running(&mut self) -> Result<bool> {
        Ok(self.0.try_wait()?.is_none())
    }

    /// Kills pgbench, then waits until the server has no pgbench session left: from then
    /// on no pgbench transaction can commit.
    fn stop(mut self, pg: &PgCluster) -> Result<()> {
        let _ = self.0.kill();
        let _ = self.0.wait();
        wait_until(Duration::from_secs(30), "pgbench sessions to end", || {
            Ok(pg.psql("select count(*) from pg_stat_activity where application_name = 'pgbench'")? == "0")
        })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Copies the archived segments `begin..=end` (stored uncompressed) into `dir`, for
/// `pg_verifybackup --wal-directory`.
fn collect_wal(layout: &ServerLayout, bi: &BackupInfo, dir: &Path) -> Result<usize> {
    let size = WalSegSize::DEFAULT;
    let end = bi.end_wal.clone().context("no end_wal")?;
    let mut name = bi.begin_wal.clone().context("no begin_wal")?;
    let mut copied = 0;
    loop {
        let stored = layout.wal_path(&name);
        fs::copy(&stored, dir.join(name.as_str())).with_context(|| format!("{} not archived", stored.display()))?;
        copied += 1;
        if name == end {
            return Ok(copied);
        }
        ensure!(copied < 1000, "{name} never reached end_wal {end}");
        name = name.next_segment(size)?;
    }
}

/// `pg_verifybackup -m <data>/backup_manifest -w <wal_dir> <data>`, as root.
fn verifybackup_with_wal(data: &Path, wal_dir: &Path) -> Result<barman_integration::Outcome> {
    let mut cmd = Command::new(Path::new(PG_BIN).join("pg_verifybackup"));
    cmd.arg("-m").arg(data.join("backup_manifest")).arg("-w").arg(wal_dir).arg(data);
    execute(&mut cmd, None, DEFAULT_TIMEOUT)
}

/// A backup taken while `pgbench -c 2` writes: DONE with `--wait`, `pg_verifybackup`
/// replays its WAL range from our archive, and `barman recover --target-name` of it into a
/// fresh directory holds exactly the source's tables as of the restore point (a change
/// committed after it is not there).
#[test]
fn backup_under_pgbench_restores_to_the_recovery_point() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let t_all = Instant::now();
    let s = setup("backup load")?;
    s.pg.pgbench_init(5)?;
    s.pg.psql("create table marker(id int primary key, v text); insert into marker values (0, 'before backup')")?;
    let history_before = s.pg.psql("select count(*) from pgbench_history")?;

    // The backup runs while pgbench writes (it is stopped below, not by -T).
    let mut load = Load::start(&s.pg, &["-n", "-c", "2", "-j", "2", "-T", "600"])?;
    std::thread::sleep(Duration::from_secs(2));
    ensure!(load.running()?, "pgbench ended early");
    let t0 = Instant::now();
    let out = s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    let took = t0.elapsed();
    ensure!(load.running()?, "pgbench was not running through the backup");
    std::thread::sleep(Duration::from_secs(1));
    load.stop(&s.pg)?;
    ensure!(out.contains("Backup completed"), "backup output: {out}");
    let history_after = s.pg.psql("select count(*) from pgbench_history")?;
    ensure!(history_after.parse::<u64>()? > history_before.parse::<u64>()?, "pgbench committed nothing");

    let layout = layout(&s.barman);
    let ids = backup_ids(&layout);
    ensure!(ids.len() == 1, "backups: {ids:?}");
    let id = ids[0].clone();
    let bi = info(&layout, &id)?;
    ensure!(bi.status == BackupStatus::Done, "status {:?} error {:?}", bi.status, bi.error);
    let (begin, end) = (bi.begin_wal.clone().context("begin_wal")?, bi.end_wal.clone().context("end_wal")?);
    let (start_lsn, end_lsn) = (bi.begin_xlog.context("begin_xlog")?, bi.end_xlog.context("end_xlog")?);
    let written = end_lsn.as_u64().saturating_sub(start_lsn.as_u64());
    eprintln!(
        "backup {id} under pgbench took {took:?}: {start_lsn} ({begin}) .. {end_lsn} ({end}), {written} bytes of WAL"
    );
    // pgbench wrote during the copy: the backup needs that WAL to be consistent.
    ensure!(written > 64 * 1024, "only {written} bytes of WAL between backup start and end: no load during the copy?");

    // The recovery point: the data as of a restore point; one more commit after it.
    s.pg.psql("insert into marker values (1, 'at the recovery point')")?;
    let want: Vec<String> = TABLES.iter().map(|t| s.pg.table_checksum(t)).collect::<Result<_>>()?;
    s.pg.psql("select pg_create_restore_point('after_pgbench')")?;
    s.pg.psql("insert into marker values (2, 'after the recovery point')")?;
    s.pg.psql("update pgbench_branches set bbalance = bbalance + 1000000 where bid = 1")?;
    let last = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&last, Duration::from_mins(2))?;
    s.barman.run(&["cron"])?;

    // pg_verifybackup, with the backup's WAL range read from our archive.
    let data = layout.backup_dir(&BackupId::new(&id)?).join("data");
    let wal_dir = s.scratch.mkdir("verify-wal")?;
    let segments = collect_wal(&layout, &bi, &wal_dir)?;
    let v = verifybackup_with_wal(&data, &wal_dir)?;
    ensure!(v.code() == Some(0) && v.stdout_str().contains("backup successfully verified"), "pg_verifybackup: {v}");
    eprintln!("pg_verifybackup -w: OK over {segments} archived segment(s)");

    // Recover to the restore point into a fresh directory and start PostgreSQL on it.
    let root = s.scratch.mkdir_owned("rec", "barman")?;
    let dest: PathBuf = root.join("data");
    let dest_s = dest.to_str().context("utf8")?;
    let args = ["recover", "--target-name", "after_pgbench", "--target-action", "promote", "pg", &id, dest_s];
    let out = s.barman.run(&args)?;
    ensure!(out.contains("Your PostgreSQL server has been successfully prepared for recovery!"), "recover: {out}");
    let restored = PgCluster::start_existing(&s.scratch, &dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(2))?;
    ensure!(
        restored.log().contains("recovery stopping at restore point \"after_pgbench\""),
        "recovery did not stop at the restore point:\n{}",
        restored.log()
    );
    let got: Vec<String> = TABLES.iter().map(|t| restored.table_checksum(t)).collect::<Result<_>>()?;
    for ((table, g), w) in TABLES.iter().zip(&got).zip(&want) {
        ensure!(g == w, "{table}: recovered checksum {g}, source at the recovery point {w}");
    }
    ensure!(restored.psql("select string_agg(id::text, ',' order by id) from marker")? == "0,1");
    eprintln!("backup under load: recovered tables match; test took {:?}", t_all.elapsed());
    Ok(())
}

/// A role with LOGIN but without REPLICATION in conninfo and streaming_conninfo: the
/// walsender refuses it, `barman-backup` exits 2 (a refused replication connection, as for
/// an unreachable server) with one stderr line naming the missing privilege, writes no
/// backup at all and leaves the lock free; `barman backup` reports the failure (exit 1).
#[test]
fn missing_replication_privilege_is_one_clear_error() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("backup norepl")?;
    let pg = PgCluster::start(&scratch, PgOptions::default())?;
    pg.psql("create role norepl login nosuperuser noreplication")?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    let socket = pg.socket_dir().display().to_string();
    let conninfo = format!("conninfo = host={socket} port={} user=norepl dbname=postgres", pg.port());
    let streaming = format!("streaming_conninfo = host={socket} port={} user=norepl", pg.port());
    let path_prefix = format!("path_prefix = {PG_BIN}");
    barman.add_raw_server(
        "pg",
        &[
            "description = \"no replication privilege\"",
            &conninfo,
            &streaming,
            "backup_method = postgres",
            "archiver = on",
            &path_prefix,
        ],
    )?;

    let mut direct = Command::new(cargo_bin("barman-backup")?);
    as_user(&mut direct, barman.user());
    direct.arg("-c").arg(barman.config_path()).args(["--immediate-checkpoint", "pg"]);
    let outcome = execute(&mut direct, None, DEFAULT_TIMEOUT)?;
    eprintln!("barman-backup as a role without REPLICATION: {outcome}");
    outcome.fails_with_code(2)?;
    let err = outcome.stderr_str();
    ensure!(err.lines().count() == 1, "stderr is not one line: {err:?}");
    ensure!(err.starts_with("barman-backup: "), "stderr lacks the tool prefix: {err:?}");
    ensure!(err.contains("streaming_conninfo"), "stderr does not say which connection: {err:?}");
    ensure!(err.contains("replication role"), "stderr does not name the missing privilege: {err:?}");

    let layout = layout(&barman);
    let ids = backup_ids(&layout);
    ensure!(ids.is_empty(), "a refused connection left backups behind: {ids:?}");
    let meta: Vec<String> = match fs::read_dir(layout.meta_dir()) {
        Ok(rd) => rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
        Err(_) => Vec::new(),
    };
    ensure!(meta.iter().all(|f| !f.ends_with("-backup.info")), "backup.info files left: {meta:?}");
    assert_backup_lock_free(&layout)?;
    ensure!(pg.psql("select count(*) from pg_stat_activity where usename = 'norepl'")? == "0", "session left open");

    let front = barman.outcome(&["backup", "pg"])?;
    eprintln!("barman backup as a role without REPLICATION: {front}");
    front.fails_with_code(1)?;
    ensure!(backup_ids(&layout).is_empty(), "`barman backup` left backups: {:?}", backup_ids(&layout));
    assert_backup_lock_free(&layout)
}
