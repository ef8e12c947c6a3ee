//! Why the streamer stopped with an error ([`ToolError`]), whether retrying can help, and the
//! exit code of each case ([`HasExitCode`], from `common::exit`).

use std::io;
use std::path::PathBuf;

use barman_common::exit::{ExitCode, HasExitCode};
use barman_common::pg::PgError;
use barman_common::wal::HeaderError;

/// Why the streamer stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Bad command line (3).
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached or refused the login (2); a bad connection string
    /// or an unsupported `sslmode` (3).
    #[error("could not connect to the server: {0}")]
    Connect(#[source] PgError),
    /// An unusable output directory: missing, or WAL of another cluster in it (3).
    #[error(transparent)]
    Directory(DirectoryError),
    /// Streaming failed: a protocol problem or inconsistency (1).
    #[error("{0}")]
    Stream(String),
    /// The server reported an error or the connection broke while streaming (1).
    #[error("{0}")]
    Server(#[source] PgError),
    /// Local I/O on the WAL files failed (1).
    #[error("{0}")]
    Io(#[source] io::Error),
    /// Local I/O failed doing `context` (`could not fsync file "…"`) (1).
    #[error("{context}: {source}")]
    IoAt {
        /// What was being done, on which file.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The slot no longer holds the WAL that streaming must continue from (invalidated by
    /// `max_slot_wal_keep_size`, or the WAL was removed): retrying cannot close the gap (1).
    #[error(
        "replication slot \"{slot}\" has been invalidated (WAL needed was removed{}): a gap in the archive is unavoidable; take a new backup and recreate the slot",
        detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    SlotInvalidated {
        /// The slot's name.
        slot: String,
        /// What the server said, if it said anything.
        detail: Option<String>,
    },
}

/// Why the output directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// It is missing, holds a file of the wrong size, or belongs to another server.
    #[error("{0}")]
    Unusable(String),
    /// It cannot be read (`could not open directory "…"`).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, on which directory.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// It holds WAL of another cluster.
    #[error("directory \"{}\" holds WAL that does not belong to this server: {source}", dir.display())]
    Foreign {
        /// The directory.
        dir: PathBuf,
        /// What the segment header says.
        #[source]
        source: HeaderError,
    },
}

impl ToolError {
    /// An unusable directory, for the reason given.
    pub fn directory(message: impl Into<String>) -> ToolError {
        ToolError::Directory(DirectoryError::Unusable(message.into()))
    }

    /// A local I/O error while doing `context` (for `map_err`).
    pub fn io_at(context: impl Into<String>) -> impl FnOnce(io::Error) -> ToolError {
        let context = context.into();
        move |source| ToolError::IoAt { context, source }
    }

    /// Whether retrying (without `--no-loop`) cannot help.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ToolError::Usage(_)
                | ToolError::Directory(_)
                | ToolError::Io(_)
                | ToolError::IoAt { .. }
                | ToolError::SlotInvalidated { .. }
        )
    }
}

impl HasExitCode for ToolError {
    fn exit_code(&self) -> ExitCode {
        match self {
            ToolError::Usage(_) | ToolError::Directory(_) => ExitCode::BadInput,
            ToolError::Connect(e) => e.exit_code(),
            ToolError::Stream(_)
            | ToolError::Server(_)
            | ToolError::Io(_)
            | ToolError::IoAt { .. }
            | ToolError::SlotInvalidated { .. } => ExitCode::Failure,
        }
    }
}
