//! `barman verify-restore SERVER [BACKUP_ID] [target options] [--scratch DIR]` (this
//! toolkit's, beyond Barman): proves a backup restores. It recovers the backup (WAL copied,
//! tablespaces relocated) into a scratch directory inside `barman_home` (or under
//! `--scratch`; without a target, an archive recovery to the end of the latest timeline),
//! starts PostgreSQL on it as the barman user (`pg_ctl` from the server's
//! `path_prefix` or `PATH`) on a free port with its Unix socket in the scratch directory,
//! waits for recovery to reach the target and promote (or for crash recovery to end), runs
//! `select 1` and reads the recovery point, then stops PostgreSQL and removes the scratch
//! directory. It reports the RTO (seconds from the start of the recovery to the first
//! answered query) and the recovery point (LSN and the time of the last replayed
//! transaction), as text or, with `-f json`, as one JSON object.
//!
//! It fails (exit 1, saying why) when the recovery is refused (missing WAL), when PostgreSQL
//! stops during recovery (its FATAL/PANIC lines are quoted: a damaged WAL file, a target
//! not reached), and, without a target, when replay stopped before the end of the archived
//! WAL (a damaged segment that PostgreSQL took for the end of WAL).

use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output as ProcessOutput, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use barman_common::catalogue::{BackupId, BackupInfo, Catalogue, XlogDb};
use barman_common::wal::{Lsn, WalFileName, WalSegSize};
use serde_json::{json, Value};

use crate::cmd::recover;
use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// Options of one verify-restore call.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The recovery target (time, xid, lsn, name, immediate, tli; `target_action` is
    /// forced to `promote` for a PITR target).
    pub target: recover::Options,
    /// `--scratch DIR`: where the scratch directory is made (default `barman_home`).
    pub scratch: Option<PathBuf>,
    /// `--timeout SECONDS` for PostgreSQL to start and finish recovery.
    pub timeout: Duration,
}

/// What a successful verification found.
struct Report {
    lsn: Option<String>,
    last_xact: Option<String>,
    port: u16,
    /// Seconds from the start to the end of the recovery.
    recover_secs: f64,
    /// Seconds from the start to the first answered query.
    rto: f64,
}

/// The scratch directory; PostgreSQL is stopped and the directory removed when dropped.
struct Scratch {
    path: PathBuf,
    pg_ctl: Option<PathBuf>,
    running: bool,
}

impl Scratch {
    /// `<base>/.verify-restore-<server>-<pid>` with its `sock/` directory, made afresh.
    fn create(base: &Path, server_name: &str, pg_ctl: &Path) -> Result<Self, CmdError> {
        let path = base.join(format!(".verify-restore-{server_name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(path.join("sock"))
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o700)))
            .map_err(|e| CmdError::Error(format!("cannot create the scratch directory '{}': {e}", path.display())))?;
        Ok(Scratch { path, pg_ctl: Some(pg_ctl.to_owned()), running: false })
    }

    fn data(&self) -> PathBuf {
        self.path.join("data")
    }

    fn stop(&mut self, mode: &str) {
        if let (true, Some(pg_ctl)) = (self.running, &self.pg_ctl) {
            let _ = Command::new(pg_ctl)
                .arg("-D")
                .arg(self.data())
                .args(["-m", mode, "-w", "-t", "60", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        self.running = false;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.stop("immediate");
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The PostgreSQL tools, found in the server's `path_prefix` then `PATH`.
struct Tools {
    /// The directories searched, also the `PATH` PostgreSQL runs with.
    dirs: Vec<PathBuf>,
    pg_ctl: PathBuf,
    psql: PathBuf,
}

impl Tools {
    fn find(path_prefix: Option<&str>) -> Result<Self, CmdError> {
        let env_path = std::env::var("PATH").unwrap_or_default();
        let dirs: Vec<PathBuf> = path_prefix
            .iter()
            .flat_map(|p| p.split(':'))
            .chain(env_path.split(':'))
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        let find = |tool: &str| dirs.iter().map(|d| d.join(tool)).find(|p| p.is_file());
        let (Some(pg_ctl), Some(psql)) = (find("pg_ctl"), find("psql")) else {
            return Err(CmdError::Error("pg_ctl and psql not found in the server's path_prefix nor in PATH".into()));
        };
        Ok(Tools { dirs, pg_ctl, psql })
    }

    /// The `PATH` value PostgreSQL's tools run with.
    fn path_env(&self) -> String {
        self.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")
    }
}

/// The PostgreSQL started on the scratch copy, and how to reach it.
struct Instance<'a> {
    id: &'a BackupId,
    tools: &'a Tools,
    data: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    port: u16,
    user: String,
    timeout: Duration,
}

impl Instance<'_> {
    /// `verify-restore of backup <id> failed: <why>` with the log's reasons.
    fn failed(&self, why: &str) -> CmdError {
        CmdError::Error(format!("verify-restore of backup {} failed: {why}{}", self.id, log_reasons(&self.log)))
    }

    /// One query through psql on the Unix socket: its trimmed output, or psql's stderr.
    fn sql(&self, q: &str) -> Result<String, String> {
        let o: ProcessOutput = Command::new(&self.tools.psql)
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.sock)
            .args(["-p", &self.port.to_string(), "-U", &self.user, "-d", "postgres", "-c", q])
            .env("PATH", self.tools.path_env())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).trim().to_owned())
        }
    }
}

/// `verify-restore SERVER [BACKUP_ID]`.
pub fn run(ctx: &Context, server_name: &str, backup: &str, opts: &Options, out: &mut Output) -> Result<(), CmdError> {
    let started = Instant::now();
    let server = ctx.server(server_name)?;
    let cfg = ctx.config().server(server_name).expect("server() checked it exists");
    if nix::unistd::geteuid().is_root() {
        return Err(CmdError::Error(
            "verify-restore cannot run as root: PostgreSQL refuses to start as root; run it as the barman user".into(),
        ));
    }
    let catalogue = Catalogue::load(&server.layout)?;
    let (id, info) = crate::cmd::resolve_backup(&catalogue, backup, server_name)?;
    let (id, info): (_, BackupInfo) = (id.clone(), info.clone());
    let tools = Tools::find(cfg.path_prefix.as_deref())?;
    let base = opts.scratch.clone().unwrap_or_else(|| ctx.config().global().barman_home.clone());
    let mut scratch = Scratch::create(&base, server_name, &tools.pg_ctl)?;

    // 1. The recovery, quietly (its own lines are Barman's recover output).
    let (ropts, is_pitr) = recovery_options(&opts.target, &info, &scratch.path);
    out.info(format!("Verifying restore of backup {id} of server {server_name}"));
    let mut quiet = Output::new(false, true);
    let data = scratch.data();
    let recovered = recover::run(ctx, server_name, id.as_str(), &data.to_string_lossy(), &ropts, &mut quiet);
    recovered.map_err(|e| CmdError::Error(format!("verify-restore of backup {id} failed: recovery refused: {e}")))?;
    let recover_secs = started.elapsed().as_secs_f64();

    // 2. PostgreSQL on it; 3. the end of recovery and the recovery point.
    let pg = Instance {
        id: &id,
        tools: &tools,
        sock: scratch.path.join("sock"),
        log: scratch.path.join("postgres.log"),
        port: free_port()?,
        user: conninfo_user(cfg.conninfo.as_deref()),
        timeout: opts.timeout.max(Duration::from_secs(5)),
        data,
    };
    configure(&pg, &scratch.path)?;
    start(&pg, &mut scratch)?;
    wait_for_end_of_recovery(&pg, &mut scratch)?;
    let report = recovery_point(&pg, started, recover_secs)?;
    scratch.stop("fast");

    // 4. Without a target, replay must have reached the end of the archived WAL.
    if !is_pitr {
        if let Some(why) = stopped_early(&server, &info, report.lsn.as_deref())? {
            return Err(pg.failed(&why));
        }
    }
    drop(scratch);
    print_report(out, server_name, &id, &report, is_pitr);
    Ok(())
}

/// The recover options for the scratch copy, and whether a target was given: without one,
/// an archive recovery to the latest timeline; always promoted at the end, WAL copied,
/// local, tablespaces relocated into the scratch directory.
fn recovery_options(target: &recover::Options, info: &BackupInfo, scratch: &Path) -> (recover::Options, bool) {
    let mut ropts = target.clone();
    let is_pitr = ropts.target_time.is_some()
        || ropts.target_xid.is_some()
        || ropts.target_lsn.is_some()
        || ropts.target_name.is_some()
        || ropts.target_immediate
        || ropts.target_tli.is_some();
    if !is_pitr {
        // Archive recovery over every archived WAL of the latest timeline (not crash
        // recovery from pg_wal), so that a damaged file stops PostgreSQL and the replay
        // position and last transaction time are known.
        ropts.target_tli = Some(recover::TargetTli::Latest);
    }
    ropts.target_action = Some("promote");
    ropts.get_wal = Some(false);
    ropts.remote_ssh_command = None;
    ropts.tablespaces = info
        .tablespaces
        .iter()
        .flatten()
        .map(|t| format!("{}:{}", t.name, scratch.join("tblspc").join(&t.name).display()))
        .collect();
    (ropts, is_pitr)
}

/// The `user=` of the server's conninfo (default `postgres`).
fn conninfo_user(conninfo: Option<&str>) -> String {
    conninfo
        .and_then(|c| c.split_whitespace().find_map(|kv| kv.strip_prefix("user=")))
        .unwrap_or("postgres")
        .trim_matches('\'')
        .to_owned()
}

/// A trust-only `pg_hba.conf` in the scratch directory and the settings that keep the
/// restored server private (its port, no TCP, the scratch socket, no archiving) appended
/// to its `postgresql.auto.conf`; a stale `postmaster.pid` removed.
fn configure(pg: &Instance<'_>, scratch: &Path) -> Result<(), CmdError> {
    let hba = scratch.join("pg_hba.conf");
    fs::write(&hba, "local all all trust\n")?;
    let mut extra = String::from("\n# Added by barman verify-restore\n");
    for (k, v) in [
        ("port", pg.port.to_string()),
        ("listen_addresses", "''".into()),
        ("unix_socket_directories", barman_common::pg::quote_literal(&pg.sock.to_string_lossy())),
        ("hba_file", barman_common::pg::quote_literal(&hba.to_string_lossy())),
        ("archive_mode", "off".into()),
        ("hot_standby", "on".into()),
        ("logging_collector", "off".into()),
        ("shared_preload_libraries", "''".into()),
    ] {
        let _ = writeln!(extra, "{k} = {v}");
    }
    let auto = pg.data.join("postgresql.auto.conf");
    let mut text = fs::read_to_string(&auto).unwrap_or_default();
    text.push_str(&extra);
    fs::write(&auto, text)?;
    let _ = fs::remove_file(pg.data.join("postmaster.pid"));
    Ok(())
}

/// `pg_ctl start -w` as the barman user, from the scratch directory.
fn start(pg: &Instance<'_>, scratch: &mut Scratch) -> Result<(), CmdError> {
    let pg_ctl = &pg.tools.pg_ctl;
    let start = Command::new(pg_ctl)
        .arg("-D")
        .arg(&pg.data)
        .arg("-l")
        .arg(&pg.log)
        .args(["-w", "-t", &pg.timeout.as_secs().to_string(), "start"])
        .current_dir(&scratch.path)
        .env("PATH", pg.tools.path_env())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CmdError::Error(format!("cannot run {}: {e}", pg_ctl.display())))?;
    scratch.running = true;
    if !start.status.success() {
        return Err(pg.failed("PostgreSQL did not start on the restored data"));
    }
    Ok(())
}

/// Waits for the end of recovery (promotion at the target, or end of crash recovery).
fn wait_for_end_of_recovery(pg: &Instance<'_>, scratch: &mut Scratch) -> Result<(), CmdError> {
    let deadline = Instant::now() + pg.timeout;
    loop {
        match pg.sql("select pg_is_in_recovery()") {
            Ok(r) if r == "f" => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                if !pg.data.join("postmaster.pid").exists() {
                    scratch.running = false;
                    return Err(pg.failed("PostgreSQL stopped during recovery"));
                }
                if Instant::now() > deadline {
                    return Err(pg.failed(&format!("PostgreSQL does not answer: {e}")));
                }
            }
        }
        if Instant::now() > deadline {
            return Err(pg.failed(&format!("recovery did not end within {} seconds", pg.timeout.as_secs())));
        }
        sleep(Duration::from_millis(200));
    }
}

/// `select 1` (the RTO is measured when it answers), then the replay position and the
/// time of the last replayed transaction.
fn recovery_point(pg: &Instance<'_>, started: Instant, recover_secs: f64) -> Result<Report, CmdError> {
    let one = pg.sql("select 1").map_err(|e| pg.failed(&format!("select 1 failed: {e}")))?;
    let rto = started.elapsed().as_secs_f64();
    if one != "1" {
        return Err(pg.failed(&format!("select 1 returned {one:?}")));
    }
    let point = pg
        .sql(
            "select coalesce(pg_last_wal_replay_lsn(), pg_current_wal_lsn())::text, \
         coalesce(pg_last_xact_replay_timestamp()::text, '')",
        )
        .map_err(|e| pg.failed(&format!("reading the recovery point failed: {e}")))?;
    let mut parts = point.splitn(2, '|');
    Ok(Report {
        lsn: parts.next().filter(|s| !s.is_empty()).map(str::to_owned),
        last_xact: parts.next().filter(|s| !s.is_empty()).map(str::to_owned),
        port: pg.port,
        recover_secs,
        rto,
    })
}

/// The text lines and the JSON result of a successful verification.
fn print_report(out: &mut Output, server_name: &str, id: &BackupId, report: &Report, is_pitr: bool) {
    let (rto, recover_secs) = (report.rto, report.recover_secs);
    let lsn = report.lsn.clone().unwrap_or_else(|| "unknown".into());
    let xact = report.last_xact.clone().unwrap_or_else(|| "none replayed".into());
    out.line(format!("Recovered into a scratch directory and started PostgreSQL on port {}", report.port));
    out.line(format!("Recovery point LSN: {lsn}"));
    out.line(format!("Last replayed transaction time: {xact}"));
    out.line(format!("Recovery time: {recover_secs:.1} seconds"));
    out.line(format!("RTO: {rto:.1} seconds (from the start of the recovery to the first answered query)"));
    out.line(format!("Verification of backup {id} of server {server_name}: OK"));
    let results: [(&str, Value); 8] = [
        ("server", json!(server_name)),
        ("backup_id", json!(id.as_str())),
        ("status", json!("OK")),
        ("rto_seconds", json!((rto * 1000.0).round() / 1000.0)),
        ("recover_seconds", json!((recover_secs * 1000.0).round() / 1000.0)),
        ("recovery_point_lsn", json!(report.lsn)),
        ("last_replayed_xact_time", json!(report.last_xact)),
        ("pitr", json!(is_pitr)),
    ];
    for (k, v) in results {
        out.result(k, v);
    }
}

/// A TCP port free on the loopback interface now.
fn free_port() -> Result<u16, CmdError> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The FATAL/PANIC lines of the PostgreSQL log (and the line before each), for the error.
fn log_reasons(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut picked: Vec<&str> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("FATAL:") || l.contains("PANIC:") {
            if i > 0 && !picked.contains(&lines[i - 1]) && !lines[i - 1].contains("LOG:  database system is shut") {
                picked.push(lines[i - 1]);
            }
            picked.push(l);
        }
    }
    if picked.is_empty() {
        picked = lines.iter().rev().take(5).rev().copied().collect();
    }
    if picked.is_empty() {
        return String::new();
    }
    format!("\nPostgreSQL log:\n{}", picked.join("\n"))
}

/// Without a target, the replay must end in (or after) the last archived segment of the
/// backup's timeline; an earlier end means PostgreSQL took a damaged file for the end of WAL.
fn stopped_early(
    server: &crate::server::Server,
    info: &BackupInfo,
    lsn: Option<&str>,
) -> Result<Option<String>, CmdError> {
    let (Some(lsn), Some(begin)) = (lsn.and_then(|l| l.parse::<Lsn>().ok()), &info.begin_wal) else {
        return Ok(None);
    };
    let tli = begin.timeline();
    let size = info.xlog_segment_size.unwrap_or(WalSegSize::DEFAULT);
    let last = XlogDb::open(&server.layout)?
        .entries()?
        .into_iter()
        .map(|(_, e)| e.name)
        .filter(|n| n.as_str().len() == 24 && n.timeline() == tli)
        .max();
    let reached = WalFileName::containing(tli, lsn, size);
    Ok(match last {
        Some(last) if reached < last => Some(format!(
            "WAL replay stopped at {lsn} (segment {reached}) but the archive holds WAL up to {last}: \
             a WAL file is damaged or missing"
        )),
        _ => None,
    })
}
