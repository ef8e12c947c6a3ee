//! `barman check-backup SERVER BACKUP_ID`: is every WAL segment from the backup's begin_wal to
//! its end_wal in the archive? WAITING_FOR_WALS becomes DONE when they all are, FAILED when
//! one is missing below the newest archived segment or the backup spans timelines, as
//! Barman 3.20.1's `BackupManager.check_backup`. `barman cron` runs it on the oldest
//! WAITING_FOR_WALS backup of each server, and `barman-backup --wait` after its copy.

use std::fs;

use barman_common::catalogue::{BackupId, BackupInfo, BackupStatus, Catalogue, LockKind, ServerLayout};
use barman_common::wal::{WalFileName, WalSegSize};

use crate::context::Context;
use crate::output::Output;
use crate::server::Server;
use crate::CmdError;

/// What the archive says about a backup's WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalVerdict {
    /// Not all of it has been archived yet.
    Waiting,
    /// All of it is there.
    Done,
    /// It can never be complete: the `error` text to record.
    Failed(String),
}

/// The newest archived segment of the timeline `tli` (8 hex digits), found like Barman's
/// `get_latest_archived_wals_info`: the last hash directory of the timeline holding a segment.
pub fn latest_archived_segment(layout: &ServerLayout, tli: &str) -> Option<String> {
    let mut dirs: Vec<String> = fs::read_dir(&layout.wals_directory)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 16 && n.starts_with(tli) && n.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    dirs.sort_unstable_by(|a, b| b.cmp(a));
    dirs.iter().find_map(|d| {
        fs::read_dir(layout.wals_directory.join(d))
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.parse::<WalFileName>().is_ok_and(|w| w.is_segment()))
            .max()
    })
}

/// Barman's cases 0-6 for one backup; `None` while the copy is still running (no end_wal).
pub fn wal_verdict(layout: &ServerLayout, info: &BackupInfo) -> Option<WalVerdict> {
    let (begin, end) = (info.begin_wal.as_ref()?, info.end_wal.as_ref()?);
    let (begin_tli, end_tli) = (&begin.as_str()[..8], &end.as_str()[..8]);
    if begin_tli != end_tli {
        return Some(WalVerdict::Failed(format!(
            "Backups spanning multiple timelines are not supported. The backup starts in timeline {begin_tli} and ends in timeline {end_tli}."
        )));
    }
    let Some(last) = latest_archived_segment(layout, begin_tli) else { return Some(WalVerdict::Waiting) };
    if last.as_str() < begin.as_str() {
        return Some(WalVerdict::Waiting);
    }
    let size = info.xlog_segment_size.unwrap_or(WalSegSize::DEFAULT);
    let mut wal = begin.clone();
    while wal.as_str() <= end.as_str() && wal.as_str() <= last.as_str() {
        if !layout.wal_path(&wal).exists() {
            return Some(WalVerdict::Failed(format!(
                "At least one WAL file is missing. The first missing WAL file is {wal}"
            )));
        }
        let Ok(next) = wal.next_segment(size) else { break };
        wal = next;
    }
    Some(if end.as_str() <= last.as_str() { WalVerdict::Done } else { WalVerdict::Waiting })
}

/// Checks one backup and saves its new status if it changed; returns the verdict. Only
/// WAITING_FOR_WALS and DONE backups are touched.
pub fn check(layout: &ServerLayout, id: &BackupId, info: &mut BackupInfo) -> Result<Option<WalVerdict>, CmdError> {
    if !matches!(info.status, BackupStatus::WaitingForWals | BackupStatus::Done) {
        return Ok(None);
    }
    let Some(verdict) = wal_verdict(layout, info) else { return Ok(None) };
    let before = (info.status, info.error.clone());
    match &verdict {
        WalVerdict::Done => info.status = BackupStatus::Done,
        WalVerdict::Waiting => info.status = BackupStatus::WaitingForWals,
        WalVerdict::Failed(error) => {
            info.status = BackupStatus::Failed;
            info.error = Some(error.clone());
        }
    }
    if (info.status, info.error.clone()) != before {
        info.save(layout, id)?;
    }
    Ok(Some(verdict))
}

fn check_locked(server: &Server, id: &BackupId, out: &mut Output) -> Result<(), CmdError> {
    let _lock = server.try_lock(&LockKind::BackupId(id.clone()), "check-backup")?;
    let Some(mut info) = BackupInfo::load(&server.layout, id)? else {
        return Err(CmdError::Error(format!("Unknown backup '{id}' for server '{}'", server.name)));
    };
    if let Some(WalVerdict::Failed(reason)) = check(&server.layout, id, &mut info)? {
        out.error(format!("This backup has been marked as FAILED due to the following reason: {reason}"));
    }
    Ok(())
}

/// `check-backup SERVER BACKUP_ID`.
pub fn run(ctx: &Context, name: &str, backup: &str, out: &mut Output) -> Result<(), CmdError> {
    let server = ctx.server(name)?;
    let catalogue = Catalogue::load(&server.layout)?;
    let id = crate::cmd::resolve_backup(&catalogue, backup, &server.name)?.0.clone();
    check_locked(&server, &id, out)
}

/// The cron step: checks the oldest WAITING_FOR_WALS backup of `server`, if any.
pub fn cron_check(server: &Server, out: &mut Output) -> Result<(), CmdError> {
    let catalogue = Catalogue::load(&server.layout)?;
    let Some((id, _)) = catalogue.with_status(&[BackupStatus::WaitingForWals]).next() else { return Ok(()) };
    check_locked(server, &id.clone(), out)
}
