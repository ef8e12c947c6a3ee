//! Writes streamed WAL exactly as pg_receivewal does: `NAME.partial`, pre-zeroed to the
//! segment size, overwritten from offset 0, fsynced and renamed to `NAME` once the whole
//! segment arrived; an incomplete segment stays `.partial` (fsynced) when streaming stops.
//! With `-Z gzip` / `-Z lz4`: `NAME.gz.partial` / `NAME.lz4.partial`, not padded, one
//! compressed stream flushed at each fsync, finished and renamed to `NAME.gz` / `NAME.lz4`
//! (an interrupted one is finished too, and restarted from scratch on resume, as
//! pg_receivewal restarts a compressed `.partial` segment).

use std::fs::{File, OpenOptions};

use flate2::write::GzEncoder;
use lz4_flex::frame::FrameEncoder;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use barman_common::durable::fsync_dir;
use barman_common::wal::{Lsn, SegNo, TimelineId, WalFileName, WalSegSize};

use crate::error::ToolError;

/// Zero-fill chunk, as pg_receivewal's `XLOG_BLCKSZ` writes.
const PAD_CHUNK: usize = 8192;

/// Whether every byte of the file is zero (a `.partial` torn while it was being padded).
fn all_zeros(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

/// `-Z`: how segments are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WalCompression {
    /// Plain, pre-zeroed segments.
    #[default]
    None,
    /// gzip at this level (1-9).
    Gzip(u32),
    /// LZ4 frames.
    Lz4,
}

impl WalCompression {
    /// The file suffix before `.partial`: `""`, `".gz"` or `".lz4"`.
    pub fn suffix(self) -> &'static str {
        match self {
            WalCompression::None => "",
            WalCompression::Gzip(_) => ".gz",
            WalCompression::Lz4 => ".lz4",
        }
    }
}

/// Where the bytes of the open segment go.
enum Sink {
    Plain(File),
    Gzip(GzEncoder<File>),
    Lz4(FrameEncoder<File>),
}

impl Sink {
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.write_all(data),
            Sink::Gzip(g) => g.write_all(data),
            Sink::Lz4(l) => l.write_all(data),
        }
    }

    /// Pushes what the compressor holds to the file (a gzip sync flush, an LZ4 block) and
    /// fsyncs it when `sync`.
    fn flush(&mut self, sync: bool) -> std::io::Result<()> {
        let file = match self {
            Sink::Plain(f) => f,
            Sink::Gzip(g) => {
                g.flush()?;
                g.get_mut()
            }
            Sink::Lz4(l) => {
                l.flush()?;
                l.get_mut()
            }
        };
        if sync {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Ends the compressed stream; returns the file.
    fn finish(self) -> std::io::Result<File> {
        match self {
            Sink::Plain(f) => Ok(f),
            Sink::Gzip(g) => g.finish(),
            Sink::Lz4(l) => l.finish().map_err(std::io::Error::other),
        }
    }
}

struct OpenSegment {
    file: Sink,
    name: WalFileName,
    segno: SegNo,
    offset: u64,
}

/// The segment being written on one timeline.
pub struct SegmentWriter {
    dir: PathBuf,
    size: WalSegSize,
    tli: TimelineId,
    sync: bool,
    mode: u32,
    compression: WalCompression,
    current: Option<OpenSegment>,
}

impl SegmentWriter {
    /// A writer for timeline `tli` into `dir`; `sync` false skips every fsync (`--no-sync`).
    pub fn new(dir: &Path, size: WalSegSize, tli: TimelineId, sync: bool, mode: u32) -> SegmentWriter {
        SegmentWriter {
            dir: dir.to_path_buf(),
            size,
            tli,
            sync,
            mode,
            compression: WalCompression::None,
            current: None,
        }
    }

    /// Writes segments compressed as `-Z` says.
    #[must_use]
    pub fn compressed(mut self, compression: WalCompression) -> SegmentWriter {
        self.compression = compression;
        self
    }

    /// `NAME[.gz|.lz4]` once complete.
    fn final_path(&self, name: &WalFileName) -> PathBuf {
        self.dir.join(format!("{name}{}", self.compression.suffix()))
    }

    /// Whether a segment file is open.
    pub fn is_open(&self) -> bool {
        self.current.is_some()
    }

    fn partial_path(&self, name: &WalFileName) -> PathBuf {
        self.dir.join(format!("{name}{}.partial", self.compression.suffix()))
    }

    /// Writes WAL received at `start`, splitting at segment boundaries. Returns the LSN of
    /// the end of the last segment completed by this write, if any.
    pub fn write(&mut self, start: Lsn, mut data: &[u8]) -> Result<Option<Lsn>, ToolError> {
        let seg = u64::from(self.size.bytes());
        let mut pos = start.as_u64();
        let mut completed = None;
        while !data.is_empty() {
            let offset = pos % seg;
            self.ensure_open(SegNo(pos / seg), offset)?;
            let current = self.current.as_mut().expect("ensure_open opened a segment");
            let n = data.len().min((seg - offset) as usize);
            current.file.write_all(&data[..n]).map_err(|e| self.io_error("could not write to", e))?;
            let current = self.current.as_mut().expect("still open");
            current.offset += n as u64;
            pos += n as u64;
            data = &data[n..];
            if current.offset == seg {
                self.close_complete()?;
                completed = Some(Lsn::new(pos));
            }
        }
        Ok(completed)
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> ToolError {
        let name = self.current.as_ref().map(|c| self.partial_path(&c.name)).unwrap_or_default();
        ToolError::io_at(format!("{what} file \"{}\"", name.display()))(e)
    }

    fn ensure_open(&mut self, segno: SegNo, offset: u64) -> Result<(), ToolError> {
        match &self.current {
            Some(c) if c.segno == segno && c.offset == offset => Ok(()),
            Some(c) => Err(ToolError::Stream(format!("got WAL data offset {offset:08x}, expected {:08x}", c.offset))),
            None if offset != 0 => {
                Err(ToolError::Stream(format!("received write-ahead log record for offset {offset} with no file open")))
            }
            None => self.open(segno),
        }
    }

    /// Opens `NAME.partial`: an existing full-size file is reused (fsynced first) and
    /// overwritten from 0, an empty or new one is zero-filled to the segment size.
    fn open(&mut self, segno: SegNo) -> Result<(), ToolError> {
        let name = WalFileName::segment(self.tli, segno, self.size);
        let path = self.partial_path(&name);
        if self.compression != WalCompression::None {
            // A compressed segment is written from its start in one stream; a leftover
            // `.partial` of an interrupted run is replaced.
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(self.mode)
                .open(&path)
                .map_err(ToolError::io_at(format!("could not open file \"{}\"", path.display())))?;
            if self.sync {
                fsync_dir(&self.dir).map_err(ToolError::Io)?;
            }
            let sink = match self.compression {
                WalCompression::Gzip(level) => Sink::Gzip(GzEncoder::new(file, flate2::Compression::new(level))),
                WalCompression::Lz4 => Sink::Lz4(FrameEncoder::new(file)),
                WalCompression::None => Sink::Plain(file),
            };
            self.current = Some(OpenSegment { file: sink, name, segno, offset: 0 });
            return Ok(());
        }
        let seg = u64::from(self.size.bytes());
        let io = |what: &str, e: std::io::Error| ToolError::io_at(format!("{what} \"{}\"", path.display()))(e);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io("could not stat file", e)),
        };
        if len != seg {
            // Empty, absent, or torn by a crash while it was being padded (all zeros): pad a
            // hidden temporary file and rename it into place, so that no instant of a crash
            // leaves a `.partial` this streamer cannot resume from. Anything else is refused.
            if len != 0 && !all_zeros(&path).map_err(|e| io("could not read file", e))? {
                return Err(ToolError::directory(format!(
                    "write-ahead log file \"{}\" has {len} bytes, should be 0 or {seg}",
                    path.display()
                )));
            }
            self.pad_into_place(&name, &path)?;
        }
        let mut file =
            OpenOptions::new().read(true).write(true).open(&path).map_err(|e| io("could not open file", e))?;
        if len == seg && self.sync {
            file.sync_all().map_err(|e| io("could not fsync existing write-ahead log file", e))?;
        }
        file.seek(SeekFrom::Start(0)).map_err(|e| io("could not seek to beginning of file", e))?;
        self.current = Some(OpenSegment { file: Sink::Plain(file), name, segno, offset: 0 });
        Ok(())
    }

    /// Zero-fills `.<NAME>.partial.pad` to the segment size, fsyncs it and renames it to
    /// `path` (the directory fsynced too): the final name only ever shows a full-size file.
    fn pad_into_place(&self, name: &WalFileName, path: &Path) -> Result<(), ToolError> {
        let temp = self.dir.join(format!(".{name}.partial.pad"));
        let io = |what: &str, e: std::io::Error| ToolError::io_at(format!("{what} \"{}\"", temp.display()))(e);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(self.mode)
            .open(&temp)
            .map_err(|e| io("could not open file", e))?;
        let zeros = [0u8; PAD_CHUNK];
        for _ in 0..u64::from(self.size.bytes()) / PAD_CHUNK as u64 {
            file.write_all(&zeros).map_err(|e| io("could not pad file", e))?;
        }
        if self.sync {
            file.sync_all().map_err(|e| io("could not fsync file", e))?;
        }
        std::fs::rename(&temp, path).map_err(|e| io("could not rename file", e))?;
        if self.sync {
            fsync_dir(&self.dir).map_err(|e| io("could not fsync directory of", e))?;
        }
        Ok(())
    }

    /// Fsyncs the open segment (the flush position becomes the write position).
    pub fn flush(&mut self) -> Result<(), ToolError> {
        let sync = self.sync;
        let result = match self.current.as_mut() {
            Some(c) if sync => c.file.flush(true),
            _ => Ok(()),
        };
        result.map_err(|e| self.io_error("could not fsync", e))
    }

    fn close_complete(&mut self) -> Result<(), ToolError> {
        let current = self.current.take().expect("a segment is open");
        let from = self.partial_path(&current.name);
        let to = self.final_path(&current.name);
        let io = |what: &str, e: std::io::Error| ToolError::io_at(format!("{what} \"{}\"", from.display()))(e);
        let file = current.file.finish().map_err(|e| io("could not close file", e))?;
        if self.sync {
            file.sync_all().map_err(|e| io("could not fsync file", e))?;
        }
        drop(file);
        std::fs::rename(&from, &to).map_err(|e| io("could not rename file", e))?;
        if self.sync {
            fsync_dir(&self.dir).map_err(|e| io("could not fsync directory of", e))?;
        }
        tracing::info!("finished segment {} (timeline {})", current.name, self.tli);
        Ok(())
    }

    /// Closes an incomplete segment, leaving it `.partial` (fsynced with its directory).
    pub fn close_partial(&mut self) -> Result<(), ToolError> {
        if let Some(current) = self.current.take() {
            let file = current.file.finish().map_err(ToolError::Io)?;
            if self.sync {
                file.sync_all().map_err(ToolError::Io)?;
                fsync_dir(&self.dir).map_err(ToolError::Io)?;
            }
            tracing::info!(
                "not renaming \"{}{}.partial\", segment is not complete",
                current.name,
                self.compression.suffix()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 1024 * 1024;

    fn writer(dir: &Path) -> SegmentWriter {
        SegmentWriter::new(dir, WalSegSize::new(SEG).expect("1 MiB"), TimelineId::FIRST, false, 0o600)
    }

    #[test]
    fn partial_is_padded_then_renamed_when_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(dir.path());
        let start = Lsn::new(3 * SEG);
        assert_eq!(w.write(start, &[7u8; 100]).expect("write"), None);
        let partial = dir.path().join("000000010000000000000003.partial");
        assert_eq!(std::fs::metadata(&partial).expect("partial").len(), SEG);
        let rest = vec![9u8; (SEG - 100 + 10) as usize];
        assert_eq!(w.write(Lsn::new(3 * SEG + 100), &rest).expect("write"), Some(Lsn::new(4 * SEG)));
        let done = std::fs::read(dir.path().join("000000010000000000000003")).expect("complete");
        assert_eq!((done.len() as u64, done[0], done[100]), (SEG, 7, 9));
        assert!(!partial.exists());
        assert!(w.is_open(), "the next segment was opened for the 10 bytes past the boundary");
        w.close_partial().expect("close");
        let next = std::fs::read(dir.path().join("000000010000000000000004.partial")).expect("partial");
        assert_eq!((next.len() as u64, next[9], next[10]), (SEG, 9, 0));
    }

    #[test]
    fn a_partial_torn_while_padding_is_padded_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let partial = dir.path().join("000000010000000000000003.partial");
        // What a SIGKILL during pg_receivewal-style in-place padding leaves behind.
        std::fs::write(&partial, vec![0u8; 5 * PAD_CHUNK + 100]).expect("torn");
        let mut w = writer(dir.path());
        w.write(Lsn::new(3 * SEG), &[7u8; 100]).expect("resumes");
        w.close_partial().expect("close");
        let data = std::fs::read(&partial).expect("partial");
        assert_eq!((data.len() as u64, data[99], data[100]), (SEG, 7, 0));
        let leftovers: Vec<_> =
            std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(leftovers.len(), 1, "no padding temp file left: {leftovers:?}");
        // A short file holding data is not ours to discard.
        std::fs::write(&partial, [1u8; 300]).expect("short with data");
        let mut w = writer(dir.path());
        let e = w.write(Lsn::new(3 * SEG), &[7u8; 10]).expect_err("refused");
        assert!(e.to_string().contains("has 300 bytes, should be 0 or"), "{e}");
    }

    #[test]
    fn compressed_segments_decompress_to_the_stream() {
        use std::io::Read;
        for (compression, suffix) in [(WalCompression::Gzip(6), ".gz"), (WalCompression::Lz4, ".lz4")] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut w = writer(dir.path()).compressed(compression);
            let data: Vec<u8> = (0..SEG + 50).map(|i| (i % 251) as u8).collect();
            w.write(Lsn::new(2 * SEG), &data[..1000]).expect("write");
            w.flush().expect("flush");
            let partial = dir.path().join(format!("000000010000000000000002{suffix}.partial"));
            assert!(partial.exists(), "{suffix}: the compressed .partial");
            w.write(Lsn::new(2 * SEG + 1000), &data[1000..]).expect("write");
            let done = std::fs::File::open(dir.path().join(format!("000000010000000000000002{suffix}"))).expect("done");
            let mut plain = Vec::new();
            match compression {
                WalCompression::Gzip(_) => flate2::read::GzDecoder::new(done).read_to_end(&mut plain),
                _ => lz4_flex::frame::FrameDecoder::new(done).read_to_end(&mut plain),
            }
            .expect("decompress");
            assert_eq!(plain, data[..SEG as usize], "{suffix}");
            assert!(!partial.exists());
            w.close_partial().expect("close");
            let next = dir.path().join(format!("000000010000000000000003{suffix}.partial"));
            assert!(std::fs::metadata(next).expect("next partial").len() < 1000, "{suffix}: not padded");
        }
    }

    #[test]
    fn gaps_and_bad_sizes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(dir.path());
        assert!(w.write(Lsn::new(SEG + 8), b"x").is_err(), "no file open at a non-zero offset");
        w.write(Lsn::new(SEG), b"abc").expect("write");
        assert!(w.write(Lsn::new(SEG + 10), b"x").is_err(), "gap");
        std::fs::write(dir.path().join("000000010000000000000005.partial"), b"short").expect("write");
        let mut w = writer(dir.path());
        assert!(matches!(w.write(Lsn::new(5 * SEG), b"x"), Err(ToolError::Directory(_))));
    }
}
