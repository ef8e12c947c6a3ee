//! The copy of an rsync backup, as Barman's `RsyncCopyController` does it, with a better
//! split of the work: each directory (every tablespace, then PGDATA) is listed on the source
//! with Barman's exclusions; a file older than the previous backup's start, or whose size or
//! time differs from the previous backup's copy, is "safe" (rsync's size-and-time check
//! sees any change), the rest are copied with `--checksum`. The files are cut into
//! `parallel_jobs` buckets of equal bytes, and as many workers run one rsync each, with
//! `--link-dest` (or `--copy-dest`) against the previous backup for `reuse_backup`; a failed
//! bucket is retried `basebackup_retry_times` times. `global/pg_control` goes last, then the
//! configuration files kept outside PGDATA.
//!
//! The same controller pushes a backup to a remote recovery destination ([`Controller::push`]:
//! the source is local, the destination is on the `ssh` host), as Barman's recovery does with
//! its copy controller: with delta restore ([`Controller::compare_dst`]) the destination's
//! own files are the reference (same size and time: checked with `--checksum` unless older
//! than the safe horizon) and files the backup does not hold are purged from it.

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use barman_common::catalogue::PyValue;
use chrono::NaiveDateTime;

use crate::rsync::{local_dir, Entry, Failure, Rsync, Stats, WorkerRunners};

/// Barman's `EXCLUDE_LIST`: what PostgreSQL itself leaves out of a base backup.
pub const EXCLUDE_LIST: [&str; 16] = [
    "pgsql_tmp*",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "pg_internal.init",
    "postmaster.pid",
    "postmaster.opts",
    "recovery.conf",
    "standby.signal",
    "**/[0-9]*/t[0-9]*_[0-9]*",
    "pg_dynshmem/*",
    "pg_notify/*",
    "pg_replslot/*",
    "pg_serial/*",
    "pg_stat_tmp/*",
    "pg_snapshots/*",
    "pg_subtrans/*",
];

/// Barman's `PGDATA_EXCLUDE_LIST` (PGDATA only; `pg_control` is copied last, on its own).
pub const PGDATA_EXCLUDE_LIST: [&str; 5] = ["/pg_log/*", "/log/*", "/pg_xlog/*", "/pg_wal/*", "/global/pg_control"];

/// A directory to copy.
#[derive(Debug, Clone)]
pub struct DirItem {
    /// `pgdata` or the tablespace's name (the key of `copy_stats`).
    pub label: String,
    /// The directory on the PostgreSQL host.
    pub src: String,
    /// Its place in the backup.
    pub dst: PathBuf,
    /// `--include=`/`--exclude=` arguments, in order.
    pub filters: Vec<String>,
    /// The same directory in the previous backup (`reuse_backup = copy|link`).
    pub reuse: Option<PathBuf>,
    /// `bandwidth_limit` or the tablespace's `tablespace_bandwidth_limit` (KiB/s).
    pub bwlimit: Option<u64>,
}

/// A single file to copy after the directories.
#[derive(Debug, Clone)]
pub struct FileItem {
    /// `pg_control`, `config_file`, `hba_file`, `ident_file`.
    pub label: String,
    /// The file on the PostgreSQL host.
    pub src: String,
    /// Destination (a directory with a trailing `/`, or a file path).
    pub dst: String,
    /// A missing source is no error (`ident_file`).
    pub optional: bool,
}

/// How the copy runs.
#[derive(Debug, Clone)]
pub struct Controller {
    /// The runner (ssh or local, `-z`).
    pub rsync: Rsync,
    /// `parallel_jobs`.
    pub workers: usize,
    /// `parallel_jobs_start_batch_size` / `_period`: workers started per period.
    pub start_batch: (usize, Duration),
    /// `copy` or `link` (`--copy-dest` / `--link-dest`) when `reuse` dirs are given.
    pub link: bool,
    /// The previous backup's start (local time): older files are safe to size-and-time check.
    pub safe_horizon: Option<NaiveDateTime>,
    /// `basebackup_retry_times` and `_sleep`, per bucket.
    pub retry: (u32, Duration),
    /// The sources are local and the destinations on the rsync's ssh host (recovery).
    pub push: bool,
    /// The destination may hold files (delta restore): they are the reference, and the ones
    /// the source lacks are deleted.
    pub compare_dst: bool,
}

/// What the copy did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// rsync's counters, summed.
    pub stats: Stats,
    /// Files listed for copy.
    pub files: u64,
    /// Barman's `copy_stats`.
    pub copy_stats: Vec<(String, PyValue)>,
}

/// A directory's source listing: its subdirectories, the files safe to size-and-time check,
/// and the files to copy with `--checksum`.
type Analysis = (Vec<String>, Vec<Entry>, Vec<Entry>);

/// `paths`, one per line, as `--files-from=-` reads them.
fn lines(paths: &[String]) -> String {
    paths.iter().fold(String::new(), |mut text, p| {
        text.push_str(p);
        text.push('\n');
        text
    })
}

/// One rsync run: a bucket of one directory.
struct Job {
    item: usize,
    files: Vec<String>,
    checksum: bool,
}

/// Per-item timings, as Barman's `statistics()` sums them.
#[derive(Default)]
struct Timing {
    analysis: Vec<(String, f64)>,
    copy: HashMap<usize, (Instant, Instant, Duration)>,
}

impl Controller {
    /// Copies `dirs` then `files`.
    pub fn copy(&self, dirs: &[DirItem], files: &[FileItem]) -> Result<Outcome, String> {
        let started = Instant::now();
        let runners = self.rsync.per_worker(self.workers);
        let mut timing = Timing::default();
        let mut jobs = Vec::new();
        let mut listed = 0;
        for (i, item) in dirs.iter().enumerate() {
            let t0 = Instant::now();
            let (dirs_list, safe, check) = self.analyse(runners.get(0), item)?;
            listed += (safe.len() + check.len()) as u64;
            debug(&format!(
                "{}: {} files to size-and-time check, {} to checksum (listed in {:.3}s)",
                item.label,
                safe.len(),
                check.len(),
                t0.elapsed().as_secs_f64()
            ));
            self.make_dirs(runners.get(0), item, &dirs_list, &safe.iter().chain(&check).collect::<Vec<_>>())?;
            jobs.extend(buckets(safe, self.workers).into_iter().map(|files| Job { item: i, files, checksum: false }));
            jobs.extend(buckets(check, self.workers).into_iter().map(|files| Job { item: i, files, checksum: true }));
            timing.analysis.push((item.label.clone(), t0.elapsed().as_secs_f64()));
        }
        let analysis_time = started.elapsed();
        let copy_started = Instant::now();
        let mut stats = self.run_jobs(&runners, dirs, jobs, &mut timing)?;
        for f in files {
            stats += self.copy_file(runners.get(0), f)?;
        }
        debug(&format!(
            "copy: {:.3}s after {:.3}s of analysis",
            copy_started.elapsed().as_secs_f64(),
            analysis_time.as_secs_f64()
        ));
        drop(runners);
        let copy_stats =
            statistics(dirs, &timing, started.elapsed(), analysis_time, copy_started.elapsed(), self.workers);
        Ok(Outcome { stats, files: listed, copy_stats })
    }

    /// The source listing, split into directories, safe files and files to checksum.
    fn analyse(&self, rsync: &Rsync, item: &DirItem) -> Result<Analysis, String> {
        let listing =
            rsync.list_tree(&self.src_arg(item), &item.filters).map_err(|f| format!("listing {}: {f}", item.src))?;
        // None: the destination could not be listed, so whatever is not older than the safe
        // horizon is checked with checksums (as Barman does).
        let reference = match (&item.reuse, self.compare_dst) {
            (Some(reuse), _) => Some(local_listing(reuse)),
            (None, true) => self.dst_listing(rsync, item),
            (None, false) => Some(HashMap::new()),
        };
        let (mut dirs, mut safe, mut check) = (Vec::new(), Vec::new(), Vec::new());
        for entry in listing {
            if entry.is_dir {
                dirs.push(entry.path);
                continue;
            }
            let older = self.safe_horizon.is_some_and(|h| entry.mtime < h);
            let same = reference.as_ref().is_none_or(|r| {
                r.get(&entry.path).is_some_and(|&(size, mtime)| size == entry.size && mtime == entry.mtime)
            });
            if older || !same {
                safe.push(entry);
            } else {
                check.push(entry);
            }
        }
        Ok((dirs, safe, check))
    }

    /// The source directory as rsync's argument (with a trailing `/`).
    fn src_arg(&self, item: &DirItem) -> String {
        let dir = format!("{}/", item.src.trim_end_matches('/'));
        if self.push {
            dir
        } else {
            self.rsync.source(&dir)
        }
    }

    /// The destination directory as rsync's argument (with a trailing `/`).
    fn dst_arg(&self, item: &DirItem) -> String {
        if self.push {
            self.rsync.source(&local_dir(&item.dst))
        } else {
            local_dir(&item.dst)
        }
    }

    /// The destination's regular files (delta restore), `None` when it cannot be listed.
    fn dst_listing(&self, rsync: &Rsync, item: &DirItem) -> Option<HashMap<String, (u64, NaiveDateTime)>> {
        match rsync.list_tree(&self.dst_arg(item), &item.filters) {
            Ok(list) => Some(list.into_iter().filter(|e| !e.is_dir).map(|e| (e.path, (e.size, e.mtime))).collect()),
            Err(f) => {
                tracing::error!("Unable to retrieve reference directory file list: {f}");
                None
            }
        }
    }

    /// Creates the directory tree (modes and times) before any file; with delta restore,
    /// also deletes from the destination what the source does not hold (Barman's
    /// `_create_dir_and_purge`: every source file protected, the rest of each listed
    /// directory deleted, the item's exclusions kept).
    fn make_dirs(&self, rsync: &Rsync, item: &DirItem, dirs: &[String], files: &[&Entry]) -> Result<(), String> {
        if !self.push {
            std::fs::create_dir_all(&item.dst).map_err(|e| format!("{}: {e}", item.dst.display()))?;
        }
        let mut filter = None;
        let mut list = lines(dirs);
        if self.compare_dst {
            let mut rules = String::new();
            for f in files {
                rules.push_str(&format!("P /{0}\n- /{0}\n", f.path));
            }
            let file = tempfile::NamedTempFile::new().map_err(|e| format!("purge filter: {e}"))?;
            std::fs::write(file.path(), rules).map_err(|e| format!("purge filter: {e}"))?;
            filter = Some(file);
            list.insert_str(0, ".\n");
        }
        // Not "." otherwise: with --files-from (which implies --dirs) it would bring the top
        // level's files too, exclusions and all.
        if list.is_empty() {
            return Ok(());
        }
        let mut cmd = Self::base(rsync, item.bwlimit);
        cmd.arg("--files-from=-");
        if let Some(f) = &filter {
            cmd.args(["--recursive", "--delete", "--filter"]).arg(format!("merge {}", f.path().display()));
            cmd.args(&item.filters);
        }
        cmd.arg(self.src_arg(item)).arg(self.dst_arg(item));
        rsync
            .run_worker(cmd, Some(&list))
            .map(drop)
            .map_err(|f| format!("creating the directories of {}: {f}", item.label))
    }

    /// `rsync -LKpt --inplace` (Barman's `-rLKpts --inplace`; `-s` comes with the runner).
    fn base(rsync: &Rsync, bwlimit: Option<u64>) -> std::process::Command {
        let mut runner = rsync.clone();
        if bwlimit.is_some() {
            runner.bwlimit = bwlimit;
        }
        let mut cmd = runner.command();
        cmd.args(["-LKpt", "--inplace"]);
        cmd
    }

    /// Runs the jobs on `workers` threads; the first failure stops the others taking more.
    fn run_jobs(
        &self,
        runners: &WorkerRunners,
        dirs: &[DirItem],
        jobs: Vec<Job>,
        timing: &mut Timing,
    ) -> Result<Stats, String> {
        let queue = Mutex::new(VecDeque::from(jobs));
        let result: Mutex<(Stats, Option<String>)> = Mutex::new((Stats::default(), None));
        let times: Mutex<&mut HashMap<usize, (Instant, Instant, Duration)>> = Mutex::new(&mut timing.copy);
        std::thread::scope(|scope| {
            for worker in 0..self.workers.max(1) {
                let (queue, result, times) = (&queue, &result, &times);
                scope.spawn(move || {
                    let (size, period) = self.start_batch;
                    if let Some(batch) = worker.checked_div(size) {
                        std::thread::sleep(period * u32::try_from(batch).unwrap_or(0));
                    }
                    loop {
                        if lock(result).1.is_some() {
                            return;
                        }
                        let Some(job) = lock(queue).pop_front() else { return };
                        let t0 = Instant::now();
                        let outcome = self.run_job(runners.get(worker), &dirs[job.item], &job);
                        record(&mut lock(times), job.item, t0);
                        let mut r = lock(result);
                        match outcome {
                            Ok(s) => r.0 += s,
                            Err(e) => {
                                r.1.get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        let (stats, error) = result.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        error.map_or(Ok(stats), Err)
    }

    /// One bucket, retried as `basebackup_retry_times` says.
    fn run_job(&self, rsync: &Rsync, item: &DirItem, job: &Job) -> Result<Stats, String> {
        let list = lines(&job.files);
        let mut attempt = 0;
        loop {
            let t0 = Instant::now();
            let mut cmd = Self::base(rsync, item.bwlimit);
            cmd.args(["--files-from=-", "--ignore-missing-args"]);
            if job.checksum {
                cmd.arg("--checksum");
            }
            if let Some(reuse) = &item.reuse {
                let how = if self.link { "link" } else { "copy" };
                cmd.arg(format!("--{how}-dest={}", reuse.display()));
            }
            cmd.arg(self.src_arg(item)).arg(self.dst_arg(item));
            match rsync.run_worker(cmd, Some(&list)) {
                Ok(stats) => {
                    debug(&format!(
                        "{}: rsync of {} files{} in {:.3}s, {} sent, {} bytes",
                        item.label,
                        job.files.len(),
                        if job.checksum { " with --checksum" } else { "" },
                        t0.elapsed().as_secs_f64(),
                        stats.files_transferred,
                        stats.bytes_received
                    ));
                    return Ok(stats);
                }
                Err(f) if attempt < self.retry.0 => {
                    attempt += 1;
                    tracing::warn!("rsync of {} failed (attempt {attempt}): {f}", item.label);
                    std::thread::sleep(self.retry.1);
                }
                Err(f) => return Err(format!("{}: {f}", item.label)),
            }
        }
    }

    fn copy_file(&self, rsync: &Rsync, f: &FileItem) -> Result<Stats, String> {
        let mut cmd = Self::base(rsync, None);
        if f.optional {
            cmd.arg("--ignore-missing-args");
        }
        cmd.arg(self.rsync.source(&f.src)).arg(&f.dst);
        rsync.run_worker(cmd, None).map_err(|e: Failure| format!("{}: {e}", f.label))
    }
}

/// A line of Barman's `barman.copy_controller` logger at DEBUG (timings per phase).
fn debug(msg: &str) {
    crate::log::debug("barman.copy_controller", msg);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn record(times: &mut HashMap<usize, (Instant, Instant, Duration)>, item: usize, t0: Instant) {
    let now = Instant::now();
    let e = times.entry(item).or_insert((t0, now, Duration::ZERO));
    e.0 = e.0.min(t0);
    e.1 = e.1.max(now);
    e.2 += now - t0;
}

/// Splits files into at most `n` buckets of about equal bytes (largest first, each to the
/// lightest bucket), dropping empty ones.
fn buckets(mut files: Vec<Entry>, n: usize) -> Vec<Vec<String>> {
    files.sort_by_key(|f| std::cmp::Reverse(f.size));
    let mut out: Vec<(u64, Vec<String>)> = vec![(0, Vec::new()); n.max(1)];
    for f in files {
        let lightest = out.iter_mut().min_by_key(|(bytes, _)| *bytes).expect("at least one bucket");
        lightest.0 += f.size.max(1);
        lightest.1.push(f.path);
    }
    out.into_iter().map(|(_, files)| files).filter(|f| !f.is_empty()).collect()
}

/// Relative path -> (size, mtime to the second, local time) of the regular files under `root`.
fn local_listing(root: &Path) -> HashMap<String, (u64, NaiveDateTime)> {
    let mut map = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for entry in rd.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let mtime = chrono::DateTime::from_timestamp(meta.mtime(), 0)
                    .map(|t| t.with_timezone(&chrono::Local).naive_local())
                    .unwrap_or_default();
                if let Ok(rel) = path.strip_prefix(root) {
                    map.insert(rel.to_string_lossy().into_owned(), (meta.len(), mtime));
                }
            }
        }
    }
    map
}

/// Barman's `copy_stats` dictionary.
fn statistics(
    dirs: &[DirItem],
    timing: &Timing,
    total: Duration,
    analysis: Duration,
    copy: Duration,
    workers: usize,
) -> Vec<(String, PyValue)> {
    let secs = |d: Duration| PyValue::Float((d.as_secs_f64() * 1e6).round() / 1e6);
    let dict =
        |pairs: Vec<(String, PyValue)>| PyValue::Dict(pairs.into_iter().map(|(k, v)| (PyValue::Str(k), v)).collect());
    let per_item = |f: &dyn Fn(&(Instant, Instant, Duration)) -> Duration| {
        dict(timing.copy.iter().map(|(i, t)| (dirs[*i].label.clone(), secs(f(t)))).collect())
    };
    let serialized: Duration = timing.copy.values().map(|t| t.2).sum();
    vec![
        ("total_time".into(), secs(total)),
        ("number_of_workers".into(), PyValue::Int(i64::try_from(workers).unwrap_or(1))),
        (
            "analysis_time_per_item".into(),
            dict(timing.analysis.iter().map(|(l, s)| (l.clone(), PyValue::Float((s * 1e6).round() / 1e6))).collect()),
        ),
        ("copy_time_per_item".into(), per_item(&|t| t.1 - t.0)),
        ("serialized_copy_time_per_item".into(), per_item(&|t| t.2)),
        ("analysis_time".into(), secs(analysis)),
        ("copy_time".into(), secs(copy)),
        ("serialized_copy_time".into(), secs(serialized)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, size: u64) -> Entry {
        Entry { path: path.into(), size, mtime: NaiveDateTime::default(), is_dir: false }
    }

    #[test]
    fn buckets_balance_bytes() {
        let files = vec![entry("a", 100), entry("b", 60), entry("c", 50), entry("d", 10), entry("e", 0)];
        let b = buckets(files, 2);
        assert_eq!(b, vec![vec!["a".to_string(), "d".into(), "e".into()], vec!["b".into(), "c".into()]]);
        assert_eq!(buckets(vec![entry("a", 1)], 4).len(), 1);
        assert!(buckets(Vec::new(), 3).is_empty());
    }
}
