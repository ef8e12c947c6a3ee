//! Spool files: how prefetched WAL is written into the spool without fsync, and why that is
//! still safe.
//!
//! A spool file is a cache entry, never the only copy: Barman keeps the WAL, and Postgres
//! fsyncs whatever it keeps from `restore_command`. What must never happen is that Postgres
//! reads a torn file from the spool. Within one boot the page cache guarantees that a file
//! written and then renamed into place reads back complete; only a crash can leave a renamed
//! but unsynced file empty or short. So the spool records the boot it was filled in
//! (`.boot_id`, from `/proc/sys/kernel/random/boot_id`), and its files are trusted only in
//! that same boot: after a reboot the old files are dropped and fetched again. This saves
//! two fsyncs and the disk write of every prefetched segment (the file is usually gone
//! before writeback would start).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use barman_common::wal::WalFileName;

const BOOT_ID: &str = ".boot_id";
const BOOT_ID_SOURCE: &str = "/proc/sys/kernel/random/boot_id";

fn current_boot() -> Option<String> {
    let id = fs::read_to_string(BOOT_ID_SOURCE).ok()?;
    Some(id.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Whether the spool's files were written during the current boot (and so may be served).
pub fn trusted(spool: &Path) -> bool {
    match (current_boot(), fs::read_to_string(spool.join(BOOT_ID))) {
        (Some(boot), Ok(recorded)) => recorded.trim() == boot,
        _ => false,
    }
}

/// Makes the spool ready for unsynced files: when it was filled in another boot (or by
/// another tool), its WAL files are removed first, then the current boot is recorded.
pub fn claim(spool: &Path) -> io::Result<()> {
    if trusted(spool) {
        return Ok(());
    }
    let boot = current_boot().ok_or_else(|| io::Error::other(format!("cannot read {BOOT_ID_SOURCE}")))?;
    for entry in fs::read_dir(spool)?.filter_map(Result::ok) {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.parse::<WalFileName>().is_ok()) {
            fs::remove_file(entry.path())?;
        }
    }
    let tmp = spool.join(format!(".boot_id.{}", std::process::id()));
    fs::write(&tmp, boot.as_bytes())?;
    fs::rename(&tmp, spool.join(BOOT_ID))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being received into the spool under a dot-temp name; removed on drop unless
/// [`SpoolFile::publish`] renamed it into place.
#[derive(Debug)]
pub struct SpoolFile {
    file: Option<File>,
    tmp: PathBuf,
}

impl SpoolFile {
    /// Creates `.<name>.<pid>.<n>.spool` in `dir` (`O_EXCL`, mode 0600).
    pub fn create(dir: &Path, name: &str) -> io::Result<SpoolFile> {
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(format!(".{}.{}.spool", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let tmp = dir.join(tmp);
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        Ok(SpoolFile { file: Some(file), tmp })
    }

    /// The open file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is only taken by publish, which consumes self")
    }

    /// Path of the temp file.
    #[cfg(test)]
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Renames the complete file onto `dest` (replacing it), without fsync: see the module
    /// doc for why the spool may skip it.
    pub fn publish(mut self, dest: &Path) -> io::Result<()> {
        drop(self.file.take());
        fs::rename(&self.tmp, dest)
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        // After publish the temp name is gone and NotFound is expected.
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("walrestore-spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn claim_drops_files_of_another_boot() {
        let dir = scratch("claim");
        fs::write(dir.join("000000010000000000000003"), b"old").expect("write");
        fs::write(dir.join(BOOT_ID), b"some-other-boot").expect("write");
        assert!(!trusted(&dir));
        claim(&dir).expect("claim");
        assert!(trusted(&dir));
        assert!(!dir.join("000000010000000000000003").exists());
        // Once claimed, files written in this boot stay.
        let mut f = SpoolFile::create(&dir, "000000010000000000000004").expect("create");
        io::Write::write_all(f.file(), b"new").expect("write");
        f.publish(&dir.join("000000010000000000000004")).expect("publish");
        claim(&dir).expect("claim");
        assert_eq!(fs::read(dir.join("000000010000000000000004")).expect("read"), b"new");
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn unpublished_file_leaves_nothing() {
        let dir = scratch("drop");
        let f = SpoolFile::create(&dir, "000000010000000000000005").expect("create");
        let tmp = f.temp_path().to_owned();
        assert!(tmp.exists());
        drop(f);
        assert!(!tmp.exists());
        assert_eq!(fs::read_dir(&dir).expect("read_dir").count(), 0);
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
