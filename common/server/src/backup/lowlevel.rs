//! PostgreSQL's non-exclusive low-level backup API on an ordinary SQL session, as Barman's
//! `start_concurrent_backup` / `stop_concurrent_backup` call it: `pg_backup_start(label,
//! fast)` / `pg_backup_stop()` from PostgreSQL 15, `pg_start_backup(label, fast, false)` /
//! `pg_stop_backup(false)` on 13 and 14. The version switch lives here and nowhere else.
//! Both calls must run in the same session, which stays open for the whole copy.

use barman_common::pg::{quote_literal, PgError, ReplicationConnection, Row};
use barman_common::wal::{Lsn, TimelineId};
use chrono::{DateTime, FixedOffset};

/// Which spelling of the API the server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupApi {
    /// PostgreSQL 15+: `pg_backup_start` / `pg_backup_stop`.
    Current,
    /// PostgreSQL 13-14: `pg_start_backup(..., false)` / `pg_stop_backup(false)`.
    Legacy,
}

/// What `pg_backup_start` reports, with the server's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The backup's start position.
    pub lsn: Lsn,
    /// `timeline_id` of the checkpoint it started from.
    pub timeline: TimelineId,
    /// The server's `now()`.
    pub time: Option<DateTime<FixedOffset>>,
}

/// What `pg_backup_stop` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The end position.
    pub lsn: Lsn,
    /// The timeline the end position is on (`min_recovery_end_timeline` on a standby).
    pub timeline: TimelineId,
    /// The `backup_label` file's content.
    pub backup_label: String,
    /// The `tablespace_map` file's content (empty without tablespaces).
    pub tablespace_map: String,
    /// The server's `now()`.
    pub time: Option<DateTime<FixedOffset>>,
}

impl BackupApi {
    /// The API of a server with this `server_version_num`.
    pub fn for_version(version: u32) -> BackupApi {
        if version >= 150_000 {
            BackupApi::Current
        } else {
            BackupApi::Legacy
        }
    }

    /// Starts the backup: `idle_session_timeout` off (PG14+, as Barman: the session idles
    /// through the copy), then the start call.
    pub async fn start(
        self,
        conn: &mut ReplicationConnection,
        version: u32,
        label: &str,
        fast: bool,
    ) -> Result<Started, PgError> {
        if version >= 140_000 {
            conn.simple_query("SET idle_session_timeout TO 0").await?;
        }
        let call = match self {
            BackupApi::Current => format!("pg_backup_start({}, {fast})", quote_literal(label)),
            BackupApi::Legacy => format!("pg_start_backup({}, {fast}, FALSE)", quote_literal(label)),
        };
        let sql = format!(
            "SELECT location, (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline, now() AS timestamp \
             FROM {call} AS location"
        );
        let row = one_row(conn, &sql).await?;
        Ok(Started { lsn: parse(&row, 0, "location")?, timeline: parse(&row, 1, "timeline")?, time: time(&row, 2) })
    }

    /// Stops the backup; PostgreSQL waits for the end WAL to be archived (its default).
    pub async fn stop(self, conn: &mut ReplicationConnection, version: u32) -> Result<Stopped, PgError> {
        if version >= 140_000 {
            conn.simple_query("RESET idle_session_timeout").await?;
        }
        let call = match self {
            BackupApi::Current => "pg_backup_stop()",
            BackupApi::Legacy => "pg_stop_backup(FALSE)",
        };
        let sql = format!(
            "SELECT end_row.lsn AS location, (SELECT CASE WHEN pg_is_in_recovery() THEN min_recovery_end_timeline \
             ELSE timeline_id END FROM pg_control_checkpoint(), pg_control_recovery()) AS timeline, \
             end_row.labelfile AS backup_label, end_row.spcmapfile AS tablespace_map, now() AS timestamp \
             FROM {call} AS end_row"
        );
        let row = one_row(conn, &sql).await?;
        Ok(Stopped {
            lsn: parse(&row, 0, "location")?,
            timeline: parse(&row, 1, "timeline")?,
            backup_label: row.get(2).cloned().flatten().unwrap_or_default(),
            tablespace_map: row.get(3).cloned().flatten().unwrap_or_default(),
            time: time(&row, 4),
        })
    }
}

async fn one_row(conn: &mut ReplicationConnection, sql: &str) -> Result<Row, PgError> {
    conn.simple_query(sql).await?.into_iter().next().ok_or_else(|| PgError::Protocol(format!("no row from {sql}")))
}

fn parse<T: std::str::FromStr>(row: &Row, i: usize, what: &str) -> Result<T, PgError> {
    let text = row.get(i).cloned().flatten().unwrap_or_default();
    text.parse().map_err(|_| PgError::Protocol(format!("invalid {what} \"{text}\"")))
}

/// `now()` as PostgreSQL prints a `timestamptz` (`2026-12-07 18:55:00.123456+00`).
fn time(row: &Row, i: usize) -> Option<DateTime<FixedOffset>> {
    let text = row.get(i).cloned().flatten()?;
    DateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f%#z").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_switch_and_timestamps() {
        assert_eq!(BackupApi::for_version(150_004), BackupApi::Current);
        assert_eq!(BackupApi::for_version(140_010), BackupApi::Legacy);
        let row: Row = vec![Some("2026-12-07 18:55:00.123456+00".into()), Some("2026-12-07 18:55:00+05:30".into())];
        assert_eq!(time(&row, 0).map(|t| t.to_rfc3339()).as_deref(), Some("2026-12-07T18:55:00.123456+00:00"));
        assert_eq!(time(&row, 1).map(|t| t.offset().local_minus_utc()), Some(19_800));
    }
}
