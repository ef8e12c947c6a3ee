//! The `INCREMENTAL.<relfile>` files of a PostgreSQL 17+ incremental backup, as the server's
//! `basebackup_incremental.c` writes them and `pg_combinebackup`'s `reconstruct.c` reads
//! them: a header of 32-bit native-endian words (magic `0xd3ae1f0d`, block count,
//! truncation block length, then the segment-relative block numbers), padded to a multiple of
//! `BLCKSZ` when any block follows, then the blocks in the order of the numbers.
//!
//! [`BlockMap`] is the reconstruction plan of one output file: for every block, which source
//! (newest first) holds it and at which offset, or nothing (a zero-filled block).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::error::CombineError;

/// `INCREMENTAL_MAGIC`.
pub const MAGIC: u32 = 0xd3ae_1f0d;
/// `BLCKSZ`: incremental backups exist only for the default block size here.
pub const BLOCK: u64 = 8192;
/// `RELSEG_SIZE` (1 GiB segments of 8 kB blocks): a header cannot name more.
const RELSEG_BLOCKS: u32 = 131_072;
/// What `INCREMENTAL.` prefixes to a relation file's name.
pub const PREFIX: &str = "INCREMENTAL.";

/// A parsed incremental file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Segment-relative numbers of the blocks the file carries, in file order.
    pub blocks: Vec<u32>,
    /// The relation segment's length in blocks when the backup started (shorter: truncated).
    pub truncation_blocks: u32,
    /// Where the first block starts.
    pub header_len: u64,
}

impl Header {
    /// Reads the header of `path`.
    pub fn read(path: &Path) -> Result<Header, CombineError> {
        let bad = |reason: String| CombineError::Invalid { path: path.to_owned(), reason };
        let mut file = File::open(path).map_err(|e| CombineError::io(path, e))?;
        let mut word = || -> Result<u32, CombineError> {
            let mut b = [0u8; 4];
            file.read_exact(&mut b).map_err(|e| CombineError::io(path, e))?;
            Ok(u32::from_ne_bytes(b))
        };
        let magic = word()?;
        if magic != MAGIC {
            return Err(bad(format!("bad incremental magic number (0x{magic:x} not 0x{MAGIC:x})")));
        }
        let count = word()?;
        if count > RELSEG_BLOCKS {
            return Err(bad(format!("block count {count} in excess of segment size {RELSEG_BLOCKS}")));
        }
        let truncation_blocks = word()?;
        if truncation_blocks > RELSEG_BLOCKS {
            return Err(bad(format!("truncation block length {truncation_blocks} in excess of segment size")));
        }
        let mut raw = vec![0u8; count as usize * 4];
        file.read_exact(&mut raw).map_err(|e| CombineError::io(path, e))?;
        let blocks: Vec<u32> =
            raw.chunks_exact(4).map(|c| u32::from_ne_bytes(c.try_into().expect("4-byte chunk"))).collect();
        if let Some(b) = blocks.iter().find(|&&b| b >= RELSEG_BLOCKS) {
            return Err(bad(format!("block number {b} in excess of segment size")));
        }
        let mut header_len = 12 + 4 * u64::from(count);
        if count > 0 && header_len % BLOCK != 0 {
            header_len += BLOCK - header_len % BLOCK;
        }
        Ok(Header { blocks, truncation_blocks, header_len })
    }

    /// The file's expected size: header and blocks.
    pub fn expected_size(&self) -> u64 {
        self.header_len + BLOCK * self.blocks.len() as u64
    }
}

/// Where one output block comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index of the source (0: the newest backup's incremental file).
    pub source: usize,
    /// Byte offset in that source.
    pub offset: u64,
}

/// The reconstruction plan of one relation segment, as `reconstruct_from_incremental_file`:
/// blocks of the newest incremental file first, then, going back in the chain, blocks of
/// older incremental files not found yet (below the newest truncation length), and finally
/// the blocks of the full file that ends the walk; the rest is zero-filled.
#[derive(Debug, Clone)]
pub struct BlockMap {
    /// One entry per output block.
    pub slots: Vec<Option<Slot>>,
    truncation_blocks: u32,
}

impl BlockMap {
    /// The map after the newest incremental file (source 0).
    pub fn new(newest: &Header) -> BlockMap {
        let mut len = newest.truncation_blocks;
        for &b in &newest.blocks {
            len = len.max(b + 1);
        }
        let mut map = BlockMap { slots: vec![None; len as usize], truncation_blocks: newest.truncation_blocks };
        map.add_incremental(0, newest, true);
        map
    }

    /// Blocks of an older incremental file (source `source`) not found yet.
    pub fn add_incremental(&mut self, source: usize, h: &Header, newest: bool) {
        for (i, &b) in h.blocks.iter().enumerate() {
            if (newest || b < self.truncation_blocks) && self.slots[b as usize].is_none() {
                self.slots[b as usize] = Some(Slot { source, offset: h.header_len + i as u64 * BLOCK });
            }
        }
    }

    /// Blocks of the full file (source `source`, `size` bytes) that ends the walk.
    pub fn add_full(&mut self, source: usize, size: u64) {
        let have = size / BLOCK;
        for b in 0..u64::from(self.truncation_blocks).min(have) {
            let s = &mut self.slots[b as usize];
            if s.is_none() {
                *s = Some(Slot { source, offset: b * BLOCK });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, truncation: u32, blocks: &[(u32, u8)]) -> std::path::PathBuf {
        let mut bytes = Vec::new();
        for w in [MAGIC, blocks.len() as u32, truncation] {
            bytes.extend(w.to_ne_bytes());
        }
        for (b, _) in blocks {
            bytes.extend(b.to_ne_bytes());
        }
        if !blocks.is_empty() {
            bytes.resize(BLOCK as usize, 0);
        }
        for (_, fill) in blocks {
            bytes.extend(vec![*fill; BLOCK as usize]);
        }
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn reads_headers_and_plans_like_reconstruct_c() {
        let dir = tempfile::tempdir().expect("tmp");
        let newest = Header::read(&write(dir.path(), "n", 4, &[(1, 1), (5, 2)])).expect("newest");
        assert_eq!((newest.header_len, newest.truncation_blocks, newest.expected_size()), (8192, 4, 3 * 8192));
        let older = Header::read(&write(dir.path(), "o", 6, &[(1, 3), (2, 4), (4, 5)])).expect("older");
        let empty = Header::read(&write(dir.path(), "e", 3, &[])).expect("empty");
        assert_eq!(empty.header_len, 12);
        let mut map = BlockMap::new(&newest);
        assert_eq!(map.slots.len(), 6);
        map.add_incremental(1, &older, false);
        map.add_full(2, 3 * BLOCK);
        let got: Vec<Option<(usize, u64)>> = map.slots.iter().map(|s| s.map(|s| (s.source, s.offset))).collect();
        // Block 4 of the older file lies beyond the newest truncation length: zero-filled.
        let want = [Some((2, 0)), Some((0, 8192)), Some((1, 16384)), None, None, Some((0, 16384))];
        assert_eq!(got, want);
        std::fs::write(dir.path().join("bad"), [0u8; 12]).expect("write");
        assert!(Header::read(&dir.path().join("bad")).expect_err("magic").to_string().contains("magic"));
    }
}
