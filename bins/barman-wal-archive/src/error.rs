//! Why archiving failed ([`ToolError`]), and the exit code Barman's client uses for each
//! case ([`HasExitCode`]).

use std::io;
use std::path::PathBuf;

use barman_common::exit::{ExitCode, HasExitCode};

/// Why archiving failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Bad command line (3).
    #[error("{0}")]
    Usage(String),
    /// WAL_PATH is a directory (2).
    #[error("WAL_PATH cannot be a directory: {}", .0.display())]
    IsDirectory(PathBuf),
    /// Local I/O while reading the file or feeding ssh (2).
    #[error("Error executing ssh: {0}")]
    Io(#[from] io::Error),
    /// ssh itself failed, status 255 (3).
    #[error("Connection problem with ssh")]
    Connection,
    /// The remote `barman put-wal` exited with this status.
    #[error("Remote 'barman put-wal' command has failed!")]
    Remote(i32),
    /// `--test` finished with this raw status.
    #[error("test exited with status {0}")]
    TestStatus(i32),
}

impl HasExitCode for ToolError {
    fn exit_code(&self) -> ExitCode {
        match self {
            ToolError::Usage(_) | ToolError::Connection => ExitCode::BadInput,
            ToolError::IsDirectory(_) | ToolError::Io(_) => ExitCode::Local,
            ToolError::Remote(status) | ToolError::TestStatus(status) => ExitCode::from_status(*status),
        }
    }
}
