//! The continuous prefetcher. Every invocation with `-p JOBS` records the requested name in
//! `<spool>/.requested` and makes sure one background prefetcher runs for the spool (a
//! `flock` on `<spool>/.prefetch.lock`). The prefetcher keeps the JOBS-1 segments after the
//! latest request in the spool and follows new requests as Postgres makes them; it exits
//! after a few idle seconds.
//!
//! Against our `barman`, each refill is one `get-wal --batch` round trip carrying many
//! segments; against a server without that extension (real Barman) it falls back to one
//! `get-wal` per file, all in parallel.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use barman_common::wal::{WalFileName, WalSegSize};
use nix::fcntl::{Flock, FlockArg};

use crate::cli::daemon_args;
use crate::fetch::{fetch_batch, fetch_verified, peek};
use crate::{Options, ToolError};

const REQUESTED: &str = ".requested";
const LOCK: &str = ".prefetch.lock";
const NO_BATCH: &str = ".no-batch";
const WAITING: &str = ".waiting";
const AWAIT_LIMIT: Duration = Duration::from_secs(30);
const IDLE_EXIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

/// Creates the spool directory (one level, 0700), as Barman's client does.
pub fn ensure_spool(opts: &Options) -> Result<(), ToolError> {
    match fs::DirBuilder::new().mode(0o700).create(&opts.spool_dir) {
        Ok(()) => Ok(()),
        Err(_) if opts.spool_dir.is_dir() => Ok(()),
        Err(e) => Err(ToolError::Local(format!("Cannot create '{}' directory: {e}", opts.spool_dir.display()))),
    }
}

/// Records the request and starts the prefetcher if none runs.
pub fn request(opts: &Options) {
    // A hint for the prefetcher, not data: no fsync on Postgres's critical path.
    let tmp = opts.spool_dir.join(format!(".requested.{}", std::process::id()));
    if fs::write(&tmp, opts.wal_name.as_bytes()).is_ok() {
        let _ = fs::rename(&tmp, opts.spool_dir.join(REQUESTED));
    }
    if prefetcher_running(&opts.spool_dir) {
        return;
    }
    if let Ok(exe) = std::env::current_exe() {
        let _ = Command::new(exe)
            .args(daemon_args(opts))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
    }
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

/// Fetches up to `n` segments from `first` on into the spool: one batch round trip when the
/// server supports it, otherwise one get-wal per file in parallel after a peek.
pub fn fill(opts: &Options, first: &str, n: usize) -> Result<Vec<String>, ToolError> {
    if !batch_unsupported(&opts.spool_dir) {
        match fetch_batch(opts, first, n, &opts.spool_dir) {
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

/// A spool miss while the prefetcher runs: rather than fetching the same segment a second
/// time in parallel with the prefetcher's batch in flight, ask the prefetcher for it (it
/// fetches a waited-for segment first) and wait until it lands. Returns false, and the caller
/// fetches by itself, when no prefetcher runs or it stops.
pub fn await_prefetch(opts: &Options) -> bool {
    if !prefetcher_running(&opts.spool_dir) {
        return false;
    }
    let _ = fs::write(opts.spool_dir.join(WAITING), opts.wal_name.as_bytes());
    request(opts);
    let (spooled, start) = (opts.spool_dir.join(&opts.wal_name), Instant::now());
    while start.elapsed() < AWAIT_LIMIT {
        if spooled.is_file() {
            return true;
        }
        if !prefetcher_running(&opts.spool_dir) {
            return spooled.is_file();
        }
        thread::sleep(Duration::from_millis(2));
    }
    false
}

/// The segment a foreground call is waiting for, if it is the current request and not
/// spooled yet.
fn waited_for(spool: &Path, req: &WalFileName) -> bool {
    let waiting = fs::read_to_string(spool.join(WAITING)).unwrap_or_default();
    waiting.trim() == req.as_str() && !spool.join(req.as_str()).exists()
}

/// The prefetcher's main loop (runs detached from Postgres's process group).
pub fn daemon(opts: &Options) {
    let Some(file) = lock_file(&opts.spool_dir) else { return };
    let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else { return };
    let window = opts.parallel.saturating_sub(1).max(1);
    let mut last_progress = Instant::now();
    while last_progress.elapsed() < IDLE_EXIT {
        let Some(req) = requested(&opts.spool_dir) else { break };
        discard_stale(&opts.spool_dir, req.as_str());
        let ahead = spooled_after(&opts.spool_dir, &req);
        let Some(size) = segment_size(&opts.spool_dir, &ahead) else {
            thread::sleep(POLL);
            continue;
        };
        if waited_for(&opts.spool_dir, &req) {
            match fill(opts, req.as_str(), window + 1) {
                Ok(got) if !got.is_empty() => last_progress = Instant::now(),
                _ => thread::sleep(POLL * 10),
            }
            continue;
        }
        let (count, last) = (ahead.len(), ahead.last().cloned().unwrap_or_else(|| req.clone()));
        // Refill in batches: wait until half the window is consumed, so each round trip
        // carries several segments instead of one per request.
        if count > window / 2 {
            thread::sleep(POLL);
            continue;
        }
        let Ok(next) = last.next_segment(size) else { break };
        match fill(opts, next.as_str(), window - count) {
            Ok(got) if !got.is_empty() => last_progress = Instant::now(),
            _ => thread::sleep(POLL * 10),
        }
    }
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
