//! What a command line names: the servers (`all` meaning every one) and a backup (id, name
//! or shortcut), and the runtime the commands' SQL connections use.

use std::io;

use barman_common::catalogue::{BackupId, BackupInfo, Catalogue};
use barman_common::config::ServerConfig;

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// The servers named on the command line, `all` meaning every one.
pub fn expand_servers(ctx: &Context, names: &[String]) -> Vec<String> {
    if names.iter().any(|n| n == "all") {
        ctx.server_names()
    } else {
        names.to_vec()
    }
}

/// The single-threaded runtime the commands use for their SQL connections.
pub fn sql_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// The names a server argument list means (`all` = every server), sorted, each once.
pub fn sorted_servers(ctx: &Context, names: &[String]) -> Vec<String> {
    let mut names = expand_servers(ctx, names);
    names.sort();
    names.dedup();
    names
}

/// The backup a user named (id, name or shortcut), or Barman's `Unknown backup` error.
pub fn resolve_backup<'a>(
    catalogue: &'a Catalogue,
    backup: &str,
    server: &str,
) -> Result<&'a (BackupId, BackupInfo), CmdError> {
    catalogue.resolve(backup).map_err(|_| CmdError::Error(format!("Unknown backup '{backup}' for server '{server}'")))
}

/// Runs `each` for every named server in name order (`all` = every server); an unknown
/// name gets Barman's `Unknown server` line and, once the others are done, exit 1.
pub fn for_each_server(
    ctx: &Context,
    names: &[String],
    out: &mut Output,
    mut each: impl FnMut(&str, &ServerConfig, &mut Output) -> Result<(), CmdError>,
) -> Result<(), CmdError> {
    let mut unknown = false;
    for name in &sorted_servers(ctx, names) {
        let Some(cfg) = ctx.config().server(name) else {
            out.error(format!("Unknown server '{name}'"));
            unknown = true;
            continue;
        };
        each(name, cfg, out)?;
    }
    if unknown {
        return Err(CmdError::Silent(1));
    }
    Ok(())
}
