//! Backups left behind by a backup process that died (`kill -9`, a crash, power loss):
//! their backup.info still says EMPTY or STARTED, which `list-backups` would show forever.
//! Only the holder of the server's backup lock can be taking a backup, so a new backup,
//! once it holds the lock, marks them FAILED; their files are never listed as DONE.

use barman_common::catalogue::{BackupStatus, Catalogue, ServerLayout};

/// Marks every EMPTY or STARTED backup of `layout` FAILED; call with the backup lock held.
pub(super) fn fail_orphans(layout: &ServerLayout) {
    let Ok(catalogue) = Catalogue::load(layout) else { return };
    for (id, info) in catalogue.with_status(&[BackupStatus::Empty, BackupStatus::Started]) {
        let mut info = info.clone();
        info.status = BackupStatus::Failed;
        info.error = Some("failure copying files (the backup process ended before the backup did)".into());
        if let Err(e) = info.save(layout, id) {
            tracing::warn!("could not mark the interrupted backup {id} FAILED: {e}");
        } else {
            tracing::warn!("backup {id} was interrupted (status {:?}): marked FAILED", info.status);
        }
    }
}
