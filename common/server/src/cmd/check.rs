//! `barman check [--nagios] [--check-timeout S] SERVER...|all`: Barman 3.20.1's checks, in
//! its order, names and hints (`Server.check` and the archivers' and backup manager's
//! `check`), with its console, JSON and Nagios writers. Also the live PostgreSQL status
//! (Barman's `get_remote_status`) that `status` shares.

use std::path::Path;
use std::time::Duration;

use barman_common::catalogue::{
    lock_owner, BackupInfo, BackupStatus, BackupType, Catalogue, LockKind, ServerLayout, XlogDb,
};
use barman_common::config::{BackupMethod, ServerConfig};
use barman_common::pg::{ConnInfo, ReplicationConnection};
use serde_json::{json, Map, Value};

use crate::cmd::show::human_seconds;
use crate::context::Context;
use crate::output::Output;
use crate::walinfo::{pretty_size, wal_info};
use crate::CmdError;

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

fn ctime_text(text: &str) -> Option<String> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.format("%a %b %e %H:%M:%S %Y").to_string())
}

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

async fn query_one(conn: &mut ReplicationConnection, sql: &str) -> Option<Vec<Option<String>>> {
    conn.simple_query(sql).await.ok()?.into_iter().next()
}

async fn value(conn: &mut ReplicationConnection, sql: &str) -> Option<String> {
    query_one(conn, sql).await?.into_iter().next()?
}

fn backup_privileges_query(version: u32) -> String {
    let (start, stop) = if version < 150_000 {
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
    };
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

async fn postgres_status(cfg: &ServerConfig, remote: &mut Remote) {
    let Some(info) = cfg.conninfo.as_deref().and_then(|c| ConnInfo::parse(c).ok()) else { return };
    let Ok(mut conn) = ReplicationConnection::connect_database(&info).await else { return };
    let Some(version) = value(&mut conn, "SELECT version()").await else { return };
    remote.server_txt_version = version.split_whitespace().nth(1).map(str::to_owned);
    remote.server_version = conn.server_version_num().unwrap_or(0);
    let v = remote.server_version;
    remote.has_backup_privileges = if v < 100_000 {
        truthy(value(&mut conn, "SELECT usesuper FROM pg_user WHERE usename = CURRENT_USER").await.as_deref())
    } else {
        truthy(value(&mut conn, &backup_privileges_query(v)).await.as_deref())
    };
    if remote.has_backup_privileges == Some(true) {
        remote.data_directory = value(&mut conn, "SHOW \"data_directory\"").await;
    }
    remote.wal_level = value(&mut conn, "SHOW \"wal_level\"").await;
    remote.is_in_recovery = truthy(value(&mut conn, "SELECT pg_is_in_recovery()").await.as_deref());
    if remote.is_in_recovery == Some(false) {
        if let Some(row) =
            query_one(&mut conn, "SELECT file_name, file_offset FROM pg_walfile_name_offset(pg_current_wal_lsn())")
                .await
        {
            let name = row.first().cloned().flatten();
            let offset = row.get(1).cloned().flatten();
            remote.current_xlog = match (name, offset.as_deref()) {
                (Some(n), Some("0")) if v >= 170_000 => {
                    let seg = value(&mut conn, "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")
                        .await
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(16 << 20);
                    previous_segment(&n, seg).or(Some(n))
                }
                (n, _) => n,
            };
        }
    }
    if remote.has_backup_privileges == Some(true) {
        remote.current_size = value(&mut conn, "SELECT sum(pg_tablespace_size(oid)) FROM pg_tablespace")
            .await
            .and_then(|s| s.parse().ok());
    }
    if let Some(slot) = &cfg.slot_name {
        let sql = format!(
            "SELECT slot_name, active, restart_lsn FROM pg_replication_slots \
             WHERE slot_type = 'physical' AND slot_name = '{}'",
            slot.replace('\'', "''")
        );
        remote.slot = query_one(&mut conn, &sql).await.map(|row| Slot {
            active: row.get(1).cloned().flatten().as_deref() == Some("t"),
            initialised: row.get(2).is_some_and(Option::is_some),
        });
    }
    remote.postgres_systemid = value(&mut conn, "SELECT system_identifier::text FROM pg_control_system()").await;
    if cfg.archiver {
        remote.archive_mode = value(&mut conn, "SHOW \"archive_mode\"").await;
        remote.archive_command = value(&mut conn, "SHOW \"archive_command\"").await;
        remote.archiver = query_one(&mut conn, ARCHIVER_QUERY).await.map(|row| {
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
        });
    }
    conn.close().await;
}

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
        Err(e) => st.connection_error = Some(e.to_string()),
    }
    st
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

/// The catalogue layout of a server (also for disabled ones, which `Context::server` refuses).
pub use crate::context::layout;

/// Barman's `human_readable_timedelta` of a signed number of seconds.
pub fn human_delta(secs: f64) -> String {
    let text = human_seconds(secs);
    if secs < 0.0 {
        format!("{text} ago")
    } else {
        text
    }
}

/// The last available (DONE or WAITING_FOR_WALS) backup.
pub fn last_backup(catalogue: &Catalogue) -> Option<&(barman_common::catalogue::BackupId, BackupInfo)> {
    catalogue.latest()
}

/// DONE backups that are not incremental (minimum redundancy counts these).
pub fn non_incremental_done(catalogue: &Catalogue) -> usize {
    catalogue.with_status(&[BackupStatus::Done]).filter(|(_, i)| i.backup_type() != BackupType::Incremental).count()
}

/// One check result.
#[derive(Debug, Clone)]
struct Check {
    name: String,
    ok: bool,
    hint: Option<String>,
    perfdata: Option<u64>,
}

#[derive(Default)]
struct Checks {
    list: Vec<Check>,
}

impl Checks {
    fn add(&mut self, name: &str, ok: bool, hint: Option<String>) {
        self.list.push(Check { name: name.to_owned(), ok, hint, perfdata: None });
    }
    fn ok(&mut self, name: &str) {
        self.add(name, true, None);
    }
    fn fail(&mut self, name: &str, hint: impl Into<String>) {
        self.add(name, false, Some(hint.into()));
    }
}

/// Files in a WAL queue directory, except `.tmp` and `.partial` ones.
fn queue_len(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                !n.starts_with('.') && !has_suffix(&n, ".tmp") && !has_suffix(&n, ".partial")
            })
            .count()
    })
}

/// Whether one of our helper programs is installed: next to the running `barman`, or on
/// `PATH`.
fn tool_found(name: &str) -> bool {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join(name)));
    beside.is_some_and(|p| p.is_file())
        || std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
}

/// Python's case-sensitive `str.endswith`.
fn has_suffix(name: &str, suffix: &str) -> bool {
    name.as_bytes().ends_with(suffix.as_bytes())
}

/// Barman's `WalArchiver.summarise_error_files`, in directory order.
fn summarise_errors(names: &[String]) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let mut counters: Vec<(&str, usize)> = Vec::new();
    for n in names {
        let kind = if has_suffix(n, ".error") {
            "not relevant"
        } else if has_suffix(n, ".duplicate") {
            "duplicates"
        } else if has_suffix(n, ".unknown") {
            "unknown"
        } else {
            "unknown failure"
        };
        match counters.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, c)) => *c += 1,
            None => counters.push((kind, 1)),
        }
    }
    Some(counters.iter().map(|(k, c)| format!("{k}: {c}")).collect::<Vec<_>>().join(", "))
}

fn server_checks(cfg: &ServerConfig, timeout: Duration) -> Result<Vec<Check>, CmdError> {
    let name = cfg.name();
    let layout = layout(cfg);
    let mut c = Checks::default();
    let catalogue = Catalogue::load(&layout)?;
    let xlogdb_has_data = std::fs::metadata(layout.xlogdb_path()).is_ok_and(|m| m.len() > 0);

    // check_archive
    let waiting = catalogue.with_status(&[BackupStatus::WaitingForWals]).next().is_some();
    // Barman tries an archive-wal here, which does nothing without archivers (passive or
    // inactive servers have none), so only a live server's queues count.
    let live = cfg.active && !cfg.is_passive();
    let queued = live && queue_len(&layout.incoming) + queue_len(&layout.streaming) > 0;
    if !xlogdb_has_data && !waiting && !queued {
        c.fail("WAL archive", "please make sure WAL shipping is setup");
    }
    for (dir, enabled, archiver, label) in [
        (&layout.incoming, cfg.archiver, "archiver", "incoming"),
        (&layout.streaming, cfg.streaming_archiver, "streaming_archiver", "streaming"),
    ] {
        let count = queue_len(dir);
        if !enabled {
            if count > 0 {
                c.fail(
                    &format!("empty {label} directory"),
                    format!("'{}' must be empty when {archiver}=off", dir.display()),
                );
            }
            continue;
        }
        if let Some(max) = cfg.max_incoming_wals_queue {
            if i64::try_from(count).unwrap_or(i64::MAX) > max {
                c.fail(
                    &format!("{label} WALs directory"),
                    format!("there are too many WALs in queue: {count}, max {max}"),
                );
            }
        }
    }

    let remote = remote_status(cfg, timeout);
    if remote.timed_out {
        // Barman's `timeout` aborts the remaining checks.
        c.fail("check timeout", "barman check command timed out");
        return Ok(c.list);
    }
    if live {
        check_postgres(&remote, &mut c);
        // check_wal_streaming: the replication slot
        if let Some(slot_name) = &cfg.slot_name {
            if cfg.streaming_archiver {
                match &remote.slot {
                    None => c.fail(
                        "replication slot",
                        format!(
                            "replication slot '{slot_name}' doesn't exist. Please execute \
                             'barman receive-wal --create-slot {name}'"
                        ),
                    ),
                    Some(s) if !s.initialised => c.fail(
                        "replication slot",
                        format!("slot '{slot_name}' not initialised: is 'receive-wal' running?"),
                    ),
                    Some(s) if !s.active => {
                        c.fail("replication slot", format!("slot '{slot_name}' not active: is 'receive-wal' running?"));
                    }
                    Some(_) => c.ok("replication slot"),
                }
            } else if let Some(s) = remote.slot.as_ref().filter(|s| s.initialised) {
                let state = if s.active { "active" } else { "initialised" };
                c.add(
                    "replication slot",
                    true,
                    Some(format!("WARNING: slot '{slot_name}' is {state} but not required by the current config")),
                );
            }
        }
    }

    // check_directories
    if !cfg.is_disabled() {
        match layout.ensure_dirs() {
            Ok(()) => c.ok("directories"),
            Err(e) => c.fail("directories", e.to_string()),
        }
    }

    // check_retention_policy_settings
    if cfg.retention_policy_invalid.is_some() {
        c.fail("retention policy settings", "see log");
    } else {
        c.ok("retention policy settings");
    }

    // check_backup_validity
    let last = last_backup(&catalogue);
    let now = chrono::Utc::now();
    match cfg.last_backup_maximum_age {
        Some(max) => {
            let interval = human_delta(max.num_milliseconds() as f64 / 1000.0);
            let (ok, age) = match last.and_then(|(_, i)| i.end_time) {
                Some(end) => {
                    let age = now.signed_duration_since(end);
                    (age <= max, human_delta(age.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6))
                }
                None => (false, "No available backups".to_owned()),
            };
            c.add("backup maximum age", ok, Some(format!("interval provided: {interval}, latest backup age: {age}")));
        }
        None => c.add("backup maximum age", true, Some("no last_backup_maximum_age provided".into())),
    }
    let size = last.map_or(0, |(_, i)| i.size.unwrap_or(0));
    match cfg.last_backup_minimum_size {
        Some(min) => {
            let ok = last.is_some() && size >= min;
            let gtlt = if ok { ">" } else { "<" };
            c.list.push(Check {
                name: "backup minimum size".into(),
                ok,
                hint: Some(format!(
                    "last backup size {} {gtlt} {} minimum",
                    pretty_size(size as f64),
                    pretty_size(min as f64)
                )),
                perfdata: Some(size),
            });
        }
        None => c.list.push(Check {
            name: "backup minimum size".into(),
            ok: true,
            hint: Some(pretty_size(size as f64)),
            perfdata: Some(size),
        }),
    }

    // check_wal_validity
    let wi = match last {
        Some((_, info)) => {
            let entries: Vec<_> = XlogDb::open(&layout)?.entries()?.into_iter().map(|(_, e)| e).collect();
            Some(wal_info(info, None, &entries))
        }
        None => None,
    };
    let wal_size = wi.as_ref().map_or(0, |w| w.until_next_size);
    match cfg.last_wal_maximum_age {
        Some(max) => {
            let last_time = wi.as_ref().and_then(|w| w.last.as_ref()).map(|(_, t)| *t);
            match last_time {
                None => c.fail("wal maximum age", "No WAL files archived for last backup"),
                Some(t) => {
                    let age = now.timestamp_micros() as f64 / 1e6 - t;
                    let ok = age <= max.num_milliseconds() as f64 / 1000.0;
                    c.add(
                        "wal maximum age",
                        ok,
                        Some(format!(
                            "interval provided: {}, latest wal age: {}",
                            human_delta(max.num_milliseconds() as f64 / 1000.0),
                            human_delta(age)
                        )),
                    );
                }
            }
        }
        None => c.add("wal maximum age", true, Some("no last_wal_maximum_age provided".into())),
    }
    c.list.push(Check {
        name: "wal size".into(),
        ok: true,
        hint: Some(pretty_size(wal_size as f64)),
        perfdata: Some(wal_size),
    });

    // backup_manager.check
    c.ok("compression settings");
    let failed = catalogue.with_status(&[BackupStatus::Failed]).count();
    c.add("failed backups", failed == 0, Some(format!("there are {failed} failed backups")));
    let n = non_incremental_done(&catalogue);
    c.add(
        "minimum redundancy requirements",
        n >= cfg.minimum_redundancy as usize,
        Some(format!("have {n} non-incremental backups, expected at least {}", cfg.minimum_redundancy)),
    );

    // The backup executor's checks: our `barman-backup` plays pg_basebackup's part.
    if live && cfg.backup_method == BackupMethod::Postgres {
        let found = tool_found("barman-backup");
        c.add("pg_basebackup", found, None);
        if found {
            c.ok("pg_basebackup compatible");
        } else {
            let pg = remote.server_txt_version.as_deref().unwrap_or("Unknown");
            c.fail("pg_basebackup compatible", format!("PostgreSQL version: {pg}, pg_basebackup version: Unknown"));
        }
        if remote.server_txt_version.is_some() {
            if found {
                c.ok("pg_basebackup supports tablespaces mapping");
            } else {
                c.add(
                    "pg_basebackup supports tablespaces mapping",
                    true,
                    Some("pg_basebackup 9.4 or higher is required for tablespaces support".into()),
                );
            }
        }
    }

    // PassiveBackupExecutor.check: the ssh channel to the primary (active servers only).
    if cfg.active {
        if let Some(ssh) = cfg.primary_ssh_command.as_deref() {
            if !check_primary_ssh(cfg, ssh, timeout, &mut c) {
                c.fail("check timeout", "barman check command timed out");
                return Ok(c.list);
            }
        }
    }

    // check_configuration (only shown when failing)
    if cfg.is_disabled() {
        c.add("configuration", false, None);
    }

    // check_identity
    if live {
        check_identity(&layout, &remote, &mut c);
    } else {
        c.add("systemid coherence", true, Some("no system Id available".into()));
    }

    // archivers: streaming first, then file
    if cfg.active && live {
        if cfg.streaming_archiver {
            // Our `barman-receive-wal` plays pg_receivewal's part.
            let found = tool_found("barman-receive-wal");
            c.add("pg_receivexlog", found, None);
            if found {
                c.ok("pg_receivexlog compatible");
            } else {
                let pg = remote.server_txt_version.as_deref().unwrap_or("Unknown");
                c.fail("pg_receivexlog compatible", format!("PostgreSQL version: {pg}, pg_receivexlog version: None"));
            }
            let held = lock_owner(&layout.lock_path(&LockKind::ReceiveWal)).ok().flatten().is_some();
            if held {
                c.ok("receive-wal running");
            } else {
                c.fail("receive-wal running", "See the Barman log file for more details");
            }
        }
        if cfg.archiver {
            check_file_archiver(&remote, &mut c);
        }
    }

    // check_archiver_errors
    let errors: Vec<String> = std::fs::read_dir(&layout.errors)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    c.add("archiver errors", errors.is_empty(), summarise_errors(&errors));
    Ok(c.list)
}

/// Barman's `_parse_ssh_command` + `UnixRemoteCommand(...).cmd("true")`: the first word of
/// the configured command, then its other words and the batch options, each single-quoted,
/// then `'true'`, run through `sh -c` with `path_prefix` before `PATH`.
fn primary_ssh_line(ssh: &str) -> (String, Vec<String>) {
    let mut words = ssh.split_whitespace().map(str::to_owned);
    let program = words.next().unwrap_or_default();
    let mut opts: Vec<String> = words.collect();
    opts.extend(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"].map(str::to_owned));
    (program, opts)
}

/// Python's `shell_quote`.
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

/// The `ssh` check (and a failing `ssh output clean` when the remote printed anything).
/// Returns false when the command outlived `timeout` (Barman's check timeout).
fn check_primary_ssh(cfg: &ServerConfig, ssh: &str, timeout: Duration, c: &mut Checks) -> bool {
    use std::io::Read;
    use std::process::{Command, Stdio};

    let (program, opts) = primary_ssh_line(ssh);
    let mut line = program.clone();
    for arg in opts.iter().map(String::as_str).chain(["true"]) {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    let mut path: Vec<std::path::PathBuf> =
        cfg.path_prefix.as_deref().map(|p| std::env::split_paths(p).collect()).unwrap_or_default();
    if let Some(system) = std::env::var_os("PATH") {
        path.extend(std::env::split_paths(&system));
    }
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(&line).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Ok(joined) = std::env::join_paths(&path) {
        cmd.env("PATH", joined);
    }
    let Ok(mut child) = cmd.spawn() else {
        c.fail("ssh", format!("Unable to execute {program}"));
        return true;
    };
    // Drain both pipes in threads so a chatty remote cannot block on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let Some(status) = status else { return false };
    let printed = !out.join().unwrap_or_default().is_empty() || !err.join().unwrap_or_default().is_empty();
    if status.success() {
        c.add("ssh", true, Some("Barman primary node".into()));
        if printed {
            c.fail("ssh output clean", "the configured ssh_command must not add anything to the remote command output");
        }
    } else {
        // Python's Popen return code: negative signal number when killed.
        let code = status.code().or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            status.signal().map(|s| -s)
        });
        c.fail(
            "ssh",
            format!(
                "Connection failed using '{program} {}' return code {}",
                opts.join(" "),
                code.map_or_else(|| "None".to_owned(), |n| n.to_string())
            ),
        );
    }
    true
}

fn check_postgres(remote: &Remote, c: &mut Checks) {
    if remote.server_txt_version.is_none() {
        c.add("PostgreSQL", false, None);
        return;
    }
    c.ok("PostgreSQL");
    if let Some(priv_ok) = remote.has_backup_privileges {
        if priv_ok {
            c.ok("superuser or standard user with backup privileges");
        } else {
            c.fail(
                "no access to backup functions",
                "privileges for PostgreSQL backup functions are required (see documentation)",
            );
        }
    }
    if let Some(st) = &remote.streaming {
        c.add("PostgreSQL streaming", st.streaming, if st.streaming { None } else { st.connection_error.clone() });
    }
    if let Some(level) = &remote.wal_level {
        if level == "minimal" {
            c.fail("wal_level", "please set it to a higher level than 'minimal'");
        } else {
            c.ok("wal_level");
        }
    }
}

fn check_identity(layout: &ServerLayout, remote: &Remote, c: &mut Checks) {
    const NAME: &str = "systemid coherence";
    let streaming = remote.streaming.as_ref().and_then(|s| s.systemid.clone());
    let postgres = remote.postgres_systemid.clone();
    if let (Some(s), Some(p)) = (&streaming, &postgres) {
        if s != p {
            c.fail(NAME, "is the streaming DSN targeting the same server of the PostgreSQL connection string?");
            return;
        }
    }
    let Some(live) = streaming.or(postgres) else {
        c.add(NAME, true, Some("no system Id available".into()));
        return;
    };
    let path = layout.identity_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        c.add(NAME, true, Some("no system Id stored on disk".into()));
        return;
    };
    let stored = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("systemid").and_then(Value::as_str).map(str::to_owned));
    if stored.as_deref() == Some(live.as_str()) {
        c.ok(NAME);
    } else {
        c.fail(
            NAME,
            format!("the system Id of the connected PostgreSQL server changed, stored in \"{}\"", path.display()),
        );
    }
}

fn check_file_archiver(remote: &Remote, c: &mut Checks) {
    let Some(mode) = &remote.archive_mode else { return };
    if mode == "on" || mode == "always" {
        c.ok("archive_mode");
    } else {
        let mut msg = "please set it to 'on'".to_owned();
        if remote.server_version >= 90_500 {
            msg.push_str(" or 'always'");
        }
        c.fail("archive_mode", msg);
    }
    match remote.archive_command.as_deref() {
        Some(cmd) if !cmd.is_empty() && cmd != "(disabled)" => {
            c.ok("archive_command");
            if let Some(arch) = remote.archiver.as_ref().and_then(|a| a.is_archiving) {
                c.add("continuous archiving", arch, None);
            }
        }
        _ => c.fail("archive_command", "please set it accordingly to documentation"),
    }
}

fn mangle(key: &str) -> String {
    key.to_lowercase().replace([' ', '-'], "_").replace('.', "")
}

/// `check [--nagios] [--check-timeout S] SERVER...|all`.
pub fn run(
    ctx: &Context,
    names: &[String],
    nagios: bool,
    check_timeout: Option<u64>,
    out: &mut Output,
) -> Result<(), CmdError> {
    let names = crate::cmd::sorted_servers(ctx, names);
    let mut all: Vec<(String, bool, Vec<Check>)> = Vec::new();
    let mut failed_active = false;
    let mut unknown = false;
    for name in &names {
        let Some(cfg) = ctx.config().server(name) else {
            out.error(format!("Unknown server '{name}'"));
            unknown = true;
            failed_active = true;
            continue;
        };
        let timeout = Duration::from_secs(check_timeout.unwrap_or(u64::try_from(cfg.check_timeout).unwrap_or(30)));
        let timeout = if timeout.is_zero() { Duration::from_hours(1) } else { timeout };
        let checks = server_checks(cfg, timeout)?;
        if cfg.active && checks.iter().any(|c| !c.ok) {
            failed_active = true;
        }
        if !nagios {
            if out.is_json() {
                let mut map = Map::new();
                for c in &checks {
                    map.insert(
                        mangle(&c.name),
                        json!({"status": if c.ok { "OK" } else { "FAILED" }, "hint": c.hint.clone().unwrap_or_default()}),
                    );
                }
                out.result(name.clone(), Value::Object(map));
                // check_configuration's reason lines are info messages (`_INFO` in JSON).
                if checks.iter().any(|c| c.name == "configuration") {
                    for reason in cfg.disabled_reasons() {
                        out.info(format!("\t\t{reason}"));
                    }
                }
            } else {
                let mut header = name.clone();
                if !cfg.active {
                    header.push_str(" (inactive)");
                } else if cfg.is_disabled() {
                    header.push_str(" (WARNING: disabled)");
                }
                out.line(format!("Server {header}:"));
                for c in &checks {
                    let status = if c.ok { "OK" } else { "FAILED" };
                    match c.hint.as_deref().filter(|h| !h.is_empty()) {
                        Some(h) => out.line(format!("\t{}: {status} ({h})", c.name)),
                        None => out.line(format!("\t{}: {status}", c.name)),
                    }
                    if c.name == "configuration" {
                        for reason in cfg.disabled_reasons() {
                            out.info(format!("\t\t{reason}"));
                        }
                    }
                }
            }
        }
        all.push((name.clone(), cfg.active, checks));
    }
    if nagios {
        let lines = if unknown && all.iter().all(|(_, _, cs)| cs.iter().all(|c| c.ok)) {
            vec!["BARMAN CRITICAL - Global configuration errors".to_owned()]
        } else {
            nagios_lines(&all, failed_active)
        };
        for line in lines {
            println!("{line}");
        }
        return if failed_active { Err(CmdError::Silent(2)) } else { Ok(()) };
    }
    if failed_active {
        return Err(CmdError::Silent(1));
    }
    Ok(())
}

fn nagios_lines(all: &[(String, bool, Vec<Check>)], failed_active: bool) -> Vec<String> {
    let servers: Vec<&str> = all.iter().map(|(n, _, _)| n.as_str()).collect();
    let issues: Vec<&(String, bool, Vec<Check>)> = all.iter().filter(|(_, _, cs)| cs.iter().any(|c| !c.ok)).collect();
    let mut perf = Vec::new();
    for (n, _, cs) in all {
        for c in cs {
            if c.name == "backup minimum size" {
                perf.push(format!("{n}={}B", c.perfdata.unwrap_or(0)));
            }
            if c.name == "wal size" {
                perf.push(format!("{n}_wals={}B", c.perfdata.unwrap_or(0)));
            }
        }
    }
    let perf = if perf.is_empty() { String::new() } else { format!("|{}", perf.join(" ")) };
    let mut lines = Vec::new();
    if !issues.is_empty() && failed_active {
        let summary: Vec<String> = issues
            .iter()
            .map(|(n, _, cs)| {
                let failed: Vec<&str> = cs.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
                format!("{n} FAILED: {}", failed.join(", "))
            })
            .collect();
        if servers.len() == 1 {
            lines.push(format!("BARMAN CRITICAL - server {} has issues * {}{perf}", servers[0], summary.join(" * ")));
        } else {
            lines.push(format!(
                "BARMAN CRITICAL - {} server out of {} have issues * {}{perf}",
                issues.len(),
                servers.len(),
                summary.join(" * ")
            ));
        }
        for (n, _, cs) in &issues {
            for c in cs.iter().filter(|c| !c.ok) {
                match c.hint.as_deref().filter(|h| !h.is_empty()) {
                    Some(h) => lines.push(format!("{n}.{}: FAILED ({h})", c.name)),
                    None => lines.push(format!("{n}.{}: FAILED", c.name)),
                }
            }
        }
    } else {
        let ignoring: String = issues.iter().map(|(n, _, _)| format!(" * IGNORING: {n}")).collect::<Vec<_>>().concat();
        let good: Vec<&str> = servers.iter().copied().filter(|s| !issues.iter().any(|(n, _, _)| n == s)).collect();
        match good.len() {
            0 => lines.push(format!("BARMAN OK - No server configured{ignoring}")),
            1 => lines.push(format!("BARMAN OK - Ready to serve the Espresso backup for {}{ignoring}{perf}", good[0])),
            n => lines.push(format!(
                "BARMAN OK - Ready to serve the Espresso backup for {n} servers * {}{ignoring}{perf}",
                good.join(" * ")
            )),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_summary_like_barman() {
        let names: Vec<String> = ["a.duplicate", "b.unknown", "c.duplicate", "d.error", "e.x"].map(String::from).into();
        assert_eq!(
            summarise_errors(&names).as_deref(),
            Some("duplicates: 2, unknown: 1, not relevant: 1, unknown failure: 1")
        );
        assert_eq!(summarise_errors(&[]), None);
    }

    #[test]
    fn previous_segment_wraps() {
        assert_eq!(previous_segment("000000010000000100000000", 16 << 20).as_deref(), Some("0000000100000000000000FF"));
        assert_eq!(previous_segment("000000010000000000000005", 16 << 20).as_deref(), Some("000000010000000000000004"));
    }

    #[test]
    fn human_delta_like_barman() {
        assert_eq!(human_delta(3600.0), "1 hour");
        assert_eq!(human_delta(90061.5), "1 day, 1 hour, 1 minute, 1 second");
        assert_eq!(human_delta(-120.0), "2 minutes ago");
    }
}
