//! Issue 17: the `barman` subcommands and options added for Barman 3.20.1 parity (their
//! arguments, with Barman's names and arity), and the options that are parsed and then
//! refused until the issue that owns their machinery wires them (`man/REFUSED-OPTIONS.md`).
//! A refused option is never ignored: `crate::refusal` names it in a one-line error, exit 3.

use barman_common::wal::{TimelineId, WalFileName};
use clap::{Args, ValueEnum};

/// `--log-level`: Barman's level names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum LogLevel {
    /// Everything.
    Notset,
    /// Debug and above.
    Debug,
    /// Info and above.
    Info,
    /// Warnings and above.
    Warning,
    /// Errors and above.
    Error,
    /// Critical only.
    Critical,
}

/// `--color`: when to colour `WARNING`/`ERROR` and the check results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// Never.
    Never,
    /// Always.
    Always,
    /// When stdout and stderr are both terminals (Barman's default).
    Auto,
}

/// Server names (`SERVER_NAME...`, or `all`) for `rebuild-xlogdb`.
#[derive(Debug, Args)]
pub struct ServersArg {
    /// server names, or all
    #[arg(value_name = "SERVER_NAME", required = true, num_args = 1..)]
    pub servers: Vec<String>,
}

/// `terminate-process`.
#[derive(Debug, Args)]
pub struct TerminateProcess {
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// the task name to terminate (e.g. backup, receive-wal)
    #[arg(value_name = "TASK")]
    pub task: String,
}

/// `diagnose`.
#[derive(Debug, Args)]
pub struct Diagnose {
    /// include the file that provides the effective value of each configuration option
    #[arg(long)]
    pub show_config_source: bool,
}

/// `list-files --target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFilesTarget {
    /// The data files only (the default).
    Data,
    /// The data files and the WAL files needed to make the backup consistent.
    Standalone,
    /// The WAL files from the backup's begin to the next backup's (or the archive's end).
    Wal,
    /// Standalone plus every later WAL file.
    Full,
}

/// `list-files`.
#[derive(Debug, Args)]
pub struct ListFiles {
    /// which files to list
    #[arg(long, value_enum, default_value_t = ListFilesTarget::Standalone)]
    pub target: ListFilesTarget,
    /// also list the empty directories of the backup
    #[arg(long)]
    pub list_empty_directories: bool,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// backup id, name, or latest/oldest/...
    #[arg(value_name = "BACKUP_ID")]
    pub backup: String,
}

/// `check-wal-archive`.
#[derive(Debug, Args)]
pub struct CheckWalArchive {
    /// the earliest timeline whose WALs should cause the check to fail
    #[arg(long)]
    pub timeline: Option<TimelineId>,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
}

/// `check-archived-wal-range`.
#[derive(Debug, Args)]
pub struct CheckArchivedWalRange {
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// first WAL segment in the range to verify (inclusive)
    #[arg(value_name = "BEGIN_WAL")]
    pub begin_wal: String,
    /// last WAL segment in the range to verify (inclusive)
    #[arg(value_name = "END_WAL")]
    pub end_wal: String,
}

impl CheckArchivedWalRange {
    /// The two names, parsed (Barman reports an invalid one as an `ERROR:`, not a usage error).
    pub fn range(&self) -> Result<(WalFileName, WalFileName), String> {
        let parse = |s: &str| s.parse::<WalFileName>().map_err(|_| format!("Invalid WAL segment name: {s}"));
        Ok((parse(&self.begin_wal)?, parse(&self.end_wal)?))
    }
}

/// `export-backup`: a DONE full backup and its WAL in one portable tarball.
#[derive(Debug, Args)]
pub struct ExportBackup {
    /// compress the exported tarball
    #[arg(long, value_parser = ["gzip", "bzip2", "xz"])]
    pub compression: Option<String>,
    /// compression level
    #[arg(long)]
    pub compression_level: Option<i32>,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// the backup to export
    #[arg(value_name = "BACKUP_ID")]
    pub backup: String,
    /// where the tarball is written
    #[arg(value_name = "OUTPUT_DIRECTORY")]
    pub output_directory: String,
}

/// `import-backup`: a tarball made by `export-backup` into the catalogue.
#[derive(Debug, Args)]
pub struct ImportBackup {
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// the tarball made by export-backup
    #[arg(value_name = "INPUT_TARBALL")]
    pub input_tarball: String,
}

/// `config-switch`: lays a configuration model over a server, or `--reset` removes it.
#[derive(Debug, Args)]
pub struct ConfigSwitch {
    /// unapply the active model
    #[arg(long)]
    pub reset: bool,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// the model to apply
    #[arg(value_name = "MODEL_NAME")]
    pub model: Option<String>,
}

/// `config-update`: queues configuration changes (JSON) and applies them.
#[derive(Debug, Args)]
pub struct ConfigUpdate {
    /// the changes, as JSON
    #[arg(value_name = "JSON_CHANGES")]
    pub json_changes: String,
}

/// `cloud-wal-archive` (refused: the object-store tier is issue 22).
#[derive(Debug, Args)]
pub struct CloudWalArchive {
    /// parallel uploads
    #[arg(short = 'p', long)]
    pub parallel: Option<u32>,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// the WAL file
    #[arg(value_name = "WAL_PATH")]
    pub wal_path: String,
}

/// `cloud-wal-restore` (refused: the object-store tier is issue 22).
#[derive(Debug, Args)]
pub struct CloudWalRestore {
    /// parallel downloads
    #[arg(short = 'p', long)]
    pub parallel: Option<u32>,
    /// prefetch spool directory
    #[arg(long)]
    pub spool_dir: Option<String>,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
    /// the WAL name
    #[arg(value_name = "WAL_NAME")]
    pub wal_name: String,
    /// the destination
    #[arg(value_name = "WAL_DEST")]
    pub wal_dest: String,
}

/// `backup`'s options for the rsync copy (Barman overrides the server's settings with them).
#[derive(Debug, Args)]
pub struct BackupCopy {
    /// the time period in seconds over which a single batch of jobs will be started
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs_start_batch_period: Option<u32>,
    /// the maximum number of parallel rsync jobs to start in a single batch
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs_start_batch_size: Option<u32>,
    /// seconds between two heartbeat queries keeping the PostgreSQL session alive during an rsync backup (0 = none)
    #[arg(long)]
    pub keepalive_interval: Option<u64>,
    /// forces the creation of the backup manifest file for the rsync backup method
    #[arg(long, overrides_with = "no_manifest")]
    pub manifest: bool,
    /// disables the creation of the backup manifest file for the rsync backup method
    #[arg(long, overrides_with = "manifest")]
    pub no_manifest: bool,
}

/// `backup` options parsed and refused until their issue wires them.
#[derive(Debug, Args)]
pub struct BackupRefused {
    /// refused until issue 22: cloud staging directory
    #[arg(long)]
    pub cloud_staging_directory: Option<String>,
    /// refused until issue 22
    #[arg(long)]
    pub cloud_staging_max_size: Option<String>,
}

/// `recover`'s options for the rsync copy of a remote recovery (Barman overrides the
/// server's settings with them).
#[derive(Debug, Args)]
pub struct RecoverCopy {
    /// maximum transfer rate of the remote copy in kilobytes per second (0 = unlimited)
    #[arg(long, value_name = "BWLIMIT")]
    pub bwlimit: Option<u64>,
    /// number of retries after an error while copying
    #[arg(long, conflicts_with = "no_retry")]
    pub retry_times: Option<u32>,
    /// wait time in seconds between two retries
    #[arg(long)]
    pub retry_sleep: Option<u64>,
    /// disable retries on copy failures
    #[arg(long)]
    pub no_retry: bool,
    /// seconds between two batches of started copy workers
    #[arg(long)]
    pub jobs_start_batch_period: Option<u32>,
    /// copy workers started per batch
    #[arg(long)]
    pub jobs_start_batch_size: Option<u32>,
    /// compress the data of the remote copy (rsync -z)
    #[arg(long, overrides_with = "no_network_compression")]
    pub network_compression: bool,
    /// do not compress the data of the remote copy
    #[arg(long, overrides_with = "network_compression")]
    pub no_network_compression: bool,
    /// staging directory of a compressed backup on this host (absolute)
    #[arg(long)]
    pub recovery_staging_path: Option<String>,
    /// copy over a destination that holds a previous recovery, sending only what differs
    #[arg(long, overrides_with = "no_delta_restore")]
    pub delta_restore: bool,
    /// no delta restore: the destinations must be empty
    #[arg(long, overrides_with = "delta_restore")]
    pub no_delta_restore: bool,
}

/// `recover`'s WAL and recovery-settings placement options.
#[derive(Debug, Args)]
pub struct RecoverWal {
    /// directory where the WAL files of a point-in-time recovery are copied (default:
    /// DESTINATION/barman_wal)
    #[arg(long)]
    pub staging_wal_directory: Option<String>,
    /// also copy the .partial WAL file, if any, to the recovery destination (only with
    /// --no-get-wal)
    #[arg(long)]
    pub partial_wal: bool,
    /// file (relative to the destination) receiving the recovery settings (default:
    /// postgresql.auto.conf)
    #[arg(long)]
    pub recovery_conf_filename: Option<String>,
}

/// `recover` options parsed and refused until their issue wires them.
#[derive(Debug, Args)]
pub struct RecoverRefused {
    /// refused until issue 22: snapshot recovery
    #[arg(long)]
    pub snapshot_recovery_instance: Option<String>,
    /// refused until issue 22
    #[arg(long)]
    pub snapshot_recovery_zone: Option<String>,
    /// refused until issue 22
    #[arg(long)]
    pub gcp_zone: Option<String>,
    /// refused until issue 22
    #[arg(long)]
    pub azure_resource_group: Option<String>,
    /// refused until issue 22
    #[arg(long)]
    pub aws_region: Option<String>,
}

fn first(given: &[(bool, &'static str, &'static str)]) -> Option<(&'static str, &'static str)> {
    given.iter().find(|g| g.0).map(|g| (g.1, g.2))
}

impl BackupRefused {
    /// The first option given, with the issue that wires it.
    pub fn refused(&self) -> Option<(&'static str, &'static str)> {
        first(&[
            (self.cloud_staging_directory.is_some(), "--cloud-staging-directory", "object stores, issue 22"),
            (self.cloud_staging_max_size.is_some(), "--cloud-staging-max-size", "object stores, issue 22"),
        ])
    }
}

impl RecoverRefused {
    /// The first option given, with the issue that wires it.
    pub fn refused(&self) -> Option<(&'static str, &'static str)> {
        const CLOUD: &str = "snapshot recovery, issue 22";
        first(&[
            (self.snapshot_recovery_instance.is_some(), "--snapshot-recovery-instance", CLOUD),
            (self.snapshot_recovery_zone.is_some(), "--snapshot-recovery-zone", CLOUD),
            (self.gcp_zone.is_some(), "--gcp-zone", CLOUD),
            (self.azure_resource_group.is_some(), "--azure-resource-group", CLOUD),
            (self.aws_region.is_some(), "--aws-region", CLOUD),
        ])
    }
}

/// `put-wal`.
#[derive(Debug, Args)]
pub struct PutWal {
    /// test the connection only
    #[arg(short = 't', long)]
    pub test: bool,
    /// extension: every WAL member is an LZ4 frame of the file, decompressed here before it is stored
    #[arg(long)]
    pub wire_lz4: bool,
    /// the server name
    #[arg(value_name = "SERVER_NAME")]
    pub server: String,
}
