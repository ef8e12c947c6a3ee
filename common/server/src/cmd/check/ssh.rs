//! `PassiveBackupExecutor.check`: the `ssh` channel to the primary a passive node copies
//! from, run as Barman runs it (`primary_ssh_command` plus batch options and `true`,
//! through `/bin/sh -c` with `path_prefix` before `PATH`, within the check timeout).

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
    let (program, opts) = primary_ssh_line(ssh);
    let words: Vec<&str> = opts.iter().map(String::as_str).chain(["true"]).collect();
    let mut cmd = RemoteShell::new(program.as_str()).command_words(&words);
    if let Ok(joined) = std::env::join_paths(search_path(cfg)) {
        cmd.env("PATH", joined);
    }
    let done = match run_captured(&mut cmd, Some(timeout)) {
        Err(_) => {
            c.fail("ssh", format!("Unable to execute {program}"));
            return true;
        }
        Ok(None) => return false,
        Ok(Some(done)) => done,
    };
    if done.status.success() {
        c.add("ssh", true, Some("Barman primary node".into()));
        if !done.stdout.is_empty() || !done.stderr.is_empty() {
            c.fail("ssh output clean", "the configured ssh_command must not add anything to the remote command output");
        }
    } else {
        let hint = format!("Connection failed using '{program} {}' return code {}", opts.join(" "), done.returncode());
        c.fail("ssh", hint);
    }
    true
}
