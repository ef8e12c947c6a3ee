//! Command line of `barman-receive-wal`, option for option as PostgreSQL 15's
//! `pg_receivewal` (the subset listed in `--help`).

use std::path::PathBuf;
use std::time::Duration;

use barman_common::pg::ConnInfo;
use barman_common::wal::Lsn;
use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::writer::WalCompression;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stream WAL into the directory.
    Stream,
    /// Create the slot and exit (`--create-slot`), `if_not_exists` tolerating an existing one.
    CreateSlot {
        /// `--if-not-exists`.
        if_not_exists: bool,
    },
    /// Drop the slot and exit (`--drop-slot`).
    DropSlot,
    /// Print the server's position and the slot's state as `key=value` lines and exit
    /// (hidden `--identify`, used by `barman receive-wal` for its checks and `--reset`).
    Identify,
}

/// The tool's options, free of clap types.
#[derive(Debug, Clone)]
pub struct Options {
    /// What to do.
    pub action: Action,
    /// `-D`: where WAL goes.
    pub directory: Option<PathBuf>,
    /// Connection parameters (`-d` conninfo, overridden by `-h`, `-p`, `-U`).
    pub conninfo: ConnInfo,
    /// `-S`: replication slot.
    pub slot: Option<String>,
    /// `--synchronous`: fsync and report flush after every batch of WAL.
    pub synchronous: bool,
    /// `--no-sync`: no fsync at all (tests).
    pub no_sync: bool,
    /// `-s`: status interval; `None` disables the periodic updates.
    pub status_interval: Option<Duration>,
    /// `-E`: stop once WAL past this position was received.
    pub endpos: Option<Lsn>,
    /// `-n`: do not retry after a lost connection.
    pub no_loop: bool,
    /// `-Z`: how segments are written.
    pub compression: WalCompression,
    /// `-v` count.
    pub verbose: u8,
}

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    Command::new("barman-receive-wal")
        .version(concat!(env!("CARGO_PKG_VERSION"), " (pg_receivewal 15 compatible)"))
        .about("Receive PostgreSQL write-ahead logs over streaming replication (pg_receivewal compatible)")
        .after_help(
            "Exit status: 0 stopped (signal, --endpos, slot created/dropped); 1 streaming failed (with --no-loop); \
             2 could not connect; 3 bad options or an unusable directory (e.g. WAL of another cluster).",
        )
        .disable_help_flag(true)
        .disable_version_flag(true)
        // getopt_long takes an option twice (the last value wins): so does pg_receivewal.
        .args_override_self(true)
        .arg(Arg::new("help").short('?').long("help").action(ArgAction::Help).help("show this help, then exit"))
        .arg(
            Arg::new("version")
                .short('V')
                .long("version")
                .action(ArgAction::Version)
                .help("output version information, then exit"),
        )
        .args(streaming_args())
        .args(connection_args())
}

fn flag(name: &'static str) -> Arg {
    Arg::new(name).long(name).action(ArgAction::SetTrue)
}

/// pg_receivewal's options, in its order: where and how WAL is received.
fn streaming_args() -> [Arg; 10] {
    [
        Arg::new("directory")
            .short('D')
            .long("directory")
            .value_parser(clap::value_parser!(PathBuf))
            .help("receive write-ahead log files into this directory"),
        Arg::new("endpos")
            .short('E')
            .long("endpos")
            .value_parser(clap::value_parser!(Lsn))
            .help("exit after receiving the specified LSN"),
        flag("if-not-exists").help("do not error if slot already exists when creating a slot"),
        flag("no-loop").short('n').help("do not loop on connection lost"),
        flag("no-sync").help("do not wait for changes to be written safely to disk"),
        Arg::new("status-interval")
            .short('s')
            .long("status-interval")
            .value_parser(clap::value_parser!(u32))
            .default_value("10")
            .help("time between status packets sent to server (in seconds)"),
        Arg::new("slot").short('S').long("slot").help("replication slot to use"),
        flag("synchronous").help("flush write-ahead log immediately after writing"),
        Arg::new("verbose").short('v').long("verbose").action(ArgAction::Count).help("output verbose messages"),
        Arg::new("compress")
            .short('Z')
            .long("compress")
            .value_name("METHOD[:DETAIL]")
            .help("compress as specified: gzip, lz4 or none, with :LEVEL or :level=LEVEL; a bare 0-9 is a gzip level"),
    ]
}

/// The connection options and the optional actions, in pg_receivewal's order.
fn connection_args() -> [Arg; 9] {
    [
        Arg::new("dbname").short('d').long("dbname").help("connection string"),
        Arg::new("host").short('h').long("host").help("database server host or socket directory"),
        Arg::new("port").short('p').long("port").help("database server port number"),
        Arg::new("username").short('U').long("username").help("connect as specified database user"),
        flag("no-password").short('w').help("never prompt for password"),
        flag("password")
            .short('W')
            .conflicts_with("no-password")
            .help("force password prompt (should happen automatically)"),
        flag("create-slot").help("create a new replication slot (for the slot's name see --slot)"),
        flag("drop-slot").help("drop the replication slot (for the slot's name see --slot)"),
        flag("identify")
            .hide(true)
            .conflicts_with_all(["create-slot", "drop-slot"])
            .help("print the server position and the slot state as key=value lines, then exit"),
    ]
}

/// Converts parsed arguments into [`Options`], with pg_receivewal's consistency checks.
pub fn options(m: &ArgMatches) -> Result<Options, String> {
    let action = if m.get_flag("create-slot") {
        Action::CreateSlot { if_not_exists: m.get_flag("if-not-exists") }
    } else if m.get_flag("drop-slot") {
        Action::DropSlot
    } else if m.get_flag("identify") {
        Action::Identify
    } else {
        Action::Stream
    };
    let directory = m.get_one::<PathBuf>("directory").cloned();
    let slot = m.get_one::<String>("slot").cloned();
    // pg_receivewal's checks, in its order and words.
    if m.get_flag("create-slot") && m.get_flag("drop-slot") {
        return Err("cannot use --create-slot together with --drop-slot".into());
    }
    if slot.is_none() && matches!(action, Action::CreateSlot { .. } | Action::DropSlot) {
        let option = if action == Action::DropSlot { "--drop-slot" } else { "--create-slot" };
        return Err(format!("{option} needs a slot to be specified using --slot"));
    }
    if m.get_flag("synchronous") && m.get_flag("no-sync") {
        return Err("cannot use --synchronous together with --no-sync".into());
    }
    if action == Action::Stream && directory.is_none() {
        return Err("no target directory specified".into());
    }
    let compression = parse_compression(m.get_one::<String>("compress").map(String::as_str))?;
    let interval = m.get_one::<u32>("status-interval").copied().unwrap_or(10);
    Ok(Options {
        action,
        directory,
        conninfo: {
            let mut info = conninfo(m).map_err(|e| e.to_string())?;
            if m.get_flag("password") {
                let password = prompt_password().map_err(|e| format!("could not read the password: {e}"))?;
                info.set("password", &password).map_err(|e| e.to_string())?;
            }
            info
        },
        slot,
        synchronous: m.get_flag("synchronous"),
        no_sync: m.get_flag("no-sync"),
        status_interval: (interval > 0).then(|| Duration::from_secs(u64::from(interval))),
        endpos: m.get_one::<Lsn>("endpos").copied(),
        no_loop: m.get_flag("no-loop"),
        compression,
        verbose: m.get_count("verbose"),
    })
}

/// `-W`: asks for the password on the terminal (`/dev/tty`, echo off), as libpq's
/// `simple_prompt` does.
fn prompt_password() -> std::io::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{BufRead, Write};
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty")?;
    let mut out = &tty;
    out.write_all(b"Password: ")?;
    out.flush()?;
    let saved = tcgetattr(&tty).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&tty, SetArg::TCSANOW, &quiet).map_err(std::io::Error::from)?;
    }
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    if let Some(saved) = &saved {
        tcsetattr(&tty, SetArg::TCSANOW, saved).map_err(std::io::Error::from)?;
    }
    out.write_all(b"\n")?;
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// `-Z` as PostgreSQL 18's pg_receivewal reads it (`parse_compress_specification` and
/// `validate_compress_specification`, with their messages): `none`, `gzip`, `lz4`, each
/// with an optional `:LEVEL` or `:level=LEVEL`; a bare integer is a gzip level (0 = none).
pub fn parse_compression(value: Option<&str>) -> Result<WalCompression, String> {
    const INVALID: &str = "invalid compression specification";
    let Some(value) = value else { return Ok(WalCompression::None) };
    let gzip_range = || {
        format!("{INVALID}: compression algorithm \"gzip\" expects a compression level between 1 and 9 (default at -1)")
    };
    if let Ok(level) = value.parse::<i64>() {
        return match level {
            0 => Ok(WalCompression::None),
            1..=9 => Ok(WalCompression::Gzip(level as u32)),
            _ => Err(gzip_range()),
        };
    }
    let (method, detail) = value.split_once(':').map_or((value, None), |(m, d)| (m, Some(d)));
    if !matches!(method, "none" | "gzip" | "lz4" | "zstd") {
        return Err(format!("unrecognized compression algorithm: \"{method}\""));
    }
    let level = compression_level(method, detail).map_err(|e| format!("{INVALID}: {e}"))?;
    match method {
        "none" if level.is_none_or(|l| l == 0) => Ok(WalCompression::None),
        "none" => Err(format!("{INVALID}: compression algorithm \"none\" does not accept a compression level")),
        "gzip" => match level {
            None => Ok(WalCompression::Gzip(6)),
            Some(l @ 1..=9) => Ok(WalCompression::Gzip(l as u32)),
            Some(_) => Err(gzip_range()),
        },
        // lz4_flex has one (fast) level; a requested level is accepted like pg_receivewal's.
        "lz4" if level.is_none_or(|l| (0..=12).contains(&l)) => Ok(WalCompression::Lz4),
        "lz4" => Err(format!(
            "{INVALID}: compression algorithm \"lz4\" expects a compression level between 1 and 12 (default at 0)"
        )),
        _ => Err("compression with ZSTD is not yet supported".into()),
    }
}

/// The level in a `-Z` detail: `N` or `level=N`; other keywords as PostgreSQL refuses them.
fn compression_level(method: &str, detail: Option<&str>) -> Result<Option<i64>, String> {
    let Some(detail) = detail.filter(|d| !d.is_empty()) else { return Ok(None) };
    if let Ok(level) = detail.parse::<i64>() {
        return Ok(Some(level));
    }
    let (keyword, value) = detail.split_once('=').map_or((detail, None), |(k, v)| (k, Some(v)));
    match keyword {
        "level" => value
            .and_then(|v| v.parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| "value for compression option \"level\" must be an integer".to_owned()),
        "workers" | "long" => Err(format!(
            "compression algorithm \"{method}\" does not accept {}",
            if keyword == "workers" { "a worker count" } else { "long-distance mode" }
        )),
        _ => Err(format!("unrecognized compression option: \"{keyword}\"")),
    }
}

/// `-d` (a conninfo, or a bare database name, which physical replication ignores), then
/// `-h`/`-p`/`-U` on top, then pg_receivewal's `fallback_application_name`.
fn conninfo(m: &ArgMatches) -> Result<ConnInfo, barman_common::pg::PgError> {
    let mut info = match m.get_one::<String>("dbname") {
        Some(d) if ConnInfo::is_conninfo(d) => ConnInfo::parse(d)?,
        _ => ConnInfo::default(),
    };
    for (arg, key) in [("host", "host"), ("port", "port"), ("username", "user")] {
        if let Some(value) = m.get_one::<String>(arg) {
            info.set(key, value)?;
        }
    }
    if info.get("fallback_application_name").is_none() {
        info.set("fallback_application_name", "pg_receivewal")?;
    }
    Ok(info)
}
