//! The one exit-code table shared by every tool, following Barman's clients.
//!
//! PostgreSQL treats an `archive_command`/`restore_command` exit status above 125, or death
//! by a signal, as fatal, and any other non-zero status as "not available, try again" (for
//! archiving) or "not in the archive" (for restore). The codes below stay in 0..=4 so that
//! Postgres reads them as ordinary failures; a panic aborts (SIGABRT) instead, see the
//! workspace `Cargo.toml`. The one exception is a status passed through from the remote
//! `barman` command ([`ExitCode::Other`]), as Barman's clients do.
//!
//! Each error type maps itself to its code through [`HasExitCode`]; a `main` only converts
//! the result (`std::process::ExitCode::from(e.exit_code())`).

/// A process exit status with Barman's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: success.
    Success,
    /// 1: the operation failed; for the restore helper, the WAL file is not in the catalogue
    /// (`barman-wal-restore` 1, `barman get-wal` not found).
    Failure,
    /// 2: the peer could not be reached (ssh 255 in the restore helper, TCP, replication).
    Connection,
    /// 2 as well: a local failure of a WAL client (I/O, a corrupt file received), Barman's
    /// clients' default error status.
    Local,
    /// 2 as well: a usage error of the `barman` command itself (argparse's status, which
    /// Barman's runbooks see).
    Usage,
    /// 3: bad input: usage, configuration, an unusable destination, an invalid WAL name
    /// (`barman get-wal` 3, ssh 255 in `barman-wal-archive`).
    BadInput,
    /// 4: any other or internal error (`barman-cloud-*` 4).
    Internal,
    /// Any other status, passed through unchanged: the remote command's status, which
    /// Barman's clients exit with.
    Other(i32),
}

impl ExitCode {
    /// The numeric status.
    pub const fn code(self) -> i32 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Failure => 1,
            ExitCode::Connection | ExitCode::Local | ExitCode::Usage => 2,
            ExitCode::BadInput => 3,
            ExitCode::Internal => 4,
            ExitCode::Other(code) => code,
        }
    }

    /// The exit code for a raw status (a remote command's): the named code for 0, 1, 3 and
    /// 4, [`ExitCode::Connection`] for 2, [`ExitCode::Other`] for anything else.
    pub const fn from_status(status: i32) -> ExitCode {
        match status {
            0 => ExitCode::Success,
            1 => ExitCode::Failure,
            2 => ExitCode::Connection,
            3 => ExitCode::BadInput,
            4 => ExitCode::Internal,
            other => ExitCode::Other(other),
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        // A status is 0..=255 on Unix; this is the truncation `exit(3)` applies.
        std::process::ExitCode::from(code.code() as u8)
    }
}

/// Errors that know the exit code they should produce (as coreutils' `UError::code`).
pub trait HasExitCode {
    /// The exit status for this error.
    fn exit_code(&self) -> ExitCode;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_statuses_round_trip() {
        for status in [0, 1, 2, 3, 4, 5, 127, 255] {
            assert_eq!(ExitCode::from_status(status).code(), status);
        }
        assert_eq!(ExitCode::from_status(3), ExitCode::BadInput);
        assert_eq!(ExitCode::Local.code(), ExitCode::Connection.code());
    }
}
