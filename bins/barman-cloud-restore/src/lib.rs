//! `barman-cloud-restore`: restore a backup from an object store into a directory
//! (the work is `barman_cloud::restore`).
#![forbid(unsafe_code)]

pub mod cli;

pub use barman_cloud::restore::run;
