//! Per-test scratch directories and their ownership.
//!
//! A [`Scratch`] is a fresh directory `/tmp/barman-it-<name>-XXXXXX`, mode 0755 so that the
//! `postgres` and `barman` users can traverse it, removed when the last handle is dropped
//! (clusters and daemons hold a clone, so the directory outlives them whatever the drop
//! order). Set `KEEP_SCRATCH=1` to keep it for a post-mortem.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cmd::OsUser;

/// A per-test directory under /tmp; cheap to clone, removed when the last clone drops.
#[derive(Clone, Debug)]
pub struct Scratch(Arc<ScratchDir>);

#[derive(Debug)]
struct ScratchDir {
    path: PathBuf,
}

impl Scratch {
    /// Creates `/tmp/barman-it-<name>-XXXXXX` (mode 0755). `name` is shortened so that Unix
    /// socket paths inside stay under the 107-byte limit.
    pub fn new(name: &str) -> Result<Self> {
        let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(32).collect();
        let dir = tempfile::Builder::new()
            .prefix(&format!("barman-it-{name}-"))
            .tempdir_in("/tmp")
            .context("creating scratch dir under /tmp")?;
        let path = dir.keep();
        set_mode(&path, 0o755)?;
        Ok(Self(Arc::new(ScratchDir { path })))
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// `path()/rel`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.path.join(rel)
    }

    /// Creates `rel` (and parents) owned by root, mode 0755.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> Result<PathBuf> {
        let dir = self.join(rel);
        fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        set_mode(&dir, 0o755)?;
        Ok(dir)
    }

    /// Creates the directory `rel` owned by OS user `user`, mode 0755.
    pub fn mkdir_owned(&self, rel: impl AsRef<Path>, user: &str) -> Result<PathBuf> {
        self.mkdir_owned_mode(rel, user, 0o755)
    }

    /// Creates the directory `rel` owned by `user` with `mode` (0700 for a data directory).
    pub fn mkdir_owned_mode(&self, rel: impl AsRef<Path>, user: &str, mode: u32) -> Result<PathBuf> {
        let dir = self.mkdir(rel)?;
        chown(&dir, &OsUser::lookup(user)?)?;
        set_mode(&dir, mode)?;
        Ok(dir)
    }

    /// Creates a new directory `<prefix>-<n>` (first unused `n` from 1) owned by `user`.
    pub fn unique_dir(&self, prefix: &str, user: &str) -> Result<PathBuf> {
        for n in 1.. {
            let dir = self.join(format!("{prefix}-{n}"));
            match fs::create_dir(&dir) {
                Ok(()) => {
                    chown(&dir, &OsUser::lookup(user)?)?;
                    set_mode(&dir, 0o755)?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("mkdir {}", dir.display())),
            }
        }
        unreachable!("an unbounded range always yields")
    }

    /// Writes `contents` to `rel` (mode 0644, owned by root) and returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<PathBuf> {
        let file = self.join(rel);
        write_file(&file, contents, 0o644)?;
        Ok(file)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var("KEEP_SCRATCH").is_ok_and(|v| v == "1") {
            eprintln!("KEEP_SCRATCH=1: kept {}", self.path.display());
            return;
        }
        if std::thread::panicking() {
            eprintln!("removing {} (set KEEP_SCRATCH=1 to keep it)", self.path.display());
        }
        // A daemon that is still exiting may add a file while we walk: try again briefly.
        for _ in 0..5 {
            if fs::remove_dir_all(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("could not remove scratch dir {}", self.path.display());
    }
}

/// Writes `contents` to `path` with `mode`, replacing any existing file.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

/// `chmod mode path`.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// `chown user:group path` (not following symlinks).
pub fn chown(path: &Path, user: &OsUser) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .with_context(|| format!("chown {} {}", user.name, path.display()))
}

/// `chown -R user:group path`.
pub fn chown_recursive(path: &Path, user: &OsUser) -> Result<()> {
    chown(path, user)?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
            chown_recursive(&entry?.path(), user)?;
        }
    }
    Ok(())
}
