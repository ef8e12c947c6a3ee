//! `barman status SERVER...|all`: Barman 3.20.1's `Server.status` rows (server, PostgreSQL,
//! file archiver, retention and backup-manager rows), console `\t<Description>: <value>`
//! and JSON `{"<srv>": {"<key>": {"description": …, "message": …}}}`.

use std::time::Duration;

use barman_common::catalogue::relay::RelayState;
use barman_common::catalogue::{BackupId, BackupStatus, Catalogue, ServerLayout};
use barman_common::config::ServerConfig;
use serde_json::{json, Map, Value};

use crate::cmd::check::non_incremental_done;
use crate::cmd::live::{remote_status, ArchiverStats, Remote};
use crate::context::{layout, Context};
use crate::output::Output;
use crate::walinfo::pretty_size;
use crate::CmdError;

/// One status row: JSON key, console description, value.
type Row = (&'static str, &'static str, String);

fn py_bool(b: bool) -> String {
    if b { "True" } else { "False" }.to_owned()
}

/// Every row of one server, in Barman's order.
fn rows(cfg: &ServerConfig) -> Result<Vec<Row>, CmdError> {
    let mut rows = server_rows(cfg);
    if cfg.active && !cfg.is_passive() {
        let timeout = Duration::from_secs(u64::try_from(cfg.check_timeout).ok().filter(|t| *t > 0).unwrap_or(30));
        let remote = remote_status(cfg, timeout);
        rows.extend(postgres_rows(&remote));
        // FileWalArchiver.status (the streaming archiver shows nothing)
        if cfg.archiver && remote.archive_mode.is_some() {
            rows.extend(archiver_rows(&remote));
        }
    }
    rows.push(("passive_node", "Passive node", py_bool(cfg.is_passive())));
    rows.push(("retention_policies", "Retention policies", retention(cfg)));
    rows.extend(catalogue_rows(cfg)?);
    // PassiveBackupExecutor.status (the backup executor reports only for active servers).
    if let (true, Some(ssh)) = (cfg.active, cfg.primary_ssh_command.as_ref()) {
        rows.push(("primary_ssh_command", "SSH command to primary server", ssh.clone()));
        rows.extend(passive_lag_rows(&layout(cfg)));
    }
    Ok(rows)
}

/// The server's own rows: description, active, disabled, model.
fn server_rows(cfg: &ServerConfig) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Some(d) = cfg.description.as_ref() {
        rows.push(("description", "Description", d.clone()));
    }
    rows.push(("active", "Active", py_bool(cfg.active)));
    rows.push(("disabled", "Disabled", py_bool(cfg.is_disabled())));
    rows.push(("active_model", "Active configuration model", cfg.active_model().unwrap_or("None").to_owned()));
    rows
}

/// `PostgreSQLConnection`'s rows: version, cluster state, size, data directory, WAL file.
fn postgres_rows(remote: &Remote) -> Vec<Row> {
    let Some(v) = &remote.server_txt_version else {
        return vec![("pg_version", "PostgreSQL version", "FAILED trying to get PostgreSQL version".into())];
    };
    let mut rows = vec![("pg_version", "PostgreSQL version", v.clone())];
    let state = if remote.is_in_recovery == Some(true) { "in archive recovery" } else { "in production" };
    rows.push(("is_in_recovery", "Cluster state", state.into()));
    if let Some(size) = remote.current_size {
        rows.push(("current_size", "Current data size", pretty_size(size)));
    }
    if let Some(d) = remote.data_directory.as_ref().filter(|d| !d.is_empty()) {
        rows.push(("data_directory", "PostgreSQL Data directory", d.clone()));
    }
    if let Some(x) = remote.current_xlog.as_ref().filter(|x| !x.is_empty()) {
        rows.push(("current_xlog", "Current WAL segment", x.clone()));
    }
    rows
}

/// `FileWalArchiver.status`: `archive_command` and `pg_stat_archiver`.
fn archiver_rows(remote: &Remote) -> Vec<Row> {
    let cmd = remote
        .archive_command
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "FAILED (please set it accordingly to documentation)".into());
    let mut rows = vec![("archive_command", "PostgreSQL 'archive_command' setting", cmd)];
    let stats = remote.archiver.clone().unwrap_or_default();
    rows.push(("last_archived_wal", "Last archived WAL", last_archived(&stats)));
    if let Some(n) = stats.failed_count {
        rows.push(("failed_count", "Failures of WAL archiver", failures(&stats, n)));
    }
    if let Some(rate) = stats.wals_per_second.filter(|r| *r != 0.0) {
        rows.push(("server_archived_wals_per_hour", "Server WAL archiving rate", format!("{:.2}/hour", 3600.0 * rate)));
    }
    rows
}

/// `<wal>, at <time>`, or that nothing was shipped.
fn last_archived(stats: &ArchiverStats) -> String {
    let mut last = stats.last_archived_wal.clone().filter(|w| !w.is_empty());
    if let (Some(l), Some(t)) = (last.as_mut(), stats.last_archived_time.as_ref()) {
        l.push_str(&format!(", at {t}"));
    }
    last.unwrap_or_else(|| "No WAL segment shipped yet".into())
}

/// `<n>`, with the last failure when there were some.
fn failures(stats: &ArchiverStats, n: i64) -> String {
    let mut text = n.to_string();
    if n > 0 {
        text.push_str(&format!(
            " ({} at {})",
            stats.last_failed_wal.as_deref().unwrap_or("None"),
            stats.last_failed_time.as_deref().unwrap_or("None")
        ));
    }
    text
}

/// The retention policy row's value.
fn retention(cfg: &ServerConfig) -> String {
    match &cfg.retention_policy {
        Some(p) => format!(
            "enforced (mode: {}, retention: {p}, WAL retention: {})",
            cfg.retention_policy_mode,
            cfg.wal_retention_policy.as_deref().unwrap_or("main").to_uppercase()
        ),
        None => "not enforced".into(),
    }
}

/// `BackupManager.status`: backup counts, first and last backups, minimum redundancy.
fn catalogue_rows(cfg: &ServerConfig) -> Result<Vec<Row>, CmdError> {
    let catalogue = Catalogue::load(&layout(cfg))?;
    let done = catalogue.with_status(&[BackupStatus::Done]).count();
    let id = |e: Option<&(BackupId, _)>| e.map_or("None".to_owned(), |(i, _)| i.to_string());
    let n = non_incremental_done(&catalogue);
    let min = cfg.minimum_redundancy;
    let word = if n < min as usize { "FAILED" } else { "satisfied" };
    Ok(vec![
        ("backups_number", "No. of available backups", done.to_string()),
        ("first_backup", "First available backup", id(catalogue.oldest())),
        ("last_backup", "Last available backup", id(catalogue.latest())),
        ("minimum_redundancy", "Minimum redundancy requirements", format!("{word} ({n}/{min})")),
    ])
}

/// Ours: how far the passive copy is behind its primary, from `relay.info` (written by
/// barman-relay; absent, and the rows with it, on a catalogue Barman's passive maintains).
fn passive_lag_rows(layout: &ServerLayout) -> Vec<Row> {
    let Some(state) = RelayState::load(layout) else { return Vec::new() };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let (bytes, secs) = (state.lag_bytes(), state.lag_seconds(now));
    vec![
        (
            "passive_wal_lag",
            "Passive WAL lag",
            format!(
                "{bytes} bytes, {secs:.0} seconds (passive at {}, primary at {})",
                state.passive_wal, state.primary_wal
            ),
        ),
        ("passive_wal_lag_bytes", "Passive WAL lag (bytes)", bytes.to_string()),
        ("passive_wal_lag_seconds", "Passive WAL lag (seconds)", format!("{secs:.0}")),
        ("passive_last_relay", "Last relay pass", format!("{:.0} seconds ago", (now - state.checked_at).max(0.0))),
    ]
}

/// Prints one server's rows.
fn write(name: &str, rows: &[Row], out: &mut Output) {
    if out.is_json() {
        let mut map = Map::new();
        for (key, description, message) in rows {
            map.insert((*key).to_owned(), json!({"description": description, "message": message}));
        }
        out.result(name.to_owned(), Value::Object(map));
    } else {
        out.info(format!("Server {name}:"));
        for (_, description, message) in rows {
            out.info(format!("\t{description}: {message}"));
        }
    }
}

/// `status SERVER...|all`.
pub fn run(ctx: &Context, names: &[String], out: &mut Output) -> Result<(), CmdError> {
    crate::cmd::for_each_server(ctx, names, out, |name, cfg, out| {
        write(name, &rows(cfg)?, out);
        Ok(())
    })
}
