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

use barman_common::catalogue::{BackupInfo, Catalogue, XlogDb};
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
}

/// The scratch directory; PostgreSQL is stopped and the directory removed when dropped.
struct Scratch {
    path: PathBuf,
    pg_ctl: Option<PathBuf>,
    running: bool,
}

impl Scratch {
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
    let env_path = std::env::var("PATH").unwrap_or_default();
    let path_dirs: Vec<PathBuf> = cfg
        .path_prefix
        .iter()
        .flat_map(|p| p.split(':'))
        .chain(env_path.split(':'))
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    let find = |tool: &str| path_dirs.iter().map(|d| d.join(tool)).find(|p| p.is_file());
    let (Some(pg_ctl), Some(psql)) = (find("pg_ctl"), find("psql")) else {
        return Err(CmdError::Error("pg_ctl and psql not found in the server's path_prefix nor in PATH".into()));
    };

    // The scratch directory.
    let base = opts.scratch.clone().unwrap_or_else(|| ctx.config().global().barman_home.clone());
    let path = base.join(format!(".verify-restore-{server_name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(path.join("sock"))
        .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o700)))
        .map_err(|e| CmdError::Error(format!("cannot create the scratch directory '{}': {e}", path.display())))?;
    let mut scratch = Scratch { path, pg_ctl: Some(pg_ctl.clone()), running: false };

    // 1. The recovery, quietly (its own lines are Barman's recover output).
    let mut ropts = opts.target.clone();
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
        .map(|t| format!("{}:{}", t.name, scratch.path.join("tblspc").join(&t.name).display()))
        .collect();
    out.info(format!("Verifying restore of backup {id} of server {server_name}"));
    let mut quiet = Output::new(false, true);
    let data = scratch.data();
    let recovered = recover::run(ctx, server_name, id.as_str(), &data.to_string_lossy(), &ropts, &mut quiet);
    recovered.map_err(|e| CmdError::Error(format!("verify-restore of backup {id} failed: recovery refused: {e}")))?;
    let recover_secs = started.elapsed().as_secs_f64();

    // 2. PostgreSQL on it.
    let port = free_port()?;
    let sock = scratch.path.join("sock");
    let hba = scratch.path.join("pg_hba.conf");
    fs::write(&hba, "local all all trust\n")?;
    let mut extra = String::from("\n# Added by barman verify-restore\n");
    for (k, v) in [
        ("port", port.to_string()),
        ("listen_addresses", "''".into()),
        ("unix_socket_directories", quote(&sock.to_string_lossy())),
        ("hba_file", quote(&hba.to_string_lossy())),
        ("archive_mode", "off".into()),
        ("hot_standby", "on".into()),
        ("logging_collector", "off".into()),
        ("shared_preload_libraries", "''".into()),
    ] {
        let _ = writeln!(extra, "{k} = {v}");
    }
    let auto = data.join("postgresql.auto.conf");
    let mut text = fs::read_to_string(&auto).unwrap_or_default();
    text.push_str(&extra);
    fs::write(&auto, text)?;
    let _ = fs::remove_file(data.join("postmaster.pid"));
    let log = scratch.path.join("postgres.log");
    let user = cfg
        .conninfo
        .as_deref()
        .and_then(|c| c.split_whitespace().find_map(|kv| kv.strip_prefix("user=")))
        .unwrap_or("postgres")
        .trim_matches('\'')
        .to_owned();
    let path_env = path_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":");
    let timeout = opts.timeout.max(Duration::from_secs(5));
    let start = Command::new(&pg_ctl)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", &timeout.as_secs().to_string(), "start"])
        .current_dir(&scratch.path)
        .env("PATH", &path_env)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CmdError::Error(format!("cannot run {}: {e}", pg_ctl.display())))?;
    scratch.running = true;
    let failed = |why: &str, log: &Path| {
        CmdError::Error(format!("verify-restore of backup {id} failed: {why}{}", log_reasons(log)))
    };
    if !start.status.success() {
        return Err(failed("PostgreSQL did not start on the restored data", &log));
    }
    let sql = |q: &str| -> Result<String, String> {
        let o: ProcessOutput = Command::new(&psql)
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&sock)
            .args(["-p", &port.to_string(), "-U", &user, "-d", "postgres", "-c", q])
            .env("PATH", &path_env)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).trim().to_owned())
        }
    };
    // 3. Wait for the end of recovery (promotion at the target, or end of crash recovery).
    let deadline = Instant::now() + timeout;
    loop {
        match sql("select pg_is_in_recovery()") {
            Ok(r) if r == "f" => break,
            Ok(_) => {}
            Err(e) => {
                if !data.join("postmaster.pid").exists() {
                    scratch.running = false;
                    return Err(failed("PostgreSQL stopped during recovery", &log));
                }
                if Instant::now() > deadline {
                    return Err(failed(&format!("PostgreSQL does not answer: {e}"), &log));
                }
            }
        }
        if Instant::now() > deadline {
            return Err(failed(&format!("recovery did not end within {} seconds", timeout.as_secs()), &log));
        }
        sleep(Duration::from_millis(200));
    }
    let one = sql("select 1").map_err(|e| failed(&format!("select 1 failed: {e}"), &log))?;
    let rto = started.elapsed().as_secs_f64();
    if one != "1" {
        return Err(failed(&format!("select 1 returned {one:?}"), &log));
    }
    let point = sql("select coalesce(pg_last_wal_replay_lsn(), pg_current_wal_lsn())::text, \
         coalesce(pg_last_xact_replay_timestamp()::text, '')")
    .map_err(|e| failed(&format!("reading the recovery point failed: {e}"), &log))?;
    let mut parts = point.splitn(2, '|');
    let report = Report {
        lsn: parts.next().filter(|s| !s.is_empty()).map(str::to_owned),
        last_xact: parts.next().filter(|s| !s.is_empty()).map(str::to_owned),
        port,
    };
    scratch.stop("fast");

    // 4. Without a target, replay must have reached the end of the archived WAL.
    if !is_pitr {
        if let Some(why) = stopped_early(&server, &info, report.lsn.as_deref())? {
            return Err(failed(&why, &log));
        }
    }
    drop(scratch);

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
    Ok(())
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

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
