//! `barman-backup`: takes a base backup of one Barman server with the replication
//! protocol's `BASE_BACKUP` (what Barman's `backup_method = postgres` does with
//! `pg_basebackup --wal-method=none`), into a catalogue Barman 3.20.1 reads: plain, or tar
//! files compressed here or by the server as `backup_compression*` say ([`storage`]).
//! PostgreSQL 15+ gets the option syntax; 12-14 the legacy one (13+ for the manifest).
//!
//! Under the server's `.<srv>-backup.lock`: identity.json on the first backup; backup.info
//! saved EMPTY, the pre-backup hook scripts, STARTED once the server reports the start
//! position, the copy into `base/<id>/` (see [`copy`]; retried `basebackup_retry_times`
//! times from scratch), a restore point `barman_<id>`, everything fsynced, then
//! WAITING_FOR_WALS, and DONE once every WAL segment from begin_wal to end_wal is archived
//! (after one archiver pass, with `--wait` after as many as needed, or later by
//! `barman cron`); after a first backup the older WAL is removed. The post-backup scripts
//! run whatever happened. Any failure after the backup directory exists marks it FAILED
//! with `error=failure <phase> (<first line>)`.
#![forbid(unsafe_code)]

pub mod copy;
mod encrypt;
mod error;
mod incremental;
mod job;
pub mod lowlevel;
pub mod metadata;
mod options;
mod orphans;
pub mod rsync_copy;
pub mod rsync_method;
mod settings;
mod standby;
pub mod storage;
mod summary;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cmd::check_backup::{self, WalVerdict};
use crate::context::Context;
use crate::hooks::HookEnv;
use crate::output::Output;
use crate::server::Server;
use barman_common::catalogue::{BackupId, BackupInfo, BackupStatus, Identity, LockKind, PyValue, ServerLayout};
use barman_common::config::HookEvent;
use barman_common::gpg::Encryption;
use barman_common::pg::{BaseBackupOptions, BaseBackupStart, PgError, ReplicationConnection};
use barman_common::wal::{Lsn, SegNo, TimelineId, WalFileName, WalSegSize};

pub use error::ToolError;
use job::{absolute, now, Job};
pub use options::Options;
use settings::{Method, Settings};
use storage::Format;
use summary::{human_duration, human_size, report};

/// Runs the tool: one backup of `opts.server`.
pub fn run(opts: &Options) -> Result<(), ToolError> {
    let mut out = Output::new(opts.json, opts.quiet);
    out.set_logger("backup");
    let result = run_with(opts, &mut out);
    if let Err(e) = &result {
        if out.is_json() {
            out.error(e.to_string());
        }
    }
    out.close();
    result
}

fn run_with(opts: &Options, out: &mut Output) -> Result<(), ToolError> {
    let ctx = Context::load(opts.config.as_deref(), out).map_err(|e| ToolError::Usage(e.to_string()))?;
    let server = ctx.server(&opts.server).map_err(|e| ToolError::Usage(e.to_string()))?;
    let cfg = ctx
        .config()
        .server(&opts.server)
        .ok_or_else(|| ToolError::Usage(format!("Unknown server '{}'", opts.server)))?;
    let settings = Settings::new(cfg, opts)?;
    let parent = opts.incremental.as_deref().map(|spec| incremental::resolve(&server.layout, spec)).transpose()?;
    let lock = server.try_lock(&LockKind::Backup, "backup").map_err(|e| ToolError::Failed(e.to_string()))?;
    orphans::fail_orphans(&server.layout);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ToolError::Internal(format!("tokio runtime: {e}")))?;
    let result = runtime.block_on(backup(&server, &settings, opts, parent, out));
    drop(lock);
    let (id, info) = result?;
    report(out, &id, &info);
    Ok(())
}

fn connect_error(what: &str, e: &PgError) -> ToolError {
    ToolError::Connect(format!("cannot connect to PostgreSQL ({what}): {e}"))
}

/// The sessions a backup holds: the SQL one, and for the postgres method the replication
/// one that streams `BASE_BACKUP`.
struct Sessions {
    sql: ReplicationConnection,
    repl: Option<ReplicationConnection>,
    system_id: u64,
}

/// Opens the sessions and checks the server before anything is written.
async fn connect(layout: &ServerLayout, settings: &Settings) -> Result<Sessions, ToolError> {
    let mut sql =
        ReplicationConnection::connect_database(&settings.conninfo).await.map_err(|e| connect_error("conninfo", &e))?;
    let (repl, system_id, version) = match settings.method {
        Method::Postgres => {
            let mut repl = ReplicationConnection::connect(&settings.streaming)
                .await
                .map_err(|e| connect_error("streaming_conninfo", &e))?;
            let identity = repl.identify_system().await.map_err(|e| connect_error("IDENTIFY_SYSTEM", &e))?;
            let version = repl.server_version_num().unwrap_or(0);
            (Some(repl), identity.system_id, version)
        }
        Method::Rsync(_) => {
            let rows = sql
                .simple_query("SELECT system_identifier FROM pg_control_system()")
                .await
                .map_err(|e| connect_error("pg_control_system()", &e))?;
            let id = rows.first().and_then(|r| r.first().cloned().flatten()).and_then(|v| v.parse().ok());
            (None, id.unwrap_or(0), sql.server_version_num().unwrap_or(0))
        }
    };
    let min = if matches!(settings.method, Method::Postgres) { 120_000 } else { 130_000 };
    if version < min {
        return Err(ToolError::Failed(format!(
            "PostgreSQL {version} is not supported: this backup method needs PostgreSQL {} or newer",
            min / 10_000
        )));
    }
    if version < 150_000 && settings.storage.server.is_some() {
        return Err(ToolError::Usage("backup_compression_location = server requires PostgreSQL 15 or greater".into()));
    }
    let catalogue_err = |e: barman_common::catalogue::CatalogueError| ToolError::Failed(e.to_string());
    if let Some(known) = Identity::read(layout).map_err(catalogue_err)? {
        if known.systemid != system_id.to_string() {
            return Err(ToolError::Failed(format!(
                "systemid mismatch: the server reports {} but {} holds {} (a different cluster?)",
                system_id,
                layout.identity_path().display(),
                known.systemid
            )));
        }
    }
    Ok(Sessions { sql, repl, system_id })
}

/// A new backup id (local time); waits for the next second if that directory exists.
fn new_backup_id(layout: &ServerLayout) -> BackupId {
    loop {
        let id = BackupId::now_local();
        if !layout.backup_dir(&id).exists() && !layout.backup_info_path(&id).exists() {
            return id;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn backup(
    server: &Server,
    settings: &Settings,
    opts: &Options,
    parent: Option<(BackupId, BackupInfo)>,
    out: &mut Output,
) -> Result<(BackupId, BackupInfo), ToolError> {
    let layout = &server.layout;
    let mut sessions = connect(layout, settings).await?;
    let parent = match parent {
        Some(p) => Some(incremental::validate(&mut sessions.sql, &settings.method, layout, p).await?),
        None => None,
    };
    layout.ensure_dirs().map_err(|e| ToolError::Failed(e.to_string()))?;
    let started = Instant::now();
    let id = new_backup_id(layout);
    let dir = absolute(&layout.backup_dir(&id));
    let mut info = BackupInfo {
        server_name: Some(server.name.clone()),
        backup_name: opts.name.clone(),
        systemid: Some(sessions.system_id.to_string()),
        mode: Some(settings.method.mode().into()),
        compression: settings.storage.recorded_compression(),
        parent_backup_id: parent.clone(),
        ..BackupInfo::default()
    };
    info.status = BackupStatus::Empty;
    let mut job = Job { layout, id, dir, info, phase: "creating the backup directory", fs_sync: None };
    std::fs::create_dir_all(&job.dir).map_err(|e| job.fail(&e.to_string()))?;
    job.fs_sync = Some(copy::FilesystemSync::begin(&job.dir).map_err(|e| job.fail(&e.to_string()))?);
    job.save().map_err(|e| job.fail(&e))?;
    out.info(format!(
        "Starting backup using {} method for server {} in {}",
        settings.method.name(),
        server.name,
        job.dir.display()
    ));

    let result = take(&mut job, server, sessions, settings, opts, out, started).await;
    if let Some(parent) = &parent {
        // Whatever the outcome, as Barman: failed children are found through their parent.
        if let Err(e) = incremental::link_child(layout, parent, &job.id) {
            out.warning(format!("could not record {} as a child of {parent}: {e}", job.id));
        }
        if result.is_ok() && !incremental::checksum_consistent(layout, &job.info) {
            out.warning(CHECKSUM_WARNING);
        }
    }
    // Barman runs the post-backup scripts whatever happened, with the final backup.info.
    if server.hooks.any(HookEvent::Backup) {
        let env = hook_env(&job);
        server.hooks.post(HookEvent::Backup, &env, &env);
    }
    result.map(|()| (job.id, job.info))
}

/// Barman's warning after an incremental backup whose chain mixes checksum settings.
const CHECKSUM_WARNING: &str = "This is an incremental backup taken with `data_checksums = on` whereas some previous \
     backups in the chain were taken with `data_checksums = off`. This can lead to potential recovery issues. \
     Consider taking a new full backup to avoid having inconsistent backup chains.";

/// `BARMAN_*` variables of the backup hooks for the backup as it stands.
fn hook_env(job: &Job<'_>) -> HookEnv {
    let previous = barman_common::catalogue::Catalogue::load(job.layout)
        .ok()
        .and_then(|c| c.available().rev().map(|(id, _)| id.clone()).find(|id| *id < job.id));
    HookEnv::backup(job.layout, &job.id, &job.info, previous.as_ref(), None)
}

/// Everything between the pre and post hooks: metadata, copy (with retries), restore point,
/// finalisation and the WAL check.
async fn take(
    job: &mut Job<'_>,
    server: &Server,
    Sessions { mut sql, repl, system_id }: Sessions,
    settings: &Settings,
    opts: &Options,
    out: &mut Output,
    started: Instant,
) -> Result<(), ToolError> {
    job.phase = "running the pre-backup scripts";
    if server.hooks.any(HookEvent::Backup) {
        server.hooks.pre(HookEvent::Backup, &hook_env(job)).map_err(|a| job.fail(&a.to_string()))?;
    }

    job.phase = if repl.is_some() { "initialising postgres backup_method" } else { "detecting data directory" };
    let facts = metadata::read(&mut sql).await.map_err(|e| job.fail(&e.to_string()))?;
    facts.fill(&mut job.info);
    if let Err(e) = Identity::new(system_id, facts.version).write_if_missing(job.layout) {
        return Err(job.fail(&e.to_string()));
    }

    let primary = standby_primary(&mut sql, settings, out).await;
    let mut sql = match (&settings.method, repl) {
        (Method::Rsync(rs), _) => {
            let taken = rsync_method::take(job, &mut sql, rs, settings.fast_checkpoint, &facts, primary, out).await;
            if let Err(e) = taken {
                sql.close().await;
                return Err(e);
            }
            sql
        }
        (Method::Postgres, Some(repl)) => {
            copy_with_retries(job, sql, repl, settings, (&facts, primary), opts, out).await?
        }
        (Method::Postgres, None) => return Err(job.fail("no replication session")),
    };
    create_restore_point(&mut sql, &job.id).await;
    sql.close().await;

    job.phase = "finalising the backup";
    if settings.reuse_link && settings.storage.format == Format::Plain && settings.method == Method::Postgres {
        reuse_previous(job, out).map_err(|e| job.fail(&e))?;
    }
    finalise(job, settings, started, out).map_err(|e| job.fail(&e))?;
    report_completion(job, started, out);

    job.phase = "checking the WAL files";
    wal_phase(job, server, opts, out)?;
    remove_wal_before_first(job, server, settings, out)
}

/// `primary_conninfo` with `primary_checkpoint_timeout` when the server backed up is a
/// standby; Barman's warning when it is set for a primary.
async fn standby_primary<'s>(
    sql: &mut ReplicationConnection,
    settings: &'s Settings,
    out: &mut Output,
) -> Option<&'s (barman_common::pg::ConnInfo, Duration)> {
    let primary = settings.primary.as_ref()?;
    if standby::in_recovery(sql).await {
        return Some(primary);
    }
    out.warning(
        "'primary_conninfo' is set but 'conninfo' does not point to a standby server. Ignoring 'primary_conninfo'.",
    );
    None
}

/// The copy, retried `basebackup_retry_times` times from scratch on a new replication
/// connection; both connections are closed when it finally fails, the SQL one is handed
/// back when it succeeds.
async fn copy_with_retries(
    job: &mut Job<'_>,
    sql: ReplicationConnection,
    mut repl: ReplicationConnection,
    settings: &Settings,
    (facts, primary): (&metadata::ServerFacts, Option<&(barman_common::pg::ConnInfo, Duration)>),
    opts: &Options,
    out: &mut Output,
) -> Result<ReplicationConnection, ToolError> {
    let mut attempt = 0;
    loop {
        let switcher = primary.and_then(|(p, t)| standby::WalSwitcher::start(Some(p), *t));
        let copied = copy_phase(job, &mut repl, settings, facts, opts, out).await;
        if let Some(s) = switcher {
            s.finish().await;
        }
        match copied {
            Ok(()) => break,
            Err(message) if attempt < settings.retry_times => {
                attempt += 1;
                tracing::warn!("backup copy attempt {attempt} failed: {message}");
                out.warning(format!("Failure executing a backup using BASE_BACKUP (attempt {attempt}): {message}"));
                out.warning(format!(
                    "The files copied so far will be removed and the backup process will restart in {} seconds",
                    settings.retry_sleep.as_secs()
                ));
                repl.close().await;
                clear_dir(&job.dir).map_err(|e| job.fail(&e.to_string()))?;
                tokio::time::sleep(settings.retry_sleep).await;
                job.phase = "reconnecting for a new attempt";
                repl = match ReplicationConnection::connect(&settings.streaming).await {
                    Ok(conn) => conn,
                    Err(e) => return Err(job.fail(&e.to_string())),
                };
            }
            Err(message) => {
                repl.close().await;
                sql.close().await;
                return Err(job.fail(&message));
            }
        }
    }
    repl.close().await;
    Ok(sql)
}

/// Barman creates a restore point named after the backup (a primary only; failures are
/// only logged, as the function needs privileges a backup user may lack).
async fn create_restore_point(sql: &mut ReplicationConnection, id: &BackupId) {
    let point = format!("barman_{id}");
    let in_recovery = sql
        .simple_query("SELECT pg_is_in_recovery()")
        .await
        .ok()
        .and_then(|rows| rows.into_iter().next().and_then(|r| r.into_iter().next()).flatten());
    if in_recovery.as_deref() == Some("f") {
        if let Err(e) = sql.simple_query(&format!("SELECT pg_create_restore_point('{point}')")).await {
            tracing::warn!("Error issuing CREATE RESTORE POINT(): {e}");
        }
    }
}

/// Barman's closing lines: size, end position, times.
fn report_completion(job: &Job<'_>, started: Instant, out: &mut Output) {
    out.info(format!("Backup size: {}", human_size(job.info.size.unwrap_or(0))));
    if let (Some(end), Some(wal), Some(off)) = (job.info.end_xlog, &job.info.end_wal, job.info.end_offset) {
        out.info(format!("Backup end at LSN: {end} ({wal}, {off:08X})"));
    }
    out.info(format!(
        "Backup completed (start time: {}, elapsed time: {})",
        job.info.begin_time.map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()).unwrap_or_default(),
        human_duration(started.elapsed())
    ));
}

/// Barman's first backup: the WAL archived before it can never be used, so it goes.
fn remove_wal_before_first(
    job: &Job<'_>,
    server: &Server,
    settings: &Settings,
    out: &mut Output,
) -> Result<(), ToolError> {
    let catalogue =
        barman_common::catalogue::Catalogue::load(job.layout).map_err(|e| ToolError::Failed(e.to_string()))?;
    if !settings.worm_mode && !catalogue.available().any(|(id, _)| *id < job.id) {
        let removed = crate::cmd::delete::remove_wal_before_first_backup(server, &job.info, settings.wal_window, out)
            .map_err(|e| ToolError::Failed(format!("removing the WAL files before the first backup: {e}")))?;
        if !removed.is_empty() {
            tracing::info!("removed {} WAL files older than the first backup {}", removed.len(), job.id);
        }
    }
    Ok(())
}

/// Empties `dir` (a failed attempt's files) and keeps the directory.
fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// One copy attempt: BASE_BACKUP and the stream into the backup directory. Errors are
/// returned as text; the caller retries or marks the backup FAILED (in `job.phase`).
async fn copy_phase(
    job: &mut Job<'_>,
    repl: &mut ReplicationConnection,
    settings: &Settings,
    facts: &metadata::ServerFacts,
    opts: &Options,
    out: &mut Output,
) -> Result<(), String> {
    let segment_size = facts.segment_size;
    job.phase = "issuing start backup command";
    let storage = &settings.storage;
    let options = BaseBackupOptions {
        label: format!("barman-backup {}", job.id),
        fast_checkpoint: settings.fast_checkpoint,
        max_rate_kbps: settings.max_rate_kbps,
        tablespace_map: storage.format == Format::Tar,
        compression: storage.server_method().map(str::to_owned),
        compression_detail: storage.server_detail.clone(),
        // Backup manifests exist from PostgreSQL 13 on.
        manifest: facts.version >= 130_000,
        incremental: job.info.parent_backup_id.is_some(),
        ..BaseBackupOptions::default()
    };
    if let Some(parent) = &job.info.parent_backup_id {
        job.phase = "uploading the parent's backup manifest";
        let manifest = incremental::read_manifest(job.layout, parent)?;
        repl.upload_manifest(&manifest).await.map_err(|e| e.to_string())?;
        job.phase = "issuing start backup command";
    }
    job.info.begin_time = Some(now());
    let (start, mut stream) = repl.base_backup(&options).await.map_err(|e| e.to_string())?;
    record_start(&mut job.info, &start, segment_size);
    job.save()?;
    if let (Some(wal), Some(off)) = (&job.info.begin_wal, job.info.begin_offset) {
        out.info(format!("Backup start at LSN: {} ({wal}, {off:08X})", start.start_lsn));
    }
    out.info(format!("Starting backup copy via BASE_BACKUP for {}", job.id));

    job.phase = "copying files";
    let copy_started = Instant::now();
    let copied = copy::receive(&mut stream, &start, &job.dir, storage, !opts.quiet && !opts.json).await;
    let copied = copied.map_err(|e| e.to_string())?;
    if !copied.manifest && facts.version >= 130_000 {
        return Err("the server sent no backup manifest".into());
    }
    let copy_time = copy_started.elapsed();
    out.info(format!("Copy done (time: {})", human_duration(copy_time)));
    record_end(&mut job.info, copied.end_lsn, copied.end_timeline, segment_size);
    job.info.copy_stats = Some(vec![("copy_time".into(), PyValue::Float(round6(copy_time)))]);
    Ok(())
}

/// begin_xlog/begin_wal/begin_offset/timeline from the BASE_BACKUP start result; STARTED.
fn record_start(info: &mut BackupInfo, start: &BaseBackupStart, size: WalSegSize) {
    info.status = BackupStatus::Started;
    info.begin_xlog = Some(start.start_lsn);
    info.timeline = Some(start.timeline);
    info.begin_wal = Some(WalFileName::containing(start.timeline, start.start_lsn, size));
    info.begin_offset = Some(start.start_lsn.as_u64() % u64::from(size.bytes()));
}

/// end_xlog/end_wal/end_offset as `pg_walfile_name_offset` gives them: a position exactly on
/// a segment boundary belongs to the previous segment (offset 0), as in Barman's backup.info.
fn record_end(info: &mut BackupInfo, end: Lsn, timeline: TimelineId, size: WalSegSize) {
    let bytes = u64::from(size.bytes());
    let segno = SegNo(end.as_u64().saturating_sub(1) / bytes);
    info.end_xlog = Some(end);
    info.end_wal = Some(WalFileName::segment(timeline, segno, size));
    info.end_offset = Some(end.as_u64() % bytes);
    info.end_time = Some(now());
}

fn round6(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// `reuse_backup = link`: files identical to the newest available backup's become hard
/// links to them.
fn reuse_previous(job: &mut Job<'_>, out: &mut Output) -> Result<(), String> {
    let catalogue = barman_common::catalogue::Catalogue::load(job.layout).map_err(|e| e.to_string())?;
    let Some((previous, _)) = catalogue.available().rev().find(|(id, _)| *id != job.id) else { return Ok(()) };
    let reused = copy::link_unchanged(&job.dir, &absolute(&job.layout.backup_dir(previous)))
        .map_err(|e| format!("reuse_backup = link: {e}"))?;
    out.info(format!("Reused {} files ({}) of backup {previous} by hard link", reused.files, human_size(reused.bytes)));
    Ok(())
}

/// backup_label, encryption, fsync, sizes, manifest, copy_stats; WAITING_FOR_WALS.
fn finalise(job: &mut Job<'_>, settings: &Settings, started: Instant, out: &mut Output) -> Result<(), String> {
    let storage = &settings.storage;
    let label = match storage.format {
        Format::Plain => {
            let label_path = copy::data_dir(&job.dir).join("backup_label");
            std::fs::read_to_string(&label_path).map_err(|e| format!("{}: {e}", label_path.display()))?
        }
        Format::Tar => copy::tar_backup_label(&job.dir, storage).map_err(|e| e.to_string())?,
    };
    job.info.backup_label = Some(label);
    if let Some(key) = &settings.encrypt_to {
        job.phase = "encrypting the backup";
        out.info("Encrypting backup using gpg encryption");
        encrypt::encrypt_archives(&copy::data_dir(&job.dir), key)?;
        job.info.encryption = Some(Encryption::Gpg.name().to_owned());
    }
    if let Some(fs_sync) = &job.fs_sync {
        fs_sync.sync().map_err(|e| format!("syncing the backup to disk: {e}"))?;
    }
    let sizes = copy::measure(&job.dir).map_err(|e| e.to_string())?;
    if copy::manifest_pending(&job.dir) {
        copy::publish_manifest(&job.dir).map_err(|e| format!("backup_manifest: {e}"))?;
    }
    job.info.size = Some(sizes.size);
    job.info.deduplicated_size = Some(sizes.deduplicated);
    if let Some(stats) = job.info.copy_stats.as_mut().filter(|s| !s.iter().any(|(k, _)| k == "total_time")) {
        stats.push(("total_time".into(), PyValue::Float(round6(started.elapsed()))));
    }
    job.info.status = BackupStatus::WaitingForWals;
    job.save()
}

/// One archiver pass and a check of the backup's WAL (as Barman's `backup` ends); with
/// `--wait`, the archiver runs until the backup is DONE.
fn wal_phase(job: &mut Job<'_>, server: &Server, opts: &Options, out: &mut Output) -> Result<(), ToolError> {
    let deadline =
        (opts.wait && opts.wait_timeout > 0).then(|| Instant::now() + Duration::from_secs(opts.wait_timeout));
    let mut announced = false;
    loop {
        archive_once(server, out);
        let verdict = check_backup::check(job.layout, &job.id, &mut job.info).map_err(|e| job.fail(&e.to_string()))?;
        match verdict {
            Some(WalVerdict::Done) | None => return Ok(()),
            Some(WalVerdict::Failed(reason)) => {
                return Err(ToolError::Failed(format!("backup {} marked FAILED: {reason}", job.id)))
            }
            Some(WalVerdict::Waiting) if !opts.wait => return Ok(()),
            Some(WalVerdict::Waiting) => {}
        }
        if !announced {
            if let Some(end) = &job.info.end_wal {
                out.info(format!("Waiting for the WAL file {end} from server '{}'", server.name));
            }
            announced = true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ToolError::Failed(format!(
                "backup {} is still WAITING_FOR_WALS after {} seconds",
                job.id, opts.wait_timeout
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One archiver pass (as Barman's `wait_for_wal` calls `archive_wal`); skipped while another
/// archiver (cron) holds the lock.
fn archive_once(server: &Server, out: &mut Output) {
    let Ok(lock) = crate::cmd::archive_wal::lock(server) else { return };
    match crate::cmd::archive_wal::run(server) {
        Ok(lines) => lines.into_iter().for_each(|l| tracing::info!("{l}")),
        Err(e) => out.warning(format!("archiver: {e}")),
    }
    drop(lock);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_position_like_pg_walfile_name_offset() {
        let size = WalSegSize::DEFAULT;
        let mut info = BackupInfo::default();
        record_end(&mut info, "0/4000000".parse().expect("lsn"), TimelineId::FIRST, size);
        assert_eq!(info.end_wal.as_ref().map(ToString::to_string).as_deref(), Some("000000010000000000000003"));
        assert_eq!(info.end_offset, Some(0));
        record_end(&mut info, "0/4000100".parse().expect("lsn"), TimelineId::FIRST, size);
        assert_eq!(info.end_wal.as_ref().map(ToString::to_string).as_deref(), Some("000000010000000000000004"));
        assert_eq!(info.end_offset, Some(256));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_size(100), "100 B");
        assert_eq!(human_size(23_195_476), "22.1 MiB");
        assert_eq!(human_duration(Duration::from_millis(300)), "less than one second");
        assert_eq!(human_duration(Duration::from_secs(75)), "1 minutes, 15 seconds");
    }
}
