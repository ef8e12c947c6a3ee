//! `replication-status [--minimal] [--target hot-standby|wal-streamer|all] SERVER...|all`:
//! Barman 3.20.1's `Server.replication_status` over `conninfo` (`pg_stat_replication` joined
//! with the physical slots), printed by its console and JSON writers.

use barman_common::pg::{ConnInfo, ReplicationConnection};
use serde_json::{json, Map, Value};

use crate::context::Context;
use crate::output::Output;
use crate::walinfo::pretty_size;
use crate::CmdError;

/// One `pg_stat_replication` row (text columns, `None` for NULL).
#[derive(Debug, Clone, Default)]
struct Sender {
    pid: Option<String>,
    usename: Option<String>,
    application_name: Option<String>,
    client_addr: Option<String>,
    client_hostname: Option<String>,
    client_port: Option<String>,
    backend_start: Option<String>,
    backend_xmin: Option<String>,
    state: Option<String>,
    sent_lsn: Option<String>,
    write_lsn: Option<String>,
    flush_lsn: Option<String>,
    replay_lsn: Option<String>,
    sync_priority: i64,
    sync_state: String,
    slot_name: Option<String>,
    current_lsn: Option<String>,
}

fn parse_lsn(s: &str) -> Option<i64> {
    let (hi, lo) = s.split_once('/')?;
    Some((i64::from_str_radix(hi, 16).ok()? << 32) + i64::from_str_radix(lo, 16).ok()?)
}

/// Barman's `diff_lsn(a, b)` = a − b.
fn diff_lsn(a: Option<&String>, b: Option<&String>) -> Option<i64> {
    Some(parse_lsn(a?)? - parse_lsn(b?)?)
}

/// PostgreSQL's `timestamptz` text (`2026-11-22 01:40:00.123456+00`) as Python's
/// `datetime.isoformat(sep=" ")` (`…+00:00`).
fn py_time(text: &str) -> String {
    let split = text.rfind(['+', '-']).filter(|&i| i > 10);
    match split {
        Some(i) => {
            let (t, off) = text.split_at(i);
            let off = if off.len() == 3 { format!("{off}:00") } else { off.to_owned() };
            format!("{t}{off}")
        }
        None => text.to_owned(),
    }
}

fn int_or_str(v: Option<&String>) -> Value {
    match v {
        None => Value::Null,
        Some(s) => s.parse::<i64>().map_or_else(|_| Value::String(s.clone()), Value::from),
    }
}

fn text(v: Option<&String>) -> String {
    v.cloned().unwrap_or_else(|| "None".into())
}

async fn query(conninfo: Option<&str>, target: Clients) -> Option<(Option<String>, Vec<Sender>)> {
    let info = ConnInfo::parse(conninfo?).ok()?;
    let mut conn = ReplicationConnection::connect_database(&info).await.ok()?;
    let mut wheres = vec!["(rs.slot_type IS NULL OR rs.slot_type = 'physical')"];
    match target {
        Clients::HotStandby => wheres.push("replay_lsn IS NOT NULL"),
        Clients::WalStreamer => wheres.push("replay_lsn IS NULL"),
        Clients::All => {}
    }
    let sql = format!(
        "SELECT r.pid::text, r.usename::text, r.application_name::text, host(r.client_addr), \
         r.client_hostname::text, r.client_port::text, r.backend_start::text, r.backend_xmin::text, \
         r.state::text, r.sent_lsn::text, r.write_lsn::text, r.flush_lsn::text, r.replay_lsn::text, \
         r.sync_priority::text, r.sync_state::text, rs.slot_name::text, \
         (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END)::text \
         FROM pg_stat_replication r LEFT JOIN pg_replication_slots rs ON (r.pid = rs.active_pid) \
         WHERE {} ORDER BY sync_state DESC, sync_priority",
        wheres.join(" AND ")
    );
    let rows = conn.simple_query(&sql).await.ok();
    let server_lsn = conn
        .simple_query(
            "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text",
        )
        .await
        .ok()
        .and_then(|r| r.into_iter().next())
        .and_then(|r| r.into_iter().next().flatten());
    conn.close().await;
    let clients = rows?
        .into_iter()
        .map(|r| {
            let c = |i: usize| r.get(i).cloned().flatten();
            Sender {
                pid: c(0),
                usename: c(1),
                application_name: c(2),
                client_addr: c(3),
                client_hostname: c(4),
                client_port: c(5),
                backend_start: c(6).map(|t| py_time(&t)),
                backend_xmin: c(7),
                state: c(8),
                sent_lsn: c(9),
                write_lsn: c(10),
                flush_lsn: c(11),
                replay_lsn: c(12),
                sync_priority: c(13).and_then(|p| p.parse().ok()).unwrap_or(0),
                sync_state: c(14).unwrap_or_default(),
                slot_name: c(15),
                current_lsn: c(16),
            }
        })
        .collect();
    Some((server_lsn, clients))
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |f| f.to_uppercase().collect::<String>() + &chars.as_str().to_lowercase())
}

struct SyncInfo {
    name: String,
    client_type: &'static str,
    stage: String,
    diffs: [(&'static str, Option<i64>); 4],
}

fn stage(c: &Sender) -> SyncInfo {
    let cur = c.current_lsn.as_ref();
    let diffs = [
        ("sent", diff_lsn(c.sent_lsn.as_ref(), cur)),
        ("write", diff_lsn(c.write_lsn.as_ref(), cur)),
        ("flush", diff_lsn(c.flush_lsn.as_ref(), cur)),
        ("replay", diff_lsn(c.replay_lsn.as_ref(), cur)),
    ];
    let (client_type, max) = if c.replay_lsn.is_none() { ("WAL streamer", 3) } else { ("standby", 5) };
    let stage = if c.replay_lsn.is_some() && diffs[3].1 == Some(0) {
        "5/5 Hot standby (max)".to_owned()
    } else if c.replay_lsn.is_some() && diffs[2].1 == Some(0) {
        "4/5 2-safe".to_owned()
    } else if diffs[1].1 == Some(0) {
        format!("3/{max} Remote write")
    } else if diffs[0].1 == Some(0) {
        format!("2/{max} WAL Sent (min)")
    } else {
        format!("1/{max} 1-safe")
    };
    let name = if c.sync_priority > 0 {
        format!("#{} {} {client_type}", c.sync_priority, capitalize(&c.sync_state))
    } else {
        format!("{} {client_type}", capitalize(&c.sync_state))
    };
    SyncInfo { name, client_type, stage, diffs }
}

fn lsn_field(c: &Sender, key: &str) -> Option<String> {
    match key {
        "sent" => c.sent_lsn.clone(),
        "write" => c.write_lsn.clone(),
        "flush" => c.flush_lsn.clone(),
        _ => c.replay_lsn.clone(),
    }
}

/// The console writer: a heading, then one line per client (`--minimal`) or a block each.
fn console(name: &str, title: &str, minimal: bool, server_lsn: Option<&String>, clients: &[Sender], out: &mut Output) {
    if minimal {
        match server_lsn {
            Some(lsn) => out.info(format!("{} for master '{name}' (LSN @ {lsn}):", capitalize(title))),
            None => out.info(format!("{} for slave '{name}':", capitalize(title))),
        }
    } else {
        out.info(format!("Status of {title} for server '{name}':"));
        if let Some(lsn) = server_lsn {
            out.info(format!("  Current LSN on master: {lsn}"));
        }
    }
    if clients.is_empty() {
        out.info(format!("  No {title} attached"));
        return;
    }
    if minimal {
        for (n, c) in clients.iter().enumerate() {
            out.info(minimal_line(n + 1, c));
        }
        return;
    }
    out.info(format!("  Number of {title}: {}", clients.len()));
    for (n, c) in clients.iter().enumerate() {
        client_block(n + 1, c, out);
    }
}

/// `--minimal`'s line for client number `n`.
fn minimal_line(n: usize, c: &Sender) -> String {
    let addr = c.client_addr.clone().unwrap_or_else(|| "socket".into());
    let user = text(c.usename.as_ref());
    let an = text(c.application_name.as_ref());
    if c.replay_lsn.is_none() {
        format!(
            "  {n}. W) {user}@{addr} S:{} W:{} P:{} AN:{an}",
            text(c.sent_lsn.as_ref()),
            text(c.write_lsn.as_ref()),
            c.sync_priority
        )
    } else {
        format!(
            "  {n}. {}) {user}@{addr} S:{} F:{} R:{} P:{} AN:{an}",
            c.sync_state.chars().next().map_or(' ', |ch| ch.to_ascii_uppercase()),
            text(c.sent_lsn.as_ref()),
            text(c.flush_lsn.as_ref()),
            text(c.replay_lsn.as_ref()),
            c.sync_priority
        )
    }
}

/// The full block of client number `n`.
fn client_block(n: usize, c: &Sender, out: &mut Output) {
    let s = stage(c);
    out.info("");
    out.info(format!("  {n}. {}", s.name));
    out.info(format!("     Application name: {}", text(c.application_name.as_ref())));
    out.info(format!("     Sync stage      : {}", s.stage));
    if let Some(addr) = c.client_addr.as_ref().filter(|a| !a.is_empty()) {
        out.info("     Communication   : TCP/IP");
        out.info(format!(
            "     IP Address      : {addr} / Port: {} / Host: {}",
            text(c.client_port.as_ref()),
            c.client_hostname.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| "-".into())
        ));
    } else {
        out.info("     Communication   : Unix domain socket");
    }
    out.info(format!("     User name       : {}", text(c.usename.as_ref())));
    out.info(format!("     Current state   : {} ({})", text(c.state.as_ref()), c.sync_state));
    if let Some(slot) = c.slot_name.as_ref().filter(|s| !s.is_empty()) {
        out.info(format!("     Replication slot: {slot}"));
    }
    out.info(format!("     WAL sender PID  : {}", text(c.pid.as_ref())));
    out.info(format!("     Started at      : {}", text(c.backend_start.as_ref())));
    if let Some(xmin) = c.backend_xmin.as_ref().filter(|x| !x.is_empty()) {
        out.info(format!("     Standby's xmin  : {xmin}"));
    }
    for (key, label) in
        [("sent", "Sent LSN   "), ("write", "Write LSN  "), ("flush", "Flush LSN  "), ("replay", "Replay LSN ")]
    {
        if let Some(lsn) = lsn_field(c, key) {
            let diff = s.diffs.iter().find(|(k, _)| *k == key).and_then(|(_, d)| *d).unwrap_or(0);
            out.info(format!("     {label}: {lsn} (diff: {})", pretty_size(diff as f64)));
        }
    }
    let _ = s.client_type;
}

/// The JSON writer's value for one server.
fn json_value(title: &str, minimal: bool, server_lsn: Option<&String>, clients: &[Sender]) -> Value {
    let key = title.to_lowercase().replace(' ', "_");
    let mut m = Map::new();
    m.insert("server_lsn".into(), server_lsn.map_or(Value::Null, |l| json!(l)));
    if clients.is_empty() {
        m.insert(key, json!([]));
        m.insert("standby_info".into(), json!(format!("No {title} attached")));
        return Value::Object(m);
    }
    let list: Vec<Value> = clients.iter().map(|c| if minimal { minimal_json(c) } else { client_json(c) }).collect();
    m.insert(key, Value::Array(list));
    Value::Object(m)
}

/// `--minimal`'s object for one client.
fn minimal_json(c: &Sender) -> Value {
    let addr = c.client_addr.clone().unwrap_or_else(|| "socket".into());
    if c.replay_lsn.is_none() {
        json!({"user_name": c.usename, "client_addr": addr, "sent_lsn": c.sent_lsn,
               "write_lsn": c.write_lsn, "sync_priority": c.sync_priority,
               "application_name": c.application_name})
    } else {
        json!({"sync_state": c.sync_state.chars().next().map(|ch| ch.to_ascii_uppercase().to_string()),
               "user_name": c.usename, "client_addr": addr, "sent_lsn": c.sent_lsn,
               "flush_lsn": c.flush_lsn, "replay_lsn": c.replay_lsn,
               "sync_priority": c.sync_priority, "application_name": c.application_name})
    }
}

/// The full object for one client.
fn client_json(c: &Sender) -> Value {
    let s = stage(c);
    let mut o = Map::new();
    o.insert("name".into(), json!(s.name));
    o.insert("application_name".into(), json!(c.application_name));
    o.insert("sync_stage".into(), json!(s.stage));
    if let Some(a) = c.client_addr.as_ref().filter(|a| !a.is_empty()) {
        o.insert("communication".into(), json!("TCP/IP"));
        o.insert("ip_address".into(), json!(a));
        o.insert("port".into(), int_or_str(c.client_port.as_ref()));
        o.insert("host".into(), json!(c.client_hostname.clone().filter(|h| !h.is_empty())));
    } else {
        o.insert("communication".into(), json!("Unix domain socket"));
    }
    o.insert("user_name".into(), json!(c.usename));
    o.insert("current_state".into(), json!(c.state));
    o.insert("current_sync_state".into(), json!(c.sync_state));
    if let Some(slot) = c.slot_name.as_ref().filter(|s| !s.is_empty()) {
        o.insert("replication_slot".into(), json!(slot));
    }
    o.insert("wal_sender_pid".into(), int_or_str(c.pid.as_ref()));
    o.insert("started_at".into(), json!(c.backend_start));
    if let Some(x) = c.backend_xmin.as_ref().filter(|x| !x.is_empty()) {
        o.insert("standbys_xmin".into(), json!(x));
    }
    for (k, d) in &s.diffs {
        if let Some(lsn) = lsn_field(c, k) {
            let d = d.unwrap_or(0);
            o.insert(format!("{k}_lsn"), json!(lsn));
            o.insert(format!("{k}_lsn_diff"), json!(pretty_size(d as f64)));
            o.insert(format!("{k}_lsn_diff_bytes"), json!(d));
        }
    }
    Value::Object(o)
}

/// `--target`: which replication clients to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clients {
    /// `hot-standby`: those that replay (`replay_lsn` set).
    HotStandby,
    /// `wal-streamer`: those that only receive WAL.
    WalStreamer,
    /// `all`.
    All,
}

/// The command's flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--minimal`.
    pub minimal: bool,
    /// `--target`.
    pub target: Clients,
    /// `--source wal-host`: connect with `wal_conninfo` (falling back as Barman's
    /// `get_wal_conninfo`: `wal_streaming_conninfo`, then `conninfo`).
    pub wal_host: bool,
}

/// `replication-status [--minimal] [--target T] [--source S] SERVER...|all`.
pub fn run(ctx: &Context, names: &[String], opts: &Options, out: &mut Output) -> Result<(), CmdError> {
    let (minimal, target) = (opts.minimal, opts.target);
    // Barman's get_server_list reports skipped servers in the order they were named, before
    // the others are processed in name order.
    let requested = crate::cmd::list::expand_servers(ctx, names);
    let mut names = Vec::new();
    for name in &requested {
        match ctx.config().server(name) {
            Some(cfg) if !cfg.active => out.info(format!("Skipping inactive server '{name}'")),
            Some(cfg) if cfg.is_passive() => out.info(format!("Skipping passive server '{name}'")),
            _ => names.push(name.clone()),
        }
    }
    names.sort();
    names.dedup();
    let title = match target {
        Clients::HotStandby => "hot standby servers",
        Clients::WalStreamer => "WAL streamers",
        Clients::All => "streaming clients",
    };
    let rt = crate::cmd::sql_runtime().map_err(|e| CmdError::Exception(e.to_string()))?;
    let mut failed = false;
    for name in &names {
        let Some(cfg) = ctx.config_or_report(name, out) else {
            failed = true;
            continue;
        };
        if out.is_json() {
            out.result(name.clone(), json!({}));
        }
        let conninfo = if opts.wal_host {
            cfg.wal_conninfo.as_deref().or(cfg.wal_streaming_conninfo.as_deref()).or(cfg.conninfo.as_deref())
        } else {
            cfg.conninfo.as_deref()
        };
        match rt.block_on(query(conninfo, target)) {
            None => {
                out.error(format!("Unable to connect to server {name}"));
                failed = true;
            }
            Some((lsn, clients)) => {
                if out.is_json() {
                    out.result(name.clone(), json_value(title, minimal, lsn.as_ref(), &clients));
                } else {
                    console(name, title, minimal, lsn.as_ref(), &clients, out);
                }
            }
        }
    }
    if failed {
        return Err(CmdError::Silent(1));
    }
    Ok(())
}
