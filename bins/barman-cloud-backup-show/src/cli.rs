//! Command line of `barman-cloud-backup-show`, option for option as Barman 3.20.1's.

use barman_cloud::args;
use barman_cloud::{CloudError, ConnectOptions};
use clap::{Arg, ArgMatches, Command};

/// What to show.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where.
    pub connect: ConnectOptions,
    /// Barman server name.
    pub server: String,
    /// The backup.
    pub backup_id: String,
    /// `--format`.
    pub format: String,
    /// `-t`.
    pub test: bool,
}

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let cmd = Command::new("barman-cloud-backup-show")
        .about("Show metadata of a backup made with barman-cloud-backup")
        .after_help("Exit status: 0 shown; 1 no such backup; 2 network error; 3 command line; 4 other error.");
    args::common(cmd, "source_url")
        .arg(args::sse_customer_key())
        .arg(Arg::new("backup_id").required(true).help("the backup ID"))
        .arg(args::format())
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Result<Options, CloudError> {
    let s = |k: &str| m.get_one::<String>(k).cloned().unwrap_or_default();
    Ok(Options {
        connect: args::connect_options(m, "source_url")?,
        server: s("server_name"),
        backup_id: s("backup_id"),
        format: s("format"),
        test: m.get_flag("test"),
    })
}
