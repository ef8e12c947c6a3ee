//! A file of a backup in the chain read for a combine and checked against its own
//! `backup_manifest` entry on the way: it is read once, front to back, in large chunks that
//! feed the entry's checksum, and blocks are served from the current chunk. A block behind
//! the chunk (never seen with the server's sorted block lists) is read directly; the
//! checksum still covers every byte once. [`Source::finish`] reads what no block needed and
//! compares size and checksum, so a damaged file in the catalogue fails the combine by name.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::manifest::{Algorithm, FileEntry, Hasher};

use super::error::CombineError;

/// Bytes read at a time (a multiple of the block size).
pub const CHUNK: usize = 1 << 20;

/// One source file being read and verified.
pub struct Source {
    path: PathBuf,
    file: File,
    len: u64,
    entry: FileEntry,
    hasher: Hasher,
    buf: Vec<u8>,
    /// File offset of `buf[0]`; `buf` holds `[start, start + buf.len())`.
    start: u64,
}

impl Source {
    /// Opens `path`, listed in its backup's manifest as `entry`.
    pub fn open(path: &Path, entry: &FileEntry) -> Result<Source, CombineError> {
        let file = File::open(path).map_err(|e| CombineError::io(path, e))?;
        let len = file.metadata().map_err(|e| CombineError::io(path, e))?.len();
        if len != entry.size {
            return Err(CombineError::damaged(path, format!("size {len} differs from the manifest's {}", entry.size)));
        }
        Ok(Source {
            path: path.to_owned(),
            file,
            len,
            entry: entry.clone(),
            hasher: Hasher::new(entry.algorithm),
            buf: Vec::with_capacity(CHUNK),
            start: 0,
        })
    }

    fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Reads the next chunk into `buf` (false at the end of the file).
    fn advance(&mut self) -> Result<bool, CombineError> {
        let start = self.end();
        let n = (self.len - start).min(CHUNK as u64) as usize;
        if n == 0 {
            return Ok(false);
        }
        self.buf.resize(n, 0);
        self.file.read_exact_at(&mut self.buf, start).map_err(|e| CombineError::io(&self.path, e))?;
        self.hasher.update(&self.buf);
        self.start = start;
        Ok(true)
    }

    /// The next chunk of a whole-file copy, empty at the end.
    pub fn next_chunk(&mut self) -> Result<&[u8], CombineError> {
        if !self.advance()? {
            self.buf.clear();
            self.start = self.len;
        }
        Ok(&self.buf)
    }

    /// Copies `out.len()` bytes at `offset` into `out`.
    pub fn read_at(&mut self, offset: u64, out: &mut [u8]) -> Result<(), CombineError> {
        let want_end = offset + out.len() as u64;
        if want_end > self.len {
            return Err(CombineError::damaged(&self.path, format!("too short: {want_end} bytes needed")));
        }
        while want_end > self.end() && self.advance()? {}
        if offset >= self.start && want_end <= self.end() {
            let at = (offset - self.start) as usize;
            out.copy_from_slice(&self.buf[at..at + out.len()]);
            return Ok(());
        }
        self.file.read_exact_at(out, offset).map_err(|e| CombineError::io(&self.path, e))
    }

    /// Reads the rest and checks the file against its manifest entry.
    pub fn finish(mut self) -> Result<(), CombineError> {
        while self.advance()? {}
        if self.entry.algorithm == Algorithm::None {
            return Ok(());
        }
        let sum = self.hasher.finish();
        if sum == self.entry.checksum {
            Ok(())
        } else {
            Err(CombineError::damaged(
                &self.path,
                format!("checksum {sum} differs from the manifest's {}", self.entry.checksum),
            ))
        }
    }
}
