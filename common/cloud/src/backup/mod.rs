//! `barman-cloud-backup`, as Barman 3.20.1's `CloudBackupUploader`: on an ordinary SQL
//! session to the local PostgreSQL, `pg_backup_start` (label `Barman backup cloud <id>`),
//! backup.info uploaded with status STARTED, the tablespaces (`<oid>.tar`, only their
//! `PG_<major>_*` directory), PGDATA (`data.tar`, Barman's exclusions, `pg_control` last)
//! and the configuration files outside PGDATA read from the local disk and streamed into
//! the bucket ([`crate::upload`]), `pg_backup_stop`, a restore point `barman_<id>`, the
//! backup label appended to `data.tar`, every archive completed, and only then backup.info
//! with status DONE, uploaded last. Any failure uploads backup.info as FAILED with
//! `error=failure <phase> (<first line>)` and exits 1; a killed run leaves STARTED, which
//! no lister takes for a usable backup, and archives whose multipart uploads never
//! completed are not objects at all.

pub mod stats;
pub mod walk;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use barman_common::catalogue::{BackupInfo, BackupStatus};
use barman_common::compress::Codec;
use barman_common::pg::{ConnInfo, ReplicationConnection};
use barman_common::wal::WalFileName;
use barman_server::backup::lowlevel::{BackupApi, Started, Stopped};
use barman_server::backup::metadata::{self, ServerFacts};
use barman_server::backup::rsync_copy::{EXCLUDE_LIST, PGDATA_EXCLUDE_LIST};
use bytes::Bytes;

use crate::error::CloudError;
use crate::layout::ServerKeys;
use crate::log;
use crate::store::{ConnectOptions, Store};
use crate::upload::{Controller, Settings};

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to.
    pub connect: ConnectOptions,
    /// Barman server name (the key prefix; backup.info says `server_name=cloud`, as Barman).
    pub server: String,
    /// `-h`, `-p`, `-U`, `-d` as Barman's `build_conninfo` combines them.
    pub conninfo: String,
    /// Compression of the archives.
    pub compression: Option<Codec>,
    /// `--immediate-checkpoint`.
    pub immediate: bool,
    /// `-S`.
    pub max_archive_size: u64,
    /// `--min-chunk-size`.
    pub min_chunk_size: Option<u64>,
    /// `--max-bandwidth`.
    pub max_bandwidth: Option<u64>,
    /// `-n`.
    pub name: Option<String>,
    /// `--keepalive-interval` (0: off).
    pub keepalive: Duration,
    /// `-t`.
    pub test: bool,
}

/// Barman's `build_conninfo`: `-d` is used whole when it is a conninfo string.
pub fn build_conninfo(host: Option<&str>, port: Option<&str>, user: Option<&str>, dbname: &str) -> String {
    if dbname.is_empty() || dbname.contains('=') {
        return dbname.to_owned();
    }
    let quote = |v: &str| {
        if v.is_empty() {
            "''".to_owned()
        } else if v.chars().any(char::is_whitespace) {
            format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
        } else {
            v.to_owned()
        }
    };
    let parts = [("host", host), ("port", port), ("user", user), ("dbname", Some(dbname))];
    parts
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| format!("{k}={}", quote(v))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The backup in progress.
struct Job<'s> {
    store: &'s Store,
    keys: ServerKeys,
    id: String,
    info: BackupInfo,
    phase: &'static str,
}

impl Job<'_> {
    fn upload_info(&self) -> Result<(), CloudError> {
        let key = self.keys.backup_info(&self.id);
        log::info(&format!("Uploading '{key}'"));
        self.store.put(&key, Bytes::from(self.info.to_text()), None)
    }
}

/// Runs the tool.
pub fn run(opts: &Options) -> Result<(), CloudError> {
    let store = Store::open(&opts.connect)?;
    if opts.test {
        return store.test_connectivity();
    }
    // Parts a killed run of an earlier, no longer STARTED backup left behind.
    crate::catalog::Catalog::new(&store, &opts.server).abort_orphaned_uploads(None)?;
    let info = ConnInfo::parse(&opts.conninfo).map_err(|e| CloudError::General(e.to_string()))?;
    let mut sql = store
        .block_on(ReplicationConnection::connect_database(&info))
        .map_err(|e| CloudError::General(format!("cannot connect to postgres: {e}")))?;
    let facts = store.block_on(metadata::read(&mut sql)).map_err(CloudError::general)?;
    if facts.version < 90_600 {
        return Err(CloudError::General(format!(
            "unsupported PostgresSQL version {}. Expecting 9.6 or above.",
            facts.version
        )));
    }
    let systemid = store.block_on(one_value(&mut sql, "SELECT system_identifier::text FROM pg_control_system()"))?;
    let id = chrono::Local::now().format("%Y%m%dT%H%M%S").to_string();
    let mut job = Job {
        store: &store,
        keys: ServerKeys::new(&store.url, &opts.server),
        id,
        info: BackupInfo::default(),
        phase: "uploading data",
    };
    job.info.server_name = Some("cloud".into());
    job.info.systemid = systemid;
    let result = coordinate(&mut job, &mut sql, &facts, opts);
    if let Err(e) = &result {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("").to_owned();
        job.info.status = BackupStatus::Failed;
        job.info.error = Some(format!("failure {} ({first})", job.phase));
        log::error(&format!("Backup failed {} ({first})", job.phase));
    }
    job.info.backup_name.clone_from(&opts.name);
    job.phase = "uploading backup.info file";
    job.upload_info()?;
    store.block_on(sql.close());
    result.map_err(|e| CloudError::Failed(e.to_string()))?;
    log::info(&format!(
        "Backup end at LSN: {} ({}, {:08X})",
        job.info.end_xlog.map(|l| l.to_string()).unwrap_or_default(),
        job.info.end_wal.as_ref().map(WalFileName::as_str).unwrap_or_default(),
        job.info.end_offset.unwrap_or(0)
    ));
    Ok(())
}

async fn one_value(sql: &mut ReplicationConnection, q: &str) -> Result<Option<String>, CloudError> {
    let rows = sql.simple_query(q).await.map_err(CloudError::general)?;
    Ok(rows.into_iter().next().and_then(|r| r.into_iter().next().flatten()))
}

/// `coordinate_backup`: start, STARTED backup.info, copy, stop, restore point, label,
/// completion, DONE.
fn coordinate(
    job: &mut Job<'_>,
    sql: &mut ReplicationConnection,
    facts: &ServerFacts,
    opts: &Options,
) -> Result<(), CloudError> {
    let copy_start = chrono::Local::now();
    let clock = Instant::now();
    let api = BackupApi::for_version(facts.version);
    let label = format!("Barman backup cloud {}", job.id);
    log::info(&format!("Starting backup '{}'", job.id));
    facts.fill(&mut job.info);
    let started =
        job.store.block_on(api.start(sql, facts.version, &label, opts.immediate)).map_err(CloudError::general)?;
    record_start(&mut job.info, &started, facts);
    job.upload_info()?;
    let settings = Settings::new(
        job.store.provider,
        opts.compression,
        opts.max_archive_size,
        opts.min_chunk_size,
        opts.max_bandwidth,
    );
    let mut ctl = Controller::new(job.store, job.keys.clone(), &job.id, settings);
    let mut keepalive = KeepAlive { every: opts.keepalive, last: Instant::now() };
    copy_data(&mut ctl, facts, sql, &mut keepalive, job.store)?;
    copy_config(&mut ctl, facts)?;
    let stopped = job.store.block_on(api.stop(sql, facts.version)).map_err(CloudError::general)?;
    record_stop(&mut job.info, &stopped, facts);
    let restore_point = format!("SELECT pg_create_restore_point('barman_{}')", job.id);
    job.store.block_on(sql.simple_query(&restore_point)).map_err(CloudError::general)?;
    let gid = std::fs::metadata(&facts.pgdata).map_or(0, |m| u64::from(m.gid()));
    ctl.add_bytes("data", "backup_label", stopped.backup_label.as_bytes(), 0o644, gid)?;
    log::info("Marking all the uploaded archives as 'completed'");
    let archives = ctl.close()?;
    job.info.copy_stats = Some(stats::copy_stats(&archives, copy_start, clock.elapsed(), opts.connect.jobs));
    job.info.status = BackupStatus::Done;
    Ok(())
}

struct KeepAlive {
    every: Duration,
    last: Instant,
}

impl KeepAlive {
    /// Barman's `PostgresKeepAlive`: a trivial query when the session has been idle for
    /// `--keepalive-interval`, so a NAT or load balancer does not drop it mid-copy.
    fn tick(&mut self, sql: &mut ReplicationConnection, store: &Store) -> Result<(), CloudError> {
        if !self.every.is_zero() && self.last.elapsed() >= self.every {
            store.block_on(sql.simple_query("SELECT 1")).map_err(|e| {
                CloudError::General(format!("Connection to the Postgres server was lost during the backup. ({e})"))
            })?;
            self.last = Instant::now();
        }
        Ok(())
    }
}

fn record_start(info: &mut BackupInfo, s: &Started, facts: &ServerFacts) {
    let size = facts.segment_size;
    info.status = BackupStatus::Started;
    info.begin_time = Some(s.time.unwrap_or_else(|| chrono::Local::now().fixed_offset()));
    info.begin_xlog = Some(s.lsn);
    info.timeline = Some(s.timeline);
    info.begin_wal = Some(WalFileName::containing(s.timeline, s.lsn, size));
    info.begin_offset = Some(s.lsn.as_u64() % u64::from(size.bytes()));
}

fn record_stop(info: &mut BackupInfo, s: &Stopped, facts: &ServerFacts) {
    let size = facts.segment_size;
    info.end_time = Some(s.time.unwrap_or_else(|| chrono::Local::now().fixed_offset()));
    info.end_xlog = Some(s.lsn);
    info.end_wal = Some(WalFileName::containing(s.timeline, s.lsn, size));
    info.end_offset = Some(s.lsn.as_u64() % u64::from(size.bytes()));
    info.backup_label = Some(s.backup_label.clone());
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// `_backup_data_files`: tablespaces, PGDATA, then `pg_control`.
fn copy_data(
    ctl: &mut Controller<'_>,
    facts: &ServerFacts,
    sql: &mut ReplicationConnection,
    ka: &mut KeepAlive,
    store: &Store,
) -> Result<(), CloudError> {
    let mut pgdata_exclude = owned(&PGDATA_EXCLUDE_LIST);
    pgdata_exclude.extend(owned(&EXCLUDE_LIST));
    let major = facts.version / 10_000;
    for ts in &facts.tablespaces {
        if let Some(inside) = ts.location.strip_prefix(&format!("{}/", facts.pgdata)) {
            pgdata_exclude.push(format!("/{inside}"));
        }
        pgdata_exclude.push(format!("/pg_tblspc/{}", ts.oid));
        let mut exclude = owned(&["/*"]);
        exclude.extend(owned(&EXCLUDE_LIST));
        let include = vec![format!("/PG_{major}_*")];
        log::info(&format!("Uploading '{}' directory '{}' as '{}.tar'", ts.name, ts.location, ts.oid));
        for e in walk::walk(Path::new(&ts.location), &exclude, &include) {
            ctl.add_path(&ts.oid.to_string(), &e.src, &e.arcname)?;
            ka.tick(sql, store)?;
        }
    }
    let pgdata =
        std::fs::canonicalize(&facts.pgdata).map_err(|e| CloudError::General(format!("{}: {e}", facts.pgdata)))?;
    log::info(&format!("Uploading 'pgdata' directory '{}' as 'data.tar'", facts.pgdata));
    for e in walk::walk(&pgdata, &pgdata_exclude, &[]) {
        ctl.add_path("data", &e.src, &e.arcname)?;
        ka.tick(sql, store)?;
    }
    ctl.add_path("data", &pgdata.join("global/pg_control"), "global/pg_control")
}

/// `_backup_config_files`: configuration files outside PGDATA go to the root of `data.tar`.
fn copy_config(ctl: &mut Controller<'_>, facts: &ServerFacts) -> Result<(), CloudError> {
    let inside = |p: &str| p.starts_with(&format!("{}/", facts.pgdata));
    for (kind, path) in
        [("config_file", &facts.config_file), ("hba_file", &facts.hba_file), ("ident_file", &facts.ident_file)]
    {
        if inside(path) {
            continue;
        }
        let src = Path::new(path);
        if kind == "ident_file" && !src.exists() {
            continue;
        }
        let name = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        ctl.add_path("data", src, &name)?;
    }
    let outside: Vec<&String> = facts.included_files.iter().filter(|f| !inside(f)).collect();
    if !outside.is_empty() {
        let list: Vec<&str> = outside.iter().map(|s| s.as_str()).collect();
        log::warning(&format!(
            "The usage of include directives is not supported for files that reside outside PGDATA.\nPlease manually backup the following files:\n\t{}\n",
            list.join("\n\t")
        ));
    }
    Ok(())
}
