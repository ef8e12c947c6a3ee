//! The value encodings of backup.info fields: Python's `int()`, `repr()` of strings, lists,
//! dicts and tablespace tuples, timestamps and WAL types.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset};

use super::types::Tablespace;
use crate::catalogue::backup_id::BackupId;
use crate::catalogue::pyliteral::PyValue;
use crate::catalogue::pytime::parse_py_datetime;
use crate::wal::{TimelineId, WalSegSize};

/// Python's `int()`: optional sign, digits, `_` separators.
pub(super) fn parse_int<T: FromStr>(s: &str) -> Result<T, String> {
    let clean: String = s.strip_prefix('+').unwrap_or(s).chars().filter(|&c| c != '_').collect();
    clean.parse().map_err(|_| format!("not an integer: {s:?}"))
}

pub(super) fn parse_display<T: FromStr>(s: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    s.parse().map_err(|e: T::Err| e.to_string())
}

pub(super) fn parse_time(s: &str) -> Result<DateTime<FixedOffset>, String> {
    parse_py_datetime(s).ok_or_else(|| format!("not a timestamp: {s:?}"))
}

pub(super) fn parse_timeline(s: &str) -> Result<TimelineId, String> {
    TimelineId::new(parse_int(s)?).ok_or_else(|| "timeline 0 does not exist".to_owned())
}

pub(super) fn parse_seg_size(s: &str) -> Result<WalSegSize, String> {
    WalSegSize::new(parse_int(s)?).map_err(|e| e.to_string())
}

pub(super) fn parse_ids(s: &str) -> Result<Vec<BackupId>, String> {
    s.split(',').map(|id| BackupId::new(id).map_err(|e| e.to_string())).collect()
}

pub(super) fn join_ids(ids: &[BackupId]) -> String {
    ids.iter().map(BackupId::as_str).collect::<Vec<_>>().join(",")
}

pub(super) fn parse_literal(s: &str) -> Result<PyValue, String> {
    PyValue::parse(s).map_err(|e| e.to_string())
}

pub(super) fn parse_repr_str(s: &str) -> Result<String, String> {
    match parse_literal(s)? {
        PyValue::Str(text) => Ok(text),
        other => Err(format!("expected a string literal, found {other}")),
    }
}

pub(super) fn parse_dict(s: &str) -> Result<PyValue, String> {
    match parse_literal(s)? {
        dict @ PyValue::Dict(_) => Ok(dict),
        other => Err(format!("expected a dict literal, found {other}")),
    }
}

pub(super) fn parse_str_dict(s: &str) -> Result<Vec<(String, PyValue)>, String> {
    let PyValue::Dict(pairs) = parse_literal(s)? else { return Err(format!("expected a dict literal: {s}")) };
    pairs
        .into_iter()
        .map(|(k, v)| k.as_str().map(|k| (k.to_owned(), v.clone())).ok_or_else(|| format!("non-string key {k}")))
        .collect()
}

pub(super) fn dict_repr(pairs: &[(String, PyValue)]) -> String {
    PyValue::Dict(pairs.iter().map(|(k, v)| (PyValue::Str(k.clone()), v.clone())).collect()).to_string()
}

pub(super) fn parse_str_list(s: &str) -> Result<Vec<String>, String> {
    let value = parse_literal(s)?;
    let items = value.as_sequence().ok_or_else(|| format!("expected a list literal, found {value}"))?;
    items.iter().map(|i| i.as_str().map(str::to_owned).ok_or_else(|| format!("expected strings, found {i}"))).collect()
}

pub(super) fn list_repr(items: &[String]) -> String {
    PyValue::List(items.iter().cloned().map(PyValue::Str).collect()).to_string()
}

/// `load_tablespace_list`: a list of `(name, oid, location)`; an empty list means unset.
pub(super) fn parse_tablespaces(s: &str) -> Result<Option<Vec<Tablespace>>, String> {
    let value = parse_literal(s)?;
    let items = value.as_sequence().ok_or_else(|| format!("expected a list literal, found {value}"))?;
    let list = items.iter().map(parse_tablespace).collect::<Result<Vec<_>, _>>()?;
    Ok((!list.is_empty()).then_some(list))
}

pub(super) fn parse_tablespace(item: &PyValue) -> Result<Tablespace, String> {
    let bad = || format!("expected (name, oid, location), found {item}");
    let [name, PyValue::Int(oid), location] = item.as_sequence().ok_or_else(bad)? else { return Err(bad()) };
    let oid = u32::try_from(*oid).map_err(|_| bad())?;
    let (name, location) = (name.as_str().ok_or_else(bad)?, location.as_str().ok_or_else(bad)?);
    Ok(Tablespace { name: name.to_owned(), oid, location: location.to_owned() })
}

pub(super) fn tablespaces_repr(list: &[Tablespace]) -> String {
    let tuple = |t: &Tablespace| {
        PyValue::Tuple(vec![
            PyValue::Str(t.name.clone()),
            PyValue::Int(i64::from(t.oid)),
            PyValue::Str(t.location.clone()),
        ])
    };
    PyValue::List(list.iter().map(tuple).collect()).to_string()
}
