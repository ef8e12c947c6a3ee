//! Batching the archive backlog. When PostgreSQL falls behind, `archive_status/` holds a
//! `.ready` marker for every complete segment still to archive; the call for the oldest one
//! sends the following ready segments in the same stream (one ssh session, one remote
//! `put-wal`, which acknowledges only once every file is durable on the backup host).
//!
//! How many: `-p N` (Barman's option) means up to N segments per call; without `-p` the
//! batch is sized automatically ([`AUTO_BATCH`]); `-p 0` or `-p 1` turns it off.
//!
//! PostgreSQL still asks for each segment sent ahead, and is answered from a small cache in
//! a private directory: the segments sent, each with the identity of the file that was sent
//! (inode, size, modification time). A segment is confirmed without sending only when the
//! file PostgreSQL names is still that file; anything else (a new cluster reusing the
//! names, a recycled file, a lost or torn cache) is sent again, which put-wal accepts when
//! identical. Barman's own cache (`wal-last-archived`, a name compared by order) is not
//! used: a new cluster reusing lower names would be skipped by it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use barman_common::wal::{WalFileName, WalSegSize};

use crate::cache_dir::safe_cache_dir;
use crate::cli::Options;
use crate::error::ToolError;
use crate::send::send_files;

/// The cache of segments sent ahead.
const CACHE_FILE: &str = "wal-sent-ahead";
/// Segments per call when `-p` is not given: 256 MiB of 16 MiB segments per stream.
pub const AUTO_BATCH: usize = 16;

/// How many segments one call may send: `-p N`, or [`AUTO_BATCH`] without `-p`.
pub fn batch_size(opts: &Options) -> usize {
    opts.parallel.unwrap_or(AUTO_BATCH)
}

/// What identifies the file that was sent under a name.
#[derive(Debug, PartialEq, Eq)]
struct Sent {
    name: String,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Sent {
    fn of(path: &Path) -> Option<Sent> {
        let md = fs::metadata(path).ok()?;
        let name = path.file_name()?.to_str()?.to_owned();
        let mtime_ns = i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec());
        Some(Sent { name, ino: md.ino(), size: md.len(), mtime_ns })
    }

    fn line(&self) -> String {
        format!("{} {} {} {}\n", self.name, self.ino, self.size, self.mtime_ns)
    }

    fn parse(line: &str) -> Option<Sent> {
        let mut w = line.split_ascii_whitespace();
        let sent = Sent {
            name: w.next()?.to_owned(),
            ino: w.next()?.parse().ok()?,
            size: w.next()?.parse().ok()?,
            mtime_ns: w.next()?.parse().ok()?,
        };
        w.next().is_none().then_some(sent)
    }
}

/// Whether `path` is a file this cache says was sent and acknowledged, unchanged since.
fn already_sent(cache: &Path, path: &Path) -> bool {
    let Some(now) = Sent::of(path) else { return false };
    let text = fs::read_to_string(cache.join(CACHE_FILE)).unwrap_or_default();
    text.lines().filter_map(Sent::parse).any(|s| s == now)
}

/// Archives a segment with the backlog behind it; other files (history, backup labels,
/// partials) and unsafe cache directories go through the plain path.
pub fn archive(opts: &Options) -> Result<(), ToolError> {
    let name = opts.wal_path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<WalFileName>().ok());
    let cache = safe_cache_dir(opts);
    let (Some(name), Some(cache)) = (name.filter(WalFileName::is_segment), cache.as_deref()) else {
        return send_files(opts, std::slice::from_ref(&opts.wal_path), cache.as_deref());
    };
    if already_sent(cache, &opts.wal_path) {
        return Ok(());
    }
    let mut batch = vec![opts.wal_path.clone()];
    batch.extend(ready_candidates(opts, &name));
    if batch.len() > 1 {
        // Identities taken before sending: a file changed meanwhile will not match later.
        let sent: Vec<Sent> = batch[1..].iter().filter_map(|p| Sent::of(p)).collect();
        if send_files(opts, &batch, Some(cache)).is_ok() {
            write_cache(cache, &sent);
            return Ok(());
        }
    }
    send_files(opts, std::slice::from_ref(&opts.wal_path), Some(cache))
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
    while out.len() + 1 < batch_size(opts) {
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

/// Replaces the cache (temp file + rename). Not fsynced: a cache lost in a crash only means
/// those segments are sent again, and a torn one matches nothing.
fn write_cache(cache: &Path, sent: &[Sent]) {
    let text: String = sent.iter().map(Sent::line).collect();
    let tmp = cache.join(format!(".{CACHE_FILE}.{}", std::process::id()));
    if fs::write(&tmp, text).is_ok() && fs::rename(&tmp, cache.join(CACHE_FILE)).is_err() {
        let _ = fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_lines_round_trip_and_reject_garbage() {
        let s = Sent { name: "000000010000000000000003".into(), ino: 42, size: 16 << 20, mtime_ns: 1_700_000_000_123 };
        assert_eq!(Sent::parse(&s.line()), Some(s));
        assert_eq!(Sent::parse("000000010000000000000003 42 16777216"), None);
        assert_eq!(Sent::parse("000000010000000000000003 42 x 1"), None);
        assert_eq!(Sent::parse("000000010000000000000003 42 1 1 extra"), None);
    }
}
