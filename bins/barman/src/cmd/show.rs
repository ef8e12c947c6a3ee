//! `show-backup SERVER BACKUP_ID`: every row Barman 3.20.1 prints, in its order and layout
//! (`  {key:<23}: value`, sections `  Title:`, nested rows `    {key:<21}: value`).

use barman_common::catalogue::{
    format_py_datetime, BackupId, BackupInfo, BackupStatus, Catalogue, ServerLayout, XlogDb,
};
use barman_common::wal::{parse_history, Lsn, TimelineId, WalFileName};

use crate::cmd::list::retention_report;
use crate::context::Context;
use crate::output::Output;
use crate::walinfo::{pretty_size, wal_info, WalInfo};
use crate::CmdError;

fn row(out: &mut Vec<String>, key: &str, value: impl std::fmt::Display) {
    out.push(format!("  {key:<23}: {value}"));
}

fn nested(out: &mut Vec<String>, key: &str, value: impl std::fmt::Display) {
    out.push(format!("    {key:<21}: {value}"));
}

fn opt<T: std::fmt::Display>(v: Option<&T>) -> String {
    v.map_or_else(|| "None".to_owned(), ToString::to_string)
}

/// Python's `"{:.2%}"`.
fn percent(ratio: f64) -> String {
    format!("{:.2}%", ratio * 100.0)
}

/// Barman's `human_readable_timedelta` for a number of seconds.
pub fn human_seconds(secs: f64) -> String {
    let total = secs.abs().trunc() as u64;
    let (days, rem) = (total / 86_400, total % 86_400);
    let parts: Vec<String> = [(days, "day"), (rem / 3600, "hour"), ((rem / 60) % 60, "minute"), (rem % 60, "second")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| if n == 1 { format!("{n} {unit}") } else { format!("{n} {unit}s") })
        .collect();
    if secs.abs() < 1.0 {
        "less than one second".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Child timelines of `tli` forked at or after `after`: `wals/<tli+1>.history`, … while they
/// exist, keeping the lines whose parent is `tli` (Barman's `get_children_timelines`).
fn children_timelines(layout: &ServerLayout, tli: TimelineId, after: Option<Lsn>) -> Vec<u32> {
    let mut out = Vec::new();
    let mut child = tli.get();
    loop {
        child += 1;
        let Some(name) = TimelineId::new(child).map(WalFileName::history) else { break };
        let path = layout.wal_path(&name);
        let Ok((bytes, _)) = barman_common::compress::read_maybe_compressed(&path) else { break };
        let Ok(entries) = parse_history(&String::from_utf8_lossy(&bytes)) else { break };
        for e in entries {
            if e.parent == tli && after.is_none_or(|a| e.switch_point >= a) {
                out.push(child);
            }
        }
    }
    out
}

/// `show-backup SERVER BACKUP_ID`.
pub fn show_backup(ctx: &Context, server_name: &str, backup: &str, out: &mut Output) -> Result<(), CmdError> {
    let server = ctx.server(server_name)?;
    let cfg = ctx.config().server(server_name).expect("server() checked it exists");
    let catalogue = Catalogue::load(&server.layout)?;
    let (id, info) = crate::cmd::resolve_backup(&catalogue, backup, server_name)?;
    let mut lines = vec![format!("Backup {id}:")];
    general(&mut lines, info);
    if info.status.is_available() {
        let entries: Vec<_> = XlogDb::open(&server.layout)?.entries()?.into_iter().map(|(_, e)| e).collect();
        let next = catalogue.next(id, &BackupStatus::AVAILABLE);
        let wi = wal_info(info, next.map(|(_, i)| i), &entries);
        let report = retention_report(cfg, &catalogue, &server.layout)?;
        let children = info.timeline.map(|t| children_timelines(&server.layout, t, info.end_xlog)).unwrap_or_default();
        tablespaces(&mut lines, info);
        base(&mut lines, info, &wi);
        walinfo(&mut lines, info, &wi, &children);
        let rstatus = report.and_then(|r| r.get(id).map(|s| s.as_str().to_owned()));
        catalog(&mut lines, &catalogue, id, rstatus.as_deref(), &children);
    } else if let Some(err) = &info.error {
        row(&mut lines, "Error", err);
    }
    for l in lines {
        out.line(l);
    }
    Ok(())
}

fn general(lines: &mut Vec<String>, info: &BackupInfo) {
    if let Some(name) = &info.backup_name {
        row(lines, "Backup Name", name);
    }
    row(lines, "Server Name", opt(info.server_name.as_ref()));
    if let Some(sys) = &info.systemid {
        row(lines, "System Id", sys);
    }
    row(lines, "Status", info.status.as_str());
    if info.status.is_available() {
        row(lines, "PostgreSQL Version", opt(info.version.as_ref()));
        row(lines, "PGDATA directory", opt(info.pgdata.as_ref()));
        if let Some(size) = info.cluster_size.filter(|s| *s > 0) {
            row(lines, "Estimated Cluster Size", pretty_size(size as f64));
        }
    }
    lines.push(String::new());
    if info.data_checksums.is_some() || info.summarize_wal.is_some() {
        lines.push("  Server information:".to_owned());
        if let Some(c) = &info.data_checksums {
            nested(lines, "Checksums", c);
        }
        if let Some(s) = &info.summarize_wal {
            nested(lines, "WAL summarizer", s);
        }
        lines.push(String::new());
    }
}

fn tablespaces(lines: &mut Vec<String>, info: &BackupInfo) {
    let Some(ts) = info.tablespaces.as_ref().filter(|t| !t.is_empty()) else { return };
    lines.push("  Tablespaces:".to_owned());
    for t in ts {
        nested(lines, &t.name, format!("{} (oid: {})", t.location, t.oid));
    }
    lines.push(String::new());
}

fn base(lines: &mut Vec<String>, info: &BackupInfo, wi: &WalInfo) {
    lines.push("  Base backup information:".to_owned());
    let mode = info.mode.as_deref();
    if let Some(m) = mode {
        nested(lines, "Backup Method", m);
    }
    if let Some(e) = &info.encryption {
        nested(lines, "Encryption", e);
    }
    let btype = info.backup_type().as_str();
    if mode == Some("postgres") {
        nested(lines, "Backup Type", btype);
    }
    let dedup = info.deduplicated_size.unwrap_or(0);
    if dedup > 0 {
        let mut s = pretty_size(dedup as f64);
        if wi.wal_size > 0 {
            s.push_str(&format!(" ({} with WALs)", pretty_size((dedup + wi.wal_size) as f64)));
        }
        nested(lines, "Backup Size", s);
    }
    if let Some(c) = info.compression.as_deref().filter(|c| *c != "none") {
        nested(lines, "Backup Compression", c);
    }
    if wi.wal_size > 0 {
        nested(lines, "WAL Size", pretty_size(wi.wal_size as f64));
    }
    if matches!(btype, "rsync" | "incremental") {
        let size = if btype == "rsync" { info.size } else { info.cluster_size };
        let ratio = match size {
            Some(s) if s > 0 && dedup > 0 => 1.0 - dedup as f64 / s as f64,
            _ => 0.0,
        };
        let est = info.cluster_size.or(info.size).unwrap_or(0) as f64 * ratio;
        nested(lines, "Resources saved", format!("{} ({})", pretty_size(est), percent(ratio)));
    }
    nested(lines, "Timeline", opt(info.timeline.as_ref()));
    nested(lines, "Begin WAL", opt(info.begin_wal.as_ref()));
    nested(lines, "End WAL", opt(info.end_wal.as_ref()));
    if wi.wal_num > 0 {
        nested(lines, "Number of WALs", wi.wal_num);
    }
    let seg = info.xlog_segment_size.map_or(16_777_216.0, |s| f64::from(s.bytes()));
    if wi.wal_num > 0 {
        let ratio = 1.0 - wi.wal_size as f64 / (wi.wal_num as f64 * seg);
        if ratio > 0.0 {
            nested(lines, "WAL compression ratio", percent(ratio));
        }
    }
    nested(lines, "Begin time", info.begin_time.as_ref().map_or_else(|| "None".to_owned(), format_py_datetime));
    nested(lines, "End time", info.end_time.as_ref().map_or_else(|| "None".to_owned(), format_py_datetime));
    copy_stats(lines, info, dedup);
    nested(lines, "Begin Offset", opt(info.begin_offset.as_ref()));
    nested(lines, "End Offset", opt(info.end_offset.as_ref()));
    nested(lines, "Begin LSN", opt(info.begin_xlog.as_ref()));
    nested(lines, "End LSN", opt(info.end_xlog.as_ref()));
    lines.push(String::new());
}

fn copy_stats(lines: &mut Vec<String>, info: &BackupInfo, dedup: u64) {
    let copy_time = info.copy_stat("copy_time").unwrap_or(0.0);
    if copy_time <= 0.0 {
        return;
    }
    let analysis = info.copy_stat("analysis_time").unwrap_or(0.0);
    let mut text = human_seconds(copy_time);
    if analysis >= 1.0 {
        text.push_str(&format!(" + {} startup", human_seconds(analysis)));
    }
    nested(lines, "Copy time", text);
    if dedup > 0 {
        let mut tp = format!("{}/s", pretty_size(dedup as f64 / copy_time));
        let workers = info.copy_stat("number_of_workers").unwrap_or(1.0);
        if workers > 1.0 {
            tp.push_str(&format!(" ({workers} jobs)"));
        }
        nested(lines, "Estimated throughput", tp);
    }
}

fn walinfo(lines: &mut Vec<String>, info: &BackupInfo, wi: &WalInfo, children: &[u32]) {
    lines.push("  WAL information:".to_owned());
    nested(lines, "Number of files", wi.until_next_num);
    nested(lines, "Disk usage", pretty_size(wi.until_next_size as f64));
    if wi.per_second() > 0.0 {
        nested(lines, "WAL rate", format!("{:.2}/hour", wi.per_second() * 3600.0));
    }
    let seg = info.xlog_segment_size.map_or(16_777_216.0, |s| f64::from(s.bytes()));
    if wi.until_next_num > 0 {
        let ratio = 1.0 - wi.until_next_size as f64 / (wi.until_next_num as f64 * seg);
        if ratio > 0.0 {
            nested(lines, "Compression ratio", percent(ratio));
        }
    }
    nested(lines, "Last available", wi.last.as_ref().map_or("None", |(n, _)| n.as_str()));
    if !children.is_empty() {
        let list: Vec<String> = children.iter().map(ToString::to_string).collect();
        nested(lines, "Reachable timelines", list.join(", "));
    }
    lines.push(String::new());
}

fn catalog(lines: &mut Vec<String>, catalogue: &Catalogue, id: &BackupId, rstatus: Option<&str>, children: &[u32]) {
    lines.push("  Catalog information:".to_owned());
    nested(lines, "Retention Policy", rstatus.unwrap_or("not enforced"));
    let prev = catalogue.previous(id, &BackupStatus::AVAILABLE).map(|(p, _)| p.to_string());
    nested(lines, "Previous Backup", prev.unwrap_or_else(|| "- (this is the oldest base backup)".to_owned()));
    let next = catalogue.next(id, &BackupStatus::AVAILABLE).map(|(n, _)| n.to_string());
    nested(lines, "Next Backup", next.unwrap_or_else(|| "- (this is the latest base backup)".to_owned()));
    if !children.is_empty() {
        lines.push(String::new());
        lines.push(
            "WARNING: WAL information is inaccurate due to multiple timelines interacting with this backup".to_owned(),
        );
    }
    let info = catalogue.get(id.as_str()).map(|(_, i)| i);
    if let Some(i) = info.filter(|i| i.parent_backup_id.is_some()) {
        nested(lines, "Parent Backup", opt(i.parent_backup_id.as_ref()));
    }
    if let Some(kids) =
        info.filter(|i| i.mode.as_deref() == Some("postgres")).and_then(|i| i.children_backup_ids.as_ref())
    {
        let list: Vec<String> = kids.iter().map(ToString::to_string).collect();
        nested(lines, "Children Backup(s)", list.join(","));
    }
}
