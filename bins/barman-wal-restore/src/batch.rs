//! `get-wal --batch N` (our server's extension): up to N files from one name on, in one tar
//! stream with SHA-256 sums, received straight into the spool.
//!
//! Our server follows every data member with a `SHA256SUMS` member for that file, so each
//! file is verified and published as soon as it has arrived, while the next one is still on
//! the wire: Postgres waiting for the first segment of a batch does not wait for the whole
//! batch. A stream with one sums member at the end (an older server) still works; its files
//! are then published together at the end. A file is published only after its checksum
//! matched and (for a segment) its first page header and length checked out; it is
//! decompressed here when it was stored compressed (the batch asks for the stored bytes) or
//! sent compressed (`--batch-lz4`: the server packs uncompressed files as LZ4 frames, which
//! takes the bulk of the bytes off ssh).

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::Stdio;

use barman_common::compress;
use barman_common::wal::read_head;
use barman_common::wire::{Member, StreamReader, SumAlgo, Sums, WalMember, WireError};

use crate::cli::Options;
use crate::command::{map_status, remote_words, target};
use crate::error::{Corruption, ToolError};
use crate::spool::SpoolFile;
use crate::verify::verify_head;

/// Bytes of a member kept in memory to sniff compression and check the page header.
const HEAD: usize = 64;
const CHUNK: usize = 1 << 20;

/// A member received, waiting for its checksum: a plain file goes straight into a spool
/// temp file; a compressed one (a few MiB) is kept in memory, so that it is decompressed
/// from there into its spool file once, instead of being written, read back and written
/// again.
struct Received {
    name: String,
    body: Body,
    digest: String,
}

enum Body {
    /// The spool temp file, the file's first bytes and its length.
    Plain(SpoolFile, Vec<u8>, u64),
    /// The codec, a buffer from [`Scratch::spare`], and how much of it the member fills.
    Compressed(compress::Codec, Vec<u8>, usize),
}

/// Fetches up to `n` files from `first` on into `dir`, publishing each under its own name as
/// soon as it is verified. After each publication `more(name)` is asked whether to go on:
/// it may block (the caller's flow control: the remote then blocks on a full pipe) or say
/// stop, which closes the stream. Returns the names published, in order. Files published
/// before a failure stay (they are complete and verified) and are returned; with none, the
/// error is. A server without the extension (real Barman) fails with its usage status 2.
pub fn fetch_batch(
    opts: &Options,
    first: &str,
    n: usize,
    dir: &Path,
    more: &mut dyn FnMut(&str) -> bool,
) -> Result<Vec<String>, ToolError> {
    // Stored bytes as they are, and uncompressed files as LZ4 on the way (our server's
    // `--batch-lz4`): received into memory, checked and decompressed as any compressed member.
    let flags = vec!["--batch".to_owned(), format!("'{n}'"), "--keep-compression".to_owned(), "--batch-lz4".to_owned()];
    let local = ToolError::local(dir);
    let mut child = target(opts)
        .command(&remote_words(opts, &flags, first))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(&local)?;
    let stdout = child.stdout.take().expect("stdout was requested as piped");
    barman_common::remote::widen_pipe(&stdout);
    let mut published = Vec::new();
    let received = receive(stdout, dir, &mut published, more);
    // The pipe is closed by now (receive owned it), so a remote still writing gets EPIPE
    // instead of blocking this wait.
    let status = map_status(child.wait().map_err(&local)?.code());
    match (status, received) {
        (Ok(()), Ok(())) => Ok(published),
        (_, Ok(())) if !published.is_empty() => Ok(published),
        (Err(e), _) | (_, Err(e)) if published.is_empty() => Err(e),
        _ => Ok(published),
    }
}

/// A stream that cannot be read, or holds a member it must not.
fn corrupt(e: WireError) -> ToolError {
    Corruption::Stream(e).into()
}

/// A member whose bytes cannot be read.
fn unreadable(e: io::Error) -> ToolError {
    corrupt(WireError::Io(e))
}

/// Buffers reused for every member of a stream: a segment is 16 MiB, and fresh buffers
/// would be zeroed and faulted in again for each one.
#[derive(Default)]
struct Scratch {
    /// Receives plain members on their way into the spool.
    chunk: Vec<u8>,
    /// Holds a compressed member's decompressed content, written out in one piece.
    plain: Vec<u8>,
    /// Buffers for compressed members waiting for their sums (one, with our server's
    /// per-member sums). Their length is what was ever initialized, not what is in use.
    spare: Vec<Vec<u8>>,
}

/// Reads the stream, publishing each file when its checksum arrives.
fn receive(
    input: impl Read,
    dir: &Path,
    published: &mut Vec<String>,
    more: &mut dyn FnMut(&str) -> bool,
) -> Result<(), ToolError> {
    let mut stream = StreamReader::new(input);
    let mut pending: Vec<Received> = Vec::new();
    let mut scratch = Scratch::default();
    for member in stream.members().map_err(corrupt)? {
        match member.map_err(corrupt)? {
            Member::Sums(sums) if sums.algo() == SumAlgo::Sha256 => {
                for file in take_summed(&mut pending, &sums) {
                    published.push(publish(file, &sums, dir, &mut scratch)?);
                }
                match published.last() {
                    Some(last) if pending.is_empty() && !more(last) => return Ok(()),
                    _ => {}
                }
            }
            // Our server sends SHA-256 sums only.
            Member::Sums(sums) => {
                return Err(corrupt(WireError::UnsupportedName(sums.algo().member_name().to_owned())))
            }
            Member::Wal(member) => pending.push(receive_member(*member, dir, &mut scratch)?),
        }
    }
    match pending.first() {
        Some(f) => Err(Corruption::NoChecksum(f.name.clone()).into()),
        None => Ok(()),
    }
}

/// Removes from `pending` the files `sums` covers, in stream order.
fn take_summed(pending: &mut Vec<Received>, sums: &Sums) -> Vec<Received> {
    let (summed, rest) = std::mem::take(pending).into_iter().partition(|f| sums.covers(&f.name));
    *pending = rest;
    summed
}

/// Receives one member (hashed by the member as it is read: for a compressed file, the
/// compressed bytes, once), keeping its first bytes. The magic in the first bytes decides
/// where it goes: a plain file into a spool temp file as it arrives, a compressed one into
/// memory (see [`Body`]).
fn receive_member(
    mut member: WalMember<'_, impl Read>,
    dir: &Path,
    scratch: &mut Scratch,
) -> Result<Received, ToolError> {
    let local = ToolError::local(dir);
    let name = member.name().to_string();
    // The first bytes, enough to tell a compressed member by its magic.
    let mut head = vec![0u8; HEAD];
    let got = read_head(&mut member, &mut head).map_err(unreadable)?;
    head.truncate(got);
    if let Some(codec) = compress::detect(&head) {
        // A compressed segment is a few MiB; the header's size bounds the first allocation
        // only loosely (a lying header just makes the read come up short or grow the buffer).
        let mut data = scratch.spare.pop().unwrap_or_default();
        let want = usize::try_from(member.size()).unwrap_or(0).clamp(got, 64 << 20);
        if data.len() < want {
            data.resize(want, 0);
        }
        data[..got].copy_from_slice(&head);
        let n = got + read_into(&mut member, &mut data, got).map_err(unreadable)?;
        return Ok(Received { name, body: Body::Compressed(codec, data, n), digest: member.sha256() });
    }
    let mut tmp = SpoolFile::create(dir, &name).map_err(&local)?;
    tmp.file().write_all(&head).map_err(&local)?;
    scratch.chunk.resize(CHUNK, 0);
    loop {
        let k = member.read(&mut scratch.chunk).map_err(unreadable)?;
        if k == 0 {
            break;
        }
        tmp.file().write_all(&scratch.chunk[..k]).map_err(&local)?;
    }
    let len = member.len();
    Ok(Received { name, body: Body::Plain(tmp, head, len), digest: member.sha256() })
}

/// Reads `input` to its end into `buf` from `at` on, growing `buf` (never zeroing what it
/// already holds, unlike `read_to_end` into a reused vector); returns the bytes read.
fn read_into(input: &mut impl Read, buf: &mut Vec<u8>, at: usize) -> io::Result<usize> {
    let mut n = at;
    loop {
        if n == buf.len() {
            buf.resize((buf.len() * 2).max(1 << 20), 0);
        }
        match input.read(&mut buf[n..])? {
            0 => return Ok(n - at),
            k => n += k,
        }
    }
}

/// Checks a received file against its sum, decompresses it if it was stored compressed,
/// checks a segment's header and length, and renames it into place.
fn publish(file: Received, sums: &Sums, dir: &Path, scratch: &mut Scratch) -> Result<String, ToolError> {
    let local = ToolError::local(dir);
    let Received { name, body, digest } = file;
    if let Err(source) = sums.check(&name, &digest) {
        return Err(Corruption::Checksum { name, source }.into());
    }
    let tmp = match body {
        Body::Plain(tmp, head, len) => {
            verify_head(&name, &head, len)?;
            tmp
        }
        Body::Compressed(codec, data, used) => {
            // Decompressed from memory into memory, checked there, and written into a spool
            // temp file in one piece; renamed into place only once the header check passed.
            let decoded = compress::decoder(codec, &data[..used])
                .and_then(|mut decoder| read_into(&mut decoder, &mut scratch.plain, 0));
            scratch.spare.push(data);
            let n = decoded.map_err(|source| Corruption::Decompress { name: name.clone(), source })?;
            let plain = &scratch.plain[..n];
            verify_head(&name, &plain[..n.min(HEAD)], n as u64)?;
            let mut tmp = SpoolFile::create(dir, &name).map_err(&local)?;
            tmp.file().write_all(plain).map_err(&local)?;
            tmp
        }
    };
    tmp.publish(&dir.join(&name)).map_err(&local)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use barman_common::wire::{digest_hex, write_member, MemberMeta};

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("walrestore-batch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    /// A stream as our server sends it: each member followed by its own sums member.
    fn stream(files: &[(&str, &[u8], &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data, sum) in files {
            write_member(&mut out, name, MemberMeta::default(), data).expect("member");
            let line = format!("{sum} *{name}\n");
            write_member(&mut out, "SHA256SUMS", MemberMeta::default(), line.as_bytes()).expect("sums");
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn each_member_is_published_when_its_sum_arrives_and_a_bad_one_is_not() {
        let dir = scratch("bad");
        let (a, b) = (b"history one".as_slice(), b"history two".as_slice());
        let input = stream(&[
            ("00000002.history", a, &digest_hex(SumAlgo::Sha256, a)),
            ("00000003.history", b, &digest_hex(SumAlgo::Sha256, a)),
        ]);
        let (mut published, mut seen) = (Vec::new(), Vec::new());
        let got = receive(&input[..], &dir, &mut published, &mut |n| {
            seen.push(n.to_owned());
            true
        });
        assert!(matches!(got, Err(ToolError::Corrupt(_))), "{got:?}");
        assert_eq!(published, ["00000002.history"]);
        assert_eq!(seen, ["00000002.history"]);
        assert_eq!(names(&dir), ["00000002.history"], "no temp file or bad member left");
        assert_eq!(std::fs::read(dir.join("00000002.history")).expect("read"), a);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_compressed_member_is_checked_on_its_stored_bytes_and_published_decompressed() {
        let dir = scratch("lz4");
        let plain = b"history file content, history file content".repeat(100);
        let mut packed = Vec::new();
        compress::compress(compress::Codec::Lz4, compress::Level::Medium, &plain[..], &mut packed).expect("lz4");
        let input = stream(&[("00000002.history", &packed, &digest_hex(SumAlgo::Sha256, &packed))]);
        let mut published = Vec::new();
        receive(&input[..], &dir, &mut published, &mut |_| true).expect("receive");
        assert_eq!(published, ["00000002.history"]);
        assert_eq!(names(&dir), ["00000002.history"], "no temp file left");
        assert_eq!(std::fs::read(dir.join("00000002.history")).expect("read"), plain);
        // A sum of the decompressed bytes is not the sum of what was sent: refused.
        let input = stream(&[("00000003.history", &packed, &digest_hex(SumAlgo::Sha256, &plain))]);
        let got = receive(&input[..], &dir, &mut Vec::new(), &mut |_| true);
        assert!(matches!(got, Err(ToolError::Corrupt(_))), "{got:?}");
        assert_eq!(names(&dir), ["00000002.history"]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn flow_control_can_stop_the_stream() {
        let dir = scratch("stop");
        let (a, b) = (b"one".as_slice(), b"two".as_slice());
        let input = stream(&[
            ("00000002.history", a, &digest_hex(SumAlgo::Sha256, a)),
            ("00000003.history", b, &digest_hex(SumAlgo::Sha256, b)),
        ]);
        let mut published = Vec::new();
        receive(&input[..], &dir, &mut published, &mut |_| false).expect("receive");
        assert_eq!(published, ["00000002.history"]);
        assert_eq!(names(&dir), ["00000002.history"]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_member_without_a_sum_is_refused() {
        let dir = scratch("nosum");
        let mut input = Vec::new();
        write_member(&mut input, "00000002.history", MemberMeta::default(), b"x").expect("member");
        input.extend_from_slice(&[0u8; 1024]);
        let mut published = Vec::new();
        let got = receive(&input[..], &dir, &mut published, &mut |_| true);
        assert!(matches!(got, Err(ToolError::Corrupt(_))), "{got:?}");
        assert!(published.is_empty());
        assert!(names(&dir).is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
