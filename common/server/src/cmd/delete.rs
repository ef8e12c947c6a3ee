//! Deleting backups: `barman delete SERVER BACKUP_ID` and retention enforcement by cron,
//! following Barman 3.20.1's `BackupManager.delete_backup`: delete annotation first, then
//! the data, then the WAL no longer needed (only when no older backup still needs it),
//! then the annotation, the backup directory and the metadata file.
//!
//! Hooks as Barman: `pre_delete_script`/`pre_delete_retry_script` after the annotation is
//! written (a retry script exiting 63 stops the delete there, leaving the annotation, which
//! makes cron's retention finish the delete later), `post_delete_retry_script`/
//! `post_delete_script` at the end; `*_wal_delete_*` around every WAL file removed. Unlike
//! Barman, a WAL purge stopped by a `pre_wal_delete_retry_script` still drops the files
//! already deleted from xlog.db (Barman leaves their lines behind).
//!
//! `wal_retention_window` (our extension, off by default): WAL files archived within the
//! window are kept even when they precede every remaining backup.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use barman_common::catalogue::retention::{keep_for_wal_window, RetentionStatus};
use barman_common::catalogue::{
    clear_deletion_mark, is_marked_for_deletion, keep_target, mark_for_deletion, repr_str, BackupId, BackupInfo,
    BackupStatus, Catalogue, KeepTarget, LockKind, ServerLayout, XlogDb, XlogDbEntry,
};
use barman_common::config::HookEvent;
use chrono::{DateTime, TimeDelta, Utc};

use crate::cmd::list::retention_report;
use crate::cmd::show::human_seconds;
use crate::context::Context;
use crate::hooks::{Aborted, HookEnv};
use crate::output::Output;
use crate::server::Server;
use crate::CmdError;

/// `delete SERVER BACKUP_ID`: refused for kept backups and below minimum redundancy.
/// Its messages are logged under `barman.backup`, as Barman's backup manager's.
pub fn run(ctx: &Context, server_name: &str, backup: &str, out: &mut Output) -> Result<(), CmdError> {
    out.logged_as("backup", |out| delete_one(ctx, server_name, backup, out))
}

fn delete_one(ctx: &Context, server_name: &str, backup: &str, out: &mut Output) -> Result<(), CmdError> {
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
    if info.children_backup_ids.as_ref().is_some_and(|c| !c.is_empty()) {
        out.warning(format!(
            "Backup {id} has incremental backups which depend on it. Deleting all backups in the tree"
        ));
    }
    let _backup_lock = server.try_lock(&LockKind::Backup, "backup")?;
    let lock = server.try_lock(&LockKind::BackupId(id.clone()), "delete")?;
    // Barman's `walk_backups_tree`: the descendants first (leaves up), the backup last.
    for del in backups_tree(&catalogue, id) {
        let fresh = Catalogue::load(&server.layout)?;
        if fresh.get(del.as_str()).is_none() {
            continue;
        }
        let deleted = delete_backup(&server, &fresh, &del, true, cfg.wal_retention_window, out);
        if deleted.is_err() && del != *id {
            out.error(
                "Failed to delete one of its incremental backups. Make sure all its dependent backups are \
                 deletable and try again.",
            );
        }
        deleted?;
    }
    let path = lock.path().to_owned();
    drop(lock);
    let _ = fs::remove_file(path);
    Ok(())
}

/// `id` and its incremental descendants, leaves first (Barman's `walk_backups_tree`).
fn backups_tree(catalogue: &Catalogue, id: &BackupId) -> Vec<BackupId> {
    let mut order = Vec::new();
    let children = catalogue.get(id.as_str()).and_then(|(_, i)| i.children_backup_ids.clone()).unwrap_or_default();
    for child in &children {
        if child != id {
            order.extend(backups_tree(catalogue, child));
        }
    }
    order.push(id.clone());
    order
}

/// Removes `id` from its parent's `children_backup_ids` (`None` once empty), as Barman
/// does after deleting an incremental backup; a parent already gone is left alone.
fn unlink_from_parent(layout: &ServerLayout, info: &BackupInfo, id: &BackupId) -> Result<(), CmdError> {
    let Some(parent_id) = &info.parent_backup_id else { return Ok(()) };
    let Some(mut parent) = BackupInfo::load(layout, parent_id)? else { return Ok(()) };
    if let Some(children) = &mut parent.children_backup_ids {
        children.retain(|c| c != id);
        if children.is_empty() {
            parent.children_backup_ids = None;
        }
    }
    parent.save(layout, parent_id)?;
    Ok(())
}

/// Cron's retention pass: every OBSOLETE backup (and any backup left with a delete
/// annotation by an interrupted delete), oldest first, each under its own lock; logged
/// under `barman.backup`, as Barman's backup manager's.
pub fn enforce_retention(ctx: &Context, server: &Server, out: &mut Output) -> Result<(), CmdError> {
    out.logged_as("backup", |out| enforce(ctx, server, out))
}

fn enforce(ctx: &Context, server: &Server, out: &mut Output) -> Result<(), CmdError> {
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
        delete_backup(server, &fresh, &id, false, cfg.wal_retention_window, out)?;
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

/// Deletes one backup; prints Barman's lines. `wal_window` is `wal_retention_window`.
pub fn delete_backup(
    server: &Server,
    catalogue: &Catalogue,
    id: &BackupId,
    skip_if_standalone: bool,
    wal_window: Option<TimeDelta>,
    out: &mut Output,
) -> Result<(), CmdError> {
    let layout = &server.layout;
    let (_, info) = catalogue.get(id.as_str()).ok_or_else(|| CmdError::Error(format!("Unknown backup '{id}'")))?;
    let start = (chrono::Local::now(), Instant::now());
    mark_for_deletion(layout, id)?;
    let previous_id = catalogue.previous(id, &BackupStatus::AVAILABLE).map(|(b, _)| b.clone());
    let next_id = catalogue.next(id, &BackupStatus::AVAILABLE).map(|(b, _)| b.clone());
    let pre_env = HookEnv::backup(layout, id, info, previous_id.as_ref(), next_id.as_ref());
    server.hooks.pre(HookEvent::Delete, &pre_env).map_err(|a| CmdError::Exception(a.to_string()))?;
    out.info(format!("Deleting backup {id} for server {}", server.name));
    let (remove_wals, ranges) = should_remove_wals(layout, catalogue, id, info, skip_if_standalone)?;
    let next = catalogue.next(id, &BackupStatus::AVAILABLE).map(|(_, i)| i.clone());
    delete_data(layout, id, info)?;
    if remove_wals {
        let remove_until = next.clone().or_else(|| Some(info.clone()));
        let protect = timelines_to_protect(catalogue, id, remove_until.as_ref());
        out.info("Delete associated WAL segments:");
        let rules = WalRemoval { until: remove_until.as_ref(), protect: &protect, ranges: &ranges, window: wal_window };
        let removed = remove_wal_before(server, &rules, Utc::now(), out)?;
        for name in removed {
            out.info(format!("\t{name}"));
        }
    }
    clear_deletion_mark(layout, id)?;
    layout.remove_backup(id)?;
    out.info(format!(
        "Deleted backup {id} (start time: {}, elapsed time: {})",
        start.0.format("%a %b %e %H:%M:%S %Y"),
        human_seconds(start.1.elapsed().as_secs_f64())
    ));
    unlink_from_parent(layout, info, id)?;
    if server.hooks.any(HookEvent::Delete) {
        // Barman looks the neighbours up again once backup.info is gone: a backup that was
        // not WAITING_FOR_WALS/DONE is then unknown, and both ids are empty.
        let (previous, next) =
            if info.status.is_available() { (previous_id.as_ref(), next_id.as_ref()) } else { (None, None) };
        let post_env = HookEnv::backup(layout, id, info, previous, next);
        server.hooks.post(HookEvent::Delete, &post_env, &post_env);
    }
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

/// Barman's `remove_wal_before_backup` after a server's first backup: the WAL archived
/// before its begin_wal goes (history files stay, and so does WAL inside
/// `wal_retention_window`). Returns the names removed.
pub fn remove_wal_before_first_backup(
    server: &Server,
    first: &BackupInfo,
    wal_window: Option<TimeDelta>,
    out: &mut Output,
) -> Result<Vec<String>, CmdError> {
    let protect = BTreeSet::new();
    let rules = WalRemoval { until: Some(first), protect: &protect, ranges: &[], window: wal_window };
    remove_wal_before(server, &rules, Utc::now(), out)
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

/// Which WAL files a purge keeps.
struct WalRemoval<'a> {
    /// WAL from this backup's begin_wal on is kept (`None`: nothing is kept by position).
    until: Option<&'a BackupInfo>,
    /// Timelines whose WAL is kept.
    protect: &'a BTreeSet<u32>,
    /// Inclusive segment ranges kept for standalone backups.
    ranges: &'a [(String, String)],
    /// `wal_retention_window`: WAL archived within it is kept.
    window: Option<TimeDelta>,
}

impl WalRemoval<'_> {
    fn keeps(&self, e: &XlogDbEntry, now: DateTime<Utc>) -> bool {
        let name = e.name.as_str();
        let seg = e.name.segment_name().unwrap_or(name);
        let begin = self.until.and_then(|b| b.begin_wal.as_ref());
        e.name.kind() == barman_common::wal::WalFileKind::History
            || self.protect.contains(&e.name.timeline().get())
            || self.ranges.iter().any(|(b, end)| seg >= b.as_str() && seg <= end.as_str())
            || begin.is_some_and(|b| name >= b.as_str())
            || keep_for_wal_window(self.window, e.time, now)
    }
}

/// Removes the WAL files `rules` do not keep, running the wal_delete hooks around each (a
/// whole hash directory at once when all its files go, as Barman), under the xlog.db lock;
/// then rewrites xlog.db in place without them. Returns the names. A pre retry script's
/// ABORT_STOP ends the purge: the files handled so far leave xlog.db, then the error.
fn remove_wal_before(
    server: &Server,
    rules: &WalRemoval<'_>,
    now: DateTime<Utc>,
    out: &mut Output,
) -> Result<Vec<String>, CmdError> {
    let layout = &server.layout;
    let mut db = XlogDb::open(layout)?;
    let mut doomed: Vec<XlogDbEntry> = Vec::new();
    // Keeps every line (re-formatted like Barman, invalid names dropped) while collecting the
    // doomed ones: xlog.db only loses a line once its file has been dealt with.
    db.rewrite_keeping(|e| {
        if !rules.keeps(e, now) {
            doomed.push(e.clone());
        }
        true
    })?;
    let mut by_dir: Vec<(PathBuf, Vec<XlogDbEntry>)> = Vec::new();
    for e in doomed {
        let dir = layout.wal_path(&e.name).parent().map(Path::to_path_buf).unwrap_or_default();
        match by_dir.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, list)) => list.push(e),
            None => by_dir.push((dir, vec![e])),
        }
    }
    let mut handled: Vec<String> = Vec::new();
    let mut aborted: Option<Aborted> = None;
    for (dir, list) in &by_dir {
        let result = if whole_dir_goes(layout, dir, list) {
            delete_wal_dir(server, dir, list, &mut handled)
        } else {
            list.iter().try_for_each(|e| delete_wal_file(server, e, &mut handled, out))
        };
        if let Err(a) = result {
            aborted = Some(a);
            break;
        }
    }
    let gone: HashSet<&str> = handled.iter().map(String::as_str).collect();
    db.rewrite_keeping(|e| !gone.contains(e.name.as_str()))?;
    drop(db);
    match aborted {
        Some(a) => Err(CmdError::Exception(a.to_string())),
        None => Ok(handled),
    }
}

/// A hash directory is removed in one go when everything it holds goes. (Barman also does so
/// when 256 of its files go, which with segments under 16 MiB would remove WAL still
/// needed; we only use the "all it holds" test.)
fn whole_dir_goes(layout: &ServerLayout, dir: &Path, list: &[XlogDbEntry]) -> bool {
    if dir == layout.wals_directory {
        return false;
    }
    let names: HashSet<&str> = list.iter().map(|e| e.name.as_str()).collect();
    fs::read_dir(dir)
        .is_ok_and(|rd| rd.filter_map(Result::ok).all(|d| d.file_name().to_str().is_some_and(|n| names.contains(n))))
}

fn wal_env(layout: &ServerLayout, e: &XlogDbEntry) -> HookEnv {
    HookEnv::wal(e.name.as_str(), &layout.wal_path(&e.name), e.size, e.time, e.compression.as_deref())
}

/// Pre hooks for every file, one `rmtree`, post hooks for every file (Barman's
/// `_delete_wal_directory`).
fn delete_wal_dir(server: &Server, dir: &Path, list: &[XlogDbEntry], handled: &mut Vec<String>) -> Result<(), Aborted> {
    let hooks = &server.hooks;
    for e in list {
        hooks.pre(HookEvent::WalDelete, &wal_env(&server.layout, e))?;
    }
    let _ = fs::remove_dir_all(dir);
    for e in list {
        let path = server.layout.wal_path(&e.name);
        let env = wal_env(&server.layout, e);
        let env = if path.exists() { env.with_error(&format!("could not remove {}", path.display())) } else { env };
        hooks.post(HookEvent::WalDelete, &env, &env);
        handled.push(e.name.to_string());
    }
    Ok(())
}

/// Pre hooks, unlink (and the hash directory once empty), post hooks with the failure if
/// any (Barman's `_delete_wal_file`).
fn delete_wal_file(
    server: &Server,
    e: &XlogDbEntry,
    handled: &mut Vec<String>,
    out: &mut Output,
) -> Result<(), Aborted> {
    let env = wal_env(&server.layout, e);
    server.hooks.pre(HookEvent::WalDelete, &env)?;
    let path = server.layout.wal_path(&e.name);
    let error = match fs::remove_file(&path) {
        Ok(()) => {
            if let Some(dir) = path.parent().filter(|d| *d != server.layout.wals_directory) {
                let _ = fs::remove_dir(dir);
            }
            String::new()
        }
        Err(err) => {
            let msg = format!(
                "Ignoring deletion of WAL file {} for server {}: {}",
                e.name,
                server.name,
                py_os_error(&err, &path)
            );
            out.warning(msg.clone());
            msg
        }
    };
    let env = env.with_error(&error);
    server.hooks.post(HookEvent::WalDelete, &env, &env);
    handled.push(e.name.to_string());
    Ok(())
}

/// `str(OSError)` as Python prints it: `[Errno 2] No such file or directory: '/path'`.
fn py_os_error(e: &io::Error, path: &Path) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let text = e.to_string();
            let reason = text.split(" (os error").next().unwrap_or(&text);
            format!("[Errno {n}] {reason}: {}", repr_str(&path.display().to_string()))
        }
        None => e.to_string(),
    }
}
