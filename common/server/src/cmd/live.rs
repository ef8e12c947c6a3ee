//! The live PostgreSQL status (Barman's `get_remote_status`): what `check`, `status` and
//! `show-servers` learn from the server's `conninfo` and streaming connection, within the
//! check timeout. Also the small query helpers and WAL-name arithmetic `switch-wal` shares.

use std::time::Duration;

use barman_common::config::{BackupMethod, ServerConfig};
use barman_common::pg::{ConnInfo, ReplicationConnection};

/// A physical replication slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// `active`.
    pub active: bool,
    /// `restart_lsn` is set.
    pub initialised: bool,
}

/// `pg_stat_archiver`, with Barman's derived `is_archiving` and rate.
#[derive(Debug, Clone, Default)]
pub struct ArchiverStats {
    /// Barman's `is_archiving` expression.
    pub is_archiving: Option<bool>,
    /// Archived WALs per second since the stats reset.
    pub wals_per_second: Option<f64>,
    /// `last_archived_wal`.
    pub last_archived_wal: Option<String>,
    /// `last_archived_time`, as Python's `ctime()` in the session time zone.
    pub last_archived_time: Option<String>,
    /// `failed_count`.
    pub failed_count: Option<i64>,
    /// `last_failed_wal`.
    pub last_failed_wal: Option<String>,
    /// `last_failed_time`, `ctime()`.
    pub last_failed_time: Option<String>,
}

/// The streaming connection's status (Barman's `StreamingConnection.get_remote_status`).
#[derive(Debug, Clone, Default)]
pub struct StreamingStatus {
    /// `IDENTIFY_SYSTEM` worked.
    pub streaming: bool,
    /// Why connecting failed.
    pub connection_error: Option<String>,
    /// The system identifier it reported.
    pub systemid: Option<String>,
}

/// What Barman's `get_remote_status` gathers from PostgreSQL (`None` = unknown).
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// `version()`'s version token; `None` when PostgreSQL is unreachable.
    pub server_txt_version: Option<String>,
    /// `server_version_num`.
    pub server_version: u32,
    /// Superuser, or the grants Barman needs for backups.
    pub has_backup_privileges: Option<bool>,
    /// Without them, the grants the user lacks (`EXECUTE on pg_switch_wal()`, `role
    /// pg_read_all_stats (or pg_monitor)`), so `check` can name them.
    pub missing_backup_privileges: Vec<String>,
    /// `wal_level`.
    pub wal_level: Option<String>,
    /// `pg_is_in_recovery()`.
    pub is_in_recovery: Option<bool>,
    /// The current WAL file (primary only).
    pub current_xlog: Option<String>,
    /// Sum of the tablespace sizes.
    pub current_size: Option<f64>,
    /// `data_directory` (needs backup privileges).
    pub data_directory: Option<String>,
    /// `pg_control_system()`'s system identifier.
    pub postgres_systemid: Option<String>,
    /// The configured slot, when `slot_name` is set and it exists.
    pub slot: Option<Slot>,
    /// `archive_mode`.
    pub archive_mode: Option<String>,
    /// `archive_command`.
    pub archive_command: Option<String>,
    /// `pg_stat_archiver`.
    pub archiver: Option<ArchiverStats>,
    /// The streaming connection, when Barman opens one (backup_method postgres or
    /// streaming_archiver).
    pub streaming: Option<StreamingStatus>,
    /// Gathering the PostgreSQL status hit the check timeout.
    pub timed_out: bool,
}

impl Remote {
    /// The streaming connection works, or none is opened. Barman learns the server version
    /// its tools are compared with over that connection: without it they are not
    /// "compatible".
    pub fn streaming_works(&self) -> bool {
        self.streaming.as_ref().is_none_or(|st| st.streaming)
    }

    /// The server version as Barman's compatibility hints print it: `None` when the
    /// streaming connection failed, `Unknown` when PostgreSQL is unreachable.
    pub fn streaming_version_text(&self) -> &str {
        if self.streaming_works() {
            self.server_txt_version.as_deref().unwrap_or("Unknown")
        } else {
            "None"
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` as Python's `ctime()`.
fn ctime_text(text: &str) -> Option<String> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.format("%a %b %e %H:%M:%S %Y").to_string())
}

/// PostgreSQL's boolean text (`t`/`f`).
fn truthy(v: Option<&str>) -> Option<bool> {
    v.map(|s| s == "t")
}

/// The WAL file before `name` (Barman's `previous_segment_name`).
pub fn previous_segment(name: &str, seg_size: u64) -> Option<String> {
    let size = barman_common::wal::WalSegSize::new(seg_size).ok()?;
    let wal: barman_common::wal::WalFileName =
        name.parse().ok().filter(|w: &barman_common::wal::WalFileName| w.is_segment())?;
    wal.previous_segment(size).ok().flatten().map(|w| w.to_string())
}

/// The first row `sql` returns, if it worked.
pub async fn query_one(conn: &mut ReplicationConnection, sql: &str) -> Option<Vec<Option<String>>> {
    conn.simple_query(sql).await.ok()?.into_iter().next()
}

/// The first column of the first row `sql` returns, if it worked and is not NULL.
pub async fn value(conn: &mut ReplicationConnection, sql: &str) -> Option<String> {
    query_one(conn, sql).await?.into_iter().next()?
}

/// The segment before `name`, using the server's `wal_segment_size` (16 MiB when it cannot
/// be read); `name` itself when it has none. PostgreSQL 17 names the next segment at a
/// segment boundary, where older versions named the one just closed.
pub async fn segment_before(conn: &mut ReplicationConnection, name: String) -> String {
    let seg = value(conn, "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")
        .await
        .and_then(|s| s.parse().ok())
        .unwrap_or(16 << 20);
    previous_segment(&name, seg).unwrap_or(name)
}

/// The backup start and stop functions' EXECUTE tests for `version`.
fn start_stop_checks(version: u32) -> (&'static str, &'static str) {
    if version < 150_000 {
        (
            "has_function_privilege(CURRENT_USER, 'pg_start_backup(text,bool,bool)', 'EXECUTE')",
            "has_function_privilege(CURRENT_USER, 'pg_stop_backup()', 'EXECUTE') OR \
             has_function_privilege(CURRENT_USER, 'pg_stop_backup(bool,bool)', 'EXECUTE')",
        )
    } else {
        (
            "has_function_privilege(CURRENT_USER, 'pg_backup_start(text,bool)', 'EXECUTE')",
            "has_function_privilege(CURRENT_USER, 'pg_backup_stop(bool)', 'EXECUTE')",
        )
    }
}

/// One row per grant of Barman's backup privileges query the current user lacks, named
/// as the manual's `GRANT` lines name them (Barman's own check only says "see
/// documentation").
fn missing_privileges_query(version: u32) -> String {
    let (start, stop) = start_stop_checks(version);
    let (start_name, stop_name) = if version < 150_000 {
        ("pg_start_backup(text,bool,bool)", "pg_stop_backup() or pg_stop_backup(bool,bool)")
    } else {
        ("pg_backup_start(text,bool)", "pg_backup_stop(bool)")
    };
    let monitor = "pg_has_role(CURRENT_USER, 'pg_monitor', 'USAGE')";
    format!(
        "SELECT m FROM (VALUES \
         (1, NOT ({monitor} OR pg_has_role(CURRENT_USER, 'pg_read_all_settings', 'USAGE')), \
             'role pg_read_all_settings (or pg_monitor)'), \
         (2, NOT ({monitor} OR pg_has_role(CURRENT_USER, 'pg_read_all_stats', 'USAGE')), \
             'role pg_read_all_stats (or pg_monitor)'), \
         (3, NOT ({start}), 'EXECUTE on {start_name}'), \
         (4, NOT ({stop}), 'EXECUTE on {stop_name}'), \
         (5, NOT has_function_privilege(CURRENT_USER, 'pg_switch_wal()', 'EXECUTE'), \
             'EXECUTE on pg_switch_wal()'), \
         (6, NOT has_function_privilege(CURRENT_USER, 'pg_create_restore_point(text)', 'EXECUTE'), \
             'EXECUTE on pg_create_restore_point(text)')) AS g(n, missing, m) \
         WHERE missing ORDER BY n"
    )
}

fn backup_privileges_query(version: u32) -> String {
    let (start, stop) = start_stop_checks(version);
    format!(
        "SELECT usesuper OR ((pg_has_role(CURRENT_USER, 'pg_monitor', 'USAGE') OR \
         (pg_has_role(CURRENT_USER, 'pg_read_all_settings', 'USAGE') AND \
         pg_has_role(CURRENT_USER, 'pg_read_all_stats', 'USAGE'))) AND ({start}) AND ({stop}) \
         AND has_function_privilege(CURRENT_USER, 'pg_switch_wal()', 'EXECUTE') \
         AND has_function_privilege(CURRENT_USER, 'pg_create_restore_point(text)', 'EXECUTE')) \
         FROM pg_user WHERE usename = CURRENT_USER"
    )
}

const ARCHIVER_QUERY: &str = "SELECT last_archived_wal, \
     to_char(last_archived_time, 'YYYY-MM-DD HH24:MI:SS'), failed_count, last_failed_wal, \
     to_char(last_failed_time, 'YYYY-MM-DD HH24:MI:SS'), \
     current_setting('archive_mode') IN ('on', 'always') AND (last_failed_wal IS NULL \
     OR last_failed_wal LIKE '%.history' AND substring(last_failed_wal from 1 for 8) \
     <= substring(last_archived_wal from 1 for 8) OR last_failed_time <= last_archived_time), \
     CAST (archived_count AS NUMERIC) / EXTRACT (EPOCH FROM age(now(), stats_reset)) \
     FROM pg_stat_archiver";

/// Superuser, or (from PostgreSQL 10) the grants Barman needs for backups.
async fn backup_privileges(conn: &mut ReplicationConnection, version: u32) -> Option<bool> {
    if version < 100_000 {
        truthy(value(conn, "SELECT usesuper FROM pg_user WHERE usename = CURRENT_USER").await.as_deref())
    } else {
        truthy(value(conn, &backup_privileges_query(version)).await.as_deref())
    }
}

/// The grants [`missing_privileges_query`] finds missing (empty when it cannot tell).
async fn missing_privileges(conn: &mut ReplicationConnection, version: u32) -> Vec<String> {
    let rows = conn.simple_query(&missing_privileges_query(version)).await.unwrap_or_default();
    rows.into_iter().filter_map(|row| row.into_iter().next().flatten()).collect()
}

/// The WAL file being written (PostgreSQL 17+: the one just closed at a segment boundary,
/// as Barman reports it).
async fn current_xlog(conn: &mut ReplicationConnection, version: u32) -> Option<String> {
    let row =
        query_one(conn, "SELECT file_name, file_offset FROM pg_walfile_name_offset(pg_current_wal_lsn())").await?;
    let name = row.first().cloned().flatten();
    let offset = row.get(1).cloned().flatten();
    match (name, offset.as_deref()) {
        (Some(n), Some("0")) if version >= 170_000 => Some(segment_before(conn, n).await),
        (n, _) => n,
    }
}

/// The configured physical replication slot, when it exists.
async fn slot(conn: &mut ReplicationConnection, slot_name: &str) -> Option<Slot> {
    let sql = format!(
        "SELECT slot_name, active, restart_lsn FROM pg_replication_slots \
         WHERE slot_type = 'physical' AND slot_name = '{}'",
        slot_name.replace('\'', "''")
    );
    query_one(conn, &sql).await.map(|row| Slot {
        active: row.get(1).cloned().flatten().as_deref() == Some("t"),
        initialised: row.get(2).is_some_and(Option::is_some),
    })
}

/// `pg_stat_archiver` with Barman's derived columns.
async fn archiver_stats(conn: &mut ReplicationConnection) -> Option<ArchiverStats> {
    query_one(conn, ARCHIVER_QUERY).await.map(|row| {
        let col = |i: usize| row.get(i).cloned().flatten();
        ArchiverStats {
            last_archived_wal: col(0),
            last_archived_time: col(1).as_deref().and_then(ctime_text),
            failed_count: col(2).and_then(|s| s.parse().ok()),
            last_failed_wal: col(3),
            last_failed_time: col(4).as_deref().and_then(ctime_text),
            is_archiving: truthy(col(5).as_deref()),
            wals_per_second: col(6).and_then(|s| s.parse().ok()),
        }
    })
}

/// `PostgreSQLConnection.get_remote_status` (and the file archiver's part), filling
/// `remote` as far as it gets before the caller's timeout.
async fn postgres_status(cfg: &ServerConfig, remote: &mut Remote) {
    let Some(info) = cfg.conninfo.as_deref().and_then(|c| ConnInfo::parse(c).ok()) else { return };
    let mut conn = match ReplicationConnection::connect_database(&info).await {
        Ok(conn) => conn,
        Err(e) => return status_error(&e),
    };
    let Some(version) = value(&mut conn, "SELECT version()").await else { return };
    remote.server_txt_version = version.split_whitespace().nth(1).map(str::to_owned);
    remote.server_version = conn.server_version_num().unwrap_or(0);
    let v = remote.server_version;
    remote.has_backup_privileges = backup_privileges(&mut conn, v).await;
    if remote.has_backup_privileges == Some(false) && v >= 100_000 {
        remote.missing_backup_privileges = missing_privileges(&mut conn, v).await;
    }
    if remote.has_backup_privileges == Some(true) {
        remote.data_directory = value(&mut conn, "SHOW \"data_directory\"").await;
    }
    remote.wal_level = value(&mut conn, "SHOW \"wal_level\"").await;
    remote.is_in_recovery = truthy(value(&mut conn, "SELECT pg_is_in_recovery()").await.as_deref());
    if remote.is_in_recovery == Some(false) {
        remote.current_xlog = current_xlog(&mut conn, v).await;
    }
    if remote.has_backup_privileges == Some(true) {
        remote.current_size = value(&mut conn, "SELECT sum(pg_tablespace_size(oid)) FROM pg_tablespace")
            .await
            .and_then(|s| s.parse().ok());
    }
    if let Some(name) = &cfg.slot_name {
        remote.slot = slot(&mut conn, name).await;
    }
    remote.postgres_systemid = value(&mut conn, "SELECT system_identifier::text FROM pg_control_system()").await;
    if cfg.archiver {
        remote.archive_mode = value(&mut conn, "SHOW \"archive_mode\"").await;
        remote.archive_command = value(&mut conn, "SHOW \"archive_command\"").await;
        remote.archiver = archiver_stats(&mut conn).await;
    }
    conn.close().await;
}

/// `IDENTIFY_SYSTEM` over the streaming connection (`streaming_conninfo`, else `conninfo`).
async fn streaming_status(cfg: &ServerConfig) -> StreamingStatus {
    let mut st = StreamingStatus::default();
    let text = cfg.streaming_conninfo.as_deref().or(cfg.conninfo.as_deref()).unwrap_or_default();
    let result = async {
        let info = ConnInfo::parse(text)?;
        let mut conn = ReplicationConnection::connect(&info).await?;
        let id = conn.identify_system().await;
        conn.close().await;
        id
    }
    .await;
    match result {
        Ok(id) => {
            st.streaming = true;
            st.systemid = Some(id.system_id.to_string());
        }
        Err(e) => {
            status_error(&e);
            st.connection_error = Some(e.to_string());
        }
    }
    st
}

/// Barman's log line when PostgreSQL cannot be asked for its status.
fn status_error(e: &barman_common::pg::PgError) {
    let msg = format!("Error retrieving PostgreSQL status: {}", e.libpq_text());
    crate::log::write(crate::log::Level::Warning, "postgres", &msg);
}

/// Whether physical slot `slot_name` exists, asked over `conninfo` as Barman does
/// (`get_replication_slot`); `None` when PostgreSQL cannot be asked. The streamer answers
/// this itself from PostgreSQL 15 on (`READ_REPLICATION_SLOT`); before 15 a physical
/// replication connection runs no SQL, so this is how `create_slot = auto` works there.
pub fn slot_exists(cfg: &ServerConfig, slot_name: &str) -> Option<bool> {
    let info = ConnInfo::parse(cfg.conninfo.as_deref()?).ok()?;
    let sql = format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'physical' AND slot_name = {}",
        barman_common::pg::quote_literal(slot_name)
    );
    crate::cmd::sql_runtime().ok()?.block_on(async {
        let mut conn = ReplicationConnection::connect_database(&info).await.ok()?;
        let count = value(&mut conn, &sql).await;
        conn.close().await;
        Some(count? != "0")
    })
}

/// Barman's `get_remote_status` for `cfg` (nothing for passive or inactive servers), within
/// `limit`.
pub fn remote_status(cfg: &ServerConfig, limit: Duration) -> Remote {
    let mut remote = Remote::default();
    if !cfg.active || cfg.is_passive() {
        return remote;
    }
    let Ok(rt) = crate::cmd::sql_runtime() else { return remote };
    rt.block_on(async {
        if tokio::time::timeout(limit, postgres_status(cfg, &mut remote)).await.is_err() {
            remote.timed_out = true;
        }
        if cfg.backup_method == BackupMethod::Postgres || cfg.streaming_archiver {
            let st = tokio::time::timeout(limit, streaming_status(cfg)).await.unwrap_or_else(|_| StreamingStatus {
                connection_error: Some("timeout expired".into()),
                ..StreamingStatus::default()
            });
            remote.streaming = Some(st);
        }
    });
    remote
}

#[cfg(test)]
mod tests {
    use super::previous_segment;

    #[test]
    fn previous_segment_wraps() {
        assert_eq!(previous_segment("000000010000000100000000", 16 << 20).as_deref(), Some("0000000100000000000000FF"));
        assert_eq!(previous_segment("000000010000000000000005", 16 << 20).as_deref(), Some("000000010000000000000004"));
    }
}
