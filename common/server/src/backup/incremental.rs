//! `barman backup --incremental PARENT` (PostgreSQL 17+, `backup_method = postgres`), as
//! Barman 3.20.1 does it with `pg_basebackup --incremental`: the parent is resolved like any
//! backup id (`latest`, `latest-full`, a name), then Barman's checks refuse the backup before
//! anything is written (`failed to start backup: ...`, exit 1): PostgreSQL older than 17,
//! another backup method, `summarize_wal` off on the server or when the parent was taken.
//! Beyond Barman, a parent that is not DONE or has no `backup_manifest` (an rsync backup) is
//! refused here too, naming it, instead of failing later inside the copy.
//!
//! The parent's manifest is then uploaded on the replication connection
//! (`UPLOAD_MANIFEST`) and `BASE_BACKUP ( ..., INCREMENTAL )` runs on it; the new backup
//! records `parent_backup_id`, and the parent lists it in `children_backup_ids` whatever
//! the outcome (Barman does it in a `finally`, so failed children can be found and deleted).

use barman_common::catalogue::{BackupId, BackupInfo, BackupStatus, Catalogue, ServerLayout};
use barman_common::pg::ReplicationConnection;

use super::error::ToolError;
use super::settings::Method;

/// The backup `spec` names, as Barman's `parse_backup_id` finds it (exit 1 when unknown).
pub(super) fn resolve(layout: &ServerLayout, spec: &str) -> Result<(BackupId, BackupInfo), ToolError> {
    let catalogue = Catalogue::load(layout).map_err(|e| ToolError::Failed(e.to_string()))?;
    catalogue
        .resolve(spec)
        .cloned()
        .map_err(|_| ToolError::Failed(format!("Unknown backup '{spec}' for server '{}'", layout.name)))
}

fn refuse(message: impl std::fmt::Display) -> ToolError {
    ToolError::Failed(format!("failed to start backup: {message}"))
}

async fn show(sql: &mut ReplicationConnection, name: &str) -> Option<String> {
    let rows = sql.simple_query(&format!("SHOW {name}")).await.ok()?;
    rows.into_iter().next()?.into_iter().next().flatten()
}

/// Barman's `_validate_incremental_backup_configs`, in its order, on the SQL session; then
/// the parent's state and manifest.
pub(super) async fn validate(
    sql: &mut ReplicationConnection,
    method: &Method,
    layout: &ServerLayout,
    (id, info): (BackupId, BackupInfo),
) -> Result<BackupId, ToolError> {
    let version: u32 = show(sql, "server_version_num").await.and_then(|v| v.parse().ok()).unwrap_or(0);
    if version < 170_000 {
        return Err(refuse(
            "Postgres version 17 or greater is required for incremental backups using the Postgres backup method",
        ));
    }
    if *method != Method::Postgres {
        return Err(refuse(
            "Backup using the `--incremental` flag is available only for 'backup_method = postgres'. \
             Check Barman's documentation for more help on this topic.",
        ));
    }
    if show(sql, "summarize_wal").await.as_deref() != Some("on") {
        return Err(refuse(
            "'summarize_wal' option has to be enabled in the Postgres server to perform an incremental \
             backup using the Postgres backup method",
        ));
    }
    if info.summarize_wal.as_deref() != Some("on") {
        return Err(refuse(format!(
            "Backup ID {id} is not eligible as a parent for an incremental backup because WAL summaries \
             were not enabled when that backup was taken."
        )));
    }
    if !matches!(info.status, BackupStatus::Done | BackupStatus::WaitingForWals) {
        return Err(refuse(format!("the parent backup {id} is {} and cannot be a parent", info.status.as_str())));
    }
    read_manifest(layout, &id).map_err(refuse)?;
    Ok(id)
}

/// The `backup_manifest` of backup `id` (in its data directory, also for tar backups).
pub(super) fn read_manifest(layout: &ServerLayout, id: &BackupId) -> Result<Vec<u8>, String> {
    let path = layout.backup_dir(id).join("data").join("backup_manifest");
    std::fs::read(&path)
        .map_err(|e| format!("the parent backup {id} has no usable backup_manifest ({}: {e})", path.display()))
}

/// Barman's `is_checksum_consistent`: false when this incremental backup was taken with
/// `data_checksums = on` and an ancestor with them off.
pub(super) fn checksum_consistent(layout: &ServerLayout, info: &BackupInfo) -> bool {
    if info.data_checksums.as_deref() != Some("on") {
        return true;
    }
    let mut next = info.parent_backup_id.clone();
    let mut hops = 0;
    while let Some(id) = next.take() {
        let Ok(Some(parent)) = BackupInfo::load(layout, &id) else { return true };
        if parent.data_checksums.as_deref() == Some("off") {
            return false;
        }
        next = parent.parent_backup_id;
        hops += 1;
        if hops > 10_000 {
            break;
        }
    }
    true
}

/// Adds `child` to the parent's `children_backup_ids` (kept in order, never twice).
pub(super) fn link_child(layout: &ServerLayout, parent: &BackupId, child: &BackupId) -> Result<(), String> {
    let Some(mut info) = BackupInfo::load(layout, parent).map_err(|e| e.to_string())? else {
        return Err(format!("the parent backup {parent} has no backup.info"));
    };
    let children = info.children_backup_ids.get_or_insert_with(Vec::new);
    if !children.contains(child) {
        children.push(child.clone());
    }
    info.save(layout, parent).map_err(|e| e.to_string())
}
