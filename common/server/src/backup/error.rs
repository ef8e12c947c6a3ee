//! [`ToolError`]: how a backup failed, with its exit code.

use barman_common::exit::{ExitCode, HasExitCode};

/// How a run failed; each variant owns its exit code.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Bad input: configuration, unknown or unsuitable server (exit 3).
    #[error("{0}")]
    Usage(String),
    /// PostgreSQL could not be reached; no backup was started (exit 2).
    #[error("{0}")]
    Connect(String),
    /// The backup could not be taken: refused before it started, or marked FAILED (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Anything else (exit 4).
    #[error("{0}")]
    Internal(String),
}

impl HasExitCode for ToolError {
    fn exit_code(&self) -> ExitCode {
        match self {
            ToolError::Failed(_) => ExitCode::Failure,
            ToolError::Connect(_) => ExitCode::Connection,
            ToolError::Usage(_) => ExitCode::BadInput,
            ToolError::Internal(_) => ExitCode::Internal,
        }
    }
}
