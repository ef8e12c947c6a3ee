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

/// The cache directory for a call that may frame its stream (see [`usable`]), `None` for
/// one that goes as Barman's client sends it.
pub fn cache_dir(opts: &Options) -> Option<PathBuf> {
    wanted(opts).then(|| safe_cache_dir(opts)).flatten()
}

/// Whether the stream goes LZ4-framed: plain files, not `--md5`, and no refusal by this
/// server remembered in `cache` within [`FORGET_AFTER`].
pub fn usable(opts: &Options, cache: &Path) -> bool {
    wanted(opts)
        && !fs::metadata(cache.join(UNSUPPORTED))
            .and_then(|m| m.modified())
            .is_ok_and(|at| SystemTime::now().duration_since(at).is_ok_and(|age| age < FORGET_AFTER))
}

/// Files the operator did not ask to compress, outside `--md5` mode.
fn wanted(opts: &Options) -> bool {
    opts.compression.is_none() && !opts.md5
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
