//! `barman cron`: for every active server, in name order and under its cron lock, run the
//! archiver. (Retention, receive-wal supervision and the relay join as they land.)

use barman_common::catalogue::LockKind;

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// Runs one cron pass.
pub fn run(ctx: &Context, out: &mut Output) -> Result<(), CmdError> {
    for name in ctx.server_names() {
        let server = ctx.server(&name)?;
        if !server.active {
            continue;
        }
        let Ok(_cron_lock) = server.try_lock(&LockKind::Cron, "cron") else {
            out.info(format!("Another cron process is already running on server {name}. Skipping to the next server"));
            continue;
        };
        out.info(format!("Starting WAL archiving for server {name}"));
        match crate::cmd::archive_wal::lock(&server) {
            Ok(lock) => {
                let lines = crate::cmd::archive_wal::run(&server)?;
                drop(lock);
                for l in lines {
                    out.info(l);
                }
            }
            Err(e) => out.info(e.to_string()),
        }
    }
    Ok(())
}
