//! `barman list-files [--target T] [--list-empty-directories] SERVER BACKUP_ID`: the paths
//! of a backup's files, as Barman's `BackupInfo.get_directory_entries`: `data` walks the
//! backup directory top-down (files sorted), `standalone` adds the WAL segments from the
//! backup's begin to its end, `wal` lists the archived WAL from its begin up to the next
//! backup's end (every `.history` too), `full` is `data` plus `wal`.

use std::path::{Path, PathBuf};

use barman_common::catalogue::{BackupInfo, BackupStatus, Catalogue, ServerLayout, XlogDb};
use barman_common::wal::{WalFileKind, WalSegSize};

use crate::cmd::check_archived_wal_range::segments;
use crate::context::{layout, Context};
use crate::output::Output;
use crate::CmdError;

/// What `--target` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The backup directory only.
    Data,
    /// Data plus the WAL segments the backup needs to be consistent.
    Standalone,
    /// The WAL from the backup up to the next one.
    Wal,
    /// Data plus wal.
    Full,
}

/// `list-files`.
pub fn run(
    ctx: &Context,
    name: &str,
    backup: &str,
    target: Target,
    empty_dirs: bool,
    out: &mut Output,
) -> Result<(), CmdError> {
    let cfg = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    let layout = layout(cfg);
    let catalogue = Catalogue::load(&layout)?;
    let (id, info) = crate::cmd::resolve_backup(&catalogue, backup, name)?;
    let mut paths = Vec::new();
    if target != Target::Wal {
        walk(&layout.backup_dir(id), empty_dirs, &mut paths)?;
    }
    if target == Target::Standalone {
        if let (Some(begin), Some(end)) = (&info.begin_wal, &info.end_wal) {
            let size = info.xlog_segment_size.unwrap_or(WalSegSize::DEFAULT);
            paths.extend(segments(begin, end, size)?.iter().map(|n| layout.wal_path(n)));
        }
    }
    if matches!(target, Target::Wal | Target::Full) {
        paths.extend(wal_until_next_backup(&layout, &catalogue, id.as_str(), info)?);
    }
    for p in paths {
        out.info(p.display().to_string());
    }
    Ok(())
}

/// `os.walk` top-down: a directory's files (sorted), then its subdirectories (sorted here,
/// where Python keeps the directory's order); symlinked directories are not entered.
pub(crate) fn walk(dir: &Path, empty_dirs: bool, paths: &mut Vec<PathBuf>) -> Result<(), CmdError> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() {
            dirs.push((path, entry.file_type()?.is_symlink()));
        } else {
            files.push(path);
        }
    }
    files.sort();
    dirs.sort();
    if empty_dirs && files.is_empty() && dirs.is_empty() {
        paths.push(dir.to_path_buf());
    }
    paths.extend(files);
    for (sub, symlink) in dirs {
        if !symlink {
            walk(&sub, empty_dirs, paths)?;
        }
    }
    Ok(())
}

/// Barman's `get_wal_until_next_backup(include_history=True)`.
fn wal_until_next_backup(
    layout: &ServerLayout,
    catalogue: &Catalogue,
    id: &str,
    info: &BackupInfo,
) -> Result<Vec<PathBuf>, CmdError> {
    let Some(begin) = &info.begin_wal else { return Ok(Vec::new()) };
    let statuses = [BackupStatus::WaitingForWals, BackupStatus::Done];
    let next_end = catalogue
        .with_status(&statuses)
        .find(|(other, _)| other.as_str() > id)
        .and_then(|(_, next)| next.end_wal.clone());
    let mut paths = Vec::new();
    for (_, entry) in XlogDb::open(layout)?.entries()? {
        let name = &entry.name;
        if name.kind() == WalFileKind::History {
            paths.push(layout.wal_path(name));
            continue;
        }
        if name.as_str() < begin.as_str() || name.timeline() > begin.timeline() || !name.is_segment() {
            continue;
        }
        if next_end.as_ref().is_some_and(|end| name.as_str() > end.as_str()) {
            break;
        }
        paths.push(layout.wal_path(name));
    }
    Ok(paths)
}
