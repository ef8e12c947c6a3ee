//! Geo-redundancy (spec `relay.md` §3): `barman sync-info`, the JSON status a primary (or
//! a cascading passive) gives its passive nodes, and the reverse parsing the passive side
//! needs (`primary.info`).
//!
//! # The answer
//! [`sync_info`] reproduces Barman 3.20.1's `Server.sync_status` byte for byte (Python's
//! `json.dump(..., indent=4)`, ASCII only, no trailing newline): top-level keys
//! `last_position`, `last_name`, `backups`, `wals`, `version`, `config`. The xlog.db is read
//! under its blocking lock; the 24-character probe at `LAST_POSITION` decides whether the
//! scan resumes there or restarts from 0 (§3.1). Two known differences, neither of which a
//! passive can observe:
//! * `backups` is in ascending id order; Barman uses `glob()` order (directory order).
//! * CSV options with several values (`backup_options`, `recovery_options`) are joined in
//!   our fixed order; Barman joins a Python `set`, whose order changes with the hash seed.
//!
//! `version` is our version ([`VERSION`]), the Barman release we are compatible with.
//!
//! # Reading an answer back ([`PrimaryInfo`], [`backup_from_json`])
//! Deliberate decisions for turning a backup object into a [`BackupInfo`]:
//! * `begin_time`/`end_time` come from `begin_time_iso`/`end_time_iso` when present, else
//!   from the `ctime()` text read as local time (older primaries), as Barman does.
//! * `backup_label` arrives as a Python repr string. It is decoded to the real label text,
//!   and decoding goes on while the result is itself a quoted Python string literal: this
//!   undoes the double encoding a Barman passive leaves in its own catalogue, at every
//!   cascade hop. So the label we store is always the real text (Barman would store the
//!   repr of the repr). A value that is not a Python literal is kept as is.
//! * `mode` and every other field are kept as sent (Barman's passive overwrites `mode` with
//!   `passive`; that is for the copying code to decide, not the parser).
//! * `tablespaces` from `[[name, oid, location], ...]` (an empty list means none);
//!   `copy_stats` and `snapshots_info` from JSON objects (key order kept);
//!   `children_backup_ids` from the comma-joined string; `included_files` from a list.
//! * `backup_id`, `begin_time_iso` and `end_time_iso` are consumed; any other unknown key is
//!   ignored (not an error). A missing key leaves the field unset, except `status`
//!   (`EMPTY`) and `xlog_segment_size` (16 MiB), Barman's defaults.
//!
//! The result saved with [`BackupInfo::save`] is a backup.info real Barman loads.
//! Numbers are parsed exactly (WAL `time` values must equal the primary's xlog.db text), so
//! the JSON text goes through a small parser of our own rather than `serde_json`'s
//! best-effort float parsing.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use serde_json::{Map, Number, Value};

use super::backup_id::BackupId;
use super::backup_info::{BackupInfo, BackupStatus, Tablespace};
use super::backups::Catalogue;
use super::error::CatalogueError;
use super::identity::python_json;
use super::layout::ServerLayout;
use super::pyliteral::{repr_str, PyValue};
use super::pytime::{format_py_datetime, parse_py_datetime};
use super::xlogdb::{XlogDb, XlogDbEntry};
use crate::config::ServerConfig;
use crate::wal::WalSegSize;

/// The Barman version sync-info reports: the release this toolkit is compatible with.
pub const VERSION: &str = "3.20.1";

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

/// Arguments of `sync-info SERVER [LAST_WAL [LAST_POSITION]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncInfoRequest {
    /// The last WAL name the passive has (`LAST_WAL`).
    pub last_wal: Option<String>,
    /// The xlog.db byte offset where that WAL's line started (`LAST_POSITION`, ≥ 1).
    pub last_position: Option<u64>,
}

/// Errors Barman prints as `ERROR: <msg>` with exit 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncInfoError {
    /// `LAST_WAL` precedes the first xlog.db line (after a rescan from 0).
    #[error("last_wal '{last_wal}' is older than the first available wal '{first}'")]
    OlderThanFirst {
        /// The requested WAL.
        last_wal: String,
        /// The first line's name.
        first: String,
    },
    /// `LAST_WAL` follows the last xlog.db line (Barman's message has two spaces).
    #[error("last_wal '{last_wal}' is newer than the last available wal  '{last}'")]
    NewerThanLast {
        /// The requested WAL.
        last_wal: String,
        /// The last line's name.
        last: String,
    },
    /// Reading the catalogue failed.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}

/// The full JSON text Barman prints for `sync-info` (indent 4, ASCII only, no trailing
/// newline), built under the xlog.db lock.
pub fn sync_info(layout: &ServerLayout, config: &ServerConfig, req: &SyncInfoRequest) -> Result<String, SyncInfoError> {
    let catalogue = Catalogue::load(layout)?;
    let backups: Vec<&(BackupId, BackupInfo)> = catalogue.available().collect();
    let first_useful_wal = backups.first().and_then(|(_, info)| info.begin_wal.as_ref()).map(ToString::to_string);
    let last_wal = req.last_wal.as_deref();

    let mut db = XlogDb::open(layout)?;
    let position = req.last_position.unwrap_or(0);
    let probe = db.probe(position, 24)?;
    let start = if last_wal.is_some_and(|w| w.as_bytes() == probe.as_slice()) { position } else { 0 };
    let entries = db.entries_from(start)?;

    let mut check_first = start == 0 && last_wal.is_some();
    let mut wals = Vec::new();
    for (_, entry) in &entries {
        let name = entry.name.as_str();
        if let (true, Some(w)) = (check_first, last_wal) {
            if w < name {
                return Err(SyncInfoError::OlderThanFirst { last_wal: w.to_owned(), first: name.to_owned() });
            }
            check_first = false;
        }
        // Python's `if last_wal:`: an empty LAST_WAL filters like none at all.
        match last_wal.filter(|w| !w.is_empty()) {
            Some(w) if name <= w => continue,
            None if first_useful_wal.as_deref().is_some_and(|f| name < f) => continue,
            _ => {}
        }
        wals.push(wal_to_json(entry));
    }
    let (last_position, last_name) = match entries.last() {
        Some((offset, entry)) => {
            if let Some(w) = last_wal.filter(|w| *w > entry.name.as_str()) {
                return Err(SyncInfoError::NewerThanLast { last_wal: w.to_owned(), last: entry.name.to_string() });
            }
            (*offset, entry.name.to_string())
        }
        None => (0, String::new()),
    };

    let mut top = Map::new();
    top.insert("last_position".into(), Value::from(last_position));
    top.insert("last_name".into(), Value::String(last_name));
    let backups: Map<String, Value> =
        backups.iter().map(|(id, info)| (id.as_str().to_owned(), backup_to_json(id, info))).collect();
    top.insert("backups".into(), Value::Object(backups));
    top.insert("wals".into(), Value::Array(wals));
    top.insert("version".into(), Value::String(VERSION.to_owned()));
    top.insert("config".into(), config_to_json(config));
    let text = python_json(&Value::Object(top), Some(4), false);
    // The xlog.db lock is released once the answer is complete, as in Barman.
    drop(db);
    Ok(text)
}

/// One xlog.db entry as sync-info encodes it (`WalFileInfo.to_json`).
pub fn wal_to_json(entry: &XlogDbEntry) -> Value {
    let mut m = Map::new();
    m.insert("compression".into(), opt_str(entry.compression.as_deref()));
    m.insert("encryption".into(), opt_str(entry.encryption.as_deref()));
    m.insert("name".into(), Value::String(entry.name.to_string()));
    m.insert("size".into(), Value::from(entry.size));
    m.insert("time".into(), float(entry.time));
    Value::Object(m)
}

/// One backup as sync-info encodes it (`BackupInfo.to_json`): the backup.info keys in
/// order with their file encodings, except real JSON for `tablespaces`, `copy_stats`,
/// `snapshots_info`, `included_files` and `ctime()` text for the times; then `backup_id`,
/// `begin_time_iso` and `end_time_iso`.
pub fn backup_to_json(id: &BackupId, info: &BackupInfo) -> Value {
    let text = |v: Option<&dyn std::fmt::Display>| v.map_or(Value::Null, |v| Value::String(v.to_string()));
    let int = |v: Option<u64>| v.map_or(Value::Null, Value::from);
    let ctime = |t: Option<&DateTime<FixedOffset>>| {
        t.map_or(Value::Null, |t| Value::String(t.format("%a %b %e %H:%M:%S %Y").to_string()))
    };
    let mut m = Map::new();
    let label = info.backup_label.as_deref().filter(|l| !l.is_empty()).map(repr_str);
    m.insert("backup_label".into(), opt_str(label.as_deref()));
    if let Some(name) = &info.backup_name {
        m.insert("backup_name".into(), Value::String(name.clone()));
    }
    m.insert("begin_offset".into(), int(info.begin_offset));
    m.insert("begin_time".into(), ctime(info.begin_time.as_ref()));
    m.insert("begin_wal".into(), text(info.begin_wal.as_ref().map(|w| w as _)));
    m.insert("begin_xlog".into(), text(info.begin_xlog.as_ref().map(|l| l as _)));
    let children = info.children_backup_ids.as_ref().filter(|ids| !ids.is_empty());
    let children = children.map(|ids| ids.iter().map(BackupId::as_str).collect::<Vec<_>>().join(","));
    m.insert("children_backup_ids".into(), opt_str(children.as_deref()));
    m.insert("cluster_size".into(), int(info.cluster_size));
    m.insert("compression".into(), opt_str(info.compression.as_deref()));
    m.insert("config_file".into(), opt_str(info.config_file.as_deref()));
    let copy_stats = info
        .copy_stats
        .as_ref()
        .map(|pairs| Value::Object(pairs.iter().map(|(k, v)| (k.clone(), py_to_json(v))).collect::<Map<_, _>>()));
    m.insert("copy_stats".into(), copy_stats.unwrap_or(Value::Null));
    m.insert("data_checksums".into(), opt_str(info.data_checksums.as_deref()));
    m.insert("deduplicated_size".into(), int(info.deduplicated_size));
    m.insert("encryption".into(), opt_str(info.encryption.as_deref()));
    m.insert("end_offset".into(), int(info.end_offset));
    m.insert("end_time".into(), ctime(info.end_time.as_ref()));
    m.insert("end_wal".into(), text(info.end_wal.as_ref().map(|w| w as _)));
    m.insert("end_xlog".into(), text(info.end_xlog.as_ref().map(|l| l as _)));
    m.insert("error".into(), opt_str(info.error.as_deref()));
    m.insert("hba_file".into(), opt_str(info.hba_file.as_deref()));
    m.insert("ident_file".into(), opt_str(info.ident_file.as_deref()));
    let included = info.included_files.as_ref().map(|l| Value::Array(l.iter().cloned().map(Value::String).collect()));
    m.insert("included_files".into(), included.unwrap_or(Value::Null));
    m.insert("mode".into(), opt_str(info.mode.as_deref()));
    m.insert("parent_backup_id".into(), opt_str(info.parent_backup_id.as_ref().map(BackupId::as_str)));
    m.insert("pgdata".into(), opt_str(info.pgdata.as_deref()));
    m.insert("server_name".into(), opt_str(info.server_name.as_deref()));
    m.insert("size".into(), int(info.size));
    if let Some(snapshots) = &info.snapshots_info {
        m.insert("snapshots_info".into(), py_to_json(snapshots));
    }
    m.insert("status".into(), Value::String(info.status.as_str().to_owned()));
    m.insert("summarize_wal".into(), opt_str(info.summarize_wal.as_deref()));
    m.insert("systemid".into(), opt_str(info.systemid.as_deref()));
    let tablespaces = info.tablespaces.as_ref().map(|list| {
        let item = |t: &Tablespace| {
            Value::Array(vec![Value::String(t.name.clone()), Value::from(t.oid), Value::String(t.location.clone())])
        };
        Value::Array(list.iter().map(item).collect())
    });
    m.insert("tablespaces".into(), tablespaces.unwrap_or(Value::Null));
    m.insert("timeline".into(), info.timeline.map_or(Value::Null, |t| Value::from(t.get())));
    m.insert("version".into(), info.version.map_or(Value::Null, Value::from));
    m.insert("xlog_segment_size".into(), info.xlog_segment_size.map_or(Value::Null, |s| Value::from(s.bytes())));
    m.insert("backup_id".into(), Value::String(id.as_str().to_owned()));
    let iso = |t: &DateTime<FixedOffset>| Value::String(format_py_datetime(t).replacen(' ', "T", 1));
    if let Some(t) = &info.begin_time {
        m.insert("begin_time_iso".into(), iso(t));
    }
    if let Some(t) = &info.end_time {
        m.insert("end_time_iso".into(), iso(t));
    }
    Value::Object(m)
}

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

fn opt_str(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| Value::String(s.to_owned()))
}

fn float(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A Python literal value as `json.dumps` writes it (tuples become lists).
fn py_to_json(v: &PyValue) -> Value {
    match v {
        PyValue::None => Value::Null,
        PyValue::Bool(b) => Value::Bool(*b),
        PyValue::Int(i) => Value::from(*i),
        PyValue::Float(x) => float(*x),
        PyValue::Str(s) => Value::String(s.clone()),
        PyValue::Tuple(items) | PyValue::List(items) => Value::Array(items.iter().map(py_to_json).collect()),
        PyValue::Dict(pairs) => Value::Object(pairs.iter().map(|(k, v)| (py_key(k), py_to_json(v))).collect()),
    }
}

/// `json.dumps` of a dict key: strings as is, other scalars as their JSON text.
fn py_key(k: &PyValue) -> String {
    match k {
        PyValue::Str(s) => s.clone(),
        PyValue::None => "null".to_owned(),
        PyValue::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// A JSON value back into the Python value `json.loads` gives.
fn json_to_py(v: &Value) -> PyValue {
    match v {
        Value::Null => PyValue::None,
        Value::Bool(b) => PyValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => PyValue::Int(i),
            (None, Some(x)) => PyValue::Float(x),
            (None, None) => PyValue::None,
        },
        Value::String(s) => PyValue::Str(s.clone()),
        Value::Array(items) => PyValue::List(items.iter().map(json_to_py).collect()),
        Value::Object(map) => {
            PyValue::Dict(map.iter().map(|(k, v)| (PyValue::Str(k.clone()), json_to_py(v))).collect())
        }
    }
}

/// A parsed `primary.info` / sync-info answer (the passive side).
#[derive(Clone, Debug, PartialEq)]
pub struct PrimaryInfo {
    /// Offset of the start of the last xlog.db line of the primary.
    pub last_position: u64,
    /// Name on that line (`""` when the primary's xlog.db is empty).
    pub last_name: String,
    /// The primary's available backups, ascending id.
    pub backups: Vec<(BackupId, BackupInfo)>,
    /// The WAL entries sent, in the primary's order.
    pub wals: Vec<XlogDbEntry>,
    /// The primary's Barman version.
    pub version: String,
    /// The primary server's configuration (`config.name`, `compression`, directories…).
    pub config: Map<String, Value>,
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> CatalogueError {
    CatalogueError::InvalidValue {
        path: PathBuf::from("primary.info"),
        key: key.to_owned(),
        value: value.chars().take(200).collect(),
        reason: reason.into(),
    }
}

impl PrimaryInfo {
    /// Parses the JSON text of a sync-info answer.
    pub fn parse(text: &str) -> Result<PrimaryInfo, CatalogueError> {
        let value = parse_json_exact(text)?;
        let Value::Object(mut top) = value else { return Err(invalid("<json>", text, "not a JSON object")) };
        let last_position = match top.get("last_position") {
            Some(v) => v.as_u64().ok_or_else(|| invalid("last_position", &v.to_string(), "not an integer"))?,
            None => 0,
        };
        let last_name = top.get("last_name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut backups = Vec::new();
        if let Some(v) = top.get("backups").filter(|v| !v.is_null()) {
            let map = v.as_object().ok_or_else(|| invalid("backups", &v.to_string(), "not an object"))?;
            for (key, item) in map {
                match item.as_object() {
                    // The object key stands in for a missing `backup_id`.
                    Some(obj) if !obj.contains_key("backup_id") => {
                        let mut obj = obj.clone();
                        obj.insert("backup_id".into(), Value::String(key.clone()));
                        backups.push(backup_from_json(&Value::Object(obj))?);
                    }
                    _ => backups.push(backup_from_json(item)?),
                }
            }
        }
        backups.sort_by(|a, b| a.0.cmp(&b.0));
        let mut wals = Vec::new();
        if let Some(v) = top.get("wals").filter(|v| !v.is_null()) {
            let list = v.as_array().ok_or_else(|| invalid("wals", &v.to_string(), "not an array"))?;
            for item in list {
                wals.push(wal_from_json(item)?);
            }
        }
        let version = top.get("version").and_then(Value::as_str).unwrap_or_default().to_owned();
        let config = match top.remove("config") {
            Some(Value::Object(map)) => map,
            None | Some(Value::Null) => Map::new(),
            Some(other) => return Err(invalid("config", &other.to_string(), "not an object")),
        };
        Ok(PrimaryInfo { last_position, last_name, backups, wals, version, config })
    }

    /// A string value of the primary's config (`None` when absent, null or not a string).
    pub fn config_str(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(Value::as_str)
    }
}

/// One `wals` item back into an xlog.db entry.
pub fn wal_from_json(v: &Value) -> Result<XlogDbEntry, CatalogueError> {
    let field = |k: &str| v.get(k).filter(|x| !x.is_null());
    let name = field("name").and_then(Value::as_str).ok_or_else(|| invalid("name", &v.to_string(), "no WAL name"))?;
    let size = field("size").and_then(Value::as_u64).ok_or_else(|| invalid("size", &v.to_string(), "no size"))?;
    let time = field("time").and_then(Value::as_f64).ok_or_else(|| invalid("time", &v.to_string(), "no time"))?;
    let text = |k: &str| field(k).and_then(Value::as_str).map(str::to_owned);
    Ok(XlogDbEntry {
        name: name.parse().map_err(|_| invalid("name", name, "not a WAL file name"))?,
        size,
        time,
        compression: text("compression"),
        encryption: text("encryption"),
    })
}

/// One `backups` item back into its id and backup.info (rules in the module docs).
pub fn backup_from_json(v: &Value) -> Result<(BackupId, BackupInfo), CatalogueError> {
    let map = v.as_object().ok_or_else(|| invalid("backup", &v.to_string(), "not an object"))?;
    let id_text = map.get("backup_id").and_then(Value::as_str).ok_or_else(|| invalid("backup_id", "", "missing"))?;
    let id = BackupId::new(id_text)?;
    let mut info = BackupInfo { xlog_segment_size: Some(WalSegSize::DEFAULT), ..BackupInfo::default() };
    for (key, value) in map {
        if !value.is_null() {
            set_from_json(&mut info, key, value, map)?;
        }
    }
    Ok((id, info))
}

fn set_from_json(info: &mut BackupInfo, key: &str, v: &Value, map: &Map<String, Value>) -> Result<(), CatalogueError> {
    let bad = |reason: &str| invalid(key, &v.to_string(), reason);
    let s = || v.as_str().map(str::to_owned).ok_or_else(|| bad("not a string"));
    let u = || v.as_u64().ok_or_else(|| bad("not a non-negative integer"));
    let parsed =
        |reason: &str| -> Result<String, CatalogueError> { v.as_str().map(str::to_owned).ok_or_else(|| bad(reason)) };
    match key {
        "backup_label" => info.backup_label = Some(decode_label(&s()?)),
        "backup_name" => info.backup_name = Some(s()?),
        "begin_offset" => info.begin_offset = Some(u()?),
        "begin_time" if !map.contains_key("begin_time_iso") => info.begin_time = Some(time_from(key, v)?),
        "begin_time_iso" => info.begin_time = Some(time_from(key, v)?),
        "end_time" if !map.contains_key("end_time_iso") => info.end_time = Some(time_from(key, v)?),
        "end_time_iso" => info.end_time = Some(time_from(key, v)?),
        "begin_wal" => info.begin_wal = Some(parsed("not a WAL name")?.parse().map_err(|_| bad("not a WAL name"))?),
        "end_wal" => info.end_wal = Some(parsed("not a WAL name")?.parse().map_err(|_| bad("not a WAL name"))?),
        "begin_xlog" => info.begin_xlog = Some(parsed("not an LSN")?.parse().map_err(|_| bad("not an LSN"))?),
        "end_xlog" => info.end_xlog = Some(parsed("not an LSN")?.parse().map_err(|_| bad("not an LSN"))?),
        "children_backup_ids" => {
            let text = s()?;
            let ids = text.split(',').filter(|i| !i.is_empty()).map(BackupId::new).collect::<Result<Vec<_>, _>>()?;
            info.children_backup_ids = (!ids.is_empty()).then_some(ids);
        }
        "cluster_size" => info.cluster_size = Some(u()?),
        "compression" => info.compression = Some(s()?),
        "config_file" => info.config_file = Some(s()?),
        "copy_stats" => {
            let obj = v.as_object().ok_or_else(|| bad("not an object"))?;
            info.copy_stats = Some(obj.iter().map(|(k, x)| (k.clone(), json_to_py(x))).collect());
        }
        "data_checksums" => info.data_checksums = Some(s()?),
        "deduplicated_size" => info.deduplicated_size = Some(u()?),
        "encryption" => info.encryption = Some(s()?),
        "end_offset" => info.end_offset = Some(u()?),
        "error" => info.error = Some(s()?),
        "hba_file" => info.hba_file = Some(s()?),
        "ident_file" => info.ident_file = Some(s()?),
        "included_files" => {
            let list = v.as_array().ok_or_else(|| bad("not a list"))?;
            let files = list.iter().map(|f| f.as_str().map(str::to_owned).ok_or_else(|| bad("not a list of strings")));
            info.included_files = Some(files.collect::<Result<_, _>>()?);
        }
        "mode" => info.mode = Some(s()?),
        "parent_backup_id" => info.parent_backup_id = Some(BackupId::new(&s()?)?),
        "pgdata" => info.pgdata = Some(s()?),
        "server_name" => info.server_name = Some(s()?),
        "size" => info.size = Some(u()?),
        "snapshots_info" => info.snapshots_info = Some(json_to_py(v)),
        "status" => info.status = s()?.parse::<BackupStatus>().map_err(|e| bad(&e))?,
        "summarize_wal" => info.summarize_wal = Some(s()?),
        "systemid" => info.systemid = Some(if let Some(n) = v.as_u64() { n.to_string() } else { s()? }),
        "tablespaces" => {
            let list = tablespaces_from(v).ok_or_else(|| bad("not [[name, oid, location], ...]"))?;
            info.tablespaces = (!list.is_empty()).then_some(list);
        }
        "timeline" => {
            let n = u32::try_from(u()?).map_err(|_| bad("out of range"))?;
            info.timeline = Some(crate::wal::TimelineId::new(n).ok_or_else(|| bad("timeline 0"))?);
        }
        "version" => info.version = Some(u32::try_from(u()?).map_err(|_| bad("out of range"))?),
        "xlog_segment_size" => info.xlog_segment_size = Some(WalSegSize::new(u()?).map_err(|e| bad(&e.to_string()))?),
        // backup_id, the ctime fields superseded by *_iso, and keys we do not know.
        _ => {}
    }
    Ok(())
}

fn tablespaces_from(v: &Value) -> Option<Vec<Tablespace>> {
    let list = v.as_array()?;
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let [name, oid, location] = item.as_array()?.as_slice() else { return None };
        out.push(Tablespace {
            name: name.as_str()?.to_owned(),
            oid: u32::try_from(oid.as_u64()?).ok()?,
            location: location.as_str()?.to_owned(),
        });
    }
    Some(out)
}

/// `*_iso` text, or a `ctime()` / `str(datetime)` text; naive times are local time.
fn time_from(key: &str, v: &Value) -> Result<DateTime<FixedOffset>, CatalogueError> {
    let text = v.as_str().ok_or_else(|| invalid(key, &v.to_string(), "not a string"))?;
    if let Some(t) = parse_py_datetime(text) {
        return Ok(t);
    }
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    NaiveDateTime::parse_from_str(&collapsed, "%a %b %d %H:%M:%S %Y")
        .ok()
        .and_then(|naive| {
            Local
                .from_local_datetime(&naive)
                .earliest()
                .map(|t| t.fixed_offset())
                .or_else(|| Local.offset_from_utc_datetime(&naive).from_local_datetime(&naive).single())
        })
        .ok_or_else(|| invalid(key, text, "not a timestamp"))
}

/// The label text under any number of Python repr layers.
fn decode_label(text: &str) -> String {
    let mut label = text.to_owned();
    while let Ok(PyValue::Str(inner)) = PyValue::parse(&label) {
        label = inner;
    }
    label
}

/// Parses JSON text (Python's `json.loads` dialect: `NaN`/`Infinity` read as null) into
/// `serde_json` values with key order kept and exactly rounded floats (`serde_json`'s
/// default float parsing may be one unit off, which would change WAL times). Re-dumping
/// the result with [`super::python_json`] gives back Barman's text.
pub fn parse_json_exact(text: &str) -> Result<Value, CatalogueError> {
    parse_json(text).map_err(|reason| invalid("<json>", text, reason))
}

fn parse_json(text: &str) -> Result<Value, String> {
    let mut p = JsonParser { s: text.as_bytes(), pos: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(format!("trailing characters at byte {}", p.pos));
    }
    Ok(v)
}

struct JsonParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.pos).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn err(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.pos)
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > 128 {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.s.get(self.pos) {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') if self.eat("true") => Ok(Value::Bool(true)),
            Some(b'f') if self.eat("false") => Ok(Value::Bool(false)),
            Some(b'n') if self.eat("null") => Ok(Value::Null),
            Some(b'N') if self.eat("NaN") => Ok(Value::Null),
            Some(b'I') if self.eat("Infinity") => Ok(Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("expected a value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        self.pos += 1;
        let mut map = Map::new();
        self.ws();
        if self.eat("}") {
            return Ok(Value::Object(map));
        }
        loop {
            self.ws();
            if self.s.get(self.pos) != Some(&b'"') {
                return Err(self.err("expected a key"));
            }
            let key = self.string()?;
            self.ws();
            if !self.eat(":") {
                return Err(self.err("expected ':'"));
            }
            let value = self.value(depth + 1)?;
            map.insert(key, value);
            self.ws();
            if self.eat("}") {
                return Ok(Value::Object(map));
            }
            if !self.eat(",") {
                return Err(self.err("expected ',' or '}'"));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat("]") {
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.ws();
            if self.eat("]") {
                return Ok(Value::Array(items));
            }
            if !self.eat(",") {
                return Err(self.err("expected ',' or ']'"));
            }
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        if self.eat("-Infinity") {
            return Ok(Value::Null);
        }
        while self.s.get(self.pos).is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.err("bad number"))?;
        if !text.contains(['.', 'e', 'E']) {
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Value::from(n));
            }
            if let Ok(n) = text.parse::<u64>() {
                return Ok(Value::from(n));
            }
        }
        let x: f64 = text.parse().map_err(|_| self.err("bad number"))?;
        Ok(float(x))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.get(self.pos..self.pos + 4).ok_or_else(|| self.err("truncated \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.err("bad \\u escape"))?;
        let n = u32::from_str_radix(text, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.pos += 4;
        Ok(n)
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.s[self.pos..];
            let run =
                rest.iter().position(|b| matches!(b, b'"' | b'\\')).ok_or_else(|| self.err("unterminated string"))?;
            out.push_str(std::str::from_utf8(&rest[..run]).map_err(|_| self.err("invalid UTF-8"))?);
            self.pos += run;
            if self.s[self.pos] == b'"' {
                self.pos += 1;
                return Ok(out);
            }
            self.pos += 1;
            let esc = *self.s.get(self.pos).ok_or_else(|| self.err("unterminated escape"))?;
            self.pos += 1;
            match esc {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\x08'),
                b'f' => out.push('\x0c'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let hi = self.hex4()?;
                    let code = if (0xD800..0xDC00).contains(&hi) && self.eat("\\u") {
                        let lo = self.hex4()?;
                        0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                    } else {
                        hi
                    };
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                _ => return Err(self.err("bad escape")),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unreadable_literal, clippy::float_cmp)]
mod tests {
    use super::*;

    #[test]
    fn exact_floats_and_escapes() {
        let v = parse_json(r#"{"t": 1795293407.6400094, "s": "a\u00e9\ud83d\ude00\n", "n": -3, "e": [], "o": {}}"#)
            .expect("parse");
        assert_eq!(v["t"].as_f64(), Some("1795293407.6400094".parse::<f64>().expect("f64")));
        assert_eq!(v["s"], "a\u{e9}\u{1f600}\n");
        assert_eq!(v["n"], -3);
        assert_eq!(python_json(&v, Some(4), false).lines().count(), 7);
        assert!(parse_json("{\"a\": 1} x").is_err());
        assert!(parse_json("[1,").is_err());
    }

    #[test]
    fn label_layers_are_unwrapped() {
        let label = "START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\nSTART TIMELINE: 1\n";
        let once = repr_str(label);
        let twice = repr_str(&once);
        assert_eq!(decode_label(&once), label);
        assert_eq!(decode_label(&twice), label);
        assert_eq!(decode_label(&repr_str(&twice)), label);
        assert_eq!(decode_label("not a literal"), "not a literal");
    }

    #[test]
    fn ctime_only_times_are_local() {
        let t = time_from("begin_time", &Value::String("Sun Nov  1 20:36:47 2026".into())).expect("ctime");
        assert_eq!(t.format("%Y-%m-%d %H:%M:%S").to_string(), "2026-11-01 20:36:47");
        let iso = time_from("x", &Value::String("2026-11-21T20:36:47.564065+01:00".into())).expect("iso");
        assert_eq!(format_py_datetime(&iso), "2026-11-21 20:36:47.564065+01:00");
    }

    #[test]
    fn backup_json_round_trips() {
        let text = "backup_label='START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\\nSTART TIMELINE: 1\\n'\nbackup_name=second one\nbegin_offset=40\nbegin_time=2026-11-01 20:36:40.587807+00:00\nbegin_wal=000000010000000000000003\nbegin_xlog=0/3000028\nchildren_backup_ids=20261122T000000,20261123T000000\ncopy_stats={'copy_time': 1.280923, 'total_time': 1e-05}\nend_time=2026-11-21 20:36:41+02:00\nincluded_files=['/etc/a.conf']\nmode=postgres\nstatus=DONE\nsystemid=7710726391820181241\ntablespaces=[('tbs1', 16384, '/tmp/bt/tbs1')]\ntimeline=1\nversion=150018\n";
        let info = BackupInfo::parse(text, std::path::Path::new("x")).expect("parse");
        let id = BackupId::new("20261121T203640").expect("id");
        let json = backup_to_json(&id, &info);
        assert_eq!(json["begin_time"], "Sun Nov  1 20:36:40 2026");
        assert_eq!(json["end_time_iso"], "2026-11-21T20:36:41+02:00");
        assert_eq!(json["tablespaces"], serde_json::json!([["tbs1", 16384, "/tmp/bt/tbs1"]]));
        let keys: Vec<&String> = json.as_object().expect("object").keys().collect();
        assert_eq!(keys.last().map(|k| k.as_str()), Some("end_time_iso"));
        let (back_id, back) = backup_from_json(&json).expect("back");
        assert_eq!(back_id, id);
        assert_eq!(back, info);
        assert_eq!(back.to_text(), info.to_text());
    }

    const XLOG: &str = "000000010000000000000002\t16\t1795293400.852009\tgzip\tNone\n\
                        000000010000000000000003\t16\t1795293401.5\tgzip\tNone\n\
                        000000010000000000000003.00000028.backup\t25\t1795293402.0\tgzip\tNone\n\
                        000000010000000000000004\t16\t1795293403.1318574\tNone\tNone\n";

    fn setup() -> (tempfile::TempDir, ServerLayout, crate::config::Config) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("barman.conf");
        let home = dir.path().join("home");
        std::fs::write(
            &conf,
            format!("[barman]\nbarman_home = {}\n[pg]\nconninfo = x\nbackup_method = postgres\n", home.display()),
        )
        .expect("conf");
        let config = crate::config::Config::load(&conf).expect("load").config;
        let layout = ServerLayout::default_for(&home, "pg");
        layout.ensure_dirs().expect("dirs");
        std::fs::write(layout.xlogdb_path(), XLOG).expect("xlog.db");
        let info = BackupInfo {
            status: BackupStatus::Done,
            begin_wal: Some("000000010000000000000003".parse().expect("wal")),
            ..BackupInfo::default()
        };
        info.save(&layout, &BackupId::new("20261121T203640").expect("id")).expect("save");
        (dir, layout, config)
    }

    fn ask(
        layout: &ServerLayout,
        config: &crate::config::Config,
        wal: Option<&str>,
        pos: Option<u64>,
    ) -> Result<PrimaryInfo, String> {
        let req = SyncInfoRequest { last_wal: wal.map(str::to_owned), last_position: pos };
        let server = config.server("pg").expect("pg");
        let text = sync_info(layout, server, &req).map_err(|e| e.to_string())?;
        assert!(text.starts_with("{\n    \"last_position\": ") && text.ends_with("\n}"), "{text}");
        Ok(PrimaryInfo::parse(&text).expect("parse"))
    }

    #[test]
    fn sync_info_positions_filters_and_errors() {
        let (_dir, layout, config) = setup();
        let names = |i: &PrimaryInfo| i.wals.iter().map(|w| w.name.to_string()).collect::<Vec<_>>();
        let all = ask(&layout, &config, None, None).expect("all");
        assert_eq!((all.last_position, all.last_name.as_str()), (174, "000000010000000000000004"));
        assert_eq!(names(&all).len(), 3, "older than the first backup's begin_wal skipped");
        assert_eq!(all.backups.len(), 1);
        assert_eq!(all.config_str("name"), Some("pg"));
        assert_eq!(all.wals[2].time, 1795293403.1318574);
        let from = ask(&layout, &config, Some("000000010000000000000003"), Some(56)).expect("probe matches");
        assert_eq!(names(&from), ["000000010000000000000003.00000028.backup", "000000010000000000000004"]);
        let rescan = ask(&layout, &config, Some("000000010000000000000003"), Some(7)).expect("rescan");
        assert_eq!(from, rescan);
        let older = ask(&layout, &config, Some("000000010000000000000001"), None).expect_err("older");
        assert_eq!(
            older,
            "last_wal '000000010000000000000001' is older than the first available wal '000000010000000000000002'"
        );
        let newer = ask(&layout, &config, Some("000000010000000000000009"), Some(174)).expect_err("newer");
        assert_eq!(
            newer,
            "last_wal '000000010000000000000009' is newer than the last available wal  '000000010000000000000004'"
        );
        std::fs::write(layout.xlogdb_path(), "").expect("empty");
        let empty = ask(&layout, &config, Some("000000010000000000000009"), Some(3)).expect("empty xlog.db");
        assert_eq!((empty.last_position, empty.last_name.as_str(), empty.wals.len()), (0, "", 0));
    }

    #[test]
    fn timedelta_words() {
        assert_eq!(human_readable_timedelta(86_400 * 7), "7 days");
        assert_eq!(human_readable_timedelta(90_061), "1 day, 1 hour, 1 minute, 1 second");
        assert_eq!(human_readable_timedelta(0), "less than one second");
    }
}
