//! Writing a put-wal stream: members with their ustar headers and padding, and whole
//! streams with their sums member.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::sums::{digest_hex, SumAlgo};

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
    use crate::wire::sums::parse_sums;
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
}
