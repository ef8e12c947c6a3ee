//! The client's private cache directory (Barman's `/tmp/barman-SERVER-HASH`): the
//! sent-ahead cache of `parallel` and what `wire` learned about the server live there.

use std::path::PathBuf;

use barman_common::durable;
use barman_common::wire::{digest_hex, SumAlgo};

use crate::cli::Options;

/// Barman's default cache dir: `/tmp/barman-<SERVER>-<first 16 hex of sha256("HOST:PORT:CONFIG")>`.
fn default_cache_dir(opts: &Options) -> PathBuf {
    let port = opts.port.map_or_else(|| "None".to_owned(), |p| p.to_string());
    let key = format!("{}:{}:{}", opts.host, port, opts.config.as_deref().unwrap_or("None"));
    let hash = digest_hex(SumAlgo::Sha256, key.as_bytes());
    PathBuf::from(format!("/tmp/barman-{}-{}", opts.server, &hash[..16]))
}

/// The cache directory, created 0700, or `None` (with a warning) when it is unsafe: a
/// symlink, owned by someone else, or writable by group or others.
pub fn safe_cache_dir(opts: &Options) -> Option<PathBuf> {
    let dir = opts.cache_dir.clone().unwrap_or_else(|| default_cache_dir(opts));
    match durable::ensure_private_dir(&dir, 0o022) {
        Ok(()) => Some(dir),
        Err(why) => {
            eprintln!("WARNING: unsafe prefetch cache directory ({why}): parallel mode disabled");
            None
        }
    }
}
