//! `list-servers` and `list-backups`, line for line and key for key as Barman 3.20.1.

use std::collections::BTreeMap;

use barman_common::catalogue::retention::{self, Candidate, Policy, RetentionStatus};
use barman_common::catalogue::{keep_target, BackupId, BackupInfo, BackupStatus, Catalogue, XlogDb, XlogDbEntry};
use barman_common::config::{RetentionPolicy, ServerConfig};
use serde_json::{json, Value};

use crate::context::Context;
use crate::output::Output;
use crate::walinfo::{pretty_size, wal_info};
use crate::CmdError;

/// `list-servers [--minimal]`.
pub fn list_servers(ctx: &Context, minimal: bool, out: &mut Output) -> Result<(), CmdError> {
    for name in ctx.server_names() {
        let cfg = ctx.config().server(&name).expect("names come from the config");
        let mut description = cfg.description.clone().unwrap_or_default();
        if !cfg.active {
            description.push_str(" (inactive)");
        } else if cfg.is_disabled() {
            description.push_str(" (WARNING: disabled)");
        }
        if cfg.is_passive() {
            description.push_str(" (Passive)");
        }
        if out.is_json() {
            out.result(&name, json!({ "description": description }));
        } else if minimal || description.is_empty() {
            out.line(name);
        } else {
            out.line(format!("{name} - {description}"));
        }
    }
    Ok(())
}

/// Python's `datetime.ctime()`: `Sat Nov 21 20:28:40 2026`, in the time's own offset.
pub fn ctime(t: &chrono::DateTime<chrono::FixedOffset>) -> String {
    t.format("%a %b %e %H:%M:%S %Y").to_string()
}

pub use super::select::expand_servers;

/// The retention report of a server's catalogue, or `None` when no policy is enforced.
pub fn retention_report(
    cfg: &ServerConfig,
    catalogue: &Catalogue,
    layout: &barman_common::catalogue::ServerLayout,
) -> Result<Option<BTreeMap<BackupId, RetentionStatus>>, CmdError> {
    let policy = match cfg.retention_policy {
        None => return Ok(None),
        Some(RetentionPolicy::Redundancy(n)) => Policy::Redundancy(n),
        Some(ref w @ RetentionPolicy::RecoveryWindow { .. }) => {
            Policy::RecoveryWindow(w.window().ok_or_else(|| CmdError::Error(format!("invalid retention policy {w}")))?)
        }
    };
    let keeps: Vec<_> = catalogue.entries().iter().map(|(id, _)| keep_target(layout, id)).collect::<Result<_, _>>()?;
    let cands: Vec<Candidate<'_>> =
        catalogue.entries().iter().zip(keeps).map(|((id, info), keep)| Candidate { id, info, keep }).collect();
    Ok(Some(retention::report(policy, cfg.minimum_redundancy, &cands, chrono::Utc::now())))
}

fn next_available<'a>(catalogue: &'a Catalogue, id: &BackupId) -> Option<&'a BackupInfo> {
    catalogue.next(id, &BackupStatus::AVAILABLE).map(|(_, i)| i)
}

/// `list-backups [--minimal] SERVER...|all`, newest first.
pub fn list_backups(ctx: &Context, names: &[String], minimal: bool, out: &mut Output) -> Result<(), CmdError> {
    // Barman lists inactive and disabled servers too; an unknown one is an error that does not
    // stop the others.
    crate::cmd::for_each_server(ctx, names, out, |name, cfg, out| {
        let layout = crate::context::layout(cfg);
        let catalogue = Catalogue::load(&layout)?;
        let entries: Vec<XlogDbEntry> = XlogDb::open(&layout)?.entries()?.into_iter().map(|(_, e)| e).collect();
        let report = retention_report(cfg, &catalogue, &layout)?;
        let mut rows = Vec::new();
        for (id, info) in catalogue.entries().iter().rev() {
            if info.status == BackupStatus::Empty {
                continue;
            }
            if minimal {
                rows.push(Value::String(id.to_string()));
                out.line(id.to_string());
                continue;
            }
            let rstatus = report.as_ref().and_then(|r| r.get(id).copied()).filter(|s| *s != RetentionStatus::Valid);
            let (line, row) = backup_row(name, id, info, next_available(&catalogue, id), &entries, rstatus);
            out.line(line);
            rows.push(row);
        }
        out.result(name, Value::Array(rows));
        Ok(())
    })
}

fn backup_row(
    server: &str,
    id: &BackupId,
    info: &BackupInfo,
    next: Option<&BackupInfo>,
    entries: &[XlogDbEntry],
    rstatus: Option<RetentionStatus>,
) -> (String, Value) {
    let mut line = format!("{server} {id}");
    let mut row = serde_json::Map::new();
    row.insert("backup_id".into(), json!(id.to_string()));
    if let Some(n) = &info.backup_name {
        line.push_str(&format!(" '{n}'"));
        row.insert("backup_name".into(), json!(n));
    }
    let btype = info.backup_type();
    line.push_str(&format!(" - {} - ", btype.as_str()[..1].to_uppercase()));
    row.insert("backup_type".into(), json!(btype.as_str()));
    let (Some(end), true) = (info.end_time, info.status.is_available()) else {
        line.push_str(info.status.as_str());
        row.insert("status".into(), json!(info.status.as_str()));
        return (line, Value::Object(row));
    };
    let wi = wal_info(info, next, entries);
    let size = info.size.unwrap_or(0) + wi.wal_size;
    line.push_str(&format!(
        "{} - Size: {} - WAL Size: {}",
        ctime(&end),
        pretty_size(size as f64),
        pretty_size(wi.until_next_size as f64)
    ));
    if info.status == BackupStatus::WaitingForWals {
        line.push_str(" - WAITING_FOR_WALS");
    }
    if let Some(r) = rstatus.filter(|r| *r != RetentionStatus::None) {
        line.push_str(&format!(" - {r}"));
    }
    row.insert("end_time_timestamp".into(), json!(end.timestamp().to_string()));
    row.insert("end_time".into(), json!(ctime(&end)));
    row.insert("size_bytes".into(), json!(size));
    row.insert("wal_size_bytes".into(), json!(wi.until_next_size));
    row.insert("size".into(), json!(pretty_size(size as f64)));
    row.insert("wal_size".into(), json!(pretty_size(wi.until_next_size as f64)));
    row.insert("status".into(), json!(info.status.as_str()));
    row.insert("retention_status".into(), json!(rstatus.map_or("-", RetentionStatus::as_str)));
    (line, Value::Object(row))
}
