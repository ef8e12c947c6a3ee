//! Real Barman 3.20.1 as a peer and oracle, and Barman configurations pointing at clusters.
//!
//! [`RealBarman`] finds the venv (`/opt/barman-venv`, or `$BARMAN_VENV`) that setup.sh
//! provisions. [`BarmanHome`] is one `barman.conf` plus its `barman_home`, both in the
//! scratch dir and owned by the OS user that runs `barman` (usually `barman`, which is also
//! `barman_user`, as Barman insists). It can drive real Barman or any Barman-compatible
//! binary (ours) against the same catalogue. [`real_barman_catalogue`] builds the fixture
//! later tests read: a cluster archiving through Barman's own `barman-wal-archive` over the
//! private sshd into a real Barman catalogue with one DONE backup.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd::{self, as_user, OsUser, Outcome};
use crate::pg::{PgCluster, PgOptions, SYSTEM_PATH};
use crate::scratch::{write_file, Scratch};
use crate::sshd::{Sshd, SshdOptions};

/// Where setup.sh installs Barman.
pub const DEFAULT_VENV: &str = "/opt/barman-venv";

/// The Barman release we are compatible with.
pub const BARMAN_VERSION: &str = "3.20.1";

/// Timeout for one Barman command (backups included).
const BARMAN_TIMEOUT: Duration = Duration::from_mins(3);

/// An installed real Barman (a Python venv).
#[derive(Clone, Debug)]
pub struct RealBarman {
    venv: PathBuf,
}

impl RealBarman {
    /// The venv at `$BARMAN_VENV` or [`DEFAULT_VENV`]; an error when it has no `barman`.
    /// Use with [`crate::skip_unless!`]: a skip locally, a failure under `CI=true`.
    pub fn require() -> Result<Self> {
        let venv = std::env::var_os("BARMAN_VENV").map_or_else(|| PathBuf::from(DEFAULT_VENV), PathBuf::from);
        let barman = Self { venv };
        if !barman.bin("barman").is_file() {
            bail!(
                "real Barman not found at {} (run integration/setup.sh or set BARMAN_VENV)",
                barman.bin("barman").display()
            );
        }
        Ok(barman)
    }

    /// Real Barman for an optional comparison: `None` when it is not installed (reported as
    /// a skip), a panic under `CI=true`, where the comparison is never skipped.
    pub fn optional() -> Option<Self> {
        match Self::require() {
            Ok(real) => Some(real),
            Err(e) => {
                crate::skip_or_fail(&e);
                None
            }
        }
    }

    /// The venv directory.
    pub fn venv(&self) -> &Path {
        &self.venv
    }

    /// The venv's `bin/` directory.
    pub fn bin_dir(&self) -> PathBuf {
        self.venv.join("bin")
    }

    /// A venv program: `barman`, `barman-wal-archive`, `barman-wal-restore`, ...
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir().join(name)
    }

    /// `barman --version`, e.g. `"3.20.1"`.
    pub fn version(&self) -> Result<String> {
        let output = cmd::run(Command::new(self.bin("barman")).arg("--version"))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.split_whitespace()
            .next()
            .map(str::to_string)
            .with_context(|| format!("unexpected barman --version output {text:?}"))
    }
}

/// Settings of one server section in a [`BarmanHome`] config.
#[derive(Clone, Debug)]
pub struct BarmanServerOptions {
    /// `backup_method` (`postgres` by default).
    pub backup_method: String,
    /// `archiver`.
    pub archiver: bool,
    /// `streaming_archiver`.
    pub streaming_archiver: bool,
    /// `slot_name` (with `create_slot = auto`).
    pub slot_name: Option<String>,
    /// `compression` (`gzip`, `zstd`, ...).
    pub compression: Option<String>,
    /// Further `key = value` lines for the section.
    pub extra: Vec<String>,
}

impl Default for BarmanServerOptions {
    fn default() -> Self {
        Self {
            backup_method: "postgres".into(),
            archiver: true,
            streaming_archiver: false,
            slot_name: None,
            compression: None,
            extra: Vec::new(),
        }
    }
}

/// A `barman.conf` and its `barman_home`, owned by the OS user that runs `barman`.
#[derive(Debug)]
pub struct BarmanHome {
    _scratch: Scratch,
    user: OsUser,
    dir: PathBuf,
    barman_bin: PathBuf,
    path_prefix: Vec<PathBuf>,
    servers: String,
    globals: String,
    netns: Option<String>,
}

impl BarmanHome {
    /// A new home in `<scratch>/barman-<n>/` (`barman.conf`, `home/`, `barman.log`) for
    /// `user`, driving `barman_bin` (real Barman's or ours). No servers yet.
    pub fn new(scratch: &Scratch, user: &str, barman_bin: impl Into<PathBuf>) -> Result<Self> {
        let user = OsUser::lookup(user)?;
        let dir = scratch.unique_dir("barman", &user.name)?;
        scratch.mkdir_owned(dir.join("home"), &user.name)?;
        let barman_bin = barman_bin.into();
        let mut path_prefix = Vec::new();
        if let Some(bin_dir) = barman_bin.parent() {
            path_prefix.push(bin_dir.to_path_buf());
        }
        let home = Self {
            _scratch: scratch.clone(),
            user,
            dir,
            barman_bin,
            path_prefix,
            servers: String::new(),
            globals: String::new(),
            netns: None,
        };
        home.write_config()?;
        Ok(home)
    }

    /// A home driven by real Barman.
    pub fn real(scratch: &Scratch, real: &RealBarman, user: &str) -> Result<Self> {
        Self::new(scratch, user, real.bin("barman"))
    }

    /// The config file (`barman -c <this>`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("barman.conf")
    }

    /// `barman_home`.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// `barman_home/<server>`.
    pub fn server_dir(&self, server: &str) -> PathBuf {
        self.home().join(server)
    }

    /// `<server>-xlog.db`, Barman 3's WAL index (default `xlogdb_directory` = `wals/`).
    pub fn xlog_db(&self, server: &str) -> PathBuf {
        self.server_dir(server).join("wals").join(format!("{server}-xlog.db"))
    }

    /// The OS user that runs `barman` (and is `barman_user`).
    pub fn user(&self) -> &OsUser {
        &self.user
    }

    /// The `barman` binary this home runs.
    pub fn barman_bin(&self) -> &Path {
        &self.barman_bin
    }

    /// Puts `dir` first on the `PATH` of `barman` runs (e.g. an ssh wrapper dir).
    pub fn add_path_prefix(&mut self, dir: impl Into<PathBuf>) {
        self.path_prefix.insert(0, dir.into());
    }

    /// Runs every later command of this home inside network namespace `ns` (a backup host
    /// of its own).
    pub fn set_netns(&mut self, ns: &crate::netns::NetNs) {
        self.netns = Some(ns.name().to_owned());
    }

    /// Appends `key = value` lines to the `[barman]` section.
    pub fn add_global(&mut self, lines: &[&str]) -> Result<()> {
        for l in lines {
            writeln!(self.globals, "{l}")?;
        }
        self.write_config()
    }

    /// Adds a server section made of `lines` alone (a passive server needs no PostgreSQL).
    pub fn add_raw_server(&mut self, name: &str, lines: &[&str]) -> Result<()> {
        writeln!(self.servers, "\n[{name}]")?;
        for l in lines {
            writeln!(self.servers, "{l}")?;
        }
        self.write_config()
    }

    /// Barman's log file.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("barman.log")).unwrap_or_default()
    }

    /// Adds server section `[name]` for `pg` (conninfo over its socket, `path_prefix` = the
    /// client bin dir of its PostgreSQL version) and rewrites the config.
    pub fn add_server(&mut self, name: &str, pg: &PgCluster, opts: &BarmanServerOptions) -> Result<()> {
        let on_off = |b: bool| if b { "on" } else { "off" };
        let s = &mut self.servers;
        writeln!(s, "\n[{name}]")?;
        writeln!(s, "description = \"harness cluster {}\"", pg.data_dir().display())?;
        writeln!(s, "conninfo = {}", pg.conninfo())?;
        writeln!(s, "streaming_conninfo = host={} port={} user=postgres", pg.socket_dir().display(), pg.port())?;
        writeln!(s, "backup_method = {}", opts.backup_method)?;
        writeln!(s, "archiver = {}", on_off(opts.archiver))?;
        writeln!(s, "streaming_archiver = {}", on_off(opts.streaming_archiver))?;
        writeln!(s, "path_prefix = {}", pg.version().client_bin().display())?;
        if let Some(slot) = &opts.slot_name {
            writeln!(s, "slot_name = {slot}\ncreate_slot = auto")?;
        }
        if let Some(compression) = &opts.compression {
            writeln!(s, "compression = {compression}")?;
        }
        for line in &opts.extra {
            writeln!(s, "{line}")?;
        }
        self.write_config()
    }

    fn write_config(&self) -> Result<()> {
        let config = format!(
            "; Written by the integration harness.\n[barman]\nbarman_home = {home}\n\
             barman_user = {user}\nlog_file = {log}\nlog_level = INFO\n{globals}{servers}",
            home = self.home().display(),
            user = self.user.name,
            log = self.dir.join("barman.log").display(),
            globals = self.globals,
            servers = self.servers,
        );
        write_file(&self.config_path(), config, 0o644)
    }

    /// A `barman -c <config> <args>` command running as the home's user.
    pub fn command(&self, args: &[&str]) -> Command {
        self.program_command(&self.barman_bin, args)
    }

    /// `program -c <config> <args>` as the home's user, in its namespace, with its `PATH`
    /// (for `barman-relay` and the other tools reading the same configuration).
    pub fn program_command(&self, program: &Path, args: &[&str]) -> Command {
        let mut barman = match &self.netns {
            None => {
                let mut c = Command::new(program);
                as_user(&mut c, &self.user);
                c
            }
            Some(ns) => crate::netns::command_as_in(ns, &self.user, program),
        };
        let mut path: Vec<String> = self.path_prefix.iter().map(|d| d.display().to_string()).collect();
        path.push(SYSTEM_PATH.into());
        barman.env("PATH", path.join(":")).arg("-c").arg(self.config_path()).args(args);
        barman
    }

    /// Runs `barman -c <config> <args>` and returns its outcome, whatever the exit status.
    pub fn outcome(&self, args: &[&str]) -> Result<Outcome> {
        cmd::execute(&mut self.command(args), None, BARMAN_TIMEOUT)
    }

    /// Runs `barman -c <config> <args>`, failing (with Barman's log tail) unless it exits 0;
    /// returns stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let outcome = self.outcome(args)?;
        outcome.success().with_context(|| {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("barman log tail:\n{}", tail.join("\n"))
        })?;
        Ok(outcome.stdout_str())
    }

    /// `barman -f json <args>`, parsed.
    pub fn run_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = vec!["-f", "json"];
        all.extend_from_slice(args);
        let text = self.run(&all)?;
        serde_json::from_str(&text).with_context(|| format!("barman -f json output: {text}"))
    }

    /// Ids of the backups of `server` whose status is `DONE` (from `list-backups`).
    pub fn done_backups(&self, server: &str) -> Result<Vec<String>> {
        let json = self.run_json(&["list-backups", server])?;
        let backups = json
            .get(server)
            .and_then(serde_json::Value::as_array)
            .with_context(|| format!("unexpected list-backups JSON: {json}"))?;
        Ok(backups
            .iter()
            .filter(|b| b.get("status").and_then(serde_json::Value::as_str) == Some("DONE"))
            .filter_map(|b| b.get("backup_id").and_then(serde_json::Value::as_str))
            .map(str::to_string)
            .collect())
    }
}

/// A cluster archiving into a real Barman catalogue over the private sshd. Fields drop in
/// order: the cluster stops before sshd goes away.
#[derive(Debug)]
pub struct RealCatalogue {
    /// The archiving cluster (table `harness_data` holds some rows).
    pub pg: PgCluster,
    /// The real Barman home with server `pg`, at least one DONE backup and archived WAL.
    pub barman: BarmanHome,
    /// The sshd that `archive_command` reaches.
    pub sshd: Sshd,
}

/// Builds the [`RealCatalogue`] fixture: sshd with real Barman first on the remote `PATH`;
/// a cluster whose `archive_command` is Barman's own
/// `barman-wal-archive -c <config> 127.0.0.1 pg %p` (ssh as `barman` through the `postgres`
/// user's wrapper); a real Barman home for user `barman` with server `pg`; some data, a WAL
/// switch archived with `barman switch-wal --force --archive`, and `barman backup --wait`.
pub fn real_barman_catalogue(scratch: &Scratch) -> Result<RealCatalogue> {
    let real = RealBarman::require()?;
    let sshd = Sshd::start(scratch, SshdOptions::real_barman_first())?;
    let mut barman = BarmanHome::real(scratch, &real, "barman")?;
    let archive_command =
        format!("{} -c {} 127.0.0.1 pg %p", real.bin("barman-wal-archive").display(), barman.config_path().display());
    let opts = PgOptions::default().archive_command(archive_command).path_prefix(sshd.ssh_wrapper_dir_for("postgres")?);
    let pg = PgCluster::start(scratch, opts)?;
    barman.add_server("pg", &pg, &BarmanServerOptions::default())?;
    pg.psql(
        "create table harness_data(id int primary key, v text); \
             insert into harness_data select g, md5(g::text) from generate_series(1, 1000) g",
    )?;
    let result = build_catalogue(&pg, &barman);
    pg.with_log(result).with_context(|| format!("sshd log:\n{}", sshd.log()))?;
    Ok(RealCatalogue { pg, barman, sshd })
}

fn build_catalogue(pg: &PgCluster, barman: &BarmanHome) -> Result<()> {
    barman.run(&["switch-wal", "--force", "--archive", "--archive-timeout", "60", "pg"])?;
    barman.run(&["backup", "--wait", "--wait-timeout", "60", "pg"])?;
    pg.psql("insert into harness_data select g, md5(g::text) from generate_series(1001, 2000) g")?;
    barman.run(&["switch-wal", "--force", "--archive", "--archive-timeout", "60", "pg"])?;
    let done = barman.done_backups("pg")?;
    if done.is_empty() {
        bail!("no DONE backup after barman backup; list-backup:\n{}", barman.run(&["list-backup", "pg"])?);
    }
    Ok(())
}
