//! Physical replication-protocol client, on `postgres-protocol` over tokio (TCP or Unix
//! sockets, no libpq): libpq connection strings with `PGPASSWORD` and `~/.pgpass`, trust /
//! password / md5 / SCRAM-SHA-256 authentication, the replication commands a WAL streamer
//! needs (`IDENTIFY_SYSTEM`, `SHOW`, `TIMELINE_HISTORY`, `CREATE_`/`DROP_`/
//! `READ_REPLICATION_SLOT`, `START_REPLICATION`) and the COPY BOTH stream, whose payloads
//! are decoded by a sans-IO codec ([`codec`]). TLS follows libpq's `sslmode` rules
//! ([`tls`](self) module docs: rustls with the ring provider).
//!
//! Facts: `spec/protocol.md` sections 1 and 2.

pub mod basebackup;
pub mod codec;
mod conn;
mod connect;
mod conninfo;
pub mod connopts;
mod endpoint;
mod error;
mod service;
mod tls;
mod upload_manifest;

pub use basebackup::{
    quote_literal, BaseBackupEvent, BaseBackupOptions, BaseBackupStart, BaseBackupStream, TablespaceHeader,
};
pub use codec::{PrimaryKeepaliveBody, ReplicationMessage, StandbyStatusUpdate, XLogDataBody};
pub use conn::{ReplicationConnection, ReplicationStream, Row, SlotInfo, StreamEvent, SystemIdentity, TimelineHistory};
pub use conninfo::{password_from_file, ConnInfo, ConnTarget, SslMode, DEFAULT_PORT, DEFAULT_SOCKET_DIR};
pub use error::{PgError, ServerError};
