//! The `ssh` checks, run as Barman runs them (the command plus batch options and `true`,
//! through `/bin/sh -c` with `path_prefix` before `PATH`, within the check timeout):
//! `PassiveBackupExecutor.check` (the primary a passive node copies from) and
//! `ExternalBackupExecutor.check` for `backup_method = rsync` (the PostgreSQL host; also
//! that rsync runs there) and `local-rsync` (the local PGDATA).

use std::path::PathBuf;
use std::time::Duration;

use barman_common::config::ServerConfig;
use barman_common::remote::{run_captured, RemoteShell};

use super::results::Checks;

/// Barman's `_parse_ssh_command`: the first word of the configured command, and its other
/// words followed by the batch options.
fn primary_ssh_line(ssh: &str) -> (String, Vec<String>) {
    let mut words = ssh.split_whitespace().map(str::to_owned);
    let program = words.next().unwrap_or_default();
    let mut opts: Vec<String> = words.collect();
    opts.extend(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"].map(str::to_owned));
    (program, opts)
}

/// `path_prefix`'s directories, then the system `PATH`'s (Barman's `UnixLocalCommand`
/// environment).
fn search_path(cfg: &ServerConfig) -> Vec<PathBuf> {
    let mut path: Vec<PathBuf> =
        cfg.path_prefix.as_deref().map(|p| std::env::split_paths(p).collect()).unwrap_or_default();
    if let Some(system) = std::env::var_os("PATH") {
        path.extend(std::env::split_paths(&system));
    }
    path
}

/// The `ssh` check (and a failing `ssh output clean` when the remote printed anything):
/// `UnixRemoteCommand(...).cmd("true")`, each word after the program quoted for the shell.
/// Returns false when the command outlived `timeout` (Barman's check timeout).
pub fn check_primary_ssh(cfg: &ServerConfig, ssh: &str, timeout: Duration, c: &mut Checks) -> bool {
    check_ssh(cfg, ssh, "Barman primary node", timeout, c).is_some()
}

/// `ExternalBackupExecutor._remote_check` (`ssh`, `ssh output clean`), then an `rsync`
/// check that only speaks when rsync cannot run on the PostgreSQL host (Barman finds out at
/// backup time). Returns false on a timeout.
pub fn check_rsync_ssh(cfg: &ServerConfig, ssh: &str, timeout: Duration, c: &mut Checks) -> bool {
    match check_ssh(cfg, ssh, "PostgreSQL server", timeout, c) {
        None => false,
        Some(false) => true,
        Some(true) => {
            let (program, opts) = primary_ssh_line(ssh);
            let words: Vec<&str> = opts.iter().map(String::as_str).chain(["rsync", "--version"]).collect();
            let mut cmd = RemoteShell::new(program.as_str()).command_words(&words);
            match run_captured(&mut cmd, Some(timeout)) {
                Ok(None) => false,
                Ok(Some(done)) if done.status.success() => true,
                _ => {
                    c.fail("rsync", "rsync cannot be run on the PostgreSQL server");
                    true
                }
            }
        }
    }
}

/// `ExternalBackupExecutor._local_check` for `local-rsync`.
pub fn check_local_pgdata(pgdata: Option<&str>, c: &mut Checks) {
    match pgdata {
        Some(dir) if !std::path::Path::new(dir).is_dir() => {
            c.add("local PGDATA", true, Some(format!("{dir} does not exist or is not a directory")));
        }
        _ => c.add("local PGDATA", true, Some("Access to local PGDATA".into())),
    }
}

/// The `ssh` check with `hint` when it works: `Some(ok)`, `None` on a timeout.
fn check_ssh(cfg: &ServerConfig, ssh: &str, hint: &str, timeout: Duration, c: &mut Checks) -> Option<bool> {
    let (program, opts) = primary_ssh_line(ssh);
    let words: Vec<&str> = opts.iter().map(String::as_str).chain(["true"]).collect();
    let mut cmd = RemoteShell::new(program.as_str()).command_words(&words);
    if let Ok(joined) = std::env::join_paths(search_path(cfg)) {
        cmd.env("PATH", joined);
    }
    let done = match run_captured(&mut cmd, Some(timeout)) {
        Err(_) => {
            c.fail("ssh", format!("Unable to execute {program}"));
            return Some(false);
        }
        Ok(None) => return None,
        Ok(Some(done)) => done,
    };
    if done.status.success() {
        c.add("ssh", true, Some(hint.into()));
        if !done.stdout.is_empty() || !done.stderr.is_empty() {
            c.fail("ssh output clean", "the configured ssh_command must not add anything to the remote command output");
        }
        Some(true)
    } else {
        let hint = format!("Connection failed using '{program} {}' return code {}", opts.join(" "), done.returncode());
        c.fail("ssh", hint);
        Some(false)
    }
}
