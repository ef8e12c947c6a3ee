//! `barman-cloud-backup-list`: the backups of a server in an object store, console or JSON
//! exactly as Barman 3.20.1 prints them.
#![forbid(unsafe_code)]

pub mod cli;

use barman_cloud::catalog::Catalog;
use barman_cloud::{CloudError, Store};
use barman_common::catalogue::sync::backup_to_json;
use barman_common::catalogue::{python_json, BackupStatus};

pub use cli::Options;

/// Prints the list.
pub fn run(opts: &Options) -> Result<(), CloudError> {
    let store = Store::open(&opts.connect)?;
    if opts.test {
        return store.test_connectivity();
    }
    let catalog = Catalog::new(&store, &opts.server);
    let backups = catalog.backups()?;
    if opts.format == "console" {
        println!("{:<20}{:<25}{:<30}{:<17}{:<20}", "Backup ID", "End Time", "Begin Wal", "Archival Status", "Name");
        for (id, b) in &backups {
            let end = b.end_time.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
            let status = if b.status == BackupStatus::Done {
                catalog.keep_target(id)?.map(|t| format!("KEEP:{}", t.to_uppercase())).unwrap_or_default()
            } else {
                b.status.as_str().to_owned()
            };
            let wal = b.begin_wal.as_ref().map(|w| w.as_str().to_owned()).unwrap_or_default();
            println!("{id:<20}{end:<25}{wal:<30}{status:<17}{:<20}", b.backup_name.as_deref().unwrap_or(""));
        }
    } else {
        let list: Vec<serde_json::Value> = backups
            .iter()
            .map(|(id, b)| Catalog::backup_id(id).map(|bid| backup_to_json(&bid, b)))
            .collect::<Result<_, _>>()?;
        println!("{}", python_json(&serde_json::json!({ "backups_list": list }), None, false));
    }
    Ok(())
}
