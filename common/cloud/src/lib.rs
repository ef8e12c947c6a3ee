//! `barman-cloud`: Barman 3.20.1's object-store tier, shared by the `barman-cloud-*` tools.
//!
//! A bucket (S3), container (Azure Blob Storage) or bucket (GCS) is reached through the
//! `object_store` crate behind one synchronous facade ([`store::Store`], one tokio runtime
//! per process, retries with backoff on throttling, 5xx and timeouts). Everything written
//! follows Barman's cloud layout ([`layout`]), so real Barman's cloud tools read what ours
//! write and the other way round:
//!
//! ```text
//! <prefix>/<server>/wals/<tli+log>/<segment>[.gz|.bz2|.xz|.snappy|.zst|.lz4]
//! <prefix>/<server>/wals/<tli>.history[...]
//! <prefix>/<server>/base/<backup_id>/backup.info
//! <prefix>/<server>/base/<backup_id>/data[_0001].tar[.gz|.bz2|.snappy|.lz4|.zst]
//! <prefix>/<server>/base/<backup_id>/<tablespace oid>[_0001].tar[...]
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod args;
pub mod backup;
pub mod catalog;
pub mod creds;
pub mod delete;
pub mod error;
pub mod gcs;
pub mod layout;
pub mod log;
pub mod manage;
pub mod pending;
pub mod restore;
pub mod store;
pub mod upload;
pub mod url;
pub mod wal_archive;
pub mod wal_restore;

pub use error::CloudError;
pub use store::{ConnectOptions, Provider, Store};
pub use url::CloudUrl;
