//! `barman-cloud-wal-archive`: one WAL file (or history/backup-history file) into the
//! bucket, compressed in memory as Barman does, under
//! `<path>/<server>/wals/<hash dir>/<name><suffix>`. Success is returned only once the
//! store acknowledged the PUT, so PostgreSQL never recycles a segment that is not stored.
//! As a `pre_archive_script` / `pre_archive_retry_script` hook (`BARMAN_HOOK`,
//! `BARMAN_PHASE`), the file comes from `BARMAN_FILE`.

use std::path::{Path, PathBuf};

use barman_common::compress::{self, Codec, Level};
use barman_common::wal::{WalFileKind, WalFileName};
use bytes::Bytes;

use crate::error::CloudError;
use crate::layout::ServerKeys;
use crate::store::{ConnectOptions, Store};

/// What to archive and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where.
    pub connect: ConnectOptions,
    /// Barman server name.
    pub server: String,
    /// `%p` (`None` when run as a hook script).
    pub wal_path: Option<PathBuf>,
    /// `-z/-j/--xz/--snappy/--zstd/--lz4`.
    pub compression: Option<Codec>,
    /// `--compression-level`.
    pub level: Level,
    /// `--history-tags`/`--history-tag`: tags for history files instead of `--tags`.
    pub history_tags: Vec<(String, String)>,
    /// `-t`.
    pub test: bool,
}

/// The file to archive: `%p`, or `BARMAN_FILE` when called as a pre-archive hook script.
fn wal_path(opts: &Options) -> Result<PathBuf, CloudError> {
    match (std::env::var("BARMAN_HOOK"), std::env::var("BARMAN_PHASE")) {
        (Ok(hook), Ok(phase)) => {
            if !matches!(hook.as_str(), "archive_script" | "archive_retry_script") || phase != "pre" {
                return Err(CloudError::General(format!(
                    "barman-cloud-wal-archive called as unsupported hook script: {phase}_{hook}"
                )));
            }
            std::env::var_os("BARMAN_FILE")
                .map(PathBuf::from)
                .ok_or_else(|| CloudError::General("Expected environment variable BARMAN_FILE not set".into()))
        }
        _ => opts
            .wal_path
            .clone()
            .ok_or_else(|| CloudError::General("the following arguments are required: wal_path".into())),
    }
}

/// Parses the WAL name of `path` (exit 3 if it is not one).
pub fn wal_name(path: &Path) -> Result<WalFileName, CloudError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.parse().map_err(|_| CloudError::Usage(format!("{} is an invalid name for a WAL file", path.display())))
}

/// Runs the tool.
pub fn run(opts: &Options) -> Result<(), CloudError> {
    let path = wal_path(opts)?;
    let wal = wal_name(&path)?;
    let store = Store::open(&opts.connect)?;
    if opts.test {
        return store.test_connectivity();
    }
    archive(&store, &opts.server, &path, &wal, opts)
}

/// Uploads one file; the object exists, complete, when this returns `Ok`.
pub fn archive(store: &Store, server: &str, path: &Path, wal: &WalFileName, opts: &Options) -> Result<(), CloudError> {
    let raw = std::fs::read(path).map_err(|e| CloudError::General(format!("{}: {e}", path.display())))?;
    let body = match opts.compression {
        None => raw,
        Some(codec) => {
            let mut out = Vec::with_capacity(raw.len() / 2);
            compress::compress(codec, opts.level, raw.as_slice(), &mut out)?;
            out
        }
    };
    let key = ServerKeys::new(&store.url, server).wal(wal, opts.compression);
    let tags =
        (wal.kind() == WalFileKind::History && !opts.history_tags.is_empty()).then_some(opts.history_tags.as_slice());
    store.put(&key, Bytes::from(body), tags)
}
