//! The version matrix: every data path, end to end, on one PostgreSQL major.
//!
//! [`run_version`] starts a cluster of that major archiving through our `barman-wal-archive`
//! (`archive_command`, over the private sshd, into `put-wal`), lets `barman cron` start
//! `barman receive-wal` on a replication slot, runs `barman check`, `status` and
//! `show-servers`, takes a base backup (`barman backup --wait`, postgres method), checks its
//! manifest with `pg_verifybackup`, writes rows before and after a target time, makes sure
//! the last segment reached the catalogue both archived and streamed, recovers to the target
//! time with `barman recover`, starts the same major on the result and compares the rows
//! exactly. Each step is timed; the first failure ends the run and is reported with its step.
//! `integration/matrix.sh` runs it on 13 to 18 and prints [`table`]; `tests/versions.rs` runs
//! the CI subset.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{lock_owner, ServerLayout};
use barman_common::manifest::Manifest;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::scratch::chown_recursive;
use crate::{
    cargo_bin, cmd, fixtures, wait_until, BarmanHome, BarmanServerOptions, OsUser, PgCluster, PgOptions, PgVersion,
    Scratch, Sshd, SshdOptions,
};

const WAIT: Duration = Duration::from_secs(90);
const ROWS_BEFORE: u32 = 1000;
const ROWS_AFTER: u32 = 500;

/// The steps of a run, in order (the columns of [`table`]).
pub const STEPS: [&str; 6] = ["start", "stream", "check", "backup", "archive", "recover"];

/// What one step did: its time and a short note, or why it failed.
#[derive(Debug)]
pub struct StepResult {
    /// The step's name (one of [`STEPS`]).
    pub step: &'static str,
    /// How long it took.
    pub took: Duration,
    /// A short note (`ok`, sizes, row counts), or the error.
    pub outcome: Result<String, String>,
}

/// What a run on one major did.
#[derive(Debug)]
pub struct VersionReport {
    /// The major.
    pub version: PgVersion,
    /// `server_version` as the server reports it, once it started.
    pub server_version: String,
    /// The steps that ran, in order; a failed step is the last one.
    pub steps: Vec<StepResult>,
    /// The whole run.
    pub total: Duration,
}

impl VersionReport {
    /// Whether every step ran and passed.
    pub fn passed(&self) -> bool {
        self.steps.len() == STEPS.len() && self.steps.iter().all(|s| s.outcome.is_ok())
    }

    /// The failure, with its step, if any.
    pub fn failure(&self) -> Option<String> {
        self.steps.iter().find_map(|s| s.outcome.as_ref().err().map(|e| format!("PG {} {}: {e}", self.version, s.step)))
    }
}

/// Stops the `barman receive-wal` that holds the server's lock when dropped.
struct ReceiverGuard {
    lock: PathBuf,
}

impl Drop for ReceiverGuard {
    fn drop(&mut self) {
        if let Some(pid) = lock_owner(&self.lock).ok().flatten().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
            let gone = wait_until(Duration::from_secs(10), "receive-wal to stop", || {
                Ok(lock_owner(&self.lock).ok().flatten().is_none())
            });
            if gone.is_err() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Everything a run holds. Fields drop in order: the receiver stops, then the cluster, then
/// the sshd it archives through; the scratch directory goes last.
struct Run {
    receiver: Option<ReceiverGuard>,
    restored: Option<PgCluster>,
    pg: PgCluster,
    barman: BarmanHome,
    _sshd: Sshd,
    scratch: Scratch,
    backup_id: String,
    target: String,
    expected: String,
}

/// One step after `start`: a note for the table, or why it failed.
type Step = fn(&mut Run) -> Result<String>;

/// Runs the matrix scenario on `version`; never fails itself: failures are in the report.
pub fn run_version(version: PgVersion) -> VersionReport {
    let t0 = Instant::now();
    let mut report = VersionReport { version, server_version: String::new(), steps: Vec::new(), total: Duration::ZERO };
    let started = timed(&mut report, "start", || start(version));
    if let Some(mut run) = started {
        report.server_version = run.pg.psql("select split_part(version(), ' ', 2)").unwrap_or_default();
        let steps: [(&'static str, Step); 5] =
            [("stream", stream), ("check", check), ("backup", backup), ("archive", archive), ("recover", recover)];
        for (name, step) in steps {
            if timed(&mut report, name, || step(&mut run)).is_none() {
                break;
            }
        }
    }
    report.total = t0.elapsed();
    report
}

fn timed<T>(report: &mut VersionReport, step: &'static str, f: impl FnOnce() -> Result<T>) -> Option<T>
where
    T: Noted,
{
    let t = Instant::now();
    let result = f();
    let took = t.elapsed();
    let (outcome, value) = match result {
        Ok(v) => (Ok(v.note()), Some(v)),
        Err(e) => (Err(format!("{e:#}")), None),
    };
    report.steps.push(StepResult { step, took, outcome });
    value
}

/// What a step's success says in the table.
trait Noted {
    fn note(&self) -> String;
}

impl Noted for String {
    fn note(&self) -> String {
        self.clone()
    }
}

impl Noted for Run {
    fn note(&self) -> String {
        "ok".into()
    }
}

fn start(version: PgVersion) -> Result<Run> {
    version.require()?;
    let scratch = Scratch::new(&format!("matrix-pg{version}"))?;
    let sshd = Sshd::start(&scratch, SshdOptions::default())?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    barman.add_path_prefix(sshd.ssh_wrapper_dir_for("barman")?);
    let archive_command = format!(
        "{client} -c {cfg} --port {port} 127.0.0.1 pg %p",
        client = cargo_bin("barman-wal-archive")?.display(),
        cfg = barman.config_path().display(),
        port = sshd.port(),
    );
    let opts = PgOptions::default()
        .version(version)
        .archive_command(archive_command)
        .path_prefix(sshd.ssh_wrapper_dir_for("postgres")?);
    let pg = PgCluster::start(&scratch, opts)?;
    let server = BarmanServerOptions {
        streaming_archiver: true,
        slot_name: Some("barman".into()),
        compression: Some("gzip".into()),
        ..BarmanServerOptions::default()
    };
    barman.add_server("pg", &pg, &server)?;
    let (backup_id, target, expected) = Default::default();
    Ok(Run { receiver: None, restored: None, pg, barman, _sshd: sshd, scratch, backup_id, target, expected })
}

fn layout(run: &Run) -> ServerLayout {
    ServerLayout::default_for(&run.barman.home(), "pg")
}

/// `barman cron` creates the slot and starts `barman receive-wal`; a WAL switch must then
/// arrive in `streaming/` as a complete segment.
fn stream(run: &mut Run) -> Result<String> {
    run.receiver = Some(ReceiverGuard { lock: run.barman.home().join(".pg-receive-wal.lock") });
    let out = run.barman.run(&["cron"])?;
    ensure!(out.contains("Starting streaming archiver for server pg"), "cron output: {out}");
    let slot = "select active from pg_replication_slots where slot_name = 'barman'";
    wait_until(WAIT, "receive-wal to stream from slot 'barman'", || Ok(run.pg.psql(slot)? == "t"))?;
    run.pg.psql("create table matrix(id int primary key, note text)")?;
    let segment = run.pg.switch_wal()?;
    let streamed = layout(run).streaming.join(&segment);
    wait_until(WAIT, &format!("{segment} to be streamed"), || Ok(streamed.is_file()))?;
    Ok(format!("{segment} streamed"))
}

/// `barman check` passes every check; `status` and `show-servers` report the server's
/// version.
fn check(run: &mut Run) -> Result<String> {
    // A switch with nothing written since the last one closes no segment.
    run.pg.psql("create table tick(t timestamptz default now()); insert into tick default values")?;
    let last = run.pg.switch_wal()?;
    run.pg.wait_for_archived(&last, WAIT)?;
    run.barman.run(&["cron"])?;
    let check = run.barman.outcome(&["check", "pg"])?;
    ensure!(check.code() == Some(0) && !check.stdout_str().contains("FAILED"), "barman check pg: {check:?}");
    // "15.18 (Debian 15.18-1.pgdg120+1)": Barman shows the second word of version().
    let version = run.pg.psql("select split_part(version(), ' ', 2)")?;
    let status = run.barman.run(&["status", "pg"])?;
    ensure!(status.contains(&format!("PostgreSQL version: {version}")), "barman status pg:\n{status}");
    let servers = run.barman.run_json(&["show-servers", "pg"])?;
    let shown = servers["pg"]["server_txt_version"].as_str().unwrap_or_default().to_owned();
    ensure!(shown == version, "show-servers server_txt_version {shown:?}, server says {version:?}");
    Ok("ok".into())
}

/// `barman backup --wait`; the backup's manifest verifies with `pg_verifybackup -n`.
fn backup(run: &mut Run) -> Result<String> {
    run.barman.run(&["backup", "--wait", "--immediate-checkpoint", "pg"])?;
    let ids = run.barman.done_backups("pg")?;
    run.backup_id.clone_from(ids.last().context("no DONE backup after barman backup")?);
    let info = fixtures::backup_info(&layout(run), &run.backup_id)?;
    let major = info.version.map(|v| v / 10_000);
    ensure!(major == Some(run.pg.version().major()), "backup.info version {:?}", info.version);
    // As Barman's _pg_get_metadata: summarize_wal only from 17 (the harness leaves it off).
    let summarize = (run.pg.version() >= PgVersion::V17).then(|| "off".to_owned());
    ensure!(info.summarize_wal == summarize, "backup.info summarize_wal {:?}", info.summarize_wal);
    ensure!(info.data_checksums.as_deref() == Some("on"), "backup.info data_checksums {:?}", info.data_checksums);
    let data = layout(run).basebackups_directory.join(&run.backup_id).join("data");
    verify_manifest(run.pg.version(), &data)?;
    Ok(format!("{} MiB", dir_size(&data) >> 20))
}

/// Every file against the manifest, with our reader and with `pg_verifybackup -n`, except on
/// 17: PG 18's pg_verifybackup reads a version-2 manifest's pg_control with PG 18's layout
/// ("pg_control: CRC is incorrect" on a PG 17 backup), and 13-16 write version 1.
fn verify_manifest(version: PgVersion, data: &Path) -> Result<()> {
    let manifest = Manifest::read(&data.join("backup_manifest"))?;
    let verified = manifest.verify(data)?;
    ensure!(verified.files > 900, "the manifest lists only {} files", verified.files);
    if version == PgVersion::V17 {
        return Ok(());
    }
    let mut verify = Command::new(version.client_bin().join("pg_verifybackup"));
    verify.arg("-n").arg(data);
    cmd::run(&mut verify).map(drop)
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Rows before and after a target time; the last segment arrives through both archivers
/// and `barman cron` archives it once, with nothing set aside in `errors/`.
fn archive(run: &mut Run) -> Result<String> {
    let pg = &run.pg;
    pg.psql(&format!("insert into matrix select g, 'before' from generate_series(1, {ROWS_BEFORE}) g"))?;
    run.expected = pg.table_checksum("matrix")?;
    std::thread::sleep(Duration::from_millis(1100));
    run.target = pg.psql("select now()")?;
    std::thread::sleep(Duration::from_millis(1100));
    let after = format!(
        "insert into matrix select g, 'after' from generate_series({}, {}) g",
        1_000_000,
        1_000_000 + ROWS_AFTER - 1
    );
    pg.psql(&after)?;
    let last = pg.switch_wal()?;
    pg.wait_for_archived(&last, WAIT)?;
    let streamed = layout(run).streaming.join(&last);
    wait_until(WAIT, &format!("{last} to be streamed"), || Ok(streamed.is_file()))?;
    run.barman.run(&["cron"])?;
    let xlog = fs::read_to_string(run.barman.xlog_db("pg"))?;
    ensure!(xlog.lines().any(|l| l.starts_with(&last)), "{last} not in xlog.db:\n{xlog}");
    let errors: Vec<_> =
        fs::read_dir(&layout(run).errors).map(|rd| rd.filter_map(Result::ok).collect()).unwrap_or_default();
    ensure!(errors.is_empty(), "files set aside in errors/: {errors:?}");
    Ok(format!("{} segments", xlog.lines().count()))
}

/// `barman recover --target-time`, then the same major started on the result: exactly the
/// rows written before the target.
fn recover(run: &mut Run) -> Result<String> {
    let dest = run.scratch.mkdir_owned("recovery", "barman")?.join("pgdata");
    let dest_arg = dest.display().to_string();
    let args = ["recover", "--target-time", &run.target, "--target-action", "promote", "pg", &run.backup_id, &dest_arg];
    run.barman.run(&args)?;
    chown_recursive(&dest, &OsUser::lookup("postgres")?)?;
    let restored = PgCluster::start_existing(&run.scratch, &dest, PgOptions::default().version(run.pg.version()))?;
    restored.wait_for_recovery_end(WAIT)?;
    let counts = restored.psql("select note || ':' || count(*) from matrix group by note order by note")?;
    ensure!(counts == format!("before:{ROWS_BEFORE}"), "recovered rows by kind: {counts}");
    let got = restored.table_checksum("matrix")?;
    ensure!(got == run.expected, "recovered rows differ from those written (md5 {got} vs {})", run.expected);
    run.restored = Some(restored);
    Ok(format!("{ROWS_BEFORE} rows"))
}

/// The results as a table: one line per major, a column per step (seconds, or FAIL), then
/// each failure in full.
pub fn table(reports: &[VersionReport]) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:<4} {:<9}", "PG", "version");
    for step in STEPS {
        let _ = write!(out, " {step:>8}");
    }
    let _ = writeln!(out, " {:>8}  result", "total");
    for r in reports {
        let _ = write!(out, "{:<4} {:<9}", r.version.major(), r.server_version);
        for step in STEPS {
            let cell = match r.steps.iter().find(|s| s.step == step) {
                Some(s) if s.outcome.is_ok() => format!("{:.1}s", s.took.as_secs_f64()),
                Some(_) => "FAIL".into(),
                None => "-".into(),
            };
            let _ = write!(out, " {cell:>8}");
        }
        let verdict = if r.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(out, " {:>7.1}s  {verdict}", r.total.as_secs_f64());
    }
    for failure in reports.iter().filter_map(VersionReport::failure) {
        let _ = writeln!(out, "\n{failure}");
    }
    out
}
