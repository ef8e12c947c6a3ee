//! `barman cron`: for every active server, in name order and under its cron lock, run the
//! archiver (a passive server instead starts a `barman-relay` pass), check the oldest
//! WAITING_FOR_WALS backup, supervise receive-wal, then enforce the retention policy.

use barman_common::catalogue::LockKind;

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// Runs one cron pass; `keep_descriptors` (`--keep-descriptors`) leaves the stdout and
/// stderr of the processes it starts attached to its own, as Barman's.
pub fn run(ctx: &Context, keep_descriptors: bool, out: &mut Output) -> Result<(), CmdError> {
    crate::cmd::config_update::cron(ctx, out);
    for name in ctx.server_names() {
        // Disabled servers (configuration errors) are skipped, as Barman's cron does.
        let Ok(server) = ctx.server(&name) else { continue };
        if !server.active {
            crate::cmd::receive_wal::cron_inactive(&server, out);
            continue;
        }
        let Ok(_cron_lock) = server.try_lock(&LockKind::Cron, "cron") else {
            out.info(format!("Another cron process is already running on server {name}. Skipping to the next server"));
            continue;
        };
        if ctx.config().server(&name).is_some_and(barman_common::config::ServerConfig::is_passive) {
            crate::cmd::relay::cron(ctx, &name, keep_descriptors, out);
            if let Err(e) = crate::cmd::check_backup::cron_check(&server, out) {
                out.error(format!("check-backup for server {name}: {e}"));
            }
            if let Err(e) = crate::cmd::delete::enforce_retention(ctx, &server, out) {
                out.error(format!("retention policy for server {name}: {e}"));
            }
            continue;
        }
        // As Barman: only the "already running" line when another archiver holds the lock.
        match crate::cmd::archive_wal::try_lock(&server) {
            Ok(Some(lock)) => {
                // Printed, not logged, as Barman's.
                out.info_unlogged(format!("Starting WAL archiving for server {name}"));
                let lines = crate::cmd::archive_wal::run(&server)?;
                drop(lock);
                for l in lines {
                    out.info(l);
                }
            }
            Ok(None) => out.info(crate::cmd::archive_wal::busy_message(&server)),
            Err(e) => out.info(e.to_string()),
        }
        if let Err(e) = crate::cmd::check_backup::cron_check(&server, out) {
            out.error(format!("check-backup for server {name}: {e}"));
        }
        if let Err(e) = crate::cmd::receive_wal::cron(ctx, &server, keep_descriptors, out) {
            out.error(format!("receive-wal for server {name}: {e}"));
        }
        if let Err(e) = crate::cmd::delete::enforce_retention(ctx, &server, out) {
            out.error(format!("retention policy for server {name}: {e}"));
        }
    }
    if let Err(e) = crate::cmd::lock_directory_cleanup::cron(ctx) {
        out.error(format!("lock directory cleanup: {e}"));
    }
    Ok(())
}
