//! Command line of `barman-backup`, shaped like `barman backup SERVER`.

use barman_server::backup::Options;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let flag = |name: &'static str| Arg::new(name).long(name).action(ArgAction::SetTrue);
    let cmd = Command::new("barman-backup")
        .version(concat!(env!("CARGO_PKG_VERSION"), " (Barman 3.20.1 compatible)"))
        .about(
            "Take a base backup of a Barman server: BASE_BACKUP (backup_method = postgres; plain or compressed tar) \
             or rsync (backup_method = rsync over ssh_command, local-rsync)",
        )
        .after_help(
            "Exit status: 0 backup taken (DONE, or WAITING_FOR_WALS without --wait); 1 the backup failed \
             (marked FAILED); 2 could not connect to PostgreSQL; 3 bad input (usage, configuration, unknown \
             server); 4 internal error.",
        )
        .arg(Arg::new("config").short('c').long("config").help("Barman configuration file"))
        .arg(Arg::new("name").long("name").help("a friendly name for this backup (backup_name)"))
        .arg(flag("immediate-checkpoint").help("request a fast checkpoint at backup start"))
        .arg(
            flag("no-immediate-checkpoint")
                .overrides_with("immediate-checkpoint")
                .help("let the checkpoint at backup start spread (the default unless immediate_checkpoint = on)"),
        )
        .arg(
            Arg::new("reuse-backup")
                .long("reuse-backup")
                .value_parser(["off", "copy", "link"])
                .help("link: files identical to the previous backup's become hard links (overrides reuse_backup)"),
        )
        .arg(
            Arg::new("jobs")
                .short('j')
                .long("jobs")
                .value_parser(clap::value_parser!(u32).range(1..))
                .help("number of parallel rsync workers (overrides parallel_jobs; rsync method)"),
        )
        .arg(
            Arg::new("bwlimit")
                .long("bwlimit")
                .value_name("KBPS")
                .value_parser(clap::value_parser!(u64))
                .help("maximum transfer rate in kilobytes per second (0 = unlimited; overrides bandwidth_limit)"),
        )
        .arg(
            Arg::new("retry-times")
                .long("retry-times")
                .value_parser(clap::value_parser!(u32))
                .help("times a failed copy is retried (overrides basebackup_retry_times)"),
        )
        .arg(flag("no-retry").conflicts_with("retry-times").help("do not retry a failed copy"))
        .arg(
            Arg::new("retry-sleep")
                .long("retry-sleep")
                .value_parser(clap::value_parser!(u64))
                .help("seconds between two attempts (overrides basebackup_retry_sleep)"),
        )
        .arg(
            Arg::new("incremental")
                .long("incremental")
                .value_name("BACKUP_ID")
                .help("block-level incremental backup (PG 17+, backup_method = postgres) on top of BACKUP_ID, latest or latest-full"),
        )
        .arg(flag("wait").short('w').help("wait until every WAL file the backup needs is archived (status DONE)"))
        .arg(
            Arg::new("wait-timeout")
                .long("wait-timeout")
                .value_parser(clap::value_parser!(u64))
                .default_value("0")
                .help("with --wait, give up after this many seconds (0 = wait forever)"),
        )
        .arg(
            Arg::new("format")
                .short('f')
                .long("format")
                .value_parser(["console", "json"])
                .default_value("console")
                .help("output format"),
        )
        .arg(flag("quiet").short('q').help("print errors only"))
        .arg(Arg::new("SERVER_NAME").required(true).help("the server to back up"));
    rsync_args(cmd)
}

/// The options only the rsync method reads.
fn rsync_args(cmd: Command) -> Command {
    let flag = |name: &'static str| Arg::new(name).long(name).action(ArgAction::SetTrue);
    cmd        .arg(
            Arg::new("jobs-start-batch-size")
                .long("jobs-start-batch-size")
                .value_parser(clap::value_parser!(u32).range(1..))
                .help("rsync workers started per batch (overrides parallel_jobs_start_batch_size)"),
        )
        .arg(
            Arg::new("jobs-start-batch-period")
                .long("jobs-start-batch-period")
                .value_parser(clap::value_parser!(u32).range(1..))
                .help("seconds between two batches of started rsync workers (overrides parallel_jobs_start_batch_period)"),
        )
        .arg(
            Arg::new("keepalive-interval")
                .long("keepalive-interval")
                .value_parser(clap::value_parser!(u64))
                .help("seconds between two heartbeat queries on the SQL session during an rsync copy (0 = none; overrides keepalive_interval)"),
        )
        .arg(flag("manifest").overrides_with("no-manifest").help("write a backup_manifest after an rsync copy (overrides autogenerate_manifest)"))
        .arg(
            flag("no-manifest")
                .overrides_with("manifest")
                .help("no backup_manifest after an rsync copy (overrides autogenerate_manifest)"),
        )
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Options {
    let immediate = if m.get_flag("immediate-checkpoint") {
        Some(true)
    } else if m.get_flag("no-immediate-checkpoint") {
        Some(false)
    } else {
        None
    };
    Options {
        config: m.get_one::<String>("config").cloned(),
        server: m.get_one::<String>("SERVER_NAME").cloned().unwrap_or_default(),
        name: m.get_one::<String>("name").cloned(),
        incremental: m.get_one::<String>("incremental").cloned(),
        immediate_checkpoint: immediate,
        wait: m.get_flag("wait"),
        reuse_backup: m.get_one::<String>("reuse-backup").and_then(|mode| mode.parse().ok()),
        wait_timeout: m.get_one::<u64>("wait-timeout").copied().unwrap_or(0),
        jobs: m.get_one::<u32>("jobs").map(|&j| j as usize),
        bwlimit: m.get_one::<u64>("bwlimit").copied(),
        retry_times: if m.get_flag("no-retry") { Some(0) } else { m.get_one::<u32>("retry-times").copied() },
        retry_sleep: m.get_one::<u64>("retry-sleep").copied(),
        jobs_start_batch_size: m.get_one::<u32>("jobs-start-batch-size").copied(),
        jobs_start_batch_period: m.get_one::<u32>("jobs-start-batch-period").copied(),
        keepalive_interval: m.get_one::<u64>("keepalive-interval").copied(),
        manifest: if m.get_flag("manifest") {
            Some(true)
        } else if m.get_flag("no-manifest") {
            Some(false)
        } else {
            None
        },
        json: m.get_one::<String>("format").is_some_and(|f| f == "json"),
        quiet: m.get_flag("quiet"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        options(&command().try_get_matches_from(args).expect("valid"))
    }

    #[test]
    fn flags() {
        let o = parse(&["barman-backup", "-c", "/etc/b.conf", "--name", "n1", "--wait", "pg"]);
        assert_eq!(o.config.as_deref(), Some("/etc/b.conf"));
        assert_eq!((o.server.as_str(), o.name.as_deref(), o.wait), ("pg", Some("n1"), true));
        assert_eq!(o.immediate_checkpoint, None);
        assert_eq!(parse(&["b", "--immediate-checkpoint", "pg"]).immediate_checkpoint, Some(true));
        assert_eq!(
            parse(&["b", "--immediate-checkpoint", "--no-immediate-checkpoint", "pg"]).immediate_checkpoint,
            Some(false)
        );
        assert!(command().try_get_matches_from(["b"]).is_err());
        assert_eq!(parse(&["b", "--incremental", "latest-full", "pg"]).incremental.as_deref(), Some("latest-full"));
        let o = parse(&["b", "--jobs", "4", "--bwlimit", "100", "--no-retry", "--retry-sleep", "3", "pg"]);
        assert_eq!((o.jobs, o.bwlimit, o.retry_times, o.retry_sleep), (Some(4), Some(100), Some(0), Some(3)));
        let o = parse(&["b", "--jobs-start-batch-size", "2", "--jobs-start-batch-period", "5", "pg"]);
        assert_eq!((o.jobs_start_batch_size, o.jobs_start_batch_period), (Some(2), Some(5)));
        assert_eq!(parse(&["b", "--keepalive-interval", "0", "pg"]).keepalive_interval, Some(0));
        assert_eq!(parse(&["b", "--no-manifest", "--manifest", "pg"]).manifest, Some(true));
        assert_eq!(parse(&["b", "--manifest", "--no-manifest", "pg"]).manifest, Some(false));
        assert_eq!(parse(&["b", "pg"]).manifest, None);
    }
}
