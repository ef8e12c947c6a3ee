//! backup.info's `copy_stats` for a cloud backup, as `CloudUploadController.statistics`:
//! no analysis, per-archive copy times (first start to last end of each name) and the sum
//! of part upload times.

use std::time::Duration;

use barman_common::catalogue::PyValue;
use chrono::{DateTime, Local};

use crate::upload::ArchiveStats;

fn secs(d: chrono::TimeDelta) -> PyValue {
    PyValue::Float(d.num_microseconds().unwrap_or(0) as f64 / 1e6)
}

/// Seconds with microsecond precision, as Python's `timedelta.total_seconds()`.
fn micros(d: Duration) -> PyValue {
    PyValue::Float(d.as_micros() as f64 / 1e6)
}

fn key(k: &str) -> PyValue {
    PyValue::Str(k.to_owned())
}

/// The `copy_stats` dict.
pub fn copy_stats(
    archives: &[ArchiveStats],
    start: DateTime<Local>,
    total: Duration,
    workers: usize,
) -> Vec<(String, PyValue)> {
    let mut names: Vec<&str> = Vec::new();
    let mut sorted: Vec<&ArchiveStats> = archives.iter().collect();
    sorted.sort_by_key(|a| a.start);
    for a in &sorted {
        if !names.contains(&a.name.as_str()) {
            names.push(&a.name);
        }
    }
    let (mut analysis, mut copy, mut serial) = (Vec::new(), Vec::new(), Vec::new());
    let mut serialized_total = Duration::ZERO;
    for name in &names {
        let mine: Vec<&&ArchiveStats> = sorted.iter().filter(|a| a.name == *name).collect();
        let first = mine.iter().map(|a| a.start).min().unwrap_or(start);
        let last = mine.iter().map(|a| a.end).max().unwrap_or(start);
        let ser: Duration = mine.iter().map(|a| a.serialized).sum();
        serialized_total += ser;
        analysis.push((key(name), PyValue::Int(0)));
        copy.push((key(name), secs(last - first)));
        serial.push((key(name), micros(ser)));
    }
    let upload_start = archives.iter().map(|a| a.start).min().unwrap_or(start);
    let upload_end = archives.iter().map(|a| a.end).max().unwrap_or(start);
    vec![
        ("total_time".into(), micros(total)),
        ("number_of_workers".into(), PyValue::Int(i64::try_from(workers).unwrap_or(1))),
        ("analysis_time".into(), PyValue::Int(0)),
        ("analysis_time_per_item".into(), PyValue::Dict(analysis)),
        ("copy_time_per_item".into(), PyValue::Dict(copy)),
        ("serialized_copy_time_per_item".into(), PyValue::Dict(serial)),
        ("copy_time".into(), secs(upload_end - upload_start)),
        ("serialized_copy_time".into(), micros(serialized_total)),
    ]
}
