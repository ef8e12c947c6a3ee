//! Barman's on-disk catalogue (spec `catalogue.md`), readable and writable by both our
//! tools and Python Barman 3.20.1: the directory layout of a server, backup.info files,
//! annotations (keep, delete markers), the xlog.db WAL index, identity.json and the
//! `flock(2)` lock files.
//!
//! Paths always come from a [`ServerLayout`]; this module never reads the configuration.
//! Every write is crash-safe (temp file + fsync + rename + directory fsync), except xlog.db,
//! which Barman's byte offsets force to be appended to and rewritten in place.

mod annotations;
mod backup_id;
mod backup_info;
mod backups;
mod fsio;
mod identity;
mod layout;
mod lock;
mod pyliteral;
mod pytime;
pub mod relay;
pub mod retention;
pub mod sync;
mod xlogdb;

use std::path::PathBuf;

pub use annotations::{
    clear_deletion_mark, delete_annotation, get_annotation, is_kept, is_marked_for_deletion, keep, keep_target,
    mark_for_deletion, put_annotation, release_keep, KeepTarget, DELETE_KEY, DELETE_VALUE, KEEP_KEY,
};
pub use backup_id::BackupId;
pub use backup_info::{BackupInfo, BackupStatus, BackupType, Tablespace, BACKUP_INFO_KEYS};
pub use backups::Catalogue;
pub use identity::{json_ascii, major_version, python_json, Identity};
pub use layout::{ErrorsKind, ServerLayout};
pub use lock::{cleanup_stale, lock_owner, read_lock_pid, LockError, LockKind, ServerLock};
pub use pyliteral::{repr_float, repr_str, PyLiteralError, PyValue};
pub use pytime::{format_py_datetime, parse_py_datetime};
pub use xlogdb::{
    no_encryption, sniff_compression_magic, RebuildCounts, RewriteOutcome, WalSniffer, XlogDb, XlogDbEntry,
    XlogLineError,
};

/// Errors reading or writing the catalogue; each names the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogueError {
    /// An I/O failure on a file or directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A backup.info line without `=` (or a file that is not UTF-8).
    #[error("invalid line {line} in file {}", path.display())]
    InvalidLine {
        /// The file.
        path: PathBuf,
        /// The offending line, stripped.
        line: String,
    },
    /// A backup.info key this Barman version does not know (Barman exits on it).
    #[error("Unsupported field '{key}' found in backup metadata {}. This indicates the backup was created with a newer version of Barman. Please upgrade to a compatible or newer version.", path.display())]
    UnsupportedField {
        /// The file.
        path: PathBuf,
        /// The unknown key.
        key: String,
    },
    /// A known key with a value of the wrong shape.
    #[error("{}: invalid value for '{key}': {value:?} ({reason})", path.display())]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// The key (or annotation name).
        key: String,
        /// The raw value.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// An xlog.db line that cannot be parsed.
    #[error("{}: bad xlog.db line at byte {offset}: {line:?}: {reason}", path.display())]
    XlogDbLine {
        /// The xlog.db file.
        path: PathBuf,
        /// Byte offset of the line.
        offset: u64,
        /// The line.
        line: String,
        /// What is wrong with it.
        reason: String,
    },
    /// identity.json is not valid JSON.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A backup id that cannot be used (empty, `/`, or not `YYYYMMDDTHHMMSS` where required).
    #[error("invalid backup id '{0}'")]
    InvalidBackupId(String),
    /// A backup name shared by several available backups.
    #[error("Multiple backups found matching name '{name}' (try using backup ID instead): {ids}")]
    AmbiguousName {
        /// The name.
        name: String,
        /// The matching ids, space-separated.
        ids: String,
    },
    /// No backup matches an id, name or shortcut.
    #[error("Unknown backup '{text}' for server '{server}'")]
    UnknownBackup {
        /// What the user gave.
        text: String,
        /// The server.
        server: String,
    },
    /// A lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
}
