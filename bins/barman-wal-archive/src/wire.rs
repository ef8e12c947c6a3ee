//! Whether to send plain files LZ4-framed (`put-wal --wire-lz4`, our server's extension).
//!
//! WAL compresses 5-7x with LZ4, and compressing it costs less CPU than ssh's encryption of
//! the bytes saved, so a segment reaches the backup host sooner. It is used only where it
//! changes nothing for the catalogue: for files the operator did not ask to compress
//! (with `-z`/`--lz4`... the compressed file is sent and stored as Barman does) and not in
//! `--md5` mode (meant for old servers). A server without the extension refuses the flag
//! before reading the stream; that is remembered in the client's private cache directory
//! for [`FORGET_AFTER`], so a real Barman on the other side costs one refused attempt per
//! hour, and an upgraded one is noticed within the hour.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cache_dir::safe_cache_dir;
use crate::cli::Options;

/// The remote flag.
pub const FLAG: &str = "--wire-lz4";
/// The marker of a server that refused [`FLAG`].
const UNSUPPORTED: &str = "put-wal-plain";
/// How long a refusal is remembered.
const FORGET_AFTER: Duration = Duration::from_hours(1);

/// The cache directory when the stream may go LZ4-framed, `None` when it goes as Barman's.
pub fn usable(opts: &Options) -> Option<PathBuf> {
    if opts.compression.is_some() || opts.md5 {
        return None;
    }
    let cache = safe_cache_dir(opts)?;
    let refused_recently = fs::metadata(cache.join(UNSUPPORTED))
        .and_then(|m| m.modified())
        .is_ok_and(|at| SystemTime::now().duration_since(at).is_ok_and(|age| age < FORGET_AFTER));
    (!refused_recently).then_some(cache)
}

/// Whether a failed exchange's remote stderr is the server refusing [`FLAG`] (argparse's
/// "unrecognized arguments", clap's "unexpected argument", a forced-command gate's "not
/// allowed": all name the flag).
pub fn refused(stderr: &str) -> bool {
    stderr.contains(FLAG)
}

/// Remembers that this server has no [`FLAG`]; best effort (without it, the next call tries
/// again).
pub fn remember_unsupported(cache: &Path) {
    let _ = fs::write(cache.join(UNSUPPORTED), b"");
}
