//! The loaded configuration, and the [`Server`] view of each configured server.

use std::path::Path;

use barman_common::catalogue::ServerLayout;
use barman_common::compress::{Codec, Level};
use barman_common::config::{self, CompressionLevel, LoadOptions, ServerConfig};
use barman_common::gpg::Gpg;

use crate::output::Output;
use crate::server::Server;
use crate::CmdError;

/// What every command starts from.
#[derive(Debug)]
pub struct Context {
    config: config::Config,
}

impl Context {
    /// Finds and loads the configuration (`-c`, `$BARMAN_CONFIG_FILE`, the default places);
    /// warnings go to the output's stderr.
    pub fn load(explicit: Option<&str>, out: &mut Output) -> Result<Context, CmdError> {
        let loaded = config::load_default(explicit.map(Path::new), &LoadOptions::default())
            .map_err(|e| CmdError::Error(e.to_string()))?;
        crate::privileges::drop_to(&loaded.config.global().barman_user)?;
        crate::log::init(loaded.config.global().log_file.clone());
        if !crate::log::set_level(&loaded.config.global().log_level) {
            let level = &loaded.config.global().log_level;
            crate::log::warning("cli", &format!("unknown log_level in config file: {level}"));
        }
        for w in &loaded.warnings {
            out.warning(w.to_string());
        }
        Ok(Context { config: loaded.config })
    }

    /// The configuration files read again (after `config-switch` changed a server's active
    /// model), without the privilege drop and log set-up [`Context::load`] already did.
    pub fn reload(&self) -> Result<Context, CmdError> {
        let loaded = config::load_default(Some(self.config.config_file()), &LoadOptions::default())
            .map_err(|e| CmdError::Error(e.to_string()))?;
        Ok(Context { config: loaded.config })
    }

    /// The configuration of `name` for a command looping over servers: `None` after an
    /// `ERROR:` line for an unknown server, or one per reason for a disabled one.
    pub fn config_or_report(&self, name: &str, out: &mut Output) -> Option<&ServerConfig> {
        let Some(cfg) = self.config.server(name) else {
            out.error(format!("Unknown server '{name}'"));
            return None;
        };
        if cfg.is_disabled() {
            for reason in cfg.disabled_reasons() {
                out.error(reason.clone());
            }
            return None;
        }
        Some(cfg)
    }

    /// The configuration.
    pub fn config(&self) -> &config::Config {
        &self.config
    }

    /// Server names in name order.
    pub fn server_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.config.servers().map(|s| s.name().to_owned()).collect();
        names.sort();
        names
    }

    /// The named server, or Barman's `Unknown server` error.
    pub fn server(&self, name: &str) -> Result<Server, CmdError> {
        let cfg = self.config.server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
        if cfg.is_disabled() {
            let reasons = cfg.disabled_reasons().join("; ");
            return Err(CmdError::Error(format!("Server '{name}' is disabled: {reasons}")));
        }
        let mut server = server_view(cfg)?;
        server.hooks = crate::hooks::Hooks::from_config(cfg, self.config.config_file());
        Ok(server)
    }
}

fn level(l: Option<CompressionLevel>) -> Level {
    match l {
        None | Some(CompressionLevel::Medium) => Level::Medium,
        Some(CompressionLevel::Low) => Level::Low,
        Some(CompressionLevel::High) => Level::High,
        Some(CompressionLevel::Int(n)) => Level::Int(n),
    }
}

/// The catalogue layout of a server's configuration.
pub fn layout(cfg: &ServerConfig) -> ServerLayout {
    ServerLayout {
        name: cfg.name().to_owned(),
        backup_directory: cfg.backup_directory.clone(),
        basebackups_directory: cfg.basebackups_directory.clone(),
        wals_directory: cfg.wals_directory.clone(),
        incoming: cfg.incoming_wals_directory.clone(),
        streaming: cfg.streaming_wals_directory.clone(),
        errors: cfg.errors_directory.clone(),
        xlogdb_directory: cfg.xlogdb_directory.clone(),
        lock_directory: cfg.lock_directory().to_owned(),
    }
}

fn server_view(cfg: &ServerConfig) -> Result<Server, CmdError> {
    let compression = match cfg.compression {
        None => None,
        Some(c) => {
            let codec = Codec::from_barman_name(c.as_str()).map_err(|_| {
                CmdError::Error(format!("compression '{}' is not supported by this toolkit", c.as_str()))
            })?;
            Some((c.as_str().to_owned(), codec))
        }
    };
    let batch = |n: i64| usize::try_from(n).unwrap_or(0);
    Ok(Server {
        name: cfg.name().to_owned(),
        layout: layout(cfg),
        active: cfg.active,
        compression,
        level: level(cfg.compression_level),
        archiver_batch_size: batch(cfg.archiver_batch_size),
        streaming_batch_size: batch(cfg.streaming_archiver_batch_size),
        archiver: cfg.archiver,
        streaming_archiver: cfg.streaming_archiver,
        passive: cfg.is_passive(),
        hooks: crate::hooks::Hooks::default(),
        encryption: cfg.encryption,
        gpg: std::sync::Arc::new(Gpg::new(cfg.encryption_key_id.clone(), cfg.encryption_passphrase_command.clone())),
    })
}
