//! `barman export-backup [--compression C [--compression-level N]] SERVER BACKUP_ID DIR`:
//! one DONE full backup and the WAL it needs, in a portable tarball, as Barman 3.20.1
//! writes it: `identity.json`, `backup.info` and `barman.json` first (so an importer reads
//! the identity before the bulk), then the backup directory as `backup/`, the WAL segments
//! from `begin_wal` to `end_wal` as `wals/<hash dir>/<name>`, and their xlog.db lines as
//! `xlog.db`. The file is written as `backup-export-SERVER-ID-STAMP.tmp`, then renamed to
//! `backup-export-SERVER-ID-STAMP-CHECKSUM.tar[.gz|.bz2|.xz]` where CHECKSUM is the first 8
//! hex digits of its SHA-256 (checked by `import-backup`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::ops::RangeInclusive;
use std::path::Path;

use barman_common::catalogue::{
    python_json, BackupId, BackupInfo, BackupStatus, BackupType, Catalogue, LockError, LockKind, ServerLayout,
    ServerLock, XlogDb, XlogDbEntry,
};
use barman_common::compress::{Codec, Encoder, Level};
use barman_common::wal::{WalFileName, WalSegSize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cmd::check_archived_wal_range::segments;
use crate::context::{layout, Context};
use crate::output::Output;
use crate::CmdError;

/// `--compression`: the tarball's compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportCompression {
    /// `.tar.gz`.
    Gzip,
    /// `.tar.bz2`.
    Bzip2,
    /// `.tar.xz`.
    Xz,
}

impl ExportCompression {
    /// The algorithm named on the command line (`gzip`, `bzip2`, `xz`).
    pub fn from_name(name: &str) -> Option<ExportCompression> {
        match name {
            "gzip" => Some(ExportCompression::Gzip),
            "bzip2" => Some(ExportCompression::Bzip2),
            "xz" => Some(ExportCompression::Xz),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ExportCompression::Gzip => "gzip",
            ExportCompression::Bzip2 => "bzip2",
            ExportCompression::Xz => "xz",
        }
    }

    fn codec(self) -> Codec {
        match self {
            ExportCompression::Gzip => Codec::Gzip,
            ExportCompression::Bzip2 => Codec::Bzip2,
            ExportCompression::Xz => Codec::Xz,
        }
    }

    /// The levels Barman accepts: 0-9 for xz, 1-9 for the others.
    fn levels(self) -> RangeInclusive<i32> {
        if self == ExportCompression::Xz {
            0..=9
        } else {
            1..=9
        }
    }

    /// Python's `tarfile` default level (9 for gzip and bzip2, preset 6 for xz).
    fn default_level(self) -> i32 {
        if self == ExportCompression::Xz {
            6
        } else {
            9
        }
    }
}

/// The tarball's file-name extension for `compression`.
pub fn tarball_extension(compression: Option<ExportCompression>) -> &'static str {
    match compression {
        None => ".tar",
        Some(ExportCompression::Gzip) => ".tar.gz",
        Some(ExportCompression::Bzip2) => ".tar.bz2",
        Some(ExportCompression::Xz) => ".tar.xz",
    }
}

/// What `export-backup` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--compression`.
    pub compression: Option<ExportCompression>,
    /// `--compression-level`.
    pub level: Option<i32>,
}

/// `export-backup SERVER BACKUP_ID OUTPUT_DIRECTORY`: Barman's checks in Barman's order,
/// then the tarball.
pub fn run(
    ctx: &Context,
    name: &str,
    backup: &str,
    output_dir: &str,
    opts: &Options,
    out: &mut Output,
) -> Result<(), CmdError> {
    let cfg = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    let layout = layout(cfg);
    let catalogue = Catalogue::load(&layout)?;
    let (id, info) = crate::cmd::resolve_backup(&catalogue, backup, name)?;
    if info.backup_type() == BackupType::Incremental {
        return Err(CmdError::Error(format!(
            "Cannot export backup {id} from server {name}: it is an incremental backup.\n\
             Only full backups are eligible for exporting."
        )));
    }
    if info.status != BackupStatus::Done {
        return Err(CmdError::Error(format!(
            "Cannot export backup '{backup}' from server '{name}': backup status is '{}', expected 'DONE'",
            info.status.as_str()
        )));
    }
    check_output_dir(output_dir)?;
    check_level(opts)?;
    out.info(format!("Exporting backup '{backup}' from server '{name}' to '{output_dir}'"));
    let identity = read_identity(&layout).ok_or_else(|| no_identity(name))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S").to_string();
    let dir = Path::new(output_dir);
    let temp = dir.join(format!("backup-export-{name}-{id}-{stamp}.tmp"));
    let lock = ServerLock::acquire(&layout.lock_directory, name, &LockKind::BackupId(id.clone())).map_err(|e| {
        CmdError::Error(match e {
            LockError::Busy { .. } => {
                format!("Another backup operation is already running on backup '{id}' for server '{name}'")
            }
            LockError::PermissionDenied { .. } => {
                format!("Permission denied while acquiring backup export lock for backup '{id}' on server '{name}'")
            }
            other => format!("Unable to acquire backup export lock for backup '{id}' on server '{name}': {other}"),
        })
    })?;
    out.debug(format!("Creating export tarball at '{}'", temp.display()));
    let written = write_tarball(&temp, &layout, id, info, &identity, opts);
    drop(lock);
    if let Err(e) = written {
        if let Err(cleanup) = remove_if_exists(&temp) {
            out.warning(format!("Failed to clean up temporary file '{}': {cleanup}", temp.display()));
        }
        return Err(e);
    }
    let checksum = file_checksum(&temp)?;
    let export =
        dir.join(format!("backup-export-{name}-{id}-{stamp}-{checksum}{}", tarball_extension(opts.compression)));
    fs::rename(&temp, &export)?;
    barman_common::durable::fsync_dir(dir)?;
    out.info(format!("Export completed successfully: {}", export.display()));
    Ok(())
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Barman's `Output directory ...` checks: exists, is a directory, writable and searchable.
fn check_output_dir(output_dir: &str) -> Result<(), CmdError> {
    let path = Path::new(output_dir);
    if !path.exists() {
        return Err(CmdError::Error(format!("Output directory '{output_dir}' does not exist")));
    }
    if !path.is_dir() {
        return Err(CmdError::Error(format!("Output directory '{output_dir}' is not a directory")));
    }
    if nix::unistd::access(path, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK).is_err() {
        return Err(CmdError::Error(format!(
            "Output directory '{output_dir}' does not have the required write and execute permissions"
        )));
    }
    Ok(())
}

fn check_level(opts: &Options) -> Result<(), CmdError> {
    let Some(level) = opts.level else { return Ok(()) };
    let Some(compression) = opts.compression else {
        return Err(CmdError::Error("--compression-level requires --compression to be set".to_owned()));
    };
    let valid = compression.levels();
    if valid.contains(&level) {
        return Ok(());
    }
    let listed: Vec<String> = valid.map(|l| l.to_string()).collect();
    Err(CmdError::Error(format!(
        "Invalid compression level '{level}' for algorithm '{}'. Valid levels are: {}",
        compression.name(),
        listed.join(", ")
    )))
}

/// The server's `identity.json` as written (any keys), or `None` if missing or empty.
pub(crate) fn read_identity(layout: &ServerLayout) -> Option<Value> {
    let text = fs::read_to_string(layout.identity_path()).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    value.as_object().is_some_and(|o| !o.is_empty()).then_some(value)
}

/// Barman's error when the server has no `identity.json`.
pub(crate) fn no_identity(name: &str) -> CmdError {
    CmdError::Error(format!(
        "No identity file found for server '{name}'. \
         The identity file is required to validate the backup during import."
    ))
}

/// The first 8 hex digits of the file's SHA-256 (Barman's `file_hash(path)[:8]`).
pub(crate) fn file_checksum(path: &Path) -> Result<String, CmdError> {
    let mut hasher = Sha256::new();
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize())[..8].to_owned())
}

/// The tarball's byte sink: plain, or through the chosen compressor.
#[allow(clippy::large_enum_variant)] // one per export, never in collections
enum Sink {
    Plain(BufWriter<File>),
    Compressed(Encoder<BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Compressed(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Compressed(w) => w.flush(),
        }
    }
}

impl Sink {
    fn finish(self) -> io::Result<File> {
        let writer = match self {
            Sink::Plain(w) => w,
            Sink::Compressed(e) => e.finish()?,
        };
        writer.into_inner().map_err(io::IntoInnerError::into_error)
    }
}

fn write_tarball(
    path: &Path,
    layout: &ServerLayout,
    id: &BackupId,
    info: &BackupInfo,
    identity: &Value,
    opts: &Options,
) -> Result<(), CmdError> {
    let file = BufWriter::with_capacity(1 << 20, File::options().write(true).create_new(true).open(path)?);
    let sink = match opts.compression {
        None => Sink::Plain(file),
        Some(c) => {
            Sink::Compressed(Encoder::new(c.codec(), Level::Int(opts.level.unwrap_or(c.default_level())), file, 0)?)
        }
    };
    let mut tar = tar::Builder::new(sink);
    tar.follow_symlinks(false);
    append_bytes(&mut tar, "identity.json", python_json(identity, Some(4), true).as_bytes(), 0o644)?;
    tar.append_path_with_name(BackupInfo::locate(layout, id), "backup.info")?;
    let system = python_json(&crate::cmd::diagnose::system_info(), Some(4), true);
    append_bytes(&mut tar, "barman.json", system.as_bytes(), 0o644)?;
    append_tree(&mut tar, &layout.backup_dir(id), "backup")?;
    let mut xlogdb = String::new();
    for (name, entry) in required_wals(layout, id, info)? {
        let path = layout.wal_path(&name);
        if !path.exists() {
            return Err(CmdError::Exception(format!(
                "WAL file required for backup consistency not found for backup '{id}': {name}"
            )));
        }
        let relative = path.strip_prefix(&layout.wals_directory).unwrap_or(&path);
        tar.append_path_with_name(&path, Path::new("wals").join(relative))?;
        xlogdb.push_str(&entry.to_line());
    }
    append_bytes(&mut tar, "xlog.db", xlogdb.as_bytes(), 0o600)?;
    let file = tar.into_inner()?.finish()?;
    file.sync_all()?;
    Ok(())
}

/// The xlog.db entries of the segments from `begin_wal` to `end_wal`; one missing from
/// xlog.db fails the export as Barman's does.
fn required_wals(
    layout: &ServerLayout,
    id: &BackupId,
    info: &BackupInfo,
) -> Result<Vec<(WalFileName, XlogDbEntry)>, CmdError> {
    let (Some(begin), Some(end)) = (&info.begin_wal, &info.end_wal) else {
        return Err(CmdError::Exception(format!("backup '{id}' has no begin_wal/end_wal")));
    };
    let mut index: HashMap<String, XlogDbEntry> =
        XlogDb::open(layout)?.entries()?.into_iter().map(|(_, e)| (e.name.to_string(), e)).collect();
    let mut wals = Vec::new();
    for name in segments(begin, end, info.xlog_segment_size.unwrap_or(WalSegSize::DEFAULT))? {
        let entry = index.remove(name.as_str()).ok_or_else(|| {
            CmdError::Exception(format!(
                "WAL file required for backup consistency not found in xlog.db for backup '{id}': {name}"
            ))
        })?;
        wals.push((name, entry));
    }
    Ok(wals)
}

/// `dir` and everything under it as `name/...`, as Python's `tarfile.add`: entries sorted,
/// directories named with a trailing `/`, symbolic links stored as links.
fn append_tree<W: Write>(tar: &mut tar::Builder<W>, dir: &Path, name: &str) -> io::Result<()> {
    append_dir(tar, dir, name)?;
    let mut children: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    children.sort_by_key(fs::DirEntry::file_name);
    for child in children {
        let path = child.path();
        let child_name = format!("{name}/{}", child.file_name().to_string_lossy());
        if child.file_type()?.is_dir() {
            append_tree(tar, &path, &child_name)?;
        } else {
            tar.append_path_with_name(&path, &child_name)?;
        }
    }
    Ok(())
}

/// A directory entry named `name/` (the `tar` crate drops the trailing slash Python writes;
/// a name too long for the header is written without it).
fn append_dir<W: Write>(tar: &mut tar::Builder<W>, dir: &Path, name: &str) -> io::Result<()> {
    let slashed = format!("{name}/");
    if slashed.len() >= 100 {
        return tar.append_path_with_name(dir, name);
    }
    let mut header = tar::Header::new_gnu();
    header.set_metadata(&fs::metadata(dir)?);
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    field[..slashed.len()].copy_from_slice(slashed.as_bytes());
    header.set_cksum();
    tar.append(&header, io::empty())
}

/// A regular file made of `data`, as Python's `TarInfo` for a generated file (mtime 0).
fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8], mode: u32) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append_data(&mut header, name, data)
}
