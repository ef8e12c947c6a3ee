//! Relaying one backup (spec `relay.md` §6): backup.info saved `SYNCING` before any data
//! moves, the tree copied with rsync (`--partial-dir`, so an interrupted run keeps what it
//! had, and the next one sends neither the complete files again nor the part of the broken
//! one it already has), tablespace links recreated, every file checked against the
//! backup's `backup_manifest` (size and checksum) or, without one or for a tar-format
//! backup (whose manifest describes the files inside its archives), against a second rsync
//! pass that must find nothing to send, then fsynced. Only then does the backup leave
//! `SYNCING`: `WAITING_FOR_WALS` until the WAL from its begin_wal to its end_wal is on the
//! passive too, then `DONE` — a passive never shows DONE a backup it cannot restore.
//!
//! With `reuse_backup = copy|link` or `parallel_jobs` above 1 the copy is Barman's
//! `sync_backup` one instead: the backup's rsync copy controller, `parallel_jobs` workers,
//! `--link-dest`/`--copy-dest` against this node's previous available copy.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Instant;

use crate::cmd::check_backup::{self, WalVerdict};
use barman_common::catalogue::sync::PrimaryInfo;
use barman_common::catalogue::{BackupId, BackupInfo, BackupStatus, Catalogue, LockKind, ServerLock, Tablespace};
use barman_common::config::{ReuseBackup, ServerConfig};
use barman_common::durable;
use barman_common::manifest::Manifest;
use barman_common::wal::WalSegSize;

use super::error::RelayError;
use super::session::Relay;
use super::wals;
use crate::backup::rsync_copy::{Controller, DirItem, FileItem};
use crate::backup::rsync_method::RsyncSettings;
use crate::rsync::{local_dir, Rsync, Stats};

/// Where rsync keeps the part of a file an interrupted run received.
const PARTIAL_DIR: &str = ".barman-relay-partial";

/// What [`sync`] did with one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Copied and verified; the status it ended in.
    Copied(BackupStatus, Stats),
    /// Nothing to do (already synced, obsolete, absent).
    Skipped(String),
    /// Another relay is copying it.
    Busy(String),
}

/// The primary's backups this passive should copy, oldest first: DONE or WAITING_FOR_WALS
/// there, not DONE or WAITING_FOR_WALS here.
pub fn candidates(local: &Catalogue, info: &PrimaryInfo) -> Vec<BackupId> {
    info.backups
        .iter()
        .filter(|(_, b)| matches!(b.status, BackupStatus::Done | BackupStatus::WaitingForWals))
        .filter(|(id, _)| {
            !local
                .get(id.as_str())
                .is_some_and(|(_, b)| matches!(b.status, BackupStatus::Done | BackupStatus::WaitingForWals))
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// True when the passive's own retention policy (mode auto) would delete the backup at once.
fn obsolete_here(relay: &Relay<'_>, local: &Catalogue, id: &BackupId, remote: &BackupInfo) -> bool {
    if relay.cfg.retention_policy.is_none() || relay.cfg.retention_policy_mode != "auto" {
        return false;
    }
    let mut entries: Vec<(BackupId, BackupInfo)> = local.entries().to_vec();
    entries.retain(|(i, _)| i != id);
    let mut candidate = remote.clone();
    candidate.status = BackupStatus::Done;
    entries.push((id.clone(), candidate));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let with = Catalogue::from_entries(&relay.server.name, entries);
    matches!(
        crate::cmd::list::retention_report(relay.cfg, &with, &relay.server.layout),
        Ok(Some(report)) if report.get(id) == Some(&barman_common::catalogue::retention::RetentionStatus::Obsolete)
    )
}

/// Copies backup `id` of the primary (spec §6.1 decisions first).
pub fn sync(relay: &Relay<'_>, info: &PrimaryInfo, id: &BackupId) -> Result<Outcome, RelayError> {
    let name = &relay.server.name;
    let layout = &relay.server.layout;
    let local = Catalogue::load(layout)?;
    let existing = local.get(id.as_str()).map(|(_, b)| b.clone());
    let Some((_, remote)) = info.backups.iter().find(|(i, _)| i == id) else {
        return match existing {
            None => Err(RelayError::Sync(format!("Backup {id} is absent on {name} server"))),
            Some(b) if b.status == BackupStatus::Failed => {
                relay.warn(format!("Backup {id} is absent on {name} server, purging local backup"));
                let _lock = ServerLock::acquire(&layout.lock_directory, name, &LockKind::BackupId(id.clone()))?;
                layout.remove_backup(id)?;
                Ok(Outcome::Skipped("purged".into()))
            }
            Some(_) => Ok(Outcome::Skipped(format!("Backup {id} exists only on this node"))),
        };
    };
    if existing.as_ref().is_some_and(|b| b.status == BackupStatus::Done) {
        return Ok(Outcome::Skipped(format!("Backup {id} is already synced with {name} server")));
    }
    if let Some(parent) = &remote.parent_backup_id {
        // A child is never copied, let alone DONE, before its parent is DONE here.
        if !local.get(parent.as_str()).is_some_and(|(_, b)| b.status == BackupStatus::Done) {
            return Ok(Outcome::Skipped(format!(
                "Parent backup {parent} of incremental backup {id} is not synced on {name} yet: skipping this \
                 incremental for now"
            )));
        }
    }
    if obsolete_here(relay, &local, id, remote) {
        return Ok(Outcome::Skipped(format!("Remote backup {name}/{id} is obsolete for local retention policies.")));
    }
    let Ok(_lock) = ServerLock::acquire(&layout.lock_directory, name, &LockKind::SyncBackup(id.clone())) else {
        return Ok(Outcome::Busy(format!(
            "Another synchronisation process for backup {id} of server {name} is already running."
        )));
    };
    // Another relay may have finished this copy between our catalogue read and the lock.
    if BackupInfo::load(layout, id)?.is_some_and(|b| b.status == BackupStatus::Done) {
        return Ok(Outcome::Skipped(format!("Backup {id} is already synced with {name} server")));
    }
    // The primary's record, under this node's name, SYNCING until the copy is proven.
    let mut record = remote.clone();
    record.server_name = Some(name.clone());
    record.status = BackupStatus::Syncing;
    record.error = None;
    record.save(layout, id)?;
    let started = Instant::now();
    match copy_and_verify(relay, info, id, &record) {
        Ok(stats) => {
            let status = finish(relay, info, id, &mut record)?;
            if let Some(parent) = &record.parent_backup_id {
                refresh_children(relay, info, parent)?;
            }
            relay.say(format!(
                "Backup {id} of server {name} copied: {} files sent, {} bytes received in {:.1}s; status {}",
                stats.files_transferred,
                stats.bytes_received,
                started.elapsed().as_secs_f64(),
                status.as_str()
            ));
            Ok(Outcome::Copied(status, stats))
        }
        Err(e) => {
            // SYNCING stays: the next run resumes from what arrived. Only a backup that
            // cannot be right (verification failed) is marked FAILED.
            if let RelayError::Verify(msg) = &e {
                record.status = BackupStatus::Failed;
                record.error = Some(format!("failure syncing server {name} backup {id}: {msg}"));
                record.save(layout, id)?;
            }
            Err(e)
        }
    }
}

/// The parent's `children_backup_ids` as the primary has them now (Barman's
/// `sync_parent_backup_info`): only that field of the local backup.info changes.
fn refresh_children(relay: &Relay<'_>, info: &PrimaryInfo, parent: &BackupId) -> Result<(), RelayError> {
    let layout = &relay.server.layout;
    let Some((_, remote)) = info.backups.iter().find(|(i, _)| i == parent) else { return Ok(()) };
    let _lock = ServerLock::acquire(&layout.lock_directory, &relay.server.name, &LockKind::BackupId(parent.clone()))?;
    if let Some(mut local) = BackupInfo::load(layout, parent)? {
        if local.children_backup_ids != remote.children_backup_ids {
            local.children_backup_ids.clone_from(&remote.children_backup_ids);
            local.save(layout, parent)?;
        }
    }
    Ok(())
}

fn copy_and_verify(
    relay: &Relay<'_>,
    info: &PrimaryInfo,
    id: &BackupId,
    record: &BackupInfo,
) -> Result<Stats, RelayError> {
    let layout = &relay.server.layout;
    let remote_base = info
        .config_str("basebackups_directory")
        .ok_or_else(|| RelayError::Sync("the primary did not report its basebackups_directory".into()))?;
    let dest = layout.backup_dir(id);
    durable::create_dir_all(&dest)?;
    let source = Rsync::remote_dir(&format!("{}/{id}", remote_base.trim_end_matches('/')));
    let tablespaces = record.tablespaces.clone().unwrap_or_default();
    // The primary's keep annotation (`meta/<id>-keep`, which Barman leaves behind) rides in
    // the same rsync, so a backup kept there is not deleted by this node's retention.
    let keep_source =
        info.config_str("backup_directory").map(|d| format!(" :{}/meta/{id}-keep", d.trim_end_matches('/')));
    let transfer = |dry_run: bool| {
        let mut cmd = relay.rsync.command();
        cmd.args(["-rLKpts", "--delete", "--exclude=/backup.info", "--exclude=/.backup.lock"]);
        cmd.arg(format!("--partial-dir={PARTIAL_DIR}"));
        for t in &tablespaces {
            cmd.arg(format!("--exclude=/data/pg_tblspc/{}", t.oid));
        }
        if dry_run {
            cmd.args(["--dry-run", "--itemize-changes"]);
        }
        cmd.arg(&source);
        if let (Some(keep), false) = (&keep_source, dry_run) {
            cmd.arg("--ignore-missing-args").arg(keep);
        }
        cmd.arg(local_dir(&dest));
        cmd
    };
    let stats = if reusing(relay.cfg) {
        parallel_copy(relay, id, &source, &tablespaces, keep_source.as_deref())
    } else {
        relay.rsync.run(transfer(false), None).map_err(|f| f.to_string())
    };
    let stats = stats
        .map_err(|f| RelayError::Sync(format!("failure syncing server {} backup {id}: {f}", relay.server.name)))?;
    let tar_format = record.compression.is_some();
    if !tar_format {
        link_tablespaces(&dest, &tablespaces)?;
    }
    let manifest = dest.join("data").join("backup_manifest");
    if manifest.is_file() && !tar_format {
        let m = Manifest::read(&manifest).map_err(|e| RelayError::Verify(e.to_string()))?;
        let v = m.verify(&dest.join("data")).map_err(|e| RelayError::Verify(format!("backup_manifest check: {e}")))?;
        relay.say(format!("Backup {id}: {} files match backup_manifest ({} bytes checksummed)", v.files, v.bytes));
    } else {
        // No manifest (rsync-method or PostgreSQL < 13 backups), or one describing the
        // content of tar archives: a second pass must find every file present with the
        // primary's size and time.
        verify_by_dry_run(transfer(true))?;
    }
    move_keep(relay, id, &dest)?;
    durable::sync_filesystem_of(&dest)?;
    Ok(stats)
}

/// Whether the copy goes through the copy controller: `reuse_backup = copy|link` or
/// `parallel_jobs` above 1 (else one rsync with `--partial-dir`, which resumes a broken file).
fn reusing(cfg: &ServerConfig) -> bool {
    cfg.reuse_backup.is_some_and(|r| r != ReuseBackup::Off) || cfg.parallel_jobs > 1
}

/// Barman's `sync_backup` copy: the backup's directory pulled by the backup's copy
/// controller in `parallel_jobs` workers, with `--link-dest` (or `--copy-dest`) against this
/// node's previous available copy (files older than its start trusted on size and time), the
/// primary's metadata and tablespace links left out; the keep annotation after it.
fn parallel_copy(
    relay: &Relay<'_>,
    id: &BackupId,
    source: &str,
    tablespaces: &[Tablespace],
    keep_source: Option<&str>,
) -> Result<Stats, String> {
    let layout = &relay.server.layout;
    let rs = RsyncSettings::from_config(relay.cfg, false);
    let previous = Catalogue::load(layout)
        .ok()
        .and_then(|c| c.available().rev().find(|(p, _)| p < id).map(|(p, i)| (layout.backup_dir(p), i.begin_time)));
    let previous = previous.filter(|_| rs.reuse != ReuseBackup::Off);
    let mut filters = vec!["--exclude=/backup.info".to_owned(), "--exclude=/.backup.lock".into()];
    filters.extend(tablespaces.iter().map(|t| format!("--exclude=/data/pg_tblspc/{}", t.oid)));
    let dest = absolute(layout.backup_dir(id));
    let controller = Controller {
        rsync: relay.rsync.clone(),
        workers: rs.workers,
        start_batch: rs.start_batch,
        link: rs.reuse == ReuseBackup::Link,
        safe_horizon: previous.as_ref().and_then(|p| p.1).map(|t| t.with_timezone(&chrono::Local).naive_local()),
        retry: rs.retry,
        push: false,
        compare_dst: false,
    };
    let dir = DirItem {
        label: "basebackup".into(),
        src: source.trim_start_matches(" :").trim_end_matches('/').to_owned(),
        dst: dest.clone(),
        filters,
        reuse: previous.map(|p| absolute(p.0)),
        bwlimit: relay.rsync.bwlimit,
    };
    let keep: Vec<FileItem> = keep_source
        .map(|k| FileItem {
            label: "keep".into(),
            src: k.trim_start_matches(" :").to_owned(),
            dst: local_dir(&dest),
            optional: true,
        })
        .into_iter()
        .collect();
    let outcome = controller.copy(&[dir], &keep)?;
    relay.say(format!(
        "Backup {id}: {} files listed, {} transferred ({} workers)",
        outcome.files, outcome.stats.files_transferred, rs.workers
    ));
    Ok(outcome.stats)
}

fn absolute(p: std::path::PathBuf) -> std::path::PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// Tablespace links, as barman-backup and Barman lay them out: data/pg_tblspc/<oid> -> the
/// copy's <oid> directory (a tar-format backup keeps its tablespaces in data/<oid>.tar.<ext>
/// and has no such links).
fn link_tablespaces(dest: &std::path::Path, tablespaces: &[Tablespace]) -> Result<(), RelayError> {
    let tblspc = dest.join("data").join("pg_tblspc");
    for t in tablespaces {
        let link = tblspc.join(t.oid.to_string());
        let target = dest.join(t.oid.to_string());
        if fs::symlink_metadata(&link).is_ok() {
            fs::remove_file(&link)?;
        }
        durable::create_dir_all(&tblspc)?;
        symlink(&target, &link)?;
    }
    Ok(())
}

/// Runs the copy's rsync again as `--dry-run --itemize-changes`: anything it would still
/// transfer or delete means the copy differs from the primary's.
fn verify_by_dry_run(mut cmd: std::process::Command) -> Result<(), RelayError> {
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let out = cmd.output()?;
    let pending: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(">f") || l.starts_with("cL") || l.starts_with("*deleting"))
        .map(str::to_owned)
        .collect();
    if !out.status.success() || !pending.is_empty() {
        return Err(RelayError::Verify(format!(
            "the copy differs from the primary's ({} entries, first: {})",
            pending.len(),
            pending.first().map_or("rsync failed", String::as_str)
        )));
    }
    Ok(())
}

/// Moves the keep annotation the copy brought along from the backup directory into `meta/`
/// (or removes a stale one when the primary released it).
fn move_keep(relay: &Relay<'_>, id: &BackupId, dest: &std::path::Path) -> Result<(), RelayError> {
    let brought = dest.join(format!("{id}-keep"));
    let meta = relay.server.layout.meta_dir();
    let target = meta.join(format!("{id}-keep"));
    if brought.is_file() {
        durable::create_dir_all(&meta)?;
        fs::rename(&brought, &target)?;
    } else if target.is_file() {
        fs::remove_file(&target)?;
    }
    Ok(())
}

/// WAITING_FOR_WALS until the backup's WAL is here (fetching any of it the passive lacks),
/// then DONE, with Barman's check-backup rules.
fn finish(
    relay: &Relay<'_>,
    info: &PrimaryInfo,
    id: &BackupId,
    record: &mut BackupInfo,
) -> Result<BackupStatus, RelayError> {
    fill_wal_gap(relay, info, record)?;
    record.status = BackupStatus::WaitingForWals;
    record.save(&relay.server.layout, id)?;
    let _lock =
        ServerLock::acquire(&relay.server.layout.lock_directory, &relay.server.name, &LockKind::BackupId(id.clone()))?;
    match check_backup::check(&relay.server.layout, id, record).map_err(|e| RelayError::Sync(e.to_string()))? {
        Some(WalVerdict::Failed(reason)) => relay.warn(format!("backup {id}: {reason}")),
        Some(WalVerdict::Waiting) => relay.say(format!(
            "Backup {id} is waiting for WAL files up to {}",
            record.end_wal.as_ref().map(ToString::to_string).unwrap_or_default()
        )),
        _ => {}
    }
    Ok(record.status)
}

/// WAL of the backup's range that is older than what the incremental WAL pass moves past
/// (a backup re-copied after local retention purged its WAL): fetched from a full listing.
fn fill_wal_gap(relay: &Relay<'_>, info: &PrimaryInfo, record: &BackupInfo) -> Result<(), RelayError> {
    let (Some(begin), Some(end)) = (&record.begin_wal, &record.end_wal) else { return Ok(()) };
    let size = record.xlog_segment_size.unwrap_or(WalSegSize::DEFAULT);
    let have = wals::local_names(relay)?;
    let mut missing = Vec::new();
    let mut w = begin.clone();
    while w.as_str() <= end.as_str() {
        if !have.contains(w.as_str()) {
            missing.push(w.to_string());
        }
        let Ok(next) = w.next_segment(size) else { break };
        w = next;
    }
    if missing.is_empty() {
        return Ok(());
    }
    let in_info = missing.iter().all(|m| info.wals.iter().any(|e| e.name.as_str() == m));
    let full;
    let source = if in_info {
        info
    } else {
        full = relay.fetch_info(false)?;
        &full
    };
    let entries: Vec<_> = source.wals.iter().filter(|e| missing.contains(&e.name.to_string())).collect();
    let Ok(_lock) = ServerLock::acquire_blocking(
        &relay.server.layout.lock_directory.join(LockKind::SyncWal.file_name(&relay.server.name)),
    ) else {
        return Ok(());
    };
    wals::copy(relay, source, &entries)?;
    Ok(())
}
