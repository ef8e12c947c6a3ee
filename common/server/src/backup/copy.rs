//! The copy itself: the BASE_BACKUP stream into `base/<id>/` (spec `catalogue.md` 7.2,
//! `protocol.md` 5.5), as pg_basebackup lays it out for Barman:
//!
//! * plain (`-Fp --tablespace-mapping=<loc>=base/<id>/<oid>`): `base.tar` extracted into
//!   `data/`, `<oid>.tar` into `<oid>/`, `data/pg_tblspc/<oid>` a symlink to the absolute
//!   `base/<id>/<oid>`; server-compressed archives are decompressed first;
//! * tar (`-Ft`): `data/base.tar[.gz|.lz4|.zst]` and `data/<oid>.tar[...]`, compressed here
//!   or as the server compressed them, and an empty `<oid>/`.
//!
//! The manifest is `data/backup_manifest.tmp` until [`publish_manifest`] after the fsync.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use barman_common::pg::{BaseBackupEvent, BaseBackupStart, BaseBackupStream, PgError};
use barman_common::wal::{Lsn, TimelineId};
use barman_common::{compress, durable};
use bytes::{Buf, Bytes};

use super::storage::{Format, Storage};

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
        None => Err(CopyError::Unexpected(format!("unexpected archive \"{name}\""))),
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

/// What the network side hands to the writer thread.
#[derive(Debug)]
enum Msg {
    /// A new archive (its name as sent).
    Archive(String),
    /// Archive or manifest bytes.
    Data(Bytes),
    /// The manifest follows.
    Manifest,
}

/// Chunks in flight between the network and the writer (each at most 32 KiB uncompressed).
const QUEUE: usize = 128;

/// Receives the whole stream into `backup_dir` (absolute), stored as `storage` says. The
/// network side runs here; decompression, compression and file writes run on a writer
/// thread, so receiving and writing overlap.
pub async fn receive(
    stream: &mut BaseBackupStream<'_>,
    start: &BaseBackupStart,
    backup_dir: &Path,
    storage: &Storage,
    show_progress: bool,
) -> Result<Copied, CopyError> {
    let links: BTreeMap<String, PathBuf> = start
        .tablespaces
        .iter()
        .filter_map(|t| t.oid)
        .map(|oid| (format!("pg_tblspc/{oid}"), backup_dir.join(oid.to_string())))
        .collect();
    let writer = Writer { dir: backup_dir.to_path_buf(), storage: storage.clone(), links };
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let worker = std::thread::Builder::new().name("backup-writer".into()).spawn(move || writer.run(&rx))?;
    let mut progress = Progress::new(start, show_progress);
    let streamed = pump(stream, &tx, &mut progress).await;
    drop(tx);
    let written = worker.join().map_err(|_| CopyError::Unexpected("the backup writer thread panicked".into()))?;
    let Some((end_lsn, end_timeline, bytes)) = streamed? else {
        // The writer stopped first: its error is the cause.
        written?;
        return Err(CopyError::Unexpected("the backup writer stopped early".into()));
    };
    let written = written?;
    Ok(Copied { end_lsn, end_timeline, bytes, files: written.files, manifest: written.manifest })
}

/// Forwards the stream to the writer; `None` when the writer has gone away.
async fn pump(
    stream: &mut BaseBackupStream<'_>,
    tx: &mpsc::SyncSender<Msg>,
    progress: &mut Progress,
) -> Result<Option<(Lsn, TimelineId, u64)>, CopyError> {
    let mut bytes = 0u64;
    loop {
        let msg = match stream.next().await? {
            BaseBackupEvent::Archive { name, .. } => Msg::Archive(name),
            BaseBackupEvent::Data(chunk) => {
                bytes += chunk.len() as u64;
                Msg::Data(chunk)
            }
            BaseBackupEvent::Progress(_) => {
                progress.update(bytes, false);
                continue;
            }
            BaseBackupEvent::ManifestStart => Msg::Manifest,
            BaseBackupEvent::End { end_lsn, timeline } => {
                progress.update(bytes, true);
                return Ok(Some((end_lsn, timeline, bytes)));
            }
        };
        if tx.send(msg).is_err() {
            return Ok(None);
        }
    }
}

/// The data of one archive (or of the manifest) as it arrives: ends at the next
/// archive/manifest message or when the network side is done.
struct Chunks<'a> {
    rx: &'a mpsc::Receiver<Msg>,
    buf: Bytes,
    next: Option<Msg>,
    done: bool,
}

impl<'a> Chunks<'a> {
    fn new(rx: &'a mpsc::Receiver<Msg>) -> Chunks<'a> {
        Chunks { rx, buf: Bytes::new(), next: None, done: false }
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.buf.is_empty() {
            return Some(std::mem::take(&mut self.buf));
        }
        while !self.done {
            match self.rx.recv() {
                Ok(Msg::Data(chunk)) if chunk.is_empty() => {}
                Ok(Msg::Data(chunk)) => return Some(chunk),
                Ok(other) => {
                    self.next = Some(other);
                    self.done = true;
                }
                Err(_) => self.done = true,
            }
        }
        None
    }

    /// Skips what is left of this archive; returns the message that ended it.
    fn finish(mut self) -> Option<Msg> {
        while self.next_chunk().is_some() {}
        self.next
    }
}

impl Read for Chunks<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf.is_empty() {
            match self.next_chunk() {
                Some(chunk) => self.buf = chunk,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.advance(n);
        Ok(n)
    }
}

/// What the writer stored.
struct Written {
    files: u64,
    manifest: bool,
}

/// The writer thread: stores each archive as the plan says.
struct Writer {
    dir: PathBuf,
    storage: Storage,
    links: BTreeMap<String, PathBuf>,
}

impl Writer {
    fn run(self, rx: &mpsc::Receiver<Msg>) -> Result<Written, CopyError> {
        // Large files are fsynced on their own thread while the copy goes on (the disk works
        // during the transfer instead of after it); the final filesystem sync does the rest.
        let (flush_tx, flush_rx) = mpsc::channel::<File>();
        let flusher = std::thread::Builder::new().name("backup-flusher".into()).spawn(move || {
            let mut first_error = None;
            for file in flush_rx {
                if let Err(e) = file.sync_data() {
                    first_error.get_or_insert(e);
                }
            }
            first_error
        })?;
        let result = self.store_all(rx, &flush_tx);
        drop(flush_tx);
        let flushed = flusher.join().map_err(|_| CopyError::Unexpected("the backup flusher thread panicked".into()))?;
        let written = result?;
        match flushed {
            Some(e) => Err(CopyError::Io(e)),
            None => Ok(written),
        }
    }

    fn store_all(&self, rx: &mpsc::Receiver<Msg>, flush: &mpsc::Sender<File>) -> Result<Written, CopyError> {
        let mut written = Written { files: 0, manifest: false };
        fs::DirBuilder::new().recursive(true).mode(0o700).create(data_dir(&self.dir))?;
        let mut next = rx.recv().ok();
        while let Some(msg) = next {
            let mut chunks = Chunks::new(rx);
            match msg {
                Msg::Archive(name) => written.files += self.archive(&name, &mut chunks, flush)?,
                Msg::Manifest => {
                    self.manifest(&mut chunks)?;
                    written.manifest = true;
                }
                Msg::Data(_) => return Err(CopyError::Unexpected("archive data before any archive".into())),
            }
            next = chunks.finish();
        }
        Ok(written)
    }

    fn archive(&self, name: &str, chunks: &mut Chunks<'_>, flush: &mpsc::Sender<File>) -> Result<u64, CopyError> {
        let suffix = self.storage.server_suffix();
        let stem = name
            .strip_suffix(suffix)
            .filter(|s| Path::new(s).extension().is_some_and(|e| e == "tar"))
            .ok_or_else(|| {
                CopyError::Unexpected(format!(
                    "unexpected archive \"{name}\" (expected a name ending in \".tar{suffix}\")"
                ))
            })?;
        let dest = archive_dest(&self.dir, stem)?;
        match self.storage.format {
            Format::Plain => {
                let mut extractor = Extractor::new(&dest, self.links.clone())?.with_flusher(flush.clone());
                match self.storage.server {
                    None => {
                        while let Some(chunk) = chunks.next_chunk() {
                            extractor.feed(&chunk)?;
                        }
                    }
                    Some(codec) => {
                        let mut decoded = compress::decoder(codec, chunks)?;
                        extractor.feed_from(&mut decoded)?;
                    }
                }
                Ok(extractor.finish()?)
            }
            Format::Tar => {
                if stem != "base.tar" {
                    // Barman's layout keeps an empty base/<id>/<oid>/ beside the archives.
                    fs::DirBuilder::new().recursive(true).mode(0o700).create(&dest)?;
                }
                let path = data_dir(&self.dir).join(self.storage.stored_name(stem));
                let file = io::BufWriter::with_capacity(1 << 20, File::create(&path)?);
                let file = if let Some((codec, level)) = self.storage.client {
                    let mut encoder = compress::Encoder::new(codec, level, file, self.storage.client_workers)?;
                    while let Some(chunk) = chunks.next_chunk() {
                        encoder.write_all(&chunk)?;
                    }
                    encoder.finish()?
                } else {
                    let mut file = file;
                    while let Some(chunk) = chunks.next_chunk() {
                        file.write_all(&chunk)?;
                    }
                    file
                };
                let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
                let _ = flush.send(file);
                Ok(1)
            }
        }
    }

    fn manifest(&self, chunks: &mut Chunks<'_>) -> Result<(), CopyError> {
        let mut file = File::create(manifest_tmp(&self.dir))?;
        while let Some(chunk) = chunks.next_chunk() {
            file.write_all(&chunk)?;
        }
        file.sync_all()?;
        Ok(())
    }
}

/// `backup_label` of a tar-format backup, read from the start of `data/base.tar[.<ext>]`.
pub fn tar_backup_label(backup_dir: &Path, storage: &Storage) -> io::Result<String> {
    let path = data_dir(backup_dir).join(storage.stored_name("base.tar"));
    let file = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let codec = storage.server.or(storage.client.map(|(c, _)| c));
    let reader: Box<dyn Read> = match codec {
        Some(codec) => compress::decoder(codec, file)?,
        None => Box::new(io::BufReader::new(file)),
    };
    let label = barman_common::tar::read_member(reader, "backup_label", 1 << 20)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{}: no backup_label", path.display())))?;
    Ok(String::from_utf8_lossy(&label).into_owned())
}

/// Whether a manifest arrived and waits for [`publish_manifest`] (PostgreSQL 12 sends none).
pub fn manifest_pending(backup_dir: &Path) -> bool {
    manifest_tmp(backup_dir).exists()
}

/// Renames `backup_manifest.tmp` to `backup_manifest` (after everything else is durable,
/// as pg_basebackup does) and fsyncs the data directory.
pub fn publish_manifest(backup_dir: &Path) -> io::Result<()> {
    let data = data_dir(backup_dir);
    fs::rename(manifest_tmp(backup_dir), data.join("backup_manifest"))?;
    durable::fsync_dir(&data)
}

pub use barman_common::durable::{fsync_and_measure, measure, FilesystemSync, Sizes};

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
            if !old_meta.is_file() || old_meta.len() != len || !durable::same_content(&new, &old)? {
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
