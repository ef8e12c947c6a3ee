//! [`Relay`]: one passive server, how to reach its primary, and where its lines go.

use std::cell::RefCell;

use barman_common::catalogue::relay as state;
use barman_common::catalogue::sync::PrimaryInfo;
use barman_common::config::ServerConfig;

use super::error::RelayError;
use super::primary::Primary;
use crate::output::Output;
use crate::rsync::Rsync;
use crate::server::Server;

/// The module name in log lines (`barman.relay`).
pub(super) const LOG_MODULE: &str = "relay";

/// Printed when the primary refused an incremental `sync-info` and the full answer was used.
pub(super) const RECOVERY_WARNING: &str =
    "sync-info is out of sync. Self-recovery procedure started: requesting all WAL files from the primary";

/// One passive server and how to reach its primary.
pub struct Relay<'a> {
    /// The local server.
    pub server: Server,
    /// Its configuration.
    pub cfg: &'a ServerConfig,
    /// `sync-info` through `primary_ssh_command`.
    pub primary: Primary,
    /// rsync through `primary_ssh_command`.
    pub rsync: Rsync,
    pub(super) out: RefCell<Output>,
}

impl Relay<'_> {
    /// An informational line (also in Barman's log file, where `barman cron`'s detached
    /// relays leave their trace).
    pub fn say(&self, msg: impl Into<String>) {
        self.out.borrow_mut().info(msg);
    }

    /// A `WARNING:` line (also logged).
    pub fn warn(&self, msg: impl Into<String>) {
        self.out.borrow_mut().warning(msg);
    }

    /// Asks the primary (incrementally from `sync-wals.info` when `incremental`), saves
    /// `primary.info` and parses it.
    pub fn fetch_info(&self, incremental: bool) -> Result<PrimaryInfo, RelayError> {
        let last = if incremental { state::read_sync_wals_info(&self.server.layout) } else { None };
        let answer = self.primary.sync_info(last.as_ref().map(|(w, p)| (w.as_str(), p.as_str())))?;
        if answer.recovered {
            self.warn(
                "sync-info is out of sync. Self-recovery procedure started: requesting all WAL files from the primary",
            );
        }
        let info = PrimaryInfo::parse(&answer.text)
            .map_err(|e| RelayError::Primary(format!("the primary's sync-info answer is not valid: {e}")))?;
        state::save_primary_info(&self.server.layout, &answer.text)?;
        Ok(info)
    }

    /// The saved `primary.info`.
    pub fn cached_info(&self) -> Result<PrimaryInfo, RelayError> {
        let path = state::primary_info_path(&self.server.layout);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            RelayError::Sync(format!(
                "cannot read {}: {e} (run `barman sync-info --primary {}` first)",
                path.display(),
                self.server.name
            ))
        })?;
        PrimaryInfo::parse(&text).map_err(|e| RelayError::Sync(format!("{}: {e}", path.display())))
    }
}
