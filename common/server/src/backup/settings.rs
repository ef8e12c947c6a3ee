//! [`Settings`]: the server settings a backup uses, resolved once from the configuration
//! and the command line.

use std::time::Duration;

use barman_common::config::{encryption_issue, BackupMethod, ServerConfig};
use barman_common::gpg::KeyId;
use barman_common::pg::ConnInfo;

use super::error::ToolError;
use super::options::Options;
use super::rsync_method::RsyncSettings;
use super::storage::Storage;

/// How the files are copied.
#[derive(Debug, Clone)]
pub(super) enum Method {
    /// `BASE_BACKUP` over the replication protocol.
    Postgres,
    /// rsync from the PostgreSQL host (over `ssh_command`, or local).
    Rsync(RsyncSettings),
}

impl PartialEq for Method {
    fn eq(&self, other: &Method) -> bool {
        matches!((self, other), (Method::Postgres, Method::Postgres) | (Method::Rsync(_), Method::Rsync(_)))
    }
}

impl Method {
    /// The word of Barman's "Starting backup using ... method" line.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Method::Postgres => "postgres",
            Method::Rsync(rs) if rs.ssh_command.is_none() => "local-rsync",
            Method::Rsync(_) => "rsync",
        }
    }

    /// backup.info's `mode`.
    pub(super) fn mode(&self) -> &'static str {
        match self {
            Method::Postgres => "postgres",
            Method::Rsync(_) => "rsync-concurrent",
        }
    }
}

/// The server settings a backup uses, resolved from the configuration and the options.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) method: Method,
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
    /// `primary_conninfo` (a backup from a standby switches WAL there) and
    /// `primary_checkpoint_timeout`.
    pub(super) primary: Option<(ConnInfo, Duration)>,
}

impl Settings {
    pub(super) fn new(cfg: &ServerConfig, opts: &Options) -> Result<Settings, ToolError> {
        let name = cfg.name();
        let method = match cfg.backup_method {
            BackupMethod::Postgres => Method::Postgres,
            BackupMethod::Rsync | BackupMethod::LocalRsync => {
                Method::Rsync(rsync_settings(cfg, opts, cfg.backup_method == BackupMethod::LocalRsync)?)
            }
            other => {
                return Err(ToolError::Usage(format!(
                    "server {name}: backup_method = {} is not supported by barman-backup",
                    other.as_str()
                )))
            }
        };
        let parse = |what: &str, text: Option<&String>| {
            let text = text.ok_or_else(|| ToolError::Usage(format!("server {name}: {what} is not set")))?;
            ConnInfo::parse(text).map_err(|e| ToolError::Usage(format!("server {name}: {what}: {e}")))
        };
        let conninfo = parse("conninfo", cfg.conninfo.as_ref())?;
        let streaming = parse("streaming_conninfo", cfg.streaming_conninfo.as_ref().or(cfg.conninfo.as_ref()))?;
        // pg_basebackup --max-rate accepts 32 kB/s .. 1 GB/s; Barman passes bandwidth_limit.
        let limit = opts.bwlimit.map_or(cfg.bandwidth_limit, |kb| i64::try_from(kb).ok());
        let max_rate_kbps = limit.filter(|&kb| kb > 0).map(|kb| kb.clamp(32, 1_048_576) as u32);
        let storage = Storage::from_config(cfg).map_err(|e| ToolError::Usage(format!("server {name}: {e}")))?;
        // Barman finds these after the copy and fails the backup; refusing before it starts
        // changes nothing.
        if let Some(issue) = encryption_issue(cfg) {
            return Err(ToolError::Usage(format!("server {name}: {issue}")));
        }
        let encrypt_to = cfg.encryption.and(cfg.encryption_key_id.clone());
        let primary = cfg
            .primary_conninfo
            .as_ref()
            .map(|_| parse("primary_conninfo", cfg.primary_conninfo.as_ref()))
            .transpose()?;
        let checkpoint_timeout = Duration::from_secs(u64::try_from(cfg.primary_checkpoint_timeout).unwrap_or(0));
        Ok(Settings {
            method,
            conninfo,
            streaming,
            fast_checkpoint: opts.immediate_checkpoint.unwrap_or(cfg.immediate_checkpoint),
            max_rate_kbps,
            reuse_link: opts.reuse_backup.or(cfg.reuse_backup) == Some(barman_common::config::ReuseBackup::Link),
            storage,
            retry_times: opts.retry_times.unwrap_or_else(|| u32::try_from(cfg.basebackup_retry_times).unwrap_or(0)),
            retry_sleep: Duration::from_secs(
                opts.retry_sleep.unwrap_or_else(|| u64::try_from(cfg.basebackup_retry_sleep).unwrap_or(0)),
            ),
            worm_mode: cfg.worm_mode,
            wal_window: cfg.wal_retention_window,
            encrypt_to,
            primary: primary.map(|p| (p, checkpoint_timeout)),
        })
    }
}

/// The rsync method's settings with the command line's overrides.
fn rsync_settings(cfg: &ServerConfig, opts: &Options, local: bool) -> Result<RsyncSettings, ToolError> {
    let mut rs = RsyncSettings::from_config(cfg, local);
    if !local && rs.ssh_command.is_none() {
        return Err(ToolError::Usage(format!(
            "Missing or invalid ssh_command in barman configuration for server {}",
            cfg.name()
        )));
    }
    if let Some(mode) = opts.reuse_backup {
        rs.reuse = mode;
    }
    if let Some(jobs) = opts.jobs {
        rs.workers = jobs.max(1);
    }
    if let Some(kbps) = opts.bwlimit {
        rs.bwlimit = (kbps > 0).then_some(kbps);
    }
    if let Some(times) = opts.retry_times {
        rs.retry.0 = times;
    }
    if let Some(secs) = opts.retry_sleep {
        rs.retry.1 = Duration::from_secs(secs);
    }
    if let Some(size) = opts.jobs_start_batch_size {
        rs.start_batch.0 = size as usize;
    }
    if let Some(secs) = opts.jobs_start_batch_period {
        rs.start_batch.1 = Duration::from_secs(u64::from(secs));
    }
    if let Some(secs) = opts.keepalive_interval {
        rs.keepalive = Duration::from_secs(secs);
    }
    rs.manifest = opts.manifest.unwrap_or(cfg.autogenerate_manifest());
    Ok(rs)
}
