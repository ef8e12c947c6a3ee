//! The server a `check` run looks at: its configuration, catalogue layout and backups,
//! loaded once and handed to every check.

use barman_common::catalogue::{Catalogue, ServerLayout};
use barman_common::config::ServerConfig;

use crate::CmdError;

/// One server under check.
pub struct Subject<'a> {
    /// Its configuration.
    pub cfg: &'a ServerConfig,
    /// Its catalogue directories (also for disabled servers).
    pub layout: ServerLayout,
    /// Its backups.
    pub catalogue: Catalogue,
    /// Active and not passive: PostgreSQL is asked and the archivers run.
    pub live: bool,
}

impl<'a> Subject<'a> {
    /// Loads the catalogue of `cfg`.
    pub fn load(cfg: &'a ServerConfig) -> Result<Self, CmdError> {
        let layout = crate::context::layout(cfg);
        let catalogue = Catalogue::load(&layout)?;
        Ok(Subject { cfg, layout, catalogue, live: cfg.active && !cfg.is_passive() })
    }
}
