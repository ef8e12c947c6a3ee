//! `barman archive-wal SERVER` (also run by `barman cron`): moves WAL files from
//! `streaming/` and `incoming/` into `wals/`, compressed as configured, and records them in
//! xlog.db.
//!
//! Per file, under the blocking xlog.db lock: validate (name, and for segments the page
//! header: system identifier, segment size, page address, length), compare with an
//! already-archived copy (identical → drop the source, different → `errors/…duplicate`),
//! compress into a temp file in the hash directory, publish it with a no-replace rename and
//! fsync, append the xlog.db line (fsync), and only then unlink the source. A crash at any
//! point leaves the file either still queued or archived and indexed; an archived file
//! missing from xlog.db (crash between the two) is indexed when it is seen again.
//!
//! Archive hooks run around each file whose name is a WAL name, as Barman's
//! `WalStorageStrategy.save`: pre scripts (`BARMAN_FILE` = the queued file) before anything
//! else, post scripts (`BARMAN_FILE` = the destination in `wals/`) after the outcome, whatever
//! it is. The post retry script gets the failure in `BARMAN_ERROR` (Barman's exception text,
//! e.g. `MatchingDuplicateWalFile:WalFileInfo(...)` for an identical copy); the post standard
//! script always gets an empty `BARMAN_ERROR`, as in Barman. A pre retry script exiting 63
//! stops that queue: the file stays queued, the post scripts still run.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use barman_common::catalogue::{repr_float, repr_str, ErrorsKind, LockKind, ServerLock, XlogDb, XlogDbEntry};
use barman_common::compress::{self, Codec};
use barman_common::config::HookEvent;
use barman_common::durable::{self, TempFile};
use barman_common::gpg::{self, Encryption, Gpg};
use barman_common::wal::{read_head, validate_segment_header, ExpectedSegment, HeaderError, WalFileKind, WalFileName};

use crate::hooks::HookEnv;
use crate::server::{is_temp, Server};
use crate::CmdError;

/// What happened to one queued file.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored in wals/ and indexed.
    Archived,
    /// An identical copy was already archived; the source was dropped.
    AlreadyArchived,
    /// Moved to errors/ with this suffix (`duplicate`, `unknown`, `error`).
    Rejected(&'static str),
    /// A pre_archive_retry_script asked to stop: the file stays queued, the queue stops.
    Aborted,
    /// A segment of a PostgreSQL major newer than we read (its page magic): not damaged, so
    /// not set aside; it and the rest of its queue stay queued, the queue stops, and the
    /// reason is reported once per run.
    Held(String),
}

/// Archives both queues (streaming first, as Barman); returns one console line per file.
pub fn run(server: &Server) -> Result<Vec<String>, CmdError> {
    let mut lines = Vec::new();
    if server.passive {
        // A passive node has no archivers (its streaming/ holds the relayed .partial).
        return Ok(lines);
    }
    if server.streaming_archiver {
        lines.extend(archive_queue(server, &server.layout.streaming, true, server.streaming_batch_size)?);
    }
    if server.archiver {
        lines.extend(archive_queue(server, &server.layout.incoming, false, server.archiver_batch_size)?);
    }
    Ok(lines)
}

/// Removes `.<name>.<pid>.<n>.tmp` files left in a queue by a writer that died (a killed
/// put-wal): their writer's process is gone, so nobody will ever publish them.
fn remove_orphan_temps(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for entry in rd.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else { continue };
        let pid = inner.rsplit('.').nth(1).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The files waiting in `dir`, in name order, minus temp files and, for streaming/, the
/// newest file, which pg_receivewal/barman-receive-wal still needs (its `.partial`, or the
/// newest complete segment when there is no partial).
fn queued(dir: &Path, streaming: bool) -> io::Result<Vec<PathBuf>> {
    remove_orphan_temps(dir);
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file() && !is_temp(p)).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    files.sort();
    if streaming {
        let newest_partial = files.iter().rposition(|p| p.extension().is_some_and(|e| e == "partial"));
        match newest_partial {
            Some(i) => drop(files.remove(i)),
            None => drop(files.pop()),
        }
    }
    Ok(files)
}

fn archive_queue(server: &Server, dir: &Path, streaming: bool, batch: usize) -> Result<Vec<String>, CmdError> {
    let mut files = queued(dir, streaming)?;
    let total = files.len();
    if batch > 0 {
        files.truncate(batch);
    }
    log_batch(server, streaming, total, files.len());
    let mut lines = Vec::new();
    if files.is_empty() {
        return Ok(lines);
    }
    let mut db = XlogDb::open(&server.layout)?;
    for path in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let outcome = archive_file(server, &mut db, &path, streaming)?;
        lines.push(match &outcome {
            Outcome::Archived | Outcome::AlreadyArchived | Outcome::Aborted => format!("\t{name}"),
            Outcome::Rejected(kind) => format!("\t{name} moved to errors/ ({kind})"),
            Outcome::Held(why) => format!("\tERROR: {why}; it and the files after it stay in {}", dir.display()),
        });
        if matches!(outcome, Outcome::Aborted | Outcome::Held(_)) {
            break;
        }
    }
    Ok(lines)
}

/// The line Barman's archivers log for each batch (`WalArchiver.archive`).
fn log_batch(server: &Server, streaming: bool, total: usize, run: usize) {
    let (label, name) = (if streaming { "streaming" } else { "file archival" }, &server.name);
    let msg = if total == 0 {
        format!("No xlog segments found from {label} for {name}.")
    } else if total > run {
        format!("Found {total} xlog segments from {label} for {name}. Archive a batch of {run} segments in this run.")
    } else {
        format!("Found {total} xlog segments from {label} for {name}. Archive all segments in one run.")
    };
    crate::log::write(crate::log::Level::Info, "wal_archiver", &msg);
}

/// Archives one file; see the module doc for the order of operations.
pub fn archive_file(server: &Server, db: &mut XlogDb, path: &Path, streaming: bool) -> Result<Outcome, CmdError> {
    let raw_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Ok(name) = raw_name.parse::<WalFileName>() else {
        reject(server, path, &raw_name, ErrorsKind::Unknown, "is not a WAL file name")?;
        return Ok(Outcome::Rejected("unknown"));
    };
    // Files from streaming/ are plain WAL; incoming/ files may arrive compressed by the client.
    let stored_codec = if streaming { None } else { compress::detect_file(path)? };
    let md = fs::metadata(path)?;
    let dest = server.layout.wal_path(&name);
    let source = WalFacts {
        size: md.len(),
        time: mtime(&md),
        compression: stored_codec.map(|c| c.name().to_owned()),
        encryption: None,
    };
    let hooks = &server.hooks;
    let pre_env = source.env(&name, path);
    if let Err(abort) = hooks.pre(HookEvent::Archive, &pre_env) {
        let msg = abort.to_string();
        crate::log::warning(
            "wal_archiver",
            &format!("Archiving of {}/{name} aborted by pre_archive_retry_script.Reason: {msg}", server.name),
        );
        let post_env = source.env(&name, &dest);
        hooks.post(HookEvent::Archive, &post_env.with_error(&msg), &post_env);
        return Ok(Outcome::Aborted);
    }
    let result = archive_checked(server, db, path, &name, &dest, stored_codec, &md);
    let (facts, error) = match &result {
        Ok((Outcome::Archived, Some(stored))) => (stored.clone(), String::new()),
        Ok((Outcome::AlreadyArchived, _)) => (source.clone(), source.exception("MatchingDuplicateWalFile", &name)),
        Ok((Outcome::Rejected("duplicate"), _)) => (source.clone(), source.exception("DuplicateWalFile", &name)),
        Ok((_, _)) => (source.clone(), String::new()),
        Err(Failure::Invalid(why) | Failure::Unsupported(why)) => (source.clone(), why.clone()),
        Err(Failure::Cmd(e)) => (source.clone(), e.to_string()),
    };
    if hooks.any(HookEvent::Archive) {
        let post_env = facts.env(&name, &dest);
        hooks.post(HookEvent::Archive, &post_env.with_error(&error), &post_env);
    }
    match result {
        Ok((outcome, _)) => Ok(outcome),
        Err(Failure::Invalid(why)) => {
            reject(server, path, &raw_name, ErrorsKind::Error, &why)?;
            Ok(Outcome::Rejected("error"))
        }
        Err(Failure::Unsupported(why)) => {
            crate::log::error("wal_archiver", &format!("{why} (server '{}'): left queued", server.name));
            Ok(Outcome::Held(why))
        }
        Err(Failure::Cmd(e)) => Err(e),
    }
}

/// Why [`archive_checked`] did not archive a file.
enum Failure {
    /// The header check refused it (it goes to errors/ after the post hooks).
    Invalid(String),
    /// WAL of a PostgreSQL major newer than we read (it stays queued).
    Unsupported(String),
    /// An I/O or catalogue failure.
    Cmd(CmdError),
}

impl<E: Into<CmdError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Cmd(e.into())
    }
}

/// The validated part of [`archive_file`], between the pre and post hooks: returns the
/// outcome and, when stored, the stored file's facts.
fn archive_checked(
    server: &Server,
    db: &mut XlogDb,
    path: &Path,
    name: &WalFileName,
    dest: &Path,
    stored_codec: Option<Codec>,
    md: &fs::Metadata,
) -> Result<(Outcome, Option<WalFacts>), Failure> {
    validate(server, path, name, stored_codec)?;
    if dest.exists() {
        return Ok((settle_existing(server, db, path, name, dest)?, None));
    }
    let stored = store(server, path, dest, stored_codec, md)?;
    record(db, name, &stored)?;
    remove_source(path)?;
    Ok((Outcome::Archived, Some(stored)))
}

/// What Barman's `WalFileInfo` says about a file (for the hooks and xlog.db): size, mtime,
/// compression, encryption.
#[derive(Clone, Debug)]
struct WalFacts {
    size: u64,
    time: f64,
    compression: Option<String>,
    encryption: Option<Encryption>,
}

impl WalFacts {
    fn env(&self, name: &WalFileName, file: &Path) -> HookEnv {
        HookEnv::wal(name.as_str(), file, self.size, self.time, self.compression.as_deref())
    }

    /// `str()` of Barman's `DuplicateWalFile(wal_info)` family, as its hooks receive it.
    fn exception(&self, class: &str, name: &WalFileName) -> String {
        let compression = self.compression.as_deref().map_or_else(|| "None".to_owned(), repr_str);
        format!(
            "{class}:WalFileInfo(compression={compression}, encryption={}, name={}, size={}, time={})",
            self.encryption.map_or_else(|| "None".to_owned(), |e| repr_str(e.name())),
            repr_str(name.as_str()),
            self.size,
            repr_float(self.time)
        )
    }
}

/// `os.stat().st_mtime` as Python computes it (what xlog.db and the hooks record).
fn mtime(md: &fs::Metadata) -> f64 {
    md.mtime() as f64 + md.mtime_nsec() as f64 * 1e-9
}

/// Checks a segment's header against the server: page magic, system identifier (from
/// identity.json once known), page address matching the name, and a whole segment.
fn validate(server: &Server, path: &Path, name: &WalFileName, codec: Option<Codec>) -> Result<(), Failure> {
    if !matches!(name.kind(), WalFileKind::Segment | WalFileKind::Partial) {
        return Ok(());
    }
    let invalid = |e: io::Error| Failure::Invalid(e.to_string());
    let file = File::open(path).map_err(invalid)?;
    let mut plain: Box<dyn Read> = match codec {
        Some(c) => compress::decoder(c, file).map_err(invalid)?,
        None => Box::new(BufReader::new(file)),
    };
    let mut head = vec![0u8; 8192];
    let n = read_head(&mut plain, &mut head).map_err(invalid)?;
    let rest =
        io::copy(&mut plain, &mut io::sink()).map_err(|e| Failure::Invalid(format!("corrupt compressed file: {e}")))?;
    let expected =
        ExpectedSegment { name, system_id: server.system_id(), seg_size: None, file_len: Some(n as u64 + rest) };
    match validate_segment_header(&head[..n], &expected) {
        Ok(_) => Ok(()),
        Err(e @ HeaderError::NewerMajor { .. }) => Err(Failure::Unsupported(e.to_string())),
        Err(e) => Err(Failure::Invalid(e.to_string())),
    }
}

/// An archived copy exists: identical content means the source is dropped (and indexed if a
/// crash lost its xlog.db line); different content goes to errors/ as a duplicate.
fn settle_existing(
    server: &Server,
    db: &mut XlogDb,
    path: &Path,
    name: &WalFileName,
    dest: &Path,
) -> Result<Outcome, CmdError> {
    if gpg::is_encrypted_file(dest)? {
        // Barman cannot assume the passphrase is at hand: an encrypted copy is never compared.
        reject(server, path, name.as_str(), ErrorsKind::Duplicate, "the archived copy is encrypted")?;
        return Ok(Outcome::Rejected("duplicate"));
    }
    let (ours, _) = compress::read_maybe_compressed(path)?;
    let (theirs, codec) = compress::read_maybe_compressed(dest)?;
    if ours != theirs {
        reject(server, path, name.as_str(), ErrorsKind::Duplicate, "differs from the archived copy")?;
        return Ok(Outcome::Rejected("duplicate"));
    }
    if !db.entries()?.iter().any(|(_, e)| e.name == *name) {
        let md = fs::metadata(dest)?;
        let facts = WalFacts {
            size: md.len(),
            time: mtime(&md),
            compression: codec.map(|c| c.name().to_owned()),
            encryption: None,
        };
        record(db, name, &facts)?;
    }
    remove_source(path)?;
    Ok(Outcome::AlreadyArchived)
}

/// Writes the stored form into the hash directory: compressed with the server's compression
/// unless the file already is compressed, then encrypted with gpg when `encryption = gpg`
/// (as Barman: compress, then encrypt), mode and mtime copied from the source. Returns what
/// xlog.db records: the stored size, the compression name and the encryption.
fn store(
    server: &Server,
    src: &Path,
    dest: &Path,
    codec: Option<Codec>,
    md: &fs::Metadata,
) -> Result<WalFacts, CmdError> {
    durable::create_dir_all(dest.parent().expect("wal paths have a parent"))?;
    let mut tmp = TempFile::create(dest, md.mode() & 0o777)?;
    let input = BufReader::with_capacity(1 << 20, File::open(src)?);
    let compression = if server.encryption.is_none() {
        write_stored(server, input, codec, &mut tmp)?
    } else {
        let key = server.gpg.key_id().ok_or_else(|| {
            CmdError::Error(
                "A recipient must be specified to encrypt the backup. Please provide a valid recipient.".into(),
            )
        })?;
        let mut enc = Gpg::encrypter(key, tmp.file().try_clone()?, &src.display().to_string())?;
        let written = write_stored(server, input, codec, &mut enc);
        // gpg's own failure (a missing key) explains a broken pipe better than EPIPE.
        enc.finish()?;
        written?
    };
    let size = tmp.file().metadata()?.len();
    let mtime = nix::sys::time::TimeSpec::new(md.mtime(), md.mtime_nsec());
    let _ = nix::sys::stat::futimens(std::os::fd::AsRawFd::as_raw_fd(tmp.file()), &mtime, &mtime);
    tmp.publish_new()?;
    Ok(WalFacts { size, time: self::mtime(md), compression, encryption: server.encryption })
}

/// Copies `input` to `out`, compressed with the server's compression unless `codec` says it
/// already is; returns the compression name for xlog.db.
fn write_stored(
    server: &Server,
    mut input: impl Read,
    codec: Option<Codec>,
    out: &mut impl io::Write,
) -> io::Result<Option<String>> {
    Ok(match (codec, &server.compression) {
        (Some(c), _) => {
            io::copy(&mut input, out)?;
            Some(c.name().to_owned())
        }
        (None, Some((label, c))) => {
            compress::compress(*c, server.level, input, out)?;
            Some(label.clone())
        }
        (None, None) => {
            io::copy(&mut input, out)?;
            None
        }
    })
}

fn record(db: &mut XlogDb, name: &WalFileName, facts: &WalFacts) -> Result<(), CmdError> {
    let entry = XlogDbEntry {
        name: name.clone(),
        size: facts.size,
        time: facts.time,
        compression: facts.compression.clone(),
        encryption: facts.encryption.map(|e| e.name().to_owned()),
    };
    db.append(&[entry])?;
    Ok(())
}

fn remove_source(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    durable::fsync_dir(path.parent().expect("queued files have a parent"))
}

/// Moves a refused file to `errors/<name>.<stamp>.<kind>` and logs why.
fn reject(server: &Server, path: &Path, name: &str, kind: ErrorsKind, why: &str) -> Result<(), CmdError> {
    durable::create_dir_all(&server.layout.errors)?;
    let dest = server.errors_path(name, kind);
    fs::rename(path, &dest)?;
    durable::fsync_dir(&server.layout.errors)?;
    durable::fsync_dir(path.parent().expect("queued files have a parent"))?;
    let msg = format!("{name}: {why}; moved to {} (server '{}')", dest.display(), server.name);
    eprintln!("ERROR: {msg}");
    crate::log::error("wal_archiver", &msg);
    Ok(())
}

/// Takes `.<srv>-archive-wal.lock`; busy → `Err` with Barman's message (an info line,
/// not a failure, in Barman: see [`try_lock`]).
pub fn lock(server: &Server) -> Result<ServerLock, CmdError> {
    try_lock(server)?.ok_or_else(|| CmdError::Error(busy_message(server)))
}

/// Takes `.<srv>-archive-wal.lock`, `None` when another archiver holds it.
pub fn try_lock(server: &Server) -> Result<Option<ServerLock>, CmdError> {
    match ServerLock::acquire(&server.layout.lock_directory, &server.name, &LockKind::ArchiveWal) {
        Ok(lock) => Ok(Some(lock)),
        Err(barman_common::catalogue::LockError::Busy { .. }) => Ok(None),
        Err(e) => Err(CmdError::Exception(e.to_string())),
    }
}

/// What Barman prints (info, exit 0) when the archiver lock is busy.
pub fn busy_message(server: &Server) -> String {
    format!("Another archive-wal process is already running on server {}. Skipping to the next server", server.name)
}
