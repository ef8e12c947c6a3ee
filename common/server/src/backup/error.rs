//! [`ToolError`]: how a backup failed, with its exit code.

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

impl ToolError {
    /// The process exit status (`common::exit` table).
    pub fn code(&self) -> i32 {
        match self {
            ToolError::Failed(_) => 1,
            ToolError::Connect(_) => 2,
            ToolError::Usage(_) => 3,
            ToolError::Internal(_) => 4,
        }
    }
}
