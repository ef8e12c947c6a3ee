//! The remote side of a `--remote-ssh-command` recovery, over the shared runner
//! ([`barman_common::remote`]): Barman's checks (`<ssh> true`, `ls -A DIR` on the destination
//! and tablespace directories), the local staging directory the result is built in, and its
//! shipping (`mkdir -p DIR`, then `rsync -a --delete -e '<ssh>'`). Also this host's name as
//! Python's `socket.getfqdn()` gives it, for the remote `barman-wal-restore`.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use barman_common::remote::{run_captured, shell_quote, Captured, RemoteShell};

use super::plan::{not_empty, Plan, WriteTo};
use crate::context::Context;
use crate::CmdError;

/// Runs `<ssh> <remote>` and captures its output.
fn run(ssh: &RemoteShell, remote: &str) -> Result<Captured, CmdError> {
    ssh.run(remote, None)
        .and_then(|c| c.ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut)))
        .map_err(|e| CmdError::Error(format!("Unable to execute {}: {e}", ssh.line())))
}

/// `<ssh> true`, as Barman's `UnixRemoteCommand` does first.
pub fn check_connection(ssh: &RemoteShell) -> Result<(), CmdError> {
    match run(ssh, "true") {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err(CmdError::Error(format!("Unable to connect to the target host using the command '{}'", ssh.line()))),
    }
}

/// Barman's `list_dir_content` check (`ls`; hidden files count here too, since the
/// copy runs with `--delete`).
pub fn ensure_empty(ssh: &RemoteShell, dir: &Path, tablespace: Option<&str>) -> Result<(), CmdError> {
    let o = run(ssh, &format!("ls -A {}", shell_quote(&dir.to_string_lossy())))?;
    if o.stdout.iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(not_empty(dir, tablespace));
    }
    Ok(())
}

/// Ships the staged result: PGDATA first (its `--delete` must not remove a tablespace
/// placed inside it), then each tablespace; the staging directory is then removed.
pub fn ship(ssh: &RemoteShell, plan: &Plan<'_>, to: &WriteTo, staging: &Staging) -> Result<(), CmdError> {
    let mut items = vec![(to.root.clone(), plan.dest.clone())];
    for (t, location) in &plan.tablespaces {
        items.push((to.tablespace(t, location), location.clone()));
    }
    for (from, to) in &items {
        mkdir(ssh, to)?;
        rsync(ssh, from, to)
            .map_err(|e| CmdError::Error(format!("Failure copying base backup: data transfer failure: {e}")))?;
    }
    staging.remove();
    Ok(())
}

/// `mkdir -p DIR` on the remote host.
fn mkdir(ssh: &RemoteShell, dir: &Path) -> Result<(), CmdError> {
    let o = run(ssh, &format!("mkdir -p {}", shell_quote(&dir.to_string_lossy())))?;
    if !o.status.success() {
        return Err(CmdError::Error(format!(
            "unable to initialise destination directory '{}': {}",
            dir.display(),
            o.stderr_text()
        )));
    }
    Ok(())
}

/// `rsync -a --delete -e '<ssh>' FROM/ :TO/`.
fn rsync(ssh: &RemoteShell, from: &Path, to: &Path) -> Result<(), String> {
    let mut cmd = Command::new("rsync");
    cmd.args(["-a", "--delete", "-e", ssh.line()])
        .arg(format!("{}/", from.display()))
        .arg(format!(":{}/", to.display()))
        .stdin(Stdio::null());
    let o = run_captured(&mut cmd, None)
        .and_then(|c| c.ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut)))
        .map_err(|e| format!("rsync: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("rsync exited with {}: {}", o.status, o.stderr_text()))
    }
}

/// Python's `socket.getfqdn()`: the host name, resolved and then reverse-resolved;
/// the first of those names with a dot, else the reverse name.
pub fn getfqdn() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
    let getent = |key: &str| -> Option<Vec<String>> {
        let o = Command::new("getent").args(["hosts", key]).stdin(Stdio::null()).output().ok()?;
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let words: Vec<String> = text.lines().next()?.split_whitespace().map(str::to_owned).collect();
        (o.status.success() && words.len() > 1).then_some(words)
    };
    let Some(addr) = getent(&host).and_then(|w| w.first().cloned()) else { return host };
    let Some(names) = getent(&addr) else { return host };
    let names = &names[1..];
    names.iter().find(|n| n.contains('.')).or(names.first()).cloned().unwrap_or(host)
}

/// The local staging copy of a remote destination (`data/`, `tblspc/<oid>/`), removed
/// when dropped.
pub struct Staging {
    /// The staging directory.
    pub path: PathBuf,
}

impl Staging {
    /// `<recovery_staging_path or barman_home>/.barman-recover-<server>-<pid>`.
    pub fn create(ctx: &Context, plan: &Plan<'_>) -> Result<Self, CmdError> {
        let base = plan.staging_path.clone().unwrap_or_else(|| ctx.config().global().barman_home.clone());
        Self::create_in(&base, plan.server_name)
    }

    /// `<base>/.barman-recover-<server>-<pid>` (an incremental chain is combined there).
    pub fn create_in(base: &Path, server: &str) -> Result<Self, CmdError> {
        let path = base.join(format!(".barman-recover-{server}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o700)))
            .map_err(|e| {
                CmdError::Error(format!("unable to create the staging directory '{}': {e}", path.display()))
            })?;
        Ok(Self { path })
    }

    /// Removes the staging directory (once shipped, or on failure).
    pub fn remove(&self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.remove();
    }
}
