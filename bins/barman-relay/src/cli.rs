//! Command line of `barman-relay`.

use barman_server::relay::{Mode, Options};
use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Command};

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let flag = |name: &'static str| Arg::new(name).long(name).action(ArgAction::SetTrue);
    let secs = |name: &'static str| Arg::new(name).long(name).value_parser(clap::value_parser!(u64));
    Command::new("barman-relay")
        .version(concat!(env!("CARGO_PKG_VERSION"), " (Barman 3.20.1 compatible)"))
        .about(
            "Keep a passive backup host's copy of a server: ask the primary backup host (primary_ssh_command) \
             for its catalogue with `barman sync-info`, then copy the WAL files it has and the backups this \
             host misses, verified, with rsync over that ssh command",
        )
        .after_help(
            "Exit status: 0 in sync (or nothing to do); 1 a copy failed (the backup stays SYNCING or is marked \
             FAILED, and the next run resumes it); 2 the primary could not be asked (ssh or sync-info failed); \
             3 bad input (usage, configuration, unknown or non-passive server).",
        )
        .arg(Arg::new("config").short('c').long("config").help("Barman configuration file"))
        .arg(flag("wals").help("synchronise WAL files only (barman sync-wals)"))
        .arg(flag("backups").help("synchronise missing backups only"))
        .arg(
            Arg::new("backup")
                .long("backup")
                .value_name("BACKUP_ID")
                .help("synchronise one backup (barman sync-backup)"),
        )
        .arg(flag("info").help("ask the primary, save primary.info and print its answer (barman sync-info --primary)"))
        .group(ArgGroup::new("mode").args(["wals", "backups", "backup", "info"]))
        .arg(flag("cached").help("use the saved primary.info instead of asking the primary again"))
        .arg(
            secs("follow")
                .default_value("0")
                .help("keep relaying WAL files for this many seconds after the first pass (for cron: 55)"),
        )
        .arg(secs("interval").default_value("5").help("seconds between WAL passes with --follow"))
        .arg(
            Arg::new("last-wal")
                .long("last-wal")
                .requires("info")
                .help("with --info: the LAST_WAL to pass to sync-info"),
        )
        .arg(
            Arg::new("last-position")
                .long("last-position")
                .requires("last-wal")
                .value_parser(clap::value_parser!(u64).range(1..))
                .help("with --last-wal: the LAST_POSITION to pass to sync-info"),
        )
        .arg(flag("no-partial").help("do not relay the primary's streaming .partial segment"))
        .arg(flag("quiet").short('q').help("print errors only"))
        .arg(Arg::new("SERVER_NAME").required(true).help("the passive server"))
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Options {
    let mode = if m.get_flag("wals") {
        Mode::Wals
    } else if m.get_flag("backups") {
        Mode::Backups
    } else if let Some(id) = m.get_one::<String>("backup") {
        Mode::Backup(id.clone())
    } else if m.get_flag("info") {
        Mode::Info
    } else {
        Mode::All
    };
    Options {
        config: m.get_one::<String>("config").cloned(),
        server: m.get_one::<String>("SERVER_NAME").cloned().unwrap_or_default(),
        mode,
        cached: m.get_flag("cached"),
        follow: m.get_one::<u64>("follow").copied().unwrap_or(0),
        interval: m.get_one::<u64>("interval").copied().unwrap_or(5).max(1),
        no_partial: m.get_flag("no-partial"),
        last: m
            .get_one::<String>("last-wal")
            .map(|w| (w.clone(), m.get_one::<u64>("last-position").map(ToString::to_string).unwrap_or_default())),
        quiet: m.get_flag("quiet"),
    }
}
