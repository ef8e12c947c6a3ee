//! `barman-cloud-wal-restore`, as Barman's `CloudWalDownloader`: a WAL file already
//! prefetched into the spool is moved into place; otherwise the requested file is looked up
//! in its hash directory (a complete segment wins over its `.partial`; `--no-partial` skips
//! partial files; backup-history files are never returned), downloaded and decompressed to
//! `wal_dest`, and with `-p N` the next N-1 files of the same directory are fetched into the
//! spool at the same time, in parallel. Spool files appear under their final name only once
//! complete (written to a temporary name, fsynced, renamed), so a half file is never
//! delivered. A missing WAL file is exit 1, which PostgreSQL reads as "not archived".

use std::io::Write;
use std::path::{Path, PathBuf};

use barman_common::compress::{self, Codec};
use barman_common::wal::{WalFileKind, WalFileName};

use crate::error::CloudError;
use crate::layout::{split_wal_suffix, ServerKeys};
use crate::log;
use crate::store::{ConnectOptions, Store};

/// Barman's default spool directory.
pub const DEFAULT_SPOOL_DIR: &str = "/var/tmp/walrestore";

/// What to restore.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where from.
    pub connect: ConnectOptions,
    /// Barman server name.
    pub server: String,
    /// `%f`.
    pub wal_name: String,
    /// `%p`.
    pub wal_dest: PathBuf,
    /// `--no-partial`.
    pub no_partial: bool,
    /// `-p/--parallel`.
    pub parallel: usize,
    /// `--spool-dir`.
    pub spool_dir: PathBuf,
    /// `-t`.
    pub test: bool,
}

/// Runs the tool.
pub fn run(opts: &Options) -> Result<(), CloudError> {
    let wal: WalFileName = opts
        .wal_name
        .parse()
        .map_err(|_| CloudError::Usage(format!("{} is an invalid name for a WAL file", opts.wal_name)))?;
    let store = Store::open(&opts.connect)?;
    if opts.test {
        return store.test_connectivity();
    }
    if deliver_from_spool(&opts.spool_dir.join(&opts.wal_name), &opts.wal_dest)? {
        return Ok(());
    }
    let keys = ServerKeys::new(&store.url, &opts.server);
    let mut todo = candidates(&store, &keys, &wal, opts)?;
    if todo.first().is_none_or(|(_, name)| name != wal.as_str()) {
        return Err(CloudError::Failed(format!(
            "WAL file {} for server {} does not exist",
            opts.wal_name, opts.server
        )));
    }
    let (first, _) = todo.remove(0);
    if !todo.is_empty() {
        std::fs::create_dir_all(&opts.spool_dir)
            .map_err(|e| CloudError::Network(format!("Cannot create {} directory: {e}", opts.spool_dir.display())))?;
    }
    let store = &store;
    std::thread::scope(|s| {
        for (key, name) in &todo {
            let dest = opts.spool_dir.join(name);
            s.spawn(move || {
                if let Err(e) = download_atomic(store, key, &dest) {
                    log::error(&format!("Failure downloading WAL {key} to {}: {e}", dest.display()));
                }
            });
        }
        download(store, &first, &opts.wal_dest)
    })
}

/// Moves a prefetched file into place; `Ok(false)` if it is not in the spool.
fn deliver_from_spool(spooled: &Path, dest: &Path) -> Result<bool, CloudError> {
    if !spooled.is_file() {
        return Ok(false);
    }
    let moved = std::fs::rename(spooled, dest)
        .or_else(|_| std::fs::copy(spooled, dest).and_then(|_| std::fs::remove_file(spooled)));
    moved
        .map_err(|e| CloudError::Network(format!("Failure moving {} to {}: {e}", spooled.display(), dest.display())))?;
    Ok(true)
}

/// The objects to fetch: the requested one first (key, WAL name without `.partial`), then
/// up to `parallel - 1` following files of the same directory.
fn candidates(
    store: &Store,
    keys: &ServerKeys,
    wal: &WalFileName,
    opts: &Options,
) -> Result<Vec<(String, String)>, CloudError> {
    let dir = format!("{}/", keys.wal_dir(wal));
    let requested = format!("{dir}{}", wal.as_str());
    let parallel = if wal.kind() == WalFileKind::History { 0 } else { opts.parallel };
    let prefix = if parallel > 1 { dir.clone() } else { requested.clone() };
    let mut found: Vec<(String, String)> = Vec::new();
    let mut requested_found = false;
    for obj in store.list(&prefix)? {
        let base = obj.key.rsplit('/').next().unwrap_or_default();
        let (stem, _) = split_wal_suffix(base);
        let is_requested = stem == wal.as_str() || stem == format!("{}.partial", wal.as_str());
        if !(is_requested || (obj.key > requested && found.len() < parallel)) {
            continue;
        }
        let Ok(name) = stem.parse::<WalFileName>() else {
            log::warning(&format!("Unknown WAL file: {stem}"));
            continue;
        };
        match name.kind() {
            WalFileKind::Backup { .. } => continue,
            WalFileKind::Partial if opts.no_partial => continue,
            _ => {}
        }
        requested_found |= is_requested;
        found.push((obj.key.clone(), stem.trim_end_matches(".partial").to_owned()));
    }
    if !requested_found {
        return Ok(Vec::new());
    }
    // A segment and its .partial: the complete one wins (barman#1224).
    let complete: Vec<String> = found.iter().filter(|(k, _)| !k.contains(".partial")).map(|(_, n)| n.clone()).collect();
    found.retain(|(k, n)| !k.contains(".partial") || !complete.contains(n));
    found.sort_by(|a, b| (a.1 != wal.as_str(), &a.0).cmp(&(b.1 != wal.as_str(), &b.0)));
    Ok(found)
}

fn codec_of(key: &str) -> Option<Codec> {
    split_wal_suffix(key.rsplit('/').next().unwrap_or_default()).1
}

/// Downloads `key` to `dest`, decompressing on the way.
fn download(store: &Store, key: &str, dest: &Path) -> Result<(), CloudError> {
    let data = store.get(key)?.ok_or_else(|| CloudError::Failed(format!("WAL object {key} vanished")))?;
    let mut out = std::fs::File::create(dest).map_err(|e| CloudError::General(format!("{}: {e}", dest.display())))?;
    match codec_of(key) {
        None => out.write_all(&data)?,
        Some(codec) => {
            compress::decompress(codec, data.as_ref(), &mut out)?;
        }
    }
    out.sync_all()?;
    Ok(())
}

/// [`download`] to a temporary name beside `dest`, then renamed.
fn download_atomic(store: &Store, key: &str, dest: &Path) -> Result<(), CloudError> {
    let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
    let r = download(store, key, &tmp).and_then(|()| std::fs::rename(&tmp, dest).map_err(CloudError::from));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}
