//! A streaming extractor for the ustar archives PostgreSQL writes: the ones a PG15+ server sends in `BASE_BACKUP`
//! (spec `protocol.md` 5.4): fed chunk by chunk as the CopyData messages arrive, it creates
//! directories, files (with the archive's mode) and symlinks under one destination. Names
//! that would escape the destination are refused. `pg_tblspc/<oid>` symlinks are rewritten
//! through a caller-supplied map, as `pg_basebackup --tablespace-mapping` does.
//!
//! Nothing is ever written through a symlink: an entry whose path crosses one (a link the
//! archive itself created earlier, such as `pg_tblspc/16384` followed by
//! `pg_tblspc/16384/evil`, or one already in the destination) is refused, and files are
//! opened with `O_NOFOLLOW`, so a hostile archive cannot write outside the destination.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const BLOCK: usize = 512;

/// A file with at least this much data goes to the flusher when complete (smaller ones are
/// left to the final filesystem sync: an fsync each would cost a journal commit each).
const FLUSH_MIN: u64 = 1 << 20;

/// A large file goes to the flusher (as a cloned handle) every time this much more is written.
const FLUSH_EVERY: u64 = 64 << 20;

/// What the next bytes of the archive are.
#[derive(Debug)]
enum State {
    /// Collecting a 512-byte header.
    Header,
    /// Copying `remaining` bytes of a file, then skipping `padding`; `unflushed` bytes were
    /// written since the file last went to the flusher.
    Data { file: Option<File>, remaining: u64, padding: usize, unflushed: u64 },
    /// Skipping bytes (padding, or the data of an entry we ignore).
    Skip(u64),
}

/// One archive being extracted into `dest`.
#[derive(Debug)]
pub struct Extractor {
    dest: PathBuf,
    links: BTreeMap<String, PathBuf>,
    exclude: Vec<String>,
    header: Vec<u8>,
    state: State,
    files: u64,
    /// An all-zero header block (the end-of-archive marker) was read.
    ended: bool,
    /// Where written files go to be flushed to disk while the extraction goes on.
    flusher: Option<std::sync::mpsc::Sender<File>>,
    /// Directories under `dest` known to be real directories (not symlinks).
    checked: HashSet<PathBuf>,
}

/// A parsed ustar header.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    name: String,
    mode: u32,
    size: u64,
    kind: u8,
    link: String,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Octal (space/NUL terminated) or base-256 (first byte 0x80) numeric field.
fn number(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256).ok_or_else(|| bad("tar size overflow"))? + u64::from(b);
        }
        return Ok(value);
    }
    let text = cstr(field);
    let text = text.trim_matches([' ', '\0']);
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| bad(format!("bad tar number {text:?}")))
}

impl Header {
    fn parse(block: &[u8]) -> io::Result<Option<Header>> {
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let stored = number(&block[148..156])?;
        let sum: u64 =
            block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum();
        if stored != sum {
            return Err(bad("tar header checksum mismatch"));
        }
        let mut name = cstr(&block[0..100]);
        let prefix = if &block[257..262] == b"ustar" { cstr(&block[345..500]) } else { String::new() };
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
        Ok(Some(Header {
            name,
            mode: number(&block[100..108])? as u32,
            size: number(&block[124..136])?,
            kind: block[156],
            link: cstr(&block[157..257]),
        }))
    }
}

/// `name` as a relative path without `..`, `.` or root components (trailing `/` dropped).
fn safe_relative(name: &str) -> io::Result<PathBuf> {
    let path = Path::new(name.trim_end_matches('/'));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(bad(format!("unsafe path in archive: {name:?}"))),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad(format!("empty path in archive: {name:?}")));
    }
    Ok(out)
}

impl Extractor {
    /// An extractor into `dest` (created 0700 if missing). A symlink entry whose relative
    /// path is a key of `links` points to the mapped path instead of the archive's target.
    pub fn new(dest: &Path, links: BTreeMap<String, PathBuf>) -> io::Result<Extractor> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dest)?;
        Ok(Extractor {
            dest: dest.to_path_buf(),
            links,
            exclude: Vec::new(),
            header: Vec::with_capacity(BLOCK),
            state: State::Header,
            files: 0,
            ended: false,
            flusher: None,
            checked: HashSet::new(),
        })
    }

    /// Hands every file of 1 MiB or more (complete, and every 64 MiB while it is written) to
    /// `flusher`, a thread that `fsync`s them: the disk writes while the archive still
    /// arrives, and the final sync has little left to do.
    #[must_use]
    pub fn with_flusher(mut self, flusher: std::sync::mpsc::Sender<File>) -> Extractor {
        self.flusher = Some(flusher);
        self
    }

    /// Regular files at these relative paths are skipped (`recovery.conf`, `tablespace_map`
    /// when a recovery restores a base archive).
    #[must_use]
    pub fn excluding(mut self, names: &[&str]) -> Extractor {
        self.exclude = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// Consumes the next bytes of the archive.
    pub fn feed(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            data = match &mut self.state {
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(data.len());
                    self.header.extend_from_slice(&data[..take]);
                    if self.header.len() == BLOCK {
                        let block = std::mem::take(&mut self.header);
                        self.start_entry(&block)?;
                    }
                    &data[take..]
                }
                State::Data { file, remaining, padding, unflushed } => {
                    let take = (*remaining).min(data.len() as u64) as usize;
                    if let Some(f) = file {
                        f.write_all(&data[..take])?;
                    }
                    *remaining -= take as u64;
                    *unflushed += take as u64;
                    if *remaining == 0 {
                        let (pad, big) = (*padding as u64, *unflushed >= FLUSH_MIN);
                        if let State::Data { file: Some(f), .. } = std::mem::replace(&mut self.state, State::Skip(pad))
                        {
                            if big {
                                self.send_to_flusher(f);
                            }
                        }
                    } else if *unflushed >= FLUSH_EVERY {
                        *unflushed = 0;
                        if let Some(clone) = file.as_ref().and_then(|f| f.try_clone().ok()) {
                            self.send_to_flusher(clone);
                        }
                    }
                    &data[take..]
                }
                State::Skip(n) => {
                    let take = (*n).min(data.len() as u64) as usize;
                    *n -= take as u64;
                    if *n == 0 {
                        self.state = State::Header;
                    }
                    &data[take..]
                }
            };
        }
        if matches!(self.state, State::Skip(0)) {
            self.state = State::Header;
        }
        Ok(())
    }

    /// Consumes everything `input` yields (a decompressor, a file), in large reads.
    pub fn feed_from(&mut self, input: &mut dyn io::Read) -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match input.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.feed(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Checks that the archive is whole: not stopped inside an entry, and closed by the
    /// end-of-archive marker (a PG15 server sends it; the legacy stream gets it appended).
    /// Returns the number of files written.
    pub fn finish(self) -> io::Result<u64> {
        match self.state {
            State::Header if self.header.is_empty() => {}
            State::Skip(0) => {}
            _ => return Err(bad("archive ended in the middle of an entry")),
        }
        if !self.ended {
            return Err(bad("the archive is truncated (no end-of-archive marker)"));
        }
        Ok(self.files)
    }

    /// Refuses `rel` unless every directory above it is a real directory under `dest`
    /// (created as needed, 0700): none may be a symlink, whoever created it.
    fn check_parents(&mut self, rel: &Path) -> io::Result<()> {
        let mut at = PathBuf::new();
        let parents: Vec<_> = rel.parent().map(|p| p.components().collect()).unwrap_or_default();
        for part in parents {
            at.push(part);
            if self.checked.contains(&at) {
                continue;
            }
            let path = self.dest.join(&at);
            match fs::symlink_metadata(&path) {
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(bad(format!(
                        "refusing to write through the symlink {:?} (entry {:?})",
                        at.display().to_string(),
                        rel.display().to_string()
                    )))
                }
                Ok(md) if md.is_dir() => {}
                Ok(_) => return Err(bad(format!("{:?} is not a directory", at.display().to_string()))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new().mode(0o700).create(&path)?;
                }
                Err(e) => return Err(e),
            }
            self.checked.insert(at.clone());
        }
        Ok(())
    }

    fn send_to_flusher(&self, file: File) {
        if let Some(tx) = &self.flusher {
            let _ = tx.send(file);
        }
    }

    fn start_entry(&mut self, block: &[u8]) -> io::Result<()> {
        let Some(header) = Header::parse(block)? else {
            self.ended = true;
            return Ok(());
        };
        let padding = (BLOCK - (header.size % BLOCK as u64) as usize) % BLOCK;
        if header.kind == b'5' && Path::new(&header.name).components().all(|c| c == Component::CurDir) {
            // The archive's root (`./`, as Python's tarfile writes it): the destination itself.
            fs::set_permissions(&self.dest, fs::Permissions::from_mode(dir_mode(header.mode)))?;
            self.state = if header.size == 0 { State::Header } else { State::Skip(header.size + padding as u64) };
            return Ok(());
        }
        let rel = safe_relative(&header.name)?;
        if matches!(header.kind, b'0' | 0) && self.exclude.iter().any(|e| Path::new(e) == rel) {
            self.state = State::Skip(header.size + padding as u64);
            if matches!(self.state, State::Skip(0)) {
                self.state = State::Header;
            }
            return Ok(());
        }
        self.check_parents(&rel)?;
        let path = self.dest.join(&rel);
        if matches!(header.kind, b'5' | b'0' | 0 | b'2') && is_symlink(&path) {
            return Err(bad(format!("refusing to write through the symlink {:?} in the destination", header.name)));
        }
        match header.kind {
            b'5' => {
                fs::DirBuilder::new().recursive(true).mode(0o700).create(&path)?;
                self.checked.insert(rel);
                fs::set_permissions(&path, fs::Permissions::from_mode(dir_mode(header.mode)))?;
                self.state = State::Skip(header.size + padding as u64);
            }
            b'0' | 0 => {
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(file_mode(header.mode))
                    .open(&path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                self.files += 1;
                self.state = if header.size == 0 {
                    State::Skip(0)
                } else {
                    State::Data { file: Some(file), remaining: header.size, padding, unflushed: 0 }
                };
            }
            b'2' => {
                let key = rel.to_string_lossy().into_owned();
                let target = self.links.get(&key).cloned().unwrap_or_else(|| PathBuf::from(&header.link));
                std::os::unix::fs::symlink(&target, &path)?;
                self.state = State::Skip(header.size + padding as u64);
            }
            _ => {
                // Other entry types (hard links, devices, pax headers) are never sent by
                // PostgreSQL; skip their data rather than guess.
                self.state = State::Skip(header.size + padding as u64);
            }
        }
        if matches!(self.state, State::Skip(0)) {
            self.state = State::Header;
        }
        Ok(())
    }
}

impl Write for Extractor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.feed(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The content of the regular file `name` in the tar stream `input`, reading no further
/// than that entry; `None` if the archive ends first. Entries larger than `limit` bytes are
/// refused (`backup_label` is the first entry of a `base.tar` and a few hundred bytes).
pub fn read_member<R: io::Read>(mut input: R, name: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut block = [0u8; BLOCK];
    loop {
        if let Err(e) = input.read_exact(&mut block) {
            return if e.kind() == io::ErrorKind::UnexpectedEof { Ok(None) } else { Err(e) };
        }
        let Some(header) = Header::parse(&block)? else { return Ok(None) };
        let padded = header.size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if header.name.trim_end_matches('/') == name && matches!(header.kind, b'0' | 0) {
            if header.size > limit {
                return Err(bad(format!("{name} in archive is {} bytes (limit {limit})", header.size)));
            }
            let mut data = vec![0u8; header.size as usize];
            input.read_exact(&mut data)?;
            return Ok(Some(data));
        }
        io::copy(&mut io::Read::take(&mut input, padded), &mut io::sink())?;
    }
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Directory modes as PostgreSQL accepts them: owner rwx, optionally group r-x.
fn dir_mode(mode: u32) -> u32 {
    if mode & 0o050 == 0o050 {
        0o750
    } else {
        0o700
    }
}

/// File modes: owner rw, optionally group r.
fn file_mode(mode: u32) -> u32 {
    if mode & 0o040 != 0 {
        0o640
    } else {
        0o600
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, size: u64, mode: u32, link: &str) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(format!("{mode:07o} ").as_bytes());
        h[124..136].copy_from_slice(format!("{size:011o} ").as_bytes());
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    fn archive() -> Vec<u8> {
        let mut a = header("backup_label", b'0', 5, 0o600, "");
        a.extend_from_slice(b"hello");
        a.extend_from_slice(&[0u8; BLOCK - 5]);
        a.extend(header("base/", b'5', 0, 0o700, ""));
        a.extend(header("base/empty", b'0', 0, 0o600, ""));
        a.extend(header("pg_tblspc/", b'5', 0, 0o700, ""));
        a.extend(header("pg_tblspc/16384/", b'2', 0, 0o777, "/srv/ts"));
        a.extend_from_slice(&[0u8; 2 * BLOCK]);
        a
    }

    #[test]
    fn extracts_in_any_chunking() {
        for chunk in [1, 7, 512, 100_000] {
            let dir = tempfile::tempdir().expect("tmp");
            let dest = dir.path().join("data");
            let links = BTreeMap::from([("pg_tblspc/16384".to_owned(), PathBuf::from("/mapped/16384"))]);
            let mut x = Extractor::new(&dest, links).expect("new");
            for part in archive().chunks(chunk) {
                x.feed(part).expect("feed");
            }
            assert_eq!(x.finish().expect("finish"), 2);
            assert_eq!(fs::read(dest.join("backup_label")).expect("label"), b"hello");
            assert_eq!(fs::metadata(dest.join("backup_label")).expect("m").permissions().mode() & 0o777, 0o600);
            assert_eq!(fs::metadata(dest.join("base")).expect("m").permissions().mode() & 0o777, 0o700);
            assert_eq!(fs::read_link(dest.join("pg_tblspc/16384")).expect("link"), PathBuf::from("/mapped/16384"));
            assert!(dest.join("base/empty").is_file());
        }
    }

    #[test]
    fn refuses_escapes_and_truncation() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut x = Extractor::new(&dir.path().join("d"), BTreeMap::new()).expect("new");
        assert!(x.feed(&header("../evil", b'0', 0, 0o600, "")).is_err());
        let mut y = Extractor::new(&dir.path().join("e"), BTreeMap::new()).expect("new");
        y.feed(&header("f", b'0', 10, 0o600, "")).expect("feed");
        y.feed(b"abc").expect("feed");
        assert!(y.finish().is_err());
        // Cut at an entry boundary: every entry whole, but no end-of-archive blocks.
        let whole = archive();
        let mut cut = Extractor::new(&dir.path().join("c"), BTreeMap::new()).expect("new");
        cut.feed(&whole[..2 * BLOCK]).expect("feed");
        assert!(cut.finish().expect_err("cut").to_string().contains("truncated"));
        let mut skipping =
            Extractor::new(&dir.path().join("x"), BTreeMap::new()).expect("new").excluding(&["backup_label"]);
        skipping.feed(&whole).expect("feed");
        assert_eq!(skipping.finish().expect("whole"), 1);
        assert!(!dir.path().join("x/backup_label").exists() && dir.path().join("x/base/empty").is_file());
        let mut corrupt = header("f", b'0', 0, 0o600, "");
        corrupt[0] = b'g';
        let mut z = Extractor::new(&dir.path().join("z"), BTreeMap::new()).expect("new");
        assert!(z.feed(&corrupt).is_err());
    }

    /// A hostile archive: a symlink to a directory outside, then entries through it.
    #[test]
    fn never_writes_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tmp");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        let target = outside.to_str().expect("utf-8");
        for (tag, second) in [
            ("file", header("link/evil", b'0', 0, 0o600, "")),
            ("dir", header("link/sub/", b'5', 0, 0o700, "")),
            ("nested", header("link/sub/evil", b'0', 0, 0o600, "")),
            ("over-link", header("link", b'0', 0, 0o600, "")),
            ("link-in-link", header("link/l2", b'2', 0, 0o777, "/")),
        ] {
            let dest = dir.path().join(tag);
            let mut x = Extractor::new(&dest, BTreeMap::new()).expect("new");
            x.feed(&header("link", b'2', 0, 0o777, target)).expect("a symlink itself is fine");
            let err = x.feed(&second).expect_err(tag).to_string();
            assert!(err.contains("symlink"), "{tag}: {err}");
            assert_eq!(fs::read_dir(&outside).expect("ls").count(), 0, "{tag}: wrote outside");
        }
        // A symlink already in the destination is not followed either.
        let dest = dir.path().join("pre");
        fs::create_dir(&dest).expect("mkdir");
        std::os::unix::fs::symlink(&outside, dest.join("base")).expect("symlink");
        let mut x = Extractor::new(&dest, BTreeMap::new()).expect("new");
        assert!(x.feed(&header("base/1", b'0', 0, 0o600, "")).is_err());
        assert!(x.feed(&header("base/", b'5', 0, 0o700, "")).is_err());
        assert_eq!(fs::read_dir(&outside).expect("ls").count(), 0);
        // Absolute and `..` names never leave the destination.
        for name in ["/etc/evil", "a/../../evil", "../evil"] {
            let mut y = Extractor::new(&dir.path().join("abs"), BTreeMap::new()).expect("new");
            assert!(y.feed(&header(name, b'0', 0, 0o600, "")).is_err(), "{name}");
        }
        assert!(!dir.path().join("evil").exists());
    }

    #[test]
    fn reads_one_member() {
        let found = read_member(&archive()[..], "backup_label", 1024).expect("read");
        assert_eq!(found.as_deref(), Some(&b"hello"[..]));
        assert_eq!(read_member(&archive()[..], "missing", 1024).expect("read"), None);
        assert!(read_member(&archive()[..], "backup_label", 2).is_err());
        let dir = tempfile::tempdir().expect("tmp");
        let mut w = Extractor::new(&dir.path().join("w"), BTreeMap::new()).expect("new");
        w.write_all(&archive()).expect("write");
        assert_eq!(w.finish().expect("finish"), 2);
    }

    #[test]
    fn base256_sizes() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[11] = 2;
        field[10] = 1;
        assert_eq!(number(&field).expect("n"), 258);
        assert_eq!(number(b"00000000341 ").expect("n"), 225);
    }
}
