//! The `config` object of sync-info: Barman 3.20.1's `ServerConfig.KEYS` with the values
//! its `Server` holds, and `human_readable_timedelta` for intervals.

use serde_json::{Map, Value};

use super::json::opt_str;
use crate::config::ServerConfig;

/// Barman 3.20.1's `ServerConfig.KEYS`, in order (the `config` object of sync-info).
pub const CONFIG_KEYS: [&str; 122] = [
    "active",
    "archiver",
    "archiver_batch_size",
    "autogenerate_manifest",
    "aws_check_object_lock",
    "aws_encryption",
    "aws_read_timeout",
    "aws_await_snapshots_timeout",
    "aws_snapshot_lock_mode",
    "aws_snapshot_lock_duration",
    "aws_snapshot_lock_cool_off_period",
    "aws_snapshot_lock_expiration_date",
    "aws_profile",
    "aws_region",
    "aws_sse_kms_key_id",
    "aws_sse_customer_key",
    "azure_credential",
    "azure_resource_group",
    "azure_subscription_id",
    "backup_compression",
    "backup_compression_format",
    "backup_compression_level",
    "backup_compression_location",
    "backup_compression_workers",
    "backup_directory",
    "backup_method",
    "backup_options",
    "bandwidth_limit",
    "basebackup_retry_sleep",
    "basebackup_retry_times",
    "basebackups_directory",
    "check_timeout",
    "cloud_delete_batch_size",
    "cloud_staging_directory",
    "cloud_staging_max_size",
    "cloud_upload_max_archive_size",
    "cloud_upload_min_chunk_size",
    "cloud_wal_archive_parallel",
    "cloud_wal_restore_parallel",
    "cluster",
    "compression",
    "compression_level",
    "conninfo",
    "custom_compression_filter",
    "custom_decompression_filter",
    "custom_compression_magic",
    "description",
    "disabled",
    "encryption",
    "encryption_key_id",
    "encryption_passphrase_command",
    "errors_directory",
    "forward_config_path",
    "gcp_project",
    "gcp_zone",
    "immediate_checkpoint",
    "incoming_wals_directory",
    "keepalive_interval",
    "last_backup_maximum_age",
    "last_backup_minimum_size",
    "last_wal_maximum_age",
    "combine_mode",
    "local_staging_path",
    "max_incoming_wals_queue",
    "minimum_redundancy",
    "network_compression",
    "parallel_jobs",
    "parallel_jobs_start_batch_period",
    "parallel_jobs_start_batch_size",
    "path_prefix",
    "post_archive_retry_script",
    "post_archive_script",
    "post_backup_retry_script",
    "post_backup_script",
    "post_delete_script",
    "post_delete_retry_script",
    "post_recovery_retry_script",
    "post_recovery_script",
    "post_wal_delete_script",
    "post_wal_delete_retry_script",
    "pre_archive_retry_script",
    "pre_archive_script",
    "pre_backup_retry_script",
    "pre_backup_script",
    "pre_delete_script",
    "pre_delete_retry_script",
    "pre_recovery_retry_script",
    "pre_recovery_script",
    "pre_wal_delete_script",
    "pre_wal_delete_retry_script",
    "primary_checkpoint_timeout",
    "primary_conninfo",
    "primary_ssh_command",
    "recovery_options",
    "recovery_staging_path",
    "create_slot",
    "retention_policy",
    "retention_policy_mode",
    "reuse_backup",
    "slot_name",
    "snapshot_disks",
    "snapshot_gcp_project",
    "snapshot_instance",
    "snapshot_provider",
    "snapshot_zone",
    "ssh_command",
    "staging_path",
    "staging_location",
    "streaming_archiver",
    "streaming_archiver_batch_size",
    "streaming_archiver_name",
    "streaming_backup_name",
    "streaming_conninfo",
    "streaming_wals_directory",
    "tablespace_bandwidth_limit",
    "wal_conninfo",
    "wal_retention_policy",
    "wal_streaming_conninfo",
    "wals_directory",
    "warehousepg_dbid",
    "worm_mode",
    "xlogdb_directory",
];

/// The `config` object: every `ServerConfig.KEYS` option of the server as Barman 3.20.1
/// holds it after building the `Server` (booleans, integers, `null`, CSV options joined,
/// intervals in words, retention policies normalised, `wal_retention_policy` = `MAIN` when a
/// valid retention policy is set), plus `name`.
pub fn config_to_json(config: &ServerConfig) -> Value {
    let mut m: Map<String, Value> =
        CONFIG_KEYS.iter().map(|&key| (key.to_owned(), config_value(config, key))).collect();
    m.insert("name".into(), Value::String(config.name().to_owned()));
    Value::Object(m)
}

fn config_value(c: &ServerConfig, key: &str) -> Value {
    use crate::config::OptionValue;
    let join = |names: Vec<&str>| Value::String(names.join(","));
    match key {
        "active" => Value::Bool(c.active),
        "archiver" => Value::Bool(c.archiver),
        "disabled" => Value::Bool(c.is_disabled()),
        "backup_options" => join(c.backup_options.iter().map(|o| o.as_str()).collect()),
        "recovery_options" => join(c.recovery_options.iter().map(|o| o.as_str()).collect()),
        "bandwidth_limit" => c.bandwidth_limit.map_or(Value::Null, Value::from),
        "tablespace_bandwidth_limit" => tablespace_limits(c),
        "minimum_redundancy" => Value::from(c.minimum_redundancy),
        "retention_policy" => match (&c.retention_policy, &c.retention_policy_invalid) {
            (Some(policy), _) => Value::String(policy.to_string()),
            (None, Some(raw)) => Value::String(raw.clone()),
            (None, None) => Value::Null,
        },
        "retention_policy_mode" => Value::String(c.retention_policy_mode.clone()),
        "wal_retention_policy" if c.retention_policy.is_some() => Value::String("MAIN".to_owned()),
        "wal_retention_policy" => opt_str(c.wal_retention_policy.as_deref()),
        _ => match c.value(key) {
            None => Value::Null,
            Some(OptionValue::Str(s)) => Value::String(s.clone()),
            Some(OptionValue::Bool(b)) => Value::Bool(*b),
            Some(OptionValue::Int(n)) => Value::from(*n),
            Some(OptionValue::Bytes(n)) => Value::from(*n),
            Some(OptionValue::Interval(d)) => Value::String(human_readable_timedelta(d.num_seconds())),
            Some(OptionValue::List(items)) => Value::Array(items.iter().cloned().map(Value::String).collect()),
            Some(other) => Value::String(other.to_string()),
        },
    }
}

/// `Server._init_bandwidth_limits`: `{name: kbps}` in rule order, rules equal to the global
/// limit dropped, `null` when nothing is left.
fn tablespace_limits(c: &ServerConfig) -> Value {
    let Some(raw) = c.value("tablespace_bandwidth_limit").map(ToString::to_string) else { return Value::Null };
    let mut rules = Map::new();
    for rule in raw.split_whitespace() {
        let parsed = rule.split_once(':').and_then(|(k, v)| Some((k, crate::config::parse_python_int(v).ok()?)));
        if let Some((name, kbps)) = parsed.filter(|(_, kbps)| Some(*kbps) != c.bandwidth_limit) {
            rules.insert(name.to_owned(), Value::from(kbps));
        }
    }
    if rules.is_empty() {
        Value::Null
    } else {
        Value::Object(rules)
    }
}

/// Barman's `human_readable_timedelta` for a non-negative number of seconds.
pub fn human_readable_timedelta(secs: i64) -> String {
    let total = secs.unsigned_abs();
    let (days, rem) = (total / 86_400, total % 86_400);
    let parts: Vec<String> = [(days, "day"), (rem / 3600, "hour"), ((rem / 60) % 60, "minute"), (rem % 60, "second")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| if n == 1 { format!("{n} {unit}") } else { format!("{n} {unit}s") })
        .collect();
    let mut human = if total == 0 { "less than one second".to_owned() } else { parts.join(", ") };
    if secs < 0 {
        human.push_str(" ago");
    }
    human
}
