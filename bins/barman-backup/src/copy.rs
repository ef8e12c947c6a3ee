//! The copy itself: the BASE_BACKUP stream into `base/<id>/` in plain format, as
//! `pg_basebackup -Fp --tablespace-mapping=<loc>=base/<id>/<oid>` lays it out for Barman
//! (spec `catalogue.md` 7.2, `protocol.md` 5.5): `base.tar` into `data/`, `<oid>.tar` into
//! `<oid>/`, `data/pg_tblspc/<oid>` a symlink to the absolute `base/<id>/<oid>`, and the
//! manifest as `data/backup_manifest.tmp` until [`publish_manifest`] after the fsync.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use barman_common::durable;
use barman_common::pg::{BaseBackupEvent, BaseBackupStart, BaseBackupStream, PgError};
use barman_common::wal::{Lsn, TimelineId};

use barman_common::tar::Extractor;

/// Why the copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The server or the connection failed.
    #[error(transparent)]
    Pg(#[from] PgError),
    /// Writing the backup failed (or the archive was malformed).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server sent something this plain-format copy cannot store.
    #[error("{0}")]
    Unexpected(String),
}

/// What the stream ended with.
#[derive(Debug, Clone)]
pub struct Copied {
    /// The backup end position.
    pub end_lsn: Lsn,
    /// The end timeline.
    pub end_timeline: TimelineId,
    /// Bytes of archive data received.
    pub bytes: u64,
    /// Files written.
    pub files: u64,
    /// Whether a manifest arrived (as `data/backup_manifest.tmp`).
    pub manifest: bool,
}

/// `base/<id>/data`.
pub fn data_dir(backup_dir: &Path) -> PathBuf {
    backup_dir.join("data")
}

fn manifest_tmp(backup_dir: &Path) -> PathBuf {
    data_dir(backup_dir).join("backup_manifest.tmp")
}

/// Where an archive goes: `base.tar` → `data/`, `<oid>.tar` → `<oid>/`.
fn archive_dest(backup_dir: &Path, name: &str) -> Result<PathBuf, CopyError> {
    if name == "base.tar" {
        return Ok(data_dir(backup_dir));
    }
    match name.strip_suffix(".tar").and_then(|oid| oid.parse::<u32>().ok()) {
        Some(oid) => Ok(backup_dir.join(oid.to_string())),
        None => Err(CopyError::Unexpected(format!("unexpected archive \"{name}\" (server-side compression?)"))),
    }
}

/// Prints `copied/total` on stderr about once a second, when stderr is a terminal.
struct Progress {
    total_kb: u64,
    last: Option<Instant>,
    enabled: bool,
}

impl Progress {
    fn new(start: &BaseBackupStart, enabled: bool) -> Progress {
        let total_kb = start.tablespaces.iter().filter_map(|t| t.size_kb).sum();
        Progress { total_kb, last: None, enabled: enabled && io::stderr().is_terminal() }
    }

    fn update(&mut self, bytes: u64, last: bool) {
        if !self.enabled || (!last && self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(1))) {
            return;
        }
        self.last = Some(Instant::now());
        let done = bytes / 1024;
        let pct = (done * 100).checked_div(self.total_kb).unwrap_or(0).min(100);
        eprint!("\r{done}/{} kB ({pct}%)", self.total_kb.max(done));
        if last {
            eprintln!();
        }
    }
}

/// Receives the whole stream into `backup_dir` (absolute). Tablespace `<oid>` symlinks in
/// base.tar are pointed at `backup_dir/<oid>`.
pub async fn receive(
    stream: &mut BaseBackupStream<'_>,
    start: &BaseBackupStart,
    backup_dir: &Path,
    show_progress: bool,
) -> Result<Copied, CopyError> {
    let links: BTreeMap<String, PathBuf> = start
        .tablespaces
        .iter()
        .filter_map(|t| t.oid)
        .map(|oid| (format!("pg_tblspc/{oid}"), backup_dir.join(oid.to_string())))
        .collect();
    let mut progress = Progress::new(start, show_progress);
    let mut current: Option<Extractor> = None;
    let mut manifest: Option<File> = None;
    let (mut bytes, mut files) = (0u64, 0u64);
    loop {
        match stream.next().await? {
            BaseBackupEvent::Archive { name, .. } => {
                files += finish(current.take())?;
                current = Some(Extractor::new(&archive_dest(backup_dir, &name)?, links.clone())?);
            }
            BaseBackupEvent::Data(chunk) => {
                bytes += chunk.len() as u64;
                match (&mut manifest, &mut current) {
                    (Some(m), _) => m.write_all(&chunk)?,
                    (None, Some(x)) => x.feed(&chunk)?,
                    (None, None) => return Err(CopyError::Unexpected("archive data before any archive".into())),
                }
            }
            BaseBackupEvent::Progress(_) => progress.update(bytes, false),
            BaseBackupEvent::ManifestStart => {
                files += finish(current.take())?;
                manifest = Some(File::create(manifest_tmp(backup_dir))?);
            }
            BaseBackupEvent::End { end_lsn, timeline } => {
                files += finish(current.take())?;
                if let Some(m) = manifest.as_mut() {
                    m.sync_all()?;
                }
                progress.update(bytes, true);
                return Ok(Copied { end_lsn, end_timeline: timeline, bytes, files, manifest: manifest.is_some() });
            }
        }
    }
}

fn finish(extractor: Option<Extractor>) -> io::Result<u64> {
    extractor.map_or(Ok(0), Extractor::finish)
}

/// Renames `backup_manifest.tmp` to `backup_manifest` (after everything else is durable,
/// as pg_basebackup does) and fsyncs the data directory.
pub fn publish_manifest(backup_dir: &Path) -> io::Result<()> {
    let data = data_dir(backup_dir);
    fs::rename(manifest_tmp(backup_dir), data.join("backup_manifest"))?;
    durable::fsync_dir(&data)
}

pub use barman_common::durable::{fsync_and_measure, Sizes};

/// What [`link_unchanged`] reused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reused {
    /// Files replaced by a hard link.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// `reuse_backup = link`: every regular file of `dir` whose counterpart (same relative path)
/// in `previous` has the same size and the same content becomes a hard link to it. Content
/// is compared byte for byte, never judged by mtime. Files are replaced atomically (link
/// under a temp name, then rename over the copy).
pub fn link_unchanged(dir: &Path, previous: &Path) -> io::Result<Reused> {
    let mut reused = Reused::default();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let rel_path = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(rel_path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let (new, old) = (dir.join(&rel_path), previous.join(&rel_path));
            let Ok(old_meta) = fs::symlink_metadata(&old) else { continue };
            let len = entry.metadata()?.len();
            if !old_meta.is_file() || old_meta.len() != len || !same_content(&new, &old)? {
                continue;
            }
            let tmp = new.with_file_name(format!(".{}.link", entry.file_name().to_string_lossy()));
            let _ = fs::remove_file(&tmp);
            fs::hard_link(&old, &tmp)?;
            fs::rename(&tmp, &new)?;
            reused.files += 1;
            reused.bytes += len;
        }
    }
    Ok(reused)
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_files_become_links_to_the_previous_backup() {
        use std::os::unix::fs::MetadataExt;
        let (old, new) = (tempfile::tempdir().expect("old"), tempfile::tempdir().expect("new"));
        for d in [old.path(), new.path()] {
            fs::create_dir_all(d.join("data/base")).expect("mkdir");
            fs::write(d.join("data/PG_VERSION"), b"15\n").expect("write");
        }
        fs::write(old.path().join("data/base/1"), b"same page").expect("write");
        fs::write(new.path().join("data/base/1"), b"same page").expect("write");
        fs::write(old.path().join("data/base/2"), b"old page!").expect("write");
        fs::write(new.path().join("data/base/2"), b"new page!").expect("write");
        fs::write(new.path().join("data/base/3"), b"only new").expect("write");
        let r = link_unchanged(new.path(), old.path()).expect("link");
        assert_eq!(r, Reused { files: 2, bytes: 12 });
        let ino = |p: &Path| fs::metadata(p).expect("meta").ino();
        assert_eq!(ino(&new.path().join("data/base/1")), ino(&old.path().join("data/base/1")));
        assert_ne!(
            ino(&new.path().join("data/base/2")),
            ino(&old.path().join("data/base/2")),
            "same size, other bytes"
        );
        assert_eq!(fs::read(new.path().join("data/base/2")).expect("read"), b"new page!");
    }

    #[test]
    fn archive_destinations() {
        let b = Path::new("/b/20260101T000000");
        assert_eq!(archive_dest(b, "base.tar").expect("base"), b.join("data"));
        assert_eq!(archive_dest(b, "16384.tar").expect("ts"), b.join("16384"));
        assert!(archive_dest(b, "base.tar.gz").is_err());
        assert!(archive_dest(b, "x.tar").is_err());
    }

    #[test]
    fn sizes_count_hard_links_once() {
        let dir = tempfile::tempdir().expect("tmp");
        fs::create_dir(dir.path().join("d")).expect("mkdir");
        fs::write(dir.path().join("d/a"), b"12345").expect("write");
        fs::write(dir.path().join("b"), b"123").expect("write");
        fs::hard_link(dir.path().join("b"), dir.path().join("c")).expect("link");
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("l")).expect("symlink");
        let s = fsync_and_measure(dir.path()).expect("walk");
        assert_eq!(s, Sizes { size: 11, deduplicated: 5 });
    }
}
