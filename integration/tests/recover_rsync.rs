//! Issue 18: the remote recovery copies a plain backup straight into the destination with
//! the backup's rsync copy controller, in `--jobs` parallel rsync workers over the
//! `--remote-ssh-command`, with `--bwlimit`, `--network-compression`, `--retry-*` and the
//! start batches; `--delta-restore` copies over a destination holding an older recovery,
//! purging what the backup does not hold. A real PostgreSQL 15 started on each result holds
//! exactly the rows committed. An `rsync` wrapper first in `PATH` records every rsync run:
//! the backup's own directory is a source (no local staging of the backup) and at least two
//! copy workers overlap in time.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_integration::cmd::execute;
use barman_integration::fixtures::{backup_info, ArchivingCluster as Setup};
use barman_integration::{skip_unless, BarmanServerOptions, OsUser, PgCluster, PgOptions, Sshd};

const SSH_POSTGRES: &str = "ssh postgres@127.0.0.1";

/// One rsync run the wrapper saw: start, end (seconds) and arguments.
struct Run {
    start: f64,
    end: Option<f64>,
    args: String,
}

/// An `rsync` wrapper logging `start|end PID TIME ARGS` lines into `log`.
fn wrapper(dir: &Path, log: &Path) -> Result<()> {
    let script = format!(
        "#!/bin/sh\necho \"start $$ $(date +%s.%N) $*\" >> {log}\n/usr/bin/rsync \"$@\"\nrc=$?\n\
         echo \"end $$ $(date +%s.%N)\" >> {log}\nexit $rc\n",
        log = log.display()
    );
    fs::write(dir.join("rsync"), script)?;
    fs::set_permissions(dir.join("rsync"), fs::Permissions::from_mode(0o755))?;
    fs::write(log, "")?;
    fs::set_permissions(log, fs::Permissions::from_mode(0o666))?;
    Ok(())
}

fn runs(log: &Path) -> Result<Vec<Run>> {
    let text = fs::read_to_string(log)?;
    let mut out: Vec<(String, Run)> = Vec::new();
    for line in text.lines() {
        let mut w = line.splitn(4, ' ');
        let (kind, pid, time) = (w.next().unwrap_or(""), w.next().unwrap_or(""), w.next().unwrap_or("0"));
        let time: f64 = time.parse().unwrap_or(0.0);
        if kind == "start" {
            let args = w.next().unwrap_or("").to_owned();
            out.push((pid.to_owned(), Run { start: time, end: None, args }));
        } else if let Some((_, r)) = out.iter_mut().rev().find(|(p, r)| p == pid && r.end.is_none()) {
            r.end = Some(time);
        }
    }
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

/// The largest number of copy runs (`--files-from`) in flight at one time.
fn max_overlap(runs: &[Run]) -> usize {
    let copies: Vec<&Run> = runs.iter().filter(|r| r.args.contains("--files-from=-")).collect();
    copies
        .iter()
        .map(|a| copies.iter().filter(|b| b.start <= a.start && b.end.is_none_or(|end| a.start < end)).count())
        .max()
        .unwrap_or(0)
}

fn ids(pg: &PgCluster) -> Result<String> {
    pg.psql("select coalesce(string_agg(id::text, ',' order by id), '') from t")
}

/// `barman recover ...` with the wrapper first in `PATH`.
fn recover(s: &Setup, wrapper_dir: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = s.barman.command(args);
    let path = cmd
        .get_envs()
        .find(|(k, _)| *k == "PATH")
        .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
        .unwrap_or_default();
    cmd.env("PATH", format!("{}:{path}", wrapper_dir.display()));
    let o = execute(&mut cmd, None, Duration::from_mins(3))?;
    o.success().with_context(|| format!("recover {args:?}: {}\nlog:\n{}", o.stderr_str(), s.barman.log()))?;
    Ok(o.stdout_str())
}

#[test]
fn parallel_remote_recovery_and_delta_restore() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let t_all = Instant::now();
    let s = Setup::start_with_options("recover rsync", |_| {
        Ok(BarmanServerOptions {
            backup_method: "rsync".into(),
            extra: vec![format!("ssh_command = {SSH_POSTGRES}"), "reuse_backup = link".into()],
            ..BarmanServerOptions::default()
        })
    })?;
    let ts_dir = s.scratch.mkdir_owned_mode("ts1", "postgres", 0o700)?;
    s.pg.psql(&format!("create tablespace ts1 location '{}'", ts_dir.display()))?;
    s.pg.psql("create table t(id int primary key, v text) tablespace ts1")?;
    s.pg.pgbench_init(2)?;
    s.pg.psql("insert into t select g, 'first' from generate_series(1, 100) g")?;
    s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    std::thread::sleep(Duration::from_millis(2100));
    s.pg.psql("insert into t select g, 'second' from generate_series(101, 200) g")?;
    s.pg.psql("update pgbench_accounts set abalance = 1 where aid < 1000")?;
    s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    s.pg.psql("insert into t select g, 'after' from generate_series(201, 250) g")?;
    let last = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&last, Duration::from_mins(1))?;
    s.barman.run(&["cron"])?;
    let mut done = s.barman.done_backups("pg")?;
    done.sort();
    ensure!(done.len() == 2, "DONE: {done:?}");
    let want: Vec<String> = (1..=250).map(|i| i.to_string()).collect();
    let want = want.join(",");

    // Refusals, as Barman words them.
    let o = s.barman.outcome(&["recover", "--network-compression", "pg", &done[1], "/tmp/nowhere"])?;
    ensure!(
        o.code() == Some(1) && o.stderr_str().contains("Network compression can only be used with remote recovery."),
        "network compression without ssh: {}",
        o.stderr_str()
    );
    let o = s.barman.outcome(&["recover", "--recovery-staging-path", "rel", "pg", &done[1], "/tmp/nowhere"])?;
    ensure!(
        o.stderr_str().contains("Cannot parse recovery staging path: Invalid value : 'rel' (must be an absolute path)"),
        "relative staging path: {}",
        o.stderr_str()
    );

    let tools = s.scratch.mkdir_owned_mode("tools", "barman", 0o755)?;
    let log = tools.join("rsync.log");
    wrapper(&tools, &log)?;
    let remote = s.scratch.mkdir_owned_mode("remote", "postgres", 0o700)?;

    // 1. The last backup, --jobs 4, into an empty destination, its tablespace relocated.
    let dest = remote.join("a");
    let rule = format!("ts1:{}", remote.join("a_ts").display());
    let dest_s = dest.to_str().context("utf8")?;
    let t0 = Instant::now();
    #[rustfmt::skip]
    let args = [
        "recover", "--remote-ssh-command", SSH_POSTGRES, "--jobs", "4", "--bwlimit", "200000",
        "--retry-times", "2", "--retry-sleep", "1", "--jobs-start-batch-size", "2",
        "--jobs-start-batch-period", "1", "--network-compression", "--tablespace", &rule, "pg", &done[1], dest_s,
    ];
    recover(&s, &tools, &args)?;
    let took = t0.elapsed();
    let seen = runs(&log)?;
    let backup_data = s.layout().basebackups_directory.join(&done[1]).join("data");
    let pushes = seen.iter().filter(|r| r.args.contains(&format!("{}/", backup_data.display()))).count();
    ensure!(
        pushes >= 2,
        "no rsync run read the backup directly: {:?}",
        seen.iter().map(|r| &r.args).collect::<Vec<_>>()
    );
    let overlap = max_overlap(&seen);
    ensure!(overlap >= 2, "copy workers never overlapped (max {overlap})");
    ensure!(seen.iter().any(|r| r.args.contains("--bwlimit=200000") && r.args.contains(" -z")), "bwlimit/-z unused");
    let postgres = OsUser::lookup("postgres")?;
    let md = fs::metadata(dest.join("base"))?;
    ensure!(md.uid() == postgres.uid, "base not written by postgres");
    ensure!(fs::metadata(&dest)?.permissions().mode() & 0o777 == 0o700, "destination mode");
    let mut restored = PgCluster::start_existing(&s.scratch, &dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    let rows = ids(&restored)?;
    ensure!(rows == want, "parallel recovery: {} rows", rows.split(',').count());
    restored.stop()?;

    // 2. Delta restore: the first backup into a fresh destination, a stray file added and a
    // relation file damaged, then the last backup over it.
    let dest = remote.join("b");
    let rule = format!("ts1:{}", remote.join("b_ts").display());
    let dest_s = dest.to_str().context("utf8")?;
    recover(
        &s,
        &tools,
        &["recover", "--remote-ssh-command", SSH_POSTGRES, "--tablespace", &rule, "pg", &done[0], dest_s],
    )?;
    fs::write(dest.join("base/stray_file"), "not in the backup")?;
    // A file the last backup changed after the first one started, damaged in the
    // destination with its size and time made equal to the backup's: only a checksum sees it.
    let b1_begin = backup_info(&s.layout(), &done[0])?.begin_time.context("begin_time")?.timestamp();
    let (victim, rel) = changed_file(&backup_data, b1_begin)?;
    let mut bytes = fs::read(&victim)?;
    bytes[100] ^= 0xff;
    fs::write(dest.join(&rel), &bytes)?;
    fs::File::options().write(true).open(dest.join(&rel))?.set_modified(fs::metadata(&victim)?.modified()?)?;
    let o = s.barman.outcome(&["recover", "--remote-ssh-command", SSH_POSTGRES, "pg", &done[1], dest_s])?;
    ensure!(
        o.code() == Some(1) && o.stderr_str().contains("is not empty"),
        "non-empty without delta: {}",
        o.stderr_str()
    );
    fs::write(&log, "")?;
    #[rustfmt::skip]
    let args = [
        "recover", "--remote-ssh-command", SSH_POSTGRES, "--delta-restore", "-j", "2", "--tablespace", &rule,
        "pg", &done[1], dest_s,
    ];
    let out = recover(&s, &tools, &args)?;
    ensure!(out.contains("Using safe horizon time for smart rsync copy: "), "no safe horizon:\n{out}");
    ensure!(!dest.join("base/stray_file").exists(), "delta restore left a stray file");
    ensure!(seen_checksum(&runs(&log)?), "delta restore never compared with checksums");
    ensure!(fs::read(dest.join(&rel))? == fs::read(&victim)?, "{} not repaired by the delta restore", rel.display());
    let restored = PgCluster::start_existing(&s.scratch, &dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    let rows = ids(&restored)?;
    ensure!(rows == want, "delta restore: {} rows", rows.split(',').count());
    eprintln!("parallel remote recovery {took:?} (max {overlap} copy workers at once); test {:?}", t_all.elapsed());
    Ok(())
}

/// A regular file under `data/base` of at least one page modified more than a second after
/// `after` (Unix seconds), and its path relative to `data`.
fn changed_file(data: &Path, after: i64) -> Result<(PathBuf, PathBuf)> {
    let mut stack = vec![data.join("base")];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let path = e?.path();
            let md = fs::symlink_metadata(&path)?;
            if md.is_dir() {
                stack.push(path);
            } else if md.is_file() && md.len() >= 8192 && md.mtime() > after + 1 {
                let rel = path.strip_prefix(data)?.to_path_buf();
                return Ok((path, rel));
            }
        }
    }
    anyhow::bail!("no file of {} changed after {after}", data.display())
}

/// Whether a copy run used `--checksum` (the files a delta restore cannot trust by size
/// and time).
fn seen_checksum(runs: &[Run]) -> bool {
    runs.iter().any(|r| r.args.contains("--checksum"))
}
