//! `barman`: the catalogue CLI on the backup host, compatible with Barman 3.20.1's command
//! lines, outputs and exit codes. The command line is typed in [`cli`]; each subcommand is
//! one call into the server core ([`barman_server`]); this file only turns the parsed
//! arguments into the core's options and maps errors to exit codes.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cli_extra;

use std::io::IsTerminal;
use std::time::Duration;

use barman_common::catalogue::sync::SyncInfoRequest;
use barman_common::catalogue::KeepTarget;
use barman_common::compress::Codec;
use barman_server::cmd::{self, recover};
use barman_server::context::Context;
use barman_server::output::Output;
use barman_server::CmdError;

use crate::cli::{Cli, Cmd, Format};

/// Runs the parsed command line; returns the exit status.
pub fn run(cli: &Cli) -> barman_common::exit::ExitCode {
    let mut out = Output::new(cli.format == Format::Json, cli.quiet);
    out.set_debug(cli.debug);
    out.set_colors(match cli.color {
        cli::Color::Always => true,
        cli::Color::Never => false,
        cli::Color::Auto => std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
    });
    if matches!(cli.command, Cmd::Help) {
        let _ = cli::command().print_help();
        return barman_common::exit::ExitCode::Success;
    }
    let result = match refusal(&cli.command) {
        Some(refused) => Err(CmdError::Unsupported(refused)),
        None => Context::load(cli.config.as_deref(), &mut out).and_then(|ctx| {
            if let Some(level) = cli.log_level {
                barman_server::log::set_level(&format!("{level:?}"));
            }
            dispatch(&ctx, cli, &mut out)
        }),
    };
    let code = barman_server::output::report(result, &mut out);
    out.close();
    code
}

/// `barman backup`'s request for the backup runner.
fn backup_request(config: Option<String>, a: &cli::Backup) -> cmd::backup::BackupRequest {
    cmd::backup::BackupRequest {
        config,
        servers: a.servers.clone(),
        name: a.name.clone(),
        incremental: a.incremental.clone(),
        wait: a.wait,
        wait_timeout: a.wait_timeout,
        immediate_checkpoint: checkpoint(a),
        reuse_backup: a.reuse_backup(),
        retry_times: if a.no_retry { Some(0) } else { a.retry_times },
        retry_sleep: a.retry_sleep,
        jobs: a.jobs,
        bwlimit: a.bwlimit,
        check_timeout: a.check_timeout,
        jobs_start_batch: (a.copy.jobs_start_batch_size, a.copy.jobs_start_batch_period),
        keepalive_interval: a.copy.keepalive_interval,
        manifest: (a.copy.manifest || a.copy.no_manifest).then_some(a.copy.manifest),
    }
}

fn dispatch(ctx: &Context, cli: &Cli, out: &mut Output) -> Result<(), CmdError> {
    let config = cli.config.clone();
    match &cli.command {
        Cmd::PutWal(a) => cmd::put_wal_cmd(ctx, &a.server, a.test, a.wire_lz4, out),
        Cmd::GetWal(a) => cmd::get_wal_cmd(ctx, &a.server, a.test, &get_wal(a), out),
        Cmd::ArchiveWal(a) => cmd::archive_wal_cmd(ctx, &a.server, out),
        Cmd::Cron(a) => cmd::cron::run(ctx, a.keep_descriptors, out),
        Cmd::Backup(a) => cmd::backup::run(ctx, &backup_request(config, a), out),
        Cmd::CheckBackup(a) => cmd::check_backup::run(ctx, &a.server, &a.backup, out),
        Cmd::SyncBackup(a) => cmd::relay::sync_backup(ctx, config.as_deref(), &a.server, &a.backup),
        Cmd::SyncWals(a) => cmd::relay::sync_wals(ctx, config.as_deref(), &a.server),
        Cmd::ReceiveWal(a) => {
            let opts = cmd::receive_wal::Options {
                create_slot: a.create_slot,
                if_not_exists: a.if_not_exists,
                drop_slot: a.drop_slot,
                reset: a.reset,
                stop: a.stop,
            };
            cmd::receive_wal::run(ctx, &a.server, &opts, out)
        }
        Cmd::Recover(a) => recover::run(ctx, &a.server, &a.backup, &a.destination, &recover_options(a), out),
        Cmd::VerifyRestore(a) => {
            let opts = cmd::verify_restore::Options {
                target: target_options(&a.target),
                scratch: a.scratch.clone().map(Into::into),
                timeout: Duration::from_secs(a.timeout),
            };
            cmd::verify_restore::run(ctx, &a.server, &a.backup, &opts, out)
        }
        Cmd::ShowBackup(a) => cmd::show::show_backup(ctx, &a.server, &a.backup, out),
        Cmd::ShowServers(a) => cmd::show_servers::run(ctx, &a.servers, out),
        Cmd::SwitchWal(a) => {
            let opts =
                cmd::switch_wal::Options { force: a.force, archive: a.archive, archive_timeout: a.archive_timeout };
            cmd::switch_wal::run(ctx, &a.servers, &opts, out)
        }
        Cmd::ReplicationStatus(a) => {
            use cmd::replication_status::{Clients, Options};
            let target = match a.target {
                cli::ReplicationTarget::HotStandby => Clients::HotStandby,
                cli::ReplicationTarget::WalStreamer => Clients::WalStreamer,
                cli::ReplicationTarget::All => Clients::All,
            };
            let wal_host = a.source == cli::ReplicationSource::WalHost;
            cmd::replication_status::run(ctx, &a.servers, &Options { minimal: a.minimal, target, wal_host }, out)
        }
        Cmd::Delete(a) => cmd::delete::run(ctx, &a.server, &a.backup, out),
        Cmd::Keep(a) => cmd::keep::run(ctx, &a.server, &a.backup, keep_action(a)?, out),
        Cmd::Check(a) => cmd::check::run(ctx, &a.servers, a.nagios, a.check_timeout, out),
        Cmd::Status(a) => cmd::status::run(ctx, &a.servers, out),
        Cmd::Metrics => cmd::metrics::run(ctx, out),
        Cmd::ListServers(a) => cmd::list::list_servers(ctx, a.minimal, out),
        Cmd::ListBackups(a) => cmd::list::list_backups(ctx, &a.servers, a.minimal, out),
        Cmd::SyncInfo(a) => {
            let req = SyncInfoRequest { last_wal: a.last_wal.clone(), last_position: a.last_position };
            cmd::sync_info::run(ctx, &a.server, a.primary, &req, out)
        }
        other => dispatch_maintenance(ctx, other, out),
    }
}

/// The subcommands added for Barman 3.20.1 parity (issue 17).
fn dispatch_maintenance(ctx: &Context, command: &Cmd, out: &mut Output) -> Result<(), CmdError> {
    match command {
        Cmd::RebuildXlogdb(a) => cmd::rebuild_xlogdb::run(ctx, &a.servers, out),
        Cmd::ListProcesses(a) => cmd::list_processes::run(ctx, &a.server, out),
        Cmd::TerminateProcess(a) => cmd::terminate_process::run(ctx, &a.server, &a.task, out),
        Cmd::LockDirectoryCleanup => cmd::lock_directory_cleanup::run(ctx),
        Cmd::Diagnose(a) => cmd::diagnose::run(ctx, a.show_config_source, out),
        Cmd::ListFiles(a) => {
            use cmd::list_files::Target;
            let target = match a.target {
                cli::ListFilesTarget::Data => Target::Data,
                cli::ListFilesTarget::Standalone => Target::Standalone,
                cli::ListFilesTarget::Wal => Target::Wal,
                cli::ListFilesTarget::Full => Target::Full,
            };
            cmd::list_files::run(ctx, &a.server, &a.backup, target, a.list_empty_directories, out)
        }
        Cmd::CheckWalArchive(a) => cmd::check_wal_archive::run(ctx, &a.server, a.timeline, out),
        Cmd::CheckArchivedWalRange(a) => {
            let (begin, end) = a.range().map_err(CmdError::Error)?;
            cmd::check_archived_wal_range::run(ctx, &a.server, &begin, &end, out)
        }
        Cmd::VerifyBackup(a) => cmd::verify_backup::run(ctx, &a.server, &a.backup, out),
        Cmd::GenerateManifest(a) => cmd::generate_manifest::run(ctx, &a.server, &a.backup, out),
        Cmd::ExportBackup(a) => {
            use cmd::export_backup::{ExportCompression, Options};
            let compression = a.compression.as_deref().and_then(ExportCompression::from_name);
            let opts = Options { compression, level: a.compression_level };
            cmd::export_backup::run(ctx, &a.server, &a.backup, &a.output_directory, &opts, out)
        }
        Cmd::ImportBackup(a) => cmd::import_backup::run(ctx, &a.server, &a.input_tarball, out),
        Cmd::ConfigUpdate(a) => cmd::config_update::run(ctx, &a.json_changes, out),
        Cmd::ConfigSwitch(a) => cmd::config_switch::run(ctx, &a.server, a.model.as_deref(), a.reset, out),
        // Refused in `run` before the configuration is read; `help` never gets here either.
        other => Err(CmdError::Unsupported(refusal(other).unwrap_or_else(|| "not supported yet".to_owned()))),
    }
}

fn get_wal(a: &cli::GetWal) -> cmd::get_wal::GetWal {
    let recompress = if a.gzip {
        Some(Codec::Gzip)
    } else if a.bzip2 {
        Some(Codec::Bzip2)
    } else {
        None
    };
    cmd::get_wal::GetWal {
        wal: a.wal.clone(),
        output_dir: a.output_directory.clone().map(Into::into),
        partial: a.partial,
        recompress,
        keep_compression: a.keep_compression,
        peek: a.peek,
        batch: a.batch,
        batch_lz4: a.batch_lz4,
    }
}

/// `--immediate-checkpoint` / `--no-immediate-checkpoint` (the last one given wins).
fn checkpoint(a: &cli::Backup) -> Option<bool> {
    if a.immediate_checkpoint {
        Some(true)
    } else if a.no_immediate_checkpoint {
        Some(false)
    } else {
        None
    }
}

fn target_options(t: &cli::Target) -> recover::Options {
    recover::Options {
        target_time: t.target_time.clone(),
        target_xid: t.target_xid.clone(),
        target_lsn: t.target_lsn,
        target_name: t.target_name.clone(),
        target_immediate: t.target_immediate,
        target_tli: t.target_tli,
        exclusive: t.exclusive,
        ..recover::Options::default()
    }
}

fn recover_options(a: &cli::Recover) -> recover::Options {
    let get_wal = if a.get_wal {
        Some(true)
    } else if a.no_get_wal {
        Some(false)
    } else {
        None
    };
    recover::Options {
        target_action: a.target_action.map(|t| match t {
            cli::TargetAction::Pause => "pause",
            cli::TargetAction::Shutdown => "shutdown",
            cli::TargetAction::Promote => "promote",
        }),
        tablespaces: a.tablespace.clone(),
        get_wal,
        standby_mode: a.standby_mode,
        remote_ssh_command: a.remote_ssh_command.clone(),
        skip_archive_wal: a.skip_archive_wal,
        restore_command: a.restore_command.clone(),
        jobs: a.jobs,
        recovery_option_port: a.recovery_option_port.clone(),
        staging_wal_directory: a.wal.staging_wal_directory.clone(),
        partial_wal: a.wal.partial_wal,
        recovery_conf_filename: a.wal.recovery_conf_filename.clone(),
        copy: copy_overrides(&a.copy),
        staging: recover::Staging {
            local_staging_path: a.local_staging_path.clone(),
            staging_path: a.staging_path.clone(),
            staging_location: a.staging_location.clone(),
            combine_mode: a.combine_mode.clone(),
        },
        ..target_options(&a.target)
    }
}

fn copy_overrides(c: &cli::RecoverCopy) -> recover::CopyOverrides {
    recover::CopyOverrides {
        bwlimit: c.bwlimit,
        retry_times: if c.no_retry { Some(0) } else { c.retry_times },
        retry_sleep: c.retry_sleep,
        start_batch_size: c.jobs_start_batch_size,
        start_batch_period: c.jobs_start_batch_period,
        network_compression: flag(c.network_compression, c.no_network_compression),
        delta_restore: flag(c.delta_restore, c.no_delta_restore),
        recovery_staging_path: c.recovery_staging_path.clone(),
    }
}

/// A `--x` / `--no-x` pair: `None` when neither is given.
fn flag(yes: bool, no: bool) -> Option<bool> {
    if yes {
        Some(true)
    } else if no {
        Some(false)
    } else {
        None
    }
}

fn keep_action(a: &cli::Keep) -> Result<cmd::keep::KeepAction, CmdError> {
    use cmd::keep::KeepAction;
    if a.status {
        return Ok(KeepAction::Status);
    }
    if a.release {
        return Ok(KeepAction::Release);
    }
    match a.target {
        Some(cli::KeepTargetArg::Full) => Ok(KeepAction::Target(KeepTarget::Full)),
        Some(cli::KeepTargetArg::Standalone) => Ok(KeepAction::Target(KeepTarget::Standalone)),
        None => Err(CmdError::Error("one of the arguments -r/--release -s/--status --target is required".into())),
    }
}

/// The one-line refusal for a command line that uses something not wired yet, or `None`.
pub fn refusal(cmd: &Cmd) -> Option<String> {
    let (what, owner) = match cmd {
        Cmd::Backup(a) => a.refused.refused().map(|(o, w)| (format!("backup option {o}"), w))?,
        Cmd::Recover(a) => a.refused.refused().map(|(o, w)| (format!("recover option {o}"), w))?,
        Cmd::CloudWalArchive(_) => ("the cloud-wal-archive command".to_owned(), "object stores, issue 22"),
        Cmd::CloudWalRestore(_) => ("the cloud-wal-restore command".to_owned(), "object stores, issue 22"),
        _ => return None,
    };
    Some(format!("{what} is not supported yet ({owner})"))
}
