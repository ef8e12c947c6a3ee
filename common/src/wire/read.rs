//! Reading a put-wal stream: [`StreamReader`] yields its members in order, each WAL file as
//! a [`WalMember`] that hashes the bytes it yields, and each sums member parsed into
//! [`Sums`]. What to do with the bytes (a temp file, memory) and when to check them (at the
//! end of the stream, or as soon as a sums member covers them) is the caller's.

use std::io::{self, Read};

use super::sums::{Hasher, SumAlgo, Sums};
use crate::wal::WalFileName;

/// Why a stream cannot be read, or holds a member it must not.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Reading the stream failed, or it is not a tar stream.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// A member that is not a regular file.
    #[error("unsupported file type '{kind:?}' for member '{name}'")]
    UnsupportedType {
        /// The member's name.
        name: String,
        /// Its tar entry type.
        kind: tar::EntryType,
    },
    /// A member named neither as a WAL file (`../x`, `a/b`, `passwd`) nor as a sums member.
    #[error("unexpected member '{0}'")]
    UnsupportedName(String),
}

/// A put-wal stream on `R`.
pub struct StreamReader<R: Read> {
    archive: tar::Archive<R>,
}

impl<R: Read> StreamReader<R> {
    /// A reader of the stream `input`.
    pub fn new(input: R) -> StreamReader<R> {
        StreamReader { archive: tar::Archive::new(input) }
    }

    /// The members, in stream order. Each must be read (to its end, for its digest) before
    /// the next is taken; what is left of it unread is skipped.
    pub fn members(&mut self) -> Result<Members<'_, R>, WireError> {
        Ok(Members { entries: self.archive.entries().map_err(WireError::Io)? })
    }
}

/// The members of a stream ([`StreamReader::members`]).
pub struct Members<'a, R: Read> {
    entries: tar::Entries<'a, R>,
}

/// One member of a stream.
pub enum Member<'a, R: Read> {
    /// A WAL file (or history, backup label, partial file): read it. Boxed: a tar entry
    /// and a hasher are large next to the sums.
    Wal(Box<WalMember<'a, R>>),
    /// A sums member (`SHA256SUMS` or `MD5SUMS`).
    Sums(Sums),
}

impl<'a, R: Read> Iterator for Members<'a, R> {
    type Item = Result<Member<'a, R>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.entries.next()?.map_err(WireError::Io).and_then(classify))
    }
}

/// Names a member (a leading `./` dropped) and checks it is a regular file with a WAL or sums
/// name; a sums member is read and parsed here.
fn classify<R: Read>(mut entry: tar::Entry<'_, R>) -> Result<Member<'_, R>, WireError> {
    let raw = entry.path().map_err(WireError::Io)?.to_string_lossy().into_owned();
    let name = raw.strip_prefix("./").unwrap_or(&raw).to_owned();
    let kind = entry.header().entry_type();
    if !kind.is_file() {
        return Err(WireError::UnsupportedType { name, kind });
    }
    if let Some(algo) = SumAlgo::from_member_name(&name) {
        let mut body = String::new();
        entry.read_to_string(&mut body).map_err(WireError::Io)?;
        return Ok(Member::Sums(Sums::parse(algo, &body)));
    }
    match name.parse::<WalFileName>() {
        Ok(wal) if !name.contains('/') => {
            Ok(Member::Wal(Box::new(WalMember { name: wal, entry, sha256: SumAlgo::Sha256.hasher(), len: 0 })))
        }
        _ => Err(WireError::UnsupportedName(name)),
    }
}

/// A WAL file member: its bytes through [`Read`], hashed with SHA-256 on the way (the bytes
/// as sent: for a compressed file, the compressed bytes).
pub struct WalMember<'a, R: Read> {
    name: WalFileName,
    entry: tar::Entry<'a, R>,
    sha256: Hasher,
    len: u64,
}

impl<R: Read> WalMember<'_, R> {
    /// The file's name.
    pub fn name(&self) -> &WalFileName {
        &self.name
    }

    /// The size its header announces (a lying header only makes the reads come up short or
    /// fail).
    pub fn size(&self) -> u64 {
        self.entry.size()
    }

    /// Its modification time in seconds since the epoch (0 when the header has none).
    pub fn mtime(&self) -> u64 {
        self.entry.header().mtime().unwrap_or(0)
    }

    /// The bytes read so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was read yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lower-case hex SHA-256 of the bytes read (the whole file once a read returned 0).
    pub fn sha256(self) -> String {
        self.sha256.hex()
    }
}

impl<R: Read> Read for WalMember<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.entry.read(buf)?;
        self.sha256.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sums::digest_hex;
    use crate::wire::write::{write_member, write_stream, MemberMeta};

    fn read_all(input: &[u8]) -> Result<Vec<(String, Vec<u8>, String)>, WireError> {
        let mut stream = StreamReader::new(input);
        let mut out = Vec::new();
        for member in stream.members()? {
            match member? {
                Member::Wal(mut wal) => {
                    let mut data = Vec::new();
                    wal.read_to_end(&mut data).map_err(WireError::Io)?;
                    assert_eq!(wal.len(), data.len() as u64);
                    out.push((wal.name().to_string(), data, wal.sha256()));
                }
                Member::Sums(sums) => out.push((sums.algo().member_name().to_owned(), Vec::new(), String::new())),
            }
        }
        Ok(out)
    }

    /// A stream of one member named `name` exactly (the tar crate normalises or refuses
    /// some names when writing them), with no sums member.
    fn one_member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        write_member(&mut buf, "000000010000000000000001", MemberMeta::default(), data).expect("member");
        let mut header = tar::Header::from_byte_slice(&buf[..512]).clone();
        header.as_old_mut().name = [0; 100];
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        buf[..512].copy_from_slice(header.as_bytes());
        buf.extend_from_slice(&[0u8; 1024]);
        buf
    }

    #[test]
    fn members_come_with_their_digest_and_the_sums() {
        let data = vec![3u8; 700];
        let mut buf = Vec::new();
        write_stream(&mut buf, SumAlgo::Md5, &[("00000002.history", MemberMeta::default(), &data)]).expect("write");
        let got = read_all(&buf).expect("read");
        assert_eq!(got[0], ("00000002.history".to_owned(), data.clone(), digest_hex(SumAlgo::Sha256, &data)));
        assert_eq!(got[1].0, "MD5SUMS");
        let dotted = read_all(&one_member("./00000002.history", &data)).expect("read");
        assert_eq!(dotted[0].0, "00000002.history");
    }

    #[test]
    fn names_that_are_not_wal_files_are_refused() {
        for name in ["passwd", "../000000010000000000000001", "x/000000010000000000000001"] {
            let got = read_all(&one_member(name, b"x"));
            assert!(matches!(got, Err(WireError::UnsupportedName(ref n)) if n == name), "{name}");
        }
    }
}
