//! `barman`: the catalogue CLI on the backup host, compatible with Barman 3.20.1's command
//! lines, outputs and exit codes. Each subcommand lives in its own module under [`cmd`] with a
//! `run` function; this file only dispatches and maps errors to exit codes.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cmd;
pub mod context;
pub mod hooks;
pub mod log;
pub mod output;
pub mod progress;
pub mod server;
pub mod walinfo;

use clap::ArgMatches;

use crate::context::Context;
use crate::output::Output;

/// A failed command, with the exit code Barman gives it.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// An `ERROR:` line, exit 1.
    #[error("{0}")]
    Error(String),
    /// An `ERROR:` line with a specific exit code (get-wal uses 3).
    #[error("{0}")]
    Code(String, i32),
    /// An unexpected failure: `EXCEPTION:` and exit 1.
    #[error("{0}")]
    Exception(String),
    /// Exit with this code, printing nothing more (the command already reported, as
    /// `check` does for its failed checks).
    #[error("exit status {0}")]
    Silent(i32),
}

impl From<std::io::Error> for CmdError {
    fn from(e: std::io::Error) -> Self {
        CmdError::Exception(e.to_string())
    }
}

impl From<barman_common::catalogue::CatalogueError> for CmdError {
    fn from(e: barman_common::catalogue::CatalogueError) -> Self {
        CmdError::Exception(e.to_string())
    }
}

/// Runs the parsed command line; returns the exit status.
pub fn run(m: &ArgMatches) -> i32 {
    let json = m.get_one::<String>("format").is_some_and(|f| f == "json");
    let mut out = Output::new(json, m.get_flag("quiet"));
    let result = Context::load(m.get_one::<String>("config").map(String::as_str), &mut out)
        .and_then(|ctx| dispatch(&ctx, m, &mut out));
    let code = match result {
        Ok(()) => 0,
        Err(CmdError::Error(msg)) => {
            out.error(msg);
            1
        }
        Err(CmdError::Code(msg, code)) => {
            out.error(msg);
            code
        }
        Err(CmdError::Exception(msg)) => {
            out.exception(msg);
            1
        }
        Err(CmdError::Silent(code)) => code,
    };
    out.close();
    code
}

fn servers(m: &ArgMatches) -> Vec<String> {
    m.get_many::<String>("SERVER_NAME").map(|v| v.cloned().collect()).unwrap_or_default()
}

fn dispatch(ctx: &Context, m: &ArgMatches, out: &mut Output) -> Result<(), CmdError> {
    let (name, sub) = m.subcommand().expect("clap enforces a subcommand");
    let server_name = || sub.get_one::<String>("SERVER_NAME").cloned().unwrap_or_default();
    match name {
        "put-wal" => cmd::put_wal_cmd(ctx, &server_name(), sub.get_flag("test"), out),
        "get-wal" => cmd::get_wal_cmd(ctx, &server_name(), sub, out),
        "archive-wal" => cmd::archive_wal_cmd(ctx, &server_name(), out),
        "cron" => cmd::cron::run(ctx, out),
        "backup" => cmd::backup::run(ctx, m.get_one::<String>("config").map(String::as_str), sub, out),
        "check-backup" => {
            let id = sub.get_one::<String>("BACKUP_ID").cloned().unwrap_or_default();
            cmd::check_backup::run(ctx, &server_name(), &id, out)
        }
        "sync-backup" => {
            let id = sub.get_one::<String>("BACKUP_ID").cloned().unwrap_or_default();
            cmd::relay::sync_backup(ctx, m.get_one::<String>("config").map(String::as_str), &server_name(), &id)
        }
        "sync-wals" => cmd::relay::sync_wals(ctx, m.get_one::<String>("config").map(String::as_str), &server_name()),
        "receive-wal" => {
            let opts = cmd::receive_wal::Options {
                create_slot: sub.get_flag("create-slot"),
                if_not_exists: sub.get_flag("if-not-exists"),
                drop_slot: sub.get_flag("drop-slot"),
                reset: sub.get_flag("reset"),
                stop: sub.get_flag("stop"),
            };
            cmd::receive_wal::run(ctx, &server_name(), &opts, out)
        }
        "recover" => {
            let get = |k: &str| sub.get_one::<String>(k).cloned();
            let opts = cmd::recover::Options {
                target_time: get("target-time"),
                target_xid: get("target-xid"),
                target_lsn: get("target-lsn"),
                target_name: get("target-name"),
                target_immediate: sub.get_flag("target-immediate"),
                target_tli: get("target-tli"),
                target_action: get("target-action"),
                exclusive: sub.get_flag("exclusive"),
                tablespaces: sub.get_many::<String>("tablespace").map(|v| v.cloned().collect()).unwrap_or_default(),
                get_wal: if sub.get_flag("get-wal") {
                    Some(true)
                } else if sub.get_flag("no-get-wal") {
                    Some(false)
                } else {
                    None
                },
                standby_mode: sub.get_flag("standby-mode"),
                remote_ssh_command: get("remote-ssh-command"),
                skip_archive_wal: sub.get_flag("skip-archive-wal"),
                restore_command: get("restore-command"),
                jobs: sub.get_one::<i64>("jobs").copied(),
                recovery_option_port: get("recovery-option-port"),
            };
            let id = get("BACKUP_ID").unwrap_or_default();
            let dest = get("DESTINATION_DIRECTORY").unwrap_or_default();
            cmd::recover::run(ctx, &server_name(), &id, &dest, &opts, out)
        }
        "verify-restore" => {
            let get = |k: &str| sub.get_one::<String>(k).cloned();
            let opts = cmd::verify_restore::Options {
                target: cmd::recover::Options {
                    target_time: get("target-time"),
                    target_xid: get("target-xid"),
                    target_lsn: get("target-lsn"),
                    target_name: get("target-name"),
                    target_immediate: sub.get_flag("target-immediate"),
                    target_tli: get("target-tli"),
                    exclusive: sub.get_flag("exclusive"),
                    ..cmd::recover::Options::default()
                },
                scratch: get("scratch").map(Into::into),
                timeout: std::time::Duration::from_secs(sub.get_one::<u64>("timeout").copied().unwrap_or(300)),
            };
            let id = get("BACKUP_ID").unwrap_or_else(|| "latest".into());
            cmd::verify_restore::run(ctx, &server_name(), &id, &opts, out)
        }
        "show-backup" => {
            let id = sub.get_one::<String>("BACKUP_ID").cloned().unwrap_or_default();
            cmd::show::show_backup(ctx, &server_name(), &id, out)
        }
        "show-servers" => cmd::show_servers::run(ctx, &servers(sub), out),
        "switch-wal" => {
            let opts = cmd::switch_wal::Options {
                force: sub.get_flag("force"),
                archive: sub.get_flag("archive"),
                archive_timeout: sub.get_one::<u64>("archive-timeout").copied().unwrap_or(30),
            };
            cmd::switch_wal::run(ctx, &servers(sub), &opts, out)
        }
        "replication-status" => {
            let target = sub.get_one::<String>("target").map_or("all", String::as_str);
            let wal_host = sub.get_one::<String>("source").is_some_and(|s| s == "wal-host");
            let opts = cmd::replication_status::Options { minimal: sub.get_flag("minimal"), target, wal_host };
            cmd::replication_status::run(ctx, &servers(sub), &opts, out)
        }
        "delete" => {
            let id = sub.get_one::<String>("BACKUP_ID").cloned().unwrap_or_default();
            cmd::delete::run(ctx, &server_name(), &id, out)
        }
        "keep" => {
            let id = sub.get_one::<String>("BACKUP_ID").cloned().unwrap_or_default();
            let action = if sub.get_flag("status") {
                cmd::keep::KeepAction::Status
            } else if sub.get_flag("release") {
                cmd::keep::KeepAction::Release
            } else {
                match sub.get_one::<String>("target").map(String::as_str) {
                    Some("full") => cmd::keep::KeepAction::Target(barman_common::catalogue::KeepTarget::Full),
                    Some("standalone") => {
                        cmd::keep::KeepAction::Target(barman_common::catalogue::KeepTarget::Standalone)
                    }
                    _ => {
                        return Err(CmdError::Error(
                            "one of the arguments -r/--release -s/--status --target is required".into(),
                        ))
                    }
                }
            };
            cmd::keep::run(ctx, &server_name(), &id, action, out)
        }
        "check" => cmd::check::run(
            ctx,
            &servers(sub),
            sub.get_flag("nagios"),
            sub.get_one::<u64>("check-timeout").copied(),
            out,
        ),
        "status" => cmd::status::run(ctx, &servers(sub), out),
        "metrics" => cmd::metrics::run(ctx, out),
        "list-servers" => cmd::list::list_servers(ctx, sub.get_flag("minimal"), out),
        "list-backups" => cmd::list::list_backups(ctx, &servers(sub), sub.get_flag("minimal"), out),
        "sync-info" => {
            let req = barman_common::catalogue::sync::SyncInfoRequest {
                last_wal: sub.get_one::<String>("LAST_WAL").cloned(),
                last_position: sub.get_one::<u64>("LAST_POSITION").copied(),
            };
            cmd::sync_info::run(ctx, &server_name(), sub.get_flag("primary"), &req, out)
        }
        other => Err(CmdError::Error(format!("unsupported command '{other}'"))),
    }
}
