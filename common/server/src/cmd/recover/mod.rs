//! `barman recover` (alias `restore`): Barman 3.20.1's validations, the base backup and
//! tablespace copy, the required WAL (decompressed) or a get-wal `restore_command`, the
//! recovery settings appended to `postgresql.auto.conf`, the signal files and the
//! configuration safety pass (`#BARMAN#`), with Barman's console lines. A tar-format backup
//! (backup.info `compression` set) is extracted from its archives instead of copied
//! ([`tar`]). A local result is fsynced before success is reported.
//!
//! With `--remote-ssh-command` the destination is on another host: after Barman's checks
//! over that command (`<ssh> true`, the destination and tablespace directories empty unless
//! delta restore is asked), a plain backup is copied straight into the destination by the
//! backup's rsync copy controller in `parallel_jobs` workers ([`push`]), and what a recovery
//! writes besides (configuration rewritten, WAL, signal file, tablespace links) is built in a
//! local staging directory (under `recovery_staging_path`, else inside `barman_home`) with
//! every path naming the remote locations, then shipped on top. A tar-format backup is
//! extracted into the staging directory whole and shipped with `rsync -a --delete`.
//!
//! A local destination carries a marker while it is written (`resume`): the same command
//! run again after a kill empties it instead of refusing it.
//!
//! The phases live in their own modules: `plan` (validations, backup, targets,
//! destination checks; the `plan::Plan` every phase reads), `copy` (base backup and
//! tablespaces; `push` for a remote destination), `wal` (required WAL, `restore_command`), `settings` (recovery
//! settings, signal file, safety pass), `remote` (ssh checks, staging, rsync) and
//! `report` (console lines), `hooks` (the recovery hook scripts). This module only runs
//! them in order.

mod combine;
mod copy;
mod hooks;
mod options;
mod plan;
mod push;
mod remote;
mod report;
mod resume;
mod settings;
pub mod tar;
mod wal;

pub use options::{CopyOverrides, Options, Staging, TargetTli};

use chrono::Local;

use self::plan::{Plan, WriteTo};
use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// `recover SERVER BACKUP_ID DESTINATION`.
pub fn run(
    ctx: &Context,
    server_name: &str,
    backup: &str,
    destination: &str,
    opts: &Options,
    out: &mut Output,
) -> Result<(), CmdError> {
    let plan = Plan::build(ctx, server_name, backup, destination, opts, out)?;
    wal::warn_partial(&plan, out);
    if !opts.skip_archive_wal {
        wal::archive_incoming(ctx, server_name, out);
    }
    // The WAL the backup needs must all be archived; the destinations must be empty.
    let entries = wal::archived(&plan.server)?;
    if let Some(ssh) = &plan.remote {
        remote::check_connection(ssh)?;
    }
    wal::check_backup_wals(&plan)?;
    wal::check_passphrase(&plan, &entries)?;
    // Delta restore copies over what the destinations hold.
    match &plan.remote {
        _ if plan.delta => {}
        Some(ssh) => plan.destinations().try_for_each(|(dir, t)| remote::ensure_empty(ssh, dir, t))?,
        None => plan.destinations().try_for_each(|(dir, t)| resume::ensure_empty_or_unfinished(dir, t, out))?,
    }
    if plan.remote.is_none() {
        plan.destinations().try_for_each(|(dir, _)| resume::mark(dir))?;
    }

    let hook_env = hooks::env(&plan, destination)?;
    hooks::pre(&plan, &hook_env)?;
    let start = Local::now();
    report::starting(&plan, out);
    // Where files are written: the destination itself, or a local staging copy of it.
    let staging = match (&plan.remote, &plan.chain) {
        (Some(_), Some(chain)) => Some(remote::Staging::create_in(&chain.staging_base, server_name)?),
        (Some(_), None) => Some(remote::Staging::create(ctx, &plan)?),
        (None, _) => None,
    };
    let to = WriteTo::new(&plan, staging.as_ref().map(|s| s.path.as_path()));
    report::pitr(&plan, out);

    // 1. Base backup and tablespaces; 2. WAL; 3-5. recovery configuration; 6. safety pass.
    copy::base_backup(&plan, &to, out)?;
    if !plan.get_wal {
        wal::copy_required(&plan, &to.root, &entries, out)?;
    }
    let lines = settings::recovery_configuration(&plan, &to.root, out)?;
    wal::create_status_dir(&plan, &to.root)?;
    let findings = settings::safety_pass(&to.root, opts.recovery_conf(), &lines, out)?;

    // A local result is made durable before it is reported ready; a staged one is shipped
    // by rsync and removed.
    match (&plan.remote, &staging) {
        (Some(ssh), Some(staging)) if plan.pushed() => {
            push::overlay(&plan, ssh, &to.root)?;
            staging.remove();
        }
        (Some(ssh), Some(staging)) => remote::ship(ssh, &plan, &to, staging)?,
        _ => {
            copy::make_durable(&plan, &to.root)?;
            plan.destinations().try_for_each(|(dir, _)| resume::unmark(dir))?;
        }
    }
    hooks::post(&plan, &hook_env);
    report::finished(&plan, &findings, start, out);
    Ok(())
}
