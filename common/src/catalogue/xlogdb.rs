//! xlog.db (spec §4): the WAL archive index, one `name size time compression encryption`
//! line per archived file, always accessed under the blocking `.<srv>-xlogdb.lock`.
//!
//! Lines are written with 5 TAB-separated fields and `time` in Python's float repr;
//! readers accept 3, 4 or 5 whitespace-separated fields like Barman's
//! `WalFileInfo.from_xlogdb_line`. Byte offsets of line starts are part of the contract
//! (passive nodes resume `sync-info` from them), so the file is only appended to, and
//! rewritten in place (same inode) when entries are removed or on a rebuild.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::error::CatalogueError;
use super::fsio::{create_dir_all_durable, fsync_dir, io_err, remove_optional};
use super::layout::ServerLayout;
use super::lock::{LockKind, ServerLock};
use super::pyliteral::repr_float;
use crate::wal::{WalFileKind, WalFileName};

/// One xlog.db line.
#[derive(Clone, Debug, PartialEq)]
pub struct XlogDbEntry {
    /// The archived file's name (segment, `.backup`, `.partial` or `.history`).
    pub name: WalFileName,
    /// Size of the stored (compressed/encrypted) file.
    pub size: u64,
    /// Epoch seconds: the mtime of the file when it was archived.
    pub time: f64,
    /// Compression name (`gzip`, `zstd`, ...), `None` for uncompressed.
    pub compression: Option<String>,
    /// Encryption name (`gpg`), `None` for plain.
    pub encryption: Option<String>,
}

/// Why a line is not a valid xlog.db entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XlogLineError {
    /// Not 3, 4 or 5 fields.
    #[error("cannot parse line: expected 3 to 5 fields, found {0}")]
    FieldCount(usize),
    /// The size is not an integer.
    #[error("invalid size {0:?}")]
    Size(String),
    /// The time is not a float.
    #[error("invalid time {0:?}")]
    Time(String),
    /// The name is not a WAL file name (Barman suggests `rebuild-xlogdb`).
    #[error("invalid WAL segment name {0:?} (run \"barman rebuild-xlogdb\" to fix it)")]
    Name(String),
}

impl XlogDbEntry {
    /// Parses a line (with or without its `\n`).
    pub fn parse_line(line: &str) -> Result<XlogDbEntry, XlogLineError> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !(3..=5).contains(&fields.len()) {
            return Err(XlogLineError::FieldCount(fields.len()));
        }
        let none_or = |i: usize| fields.get(i).filter(|&&f| f != "None").map(|&f| f.to_owned());
        Ok(XlogDbEntry {
            name: fields[0].parse().map_err(|_| XlogLineError::Name(fields[0].to_owned()))?,
            size: parse_size(fields[1]).ok_or_else(|| XlogLineError::Size(fields[1].to_owned()))?,
            time: fields[2].parse().map_err(|_| XlogLineError::Time(fields[2].to_owned()))?,
            compression: none_or(3),
            encryption: none_or(4),
        })
    }

    /// The 5-field line Barman 3.14+ writes, `\n` included.
    pub fn to_line(&self) -> String {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "None".to_owned());
        format!(
            "{}\t{}\t{}\t{}\t{}\n",
            self.name,
            self.size,
            repr_float(self.time),
            or_none(&self.compression),
            or_none(&self.encryption)
        )
    }

    /// An entry for a stored file: size and mtime from `stat`, formats from `sniff`
    /// (Barman's `WalFileInfo.from_file`: an encrypted file gets no compression).
    pub fn from_file(path: &Path, name: WalFileName, sniff: &WalSniffer<'_>) -> Result<XlogDbEntry, CatalogueError> {
        let meta = fs::metadata(path).map_err(io_err(path))?;
        let encryption = (sniff.encryption)(path);
        let compression = if encryption.is_some() { None } else { (sniff.compression)(path) };
        Ok(XlogDbEntry { name, size: meta.len(), time: python_mtime(&meta), compression, encryption })
    }
}

/// Python's `int()` for the size field.
fn parse_size(s: &str) -> Option<u64> {
    s.strip_prefix('+').unwrap_or(s).parse().ok()
}

/// `os.stat().st_mtime` exactly as CPython computes it: `sec + nsec * 1e-9` in doubles.
fn python_mtime(meta: &fs::Metadata) -> f64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime() as f64 + meta.mtime_nsec() as f64 * 1e-9
}

/// How [`XlogDb::rebuild`] identifies the format of stored files.
#[derive(Clone, Copy)]
pub struct WalSniffer<'a> {
    /// Compression name from the file's magic, or the configured `custom` fallback.
    pub compression: &'a dyn Fn(&Path) -> Option<String>,
    /// Encryption name (`gpg`), or `None`.
    pub encryption: &'a dyn Fn(&Path) -> Option<String>,
}

impl Default for WalSniffer<'static> {
    /// Built-in magic sniffing, gpg detection by the OpenPGP packet header.
    fn default() -> Self {
        WalSniffer { compression: &sniff_compression_magic, encryption: &sniff_encryption }
    }
}

/// `gpg` for a file holding an OpenPGP encrypted message (Barman's `file --brief` test).
pub fn sniff_encryption(path: &Path) -> Option<String> {
    crate::gpg::is_encrypted_file(path).ok()?.then(|| crate::gpg::Encryption::Gpg.name().to_owned())
}

/// Never reports encryption.
pub fn no_encryption(_: &Path) -> Option<String> {
    None
}

/// Barman's `identify_compression` for the built-in algorithms: the first match in
/// alphabetical registry order, so any gzip stream is `gzip`.
pub fn sniff_compression_magic(path: &Path) -> Option<String> {
    const MAGICS: [(&str, &[u8]); 6] = [
        ("bzip2", b"BZh"),
        ("gzip", b"\x1f\x8b\x08"),
        ("lz4", b"\x04\x22\x4d\x18"),
        ("snappy", b"\xff\x06\x00\x00sNaPpY"),
        ("xz", b"\xfd7zXZ\x00"),
        ("zstd", b"\x28\xb5\x2f\xfd"),
    ];
    let mut head = Vec::with_capacity(10);
    File::open(path).ok()?.take(10).read_to_end(&mut head).ok()?;
    MAGICS.iter().find(|(_, magic)| head.starts_with(magic)).map(|(name, _)| (*name).to_owned())
}

/// What [`XlogDb::rebuild`] indexed, and what it skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebuildCounts {
    /// `.history` files.
    pub history: usize,
    /// `.backup` files.
    pub backup_labels: usize,
    /// Complete segments.
    pub wal_file: usize,
    /// Barman's warning for each skipped entry (temporary, unexpected file or directory).
    pub warnings: Vec<String>,
}

impl RebuildCounts {
    /// Barman's closing message.
    pub fn message(&self, server: &str) -> String {
        format!(
            "Done rebuilding xlogdb for server {server} (history: {}, backup_labels: {}, wal_file: {})",
            self.history, self.backup_labels, self.wal_file
        )
    }
}

/// What [`XlogDb::rewrite_keeping`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RewriteOutcome {
    /// Entries dropped by the predicate, in file order.
    pub removed: Vec<XlogDbEntry>,
    /// Lines dropped because their name is not a WAL name (Barman logs an error suggesting
    /// `rebuild-xlogdb`).
    pub invalid: Vec<String>,
    /// False when the content was already what it would be rewritten to.
    pub rewritten: bool,
}

/// An open xlog.db, holding the xlogdb lock until dropped.
#[derive(Debug)]
pub struct XlogDb {
    file: File,
    path: PathBuf,
    _lock: ServerLock,
}

impl XlogDb {
    /// Takes the blocking xlogdb lock and opens the file. A missing file is created and
    /// rebuilt from `wals/` (removing a legacy `wals/xlog.db`), with the built-in sniffer.
    pub fn open(layout: &ServerLayout) -> Result<XlogDb, CatalogueError> {
        XlogDb::open_with(layout, &WalSniffer::default())
    }

    /// [`XlogDb::open`] with the sniffer used if the file has to be rebuilt.
    pub fn open_with(layout: &ServerLayout, sniff: &WalSniffer<'_>) -> Result<XlogDb, CatalogueError> {
        let lock = ServerLock::acquire(&layout.lock_directory, &layout.name, &LockKind::XlogDb)?;
        let path = layout.xlogdb_path();
        let (file, created) = open_or_create(&path)?;
        let mut db = XlogDb { file, path, _lock: lock };
        if created {
            remove_optional(&layout.legacy_xlogdb_path())?;
            db.rebuild_from_archive(layout, sniff)?;
        }
        Ok(db)
    }

    /// `barman rebuild-xlogdb`: under the lock, replaces the content with one line per
    /// stored file (spec §4.5). Takes the lock itself: a process already holding an
    /// [`XlogDb`] must call [`XlogDb::rebuild_from_archive`] instead (flock would wait on
    /// itself).
    pub fn rebuild(layout: &ServerLayout, sniff: &WalSniffer<'_>) -> Result<RebuildCounts, CatalogueError> {
        let lock = ServerLock::acquire(&layout.lock_directory, &layout.name, &LockKind::XlogDb)?;
        let path = layout.xlogdb_path();
        let (file, created) = open_or_create(&path)?;
        if created {
            remove_optional(&layout.legacy_xlogdb_path())?;
        }
        XlogDb { file, path, _lock: lock }.rebuild_from_archive(layout, sniff)
    }

    /// Up to `len` bytes at `offset` (for sync-info's "does `LAST_POSITION` still start
    /// with `LAST_WAL`" probe); fewer at the end of the file.
    pub fn probe(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, CatalogueError> {
        let mut buf = Vec::with_capacity(len);
        let io = io_err(&self.path);
        self.file.seek(SeekFrom::Start(offset)).map_err(io)?;
        (&mut self.file).take(len as u64).read_to_end(&mut buf).map_err(io_err(&self.path))?;
        Ok(buf)
    }

    /// The xlog.db path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry with the byte offset where its line starts.
    pub fn entries(&mut self) -> Result<Vec<(u64, XlogDbEntry)>, CatalogueError> {
        self.entries_from(0)
    }

    /// Entries whose line starts at or after `offset` (which must be a line start).
    pub fn entries_from(&mut self, offset: u64) -> Result<Vec<(u64, XlogDbEntry)>, CatalogueError> {
        let text = self.read_from(offset)?;
        let mut out = Vec::new();
        for (line_offset, line) in lines_with_offsets(&text, offset) {
            let entry = XlogDbEntry::parse_line(line).map_err(|e| self.line_error(line_offset, line, &e))?;
            out.push((line_offset, entry));
        }
        Ok(out)
    }

    /// Appends entries, then flushes and fsyncs before returning.
    pub fn append(&mut self, entries: &[XlogDbEntry]) -> Result<(), CatalogueError> {
        let text: String = entries.iter().map(XlogDbEntry::to_line).collect();
        let io = io_err(&self.path);
        self.file
            .seek(SeekFrom::End(0))
            .and_then(|_| self.file.write_all(text.as_bytes()))
            .and_then(|()| self.file.sync_all())
            .map_err(io)
    }

    /// Keeps the entries for which `keep` is true (spec §4.4): the kept lines, re-formatted
    /// like Barman does, replace the content in place (same inode), then fsync. Lines with
    /// an invalid name are dropped. Nothing is written if the content would not change.
    pub fn rewrite_keeping(
        &mut self,
        mut keep: impl FnMut(&XlogDbEntry) -> bool,
    ) -> Result<RewriteOutcome, CatalogueError> {
        let text = self.read_from(0)?;
        let (mut kept, mut outcome) = (String::with_capacity(text.len()), RewriteOutcome::default());
        for (offset, line) in lines_with_offsets(&text, 0) {
            match XlogDbEntry::parse_line(line) {
                Ok(entry) if keep(&entry) => kept.push_str(&entry.to_line()),
                Ok(entry) => outcome.removed.push(entry),
                Err(XlogLineError::Name(_)) => outcome.invalid.push(line.trim_end().to_owned()),
                Err(e) => return Err(self.line_error(offset, line, &e)),
            }
        }
        outcome.rewritten = kept != text;
        if outcome.rewritten {
            self.replace_content(kept.as_bytes())?;
        }
        Ok(outcome)
    }

    fn read_from(&mut self, offset: u64) -> Result<String, CatalogueError> {
        let mut bytes = Vec::new();
        let io = io_err(&self.path);
        self.file.seek(SeekFrom::Start(offset)).and_then(|_| self.file.read_to_end(&mut bytes)).map_err(io)?;
        String::from_utf8(bytes).map_err(|e| self.line_error(offset, "<not UTF-8>", &e))
    }

    pub(crate) fn replace_content(&mut self, data: &[u8]) -> Result<(), CatalogueError> {
        let io = io_err(&self.path);
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.write_all(data))
            .and_then(|()| self.file.set_len(data.len() as u64))
            .and_then(|()| self.file.sync_all())
            .map_err(io)
    }

    fn line_error(&self, offset: u64, line: &str, reason: &dyn std::fmt::Display) -> CatalogueError {
        CatalogueError::XlogDbLine {
            path: self.path.clone(),
            offset,
            line: line.trim_end().to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Rebuilds the content of this (already locked) xlog.db from `wals/` (spec §4.5).
    pub fn rebuild_from_archive(
        &mut self,
        layout: &ServerLayout,
        sniff: &WalSniffer<'_>,
    ) -> Result<RebuildCounts, CatalogueError> {
        let mut counts = RebuildCounts::default();
        let mut text = String::new();
        let skip_prefix = layout.xlogdb_file_name();
        for (name, path) in sorted_entries(&layout.wals_directory)? {
            if name.starts_with(&skip_prefix) {
                continue;
            }
            if path.is_dir() {
                index_hash_dir(&path, sniff, &mut counts, &mut text)?;
            } else {
                index_root_file(&name, &path, sniff, &mut counts, &mut text)?;
            }
        }
        self.replace_content(text.as_bytes())?;
        Ok(counts)
    }
}

fn open_or_create(path: &Path) -> Result<(File, bool), CatalogueError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    match options.open(path) {
        Ok(file) => return Ok((file, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let dir = crate::durable::parent_of(path);
    create_dir_all_durable(dir)?;
    // The WAL index is the backup user's alone, as the WAL files it lists (0600).
    let file = options.create(true).mode(0o600).open(path).map_err(io_err(path))?;
    fsync_dir(dir)?;
    Ok((file, true))
}

/// Splits into lines (the last one may lack its `\n`), each with its absolute offset.
fn lines_with_offsets(text: &str, base: u64) -> impl Iterator<Item = (u64, &str)> {
    let mut offset = base;
    text.split_inclusive('\n').map(move |line| {
        let start = offset;
        offset += line.len() as u64;
        (start, line)
    })
}

/// Directory entries sorted by name (Python's `sorted(os.listdir())`).
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, CatalogueError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
    }
    out.sort();
    Ok(out)
}

/// A hash directory: segments and `.backup` files are indexed, the rest is skipped.
#[allow(clippy::case_sensitive_file_extension_comparisons)] // Python's endswith(".tmp")
fn index_hash_dir(
    dir: &Path,
    sniff: &WalSniffer<'_>,
    counts: &mut RebuildCounts,
    text: &mut String,
) -> Result<(), CatalogueError> {
    for (name, path) in sorted_entries(dir)? {
        let display = path.display();
        if path.is_dir() {
            counts.warnings.push(format!("unexpected directory rebuilding the wal database: {display}"));
            continue;
        }
        let wal = name.parse::<WalFileName>().ok();
        match wal.as_ref().map(WalFileName::kind) {
            Some(WalFileKind::Segment) => counts.wal_file += 1,
            Some(WalFileKind::Backup { .. }) => counts.backup_labels += 1,
            _ if name.ends_with(".tmp") => {
                counts.warnings.push(format!("temporary file found rebuilding the wal database: {display}"));
                continue;
            }
            _ => {
                counts.warnings.push(format!("unexpected file rebuilding the wal database: {display}"));
                continue;
            }
        }
        let wal = wal.expect("matched a WAL kind above");
        text.push_str(&XlogDbEntry::from_file(&path, wal, sniff)?.to_line());
    }
    Ok(())
}

/// A plain file at the root of `wals/`: only history files are indexed.
fn index_root_file(
    name: &str,
    path: &Path,
    sniff: &WalSniffer<'_>,
    counts: &mut RebuildCounts,
    text: &mut String,
) -> Result<(), CatalogueError> {
    match name.parse::<WalFileName>() {
        Ok(wal) if wal.kind() == WalFileKind::History => {
            counts.history += 1;
            text.push_str(&XlogDbEntry::from_file(path, wal, sniff)?.to_line());
        }
        _ => counts.warnings.push(format!("unexpected file rebuilding the wal database: {}", path.display())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const REAL: &str = include_str!("../../tests/fixtures/barman-3.20.1/pg-xlog.db");
    const REAL_REBUILT: &str = include_str!("../../tests/fixtures/barman-3.20.1/pg-xlog.db.rebuilt");

    fn setup() -> (tempfile::TempDir, ServerLayout) {
        let home = tempfile::tempdir().expect("tempdir");
        let layout = ServerLayout::default_for(home.path(), "pg");
        layout.ensure_dirs().expect("dirs");
        (home, layout)
    }

    fn entry(line: &str) -> XlogDbEntry {
        XlogDbEntry::parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn parses_three_four_and_five_fields() {
        let e3 = entry("000000010000000000000003 16777216 1795293400.852009\n");
        assert_eq!((e3.size, e3.compression.as_deref(), e3.encryption.as_deref()), (16_777_216, None, None));
        let e4 = entry("000000010000000000000003\t16516\t1795293400.852009\tgzip");
        assert_eq!((e4.compression.as_deref(), e4.encryption.as_deref()), (Some("gzip"), None));
        let e5 = entry("00000002.history 87 1795298632.1517398 None gpg\n");
        assert_eq!((e5.compression.as_deref(), e5.encryption.as_deref()), (None, Some("gpg")));
        assert_eq!(e3.to_line(), "000000010000000000000003\t16777216\t1795293400.852009\tNone\tNone\n");
        assert_eq!(
            entry("000000010000000000000003 1 1795293400 None").to_line(),
            "000000010000000000000003\t1\t1795293400.0\tNone\tNone\n"
        );
        assert_eq!(XlogDbEntry::parse_line("a b"), Err(XlogLineError::FieldCount(2)));
        assert_eq!(XlogDbEntry::parse_line(""), Err(XlogLineError::FieldCount(0)));
        assert!(matches!(XlogDbEntry::parse_line("junk 1 1.0"), Err(XlogLineError::Name(_))));
        assert!(matches!(XlogDbEntry::parse_line("000000010000000000000003 x 1.0"), Err(XlogLineError::Size(_))));
    }

    #[test]
    fn real_file_lines_round_trip() {
        for line in REAL.split_inclusive('\n') {
            assert_eq!(entry(line).to_line(), line);
        }
    }

    #[test]
    fn entries_carry_line_offsets() {
        let (_home, layout) = setup();
        fs::write(layout.xlogdb_path(), REAL).expect("write");
        let mut db = XlogDb::open(&layout).expect("open");
        let entries = db.entries().expect("entries");
        assert_eq!(entries.len(), 10);
        let mut expected = 0;
        for ((offset, e), line) in entries.iter().zip(REAL.split_inclusive('\n')) {
            assert_eq!(*offset, expected);
            assert_eq!(e.to_line(), line);
            expected += line.len() as u64;
        }
        let (last_offset, last) = entries.last().expect("last").clone();
        assert_eq!(db.probe(last_offset, 24).expect("probe"), last.name.as_str().as_bytes());
        assert_eq!(db.probe(REAL.len() as u64 - 3, 24).expect("probe at the end"), b"ne\n");
        assert_eq!(db.entries_from(last_offset).expect("tail"), vec![(last_offset, last)]);
    }

    #[test]
    fn append_adds_synced_lines() {
        let (_home, layout) = setup();
        fs::write(layout.xlogdb_path(), "000000010000000000000003 16777216 1795293400.5\n")
            .expect("legacy 3-field line");
        let mut db = XlogDb::open(&layout).expect("open");
        let new = entry("000000010000000000000004\t16516\t1795293407.1318574\tgzip\tNone\n");
        db.append(std::slice::from_ref(&new)).expect("append");
        let entries = db.entries().expect("entries");
        assert_eq!(entries[1], (47, new));
    }

    #[test]
    fn rewrite_keeps_inode_and_reformats() {
        let (_home, layout) = setup();
        let text = "000000010000000000000002 16777216 1795293400.5\nbogus 1 1.0\n000000010000000000000003\t16516\t1795293400.852009\tgzip\tNone\n00000002.history\t87\t1795298632.1517398\tNone\tNone\n";
        fs::write(layout.xlogdb_path(), text).expect("write");
        let inode = fs::metadata(layout.xlogdb_path()).expect("stat").ino();
        let mut db = XlogDb::open(&layout).expect("open");
        let outcome = db.rewrite_keeping(|e| e.name.as_str() >= "000000010000000000000003").expect("rewrite");
        assert!(outcome.rewritten);
        assert_eq!(outcome.removed.len(), 1);
        assert_eq!(outcome.invalid, vec!["bogus 1 1.0".to_owned()]);
        let after = fs::read_to_string(layout.xlogdb_path()).expect("read");
        assert_eq!(after, "000000010000000000000003\t16516\t1795293400.852009\tgzip\tNone\n00000002.history\t87\t1795298632.1517398\tNone\tNone\n");
        assert_eq!(fs::metadata(layout.xlogdb_path()).expect("stat").ino(), inode);
        let again = db.rewrite_keeping(|_| true).expect("no-op");
        assert!(!again.rewritten && again.removed.is_empty());
    }

    #[test]
    fn open_takes_the_blocking_lock() {
        let (_home, layout) = setup();
        let db = XlogDb::open(&layout).expect("open");
        let lock_path = layout.lock_path(&LockKind::XlogDb);
        assert!(matches!(ServerLock::try_acquire(&lock_path), Err(super::super::LockError::Busy { .. })));
        drop(db);
        ServerLock::try_acquire(&lock_path).expect("released on drop");
    }

    /// Recreates the stored files of the fixture run (same names, sizes, mtimes and gzip
    /// magic), runs our rebuild, and compares with what real Barman rebuilt.
    #[test]
    fn rebuild_matches_real_barman() {
        let (_home, layout) = setup();
        for line in REAL.lines() {
            let e = entry(line);
            let path = layout.wal_path(&e.name);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            let mut data = b"\x1f\x8b\x08".to_vec();
            data.resize(e.size as usize, 0);
            fs::write(&path, data).expect("write");
            set_mtime(&path, e.time);
        }
        fs::write(layout.wals_directory.join("0000000100000000/000000010000000000000009.tmp"), "").expect("tmp");
        fs::write(layout.wals_directory.join("sync-wals.info"), "").expect("other");
        fs::write(layout.legacy_xlogdb_path(), "stale").expect("legacy");
        let counts = XlogDb::rebuild(&layout, &WalSniffer::default()).expect("rebuild");
        assert_eq!(
            counts.message("pg"),
            "Done rebuilding xlogdb for server pg (history: 1, backup_labels: 2, wal_file: 6)"
        );
        assert_eq!(counts.warnings.len(), 3, "{:?}", counts.warnings);
        assert_eq!(fs::read_to_string(layout.xlogdb_path()).expect("read"), REAL_REBUILT);
        assert!(!layout.legacy_xlogdb_path().exists(), "legacy xlog.db removed on migration");
    }

    #[test]
    fn missing_file_is_rebuilt_on_open() {
        let (_home, layout) = setup();
        let path = layout.wals_directory.join("00000002.history");
        fs::write(&path, "1\t0/3000000\tno recovery target specified\n").expect("write");
        set_mtime(&path, 1_795_298_632.151_739_8);
        let mut db = XlogDb::open(&layout).expect("open");
        let entries = db.entries().expect("entries");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].1.to_line(), "00000002.history\t41\t1795298632.1517398\tNone\tNone\n");
    }

    #[test]
    fn sniffs_builtin_magics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases: [(&[u8], Option<&str>); 7] = [
            (b"\x1f\x8b\x08\x00rest", Some("gzip")),
            (b"BZh91AY", Some("bzip2")),
            (b"\xfd7zXZ\x00\x00", Some("xz")),
            (b"\x28\xb5\x2f\xfd\x00", Some("zstd")),
            (b"\x04\x22\x4d\x18\x64", Some("lz4")),
            (b"\xff\x06\x00\x00sNaPpY\x00", Some("snappy")),
            (b"\xd1\x10\x06\x00", None),
        ];
        for (i, (data, want)) in cases.iter().enumerate() {
            let path = dir.path().join(i.to_string());
            fs::write(&path, data).expect("write");
            assert_eq!(sniff_compression_magic(&path).as_deref(), *want);
        }
    }

    /// Sets the mtime so that CPython's `st_mtime` (`sec + nsec * 1e-9`) equals `time`.
    #[allow(clippy::float_cmp)] // exact equality is the point
    fn set_mtime(path: &Path, time: f64) {
        let sec = time.trunc();
        let base = ((time - sec) * 1e9).round() as i64;
        let nsec = (base - 3..=base + 3).find(|n| sec + *n as f64 * 1e-9 == time).expect("an exact nanosecond value");
        let ts = nix::sys::time::TimeSpec::new(sec as i64, nsec);
        nix::sys::stat::utimensat(None, path, &ts, &ts, nix::sys::stat::UtimensatFlags::FollowSymlink)
            .expect("utimensat");
    }
}
