//! The `barman` command line: Barman 3.20.1's global options and the subcommands this
//! toolkit implements, with Barman's names and aliases.

use clap::{Arg, ArgAction, Command};

fn server_arg() -> Arg {
    Arg::new("SERVER_NAME").required(true).help("the server name")
}

fn flag(name: &'static str) -> Arg {
    Arg::new(name).long(name).action(ArgAction::SetTrue)
}

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    Command::new("barman")
        .version(concat!(env!("CARGO_PKG_VERSION"), " (Barman 3.20.1 compatible)"))
        .about("Backup and recovery manager for PostgreSQL: the catalogue CLI on the backup host")
        .after_help("Exit status: 0 success; 1 failure (an ERROR line); 3 invalid WAL name for get-wal; 2 usage error.")
        .subcommand_required(true)
        .arg(Arg::new("config").short('c').long("config").global(true).help("configuration file"))
        .disable_version_flag(true)
        .arg(Arg::new("version").short('v').long("version").action(ArgAction::Version).help("print the version"))
        .arg(flag("quiet").short('q').global(true).help("be quiet"))
        .arg(flag("debug").short('d').global(true).help("debug output"))
        .arg(
            Arg::new("format")
                .short('f')
                .long("format")
                .global(true)
                .value_parser(["console", "json"])
                .default_value("console")
                .help("output format"),
        )
        .arg(Arg::new("log-level").long("log-level").global(true).help("log level"))
        .arg(Arg::new("color").long("color").visible_alias("colour").global(true).help("never, always or auto"))
        .subcommand(
            Command::new("put-wal")
                .about("receive WAL files archived by barman-wal-archive (tar stream on stdin)")
                .arg(flag("test").short('t').help("test the connection only"))
                .arg(server_arg()),
        )
        .subcommand(
            Command::new("get-wal")
                .about("send an archived WAL file to stdout or a directory")
                .arg(
                    Arg::new("output-directory")
                        .short('o')
                        .long("output-directory")
                        .help("write DIR/<WAL> instead of stdout"),
                )
                .arg(flag("partial").short('P').help("also look for .partial files"))
                .arg(flag("gzip").short('z').visible_short_alias('x').help("gzip the output"))
                .arg(flag("bzip2").short('j').help("bzip2 the output"))
                .arg(flag("keep-compression").help("send the stored (compressed) bytes"))
                .arg(
                    Arg::new("peek")
                        .short('p')
                        .long("peek")
                        .value_parser(clap::value_parser!(usize))
                        .help("list up to N available WAL names"),
                )
                .arg(
                    Arg::new("batch").long("batch").value_parser(clap::value_parser!(usize)).help(
                        "extension: send up to N available WAL files from WAL_NAME on as one checksummed tar stream",
                    ),
                )
                .arg(flag("batch-lz4").requires("batch").help(
                    "extension: with --batch, lz4-compress the files stored uncompressed on the way (the client decompresses)",
                ))
                .arg(flag("test").short('t').help("test the connection only"))
                .arg(server_arg())
                .arg(Arg::new("WAL_NAME").required(true).help("the WAL file name")),
        )
        .subcommand(
            Command::new("archive-wal")
                .about("move incoming and streamed WAL files into the archive")
                .arg(server_arg()),
        )
        .subcommand(
            Command::new("list-servers")
                .visible_alias("list-server")
                .about("list the configured servers")
                .arg(flag("minimal").help("names only")),
        )
        .subcommand(
            Command::new("list-backups")
                .visible_alias("list-backup")
                .about("list the backups of servers")
                .arg(flag("minimal").help("ids only"))
                .arg(Arg::new("SERVER_NAME").required(true).num_args(1..).help("server names, or all")),
        )
        .subcommand(
            Command::new("show-backup")
                .visible_alias("show-backups")
                .about("show the details of a backup")
                .arg(server_arg())
                .arg(Arg::new("BACKUP_ID").required(true).help("backup id, name, or latest/oldest/last-failed...")),
        )
        .subcommand(
            Command::new("show-servers")
                .visible_alias("show-server")
                .about("show the configuration and live status of servers")
                .arg(Arg::new("SERVER_NAME").required(true).num_args(1..).help("server names, or all")),
        )
        .subcommand(
            Command::new("switch-wal")
                .visible_alias("switch-xlog")
                .about("close the current WAL file on servers (select pg_switch_wal())")
                .arg(flag("force").help("run a CHECKPOINT first, so there is always something to switch"))
                .arg(flag("archive").help("wait until the closed WAL file is archived"))
                .arg(
                    Arg::new("archive-timeout")
                        .long("archive-timeout")
                        .value_parser(clap::value_parser!(u64))
                        .default_value("30")
                        .help("seconds --archive waits (default 30)"),
                )
                .arg(Arg::new("SERVER_NAME").required(true).num_args(1..).help("server names, or all")),
        )
        .subcommand(
            Command::new("replication-status")
                .about("show the standbys and WAL streamers connected to servers (pg_stat_replication)")
                .arg(flag("minimal").help("one line per client"))
                .arg(
                    Arg::new("target")
                        .long("target")
                        .value_parser(["hot-standby", "wal-streamer", "all"])
                        .default_value("all")
                        .help("which clients to show"),
                )
                .arg(
                    Arg::new("source")
                        .long("source")
                        .value_parser(["backup-host", "wal-host"])
                        .default_value("backup-host")
                        .help("list the clients of the backup conninfo or of the WAL streaming one"),
                )
                .arg(Arg::new("SERVER_NAME").required(true).num_args(1..).help("server names, or all")),
        )
        .subcommand(
            Command::new("delete")
                .about("delete a backup (refused for kept backups and below minimum redundancy)")
                .arg(server_arg())
                .arg(Arg::new("BACKUP_ID").required(true).help("backup id or name")),
        )
        .subcommand(
            Command::new("keep")
                .about("keep a backup forever (full or standalone), show or release the keep")
                .arg(flag("release").short('r').help("release the keep"))
                .arg(flag("status").short('s').help("show the keep status"))
                .arg(Arg::new("target").long("target").value_parser(["full", "standalone"]).help("what to keep"))
                .arg(server_arg())
                .arg(Arg::new("BACKUP_ID").required(true).help("backup id or name")),
        )
        .subcommand(
            Command::new("receive-wal")
                .about("stream WAL from the server into streaming/ (barman-receive-wal, run by cron)")
                .arg(flag("stop").help("stop the receive-wal subprocess for the server (deprecated)"))
                .arg(flag("reset").help("reset the status of receive-wal removing any status files"))
                .arg(flag("create-slot").help("create the replication slot, if it does not exist"))
                .arg(flag("if-not-exists").help("with --create-slot: no error when the slot already exists"))
                .arg(flag("drop-slot").help("drop the replication slot, if it exists"))
                .arg(server_arg()),
        )
        .subcommand(
            Command::new("backup")
                .about("take a base backup of servers (runs barman-backup)")
                .arg(Arg::new("name").long("name").help("a friendly name for the backup"))
                .arg(flag("wait").short('w').help("wait for every required WAL file to be archived"))
                .arg(flag("immediate-checkpoint").help("request a fast checkpoint"))
                .arg(flag("no-immediate-checkpoint").help("let the checkpoint spread"))
                .arg(
                    Arg::new("reuse-backup")
                        .long("reuse-backup")
                        .value_parser(["off", "copy", "link"])
                        .help("link: files identical to the previous backup's become hard links"),
                )
                .arg(Arg::new("SERVER_NAME").required(true).num_args(1..).help("server names, or all")),
        )
        .subcommand(
            Command::new("check-backup")
                .about("mark a WAITING_FOR_WALS backup DONE once all its WAL files are archived")
                .arg(server_arg())
                .arg(Arg::new("BACKUP_ID").required(true).help("backup id or name")),
        )
        .subcommand(
            Command::new("sync-backup")
                .about("passive node: copy one backup from the primary (runs barman-relay; uses the saved primary.info)")
                .arg(server_arg())
                .arg(Arg::new("BACKUP_ID").required(true).help("backup id")),
        )
        .subcommand(
            Command::new("sync-wals")
                .about("passive node: copy the WAL files the primary lists (runs barman-relay; uses the saved primary.info)")
                .arg(server_arg()),
        )
        .subcommand(
            Command::new("metrics").about(
                "print every server's state in the Prometheus text format (for node_exporter's textfile collector)",
            ),
        )
        .subcommand(
            Command::new("check")
                .about("check the configuration, the catalogue and the PostgreSQL connection of servers")
                .arg(flag("nagios").help("Nagios plugin compatible output"))
                .arg(
                    Arg::new("check-timeout")
                        .long("check-timeout")
                        .value_parser(clap::value_parser!(u64))
                        .help("time limit in seconds for the checks (0 disables it)"),
                )
                .arg(Arg::new("SERVER_NAME").required(true).num_args(1..).help("server names, or all")),
        )
        .subcommand(
            Command::new("status")
                .about("show live information and status of servers")
                .arg(Arg::new("SERVER_NAME").required(true).num_args(1..).help("server names, or all")),
        )
        .subcommand(
            Command::new("recover")
                .visible_alias("restore")
                .about("restore a backup into a local or remote directory, optionally to a recovery target")
                .arg(Arg::new("target-time").long("target-time").help("recovery target time"))
                .arg(Arg::new("target-xid").long("target-xid").help("recovery target transaction id"))
                .arg(Arg::new("target-lsn").long("target-lsn").help("recovery target LSN"))
                .arg(Arg::new("target-name").long("target-name").help("recovery target restore point name"))
                .arg(flag("target-immediate").help("end recovery as soon as a consistent state is reached"))
                .arg(Arg::new("target-tli").long("target-tli").help("recovery target timeline: N, current or latest"))
                .arg(
                    Arg::new("target-action")
                        .long("target-action")
                        .value_parser(["pause", "shutdown", "promote"])
                        .help("what to do once the target is reached"),
                )
                .arg(flag("exclusive").help("stop just before the target (time, xid, lsn)"))
                .arg(
                    Arg::new("tablespace")
                        .long("tablespace")
                        .action(clap::ArgAction::Append)
                        .help("relocate a tablespace: NAME:LOCATION"),
                )
                .arg(
                    Arg::new("remote-ssh-command")
                        .long("remote-ssh-command")
                        .help("recover onto another host through this ssh command, e.g. \"ssh postgres@db2\""),
                )
                .arg(
                    Arg::new("restore-command")
                        .long("restore-command")
                        .help("with get-wal: the restore_command to write instead of the generated one"),
                )
                .arg(
                    Arg::new("jobs")
                        .short('j')
                        .long("jobs")
                        .value_parser(clap::value_parser!(i64))
                        .help("parallel jobs (-p N of a remote barman-wal-restore); overrides parallel_jobs"),
                )
                .arg(
                    Arg::new("recovery-option-port")
                        .long("recovery-option-port")
                        .help("--port of the barman-wal-restore written for a remote recovery"),
                )
                .arg(flag("get-wal").overrides_with("no-get-wal").help("use barman get-wal as restore_command"))
                .arg(flag("no-get-wal").help("copy the required WAL files into the destination"))
                .arg(flag("standby-mode").help("write standby.signal"))
                .arg(flag("skip-archive-wal").help("do not archive the incoming WAL files first"))
                .arg(server_arg())
                .arg(Arg::new("BACKUP_ID").required(true).help("backup id, name, or latest/oldest/..."))
                .arg(Arg::new("DESTINATION_DIRECTORY").required(true).help("the directory to restore into")),
        )
        .subcommand(
            Command::new("verify-restore")
                .about(
                    "extension: recover a backup into a scratch directory, start PostgreSQL on it, \
                     check it answers and report the RTO and the recovery point",
                )
                .arg(Arg::new("target-time").long("target-time").help("recovery target time"))
                .arg(Arg::new("target-xid").long("target-xid").help("recovery target transaction id"))
                .arg(Arg::new("target-lsn").long("target-lsn").help("recovery target LSN"))
                .arg(Arg::new("target-name").long("target-name").help("recovery target restore point name"))
                .arg(flag("target-immediate").help("end recovery as soon as a consistent state is reached"))
                .arg(Arg::new("target-tli").long("target-tli").help("recovery target timeline: N, current or latest"))
                .arg(flag("exclusive").help("stop just before the target (time, xid, lsn)"))
                .arg(Arg::new("scratch").long("scratch").help("make the scratch directory here (default barman_home)"))
                .arg(
                    Arg::new("timeout")
                        .long("timeout")
                        .value_parser(clap::value_parser!(u64))
                        .default_value("300")
                        .help("seconds PostgreSQL may take to start and finish recovery"),
                )
                .arg(server_arg())
                .arg(Arg::new("BACKUP_ID").default_value("latest").help("backup id, name, or latest/oldest/...")),
        )
        .subcommand(
            Command::new("sync-info")
                .about("print the synchronisation status a passive node reads (geo-redundancy)")
                .arg(flag("primary").help("on a passive node: ask the primary node instead"))
                .arg(server_arg())
                .arg(Arg::new("LAST_WAL").help("the last WAL name already read"))
                .arg(
                    Arg::new("LAST_POSITION")
                        .allow_negative_numbers(true)
                        .value_parser(crate::cmd::sync_info::parse_last_position)
                        .help("the xlog.db byte offset of LAST_WAL"),
                ),
        )
        .subcommand(Command::new("cron").about("run maintenance for every server").arg(flag("keep-descriptors")))
}

/// Splits one-word `"--config /path"` arguments, which arrive that way when a client quotes
/// the whole option for the remote shell.
pub fn normalise_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .flat_map(|a| match a.strip_prefix("--config ") {
            Some(path) => vec!["--config".to_owned(), path.trim().to_owned()],
            None => vec![a],
        })
        .collect()
}
