//! `barman check [--nagios] [--check-timeout S] SERVER...|all`: Barman 3.20.1's checks, in
//! its order, names and hints (`Server.check` and the archivers' and backup manager's
//! `check`), with its console, JSON and Nagios writers.
//!
//! The checks live by concern: [`archive`] (WAL archive, queues, archivers, errors),
//! [`postgres`] (connections, slot, backup executor, system identifier), [`backups`]
//! (catalogue), [`ssh`] (a passive node's primary); the writers in [`report`] and
//! [`nagios`]. The live PostgreSQL status they read is [`crate::cmd::live`].

mod archive;
mod backups;
mod nagios;
mod postgres;
mod report;
mod results;
mod ssh;
mod subject;

use std::time::Duration;

use barman_common::config::{BackupMethod, ServerConfig};

pub use self::backups::{human_delta, last_backup, non_incremental_done};
pub use crate::cmd::live::{previous_segment, remote_status, ArchiverStats, Remote, Slot, StreamingStatus};
/// The catalogue layout of a server (also for disabled ones, which `Context::server` refuses).
pub use crate::context::layout;
use crate::context::Context;
use crate::output::Output;
use crate::CmdError;
use results::{Check, Checks, ServerChecks};
use subject::Subject;

/// Every check of one server, in Barman's order. A check timeout (gathering the PostgreSQL
/// status, or the ssh check) ends the list with a failed `check timeout`.
fn server_checks(cfg: &ServerConfig, timeout: Duration) -> Result<Vec<Check>, CmdError> {
    let s = Subject::load(cfg)?;
    let mut c = Checks::default();
    archive::check_archive(&s, &mut c);
    let remote = remote_status(cfg, timeout);
    if remote.timed_out {
        c.timed_out();
        return Ok(c.list);
    }
    if s.live {
        postgres::check_postgres(&remote, &mut c);
        postgres::check_replication_slot(&s, &remote, &mut c);
    }
    backups::check_directories(&s, &mut c);
    backups::check_retention_policy_settings(&s, &mut c);
    let now = chrono::Utc::now();
    backups::check_backup_validity(&s, now, &mut c);
    backups::check_encryption(&s, &mut c);
    backups::check_wal_validity(&s, now, &mut c)?;
    backups::check_backup_manager(&s, &mut c);
    if !rsync_executor_checks(cfg, &remote, timeout, &mut c) {
        c.timed_out();
        return Ok(c.list);
    }
    if s.live && cfg.backup_method == BackupMethod::Postgres {
        postgres::check_backup_executor(&remote, &mut c);
    }
    if let Some(ssh) = cfg.primary_ssh_command.as_deref().filter(|_| cfg.active) {
        if !ssh::check_primary_ssh(cfg, ssh, timeout, &mut c) {
            c.timed_out();
            return Ok(c.list);
        }
    }
    backups::check_configuration(&s, &mut c);
    postgres::check_identity(&s, &remote, &mut c);
    if s.live {
        archive::check_archivers(&s, &remote, &mut c);
    }
    archive::check_archiver_errors(&s, &mut c);
    Ok(c.list)
}

/// `ExternalBackupExecutor.check` for the rsync methods of an active, non-passive server;
/// false on a timeout.
fn rsync_executor_checks(cfg: &ServerConfig, remote: &Remote, timeout: Duration, c: &mut Checks) -> bool {
    if !cfg.active || cfg.is_passive() {
        return true;
    }
    match (cfg.backup_method, cfg.ssh_command.as_deref()) {
        (BackupMethod::Rsync, Some(ssh)) => ssh::check_rsync_ssh(cfg, ssh, timeout, c),
        (BackupMethod::LocalRsync, _) => {
            ssh::check_local_pgdata(remote.data_directory.as_deref(), c);
            true
        }
        _ => true,
    }
}

/// `--check-timeout`, else the server's `check_timeout` (30 s when unreadable); 0 means
/// an hour.
fn timeout_for(cfg: &ServerConfig, check_timeout: Option<u64>) -> Duration {
    let timeout = Duration::from_secs(check_timeout.unwrap_or(u64::try_from(cfg.check_timeout).unwrap_or(30)));
    if timeout.is_zero() {
        Duration::from_hours(1)
    } else {
        timeout
    }
}

/// `check [--nagios] [--check-timeout S] SERVER...|all`.
pub fn run(
    ctx: &Context,
    names: &[String],
    nagios: bool,
    check_timeout: Option<u64>,
    out: &mut Output,
) -> Result<(), CmdError> {
    let names = crate::cmd::sorted_servers(ctx, names);
    let mut all: Vec<ServerChecks> = Vec::new();
    let mut failed_active = false;
    let mut unknown = false;
    for name in &names {
        let Some(cfg) = ctx.config().server(name) else {
            out.error(format!("Unknown server '{name}'"));
            unknown = true;
            failed_active = true;
            continue;
        };
        let checks = server_checks(cfg, timeout_for(cfg, check_timeout))?;
        log_failures(name, &checks, &[]);
        if cfg.active && checks.iter().any(|c| !c.ok) {
            failed_active = true;
        }
        match (nagios, out.is_json()) {
            (true, _) => {}
            (false, true) => report::json(name, cfg, &checks, out),
            (false, false) => report::console(name, cfg, &checks, out),
        }
        all.push(ServerChecks { name: name.clone(), checks });
    }
    if nagios {
        for line in nagios::lines(&all, unknown, failed_active) {
            println!("{line}");
        }
        return if failed_active { Err(CmdError::Silent(2)) } else { Ok(()) };
    }
    if failed_active {
        return Err(CmdError::Silent(1));
    }
    Ok(())
}

/// The checks Barman's `CheckStrategy` does not hold against a backup (`NON_CRITICAL_CHECKS`).
const NON_CRITICAL: &[&str] = &[
    "minimum redundancy requirements",
    "backup maximum age",
    "backup minimum size",
    "failed backups",
    "archiver errors",
    "empty incoming directory",
    "empty streaming directory",
    "incoming WALs directory",
    "streaming WALs directory",
    "wal maximum age",
    "PostgreSQL server is standby",
];

/// Logs the failed checks as Barman's check strategies do (`barman.server ERROR: Check 'X'
/// failed for server 'S'`, an INFO `Ignoring failed check` for those in `ignore`); true when
/// a failure is not ignored.
fn log_failures(name: &str, checks: &[Check], ignore: &[&str]) -> bool {
    let mut blocking = false;
    for c in checks.iter().filter(|c| !c.ok) {
        if ignore.contains(&c.name.as_str()) {
            let msg = format!("Ignoring failed check '{}' for server '{name}'", c.name);
            crate::log::write(crate::log::Level::Info, "server", &msg);
        } else {
            blocking = true;
            crate::log::write(
                crate::log::Level::Error,
                "server",
                &format!("Check '{}' failed for server '{name}'", c.name),
            );
        }
    }
    blocking
}

/// `barman backup`'s pre-flight, Barman's silent `CheckStrategy` in `Server.backup`: every
/// check runs, failures are logged, and any failure outside [`NON_CRITICAL`] refuses the
/// backup with Barman's `Impossible to start the backup` error (false). As Barman's
/// `check_archive`, an empty WAL archive of a reachable server gets a `switch-wal
/// --archive` (within a third of `check_timeout`) before it counts as failed.
pub fn backup_precheck(
    ctx: &Context,
    name: &str,
    check_timeout: Option<u64>,
    out: &mut Output,
) -> Result<bool, CmdError> {
    let Some(cfg) = ctx.config().server(name) else { return Ok(true) };
    let timeout = timeout_for(cfg, check_timeout);
    let mut checks = server_checks(cfg, timeout)?;
    let failed = |checks: &[Check], what: &str| checks.iter().any(|c| c.name == what && !c.ok);
    let reachable = checks.iter().any(|c| c.name == "PostgreSQL" && c.ok);
    if failed(&checks, "WAL archive") && reachable {
        let mut muted = Output::new(true, true);
        let opts = crate::cmd::switch_wal::Options {
            force: false,
            archive: true,
            archive_timeout: (timeout.as_secs() / 3).max(1),
        };
        let _ = crate::cmd::switch_wal::run(ctx, &[name.to_owned()], &opts, &mut muted);
        checks = server_checks(cfg, timeout)?;
    }
    if log_failures(name, &checks, NON_CRITICAL) {
        out.logged_as("server", |out| {
            out.error(format!(
                "Impossible to start the backup. Check the log for more details, or run 'barman check {name}'"
            ));
        });
        return Ok(false);
    }
    Ok(true)
}
