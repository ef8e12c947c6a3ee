//! Where one server's catalogue lives: the directory tree of spec §1 as a plain struct of
//! paths, with the names Barman derives from them (backup.info, annotations, xlog.db, WAL
//! files, errors/ entries, lock files).
//!
//! Paths are taken as given (the configuration resolves them); nothing here reads the
//! configuration files.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::backup_id::BackupId;
use super::error::CatalogueError;
use super::fsio::create_dir_all_durable;
use super::lock::LockKind;
use crate::wal::WalFileName;

/// Why a file was moved to `errors/` (the last part of its new name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorsKind {
    /// The WAL was already archived with different content.
    Duplicate,
    /// The name is not a WAL file name.
    Unknown,
    /// The file failed validation (another cluster's WAL, wrong size, corrupt); Barman's
    /// check counts these as "not relevant".
    Error,
}

impl ErrorsKind {
    /// `duplicate` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorsKind::Duplicate => "duplicate",
            ErrorsKind::Unknown => "unknown",
            ErrorsKind::Error => "error",
        }
    }
}

/// The directories of one server (Barman's `ServerConfig` `*_directory` keys plus the
/// global lock directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLayout {
    /// Server (section) name.
    pub name: String,
    /// `backup_directory`, default `<barman_home>/<name>`.
    pub backup_directory: PathBuf,
    /// `basebackups_directory`, default `<backup_directory>/base`.
    pub basebackups_directory: PathBuf,
    /// `wals_directory`, default `<backup_directory>/wals`.
    pub wals_directory: PathBuf,
    /// `incoming_wals_directory`, default `<backup_directory>/incoming`.
    pub incoming: PathBuf,
    /// `streaming_wals_directory`, default `<backup_directory>/streaming`.
    pub streaming: PathBuf,
    /// `errors_directory`, default `<backup_directory>/errors`.
    pub errors: PathBuf,
    /// `xlogdb_directory`, default = `wals_directory`.
    pub xlogdb_directory: PathBuf,
    /// `barman_lock_directory` (global), default `barman_home`.
    pub lock_directory: PathBuf,
}

impl ServerLayout {
    /// Barman's defaults for server `name` under `barman_home`.
    pub fn default_for(barman_home: &Path, name: &str) -> ServerLayout {
        let backup_directory = barman_home.join(name);
        let wals_directory = backup_directory.join("wals");
        ServerLayout {
            name: name.to_owned(),
            basebackups_directory: backup_directory.join("base"),
            incoming: backup_directory.join("incoming"),
            streaming: backup_directory.join("streaming"),
            errors: backup_directory.join("errors"),
            xlogdb_directory: wals_directory.clone(),
            wals_directory,
            lock_directory: barman_home.to_path_buf(),
            backup_directory,
        }
    }

    /// `<backup_directory>/meta`: backup.info files and annotations (3.13.2+).
    pub fn meta_dir(&self) -> PathBuf {
        self.backup_directory.join("meta")
    }

    /// The xlog.db file name, `<server>-xlog.db`.
    pub fn xlogdb_file_name(&self) -> String {
        format!("{}-xlog.db", self.name)
    }

    /// `<xlogdb_directory>/<server>-xlog.db`.
    pub fn xlogdb_path(&self) -> PathBuf {
        self.xlogdb_directory.join(self.xlogdb_file_name())
    }

    /// `<wals_directory>/xlog.db`, the name before 3.13.0; removed when the new file is
    /// first created (the new one is rebuilt from the archive, spec §4.1).
    pub fn legacy_xlogdb_path(&self) -> PathBuf {
        self.wals_directory.join("xlog.db")
    }

    /// Where an archived WAL file is stored: `wals/<hash>/<name>`, history files at the
    /// root of `wals/`.
    pub fn wal_path(&self, name: &WalFileName) -> PathBuf {
        match name.hash_dir() {
            Some(hash) => self.wals_directory.join(hash).join(name.as_str()),
            None => self.wals_directory.join(name.as_str()),
        }
    }

    /// `base/<id>`.
    pub fn backup_dir(&self, id: &BackupId) -> PathBuf {
        self.basebackups_directory.join(id.as_str())
    }

    /// Removes a backup's directory and its backup.info (both locations), then makes the
    /// removals durable. Annotations are left to the caller.
    pub fn remove_backup(&self, id: &BackupId) -> std::io::Result<()> {
        let dir = self.backup_dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        for p in [self.backup_info_path(id), self.legacy_backup_info_path(id)] {
            if p.exists() {
                std::fs::remove_file(p)?;
            }
        }
        for d in [&self.basebackups_directory, &self.meta_dir()] {
            if d.exists() {
                crate::durable::fsync_dir(d)?;
            }
        }
        Ok(())
    }

    /// `meta/<id>-backup.info`, where backup.info is written (3.13.2+).
    pub fn backup_info_path(&self, id: &BackupId) -> PathBuf {
        self.meta_dir().join(format!("{id}-backup.info"))
    }

    /// `base/<id>/backup.info`, the location before 3.13.2 (read only).
    pub fn legacy_backup_info_path(&self, id: &BackupId) -> PathBuf {
        self.backup_dir(id).join("backup.info")
    }

    /// `meta/<id>-<key>`, an annotation (3.13.3+).
    pub fn annotation_path(&self, id: &BackupId, key: &str) -> PathBuf {
        self.meta_dir().join(format!("{id}-{key}"))
    }

    /// `base/<id>/annotations/<key>`, the annotation location before 3.13.3.
    pub fn legacy_annotation_path(&self, id: &BackupId, key: &str) -> PathBuf {
        self.backup_dir(id).join("annotations").join(key)
    }

    /// `<backup_directory>/identity.json`.
    pub fn identity_path(&self) -> PathBuf {
        self.backup_directory.join("identity.json")
    }

    /// A lock file of this server in the lock directory.
    pub fn lock_path(&self, kind: &LockKind) -> PathBuf {
        self.lock_directory.join(kind.file_name(&self.name))
    }

    /// The name a rejected file gets in `errors/` now: `<name>.<UTC %Y%m%dT%H%M%SZ>.<kind>`.
    pub fn errors_name(name: &str, kind: ErrorsKind) -> String {
        ServerLayout::errors_name_at(name, kind, Utc::now())
    }

    /// [`ServerLayout::errors_name`] for a given time.
    pub fn errors_name_at(name: &str, kind: ErrorsKind, at: DateTime<Utc>) -> String {
        format!("{name}.{}.{}", at.format("%Y%m%dT%H%M%SZ"), kind.as_str())
    }

    /// `errors/<errors_name>`.
    pub fn errors_path(&self, name: &str, kind: ErrorsKind) -> PathBuf {
        self.errors.join(ServerLayout::errors_name(name, kind))
    }

    /// Creates every missing directory (Barman's `_make_directories`: each `*_directory`,
    /// plus `meta/`; we also create the lock directory). New directories and their parents
    /// are fsynced.
    pub fn ensure_dirs(&self) -> Result<(), CatalogueError> {
        let meta = self.meta_dir();
        let dirs = [
            &self.backup_directory,
            &self.basebackups_directory,
            &self.wals_directory,
            &self.incoming,
            &self.streaming,
            &self.errors,
            &self.xlogdb_directory,
            &meta,
            &self.lock_directory,
        ];
        for dir in dirs {
            create_dir_all_durable(dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn layout() -> ServerLayout {
        ServerLayout::default_for(Path::new("/var/lib/barman"), "pg")
    }

    #[test]
    fn defaults_match_barman() {
        let l = layout();
        assert_eq!(l.backup_directory, Path::new("/var/lib/barman/pg"));
        assert_eq!(l.basebackups_directory, Path::new("/var/lib/barman/pg/base"));
        assert_eq!(l.xlogdb_path(), Path::new("/var/lib/barman/pg/wals/pg-xlog.db"));
        assert_eq!(l.legacy_xlogdb_path(), Path::new("/var/lib/barman/pg/wals/xlog.db"));
        assert_eq!(l.identity_path(), Path::new("/var/lib/barman/pg/identity.json"));
        assert_eq!(l.lock_path(&LockKind::XlogDb), Path::new("/var/lib/barman/.pg-xlogdb.lock"));
        let id: BackupId = "20261121T203640".parse().expect("id");
        assert_eq!(l.backup_info_path(&id), Path::new("/var/lib/barman/pg/meta/20261121T203640-backup.info"));
        assert_eq!(l.legacy_backup_info_path(&id), Path::new("/var/lib/barman/pg/base/20261121T203640/backup.info"));
        assert_eq!(l.annotation_path(&id, "keep"), Path::new("/var/lib/barman/pg/meta/20261121T203640-keep"));
        assert_eq!(
            l.legacy_annotation_path(&id, "keep"),
            Path::new("/var/lib/barman/pg/base/20261121T203640/annotations/keep")
        );
    }

    #[test]
    fn wal_paths_use_hash_dirs() {
        let l = layout();
        let seg: WalFileName = "000000010000000000000003".parse().expect("segment");
        assert_eq!(l.wal_path(&seg), Path::new("/var/lib/barman/pg/wals/0000000100000000/000000010000000000000003"));
        let hist: WalFileName = "00000002.history".parse().expect("history");
        assert_eq!(l.wal_path(&hist), Path::new("/var/lib/barman/pg/wals/00000002.history"));
    }

    #[test]
    fn errors_names() {
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 20, 36, 40).single().expect("valid time");
        assert_eq!(
            ServerLayout::errors_name_at("000000010000000000000003", ErrorsKind::Duplicate, at),
            "000000010000000000000003.20261121T203640Z.duplicate"
        );
        assert_eq!(ServerLayout::errors_name_at("junk", ErrorsKind::Unknown, at), "junk.20261121T203640Z.unknown");
    }

    #[test]
    fn ensure_dirs_creates_the_tree() {
        let home = tempfile::tempdir().expect("tempdir");
        let l = ServerLayout::default_for(home.path(), "pg");
        l.ensure_dirs().expect("create");
        l.ensure_dirs().expect("idempotent");
        for sub in ["base", "wals", "incoming", "streaming", "errors", "meta"] {
            assert!(home.path().join("pg").join(sub).is_dir(), "{sub}");
        }
    }
}
