//! `barman rebuild-xlogdb SERVER...`: rebuilds each server's `xlog.db` from the content of
//! `wals/` under the xlogdb lock, as Barman's `Server.rebuild_xlogdb` does (same order, same
//! counts, same closing line; skipped files are logged as warnings).

use barman_common::catalogue::{WalSniffer, XlogDb};

use crate::context::{layout, Context};
use crate::output::Output;
use crate::CmdError;

/// Rebuilds the xlog.db of every named server (`all` = every one).
pub fn run(ctx: &Context, servers: &[String], out: &mut Output) -> Result<(), CmdError> {
    crate::cmd::for_each_server(ctx, servers, out, |name, cfg, out| {
        if !cfg.active {
            out.info(format!("Skipping inactive server '{name}'"));
            return Ok(());
        }
        out.info(format!("Rebuilding xlogdb for server {name}"));
        let counts = XlogDb::rebuild(&layout(cfg), &WalSniffer::default())?;
        for warning in &counts.warnings {
            crate::log::warning("server", warning);
        }
        out.info(counts.message(name));
        Ok(())
    })
}
