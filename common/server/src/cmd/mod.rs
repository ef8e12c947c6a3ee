//! One module per subcommand; the functions here adapt parsed arguments to them.

pub mod archive_wal;
pub mod backup;
pub mod check;
pub mod check_archived_wal_range;
pub mod check_backup;
pub mod check_wal_archive;
pub mod config_switch;
pub mod config_update;
pub mod cron;
pub mod delete;
pub mod diagnose;
pub mod export_backup;
pub mod generate_manifest;
pub mod get_wal;
pub mod import_backup;
pub mod keep;
pub mod list;
pub mod list_files;
pub mod list_processes;
pub mod live;
pub mod lock_directory_cleanup;
pub mod metrics;
pub mod put_wal;
pub mod rebuild_xlogdb;
pub mod receive_wal;
pub mod recover;
pub mod relay;
pub mod replication_status;
mod select;
pub mod show;
pub mod show_servers;
pub mod status;
pub mod switch_wal;
pub mod sync_info;
pub mod terminate_process;
pub mod verify_backup;
pub mod verify_restore;

pub use select::{for_each_server, resolve_backup, sorted_servers, sql_runtime};

use std::io;

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// `put-wal [--test] [--wire-lz4] SERVER`.
pub fn put_wal_cmd(ctx: &Context, name: &str, test: bool, wire_lz4: bool, out: &mut Output) -> Result<(), CmdError> {
    let server = ctx.server(name)?;
    if !server.active {
        return Err(CmdError::Error(format!("Inactive server: {name}")));
    }
    if test {
        out.info(format!("Ready to accept WAL files for the server {name}"));
        return Ok(());
    }
    barman_common::remote::widen_pipe(&io::stdin());
    for line in put_wal::run(&server, io::stdin().lock(), wire_lz4)? {
        out.info(line);
    }
    Ok(())
}

/// `get-wal [...] SERVER WAL` (`test`: only say the server is ready).
pub fn get_wal_cmd(
    ctx: &Context,
    name: &str,
    test: bool,
    opts: &get_wal::GetWal,
    out: &mut Output,
) -> Result<(), CmdError> {
    let server = ctx.server(name)?;
    if test {
        out.info(format!("Ready to retrieve WAL files from the server {name}"));
        return Ok(());
    }
    for line in get_wal::run(&server, opts)? {
        out.info(line);
    }
    Ok(())
}

/// `archive-wal SERVER`.
pub fn archive_wal_cmd(ctx: &Context, name: &str, out: &mut Output) -> Result<(), CmdError> {
    let server = ctx.server(name)?;
    let Some(lock) = archive_wal::try_lock(&server)? else {
        // Barman: an info line and exit 0 (a cron-spawned archiver may hold the lock).
        out.info(archive_wal::busy_message(&server));
        return Ok(());
    };
    let lines = archive_wal::run(&server)?;
    drop(lock);
    if !lines.is_empty() {
        out.info(format!("Processing xlog segments from file archival for {name}"));
    }
    for line in lines {
        out.info(line);
    }
    Ok(())
}
