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
mod error;
mod receive;
mod writer;

pub use cli::Options;
pub use error::{DirectoryError, ToolError};

/// Runs the tool until it is told to stop (signal, `--endpos`) or fails.
pub fn run(opts: &Options) -> Result<(), ToolError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ToolError::io_at("could not start the runtime"))?;
    runtime.block_on(receive::run(opts))
}
