//! `barman put-wal SERVER`: the backup-host side of `barman-wal-archive`.
//!
//! Reads a tar stream on stdin, writes each WAL member to a dot-temp file in `incoming/`
//! while hashing it, and commits nothing until the whole stream was read and every member's
//! checksum matched. Each commit is a no-replace rename plus fsync of file and directory, so
//! exit 0 means every file is durable. Member names must be WAL file names: anything else
//! (`../x`, absolute paths, `passwd`) is refused before a byte is written.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use barman_common::catalogue::ErrorsKind;
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
}

/// Runs put-wal on `input`; messages for stdout are returned (duplicate notices).
pub fn run(server: &Server, input: impl Read) -> Result<Vec<String>, CmdError> {
    durable::create_dir_all(&server.layout.incoming)?;
    let (mut files, sums) = receive(server, input)?;
    verify(server, &mut files, sums.as_ref())?;
    let mut notes = Vec::new();
    for file in files {
        commit(server, file, &mut notes)?;
    }
    Ok(notes)
}

fn receive(server: &Server, input: impl Read) -> Result<(Vec<Received>, Option<Sums>), CmdError> {
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
            Member::Wal(member) => files.push(receive_member(server, *member)?),
        }
    }
    Ok((files, sums))
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
fn receive_member(server: &Server, mut member: WalMember<'_, impl Read>) -> Result<Received, CmdError> {
    let (name, mtime) = (member.name().clone(), member.mtime());
    let mut tmp = TempFile::create(&server.layout.incoming.join(name.as_str()), 0o600)?;
    let mut early = EarlySync::start(tmp.file());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = member.read(&mut buf).map_err(stream_err)?;
        if n == 0 {
            break;
        }
        tmp.write_all(&buf[..n])?;
        early.wrote(n);
    }
    early.finish()?;
    let digest = HashMap::from([(SumAlgo::Sha256, member.sha256())]);
    Ok(Received { name, tmp, digest, mtime })
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
        if sha256_file(&dest)? == sha {
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
        "INFO: Received file '{}' with checksum '{sha}' by put-wal for server '{}'{}",
        file.name,
        server.name,
        ssh_host()
    );
    Ok(())
}

fn set_mtime(path: &Path, mtime: u64) {
    let t = nix::sys::time::TimeSpec::new(i64::try_from(mtime).unwrap_or(0), 0);
    let _ = nix::sys::stat::utimensat(None, path, &t, &t, nix::sys::stat::UtimensatFlags::FollowSymlink);
}

fn sha256_file(path: &Path) -> io::Result<String> {
    hash_file(path, SumAlgo::Sha256)
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
