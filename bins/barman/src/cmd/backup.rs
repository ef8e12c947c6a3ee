//! `barman backup SERVER|all [--name] [--wait] [--immediate-checkpoint]`: hands each server
//! over to the `barman-backup` binary (next to this executable, else on `PATH`), as the
//! design keeps heavy jobs in their own binaries.

use std::path::PathBuf;
use std::process::Command;

use clap::ArgMatches;

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// The `barman-backup` executable: beside the running `barman`, else found on `PATH`.
fn backup_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("barman-backup")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("barman-backup"))
}

/// Runs `barman-backup` for each named server (`all` = every server), in order; fails
/// (exit 1) if any backup failed.
///
/// As Barman's `get_server_list(skip_inactive=True, skip_passive=True)`: inactive servers
/// (`Skipping inactive server '<srv>'`) and then passive nodes (`Skipping passive server
/// '<srv>'`) are skipped with an info line, in request order, before any backup; the rest run
/// in name order, an unknown server or a disabled one reporting an `ERROR:` (exit 1) without
/// stopping the others.
pub fn run(ctx: &Context, config: Option<&str>, m: &ArgMatches, out: &mut Output) -> Result<(), CmdError> {
    let named: Vec<String> = m.get_many::<String>("SERVER_NAME").map(|v| v.cloned().collect()).unwrap_or_default();
    let mut requested = if named.iter().any(|s| s == "all") { ctx.server_names() } else { named };
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
        let mut cmd = Command::new(backup_binary());
        if let Some(config) = config {
            cmd.arg("-c").arg(config);
        }
        if let Some(backup_name) = m.get_one::<String>("name") {
            cmd.arg("--name").arg(backup_name);
        }
        for flag in ["wait", "immediate-checkpoint", "no-immediate-checkpoint"] {
            if m.get_flag(flag) {
                cmd.arg(format!("--{flag}"));
            }
        }
        if let Some(mode) = m.get_one::<String>("reuse-backup") {
            cmd.arg("--reuse-backup").arg(mode);
        }
        if out.is_json() {
            cmd.args(["-f", "json"]);
        }
        let status = cmd
            .arg(name)
            .status()
            .map_err(|e| CmdError::Error(format!("cannot run {}: {e}", backup_binary().display())))?;
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
