//! Command line of `barman-cloud-wal-restore`, option for option as Barman 3.20.1's.

use std::path::PathBuf;

use barman_cloud::args;
use barman_cloud::wal_restore::{Options, DEFAULT_SPOOL_DIR};
use barman_cloud::CloudError;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let cmd = Command::new("barman-cloud-wal-restore")
        .about("Fetch a WAL file from the cloud (restore_command helper); AWS S3, Azure Blob Storage and Google Cloud Storage")
        .after_help("Exit status: 0 restored; 1 WAL file not found; 2 network error; 3 invalid WAL name or command line; 4 other error.");
    args::common(cmd, "source_url")
        .arg(Arg::new("wal_name").required(true).help("the value of the '%f' keyword (according to 'restore_command')"))
        .arg(Arg::new("wal_dest").required(true).value_parser(clap::value_parser!(PathBuf)).help("the value of the '%p' keyword (according to 'restore_command')"))
        .arg(args::sse_customer_key())
        .arg(Arg::new("no-partial").long("no-partial").action(ArgAction::SetTrue).help("Do not download partial WAL files"))
        .arg(Arg::new("parallel").short('p').long("parallel").value_parser(args::parse_positive).default_value("1").help("How many WAL files to fetch in parallel: the requested one and up to N-1 following ones into the spool (default: 1)"))
        .arg(Arg::new("spool-dir").long("spool-dir").value_parser(clap::value_parser!(PathBuf)).default_value(DEFAULT_SPOOL_DIR).help("Directory of the prefetched WAL files (default: /var/tmp/walrestore)"))
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Result<Options, CloudError> {
    let s = |k: &str| m.get_one::<String>(k).cloned().unwrap_or_default();
    Ok(Options {
        connect: args::connect_options(m, "source_url")?,
        server: s("server_name"),
        wal_name: s("wal_name"),
        wal_dest: m.get_one::<PathBuf>("wal_dest").cloned().unwrap_or_default(),
        no_partial: m.get_flag("no-partial"),
        parallel: m.get_one::<usize>("parallel").copied().unwrap_or(1),
        spool_dir: m.get_one::<PathBuf>("spool-dir").cloned().unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR)),
        test: m.get_flag("test"),
    })
}
