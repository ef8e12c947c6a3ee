//! `barman-wal-archive`: PostgreSQL's `archive_command` helper. It sends a WAL file to
//! `barman put-wal` on the backup host over ssh, as a tar stream with a checksum member, and
//! exits 0 only once the backup host has made the file durable.
//!
//! Drop-in compatible with Barman 3.20.1's client (same options, ssh argv, wire format and
//! exit codes). One difference in parallel mode: the following `.ready` segments travel in
//! the same stream as the requested one (one ssh connection instead of one per file); if that
//! batch fails, the requested file is retried alone.
#![forbid(unsafe_code)]

pub mod cli;
mod parallel;
mod send;

use std::fmt;

pub use cli::Options;

/// Why archiving failed, with the exit code Barman's client uses for it.
#[derive(Debug)]
pub enum ToolError {
    /// Bad command line (3).
    Usage(String),
    /// WAL_PATH is a directory (2).
    IsDirectory(String),
    /// Local I/O while reading the file or feeding ssh (2).
    Io(std::io::Error),
    /// ssh itself failed, status 255 (3).
    Connection,
    /// The remote `barman put-wal` exited with this status.
    Remote(i32),
    /// `--test` finished with this raw status.
    TestStatus(i32),
}

impl ToolError {
    /// The process exit status.
    pub fn code(&self) -> i32 {
        match self {
            ToolError::Usage(_) | ToolError::Connection => 3,
            ToolError::IsDirectory(_) | ToolError::Io(_) => 2,
            ToolError::Remote(c) | ToolError::TestStatus(c) => *c,
        }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Usage(m) => f.write_str(m),
            ToolError::IsDirectory(p) => write!(f, "WAL_PATH cannot be a directory: {p}"),
            ToolError::Io(e) => write!(f, "Error executing ssh: {e}"),
            ToolError::Connection => f.write_str("Connection problem with ssh"),
            ToolError::Remote(_) => f.write_str("Remote 'barman put-wal' command has failed!"),
            ToolError::TestStatus(c) => write!(f, "test exited with status {c}"),
        }
    }
}

impl From<std::io::Error> for ToolError {
    fn from(e: std::io::Error) -> Self {
        ToolError::Io(e)
    }
}

/// Archives `opts.wal_path` (and, with `-p`, the following ready segments).
pub fn run(opts: &Options) -> Result<(), ToolError> {
    if opts.test {
        return send::test_connection(opts);
    }
    if opts.wal_path.is_dir() {
        return Err(ToolError::IsDirectory(opts.wal_path.display().to_string()));
    }
    if opts.parallel > 1 {
        return parallel::archive(opts);
    }
    send::send_files(opts, std::slice::from_ref(&opts.wal_path))
}
