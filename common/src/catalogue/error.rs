//! The catalogue's errors: [`CatalogueError`] for every file it reads or writes, and
//! [`LockError`] for its lock files.

use std::path::PathBuf;

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

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Someone else holds it.
    #[error("lock {} is held by another process{}", path.display(), pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// The PID written by the holder, if readable.
        pid: Option<u32>,
    },
    /// The lock file cannot be created or opened.
    #[error("permission denied creating lock file {}", path.display())]
    PermissionDenied {
        /// The lock file.
        path: PathBuf,
    },
    /// Any other I/O failure.
    #[error("lock file {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
