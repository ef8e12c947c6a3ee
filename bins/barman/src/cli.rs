//! The `barman` command line: Barman 3.20.1's global options and the subcommands this
//! toolkit implements, with Barman's names and aliases. Each subcommand owns its arguments
//! (one `Args` struct each); values are typed here, at the edge ([`Lsn`], [`TargetTli`],
//! [`ReuseBackup`], numbers), so a bad one is a usage error before any work starts.

use barman_common::config::ReuseBackup;
use barman_common::wal::Lsn;
use barman_server::cmd::recover::TargetTli;
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand, ValueEnum};

pub use crate::cli_extra::*;

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "barman",
    about = "Backup and recovery manager for PostgreSQL: the catalogue CLI on the backup host",
    after_help = "Exit status: 0 success; 1 failure (an ERROR line); 3 invalid WAL name for get-wal, or an option not supported yet (man/REFUSED-OPTIONS.md); 2 usage error.",
    subcommand_required = true,
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// configuration file
    #[arg(short = 'c', long, global = true)]
    pub config: Option<String>,
    /// be quiet
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    /// debug output
    #[arg(short = 'd', long, global = true)]
    pub debug: bool,
    /// output format
    #[arg(short = 'f', long, global = true, value_enum, default_value_t = Format::Console)]
    pub format: Format,
    /// override the log level of the configuration
    #[arg(long, global = true, value_enum, ignore_case = true)]
    pub log_level: Option<LogLevel>,
    /// colour WARNING, ERROR and the check results
    #[arg(long, visible_alias = "colour", global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Cmd,
}

/// `-f`: Barman's two output writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines on stdout and stderr.
    Console,
    /// One JSON object on stdout.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// receive WAL files archived by barman-wal-archive (tar stream on stdin)
    PutWal(PutWal),
    /// send an archived WAL file to stdout or a directory
    GetWal(GetWal),
    /// move incoming and streamed WAL files into the archive
    ArchiveWal(OneServer),
    /// list the configured servers
    #[command(visible_alias = "list-server")]
    ListServers(Minimal),
    /// list the backups of servers
    #[command(visible_alias = "list-backup")]
    ListBackups(ListBackups),
    /// show the details of a backup
    #[command(visible_alias = "show-backups")]
    ShowBackup(ServerBackup),
    /// show the configuration and live status of servers
    #[command(visible_alias = "show-server")]
    ShowServers(Servers),
    /// close the current WAL file on servers (select pg_switch_wal())
    #[command(visible_alias = "switch-xlog")]
    SwitchWal(SwitchWal),
    /// show the standbys and WAL streamers connected to servers (pg_stat_replication)
    ReplicationStatus(ReplicationStatus),
    /// delete a backup (refused for kept backups and below minimum redundancy)
    Delete(ServerBackup),
    /// keep a backup forever (full or standalone), show or release the keep
    Keep(Keep),
    /// stream WAL from the server into streaming/ (barman-receive-wal, run by cron)
    ReceiveWal(ReceiveWal),
    /// take a base backup of servers (runs barman-backup)
    Backup(Backup),
    /// mark a WAITING_FOR_WALS backup DONE once all its WAL files are archived
    CheckBackup(ServerBackup),
    /// passive node: copy one backup from the primary (runs barman-relay; uses the saved primary.info)
    SyncBackup(ServerBackup),
    /// passive node: copy the WAL files the primary lists (runs barman-relay; uses the saved primary.info)
    SyncWals(OneServer),
    /// print every server's state in the Prometheus text format (for node_exporter's textfile collector)
    Metrics,
    /// check the configuration, the catalogue and the PostgreSQL connection of servers
    Check(Check),
    /// show live information and status of servers
    Status(Servers),
    /// restore a backup into a local or remote directory, optionally to a recovery target
    #[command(visible_alias = "restore")]
    Recover(Box<Recover>),
    /// extension: recover a backup into a scratch directory, start PostgreSQL on it, check it
    /// answers and report the RTO and the recovery point
    VerifyRestore(VerifyRestore),
    /// print the synchronisation status a passive node reads (geo-redundancy)
    SyncInfo(SyncInfo),
    /// run maintenance for every server
    Cron(Cron),
    /// show the main help message (as `barman --help`)
    Help,
    /// rebuild the WAL file database (xlog.db) from the archive content
    RebuildXlogdb(ServersArg),
    /// list the active subprocesses started by a server (from its lock files)
    #[command(visible_alias = "list-process")]
    ListProcesses(OneServer),
    /// terminate a server subprocess by task name (backup, receive-wal, ...)
    TerminateProcess(TerminateProcess),
    /// remove the leftover lock files of the lock directory
    LockDirectoryCleanup,
    /// print diagnostic information as JSON (for support)
    Diagnose(Diagnose),
    /// list the files of a backup
    ListFiles(ListFiles),
    /// check the WAL archive can be safely used for a new server
    CheckWalArchive(CheckWalArchive),
    /// check that every WAL segment from BEGIN_WAL to END_WAL is archived
    CheckArchivedWalRange(CheckArchivedWalRange),
    /// verify a backup against its backup_manifest with pg_verifybackup
    #[command(visible_alias = "verify")]
    VerifyBackup(ServerBackup),
    /// generate the backup_manifest of a backup
    GenerateManifest(ServerBackup),
    /// not supported yet: export a backup as a tarball
    ExportBackup(ExportBackup),
    /// not supported yet: import a backup exported by export-backup
    ImportBackup(ImportBackup),
    /// not supported yet: apply a configuration model to a server
    ConfigSwitch(ConfigSwitch),
    /// not supported yet: queue configuration changes
    ConfigUpdate(ConfigUpdate),
    /// not supported yet: archive a WAL file to the server's object store
    CloudWalArchive(CloudWalArchive),
    /// not supported yet: restore a WAL file from the server's object store
    CloudWalRestore(CloudWalRestore),
}

/// One server.
#[derive(Debug, Args)]
pub struct OneServer {
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
}

/// Server names, or `all`.
#[derive(Debug, Args)]
pub struct Servers {
    /// server names, or all
    #[arg(value_name = "SERVER_NAME", required = true, num_args = 1..)]
    pub servers: Vec<String>,
}

/// A server and one of its backups.
#[derive(Debug, Args)]
pub struct ServerBackup {
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// backup id, name, or latest/oldest/last-failed...
    #[arg(value_name = "BACKUP_ID")]
    pub backup: String,
}

/// `--minimal` alone.
#[derive(Debug, Args)]
pub struct Minimal {
    /// names only
    #[arg(long)]
    pub minimal: bool,
}

/// `get-wal`.
#[derive(Debug, Args)]
pub struct GetWal {
    /// write DIR/<WAL> instead of stdout
    #[arg(short = 'o', long)]
    pub output_directory: Option<String>,
    /// also look for .partial files
    #[arg(short = 'P', long)]
    pub partial: bool,
    /// gzip the output
    #[arg(short = 'z', visible_short_alias = 'x', long)]
    pub gzip: bool,
    /// bzip2 the output
    #[arg(short = 'j', long)]
    pub bzip2: bool,
    /// send the stored (compressed) bytes
    #[arg(long)]
    pub keep_compression: bool,
    /// list up to N available WAL names
    #[arg(short = 'p', long)]
    pub peek: Option<usize>,
    /// extension: send up to N available WAL files from WAL_NAME on as one checksummed tar stream
    #[arg(long)]
    pub batch: Option<usize>,
    /// extension: with --batch, lz4-compress the files stored uncompressed on the way (the client decompresses)
    #[arg(long, requires = "batch")]
    pub batch_lz4: bool,
    /// test the connection only
    #[arg(short = 't', long)]
    pub test: bool,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// the WAL file name
    #[arg(value_name = "WAL_NAME")]
    pub wal: String,
}

/// `list-backups`.
#[derive(Debug, Args)]
pub struct ListBackups {
    /// ids only
    #[arg(long)]
    pub minimal: bool,
    /// server names, or all
    #[arg(value_name = "SERVER_NAME", required = true, num_args = 1..)]
    pub servers: Vec<String>,
}

/// `switch-wal`.
#[derive(Debug, Args)]
pub struct SwitchWal {
    /// run a CHECKPOINT first, so there is always something to switch
    #[arg(long)]
    pub force: bool,
    /// wait until the closed WAL file is archived
    #[arg(long)]
    pub archive: bool,
    /// seconds --archive waits (default 30)
    #[arg(long, default_value_t = 30)]
    pub archive_timeout: u64,
    /// server names, or all
    #[arg(value_name = "SERVER_NAME", required = true, num_args = 1..)]
    pub servers: Vec<String>,
}

/// `replication-status --target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplicationTarget {
    /// Standbys only.
    HotStandby,
    /// WAL streamers only.
    WalStreamer,
    /// Every client.
    All,
}

/// `replication-status --source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplicationSource {
    /// The clients of `conninfo`'s server.
    BackupHost,
    /// The clients of `wal_conninfo`'s server.
    WalHost,
}

/// `replication-status`.
#[derive(Debug, Args)]
pub struct ReplicationStatus {
    /// one line per client
    #[arg(long)]
    pub minimal: bool,
    /// which clients to show
    #[arg(long, value_enum, default_value_t = ReplicationTarget::All)]
    pub target: ReplicationTarget,
    /// list the clients of the backup conninfo or of the WAL streaming one
    #[arg(long, value_enum, default_value_t = ReplicationSource::BackupHost)]
    pub source: ReplicationSource,
    /// server names, or all
    #[arg(value_name = "SERVER_NAME", required = true, num_args = 1..)]
    pub servers: Vec<String>,
}

/// `keep --target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeepTargetArg {
    /// Keep the backup and the WAL to make it consistent and every later WAL.
    Full,
    /// Keep the backup and only the WAL needed to make it consistent.
    Standalone,
}

/// `keep`.
#[derive(Debug, Args)]
pub struct Keep {
    /// release the keep
    #[arg(short = 'r', long)]
    pub release: bool,
    /// show the keep status
    #[arg(short = 's', long)]
    pub status: bool,
    /// what to keep
    #[arg(long, value_enum)]
    pub target: Option<KeepTargetArg>,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// backup id or name
    #[arg(value_name = "BACKUP_ID")]
    pub backup: String,
}

/// `receive-wal`.
#[derive(Debug, Args)]
pub struct ReceiveWal {
    /// stop the receive-wal subprocess for the server (deprecated)
    #[arg(long)]
    pub stop: bool,
    /// reset the status of receive-wal removing any status files
    #[arg(long)]
    pub reset: bool,
    /// create the replication slot, if it does not exist
    #[arg(long)]
    pub create_slot: bool,
    /// with --create-slot: no error when the slot already exists
    #[arg(long)]
    pub if_not_exists: bool,
    /// drop the replication slot, if it exists
    #[arg(long)]
    pub drop_slot: bool,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
}

/// `backup`.
#[derive(Debug, Args)]
pub struct Backup {
    /// a friendly name for the backup
    #[arg(long)]
    pub name: Option<String>,
    /// wait for every required WAL file to be archived
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// the time, in seconds, spent waiting for the required WAL files to be archived before timing out
    #[arg(long, value_name = "TIMEOUT")]
    pub wait_timeout: Option<u64>,
    /// request a fast checkpoint
    #[arg(long, overrides_with = "no_immediate_checkpoint")]
    pub immediate_checkpoint: bool,
    /// let the checkpoint spread
    #[arg(long, overrides_with = "immediate_checkpoint")]
    pub no_immediate_checkpoint: bool,
    /// link: files identical to the previous backup's become hard links (alone: link)
    #[arg(long, value_parser = ["off", "copy", "link"], num_args = 0..=1, default_missing_value = "link")]
    pub reuse_backup: Option<String>,
    /// number of retries after an error while copying
    #[arg(long, conflicts_with = "no_retry")]
    pub retry_times: Option<u32>,
    /// wait time in seconds between two retries
    #[arg(long)]
    pub retry_sleep: Option<u64>,
    /// disable retries on copy failures
    #[arg(long)]
    pub no_retry: bool,
    /// number of parallel rsync workers
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// maximum transfer rate in kilobytes per second (0 = unlimited)
    #[arg(long, value_name = "BWLIMIT")]
    pub bwlimit: Option<u64>,
    /// maximum execution time, in seconds, of the checks run before the backup (default: the server's check_timeout)
    #[arg(long)]
    pub check_timeout: Option<u64>,
    /// performs an incremental backup on top of BACKUP_ID (or latest, latest-full): PG 17+,
    /// backup_method = postgres, summarize_wal = on
    #[arg(long, value_name = "BACKUP_ID")]
    pub incremental: Option<String>,
    /// The rsync copy's options.
    #[command(flatten)]
    pub copy: BackupCopy,
    /// Options refused until their issue wires them.
    #[command(flatten)]
    pub refused: BackupRefused,
    /// server names, or all
    #[arg(value_name = "SERVER_NAME", required = true, num_args = 1..)]
    pub servers: Vec<String>,
}

impl Backup {
    /// `--reuse-backup`, typed (clap has already limited it to the three names).
    pub fn reuse_backup(&self) -> Option<ReuseBackup> {
        self.reuse_backup.as_deref().and_then(|m| m.parse().ok())
    }
}

/// `check`.
#[derive(Debug, Args)]
pub struct Check {
    /// Nagios plugin compatible output
    #[arg(long)]
    pub nagios: bool,
    /// time limit in seconds for the checks (0 disables it)
    #[arg(long)]
    pub check_timeout: Option<u64>,
    /// server names, or all
    #[arg(value_name = "SERVER_NAME", required = true, num_args = 1..)]
    pub servers: Vec<String>,
}

/// `--target-action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetAction {
    /// Pause at the target.
    Pause,
    /// Shut down at the target.
    Shutdown,
    /// Promote at the target.
    Promote,
}

/// The recovery target options `recover` and `verify-restore` share.
#[derive(Debug, Args)]
pub struct Target {
    /// recovery target time
    #[arg(long)]
    pub target_time: Option<String>,
    /// recovery target transaction id
    #[arg(long)]
    pub target_xid: Option<String>,
    /// recovery target LSN
    #[arg(long)]
    pub target_lsn: Option<Lsn>,
    /// recovery target restore point name
    #[arg(long)]
    pub target_name: Option<String>,
    /// end recovery as soon as a consistent state is reached
    #[arg(long)]
    pub target_immediate: bool,
    /// recovery target timeline: N, current or latest
    #[arg(long)]
    pub target_tli: Option<TargetTli>,
    /// stop just before the target (time, xid, lsn)
    #[arg(long)]
    pub exclusive: bool,
}

/// `recover`.
#[derive(Debug, Args)]
pub struct Recover {
    /// The recovery target.
    #[command(flatten)]
    pub target: Target,
    /// what to do once the target is reached
    #[arg(long, value_enum)]
    pub target_action: Option<TargetAction>,
    /// relocate a tablespace: NAME:LOCATION
    #[arg(long, action = ArgAction::Append)]
    pub tablespace: Vec<String>,
    /// recover onto another host through this ssh command, e.g. "ssh postgres@db2"
    #[arg(long)]
    pub remote_ssh_command: Option<String>,
    /// with get-wal: the restore_command to write instead of the generated one
    #[arg(long)]
    pub restore_command: Option<String>,
    /// parallel jobs (-p N of a remote barman-wal-restore); overrides parallel_jobs
    #[arg(short = 'j', long)]
    pub jobs: Option<i64>,
    /// --port of the barman-wal-restore written for a remote recovery
    #[arg(long)]
    pub recovery_option_port: Option<String>,
    /// use barman get-wal as restore_command
    #[arg(long, overrides_with = "no_get_wal")]
    pub get_wal: bool,
    /// copy the required WAL files into the destination
    #[arg(long)]
    pub no_get_wal: bool,
    /// write standby.signal
    #[arg(long)]
    pub standby_mode: bool,
    /// do not archive the incoming WAL files first
    #[arg(long)]
    pub skip_archive_wal: bool,
    /// The rsync copy of a remote recovery.
    #[command(flatten)]
    pub copy: RecoverCopy,
    /// Where the WAL and the recovery settings go.
    #[command(flatten)]
    pub wal: RecoverWal,
    /// where an incremental chain is combined before a remote copy (deprecated by Barman for
    /// --staging-path)
    #[arg(long)]
    pub local_staging_path: Option<String>,
    /// staging directory: where an incremental chain is combined before a remote copy
    #[arg(long)]
    pub staging_path: Option<String>,
    /// where the staging directory is: local (remote is refused: combining on the target host)
    #[arg(long, value_parser = ["local", "remote"])]
    pub staging_location: Option<String>,
    /// how pg_combinebackup writes the combined files: copy, link, clone or copy-file-range
    #[arg(long, value_parser = ["copy", "link", "clone", "copy-file-range"])]
    pub combine_mode: Option<String>,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// backup id, name, or latest/oldest/...
    #[arg(value_name = "BACKUP_ID")]
    pub backup: String,
    /// the directory to restore into
    #[arg(value_name = "DESTINATION_DIRECTORY")]
    pub destination: String,
    /// Options refused until their issue wires them.
    #[command(flatten)]
    pub refused: RecoverRefused,
}

/// `verify-restore`.
#[derive(Debug, Args)]
pub struct VerifyRestore {
    /// The recovery target.
    #[command(flatten)]
    pub target: Target,
    /// make the scratch directory here (default barman_home)
    #[arg(long)]
    pub scratch: Option<String>,
    /// seconds PostgreSQL may take to start and finish recovery
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// backup id, name, or latest/oldest/...
    #[arg(value_name = "BACKUP_ID", default_value = "latest")]
    pub backup: String,
}

/// `sync-info`.
#[derive(Debug, Args)]
pub struct SyncInfo {
    /// on a passive node: ask the primary node instead
    #[arg(long)]
    pub primary: bool,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// the last WAL name already read
    #[arg(value_name = "LAST_WAL")]
    pub last_wal: Option<String>,
    /// the xlog.db byte offset of LAST_WAL
    #[arg(
        value_name = "LAST_POSITION",
        allow_negative_numbers = true,
        value_parser = barman_server::cmd::sync_info::parse_last_position
    )]
    pub last_position: Option<u64>,
}

/// `cron`.
#[derive(Debug, Args)]
pub struct Cron {
    /// keep the standard descriptors of the processes cron starts
    #[arg(long)]
    pub keep_descriptors: bool,
}

/// The clap definition (also used to generate the man page), with Barman's `-v/--version`.
pub fn command() -> clap::Command {
    Cli::command()
        .arg(clap::Arg::new("version").short('v').long("version").action(ArgAction::Version).help("print the version"))
        .version(concat!(env!("CARGO_PKG_VERSION"), " (Barman 3.20.1 compatible)"))
}

/// Splits one-word `"--config /path"` arguments, which arrive that way when a client quotes
/// the whole option for the remote shell.
pub fn normalise_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .flat_map(|a| match a.strip_prefix("--config ") {
            Some(path) => vec!["--config".to_owned(), path.trim().to_owned()],
            None => vec![a],
        })
        .collect()
}
