//! A parsed `primary.info` / sync-info answer ([`PrimaryInfo`]), the passive side.

use serde_json::{Map, Value};

use super::backup_json::backup_from_json;
use super::json::{invalid, parse_json_exact};
use crate::catalogue::backup_id::BackupId;
use crate::catalogue::backup_info::BackupInfo;
use crate::catalogue::error::CatalogueError;
use crate::catalogue::xlogdb::XlogDbEntry;

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
