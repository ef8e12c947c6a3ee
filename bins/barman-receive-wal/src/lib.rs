//! `barman-receive-wal`: a pg_receivewal-compatible physical WAL streamer. It writes the
//! same files with the same bytes (`NAME.partial`, pre-zeroed to the segment size, renamed to
//! `NAME` once complete and fsynced), resumes from the directory like pg_receivewal, follows
//! timeline switches (fetching `.history` files), supports replication slots and
//! `--synchronous`, and additionally refuses a directory holding another cluster's WAL.
//!
//! Differences from pg_receivewal: `--create-slot` reserves WAL at once (`RESERVE_WAL`), so
//! nothing between creating the slot and the first stream can be recycled; a slot invalidated
//! by `max_slot_wal_keep_size` (`wal_status = lost`) or WAL removed under a slot stops the
//! streamer with one explicit error (exit 1) instead of a silent gap; SIGTERM stops
//! cleanly like SIGINT (as pg_receivewal 16+); compression (`-Z`) and TLS are not
//! implemented; exit codes follow Barman's table (2 = could not connect, 3 = bad input).
#![forbid(unsafe_code)]

pub mod cli;
mod dir;
mod receive;
mod writer;

pub use cli::Options;

use barman_common::exit::ExitCode;
use barman_common::pg::PgError;

/// Why the streamer stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Bad command line (3).
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached or refused the login (2); a bad connection string
    /// or an unsupported `sslmode` (3).
    #[error("could not connect to the server: {0}")]
    Connect(PgError),
    /// An unusable output directory: missing, or WAL of another cluster in it (3).
    #[error("{0}")]
    Directory(String),
    /// Streaming failed: a protocol problem or inconsistency (1).
    #[error("{0}")]
    Stream(String),
    /// The server reported an error or the connection broke while streaming (1).
    #[error("{0}")]
    Server(PgError),
    /// Local I/O on the WAL files failed (1).
    #[error("{0}")]
    Io(std::io::Error),
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

impl ToolError {
    /// The process exit status, from `common::exit`.
    pub fn code(&self) -> i32 {
        match self {
            ToolError::Usage(_)
            | ToolError::Directory(_)
            | ToolError::Connect(PgError::ConnInfo(_) | PgError::Unsupported(_)) => ExitCode::BadInput,
            ToolError::Connect(_) => ExitCode::Connection,
            ToolError::Stream(_) | ToolError::Server(_) | ToolError::Io(_) | ToolError::SlotInvalidated { .. } => {
                ExitCode::Failure
            }
        }
        .code()
    }

    /// Whether retrying (without `--no-loop`) cannot help.
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            ToolError::Usage(_) | ToolError::Directory(_) | ToolError::Io(_) | ToolError::SlotInvalidated { .. }
        )
    }
}

/// Runs the tool until it is told to stop (signal, `--endpos`) or fails.
pub fn run(opts: &Options) -> Result<(), ToolError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ToolError::Io(std::io::Error::new(e.kind(), format!("could not start the runtime: {e}"))))?;
    runtime.block_on(receive::run(opts))
}
