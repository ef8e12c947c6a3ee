//! `barman receive-wal [--create-slot [--if-not-exists]|--drop-slot|--reset|--stop] SERVER`:
//! WAL streaming into `streaming/` through our `barman-receive-wal` (pg_receivewal
//! compatible), run as a child under `.<srv>-receive-wal.lock`, as Barman 3.20.1 runs
//! `pg_receivewal`; and cron's supervision of it ([`cron`]).
//!
//! The server's position and the slot's state come from `barman-receive-wal --identify`
//! (replication protocol: `IDENTIFY_SYSTEM`, `SHOW`, `READ_REPLICATION_SLOT`), so this crate
//! needs no PostgreSQL client of its own.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use barman_common::catalogue::{lock_owner, LockError, LockKind, ServerLock};
use barman_common::config::{CreateSlot, ServerConfig};
use barman_common::wal::{Lsn, TimelineId, WalFileName, WalSegSize};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use crate::context::Context;
use crate::output::Output;
use crate::server::Server;
use crate::CmdError;

/// The streamer executable.
const STREAMER: &str = "barman-receive-wal";
/// Log module name for the streamer's own messages (Barman logs pg_receivewal's output
/// through `barman.command_wrappers`).
const LOG_MODULE: &str = "command_wrappers";
/// How long `--stop` waits for the receiver to go (Barman: 10 checks, 1 s apart).
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The command's flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `--create-slot`.
    pub create_slot: bool,
    /// `--if-not-exists` (with `--create-slot`).
    pub if_not_exists: bool,
    /// `--drop-slot`.
    pub drop_slot: bool,
    /// `--reset`.
    pub reset: bool,
    /// `--stop` (deprecated in Barman 3.20 in favour of `terminate-process`).
    pub stop: bool,
}

/// Runs `barman receive-wal` for server `name`.
pub fn run(ctx: &Context, name: &str, opts: &Options, out: &mut Output) -> Result<(), CmdError> {
    let cfg = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    // Barman's get_server(skip_inactive=<plain receive-wal>): an inactive server is skipped
    // with an info line; a disabled one fails with the first reason.
    let plain = !(opts.create_slot || opts.drop_slot || opts.reset || opts.stop);
    if plain && !cfg.active {
        out.info(format!("Skipping inactive server '{name}'"));
        return Ok(());
    }
    if let Some(reason) = cfg.disabled_reasons().first() {
        return Err(CmdError::Error(reason.clone()));
    }
    let server = ctx.server(name)?;
    if opts.stop && opts.reset {
        return Err(CmdError::Error("--stop and --reset options are not compatible".into()));
    }
    if opts.stop {
        out.warning(format!(
            "--stop is deprecated and will be removed in a future release. \
             Use 'barman terminate-process {name} receive-wal' instead."
        ));
        return stop(&server, true, out);
    }
    if cfg.is_passive() {
        return Err(passive_refusal(name, server.streaming_archiver, *opts));
    }
    let streamer = Streamer::new(cfg)?;
    if opts.create_slot {
        return create_slot(&streamer, cfg, opts.if_not_exists, out);
    }
    if opts.drop_slot {
        return drop_slot(&streamer, cfg, out);
    }
    receive(&server, cfg, &streamer, opts.reset, out)
}

/// Why receive-wal refuses a passive node, in Barman 3.20.1's words: a passive server has no
/// streaming connection and no WAL archivers (its WALs come from the primary by sync-wals),
/// so Barman's slot commands fail for the missing connection and receive-wal fails its
/// streaming preflight, or earlier on `streaming_archiver = off`. All are one `ERROR:` line
/// with exit 1 (no exception).
fn passive_refusal(name: &str, streaming_archiver: bool, opts: Options) -> CmdError {
    let msg = if opts.create_slot {
        "Unable to create a physical replication slot: streaming connection not configured".to_owned()
    } else if opts.drop_slot {
        "Unable to drop a physical replication slot: streaming connection not configured".to_owned()
    } else if !streaming_archiver {
        "Unable to start receive-wal process: streaming_archiver option set to 'off' in barman configuration file"
            .to_owned()
    } else {
        crate::log::error(
            "server",
            &format!("{name}: passive node (primary_ssh_command is set): no WAL streaming, use sync-wals"),
        );
        format!("Impossible to start WAL streaming. Check the log for more details, or run 'barman check {name}'")
    };
    CmdError::Error(msg)
}

/// How to run `barman-receive-wal` for one server.
struct Streamer {
    program: PathBuf,
    path: Option<OsString>,
    conninfo: String,
    slot: Option<String>,
}

impl Streamer {
    fn new(cfg: &ServerConfig) -> Result<Streamer, CmdError> {
        let conninfo = cfg
            .wal_conninfo_pair()
            .0
            .or(cfg.conninfo.as_deref())
            .ok_or_else(|| CmdError::Error(format!("streaming_conninfo is not set for server '{}'", cfg.name())))?;
        let app = cfg.streaming_archiver_name.as_deref().unwrap_or("barman_receive_wal");
        let mut path: Vec<PathBuf> =
            cfg.path_prefix.as_deref().map(|p| std::env::split_paths(p).collect()).unwrap_or_default();
        if let Some(system) = std::env::var_os("PATH") {
            path.extend(std::env::split_paths(&system));
        }
        Ok(Streamer {
            program: streamer_program(),
            path: std::env::join_paths(path).ok(),
            conninfo: with_application_name(conninfo, app),
            slot: cfg.slot_name.clone(),
        })
    }

    /// `barman-receive-wal -d CONNINFO [-S SLOT] ARGS`.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        }
        cmd.arg("-d").arg(&self.conninfo);
        if let Some(slot) = &self.slot {
            cmd.arg("-S").arg(slot);
        }
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// Runs a one-shot action; `Ok(stdout)` or `Err(stderr)` (the streamer's error text).
    fn once(&self, args: &[&str]) -> Result<Result<String, String>, CmdError> {
        let output = self
            .command(args)
            .output()
            .map_err(|e| CmdError::Exception(format!("cannot run {}: {e}", self.program.display())))?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        let stderr = stderr.replace(&format!("{STREAMER}: error: "), "");
        if output.status.success() {
            Ok(Ok(String::from_utf8_lossy(&output.stdout).into_owned()))
        } else {
            Ok(Err(stderr))
        }
    }

    /// `--identify`: the server's position and the slot's state.
    fn identify(&self) -> Result<Result<Status, String>, CmdError> {
        Ok(self.once(&["--identify", "--no-password"])?.map(|text| Status::parse(&text)))
    }
}

/// `barman-receive-wal` next to the running `barman`, else the bare name (found on PATH).
fn streamer_program() -> PathBuf {
    barman_common::remote::sibling_binary(STREAMER)
}

/// Appends `application_name` to a key=value conninfo or a URI, as Barman does for
/// pg_receivewal's `--dbname`.
fn with_application_name(conninfo: &str, app: &str) -> String {
    let conninfo = conninfo.trim();
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let sep = if conninfo.contains('?') { '&' } else { '?' };
        format!("{conninfo}{sep}application_name={app}")
    } else {
        format!("{conninfo} application_name={app}")
    }
}

/// What `barman-receive-wal --identify` reports.
#[derive(Debug, Default)]
struct Status {
    values: BTreeMap<String, String>,
}

impl Status {
    fn parse(text: &str) -> Status {
        let values = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Status { values }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// `Some(true/false)` when the server could tell (PG 15+), `None` otherwise.
    fn slot_exists(&self) -> Option<bool> {
        self.get("slot").map(|s| s == "present")
    }

    fn timeline(&self) -> Option<TimelineId> {
        self.get("timeline")?.parse().ok()
    }

    fn xlogpos(&self) -> Option<Lsn> {
        self.get("xlogpos")?.parse().ok()
    }

    fn segment_size(&self) -> Option<WalSegSize> {
        WalSegSize::new(self.get("wal_segment_size")?.parse().ok()?).ok()
    }

    fn slot_restart_lsn(&self) -> Option<Lsn> {
        self.get("slot_restart_lsn")?.parse().ok()
    }

    /// Barman's `_is_synchronous`: `synchronous_standby_names` mentions the archiver name
    /// or `*` (a substring test, as Barman's).
    fn is_synchronous(&self, app: &str) -> bool {
        self.get("synchronous_standby_names").is_some_and(|names| names.contains('*') || names.contains(app))
    }
}

fn slot_name_required(action: &str) -> CmdError {
    CmdError::Error(format!("Unable to {action} a physical replication slot: slot_name configuration option required"))
}

/// `--create-slot [--if-not-exists]`.
fn create_slot(streamer: &Streamer, cfg: &ServerConfig, if_not_exists: bool, out: &mut Output) -> Result<(), CmdError> {
    let name = cfg.name();
    let slot = cfg.slot_name.as_deref().ok_or_else(|| slot_name_required("create"))?;
    if let Err(e) = streamer.identify()? {
        crate::log::error("server", &format!("Cannot connect to server '{name}': {e}"));
        return Err(CmdError::Error(format!("Cannot connect to server '{name}'")));
    }
    out.info(format!("Creating physical replication slot '{slot}' on server '{name}'"));
    match streamer.once(&["--create-slot", "--no-password"])? {
        Ok(_) => {
            out.info(format!("Replication slot '{slot}' created"));
            Ok(())
        }
        Err(e) if e.contains("already exists") => {
            if if_not_exists {
                out.info(format!(
                    "Replication slot '{slot}' already exists and --if-not-exists was specified. Skipping creation"
                ));
                Ok(())
            } else {
                Err(CmdError::Error(format!("Replication slot '{slot}' already exists")))
            }
        }
        Err(e) if e.contains("all replication slots are in use") => Err(CmdError::Error(format!(
            "All replication slots for server '{name}' are in use\n\
             Free one or increase the max_replication_slots value on your PostgreSQL server."
        ))),
        Err(e) => Err(CmdError::Error(format!("Cannot create replication slot '{slot}' on server '{name}': {e}"))),
    }
}

/// `--drop-slot`.
fn drop_slot(streamer: &Streamer, cfg: &ServerConfig, out: &mut Output) -> Result<(), CmdError> {
    let name = cfg.name();
    let slot = cfg.slot_name.as_deref().ok_or_else(|| slot_name_required("drop"))?;
    if let Err(e) = streamer.identify()? {
        crate::log::error("server", &format!("Cannot connect to server '{name}': {e}"));
        return Err(CmdError::Error(format!("Cannot connect to server '{name}'")));
    }
    out.info(format!("Dropping physical replication slot '{slot}' on server '{name}'"));
    match streamer.once(&["--drop-slot", "--no-password"])? {
        Ok(_) => {
            out.info(format!("Replication slot '{slot}' dropped"));
            Ok(())
        }
        Err(e) if e.contains("does not exist") => {
            Err(CmdError::Error(format!("Replication slot '{slot}' does not exist")))
        }
        Err(e) if e.contains("is active") => Err(CmdError::Error(format!(
            "Cannot drop replication slot '{slot}' on server '{name}' because it is in use."
        ))),
        Err(e) => Err(CmdError::Error(format!("Cannot drop replication slot '{slot}' on server '{name}': {e}"))),
    }
}

/// `receive-wal [--reset]`.
fn receive(
    server: &Server,
    cfg: &ServerConfig,
    streamer: &Streamer,
    reset: bool,
    out: &mut Output,
) -> Result<(), CmdError> {
    let name = &server.name;
    if !server.streaming_archiver {
        return Err(CmdError::Error(
            "Unable to start receive-wal process: streaming_archiver option set to 'off' in barman configuration file"
                .into(),
        ));
    }
    let status = match streamer.identify()? {
        Ok(status) => status,
        Err(e) => {
            crate::log::error("server", &format!("{name}: WAL streaming preflight failed: {e}"));
            return Err(CmdError::Error(format!(
                "Impossible to start WAL streaming. Check the log for more details, or run 'barman check {name}'"
            )));
        }
    };
    if !reset {
        out.info(format!("Starting receive-wal for server {name}"));
    }
    let _lock = match ServerLock::acquire(&server.layout.lock_directory, name, &LockKind::ReceiveWal) {
        Ok(lock) => lock,
        Err(LockError::Busy { .. }) if reset => {
            return Err(CmdError::Error(format!(
                "Unable to reset the status of receive-wal for server {name}. Process is still running"
            )))
        }
        Err(LockError::Busy { .. }) => {
            return Err(CmdError::Error(format!("Another receive-wal process is already running for server {name}.")))
        }
        Err(e) => return Err(CmdError::Exception(e.to_string())),
    };
    let streaming = &server.layout.streaming;
    fs::create_dir_all(streaming)?;

    if let Some(slot) = cfg.slot_name.as_deref() {
        if status.slot_exists().or_else(|| crate::cmd::live::slot_exists(cfg, slot)) == Some(false) {
            if cfg.create_slot != CreateSlot::Auto {
                return Err(CmdError::Error(format!(
                    "replication slot '{slot}' doesn't exist. Please execute 'barman receive-wal --create-slot {name}'"
                )));
            }
            if !reset {
                out.info(format!("Creating replication slot '{slot}'"));
                if let Err(e) = streamer.once(&["--create-slot", "--if-not-exists", "--no-password"])? {
                    return Err(CmdError::Error(format!(
                        "Cannot create replication slot '{slot}' on server '{name}': {e}"
                    )));
                }
            }
        }
    }

    let size = status.segment_size().unwrap_or(WalSegSize::DEFAULT);
    if reset {
        return reset_status(streaming, &status, size, out);
    }
    if let Some(msg) = truncate_partial(streaming, size)? {
        out.logged_as("wal_archiver", |out| out.info(msg));
    }

    crate::log::info("wal_archiver", "Activating WAL archiving through streaming protocol");
    let app = cfg.streaming_archiver_name.as_deref().unwrap_or("barman_receive_wal");
    let mut args =
        vec!["-D".to_owned(), streaming.display().to_string(), "-n".into(), "--no-password".into(), "-v".into()];
    if status.is_synchronous(app) {
        args.push("--synchronous".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    supervise(streamer, &args, name, out)
}

/// Runs the streamer until it ends, forwarding SIGINT/SIGTERM to it and logging its stderr
/// lines as `<server>: <line>`.
fn supervise(streamer: &Streamer, args: &[&str], name: &str, out: &mut Output) -> Result<(), CmdError> {
    let mut child = streamer
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CmdError::Exception(format!("cannot run {}: {e}", streamer.program.display())))?;
    // The child has exec'd with the default mask; from here on the signals are ours to take
    // with sigwait (threads spawned below inherit the mask, so none of them is killed by one).
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
        signals.add(s);
    }
    signals.thread_block().map_err(|e| CmdError::Exception(format!("cannot block signals: {e}")))?;
    let stderr = child.stderr.take();
    let prefix = format!("{name}: ");
    let logger = std::thread::spawn(move || {
        if let Some(stderr) = stderr {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = line.trim_end();
                if !line.is_empty() {
                    crate::log::info(LOG_MODULE, &format!("{prefix}{line}"));
                }
            }
        }
    });
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let mut stopping = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok(sig @ (Signal::SIGINT | Signal::SIGTERM)) = signals.wait() {
            stopping = true;
            let _ = kill(pid, sig);
        }
    };
    let _ = logger.join();
    let _ = signals.thread_unblock();
    if stopping && status.success() {
        out.info("SIGINT received. Terminate gracefully.");
        return Ok(());
    }
    let msg = match (status.code(), status.signal()) {
        (Some(0), _) => return Ok(()),
        (_, Some(sig)) => format!("{STREAMER} terminated by signal: {sig}"),
        (Some(code), _) => format!("{STREAMER} terminated with error code: {code}"),
        (None, None) => format!("{STREAMER} terminated abnormally"),
    };
    // Cron's receiver has no terminal: the log is where this is seen.
    crate::log::error("server", &format!("{name}: {msg}"));
    Err(CmdError::Error(msg))
}

/// True for `<24 hex>` and `<24 hex>.partial` names (Barman's `is_wal_file` /
/// `is_partial_file` for what the streamer writes).
fn wal_or_partial(name: &str) -> Option<(bool, &str)> {
    let (base, partial) = name.strip_suffix(".partial").map_or((name, false), |b| (b, true));
    (base.len() == 24 && base.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)))
        .then_some((partial, base))
}

fn file_names(dir: &Path) -> Result<Vec<String>, CmdError> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    names.sort();
    Ok(names)
}

/// Barman's `_truncate_partial_file_if_needed`: the newest `.partial` whose size is neither
/// 0 nor the segment size is emptied (pg_receivewal pads it to full size before writing).
fn truncate_partial(dir: &Path, size: WalSegSize) -> Result<Option<String>, CmdError> {
    let Some(last) = file_names(dir)?.into_iter().rev().find(|n| wal_or_partial(n).is_some_and(|(p, _)| p)) else {
        return Ok(None);
    };
    let path = dir.join(&last);
    let len = fs::metadata(&path)?.len();
    if len == 0 || len == u64::from(size.bytes()) {
        return Ok(None);
    }
    OpenOptions::new().write(true).truncate(true).open(&path)?;
    Ok(Some(format!(
        "Truncating partial file {} that has wrong size {len} while {} was expected.",
        path.display(),
        size.bytes()
    )))
}

/// Barman's `_reset_streaming_status`: aligns streaming/ with the slot's restart position
/// (else the server's current one) by replacing the newest `.partial` with an empty one.
fn reset_status(dir: &Path, status: &Status, size: WalSegSize, out: &mut Output) -> Result<(), CmdError> {
    let (Some(tli), Some(current_lsn)) = (status.timeline(), status.xlogpos()) else {
        return Err(CmdError::Error("cannot read the server's current WAL position".into()));
    };
    let current = WalFileName::containing(tli, current_lsn, size).to_string();
    let restart = status
        .slot_restart_lsn()
        .map_or_else(|| current.clone(), |lsn| WalFileName::containing(tli, lsn, size).to_string());
    let restart_partial = format!("{restart}.partial");
    let last = file_names(dir)?.into_iter().rev().find(|n| wal_or_partial(n).is_some());
    let Some(last) = last.filter(|l| *l != restart_partial && *l != restart) else {
        out.info("Nothing to do. Position of receive-wal is aligned.");
        return Ok(());
    };
    if last > current {
        return Err(CmdError::Error(format!(
            "The receive-wal position is ahead of PostgreSQL current WAL lsn ({last} > {current})"
        )));
    }
    out.info("Resetting receive-wal directory status");
    if last.ends_with(".partial") {
        let path = dir.join(&last);
        out.info(format!("Removing status file {}", path.display()));
        fs::remove_file(&path)?;
    }
    let path = dir.join(&restart_partial);
    out.info(format!("Creating status file {}", path.display()));
    fs::File::create(&path)?;
    Ok(())
}

/// True while the receive-wal lock of `server` is held.
fn lock_path(server: &Server) -> PathBuf {
    server.layout.lock_directory.join(LockKind::ReceiveWal.file_name(&server.name))
}

/// `--stop` (and cron's kill): SIGINT to the lock holder, then wait for the lock to be
/// released. With `fail_if_not_present`, no running receiver is an error.
pub fn stop(server: &Server, fail_if_not_present: bool, out: &mut Output) -> Result<(), CmdError> {
    let path = lock_path(server);
    let owner = lock_owner(&path).map_err(|e| CmdError::Exception(e.to_string()))?;
    let Some(pid) = owner else {
        if fail_if_not_present {
            return Err(CmdError::Error(format!(
                "Termination of receive-wal failed: no such process for server {}",
                server.name
            )));
        }
        return Ok(());
    };
    let target = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    match kill(target, Signal::SIGINT) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => return Err(CmdError::Error(e.to_string())),
    }
    let deadline = Instant::now() + STOP_WAIT;
    while Instant::now() < deadline {
        if lock_owner(&path).map_err(|e| CmdError::Exception(e.to_string()))?.is_none() {
            out.info(format!("Stopped process receive-wal({pid})"));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(CmdError::Error(format!("Cannot terminate process receive-wal({pid})")))
}

/// Cron's part for one active, non-passive server (under its cron lock): with
/// `streaming_archiver` on, start `barman -c <config> -q receive-wal <srv>` in its own process
/// group, detached, unless its lock is held; with it off, stop any running receiver.
pub fn cron(ctx: &Context, server: &Server, keep_descriptors: bool, out: &mut Output) -> Result<(), CmdError> {
    let passive = ctx.config().server(&server.name).is_some_and(|c| c.primary_ssh_command.is_some());
    if passive {
        return Ok(());
    }
    if !server.streaming_archiver {
        return stop(server, false, out);
    }
    if lock_owner(&lock_path(server)).map_err(|e| CmdError::Exception(e.to_string()))?.is_some() {
        return Ok(());
    }
    out.info(format!("Starting streaming archiver for server {}", server.name));
    let exe = std::env::current_exe()?;
    Command::new(exe)
        .arg("-c")
        .arg(ctx.config().config_file())
        .args(["-q", "receive-wal", &server.name])
        .stdin(Stdio::null())
        .stdout(if keep_descriptors { Stdio::inherit() } else { Stdio::null() })
        .stderr(if keep_descriptors { Stdio::inherit() } else { Stdio::null() })
        .process_group(0)
        .spawn()
        .map_err(|e| CmdError::Exception(format!("cannot start receive-wal for server {}: {e}", server.name)))?;
    Ok(())
}

/// Cron's part for an inactive server: stop its receiver, if one is running.
pub fn cron_inactive(server: &Server, out: &mut Output) {
    if matches!(lock_owner(&lock_path(server)), Ok(Some(_))) {
        out.info(format!("Server '{}' is inactive: stopping receive-wal subprocess", server.name));
        if let Err(e) = stop(server, false, out) {
            out.error(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_name_is_appended() {
        assert_eq!(with_application_name("host=/tmp port=5432", "b"), "host=/tmp port=5432 application_name=b");
        assert_eq!(with_application_name("postgresql://h/db", "b"), "postgresql://h/db?application_name=b");
        assert_eq!(with_application_name("postgresql://h/db?x=1", "b"), "postgresql://h/db?x=1&application_name=b");
    }

    #[test]
    fn synchronous_when_named_or_star() {
        let s = Status::parse("synchronous_standby_names=FIRST 1 (barman_receive_wal)\n");
        assert!(s.is_synchronous("barman_receive_wal"));
        assert!(!s.is_synchronous("other"));
        assert!(Status::parse("synchronous_standby_names=*\n").is_synchronous("x"));
        assert!(!Status::parse("synchronous_standby_names=\n").is_synchronous("x"));
    }

    #[test]
    fn truncates_only_odd_sized_partials() {
        let dir = tempfile_dir();
        let size = WalSegSize::DEFAULT;
        fs::write(dir.join("000000010000000000000001.partial"), b"abc").expect("write");
        assert!(truncate_partial(&dir, size).expect("truncate").is_some());
        assert_eq!(fs::metadata(dir.join("000000010000000000000001.partial")).expect("meta").len(), 0);
        assert!(truncate_partial(&dir, size).expect("truncate").is_none());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn reset_replaces_the_partial() {
        let dir = tempfile_dir();
        let size = WalSegSize::DEFAULT;
        fs::write(dir.join("000000010000000000000002.partial"), b"").expect("write");
        let status = Status::parse("timeline=1\nxlogpos=0/5000028\nwal_segment_size=16777216\nslot=present\n");
        let mut out = Output::new(true, true);
        reset_status(&dir, &status, size, &mut out).expect("reset");
        assert_eq!(file_names(&dir).expect("names"), vec!["000000010000000000000005.partial".to_owned()]);
        // Aligned now: nothing to do.
        reset_status(&dir, &status, size, &mut out).expect("reset");
        // Ahead of the server: refused.
        let behind = Status::parse("timeline=1\nxlogpos=0/3000028\nwal_segment_size=16777216\n");
        assert!(reset_status(&dir, &behind, size, &mut out).is_err());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "barman-receive-wal-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ));
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
