//! The passive-node commands, handed to the `barman-relay` binary (the design keeps heavy
//! jobs in their own binaries): `sync-backup SERVER ID`, `sync-wals SERVER`, `sync-info
//! --primary SERVER`, and the cron step that starts a relay pass for each passive server.

use std::process::{Command, Stdio};

use barman_common::remote::sibling_binary;

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// `barman-relay [-c CONFIG] ARGS… SERVER`.
fn relay_command(config: Option<&str>, args: &[&str], server: &str) -> Command {
    let mut cmd = Command::new(sibling_binary("barman-relay"));
    if let Some(config) = config {
        cmd.arg("-c").arg(config);
    }
    cmd.args(args).arg(server);
    cmd
}

/// The passive server's name, or Barman's `server <srv> is not passive`.
fn passive(ctx: &Context, name: &str) -> Result<(), CmdError> {
    ctx.server(name)?;
    let cfg = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    if cfg.is_passive() {
        Ok(())
    } else {
        Err(CmdError::Error(format!("server {name} is not passive")))
    }
}

/// Runs the relay in the foreground; its own lines are the command's output.
fn run_relay(mut cmd: Command) -> Result<(), CmdError> {
    let status = cmd.status().map_err(|e| CmdError::Error(format!("cannot run barman-relay: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(CmdError::Silent(1))
    }
}

/// `sync-backup SERVER BACKUP_ID`: copies one backup, using the saved `primary.info` as
/// Barman does.
pub fn sync_backup(ctx: &Context, config: Option<&str>, name: &str, id: &str) -> Result<(), CmdError> {
    passive(ctx, name)?;
    run_relay(relay_command(config, &["--cached", "--backup", id], name))
}

/// `sync-wals SERVER`: copies the WAL files listed in the saved `primary.info`.
pub fn sync_wals(ctx: &Context, config: Option<&str>, name: &str) -> Result<(), CmdError> {
    passive(ctx, name)?;
    run_relay(relay_command(config, &["--cached", "--wals"], name))
}

/// `sync-info --primary SERVER [LAST_WAL [LAST_POSITION]]`: asks the primary (passing the
/// position on, as Barman does), saves and prints its answer.
pub fn sync_info_primary(
    ctx: &Context,
    name: &str,
    last_wal: Option<&str>,
    position: Option<u64>,
) -> Result<(), CmdError> {
    passive(ctx, name)?;
    let config = ctx.config().config_file().display().to_string();
    let position = position.map(|p| p.to_string());
    let mut args = vec!["--info"];
    if let Some(wal) = last_wal {
        args.extend(["--last-wal", wal]);
        if let Some(p) = &position {
            args.extend(["--last-position", p]);
        }
    }
    run_relay(relay_command(Some(&config), &args, name))
}

/// The cron step for a passive server: one relay pass (WAL, `.partial`, missing backups),
/// started detached like Barman's sync processes so a long copy never holds cron up.
pub fn cron(ctx: &Context, name: &str, keep_descriptors: bool, out: &mut Output) {
    let config = ctx.config().config_file().display().to_string();
    let mut cmd = relay_command(Some(&config), &["-q"], name);
    let attached = || if keep_descriptors { Stdio::inherit() } else { Stdio::null() };
    cmd.stdin(Stdio::null()).stdout(attached()).stderr(attached());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    match cmd.spawn() {
        Ok(_) => out.info(format!("Starting synchronisation with the primary for server {name}")),
        Err(e) => out.error(format!("cannot start barman-relay for server {name}: {e}")),
    }
}
