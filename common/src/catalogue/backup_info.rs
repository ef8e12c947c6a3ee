//! backup.info: the `key=value` metadata file of one backup (spec §8), typed.
//!
//! The key set is exactly Barman 3.20.1's. Reading follows `FieldListFile.load`: blank
//! lines and lines starting with `#` are skipped, each line is split on its first `=` and
//! both sides stripped, the literal `None` means unset, and an unknown key is an error (Barman
//! prints "Unsupported field" and exits). Writing follows `FieldListFile.save`: every key in
//! alphabetical order, `None` for unset values, `backup_name` and `snapshots_info` omitted
//! when unset, empty repr-encoded values written as `None` (Barman's `null_repr`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, FixedOffset};

use super::fsio::{create_dir_all_durable, io_err, parent_of, read_optional, write_atomic};
use super::pyliteral::{repr_str, PyValue};
use super::pytime::{format_py_datetime, parse_py_datetime};
use super::{BackupId, CatalogueError, ServerLayout};
use crate::wal::{Lsn, TimelineId, WalFileName, WalSegSize};

/// Every backup.info key of Barman 3.20.1, in the (alphabetical) order they are written.
pub const BACKUP_INFO_KEYS: [&str; 35] = [
    "backup_label",
    "backup_name",
    "begin_offset",
    "begin_time",
    "begin_wal",
    "begin_xlog",
    "children_backup_ids",
    "cluster_size",
    "compression",
    "config_file",
    "copy_stats",
    "data_checksums",
    "deduplicated_size",
    "encryption",
    "end_offset",
    "end_time",
    "end_wal",
    "end_xlog",
    "error",
    "hba_file",
    "ident_file",
    "included_files",
    "mode",
    "parent_backup_id",
    "pgdata",
    "server_name",
    "size",
    "snapshots_info",
    "status",
    "summarize_wal",
    "systemid",
    "tablespaces",
    "timeline",
    "version",
    "xlog_segment_size",
];

/// Keys left out of the file when unset (Barman's `_hide_if_null`).
const HIDDEN_IF_NONE: [&str; 2] = ["backup_name", "snapshots_info"];

/// The `status` of a backup (spec §8.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackupStatus {
    /// Initial state; parent/child lookups treat it as absent.
    #[default]
    Empty,
    /// Start-backup metadata collected, copy in progress.
    Started,
    /// Copy done, not all required WALs archived yet.
    WaitingForWals,
    /// Copy done and all required WALs present.
    Done,
    /// The backup failed.
    Failed,
    /// A passive node is copying it.
    Syncing,
}

impl BackupStatus {
    /// Every status (Barman's `STATUS_ALL`).
    pub const ALL: [BackupStatus; 6] = [
        BackupStatus::Empty,
        BackupStatus::Started,
        BackupStatus::WaitingForWals,
        BackupStatus::Done,
        BackupStatus::Syncing,
        BackupStatus::Failed,
    ];
    /// The statuses of usable backups (Barman's `STATUS_COPY_DONE`, the default filter).
    pub const AVAILABLE: [BackupStatus; 2] = [BackupStatus::WaitingForWals, BackupStatus::Done];

    /// The text written in backup.info.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Empty => "EMPTY",
            BackupStatus::Started => "STARTED",
            BackupStatus::WaitingForWals => "WAITING_FOR_WALS",
            BackupStatus::Done => "DONE",
            BackupStatus::Failed => "FAILED",
            BackupStatus::Syncing => "SYNCING",
        }
    }

    /// True for `WAITING_FOR_WALS` and `DONE`.
    pub fn is_available(self) -> bool {
        BackupStatus::AVAILABLE.contains(&self)
    }
}

impl FromStr for BackupStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackupStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("unknown backup status {s:?}"))
    }
}

impl fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backup's type as Barman derives it from `mode` and `parent_backup_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupType {
    /// `postgres` (or `passive`, ...) without a parent.
    Full,
    /// Has a `parent_backup_id` (PG17 incremental).
    Incremental,
    /// `mode` starts with `rsync`.
    Rsync,
    /// `mode` starts with `snapshot`.
    Snapshot,
}

impl BackupType {
    /// Barman's name: `full`, `incremental`, `rsync` or `snapshot`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Incremental => "incremental",
            BackupType::Rsync => "rsync",
            BackupType::Snapshot => "snapshot",
        }
    }
}

/// One tablespace: the `(name, oid, location)` tuples of the `tablespaces` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tablespace {
    /// Tablespace name.
    pub name: String,
    /// Tablespace OID (also the directory name under `base/<id>/`).
    pub oid: u32,
    /// Location on the PostgreSQL host.
    pub location: String,
}

/// The metadata of one backup. `None` is Python's `None`. The backup id is not part of the
/// file (it comes from the file name).
#[derive(Clone, Debug, PartialEq)]
pub struct BackupInfo {
    /// Text of the backup_label (stored repr-encoded).
    pub backup_label: Option<String>,
    /// `--name` given to `barman backup`; omitted from the file when unset.
    pub backup_name: Option<String>,
    /// Offset of `begin_xlog` within `begin_wal`.
    pub begin_offset: Option<u64>,
    /// Backup start, with the PostgreSQL session's offset.
    pub begin_time: Option<DateTime<FixedOffset>>,
    /// First required segment.
    pub begin_wal: Option<WalFileName>,
    /// Start LSN.
    pub begin_xlog: Option<Lsn>,
    /// Incremental children (stored comma-joined).
    pub children_backup_ids: Option<Vec<BackupId>>,
    /// Database size at start, bytes (3.11+).
    pub cluster_size: Option<u64>,
    /// Base-backup compression of tar-format backups (`gzip`, `lz4`, `zstd`, `none`).
    pub compression: Option<String>,
    /// `postgresql.conf` path on the PostgreSQL host.
    pub config_file: Option<String>,
    /// Copy statistics (stored as a dict repr), in file order.
    pub copy_stats: Option<Vec<(String, PyValue)>>,
    /// `on`/`off` (3.11+).
    pub data_checksums: Option<String>,
    /// Bytes not hard-linked from another backup.
    pub deduplicated_size: Option<u64>,
    /// `gpg` or unset (3.14+).
    pub encryption: Option<String>,
    /// Offset of `end_xlog` within `end_wal`.
    pub end_offset: Option<u64>,
    /// Backup end.
    pub end_time: Option<DateTime<FixedOffset>>,
    /// Last required segment.
    pub end_wal: Option<WalFileName>,
    /// End LSN.
    pub end_xlog: Option<Lsn>,
    /// Failure message.
    pub error: Option<String>,
    /// `pg_hba.conf` path.
    pub hba_file: Option<String>,
    /// `pg_ident.conf` path.
    pub ident_file: Option<String>,
    /// Files included by postgresql.conf (stored as a list repr).
    pub included_files: Option<Vec<String>>,
    /// `postgres`, `rsync-concurrent`, `passive`, ...
    pub mode: Option<String>,
    /// Parent of a PG17 incremental backup (3.11+).
    pub parent_backup_id: Option<BackupId>,
    /// PGDATA on the PostgreSQL host.
    pub pgdata: Option<String>,
    /// Server section name.
    pub server_name: Option<String>,
    /// Bytes under `base/<id>`.
    pub size: Option<u64>,
    /// Cloud snapshot metadata (a dict repr); omitted from the file when unset.
    pub snapshots_info: Option<PyValue>,
    /// Status, default `EMPTY`.
    pub status: BackupStatus,
    /// `on`/`off`, unset before PG17 (3.11+).
    pub summarize_wal: Option<String>,
    /// Database system identifier, decimal text.
    pub systemid: Option<String>,
    /// Tablespaces (stored as a list of tuples repr).
    pub tablespaces: Option<Vec<Tablespace>>,
    /// Timeline at backup start.
    pub timeline: Option<TimelineId>,
    /// `server_version_num` (`150018`).
    pub version: Option<u32>,
    /// WAL segment size, default 16 MiB.
    pub xlog_segment_size: Option<WalSegSize>,
}

impl Default for BackupInfo {
    fn default() -> Self {
        BackupInfo {
            backup_label: None,
            backup_name: None,
            begin_offset: None,
            begin_time: None,
            begin_wal: None,
            begin_xlog: None,
            children_backup_ids: None,
            cluster_size: None,
            compression: None,
            config_file: None,
            copy_stats: None,
            data_checksums: None,
            deduplicated_size: None,
            encryption: None,
            end_offset: None,
            end_time: None,
            end_wal: None,
            end_xlog: None,
            error: None,
            hba_file: None,
            ident_file: None,
            included_files: None,
            mode: None,
            parent_backup_id: None,
            pgdata: None,
            server_name: None,
            size: None,
            snapshots_info: None,
            status: BackupStatus::Empty,
            summarize_wal: None,
            systemid: None,
            tablespaces: None,
            timeline: None,
            version: None,
            xlog_segment_size: Some(WalSegSize::DEFAULT),
        }
    }
}

enum FieldError {
    Unknown,
    Invalid(String),
}

impl BackupInfo {
    /// Parses the content of a backup.info; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<BackupInfo, CatalogueError> {
        let mut info = BackupInfo::default();
        for line in text.split_inclusive('\n') {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(CatalogueError::InvalidLine { path: path.to_path_buf(), line: line.trim().to_owned() });
            };
            let (key, value) = (key.trim(), value.trim());
            info.set(key, (value != "None").then_some(value)).map_err(|e| field_error(e, path, key, value))?;
        }
        Ok(info)
    }

    /// Reads a backup.info file.
    pub fn read(path: &Path) -> Result<BackupInfo, CatalogueError> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| CatalogueError::InvalidLine { path: path.to_path_buf(), line: "<not UTF-8>".to_owned() })?;
        BackupInfo::parse(&text, path)
    }

    /// The path Barman reads for `id`: `meta/<id>-backup.info` if it exists or if the legacy
    /// `base/<id>/backup.info` does not, else the legacy one.
    pub fn locate(layout: &ServerLayout, id: &BackupId) -> PathBuf {
        let path = layout.backup_info_path(id);
        let old = layout.legacy_backup_info_path(id);
        if path.exists() || !old.exists() {
            path
        } else {
            old
        }
    }

    /// Loads the backup.info of `id` (see [`BackupInfo::locate`]); `None` if there is none.
    pub fn load(layout: &ServerLayout, id: &BackupId) -> Result<Option<BackupInfo>, CatalogueError> {
        let path = BackupInfo::locate(layout, id);
        let Some(bytes) = read_optional(&path)? else { return Ok(None) };
        let text = String::from_utf8(bytes)
            .map_err(|_| CatalogueError::InvalidLine { path: path.clone(), line: "<not UTF-8>".to_owned() })?;
        BackupInfo::parse(&text, &path).map(Some)
    }

    /// Saves to `meta/<id>-backup.info` (always the new location), durably.
    pub fn save(&self, layout: &ServerLayout, id: &BackupId) -> Result<(), CatalogueError> {
        self.write(&layout.backup_info_path(id))
    }

    /// Writes the file: a temp file in the same directory, fsync, rename, fsync the
    /// directory (Barman does not fsync the data; we do). Creates the directory if missing.
    pub fn write(&self, path: &Path) -> Result<(), CatalogueError> {
        create_dir_all_durable(parent_of(path))?;
        write_atomic(path, self.to_text().as_bytes())
    }

    /// The file content, byte-identical to what Barman 3.20.1 writes for the same values.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for key in BACKUP_INFO_KEYS {
            let value = self.field_text(key);
            if value.is_none() && HIDDEN_IF_NONE.contains(&key) {
                continue;
            }
            out.push_str(key);
            out.push('=');
            out.push_str(value.as_deref().unwrap_or("None"));
            out.push('\n');
        }
        out
    }

    /// Barman's `backup_type`.
    pub fn backup_type(&self) -> BackupType {
        let mode = self.mode.as_deref().unwrap_or("");
        if mode.starts_with("snapshot") {
            BackupType::Snapshot
        } else if mode.starts_with("rsync") {
            BackupType::Rsync
        } else if self.parent_backup_id.is_some() {
            BackupType::Incremental
        } else {
            BackupType::Full
        }
    }

    /// Barman's `is_full`: neither snapshot nor incremental (rsync backups count as full).
    pub fn is_full(&self) -> bool {
        !matches!(self.backup_type(), BackupType::Snapshot | BackupType::Incremental)
    }

    /// A numeric entry of `copy_stats` (`copy_time`, `total_time`, ...).
    pub fn copy_stat(&self, key: &str) -> Option<f64> {
        self.copy_stats.as_ref()?.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_f64())
    }

    /// The system identifier as a number.
    pub fn systemid_u64(&self) -> Option<u64> {
        self.systemid.as_deref()?.parse().ok()
    }

    fn set(&mut self, key: &str, v: Option<&str>) -> Result<(), FieldError> {
        match key {
            "backup_label" => self.backup_label = opt(v, parse_repr_str)?,
            "backup_name" => self.backup_name = v.map(str::to_owned),
            "begin_offset" => self.begin_offset = opt(v, parse_int)?,
            "begin_time" => self.begin_time = opt(v, parse_time)?,
            "begin_wal" => self.begin_wal = opt(v, parse_display)?,
            "begin_xlog" => self.begin_xlog = opt(v, parse_display)?,
            "children_backup_ids" => self.children_backup_ids = opt(v, parse_ids)?,
            "cluster_size" => self.cluster_size = opt(v, parse_int)?,
            "compression" => self.compression = v.map(str::to_owned),
            "config_file" => self.config_file = v.map(str::to_owned),
            "copy_stats" => self.copy_stats = opt(v, parse_str_dict)?,
            "data_checksums" => self.data_checksums = v.map(str::to_owned),
            "deduplicated_size" => self.deduplicated_size = opt(v, parse_int)?,
            "encryption" => self.encryption = v.map(str::to_owned),
            "end_offset" => self.end_offset = opt(v, parse_int)?,
            "end_time" => self.end_time = opt(v, parse_time)?,
            "end_wal" => self.end_wal = opt(v, parse_display)?,
            "end_xlog" => self.end_xlog = opt(v, parse_display)?,
            "error" => self.error = v.map(str::to_owned),
            _ => return self.set_second_half(key, v),
        }
        Ok(())
    }

    fn set_second_half(&mut self, key: &str, v: Option<&str>) -> Result<(), FieldError> {
        match key {
            "hba_file" => self.hba_file = v.map(str::to_owned),
            "ident_file" => self.ident_file = v.map(str::to_owned),
            "included_files" => self.included_files = opt(v, parse_str_list)?,
            "mode" => self.mode = v.map(str::to_owned),
            "parent_backup_id" => self.parent_backup_id = opt(v, |s| BackupId::new(s).map_err(|e| e.to_string()))?,
            "pgdata" => self.pgdata = v.map(str::to_owned),
            "server_name" => self.server_name = v.map(str::to_owned),
            "size" => self.size = opt(v, parse_int)?,
            "snapshots_info" => self.snapshots_info = opt(v, parse_dict)?,
            "status" => self.status = parse_status(v)?,
            "summarize_wal" => self.summarize_wal = v.map(str::to_owned),
            "systemid" => self.systemid = v.map(str::to_owned),
            "tablespaces" => self.tablespaces = opt(v, parse_tablespaces)?.flatten(),
            "timeline" => self.timeline = opt(v, parse_timeline)?,
            "version" => self.version = opt(v, parse_int)?,
            "xlog_segment_size" => self.xlog_segment_size = opt(v, parse_seg_size)?,
            _ => return Err(FieldError::Unknown),
        }
        Ok(())
    }

    /// The value text of `key` as Barman's dump functions produce it, `None` for `None`.
    fn field_text(&self, key: &str) -> Option<String> {
        match key {
            "backup_label" => self.backup_label.as_deref().filter(|s| !s.is_empty()).map(repr_str),
            "backup_name" => self.backup_name.clone(),
            "begin_offset" => text(self.begin_offset.as_ref()),
            "begin_time" => self.begin_time.as_ref().map(format_py_datetime),
            "begin_wal" => text(self.begin_wal.as_ref()),
            "begin_xlog" => text(self.begin_xlog.as_ref()),
            "children_backup_ids" => {
                self.children_backup_ids.as_ref().filter(|ids| !ids.is_empty()).map(|ids| join_ids(ids))
            }
            "cluster_size" => text(self.cluster_size.as_ref()),
            "compression" => self.compression.clone(),
            "config_file" => self.config_file.clone(),
            "copy_stats" => self.copy_stats.as_ref().filter(|d| !d.is_empty()).map(|d| dict_repr(d)),
            "data_checksums" => self.data_checksums.clone(),
            "deduplicated_size" => text(self.deduplicated_size.as_ref()),
            "encryption" => self.encryption.clone(),
            "end_offset" => text(self.end_offset.as_ref()),
            "end_time" => self.end_time.as_ref().map(format_py_datetime),
            "end_wal" => text(self.end_wal.as_ref()),
            "end_xlog" => text(self.end_xlog.as_ref()),
            "error" => self.error.clone(),
            _ => self.field_text_second_half(key),
        }
    }

    fn field_text_second_half(&self, key: &str) -> Option<String> {
        match key {
            "hba_file" => self.hba_file.clone(),
            "ident_file" => self.ident_file.clone(),
            "included_files" => self.included_files.as_ref().filter(|l| !l.is_empty()).map(|l| list_repr(l)),
            "mode" => self.mode.clone(),
            "parent_backup_id" => text(self.parent_backup_id.as_ref()),
            "pgdata" => self.pgdata.clone(),
            "server_name" => self.server_name.clone(),
            "size" => text(self.size.as_ref()),
            "snapshots_info" => text(self.snapshots_info.as_ref()),
            "status" => Some(self.status.as_str().to_owned()),
            "summarize_wal" => self.summarize_wal.clone(),
            "systemid" => self.systemid.clone(),
            "tablespaces" => self.tablespaces.as_ref().filter(|t| !t.is_empty()).map(|t| tablespaces_repr(t)),
            "timeline" => text(self.timeline.as_ref()),
            "version" => text(self.version.as_ref()),
            "xlog_segment_size" => self.xlog_segment_size.map(|s| s.bytes().to_string()),
            _ => None,
        }
    }
}

fn field_error(e: FieldError, path: &Path, key: &str, value: &str) -> CatalogueError {
    let path = path.to_path_buf();
    match e {
        FieldError::Unknown => CatalogueError::UnsupportedField { path, key: key.to_owned() },
        FieldError::Invalid(reason) => {
            CatalogueError::InvalidValue { path, key: key.to_owned(), value: value.to_owned(), reason }
        }
    }
}

fn parse_status(v: Option<&str>) -> Result<BackupStatus, FieldError> {
    let text = v.ok_or_else(|| FieldError::Invalid("status cannot be None".into()))?;
    text.parse().map_err(FieldError::Invalid)
}

fn opt<T>(v: Option<&str>, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<Option<T>, FieldError> {
    v.map(parse).transpose().map_err(FieldError::Invalid)
}

fn text<T: fmt::Display>(v: Option<&T>) -> Option<String> {
    v.map(ToString::to_string)
}

/// Python's `int()`: optional sign, digits, `_` separators.
fn parse_int<T: FromStr>(s: &str) -> Result<T, String> {
    let clean: String = s.strip_prefix('+').unwrap_or(s).chars().filter(|&c| c != '_').collect();
    clean.parse().map_err(|_| format!("not an integer: {s:?}"))
}

fn parse_display<T: FromStr>(s: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    s.parse().map_err(|e: T::Err| e.to_string())
}

fn parse_time(s: &str) -> Result<DateTime<FixedOffset>, String> {
    parse_py_datetime(s).ok_or_else(|| format!("not a timestamp: {s:?}"))
}

fn parse_timeline(s: &str) -> Result<TimelineId, String> {
    TimelineId::new(parse_int(s)?).ok_or_else(|| "timeline 0 does not exist".to_owned())
}

fn parse_seg_size(s: &str) -> Result<WalSegSize, String> {
    WalSegSize::new(parse_int(s)?).map_err(|e| e.to_string())
}

fn parse_ids(s: &str) -> Result<Vec<BackupId>, String> {
    s.split(',').map(|id| BackupId::new(id).map_err(|e| e.to_string())).collect()
}

fn join_ids(ids: &[BackupId]) -> String {
    ids.iter().map(BackupId::as_str).collect::<Vec<_>>().join(",")
}

fn parse_literal(s: &str) -> Result<PyValue, String> {
    PyValue::parse(s).map_err(|e| e.to_string())
}

fn parse_repr_str(s: &str) -> Result<String, String> {
    match parse_literal(s)? {
        PyValue::Str(text) => Ok(text),
        other => Err(format!("expected a string literal, found {other}")),
    }
}

fn parse_dict(s: &str) -> Result<PyValue, String> {
    match parse_literal(s)? {
        dict @ PyValue::Dict(_) => Ok(dict),
        other => Err(format!("expected a dict literal, found {other}")),
    }
}

fn parse_str_dict(s: &str) -> Result<Vec<(String, PyValue)>, String> {
    let PyValue::Dict(pairs) = parse_literal(s)? else { return Err(format!("expected a dict literal: {s}")) };
    pairs
        .into_iter()
        .map(|(k, v)| k.as_str().map(|k| (k.to_owned(), v.clone())).ok_or_else(|| format!("non-string key {k}")))
        .collect()
}

fn dict_repr(pairs: &[(String, PyValue)]) -> String {
    PyValue::Dict(pairs.iter().map(|(k, v)| (PyValue::Str(k.clone()), v.clone())).collect()).to_string()
}

fn parse_str_list(s: &str) -> Result<Vec<String>, String> {
    let value = parse_literal(s)?;
    let items = value.as_sequence().ok_or_else(|| format!("expected a list literal, found {value}"))?;
    items.iter().map(|i| i.as_str().map(str::to_owned).ok_or_else(|| format!("expected strings, found {i}"))).collect()
}

fn list_repr(items: &[String]) -> String {
    PyValue::List(items.iter().cloned().map(PyValue::Str).collect()).to_string()
}

/// `load_tablespace_list`: a list of `(name, oid, location)`; an empty list means unset.
fn parse_tablespaces(s: &str) -> Result<Option<Vec<Tablespace>>, String> {
    let value = parse_literal(s)?;
    let items = value.as_sequence().ok_or_else(|| format!("expected a list literal, found {value}"))?;
    let list = items.iter().map(parse_tablespace).collect::<Result<Vec<_>, _>>()?;
    Ok((!list.is_empty()).then_some(list))
}

fn parse_tablespace(item: &PyValue) -> Result<Tablespace, String> {
    let bad = || format!("expected (name, oid, location), found {item}");
    let [name, PyValue::Int(oid), location] = item.as_sequence().ok_or_else(bad)? else { return Err(bad()) };
    let oid = u32::try_from(*oid).map_err(|_| bad())?;
    let (name, location) = (name.as_str().ok_or_else(bad)?, location.as_str().ok_or_else(bad)?);
    Ok(Tablespace { name: name.to_owned(), oid, location: location.to_owned() })
}

fn tablespaces_repr(list: &[Tablespace]) -> String {
    let tuple = |t: &Tablespace| {
        PyValue::Tuple(vec![
            PyValue::Str(t.name.clone()),
            PyValue::Int(i64::from(t.oid)),
            PyValue::Str(t.location.clone()),
        ])
    };
    PyValue::List(list.iter().map(tuple).collect()).to_string()
}

#[cfg(test)]
#[allow(clippy::unreadable_literal)] // values copied verbatim from the files
mod tests {
    use super::*;

    /// The example of spec §8.3, as written by Barman 3.20.1.
    const SPEC_EXAMPLE: &str = r"backup_label='START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\nCHECKPOINT LOCATION: 0/3000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-21 20:36:40 UTC\nLABEL: pg_basebackup base backup\nSTART TIMELINE: 1\n'
begin_offset=40
begin_time=2026-11-21 20:36:40.587807+00:00
begin_wal=000000010000000000000003
begin_xlog=0/3000028
children_backup_ids=None
cluster_size=23203529
compression=None
config_file=/tmp/bt/pgdata/postgresql.conf
copy_stats={'copy_time': 1.280923, 'total_time': 1.280923}
data_checksums=on
deduplicated_size=23195476
encryption=None
end_offset=0
end_time=2026-11-21 20:36:41.911397+00:00
end_wal=000000010000000000000003
end_xlog=0/4000000
error=None
hba_file=/tmp/bt/pgdata/pg_hba.conf
ident_file=/tmp/bt/pgdata/pg_ident.conf
included_files=None
mode=postgres
parent_backup_id=None
pgdata=/tmp/bt/pgdata
server_name=pg
size=23195476
status=DONE
summarize_wal=None
systemid=7710726391820181241
tablespaces=[('tbs1', 16384, '/tmp/bt/tbs1')]
timeline=1
version=150018
xlog_segment_size=16777216
";

    const REAL_FIRST: &str = include_str!("../../tests/fixtures/barman-3.20.1/20261121T220257-backup.info");
    const REAL_NAMED: &str = include_str!("../../tests/fixtures/barman-3.20.1/20261121T220301-backup.info");

    fn parse(text: &str) -> BackupInfo {
        BackupInfo::parse(text, Path::new("test-backup.info")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn time(s: &str) -> Option<DateTime<FixedOffset>> {
        DateTime::parse_from_rfc3339(s).ok()
    }

    #[test]
    fn keys_are_sorted() {
        let mut sorted = BACKUP_INFO_KEYS;
        sorted.sort_unstable();
        assert_eq!(sorted, BACKUP_INFO_KEYS);
    }

    #[test]
    fn spec_example_parses_field_by_field() {
        let i = parse(SPEC_EXAMPLE);
        let label = i.backup_label.as_deref().expect("label");
        assert!(label.starts_with("START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\nCHECKPOINT"));
        assert!(label.ends_with("START TIMELINE: 1\n"));
        assert_eq!(i.backup_name, None);
        assert_eq!(i.begin_offset, Some(40));
        assert_eq!(i.begin_time, time("2026-11-21T20:36:40.587807+00:00"));
        assert_eq!(i.begin_wal.as_ref().map(WalFileName::as_str), Some("000000010000000000000003"));
        assert_eq!(i.begin_xlog, Some("0/3000028".parse().expect("lsn")));
        assert_eq!(i.children_backup_ids, None);
        assert_eq!(i.cluster_size, Some(23_203_529));
        assert_eq!(i.compression, None);
        assert_eq!(i.config_file.as_deref(), Some("/tmp/bt/pgdata/postgresql.conf"));
        assert_eq!(i.copy_stat("copy_time"), Some(1.280923));
        assert_eq!(i.copy_stat("total_time"), Some(1.280923));
        assert_eq!(i.data_checksums.as_deref(), Some("on"));
        assert_eq!(i.deduplicated_size, Some(23_195_476));
        assert_eq!(i.encryption, None);
        assert_eq!(i.end_offset, Some(0));
        assert_eq!(i.end_time, time("2026-11-21T20:36:41.911397+00:00"));
        assert_eq!(i.end_wal.as_ref().map(WalFileName::as_str), Some("000000010000000000000003"));
        assert_eq!(i.end_xlog, Some("0/4000000".parse().expect("lsn")));
        assert_eq!(i.error, None);
        assert_eq!(i.hba_file.as_deref(), Some("/tmp/bt/pgdata/pg_hba.conf"));
        assert_eq!(i.ident_file.as_deref(), Some("/tmp/bt/pgdata/pg_ident.conf"));
        assert_eq!(i.included_files, None);
        assert_eq!(i.mode.as_deref(), Some("postgres"));
        assert_eq!(i.parent_backup_id, None);
        assert_eq!(i.pgdata.as_deref(), Some("/tmp/bt/pgdata"));
        assert_eq!(i.server_name.as_deref(), Some("pg"));
        assert_eq!(i.size, Some(23_195_476));
        assert_eq!(i.snapshots_info, None);
        assert_eq!(i.status, BackupStatus::Done);
        assert_eq!(i.summarize_wal, None);
        assert_eq!(i.systemid.as_deref(), Some("7710726391820181241"));
        assert_eq!(i.systemid_u64(), Some(7_710_726_391_820_181_241));
        let tbs = Tablespace { name: "tbs1".into(), oid: 16384, location: "/tmp/bt/tbs1".into() };
        assert_eq!(i.tablespaces, Some(vec![tbs]));
        assert_eq!(i.timeline, TimelineId::new(1));
        assert_eq!(i.version, Some(150_018));
        assert_eq!(i.xlog_segment_size, Some(WalSegSize::DEFAULT));
        assert_eq!(i.backup_type(), BackupType::Full);
    }

    #[test]
    fn spec_example_writes_back_byte_identical() {
        assert_eq!(parse(SPEC_EXAMPLE).to_text(), SPEC_EXAMPLE);
    }

    #[test]
    fn real_barman_files_round_trip() {
        let first = parse(REAL_FIRST);
        assert_eq!(first.to_text(), REAL_FIRST);
        assert_eq!(first.status, BackupStatus::Done);
        assert_eq!(first.begin_time, time("2026-11-21T22:02:57.471349+00:00"));
        assert_eq!(first.end_time, time("2026-11-21T22:02:58.618700+00:00"));
        assert_eq!(first.copy_stat("copy_time"), Some(1.141229));
        assert_eq!(first.data_checksums.as_deref(), Some("off"));
        assert_eq!(
            first.tablespaces.as_ref().map(|t| (t[0].oid, t[0].location.as_str())),
            Some((16384, "/tmp/bfx/tbs1"))
        );
        assert_eq!(first.backup_name, None);
        let named = parse(REAL_NAMED);
        assert_eq!(named.to_text(), REAL_NAMED);
        assert_eq!(named.backup_name.as_deref(), Some("second one"));
        assert_eq!(named.end_offset, Some(96));
        assert_eq!(named.end_wal.as_ref().map(WalFileName::as_str), Some("000000010000000000000006"));
        assert_eq!(named.end_xlog, Some("0/6000060".parse().expect("lsn")));
    }

    #[test]
    fn unknown_key_is_refused() {
        let text = format!("{SPEC_EXAMPLE}shiny_new_field=1\n");
        let err = BackupInfo::parse(&text, Path::new("/x/meta/1-backup.info")).expect_err("unknown key");
        assert!(matches!(err, CatalogueError::UnsupportedField { ref key, .. } if key == "shiny_new_field"), "{err}");
        assert!(err.to_string().contains("Unsupported field 'shiny_new_field'"), "{err}");
    }

    #[test]
    fn reader_quirks_follow_barman() {
        let text = "# comment\n\n   \nstatus = FAILED \nerror=failure backup (boom = bad)\nmode=rsync-concurrent\n";
        let i = parse(text);
        assert_eq!(i.status, BackupStatus::Failed);
        assert_eq!(i.error.as_deref(), Some("failure backup (boom = bad)"));
        assert_eq!(i.backup_type(), BackupType::Rsync);
        assert!(i.is_full());
        assert_eq!(i.xlog_segment_size, Some(WalSegSize::DEFAULT), "default when absent");
        assert!(matches!(
            BackupInfo::parse("no equals sign\n", Path::new("f")),
            Err(CatalogueError::InvalidLine { .. })
        ));
        assert!(matches!(BackupInfo::parse("size=lots\n", Path::new("f")), Err(CatalogueError::InvalidValue { .. })));
        assert!(matches!(
            BackupInfo::parse("status=BOGUS\n", Path::new("f")),
            Err(CatalogueError::InvalidValue { .. })
        ));
    }

    #[test]
    fn empty_repr_values_are_written_as_none() {
        let info = BackupInfo {
            backup_label: Some(String::new()),
            copy_stats: Some(vec![]),
            included_files: Some(vec![]),
            tablespaces: Some(vec![]),
            children_backup_ids: Some(vec![]),
            ..BackupInfo::default()
        };
        let text = info.to_text();
        for key in ["backup_label", "copy_stats", "included_files", "tablespaces", "children_backup_ids"] {
            assert!(text.contains(&format!("\n{key}=None\n")) || text.starts_with(&format!("{key}=None\n")), "{key}");
        }
        assert!(!text.contains("backup_name") && !text.contains("snapshots_info"));
        assert!(text.contains("status=EMPTY\n") && text.ends_with("xlog_segment_size=16777216\n"));
    }

    #[test]
    fn incremental_and_snapshot_fields_round_trip() {
        let text = SPEC_EXAMPLE
            .replace("children_backup_ids=None", "children_backup_ids=20261122T000000,20261123T000000")
            .replace("parent_backup_id=None", "parent_backup_id=20261120T000000")
            .replace("included_files=None", "included_files=['/etc/pg/a.conf', \"/etc/pg/it's.conf\"]")
            .replace("copy_stats={'copy_time': 1.280923, 'total_time': 1.280923}", "copy_stats={'total_time': 12.5, 'number_of_workers': 2, 'analysis_time': 0.25, 'analysis_time_per_item': {'data': 0.25}, 'copy_time': 11.0, 'copy_time_per_item': {'data': 10.0, 'tbs1': 1e-05}}")
            .replace("status=DONE", "snapshots_info={'provider': 'gcp', 'provider_info': {'project': 'p'}, 'snapshots': [{'mount': {'mount_options': 'rw', 'mount_point': '/opt/disk0'}}]}\nstatus=DONE")
            .replace("backup_label='", "backup_name=my backup\nbackup_label='")
            .replace("begin_time=2026-11-21 20:36:40.587807+00:00", "begin_time=2026-11-21 21:36:40+01:00");
        // backup_name must sort after backup_label.
        let text = text.replacen("backup_name=my backup\n", "", 1).replacen(
            "begin_offset=",
            "backup_name=my backup\nbegin_offset=",
            1,
        );
        let i = parse(&text);
        assert_eq!(i.backup_type(), BackupType::Incremental);
        assert!(!i.is_full());
        assert_eq!(i.children_backup_ids.as_ref().map(Vec::len), Some(2));
        assert_eq!(i.included_files.as_ref().map(|f| f[1].as_str()), Some("/etc/pg/it's.conf"));
        assert_eq!(i.copy_stat("number_of_workers"), Some(2.0));
        assert_eq!(i.to_text(), text);
    }

    #[test]
    fn write_is_atomic_and_read_back() {
        let home = tempfile::tempdir().expect("tempdir");
        let layout = ServerLayout::default_for(home.path(), "pg");
        let id = BackupId::new("20261121T203640").expect("id");
        let info = parse(SPEC_EXAMPLE);
        info.save(&layout, &id).expect("save creates meta/");
        let path = layout.backup_info_path(&id);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), SPEC_EXAMPLE);
        assert_eq!(std::fs::read_dir(layout.meta_dir()).expect("ls").count(), 1, "no temp file left");
        assert_eq!(BackupInfo::load(&layout, &id).expect("load"), Some(info));
        assert_eq!(BackupInfo::load(&layout, &BackupId::new("20000101T000000").expect("id")).expect("load"), None);
    }

    #[test]
    fn legacy_location_is_read_when_meta_is_missing() {
        let home = tempfile::tempdir().expect("tempdir");
        let layout = ServerLayout::default_for(home.path(), "pg");
        let id = BackupId::new("20261121T203640").expect("id");
        let legacy = layout.legacy_backup_info_path(&id);
        std::fs::create_dir_all(legacy.parent().expect("parent")).expect("mkdir");
        std::fs::write(&legacy, "status=FAILED\n").expect("write");
        assert_eq!(BackupInfo::locate(&layout, &id), legacy);
        assert_eq!(BackupInfo::load(&layout, &id).expect("load").map(|i| i.status), Some(BackupStatus::Failed));
        BackupInfo { status: BackupStatus::Done, ..BackupInfo::default() }.save(&layout, &id).expect("save");
        assert_eq!(BackupInfo::locate(&layout, &id), layout.backup_info_path(&id));
    }
}
