//! `barman import-backup SERVER INPUT_TARBALL`: a tarball written by `export-backup` (ours
//! or Barman 3.20.1's) into the catalogue, as Barman does it: the file name must be
//! `backup-export-SERVER-ID-STAMP-CHECKSUM.tar[.gz|.bz2|.xz]` with CHECKSUM the first 8 hex
//! digits of its SHA-256, the tarball's `identity.json` must carry this server's system id,
//! and everything is extracted into `base/.import-*` and checked (layout, every required WAL
//! present, no WAL that conflicts with the archive) before the catalogue is touched. Then
//! the backup directory is moved into place, the new WAL files moved into `wals/` and
//! merged into xlog.db, backup.info saved, and the backup kept as `standalone` so that
//! retention never deletes it. A failure on the way undoes what was done.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use barman_common::catalogue::{
    keep, BackupId, BackupInfo, BackupType, Catalogue, KeepTarget, LockError, LockKind, ServerLayout, ServerLock,
    XlogDb, XlogDbEntry,
};
use barman_common::wal::WalSegSize;
use barman_common::{compress, durable};
use serde_json::Value;

use crate::cmd::check_archived_wal_range::segments;
use crate::cmd::export_backup::{file_checksum, no_identity, read_identity};
use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

const TBLSPC_PREFIX: &str = "backup/data/pg_tblspc/";

/// `import-backup SERVER INPUT_TARBALL`.
pub fn run(ctx: &Context, name: &str, tarball: &str, out: &mut Output) -> Result<(), CmdError> {
    let server = ctx.server(name)?;
    if !server.active {
        return Err(CmdError::Error(format!("Inactive server: {name}")));
    }
    let path = Path::new(tarball);
    check_tarball_file(path, tarball)?;
    out.info(format!("Importing backup from '{tarball}' to server '{name}'"));
    let layout = &server.layout;
    let identity = read_identity(layout).ok_or_else(|| no_identity(name))?;
    layout.ensure_dirs().map_err(|e| CmdError::Error(format!("Failed to create backup directory: {e}")))?;
    let id = validate_name(path, name, out)?;
    let busy = |e: LockError| match e {
        LockError::Busy { .. } => {
            CmdError::Error(format!("Another backup operation is already running on server '{name}'"))
        }
        LockError::PermissionDenied { .. } => {
            CmdError::Error(format!("Permission denied while acquiring backup import lock for server '{name}'"))
        }
        other => CmdError::Error(format!("Unable to acquire backup import lock for server '{name}': {other}")),
    };
    let _backup_lock = ServerLock::acquire(&layout.lock_directory, name, &LockKind::Backup).map_err(busy)?;
    let _id_lock = ServerLock::acquire(&layout.lock_directory, name, &LockKind::BackupId(id.clone())).map_err(busy)?;
    import(layout, &id, path, &identity, out)
}

/// Barman's checks on the path before anything is read.
fn check_tarball_file(path: &Path, tarball: &str) -> Result<(), CmdError> {
    if !path.exists() {
        return Err(CmdError::Error(format!("Tarball file '{tarball}' does not exist")));
    }
    if !path.is_file() {
        return Err(CmdError::Error(format!("Tarball path '{tarball}' is not a file")));
    }
    if nix::unistd::access(path, nix::unistd::AccessFlags::R_OK).is_err() {
        return Err(CmdError::Error(format!("Tarball file '{tarball}' is not readable")));
    }
    let is_tar =
        open_archive(path).is_ok_and(|mut a| a.entries().is_ok_and(|mut e| e.next().is_some_and(|m| m.is_ok())));
    if !is_tar {
        return Err(CmdError::Error(format!("File '{tarball}' is not a valid tar file")));
    }
    Ok(())
}

/// The tarball, decompressed as its magic says (Python's `r|*`).
fn open_archive(path: &Path) -> io::Result<tar::Archive<Box<dyn Read>>> {
    let mut head = [0u8; compress::MAX_MAGIC_LEN];
    let n = fs::File::open(path)?.read(&mut head)?;
    let file = io::BufReader::with_capacity(1 << 20, fs::File::open(path)?);
    let reader: Box<dyn Read> = match compress::detect(&head[..n]) {
        Some(codec) => compress::decoder(codec, file)?,
        None => Box::new(file),
    };
    Ok(tar::Archive::new(reader))
}

/// The backup id from the file name, once the name and the checksum it carries are right.
fn validate_name(path: &Path, server: &str, out: &mut Output) -> Result<BackupId, CmdError> {
    let filename = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let base = format!(
        "Tarball filename does not match the expected export format \
         'backup-export-SERVER_NAME-BACKUP_ID-TIMESTAMP-CHECKSUM.tar': '{filename}'"
    );
    let Some(ext) = [".tar.gz", ".tar.bz2", ".tar.xz", ".tar"].into_iter().find(|e| filename.ends_with(e)) else {
        return Err(CmdError::Error(format!("{base}. Expected a .tar, .tar.gz, .tar.bz2, or .tar.xz file extension.")));
    };
    let stem = &filename[..filename.len() - ext.len()];
    let prefix = format!("backup-export-{server}-");
    let Some(rest) = stem.strip_prefix(&prefix) else {
        return Err(CmdError::Error(format!("{base}. Expected filename to start with '{prefix}'.")));
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let &[id, stamp, checksum] = parts.as_slice() else {
        return Err(CmdError::Error(format!(
            "{base}. Expected filename to contain the backup ID, timestamp, and checksum after the server name."
        )));
    };
    for (label, value) in [("BACKUP_ID", id), ("TIMESTAMP", stamp)] {
        if chrono::NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S").is_err() {
            return Err(CmdError::Error(format!(
                "{base}. Expected {label} to be in the format 'YYYYMMDDTHHMMSS', got '{value}'."
            )));
        }
    }
    out.debug("Verifying tarball checksum");
    let actual = file_checksum(path)?;
    if actual != checksum {
        return Err(CmdError::Error(format!(
            "Tarball checksum mismatch: filename contains '{checksum}' but actual checksum is '{actual}'. \
             The file may have been modified or corrupted."
        )));
    }
    BackupId::new(id).map_err(|e| CmdError::Error(e.to_string()))
}

/// The import proper, under the server's backup locks; every failure is Barman's
/// `ImportBackupException` (an `EXCEPTION:`), and leaves the catalogue as it was.
fn import(
    layout: &ServerLayout,
    id: &BackupId,
    tarball: &Path,
    local: &Value,
    out: &mut Output,
) -> Result<(), CmdError> {
    let name = &layout.name;
    if Catalogue::load(layout)?.get(id.as_str()).is_some() {
        return Err(exc(format!("Backup '{id}' already exists in the catalog for server '{name}'")));
    }
    check_identity(&identity_from_tarball(tarball)?, local, out)?;
    let staging = tempfile::Builder::new().prefix(".import-").tempdir_in(&layout.basebackups_directory)?;
    out.debug(format!("Extracting tarball to staging directory '{}'", staging.path().display()));
    extract(tarball, staging.path())?;
    for (entry, dir) in [("backup", true), ("backup.info", false), ("wals", true), ("xlog.db", false)] {
        let p = staging.path().join(entry);
        if dir && !p.is_dir() {
            return Err(exc(format!("Exported tarball does not contain a '{entry}/' directory")));
        }
        if !dir && !p.is_file() {
            return Err(exc(format!("Exported tarball does not contain a '{entry}' file")));
        }
    }
    let info = BackupInfo::read(&staging.path().join("backup.info"))
        .map_err(|e| exc(format!("Failed to load backup.info: {e}")))?;
    let staged = verify_staged_wals(staging.path(), layout, &info)?;
    if info.backup_type() == BackupType::Incremental {
        return Err(exc(format!(
            "Cannot import backup {id} into server {name}: it is an incremental backup.\n\
             Only full backups are eligible for importing."
        )));
    }
    tablespace_links(staging.path(), layout, id, &info)?;
    barman_common::durable::sync_filesystem_of(staging.path())?;
    let target = layout.backup_dir(id);
    fs::rename(staging.path().join("backup"), &target)
        .map_err(|e| exc(format!("Failed to move backup data to '{}': {e}", target.display())))?;
    let undo_data = || {
        let _ = fs::remove_dir_all(&target);
    };
    let moved = match import_wals(layout, &staged) {
        Ok(moved) => moved,
        Err(e) => {
            undo_data();
            return Err(e);
        }
    };
    if let Err(e) = info.save(layout, id) {
        rollback_wals(layout, &moved);
        undo_data();
        return Err(exc(format!("Failed to load backup.info: {e}")));
    }
    barman_common::durable::fsync_dir(&layout.basebackups_directory)?;
    out.info(format!("Successfully imported backup '{id}' into server '{name}'"));
    match keep(layout, id, KeepTarget::Standalone) {
        Ok(()) => out.debug(format!("Applied KEEP:STANDALONE annotation to backup '{id}'")),
        Err(e) => out.warning(format!(
            "Failed to apply KEEP:STANDALONE annotation to backup '{id}' on server '{name}': {e}. \
             The imported backup may be subject to retention policy deletion."
        )),
    }
    Ok(())
}

fn exc(msg: String) -> CmdError {
    CmdError::Exception(msg)
}

/// `identity.json`, the tarball's first member (read without extracting anything).
fn identity_from_tarball(tarball: &Path) -> Result<Value, CmdError> {
    let read_err = |e: io::Error| exc(format!("Failed to read identity.json from tarball: {e}"));
    let mut archive = open_archive(tarball).map_err(read_err)?;
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        if entry.path().map_err(read_err)?.as_os_str() != "identity.json" {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            return Err(exc("identity.json in tarball is not a regular file".to_owned()));
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).map_err(read_err)?;
        return serde_json::from_str(&text)
            .map_err(|e| exc(format!("Failed to parse identity.json from tarball: {e}")));
    }
    Err(exc("Exported tarball does not contain identity.json".to_owned()))
}

/// A JSON string or number as text (identity.json values).
fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "None".to_owned(),
    }
}

/// The system ids must match; a different PostgreSQL version is only a warning.
fn check_identity(export: &Value, local: &Value, out: &mut Output) -> Result<(), CmdError> {
    let (theirs, ours) = (text_of(export.get("systemid")), text_of(local.get("systemid")));
    if theirs != ours {
        return Err(exc(format!(
            "Server identity mismatch: exported backup has systemid '{theirs}' but target server has systemid '{ours}'"
        )));
    }
    let (theirs, ours) = (text_of(export.get("version")), text_of(local.get("version")));
    if theirs != ours {
        out.warning(format!(
            "PostgreSQL version mismatch: exported backup has version '{theirs}' but target server has version '{ours}'"
        ));
    }
    Ok(())
}

/// The member's path as `/`-joined normal components, or `None` if it could leave `dest`.
fn safe_name(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Extracts regular files and directories only; the `pg_tblspc/<oid>` links are skipped
/// (recreated by [`tablespace_links`]), any other member type refused.
fn extract(tarball: &Path, dest: &Path) -> Result<(), CmdError> {
    let failed = |e: io::Error| exc(format!("Failed to extract tarball '{}': {e}", tarball.display()));
    let mut archive = open_archive(tarball).map_err(failed)?;
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    for entry in archive.entries().map_err(failed)? {
        let mut entry = entry.map_err(failed)?;
        let raw = entry.path().map_err(failed)?.into_owned();
        let Some(name) = safe_name(&raw) else {
            return Err(exc(format!("Tarball contains unsafe path: '{}'", raw.display())));
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if name.strip_prefix(TBLSPC_PREFIX).is_some_and(|oid| !oid.contains('/')) {
                continue;
            }
            return Err(exc(format!("Tarball contains unsafe member type: '{name}'")));
        }
        if !(kind.is_dir() || kind.is_file()) {
            return Err(exc(format!("Tarball contains unsafe member type: '{name}'")));
        }
        if !entry.unpack_in(dest).map_err(failed)? {
            return Err(exc(format!("Tarball contains unsafe path: '{name}'")));
        }
    }
    Ok(())
}

/// One WAL file of the tarball: its staged path and its xlog.db entry; `new` when the
/// archive does not have it yet.
struct StagedWal {
    path: PathBuf,
    entry: XlogDbEntry,
    new: bool,
}

/// Every line of the tarball's xlog.db covers the required segments in order, with its
/// file present, and none conflicts with a WAL of this server's archive (the same entry
/// and the same bytes is an idempotent re-import, not a conflict).
fn verify_staged_wals(staging: &Path, layout: &ServerLayout, info: &BackupInfo) -> Result<Vec<StagedWal>, CmdError> {
    let text = fs::read_to_string(staging.join("xlog.db"))
        .map_err(|e| exc(format!("Failed to read xlog.db from tarball: {e}")))?;
    let (Some(begin), Some(end)) = (&info.begin_wal, &info.end_wal) else {
        return Err(exc("Failed to load backup.info: no begin_wal/end_wal".to_owned()));
    };
    let mut required =
        segments(begin, end, info.xlog_segment_size.unwrap_or(WalSegSize::DEFAULT))?.into_iter().peekable();
    let server: HashMap<String, XlogDbEntry> =
        XlogDb::open(layout)?.entries()?.into_iter().map(|(_, e)| (e.name.to_string(), e)).collect();
    let (mut staged, mut conflicts) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let entry = XlogDbEntry::parse_line(line)
            .map_err(|e| exc(format!("Malformed tarball's xlog.db entry at line {}: {e}", n + 1)))?;
        let wal_path = layout.wal_path(&entry.name);
        let relative = wal_path.strip_prefix(&layout.wals_directory).unwrap_or(&wal_path);
        let path = staging.join("wals").join(relative);
        if let Some(missing) = required.next_if(|r| r.as_str() < entry.name.as_str()) {
            return Err(exc(format!(
                "WAL file required for backup consistency not found in tarball's xlog.db: {missing}"
            )));
        }
        if required.next_if(|r| *r == entry.name).is_some() && !path.exists() {
            let name = &entry.name;
            return Err(exc(format!(
                "WAL file listed in tarball's xlog.db but not found under its wals/ directory: {name}"
            )));
        }
        let existing = server.get(entry.name.as_str());
        let (has_entry, has_file) = (existing.is_some(), wal_path.exists());
        let same = existing.is_some_and(|e| same_metadata(e, &entry)) && has_file && same_bytes(&path, &wal_path)?;
        if (has_entry || has_file) && !same {
            conflicts.push(entry.name.to_string());
        }
        staged.push(StagedWal { path, entry, new: !has_entry });
    }
    if let Some(missing) = required.next() {
        return Err(exc(format!("WAL file required for backup consistency not found in tarball's xlog.db: {missing}")));
    }
    if !conflicts.is_empty() {
        let mut msg = format!(
            "WAL file(s) already exist in target server with conflicting content: {}",
            conflicts.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        );
        if conflicts.len() > 5 {
            msg.push_str(&format!(" (and {} more)", conflicts.len() - 5));
        }
        return Err(exc(msg));
    }
    Ok(staged)
}

/// Barman's comparison: everything but the compression field.
fn same_metadata(a: &XlogDbEntry, b: &XlogDbEntry) -> bool {
    a.name == b.name && a.size == b.size && a.time.to_bits() == b.time.to_bits() && a.encryption == b.encryption
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool, CmdError> {
    Ok(a.exists() && durable::same_content(a, b)?)
}

/// `pg_tblspc/<oid>` links of the staged data directory, pointing at the tablespaces'
/// directories in this catalogue (`base/<id>/<oid>`).
fn tablespace_links(staging: &Path, layout: &ServerLayout, id: &BackupId, info: &BackupInfo) -> Result<(), CmdError> {
    let Some(tablespaces) = info.tablespaces.as_ref().filter(|t| !t.is_empty()) else { return Ok(()) };
    let dir = staging.join(TBLSPC_PREFIX);
    fs::create_dir_all(&dir)
        .map_err(|e| exc(format!("Failed to create pg_tblspc directory '{}': {e}", dir.display())))?;
    for ts in tablespaces {
        let link = dir.join(ts.oid.to_string());
        let target = layout.backup_dir(id).join(ts.oid.to_string());
        if let Ok(meta) = fs::symlink_metadata(&link) {
            if meta.is_dir() {
                return Err(exc(format!(
                    "Cannot replace existing directory at tablespace link path '{}'",
                    link.display()
                )));
            }
            fs::remove_file(&link).map_err(|e| {
                exc(format!("Failed to remove existing tablespace link path '{}': {e}", link.display()))
            })?;
        }
        std::os::unix::fs::symlink(&target, &link).map_err(|e| {
            exc(format!("Failed to create tablespace symlink '{}' -> '{}': {e}", link.display(), target.display()))
        })?;
    }
    Ok(())
}

/// Moves the new WAL files into `wals/` and merges the tarball's lines into xlog.db, under
/// the xlogdb lock; returns the moved files (for [`rollback_wals`]).
fn import_wals(layout: &ServerLayout, staged: &[StagedWal]) -> Result<Vec<PathBuf>, CmdError> {
    let mut db = XlogDb::open(layout)?;
    let mut moved = Vec::new();
    let result = (|| -> Result<(), CmdError> {
        for wal in staged.iter().filter(|w| w.new) {
            let dest = layout.wal_path(&wal.entry.name);
            let dir = barman_common::durable::parent_of(&dest).to_path_buf();
            barman_common::durable::create_dir_all(&dir)?;
            move_file(&wal.path, &dest)?;
            moved.push(dest);
            barman_common::durable::fsync_dir(&dir)?;
        }
        let entries: Vec<XlogDbEntry> = staged.iter().map(|w| w.entry.clone()).collect();
        db.merge_sorted(&entries)?;
        Ok(())
    })();
    drop(db);
    match result {
        Ok(()) => Ok(moved),
        Err(e) => {
            rollback_wals(layout, &moved);
            Err(exc(format!("Failed to import WAL files: {e}")))
        }
    }
}

/// `rename`, or copy + fsync + remove across file systems.
fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EXDEV as i32) => {
            fs::copy(from, to)?;
            fs::File::open(to)?.sync_all()?;
            fs::remove_file(from)
        }
        other => other,
    }
}

/// Removes the moved WAL files and rebuilds xlog.db from what is left on disk (Barman's
/// rollback).
fn rollback_wals(layout: &ServerLayout, moved: &[PathBuf]) {
    for path in moved {
        let _ = fs::remove_file(path);
    }
    let _ = XlogDb::rebuild(layout, &barman_common::catalogue::WalSniffer::default());
}
