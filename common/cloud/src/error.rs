//! The cloud tools' errors, each owning its exit code as Barman's `cloud_cli` does:
//! 1 operation failed (connectivity fine), 2 network, 3 command line, 4 anything else.

use barman_common::exit::{ExitCode, HasExitCode};

/// What went wrong in a cloud tool.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// Bad command line or configuration (exit 3).
    #[error("{0}")]
    Usage(String),
    /// The operation failed although the store answered (exit 1): a missing WAL or backup,
    /// a non-empty destination.
    #[error("{0}")]
    Failed(String),
    /// The store could not be reached (exit 2).
    #[error("{0}")]
    Network(String),
    /// Any other error (exit 4), Barman's `GeneralErrorExit`.
    #[error("{0}")]
    General(String),
}

impl CloudError {
    /// A general error from anything displayable.
    pub fn general(e: impl std::fmt::Display) -> CloudError {
        CloudError::General(e.to_string())
    }
}

impl HasExitCode for CloudError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CloudError::Usage(_) => ExitCode::BadInput,
            CloudError::Failed(_) => ExitCode::Failure,
            CloudError::Network(_) => ExitCode::Connection,
            CloudError::General(_) => ExitCode::Internal,
        }
    }
}

impl From<object_store::Error> for CloudError {
    fn from(e: object_store::Error) -> CloudError {
        let text = format!("{e}");
        let network = matches!(&e, object_store::Error::Generic { .. })
            && (text.contains("error sending request")
                || text.contains("Connection refused")
                || text.contains("timed out"));
        if network {
            CloudError::Network(text)
        } else {
            CloudError::General(text)
        }
    }
}

impl From<std::io::Error> for CloudError {
    fn from(e: std::io::Error) -> CloudError {
        CloudError::General(e.to_string())
    }
}

/// Turns a tool's result into its exit status, logging the error as Barman does: usage
/// and operation errors as they are, the others as `<what> exception: <error>` (for example
/// "Barman cloud WAL archiver exception: ...").
pub fn finish(result: Result<(), CloudError>, what: &str) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                CloudError::Usage(m) | CloudError::Failed(m) => crate::log::error(m),
                CloudError::Network(m) | CloudError::General(m) => crate::log::error(&format!("{what} exception: {m}")),
            }
            std::process::ExitCode::from(e.exit_code().code() as u8)
        }
    }
}
