//! Command line of `barman-cloud-backup-keep`, option for option as Barman 3.20.1's.

use barman_cloud::args;
use barman_cloud::manage::KeepAction;
use barman_cloud::{CloudError, ConnectOptions};
use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Command};

/// What to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where.
    pub connect: ConnectOptions,
    /// Barman server name.
    pub server: String,
    /// The backup.
    pub backup_id: String,
    /// `-r`, `-s` or `--target`.
    pub action: KeepAction,
    /// `-t`.
    pub test: bool,
}

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let cmd = Command::new("barman-cloud-backup-keep")
        .about("Flag backups made with barman-cloud-backup as archival backups (kept beyond any retention policy)")
        .after_help("Exit status: 0 done; 1 operation failed; 2 network error; 3 command line; 4 other error.");
    args::common(cmd, "source_url")
        .arg(args::sse_customer_key())
        .arg(Arg::new("backup_id").required(true).help("the backup ID"))
        .arg(Arg::new("release").short('r').long("release").action(ArgAction::SetTrue).help(
            "If specified, the command will remove the keep annotation and the backup will be eligible for deletion",
        ))
        .arg(
            Arg::new("status")
                .short('s')
                .long("status")
                .action(ArgAction::SetTrue)
                .help("Print the keep status of the backup"),
        )
        .arg(
            Arg::new("target")
                .long("target")
                .value_parser(["full", "standalone"])
                .help("Specify the recovery target for this backup"),
        )
        .group(ArgGroup::new("action").args(["release", "status", "target"]).required(true))
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Result<Options, CloudError> {
    let s = |k: &str| m.get_one::<String>(k).cloned().unwrap_or_default();
    let action = if m.get_flag("release") {
        KeepAction::Release
    } else if m.get_flag("status") {
        KeepAction::Status
    } else {
        KeepAction::Keep(s("target"))
    };
    Ok(Options {
        connect: args::connect_options(m, "source_url")?,
        server: s("server_name"),
        backup_id: s("backup_id"),
        action,
        test: m.get_flag("test"),
    })
}
