//! [`CmdError`]: how a backup-host operation failed, with the exit code Barman gives it.

use barman_common::exit::{ExitCode, HasExitCode};
use barman_common::gpg::GpgError;

/// A failed command, with the exit code Barman gives it.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// An `ERROR:` line, exit 1.
    #[error("{0}")]
    Error(String),
    /// An `ERROR:` line with a specific exit code (get-wal uses 3).
    #[error("{0}")]
    Code(String, i32),
    /// Something Barman 3.20.1 accepts that this toolkit does not do yet (an option whose
    /// machinery another issue builds): an `ERROR:` line, exit 3 (bad input), never ignored.
    #[error("{0}")]
    Unsupported(String),
    /// An unexpected failure: `EXCEPTION:` and exit 1.
    #[error("{0}")]
    Exception(String),
    /// Exit with this code, printing nothing more (the command already reported, as
    /// `check` does for its failed checks).
    #[error("exit status {0}")]
    Silent(i32),
    /// A file operation failed unexpectedly: `EXCEPTION:` and exit 1.
    #[error(transparent)]
    Io(std::io::Error),
    /// The catalogue could not be read or written: `EXCEPTION:` and exit 1.
    #[error(transparent)]
    Catalogue(#[from] barman_common::catalogue::CatalogueError),
    /// Encryption or decryption failed: a missing, failing or wrong passphrase is bad
    /// configuration (exit 3, so a restore helper never reads it as "WAL not found"); gpg
    /// failing otherwise (a missing key, a corrupt file) is exit 1.
    #[error("{0}")]
    Gpg(#[from] barman_common::gpg::GpgError),
}

impl From<std::io::Error> for CmdError {
    /// An I/O error that carries a [`GpgError`] (a decrypting reader failed) is that error.
    fn from(e: std::io::Error) -> Self {
        match GpgError::from_io(e) {
            GpgError::Io(e) => CmdError::Io(e),
            gpg => CmdError::Gpg(gpg),
        }
    }
}

impl HasExitCode for CmdError {
    /// Barman's `barman` command exits 1 for an `ERROR:` or an `EXCEPTION:`; a command that
    /// names its own status (get-wal's 3, check's failures) passes it through.
    fn exit_code(&self) -> ExitCode {
        match self {
            CmdError::Error(_)
            | CmdError::Exception(_)
            | CmdError::Io(_)
            | CmdError::Catalogue(_)
            | CmdError::Gpg(GpgError::Failed { .. } | GpgError::Io(_)) => ExitCode::Failure,
            CmdError::Code(_, code) | CmdError::Silent(code) => ExitCode::from_status(*code),
            CmdError::Gpg(_) | CmdError::Unsupported(_) => ExitCode::BadInput,
        }
    }
}
