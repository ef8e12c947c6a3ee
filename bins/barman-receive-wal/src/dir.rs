//! The output directory: where to resume (pg_receivewal's `FindStreamingStart`), whether the
//! files already there belong to the server's cluster, and timeline history files.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use barman_common::durable;
use barman_common::wal::{
    validate_segment_header, ExpectedSegment, Lsn, SegNo, TimelineId, WalFileKind, WalFileName, WalSegSize,
};

use crate::error::{DirectoryError, ToolError};

/// Where streaming resumes from the directory's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// Segment start to stream from.
    pub start: Lsn,
    /// Timeline taken from the file name.
    pub timeline: TimelineId,
}

/// One WAL segment file found in the directory.
struct Found {
    segno: SegNo,
    tli: TimelineId,
    partial: bool,
}

/// Splits `NAME[.gz][.partial]` into the segment name and flags (pg_receivewal's
/// `IsXLogFileName`/`IsPartialXLogFileName` with compression suffixes).
fn classify(file_name: &str) -> Option<(WalFileName, Option<Packed>, bool)> {
    let (rest, partial) = file_name.strip_suffix(".partial").map_or((file_name, false), |r| (r, true));
    let (base, gz) = if let Some(r) = rest.strip_suffix(".gz") {
        (r, Some(Packed::Gzip))
    } else if let Some(r) = rest.strip_suffix(".lz4") {
        (r, Some(Packed::Lz4))
    } else {
        (rest, None)
    };
    let upper = base.len() == 24 && base.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    let name: WalFileName = base.parse().ok().filter(|_| upper)?;
    Some((name, gz, partial))
}

/// How a segment file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packed {
    Gzip,
    Lz4,
}

/// The uncompressed size of a complete `.lz4` segment: LZ4 frames need not record it, so
/// it is counted by decompressing (as pg_receivewal does).
fn lz4_size(path: &Path) -> io::Result<u64> {
    io::copy(&mut lz4_flex::frame::FrameDecoder::new(File::open(path)?), &mut io::sink())
}

/// The uncompressed size of a complete `.gz` segment (the gzip ISIZE trailer).
fn gzip_isize(path: &Path) -> io::Result<u64> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::End(-4))?;
    let mut trailer = [0u8; 4];
    file.read_exact(&mut trailer)?;
    Ok(u64::from(u32::from_le_bytes(trailer)))
}

/// The directory `dir` cannot be read (`<what> "<dir>": <cause>`).
fn dir_io<'a>(what: &'a str, dir: &'a Path) -> impl FnOnce(io::Error) -> ToolError + 'a {
    move |source| ToolError::Directory(DirectoryError::Io { context: format!("{what} \"{}\"", dir.display()), source })
}

fn scan(dir: &Path, size: WalSegSize) -> Result<Vec<Found>, ToolError> {
    let entries = fs::read_dir(dir).map_err(dir_io("could not open directory", dir))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(dir_io("could not read directory", dir))?;
        let Some((name, gz, partial)) = entry.file_name().to_str().and_then(classify) else { continue };
        let Ok(segno) = name.segno(size) else { continue };
        if !partial {
            let path = entry.path();
            let len = match gz {
                Some(Packed::Gzip) => gzip_isize(&path).map_err(ToolError::Io)?,
                // A file that does not decompress is skipped like one of the wrong size.
                Some(Packed::Lz4) => lz4_size(&path).unwrap_or(0),
                None => entry.metadata().map(|m| m.len()).map_err(ToolError::Io)?,
            };
            if len != u64::from(size.bytes()) {
                tracing::warn!("segment file \"{}\" has incorrect size {len}, skipping", path.display());
                continue;
            }
        }
        found.push(Found { segno, tli: name.timeline(), partial });
    }
    Ok(found)
}

/// The highest segment in `dir`: a complete one resumes at the next segment, a `.partial`
/// at its own start. Ties: higher timeline, then complete over partial.
pub fn find_streaming_start(dir: &Path, size: WalSegSize) -> Result<Option<ResumePoint>, ToolError> {
    let best = scan(dir, size)?.into_iter().max_by_key(|f| (f.segno, f.tli, !f.partial));
    Ok(best.map(|f| {
        let segno = if f.partial { f.segno } else { f.segno.next() };
        ResumePoint { start: segno.start_lsn(size), timeline: f.tli }
    }))
}

/// Refuses a directory holding WAL of another cluster (or another segment size): every
/// uncompressed segment or `.partial` with data must carry `system_id` in its long page
/// header. Pre-zeroed `.partial` files that never received data are skipped.
pub fn check_same_system(dir: &Path, system_id: u64, size: WalSegSize) -> Result<(), ToolError> {
    let entries = fs::read_dir(dir).map_err(dir_io("could not open directory", dir))?;
    for entry in entries.flatten() {
        let Some((name, None, _)) = entry.file_name().to_str().and_then(classify) else { continue };
        let mut header = Vec::with_capacity(40);
        File::open(entry.path()).and_then(|f| f.take(40).read_to_end(&mut header)).map_err(ToolError::Io)?;
        if header.iter().all(|&b| b == 0) {
            continue;
        }
        let expected =
            ExpectedSegment { name: &name, system_id: Some(system_id), seg_size: Some(size), file_len: None };
        validate_segment_header(&header, &expected)
            .map_err(|source| ToolError::Directory(DirectoryError::Foreign { dir: dir.to_owned(), source }))?;
    }
    Ok(())
}

/// Whether `dir` already has the history file of `tli`.
pub fn has_history(dir: &Path, tli: TimelineId) -> bool {
    dir.join(WalFileName::history(tli).as_str()).exists()
}

/// Writes a history file received with TIMELINE_HISTORY (temp file, fsync, rename).
pub fn write_history(dir: &Path, tli: TimelineId, filename: &str, content: &[u8], mode: u32) -> Result<(), ToolError> {
    let expected = WalFileName::history(tli);
    if filename != expected.as_str() || expected.kind() != WalFileKind::History {
        return Err(ToolError::Stream(format!(
            "server reported unexpected history file name for timeline {tli}: {filename}"
        )));
    }
    durable::write_replace(&dir.join(filename), content, mode).map_err(ToolError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 * 1024 * 1024;

    fn size() -> WalSegSize {
        WalSegSize::new(SEG).expect("16 MiB")
    }

    fn touch(dir: &Path, name: &str, len: u64) {
        File::create(dir.join(name)).and_then(|f| f.set_len(len)).expect("create");
    }

    #[test]
    fn resumes_like_pg_receivewal() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(find_streaming_start(dir.path(), size()).expect("scan"), None);
        touch(dir.path(), "000000010000000000000003", SEG);
        touch(dir.path(), "000000010000000000000004", 100); // wrong size: skipped
        touch(dir.path(), "00000001.history", 10);
        let p = find_streaming_start(dir.path(), size()).expect("scan").expect("found");
        assert_eq!((p.start.to_string().as_str(), p.timeline.get()), ("0/4000000", 1));
        touch(dir.path(), "000000010000000000000005.partial", SEG);
        let p = find_streaming_start(dir.path(), size()).expect("scan").expect("found");
        assert_eq!(p.start.to_string(), "0/5000000");
        touch(dir.path(), "000000020000000000000005.partial", SEG);
        let p = find_streaming_start(dir.path(), size()).expect("scan").expect("found");
        assert_eq!((p.start.to_string().as_str(), p.timeline.get()), ("0/5000000", 2));
        touch(dir.path(), "000000020000000000000005", SEG);
        let p = find_streaming_start(dir.path(), size()).expect("scan").expect("found");
        assert_eq!((p.start.to_string().as_str(), p.timeline.get()), ("0/6000000", 2));
    }

    #[test]
    fn lower_case_and_other_names_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(dir.path(), "00000001000000000000000a", SEG);
        touch(dir.path(), "000000010000000000000009.lz4", 5);
        assert_eq!(find_streaming_start(dir.path(), size()).expect("scan"), None);
    }

    #[test]
    fn zeroed_partials_pass_the_system_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(dir.path(), "000000010000000000000005.partial", SEG);
        check_same_system(dir.path(), 42, size()).expect("zeroed partial accepted");
        fs::write(dir.path().join("000000010000000000000006.partial"), [1u8; 64]).expect("write");
        let e = check_same_system(dir.path(), 42, size()).expect_err("garbage refused");
        assert!(matches!(e, ToolError::Directory(_)), "{e}");
    }
}
