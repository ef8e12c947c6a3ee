//! [`RelayError`]: how a relay run failed, with its exit code.

use barman_common::catalogue::CatalogueError;

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
}

impl RelayError {
    /// The process exit status.
    pub fn code(&self) -> i32 {
        match self {
            RelayError::Sync(_) | RelayError::Verify(_) => 1,
            RelayError::Primary(_) => 2,
            RelayError::Usage(_) => 3,
        }
    }
}

impl From<std::io::Error> for RelayError {
    fn from(e: std::io::Error) -> Self {
        RelayError::Sync(e.to_string())
    }
}

impl From<CatalogueError> for RelayError {
    fn from(e: CatalogueError) -> Self {
        RelayError::Sync(e.to_string())
    }
}

impl From<barman_common::catalogue::LockError> for RelayError {
    fn from(e: barman_common::catalogue::LockError) -> Self {
        RelayError::Sync(e.to_string())
    }
}
