//! Recovery of a block-level incremental backup (PostgreSQL 17+): the chain from the full
//! root to the backup asked for is combined by [`barman_common::combine`] (what Barman
//! 3.20.1's `CombineOperation` does with `pg_combinebackup`, natively: no client tool of the
//! backup's major is needed, and every file read from the catalogue is checked against its
//! backup's manifest on the way). A local recovery combines straight into the destination; a
//! remote one combines into the local staging directory (`--staging-path` /
//! `staging_path`, else the deprecated `--local-staging-path` / `local_staging_path`, else
//! `/tmp`), which is then shipped as usual.
//!
//! Everything about the chain is checked before anything is written: each link (its
//! backup.info, a DONE status, its data directory and `backup_manifest`), then, in the
//! combine, one system identifier and each backup's label naming the one before it.
//! `--combine-mode` / `combine_mode` follows Barman's fall-backs (`link` is never used for a
//! local recovery, nor before PostgreSQL 18); `link` hard-links the relation files the newest
//! backup holds whole into the staging area, every other mode copies them.

use std::fs;
use std::path::{Path, PathBuf};

use barman_common::catalogue::{BackupId, BackupInfo, Catalogue, ServerLayout};
use barman_common::combine::{self, Backup, Mode, Target};
use barman_common::config::{OptionValue, ServerConfig};

use super::options::{Options, Staging};
use crate::output::Output;
use crate::CmdError;

/// One link of a chain: the backup and its data directory in the catalogue.
#[derive(Debug, Clone)]
pub struct Link {
    /// The backup id.
    pub id: BackupId,
    /// Its backup.info.
    pub info: BackupInfo,
    /// `base/<id>/data`.
    pub data: PathBuf,
}

/// A chain to combine, checked, with the mode that will combine it.
#[derive(Debug, Clone)]
pub struct Chain {
    /// From the full root to the backup recovered.
    pub links: Vec<Link>,
    /// `copy`, `link`, `clone` or `copy-file-range`.
    pub mode: String,
    /// Where a remote recovery stages the combined result.
    pub staging_base: PathBuf,
}

fn text(cfg: &ServerConfig, key: &str) -> Option<String> {
    cfg.value(key).and_then(OptionValue::as_str).map(str::to_owned).filter(|s| !s.is_empty())
}

impl Chain {
    /// Checks the chain of backup `id` and everything needed to combine it; `None` for a
    /// backup that is not incremental.
    pub fn prepare(
        cfg: &ServerConfig,
        (catalogue, layout): (&Catalogue, &ServerLayout),
        (id, info): (&BackupId, &BackupInfo),
        opts: &Options,
        remote: bool,
        out: &mut Output,
    ) -> Result<Option<Chain>, CmdError> {
        if info.parent_backup_id.is_none() {
            return Ok(None);
        }
        let staging_base = staging_base(cfg, &opts.staging, id, &layout.name, out)?;
        let location = opts.staging.staging_location.clone().unwrap_or_else(|| cfg.staging_location.as_str().into());
        if remote && location == "remote" {
            return Err(CmdError::Unsupported(
                "staging_location = remote (combining an incremental chain on the target host) is not supported \
                 yet: use staging_location = local"
                    .into(),
            ));
        }
        let links = walk_to_root(catalogue, layout, id, info)?;
        let major = info.version.unwrap_or(0) / 10_000;
        let requested = opts.staging.combine_mode.clone().or_else(|| text(cfg, "combine_mode"));
        let mode = combine_mode(requested.as_deref().unwrap_or("copy"), remote, major, out);
        Ok(Some(Chain { links, mode, staging_base }))
    }
}

/// Barman's staging rules for an incremental backup: `staging_path` wins; else the
/// deprecated `local_staging_path` (with Barman's warning; an error when only
/// `recovery_staging_path` is set); else `/tmp`.
fn staging_base(
    cfg: &ServerConfig,
    staging: &Staging,
    id: &BackupId,
    server: &str,
    out: &mut Output,
) -> Result<PathBuf, CmdError> {
    if let Some(path) =
        staging.staging_path.clone().or_else(|| cfg.staging_path.as_ref().map(|p| p.display().to_string()))
    {
        return Ok(PathBuf::from(path));
    }
    let local = staging.local_staging_path.clone().or_else(|| text(cfg, "local_staging_path"));
    let recovery = text(cfg, "recovery_staging_path");
    match (local, recovery) {
        (None, None) => Ok(PathBuf::from("/tmp")),
        (None, Some(_)) => Err(CmdError::Error(format!(
            "Cannot restore from backup '{id}' of server '{server}': backup has to be combined with pg_combinebackup in \
             a staging area but no staging path and location was provided. Please set staging_path and \
             staging_location in the server configuration file, or use their equivalent CLI options \
             --staging-path and --staging-location"
        ))),
        (Some(local), _) => {
            out.warning(
                "recovery_staging_path and local_staging_path, and their equivalent CLI options \
                 --recovery-staging-path and --local-staging-path, are deprecated and will be removed in a future \
                 release. Please use staging_path and staging_location, and their equivalent CLI options \
                 --staging-path and --staging-location, instead.",
            );
            Ok(PathBuf::from(local))
        }
    }
}

/// The chain from its root to `id`, each link checked; a missing or damaged link is named.
fn walk_to_root(
    catalogue: &Catalogue,
    layout: &ServerLayout,
    id: &BackupId,
    info: &BackupInfo,
) -> Result<Vec<Link>, CmdError> {
    let mut links = Vec::new();
    let mut current = Some((id.clone(), info.clone()));
    while let Some((id, info)) = current.take() {
        let broken = |why: String| {
            CmdError::Error(format!(
                "Cannot combine the incremental chain of backup {}: link {id} {why}",
                links.first().map_or(&id, |l: &Link| &l.id)
            ))
        };
        if !info.status.is_available() {
            return Err(broken(format!("is {}, not DONE", info.status.as_str())));
        }
        if info.compression.is_some() || info.encryption.is_some() {
            return Err(broken("is a compressed or encrypted (tar) backup: only plain chains are combined".into()));
        }
        let data = layout.backup_dir(&id).join("data");
        if !data.join("backup_manifest").is_file() || !data.join("global").join("pg_control").is_file() {
            return Err(broken(format!(
                "has no usable data directory ({} with backup_manifest and global/pg_control)",
                data.display()
            )));
        }
        current = match &info.parent_backup_id {
            Some(parent) => match catalogue.get(parent.as_str()) {
                Some((pid, pinfo)) => Some((pid.clone(), pinfo.clone())),
                None => return Err(broken(format!("names a parent {parent} that is not in the catalogue"))),
            },
            None => None,
        };
        if links.len() > 10_000 {
            return Err(broken("is part of a cycle".into()));
        }
        links.push(Link { id, info, data });
    }
    links.reverse();
    Ok(links)
}

/// Barman's `_fallback_to_copy_if_link_is_not_supported`.
fn combine_mode(requested: &str, remote: bool, major: u32, out: &mut Output) -> String {
    if requested != "link" {
        return requested.to_owned();
    }
    if !remote {
        out.warning(
            "'link' mode is not supported for local restore. Falling back to 'copy' mode to prevent \
             modification of original backup files through hard-links.",
        );
        return "copy".into();
    }
    if major < 18 {
        out.warning("'link' mode is not supported on Postgres 17 or older. Falling back to 'copy' mode.");
        return "copy".into();
    }
    out.warning(
        "CAUTION: Using 'link' mode with a local staging area. Files in the staging path may be hard-linked to \
         files from your Barman backup catalog. Modifying these files, by any means, can lead to permanent \
         backup(s) corruption.",
    );
    "link".into()
}

/// Top-level entries Barman's `_post_recovery_cleanup` empties or removes.
const CLEANED_CONTENT: [&str; 4] = ["pg_log", "log", "pg_xlog", "pg_wal"];
const CLEANED_FILES: [&str; 3] = ["postmaster.pid", "recovery.conf", "tablespace_map"];

impl Chain {
    /// Combines the chain into `root` (each tablespace, by oid, into the directory given)
    /// and cleans the result as Barman does.
    pub fn combine(&self, root: &Path, tablespaces: &[(u32, PathBuf)], out: &mut Output) -> Result<(), CmdError> {
        let leaf = self.links.last().expect("a chain has its leaf");
        out.info(format!("Start combining backup {} (a chain of {}) on {}", leaf.id, self.links.len(), root.display()));
        let chain: Vec<Backup> = self.links.iter().map(Link::stored).collect();
        let target = Target { root: root.to_owned(), tablespaces: tablespaces.to_vec() };
        let mode = if self.mode == "link" { Mode::Link } else { Mode::Copy };
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        let done = combine::combine(&chain, &target, mode, workers)
            .map_err(|e| CmdError::Error(format!("Combine action failure on directory '{}': {e}", root.display())))?;
        for skipped in &done.skipped {
            out.warning(format!("skipping {}: neither a regular file nor a directory", skipped.display()));
        }
        out.info(format!(
            "End combining backup {}: {} files ({} rebuilt from incremental files), {} bytes, each source checked \
             against its backup_manifest",
            leaf.id, done.files, done.reconstructed, done.bytes
        ));
        let off = |l: &Link| l.info.data_checksums.as_deref() == Some("off");
        if leaf.info.data_checksums.as_deref() == Some("on") && self.links.iter().any(off) {
            out.warning(
                "You are restoring from an incremental backup where checksums were enabled on that backup, but \
                 not all backups in the chain. It is advised to disable, and optionally re-enable, checksums on \
                 the destination directory to avoid failures.",
            );
        }
        cleanup(root)?;
        Ok(())
    }
}

impl Link {
    /// The link as stored: `base/<id>/data` and its tablespaces in `base/<id>/<oid>`.
    fn stored(&self) -> Backup {
        let dir = self.data.parent().expect("base/<id>/data");
        let oids = self.info.tablespaces.iter().flatten().map(|t| t.oid);
        Backup { data: self.data.clone(), tablespaces: oids.map(|oid| (oid, dir.join(oid.to_string()))).collect() }
    }
}

/// Barman's `_post_recovery_cleanup` on the combined PGDATA.
fn cleanup(root: &Path) -> Result<(), CmdError> {
    for dir in CLEANED_CONTENT {
        let path = root.join(dir);
        if path.is_dir() && !path.is_symlink() {
            for entry in fs::read_dir(&path)? {
                let p = entry?.path();
                if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(&p)?;
                } else {
                    fs::remove_file(&p)?;
                }
            }
        }
    }
    for file in CLEANED_FILES {
        let path = root.join(file);
        if path.symlink_metadata().is_ok() {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}
