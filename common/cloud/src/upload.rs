//! Backup archives streamed into the store as Barman's `CloudUploadController` /
//! `CloudTarUploader` write them: one tar per destination (`data`, or a tablespace oid),
//! compressed on the fly, cut into multipart chunks of `chunk_size` (the largest of twice
//! `max_archive_size / MAX_CHUNKS_PER_FILE`, the provider's minimum and `--min-chunk-size`),
//! and closed for a new `<name>_NNNN.tar...` once the archive exceeds `-S` (checked between
//! files, so a file is never split). `--max-bandwidth` spaces the parts out. An archive
//! becomes visible in the bucket only when its multipart upload completes; an abandoned one
//! is aborted when dropped.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use barman_common::compress::{Codec, Encoder, Level};
use bytes::Bytes;
use chrono::{DateTime, Local};

use crate::error::CloudError;
use crate::layout::ServerKeys;
use crate::store::{Provider, Store, Upload};

/// How archives are written.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Compression.
    pub codec: Option<Codec>,
    /// Its level.
    pub level: Level,
    /// `-S`: start a new archive past this many (compressed) bytes.
    pub max_archive_size: u64,
    /// Multipart chunk size.
    pub chunk_size: usize,
    /// `--max-bandwidth` in bytes per second.
    pub max_bandwidth: Option<u64>,
}

impl Settings {
    /// Barman's sizing rules for `provider`.
    pub fn new(
        provider: Provider,
        codec: Option<Codec>,
        max_archive_size: u64,
        min_chunk: Option<u64>,
        max_bandwidth: Option<u64>,
    ) -> Settings {
        let max_archive_size = max_archive_size.min(provider.max_archive_size());
        let calculated = 2 * (max_archive_size / provider.max_chunks_per_file());
        let chunk = calculated.max(provider.min_chunk_size()).max(min_chunk.unwrap_or(0));
        Settings {
            codec,
            level: Level::Medium,
            max_archive_size,
            chunk_size: usize::try_from(chunk).unwrap_or(usize::MAX),
            max_bandwidth,
        }
    }
}

/// Timing of one finished archive, for `copy_stats`.
#[derive(Debug, Clone)]
pub struct ArchiveStats {
    /// `data` or the tablespace oid.
    pub name: String,
    /// First part started.
    pub start: DateTime<Local>,
    /// Upload completed.
    pub end: DateTime<Local>,
    /// Time spent sending parts, summed.
    pub serialized: Duration,
    /// Compressed bytes.
    pub size: u64,
}

/// The multipart end of one archive: buffers compressed bytes into chunks. The multipart
/// upload starts with the first full chunk: an archive that fits in one chunk is stored with
/// a single PUT (one request instead of three, and the only way on a GCS emulator without
/// the XML multipart API).
struct PartSink<'s> {
    store: &'s Store,
    key: String,
    upload: Option<Upload<'s>>,
    buf: Vec<u8>,
    chunk: usize,
    size: Rc<Cell<u64>>,
    bandwidth: Option<u64>,
    last: Option<(Instant, usize)>,
    sending: Duration,
}

impl PartSink<'_> {
    fn send(&mut self) -> io::Result<()> {
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk + (64 << 10)));
        if let (Some(bw), Some((at, len))) = (self.bandwidth, self.last) {
            let due = Duration::from_secs_f64(len as f64 / bw as f64);
            if let Some(wait) = due.checked_sub(at.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        self.last = Some((Instant::now(), part.len()));
        let t = Instant::now();
        if self.upload.is_none() {
            self.upload = Some(self.store.multipart(&self.key).map_err(io::Error::other)?);
        }
        self.upload.as_mut().expect("started above").put_part(Bytes::from(part)).map_err(io::Error::other)?;
        self.sending += t.elapsed();
        Ok(())
    }

    fn finish(mut self) -> Result<Duration, CloudError> {
        let t = Instant::now();
        if self.upload.is_none() {
            let data = Bytes::from(std::mem::take(&mut self.buf));
            self.store.put(&self.key, data, None)?;
            return Ok(t.elapsed());
        }
        if !self.buf.is_empty() {
            self.send()?;
        }
        let t = Instant::now();
        self.upload.take().expect("checked above").complete()?;
        Ok(self.sending + t.elapsed())
    }
}

impl Write for PartSink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() > self.chunk {
            self.send()?;
        }
        self.buf.extend_from_slice(data);
        self.size.set(self.size.get() + data.len() as u64);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Plain or compressed bytes on their way to a [`PartSink`].
enum Sink<'s> {
    Plain(PartSink<'s>),
    Packed(Box<Encoder<PartSink<'s>>>),
}

impl Write for Sink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(s) => s.write(data),
            Sink::Packed(e) => e.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One archive being written.
struct Archive<'s> {
    tar: tar::Builder<Sink<'s>>,
    size: Rc<Cell<u64>>,
    start: DateTime<Local>,
}

impl<'s> Archive<'s> {
    fn open(store: &'s Store, key: &str, s: &Settings) -> Result<Archive<'s>, CloudError> {
        let size = Rc::new(Cell::new(0));
        let part = PartSink {
            store,
            key: key.to_owned(),
            upload: None,
            buf: Vec::new(),
            chunk: s.chunk_size,
            size: Rc::clone(&size),
            bandwidth: s.max_bandwidth,
            last: None,
            sending: Duration::ZERO,
        };
        let sink = match s.codec {
            None => Sink::Plain(part),
            Some(c) => Sink::Packed(Box::new(Encoder::new(c, s.level, part, 0)?)),
        };
        let mut tar = tar::Builder::new(sink);
        tar.follow_symlinks(false);
        Ok(Archive { tar, size, start: Local::now() })
    }

    fn close(self, name: &str) -> Result<ArchiveStats, CloudError> {
        let sink = self.tar.into_inner()?;
        let part = match sink {
            Sink::Plain(p) => p,
            Sink::Packed(e) => e.finish()?,
        };
        let serialized = part.finish()?;
        Ok(ArchiveStats {
            name: name.to_owned(),
            start: self.start,
            end: Local::now(),
            serialized,
            size: self.size.get(),
        })
    }
}

/// The archives of one backup.
pub struct Controller<'s> {
    store: &'s Store,
    keys: ServerKeys,
    id: String,
    settings: Settings,
    open: BTreeMap<String, (usize, Archive<'s>)>,
    /// Finished archives.
    pub done: Vec<ArchiveStats>,
}

impl<'s> Controller<'s> {
    /// A controller writing under `base/<id>/`.
    pub fn new(store: &'s Store, keys: ServerKeys, id: &str, settings: Settings) -> Controller<'s> {
        Controller { store, keys, id: id.to_owned(), settings, open: BTreeMap::new(), done: Vec::new() }
    }

    /// The tar of `name`, moving to the next `_NNNN` archive past `-S`.
    fn tar(&mut self, name: &str) -> Result<&mut tar::Builder<Sink<'s>>, CloudError> {
        let full = self.open.get(name).is_some_and(|(_, a)| a.size.get() > self.settings.max_archive_size);
        let next = if full {
            let (n, a) = self.open.remove(name).expect("checked above");
            self.done.push(a.close(name)?);
            Some(n + 1)
        } else if self.open.contains_key(name) {
            None
        } else {
            Some(self.done.iter().filter(|d| d.name == name).count())
        };
        if let Some(n) = next {
            let key = self.keys.archive(&self.id, name, n, self.settings.codec);
            self.open.insert(name.to_owned(), (n, Archive::open(self.store, &key, &self.settings)?));
        }
        Ok(&mut self.open.get_mut(name).expect("opened above").1.tar)
    }

    /// Adds the filesystem entry `src` as `arcname` (files read up to their size at `lstat`
    /// time, zero-padded if they shrink, as Barman's `TarFileIgnoringTruncate`). A file that
    /// vanished is skipped (WAL replay recreates it).
    pub fn add_path(&mut self, dst: &str, src: &Path, arcname: &str) -> Result<(), CloudError> {
        let md = match std::fs::symlink_metadata(src) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(CloudError::General(format!("{}: {e}", src.display()))),
        };
        let mut h = tar::Header::new_ustar();
        h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
        set_names(&mut h, &md);
        let tar = self.tar(dst)?;
        if md.is_dir() {
            h.set_size(0);
            let name = if arcname.ends_with('/') { arcname.to_owned() } else { format!("{arcname}/") };
            tar.append_data(&mut h, name, io::empty())?;
        } else if md.file_type().is_symlink() {
            let target = std::fs::read_link(src)?;
            tar.append_link(&mut h, arcname, target)?;
        } else if md.is_file() {
            let file = match File::open(src) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(CloudError::General(format!("{}: {e}", src.display()))),
            };
            let len = md.len();
            let body = file.take(len).chain(io::repeat(0)).take(len);
            tar.append_data(&mut h, arcname, body)?;
        }
        Ok(())
    }

    /// Adds `data` as a regular file `arcname` with the given mode and owner (the backup
    /// label, as Barman adds it).
    pub fn add_bytes(&mut self, dst: &str, arcname: &str, data: &[u8], mode: u32, gid: u64) -> Result<(), CloudError> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(gid);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        self.tar(dst)?.append_data(&mut h, arcname, data)?;
        Ok(())
    }

    /// Completes every open archive.
    pub fn close(mut self) -> Result<Vec<ArchiveStats>, CloudError> {
        for (name, (_, a)) in std::mem::take(&mut self.open) {
            self.done.push(a.close(&name)?);
        }
        Ok(self.done)
    }
}

fn set_names(h: &mut tar::Header, md: &std::fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(md.uid())) {
        let _ = h.set_username(&u.name);
    }
    if let Ok(Some(g)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(md.gid())) {
        let _ = h.set_groupname(&g.name);
    }
}
