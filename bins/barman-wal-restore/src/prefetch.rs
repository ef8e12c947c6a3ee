//! The continuous prefetcher. Every invocation with `-p JOBS` records the requested name in
//! `<spool>/.requested` and makes sure one background prefetcher runs for the spool (a
//! `flock` on `<spool>/.prefetch.lock`). The prefetcher keeps the JOBS-1 files after the
//! latest request in the spool, fetching them concurrently, and follows new requests as
//! Postgres makes them; it exits after a few idle seconds.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::cli::daemon_args;
use crate::fetch::{fetch_verified, peek};
use crate::Options;

const REQUESTED: &str = ".requested";
const LOCK: &str = ".prefetch.lock";
const IDLE_EXIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// Records the request and starts the prefetcher if none runs. Failures only cost speed.
pub fn request(opts: &Options) {
    if fs::DirBuilder::new().mode(0o700).create(&opts.spool_dir).is_err() && !opts.spool_dir.is_dir() {
        return;
    }
    let _ = barman_common::durable::write_replace(&opts.spool_dir.join(REQUESTED), opts.wal_name.as_bytes(), 0o600);
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

fn requested(spool: &Path) -> Option<String> {
    fs::read_to_string(spool.join(REQUESTED)).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The prefetcher's main loop (runs detached from Postgres's process group).
pub fn daemon(opts: &Options) {
    let Some(file) = lock_file(&opts.spool_dir) else { return };
    let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else { return };
    let mut last_work = Instant::now();
    let mut served: Option<String> = None;
    while last_work.elapsed() < IDLE_EXIT {
        let Some(req) = requested(&opts.spool_dir) else { break };
        if served.as_deref() == Some(req.as_str()) {
            thread::sleep(POLL);
            continue;
        }
        discard_stale(&opts.spool_dir, &req);
        if fill_window(opts, &req) {
            last_work = Instant::now();
        }
        served = Some(req);
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

/// Fetches the available files after `req` that are not spooled yet, JOBS-1 at a time in
/// parallel. Returns whether anything new is available.
fn fill_window(opts: &Options, req: &str) -> bool {
    let Ok(names) = peek(opts, req, opts.parallel) else { return false };
    let todo: Vec<String> = names.into_iter().skip(1).filter(|n| !opts.spool_dir.join(n).exists()).collect();
    thread::scope(|s| {
        for name in &todo {
            s.spawn(move || {
                let _ = fetch_verified(opts, name, &opts.spool_dir, &opts.spool_dir.join(name));
            });
        }
    });
    !todo.is_empty()
}
