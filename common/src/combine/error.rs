//! Why a chain could not be combined.

use std::path::{Path, PathBuf};

use crate::manifest::ManifestError;

/// Why a chain could not be combined.
#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file of the catalogue is malformed.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file of the catalogue differs from its backup's manifest.
    #[error("{path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// The backups do not form a chain.
    #[error("backup {dir} {reason}")]
    Chain {
        /// The data directory of the backup at fault.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A backup's manifest is missing or unreadable.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl CombineError {
    pub(super) fn io(path: &Path, source: std::io::Error) -> CombineError {
        CombineError::Io { path: path.to_owned(), source }
    }

    pub(super) fn damaged(path: &Path, reason: String) -> CombineError {
        CombineError::Damaged { path: path.to_owned(), reason }
    }
}
