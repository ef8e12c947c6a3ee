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
