//! Command line of `barman-cloud-check-wal-archive`, option for option as Barman 3.20.1's.

use barman_cloud::args;
use barman_cloud::{CloudError, ConnectOptions};
use clap::{Arg, ArgMatches, Command};

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where.
    pub connect: ConnectOptions,
    /// Barman server name.
    pub server: String,
    /// `--timeline`.
    pub timeline: Option<u32>,
    /// `-t`.
    pub test: bool,
}

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let cmd = Command::new("barman-cloud-check-wal-archive")
        .about("Check that the WAL archive in cloud storage can be safely used for a new PostgreSQL server")
        .after_help("Exit status: 0 usable; 1 not usable; 2 network error; 3 command line; 4 other error.");
    args::common(cmd, "destination_url").arg(
        Arg::new("timeline")
            .long("timeline")
            .value_parser(args::parse_positive)
            .help("The earliest timeline whose WALs should cause the check to fail"),
    )
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Result<Options, CloudError> {
    Ok(Options {
        connect: args::connect_options(m, "destination_url")?,
        server: m.get_one::<String>("server_name").cloned().unwrap_or_default(),
        timeline: m.get_one::<usize>("timeline").map(|&t| u32::try_from(t).unwrap_or(u32::MAX)),
        test: m.get_flag("test"),
    })
}
