//! Real PostgreSQL clusters (15 unless [`PgOptions::version`] says otherwise, see
//! [`crate::pgversion`]), run as the `postgres` OS user.
//!
//! A [`PgCluster`] lives in `<scratch>/pg-<n>/`: `data/` (0700, the data directory),
//! `server.log`, and the Unix socket itself (the directory is 0755 and the socket 0777, so any
//! user can connect). The harness's settings go to `data/harness.conf`, included from
//! `postgresql.conf`, and are rewritten on every start: port, socket, WAL and archiving.
//! The server's environment has a clean `PATH` with [`PgOptions::path_prefix`] first, which
//! is how `archive_command`/`restore_command` find our binaries and the ssh wrapper
//! (see [`crate::sshd`]). Dropping a cluster stops it (`-m immediate`, then SIGKILL).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::cmd::{self, as_user, OsUser};
use crate::pgversion::PgVersion;
use crate::scratch::{chown_recursive, set_mode, write_file, Scratch};
use crate::wait_until;

/// Where the PostgreSQL 15 binaries live (Debian layout).
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The `PATH` that servers and harness-run commands end with.
pub const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

const PG_USER: &str = "postgres";
const LOG_TAIL_LINES: usize = 60;

/// `archive_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ArchiveMode {
    /// No archiving.
    #[default]
    Off,
    /// Archive on a primary.
    On,
    /// Archive also during recovery (standbys).
    Always,
}

/// How to configure and run a cluster. `Default` is a fast, non-archiving primary.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `archive_mode`.
    pub archive_mode: ArchiveMode,
    /// `archive_command`; `/bin/true` when archiving is on and this is `None`.
    pub archive_command: Option<String>,
    /// `wal_keep_size`, e.g. `"64MB"`.
    pub wal_keep_size: Option<String>,
    /// `fsync` (off by default: test data need not survive an OS crash).
    pub fsync: bool,
    /// `synchronous_commit`.
    pub synchronous_commit: Option<String>,
    /// `max_wal_size` (small, so checkpoints and segment recycling happen in tests).
    pub max_wal_size: String,
    /// Extra `postgresql.conf` lines, written last (they win).
    pub extra_conf: Vec<String>,
    /// Extra environment for the server process (and so for archive/restore commands).
    pub env: Vec<(String, String)>,
    /// Directories put first on the server's `PATH`.
    pub path_prefix: Vec<PathBuf>,
    /// Extra `initdb` arguments (e.g. `--wal-segsize=1`).
    pub initdb_args: Vec<String>,
    /// How long `pg_ctl start -w` may wait (recovery can take a while).
    pub start_timeout: Duration,
    /// The PostgreSQL major to run (default 15).
    pub version: PgVersion,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            archive_mode: ArchiveMode::Off,
            archive_command: None,
            wal_keep_size: None,
            fsync: false,
            synchronous_commit: None,
            max_wal_size: "64MB".into(),
            extra_conf: Vec::new(),
            env: Vec::new(),
            path_prefix: Vec::new(),
            initdb_args: Vec::new(),
            start_timeout: Duration::from_mins(1),
            version: PgVersion::default(),
        }
    }
}

impl PgOptions {
    /// Turns archiving on with `command` as `archive_command`.
    #[must_use]
    pub fn archive_command(mut self, command: impl Into<String>) -> Self {
        if self.archive_mode == ArchiveMode::Off {
            self.archive_mode = ArchiveMode::On;
        }
        self.archive_command = Some(command.into());
        self
    }

    /// Adds a `postgresql.conf` line.
    #[must_use]
    pub fn conf(mut self, line: impl Into<String>) -> Self {
        self.extra_conf.push(line.into());
        self
    }

    /// Adds an environment variable for the server process.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs PostgreSQL `version` instead of 15.
    #[must_use]
    pub fn version(mut self, version: PgVersion) -> Self {
        self.version = version;
        self
    }

    /// Puts `dir` on the server's `PATH` (before directories added earlier).
    #[must_use]
    pub fn path_prefix(mut self, dir: impl Into<PathBuf>) -> Self {
        self.path_prefix.insert(0, dir.into());
        self
    }

    /// The server's `PATH`: prefixes, the version's server and client bin dirs, then the
    /// system dirs.
    pub fn server_path(&self) -> String {
        let mut dirs: Vec<String> = self.path_prefix.iter().map(|d| d.display().to_string()).collect();
        dirs.push(self.version.server_bin().display().to_string());
        if self.version.client_bin() != self.version.server_bin() {
            dirs.push(self.version.client_bin().display().to_string());
        }
        dirs.push(SYSTEM_PATH.into());
        dirs.join(":")
    }
}

/// A running (or stopped) PostgreSQL cluster owned by the `postgres` OS user.
#[derive(Debug)]
pub struct PgCluster {
    _scratch: Scratch,
    run_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    opts: PgOptions,
    running: bool,
}

impl PgCluster {
    /// Fails unless the PostgreSQL binaries and the `postgres` user are there and we are root.
    pub fn require() -> Result<()> {
        crate::require_root()?;
        for bin in ["initdb", "postgres", "pg_ctl", "psql", "pg_controldata"] {
            let path = Path::new(PG_BIN).join(bin);
            if !path.is_file() {
                bail!("{} missing (run integration/setup.sh)", path.display());
            }
        }
        OsUser::lookup(PG_USER).map(drop)
    }

    /// `initdb` a new cluster in `<scratch>/pg-<n>/data` and start it.
    pub fn start(scratch: &Scratch, opts: PgOptions) -> Result<Self> {
        let run_dir = scratch.unique_dir("pg", PG_USER)?;
        let data_dir = run_dir.join("data");
        opts.version.require()?;
        let mut initdb = Command::new(opts.version.tool("initdb"));
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args(["-A", "trust", "-U", "postgres", "--data-checksums", "-E", "UTF8"])
            .args(["--locale=C"])
            .args(&opts.initdb_args);
        cmd::run_as(PG_USER, &mut initdb)?;
        write_file(&data_dir.join("pg_hba.conf"), PG_HBA, 0o600)?;
        Self::launch(scratch, run_dir, data_dir, opts)
    }

    /// Starts a cluster in an existing data directory (a restored backup, a base backup).
    /// The directory is chowned to `postgres` and set to 0700 first; the harness settings
    /// (port, socket, archiving) are added as for [`PgCluster::start`]; recovery settings
    /// already there (`recovery.signal`, `postgresql.auto.conf`) are left alone.
    pub fn start_existing(scratch: &Scratch, data_dir: &Path, opts: PgOptions) -> Result<Self> {
        let run_dir = scratch.unique_dir("pg", PG_USER)?;
        let postgres = OsUser::lookup(PG_USER)?;
        chown_recursive(data_dir, &postgres)?;
        set_mode(data_dir, 0o700)?;
        let _ = fs::remove_file(data_dir.join("postmaster.pid"));
        Self::launch(scratch, run_dir, data_dir.to_path_buf(), opts)
    }

    /// Takes a `pg_basebackup` of `source` into `<scratch>/basebackup-<n>` and starts it,
    /// as a streaming standby of `source` when `standby` is true.
    pub fn from_basebackup(scratch: &Scratch, source: &PgCluster, standby: bool, opts: PgOptions) -> Result<Self> {
        let dir = scratch.unique_dir("basebackup", PG_USER)?;
        set_mode(&dir, 0o700)?;
        let mut backup = source.pg_command("pg_basebackup");
        backup.arg("-D").arg(&dir).args(["-X", "stream", "-c", "fast", "--no-sync"]);
        if standby {
            backup.arg("-R");
        }
        source.with_log(cmd::run(&mut backup))?;
        Self::start_existing(scratch, &dir, opts)
    }

    fn launch(scratch: &Scratch, run_dir: PathBuf, data_dir: PathBuf, opts: PgOptions) -> Result<Self> {
        include_harness_conf(&data_dir)?;
        let mut cluster = Self { _scratch: scratch.clone(), run_dir, data_dir, port: 0, opts, running: false };
        cluster.start_with_new_port()?;
        Ok(cluster)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The PostgreSQL major it runs.
    pub fn version(&self) -> PgVersion {
        self.opts.version
    }

    /// The options the cluster runs with.
    pub fn options(&self) -> &PgOptions {
        &self.opts
    }

    /// libpq connection string over the Unix socket, as user `postgres`.
    pub fn conninfo(&self) -> String {
        format!("host={} port={} user=postgres dbname=postgres", self.run_dir.display(), self.port)
    }

    /// libpq connection string over TCP on 127.0.0.1.
    pub fn tcp_conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    /// Path of the server log.
    pub fn log_path(&self) -> PathBuf {
        self.run_dir.join("server.log")
    }

    /// The whole server log (empty if there is none yet).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Attaches the tail of the server log to an error.
    pub fn with_log<T>(&self, result: Result<T>) -> Result<T> {
        result.with_context(|| {
            format!("cluster {} (port {}); server log tail:\n{}", self.data_dir.display(), self.port, self.log_tail())
        })
    }

    /// A command for PostgreSQL tool `tool` (from the version's bin dirs) preset to reach this cluster
    /// over its socket as `postgres` (via `PGHOST`/`PGPORT`/`PGUSER`/`PGDATABASE`).
    pub fn pg_command(&self, tool: &str) -> Command {
        let mut command = Command::new(self.opts.version.tool(tool));
        if let Ok(user) = OsUser::lookup(PG_USER) {
            as_user(&mut command, &user);
        }
        command
            .env("PGHOST", &self.run_dir)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", "postgres");
        command
    }

    /// Runs `sql` (one or more statements) with `psql -XAtq` in database `postgres`;
    /// returns stdout, trimmed. Errors carry psql's stderr and the server log tail.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_db("postgres", sql)
    }

    /// [`PgCluster::psql`] in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> Result<String> {
        let mut psql = self.pg_command("psql");
        psql.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", "-"]);
        let result = cmd::execute(&mut psql, Some(sql.as_bytes()), cmd::DEFAULT_TIMEOUT).and_then(|outcome| {
            outcome.success()?;
            Ok(outcome.stdout_str().trim().to_string())
        });
        self.with_log(result.with_context(|| format!("psql: {sql}")))
    }

    /// `pgbench -i -s scale -q`.
    pub fn pgbench_init(&self, scale: u32) -> Result<()> {
        self.pgbench(&["-i", "-q", "-s", &scale.to_string()]).map(drop)
    }

    /// `pgbench <args>` against database `postgres`; returns stdout.
    pub fn pgbench(&self, args: &[&str]) -> Result<String> {
        let mut pgbench = self.pg_command("pgbench");
        pgbench.args(args);
        let output = self.with_log(cmd::run(&mut pgbench))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Forces a WAL switch; returns the name of the segment that was closed (and will be
    /// archived). Write something first, or there may be nothing to switch.
    pub fn switch_wal(&self) -> Result<String> {
        self.psql("select pg_walfile_name(pg_switch_wal())")
    }

    /// `CHECKPOINT`.
    pub fn checkpoint(&self) -> Result<()> {
        self.psql("checkpoint").map(drop)
    }

    /// `pg_controldata` output as a map (`"Database system identifier"` → value).
    pub fn controldata(&self) -> Result<BTreeMap<String, String>> {
        let mut controldata = Command::new(self.opts.version.tool("pg_controldata"));
        controldata.arg(&self.data_dir).env("LC_ALL", "C");
        let output = cmd::run_as(PG_USER, &mut controldata)?;
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect())
    }

    fn controldata_field(&self, field: &str) -> Result<u64> {
        let data = self.controldata()?;
        let value = data.get(field).ok_or_else(|| anyhow!("pg_controldata has no {field:?}"))?;
        value.parse().with_context(|| format!("pg_controldata {field:?} = {value:?}"))
    }

    /// The database system identifier, from `pg_controldata`.
    pub fn system_identifier(&self) -> Result<u64> {
        self.controldata_field("Database system identifier")
    }

    /// WAL segment size in bytes, from `pg_controldata`.
    pub fn wal_segment_size(&self) -> Result<u64> {
        self.controldata_field("Bytes per WAL segment")
    }

    /// Whether the harness believes the server is running.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// `pg_ctl stop -m fast`.
    pub fn stop(&mut self) -> Result<()> {
        self.pg_ctl_stop("fast")?;
        self.running = false;
        Ok(())
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<()> {
        let mut stop = Command::new(self.opts.version.tool("pg_ctl"));
        stop.arg("-D").arg(&self.data_dir).args(["-m", mode, "-w", "-t", "30", "stop"]);
        self.with_log(cmd::run_as(PG_USER, &mut stop).map(drop))
    }

    /// Starts the stopped (or crashed) cluster again on the same port. (Named so because
    /// `PgCluster::start` creates a cluster.)
    pub fn start_again(&mut self) -> Result<()> {
        self.write_harness_conf()?;
        self.pg_ctl_start()
    }

    /// Rewrites the harness settings (with `extra_conf` lines appended) and restarts.
    pub fn restart_with(&mut self, extra_conf: &[&str]) -> Result<()> {
        self.opts.extra_conf.extend(extra_conf.iter().map(ToString::to_string));
        if self.running {
            self.stop()?;
        }
        self.start_again()
    }

    /// Simulates a crash: SIGKILL to the postmaster and every process of its session.
    pub fn kill9(&mut self) -> Result<()> {
        let pid = self.postmaster_pid()?;
        let raw = nix::unistd::Pid::from_raw(pid);
        // pg_ctl starts the postmaster with setsid(): its pid is the process group id.
        let _ = nix::sys::signal::killpg(raw, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::signal::kill(raw, nix::sys::signal::Signal::SIGKILL);
        self.running = false;
        wait_until(Duration::from_secs(10), "postmaster to die", || Ok(!process_alive(pid) && !session_alive(pid)))?;
        // Until init reaps the zombie, a new postmaster would take the pid in the lock files
        // for a live server and refuse to start; the server is known dead, so drop them.
        let _ = fs::remove_file(self.data_dir.join("postmaster.pid"));
        let _ = fs::remove_file(self.run_dir.join(format!(".s.PGSQL.{}.lock", self.port)));
        Ok(())
    }

    /// The postmaster's pid, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Result<i32> {
        let file = self.data_dir.join("postmaster.pid");
        let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let first = text.lines().next().unwrap_or_default().trim();
        first.parse().with_context(|| format!("bad pid {first:?} in {}", file.display()))
    }

    /// Polls `pg_is_in_recovery()` until it is false.
    pub fn wait_for_recovery_end(&self, timeout: Duration) -> Result<()> {
        let result = wait_until(timeout, "recovery to end", || Ok(self.psql("select pg_is_in_recovery()")? == "f"));
        self.with_log(result)
    }

    /// Polls `pg_stat_archiver` until `walname` (or a later segment) has been archived.
    pub fn wait_for_archived(&self, walname: &str, timeout: Duration) -> Result<()> {
        let sql = "select coalesce(last_archived_wal, '') || '|' || archived_count || '|' || \
                   coalesce(last_failed_wal, '') || '|' || failed_count from pg_stat_archiver";
        let mut last = String::new();
        let result = wait_until(timeout, &format!("{walname} to be archived"), || {
            last = self.psql(sql)?;
            let archived = last.split('|').next().unwrap_or_default();
            Ok(archived == walname || (archived.len() == 24 && walname.len() == 24 && archived > walname))
        });
        self.with_log(result.with_context(|| {
            format!("pg_stat_archiver (last_archived|archived_count|last_failed|failed_count): {last}")
        }))
    }

    /// `md5` of all rows of `table`, order-independent: equal data, equal checksum.
    pub fn table_checksum(&self, table: &str) -> Result<String> {
        self.psql(&format!("select coalesce(md5(string_agg(t::text, ',' order by t::text)), 'empty') from {table} t"))
    }

    fn start_with_new_port(&mut self) -> Result<()> {
        let mut last_error = None;
        for _ in 0..5 {
            self.port = cmd::free_port()?;
            self.write_harness_conf()?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(e) if self.log().contains("could not bind") => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("could not start cluster")))
    }

    fn pg_ctl_start(&mut self) -> Result<()> {
        let mut start = Command::new(self.opts.version.tool("pg_ctl"));
        as_user(&mut start, &OsUser::lookup(PG_USER)?);
        start
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", &self.opts.start_timeout.as_secs().to_string(), "start"])
            .current_dir(&self.data_dir)
            .env("PATH", self.opts.server_path());
        for (key, value) in &self.opts.env {
            start.env(key, value);
        }
        let timeout = self.opts.start_timeout + Duration::from_secs(10);
        let result = cmd::execute(&mut start, None, timeout).and_then(|o| o.success().map(drop));
        self.with_log(result)?;
        self.running = true;
        Ok(())
    }

    fn write_harness_conf(&self) -> Result<()> {
        let conf = harness_conf(&self.opts, self.port, &self.run_dir);
        let path = self.data_dir.join(HARNESS_CONF);
        write_file(&path, conf, 0o600)?;
        crate::scratch::chown(&path, &OsUser::lookup(PG_USER)?)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        if let Err(e) = self.pg_ctl_stop("immediate") {
            eprintln!("pg_ctl stop -m immediate failed, killing: {e:#}");
            let _ = self.kill9();
        }
    }
}

/// Order-independent checksum of `table` in `cluster` (see [`PgCluster::table_checksum`]).
pub fn table_checksum(cluster: &PgCluster, table: &str) -> Result<String> {
    cluster.table_checksum(table)
}

const HARNESS_CONF: &str = "harness.conf";

const PG_HBA: &str = "\
# Written by the integration harness: everything local is trusted.
local   all             all                     trust
local   replication     all                     trust
host    all             all     127.0.0.1/32    trust
host    replication     all     127.0.0.1/32    trust
# Test network namespaces (crate::netns links), reachable only with listen_addresses set.
host    all             all     10.213.0.0/16   trust
host    replication     all     10.213.0.0/16   trust
";

fn include_harness_conf(data_dir: &Path) -> Result<()> {
    let conf = data_dir.join("postgresql.conf");
    let text = fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
    let line = format!("include_if_exists = '{HARNESS_CONF}'");
    if !text.contains(&line) {
        fs::write(&conf, format!("{text}\n{line}\n")).with_context(|| format!("writing {}", conf.display()))?;
    }
    Ok(())
}

/// Quotes a `postgresql.conf` string value.
pub fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn harness_conf(opts: &PgOptions, port: u16, socket_dir: &Path) -> String {
    let archive_mode = match opts.archive_mode {
        ArchiveMode::Off => "off",
        ArchiveMode::On => "on",
        ArchiveMode::Always => "always",
    };
    let mut lines = vec![
        "# Written by the integration harness on every start.".to_string(),
        "listen_addresses = '127.0.0.1'".into(),
        format!("port = {port}"),
        format!("unix_socket_directories = {}", conf_quote(&socket_dir.display().to_string())),
        "wal_level = replica".into(),
        "max_wal_senders = 10".into(),
        "max_replication_slots = 10".into(),
        "max_connections = 40".into(),
        "shared_buffers = 32MB".into(),
        format!("max_wal_size = {}", opts.max_wal_size),
        "min_wal_size = 32MB".into(),
        format!("fsync = {}", if opts.fsync { "on" } else { "off" }),
        "log_line_prefix = '%m [%p] %q%a '".into(),
        format!("archive_mode = {archive_mode}"),
    ];
    if opts.archive_mode != ArchiveMode::Off {
        let command = opts.archive_command.as_deref().unwrap_or("/bin/true");
        lines.push(format!("archive_command = {}", conf_quote(command)));
    }
    if let Some(size) = &opts.wal_keep_size {
        lines.push(format!("wal_keep_size = {size}"));
    }
    if let Some(sync) = &opts.synchronous_commit {
        lines.push(format!("synchronous_commit = {sync}"));
    }
    lines.extend(opts.extra_conf.iter().cloned());
    lines.join("\n") + "\n"
}

fn process_alive(pid: i32) -> bool {
    // A zombie (not reaped: the postmaster is not our child) counts as dead.
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        state != Some(Some('Z'))
    })
}

fn session_alive(sid: i32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            return false;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // Fields after "comm)": state ppid pgrp session ...
        let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, rest)| rest.split(' ').collect()).unwrap_or_default();
        fields.first() != Some(&"Z") && fields.get(3) == Some(&sid.to_string().as_str())
    })
}
