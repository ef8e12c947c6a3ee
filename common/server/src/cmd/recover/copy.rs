//! Phase 1 of a recovery: the base backup into the PGDATA written — a plain backup copied
//! with Barman's excludes, a tar-format one extracted ([`super::tar`]: the tablespaces
//! first, then the base archive) — each tablespace copied and linked from `pg_tblspc`,
//! backup.info kept as `.barman-recover.info` and `backup_manifest` renamed. Also the final
//! fsync of a local result. A plain backup recovered on a remote host is pushed there by
//! [`push`] instead, and only its configuration files are staged.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use barman_common::catalogue::BackupInfo;
use barman_common::durable;

use super::plan::{Plan, WriteTo};
use super::push;
use super::tar::{Source, TarFormat};
use crate::output::Output;
use crate::progress::Progress;
use crate::CmdError;

/// Top-level PGDATA entries whose content is not copied (rsync `dir/*` excludes keep the
/// directory itself).
const EXCLUDED_CONTENT: [&str; 4] = ["pg_log", "log", "pg_xlog", "pg_wal"];
/// Top-level PGDATA files not copied.
const EXCLUDED_FILES: [&str; 3] = ["postmaster.pid", "recovery.conf", "tablespace_map"];

/// The base backup and its tablespaces into `to`, with Barman's console lines.
pub fn base_backup(plan: &Plan<'_>, to: &WriteTo, out: &mut Output) -> Result<(), CmdError> {
    out.info("Copying the base backup.");
    let mut progress = Progress::new("base backup", plan.info.size.unwrap_or(0));
    match (plan.tar, &plan.chain, &plan.remote) {
        (_, Some(chain), _) => {
            let tablespaces: Vec<(u32, PathBuf)> =
                plan.tablespaces.iter().map(|(t, location)| (t.oid, to.tablespace(t, location))).collect();
            chain.combine(&to.root, &tablespaces, out)?;
        }
        (Some(fmt), None, _) => extract(fmt, plan, to, &mut progress)?,
        (None, None, Some(ssh)) => {
            push::base_backup(plan, ssh, out)?;
            push::stage_config(plan, &to.root)?;
        }
        (None, None, None) => {
            copy_pgdata(&plan.backup_dir().join("data"), &to.root, &mut progress).map_err(|e| copy_failure(&e))?;
        }
    }
    for (t, location) in &plan.tablespaces {
        let oid = t.oid.to_string();
        if !plan.pushed() && plan.tar.is_none() && plan.chain.is_none() {
            copy_tree(&plan.backup_dir().join(&oid), &to.tablespace(t, location), &mut progress)
                .map_err(|e| copy_failure(&e))?;
        }
        let link = to.root.join("pg_tblspc").join(&oid);
        if fs::symlink_metadata(&link).is_ok() {
            fs::remove_file(&link)?;
        }
        fs::create_dir_all(to.root.join("pg_tblspc"))?;
        symlink(location, &link)?;
        out.info(format!("\t{oid}, {}, {}", t.name, location.display()));
    }
    progress.finish();
    copy_metadata(plan, &to.root)
}

/// Barman's error for a failed copy.
fn copy_failure(e: &io::Error) -> CmdError {
    CmdError::Error(format!("Failure copying base backup: {e}"))
}

/// A tar-format backup, in Barman's order: the tablespaces first, then the base archive.
fn extract(fmt: TarFormat, plan: &Plan<'_>, to: &WriteTo, progress: &mut Progress) -> Result<(), CmdError> {
    let data = plan.backup_dir().join("data");
    for (t, location) in &plan.tablespaces {
        let src = Source { gpg: &plan.server.gpg, progress: &mut *progress };
        fmt.extract_tablespace(&data, t.oid, &to.tablespace(t, location), src)?;
    }
    let links: Vec<(u32, PathBuf)> = plan.tablespaces.iter().map(|(t, l)| (t.oid, l.clone())).collect();
    fmt.extract_base(&data, &to.root, &links, Source { gpg: &plan.server.gpg, progress })?;
    prepare_extracted(&to.root, plan.tablespaces.iter().map(|(t, l)| to.tablespace(t, l))).map_err(|e| copy_failure(&e))
}

/// backup.info kept as `.barman-recover.info`; `backup_manifest` renamed
/// `backup_manifest.<id>`.
fn copy_metadata(plan: &Plan<'_>, root: &Path) -> Result<(), CmdError> {
    fs::copy(BackupInfo::locate(&plan.server.layout, &plan.id), root.join(".barman-recover.info"))
        .map_err(|e| CmdError::Error(format!("copy of recovery metadata file failed: {e}")))?;
    let manifest = root.join("backup_manifest");
    if manifest.exists() {
        fs::rename(&manifest, root.join(format!("backup_manifest.{}", plan.id)))?;
    }
    Ok(())
}

/// After a tar extraction: PGDATA and the tablespace directories 0700 (an existing empty
/// destination keeps its mode otherwise) and `pg_wal` present, as a plain copy leaves them.
fn prepare_extracted(root: &Path, tablespace_dirs: impl Iterator<Item = PathBuf>) -> io::Result<()> {
    for dir in std::iter::once(root.to_owned()).chain(tablespace_dirs) {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    }
    let wal = root.join("pg_wal");
    if !wal.exists() {
        fs::create_dir_all(&wal)?;
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// A local result made durable before it is reported ready: PGDATA and every tablespace
/// (which may sit on other filesystems), each with one `syncfs` of its filesystem, which
/// also covers its parent's entry.
pub fn make_durable(plan: &Plan<'_>, root: &Path) -> Result<(), CmdError> {
    let mut dirs = std::iter::once(root.to_owned()).chain(plan.tablespaces.iter().map(|(_, to)| to.clone()));
    dirs.try_for_each(|dir| durable::sync_filesystem_of(&dir))
        .map_err(|e| CmdError::Error(format!("Failure syncing the restored files: {e}")))
}

/// Copies PGDATA with Barman's excludes.
fn copy_pgdata(src: &Path, dest: &Path, progress: &mut Progress) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    fs::set_permissions(dest, fs::metadata(src)?.permissions())?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let from = entry.path();
        let to = dest.join(&*name);
        let ft = entry.file_type()?;
        if EXCLUDED_FILES.contains(&name.as_ref()) {
            continue;
        }
        if EXCLUDED_CONTENT.contains(&name.as_ref()) {
            if ft.is_dir() {
                fs::create_dir_all(&to)?;
                fs::set_permissions(&to, fs::metadata(&from)?.permissions())?;
            } else if ft.is_symlink() {
                symlink(fs::read_link(&from)?, &to)?;
            }
            continue;
        }
        copy_entry(&from, &to, progress)?;
    }
    if !dest.join("pg_wal").exists() {
        fs::create_dir_all(dest.join("pg_wal"))?;
        fs::set_permissions(dest.join("pg_wal"), fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// `cp -a`-like copy of a directory's content into `dest` (created if missing).
fn copy_tree(src: &Path, dest: &Path, progress: &mut Progress) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    fs::set_permissions(dest, fs::metadata(src)?.permissions())?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        copy_entry(&entry.path(), &dest.join(entry.file_name()), progress)?;
    }
    Ok(())
}

/// One entry of a copy: a symlink recreated, a directory copied, a file copied with its
/// mode and modification time.
fn copy_entry(from: &Path, to: &Path, progress: &mut Progress) -> io::Result<()> {
    let md = fs::symlink_metadata(from)?;
    if md.file_type().is_symlink() {
        symlink(fs::read_link(from)?, to)
    } else if md.is_dir() {
        copy_tree(from, to, progress)
    } else {
        progress.add(fs::copy(from, to)?);
        fs::set_permissions(to, md.permissions())?;
        if let Ok(mtime) = md.modified() {
            let _ = File::options().write(true).open(to).and_then(|f| f.set_modified(mtime));
        }
        Ok(())
    }
}
