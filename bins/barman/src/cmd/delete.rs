//! Deleting backups: `barman delete SERVER BACKUP_ID` and retention enforcement by cron,
//! following Barman 3.20.1's `BackupManager.delete_backup`: delete annotation first, then
//! the data, then the WAL no longer needed (only when no older backup still needs it),
//! then the annotation, the backup directory and the metadata file.

use std::collections::BTreeSet;
use std::fs;
use std::time::Instant;

use barman_common::catalogue::retention::RetentionStatus;
use barman_common::catalogue::{
    clear_deletion_mark, is_marked_for_deletion, keep_target, mark_for_deletion, BackupId, BackupInfo, BackupStatus,
    Catalogue, KeepTarget, LockKind, ServerLayout, XlogDb,
};

use crate::cmd::list::retention_report;
use crate::cmd::show::human_seconds;
use crate::context::Context;
use crate::output::Output;
use crate::server::Server;
use crate::CmdError;

/// `delete SERVER BACKUP_ID`: refused for kept backups and below minimum redundancy.
pub fn run(ctx: &Context, server_name: &str, backup: &str, out: &mut Output) -> Result<(), CmdError> {
    let server = ctx.server(server_name)?;
    let cfg = ctx.config().server(server_name).expect("server() checked it exists");
    let catalogue = Catalogue::load(&server.layout)?;
    let (id, info) = crate::cmd::resolve_backup(&catalogue, backup, server_name)?;
    let refuse = || CmdError::Error(format!("Cannot delete backup ({server_name} {id})"));
    if keep_target(&server.layout, id)?.is_some() {
        out.warning(format!(
            "Skipping delete of backup {id} for server {server_name} as it has a current keep request. If you really want to delete this backup please remove the keep and try again."
        ));
        return Err(refuse());
    }
    let done_full = catalogue
        .entries()
        .iter()
        .filter(|(_, i)| i.status == BackupStatus::Done && i.parent_backup_id.is_none())
        .count();
    let min = cfg.minimum_redundancy as usize;
    if info.status == BackupStatus::Done && info.parent_backup_id.is_none() && min >= done_full {
        out.warning(format!(
            "Skipping delete of backup {id} for server {server_name} due to minimum redundancy requirements (minimum redundancy = {min}, current redundancy = {done_full})"
        ));
        return Err(refuse());
    }
    let _backup_lock = server.try_lock(&LockKind::Backup, "backup")?;
    let lock = server.try_lock(&LockKind::BackupId(id.clone()), "delete")?;
    delete_backup(&server, &catalogue, id, true, out)?;
    let path = lock.path().to_owned();
    drop(lock);
    let _ = fs::remove_file(path);
    Ok(())
}

/// Cron's retention pass: every OBSOLETE backup (and any backup left with a delete
/// annotation by an interrupted delete), oldest first, each under its own lock.
pub fn enforce_retention(ctx: &Context, server: &Server, out: &mut Output) -> Result<(), CmdError> {
    let cfg = ctx.config().server(&server.name).expect("a configured server");
    let catalogue = Catalogue::load(&server.layout)?;
    let Some(mut report) = retention_report(cfg, &catalogue, &server.layout)? else { return Ok(()) };
    for (id, _) in catalogue.entries() {
        if is_marked_for_deletion(&server.layout, id)? {
            report.insert(id.clone(), RetentionStatus::Obsolete);
            clear_deletion_mark(&server.layout, id)?;
        }
    }
    for (id, status) in report {
        if status != RetentionStatus::Obsolete {
            continue;
        }
        let Ok(_lock) = server.try_lock(&LockKind::BackupId(id.clone()), "delete") else {
            out.warning(format!(
                "Another action is in progress for the backup {id} of server {}. Skipping retention policy application",
                server.name
            ));
            continue;
        };
        if !server.layout.backup_dir(&id).exists() {
            continue;
        }
        out.info(format!("Enforcing retention policy: removing backup {id} for server {}", server.name));
        let fresh = Catalogue::load(&server.layout)?;
        delete_backup(server, &fresh, &id, false, out)?;
    }
    Ok(())
}

/// Whether deleting `id` may remove WAL, and the standalone ranges that must survive
/// (Barman's `should_remove_wals`).
fn should_remove_wals(
    layout: &ServerLayout,
    catalogue: &Catalogue,
    id: &BackupId,
    info: &BackupInfo,
    skip_if_standalone: bool,
) -> Result<(bool, Vec<(String, String)>), CmdError> {
    let mut statuses = BackupStatus::AVAILABLE.to_vec();
    statuses.push(info.status);
    let mut ranges = Vec::new();
    let mut cursor = id.clone();
    loop {
        let Some((prev_id, prev)) = catalogue.previous(&cursor, &statuses) else { return Ok((true, ranges)) };
        if keep_target(layout, prev_id)? != Some(KeepTarget::Standalone) || skip_if_standalone {
            return Ok((false, Vec::new()));
        }
        if let (Some(b), Some(e)) = (&prev.begin_wal, &prev.end_wal) {
            ranges.push((b.to_string(), e.to_string()));
        }
        cursor = prev_id.clone();
    }
}

/// Deletes one backup; prints Barman's lines.
pub fn delete_backup(
    server: &Server,
    catalogue: &Catalogue,
    id: &BackupId,
    skip_if_standalone: bool,
    out: &mut Output,
) -> Result<(), CmdError> {
    let layout = &server.layout;
    let (_, info) = catalogue.get(id.as_str()).ok_or_else(|| CmdError::Error(format!("Unknown backup '{id}'")))?;
    let start = (chrono::Local::now(), Instant::now());
    mark_for_deletion(layout, id)?;
    out.info(format!("Deleting backup {id} for server {}", server.name));
    let (remove_wals, ranges) = should_remove_wals(layout, catalogue, id, info, skip_if_standalone)?;
    let next = catalogue.next(id, &BackupStatus::AVAILABLE).map(|(_, i)| i.clone());
    delete_data(layout, id, info)?;
    if remove_wals {
        let remove_until = next.clone().or_else(|| Some(info.clone()));
        let protect = timelines_to_protect(catalogue, id, remove_until.as_ref());
        let removed = remove_wal_before(layout, remove_until.as_ref(), &protect, &ranges)?;
        out.info("Delete associated WAL segments:");
        for name in removed {
            out.info(format!("\t{name}"));
        }
    }
    clear_deletion_mark(layout, id)?;
    let dir = layout.backup_dir(id);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    for p in [layout.backup_info_path(id), layout.legacy_backup_info_path(id)] {
        if p.exists() {
            fs::remove_file(p)?;
        }
    }
    barman_common::durable::fsync_dir(&layout.meta_dir()).ok();
    out.info(format!(
        "Deleted backup {id} (start time: {}, elapsed time: {})",
        start.0.format("%a %b %e %H:%M:%S %Y"),
        human_seconds(start.1.elapsed().as_secs_f64())
    ));
    Ok(())
}

fn delete_data(layout: &ServerLayout, id: &BackupId, info: &BackupInfo) -> Result<(), CmdError> {
    for ts in info.tablespaces.iter().flatten() {
        let dir = layout.backup_dir(id).join(ts.oid.to_string());
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
    }
    for data in ["data", "pgdata"] {
        let dir = layout.backup_dir(id).join(data);
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
    }
    Ok(())
}

/// Timelines of other archiving backups, except the one WAL is removed up to.
fn timelines_to_protect(catalogue: &Catalogue, deleted: &BackupId, until: Option<&BackupInfo>) -> BTreeSet<u32> {
    let Some(until) = until else { return BTreeSet::new() };
    let archiving = [BackupStatus::Started, BackupStatus::WaitingForWals, BackupStatus::Done, BackupStatus::Syncing];
    let mut set: BTreeSet<u32> = catalogue
        .entries()
        .iter()
        .filter(|(bid, i)| bid != deleted && archiving.contains(&i.status))
        .filter_map(|(_, i)| i.timeline.map(barman_common::wal::TimelineId::get))
        .collect();
    if let Some(t) = until.timeline {
        set.remove(&t.get());
    }
    set
}

/// Removes WAL older than `until`'s begin_wal (all of it when `None`), keeping history files,
/// protected timelines and standalone ranges; rewrites xlog.db in place. Returns the names.
fn remove_wal_before(
    layout: &ServerLayout,
    until: Option<&BackupInfo>,
    protect: &BTreeSet<u32>,
    ranges: &[(String, String)],
) -> Result<Vec<String>, CmdError> {
    let begin = until.and_then(|b| b.begin_wal.as_ref()).map(ToString::to_string);
    let mut db = XlogDb::open(layout)?;
    let outcome = db.rewrite_keeping(|e| {
        let name = e.name.as_str();
        let seg = e.name.segment_name().unwrap_or(name);
        e.name.kind() == barman_common::wal::WalFileKind::History
            || protect.contains(&e.name.timeline().get())
            || ranges.iter().any(|(b, end)| seg >= b.as_str() && seg <= end.as_str())
            || begin.as_deref().is_some_and(|b| name >= b)
    })?;
    let mut names = Vec::new();
    for e in outcome.removed {
        let path = layout.wal_path(&e.name);
        let _ = fs::remove_file(&path);
        if let Some(dir) = path.parent().filter(|d| *d != layout.wals_directory) {
            let _ = fs::remove_dir(dir);
        }
        names.push(e.name.to_string());
    }
    Ok(names)
}
