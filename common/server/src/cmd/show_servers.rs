//! `show-servers SERVER...|all` (alias `show-server`): Barman 3.20.1's `Server.show`, the
//! server's configuration dict (`ServerConfig.to_json()`, values as Python holds them), plus
//! `passive_node`, `last_backup_maximum_age` (with the latest backup's age), `active_model`
//! and, for servers that are not passive, the live PostgreSQL status keys. Console: sorted
//! `\t<key>: <str(value)>` lines (passwords redacted line by line, as Barman's console
//! writer does); JSON: `{"<srv>": {"<key>": value, ...}}`.

use std::time::Duration;

use barman_common::catalogue::sync::config_to_json;
use barman_common::catalogue::Catalogue;
use barman_common::config::{OptionValue, ServerConfig};
use barman_common::pg::{ConnInfo, ReplicationConnection};
use serde_json::{Map, Value};

use crate::cmd::check::human_delta;
use crate::cmd::live::{remote_status, Remote};
use crate::context::{layout, Context};
use crate::output::Output;
use crate::CmdError;

/// Python's `str(datetime.timedelta(seconds=secs))`: `1 day, 0:00:00`, `2:30:00`.
pub fn py_timedelta(micros: i64) -> String {
    let (mut days, mut rem) = (micros.div_euclid(86_400_000_000), micros.rem_euclid(86_400_000_000));
    let us = rem % 1_000_000;
    rem /= 1_000_000;
    let mut out = String::new();
    if days != 0 {
        let plural = if days.abs() == 1 { "" } else { "s" };
        out.push_str(&format!("{days} day{plural}, "));
        days = 0;
    }
    let _ = days;
    out.push_str(&format!("{}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60));
    if us != 0 {
        out.push_str(&format!(".{us:06}"));
    }
    out
}

/// Python's `repr()` of a `str`, enough for option names (single quotes).
fn py_str_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Python's `str()` of a JSON-typed value (dicts and lists as their `repr`).
fn py_str(v: &Value, top: bool) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if top => s.clone(),
        Value::String(s) => py_str_repr(s),
        Value::Array(items) => format!("[{}]", items.iter().map(|i| py_str(i, false)).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter().map(|(k, v)| format!("{}: {}", py_str_repr(k), py_str(v, false))).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Barman's `redact_passwords` applied to one printed line (with its newline, which an
/// unquoted password at the end of the line swallows).
pub fn redact(text: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(KEY) {
        out.push_str(&rest[..i + KEY.len()]);
        let after = &rest[i + KEY.len()..];
        let quoted = after.strip_prefix('\'').and_then(|q| q.rfind('\'').filter(|&end| end > 0).map(|end| end + 2));
        let len = quoted.unwrap_or_else(|| after.find([' ', '\'', '"']).unwrap_or(after.len()));
        out.push_str("*REDACTED*");
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

fn set_repr(class: &str, items: &[&str]) -> Value {
    if items.is_empty() {
        Value::String(format!("{class}()"))
    } else {
        let list: Vec<String> = items.iter().map(|i| py_str_repr(i)).collect();
        Value::String(format!("{class}({{{}}})", list.join(", ")))
    }
}

fn config_map(cfg: &ServerConfig) -> Map<String, Value> {
    let Value::Object(mut m) = config_to_json(cfg) else { unreachable!("config_to_json returns an object") };
    let backup: Vec<&str> = cfg.backup_options.iter().map(|o| o.as_str()).collect();
    m.insert("backup_options".into(), set_repr("BackupOptions", &backup));
    let recovery: Vec<&str> = cfg.recovery_options.iter().map(|o| o.as_str()).collect();
    m.insert("recovery_options".into(), set_repr("RecoveryOptions", &recovery));
    let intervals: Vec<(String, i64)> = cfg
        .values()
        .filter_map(|(k, v)| match v {
            OptionValue::Interval(d) => Some((k.to_owned(), d.num_microseconds().unwrap_or(i64::MAX))),
            _ => None,
        })
        .collect();
    for (k, us) in intervals {
        if m.contains_key(&k) {
            m.insert(k, Value::String(py_timedelta(us)));
        }
    }
    m
}

fn last_backup_age(cfg: &ServerConfig) -> Result<String, CmdError> {
    let Some(max) = cfg.last_backup_maximum_age else { return Ok("None".into()) };
    let catalogue = Catalogue::load(&layout(cfg))?;
    let interval = human_delta(max.num_milliseconds() as f64 / 1000.0);
    let (ok, age) = match catalogue.latest().and_then(|(_, i)| i.end_time) {
        Some(end) => {
            let age = chrono::Utc::now().signed_duration_since(end);
            (age <= max, human_delta(age.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6))
        }
        None => (false, "No available backups".to_owned()),
    };
    Ok(if ok {
        format!("{interval} (latest backup: {age} )")
    } else {
        format!("{interval} (WARNING! latest backup is {age} old)")
    })
}

fn remote_map(cfg: &ServerConfig, remote: &Remote, m: &mut Map<String, Value>) {
    let s = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    // Keys Barman sets to None before asking PostgreSQL (dict.fromkeys).
    for key in [
        "data_directory",
        "server_txt_version",
        "is_superuser",
        "is_in_recovery",
        "current_xlog",
        "replication_slot_support",
        "replication_slot",
        "synchronous_standby_names",
        "postgres_systemid",
        "version_supported",
    ] {
        m.insert(key.into(), Value::Null);
    }
    if remote.server_txt_version.is_some() {
        m.insert("server_txt_version".into(), s(&remote.server_txt_version));
        m.insert("is_in_recovery".into(), remote.is_in_recovery.map_or(Value::Null, Value::Bool));
        m.insert("current_xlog".into(), s(&remote.current_xlog));
        m.insert("data_directory".into(), s(&remote.data_directory));
        m.insert("postgres_systemid".into(), s(&remote.postgres_systemid));
        m.insert("wal_level".into(), s(&remote.wal_level));
        m.insert("has_backup_privileges".into(), remote.has_backup_privileges.map_or(Value::Null, Value::Bool));
        // psycopg2 gives sum(bigint) as a Decimal, which both writers print with str().
        let size = remote.current_size.map_or(Value::Null, |size| Value::String(format!("{size:.0}")));
        m.insert("current_size".into(), size);
    }
    if let Some(st) = &remote.streaming {
        for key in ["streaming_supported", "streaming", "streaming_systemid", "timeline", "xlogpos"] {
            m.insert(key.into(), Value::Null);
        }
        m.insert("connection_error".into(), s(&st.connection_error));
        if st.connection_error.is_none() {
            m.insert("streaming".into(), Value::Bool(st.streaming));
            m.insert("streaming_systemid".into(), s(&st.systemid));
            m.insert("streaming_supported".into(), Value::Bool(true));
        }
    }
    if cfg.archiver {
        m.insert("archive_mode".into(), s(&remote.archive_mode));
        m.insert("archive_command".into(), s(&remote.archive_command));
    }
    if cfg.backup_method == barman_common::config::BackupMethod::Postgres {
        let version = remote.server_version;
        pg_basebackup(cfg, if remote.server_txt_version.is_some() { version } else { 0 }, m);
    }
}

fn text(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::String)
}

fn int(v: Option<String>) -> Value {
    v.and_then(|t| t.parse::<i64>().ok()).map_or(Value::Null, Value::from)
}

fn boolean(v: Option<String>) -> Value {
    v.map_or(Value::Null, |t| Value::Bool(t == "t"))
}

/// PostgreSQL's `timestamptz` text as Python's `str(datetime)` (`…+00:00`).
fn py_time(v: Option<String>) -> Value {
    v.map_or(Value::Null, |t| {
        let split = t.rfind(['+', '-']).filter(|&i| i > 10);
        Value::String(match split {
            Some(i) if t.len() - i == 3 => format!("{t}:00"),
            _ => t,
        })
    })
}

async fn rows(conn: &mut ReplicationConnection, sql: &str) -> Vec<Vec<Option<String>>> {
    conn.simple_query(sql).await.unwrap_or_default()
}

async fn one(conn: &mut ReplicationConnection, sql: &str) -> Option<String> {
    rows(conn, sql).await.into_iter().next()?.into_iter().next()?
}

/// The rest of `PostgreSQLConnection.fetch_remote_status` and the archiver's
/// `pg_stat_archiver` keys, and the streaming connection's `IDENTIFY_SYSTEM` answer.
async fn more_remote(cfg: &ServerConfig, m: &mut Map<String, Value>) {
    let Some(info) = cfg.conninfo.as_deref().and_then(|c| ConnInfo::parse(c).ok()) else { return };
    let Ok(mut conn) = ReplicationConnection::connect_database(&info).await else { return };
    let c = &mut conn;
    settings(c, m).await;
    config_files(c, m).await;
    m.insert("replication_slot_support".into(), Value::Bool(true));
    m.insert("replication_slot".into(), Value::Null);
    if let Some(slot) = &cfg.slot_name {
        replication_slot(c, slot, m).await;
    }
    synchronous_standby_names(c, m).await;
    if cfg.archiver {
        archiver_stats(c, m).await;
    }
    conn.close().await;
    if cfg.backup_method == barman_common::config::BackupMethod::Postgres || cfg.streaming_archiver {
        identify_system(cfg, m).await;
    }
}

/// Settings, privileges, the current LSN and the WAL segment size.
async fn settings(c: &mut ReplicationConnection, m: &mut Map<String, Value>) {
    for name in ["hot_standby", "max_wal_senders", "data_checksums", "max_replication_slots", "wal_compression"] {
        m.insert(name.into(), text(one(c, &format!("SHOW \"{name}\"")).await));
    }
    let version = c.server_version_num().unwrap_or(0);
    let keep = if version < 130_000 { "wal_keep_segments" } else { "wal_keep_size" };
    m.insert(keep.into(), text(one(c, &format!("SHOW \"{keep}\"")).await));
    m.insert("is_superuser".into(), boolean(one(c, "SELECT usesuper FROM pg_user WHERE usename = CURRENT_USER").await));
    let monitoring = "SELECT usesuper OR pg_has_role(CURRENT_USER, 'pg_monitor', 'USAGE') OR \
        (pg_has_role(CURRENT_USER, 'pg_read_all_settings', 'USAGE') AND \
        pg_has_role(CURRENT_USER, 'pg_read_all_stats', 'USAGE')) FROM pg_user WHERE usename = CURRENT_USER";
    m.insert("has_monitoring_privileges".into(), boolean(one(c, monitoring).await));
    m.insert("version_supported".into(), Value::Bool(version >= 100_000));
    let lsn =
        "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text";
    m.insert("current_lsn".into(), text(one(c, lsn).await));
    for name in ["archive_timeout", "checkpoint_timeout"] {
        m.insert(name.into(), int(one(c, &format!("SELECT setting FROM pg_settings WHERE name='{name}'")).await));
    }
    let seg = one(
        c,
        "SELECT setting::bigint * (CASE WHEN unit = '8kB' THEN 8192 ELSE 1 END) FROM pg_settings \
        WHERE name = 'wal_segment_size'",
    );
    m.insert("xlog_segment_size".into(), int(seg.await));
}

/// `config_file`, `hba_file`, `ident_file` and the files the configuration includes.
async fn config_files(c: &mut ReplicationConnection, m: &mut Map<String, Value>) {
    for row in
        rows(c, "SELECT name, setting FROM pg_settings WHERE name IN ('config_file', 'hba_file', 'ident_file')").await
    {
        if let (Some(Some(k)), Some(v)) = (row.first(), row.get(1)) {
            m.insert(k.clone(), text(v.clone()));
        }
    }
    let included: Vec<Value> = rows(
        c,
        "SELECT DISTINCT sourcefile AS included_file FROM pg_settings WHERE sourcefile IS NOT NULL \
         AND sourcefile NOT IN (SELECT setting FROM pg_settings WHERE name = 'config_file') ORDER BY 1",
    )
    .await
    .into_iter()
    .filter_map(|r| r.into_iter().next().flatten().map(Value::String))
    .collect();
    if !included.is_empty() {
        m.insert("included_files".into(), Value::Array(included));
    }
}

/// The configured slot as psycopg2's `Record` repr, when it exists.
async fn replication_slot(c: &mut ReplicationConnection, slot: &str, m: &mut Map<String, Value>) {
    let sql = format!(
        "SELECT slot_name, active::text, restart_lsn::text FROM pg_replication_slots \
         WHERE slot_type = 'physical' AND slot_name = '{}'",
        slot.replace('\'', "''")
    );
    if let Some(row) = rows(c, &sql).await.into_iter().next() {
        let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let active = if col(1) == "true" { "True" } else { "False" };
        m.insert(
            "replication_slot".into(),
            Value::String(format!("Record(slot_name='{}', active={active}, restart_lsn='{}')", col(0), col(2))),
        );
    }
}

/// `synchronous_standby_names` as Barman's list of names.
async fn synchronous_standby_names(c: &mut ReplicationConnection, m: &mut Map<String, Value>) {
    let names = one(c, "SHOW \"synchronous_standby_names\"").await.unwrap_or_default();
    let start = names.find('(').map_or(0, |i| i + 1);
    let end = names.rfind(')').unwrap_or(names.len()).max(start);
    let list: Vec<Value> =
        names[start..end].split(',').map(|n| Value::String(n.trim().trim_matches('"').to_owned())).collect();
    m.insert("synchronous_standby_names".into(), Value::Array(list));
}

/// The file archiver's `pg_stat_archiver` keys.
async fn archiver_stats(c: &mut ReplicationConnection, m: &mut Map<String, Value>) {
    let sql = "SELECT archived_count::text, last_archived_wal, last_archived_time::text, failed_count::text, \
        last_failed_wal, last_failed_time::text, stats_reset::text, \
        (current_setting('archive_mode') IN ('on', 'always') AND (last_failed_wal IS NULL \
        OR last_failed_wal LIKE '%.history' AND substring(last_failed_wal from 1 for 8) \
        <= substring(last_archived_wal from 1 for 8) OR last_failed_time <= last_archived_time))::text, \
        (CAST (archived_count AS NUMERIC) / EXTRACT (EPOCH FROM age(now(), stats_reset)))::text \
        FROM pg_stat_archiver";
    let Some(row) = rows(c, sql).await.into_iter().next() else { return };
    let col = |i: usize| row.get(i).cloned().flatten();
    m.insert("archived_count".into(), int(col(0)));
    m.insert("last_archived_wal".into(), text(col(1)));
    m.insert("last_archived_time".into(), py_time(col(2)));
    m.insert("failed_count".into(), int(col(3)));
    m.insert("last_failed_wal".into(), text(col(4)));
    m.insert("last_failed_time".into(), py_time(col(5)));
    m.insert("stats_reset".into(), py_time(col(6)));
    m.insert("is_archiving".into(), col(7).map_or(Value::Null, |t| Value::Bool(t == "true")));
    m.insert("current_archived_wals_per_second".into(), text(col(8)));
}

/// The streaming connection's `IDENTIFY_SYSTEM`: `timeline` and `xlogpos`.
async fn identify_system(cfg: &ServerConfig, m: &mut Map<String, Value>) {
    let text_info = cfg.streaming_conninfo.as_deref().or(cfg.conninfo.as_deref()).unwrap_or_default();
    let Ok(info) = ConnInfo::parse(text_info) else { return };
    let Ok(mut conn) = ReplicationConnection::connect(&info).await else { return };
    if let Ok(id) = conn.identify_system().await {
        m.insert("timeline".into(), Value::from(id.timeline.get()));
        m.insert("xlogpos".into(), Value::String(id.xlogpos.to_string()));
    }
    conn.close().await;
}

/// `PostgresBackupExecutor.fetch_remote_status`: the `pg_basebackup` on the server's path.
fn pg_basebackup(cfg: &ServerConfig, server_version: u32, m: &mut Map<String, Value>) {
    let keys = ["compatible", "installed", "tbls_mapping", "path", "bwlimit", "version"];
    for k in keys {
        m.insert(format!("pg_basebackup_{k}"), Value::Null);
    }
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    if let Some(prefix) = cfg.path_prefix.as_deref() {
        dirs.extend(std::env::split_paths(prefix));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let Some(bin) = dirs.into_iter().map(|d| d.join("pg_basebackup")).find(|p| p.is_file()) else {
        m.insert("pg_basebackup_installed".into(), Value::Bool(false));
        return;
    };
    let out = std::process::Command::new(&bin).arg("--version").output().ok();
    let printed = out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    // Barman drops parenthesised parts and takes the second word.
    let mut cleaned = String::new();
    let mut depth = 0;
    for ch in printed.chars() {
        match ch {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => cleaned.push(ch),
            _ => {}
        }
    }
    let version = cleaned.split_whitespace().nth(1).map(str::to_owned);
    m.insert("pg_basebackup_installed".into(), Value::Bool(true));
    m.insert("pg_basebackup_path".into(), Value::String(bin.display().to_string()));
    m.insert("pg_basebackup_version".into(), text(version.clone()));
    m.insert("pg_basebackup_bwlimit".into(), Value::Bool(true));
    m.insert("pg_basebackup_tbls_mapping".into(), Value::Bool(true));
    let major = version.as_deref().and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    if let Some(major) = major.filter(|_| server_version > 0) {
        m.insert("pg_basebackup_compatible".into(), Value::Bool(major * 10_000 >= server_version / 10_000 * 10_000));
    }
}

/// ` (inactive)` or ` (WARNING: disabled)` after the server's name.
fn suffix(cfg: &ServerConfig) -> Option<&'static str> {
    if !cfg.active {
        Some("(inactive)")
    } else if cfg.is_disabled() {
        Some("(WARNING: disabled)")
    } else {
        None
    }
}

/// Everything `show-servers` prints for one server.
fn server_map(cfg: &ServerConfig) -> Result<Map<String, Value>, CmdError> {
    let mut m = config_map(cfg);
    m.insert("passive_node".into(), Value::Bool(cfg.is_passive()));
    if !cfg.is_passive() {
        let timeout = Duration::from_secs(u64::try_from(cfg.check_timeout).ok().filter(|t| *t > 0).unwrap_or(30));
        remote_map(cfg, &remote_status(cfg, timeout), &mut m);
        if let Ok(rt) = crate::cmd::sql_runtime() {
            let _ = rt.block_on(async { tokio::time::timeout(timeout, more_remote(cfg, &mut m)).await });
        }
    }
    m.insert("last_backup_maximum_age".into(), Value::String(last_backup_age(cfg)?));
    m.insert("active_model".into(), cfg.active_model().map_or(Value::Null, |a| Value::String(a.to_owned())));
    Ok(m)
}

/// `{"description": <suffix>, <key>: <value>…}` (a null never replaces a key already set).
fn write_json(name: &str, suffix: Option<&str>, m: Map<String, Value>, out: &mut Output) {
    let mut obj = Map::new();
    obj.insert("description".into(), suffix.map_or(Value::Null, |s| Value::String(s.to_owned())));
    for (k, v) in m {
        if v.is_null() && obj.contains_key(&k) {
            continue;
        }
        obj.insert(k, v);
    }
    out.result(name.to_owned(), Value::Object(obj));
}

/// `Server NAME[ suffix]:` and sorted `\t<key>: <str(value)>` lines, passwords redacted.
fn write_console(name: &str, suffix: Option<&str>, m: &Map<String, Value>, out: &mut Output) {
    let header = match suffix {
        Some(s) => format!("Server {name} {s}:"),
        None => format!("Server {name}:"),
    };
    let mut text = redact(&format!("{header}\n"));
    let sorted: std::collections::BTreeMap<&String, &Value> = m.iter().collect();
    for (k, v) in sorted {
        text.push_str(&redact(&format!("\t{k}: {}\n", py_str(v, true))));
    }
    text.pop();
    out.info(text);
}

/// `show-servers SERVER...|all`.
pub fn run(ctx: &Context, names: &[String], out: &mut Output) -> Result<(), CmdError> {
    crate::cmd::for_each_server(ctx, names, out, |name, cfg, out| {
        let m = server_map(cfg)?;
        if out.is_json() {
            write_json(name, suffix(cfg), m, out);
        } else {
            write_console(name, suffix(cfg), &m, out);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::{py_timedelta, redact};

    #[test]
    fn timedelta_like_python() {
        assert_eq!(py_timedelta(86_400_000_000), "1 day, 0:00:00");
        assert_eq!(py_timedelta(2 * 3600 * 1_000_000), "2:00:00");
        assert_eq!(py_timedelta(3 * 86_400_000_000 + 61_500_000), "3 days, 0:01:01.500000");
    }

    #[test]
    fn redacts_like_barman() {
        assert_eq!(redact("\tconninfo: host=x password=secret\n"), "\tconninfo: host=x password=*REDACTED*");
        assert_eq!(redact("a password=s b\n"), "a password=*REDACTED* b\n");
        assert_eq!(redact("a password='s x' b\n"), "a password=*REDACTED* b\n");
    }
}
