//! `barman-wal-archive`: PostgreSQL's `archive_command` helper. It sends a WAL file to
//! `barman put-wal` on the backup host over ssh, as a tar stream with a checksum member, and
//! exits 0 only once the backup host has made the file durable.
//!
//! Drop-in compatible with Barman 3.20.1's client (same options, remote command, wire format
//! and exit codes). Two differences make the documented line fast without extra flags:
//! * calls share one ssh connection per backup host (`common::remote::mux`), instead of a
//!   handshake per segment;
//! * a backlog is batched: the `.ready` segments after the requested one travel in the same
//!   stream (automatically, or up to `-p N`), and PostgreSQL's later calls for them are
//!   answered from a cache that checks the file is the one sent (see `parallel`); if a
//!   batch fails, the requested file is retried alone;
//! * plain files travel LZ4-framed when the backup host's `barman` takes them so (`wire`):
//!   ssh then encrypts a fifth of the bytes.
#![forbid(unsafe_code)]

mod cache_dir;
pub mod cli;
mod error;
mod parallel;
mod send;
mod wire;

pub use cli::Options;
pub use error::ToolError;

/// Archives `opts.wal_path` (and, with `-p`, the following ready segments).
pub fn run(opts: &Options) -> Result<(), ToolError> {
    if opts.test {
        return send::test_connection(opts);
    }
    if opts.wal_path.is_dir() {
        return Err(ToolError::IsDirectory(opts.wal_path.clone()));
    }
    if parallel::batch_size(opts) > 1 {
        return parallel::archive(opts);
    }
    send::send_files(opts, std::slice::from_ref(&opts.wal_path), wire::cache_dir(opts).as_deref())
}
