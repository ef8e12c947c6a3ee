//! `barman-cloud-check-wal-archive`: whether a bucket's WAL archive can take a new cluster
//! (the work is `barman_cloud::manage::check_wal_archive`).
#![forbid(unsafe_code)]

pub mod cli;

pub use cli::Options;

/// Runs the tool.
pub fn run(o: &Options) -> Result<(), barman_cloud::CloudError> {
    barman_cloud::manage::check_wal_archive(&o.connect, &o.server, o.timeline, o.test)
}
