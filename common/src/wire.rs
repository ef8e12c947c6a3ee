//! The put-wal wire format: a tar stream carrying WAL files and a `SHA256SUMS` (or
//! `MD5SUMS`) member, as Barman's `barman-wal-archive` sends it to `barman put-wal`.
//!
//! The writer emits ustar headers (mode, uid/gid and mtime copied from the source, as
//! Barman's client does; its PAX `mtime` record carries sub-second precision we do not need).
//! The reader accepts ustar, GNU and PAX headers and a leading `./` in names, through the
//! `tar` crate.

use std::fmt::Write as _;
use std::io::{self, Write};

use md5::Md5;
use sha2::{Digest, Sha256};

/// The checksum algorithm of a stream, named by its member (`SHA256SUMS` or `MD5SUMS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SumAlgo {
    /// SHA-256, the default since Barman 3.12.
    Sha256,
    /// MD5, for Barman servers older than 3.12 (`--md5`).
    Md5,
}

impl SumAlgo {
    /// The member name carrying the sums.
    pub fn member_name(self) -> &'static str {
        match self {
            SumAlgo::Sha256 => "SHA256SUMS",
            SumAlgo::Md5 => "MD5SUMS",
        }
    }

    /// The algorithm a member name announces, if it is a checksum member.
    pub fn from_member_name(name: &str) -> Option<SumAlgo> {
        match name {
            "SHA256SUMS" => Some(SumAlgo::Sha256),
            "MD5SUMS" => Some(SumAlgo::Md5),
            _ => None,
        }
    }

    /// A fresh hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            SumAlgo::Sha256 => Hasher::Sha256(Sha256::new()),
            SumAlgo::Md5 => Hasher::Md5(Md5::new()),
        }
    }
}

/// A running digest of either algorithm.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(Sha256),
    /// MD5.
    Md5(Md5),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    /// The lower-case hex digest.
    pub fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
        }
    }
}

/// The digest of `data` in lower-case hex.
pub fn digest_hex(algo: SumAlgo, data: &[u8]) -> String {
    let mut h = algo.hasher();
    h.update(data);
    h.hex()
}

/// Parses the body of a sums member: `<hex> *<name>` or `<hex>  <name>` lines. Malformed
/// lines are returned separately so the caller can warn about them, as Barman does.
pub fn parse_sums(body: &str) -> (Vec<(String, String)>, Vec<String>) {
    let (mut sums, mut bad) = (Vec::new(), Vec::new());
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = line.split_once(' ').and_then(|(hash, rest)| {
            let name = rest.strip_prefix('*').or_else(|| rest.strip_prefix(' '))?;
            let ok = !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty();
            ok.then(|| (name.to_owned(), hash.to_ascii_lowercase()))
        });
        match parsed {
            Some(pair) => sums.push(pair),
            None => bad.push(line.to_owned()),
        }
    }
    (sums, bad)
}

/// Metadata copied into a member's header.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemberMeta {
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
}

/// Writes one regular-file member: header, `data`, padding to 512 bytes.
pub fn write_member<W: Write>(out: &mut W, name: &str, meta: MemberMeta, data: &[u8]) -> io::Result<()> {
    write_member_header(out, name, meta, data.len() as u64)?;
    out.write_all(data)?;
    write_padding(out, data.len() as u64)
}

/// Writes the header of a regular-file member of `size` bytes; the caller then writes exactly
/// `size` bytes and [`write_padding`].
pub fn write_member_header<W: Write>(out: &mut W, name: &str, meta: MemberMeta, size: u64) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(meta.mode);
    header.set_uid(meta.uid);
    header.set_gid(meta.gid);
    header.set_mtime(meta.mtime);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    out.write_all(header.as_bytes())
}

/// Pads a member of `size` bytes to the 512-byte block boundary.
pub fn write_padding<W: Write>(out: &mut W, size: u64) -> io::Result<()> {
    let pad = ((512 - size % 512) % 512) as usize;
    out.write_all(&[0u8; 512][..pad])
}

/// Writes a complete put-wal stream: each file, then the sums member, then the two zero
/// end-of-archive blocks.
pub fn write_stream<W: Write>(out: &mut W, algo: SumAlgo, files: &[(&str, MemberMeta, &[u8])]) -> io::Result<()> {
    let mut sums = String::new();
    for (name, meta, data) in files {
        write_member(out, name, *meta, data)?;
        let _ = writeln!(sums, "{} *{}", digest_hex(algo, data), name);
    }
    let sums_meta = MemberMeta { mode: 0o644, ..MemberMeta::default() };
    write_member(out, algo.member_name(), sums_meta, sums.as_bytes())?;
    out.write_all(&[0u8; 1024])?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn stream_reads_back_with_the_tar_crate() {
        let data = vec![7u8; 1000];
        let meta = MemberMeta { mode: 0o600, uid: 101, gid: 104, mtime: 1_795_293_400 };
        let mut buf = Vec::new();
        write_stream(&mut buf, SumAlgo::Sha256, &[("000000010000000000000003", meta, &data)]).expect("write");
        assert_eq!(buf.len() % 512, 0);
        let mut ar = tar::Archive::new(&buf[..]);
        let mut names = Vec::new();
        for entry in ar.entries().expect("entries") {
            let mut e = entry.expect("entry");
            let mut body = Vec::new();
            e.read_to_end(&mut body).expect("read");
            names.push((e.path().expect("path").display().to_string(), body));
        }
        assert_eq!(names[0].0, "000000010000000000000003");
        assert_eq!(names[0].1, data);
        let (sums, bad) = parse_sums(std::str::from_utf8(&names[1].1).expect("utf8"));
        assert!(bad.is_empty());
        assert_eq!(sums, vec![("000000010000000000000003".to_owned(), digest_hex(SumAlgo::Sha256, &data))]);
    }

    #[test]
    fn sums_lines_in_both_forms() {
        let (sums, bad) = parse_sums("ab *x\nCD  y\nnonsense\n");
        assert_eq!(sums, vec![("x".into(), "ab".into()), ("y".into(), "cd".into())]);
        assert_eq!(bad, vec!["nonsense".to_owned()]);
    }
}
