//! `barman-cloud-backup-delete`: delete backups from an object store by ID or retention
//! policy, with the WAL they no longer need (the work is `barman_cloud::delete`).
#![forbid(unsafe_code)]

pub mod cli;

pub use barman_cloud::delete::run;
