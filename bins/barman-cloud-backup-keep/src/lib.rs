//! `barman-cloud-backup-keep`: keep annotations of backups in an object store (the work is
//! `barman_cloud::manage::keep`).
#![forbid(unsafe_code)]

pub mod cli;

pub use cli::Options;

/// Runs the tool.
pub fn run(o: &Options) -> Result<(), barman_cloud::CloudError> {
    barman_cloud::manage::keep(&o.connect, &o.server, &o.backup_id, &o.action, o.test)
}
