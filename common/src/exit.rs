//! The one exit-code table shared by every tool, following Barman's clients.
//!
//! PostgreSQL treats an `archive_command`/`restore_command` exit status above 125, or death
//! by a signal, as fatal, and any other non-zero status as "not available, try again" (for
//! archiving) or "not in the archive" (for restore). The codes below stay in 0..=4 so that
//! Postgres reads them as ordinary failures; a panic aborts (SIGABRT) instead, see the
//! workspace `Cargo.toml`.

/// A process exit status with Barman's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: success.
    Success = 0,
    /// 1: the operation failed; for the restore helper, the WAL file is not in the catalogue
    /// (`barman-wal-restore` 1, `barman get-wal` not found).
    Failure = 1,
    /// 2: the peer could not be reached (ssh 255 in the restore helper, TCP, replication).
    Connection = 2,
    /// 3: bad input: usage, configuration, an unusable destination, an invalid WAL name
    /// (`barman get-wal` 3, ssh 255 in `barman-wal-archive`).
    BadInput = 3,
    /// 4: any other or internal error (`barman-cloud-*` 4).
    Internal = 4,
}

impl ExitCode {
    /// The numeric status.
    pub const fn code(self) -> i32 {
        self as i32
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// Errors that know the exit code they should produce (as coreutils' `UError::code`).
pub trait HasExitCode {
    /// The exit status for this error.
    fn exit_code(&self) -> i32;
}
