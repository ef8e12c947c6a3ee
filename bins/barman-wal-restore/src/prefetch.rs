//! The continuous prefetcher. Every invocation with `-p JOBS` records the requested name in
//! `<spool>/.requested` and makes sure one background prefetcher runs for the spool (a
//! `flock` on `<spool>/.prefetch.lock`). The prefetcher keeps the JOBS-1 segments after the
//! latest request in the spool and follows new requests as Postgres makes them; it exits
//! after a few idle seconds.
//!
//! Against our `barman`, each refill is one `get-wal --batch` round trip carrying many
//! segments, each published in the spool as soon as it is verified; against a server without
//! that extension (real Barman) it falls back to one `get-wal` per file, all in parallel.
//!
//! A call that misses the spool does not fetch by itself while a prefetcher runs (or can be
//! started): it marks the segment as waited for, and the prefetcher fetches it first, with
//! the following ones behind it in the same stream. When the server does not have it, the
//! prefetcher says so (`.missing`) and the call falls back to a direct get-wal, which reports
//! "not found" with Barman's exit code.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use barman_common::wal::{WalFileName, WalSegSize};
use nix::fcntl::{Flock, FlockArg};

use crate::batch::fetch_batch;
use crate::cli::{daemon_args, Options};
use crate::error::ToolError;
use crate::fetch::{fetch_verified, peek};
use crate::spool;

const REQUESTED: &str = ".requested";
const LOCK: &str = ".prefetch.lock";
const NO_BATCH: &str = ".no-batch";
const WAITING: &str = ".waiting";
const MISSING: &str = ".missing";
/// How long a call waits for a prefetcher it just started to take its lock.
const STARTUP_GRACE: Duration = Duration::from_millis(500);
const AWAIT_LIMIT: Duration = Duration::from_secs(30);
const IDLE_EXIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);
/// How long the prefetcher waits before asking again for a segment the server did not have.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Files asked for in one `--batch` stream; flow control, not this, bounds the spool.
const STREAM_MAX: usize = 4096;

/// Creates the spool directory (one level, 0700), as Barman's client does. A spool we chose
/// ourselves must also be private (ours, not a symlink, closed to others), since it lives in
/// the shared `/var/tmp`.
pub fn ensure_spool(opts: &Options) -> Result<(), ToolError> {
    if opts.auto_spool {
        return barman_common::durable::ensure_private_dir(&opts.spool_dir, 0o077)
            .map_err(|why| ToolError::Spool { dir: opts.spool_dir.clone(), source: std::io::Error::other(why) });
    }
    match fs::DirBuilder::new().mode(0o700).create(&opts.spool_dir) {
        Ok(()) => Ok(()),
        Err(_) if opts.spool_dir.is_dir() => Ok(()),
        Err(source) => Err(ToolError::Spool { dir: opts.spool_dir.clone(), source }),
    }
}

/// Records the request and starts the prefetcher if none runs; true when it started one.
pub fn request(opts: &Options) -> bool {
    // A hint for the prefetcher, not data: no fsync on Postgres's critical path.
    let tmp = opts.spool_dir.join(format!(".requested.{}", std::process::id()));
    if fs::write(&tmp, opts.wal_name.as_bytes()).is_ok() {
        let _ = fs::rename(&tmp, opts.spool_dir.join(REQUESTED));
    }
    if prefetcher_running(&opts.spool_dir) {
        return false;
    }
    std::env::current_exe().is_ok_and(|exe| {
        Command::new(exe)
            .args(daemon_args(opts))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .is_ok()
    })
}

fn lock_file(spool: &Path) -> Option<fs::File> {
    OpenOptions::new().create(true).truncate(false).write(true).open(spool.join(LOCK)).ok()
}

fn prefetcher_running(spool: &Path) -> bool {
    let Some(file) = lock_file(spool) else { return false };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err()
}

fn requested(spool: &Path) -> Option<WalFileName> {
    fs::read_to_string(spool.join(REQUESTED)).ok()?.trim().parse().ok().filter(WalFileName::is_segment)
}

/// Whether the server lacks `get-wal --batch` (learned once per spool).
fn batch_unsupported(spool: &Path) -> bool {
    spool.join(NO_BATCH).exists()
}

/// Fetches segments from `first` on into the spool. Against our server: one `get-wal
/// --batch` stream, kept open while `more` (called after each published file) says so;
/// against a server without that extension: up to `n` files, one get-wal each in parallel
/// after a peek.
pub fn fill(
    opts: &Options,
    first: &str,
    n: usize,
    more: &mut dyn FnMut(&str) -> bool,
) -> Result<Vec<String>, ToolError> {
    spool::claim(&opts.spool_dir).map_err(ToolError::local(&opts.spool_dir))?;
    if !batch_unsupported(&opts.spool_dir) {
        match fetch_batch(opts, first, STREAM_MAX.max(n), &opts.spool_dir, more) {
            Err(ToolError::Remote(2)) => {
                let _ = fs::write(opts.spool_dir.join(NO_BATCH), "");
            }
            other => return other,
        }
    }
    let names = peek(opts, first, n)?;
    let results: Vec<bool> = thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                s.spawn(move || fetch_verified(opts, name, &opts.spool_dir, &opts.spool_dir.join(name)).is_ok())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(false)).collect()
    });
    Ok(names.into_iter().zip(results).take_while(|(_, ok)| *ok).map(|(n, _)| n).collect())
}

/// A spool miss: rather than fetching the segment here, in parallel with (or ahead of) the
/// prefetcher's stream, ask the prefetcher for it, starting one if needed; it fetches a
/// waited-for segment first. Returns true once the segment is in the spool; false, and the
/// caller fetches by itself, when the prefetcher reports it missing, stops, or cannot start.
pub fn await_prefetch(opts: &Options) -> bool {
    let _ = fs::write(opts.spool_dir.join(WAITING), opts.wal_name.as_bytes());
    let started = request(opts);
    let (spooled, start) = (opts.spool_dir.join(&opts.wal_name), Instant::now());
    while start.elapsed() < AWAIT_LIMIT {
        if spooled.is_file() {
            return true;
        }
        if reported_missing(&opts.spool_dir, &opts.wal_name) {
            return false;
        }
        let starting = started && start.elapsed() < STARTUP_GRACE;
        if !starting && !prefetcher_running(&opts.spool_dir) {
            return spooled.is_file();
        }
        thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Withdraws this call's wait once it got its segment, so the prefetcher does not fetch a
/// segment again that was delivered and consumed meanwhile.
pub fn done_waiting(opts: &Options) {
    let waiting = opts.spool_dir.join(WAITING);
    if fs::read_to_string(&waiting).is_ok_and(|w| w.trim() == opts.wal_name) {
        let _ = fs::remove_file(waiting);
    }
}

/// Drops the wait marker when it names a segment just delivered: the caller finds it in
/// the spool (or already took it), and a stale marker would make this prefetcher fetch a
/// consumed segment again.
fn withdraw_wait_for(spool: &Path, delivered: &[String]) {
    let waiting = spool.join(WAITING);
    if fs::read_to_string(&waiting).is_ok_and(|w| delivered.iter().any(|d| d == w.trim())) {
        let _ = fs::remove_file(waiting);
    }
}

fn reported_missing(spool: &Path, wal: &str) -> bool {
    fs::read_to_string(spool.join(MISSING)).is_ok_and(|m| m.trim() == wal)
}

/// The segment a foreground call is waiting for, if it is the current request and not
/// spooled yet.
fn waited_for(spool: &Path, req: &WalFileName) -> bool {
    let waiting = fs::read_to_string(spool.join(WAITING)).unwrap_or_default();
    waiting.trim() == req.as_str() && !spool.join(req.as_str()).exists() && !reported_missing(spool, req.as_str())
}

/// What the prefetcher delivered last, and when.
struct Progress {
    at: Instant,
    /// The last segment delivered: the request file may lag behind Postgres, and a segment
    /// already consumed from the spool must not be fetched again.
    high: Option<WalFileName>,
}

impl Progress {
    fn delivered(&mut self, name: &str) {
        self.at = Instant::now();
        self.high = name.parse().ok();
    }
}

/// The prefetcher's main loop (runs detached from Postgres's process group). Each round
/// opens one stream from the segment a call waits for, or from after the last one spooled,
/// and keeps it open while Postgres consumes: the spool holds up to JOBS-1 segments ahead of
/// the latest request, and when it is full the prefetcher stops reading, so the server
/// blocks on the full pipe instead of racing ahead.
pub fn daemon(opts: &Options) {
    if run_locked(opts) {
        discard_unclaimed(&opts.spool_dir);
    }
}

/// The prefetcher's loop, under the spool's lock; false when another prefetcher has it.
fn run_locked(opts: &Options) -> bool {
    let Some(file) = lock_file(&opts.spool_dir) else { return false };
    let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else { return false };
    if spool::claim(&opts.spool_dir).is_err() {
        return false;
    }
    let window = opts.parallel.saturating_sub(1).max(1);
    let mut progress = Progress { at: Instant::now(), high: None };
    while progress.at.elapsed() < IDLE_EXIT {
        let Some(req) = requested(&opts.spool_dir) else { break };
        discard_stale(&opts.spool_dir, req.as_str());
        let waited = waited_for(&opts.spool_dir, &req);
        let start = if waited {
            Some((req.clone(), window + 1))
        } else {
            refill_start(&opts.spool_dir, &req, window, progress.high.as_ref())
        };
        let Some((start, n)) = start else {
            thread::sleep(POLL);
            continue;
        };
        let got = fill(opts, start.as_str(), n, &mut |name| keep_streaming(opts, window, name, &mut progress));
        match got {
            Ok(got) if got.first().map(String::as_str) == Some(start.as_str()) => {
                progress.delivered(got.last().expect("got is not empty"));
                withdraw_wait_for(&opts.spool_dir, &got);
            }
            _ if waited => {
                let _ = fs::write(opts.spool_dir.join(MISSING), req.as_str());
                thread::sleep(POLL);
            }
            // Nothing there yet (the end of the archive, or a standby ahead of it): ask
            // again after a pause, or as soon as PostgreSQL asks for something.
            _ => wait_for_news(&opts.spool_dir, &req, RETRY_PAUSE),
        }
    }
    true
}

/// On the way out, with the lock released: once PostgreSQL has not asked for anything for
/// [`IDLE_EXIT`] (recovery ended, or stopped at its target), the segments fetched ahead
/// will not be asked for; they are a cache, removed rather than left behind in `/var/tmp`
/// (a later call fetches what it needs). A request meanwhile leaves them to the prefetcher
/// it starts.
fn discard_unclaimed(spool: &Path) {
    let age = || fs::metadata(spool.join(REQUESTED)).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    let Some(first) = age() else { return };
    if first < IDLE_EXIT {
        thread::sleep(IDLE_EXIT.saturating_sub(first));
        if age().is_none_or(|a| a < IDLE_EXIT) || prefetcher_running(spool) {
            return;
        }
    }
    let Ok(rd) = fs::read_dir(spool) else { return };
    for e in rd.filter_map(Result::ok) {
        if e.file_name().to_str().is_some_and(|n| n.parse::<WalFileName>().is_ok()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Sleeps up to `limit`, returning early when PostgreSQL makes a new request or a call
/// waits for a segment not yet reported missing.
fn wait_for_news(spool: &Path, req: &WalFileName, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        thread::sleep(POLL);
        let now = requested(spool);
        if now.as_ref() != Some(req) || now.is_some_and(|r| waited_for(spool, &r)) {
            return;
        }
    }
}

/// Where to start a refill and how many files to ask for (when not streaming), or `None`
/// while more than half the window is still spooled: each round trip should carry several
/// segments, not one per request.
fn refill_start(
    spool: &Path,
    req: &WalFileName,
    window: usize,
    high: Option<&WalFileName>,
) -> Option<(WalFileName, usize)> {
    let ahead = spooled_after(spool, req);
    let size = segment_size(spool, &ahead)?;
    let last = [ahead.last(), high, Some(req)].into_iter().flatten().max().cloned().unwrap_or_else(|| req.clone());
    let count = segments_between(req, &last, size, window + 1);
    if count > window / 2 {
        return None;
    }
    Some((last.next_segment(size).ok()?, window - count))
}

/// Flow control of a stream, called after each published file: waits while the spool holds
/// a full window ahead of the latest request, and stops the stream when a call waits for a
/// segment this stream will not bring, or when nobody consumed anything for a while.
fn keep_streaming(opts: &Options, window: usize, name: &str, progress: &mut Progress) -> bool {
    progress.delivered(name);
    let spool = &opts.spool_dir;
    loop {
        let Some(req) = requested(spool) else { return false };
        if waited_for(spool, &req) && progress.high.as_ref().is_some_and(|h| &req <= h) {
            return false;
        }
        if spooled_after(spool, &req).len() < window {
            return true;
        }
        if progress.at.elapsed() >= IDLE_EXIT {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// How many segments follow `from` up to and including `to`, counting at most `limit`.
fn segments_between(from: &WalFileName, to: &WalFileName, size: WalSegSize, limit: usize) -> usize {
    let (mut n, mut cur) = (0, from.clone());
    while n < limit && &cur < to {
        let Ok(next) = cur.next_segment(size) else { break };
        (n, cur) = (n + 1, next);
    }
    n
}

/// Complete segments in the spool after `req`, in order.
fn spooled_after(spool: &Path, req: &WalFileName) -> Vec<WalFileName> {
    let Ok(rd) = fs::read_dir(spool) else { return Vec::new() };
    let mut names: Vec<WalFileName> = rd
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<WalFileName>().ok())
        .filter(|n| n.is_segment() && n.timeline() == req.timeline() && n > req)
        .collect();
    names.sort();
    names
}

/// The segment size, learned from a spooled segment (a complete segment's length), or
/// recorded from a segment restored directly; `None` until one is known.
fn segment_size(spool: &Path, spooled: &[WalFileName]) -> Option<WalSegSize> {
    if let Some(md) = spooled.first().and_then(|n| fs::metadata(spool.join(n.as_str())).ok()) {
        return WalSegSize::new(md.len()).ok();
    }
    let text = fs::read_to_string(spool.join(".segsize")).ok()?;
    WalSegSize::new(text.trim().parse().ok()?).ok()
}

/// Records the segment size for the prefetcher (from a restored segment's length).
pub fn remember_segment_size(spool: &Path, dest: &Path) {
    if spool.join(".segsize").exists() {
        return;
    }
    if let Ok(md) = fs::metadata(dest) {
        if WalSegSize::new(md.len()).is_ok() {
            let _ = fs::write(spool.join(".segsize"), md.len().to_string());
        }
    }
}

/// Removes spool files that sort before the current request: Postgres will not ask for them.
fn discard_stale(spool: &Path, req: &str) {
    let Ok(rd) = fs::read_dir(spool) else { return };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && name.len() == 24 && name.as_str() < req {
            let _ = fs::remove_file(e.path());
        }
    }
}
