//! `barman-cloud-backup`: a base backup of a local PostgreSQL straight into an object store,
//! in Barman 3.20.1's layout (the work is `barman_cloud::backup`).
#![forbid(unsafe_code)]

pub mod cli;

pub use barman_cloud::backup::run;
