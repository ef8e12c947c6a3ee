//! Timelines, segment numbers, segment sizes and the names of WAL archive files.
//!
//! Names follow PostgreSQL's `XLogFileName`, `TLHistoryFileName` and `BackupHistoryFileName`
//! (src/include/access/xlog_internal.h). Barman matches them case-insensitively, so parsing
//! accepts lower-case hex but keeps the name exactly as given.

use std::fmt;
use std::str::FromStr;

use super::Lsn;

/// A timeline id (`TimeLineID`). Timeline 0 does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimelineId(u32);

impl TimelineId {
    /// The first timeline of every cluster.
    pub const FIRST: TimelineId = TimelineId(1);

    /// A timeline id; `None` for 0, which PostgreSQL never uses.
    pub const fn new(id: u32) -> Option<TimelineId> {
        if id == 0 {
            None
        } else {
            Some(TimelineId(id))
        }
    }

    /// The numeric id.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for TimelineId {
    type Err = WalNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u32>().ok().and_then(TimelineId::new).ok_or_else(|| WalNameError::Timeline(s.to_owned()))
    }
}

/// A WAL segment number (`XLogSegNo`): the LSN divided by the segment size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegNo(pub u64);

impl SegNo {
    /// The segment holding `lsn` (as `XLByteToSeg`).
    pub fn containing(lsn: Lsn, size: WalSegSize) -> SegNo {
        SegNo(lsn.as_u64() / u64::from(size.bytes()))
    }

    /// The LSN at which this segment starts (as `XLogSegNoOffsetToRecPtr` with offset 0).
    pub fn start_lsn(self, size: WalSegSize) -> Lsn {
        Lsn::new(self.0 * u64::from(size.bytes()))
    }

    /// The next segment.
    #[must_use]
    pub fn next(self) -> SegNo {
        SegNo(self.0 + 1)
    }
}

/// A WAL segment size: a power of two from 1 MiB to 1 GiB (`IsValidWalSegSize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalSegSize(u32);

impl WalSegSize {
    /// PostgreSQL's default, 16 MiB.
    pub const DEFAULT: WalSegSize = WalSegSize(16 * 1024 * 1024);

    /// Validates a size in bytes.
    pub fn new(bytes: u64) -> Result<WalSegSize, WalNameError> {
        let valid = bytes.is_power_of_two() && (1 << 20..=1 << 30).contains(&bytes);
        if valid {
            Ok(WalSegSize(bytes as u32))
        } else {
            Err(WalNameError::SegmentSize(bytes))
        }
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u32 {
        self.0
    }

    /// Segments per 4 GiB "xlogid" (`XLogSegmentsPerXLogId`): the low part of a name runs
    /// from 0 to this minus one.
    pub const fn segments_per_xlogid(self) -> u64 {
        0x1_0000_0000 / self.0 as u64
    }
}

/// What a [`WalFileName`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WalFileKind {
    /// A complete segment, `TTTTTTTTLLLLLLLLSSSSSSSS`.
    Segment,
    /// A segment still being written by a streamer, `<segment>.partial`.
    Partial,
    /// A backup history file, `<segment>.<offset>.backup`; the offset of the backup start
    /// within the segment.
    Backup {
        /// Byte offset of the backup's start LSN within the segment.
        offset: u32,
    },
    /// A timeline history file, `TTTTTTTT.history`.
    History,
}

/// A parsed WAL archive file name. Displays as the name it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WalFileName {
    text: String,
    tli: u32,
    log: u32,
    seg: u32,
    kind_tag: u8,
    offset: u32,
}

/// Why a name, timeline or size is not a valid WAL one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalNameError {
    /// Not a segment, partial, backup or history file name.
    #[error("'{0}' is not a valid wal file name")]
    Name(String),
    /// Timeline 0 or not a number.
    #[error("invalid timeline '{0}'")]
    Timeline(String),
    /// Not a power of two between 1 MiB and 1 GiB.
    #[error("invalid WAL segment size {0}: must be a power of two between 1 MiB and 1 GiB")]
    SegmentSize(u64),
    /// A segment number past the end of its xlogid for this segment size.
    #[error("'{name}' is not a valid segment name for {size}-byte segments")]
    SegmentOutOfRange {
        /// The name.
        name: String,
        /// The segment size.
        size: u32,
    },
}

fn hex_u32(s: &str) -> Option<u32> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

impl WalFileName {
    /// The name of segment `segno` of timeline `tli` (as `XLogFileName`).
    pub fn segment(tli: TimelineId, segno: SegNo, size: WalSegSize) -> WalFileName {
        let per = size.segments_per_xlogid();
        let (log, seg) = ((segno.0 / per) as u32, (segno.0 % per) as u32);
        WalFileName::build(tli.0, log, seg, 0, 0)
    }

    /// The name of the segment holding `lsn` on timeline `tli`.
    pub fn containing(tli: TimelineId, lsn: Lsn, size: WalSegSize) -> WalFileName {
        WalFileName::segment(tli, SegNo::containing(lsn, size), size)
    }

    /// The history file of timeline `tli` (as `TLHistoryFileName`).
    pub fn history(tli: TimelineId) -> WalFileName {
        WalFileName { text: format!("{:08X}.history", tli.0), tli: tli.0, log: 0, seg: 0, kind_tag: 3, offset: 0 }
    }

    /// The backup history file for a backup starting at `start` (as `BackupHistoryFileName`).
    pub fn backup_history(tli: TimelineId, start: Lsn, size: WalSegSize) -> WalFileName {
        let seg = WalFileName::containing(tli, start, size);
        let offset = (start.as_u64() % u64::from(size.bytes())) as u32;
        WalFileName::build(seg.tli, seg.log, seg.seg, 2, offset)
    }

    fn build(tli: u32, log: u32, seg: u32, kind_tag: u8, offset: u32) -> WalFileName {
        let base = format!("{tli:08X}{log:08X}{seg:08X}");
        let text = match kind_tag {
            1 => format!("{base}.partial"),
            2 => format!("{base}.{offset:08X}.backup"),
            _ => base,
        };
        WalFileName { text, tli, log, seg, kind_tag, offset }
    }

    /// What this name is.
    pub fn kind(&self) -> WalFileKind {
        match self.kind_tag {
            0 => WalFileKind::Segment,
            1 => WalFileKind::Partial,
            2 => WalFileKind::Backup { offset: self.offset },
            _ => WalFileKind::History,
        }
    }

    /// True for a complete segment (not partial, backup or history).
    pub fn is_segment(&self) -> bool {
        self.kind_tag == 0
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The timeline in the name.
    pub fn timeline(&self) -> TimelineId {
        TimelineId(self.tli)
    }

    /// The "xlogid" (high) and segment (low) parts of a segment-based name; `(0, 0)` for
    /// history files.
    pub fn log_and_seg(&self) -> (u32, u32) {
        (self.log, self.seg)
    }

    /// The 24-character segment name this file belongs to; `None` for history files.
    pub fn segment_name(&self) -> Option<&str> {
        (self.kind_tag != 3).then(|| &self.text[..24])
    }

    /// The plain segment this file belongs to (for `.partial` and `.backup` files).
    pub fn to_segment(&self) -> Option<WalFileName> {
        (self.kind_tag != 3).then(|| WalFileName::build(self.tli, self.log, self.seg, 0, 0))
    }

    /// Barman's hash directory under `wals/`: the first 16 characters (timeline and xlogid),
    /// or `None` for history files, which live at the root of `wals/`.
    pub fn hash_dir(&self) -> Option<&str> {
        (self.kind_tag != 3).then(|| &self.text[..16])
    }

    /// The segment number, checking the low part fits the segment size.
    pub fn segno(&self, size: WalSegSize) -> Result<SegNo, WalNameError> {
        let per = size.segments_per_xlogid();
        if self.kind_tag == 3 || u64::from(self.seg) >= per {
            return Err(WalNameError::SegmentOutOfRange { name: self.text.clone(), size: size.bytes() });
        }
        Ok(SegNo(u64::from(self.log) * per + u64::from(self.seg)))
    }

    /// The first LSN of the segment this name belongs to.
    pub fn start_lsn(&self, size: WalSegSize) -> Result<Lsn, WalNameError> {
        self.segno(size).map(|s| s.start_lsn(size))
    }

    /// The segment before this one on the same timeline (`None` for the very first).
    pub fn previous_segment(&self, size: WalSegSize) -> Result<Option<WalFileName>, WalNameError> {
        let segno = self.segno(size)?;
        Ok(segno.0.checked_sub(1).map(|prev| WalFileName::segment(TimelineId(self.tli), SegNo(prev), size)))
    }

    /// The following segment on the same timeline.
    pub fn next_segment(&self, size: WalSegSize) -> Result<WalFileName, WalNameError> {
        let segno = self.segno(size)?;
        Ok(WalFileName::segment(TimelineId(self.tli), segno.next(), size))
    }
}

impl FromStr for WalFileName {
    type Err = WalNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || WalNameError::Name(s.to_owned());
        if !s.is_ascii() {
            return Err(bad());
        }
        if let Some(tli) = s.strip_suffix(".history").filter(|_| s.len() == 16) {
            let tli = hex_u32(tli).filter(|&t| t != 0).ok_or_else(bad)?;
            return Ok(WalFileName { text: s.to_owned(), tli, log: 0, seg: 0, kind_tag: 3, offset: 0 });
        }
        if s.len() < 24 {
            return Err(bad());
        }
        let (base, rest) = s.split_at(24);
        let (kind_tag, offset) = match rest {
            "" => (0, 0),
            ".partial" => (1, 0),
            _ => {
                let off = rest.strip_prefix('.').and_then(|r| r.strip_suffix(".backup"));
                (2, off.and_then(hex_u32).ok_or_else(bad)?)
            }
        };
        let part = |i: usize| hex_u32(&base[i..i + 8]).ok_or_else(bad);
        let (tli, log, seg) = (part(0)?, part(8)?, part(16)?);
        if tli == 0 {
            return Err(bad());
        }
        Ok(WalFileName { text: s.to_owned(), tli, log, seg, kind_tag, offset })
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for WalFileName {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: WalSegSize = WalSegSize::DEFAULT;

    fn tli(n: u32) -> TimelineId {
        TimelineId::new(n).expect("non-zero")
    }

    #[test]
    fn segment_names_match_xlogfilename() {
        let lsn = |s: &str| s.parse::<Lsn>().expect("lsn");
        assert_eq!(WalFileName::containing(tli(1), lsn("0/3000000"), MB16).as_str(), "000000010000000000000003");
        assert_eq!(WalFileName::containing(tli(1), lsn("1/0"), MB16).as_str(), "000000010000000100000000");
        assert_eq!(WalFileName::containing(tli(2), lsn("0/FFFFFFFF"), MB16).as_str(), "0000000200000000000000FF");
        let mb64 = WalSegSize::new(64 << 20).expect("valid");
        let last = WalFileName::segment(tli(1), SegNo(0x3F), mb64);
        assert_eq!(last.as_str(), "00000001000000000000003F");
        assert_eq!(last.next_segment(mb64).expect("next").as_str(), "000000010000000100000000");
        let gb = WalSegSize::new(1 << 30).expect("valid");
        assert_eq!(WalFileName::segment(tli(1), SegNo(5), gb).as_str(), "000000010000000100000001");
    }

    #[test]
    fn segno_round_trips_for_every_size() {
        for shift in 20..=30 {
            let size = WalSegSize::new(1 << shift).expect("valid");
            for segno in [0, 1, size.segments_per_xlogid() - 1, size.segments_per_xlogid(), 12345] {
                let name = WalFileName::segment(tli(7), SegNo(segno), size);
                let parsed: WalFileName = name.as_str().parse().expect("parse");
                assert_eq!(parsed.segno(size), Ok(SegNo(segno)));
                assert_eq!(parsed.start_lsn(size).map(Lsn::as_u64), Ok(segno << shift));
            }
        }
    }

    #[test]
    fn segment_sizes() {
        for ok in [1u64 << 20, 16 << 20, 1 << 30] {
            assert!(WalSegSize::new(ok).is_ok());
        }
        for bad in [0u64, 1 << 19, 1 << 31, 3 << 20, 16_000_000] {
            assert!(WalSegSize::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_every_kind() {
        let n: WalFileName = "000000010000000000000003".parse().expect("segment");
        assert_eq!((n.kind(), n.hash_dir()), (WalFileKind::Segment, Some("0000000100000000")));
        let p: WalFileName = "000000020000000000000005.partial".parse().expect("partial");
        assert_eq!(p.kind(), WalFileKind::Partial);
        assert_eq!(p.to_segment().map(|s| s.to_string()), Some("000000020000000000000005".into()));
        let b: WalFileName = "000000010000000000000003.00000028.backup".parse().expect("backup");
        assert_eq!(b.kind(), WalFileKind::Backup { offset: 0x28 });
        assert_eq!(b.hash_dir(), Some("0000000100000000"));
        let h: WalFileName = "00000002.history".parse().expect("history");
        assert_eq!((h.kind(), h.hash_dir(), h.timeline()), (WalFileKind::History, None, tli(2)));
        assert_eq!(WalFileName::history(tli(10)).as_str(), "0000000A.history");
        let bh = WalFileName::backup_history(tli(1), "0/A000028".parse().expect("lsn"), MB16);
        assert_eq!(bh.as_str(), "00000001000000000000000A.00000028.backup");
        let lower: WalFileName = "0000000100000000000000ab".parse().expect("lower-case");
        assert_eq!(lower.as_str(), "0000000100000000000000ab");
    }

    #[test]
    fn rejects_hostile_and_malformed_names() {
        for bad in [
            "",
            "../000000010000000000000003",
            "/etc/passwd",
            "00000001000000000000000",
            "0000000100000000000000033",
            "000000010000000000000003.partial.x",
            "00000000.history",
            "0000000G.history",
            "000000000000000000000003",
            "000000010000000000000003.0000028.backup",
            "000000010000000000000003.gz",
            "000000010000000000000003/x",
            "SHA256SUMS",
            "00000001000000000000000\u{e9}",
        ] {
            assert!(bad.parse::<WalFileName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn out_of_range_low_part_is_refused_for_the_size() {
        let n: WalFileName = "000000010000000000000100".parse().expect("syntactically fine");
        assert!(n.segno(MB16).is_err());
    }
}
