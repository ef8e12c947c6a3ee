//! PostgreSQL's `backup_manifest` (format version 1 and 2), read and checked against a copy
//! of the backup, as `pg_verifybackup` does for the files: every listed file exists with
//! the listed size and checksum (CRC32C, SHA-224/256/384/512 or none). The manifest's own
//! `Manifest-Checksum` (SHA-256 of the text before that line) is checked too.
//!
//! Paths are relative to the data directory; `pg_tblspc/<oid>/…` resolves through the
//! tablespace symlinks, so the caller points them at the copy's tablespace directories first.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::Digest;

/// Why a manifest could not be used or a copy does not match it.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The manifest.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("invalid backup manifest {path}: {reason}")]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The copy differs from the manifest.
    #[error("{path}: {reason}")]
    Mismatch {
        /// The file (relative to the data directory).
        path: String,
        /// What differs.
        reason: String,
    },
}

/// A checksum algorithm of the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// No checksum: size only.
    None,
    /// CRC-32C, written as the hex of its in-memory (little-endian) bytes.
    Crc32c,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Algorithm> {
        Some(match name {
            "NONE" => Algorithm::None,
            "CRC32C" => Algorithm::Crc32c,
            "SHA224" => Algorithm::Sha224,
            "SHA256" => Algorithm::Sha256,
            "SHA384" => Algorithm::Sha384,
            "SHA512" => Algorithm::Sha512,
            _ => return None,
        })
    }
}

/// One `Files` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the data directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Checksum algorithm.
    pub algorithm: Algorithm,
    /// Lower-case hex checksum (empty for `NONE`).
    pub checksum: String,
}

/// One `WAL-Ranges` entry, LSNs as the manifest writes them (`%X/%X`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRange {
    /// The timeline.
    pub timeline: u32,
    /// First LSN needed.
    pub start: String,
    /// LSN reached.
    pub end: String,
}

/// A parsed manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `PostgreSQL-Backup-Manifest-Version` (1 or 2).
    pub version: u64,
    /// `System-Identifier` (format version 2, PostgreSQL 17+).
    pub system_identifier: Option<u64>,
    /// The files, in manifest order.
    pub files: Vec<FileEntry>,
    /// The WAL the backup needs.
    pub wal_ranges: Vec<WalRange>,
}

/// What a successful check covered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Files checked.
    pub files: usize,
    /// Bytes read and checksummed.
    pub bytes: u64,
}

impl Manifest {
    /// Reads and parses `path`, checking the manifest's own SHA-256.
    pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ManifestError::Io { path: path.to_owned(), source })?;
        Manifest::parse(&text).map_err(|reason| ManifestError::Invalid { path: path.to_owned(), reason })
    }

    /// Parses manifest text.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        check_own_checksum(text)?;
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let files = v.get("Files").and_then(|f| f.as_array()).ok_or("no Files array")?;
        let files = files.iter().map(file_entry).collect::<Result<Vec<_>, String>>()?;
        let version = v.get("PostgreSQL-Backup-Manifest-Version").and_then(serde_json::Value::as_u64).unwrap_or(1);
        let system_identifier = v.get("System-Identifier").and_then(serde_json::Value::as_u64);
        let ranges = v.get("WAL-Ranges").and_then(|r| r.as_array()).map(Vec::as_slice).unwrap_or_default();
        let wal_ranges = ranges.iter().map(wal_range).collect::<Result<Vec<_>, String>>()?;
        Ok(Manifest { version, system_identifier, files, wal_ranges })
    }

    /// The entry of `path`, if listed.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The manifest text PostgreSQL writes for these files (same layout as the server's and
    /// `pg_combinebackup`'s, so `pg_verifybackup` and real Barman read it): `files` as
    /// (path, size, modification time, CRC-32C hex), this manifest's version, system
    /// identifier and WAL ranges, and the SHA-256 `Manifest-Checksum` of what precedes it.
    pub fn render_with(&self, files: &[(String, u64, std::time::SystemTime, String)]) -> String {
        let mut text = format!("{{ \"PostgreSQL-Backup-Manifest-Version\": {},\n", self.version);
        if let Some(id) = self.system_identifier {
            text += &format!("\"System-Identifier\": {id},\n");
        }
        text += "\"Files\": [";
        for (i, (path, size, mtime, crc)) in files.iter().enumerate() {
            let when = chrono::DateTime::<chrono::Utc>::from(*mtime).format("%Y-%m-%d %H:%M:%S GMT");
            let path = serde_json::to_string(path).expect("a string serialises");
            text += if i == 0 { "\n" } else { ",\n" };
            text += &format!(
                "{{ \"Path\": {path}, \"Size\": {size}, \"Last-Modified\": \"{when}\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{crc}\" }}"
            );
        }
        text += "\n],\n\"WAL-Ranges\": [";
        for (i, r) in self.wal_ranges.iter().enumerate() {
            text += if i == 0 { "\n" } else { ",\n" };
            text += &format!(
                "{{ \"Timeline\": {}, \"Start-LSN\": \"{}\", \"End-LSN\": \"{}\" }}",
                r.timeline, r.start, r.end
            );
        }
        text += "\n],\n";
        let sum = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        text + &format!("\"Manifest-Checksum\": \"{sum}\"}}\n")
    }

    /// Checks every listed file under `data_dir`: present, same size, same checksum.
    pub fn verify(&self, data_dir: &Path) -> Result<Verified, ManifestError> {
        let mut done = Verified::default();
        let mut buf = vec![0u8; 1 << 20];
        for f in &self.files {
            let mismatch = |reason: String| ManifestError::Mismatch { path: f.path.clone(), reason };
            let path = data_dir.join(&f.path);
            let mut file = File::open(&path).map_err(|e| mismatch(format!("cannot open: {e}")))?;
            let len = file.metadata().map_err(|e| mismatch(e.to_string()))?.len();
            if len != f.size {
                return Err(mismatch(format!("size {len} differs from the manifest's {}", f.size)));
            }
            if f.algorithm == Algorithm::None {
                done.files += 1;
                continue;
            }
            let mut hasher = Hasher::new(f.algorithm);
            loop {
                let n = file.read(&mut buf).map_err(|e| mismatch(e.to_string()))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            let sum = hasher.finish();
            if sum != f.checksum {
                return Err(mismatch(format!("checksum {sum} differs from the manifest's {}", f.checksum)));
            }
            done.files += 1;
            done.bytes += f.size;
        }
        Ok(done)
    }
}

fn file_entry(v: &serde_json::Value) -> Result<FileEntry, String> {
    let path = match (v.get("Path").and_then(|p| p.as_str()), v.get("Encoded-Path").and_then(|p| p.as_str())) {
        (Some(p), _) => p.to_owned(),
        (None, Some(hexed)) => {
            let bytes = hex::decode(hexed).map_err(|e| format!("bad Encoded-Path {hexed}: {e}"))?;
            String::from_utf8(bytes).map_err(|_| format!("Encoded-Path {hexed} is not UTF-8"))?
        }
        (None, None) => return Err("a file entry has no Path".into()),
    };
    if path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(format!("unsafe path {path:?}"));
    }
    let size = v.get("Size").and_then(serde_json::Value::as_u64).ok_or_else(|| format!("{path}: no Size"))?;
    let algorithm = match v.get("Checksum-Algorithm").and_then(|a| a.as_str()) {
        None => Algorithm::None,
        Some(name) => Algorithm::parse(name).ok_or_else(|| format!("{path}: unknown checksum algorithm {name}"))?,
    };
    let checksum = v.get("Checksum").and_then(|c| c.as_str()).unwrap_or_default().to_ascii_lowercase();
    if algorithm != Algorithm::None && checksum.is_empty() {
        return Err(format!("{path}: no Checksum"));
    }
    Ok(FileEntry { path, size, algorithm, checksum })
}

fn wal_range(v: &serde_json::Value) -> Result<WalRange, String> {
    let text = |key: &str| {
        v.get(key).and_then(|s| s.as_str()).map(str::to_owned).ok_or_else(|| format!("WAL range without {key}"))
    };
    let timeline = v.get("Timeline").and_then(serde_json::Value::as_u64).ok_or("WAL range without Timeline")?;
    Ok(WalRange {
        timeline: u32::try_from(timeline).map_err(|e| e.to_string())?,
        start: text("Start-LSN")?,
        end: text("End-LSN")?,
    })
}

/// `"Manifest-Checksum": "<sha256 hex>"` covers every byte before that line.
fn check_own_checksum(text: &str) -> Result<(), String> {
    const KEY: &str = "\"Manifest-Checksum\": \"";
    let Some(at) = text.rfind(KEY) else { return Err("no Manifest-Checksum".into()) };
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let expected: String = text[at + KEY.len()..].chars().take_while(char::is_ascii_hexdigit).collect();
    let actual = hex::encode(sha2::Sha256::digest(&text.as_bytes()[..line_start]));
    if actual.eq_ignore_ascii_case(&expected) {
        Ok(())
    } else {
        Err(format!("manifest checksum {actual} differs from the recorded {expected}"))
    }
}

/// A running checksum of one of the manifest's algorithms (`None` computes a CRC-32C that is
/// never compared).
#[derive(Clone)]
pub enum Hasher {
    /// CRC-32C.
    Crc(u32),
    /// SHA-224.
    Sha224(sha2::Sha224),
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-384.
    Sha384(sha2::Sha384),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh checksum of algorithm `a`.
    pub fn new(a: Algorithm) -> Hasher {
        match a {
            Algorithm::None | Algorithm::Crc32c => Hasher::Crc(0),
            Algorithm::Sha224 => Hasher::Sha224(sha2::Sha224::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc(c) => *c = crc32c::crc32c_append(*c, data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The checksum as the manifest writes it (lower-case hex).
    pub fn finish(self) -> String {
        match self {
            Hasher::Crc(c) => hex::encode(c.to_le_bytes()),
            Hasher::Sha224(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_for(files: &[(&str, &[u8], &str)]) -> String {
        let mut text = String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
        for (i, (path, data, algo)) in files.iter().enumerate() {
            let mut h = Hasher::new(Algorithm::parse(algo).expect("algo"));
            h.update(data);
            let sep = if i + 1 == files.len() { "" } else { "," };
            text += &format!(
                "{{ \"Path\": \"{path}\", \"Size\": {}, \"Last-Modified\": \"2026-01-01 00:00:00 GMT\", \"Checksum-Algorithm\": \"{algo}\", \"Checksum\": \"{}\" }}{sep}\n",
                data.len(),
                h.finish()
            );
        }
        text += "],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n";
        let sum = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        text + &format!("\"Manifest-Checksum\": \"{sum}\"}}\n")
    }

    #[test]
    fn crc32c_matches_postgres_encoding() {
        // CRC-32C of "123456789" is 0xE3069283; PostgreSQL writes the in-memory bytes.
        let mut h = Hasher::new(Algorithm::Crc32c);
        h.update(b"123456789");
        assert_eq!(h.finish(), "839206e3");
    }

    #[test]
    fn verifies_and_detects_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(dir.path().join("base")).expect("mkdir");
        std::fs::write(dir.path().join("PG_VERSION"), b"15\n").expect("write");
        std::fs::write(dir.path().join("base/1"), b"page data").expect("write");
        let text = manifest_for(&[("PG_VERSION", b"15\n", "CRC32C"), ("base/1", b"page data", "SHA256")]);
        let m = Manifest::parse(&text).expect("parse");
        assert_eq!(m.verify(dir.path()).expect("ok"), Verified { files: 2, bytes: 12 });
        std::fs::write(dir.path().join("base/1"), b"page dat!").expect("write");
        let e = m.verify(dir.path()).expect_err("changed");
        assert!(e.to_string().starts_with("base/1: checksum"), "{e}");
        std::fs::write(dir.path().join("base/1"), b"page").expect("write");
        assert!(m.verify(dir.path()).expect_err("short").to_string().contains("size 4 differs"));
        std::fs::remove_file(dir.path().join("PG_VERSION")).expect("rm");
        assert!(m.verify(dir.path()).expect_err("gone").to_string().starts_with("PG_VERSION: cannot open"));
    }

    #[test]
    fn renders_what_it_reads() {
        let text = manifest_for(&[("PG_VERSION", b"15\n", "CRC32C")]);
        let m = Manifest::parse(&text).expect("parse");
        assert_eq!((m.version, m.system_identifier, m.wal_ranges.len()), (1, None, 1));
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_hours(24);
        let files = [("base/1/\"odd\"".to_owned(), 9, when, "839206e3".to_owned())];
        let again = Manifest::parse(&m.render_with(&files)).expect("rendered manifest parses");
        assert_eq!(again.files[0].path, "base/1/\"odd\"");
        assert_eq!((again.files[0].size, again.files[0].checksum.as_str()), (9, "839206e3"));
        assert_eq!(again.wal_ranges, m.wal_ranges);
        assert!(m.render_with(&files).contains("\"Last-Modified\": \"1970-01-02 00:00:00 GMT\""));
    }

    #[test]
    fn refuses_tampered_or_hostile_manifests() {
        let text = manifest_for(&[("PG_VERSION", b"15\n", "CRC32C")]);
        assert!(Manifest::parse(&text.replace("\"Size\": 3", "\"Size\": 4")).is_err());
        let hostile = manifest_for(&[("../etc/passwd", b"x", "NONE")]);
        assert!(Manifest::parse(&hostile).expect_err("unsafe").contains("unsafe path"));
    }
}
