//! [`Settings`]: the server settings a backup uses, resolved once from the configuration
//! and the command line.

use std::time::Duration;

use barman_common::config::{encryption_issue, ServerConfig};
use barman_common::gpg::KeyId;
use barman_common::pg::ConnInfo;

use super::error::ToolError;
use super::options::Options;
use super::storage::Storage;

/// The server settings a backup uses, resolved from the configuration and the options.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) conninfo: ConnInfo,
    pub(super) streaming: ConnInfo,
    pub(super) fast_checkpoint: bool,
    pub(super) max_rate_kbps: Option<u32>,
    /// `reuse_backup = link` (or `--reuse-backup link`); plain backups only.
    pub(super) reuse_link: bool,
    /// Format and compression (`backup_compression*`).
    pub(super) storage: Storage,
    /// `basebackup_retry_times`: copy attempts after the first.
    pub(super) retry_times: u32,
    /// `basebackup_retry_sleep`.
    pub(super) retry_sleep: Duration,
    /// `worm_mode`: WAL before a first backup is kept.
    pub(super) worm_mode: bool,
    /// `wal_retention_window` (our extension).
    pub(super) wal_window: Option<chrono::TimeDelta>,
    /// `encryption = gpg`: the recipient the tar archives are encrypted to.
    pub(super) encrypt_to: Option<KeyId>,
}

impl Settings {
    pub(super) fn new(cfg: &ServerConfig, opts: &Options) -> Result<Settings, ToolError> {
        let name = cfg.name();
        if cfg.backup_method.as_str() != "postgres" {
            return Err(ToolError::Usage(format!(
                "server {name}: backup_method = {} is not supported by barman-backup (only postgres)",
                cfg.backup_method.as_str()
            )));
        }
        let parse = |what: &str, text: Option<&String>| {
            let text = text.ok_or_else(|| ToolError::Usage(format!("server {name}: {what} is not set")))?;
            ConnInfo::parse(text).map_err(|e| ToolError::Usage(format!("server {name}: {what}: {e}")))
        };
        let conninfo = parse("conninfo", cfg.conninfo.as_ref())?;
        let streaming = parse("streaming_conninfo", cfg.streaming_conninfo.as_ref().or(cfg.conninfo.as_ref()))?;
        // pg_basebackup --max-rate accepts 32 kB/s .. 1 GB/s; Barman passes bandwidth_limit.
        let max_rate_kbps = cfg.bandwidth_limit.filter(|&kb| kb > 0).map(|kb| kb.clamp(32, 1_048_576) as u32);
        let storage = Storage::from_config(cfg).map_err(|e| ToolError::Usage(format!("server {name}: {e}")))?;
        // Barman finds these after the copy and fails the backup; refusing before it starts
        // changes nothing.
        if let Some(issue) = encryption_issue(cfg) {
            return Err(ToolError::Usage(format!("server {name}: {issue}")));
        }
        let encrypt_to = cfg.encryption.and(cfg.encryption_key_id.clone());
        Ok(Settings {
            conninfo,
            streaming,
            fast_checkpoint: opts.immediate_checkpoint.unwrap_or(cfg.immediate_checkpoint),
            max_rate_kbps,
            reuse_link: opts.reuse_backup.or(cfg.reuse_backup) == Some(barman_common::config::ReuseBackup::Link),
            storage,
            retry_times: u32::try_from(cfg.basebackup_retry_times).unwrap_or(0),
            retry_sleep: Duration::from_secs(u64::try_from(cfg.basebackup_retry_sleep).unwrap_or(0)),
            worm_mode: cfg.worm_mode,
            wal_window: cfg.wal_retention_window,
            encrypt_to,
        })
    }
}
