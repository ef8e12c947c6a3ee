//! `barman verify-backup SERVER BACKUP_ID` (alias `verify`): runs `pg_verifybackup -n` on
//! the backup's data directory, as Barman's `BackupManager.verify_backup` (found in the
//! server's `path_prefix` then `PATH`; `-F tar` and PostgreSQL 18+ for compressed backups;
//! encrypted backups refused; the tool's first output line on success).

use std::path::{Path, PathBuf};
use std::process::Command;

use barman_common::catalogue::Catalogue;

use crate::context::{layout, Context};
use crate::output::Output;
use crate::CmdError;

/// `pg_verifybackup` in `path_prefix` then `PATH`.
fn find_tool(path_prefix: Option<&str>) -> Option<PathBuf> {
    let env_path = std::env::var("PATH").unwrap_or_default();
    path_prefix
        .into_iter()
        .flat_map(|p| p.split(':'))
        .chain(env_path.split(':'))
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join("pg_verifybackup"))
        .find(|p| p.is_file())
}

/// The tool's version line and major version (`pg_verifybackup (PostgreSQL) 15.8`).
fn version(tool: &Path) -> Result<(String, u32), CmdError> {
    let out = Command::new(tool).arg("--version").output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let number = text.rsplit(' ').next().unwrap_or("");
    let major = number.split(['.', 'b', 'r', 'd']).next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Ok((number.to_owned(), major))
}

/// `verify-backup SERVER BACKUP_ID`.
pub fn run(ctx: &Context, name: &str, backup: &str, out: &mut Output) -> Result<(), CmdError> {
    let cfg = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    let layout = layout(cfg);
    let catalogue = Catalogue::load(&layout)?;
    let (id, info) = crate::cmd::resolve_backup(&catalogue, backup, name)?;
    // Barman prints the server as the one-element list its argument parsing left behind.
    out.info(format!("Verifying backup '{backup}' on server ['{name}']"));
    if info.encryption.is_some() {
        return Err(CmdError::Error("Backup verification is not supported for encrypted backups".into()));
    }
    out.info("Calling pg_verifybackup");
    let tool =
        find_tool(cfg.path_prefix.as_deref()).ok_or_else(|| CmdError::Error("pg_verifybackup not found".into()))?;
    let tar = info.compression.is_some();
    if tar {
        let (full, major) = version(&tool)?;
        if major < 18 {
            return Err(CmdError::Error(format!(
                "Verification of tar format backups requires pg_verifybackup from Postgres 18 or newer (found {full})"
            )));
        }
    }
    let data = layout.backup_dir(id).join("data");
    let mut cmd = Command::new(&tool);
    cmd.arg("-n").arg(&data);
    if tar {
        cmd.args(["-F", "tar"]);
    }
    let result = cmd.output()?;
    if !result.status.success() {
        out.error(format!("verify backup failure on directory '{}'", data.display()));
        return Err(CmdError::Error(String::from_utf8_lossy(&result.stderr).trim_end().to_owned()));
    }
    let stdout = String::from_utf8_lossy(&result.stdout);
    out.info(stdout.lines().next().unwrap_or("").trim().to_owned());
    Ok(())
}
