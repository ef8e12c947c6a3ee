//! What `barman-backup` (and `barman backup`) was asked to do, free of clap types.

/// What the tool was asked to do, free of clap types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Barman configuration file (`-c`); the default search otherwise.
    pub config: Option<String>,
    /// The server section to back up.
    pub server: String,
    /// `--name`: a friendly name stored as `backup_name`.
    pub name: Option<String>,
    /// `--incremental BACKUP_ID`: the parent (an id, a name or a shortcut such as `latest`,
    /// `latest-full`) of a block-level incremental backup.
    pub incremental: Option<String>,
    /// `--immediate-checkpoint` (true) / `--no-immediate-checkpoint` (false); the server's
    /// `immediate_checkpoint` setting when `None`.
    pub immediate_checkpoint: Option<bool>,
    /// `--wait`: run the archiver until the backup's WAL is in and the backup is DONE.
    pub wait: bool,
    /// `--wait-timeout` seconds (0 = forever).
    pub wait_timeout: u64,
    /// `--reuse-backup off|copy|link`: overrides `reuse_backup` (only `link` has an effect).
    pub reuse_backup: Option<barman_common::config::ReuseBackup>,
    /// `--jobs N`: parallel rsync workers (overrides `parallel_jobs`; rsync method).
    pub jobs: Option<usize>,
    /// `--bwlimit KBPS` (overrides `bandwidth_limit`; 0 = unlimited).
    pub bwlimit: Option<u64>,
    /// `--retry-times N` (`--no-retry` = 0; overrides `basebackup_retry_times`).
    pub retry_times: Option<u32>,
    /// `--retry-sleep SECONDS` (overrides `basebackup_retry_sleep`).
    pub retry_sleep: Option<u64>,
    /// `--jobs-start-batch-size N` (overrides `parallel_jobs_start_batch_size`).
    pub jobs_start_batch_size: Option<u32>,
    /// `--jobs-start-batch-period SECONDS` (overrides `parallel_jobs_start_batch_period`).
    pub jobs_start_batch_period: Option<u32>,
    /// `--keepalive-interval SECONDS` (0: none; overrides `keepalive_interval`).
    pub keepalive_interval: Option<u64>,
    /// `--manifest` (true) / `--no-manifest` (false): overrides `autogenerate_manifest`.
    pub manifest: Option<bool>,
    /// `-f json`: print a JSON summary on stdout instead of text.
    pub json: bool,
    /// `-q`: no progress or informational lines.
    pub quiet: bool,
}
