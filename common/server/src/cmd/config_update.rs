//! `barman config-update JSON_CHANGES` and the `config_changes_queue` that `barman cron`
//! drains, as Barman 3.20.1: under the global `.config-update.lock`, every section of the
//! request is validated (one invalid section aborts the whole request), the changes are
//! appended to the queue file (JSON, `[{"section", "changes_set": [{"key", "value",
//! "config_file"}]}]`), then the queue is processed in order: each set of changes is
//! written into the files that provide the options (or `.barman.auto.conf`), reported,
//! and removed from the queue; a set that cannot be applied stays queued. The servers
//! changed have their receive-wal restarted with the new configuration.

use std::path::{Path, PathBuf};

use barman_common::catalogue::{python_json, LockError, LockKind, ServerLock};
use barman_common::config::update::{config_source, edit_config, raw_value, read_lines, validate_section};
use barman_common::config::Config;
use serde_json::{json, Value};

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// `config-update JSON_CHANGES`.
pub fn run(ctx: &Context, json_changes: &str, out: &mut Output) -> Result<(), CmdError> {
    let changes: Value = serde_json::from_str(json_changes).map_err(|e| CmdError::Exception(e.to_string()))?;
    let global = ctx.config().global();
    let _lock = ServerLock::acquire(&global.barman_lock_directory, "", &LockKind::ConfigUpdate)
        .map_err(|e| CmdError::Exception(e.to_string()))?;
    let sections: Vec<Value> = match changes {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut queued = Vec::new();
    for section in &sections {
        match validate_section(ctx.config(), section) {
            Ok(update) => queued.push(json!({
                "section": update.section,
                "changes_set": update.options.iter().map(|(key, value)| json!({
                    "key": key,
                    "value": value,
                    "config_file": config_source(ctx.config(), &update.section, key).display().to_string(),
                })).collect::<Vec<_>>(),
            })),
            Err(message) => {
                out.error(message);
                let raw = barman_common::config::update::py_repr(section);
                return Err(CmdError::Error(format!("Aborting config\u{2010}update: invalid section {raw}")));
            }
        }
    }
    if !queued.is_empty() {
        let mut queue = read_queue(&global.config_changes_queue, out);
        queue.extend(queued);
        write_queue(&global.config_changes_queue, &queue)?;
    }
    let (applied, failed) = process(ctx.config(), out);
    let fresh = ctx.reload()?;
    for section in applied {
        if fresh.config().server(&section).is_some() {
            crate::cmd::config_switch::restart_processes(&fresh, &section, out)?;
        }
    }
    if failed {
        return Err(CmdError::Silent(1));
    }
    Ok(())
}

/// `barman cron`'s first step: drain the queue, unless another process holds the lock.
pub fn cron(ctx: &Context, out: &mut Output) {
    let global = ctx.config().global();
    match ServerLock::acquire(&global.barman_lock_directory, "", &LockKind::ConfigUpdate) {
        Ok(_lock) => {
            process(ctx.config(), out);
        }
        Err(LockError::Busy { .. }) => out.warning("another process is updating barman configuration files"),
        Err(e) => out.error(e.to_string()),
    }
}

/// The queued change sets; a missing file is an empty queue, an unreadable one too (with
/// Barman's warning).
fn read_queue(path: &Path, out: &mut Output) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&text) {
        return items;
    }
    out.warning(format!("Malformed or empty configuration change queue: {}", path.display()));
    Vec::new()
}

/// Barman's `ConfigChangesQueue.close`: `<queue>.tmp` written, the old queue kept as
/// `<queue>.old` while the new one is renamed in, then removed.
fn write_queue(path: &Path, queue: &[Value]) -> Result<(), CmdError> {
    let with_suffix = |suffix: &str| PathBuf::from(format!("{}{suffix}", path.display()));
    let (tmp, old) = (with_suffix(".tmp"), with_suffix(".old"));
    let text = python_json(&Value::Array(queue.to_vec()), Some(2), false);
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    let had_old = match std::fs::rename(path, &old) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    std::fs::rename(&tmp, path)?;
    if had_old {
        std::fs::remove_file(&old)?;
    }
    barman_common::durable::fsync_dir(barman_common::durable::parent_of(path))?;
    Ok(())
}

/// Applies the queued sets in order, each removed once written; stops at the first that
/// fails. Returns the sections changed, and whether a set failed.
fn process(config: &Config, out: &mut Output) -> (Vec<String>, bool) {
    let path = &config.global().config_changes_queue;
    let mut queue = read_queue(path, out);
    let (mut applied, mut failed) = (Vec::new(), false);
    while let Some(set) = queue.first() {
        if let Err(e) = apply(config, set, out) {
            failed = true;
            out.error("Unable to process a set of changes. Exiting.");
            crate::log::error("config", &format!("Cannot execute {set}: {e}"));
            break;
        }
        applied.push(set.get("section").and_then(Value::as_str).unwrap_or_default().to_owned());
        queue.remove(0);
    }
    if let Err(e) = write_queue(path, &queue) {
        crate::log::error("config", &format!("Cannot write the configuration changes queue {}: {e}", path.display()));
    }
    (applied, failed)
}

/// `ConfigChangesProcessor.apply_change`: every change edited into its file (several
/// changes to one file accumulate), reported, then each file written.
fn apply(config: &Config, set: &Value, out: &mut Output) -> Result<(), CmdError> {
    let bad = || CmdError::Error(format!("Malformed configuration change serialization: {set}"));
    let section = set.get("section").and_then(Value::as_str).ok_or_else(bad)?;
    let changes = set.get("changes_set").and_then(Value::as_array).ok_or_else(bad)?;
    let mut files: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for change in changes {
        let field = |k: &str| change.get(k).and_then(Value::as_str).ok_or_else(bad);
        let (key, value, file) = (field("key")?, field("value")?, PathBuf::from(field("config_file")?));
        let idx = if let Some(i) = files.iter().position(|(f, _)| *f == file) {
            i
        } else {
            files.push((file.clone(), read_lines(&file)?));
            files.len() - 1
        };
        let lines = std::mem::take(&mut files[idx].1);
        files[idx].1 = edit_config(lines, section, key, value);
        let old = raw_value(config, section, key).unwrap_or_else(|| "None".to_owned());
        out.info(format!(
            "Changing value of option '{key}' for section '{section}' from '{old}' to '{value}' through config-update."
        ));
    }
    for (file, lines) in files {
        let mode = std::fs::metadata(&file)
            .map_or(0o644, |m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777);
        barman_common::durable::write_replace(&file, lines.concat().as_bytes(), mode)?;
    }
    Ok(())
}
