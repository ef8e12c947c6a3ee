//! `barman-cloud-wal-archive`: PostgreSQL's `archive_command` shipping WAL files to an
//! object store in Barman 3.20.1's layout (the work is `barman_cloud::wal_archive`).
#![forbid(unsafe_code)]

pub mod cli;

pub use barman_cloud::wal_archive::run;
