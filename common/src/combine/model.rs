//! What a combine reads and writes: the chain's backups, the target, the mode, the report,
//! and each backup's manifest indexed by path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::manifest::{FileEntry, Manifest};

use super::error::CombineError;

/// One backup of the chain, as stored: its data directory and its tablespaces by oid.
#[derive(Debug, Clone)]
pub struct Backup {
    /// The data directory (holding `backup_label` and `backup_manifest`).
    pub data: PathBuf,
    /// Each tablespace's directory.
    pub tablespaces: Vec<(u32, PathBuf)>,
}

/// Where the combined backup goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The data directory (created if missing; may hold unrelated entries such as a marker).
    pub root: PathBuf,
    /// Each tablespace's directory, by oid.
    pub tablespaces: Vec<(u32, PathBuf)>,
}

/// How a file the newest backup holds whole gets into the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copied (and verified).
    Copy,
    /// Relation files hard-linked to the catalogue's (not read: Barman's `combine_mode =
    /// link`, only for a staging area shipped elsewhere afterwards); the others copied.
    Link,
}

/// What a combine did.
#[derive(Debug, Default, Clone)]
pub struct Combined {
    /// Files written (the label included).
    pub files: usize,
    /// Of which rebuilt from incremental files.
    pub reconstructed: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Entries of the newest backup that are not regular files or directories, left out.
    pub skipped: Vec<PathBuf>,
}

/// A manifest with its files by path.
pub(super) struct Indexed {
    pub(super) manifest: Manifest,
    by_path: HashMap<String, usize>,
}

impl Indexed {
    pub(super) fn read(data: &Path) -> Result<Indexed, CombineError> {
        let manifest = Manifest::read(&data.join("backup_manifest"))?;
        let by_path = manifest.files.iter().enumerate().map(|(i, f)| (f.path.clone(), i)).collect();
        Ok(Indexed { manifest, by_path })
    }

    pub(super) fn entry(&self, path: &str) -> Option<&FileEntry> {
        self.by_path.get(path).map(|&i| &self.manifest.files[i])
    }
}
