//! Command line of `barman-wal-restore`, option for option as Barman 3.20.1's.

use std::path::PathBuf;

use barman_common::wire::{digest_hex, SumAlgo};
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Segments kept ahead when `-p` is not given.
pub const AUTO_JOBS: usize = 8;
/// Barman's spool directory, used as it is when `-p` is given.
pub const BARMAN_SPOOL: &str = "/var/tmp/walrestore";

/// What the tool was asked to do, free of clap types.
#[derive(Debug, Clone)]
pub struct Options {
    /// ssh user.
    pub user: String,
    /// ssh port.
    pub port: Option<u16>,
    /// Seconds to sleep after a failed get-wal.
    pub sleep: u64,
    /// Peek size: prefetch up to N-1 following files (`-p`, or [`AUTO_JOBS`]).
    pub parallel: usize,
    /// Prefetch spool directory.
    pub spool_dir: PathBuf,
    /// The spool was chosen by us (neither `-p` nor `--spool-dir` given): it must be a
    /// private directory, or prefetching is skipped rather than failing the call.
    pub auto_spool: bool,
    /// Pass `--partial` to get-wal.
    pub partial: bool,
    /// Deprecated server-side compression: `--gzip` or `--bzip2`.
    pub server_compression: Option<&'static str>,
    /// Ask for the stored bytes and decompress here.
    pub keep_compression: bool,
    /// Config path on the Barman host.
    pub config: Option<String>,
    /// Only test the connection.
    pub test: bool,
    /// Backup host.
    pub host: String,
    /// Barman server name.
    pub server: String,
    /// Requested WAL name (`%f`).
    pub wal_name: String,
    /// Destination (`%p`).
    pub wal_dest: PathBuf,
    /// Internal: run as the background prefetcher for this spool.
    pub prefetch_daemon: bool,
}

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let flag = |name: &'static str| Arg::new(name).long(name).action(ArgAction::SetTrue);
    Command::new("barman-wal-restore")
        .version(concat!(env!("CARGO_PKG_VERSION"), " (Barman 3.20.1 compatible)"))
        .about("Fetch a WAL file from a Barman server (restore_command helper), prefetching ahead in parallel")
        .after_help("Exit status: 0 restored; 1 WAL not found on the Barman server; 2 ssh connection failure; 3 bad input or unusable destination.")
        .arg(Arg::new("user").short('U').long("user").default_value("barman").help("ssh user on the Barman host"))
        .arg(Arg::new("port").long("port").value_parser(clap::value_parser!(u16)).help("ssh port"))
        .arg(Arg::new("sleep").short('s').long("sleep").value_parser(clap::value_parser!(u64)).default_value("0").help("seconds to sleep after a failed get-wal"))
        .arg(Arg::new("parallel").short('p').long("parallel").value_parser(clap::value_parser!(usize)).help("keep up to JOBS-1 following WAL files prefetched in the spool (default: automatic, 8; 0 or 1: no prefetch)"))
        .arg(Arg::new("spool-dir").long("spool-dir").value_parser(clap::value_parser!(PathBuf)).help("prefetch spool directory (default /var/tmp/walrestore with -p; without -p a private directory per server and data directory under /var/tmp)"))
        .arg(flag("partial").short('P').help("also retrieve .partial files (streaming)"))
        .arg(flag("gzip").short('z').help("deprecated: ask the server to gzip").conflicts_with_all(["bzip2", "keep-compression"]))
        .arg(flag("bzip2").short('j').help("deprecated: ask the server to bzip2").conflicts_with("keep-compression"))
        .arg(flag("keep-compression").help("transfer the stored (compressed) file and decompress here"))
        .arg(Arg::new("config").short('c').long("config").help("configuration file on the Barman host"))
        .arg(flag("test").short('t').help("test the connection and the remote get-wal only"))
        .arg(flag("prefetch-daemon").hide(true))
        .arg(Arg::new("BARMAN_HOST").required(true))
        .arg(Arg::new("SERVER_NAME").required(true))
        .arg(Arg::new("WAL_NAME").required(true))
        .arg(Arg::new("WAL_DEST").required(true).value_parser(clap::value_parser!(PathBuf)))
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Options {
    let s = |k: &str| m.get_one::<String>(k).cloned().unwrap_or_default();
    let server_compression = if m.get_flag("gzip") {
        Some("--gzip")
    } else if m.get_flag("bzip2") {
        Some("--bzip2")
    } else {
        None
    };
    let (parallel, spool_dir, auto_spool) =
        match (m.get_one::<usize>("parallel").copied(), m.get_one::<PathBuf>("spool-dir").cloned()) {
            (jobs, Some(dir)) => (jobs.unwrap_or(AUTO_JOBS), dir, false),
            (Some(jobs), None) => (jobs, PathBuf::from(BARMAN_SPOOL), false),
            (None, None) => (AUTO_JOBS, auto_spool_dir(m), true),
        };
    Options {
        user: s("user"),
        port: m.get_one::<u16>("port").copied(),
        sleep: m.get_one::<u64>("sleep").copied().unwrap_or(0),
        parallel,
        spool_dir,
        auto_spool,
        partial: m.get_flag("partial"),
        server_compression,
        keep_compression: m.get_flag("keep-compression"),
        config: m.get_one::<String>("config").cloned(),
        test: m.get_flag("test"),
        host: s("BARMAN_HOST"),
        server: s("SERVER_NAME"),
        wal_name: s("WAL_NAME"),
        wal_dest: m.get_one::<PathBuf>("WAL_DEST").cloned().unwrap_or_default(),
        prefetch_daemon: m.get_flag("prefetch-daemon"),
    }
}

/// The spool when nothing names one: `/var/tmp/barman-walrestore-<SERVER>-<hash>`, the hash
/// covering the backup host, port, config and the calling directory (PostgreSQL runs
/// `restore_command` in its data directory), so two clusters on one host never share it.
fn auto_spool_dir(m: &ArgMatches) -> PathBuf {
    let s = |k: &str| m.get_one::<String>(k).cloned().unwrap_or_default();
    let port = m.get_one::<u16>("port").map_or_else(|| "None".to_owned(), u16::to_string);
    let cwd = std::env::current_dir().unwrap_or_default();
    let key = format!("{}:{port}:{}:{}", s("BARMAN_HOST"), s("config"), cwd.display());
    let hash = digest_hex(SumAlgo::Sha256, key.as_bytes());
    PathBuf::from(format!("/var/tmp/barman-walrestore-{}-{}", s("SERVER_NAME"), &hash[..16]))
}

/// The argv to re-run this tool as the background prefetcher with the same settings.
pub fn daemon_args(o: &Options) -> Vec<String> {
    let mut a = vec!["--prefetch-daemon".to_owned(), "-U".to_owned(), o.user.clone()];
    if let Some(p) = o.port {
        a.extend(["--port".to_owned(), p.to_string()]);
    }
    a.extend(["-p".to_owned(), o.parallel.to_string(), "--spool-dir".to_owned(), o.spool_dir.display().to_string()]);
    if let Some(c) = &o.config {
        a.extend(["-c".to_owned(), c.clone()]);
    }
    if o.keep_compression {
        a.push("--keep-compression".to_owned());
    }
    a.extend([o.host.clone(), o.server.clone(), o.wal_name.clone(), o.wal_dest.display().to_string()]);
    a
}
