//! `keep [-r|--release] [-s|--status] [--target full|standalone] SERVER BACKUP_ID`.

use barman_common::catalogue::{self, BackupStatus, Catalogue, KeepTarget};
use serde_json::json;

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// What `keep` was asked to do.
#[derive(Debug, Clone, Copy)]
pub enum KeepAction {
    /// `--status`.
    Status,
    /// `--release`.
    Release,
    /// `--target`.
    Target(KeepTarget),
}

/// Runs `keep`.
pub fn run(
    ctx: &Context,
    server_name: &str,
    backup: &str,
    action: KeepAction,
    out: &mut Output,
) -> Result<(), CmdError> {
    let server = ctx.server(server_name)?;
    let catalogue = Catalogue::load(&server.layout)?;
    let (id, info) = crate::cmd::resolve_backup(&catalogue, backup, server_name)?;
    match action {
        KeepAction::Status => {
            let target = catalogue::keep_target(&server.layout, id)?;
            let value = target.map_or("nokeep", |t| match t {
                KeepTarget::Full => "full",
                KeepTarget::Standalone => "standalone",
            });
            out.line(format!("Server {server_name}:"));
            out.line(format!("\tKeep: {value}"));
            out.result(server_name, json!({"keep_status": {"description": "Keep", "message": value}}));
        }
        KeepAction::Release => catalogue::release_keep(&server.layout, id)?,
        KeepAction::Target(target) => {
            if info.status != BackupStatus::Done {
                return Err(CmdError::Error(format!(
                    "Cannot add keep to backup {id} because it has status {}. Only backups with status DONE can be kept.",
                    info.status.as_str()
                )));
            }
            if info.parent_backup_id.is_some() {
                return Err(CmdError::Error(format!(
                    "Unable to execute the keep command on backup {id}: is an incremental backup.\nOnly full backups are eligible for the use of the keep command."
                )));
            }
            catalogue::keep(&server.layout, id, target)?;
        }
    }
    Ok(())
}
