//! Crash-safe file writes: temp file in the same directory, fsync, rename, fsync directory.
//!
//! A file published through this module is either absent or complete under its final name,
//! even across a power loss: the data is fsynced before the rename, and the directory after
//! it, so the rename itself is durable (see neon's `crashsafe.rs` for why each fsync matters,
//! and PostgreSQL's `durable_rename`). WAL files are never replaced: [`publish_new`] fails if
//! the target exists, using `renameat2(RENAME_NOREPLACE)` so there is no check-then-act race.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` and any missing parents, fsyncing each new directory's parent so the new
/// entries survive a crash.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    create_dir_all(parent_of(dir))?;
    match fs::create_dir(dir) {
        Ok(()) => fsync_dir(parent_of(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of replacing `to`.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    nix::fcntl::renameat2(None, from, None, to, nix::fcntl::RenameFlags::RENAME_NOREPLACE).map_err(io::Error::from)
}

/// A temporary file beside its final destination. Dropped without [`TempFile::publish`] or
/// [`TempFile::publish_new`], it is removed, so a failed or interrupted write leaves no
/// partial file under the final name (and, after a crash, only a `.tmp` dot-file).
#[derive(Debug)]
pub struct TempFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temp name used for `dest`: `.<name>.<pid>.<n>.tmp` in the same directory. The leading
/// dot keeps it out of Barman's archiver glob and the `.tmp` suffix is ignored by it.
fn temp_name(dest: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(dest.file_name().unwrap_or_default());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    parent_of(dest).join(name)
}

impl TempFile {
    /// Creates an empty temp file (mode `mode`, `O_EXCL`) in `dest`'s directory.
    pub fn create(dest: &Path, mode: u32) -> io::Result<TempFile> {
        let tmp = temp_name(dest);
        let file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        Ok(TempFile { file: Some(file), tmp, dest: dest.to_owned() })
    }

    /// The open temp file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is only taken by publish, which consumes self")
    }

    /// Path of the temp file.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Changes where the file will be published (the new place must be on the same
    /// filesystem), e.g. to divert a refused upload into an errors directory.
    pub fn retarget(&mut self, dest: &Path) {
        dest.clone_into(&mut self.dest);
    }

    /// Fsyncs the data and renames over `dest`, replacing it (for metadata files such as
    /// `backup.info`), then fsyncs the directory.
    pub fn publish(mut self) -> io::Result<()> {
        self.sync_and_close()?;
        fs::rename(&self.tmp, &self.dest)?;
        fsync_dir(parent_of(&self.dest))
    }

    /// Publishes over another destination (same filesystem), replacing it.
    pub fn publish_to(mut self, dest: &Path) -> io::Result<()> {
        self.retarget(dest);
        self.publish()
    }

    /// Fsyncs the data and renames onto `dest` only if `dest` does not exist, then fsyncs the
    /// directory. Fails with `AlreadyExists` (and removes the temp file) otherwise.
    pub fn publish_new(mut self) -> io::Result<()> {
        self.sync_and_close()?;
        rename_noreplace(&self.tmp, &self.dest)?;
        fsync_dir(parent_of(&self.dest))
    }

    fn sync_and_close(&mut self) -> io::Result<()> {
        let file = self.file.take().expect("sync_and_close runs once, from publish");
        file.sync_all()
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a successful publish the temp name no longer exists; ignoring NotFound is the
        // point. Any other error leaves a `.tmp` dot-file that readers skip.
        let _ = fs::remove_file(&self.tmp);
    }
}

/// The effective uid of this process.
pub fn current_euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Makes sure `dir` is a directory only this process's user controls: creates it (one
/// level, 0700) when missing, then refuses a symlink, a non-directory, another owner, or any
/// of the `forbidden` mode bits (0o022: others may not write; 0o077: others may not enter).
/// For state in shared places such as `/tmp` and `/var/tmp`, where another user could
/// otherwise plant files or links for us to trust.
pub fn ensure_private_dir(dir: &Path, forbidden: u32) -> Result<(), String> {
    let _ = fs::DirBuilder::new().mode(0o700).create(dir);
    let md = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if md.file_type().is_symlink() || !md.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let uid = current_euid();
    if md.uid() != uid {
        return Err(format!("{} is owned by uid {}, not {uid}", dir.display(), md.uid()));
    }
    if md.mode() & forbidden != 0 {
        return Err(format!("{} is open to other users (mode {:o})", dir.display(), md.mode() & 0o777));
    }
    Ok(())
}

/// Writes `data` to `dest` atomically and durably, replacing any previous file.
pub fn write_replace(dest: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp = TempFile::create(dest, mode)?;
    tmp.write_all(data)?;
    tmp.publish()
}

/// Writes `data` to `dest` atomically and durably; fails with `AlreadyExists` if `dest`
/// exists, leaving it untouched.
pub fn write_new(dest: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp = TempFile::create(dest, mode)?;
    tmp.write_all(data)?;
    tmp.publish_new()
}

/// Whether two files hold the same bytes: sizes first, then the contents in 1 MiB chunks
/// (a re-sent WAL file against the one already received, a file against its copy in the
/// previous backup).
pub fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            // Equal sizes when opened; a file still growing is not the same file.
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Makes everything written under `dir` (by this process or another, e.g. rsync) durable
/// with one `syncfs(2)` of its filesystem: data, inodes and directory entries, written back
/// in parallel by the kernel instead of one `fsync` per file.
pub fn sync_filesystem_of(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let handle = File::open(dir)?;
    nix::unistd::syncfs(handle.as_raw_fd()).map_err(io::Error::from)
}

/// Sizes of the copy, as Barman accounts them (spec `catalogue.md` 7.3).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Sum of `st_size` of every file.
    pub size: u64,
    /// The same, over files with one link only.
    pub deduplicated: u64,
}

/// Walks `dir` (symlinks are not followed), fsyncs every file and directory, and sums sizes.
pub fn fsync_and_measure(dir: &Path) -> io::Result<Sizes> {
    walk(dir, true)
}

/// A `syncfs` of one filesystem, armed before the writes it must cover: the kernel reports
/// a writeback error to `syncfs` only if it happened after the handle was opened.
#[derive(Debug)]
pub struct FilesystemSync(File);

impl FilesystemSync {
    /// Opens `dir` (on the filesystem to sync) now, before the writes.
    pub fn begin(dir: &Path) -> io::Result<FilesystemSync> {
        File::open(dir).map(FilesystemSync)
    }

    /// `syncfs`: everything written on that filesystem since [`FilesystemSync::begin`] is
    /// durable, or the first writeback error comes back.
    pub fn sync(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        nix::unistd::syncfs(self.0.as_raw_fd()).map_err(io::Error::from)
    }
}

/// Sizes of the files under `dir` (see [`Sizes`]), no syncing.
pub fn measure(dir: &Path) -> io::Result<Sizes> {
    walk(dir, false)
}

fn walk(dir: &Path, fsync: bool) -> io::Result<Sizes> {
    let mut sizes = Sizes::default();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            let sub = walk(&path, fsync)?;
            sizes.size += sub.size;
            sizes.deduplicated += sub.deduplicated;
        } else if meta.is_file() {
            if fsync {
                File::open(&path)?.sync_all()?;
            }
            sizes.size += meta.len();
            if meta.nlink() == 1 {
                sizes.deduplicated += meta.len();
            }
        }
    }
    if fsync {
        fsync_dir(dir)?;
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_refuse_shared_foreign_or_linked_directories() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("private-dir-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        assert!(ensure_private_dir(&base, 0o077).is_ok(), "created when missing");
        assert_eq!(fs::metadata(&base).expect("stat").permissions().mode() & 0o777, 0o700);
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(ensure_private_dir(&base, 0o022).is_ok(), "0755 has no write bit for others");
        assert!(ensure_private_dir(&base, 0o077).expect_err("0755").contains("open to other users"));
        let link = base.with_extension("link");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&base, &link).expect("symlink");
        assert!(ensure_private_dir(&link, 0o077).expect_err("link").contains("not a directory"));
        let _ = fs::remove_file(&link);
        if current_euid() == 0 {
            nix::unistd::chown(&base, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
            assert!(ensure_private_dir(&base, 0o022).expect_err("foreign").contains("owned by uid 65534"));
        }
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("000000010000000000000001");
        write_new(&dest, b"first", 0o600).expect("first write");
        let err = write_new(&dest, b"second", 0o600).expect_err("must refuse");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&dest).expect("read"), b"first");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn dropped_temp_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("x");
        {
            let mut t = TempFile::create(&dest, 0o600).expect("create");
            t.write_all(b"half").expect("write");
        }
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[test]
    fn write_replace_replaces_and_create_dir_all_nests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b/c");
        create_dir_all(&nested).expect("mkdir -p");
        let dest = nested.join("backup.info");
        write_replace(&dest, b"1", 0o644).expect("write");
        write_replace(&dest, b"2", 0o644).expect("rewrite");
        assert_eq!(fs::read(&dest).expect("read"), b"2");
    }
}
