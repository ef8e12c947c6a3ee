//! The base backup of a remote recovery, copied straight into the destination by the
//! backup's copy controller ([`crate::backup::rsync_copy`]) as Barman's `_backup_copy` does:
//! the tablespaces first, then PGDATA with Barman's recovery exclusions (and each
//! tablespace's link protected), in `parallel_jobs` rsync workers over the remote ssh
//! command, with `bandwidth_limit` / `tablespace_bandwidth_limit`, `network_compression`,
//! `basebackup_retry_*` and the start batches. With delta restore the destination's own
//! files are compared (checksums for the ones not older than the safe horizon, read from the
//! `.barman-recover.info` a previous recovery left there) and extra files are purged.
//!
//! Only the small files a recovery writes (configuration files rewritten by the safety pass,
//! WAL, signal file, `.barman-recover.info`) go through the local staging directory; they
//! are shipped on top of the copy with [`overlay`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use barman_common::catalogue::{format_py_datetime, BackupInfo};
use barman_common::remote::{shell_quote, RemoteShell};
use chrono::Local;

use super::plan::Plan;
use crate::backup::rsync_copy::{Controller, DirItem};
use crate::output::Output;
use crate::rsync::{local_dir, Rsync};
use crate::CmdError;

/// PGDATA content Barman's recovery does not copy.
const PGDATA_EXCLUDES: [&str; 7] =
    ["/pg_log/*", "/log/*", "/pg_xlog/*", "/pg_wal/*", "/postmaster.pid", "/recovery.conf", "/tablespace_map"];

/// Configuration files the safety pass reads and rewrites in the staging directory.
const STAGED_CONFIG: [&str; 2] = ["postgresql.conf", "postgresql.auto.conf"];

/// Copies the backup's tablespaces and PGDATA into the remote destination.
pub fn base_backup(plan: &Plan<'_>, ssh: &RemoteShell, out: &mut Output) -> Result<(), CmdError> {
    for dir in std::iter::once(&plan.dest).chain(plan.tablespaces.iter().map(|(_, l)| l)) {
        mkdir(ssh, dir)?;
    }
    let safe_horizon = if plan.delta { safe_horizon(plan, ssh, out) } else { None };
    let rs = &plan.rsync;
    let controller = Controller {
        rsync: Rsync { ssh_command: Some(ssh.line().to_owned()), bwlimit: rs.bwlimit, compress: rs.compress },
        workers: rs.workers,
        start_batch: rs.start_batch,
        link: false,
        safe_horizon,
        retry: rs.retry,
        push: true,
        compare_dst: plan.delta,
    };
    let backup = plan.backup_dir();
    let mut dirs = Vec::new();
    let mut protect = Vec::new();
    let dest = plan.dest.to_string_lossy().trim_end_matches('/').to_owned();
    for (t, location) in &plan.tablespaces {
        if let Some(inside) = location.to_string_lossy().strip_prefix(&format!("{dest}/")) {
            protect.push(format!("--exclude=/{inside}"));
        }
        protect.push(format!("--exclude=/pg_tblspc/{}", t.oid));
        let bw = rs.tablespace_bwlimit.get(&t.name).and_then(|&b| u64::try_from(b).ok()).or(rs.bwlimit);
        dirs.push(DirItem {
            label: t.name.clone(),
            src: backup.join(t.oid.to_string()).display().to_string(),
            dst: location.clone(),
            filters: Vec::new(),
            reuse: None,
            bwlimit: bw.filter(|&b| b > 0),
        });
    }
    let mut filters: Vec<String> = PGDATA_EXCLUDES.iter().map(|p| format!("--exclude={p}")).collect();
    filters.extend(protect);
    dirs.push(DirItem {
        label: "pgdata".into(),
        src: backup.join("data").display().to_string(),
        dst: plan.dest.clone(),
        filters,
        reuse: None,
        bwlimit: rs.bwlimit,
    });
    controller
        .copy(&dirs, &[])
        .map_err(|e| CmdError::Error(format!("Failure copying base backup: data transfer failure: {e}")))?;
    rename_manifest(plan, ssh)
}

/// Barman's `_retrieve_safe_horizon`: the earlier of this backup's start and the start of
/// the backup a previous recovery left in the destination (`None` when there is none).
fn safe_horizon(plan: &Plan<'_>, ssh: &RemoteShell, out: &mut Output) -> Option<chrono::NaiveDateTime> {
    let path = plan.dest.join(".barman-recover.info");
    let text = ssh
        .run(&format!("cat {}", shell_quote(&path.to_string_lossy())), None)
        .ok()
        .flatten()
        .filter(|c| c.status.success())
        .map(|c| String::from_utf8_lossy(&c.stdout).into_owned());
    let Some(text) = text else {
        tracing::warn!("Unable to retrieve safe horizon time for smart rsync copy: {} not readable", path.display());
        return None;
    };
    let previous = BackupInfo::parse(&text, &path).ok().and_then(|i| i.begin_time);
    let horizon = match (plan.info.begin_time, previous) {
        (Some(a), Some(b)) => a.min(b),
        _ => return None,
    };
    out.info(format!("Using safe horizon time for smart rsync copy: {}", format_py_datetime(&horizon)));
    Some(horizon.with_timezone(&Local).naive_local())
}

/// `mkdir -p -m 700 DIR` on the remote host (Barman's `create_dir_if_not_exists(mode=700)`).
pub fn mkdir(ssh: &RemoteShell, dir: &Path) -> Result<(), CmdError> {
    let o = ssh
        .run(&format!("mkdir -p -m 700 {}", shell_quote(&dir.to_string_lossy())), None)
        .ok()
        .flatten()
        .ok_or_else(|| CmdError::Error(format!("Unable to execute {}", ssh.line())))?;
    if !o.status.success() {
        return Err(CmdError::Error(format!(
            "unable to initialise destination directory '{}': {}",
            dir.display(),
            o.stderr_text()
        )));
    }
    Ok(())
}

/// `backup_manifest` renamed `backup_manifest.<id>` in the destination.
fn rename_manifest(plan: &Plan<'_>, ssh: &RemoteShell) -> Result<(), CmdError> {
    let from = shell_quote(&plan.dest.join("backup_manifest").to_string_lossy());
    let to = shell_quote(&plan.dest.join(format!("backup_manifest.{}", plan.id)).to_string_lossy());
    match ssh.run(&format!("if [ -e {from} ]; then mv {from} {to}; fi"), None) {
        Ok(Some(o)) if o.status.success() => Ok(()),
        _ => Err(CmdError::Error(format!("unable to rename {from} to {to} on the destination"))),
    }
}

/// The staging root prepared for the phases that follow the copy: the configuration files
/// the safety pass rewrites, taken from the backup (identical to what was just copied).
pub fn stage_config(plan: &Plan<'_>, root: &Path) -> Result<(), CmdError> {
    fs::create_dir_all(root)?;
    let data = plan.backup_dir().join("data");
    for name in STAGED_CONFIG {
        let from = data.join(name);
        if from.is_file() {
            fs::copy(&from, root.join(name))?;
        }
    }
    Ok(())
}

/// Ships the staged files on top of the copied PGDATA (`rsync -a`, never `--delete`), each
/// staged directory first given the mode of the backup's (0700 when the backup has none),
/// so the overlay changes no directory's mode.
pub fn overlay(plan: &Plan<'_>, ssh: &RemoteShell, root: &Path) -> Result<(), CmdError> {
    align_modes(root, &plan.backup_dir().join("data"))?;
    let rsync = Rsync { ssh_command: Some(ssh.line().to_owned()), bwlimit: None, compress: plan.rsync.compress };
    let mut cmd = rsync.command();
    cmd.arg("-a").arg(local_dir(root)).arg(rsync.source(&local_dir(&plan.dest)));
    rsync
        .run_worker(cmd, None)
        .map(drop)
        .map_err(|e| CmdError::Error(format!("Failure copying base backup: data transfer failure: {e}")))
}

/// Every directory under `root` gets the mode of the same directory under `reference`, or
/// 0700; `root` itself 0700, as Barman creates the destination.
fn align_modes(root: &Path, reference: &Path) -> Result<(), CmdError> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let same = fs::metadata(reference.join(&rel)).ok().filter(|m| m.is_dir() && !rel.as_os_str().is_empty());
        let mode = same.map_or(0o700, |m| m.permissions().mode());
        fs::set_permissions(root.join(&rel), fs::Permissions::from_mode(mode & 0o7777))?;
        for e in fs::read_dir(root.join(&rel))? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(rel.join(e.file_name()));
            }
        }
    }
    Ok(())
}
