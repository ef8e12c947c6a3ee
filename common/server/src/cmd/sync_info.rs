//! `sync-info [--primary] SERVER [LAST_WAL [LAST_POSITION]]`: the geo-redundancy status
//! a passive node reads over ssh (spec `relay.md` §3). The JSON itself is built by
//! [`barman_common::catalogue::sync::sync_info`].

use std::io::Write;

use barman_common::catalogue::sync::{self, SyncInfoError, SyncInfoRequest};
use barman_common::config::ServerConfig;

use crate::context::{layout, Context};
use crate::output::Output;
use crate::CmdError;

/// argparse's `check_positive` for `LAST_POSITION`: Python's `int()`, with Barman's
/// messages (clap turns them into a usage error, exit 2). Unlike Barman, 0 is accepted (it
/// is the offset of the first line): Barman's own passive sends it after a one-line
/// xlog.db, and a primary refusing it leaves that passive stuck (spec relay.md §3.1).
pub fn parse_last_position(value: &str) -> Result<u64, String> {
    let n = barman_common::config::parse_python_int(value).map_err(|_| format!("'{value}' is not a valid input"))?;
    u64::try_from(n).map_err(|_| format!("'{value}' is not a valid positive integer"))
}

/// Runs the command. Disabled and inactive servers answer too, as in Barman.
pub fn run(
    ctx: &Context,
    name: &str,
    primary_flag: bool,
    req: &SyncInfoRequest,
    out: &mut Output,
) -> Result<(), CmdError> {
    if name == "all" {
        return Err(CmdError::Error("You cannot use 'all' in a single server context".into()));
    }
    let server = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    if primary_flag {
        if !server.is_passive() {
            return Err(CmdError::Error(format!("server {name} is not passive")));
        }
        return primary(ctx, server, req, out);
    }
    let text =
        sync::sync_info(&layout(server), server, req).map_err(|e: SyncInfoError| CmdError::Error(e.to_string()))?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// `sync-info --primary` on a passive node: ask the primary (through
/// `primary_ssh_command`) for its sync-info, save it as `primary.info` and print it.
/// Barman forwards `LAST_WAL`/`LAST_POSITION` to the primary, hence `req`.
pub fn primary(ctx: &Context, server: &ServerConfig, req: &SyncInfoRequest, _out: &mut Output) -> Result<(), CmdError> {
    crate::cmd::relay::sync_info_primary(ctx, server.name(), req.last_wal.as_deref(), req.last_position)
}
