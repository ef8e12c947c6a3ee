//! Validation of a WAL segment's first page (the long page header, `XLogLongPageHeaderData`
//! in src/include/access/xlog_internal.h).
//!
//! This is what catches a segment from another cluster (system identifier), a segment of a
//! cluster with another segment size, a renamed or recycled segment (page address) and a
//! truncated transfer (length), before it is accepted into an archive.

use std::io::{self, Read};

use super::{Lsn, WalFileName, WalSegSize};

/// `XLP_LONG_HEADER`: the page starts with a long header (first page of a segment).
const XLP_LONG_HEADER: u16 = 0x0002;
/// Size of the long header in bytes.
pub const LONG_HEADER_LEN: usize = 40;

/// `XLOG_PAGE_MAGIC` of each PostgreSQL major we read, oldest first (from
/// src/include/access/xlog_internal.h of each release). Supporting a new major is one line
/// here: every reader of WAL headers (archiver, put-wal, receive-wal, wal-restore) asks
/// [`PgMajor::from_magic`].
const PAGE_MAGICS: [(u32, u16); 7] =
    [(12, 0xD101), (13, 0xD106), (14, 0xD10D), (15, 0xD110), (16, 0xD113), (17, 0xD116), (18, 0xD118)];

/// A PostgreSQL major version whose WAL page magic we know (see [`PAGE_MAGICS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PgMajor(u32);

impl PgMajor {
    /// The oldest major we read.
    pub const OLDEST: PgMajor = PgMajor(PAGE_MAGICS[0].0);
    /// The newest major we read.
    pub const NEWEST: PgMajor = PgMajor(PAGE_MAGICS[PAGE_MAGICS.len() - 1].0);

    /// The major version a page magic belongs to.
    pub fn from_magic(magic: u16) -> Option<PgMajor> {
        PAGE_MAGICS.iter().find(|&&(_, m)| m == magic).map(|&(major, _)| PgMajor(major))
    }

    /// Whether `magic` looks like the page magic of a major newer than [`PgMajor::NEWEST`]:
    /// PostgreSQL only ever increments it, and its high byte has been 0xD1 since 9.x.
    pub fn is_newer_magic(magic: u16) -> bool {
        let newest = PAGE_MAGICS[PAGE_MAGICS.len() - 1].1;
        magic > newest && magic & 0xFF00 == newest & 0xFF00
    }

    /// The major version number (12, 13...).
    pub fn number(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for PgMajor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The fields of a segment's long page header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongPageHeader {
    /// `xlp_magic`.
    pub magic: u16,
    /// `xlp_info` flag bits.
    pub info: u16,
    /// `xlp_tli`: timeline of the first record on the page.
    pub tli: u32,
    /// `xlp_pageaddr`: the LSN of this page.
    pub pageaddr: Lsn,
    /// `xlp_rem_len`: bytes of a record continued from the previous segment.
    pub rem_len: u32,
    /// `xlp_sysid`: the cluster's system identifier.
    pub system_id: u64,
    /// `xlp_seg_size`.
    pub seg_size: u32,
    /// `xlp_xlog_blcksz`.
    pub block_size: u32,
}

impl LongPageHeader {
    /// Decodes the first 40 bytes of a segment (little-endian, as written on x86-64 and
    /// arm64). Returns `None` when fewer than 40 bytes are given.
    pub fn parse(bytes: &[u8]) -> Option<LongPageHeader> {
        let b = bytes.get(..LONG_HEADER_LEN)?;
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        Some(LongPageHeader {
            magic: u16_at(0),
            info: u16_at(2),
            tli: u32_at(4),
            pageaddr: Lsn::new(u64_at(8)),
            rem_len: u32_at(16),
            system_id: u64_at(24),
            seg_size: u32_at(32),
            block_size: u32_at(36),
        })
    }

    /// The PostgreSQL major version, if the magic is known.
    pub fn pg_major(&self) -> Option<PgMajor> {
        PgMajor::from_magic(self.magic)
    }
}

/// What a segment must look like to be accepted.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedSegment<'a> {
    /// The name the file arrived under.
    pub name: &'a WalFileName,
    /// The cluster's system identifier, when known (from `identity.json`, IDENTIFY_SYSTEM).
    pub system_id: Option<u64>,
    /// The cluster's segment size; when `None`, the header's own value is used.
    pub seg_size: Option<WalSegSize>,
    /// The full length of the file, to detect truncation of a complete segment; `None`
    /// skips the length check (a `.partial` file or a header-only read).
    pub file_len: Option<u64>,
}

/// Why a segment is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Shorter than a long page header.
    #[error("{name}: too short to be a WAL segment ({len} bytes)")]
    TooShort {
        /// File name.
        name: String,
        /// Bytes available.
        len: u64,
    },
    /// Not a page magic of any PostgreSQL major we know.
    #[error(
        "{name}: not a WAL segment of PostgreSQL {} to {} (page magic 0x{magic:04X})",
        PgMajor::OLDEST,
        PgMajor::NEWEST
    )]
    BadMagic {
        /// File name.
        name: String,
        /// The magic found.
        magic: u16,
    },
    /// The page magic of a PostgreSQL major newer than the newest we know: the segment is
    /// probably fine, we cannot read it yet. Not a reason to quarantine it.
    #[error(
        "{name}: WAL page magic 0x{magic:04X} is from a PostgreSQL major newer than {} \
         (this version of barman-rs reads WAL of PostgreSQL {} to {})",
        PgMajor::NEWEST,
        PgMajor::OLDEST,
        PgMajor::NEWEST
    )]
    NewerMajor {
        /// File name.
        name: String,
        /// The magic found.
        magic: u16,
    },
    /// The first page does not carry a long header.
    #[error("{name}: first page has no long header (xlp_info 0x{info:04X})")]
    NotLongHeader {
        /// File name.
        name: String,
        /// The flags found.
        info: u16,
    },
    /// Another cluster's WAL.
    #[error("{name}: system identifier {found} does not match this server's {expected} (WAL from another cluster)")]
    SystemId {
        /// File name.
        name: String,
        /// Expected system id.
        expected: u64,
        /// Found system id.
        found: u64,
    },
    /// Another segment size than the cluster's.
    #[error("{name}: segment size {found} does not match the server's {expected}")]
    SegSize {
        /// File name.
        name: String,
        /// Expected size.
        expected: u32,
        /// Found size.
        found: u32,
    },
    /// The header's page address is not where the name says (renamed or recycled segment).
    #[error(
        "{name}: page address {found} does not match the file name (expected {expected}): renamed or recycled segment"
    )]
    PageAddr {
        /// File name.
        name: String,
        /// Address implied by the name.
        expected: Lsn,
        /// Address in the header.
        found: Lsn,
    },
    /// The header's timeline is newer than the name's.
    #[error("{name}: page timeline {found} is newer than the file name's timeline")]
    Timeline {
        /// File name.
        name: String,
        /// Timeline in the header.
        found: u32,
    },
    /// A complete segment shorter or longer than the segment size.
    #[error("{name}: size {len} is not the segment size {expected} (truncated transfer?)")]
    Length {
        /// File name.
        name: String,
        /// Actual length.
        len: u64,
        /// The segment size.
        expected: u32,
    },
    /// The name is not a segment name valid for the segment size.
    #[error(transparent)]
    Name(#[from] super::WalNameError),
}

/// Reads a file's first bytes for [`validate_segment_header`]: until `buf` is full or the
/// input ends (a short file gives fewer bytes, which the validation then reports); returns
/// how many were read.
pub fn read_head(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}

/// Checks a segment's first bytes (at least [`LONG_HEADER_LEN`]) against what the archive
/// expects, and returns the decoded header.
///
/// Checks, in order: length available, page magic (a known major), long-header flag, segment
/// size (against `expected.seg_size` when given, and as a valid size), system identifier,
/// page address against the name, header timeline not newer than the name's, and, when
/// `file_len` is given, that a complete segment is exactly one segment long.
/// The header's timeline may be older than the name's: the first segment of a new timeline
/// starts with records of the parent.
pub fn validate_segment_header(
    first_bytes: &[u8],
    expected: &ExpectedSegment<'_>,
) -> Result<LongPageHeader, HeaderError> {
    let name = || expected.name.to_string();
    let hdr = LongPageHeader::parse(first_bytes)
        .ok_or_else(|| HeaderError::TooShort { name: name(), len: first_bytes.len() as u64 })?;
    if hdr.pg_major().is_none() {
        if PgMajor::is_newer_magic(hdr.magic) {
            return Err(HeaderError::NewerMajor { name: name(), magic: hdr.magic });
        }
        return Err(HeaderError::BadMagic { name: name(), magic: hdr.magic });
    }
    if hdr.info & XLP_LONG_HEADER == 0 {
        return Err(HeaderError::NotLongHeader { name: name(), info: hdr.info });
    }
    let size = match expected.seg_size {
        Some(size) if size.bytes() != hdr.seg_size => {
            return Err(HeaderError::SegSize { name: name(), expected: size.bytes(), found: hdr.seg_size })
        }
        Some(size) => size,
        None => WalSegSize::new(u64::from(hdr.seg_size))?,
    };
    if let Some(sysid) = expected.system_id.filter(|&s| s != hdr.system_id) {
        return Err(HeaderError::SystemId { name: name(), expected: sysid, found: hdr.system_id });
    }
    let start = expected.name.start_lsn(size)?;
    if start != hdr.pageaddr {
        return Err(HeaderError::PageAddr { name: name(), expected: start, found: hdr.pageaddr });
    }
    if hdr.tli > expected.name.timeline().get() {
        return Err(HeaderError::Timeline { name: name(), found: hdr.tli });
    }
    match expected.file_len {
        Some(len) if expected.name.is_segment() && len != u64::from(size.bytes()) => {
            Err(HeaderError::Length { name: name(), len, expected: size.bytes() })
        }
        _ => Ok(hdr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 40 bytes of `000000010000000000000001` from a real PG15 cluster (spec).
    fn real_header() -> Vec<u8> {
        let hex =
            "10d1 0200 01000000 0000000100000000 00000000 00000000 d1008a800afe016b 00000001 00200000".replace(' ', "");
        hex::decode(hex).expect("hex")
    }

    fn name(s: &str) -> WalFileName {
        s.parse().expect("name")
    }

    #[test]
    fn decodes_the_real_pg15_header() {
        let h = LongPageHeader::parse(&real_header()).expect("40 bytes");
        assert_eq!((h.magic, h.info, h.tli), (0xD110, 2, 1));
        assert_eq!(h.pageaddr, Lsn::new(0x100_0000));
        assert_eq!(h.system_id, 7_710_723_358_094_655_697);
        assert_eq!((h.seg_size, h.block_size), (16_777_216, 8192));
        assert_eq!(h.pg_major().map(PgMajor::number), Some(15));
    }

    #[test]
    fn knows_every_major_from_12_to_18_and_names_a_newer_one() {
        let majors: Vec<u32> = [0xD101, 0xD106, 0xD10D, 0xD110, 0xD113, 0xD116, 0xD118]
            .into_iter()
            .filter_map(PgMajor::from_magic)
            .map(PgMajor::number)
            .collect();
        assert_eq!(majors, [12, 13, 14, 15, 16, 17, 18]);
        assert_eq!((PgMajor::OLDEST.number(), PgMajor::NEWEST.number()), (12, 18));
        let good = name("000000010000000000000001");
        let exp = ExpectedSegment { name: &good, system_id: None, seg_size: None, file_len: None };
        let mut pg18 = real_header();
        pg18[0] = 0x18;
        assert_eq!(validate_segment_header(&pg18, &exp).map(|h| h.pg_major()), Ok(PgMajor::from_magic(0xD118)));
        let mut pg19 = real_header();
        pg19[0] = 0x1B;
        let err = validate_segment_header(&pg19, &exp).expect_err("unknown major");
        assert!(matches!(err, HeaderError::NewerMajor { magic: 0xD11B, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "000000010000000000000001: WAL page magic 0xD11B is from a PostgreSQL major newer than 18 \
             (this version of barman-rs reads WAL of PostgreSQL 12 to 18)"
        );
        let mut garbage = real_header();
        garbage[1] = 0x42;
        assert!(matches!(validate_segment_header(&garbage, &exp), Err(HeaderError::BadMagic { .. })));
    }

    #[test]
    fn validates_and_detects_each_fault() {
        let good = name("000000010000000000000001");
        let exp = |n, sys| ExpectedSegment {
            name: n,
            system_id: sys,
            seg_size: Some(WalSegSize::DEFAULT),
            file_len: Some(16 << 20),
        };
        assert!(validate_segment_header(&real_header(), &exp(&good, Some(7_710_723_358_094_655_697))).is_ok());
        let other = validate_segment_header(&real_header(), &exp(&good, Some(1)));
        assert!(matches!(other, Err(HeaderError::SystemId { .. })), "{other:?}");
        let renamed = name("000000010000000000000002");
        assert!(matches!(
            validate_segment_header(&real_header(), &exp(&renamed, None)),
            Err(HeaderError::PageAddr { .. })
        ));
        let short = ExpectedSegment { file_len: Some(8192), ..exp(&good, None) };
        assert!(matches!(validate_segment_header(&real_header(), &short), Err(HeaderError::Length { .. })));
        assert!(matches!(
            validate_segment_header(&real_header()[..20], &exp(&good, None)),
            Err(HeaderError::TooShort { .. })
        ));
        let mut bad_magic = real_header();
        bad_magic[0] = 0;
        assert!(matches!(validate_segment_header(&bad_magic, &exp(&good, None)), Err(HeaderError::BadMagic { .. })));
        let mb64 = ExpectedSegment { seg_size: Some(WalSegSize::new(64 << 20).expect("size")), ..exp(&good, None) };
        assert!(matches!(validate_segment_header(&real_header(), &mb64), Err(HeaderError::SegSize { .. })));
        let newer_name = name("000000020000000000000001");
        assert!(
            validate_segment_header(&real_header(), &exp(&newer_name, None)).is_ok(),
            "parent tli in first segment of new timeline"
        );
    }
}
