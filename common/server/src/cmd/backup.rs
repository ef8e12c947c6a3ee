//! `barman backup SERVER|all [--name] [--wait] [--immediate-checkpoint]`: hands each server
//! over to the `barman-backup` binary (next to this executable, else on `PATH`), as the
//! design keeps heavy jobs in their own binaries.

use std::process::Command;

use barman_common::config::ReuseBackup;
use barman_common::remote::sibling_binary;

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// `barman backup`'s options, parsed.
#[derive(Debug, Clone, Default)]
pub struct BackupRequest {
    /// The `-c` configuration file passed on to `barman-backup`.
    pub config: Option<String>,
    /// Server names (`all` = every server).
    pub servers: Vec<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `--incremental BACKUP_ID`.
    pub incremental: Option<String>,
    /// `--wait`.
    pub wait: bool,
    /// `--wait-timeout` seconds (0 or none: wait forever).
    pub wait_timeout: Option<u64>,
    /// `--immediate-checkpoint` (true) / `--no-immediate-checkpoint` (false).
    pub immediate_checkpoint: Option<bool>,
    /// `--reuse-backup`.
    pub reuse_backup: Option<ReuseBackup>,
    /// `--retry-times` (`--no-retry`: 0).
    pub retry_times: Option<u32>,
    /// `--retry-sleep`.
    pub retry_sleep: Option<u64>,
    /// `--jobs`.
    pub jobs: Option<u32>,
    /// `--bwlimit`.
    pub bwlimit: Option<u64>,
    /// `--check-timeout`: the limit of the pre-backup checks (else `check_timeout`).
    pub check_timeout: Option<u64>,
    /// `--jobs-start-batch-size`, `--jobs-start-batch-period`.
    pub jobs_start_batch: (Option<u32>, Option<u32>),
    /// `--keepalive-interval`.
    pub keepalive_interval: Option<u64>,
    /// `--manifest` (true) / `--no-manifest` (false).
    pub manifest: Option<bool>,
}

/// Runs `barman-backup` for each named server (`all` = every server), in order; fails
/// (exit 1) if any backup failed.
///
/// As Barman's `get_server_list(skip_inactive=True, skip_passive=True)`: inactive servers
/// (`Skipping inactive server '<srv>'`) and then passive nodes (`Skipping passive server
/// '<srv>'`) are skipped with an info line, in request order, before any backup; the rest run
/// in name order, an unknown server or a disabled one reporting an `ERROR:` (exit 1) without
/// stopping the others.
pub fn run(ctx: &Context, req: &BackupRequest, out: &mut Output) -> Result<(), CmdError> {
    let named = &req.servers;
    let mut requested = if named.iter().any(|s| s == "all") { ctx.server_names() } else { named.clone() };
    let mut seen = std::collections::HashSet::new();
    requested.retain(|n| seen.insert(n.clone()));
    let mut servers = Vec::new();
    for name in requested {
        match ctx.config().server(&name) {
            Some(cfg) if !cfg.active => out.info(format!("Skipping inactive server '{name}'")),
            Some(cfg) if cfg.is_passive() => out.info(format!("Skipping passive server '{name}'")),
            _ => servers.push(name),
        }
    }
    servers.sort();
    let mut failed = Vec::new();
    let mut errors = false;
    for name in &servers {
        let Some(cfg) = ctx.config().server(name) else {
            out.error(format!("Unknown server '{name}'"));
            errors = true;
            continue;
        };
        if cfg.is_disabled() {
            // Barman prints only the first reason.
            if let Some(reason) = cfg.disabled_reasons().first() {
                out.error(reason.clone());
            }
            errors = true;
            continue;
        }
        ctx.server(name)?;
        if !crate::cmd::check::backup_precheck(ctx, name, req.check_timeout, out)? {
            errors = true;
            continue;
        }
        let mut cmd = backup_command(req, out.is_json());
        let status = cmd
            .arg(name)
            .status()
            .map_err(|e| CmdError::Error(format!("cannot run {}: {e}", cmd.get_program().to_string_lossy())))?;
        if !status.success() {
            failed.push(name.clone());
        }
    }
    if !failed.is_empty() {
        Err(CmdError::Error(format!("Backup failed for server(s): {}", failed.join(", "))))
    } else if errors {
        Err(CmdError::Silent(1))
    } else {
        Ok(())
    }
}

/// `barman-backup` with the request's options, the server name still to add.
fn backup_command(req: &BackupRequest, json: bool) -> Command {
    let mut cmd = Command::new(sibling_binary("barman-backup"));
    if let Some(config) = &req.config {
        cmd.arg("-c").arg(config);
    }
    if let Some(backup_name) = &req.name {
        cmd.arg("--name").arg(backup_name);
    }
    if let Some(parent) = &req.incremental {
        cmd.arg("--incremental").arg(parent);
    }
    if req.wait {
        cmd.arg("--wait");
    }
    if let Some(secs) = req.wait_timeout {
        cmd.arg("--wait-timeout").arg(secs.to_string());
    }
    match req.immediate_checkpoint {
        Some(true) => cmd.arg("--immediate-checkpoint"),
        Some(false) => cmd.arg("--no-immediate-checkpoint"),
        None => &mut cmd,
    };
    if let Some(mode) = req.reuse_backup {
        cmd.arg("--reuse-backup").arg(mode.as_str());
    }
    let numbers = [
        ("--retry-times", req.retry_times.map(u64::from)),
        ("--retry-sleep", req.retry_sleep),
        ("--jobs", req.jobs.map(u64::from)),
        ("--bwlimit", req.bwlimit),
        ("--jobs-start-batch-size", req.jobs_start_batch.0.map(u64::from)),
        ("--jobs-start-batch-period", req.jobs_start_batch.1.map(u64::from)),
        ("--keepalive-interval", req.keepalive_interval),
    ];
    for (flag, value) in numbers {
        if let Some(v) = value {
            cmd.arg(flag).arg(v.to_string());
        }
    }
    match req.manifest {
        Some(true) => cmd.arg("--manifest"),
        Some(false) => cmd.arg("--no-manifest"),
        None => &mut cmd,
    };
    if json {
        cmd.args(["-f", "json"]);
    }
    cmd
}
