//! Barman's console lines around a recovery: what starts (kind, destination, remote
//! command, PITR targets) and how it ended (the safety pass's blocks, the get-wal
//! reminder, the elapsed time).

use barman_common::catalogue::format_py_datetime;
use chrono::{DateTime, Local};

use super::plan::Plan;
use super::settings::Findings;
use crate::output::Output;

/// `Starting <local|remote> restore …`, the destination and the remote command.
pub fn starting(plan: &Plan<'_>, out: &mut Output) {
    let kind = if plan.remote.is_some() { "remote" } else { "local" };
    out.info(format!("Starting {kind} restore for server {} using backup {}", plan.server_name, plan.id));
    out.info(format!("Destination directory: {}", plan.dest.display()));
    if let Some(ssh) = &plan.remote {
        out.info(format!("Remote command: {}", ssh.line()));
    }
}

/// `Doing PITR. Recovery target …` for a point-in-time recovery.
pub fn pitr(plan: &Plan<'_>, out: &mut Output) {
    if plan.targets.is_pitr {
        out.info(format!("Doing PITR. Recovery target {}", plan.targets.described.join(", ")));
    }
}

/// The closing lines of a successful recovery started at `start`.
pub fn finished(plan: &Plan<'_>, findings: &Findings, start: DateTime<Local>, out: &mut Output) {
    findings.print(out);
    if plan.get_wal {
        out.info("");
        out.info("WARNING: 'get-wal' is in the specified 'recovery_options'.");
        out.info(format!(
            "Before you start up the PostgreSQL server, please review the {} file",
            plan.opts.recovery_conf()
        ));
        out.info(
            "inside the target directory. Make sure that 'restore_command' can be executed by the PostgreSQL user.",
        );
    }
    out.info("");
    let elapsed = (Local::now() - start).num_milliseconds() as f64 / 1000.0;
    out.info(format!(
        "Restore operation completed (start time: {}, elapsed time: {})",
        format_py_datetime(&start.fixed_offset()),
        crate::cmd::show::human_seconds(elapsed)
    ));
    out.info("Your PostgreSQL server has been successfully prepared for recovery!");
}
