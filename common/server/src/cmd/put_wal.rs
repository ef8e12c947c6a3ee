//! `barman put-wal SERVER`: the backup-host side of `barman-wal-archive`.
//!
//! Reads a tar stream on stdin, writes each WAL member to a dot-temp file in `incoming/`
//! while hashing it, and commits nothing until the whole stream was read and every member's
//! checksum matched. Each commit is a no-replace rename plus fsync of file and directory, so
//! exit 0 means every file is durable. Member names must be WAL file names: anything else
//! (`../x`, absolute paths, `passwd`) is refused before a byte is written.
//!
//! `--wire-lz4` (our extension, asked for by our `barman-wal-archive` once it learned the
//! server has it): each WAL member is an LZ4 frame of the file. The checksums cover the
//! bytes sent; the frame is decoded on the way into the temp file (the LZ4 reader refuses a
//! truncated or corrupt frame), so the catalogue gets the plain file, as without it. WAL
//! compresses 5-7x with LZ4, which takes most of the bytes off ssh's encryption.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use barman_common::catalogue::ErrorsKind;
use barman_common::compress;
use barman_common::durable::{self, TempFile};
use barman_common::wal::WalFileName;
use barman_common::wire::{Member, StreamReader, SumAlgo, SumError, Sums, WalMember, WireError};

use crate::server::Server;
use crate::CmdError;

/// A member read from the stream, waiting for commit.
struct Received {
    name: WalFileName,
    tmp: TempFile,
    digest: HashMap<SumAlgo, String>,
    mtime: u64,
    /// Sent as an LZ4 frame (`--wire-lz4`): the digests are of the frame.
    framed: bool,
}

/// Runs put-wal on `input`; messages for stdout are returned (duplicate notices).
pub fn run(server: &Server, input: impl Read, wire_lz4: bool) -> Result<Vec<String>, CmdError> {
    durable::create_dir_all(&server.layout.incoming)?;
    let (mut files, sums) = receive(server, input, wire_lz4)?;
    verify(server, &mut files, sums.as_ref())?;
    let mut notes = Vec::new();
    for file in files {
        commit(server, file, &mut notes)?;
    }
    Ok(notes)
}

fn receive(server: &Server, input: impl Read, wire_lz4: bool) -> Result<(Vec<Received>, Option<Sums>), CmdError> {
    let mut stream = StreamReader::new(input);
    let (mut files, mut sums) = (Vec::new(), None);
    for member in stream.members().map_err(|e| wire_err(server, e))? {
        match member.map_err(|e| wire_err(server, e))? {
            Member::Sums(parsed) => {
                for line in parsed.bad_lines() {
                    eprintln!("WARNING: Bad checksum line '{line}' in put-wal for server '{}'", server.name);
                }
                sums = Some(parsed);
            }
            Member::Wal(member) => files.push(receive_member(server, *member, wire_lz4)?),
        }
    }
    Ok((files, sums))
}

/// Copies a member's (decoded) bytes into its temp file, starting writeback on the way.
/// A read error is the stream's (`Err(Ok(e))`), a write error the catalogue's (`Err(Err(e))`).
fn copy_member(
    input: &mut impl Read,
    tmp: &mut TempFile,
    early: &mut EarlySync,
) -> Result<(), Result<io::Error, io::Error>> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf).map_err(Ok)?;
        if n == 0 {
            return Ok(());
        }
        tmp.write_all(&buf[..n]).map_err(Err)?;
        early.wrote(n);
    }
}

/// A `--wire-lz4` member that is not a valid LZ4 frame.
fn wire_frame_err(server: &Server, name: &WalFileName, e: &io::Error) -> CmdError {
    server.err(format!("Invalid LZ4 frame ({e}) for file '{name}' in put-wal"))
}

/// The error of a stream that cannot be read or holds a member put-wal refuses.
fn wire_err(server: &Server, e: WireError) -> CmdError {
    match e {
        WireError::Io(e) => stream_err(e),
        WireError::UnsupportedType { name, kind } => {
            server.err(format!("Unsupported file type '{kind:?}' for file '{name}' in put-wal"))
        }
        WireError::UnsupportedName(name) => server.err(format!("Unsupported filename '{name}' in put-wal")),
    }
}

/// Copies one member into a temp file in incoming/; the member hashes it with SHA-256 on the
/// way (the sums member comes after the data; an old client's MD5SUMS is checked by
/// re-reading the temp file, which keeps the common path to one hash). Writeback is started
/// while the data still arrives (see [`EarlySync`]), so the fsync before the commit finds
/// little left to do; a writeback error seen early fails the member like one seen by that
/// fsync.
fn receive_member(server: &Server, mut member: WalMember<'_, impl Read>, wire_lz4: bool) -> Result<Received, CmdError> {
    let (name, mtime) = (member.name().clone(), member.mtime());
    let mut tmp = TempFile::create(&server.layout.incoming.join(name.as_str()), 0o600)?;
    let mut early = EarlySync::start(tmp.file());
    if wire_lz4 {
        let mut framed = io::BufReader::with_capacity(1 << 20, &mut member);
        let mut frame = compress::Lz4Reader::new(&mut framed).map_err(|e| wire_frame_err(server, &name, &e))?;
        // A read error here is the frame's (cut, corrupt) or the stream's under it: either
        // way the member is refused, and the message names the frame.
        copy_member(&mut frame, &mut tmp, &mut early)
            .map_err(|e| e.map_or_else(CmdError::from, |e| wire_frame_err(server, &name, &e)))?;
        // The frame ended: anything after it in the member is data no one checked.
        let trailing = framed.buffer().len() as u64 + io::copy(&mut framed, &mut io::sink()).map_err(stream_err)?;
        if trailing > 0 {
            return Err(server.err(format!("{trailing} bytes after the LZ4 frame of '{name}' in put-wal")));
        }
    } else {
        copy_member(&mut member, &mut tmp, &mut early).map_err(|e| e.map_or_else(CmdError::from, stream_err))?;
    }
    early.finish()?;
    let digest = HashMap::from([(SumAlgo::Sha256, member.sha256())]);
    Ok(Received { name, tmp, digest, mtime, framed: wire_lz4 })
}

/// Flushes a file being received in the background, every few MiB, so that its writeback
/// overlaps with receiving the rest (of this file and of the next ones in the stream). This
/// is only a head start: durability still comes from the `fsync` in the commit, which then
/// has just the tail left. The worker's handle is a `dup` sharing the file description, so a
/// writeback error it sees is not reported again to that `fsync`: [`EarlySync::finish`]
/// returns it, and the file is refused.
struct EarlySync {
    tx: Option<std::sync::mpsc::Sender<()>>,
    worker: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    unsynced: usize,
}

impl EarlySync {
    const EVERY: usize = 4 << 20;

    fn start(file: &File) -> EarlySync {
        let Ok(clone) = file.try_clone() else { return EarlySync { tx: None, worker: None, unsynced: 0 } };
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            while rx.recv().is_ok() {
                while rx.try_recv().is_ok() {}
                clone.sync_data()?;
            }
            Ok(())
        });
        EarlySync { tx: Some(tx), worker: Some(worker), unsynced: 0 }
    }

    fn wrote(&mut self, n: usize) {
        self.unsynced += n;
        if self.unsynced >= Self::EVERY {
            self.unsynced = 0;
            if let Some(tx) = &self.tx {
                let _ = tx.send(());
            }
        }
    }

    /// Stops the worker after its flush in progress, if any; its first writeback error.
    fn finish(mut self) -> std::io::Result<()> {
        self.tx.take();
        match self.worker.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the background flush thread panicked")),
            None => Ok(()),
        }
    }
}

fn verify(server: &Server, files: &mut [Received], sums: Option<&Sums>) -> Result<(), CmdError> {
    let empty = Sums::empty(SumAlgo::Sha256);
    let sums = sums.unwrap_or(&empty);
    let algo = sums.algo();
    for name in sums.names() {
        if !files.iter().any(|f| f.name.as_str() == name) {
            return Err(server.err(format!("Checksum without corresponding file '{name}' in put-wal")));
        }
    }
    for f in files.iter_mut() {
        if !f.digest.contains_key(&algo) {
            let digest = hash_file(f.tmp.temp_path(), algo)?;
            f.digest.insert(algo, digest);
        }
        match sums.check(f.name.as_str(), &f.digest[&algo]) {
            Ok(()) => {}
            Err(SumError::Missing { .. }) => {
                return Err(server.err(format!("Missing checksum for file '{}' in put-wal", f.name)))
            }
            Err(SumError::Mismatch { got, want, .. }) => {
                return Err(server
                    .err(format!("Bad file checksum '{got}' (should be {want}) for file '{}' in put-wal", f.name)))
            }
        }
    }
    Ok(())
}

/// Publishes one verified file into incoming/. An identical file already there is success;
/// a different one sends the new copy to errors/ as `.duplicate` (exit stays 0, as Barman,
/// so that Postgres does not pile up WAL). A file appearing between the check and the
/// no-replace rename makes the rename fail: exit 1, and Postgres retries.
fn commit(server: &Server, mut file: Received, notes: &mut Vec<String>) -> Result<(), CmdError> {
    let dest = server.layout.incoming.join(file.name.as_str());
    let sha = file.digest[&SumAlgo::Sha256].clone();
    set_mtime(file.tmp.temp_path(), file.mtime);
    if dest.exists() {
        // Compared as stored: with `--wire-lz4` the digest is of the frame sent, not the file.
        if durable::same_content(file.tmp.temp_path(), &dest)? {
            return Ok(());
        }
        let errors = server.errors_path(file.name.as_str(), ErrorsKind::Duplicate);
        durable::create_dir_all(&server.layout.errors)?;
        file.tmp.retarget(&errors);
        file.tmp.publish_new()?;
        notes.push(format!(
            "\tError: Duplicate Files Detected with Mismatched Checksums for file '{}' in server '{}': kept as {}",
            file.name,
            server.name,
            errors.display()
        ));
        return Ok(());
    }
    file.tmp.publish_new()?;
    eprintln!(
        "INFO: Received file '{}' with checksum '{sha}'{} by put-wal for server '{}'{}",
        file.name,
        if file.framed { " (of its LZ4 frame)" } else { "" },
        server.name,
        ssh_host()
    );
    Ok(())
}

fn set_mtime(path: &Path, mtime: u64) {
    let t = nix::sys::time::TimeSpec::new(i64::try_from(mtime).unwrap_or(0), 0);
    let _ = nix::sys::stat::utimensat(None, path, &t, &t, nix::sys::stat::UtimensatFlags::FollowSymlink);
}

fn hash_file(path: &Path, algo: SumAlgo) -> io::Result<String> {
    let mut h = algo.hasher();
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.hex());
        }
        h.update(&buf[..n]);
    }
}

/// ` (SSH host: <ip>)` from `$SSH_CONNECTION`, as Barman suffixes its log lines.
fn ssh_host() -> String {
    std::env::var("SSH_CONNECTION")
        .ok()
        .and_then(|v| v.split_whitespace().next().map(|h| format!(" (SSH host: {h})")))
        .unwrap_or_default()
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(stream_err)
fn stream_err(e: io::Error) -> CmdError {
    CmdError::Exception(format!("put-wal stream: {e}"))
}
