//! Command line of `barman-wal-archive`, option for option as Barman 3.20.1's.

use std::path::PathBuf;

use barman_common::compress::{Codec, Level};
use clap::{Arg, ArgAction, ArgMatches, Command};

/// What the tool was asked to do, free of clap types.
#[derive(Debug, Clone)]
pub struct Options {
    /// ssh user on the backup host.
    pub user: String,
    /// ssh port.
    pub port: Option<u16>,
    /// Config file path on the Barman host, forwarded to the remote `barman`.
    pub config: Option<String>,
    /// Only test the connection (`put-wal --test`).
    pub test: bool,
    /// Send `MD5SUMS` instead of `SHA256SUMS`.
    pub md5: bool,
    /// Client-side compression.
    pub compression: Option<Codec>,
    /// Compression level.
    pub level: Level,
    /// `-p N`: up to N segments per call (the requested one and the `.ready` ones after
    /// it); `None` when not given (sized automatically).
    pub parallel: Option<usize>,
    /// Where the parallel-mode cache lives.
    pub cache_dir: Option<PathBuf>,
    /// Backup host.
    pub host: String,
    /// Barman server name.
    pub server: String,
    /// The WAL file to archive (`%p`).
    pub wal_path: PathBuf,
}

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let flag = |name: &'static str| Arg::new(name).long(name).action(ArgAction::SetTrue);
    Command::new("barman-wal-archive")
        .version(concat!(env!("CARGO_PKG_VERSION"), " (Barman 3.20.1 compatible)"))
        .about("Send a WAL file to a Barman server (archive_command helper)")
        .after_help("Exit status: 0 archived; 1 remote put-wal failed; 2 local I/O error; 3 bad input or ssh connection failure (ssh 255).")
        .arg(Arg::new("user").short('U').long("user").default_value("barman").help("ssh user on the Barman host"))
        .arg(Arg::new("port").long("port").value_parser(clap::value_parser!(u16)).help("ssh port"))
        .arg(Arg::new("config").short('c').long("config").help("configuration file on the Barman host"))
        .arg(flag("test").short('t').help("test the connection and the remote put-wal only"))
        .arg(flag("md5").help("use MD5SUMS checksums (Barman servers older than 3.12)"))
        .arg(flag("gzip").short('z').help("compress with gzip before sending"))
        .arg(flag("bzip2").short('j').help("compress with bzip2 before sending"))
        .arg(flag("xz").help("compress with xz before sending"))
        .arg(flag("snappy").help("compress with snappy before sending"))
        .arg(flag("zstd").help("compress with zstd before sending"))
        .arg(flag("lz4").help("compress with lz4 before sending"))
        .arg(Arg::new("compression-level").long("compression-level").allow_hyphen_values(true).help("low, medium, high or an integer"))
        .arg(Arg::new("parallel").short('p').long("parallel").value_parser(clap::value_parser!(usize)).help("send up to N segments per call: the requested one and the ready ones after it, in one stream (default: automatic; 0 or 1: one at a time)"))
        .arg(Arg::new("prefetch-cache-dir").long("prefetch-cache-dir").value_parser(clap::value_parser!(PathBuf)).help("directory of the parallel-mode cache"))
        .arg(Arg::new("BARMAN_HOST").required(true).help("the Barman host"))
        .arg(Arg::new("SERVER_NAME").required(true).help("the server name configured in Barman"))
        .arg(Arg::new("WAL_PATH").required(true).value_parser(clap::value_parser!(PathBuf)).help("the WAL file to send (%p)"))
}

/// Converts parsed arguments into [`Options`]. The last compression flag given wins, as in
/// Barman (its flags all store into one destination).
pub fn options(m: &ArgMatches) -> Result<Options, String> {
    let compression = ["gzip", "bzip2", "xz", "snappy", "zstd", "lz4"]
        .into_iter()
        .filter(|f| m.get_flag(f))
        .max_by_key(|f| m.index_of(f).unwrap_or(0))
        .map(|f| Codec::from_barman_name(f).map_err(|e| e.to_string()))
        .transpose()?;
    let level = match m.get_one::<String>("compression-level").map(String::as_str) {
        None | Some("medium") => Level::Medium,
        Some("low") => Level::Low,
        Some("high") => Level::High,
        Some(n) => Level::Int(n.parse().map_err(|_| format!("invalid compression level '{n}'"))?),
    };
    let s = |k: &str| m.get_one::<String>(k).cloned().unwrap_or_default();
    Ok(Options {
        user: s("user"),
        port: m.get_one::<u16>("port").copied(),
        config: m.get_one::<String>("config").cloned(),
        test: m.get_flag("test"),
        md5: m.get_flag("md5"),
        compression,
        level,
        parallel: m.get_one::<usize>("parallel").copied(),
        cache_dir: m.get_one::<PathBuf>("prefetch-cache-dir").cloned(),
        host: s("BARMAN_HOST"),
        server: s("SERVER_NAME"),
        wal_path: m.get_one::<PathBuf>("WAL_PATH").cloned().unwrap_or_default(),
    })
}
