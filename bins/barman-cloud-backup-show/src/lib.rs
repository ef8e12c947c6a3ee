//! `barman-cloud-backup-show`: one backup of a server in an object store, console or JSON
//! as Barman 3.20.1 prints it (the work is `barman_cloud::manage::show`).
#![forbid(unsafe_code)]

pub mod cli;

pub use cli::Options;

/// Runs the tool.
pub fn run(o: &Options) -> Result<(), barman_cloud::CloudError> {
    barman_cloud::manage::show(&o.connect, &o.server, &o.backup_id, &o.format, o.test)
}
