//! What a backup prints: Barman's closing lines and the `-f json` summary.

use std::time::Duration;

use barman_common::catalogue::{format_py_datetime, BackupId, BackupInfo};

use crate::output::Output;

/// The result fields and the closing `Backup <id>: <status>` line.
pub(super) fn report(out: &mut Output, id: &BackupId, info: &BackupInfo) {
    let text = |v: Option<String>| v.map_or(serde_json::Value::Null, serde_json::Value::String);
    out.result("backup_id", serde_json::Value::String(id.to_string()));
    out.result("status", serde_json::Value::String(info.status.as_str().to_owned()));
    out.result("begin_xlog", text(info.begin_xlog.map(|l| l.to_string())));
    out.result("end_xlog", text(info.end_xlog.map(|l| l.to_string())));
    out.result("begin_wal", text(info.begin_wal.as_ref().map(ToString::to_string)));
    out.result("end_wal", text(info.end_wal.as_ref().map(ToString::to_string)));
    out.result("begin_time", text(info.begin_time.as_ref().map(format_py_datetime)));
    out.result("end_time", text(info.end_time.as_ref().map(format_py_datetime)));
    out.result("size", info.size.map_or(serde_json::Value::Null, Into::into));
    out.line(format!("Backup {id}: {}", info.status.as_str()));
}

/// `12.3 MiB`, as Barman's `pretty_size`.
pub(super) fn human_size(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if value < 1024.0 || unit == "TiB" {
            return if unit == "B" { format!("{bytes} B") } else { format!("{value:.1} {unit}") };
        }
        value /= 1024.0;
    }
    format!("{bytes} B")
}

/// `N minutes, M seconds`, as Barman prints elapsed times.
pub(super) fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 1 {
        "less than one second".into()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else {
        format!("{} minutes, {} seconds", secs / 60, secs % 60)
    }
}
