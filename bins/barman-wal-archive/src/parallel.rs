//! Parallel mode (`-p N`): also archive the following segments whose `.ready` marker is
//! already in `archive_status/`, and remember the last one in a cache so that Postgres's
//! later calls for them return at once.
//!
//! The cache file `<dir>/wal-last-archived` is written only after the remote put-wal
//! succeeded, i.e. after every file in it is durable on the backup host.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use barman_common::durable;
use barman_common::wal::{WalFileName, WalSegSize};
use barman_common::wire::{digest_hex, SumAlgo};

use crate::cli::Options;
use crate::error::ToolError;
use crate::send::send_files;

const CACHE_FILE: &str = "wal-last-archived";

/// Barman's default cache dir: `/tmp/barman-<SERVER>-<first 16 hex of sha256("HOST:PORT:CONFIG")>`.
fn default_cache_dir(opts: &Options) -> PathBuf {
    let port = opts.port.map_or_else(|| "None".to_owned(), |p| p.to_string());
    let key = format!("{}:{}:{}", opts.host, port, opts.config.as_deref().unwrap_or("None"));
    let hash = digest_hex(SumAlgo::Sha256, key.as_bytes());
    PathBuf::from(format!("/tmp/barman-{}-{}", opts.server, &hash[..16]))
}

/// The cache directory, created 0700, or `None` (with a warning) when it is unsafe: a
/// symlink, owned by someone else, or writable by group or others.
fn safe_cache_dir(opts: &Options) -> Option<PathBuf> {
    let dir = opts.cache_dir.clone().unwrap_or_else(|| default_cache_dir(opts));
    let _ = fs::DirBuilder::new().mode(0o700).create(&dir);
    let md = fs::symlink_metadata(&dir).ok()?;
    let uid = durable::current_euid();
    if md.file_type().is_symlink() || !md.is_dir() || md.uid() != uid || md.mode() & 0o022 != 0 {
        eprintln!("WARNING: unsafe prefetch cache directory {}: parallel mode disabled", dir.display());
        return None;
    }
    Some(dir)
}

/// Runs parallel mode for a plain segment; other files go through the normal path.
pub fn archive(opts: &Options) -> Result<(), ToolError> {
    let name = opts.wal_path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<WalFileName>().ok());
    let (Some(name), Some(cache)) = (name.filter(WalFileName::is_segment), safe_cache_dir(opts)) else {
        return send_files(opts, std::slice::from_ref(&opts.wal_path));
    };
    let cached = fs::read_to_string(cache.join(CACHE_FILE)).unwrap_or_default();
    if !cached.is_empty() && name.as_str() <= cached.trim() {
        return Ok(());
    }
    let mut batch = vec![opts.wal_path.clone()];
    batch.extend(ready_candidates(opts, &name));
    if batch.len() > 1 && send_files(opts, &batch).is_ok() {
        return write_cache(&cache, batch.last().expect("batch is not empty"));
    }
    send_files(opts, std::slice::from_ref(&opts.wal_path))
}

/// Up to N-1 following segments that have a `.ready` marker; the scan stops at the first
/// missing marker, and a marker whose file is gone is skipped.
fn ready_candidates(opts: &Options, first: &WalFileName) -> Vec<PathBuf> {
    let dir = opts.wal_path.parent().unwrap_or(Path::new("."));
    let Some(size) = fs::metadata(&opts.wal_path).ok().and_then(|m| WalSegSize::new(m.len()).ok()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut next = first.clone();
    while out.len() + 1 < opts.parallel {
        let Ok(n) = next.next_segment(size) else { break };
        next = n;
        if !dir.join("archive_status").join(format!("{next}.ready")).exists() {
            break;
        }
        let path = dir.join(next.as_str());
        if path.is_file() {
            out.push(path);
        }
    }
    out
}

fn write_cache(cache: &Path, last: &Path) -> Result<(), ToolError> {
    let name = last.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    durable::write_replace(&cache.join(CACHE_FILE), name.as_bytes(), 0o600)?;
    Ok(())
}
