//! `backup_method = rsync` (issue 18) against a real PostgreSQL 15 archiving through our
//! `barman-wal-archive`, PGDATA read as the `postgres` OS user over the private sshd: our
//! backup and real Barman 3.20.1's of the same cluster hold the same files and the same
//! backup.info keys; each recovers the other's; with `reuse_backup = link` the unchanged
//! files of a second backup are hard links into the first; `local-rsync` works without ssh;
//! a backup killed mid-copy is FAILED and the next one succeeds.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::BackupStatus;
use barman_integration::cmd::{as_user, execute};
use barman_integration::fixtures::{backup_ids, backup_info, ArchivingCluster as Setup};
use barman_integration::pg::{PG_BIN, SYSTEM_PATH};
use barman_integration::{skip_unless, BarmanServerOptions, PgCluster, PgOptions, RealBarman, Sshd};

const SSH_POSTGRES: &str = "ssh postgres@127.0.0.1";

/// A cluster archiving into our catalogue, server `pg` with `backup_method = rsync` over
/// `ssh postgres@127.0.0.1`, `reuse_backup = link`, and `extra` lines.
fn setup(name: &str, extra: &[&str]) -> Result<Setup> {
    Setup::start_with_options(name, |_| {
        let mut lines = vec![format!("ssh_command = {SSH_POSTGRES}"), "reuse_backup = link".into()];
        lines.extend(extra.iter().map(ToString::to_string));
        Ok(BarmanServerOptions { backup_method: "rsync".into(), extra: lines, ..BarmanServerOptions::default() })
    })
}

/// Real Barman 3.20.1 on the same configuration and catalogue, with the ssh wrapper first.
fn real_barman(s: &Setup, real: &RealBarman, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(real.bin("barman"));
    as_user(&mut cmd, s.barman.user());
    let path = format!(
        "{}:{}:{PG_BIN}:{SYSTEM_PATH}",
        s.sshd.ssh_wrapper_dir_for("barman")?.display(),
        real.bin_dir().display()
    );
    cmd.env("PATH", path).arg("-c").arg(s.barman.config_path()).args(args);
    let o = execute(&mut cmd, None, Duration::from_mins(3))?;
    o.success().with_context(|| format!("real barman {args:?}: {}\nlog:\n{}", o.stderr_str(), s.barman.log()))?;
    Ok(o.stdout_str())
}

/// Relative paths of the regular files and directories under `root`.
fn tree(root: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let path = e?.path();
            let md = fs::symlink_metadata(&path)?;
            out.insert(path.strip_prefix(root)?.display().to_string());
            if md.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(out)
}

/// (files, of which hard links into another backup: nlink > 1) under `root`.
fn link_counts(root: &Path) -> Result<(u64, u64)> {
    let (mut files, mut linked) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let path = e?.path();
            let md = fs::symlink_metadata(&path)?;
            if md.is_dir() {
                stack.push(path);
            } else if md.is_file() {
                files += 1;
                linked += u64::from(md.nlink() > 1);
            }
        }
    }
    Ok((files, linked))
}

/// backup.info keys with whether each is `None`.
fn info_keys(s: &Setup, id: &str) -> Result<Vec<(String, bool)>> {
    let text = fs::read_to_string(s.layout().meta_dir().join(format!("{id}-backup.info")))?;
    Ok(text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v == "None")).collect())
}

fn ids(pg: &PgCluster) -> Result<String> {
    pg.psql("select coalesce(string_agg(id::text, ',' order by id), '') from t")
}

/// Recovers `id` over ssh as `postgres` into a fresh directory (with `--tablespace
/// ts1:...` when `relocate`), starts PostgreSQL on it and returns the rows of `t`.
fn recover_and_read(
    s: &Setup,
    id: &str,
    tag: &str,
    relocate: bool,
    run: impl Fn(&[&str]) -> Result<String>,
) -> Result<String> {
    let remote = s.scratch.mkdir_owned_mode(format!("rec_{tag}"), "postgres", 0o700)?;
    let dest = remote.join("pgdata");
    let ts = format!("ts1:{}", remote.join("ts1").display());
    let dest_s = dest.to_str().context("utf8")?;
    let mut args = vec!["recover", "--remote-ssh-command", SSH_POSTGRES];
    if relocate {
        args.extend(["--tablespace", &ts]);
    }
    args.extend(["pg", id, dest_s]);
    run(&args)?;
    let restored = PgCluster::start_existing(&s.scratch, &dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    ids(&restored)
}

fn with_tablespace(s: &Setup) -> Result<PathBuf> {
    let ts_dir = s.scratch.mkdir_owned_mode("ts1", "postgres", 0o700)?;
    s.pg.psql(&format!("create tablespace ts1 location '{}'", ts_dir.display()))?;
    s.pg.psql("create table t(id int primary key, v text) tablespace ts1")?;
    Ok(ts_dir)
}

/// Ours and real Barman's rsync backups of one cluster (tablespace included): the same
/// files, the same backup.info keys, `mode = rsync-concurrent`; each tool recovers the
/// other's backup over ssh and PostgreSQL replays to the last row.
#[test]
fn rsync_backup_matches_barman_and_each_recovers_the_other() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(RealBarman::require());
    let t_all = Instant::now();
    let s = setup("rsync vs barman", &["parallel_jobs = 2"])?;
    with_tablespace(&s)?;
    s.pg.pgbench_init(1)?;
    s.pg.psql("insert into t values (1, 'before backups')")?;
    let t0 = Instant::now();
    let out = s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    let ours_took = t0.elapsed();
    ensure!(out.contains("Starting backup copy via rsync/SSH for") && out.contains("(2 jobs)"), "output:\n{out}");
    let ours = backup_ids(&s.layout()).pop().context("no backup")?;
    let info = backup_info(&s.layout(), &ours)?;
    ensure!(info.status == BackupStatus::Done, "ours: {:?} {:?}", info.status, info.error);
    ensure!(info.mode.as_deref() == Some("rsync-concurrent"), "mode {:?}", info.mode);
    std::thread::sleep(Duration::from_millis(1100));
    let t0 = Instant::now();
    real_barman(&s, &real, &["backup", "pg", "--wait", "--reuse-backup", "off"])?;
    let theirs_took = t0.elapsed();
    let theirs = backup_ids(&s.layout()).into_iter().find(|i| *i != ours).context("barman's backup")?;
    ensure!(backup_info(&s.layout(), &theirs)?.mode.as_deref() == Some("rsync-concurrent"), "barman's mode");
    let (a, b) = (info_keys(&s, &ours)?, info_keys(&s, &theirs)?);
    ensure!(a == b, "backup.info keys differ:\nours:   {a:?}\nbarman: {b:?}");
    let base = s.layout().basebackups_directory.clone();
    let (ta, tb) = (tree(&base.join(&ours))?, tree(&base.join(&theirs))?);
    let only_ours: Vec<_> = ta.difference(&tb).filter(|p| !p.ends_with("tablespace_map")).collect();
    let only_theirs: Vec<_> = tb.difference(&ta).collect();
    ensure!(only_ours.is_empty() && only_theirs.is_empty(), "only ours {only_ours:?}, only barman's {only_theirs:?}");
    let list = real_barman(&s, &real, &["list-backups", "pg"])?;
    ensure!(list.lines().filter(|l| l.contains("Size:") && !l.contains("FAILED")).count() == 2, "list:\n{list}");

    s.pg.psql("insert into t values (2, 'after backups')")?;
    let last = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&last, Duration::from_mins(1))?;
    s.barman.run(&["cron"])?;
    let by_barman = recover_and_read(&s, &ours, "barman", true, |args| real_barman(&s, &real, args))?;
    ensure!(by_barman == "1,2", "real Barman recovered our backup to rows {by_barman}");
    let by_us = recover_and_read(&s, &theirs, "ours", true, |args| s.barman.run(args))?;
    ensure!(by_us == "1,2", "we recovered Barman's backup to rows {by_us}");
    eprintln!("rsync backup: ours {ours_took:?}, barman {theirs_took:?}; test {:?}", t_all.elapsed());
    Ok(())
}

/// Issue 18, must-show 1: the seeds' eric.conf adapted to the test (`parallel_jobs = 4`,
/// `reuse_backup = link`, `create_slot = auto`, streaming archiver), PGDATA read as
/// `postgres` over the private sshd. `barman cron` creates the slot and streams; two
/// backups, most files of the second hard links into the first; `barman check` all OK; a
/// remote recovery as `postgres` starts and holds every committed row, including those
/// written after the last backup.
#[test]
fn eric_conf_two_backups_reuse_links_and_remote_recovery() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let t_all = Instant::now();
    let s = Setup::start_with_options("rsync eric", |_| {
        Ok(BarmanServerOptions {
            backup_method: "rsync".into(),
            streaming_archiver: true,
            slot_name: Some("barman_streaming_jeff".into()),
            extra: vec![
                format!("ssh_command = {SSH_POSTGRES}"),
                "parallel_jobs = 4".into(),
                "reuse_backup = link".into(),
                "retention_policy = RECOVERY WINDOW OF 2 WEEKS".into(),
                "last_backup_maximum_age = 8 DAYS".into(),
            ],
            ..BarmanServerOptions::default()
        })
    })?;
    barman_integration::wait_until(Duration::from_mins(1), "slot streaming", || {
        s.barman.run(&["cron"])?;
        std::thread::sleep(Duration::from_secs(1));
        Ok(s.pg
            .psql("select count(*) from pg_replication_slots where slot_name = 'barman_streaming_jeff' and active")?
            == "1")
    })?;
    s.pg.psql("create table t(id int primary key, v text)")?;
    s.pg.pgbench_init(2)?;
    s.pg.psql("insert into t select g, 'first' from generate_series(1, 100) g")?;
    let t0 = Instant::now();
    s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    let first_took = t0.elapsed();
    s.pg.psql("insert into t select g, 'second' from generate_series(101, 200) g")?;
    let t0 = Instant::now();
    s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    let second_took = t0.elapsed();
    let done = s.barman.done_backups("pg")?;
    ensure!(done.len() == 2, "DONE backups: {done:?}");
    let base = s.layout().basebackups_directory.clone();
    let (files, linked) = link_counts(&base.join(&done[1]).join("data"))?;
    ensure!(linked * 10 >= files * 7, "only {linked} of {files} files of the second backup are hard links");
    let check = s.barman.outcome(&["check", "pg"])?;
    ensure!(check.code() == Some(0), "barman check:\n{}{}", check.stdout_str(), check.stderr_str());
    ensure!(check.stdout_str().contains("ssh: OK (PostgreSQL server)"), "check:\n{}", check.stdout_str());
    s.pg.psql("insert into t select g, 'after the last backup' from generate_series(201, 250) g")?;
    let last = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&last, Duration::from_mins(1))?;
    s.barman.run(&["cron"])?;
    let rows = recover_and_read(&s, &done[1], "eric", false, |args| s.barman.run(args))?;
    let want: Vec<String> = (1..=250).map(|i| i.to_string()).collect();
    ensure!(rows == want.join(","), "recovered rows: {} ids", rows.split(',').count());
    eprintln!(
        "eric: first backup {first_took:?}, second {second_took:?}, {linked}/{files} files linked; test {:?}",
        t_all.elapsed()
    );
    Ok(())
}

/// Issue 18, must-show 3: after a first backup, `kill -9` of `barman-backup` in the middle
/// of a copy slowed by `bandwidth_limit`: the backup is never DONE, the next backup marks it
/// FAILED and succeeds (PostgreSQL's backup session was released), reusing the first
/// backup's unchanged files by hard link, never the killed one's half copy.
#[test]
fn killed_backup_is_failed_and_the_next_succeeds() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let s = setup("rsync kill", &["bandwidth_limit = 2000"])?;
    s.pg.pgbench_init(1)?;
    s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint", "--bwlimit", "0"])?;
    let first = s.barman.done_backups("pg")?.pop().context("no first backup")?;
    // New pgbench tables: the next copy has megabytes to send at 2000 KB/s, not just links.
    s.pg.pgbench_init(1)?;
    let program = barman_integration::cargo_bin("barman-backup")?;
    let mut cmd = s.barman.program_command(&program, &["--immediate-checkpoint", "pg"]);
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn()?;
    let layout = s.layout();
    barman_integration::wait_until(Duration::from_mins(1), "backup to start", || {
        Ok(backup_ids(&layout).last().is_some_and(|id| {
            *id != first && backup_info(&layout, id).is_ok_and(|i| i.status == BackupStatus::Started)
        }))
    })?;
    std::thread::sleep(Duration::from_secs(3));
    child.kill()?;
    child.wait()?;
    let killed = backup_ids(&layout).pop().context("no backup")?;
    ensure!(backup_info(&layout, &killed)?.status != BackupStatus::Done, "killed backup DONE");
    s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint", "--bwlimit", "0"])?;
    let after = backup_info(&layout, &killed)?;
    ensure!(after.status == BackupStatus::Failed, "killed backup: {:?}", after.status);
    let mut done = s.barman.done_backups("pg")?;
    done.sort();
    ensure!(done.len() == 2 && done[0] == first && done[1] != killed, "DONE: {done:?}");
    let base = s.layout().basebackups_directory.clone();
    let (files, linked) = shared_inodes(&base.join(&done[1]).join("data"), &base.join(&first).join("data"))?;
    ensure!(linked * 10 >= files * 7, "only {linked} of {files} files of the next backup are links into {first}");
    eprintln!("after the kill: {linked}/{files} files of the next backup are hard links into {first}");
    Ok(())
}

/// (files under `root`, of which the same inode as the file at the same path under `other`).
fn shared_inodes(root: &Path, other: &Path) -> Result<(u64, u64)> {
    let (mut files, mut shared) = (0, 0);
    for rel in tree(root)? {
        let md = fs::symlink_metadata(root.join(&rel))?;
        if md.is_file() {
            files += 1;
            shared += u64::from(fs::symlink_metadata(other.join(&rel)).is_ok_and(|o| o.ino() == md.ino()));
        }
    }
    Ok((files, shared))
}
