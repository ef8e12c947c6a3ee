//! One configured server as the commands see it: its catalogue layout plus the settings the
//! WAL commands need, resolved once from the configuration.

use std::path::Path;

use barman_common::catalogue::{ErrorsKind, LockError, LockKind, ServerLayout, ServerLock};
use barman_common::compress::{Codec, Level};
use barman_common::gpg::{Encryption, Gpg};
use std::sync::Arc;

use crate::CmdError;

/// A server's layout and WAL-related settings.
#[derive(Debug, Clone)]
pub struct Server {
    /// Section name.
    pub name: String,
    /// Directories and file locations.
    pub layout: ServerLayout,
    /// Whether the server is active.
    pub active: bool,
    /// WAL compression: the configured name (recorded in xlog.db) and its format.
    pub compression: Option<(String, Codec)>,
    /// `compression_level`.
    pub level: Level,
    /// `archiver_batch_size` (0 = all).
    pub archiver_batch_size: usize,
    /// `streaming_archiver_batch_size` (0 = all).
    pub streaming_batch_size: usize,
    /// `archiver`.
    pub archiver: bool,
    /// `streaming_archiver`.
    pub streaming_archiver: bool,
    /// A passive node (`primary_ssh_command` set): fed by barman-relay, no archivers.
    pub passive: bool,
    /// The hook scripts (`pre_archive_script`, …) and what running them needs.
    pub hooks: crate::hooks::Hooks,
    /// `encryption`: WAL is encrypted by the archiver when set.
    pub encryption: Option<Encryption>,
    /// `encryption_key_id` and `encryption_passphrase_command` (shared, so the passphrase
    /// command runs once per process).
    pub gpg: Arc<Gpg>,
}

impl Server {
    /// An `ERROR:` naming this server, as Barman suffixes its put-wal/get-wal errors.
    pub fn err(&self, msg: impl std::fmt::Display) -> CmdError {
        CmdError::Error(format!("{msg} for server '{}'", self.name))
    }

    /// `errors/<name>.<UTC YYYYMMDDTHHMMSSZ>.<kind>`.
    pub fn errors_path(&self, name: &str, kind: ErrorsKind) -> std::path::PathBuf {
        self.layout.errors_path(name, kind)
    }

    /// The cluster's system identifier from `identity.json`, once a backup has written it.
    pub fn system_id(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.layout.identity_path()).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v.get("systemid")?.as_str()?.parse().ok()
    }

    /// Takes one of this server's non-blocking locks; busy → a Barman-style message.
    pub fn try_lock(&self, kind: &LockKind, what: &str) -> Result<ServerLock, CmdError> {
        ServerLock::acquire(&self.layout.lock_directory, &self.name, kind).map_err(|e| match e {
            LockError::Busy { .. } => {
                CmdError::Error(format!("Another {what} process is already running on server {}.", self.name))
            }
            other => CmdError::Exception(other.to_string()),
        })
    }
}

/// True for names the archiver ignores: temp files being written.
pub fn is_temp(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    name.starts_with('.') || name.ends_with(".tmp")
}
