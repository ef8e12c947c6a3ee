//! Command line of `barman-cloud-backup-list`, option for option as Barman 3.20.1's.

use barman_cloud::args;
use barman_cloud::{CloudError, ConnectOptions};
use clap::{ArgMatches, Command};

/// What to list.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where.
    pub connect: ConnectOptions,
    /// Barman server name.
    pub server: String,
    /// `--format` (`console`; anything else prints JSON, as Barman).
    pub format: String,
    /// `-t`.
    pub test: bool,
}

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let cmd = Command::new("barman-cloud-backup-list")
        .about("List the backups made with barman-cloud-backup; AWS S3, Azure Blob Storage and Google Cloud Storage")
        .after_help("Exit status: 0 listed; 2 network error; 3 command line; 4 other error.");
    args::common(cmd, "source_url").arg(args::sse_customer_key()).arg(args::format())
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Result<Options, CloudError> {
    let s = |k: &str| m.get_one::<String>(k).cloned().unwrap_or_default();
    Ok(Options {
        connect: args::connect_options(m, "source_url")?,
        server: s("server_name"),
        format: s("format"),
        test: m.get_flag("test"),
    })
}
