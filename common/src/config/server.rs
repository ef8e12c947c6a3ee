//! The effective configuration of one server (`ServerConfig`) and of one model
//! (`ModelConfig`), typed. Built from the resolved option values; the checks Barman runs
//! when it builds a `Server` (disabled reasons, forced archiver, …) live in `checks.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::gpg::{Encryption, KeyId};
use chrono::TimeDelta;

use super::global::GlobalConfig;
use super::options::OptionValue;
use super::resolve::{Resolved, ValueSource};
use super::retention::RetentionPolicy;
use super::types::{
    BackupCompression, BackupCompressionFormat, BackupCompressionLocation, BackupMethod, BackupOption, Compression,
    CompressionLevel, CreateSlot, RecoveryOption, ReuseBackup, StagingLocation,
};

/// The operation a hook script runs around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookEvent {
    /// `backup`.
    Backup,
    /// `archive` (each WAL file in archive-wal).
    Archive,
    /// `delete` (a backup).
    Delete,
    /// `recovery`.
    Recovery,
    /// `wal_delete`.
    WalDelete,
}

impl HookEvent {
    /// The name used inside the option name (`pre_<name>_script`).
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Backup => "backup",
            HookEvent::Archive => "archive",
            HookEvent::Delete => "delete",
            HookEvent::Recovery => "recovery",
            HookEvent::WalDelete => "wal_delete",
        }
    }
}

/// Before or after the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookPhase {
    /// `pre_`.
    Pre,
    /// `post_`.
    Post,
}

/// The effective configuration of one server.
///
/// Fields hold the option of the same name after inheritance, defaults and Barman's
/// `Server` fix-ups (see the module docs of [`crate::config`]).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    name: String,
    barman_home: PathBuf,
    lock_directory: PathBuf,
    values: Resolved,
    pub(crate) disabled_reasons: Vec<String>,
    pub(crate) active_model: Option<String>,
    /// `description` (free text, shown by list-servers).
    pub description: Option<String>,
    /// `active` (default true): inactive servers are skipped by backup and put-wal.
    pub active: bool,
    /// `conninfo`: libpq DSN (not inherited).
    pub conninfo: Option<String>,
    /// `streaming_conninfo` (default = `conninfo`).
    pub streaming_conninfo: Option<String>,
    /// `wal_conninfo`.
    pub wal_conninfo: Option<String>,
    /// `wal_streaming_conninfo`.
    pub wal_streaming_conninfo: Option<String>,
    /// `primary_conninfo` (backups from a standby; unrelated to passive nodes).
    pub primary_conninfo: Option<String>,
    /// `primary_checkpoint_timeout` seconds (default 0).
    pub primary_checkpoint_timeout: i64,
    /// `ssh_command` (not inherited), e.g. `ssh postgres@pg`.
    pub ssh_command: Option<String>,
    /// `backup_method` (default rsync).
    pub backup_method: BackupMethod,
    /// `backup_options` (`concurrent_backup` is added when neither strategy is set, as
    /// Barman's backup executors do).
    pub backup_options: BTreeSet<BackupOption>,
    /// `backup_directory` (default `<barman_home>/<name>`).
    pub backup_directory: PathBuf,
    /// `basebackups_directory` (default `<backup_directory>/base`; may be a cloud URL).
    pub basebackups_directory: PathBuf,
    /// `wals_directory` (default `<backup_directory>/wals`; may be a cloud URL).
    pub wals_directory: PathBuf,
    /// `incoming_wals_directory` (default `<backup_directory>/incoming`): put-wal target.
    pub incoming_wals_directory: PathBuf,
    /// `streaming_wals_directory` (default `<backup_directory>/streaming`).
    pub streaming_wals_directory: PathBuf,
    /// `errors_directory` (default `<backup_directory>/errors`).
    pub errors_directory: PathBuf,
    /// `xlogdb_directory` (default `wals_directory`; inheritable).
    pub xlogdb_directory: PathBuf,
    /// `compression`: WAL compression in the archive.
    pub compression: Option<Compression>,
    /// `compression_level` (default medium; `None` when explicitly emptied).
    pub compression_level: Option<CompressionLevel>,
    /// `custom_compression_filter` (deprecated in Barman 3.17).
    pub custom_compression_filter: Option<String>,
    /// `custom_decompression_filter` (deprecated in Barman 3.17).
    pub custom_decompression_filter: Option<String>,
    /// `custom_compression_magic` (deprecated in Barman 3.17).
    pub custom_compression_magic: Option<String>,
    /// `archiver`: archiving from incoming/ (forced on when both archivers are off).
    pub archiver: bool,
    /// `archiver_batch_size` (0 = all).
    pub archiver_batch_size: i64,
    /// `streaming_archiver`: pg_receivewal via receive-wal.
    pub streaming_archiver: bool,
    /// `streaming_archiver_batch_size` (0 = all).
    pub streaming_archiver_batch_size: i64,
    /// `streaming_archiver_name` (default `barman_receive_wal`).
    pub streaming_archiver_name: Option<String>,
    /// `streaming_backup_name` (default `barman_streaming_backup`).
    pub streaming_backup_name: Option<String>,
    /// `slot_name` (lower-cased, `[0-9a-z_]+`; inheritable).
    pub slot_name: Option<String>,
    /// `create_slot` (default manual).
    pub create_slot: CreateSlot,
    /// `path_prefix`: directories prepended to PATH.
    pub path_prefix: Option<String>,
    /// `reuse_backup` (unset means off).
    pub reuse_backup: Option<ReuseBackup>,
    /// `parallel_jobs` (default 1).
    pub parallel_jobs: i64,
    /// `parallel_jobs_start_batch_period` (default 1).
    pub parallel_jobs_start_batch_period: i64,
    /// `parallel_jobs_start_batch_size` (default 10).
    pub parallel_jobs_start_batch_size: i64,
    /// `network_compression` (rsync `-z`).
    pub network_compression: bool,
    /// `bandwidth_limit` KB/s (`None` when unset or invalid).
    pub bandwidth_limit: Option<i64>,
    /// `tablespace_bandwidth_limit` (`name:kbps …`), minus rules equal to the global limit.
    pub tablespace_bandwidth_limit: BTreeMap<String, i64>,
    /// `immediate_checkpoint`.
    pub immediate_checkpoint: bool,
    /// `basebackup_retry_times` (default 0).
    pub basebackup_retry_times: i64,
    /// `basebackup_retry_sleep` seconds (default 30).
    pub basebackup_retry_sleep: i64,
    /// `check_timeout` seconds (default 30).
    pub check_timeout: i64,
    /// `keepalive_interval` seconds (default 60; not inherited, Barman's typo).
    pub keepalive_interval: i64,
    /// `retention_policy`, when set and valid.
    pub retention_policy: Option<RetentionPolicy>,
    /// The `retention_policy` text when it is set but unparsable (check reports
    /// `retention policy settings: FAILED`; nothing is enforced).
    pub retention_policy_invalid: Option<String>,
    /// `retention_policy_mode` (always `auto` after Barman's fix-up).
    pub retention_policy_mode: String,
    /// `wal_retention_policy` (forced to `main` when a retention policy is set).
    pub wal_retention_policy: Option<String>,
    /// `minimum_redundancy` (negative or invalid → 0 with a log warning).
    pub minimum_redundancy: u32,
    /// `last_backup_maximum_age`.
    pub last_backup_maximum_age: Option<TimeDelta>,
    /// `last_backup_minimum_size` in bytes.
    pub last_backup_minimum_size: Option<u64>,
    /// `last_wal_maximum_age`.
    pub last_wal_maximum_age: Option<TimeDelta>,
    /// `max_incoming_wals_queue`.
    pub max_incoming_wals_queue: Option<i64>,
    /// `recovery_options`.
    pub recovery_options: BTreeSet<RecoveryOption>,
    /// `primary_ssh_command`: set = passive node (inheritable).
    pub primary_ssh_command: Option<String>,
    /// `forward_config_path`: pass `-c <config>` to the primary's sync-info.
    pub forward_config_path: bool,
    /// `cluster` (default the server name).
    pub cluster: Option<String>,
    /// `worm_mode`.
    pub worm_mode: bool,
    /// `staging_path` (absolute).
    pub staging_path: Option<PathBuf>,
    /// `staging_location` (default local).
    pub staging_location: StagingLocation,
    /// `backup_compression` (pg_basebackup).
    pub backup_compression: Option<BackupCompression>,
    /// `backup_compression_format`.
    pub backup_compression_format: Option<BackupCompressionFormat>,
    /// `backup_compression_level`.
    pub backup_compression_level: Option<i64>,
    /// `backup_compression_location`.
    pub backup_compression_location: Option<BackupCompressionLocation>,
    /// `backup_compression_workers`.
    pub backup_compression_workers: Option<i64>,
    /// `encryption` (`gpg` or unset).
    pub encryption: Option<Encryption>,
    /// `encryption_key_id`: the gpg recipient of WAL and backups.
    pub encryption_key_id: Option<KeyId>,
    /// `encryption_passphrase_command`: prints the private key's passphrase (never logged).
    pub encryption_passphrase_command: Option<String>,
    /// `wal_retention_window`: **our extension**, unknown to Barman (which warns
    /// `Invalid configuration option "wal_retention_window"`). A time interval; WALs
    /// newer than it are kept whatever the base-backup policy says. Inheritable.
    pub wal_retention_window: Option<TimeDelta>,
}

/// Typed reads from the resolved values (absent or of another type → `None`).
struct Values<'a>(&'a BTreeMap<&'static str, OptionValue>);

impl Values<'_> {
    fn text(&self, key: &str) -> Option<String> {
        self.0.get(key).map(ToString::to_string)
    }

    fn flag(&self, key: &str, default: bool) -> bool {
        match self.0.get(key) {
            Some(OptionValue::Bool(b)) => *b,
            _ => default,
        }
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.0.get(key) {
            Some(OptionValue::Int(n)) => Some(*n),
            _ => None,
        }
    }

    fn interval(&self, key: &str) -> Option<TimeDelta> {
        match self.0.get(key) {
            Some(OptionValue::Interval(d)) => Some(*d),
            _ => None,
        }
    }

    fn bytes(&self, key: &str) -> Option<u64> {
        match self.0.get(key) {
            Some(OptionValue::Bytes(n)) => Some(*n),
            _ => None,
        }
    }

    fn parsed<T: FromStr>(&self, key: &str) -> Option<T> {
        self.0.get(key).and_then(|v| v.to_string().parse().ok())
    }

    fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(self.text(key).unwrap_or_default())
    }

    fn backup_options(&self) -> BTreeSet<BackupOption> {
        match self.0.get("backup_options") {
            Some(OptionValue::BackupOptions(set)) => set.clone(),
            _ => BTreeSet::new(),
        }
    }

    fn recovery_options(&self) -> BTreeSet<RecoveryOption> {
        match self.0.get("recovery_options") {
            Some(OptionValue::RecoveryOptions(set)) => set.clone(),
            _ => BTreeSet::new(),
        }
    }
}

impl ServerConfig {
    /// Builds the typed view of `resolved`. The derived settings (`minimum_redundancy`,
    /// bandwidth limits, retention) start neutral and are filled by the checks.
    pub(crate) fn build(name: &str, global: &GlobalConfig, resolved: Resolved) -> ServerConfig {
        let v = Values(&resolved.values);
        ServerConfig {
            name: name.to_owned(),
            barman_home: global.barman_home.clone(),
            lock_directory: global.barman_lock_directory.clone(),
            disabled_reasons: Vec::new(),
            active_model: None,
            description: v.text("description"),
            active: v.flag("active", true),
            conninfo: v.text("conninfo"),
            streaming_conninfo: v.text("streaming_conninfo"),
            wal_conninfo: v.text("wal_conninfo"),
            wal_streaming_conninfo: v.text("wal_streaming_conninfo"),
            primary_conninfo: v.text("primary_conninfo"),
            primary_checkpoint_timeout: v.int("primary_checkpoint_timeout").unwrap_or(0),
            ssh_command: v.text("ssh_command"),
            backup_method: v.parsed("backup_method").unwrap_or(BackupMethod::Rsync),
            backup_options: v.backup_options(),
            backup_directory: v.path("backup_directory"),
            basebackups_directory: v.path("basebackups_directory"),
            wals_directory: v.path("wals_directory"),
            incoming_wals_directory: v.path("incoming_wals_directory"),
            streaming_wals_directory: v.path("streaming_wals_directory"),
            errors_directory: v.path("errors_directory"),
            xlogdb_directory: v.path("xlogdb_directory"),
            compression: v.parsed("compression"),
            compression_level: v.parsed("compression_level"),
            custom_compression_filter: v.text("custom_compression_filter"),
            custom_decompression_filter: v.text("custom_decompression_filter"),
            custom_compression_magic: v.text("custom_compression_magic"),
            archiver: v.flag("archiver", false),
            archiver_batch_size: v.int("archiver_batch_size").unwrap_or(0),
            streaming_archiver: v.flag("streaming_archiver", false),
            streaming_archiver_batch_size: v.int("streaming_archiver_batch_size").unwrap_or(0),
            streaming_archiver_name: v.text("streaming_archiver_name"),
            streaming_backup_name: v.text("streaming_backup_name"),
            slot_name: v.text("slot_name"),
            create_slot: v.parsed("create_slot").unwrap_or(CreateSlot::Manual),
            path_prefix: v.text("path_prefix"),
            reuse_backup: v.parsed("reuse_backup"),
            parallel_jobs: v.int("parallel_jobs").unwrap_or(1),
            parallel_jobs_start_batch_period: v.int("parallel_jobs_start_batch_period").unwrap_or(1),
            parallel_jobs_start_batch_size: v.int("parallel_jobs_start_batch_size").unwrap_or(10),
            network_compression: v.flag("network_compression", false),
            bandwidth_limit: None,
            tablespace_bandwidth_limit: BTreeMap::new(),
            immediate_checkpoint: v.flag("immediate_checkpoint", false),
            basebackup_retry_times: v.int("basebackup_retry_times").unwrap_or(0),
            basebackup_retry_sleep: v.int("basebackup_retry_sleep").unwrap_or(30),
            check_timeout: v.int("check_timeout").unwrap_or(30),
            keepalive_interval: v.int("keepalive_interval").unwrap_or(60),
            retention_policy: None,
            retention_policy_invalid: None,
            retention_policy_mode: v.text("retention_policy_mode").unwrap_or_else(|| "None".to_owned()),
            wal_retention_policy: v.text("wal_retention_policy"),
            minimum_redundancy: 0,
            last_backup_maximum_age: v.interval("last_backup_maximum_age"),
            last_backup_minimum_size: v.bytes("last_backup_minimum_size"),
            last_wal_maximum_age: v.interval("last_wal_maximum_age"),
            max_incoming_wals_queue: v.int("max_incoming_wals_queue"),
            recovery_options: v.recovery_options(),
            primary_ssh_command: v.text("primary_ssh_command"),
            forward_config_path: v.flag("forward_config_path", false),
            cluster: v.text("cluster"),
            worm_mode: v.flag("worm_mode", false),
            staging_path: v.text("staging_path").map(PathBuf::from),
            staging_location: v.parsed("staging_location").unwrap_or(StagingLocation::Local),
            backup_compression: v.parsed("backup_compression"),
            backup_compression_format: v.parsed("backup_compression_format"),
            backup_compression_level: v.int("backup_compression_level"),
            backup_compression_location: v.parsed("backup_compression_location"),
            backup_compression_workers: v.int("backup_compression_workers"),
            encryption: v.text("encryption").as_deref().and_then(Encryption::from_name),
            encryption_key_id: v.text("encryption_key_id").map(KeyId::new),
            encryption_passphrase_command: v.text("encryption_passphrase_command"),
            wal_retention_window: v.interval("wal_retention_window"),
            values: resolved,
        }
    }

    /// `autogenerate_manifest`: rsync backups get a `backup_manifest` (default off).
    pub fn autogenerate_manifest(&self) -> bool {
        Values(&self.values.values).flag("autogenerate_manifest", false)
    }

    /// The server (section) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `barman_home` of the installation.
    pub fn barman_home(&self) -> &Path {
        &self.barman_home
    }

    /// Where the lock files live (`barman_lock_directory`).
    pub fn lock_directory(&self) -> &Path {
        &self.lock_directory
    }

    /// `<backup_directory>/meta`: `backup.info` and keep files of Barman 3.13.2+.
    pub fn meta_directory(&self) -> PathBuf {
        self.backup_directory.join("meta")
    }

    /// `<xlogdb_directory>/<name>-xlog.db`, the WAL index of Barman 3.13+.
    pub fn xlogdb_file(&self) -> PathBuf {
        self.xlogdb_directory.join(format!("{}-xlog.db", self.name))
    }

    /// Whether this is a passive node (`primary_ssh_command` set).
    pub fn is_passive(&self) -> bool {
        self.primary_ssh_command.is_some()
    }

    /// Whether the server is disabled (a configuration error; see
    /// [`ServerConfig::disabled_reasons`]).
    pub fn is_disabled(&self) -> bool {
        !self.disabled_reasons.is_empty()
    }

    /// Why the server is disabled, in Barman's words and order (each is printed as an
    /// `ERROR:` line by commands, and under `configuration: FAILED` by check).
    pub fn disabled_reasons(&self) -> &[String] {
        &self.disabled_reasons
    }

    /// The model applied from `<backup_directory>/.active-model.auto`, if any.
    pub fn active_model(&self) -> Option<&str> {
        self.active_model.as_deref()
    }

    /// A hook script: `pre_`/`post_` + event + optional `_retry` + `_script`.
    pub fn hook_script(&self, phase: HookPhase, event: HookEvent, retry: bool) -> Option<&str> {
        let phase = match phase {
            HookPhase::Pre => "pre",
            HookPhase::Post => "post",
        };
        let retry = if retry { "_retry" } else { "" };
        let key = format!("{phase}_{}{retry}_script", event.as_str());
        self.values.values.get(key.as_str()).and_then(OptionValue::as_str)
    }

    /// The effective value of any option, by name (as resolved, before Barman's `Server`
    /// fix-ups), `None` when unset. Covers the options without a typed field (`aws_*`,
    /// `snapshot_*`, …).
    pub fn value(&self, key: &str) -> Option<&OptionValue> {
        self.values.values.get(key)
    }

    /// Every set option with its value, by name.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, &OptionValue)> {
        self.values.values.iter().map(|(k, v)| (*k, v))
    }

    /// The section, file and line an option's value came from; `None` for defaults.
    pub fn source(&self, key: &str) -> Option<&ValueSource> {
        self.values.sources.get(key)
    }

    /// `ServerConfig.get_wal_conninfo`: (streaming, normal) conninfo for WAL work,
    /// preferring `wal_streaming_conninfo` / `wal_conninfo`.
    pub fn wal_conninfo_pair(&self) -> (Option<&str>, Option<&str>) {
        let streaming = self.wal_streaming_conninfo.as_deref().or(self.streaming_conninfo.as_deref());
        let normal =
            self.wal_conninfo.as_deref().or(self.wal_streaming_conninfo.as_deref()).or(self.conninfo.as_deref());
        (streaming, normal)
    }
}

/// A configuration model (`model = true` section): options that
/// `barman config-switch SERVER MODEL` lays over a server of the same `cluster`.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    name: String,
    cluster: Option<String>,
    values: Resolved,
}

impl ModelConfig {
    pub(crate) fn new(name: &str, values: Resolved) -> ModelConfig {
        let cluster = values.values.get("cluster").map(ToString::to_string);
        ModelConfig { name: name.to_owned(), cluster, values }
    }

    /// The model (section) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `cluster` the model applies to.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// The options the model overrides (every set one except `cluster`).
    pub fn overrides(&self) -> impl Iterator<Item = (&'static str, &OptionValue)> {
        self.values.values.iter().filter(|(k, _)| **k != "cluster").map(|(k, v)| (*k, v))
    }

    /// The file and line that set `key` in the model.
    pub fn source(&self, key: &str) -> Option<&ValueSource> {
        self.values.sources.get(key)
    }

    pub(crate) fn resolved(&self) -> &Resolved {
        &self.values
    }
}
