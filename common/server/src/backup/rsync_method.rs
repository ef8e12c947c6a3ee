//! `backup_method = rsync` and `local-rsync`, as Barman 3.20.1's `RsyncBackupExecutor` with
//! the concurrent strategy: on the ordinary SQL session, `pg_backup_start` ([`lowlevel`]),
//! the copy ([`rsync_copy`]: tablespaces, PGDATA, `pg_control`, configuration files outside
//! PGDATA) while the session is kept alive, `pg_backup_stop`, whose `backup_label` and
//! `tablespace_map` are written into the backup's PGDATA, and a WAL switch on a primary.
//! backup.info gets `mode = rsync-concurrent` and the copy controller's `copy_stats`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use barman_common::catalogue::{BackupInfo, BackupStatus, Catalogue};
use barman_common::config::{ReuseBackup, ServerConfig};
use barman_common::pg::{ConnInfo, ReplicationConnection};
use barman_common::wal::{WalFileName, WalSegSize};

use super::copy;
use super::error::ToolError;
use super::job::{absolute, now, Job};
use super::lowlevel::{BackupApi, Started, Stopped};
use super::metadata::ServerFacts;
use super::rsync_copy::{Controller, DirItem, FileItem, Outcome, EXCLUDE_LIST, PGDATA_EXCLUDE_LIST};
use super::standby::WalSwitcher;
use super::summary::human_duration;
use crate::output::Output;
use crate::rsync::{local_dir, Rsync};

/// The rsync method's settings (`rsync` or `local-rsync`), resolved from the configuration
/// and the command line.
#[derive(Debug, Clone)]
pub struct RsyncSettings {
    /// `ssh_command`; `None` for `local-rsync`.
    pub ssh_command: Option<String>,
    /// `parallel_jobs` / `--jobs`.
    pub workers: usize,
    /// `parallel_jobs_start_batch_size` / `_period`.
    pub start_batch: (usize, Duration),
    /// `network_compression`.
    pub compress: bool,
    /// `bandwidth_limit` / `--bwlimit` (KiB/s).
    pub bwlimit: Option<u64>,
    /// `tablespace_bandwidth_limit`.
    pub tablespace_bwlimit: BTreeMap<String, i64>,
    /// `reuse_backup` / `--reuse-backup`.
    pub reuse: ReuseBackup,
    /// `keepalive_interval` (0: none).
    pub keepalive: Duration,
    /// `basebackup_retry_times` / `_sleep`, per rsync bucket.
    pub retry: (u32, Duration),
    /// `autogenerate_manifest` / `--manifest`: a `backup_manifest` is written once the
    /// copy is complete.
    pub manifest: bool,
}

impl RsyncSettings {
    /// From the server's configuration; `opts` fields override.
    pub fn from_config(cfg: &ServerConfig, local: bool) -> RsyncSettings {
        let positive = |v: i64| u64::try_from(v).ok().filter(|&v| v > 0);
        RsyncSettings {
            ssh_command: if local { None } else { cfg.ssh_command.clone() },
            workers: usize::try_from(cfg.parallel_jobs).unwrap_or(1).max(1),
            start_batch: (
                usize::try_from(cfg.parallel_jobs_start_batch_size).unwrap_or(0),
                Duration::from_secs(positive(cfg.parallel_jobs_start_batch_period).unwrap_or(1)),
            ),
            compress: cfg.network_compression,
            bwlimit: cfg.bandwidth_limit.and_then(positive),
            tablespace_bwlimit: cfg.tablespace_bandwidth_limit.clone(),
            reuse: cfg.reuse_backup.unwrap_or(ReuseBackup::Off),
            keepalive: Duration::from_secs(positive(cfg.keepalive_interval).unwrap_or(0)),
            retry: (
                u32::try_from(cfg.basebackup_retry_times).unwrap_or(0),
                Duration::from_secs(positive(cfg.basebackup_retry_sleep).unwrap_or(0)),
            ),
            manifest: cfg.autogenerate_manifest(),
        }
    }

    fn via(&self) -> &'static str {
        if self.ssh_command.is_some() {
            "rsync/SSH"
        } else {
            "local rsync"
        }
    }
}

/// The backup proper, between the server facts and the restore point.
pub(super) async fn take(
    job: &mut Job<'_>,
    sql: &mut ReplicationConnection,
    rs: &RsyncSettings,
    fast: bool,
    facts: &ServerFacts,
    primary: Option<&(ConnInfo, Duration)>,
    out: &mut Output,
) -> Result<(), ToolError> {
    let api = BackupApi::for_version(facts.version);
    job.phase = "issuing start backup command";
    let label = format!("Barman backup {} {}", job.layout.name, job.id);
    let started = api.start(sql, facts.version, &label, fast).await.map_err(|e| job.fail(&e.to_string()))?;
    record_start(&mut job.info, &started, facts.segment_size);
    job.save().map_err(|e| job.fail(&e))?;
    if let (Some(wal), Some(off)) = (&job.info.begin_wal, job.info.begin_offset) {
        out.info(format!("Backup start at LSN: {} ({wal}, {off:08X})", started.lsn));
    }

    job.phase = "copying files";
    let jobs = if rs.workers > 1 { format!(" ({} jobs)", rs.workers) } else { String::new() };
    out.info(format!("Starting backup copy via {} for {}{jobs}", rs.via(), job.id));
    let copy_started = Instant::now();
    let (controller, dirs, files) = plan(job, rs, facts);
    let outcome = copy_keeping_alive(sql, rs.keepalive, controller, dirs, files).await;
    let outcome = outcome.map_err(|e| job.fail(&format!("data transfer failure: {e}")))?;
    out.info(format!("Copy done (time: {})", human_duration(copy_started.elapsed())));
    report_reuse(&outcome);
    warn_included_files(facts, out);

    job.phase = "issuing stop backup command (native concurrent)";
    out.info("Asking PostgreSQL server to finalize the backup.");
    let switcher = primary.and_then(|(p, t)| WalSwitcher::start(Some(p), *t));
    let stopped = api.stop(sql, facts.version).await;
    if let Some(s) = switcher {
        s.finish().await;
    }
    let stopped = stopped.map_err(|e| job.fail(&e.to_string()))?;
    job.phase = "writing backup label";
    write_label(&copy::data_dir(&job.dir), &stopped).map_err(|e| job.fail(&e))?;
    record_stop(&mut job.info, &stopped, facts.segment_size);
    job.info.copy_stats = Some(outcome.copy_stats);
    switch_wal(sql).await;
    if rs.manifest {
        job.phase = "generating the backup manifest";
        write_manifest(&copy::data_dir(&job.dir)).map_err(|e| job.fail(&e))?;
        out.info(format!(
            "Backup manifest for backup '{}' successfully generated for server {}",
            job.id, job.layout.name
        ));
    }
    Ok(())
}

/// `autogenerate_manifest`: Barman's `backup_manifest` of the copied data directory
/// (SHA256 of every file, `backup_label` included), replacing one the copy brought along.
fn write_manifest(data: &Path) -> Result<(), String> {
    let text = crate::cmd::generate_manifest::manifest_text(data).map_err(|e| format!("backup_manifest: {e}"))?;
    std::fs::write(data.join("backup_manifest"), text).map_err(|e| format!("backup_manifest: {e}"))
}

/// `backup_label` (and `tablespace_map` when the server has tablespaces) into PGDATA.
fn write_label(data: &Path, stopped: &Stopped) -> Result<(), String> {
    let write = |name: &str, text: &str| std::fs::write(data.join(name), text).map_err(|e| format!("{name}: {e}"));
    write("backup_label", &stopped.backup_label)?;
    if !stopped.tablespace_map.is_empty() {
        write("tablespace_map", &stopped.tablespace_map)?;
    }
    Ok(())
}

/// Barman asks for a WAL switch after the stop, so the end segment is archived soon
/// (skipped on a standby).
async fn switch_wal(sql: &mut ReplicationConnection) {
    let sql_text = "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_switch_wal() END";
    if let Err(e) = sql.simple_query(sql_text).await {
        tracing::warn!("Error issuing pg_switch_wal(): {e}");
    }
}

fn record_start(info: &mut BackupInfo, s: &Started, size: WalSegSize) {
    info.status = BackupStatus::Started;
    info.begin_time = Some(s.time.unwrap_or_else(now));
    info.begin_xlog = Some(s.lsn);
    info.timeline = Some(s.timeline);
    info.begin_wal = Some(WalFileName::containing(s.timeline, s.lsn, size));
    info.begin_offset = Some(s.lsn.as_u64() % u64::from(size.bytes()));
}

/// As Barman's `location_to_xlogfile_name_offset`: the segment holding the end position.
fn record_stop(info: &mut BackupInfo, s: &Stopped, size: WalSegSize) {
    info.end_time = Some(s.time.unwrap_or_else(now));
    info.end_xlog = Some(s.lsn);
    info.end_wal = Some(WalFileName::containing(s.timeline, s.lsn, size));
    info.end_offset = Some(s.lsn.as_u64() % u64::from(size.bytes()));
    info.backup_label = Some(s.backup_label.clone());
}

/// The previous available backup, whose start is the safe horizon and whose files are reused.
fn previous(job: &Job<'_>) -> Option<(PathBuf, BackupInfo)> {
    let catalogue = Catalogue::load(job.layout).ok()?;
    let (id, info) = catalogue.available().rev().find(|(id, _)| *id < job.id)?;
    Some((absolute(&job.layout.backup_dir(id)), info.clone()))
}

/// The items to copy, in Barman's order, and the controller that copies them.
fn plan(job: &Job<'_>, rs: &RsyncSettings, facts: &ServerFacts) -> (Controller, Vec<DirItem>, Vec<FileItem>) {
    let previous = previous(job);
    let reuse_dir = |sub: &str| {
        let dir = previous.as_ref()?.0.join(sub);
        (rs.reuse != ReuseBackup::Off && dir.is_dir()).then_some(dir)
    };
    let pgdata = facts.pgdata.trim_end_matches('/');
    let mut dirs = Vec::new();
    let mut protect = Vec::new();
    for t in &facts.tablespaces {
        if let Some(inside) = t.location.strip_prefix(&format!("{pgdata}/")) {
            protect.push(format!("/{inside}"));
        }
        protect.push(format!("/pg_tblspc/{}", t.oid));
        let mut filters = vec![format!("--include=/PG_{}_*", facts.version / 10_000), "--exclude=/*".into()];
        filters.extend(EXCLUDE_LIST.iter().map(|p| format!("--exclude={p}")));
        let bw = rs.tablespace_bwlimit.get(&t.name).and_then(|&b| u64::try_from(b).ok()).or(rs.bwlimit);
        dirs.push(DirItem {
            label: t.name.clone(),
            src: t.location.clone(),
            dst: job.dir.join(t.oid.to_string()),
            filters,
            reuse: reuse_dir(&t.oid.to_string()),
            bwlimit: bw.filter(|&b| b > 0),
        });
    }
    let mut filters: Vec<String> =
        PGDATA_EXCLUDE_LIST.iter().chain(EXCLUDE_LIST.iter()).map(|p| format!("--exclude={p}")).collect();
    filters.extend(protect.iter().map(|p| format!("--exclude={p}")));
    let data = copy::data_dir(&job.dir);
    dirs.push(DirItem {
        label: "pgdata".into(),
        src: pgdata.to_owned(),
        dst: data.clone(),
        filters,
        reuse: reuse_dir("data"),
        bwlimit: rs.bwlimit,
    });
    let mut files = vec![FileItem {
        label: "pg_control".into(),
        src: format!("{pgdata}/global/pg_control"),
        dst: data.join("global/pg_control").display().to_string(),
        optional: false,
    }];
    for (label, path) in
        [("config_file", &facts.config_file), ("hba_file", &facts.hba_file), ("ident_file", &facts.ident_file)]
    {
        if !path.starts_with(&format!("{pgdata}/")) {
            files.push(FileItem {
                label: label.into(),
                src: path.clone(),
                dst: local_dir(&data),
                optional: label == "ident_file",
            });
        }
    }
    let controller = Controller {
        rsync: Rsync { ssh_command: rs.ssh_command.clone(), bwlimit: rs.bwlimit, compress: rs.compress },
        workers: rs.workers,
        start_batch: rs.start_batch,
        link: rs.reuse == ReuseBackup::Link,
        safe_horizon: previous.and_then(|(_, i)| i.begin_time).map(|t| t.with_timezone(&chrono::Local).naive_local()),
        retry: rs.retry,
        push: false,
        compare_dst: false,
    };
    (controller, dirs, files)
}

/// Runs the copy on the blocking pool while the SQL session sends `SELECT 1` every
/// `keepalive` (Barman's `PostgresKeepAlive`), so that a firewall never drops the session
/// that must call `pg_backup_stop`.
async fn copy_keeping_alive(
    sql: &mut ReplicationConnection,
    keepalive: Duration,
    controller: Controller,
    dirs: Vec<DirItem>,
    files: Vec<FileItem>,
) -> Result<Outcome, String> {
    let mut task = tokio::task::spawn_blocking(move || controller.copy(&dirs, &files));
    let period = if keepalive.is_zero() { Duration::from_hours(1) } else { keepalive };
    loop {
        tokio::select! {
            joined = &mut task => return joined.map_err(|e| format!("copy task: {e}"))?,
            () = tokio::time::sleep(period) => {
                if !keepalive.is_zero() {
                    sql.simple_query("SELECT 1").await.map_err(|e| format!("Connection to the Postgres server was lost during the backup: {e}"))?;
                }
            }
        }
    }
}

fn report_reuse(outcome: &Outcome) {
    crate::log::info(
        "barman.backup_executor",
        &format!(
            "rsync: {} files listed, {} transferred, {} bytes received",
            outcome.files, outcome.stats.files_transferred, outcome.stats.bytes_received
        ),
    );
}

/// Barman's warning for `include`d configuration files outside PGDATA.
fn warn_included_files(facts: &ServerFacts, out: &mut Output) {
    let pgdata = format!("{}/", facts.pgdata.trim_end_matches('/'));
    let outside: Vec<&String> = facts.included_files.iter().filter(|f| !f.starts_with(&pgdata)).collect();
    if !outside.is_empty() {
        let list: Vec<&str> = outside.iter().map(|s| s.as_str()).collect();
        out.warning(format!(
            "The usage of include directives is not supported for files that reside outside PGDATA.\n\
             Please manually backup the following files:\n\t{}\n",
            list.join("\n\t")
        ));
    }
}
