//! Backup annotations (spec §9): small files `meta/<id>-<key>` whose content is the value,
//! without a newline. Barman uses `keep` (`full`/`standalone`) and `delete_this`
//! (`delete`, an in-progress delete).
//!
//! Like Barman's `AnnotationManagerFile`, every access first moves a legacy
//! `base/<id>/annotations/<key>` (before 3.13.3) into `meta/`, and deleting an annotation
//! also removes `meta/` when it is left empty. Unlike Barman, values are written durably
//! (tmp + fsync + rename).

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;
use std::str::FromStr;

use super::backup_id::BackupId;
use super::error::CatalogueError;
use super::fsio::{create_dir_all_durable, fsync_dir, io_err, read_optional, remove_optional, write_atomic};
use super::layout::ServerLayout;
use crate::durable::parent_of;

/// The annotation key of a keep request.
pub const KEEP_KEY: &str = "keep";
/// The annotation key marking a backup whose deletion is in progress.
pub const DELETE_KEY: &str = "delete_this";
/// The content Barman writes into the `delete_this` annotation.
pub const DELETE_VALUE: &str = "delete";

/// What `barman keep --target` asked to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepTarget {
    /// The backup and every WAL from it on (`KEEP:FULL`).
    Full,
    /// The backup and only the WALs needed to make it consistent (`KEEP:STANDALONE`).
    Standalone,
}

impl KeepTarget {
    /// `full` or `standalone`, the annotation content.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepTarget::Full => "full",
            KeepTarget::Standalone => "standalone",
        }
    }
}

impl FromStr for KeepTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(KeepTarget::Full),
            "standalone" => Ok(KeepTarget::Standalone),
            other => Err(format!("Unsupported recovery target: {other}")),
        }
    }
}

impl fmt::Display for KeepTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Moves a legacy `base/<id>/annotations/<key>` into `meta/` (replacing a newer copy, as
/// Barman's `os.rename` does).
fn relocate_legacy(layout: &ServerLayout, id: &BackupId, key: &str) -> Result<(), CatalogueError> {
    let old = layout.legacy_annotation_path(id, key);
    if !old.exists() {
        return Ok(());
    }
    let new = layout.annotation_path(id, key);
    create_dir_all_durable(parent_of(&new))?;
    fs::rename(&old, &new).map_err(io_err(&old))?;
    fsync_dir(parent_of(&new))?;
    fsync_dir(parent_of(&old))
}

/// The value of annotation `key`, `None` if absent.
pub fn get_annotation(layout: &ServerLayout, id: &BackupId, key: &str) -> Result<Option<String>, CatalogueError> {
    relocate_legacy(layout, id, key)?;
    let path = layout.annotation_path(id, key);
    let Some(bytes) = read_optional(&path)? else { return Ok(None) };
    String::from_utf8(bytes).map(Some).map_err(|_| CatalogueError::InvalidValue {
        path,
        key: key.to_owned(),
        value: "<not UTF-8>".to_owned(),
        reason: "annotation is not UTF-8".to_owned(),
    })
}

/// Sets annotation `key` to `value` (no newline added), creating `meta/` if needed.
pub fn put_annotation(layout: &ServerLayout, id: &BackupId, key: &str, value: &str) -> Result<(), CatalogueError> {
    let path = layout.annotation_path(id, key);
    create_dir_all_durable(parent_of(&path))?;
    write_atomic(&path, value.as_bytes())
}

/// Removes annotation `key` (absent is fine), then removes `meta/` if that left it empty,
/// as Barman does.
pub fn delete_annotation(layout: &ServerLayout, id: &BackupId, key: &str) -> Result<(), CatalogueError> {
    relocate_legacy(layout, id, key)?;
    let path = layout.annotation_path(id, key);
    if !remove_optional(&path)? {
        return Ok(());
    }
    let dir = parent_of(&path);
    fsync_dir(dir)?;
    remove_dir_if_empty(dir)
}

fn remove_dir_if_empty(dir: &Path) -> Result<(), CatalogueError> {
    match fs::remove_dir(dir) {
        Ok(()) => fsync_dir(parent_of(dir)),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) || e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// True if the backup carries a keep annotation (whatever its content, like Barman's
/// `should_keep_backup`).
pub fn is_kept(layout: &ServerLayout, id: &BackupId) -> Result<bool, CatalogueError> {
    Ok(get_annotation(layout, id, KEEP_KEY)?.is_some())
}

/// The keep target, `None` when not kept; an unknown content is an error.
pub fn keep_target(layout: &ServerLayout, id: &BackupId) -> Result<Option<KeepTarget>, CatalogueError> {
    let Some(value) = get_annotation(layout, id, KEEP_KEY)? else { return Ok(None) };
    value.parse().map(Some).map_err(|reason| CatalogueError::InvalidValue {
        path: layout.annotation_path(id, KEEP_KEY),
        key: KEEP_KEY.to_owned(),
        value,
        reason,
    })
}

/// `barman keep --target`: writes `full` or `standalone`.
pub fn keep(layout: &ServerLayout, id: &BackupId, target: KeepTarget) -> Result<(), CatalogueError> {
    put_annotation(layout, id, KEEP_KEY, target.as_str())
}

/// `barman keep --release`.
pub fn release_keep(layout: &ServerLayout, id: &BackupId) -> Result<(), CatalogueError> {
    delete_annotation(layout, id, KEEP_KEY)
}

/// Marks a delete as started (`delete_this` = `delete`).
pub fn mark_for_deletion(layout: &ServerLayout, id: &BackupId) -> Result<(), CatalogueError> {
    put_annotation(layout, id, DELETE_KEY, DELETE_VALUE)
}

/// True if a delete of this backup was started and not finished.
pub fn is_marked_for_deletion(layout: &ServerLayout, id: &BackupId) -> Result<bool, CatalogueError> {
    Ok(get_annotation(layout, id, DELETE_KEY)?.is_some())
}

/// Removes the `delete_this` marker.
pub fn clear_deletion_mark(layout: &ServerLayout, id: &BackupId) -> Result<(), CatalogueError> {
    delete_annotation(layout, id, DELETE_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_KEEP: &[u8] = include_bytes!("../../tests/fixtures/barman-3.20.1/20261121T220257-keep");

    fn setup() -> (tempfile::TempDir, ServerLayout, BackupId) {
        let home = tempfile::tempdir().expect("tempdir");
        let layout = ServerLayout::default_for(home.path(), "pg");
        layout.ensure_dirs().expect("dirs");
        (home, layout, BackupId::new("20261121T220257").expect("id"))
    }

    #[test]
    fn keep_writes_what_barman_writes() {
        let (_home, layout, id) = setup();
        keep(&layout, &id, KeepTarget::Standalone).expect("keep");
        assert_eq!(fs::read(layout.annotation_path(&id, "keep")).expect("read"), REAL_KEEP);
        keep(&layout, &id, KeepTarget::Full).expect("keep full");
        assert_eq!(fs::read(layout.annotation_path(&id, "keep")).expect("read"), b"full");
        assert_eq!(keep_target(&layout, &id).expect("target"), Some(KeepTarget::Full));
    }

    #[test]
    fn reads_a_real_keep_file_and_releases_it() {
        let (_home, layout, id) = setup();
        fs::write(layout.annotation_path(&id, "keep"), REAL_KEEP).expect("write");
        fs::write(layout.meta_dir().join("other-backup.info"), "").expect("write");
        assert_eq!(keep_target(&layout, &id).expect("target"), Some(KeepTarget::Standalone));
        assert!(is_kept(&layout, &id).expect("kept"));
        release_keep(&layout, &id).expect("release");
        assert!(!is_kept(&layout, &id).expect("kept"));
        assert!(layout.meta_dir().is_dir(), "meta/ not empty, kept");
        release_keep(&layout, &id).expect("releasing twice is fine");
    }

    #[test]
    fn delete_removes_an_empty_meta_dir_like_barman() {
        let (_home, layout, id) = setup();
        mark_for_deletion(&layout, &id).expect("mark");
        assert_eq!(fs::read(layout.annotation_path(&id, DELETE_KEY)).expect("read"), b"delete");
        assert!(is_marked_for_deletion(&layout, &id).expect("marked"));
        clear_deletion_mark(&layout, &id).expect("clear");
        assert!(!layout.meta_dir().exists());
        keep(&layout, &id, KeepTarget::Full).expect("put recreates meta/");
    }

    #[test]
    fn legacy_annotation_moves_into_meta() {
        let (_home, layout, id) = setup();
        let old = layout.legacy_annotation_path(&id, "keep");
        fs::create_dir_all(old.parent().expect("parent")).expect("mkdir");
        fs::write(&old, "full").expect("write");
        assert_eq!(keep_target(&layout, &id).expect("target"), Some(KeepTarget::Full));
        assert!(!old.exists());
        assert_eq!(fs::read(layout.annotation_path(&id, "keep")).expect("read"), b"full");
    }

    #[test]
    fn garbage_keep_content_is_an_error_but_still_kept() {
        let (_home, layout, id) = setup();
        put_annotation(&layout, &id, KEEP_KEY, "forever").expect("put");
        assert!(is_kept(&layout, &id).expect("kept"));
        assert!(keep_target(&layout, &id).is_err());
    }
}
