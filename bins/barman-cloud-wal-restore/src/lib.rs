//! `barman-cloud-wal-restore`: PostgreSQL's `restore_command` fetching WAL files from an
//! object store, with `-p` prefetch into a spool (the work is `barman_cloud::wal_restore`).
#![forbid(unsafe_code)]

pub mod cli;

pub use barman_cloud::wal_restore::run;
