//! [`CmdError`]: how a backup-host operation failed, with the exit code Barman gives it.

/// A failed command, with the exit code Barman gives it.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// An `ERROR:` line, exit 1.
    #[error("{0}")]
    Error(String),
    /// An `ERROR:` line with a specific exit code (get-wal uses 3).
    #[error("{0}")]
    Code(String, i32),
    /// An unexpected failure: `EXCEPTION:` and exit 1.
    #[error("{0}")]
    Exception(String),
    /// Exit with this code, printing nothing more (the command already reported, as
    /// `check` does for its failed checks).
    #[error("exit status {0}")]
    Silent(i32),
}

impl From<std::io::Error> for CmdError {
    fn from(e: std::io::Error) -> Self {
        CmdError::Exception(e.to_string())
    }
}

impl From<barman_common::catalogue::CatalogueError> for CmdError {
    fn from(e: barman_common::catalogue::CatalogueError) -> Self {
        CmdError::Exception(e.to_string())
    }
}
