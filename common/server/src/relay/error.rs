//! [`RelayError`]: how a relay run failed, with its exit code.

use barman_common::catalogue::{CatalogueError, LockError};
use barman_common::exit::{ExitCode, HasExitCode};

/// How a run failed; each variant owns its exit code.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A copy failed; the next run resumes it (exit 1).
    #[error("{0}")]
    Sync(String),
    /// A copy arrived but does not match the primary's (backup marked FAILED, exit 1).
    #[error("{0}")]
    Verify(String),
    /// The primary could not be asked (exit 2).
    #[error("{0}")]
    Primary(String),
    /// Bad input: configuration, unknown or non-passive server (exit 3).
    #[error("{0}")]
    Usage(String),
    /// A local file operation failed; the next run resumes (exit 1).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The local catalogue could not be read or written (exit 1).
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// A server lock could not be taken (exit 1).
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl HasExitCode for RelayError {
    fn exit_code(&self) -> ExitCode {
        match self {
            RelayError::Sync(_)
            | RelayError::Verify(_)
            | RelayError::Io(_)
            | RelayError::Catalogue(_)
            | RelayError::Lock(_) => ExitCode::Failure,
            RelayError::Primary(_) => ExitCode::Connection,
            RelayError::Usage(_) => ExitCode::BadInput,
        }
    }
}
