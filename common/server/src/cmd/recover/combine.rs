//! Recovery of a block-level incremental backup (PostgreSQL 17+): the chain from the full
//! root to the backup asked for is combined with `pg_combinebackup`, as Barman 3.20.1's
//! `CombineOperation` does. A local recovery combines straight into the destination; a
//! remote one combines into the local staging directory (`--staging-path` /
//! `staging_path`, else the deprecated `--local-staging-path` / `local_staging_path`, else
//! `/tmp`), which is then shipped as usual.
//!
//! Everything is checked before anything is written: each link of the chain (its
//! backup.info, a DONE status, its data directory and `backup_manifest`), `pg_combinebackup`
//! in `path_prefix` then `PATH` with the backup's major version (Barman's "Postgres version
//! mismatch" otherwise), and `--combine-mode` / `combine_mode` with Barman's fall-backs
//! (`link` is never used for a local recovery, nor before PostgreSQL 18). Beyond Barman, the
//! combined result is checked with `pg_verifybackup` (manifest and checksums, WAL aside)
//! before the recovery settings are written.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use barman_common::catalogue::{BackupId, BackupInfo, Catalogue, ServerLayout};
use barman_common::config::{OptionValue, ServerConfig};
use barman_common::remote::run_captured;

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

/// A chain to combine, checked, with the tool and mode that will combine it.
#[derive(Debug, Clone)]
pub struct Chain {
    /// From the full root to the backup recovered.
    pub links: Vec<Link>,
    /// `pg_combinebackup`.
    pub tool: PathBuf,
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
        let (tool, tool_major) = find_tool(cfg.path_prefix.as_deref())?;
        if tool_major != major {
            return Err(CmdError::Error(format!(
                "Postgres version mismatch: The backup '{id}' was taken from Postgres version '{major}', but \
                 pg_combinebackup version is '{tool_major}'. To restore successfully is necessary to use \
                 pg_combinebackup with the same version used when the backup was taken ({major})."
            )));
        }
        let requested = opts.staging.combine_mode.clone().or_else(|| text(cfg, "combine_mode"));
        let mode = combine_mode(requested.as_deref().unwrap_or("copy"), remote, tool_major, out);
        Ok(Some(Chain { links, tool, mode, staging_base }))
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

/// `pg_combinebackup` in `path_prefix` then `PATH`, with its major version.
fn find_tool(path_prefix: Option<&str>) -> Result<(PathBuf, u32), CmdError> {
    let env_path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = path_prefix.map(|p| std::env::split_paths(p).collect()).unwrap_or_default();
    dirs.extend(std::env::split_paths(&env_path));
    let Some(tool) = dirs.iter().map(|d| d.join("pg_combinebackup")).find(|p| p.is_file()) else {
        return Err(CmdError::Error("pg_combinebackup could not be found on the target server".into()));
    };
    let version = Command::new(&tool).arg("--version").stdin(Stdio::null()).output()?;
    // "pg_combinebackup (PostgreSQL) 18.6"
    let text = String::from_utf8_lossy(&version.stdout);
    let major =
        text.split_whitespace().last().and_then(|v| v.split('.').next()).and_then(|m| m.parse().ok()).ok_or_else(
            || CmdError::Error(format!("cannot read the version of {}: {}", tool.display(), text.trim())),
        )?;
    Ok((tool, major))
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

/// Where pg_combinebackup writes inside each destination before the result is moved up.
const COMBINE_DIR: &str = ".barman-combine";

/// Moves every entry of `work` into `dir` (same filesystem: renames), then removes `work`.
fn move_up(work: &Path, dir: &Path) -> Result<(), CmdError> {
    if !work.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(work)? {
        let entry = entry?;
        fs::rename(entry.path(), dir.join(entry.file_name()))?;
    }
    fs::remove_dir(work)?;
    Ok(())
}

/// Top-level entries Barman's `_post_recovery_cleanup` empties or removes.
const CLEANED_CONTENT: [&str; 4] = ["pg_log", "log", "pg_xlog", "pg_wal"];
const CLEANED_FILES: [&str; 3] = ["postmaster.pid", "recovery.conf", "tablespace_map"];

impl Chain {
    /// Combines the chain into `root` (each tablespace, by oid, into the directory given),
    /// cleans the result as Barman does and verifies it against the manifest
    /// `pg_combinebackup` wrote.
    pub fn combine(&self, root: &Path, tablespaces: &[(u32, PathBuf)], out: &mut Output) -> Result<(), CmdError> {
        let leaf = self.links.last().expect("a chain has its leaf");
        out.info(format!("Start combining backup via pg_combinebackup for backup {} on {}", leaf.id, root.display()));
        // pg_combinebackup wants empty or missing output directories, and a local destination
        // already holds the marker of an unfinished recovery (`resume`): combine into a
        // subdirectory of each destination, verify, then move the result up. A kill in
        // between leaves everything inside the marked destination, emptied by the next run.
        let work = |dir: &Path| dir.join(COMBINE_DIR);
        let mut cmd = Command::new(&self.tool);
        let mut output = OsString::from("--output=");
        output.push(work(root));
        cmd.arg(output);
        for (oid, dest) in tablespaces {
            let source = leaf.data.parent().expect("base/<id>/data").join(oid.to_string());
            fs::create_dir_all(dest)?;
            cmd.arg(format!("--tablespace-mapping={}={}", source.display(), work(dest).display()));
        }
        cmd.arg(format!("--{}", self.mode));
        cmd.args(self.links.iter().map(|l| &l.data)).stdin(Stdio::null());
        run(&mut cmd, "pg_combinebackup", root)?;
        self.verify(&work(root))?;
        for dir in std::iter::once(root).chain(tablespaces.iter().map(|(_, d)| d.as_path())) {
            move_up(&work(dir), dir)?;
        }
        out.info(format!("End combining backup via pg_combinebackup for backup {}", leaf.id));
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

    /// `pg_verifybackup --no-parse-wal` (next to `pg_combinebackup`) on the combined result.
    fn verify(&self, root: &Path) -> Result<(), CmdError> {
        let verifier = self.tool.with_file_name("pg_verifybackup");
        if !verifier.is_file() {
            return Err(CmdError::Error(format!(
                "cannot verify the combined backup: {} not found beside pg_combinebackup",
                verifier.display()
            )));
        }
        let mut cmd = Command::new(verifier);
        cmd.args(["--no-parse-wal", "--quiet"]).arg(root).stdin(Stdio::null());
        run(&mut cmd, "pg_verifybackup", root)
    }
}

fn run(cmd: &mut Command, what: &str, dest: &Path) -> Result<(), CmdError> {
    let o = run_captured(cmd, None)?.ok_or_else(|| CmdError::Error(format!("{what} timed out")))?;
    if o.status.success() {
        return Ok(());
    }
    Err(CmdError::Error(format!(
        "Combine action failure on directory '{}': {what} exited with {}: {}",
        dest.display(),
        o.status,
        o.stderr_text().trim()
    )))
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
