//! Errors of the replication client: bad connection strings, transport failures, protocol
//! violations and errors reported by the server (with their SQLSTATE).

use std::fmt;
use std::io;

use crate::exit::{ExitCode, HasExitCode};

/// An `ErrorResponse` (or FATAL) sent by the server, with the fields a caller branches on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerError {
    /// `ERROR`, `FATAL` or `PANIC` (field `V`, else `S`).
    pub severity: String,
    /// The SQLSTATE (field `C`), e.g. `58P01`.
    pub code: String,
    /// The primary message (field `M`).
    pub message: String,
    /// The detail (field `D`), if any.
    pub detail: Option<String>,
    /// The hint (field `H`), if any.
    pub hint: Option<String>,
}

impl ServerError {
    /// Builds the error from `(field type, value)` pairs of an `ErrorResponse`/`NoticeResponse`.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (u8, &'a str)>) -> ServerError {
        let mut error = ServerError::default();
        for (kind, value) in fields {
            match kind {
                b'V' => value.clone_into(&mut error.severity),
                b'S' if error.severity.is_empty() => value.clone_into(&mut error.severity),
                b'C' => value.clone_into(&mut error.code),
                b'M' => value.clone_into(&mut error.message),
                b'D' => error.detail = Some(value.to_owned()),
                b'H' => error.hint = Some(value.to_owned()),
                _ => {}
            }
        }
        error
    }

    /// "requested WAL segment ... has already been removed" (58P01 after CopyBoth): the WAL
    /// needed to continue is gone from the server: a gap, not a transient failure.
    pub fn is_wal_removed(&self) -> bool {
        self.code == "58P01" && self.message.contains("has already been removed")
    }

    /// A duplicate object (42710), e.g. CREATE_REPLICATION_SLOT of an existing slot.
    pub fn is_duplicate_object(&self) -> bool {
        self.code == "42710"
    }

    /// An undefined object (42704), e.g. DROP_REPLICATION_SLOT of an unknown slot.
    pub fn is_undefined_object(&self) -> bool {
        self.code == "42704"
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (DETAIL: {detail})")?;
        }
        if !self.code.is_empty() {
            write!(f, " [SQLSTATE {}]", self.code)?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The connection string is malformed or names an unknown option.
    #[error("invalid connection string: {0}")]
    ConnInfo(String),
    /// A requested feature this client does not implement (e.g. `sslmode=require`).
    #[error("{0}")]
    Unsupported(String),
    /// The socket could not be opened.
    #[error("could not connect to server at {target}: {source}")]
    Connect {
        /// `host:port` or the socket path.
        target: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The server accepted the login, but its session does not satisfy
    /// `target_session_attrs` (and no other listed host did).
    #[error("connection to server at {target} failed: {message}")]
    SessionAttrs {
        /// `host:port` or the socket path.
        target: String,
        /// libpq's reason (`session is read-only`...).
        message: String,
    },
    /// The TLS negotiation `sslmode` asked for failed (no SSL on the server, a certificate
    /// that does not verify, unreadable key files).
    #[error("{0}")]
    Tls(String),
    /// Authentication could not be done on the client side (no password, unknown method).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Reading or writing the established connection failed.
    #[error("connection to server lost: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection without an error message.
    #[error("server closed the connection unexpectedly")]
    Closed,
    /// The server ended the COPY stream without CopyDone (`COPY 0` on shutdown).
    #[error("replication stream was terminated before stop point")]
    StreamTerminated,
    /// The server sent something this client did not expect.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server reported an error.
    #[error("{0}")]
    Server(Box<ServerError>),
}

impl PgError {
    /// The first line libpq (hence psycopg2, hence Barman's log) gives for this error: a
    /// refused or failed connection reads `connection to server at "HOST", port N failed:
    /// REASON` (`on socket "PATH" failed` for a Unix socket); others read as `Display`.
    pub fn libpq_text(&self) -> String {
        let PgError::Connect { target, source } = self else { return self.to_string() };
        let reason = source.to_string();
        let reason = reason.split(" (os error").next().unwrap_or_default();
        match target.rsplit_once(':') {
            Some((host, port)) if !target.starts_with('/') => {
                format!("connection to server at \"{host}\", port {port} failed: {reason}")
            }
            _ => format!("connection to server on socket \"{target}\" failed: {reason}"),
        }
    }

    /// The server error, if this is one.
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            PgError::Server(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn protocol(what: impl Into<String>) -> PgError {
        PgError::Protocol(what.into())
    }
}

/// The status of a failure to connect: a connection string or a setting this client cannot
/// use is bad input (3); anything else means the server could not be reached or refused the
/// login (2). A tool that fails later, while streaming, decides for itself.
impl HasExitCode for PgError {
    fn exit_code(&self) -> ExitCode {
        match self {
            PgError::ConnInfo(_) | PgError::Unsupported(_) => ExitCode::BadInput,
            _ => ExitCode::Connection,
        }
    }
}
