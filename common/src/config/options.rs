//! The option table: every server option Barman 3.20.1 knows (`ServerConfig.KEYS`, in
//! its order, which is also the resolution order), with its parser, whether a server
//! inherits it from `[barman]` (`BARMAN_KEYS`), its default (`DEFAULTS`, `%(...)s`
//! templates expanded against `barman_home`, `name` and earlier options) and whether a
//! model may set it. Plus the value type the parsers produce.
//!
//! Quirks kept on purpose: `keepalive_interval` is not inherited (Barman's list says
//! `keepalive_internval`); `slot_name` and `primary_ssh_command` are; `conninfo`,
//! `ssh_command`, `description` and the directories are not. One option is ours:
//! `wal_retention_window` (a time interval, inherited, no default), which Barman does
//! not know and would warn about.

use std::collections::BTreeSet;
use std::fmt;

use chrono::TimeDelta;

use super::parse::{parse_boolean, parse_python_int, parse_si_suffix, parse_time_interval};
use super::types::{
    parse_csv, BackupCompression, BackupCompressionFormat, BackupCompressionLocation, BackupMethod, BackupOption,
    Compression, CompressionLevel, CreateSlot, RecoveryOption, ReuseBackup, StagingLocation,
};

/// Which parser an option goes through (`ServerConfig.PARSERS`; `Str` = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Bool,
    Int,
    Interval,
    SiSize,
    ReuseBackup,
    BackupCompression,
    BackupCompressionFormat,
    BackupCompressionLocation,
    Encryption,
    BackupMethod,
    Compression,
    CompressionLevel,
    StagingPath,
    StagingLocation,
    SlotName,
    SnapshotDisks,
    CreateSlot,
    CombineMode,
    DirOrCloud,
    AwsEncryption,
    BackupOptions,
    RecoveryOptions,
}

/// One server option.
#[derive(Debug)]
pub(crate) struct OptionSpec {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// Inherited from `[barman]` when unset in the server section.
    pub(crate) inherit: bool,
    /// The default, possibly a `%(...)s` template.
    pub(crate) default: Option<&'static str>,
    /// Not settable by users (`disabled`): always the default.
    pub(crate) fixed: bool,
    /// Allowed in a model section.
    pub(crate) model: bool,
}

const fn opt(name: &'static str, kind: Kind, inherit: bool, default: Option<&'static str>, model: bool) -> OptionSpec {
    OptionSpec { name, kind, inherit, default, fixed: false, model }
}

use Kind as P;

/// `ServerConfig.KEYS` in order (plus our `wal_retention_window` at the end).
pub(crate) const SERVER_OPTIONS: &[OptionSpec] = &[
    opt("active", P::Bool, false, Some("true"), true),
    opt("archiver", P::Bool, true, Some("off"), true),
    opt("archiver_batch_size", P::Int, true, Some("0"), true),
    opt("autogenerate_manifest", P::Bool, true, Some("false"), true),
    opt("aws_check_object_lock", P::Bool, true, Some("off"), true),
    opt("aws_encryption", P::AwsEncryption, true, None, true),
    opt("aws_read_timeout", P::Int, true, None, true),
    opt("aws_await_snapshots_timeout", P::Int, true, Some("3600"), true),
    opt("aws_snapshot_lock_mode", P::Str, true, None, true),
    opt("aws_snapshot_lock_duration", P::Int, true, None, true),
    opt("aws_snapshot_lock_cool_off_period", P::Int, true, None, true),
    opt("aws_snapshot_lock_expiration_date", P::Str, true, None, true),
    opt("aws_profile", P::Str, true, None, true),
    opt("aws_region", P::Str, true, None, true),
    opt("aws_sse_kms_key_id", P::Str, true, None, true),
    opt("aws_sse_customer_key", P::Str, true, None, true),
    opt("azure_credential", P::Str, true, None, true),
    opt("azure_resource_group", P::Str, true, None, true),
    opt("azure_subscription_id", P::Str, true, None, true),
    opt("backup_compression", P::BackupCompression, true, None, true),
    opt("backup_compression_format", P::BackupCompressionFormat, true, None, true),
    opt("backup_compression_level", P::Int, true, None, true),
    opt("backup_compression_location", P::BackupCompressionLocation, true, None, true),
    opt("backup_compression_workers", P::Int, true, None, true),
    opt("backup_directory", P::Str, false, Some("%(barman_home)s/%(name)s"), false),
    opt("backup_method", P::BackupMethod, true, Some("rsync"), true),
    opt("backup_options", P::BackupOptions, true, Some(""), true),
    opt("bandwidth_limit", P::Str, true, None, true),
    opt("basebackup_retry_sleep", P::Int, true, Some("30"), true),
    opt("basebackup_retry_times", P::Int, true, Some("0"), true),
    opt("basebackups_directory", P::DirOrCloud, false, Some("%(backup_directory)s/base"), false),
    opt("check_timeout", P::Int, true, Some("30"), true),
    opt("cloud_delete_batch_size", P::Int, true, None, true),
    opt("cloud_staging_directory", P::StagingPath, true, Some("/tmp/barman/cloud-staging"), true),
    opt("cloud_staging_max_size", P::SiSize, true, Some("30Gi"), true),
    opt("cloud_upload_max_archive_size", P::SiSize, false, Some("100Gi"), true),
    opt("cloud_upload_min_chunk_size", P::SiSize, false, None, true),
    opt("cloud_wal_archive_parallel", P::Int, true, Some("0"), true),
    opt("cloud_wal_restore_parallel", P::Int, true, Some("0"), true),
    opt("cluster", P::Str, false, Some("%(name)s"), true),
    opt("compression", P::Compression, true, None, true),
    opt("compression_level", P::CompressionLevel, true, Some("medium"), true),
    opt("conninfo", P::Str, false, None, true),
    opt("custom_compression_filter", P::Str, true, None, true),
    opt("custom_decompression_filter", P::Str, true, None, true),
    opt("custom_compression_magic", P::Str, true, None, true),
    opt("description", P::Str, false, None, true),
    OptionSpec { name: "disabled", kind: P::Bool, inherit: false, default: Some("false"), fixed: true, model: true },
    opt("encryption", P::Encryption, true, Some("none"), true),
    opt("encryption_key_id", P::Str, true, None, true),
    opt("encryption_passphrase_command", P::Str, true, None, true),
    opt("errors_directory", P::Str, false, Some("%(backup_directory)s/errors"), false),
    opt("forward_config_path", P::Bool, true, Some("false"), true),
    opt("gcp_project", P::Str, true, None, true),
    opt("gcp_zone", P::Str, false, None, true),
    opt("immediate_checkpoint", P::Bool, true, Some("false"), true),
    opt("incoming_wals_directory", P::Str, false, Some("%(backup_directory)s/incoming"), false),
    opt("keepalive_interval", P::Int, false, Some("60"), true),
    opt("last_backup_maximum_age", P::Interval, true, None, true),
    opt("last_backup_minimum_size", P::SiSize, true, None, true),
    opt("last_wal_maximum_age", P::Interval, true, None, true),
    opt("combine_mode", P::CombineMode, true, Some("copy"), true),
    opt("local_staging_path", P::StagingPath, true, None, true),
    opt("max_incoming_wals_queue", P::Int, true, None, true),
    opt("minimum_redundancy", P::Str, true, Some("0"), true),
    opt("network_compression", P::Bool, true, Some("false"), true),
    opt("parallel_jobs", P::Int, true, Some("1"), true),
    opt("parallel_jobs_start_batch_period", P::Int, true, Some("1"), true),
    opt("parallel_jobs_start_batch_size", P::Int, true, Some("10"), true),
    opt("path_prefix", P::Str, true, None, true),
    opt("post_archive_retry_script", P::Str, true, None, false),
    opt("post_archive_script", P::Str, true, None, false),
    opt("post_backup_retry_script", P::Str, true, None, false),
    opt("post_backup_script", P::Str, true, None, false),
    opt("post_delete_script", P::Str, true, None, false),
    opt("post_delete_retry_script", P::Str, true, None, false),
    opt("post_recovery_retry_script", P::Str, true, None, false),
    opt("post_recovery_script", P::Str, true, None, false),
    opt("post_wal_delete_script", P::Str, true, None, false),
    opt("post_wal_delete_retry_script", P::Str, true, None, false),
    opt("pre_archive_retry_script", P::Str, true, None, false),
    opt("pre_archive_script", P::Str, true, None, false),
    opt("pre_backup_retry_script", P::Str, true, None, false),
    opt("pre_backup_script", P::Str, true, None, false),
    opt("pre_delete_script", P::Str, true, None, false),
    opt("pre_delete_retry_script", P::Str, true, None, false),
    opt("pre_recovery_retry_script", P::Str, true, None, false),
    opt("pre_recovery_script", P::Str, true, None, false),
    opt("pre_wal_delete_script", P::Str, true, None, false),
    opt("pre_wal_delete_retry_script", P::Str, true, None, false),
    opt("primary_checkpoint_timeout", P::Int, false, Some("0"), true),
    opt("primary_conninfo", P::Str, false, None, true),
    opt("primary_ssh_command", P::Str, true, None, true),
    opt("recovery_options", P::RecoveryOptions, true, Some(""), true),
    opt("recovery_staging_path", P::StagingPath, true, None, true),
    opt("create_slot", P::CreateSlot, true, Some("manual"), true),
    opt("retention_policy", P::Str, true, None, true),
    opt("retention_policy_mode", P::Str, true, Some("auto"), true),
    opt("reuse_backup", P::ReuseBackup, true, None, true),
    opt("slot_name", P::SlotName, true, None, true),
    opt("snapshot_disks", P::SnapshotDisks, false, None, true),
    opt("snapshot_gcp_project", P::Str, true, None, true),
    opt("snapshot_instance", P::Str, false, None, true),
    opt("snapshot_provider", P::Str, true, None, true),
    opt("snapshot_zone", P::Str, false, None, true),
    opt("ssh_command", P::Str, false, None, true),
    opt("staging_path", P::StagingPath, true, None, true),
    opt("staging_location", P::StagingLocation, true, Some("local"), true),
    opt("streaming_archiver", P::Bool, true, Some("off"), true),
    opt("streaming_archiver_batch_size", P::Int, true, Some("0"), true),
    opt("streaming_archiver_name", P::Str, true, Some("barman_receive_wal"), true),
    opt("streaming_backup_name", P::Str, true, Some("barman_streaming_backup"), true),
    opt("streaming_conninfo", P::Str, false, Some("%(conninfo)s"), true),
    opt("streaming_wals_directory", P::Str, false, Some("%(backup_directory)s/streaming"), false),
    opt("tablespace_bandwidth_limit", P::Str, true, None, true),
    opt("wal_conninfo", P::Str, false, None, true),
    opt("wal_retention_policy", P::Str, true, Some("main"), true),
    opt("wal_streaming_conninfo", P::Str, false, None, true),
    opt("wals_directory", P::DirOrCloud, false, Some("%(backup_directory)s/wals"), false),
    opt("warehousepg_dbid", P::Int, true, None, true),
    opt("worm_mode", P::Bool, true, Some("off"), true),
    opt("xlogdb_directory", P::Str, true, Some("%(wals_directory)s"), false),
    // Our extension (not in Barman, which warns about it): WAL retention window.
    opt("wal_retention_window", P::Interval, true, None, true),
];

/// Keys only meaningful in `[barman]` (`Config.validate_global_config`).
pub(crate) const GLOBAL_ONLY_KEYS: &[&str] = &[
    "barman_home",
    "barman_lock_directory",
    "barman_user",
    "lock_directory_cleanup",
    "config_changes_queue",
    "log_file",
    "log_level",
    "configuration_files_directory",
];

/// Families of cloud/encryption options we accept silently even when Barman does not
/// know the exact name (the drop-in does not implement them).
const ACCEPTED_PREFIXES: &[&str] =
    &["backup_compression", "encryption", "combine_mode", "aws_", "azure_", "gcp_", "snapshot_", "cloud_"];

/// One option as the configuration manual (`barman.5`) documents it.
#[derive(Debug, Clone)]
pub struct OptionDoc {
    /// The key.
    pub name: &'static str,
    /// The placeholder for its value (`on|off`, `N`, `INTERVAL`, `SIZE`, `VALUE`).
    pub value: &'static str,
    /// The default (`%(...)s` templates as written), if any.
    pub default: Option<&'static str>,
    /// `[barman]` only (`barman_home`, `log_file`, ...).
    pub global_only: bool,
    /// A server inherits it from `[barman]` when its section does not set it.
    pub inherited: bool,
    /// A model section may set it.
    pub model: bool,
}

/// Every option of the table, the `[barman]`-only keys first, in table order.
pub fn documented_options() -> Vec<OptionDoc> {
    let global = GLOBAL_ONLY_KEYS.iter().map(|name| OptionDoc {
        name,
        value: "VALUE",
        default: None,
        global_only: true,
        inherited: false,
        model: false,
    });
    let server = SERVER_OPTIONS.iter().map(|s| OptionDoc {
        name: s.name,
        value: match s.kind {
            Kind::Bool => "on|off",
            Kind::Int => "N",
            Kind::Interval => "INTERVAL",
            Kind::SiSize => "SIZE",
            _ => "VALUE",
        },
        default: s.default,
        global_only: false,
        inherited: s.inherit,
        model: s.model,
    });
    global.chain(server).collect()
}

/// The table entry for `name`.
pub(crate) fn spec(name: &str) -> Option<&'static OptionSpec> {
    SERVER_OPTIONS.iter().find(|s| s.name == name)
}

fn accepted_prefix(key: &str) -> bool {
    ACCEPTED_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Whether a server section may hold `key` without a warning.
pub(crate) fn server_key_allowed(key: &str) -> bool {
    spec(key).is_some() || accepted_prefix(key)
}

/// Whether `[barman]` may hold `key` without a warning (`log_format` is not allowed: it
/// is read, but missing from Barman's list, so Barman warns about it).
pub(crate) fn global_key_allowed(key: &str) -> bool {
    GLOBAL_ONLY_KEYS.contains(&key) || server_key_allowed(key)
}

/// Whether a model section may hold `key` without a warning.
pub(crate) fn model_key_allowed(key: &str) -> bool {
    key == "model" || spec(key).is_some_and(|s| s.model) || accepted_prefix(key)
}

/// A parsed option value.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// Text (also the normalised name of enumerated options).
    Str(String),
    /// A boolean.
    Bool(bool),
    /// An integer (also an integer `compression_level`).
    Int(i64),
    /// A time interval.
    Interval(TimeDelta),
    /// A byte count.
    Bytes(u64),
    /// A list (`snapshot_disks`).
    List(Vec<String>),
    /// `backup_options`.
    BackupOptions(BTreeSet<BackupOption>),
    /// `recovery_options`.
    RecoveryOptions(BTreeSet<RecoveryOption>),
}

impl OptionValue {
    /// The text, for `Str` values.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            OptionValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether Barman's final `value == "" or value == "None"` test turns it into unset.
    pub(crate) fn is_unset_text(&self) -> bool {
        matches!(self, OptionValue::Str(s) if s.is_empty() || s == "None")
    }
}

impl fmt::Display for OptionValue {
    /// Python's `str()` of the value (what `%(key)s` in a default expands to).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |names: Vec<&str>| names.join(",");
        match self {
            OptionValue::Str(s) => f.write_str(s),
            OptionValue::Bool(true) => f.write_str("True"),
            OptionValue::Bool(false) => f.write_str("False"),
            OptionValue::Int(n) => write!(f, "{n}"),
            OptionValue::Interval(d) => write!(f, "{} seconds", d.num_seconds()),
            OptionValue::Bytes(n) => write!(f, "{n}"),
            OptionValue::List(items) => f.write_str(&items.join(",")),
            OptionValue::BackupOptions(set) => f.write_str(&join(set.iter().map(|o| o.as_str()).collect())),
            OptionValue::RecoveryOptions(set) => f.write_str(&join(set.iter().map(|o| o.as_str()).collect())),
        }
    }
}

/// Runs the parser of `kind` (`BaseConfig.invoke_parser` without the fallback logic).
/// `Ok(None)` is a parser that returned Python `None` (the option counts as unset).
/// `source` is Barman's `[name] section` text, used by the CSV parsers' messages.
pub(crate) fn parse_value(kind: Kind, key: &str, source: &str, text: &str) -> Result<Option<OptionValue>, String> {
    let s = |v: String| Ok(Some(OptionValue::Str(v)));
    match kind {
        P::Str => s(text.to_owned()),
        P::Bool => parse_boolean(text).map(|b| Some(OptionValue::Bool(b))),
        P::Int => parse_python_int(text).map(|n| Some(OptionValue::Int(n))),
        P::Interval => parse_time_interval(text).map(|d| d.map(OptionValue::Interval)),
        P::SiSize => parse_si_suffix(text).map(|n| n.map(OptionValue::Bytes)),
        P::Compression if text.is_empty() => s(String::new()),
        P::Compression => s(text.parse::<Compression>()?.as_str().to_owned()),
        P::CompressionLevel => parse_compression_level(text),
        P::BackupOptions => parse_csv(text, key, source).map(|v| Some(OptionValue::BackupOptions(v))),
        P::RecoveryOptions => parse_csv(text, key, source).map(|v| Some(OptionValue::RecoveryOptions(v))),
        _ => parse_named(kind, text),
    }
}

fn parse_compression_level(text: &str) -> Result<Option<OptionValue>, String> {
    if text.is_empty() {
        return Ok(Some(OptionValue::Str(String::new())));
    }
    Ok(Some(match text.parse::<CompressionLevel>()? {
        CompressionLevel::Int(n) => OptionValue::Int(i64::from(n)),
        level => OptionValue::Str(level.to_string()),
    }))
}

/// The parsers that yield a (normalised) name.
fn parse_named(kind: Kind, text: &str) -> Result<Option<OptionValue>, String> {
    let name = match kind {
        P::ReuseBackup => text.parse::<ReuseBackup>()?.as_str().to_owned(),
        P::BackupCompression => text.parse::<BackupCompression>()?.as_str().to_owned(),
        P::BackupCompressionFormat => text.parse::<BackupCompressionFormat>()?.as_str().to_owned(),
        P::BackupCompressionLocation => text.parse::<BackupCompressionLocation>()?.as_str().to_owned(),
        P::BackupMethod => text.parse::<BackupMethod>()?.as_str().to_owned(),
        P::CreateSlot => text.parse::<CreateSlot>()?.as_str().to_owned(),
        P::StagingLocation => text.parse::<StagingLocation>()?.as_str().to_owned(),
        P::Encryption => return parse_encryption(text),
        P::StagingPath => parse_staging_path(text)?,
        P::SlotName => parse_slot_name(text)?,
        P::CombineMode => parse_combine_mode(text)?,
        P::DirOrCloud => parse_dir_or_cloud(text)?,
        P::AwsEncryption => parse_aws_encryption(text)?,
        P::SnapshotDisks => return parse_snapshot_disks(text),
        _ => text.to_owned(),
    };
    Ok(Some(OptionValue::Str(name)))
}

/// `parse_encryption`: `none` (any case) is Python `None`, so the option stays unset.
fn parse_encryption(text: &str) -> Result<Option<OptionValue>, String> {
    match text.to_lowercase().as_str() {
        "none" => Ok(None),
        "gpg" => Ok(Some(OptionValue::Str("gpg".to_owned()))),
        other => Err(format!("Invalid encryption value '{other}'. Allowed values are: none, gpg.")),
    }
}

fn parse_staging_path(text: &str) -> Result<String, String> {
    if text.starts_with('/') {
        Ok(text.to_owned())
    } else {
        Err(format!("Invalid value : '{text}' (must be an absolute path)"))
    }
}

fn parse_slot_name(text: &str) -> Result<String, String> {
    let lower = text.to_lowercase();
    let valid = !lower.is_empty() && lower.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || c == '_');
    if valid {
        Ok(lower)
    } else {
        Err("Replication slot names may only contain lower case letters, numbers, \
             and the underscore character."
            .to_owned())
    }
}

fn parse_combine_mode(text: &str) -> Result<String, String> {
    let lower = text.to_lowercase();
    if ["copy", "link", "clone", "copy-file-range"].contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(format!("Invalid value: {lower} (options are: copy, link, clone, copy-file-range)"))
    }
}

fn parse_aws_encryption(text: &str) -> Result<String, String> {
    if text == "AES256" || text == "aws:kms" {
        Ok(text.to_owned())
    } else {
        Err(format!("Invalid value '{text}' (must be one in: ['AES256', 'aws:kms'])"))
    }
}

fn parse_snapshot_disks(text: &str) -> Result<Option<OptionValue>, String> {
    let disks: Vec<String> = text.split(',').map(str::to_owned).collect();
    if disks.iter().any(String::is_empty) {
        let items: Vec<String> = disks.iter().map(|d| crate::catalogue::repr_str(d)).collect();
        return Err(format!("[{}]", items.join(", ")));
    }
    Ok(Some(OptionValue::List(disks)))
}

/// `parse_directory_or_cloud_provider`: plain paths pass; a URL must be one of the cloud
/// storage forms `barman.cloud_providers.recognize_cloud_provider` accepts.
fn parse_dir_or_cloud(text: &str) -> Result<String, String> {
    if !text.contains("://") || is_cloud_url(text) {
        Ok(text.to_owned())
    } else {
        Err("The URL is not compatible with any of the supported cloud providers".to_owned())
    }
}

fn is_cloud_url(url: &str) -> bool {
    const GOOGLE_CONSOLE: &str = "https://console.cloud.google.com/storage/browser/";
    let netloc = |u: &str| -> String {
        let after = u.split_once("://").map_or("", |(_, rest)| rest);
        after.split(['/', '?', '#']).next().unwrap_or("").to_owned()
    };
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    if scheme == "s3" {
        return !netloc(url).is_empty();
    }
    if url.starts_with("gs://") || url.starts_with(GOOGLE_CONSOLE) {
        return !netloc(&url.replace(GOOGLE_CONSOLE, "gs://")).is_empty();
    }
    // Azure: the host is in the blob storage domain and a container path follows.
    let host = netloc(url);
    let after_host = url.split_once("://").map_or("", |(_, rest)| &rest[host.len()..]);
    host.ends_with("blob.core.windows.net") && after_host.starts_with('/')
}
