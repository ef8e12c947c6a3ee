//! Connection reuse for the Postgres-host clients (`barman-wal-archive`,
//! `barman-wal-restore`): every call PostgreSQL makes would otherwise pay a fresh ssh
//! handshake (~250 ms here), which caps archiving at a few segments a second.
//!
//! The clients ask ssh to share one authenticated connection per backup host
//! (`ControlMaster=auto`, `ControlPersist`): the first call becomes the master, which ssh
//! detaches (stdio on /dev/null) and keeps for [`PERSIST`] after the last use; later calls
//! open a session on it in a few milliseconds. The control sockets live in a private
//! directory (0700, owned by the caller, not a symlink; anything else disables reuse with a
//! warning) so no other user can ride the connection. A dead master or a stale socket is
//! ssh's own business: `ControlMaster=auto` removes a socket nobody answers on and connects
//! afresh, and keep-alives end a master whose peer vanished, so failures surface as they
//! would with a fresh connection (exit 255).
//!
//! `BARMAN_SSH_MULTIPLEX=off` (or `no`, `0`) turns reuse off, e.g. when the user's own
//! `~/.ssh/config` already sets a `ControlPath` they want kept.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::durable::{current_euid, ensure_private_dir};

/// How long an idle master outlives its last session.
pub const PERSIST: &str = "60";
/// The environment switch.
pub const ENV_SWITCH: &str = "BARMAN_SSH_MULTIPLEX";

/// The `-o` options that make a call share the connection, or nothing when reuse is off or
/// no private directory can be had.
pub fn ssh_options() -> Vec<String> {
    if disabled_by_env() {
        return Vec::new();
    }
    match control_dir() {
        Ok(dir) => vec![
            "-o".to_owned(),
            "ControlMaster=auto".to_owned(),
            "-o".to_owned(),
            format!("ControlPath={}/%C", dir.display()),
            "-o".to_owned(),
            format!("ControlPersist={PERSIST}"),
            "-o".to_owned(),
            "ServerAliveInterval=10".to_owned(),
            "-o".to_owned(),
            "ServerAliveCountMax=3".to_owned(),
        ],
        Err(why) => {
            eprintln!("WARNING: ssh connection reuse disabled: {why}");
            Vec::new()
        }
    }
}

/// A configured ssh command line (`ssh_command`, `--remote-ssh-command`, as given to
/// `rsync -e`) with the reuse options inserted after its program when that program is `ssh`;
/// `None` (use the line as written) for any other program (a wrapper script), an unusual
/// first word, or when reuse is off. `slot` names the connection: lines with the same slot
/// share one, so concurrent copy workers that each take their own slot keep their own
/// connection (and cipher stream) while paying one handshake each instead of one per call.
/// The masters outlive their last session by [`COPY_PERSIST`] seconds; [`close_line`] ends
/// one at once.
pub fn reuse_in_line(line: &str, slot: &str) -> Option<String> {
    if disabled_by_env() {
        return None;
    }
    let trimmed = line.trim_start();
    let (program, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./".contains(c);
    if !program.chars().all(plain) || std::path::Path::new(program).file_name().is_none_or(|n| n != "ssh") {
        return None;
    }
    let dir = control_dir().ok()?;
    let slot: String = slot.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let path = format!("ControlPath={}/%C-{slot}", dir.display());
    // The line is split again by rsync and by sh: only a path that needs no quoting is used.
    if !path.chars().all(|c| plain(c) || "=%".contains(c)) {
        return None;
    }
    Some(format!(
        "{program} -o ControlMaster=auto -o {path} -o ControlPersist={COPY_PERSIST} \
         -o ServerAliveInterval=10 -o ServerAliveCountMax=3 {rest}"
    ))
}

/// How long a copy worker's idle master waits for the worker's next call.
pub const COPY_PERSIST: &str = "15";

/// Ends the master of a line made by [`reuse_in_line`] (`ssh ... -O exit`), quietly: a
/// master already gone is fine.
pub fn close_line(reusing: &str) {
    let _ = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{reusing} -O exit"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

fn disabled_by_env() -> bool {
    std::env::var(ENV_SWITCH)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "off" | "no" | "0" | "false"))
}

/// `$XDG_RUNTIME_DIR/barman-ssh` when the runtime directory is ours, else
/// `/tmp/barman-ssh-<euid>`; created 0700, and nobody else may enter it.
fn control_dir() -> Result<PathBuf, String> {
    let uid = current_euid();
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| fs::symlink_metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == uid));
    let dir = match runtime {
        Some(r) => r.join("barman-ssh"),
        None => std::env::temp_dir().join(format!("barman-ssh-{uid}")),
    };
    ensure_private_dir(&dir, 0o077).map(|()| dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_goes_after_the_ssh_program_only() {
        if disabled_by_env() {
            return;
        }
        let line = reuse_in_line("ssh -F /etc/cfg postgres@pg", "7-1").expect("ssh line");
        assert!(line.starts_with("ssh -o ControlMaster=auto -o "), "{line}");
        assert!(line.contains("%C-7-1 -o ControlPersist=15 "), "{line}");
        assert!(line.ends_with(" -F /etc/cfg postgres@pg"), "{line}");
        assert!(reuse_in_line("/usr/bin/ssh postgres@pg", "0").is_some_and(|l| l.starts_with("/usr/bin/ssh -o ")));
        assert_eq!(reuse_in_line("my-ssh-wrapper postgres@pg", "0"), None);
        assert_eq!(reuse_in_line("'ssh' postgres@pg", "0"), None);
        assert_eq!(reuse_in_line("sshpass -p x ssh pg", "0"), None);
    }
}
