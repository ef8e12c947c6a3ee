//! The recovery hook scripts (`pre_recovery_script`, `pre_recovery_retry_script`,
//! `post_recovery_retry_script`, `post_recovery_script`), run as Barman 3.20.1's
//! `BackupManager.recover` runs them: the pre scripts once the destinations are checked and
//! before anything is written (a pre retry script's ABORT_STOP stops the recovery), the post
//! ones after a recovery that succeeded. Their environment is Barman's `env_from_recover`:
//! the backup's variables plus `BARMAN_DESTINATION_DIRECTORY`, `BARMAN_TABLESPACES`,
//! `BARMAN_REMOTE_COMMAND`, `BARMAN_RECOVER_OPTIONS` and an empty `BARMAN_ERROR`.

use barman_common::catalogue::{BackupStatus, Catalogue};
use barman_common::config::HookEvent;
use serde_json::{Map, Value};

use super::options::TargetTli;
use super::plan::Plan;
use crate::hooks::HookEnv;
use crate::CmdError;

/// The variables of every recovery hook; `destination` as given on the command line.
pub(super) fn env(plan: &Plan<'_>, destination: &str) -> Result<HookEnv, CmdError> {
    let catalogue = Catalogue::load(&plan.server.layout)?;
    let previous = catalogue.previous(&plan.id, &BackupStatus::AVAILABLE).map(|(b, _)| b.clone());
    let next = catalogue.next(&plan.id, &BackupStatus::AVAILABLE).map(|(b, _)| b.clone());
    let env = HookEnv::backup(&plan.server.layout, &plan.id, &plan.info, previous.as_ref(), next.as_ref());
    Ok(env
        .set("BARMAN_DESTINATION_DIRECTORY", destination)
        .set("BARMAN_TABLESPACES", tablespaces_json(&plan.opts.tablespaces))
        .set("BARMAN_REMOTE_COMMAND", plan.opts.remote_ssh_command.clone().unwrap_or_default())
        .set("BARMAN_RECOVER_OPTIONS", options_json(plan))
        .set("BARMAN_ERROR", ""))
}

/// The pre phase; an ABORT_STOP from the retry script stops the recovery as Barman's
/// uncaught `AbortedRetryHookScript` does (an `EXCEPTION:`).
pub(super) fn pre(plan: &Plan<'_>, env: &HookEnv) -> Result<(), CmdError> {
    plan.server.hooks.pre(HookEvent::Recovery, env).map_err(|a| CmdError::Exception(a.to_string()))
}

/// The post phase (a stop request from its retry script is logged and ignored).
pub(super) fn post(plan: &Plan<'_>, env: &HookEnv) {
    plan.server.hooks.post(HookEvent::Recovery, env, env);
}

/// `--tablespace NAME:LOCATION` rules as Barman's JSON map (sorted keys), empty without.
fn tablespaces_json(rules: &[String]) -> String {
    if rules.is_empty() {
        return String::new();
    }
    let map: Map<String, Value> = rules
        .iter()
        .filter_map(|r| r.split_once(':'))
        .map(|(name, location)| (name.to_owned(), Value::String(location.to_owned())))
        .collect();
    barman_common::catalogue::python_json(&Value::Object(map), None, true)
}

/// The recover keyword arguments Barman passes, the empty ones skipped, as sorted JSON
/// (`skip_archive_wal` is not among them: Barman pops it before the hooks run).
fn options_json(plan: &Plan<'_>) -> String {
    let o = plan.opts;
    let mut map = Map::new();
    let mut text = |key: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            map.insert(key.to_owned(), Value::String(v));
        }
    };
    text("target_time", o.target_time.clone());
    text("target_xid", o.target_xid.clone());
    text("target_lsn", o.target_lsn.map(|l| l.to_string()));
    text("target_name", o.target_name.clone());
    text("target_action", o.target_action.map(str::to_owned));
    text("recovery_option_port", o.recovery_option_port.clone());
    text("custom_restore_command", o.restore_command.clone());
    match o.target_tli {
        Some(TargetTli::Id(id)) => {
            map.insert("target_tli".into(), Value::from(id.get()));
        }
        Some(other) => {
            map.insert("target_tli".into(), Value::String(other.to_string()));
        }
        None => {}
    }
    for (key, on) in
        [("target_immediate", o.target_immediate), ("exclusive", o.exclusive), ("standby_mode", o.standby_mode)]
    {
        if on {
            map.insert(key.into(), Value::Bool(true));
        }
    }
    if map.is_empty() {
        return String::new();
    }
    barman_common::catalogue::python_json(&Value::Object(map), None, true)
}
