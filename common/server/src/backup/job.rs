//! A backup in progress ([`Job`]), shared by the methods that take one (the streaming
//! `postgres` method in `mod.rs`, the rsync methods in `rsync_method`), so neither imports
//! the other.

use std::path::{Path, PathBuf};

use barman_common::catalogue::{BackupId, BackupInfo, BackupStatus, ServerLayout};
use chrono::{DateTime, FixedOffset};

use super::copy;
use super::error::ToolError;

pub(super) fn now() -> DateTime<FixedOffset> {
    chrono::Local::now().fixed_offset()
}

/// A backup in progress: where it lives, what is known so far, and the phase running.
pub(super) struct Job<'a> {
    pub(super) layout: &'a ServerLayout,
    pub(super) id: BackupId,
    pub(super) dir: PathBuf,
    pub(super) info: BackupInfo,
    pub(super) phase: &'static str,
    /// The backup directory's filesystem, to sync once the copy is done (armed before it).
    pub(super) fs_sync: Option<copy::FilesystemSync>,
}

impl Job<'_> {
    pub(super) fn save(&self) -> Result<(), String> {
        self.info.save(self.layout, &self.id).map_err(|e| e.to_string())
    }

    /// Records the failure of the current phase (status FAILED) and turns it into the error.
    pub(super) fn fail(&mut self, message: &str) -> ToolError {
        crate::log::write(
            crate::log::Level::Error,
            "backup",
            &format!("Backup failed {}.\nDETAILS: {}", self.phase, message.trim()),
        );
        let first = message.lines().next().unwrap_or_default().trim();
        let error = format!("failure {} ({first})", self.phase);
        self.info.status = BackupStatus::Failed;
        self.info.error = Some(error.clone());
        if self.info.end_time.is_none() {
            self.info.end_time = Some(now());
        }
        let saved = self.save().err().map(|e| format!("; also could not save backup.info: {e}")).unwrap_or_default();
        ToolError::Failed(format!("backup {} of server {} failed: {error}{saved}", self.id, self.layout.name))
    }
}

/// `path` made absolute (as given when that fails).
pub(super) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
