//! File-system helpers private to the catalogue: [`crate::durable`] with the path attached
//! to errors, plus Barman's tolerant directory fsync and "absent is fine" read/remove.

use std::fs;
use std::io;
use std::path::Path;

use super::error::CatalogueError;
use crate::durable;

/// Wraps an I/O error with the path it concerns.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CatalogueError + '_ {
    move |source| CatalogueError::Io { path: path.to_path_buf(), source }
}

/// [`durable::fsync_dir`]; EINVAL (file systems that cannot sync directories) is ignored, as
/// in Barman's `fsync_dir`.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), CatalogueError> {
    match durable::fsync_dir(dir) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other.map_err(io_err(dir)),
    }
}

/// Replaces `path` with `data` durably (temp file in the same directory, fsync, rename,
/// fsync the directory) through [`crate::durable`]. Mode 0600: catalogue metadata
/// (backup.info, identity, relay state) is the backup user's alone.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), CatalogueError> {
    durable::write_replace(path, data, 0o600).map_err(io_err(path))
}

/// `mkdir -p` that fsyncs the parent of every directory it creates.
pub(crate) fn create_dir_all_durable(dir: &Path) -> Result<(), CatalogueError> {
    durable::create_dir_all(dir).map_err(io_err(dir))
}

/// Reads a file, `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, CatalogueError> {
    match fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Removes a file; `false` when it did not exist.
pub(crate) fn remove_optional(path: &Path) -> Result<bool, CatalogueError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("f");
        write_atomic(&target, b"one").expect("first");
        write_atomic(&target, b"two").expect("second");
        assert_eq!(fs::read(&target).expect("read"), b"two");
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1, "no temp file left");
    }

    #[test]
    fn creates_nested_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a/b/c");
        create_dir_all_durable(&deep).expect("mkdir");
        create_dir_all_durable(&deep).expect("idempotent");
        assert!(deep.is_dir());
    }
}
