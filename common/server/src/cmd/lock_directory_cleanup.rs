//! `barman lock-directory-cleanup`, and cron's cleanup when `lock_directory_cleanup` is on:
//! every `.*.lock` file of `barman_lock_directory` that no process holds is removed (Barman's
//! `lock_files_cleanup`; held locks are left alone).

use barman_common::catalogue::cleanup_stale;

use crate::context::Context;
use crate::CmdError;

/// Removes the stale lock files, logging each as Barman does.
pub fn run(ctx: &Context) -> Result<(), CmdError> {
    let dir = &ctx.config().global().barman_lock_directory;
    crate::log::info("utils", "Cleaning up lockfiles directory.");
    let removed = cleanup_stale(dir).map_err(|e| CmdError::Exception(e.to_string()))?;
    for path in removed {
        crate::log::debug("utils", &format!("{} deleted", path.display()));
    }
    Ok(())
}

/// Cron's part: the same cleanup, unless `lock_directory_cleanup = false`.
pub fn cron(ctx: &Context) -> Result<(), CmdError> {
    if ctx.config().global().lock_directory_cleanup {
        run(ctx)
    } else {
        Ok(())
    }
}
