//! Why restoring failed ([`ToolError`]), and the exit code Barman's client uses for each
//! case ([`HasExitCode`]).

use std::io;
use std::path::{Path, PathBuf};

use barman_common::exit::{ExitCode, HasExitCode};
use barman_common::wal::HeaderError;
use barman_common::wire::{SumError, WireError};

/// Why restoring failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The remote get-wal failed with this status (1 = not found, 3 = invalid name).
    #[error("Remote 'barman get-wal' command has failed!")]
    Remote(i32),
    /// ssh exited 255 (2).
    #[error("Connection problem with ssh")]
    Connection,
    /// WAL_DEST unusable: a directory (3).
    #[error("{0}")]
    BadDest(String),
    /// WAL_DEST unusable: its directory cannot be written into (3).
    #[error("cannot write into {}: {source}", dir.display())]
    DestUnwritable {
        /// The directory of WAL_DEST.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Spool or local I/O problem (2).
    #[error("{}: {source}", path.display())]
    Local {
        /// The directory or file concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The spool directory cannot be created (2).
    #[error("Cannot create '{}' directory: {source}", dir.display())]
    Spool {
        /// The spool directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// ssh could not be run (2).
    #[error("{0}")]
    Ssh(#[source] io::Error),
    /// ssh was killed by a signal (2).
    #[error("ssh was killed by a signal")]
    Killed,
    /// The received file failed verification (2).
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// `--test` exit status.
    #[error("test exited with status {0}")]
    TestStatus(i32),
}

/// How a received file or batch stream failed verification.
#[derive(Debug, thiserror::Error)]
pub enum Corruption {
    /// The batch stream cannot be read, or holds a member it must not.
    #[error("batch stream: {0}")]
    Stream(#[source] WireError),
    /// A batch member that no sums member covered by the end of the stream.
    #[error("batch stream: no checksum for {0}")]
    NoChecksum(String),
    /// A batch member whose digest is not the one its sums member gives.
    #[error("batch member {name}: checksum mismatch")]
    Checksum {
        /// The member.
        name: String,
        /// The mismatch.
        #[source]
        source: SumError,
    },
    /// A compressed batch member that does not decompress.
    #[error("batch member {name}: cannot decompress: {source}")]
    Decompress {
        /// The member.
        name: String,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// A segment whose first page or length is not what its name says.
    #[error("received {wal} failed verification: {source}")]
    Header {
        /// The file.
        wal: String,
        /// What is wrong.
        #[source]
        source: HeaderError,
    },
    /// A received file that cannot be read back for its check.
    #[error("received {wal} failed verification: {source}")]
    Unreadable {
        /// The file.
        wal: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ToolError {
    /// A local I/O error on `path` (for `map_err`).
    pub fn local(path: &Path) -> impl Fn(io::Error) -> ToolError + '_ {
        move |source| ToolError::Local { path: path.to_path_buf(), source }
    }

    /// Whether `-s` applies (only after a failed get-wal, as Barman).
    pub fn sleeps(&self) -> bool {
        matches!(self, ToolError::Remote(_) | ToolError::Connection)
    }
}

impl HasExitCode for ToolError {
    fn exit_code(&self) -> ExitCode {
        match self {
            ToolError::Remote(status) | ToolError::TestStatus(status) => ExitCode::from_status(*status),
            ToolError::Connection => ExitCode::Connection,
            ToolError::BadDest(_) | ToolError::DestUnwritable { .. } => ExitCode::BadInput,
            ToolError::Local { .. }
            | ToolError::Spool { .. }
            | ToolError::Ssh(_)
            | ToolError::Killed
            | ToolError::Corrupt(_) => ExitCode::Local,
        }
    }
}
