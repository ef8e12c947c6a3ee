//! One backup as sync-info encodes it ([`backup_to_json`]) and back
//! ([`backup_from_json`], rules in the module docs of `sync`).

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use serde_json::{Map, Value};

use super::json::{float, invalid, opt_str};
use crate::catalogue::backup_id::BackupId;
use crate::catalogue::backup_info::{BackupInfo, BackupStatus, Tablespace};
use crate::catalogue::error::CatalogueError;
use crate::catalogue::pyliteral::{repr_str, PyValue};
use crate::catalogue::pytime::{format_py_datetime, parse_py_datetime};
use crate::wal::WalSegSize;

/// One backup as sync-info encodes it (`BackupInfo.to_json`): the backup.info keys in
/// order with their file encodings, except real JSON for `tablespaces`, `copy_stats`,
/// `snapshots_info`, `included_files` and `ctime()` text for the times; then `backup_id`,
/// `begin_time_iso` and `end_time_iso`.
pub fn backup_to_json(id: &BackupId, info: &BackupInfo) -> Value {
    let mut m = Map::new();
    insert_first_fields(&mut m, info);
    insert_last_fields(&mut m, info);
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

fn text(v: Option<&dyn std::fmt::Display>) -> Value {
    v.map_or(Value::Null, |v| Value::String(v.to_string()))
}

fn int(v: Option<u64>) -> Value {
    v.map_or(Value::Null, Value::from)
}

/// Python's `ctime()` text.
fn ctime(t: Option<&DateTime<FixedOffset>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.format("%a %b %e %H:%M:%S %Y").to_string()))
}

/// The keys from `backup_label` to `error`, in order.
fn insert_first_fields(m: &mut Map<String, Value>, info: &BackupInfo) {
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
}

/// The keys from `hba_file` to `xlog_segment_size`, in order.
fn insert_last_fields(m: &mut Map<String, Value>, info: &BackupInfo) {
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

/// One value of a backup object, with the conversions its fields need.
struct Field<'a> {
    key: &'a str,
    v: &'a Value,
}

impl Field<'_> {
    fn bad(&self, reason: &str) -> CatalogueError {
        invalid(self.key, &self.v.to_string(), reason)
    }

    fn s(&self) -> Result<String, CatalogueError> {
        self.v.as_str().map(str::to_owned).ok_or_else(|| self.bad("not a string"))
    }

    fn u(&self) -> Result<u64, CatalogueError> {
        self.v.as_u64().ok_or_else(|| self.bad("not a non-negative integer"))
    }

    /// A string value parsed as `T`; `reason` when it is not a string or does not parse.
    fn parsed<T: std::str::FromStr>(&self, reason: &str) -> Result<T, CatalogueError> {
        self.v.as_str().ok_or_else(|| self.bad(reason))?.parse().map_err(|_| self.bad(reason))
    }

    fn u32(&self) -> Result<u32, CatalogueError> {
        u32::try_from(self.u()?).map_err(|_| self.bad("out of range"))
    }
}

/// Sets the field `key` (`backup_label` to `error`, the rest in [`set_last_from_json`]).
fn set_from_json(info: &mut BackupInfo, key: &str, v: &Value, map: &Map<String, Value>) -> Result<(), CatalogueError> {
    let f = Field { key, v };
    match key {
        "backup_label" => info.backup_label = Some(decode_label(&f.s()?)),
        "backup_name" => info.backup_name = Some(f.s()?),
        "begin_offset" => info.begin_offset = Some(f.u()?),
        "begin_time" if !map.contains_key("begin_time_iso") => info.begin_time = Some(time_from(key, v)?),
        "begin_time_iso" => info.begin_time = Some(time_from(key, v)?),
        "end_time" if !map.contains_key("end_time_iso") => info.end_time = Some(time_from(key, v)?),
        "end_time_iso" => info.end_time = Some(time_from(key, v)?),
        "begin_wal" => info.begin_wal = Some(f.parsed("not a WAL name")?),
        "end_wal" => info.end_wal = Some(f.parsed("not a WAL name")?),
        "begin_xlog" => info.begin_xlog = Some(f.parsed("not an LSN")?),
        "end_xlog" => info.end_xlog = Some(f.parsed("not an LSN")?),
        "children_backup_ids" => {
            let text = f.s()?;
            let ids = text.split(',').filter(|i| !i.is_empty()).map(BackupId::new).collect::<Result<Vec<_>, _>>()?;
            info.children_backup_ids = (!ids.is_empty()).then_some(ids);
        }
        "cluster_size" => info.cluster_size = Some(f.u()?),
        "compression" => info.compression = Some(f.s()?),
        "config_file" => info.config_file = Some(f.s()?),
        "copy_stats" => {
            let obj = v.as_object().ok_or_else(|| f.bad("not an object"))?;
            info.copy_stats = Some(obj.iter().map(|(k, x)| (k.clone(), json_to_py(x))).collect());
        }
        "data_checksums" => info.data_checksums = Some(f.s()?),
        "deduplicated_size" => info.deduplicated_size = Some(f.u()?),
        "encryption" => info.encryption = Some(f.s()?),
        "end_offset" => info.end_offset = Some(f.u()?),
        "error" => info.error = Some(f.s()?),
        _ => return set_last_from_json(info, &f),
    }
    Ok(())
}

/// Sets the fields from `hba_file` to `xlog_segment_size`; ignores `backup_id`, the ctime
/// fields superseded by `*_iso`, and keys we do not know.
fn set_last_from_json(info: &mut BackupInfo, f: &Field<'_>) -> Result<(), CatalogueError> {
    let v = f.v;
    match f.key {
        "hba_file" => info.hba_file = Some(f.s()?),
        "ident_file" => info.ident_file = Some(f.s()?),
        "included_files" => {
            let list = v.as_array().ok_or_else(|| f.bad("not a list"))?;
            let files =
                list.iter().map(|x| x.as_str().map(str::to_owned).ok_or_else(|| f.bad("not a list of strings")));
            info.included_files = Some(files.collect::<Result<_, _>>()?);
        }
        "mode" => info.mode = Some(f.s()?),
        "parent_backup_id" => info.parent_backup_id = Some(BackupId::new(&f.s()?)?),
        "pgdata" => info.pgdata = Some(f.s()?),
        "server_name" => info.server_name = Some(f.s()?),
        "size" => info.size = Some(f.u()?),
        "snapshots_info" => info.snapshots_info = Some(json_to_py(v)),
        "status" => info.status = f.s()?.parse::<BackupStatus>().map_err(|e| f.bad(&e))?,
        "summarize_wal" => info.summarize_wal = Some(f.s()?),
        "systemid" => info.systemid = Some(if let Some(n) = v.as_u64() { n.to_string() } else { f.s()? }),
        "tablespaces" => {
            let list = tablespaces_from(v).ok_or_else(|| f.bad("not [[name, oid, location], ...]"))?;
            info.tablespaces = (!list.is_empty()).then_some(list);
        }
        "timeline" => info.timeline = Some(crate::wal::TimelineId::new(f.u32()?).ok_or_else(|| f.bad("timeline 0"))?),
        "version" => info.version = Some(f.u32()?),
        "xlog_segment_size" => {
            info.xlog_segment_size = Some(WalSegSize::new(f.u()?).map_err(|e| f.bad(&e.to_string()))?);
        }
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
pub(super) fn time_from(key: &str, v: &Value) -> Result<DateTime<FixedOffset>, CatalogueError> {
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
pub(super) fn decode_label(text: &str) -> String {
    let mut label = text.to_owned();
    while let Ok(PyValue::Str(inner)) = PyValue::parse(&label) {
        label = inner;
    }
    label
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
