//! `barman list-processes SERVER`: the subprocesses a server runs, found the way Barman's
//! `ProcessManager` finds them: each `.<server>-*.lock` in the lock directory that names a
//! task (receive-wal, sync-backup, backup, cron, archive-wal, sync-wal, matched in that order)
//! and is held by a live process, whose PID the lock file records.

use std::path::{Path, PathBuf};

use barman_common::catalogue::lock_owner;
use serde_json::{json, Value};

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// The task suffixes in Barman's `ProcessManager.TASKS` order (the first match wins, so
/// `-sync-backup.lock` is never taken for `-backup.lock`).
const TASKS: [(&str, &str); 6] = [
    ("receive-wal", "-receive-wal.lock"),
    ("sync-backup", "-sync-backup.lock"),
    ("backup", "-backup.lock"),
    ("cron", "-cron.lock"),
    ("archive-wal", "-archive-wal.lock"),
    ("sync-wal", "-sync-wal.lock"),
];

/// One running subprocess of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The PID recorded in (and holding) the lock file.
    pub pid: u32,
    /// The task name (`backup`, `receive-wal`, ...).
    pub task: &'static str,
    /// The lock file.
    pub lock: PathBuf,
}

/// The task a lock file name belongs to, for `server` (Barman's `LOCK_PATTERN`s: anchored at
/// the start only, the server part at least one character).
fn task_of(server: &str, file_name: &str) -> Option<&'static str> {
    let rest = file_name.strip_prefix('.')?.strip_prefix(server)?.strip_prefix('-')?;
    let full = format!("-{rest}");
    TASKS.iter().find(|(_, suffix)| full.ends_with(suffix)).map(|(task, _)| *task)
}

/// The live subprocesses of `server`, sorted by lock file name.
pub fn processes(lock_dir: &Path, server: &str) -> Result<Vec<ProcessInfo>, CmdError> {
    let mut names: Vec<String> = match std::fs::read_dir(lock_dir) {
        Ok(dir) => dir.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    names.sort();
    let mut found = Vec::new();
    for name in names {
        let Some(task) = task_of(server, &name) else { continue };
        let lock = lock_dir.join(&name);
        match lock_owner(&lock) {
            Ok(Some(pid)) => found.push(ProcessInfo { pid, task, lock }),
            Ok(None) => {}
            Err(e) => crate::log::warning(
                "process",
                &format!(
                    "Skipping the {task} process for server {server}: Error reading the PID from lock file '{}': {e}",
                    lock.display()
                ),
            ),
        }
    }
    Ok(found)
}

/// `list-processes SERVER`.
pub fn run(ctx: &Context, name: &str, out: &mut Output) -> Result<(), CmdError> {
    let cfg = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    let list = processes(cfg.lock_directory(), name)?;
    if out.is_json() {
        let items: Vec<Value> = list.iter().map(|p| json!({"pid": p.pid, "name": p.task})).collect();
        out.result(name, Value::Array(items));
    } else if list.is_empty() {
        out.info(format!("No active subprocesses found for server {name}."));
    } else {
        out.info(format!("Active subprocesses for server {name}:"));
        for p in &list {
            out.info(format!("{} {}", p.pid, p.task));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::task_of;

    #[test]
    fn lock_names_map_to_barman_tasks() {
        assert_eq!(task_of("pg", ".pg-receive-wal.lock"), Some("receive-wal"));
        assert_eq!(task_of("pg", ".pg-20250101T000000-sync-backup.lock"), Some("sync-backup"));
        assert_eq!(task_of("pg", ".pg-backup.lock"), Some("backup"));
        assert_eq!(task_of("pg", ".pg-cron.lock"), Some("cron"));
        assert_eq!(task_of("pg", ".pg-archive-wal.lock"), Some("archive-wal"));
        assert_eq!(task_of("pg", ".pg-sync-wal.lock"), Some("sync-wal"));
        assert_eq!(task_of("pg", ".pg-xlogdb.lock"), None);
        assert_eq!(task_of("pg", ".pg-20250101T000000.lock"), None);
        assert_eq!(task_of("pg", ".other-backup.lock"), None);
    }
}
