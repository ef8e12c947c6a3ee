//! `barman-wal-restore`: PostgreSQL's `restore_command` helper. It fetches a WAL file from
//! `barman get-wal` on the backup host over ssh and keeps a spool of the following files
//! prefetched: JOBS-1 of them with `-p JOBS`, [`cli::AUTO_JOBS`]-1 when `-p` is not given
//! (in a private spool per server and data directory), none with `-p 0` or `-p 1`. Calls
//! share one ssh connection per backup host (`common::remote::mux`).
//!
//! Drop-in compatible with Barman 3.20.1's client (options, ssh argv, exit codes). Beyond it:
//! * the prefetch pipeline runs continuously in a background prefetcher that keeps the next
//!   JOBS-1 files in the spool as Postgres consumes them, instead of refetching in batches
//!   only when the spool runs dry (Barman issue #943);
//! * every file, fetched or spooled, is written to a temp file, decompressed if needed,
//!   checked (a segment's page address must match its name and its length must be a whole
//!   segment) and only then renamed into place, so neither Postgres nor the spool ever sees a
//!   partial or corrupt file;
//! * with `-p`, a file that peek does not list (a `.partial` with `-P`, a history probe) is
//!   still fetched directly, so `-P -p N` can deliver the streaming partial.
#![forbid(unsafe_code)]

mod batch;
pub mod cli;
mod command;
mod error;
mod fetch;
mod prefetch;
mod spool;
mod verify;

use std::path::Path;

pub use cli::Options;
pub use error::{Corruption, ToolError};

/// Restores `opts.wal_name` into `opts.wal_dest`.
pub fn run(opts: &Options) -> Result<(), ToolError> {
    if opts.test {
        return fetch::test_connection(opts);
    }
    if opts.prefetch_daemon {
        prefetch::daemon(opts);
        return Ok(());
    }
    if opts.wal_dest.is_dir() {
        return Err(ToolError::BadDest(format!("WAL_DEST cannot be a directory: {}", opts.wal_dest.display())));
    }
    if opts.parallel > 1 {
        if let Err(e) = prefetch::ensure_spool(opts) {
            if !opts.auto_spool {
                return Err(e);
            }
            // Prefetching was not asked for: warn, and fetch directly without a look at
            // that directory (whoever controls it could have planted files there).
            eprintln!("WARNING: {e}: prefetch disabled");
            return fetch_direct(opts);
        }
    }
    if serve_from_spool(opts) {
        return Ok(());
    }
    let is_segment = opts.wal_name.parse::<barman_common::wal::WalFileName>().is_ok_and(|n| n.is_segment());
    // A miss: the prefetcher (started if needed) fetches this segment first and the following
    // ones behind it in the same stream.
    if opts.parallel > 1 && is_segment && prefetch::await_prefetch(opts) && serve_from_spool(opts) {
        return Ok(());
    }
    fetch_direct(opts)?;
    if opts.parallel > 1 && is_segment {
        prefetch::remember_segment_size(&opts.spool_dir, &opts.wal_dest);
        let _ = prefetch::request(opts);
    }
    Ok(())
}

/// One get-wal of the requested file straight into its destination.
fn fetch_direct(opts: &Options) -> Result<(), ToolError> {
    let dest_dir = opts.wal_dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fetch::fetch_verified(opts, &opts.wal_name, dest_dir, &opts.wal_dest)
}

/// Serves the request from the spool (a verified file, moved into place, trusted only in
/// the boot it was written in: see `spool`), and keeps the prefetcher going.
fn serve_from_spool(opts: &Options) -> bool {
    let spooled = opts.spool_dir.join(&opts.wal_name);
    if !spooled.is_file() {
        return false;
    }
    if !spool::trusted(&opts.spool_dir) {
        // Filled in an earlier boot (or by another tool): possibly torn, fetch it again.
        let _ = std::fs::remove_file(&spooled);
        return false;
    }
    if opts.parallel > 1 {
        prefetch::remember_segment_size(&opts.spool_dir, &spooled);
    }
    if fetch::install(&spooled, &opts.wal_dest).is_err() {
        return false;
    }
    if opts.parallel > 1 {
        prefetch::done_waiting(opts);
        let _ = prefetch::request(opts);
    }
    true
}
