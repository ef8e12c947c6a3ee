//! `show-backup SERVER BACKUP_ID`: every row Barman 3.20.1 prints, in its order and layout
//! (`  {key:<23}: value`, sections `  Title:`, nested rows `    {key:<21}: value`).

use barman_common::catalogue::{
    format_py_datetime, BackupId, BackupInfo, BackupStatus, Catalogue, ServerLayout, XlogDb,
};
use barman_common::wal::{parse_history, Lsn, TimelineId, WalFileName};

use serde_json::{json, Map, Value};

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
    // Barman truncates to whole seconds and drops the sign ("ago" is for intervals only).
    barman_common::catalogue::sync::human_readable_timedelta(secs.abs().trunc() as i64)
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
    // A name shared by several backups: Barman's own message, not "Unknown backup".
    if let Err(e @ barman_common::catalogue::CatalogueError::AmbiguousName { .. }) = catalogue.resolve(backup) {
        return Err(CmdError::Error(e.to_string()));
    }
    let (id, info) = crate::cmd::resolve_backup(&catalogue, backup, server_name)?;
    if out.is_json() {
        let key = info.server_name.clone().unwrap_or_else(|| server_name.to_owned());
        let value = show_backup_json(cfg, &catalogue, &server.layout, id, info)?;
        out.result(key, value);
        return Ok(());
    }
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

/// Python's `int(x)` of a float, as a JSON number.
fn py_int(x: f64) -> Value {
    Value::from(x.trunc() as i64)
}

fn float(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn opt_json<T: std::fmt::Display>(v: Option<&T>) -> Value {
    v.map_or(Value::Null, |v| Value::String(v.to_string()))
}

/// `JsonOutputWriter.result_show_backup` of `Server.get_backup_ext_info`.
fn show_backup_json(
    cfg: &barman_common::config::ServerConfig,
    catalogue: &Catalogue,
    layout: &ServerLayout,
    id: &BackupId,
    info: &BackupInfo,
) -> Result<Value, CmdError> {
    let mut o = header_json(id, info);
    if !info.status.is_available() {
        if let Some(e) = info.error.as_ref().filter(|e| !e.is_empty()) {
            o.insert("error".into(), json!(e));
        }
        return Ok(Value::Object(o));
    }
    if let Some(size) = info.cluster_size.filter(|s| *s > 0) {
        o.insert("cluster_size".into(), json!(pretty_size(size as f64)));
        o.insert("cluster_size_bytes".into(), json!(size));
    }
    o.insert("postgresql_version".into(), info.version.map_or(Value::Null, Value::from));
    o.insert("pgdata_directory".into(), json!(info.pgdata));
    let ts: Vec<Value> = info
        .tablespaces
        .iter()
        .flatten()
        .map(|t| json!({"name": t.name, "location": t.location, "oid": t.oid}))
        .collect();
    o.insert("tablespaces".into(), Value::Array(ts));

    let entries: Vec<_> = XlogDb::open(layout)?.entries()?.into_iter().map(|(_, e)| e).collect();
    let next = catalogue.next(id, &BackupStatus::AVAILABLE);
    let wi = wal_info(info, next.map(|(_, i)| i), &entries);
    let stats = barman_common::catalogue::sync::backup_to_json(id, info);
    o.insert("base_backup_information".into(), Value::Object(base_json(info, &wi, &stats)));
    let report = retention_report(cfg, catalogue, layout)?;
    let rstatus = report.and_then(|r| r.get(id).map(|s| s.as_str().to_owned()));
    let next_id = next.map(|(n, _)| n.to_string());
    o.insert("catalog_information".into(), Value::Object(catalog_json(catalogue, id, info, rstatus, next_id)));
    let children = info.timeline.map(|t| children_timelines(layout, t, info.end_xlog)).unwrap_or_default();
    o.insert("wal_information".into(), Value::Object(walinfo_json(info, &wi, &children)));
    if let Some(snap) = stats.get("snapshots_info").filter(|s| !s.is_null()) {
        o.insert("snapshots_info".into(), snap.clone());
    }
    Ok(Value::Object(o))
}

/// The keys every backup has: id, status, name, system id, type, server information.
fn header_json(id: &BackupId, info: &BackupInfo) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("backup_id".into(), json!(id.as_str()));
    o.insert("status".into(), json!(info.status.as_str()));
    if let Some(n) = info.backup_name.as_ref().filter(|n| !n.is_empty()) {
        o.insert("backup_name".into(), json!(n));
    }
    if let Some(s) = info.systemid.as_ref().filter(|s| !s.is_empty()) {
        o.insert("system_id".into(), json!(s));
    }
    if info.status.is_available() {
        o.insert("backup_type".into(), json!(info.backup_type().as_str()));
    }
    o.insert(
        "server_information".into(),
        json!({"data_checksums": info.data_checksums, "summarize_wal": info.summarize_wal}),
    );
    o
}

/// `1 - size / (num * segment size)` when the backup's WAL range is known, else 0.
fn wal_ratio(info: &BackupInfo, wi: &WalInfo, size: u64, num: u64) -> f64 {
    let complete = wi.first.is_some() && wi.last.is_some();
    let seg = info.xlog_segment_size.map_or(16_777_216.0, |s| f64::from(s.bytes()));
    if complete && num > 0 {
        1.0 - size as f64 / (num as f64 * seg)
    } else {
        0.0
    }
}

/// `base_backup_information`.
fn base_json(info: &BackupInfo, wi: &WalInfo, stats: &Value) -> Map<String, Value> {
    let dedup = info.deduplicated_size.unwrap_or(0);
    let mut b = Map::new();
    b.insert("backup_method".into(), json!(info.mode));
    b.insert("encryption".into(), json!(info.encryption));
    b.insert("compression".into(), json!(info.compression));
    b.insert("backup_size".into(), json!(pretty_size(dedup as f64)));
    b.insert("backup_size_bytes".into(), json!(dedup));
    b.insert("backup_size_with_wals".into(), json!(pretty_size((dedup + wi.wal_size) as f64)));
    b.insert("backup_size_with_wals_bytes".into(), json!(dedup + wi.wal_size));
    b.insert("wal_size".into(), json!(pretty_size(wi.wal_size as f64)));
    b.insert("wal_size_bytes".into(), json!(wi.wal_size));
    b.insert("timeline".into(), info.timeline.map_or(Value::Null, |t| Value::from(t.get())));
    b.insert("begin_wal".into(), opt_json(info.begin_wal.as_ref()));
    b.insert("end_wal".into(), opt_json(info.end_wal.as_ref()));
    b.insert("wal_num".into(), json!(wi.wal_num));
    for (key, t) in [("begin_time", info.begin_time.as_ref()), ("end_time", info.end_time.as_ref())] {
        b.insert(format!("{key}_timestamp"), t.map_or(Value::Null, |t| json!(t.timestamp().to_string())));
        b.insert(key.into(), t.map_or(Value::Null, |t| json!(format_py_datetime(t))));
    }
    b.insert("begin_offset".into(), json!(info.begin_offset));
    b.insert("end_offset".into(), json!(info.end_offset));
    b.insert("begin_lsn".into(), opt_json(info.begin_xlog.as_ref()));
    b.insert("end_lsn".into(), opt_json(info.end_xlog.as_ref()));
    resources_saved_json(info, dedup, &mut b);
    let ratio = wal_ratio(info, wi, wi.wal_size, wi.wal_num);
    if ratio > 0.0 {
        b.insert("wal_compression_ratio".into(), json!(percent(ratio)));
    }
    copy_stats_json(info, dedup, stats, &mut b);
    b
}

/// `resources_saved*` of rsync and incremental backups.
fn resources_saved_json(info: &BackupInfo, dedup: u64, b: &mut Map<String, Value>) {
    let btype = info.backup_type().as_str();
    if !matches!(btype, "rsync" | "incremental") {
        return;
    }
    let size = if btype == "rsync" { info.size } else { info.cluster_size };
    let dratio = match size {
        Some(s) if s > 0 && dedup > 0 => 1.0 - dedup as f64 / s as f64,
        _ => 0.0,
    };
    let est = info.cluster_size.filter(|s| *s > 0).or(info.size).unwrap_or(0) as f64 * dratio;
    b.insert("resources_saved".into(), json!(pretty_size(est)));
    b.insert("resources_saved_bytes".into(), py_int(est));
    b.insert("resources_saved_percentage".into(), json!(percent(dratio)));
}

/// Copy time, analysis time, throughput and workers, when the copy time is known.
fn copy_stats_json(info: &BackupInfo, dedup: u64, stats: &Value, b: &mut Map<String, Value>) {
    let stat = |k: &str| stats.get("copy_stats").and_then(|c| c.get(k)).cloned();
    let cp = info.copy_stat("copy_time").unwrap_or(0.0);
    if cp <= 0.0 {
        return;
    }
    b.insert("copy_time".into(), json!(human_seconds(cp)));
    b.insert("copy_time_seconds".into(), stat("copy_time").unwrap_or(Value::Null));
    let analysis = info.copy_stat("analysis_time").unwrap_or(0.0);
    if analysis >= 1.0 {
        b.insert("analysis_time".into(), json!(human_seconds(analysis)));
        b.insert("analysis_time_seconds".into(), stat("analysis_time").unwrap_or(Value::Null));
    }
    let throughput = dedup as f64 / cp;
    b.insert("throughput".into(), json!(format!("{}/s", pretty_size(throughput))));
    b.insert("throughput_bytes".into(), py_int(throughput));
    let workers = stat("number_of_workers").filter(|w| dedup > 0 && w.as_f64().is_some_and(|n| n > 1.0));
    b.insert("number_of_workers".into(), workers.unwrap_or_else(|| json!(1)));
}

/// `catalog_information`: retention status, neighbours, the incremental chain, children.
fn catalog_json(
    catalogue: &Catalogue,
    id: &BackupId,
    info: &BackupInfo,
    rstatus: Option<String>,
    next_id: Option<String>,
) -> Map<String, Value> {
    let prev = catalogue.previous(id, &BackupStatus::AVAILABLE).map(|(p, _)| p.to_string());
    let mut c = Map::new();
    c.insert("retention_policy".into(), json!(rstatus.unwrap_or_else(|| "not enforced".into())));
    c.insert("previous_backup".into(), json!(prev.unwrap_or_else(|| "- (this is the oldest base backup)".into())));
    c.insert("next_backup".into(), json!(next_id.unwrap_or_else(|| "- (this is the latest base backup)".into())));
    if info.backup_type().as_str() == "incremental" {
        let mut chain = 1;
        let mut root = id.clone();
        let mut cur = info.parent_backup_id.clone();
        while let Some(p) = cur {
            chain += 1;
            root = p.clone();
            cur = catalogue.get(p.as_str()).and_then(|(_, i)| i.parent_backup_id.clone());
        }
        c.insert("root_backup_id".into(), json!(root.as_str()));
        c.insert("parent_backup_id".into(), opt_json(info.parent_backup_id.as_ref()));
        c.insert("chain_size".into(), json!(chain));
    }
    if info.mode.as_deref() == Some("postgres") {
        let kids = info.children_backup_ids.as_ref().filter(|k| !k.is_empty());
        let kids = kids.map(|k| k.iter().map(|i| json!(i.as_str())).collect::<Vec<_>>());
        c.insert("children_backup_ids".into(), kids.map_or(Value::Null, Value::Array));
    }
    c
}

/// `wal_information`: the WAL archived until the next backup, its rate and ratio, and
/// the timelines forked from the backup's.
fn walinfo_json(info: &BackupInfo, wi: &WalInfo, children: &[u32]) -> Map<String, Value> {
    let complete = wi.first.is_some() && wi.last.is_some();
    let mut w = Map::new();
    w.insert("no_of_files".into(), json!(wi.until_next_num));
    w.insert("disk_usage".into(), json!(pretty_size(wi.until_next_size as f64)));
    w.insert("disk_usage_bytes".into(), json!(wi.until_next_size));
    w.insert("wal_rate".into(), json!(0));
    w.insert("wal_rate_per_second".into(), json!(0));
    w.insert("compression_ratio".into(), json!(0));
    w.insert("last_available".into(), json!(wi.last.as_ref().map(|(n, _)| n)));
    let per_second = if complete { wi.per_second() } else { 0.0 };
    if per_second > 0.0 {
        w.insert("wal_rate".into(), json!(format!("{:.2}/hour", per_second * 3600.0)));
        w.insert("wal_rate_per_second".into(), float(per_second));
    }
    let next_ratio = wal_ratio(info, wi, wi.until_next_size, wi.until_next_num);
    if next_ratio > 0.0 {
        w.insert("compression_ratio".into(), json!(percent(next_ratio)));
    }
    w.insert("timelines".into(), Value::Array(children.iter().map(|t| json!(t.to_string())).collect()));
    if !children.is_empty() {
        w.insert("_WARNING".into(), json!(TIMELINES_WARNING));
    }
    w
}

/// Barman's JSON warning, with the indentation its source's line continuations leave in it.
const TIMELINES_WARNING: &str = "WAL information is inaccurate                     due to multiple timelines interacting with                     this backup";
