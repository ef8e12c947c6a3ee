//! One get-wal exchange: ssh, receive into a temp file, decompress, verify, rename; and
//! `get-wal --peek` and `--test`.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;

use barman_common::compress;
use barman_common::durable::TempFile;
use barman_common::exit::ExitCode;

use crate::cli::Options;
use crate::command::{map_status, remote_words, target};
use crate::error::{Corruption, ToolError};
use crate::verify::verify_head;

/// `--test`: print the remote output and return its raw status.
pub fn test_connection(opts: &Options) -> Result<(), ToolError> {
    let words = remote_words(opts, &["--test".to_owned()], "dummy_wal_name");
    let out = target(opts).command(&words).stdin(Stdio::null()).output().map_err(ToolError::Ssh)?;
    let _ = io::stdout().write_all(&out.stdout);
    let _ = io::stdout().write_all(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(()),
        // `None`: killed by a signal.
        c => Err(ToolError::TestStatus(c.unwrap_or(ExitCode::Internal.code()))),
    }
}

/// `get-wal --peek N`: the available names starting at `wal`.
pub fn peek(opts: &Options, wal: &str, n: usize) -> Result<Vec<String>, ToolError> {
    let words = remote_words(opts, &["--peek".to_owned(), format!("'{n}'")], wal);
    let out =
        target(opts).command(&words).stdin(Stdio::null()).stderr(Stdio::null()).output().map_err(ToolError::Ssh)?;
    map_status(out.status.code())?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

fn get_flags(opts: &Options) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(f) = opts.server_compression {
        flags.push(f.to_owned());
    }
    if opts.keep_compression {
        flags.push("--keep-compression".to_owned());
    }
    if opts.partial {
        flags.push("--partial".to_owned());
    }
    flags
}

/// Fetches `wal` into a temp file in `tmp_dir`, decompresses and verifies it, then renames
/// it onto `dest`. Nothing appears at `dest` unless every step succeeded.
pub fn fetch_verified(opts: &Options, wal: &str, tmp_dir: &Path, dest: &Path) -> Result<(), ToolError> {
    let local = ToolError::local(tmp_dir);
    let mut raw = TempFile::create(&tmp_dir.join(wal), 0o600)
        .map_err(|source| ToolError::DestUnwritable { dir: tmp_dir.to_owned(), source })?;
    let file = raw.file().try_clone().map_err(&local)?;
    let status = target(opts)
        .command(&remote_words(opts, &get_flags(opts), wal))
        .stdin(Stdio::null())
        .stdout(file)
        .status()
        .map_err(&local)?;
    map_status(status.code())?;
    let plain = decompress_if_needed(raw, tmp_dir, wal).map_err(&local)?;
    verify(plain.temp_path(), wal)?;
    plain.publish_to(dest).map_err(&local)
}

/// Replaces a compressed download by its decompressed content (files sent with
/// `--keep-compression`, or by a server that compresses).
fn decompress_if_needed(raw: TempFile, dir: &Path, wal: &str) -> io::Result<TempFile> {
    let Some(codec) = compress::detect_file(raw.temp_path())? else {
        return Ok(raw);
    };
    let mut plain = TempFile::create(&dir.join(wal), 0o600)?;
    let input = BufReader::with_capacity(1 << 20, File::open(raw.temp_path())?);
    compress::decompress(codec, input, plain.file())?;
    Ok(plain)
}

/// A plain segment must be a whole segment whose first page is where its name says.
fn verify(path: &Path, wal: &str) -> Result<(), ToolError> {
    let unreadable = |source| Corruption::Unreadable { wal: wal.to_owned(), source };
    let mut head = Vec::with_capacity(64);
    let f = File::open(path).map_err(unreadable)?;
    let len = f.metadata().map_err(unreadable)?.len();
    f.take(64).read_to_end(&mut head).map_err(unreadable)?;
    verify_head(wal, &head, len)
}

/// Moves a verified spool file onto `dest` (copying when the spool is on another
/// filesystem).
pub fn install(spooled: &Path, dest: &Path) -> io::Result<()> {
    match fs::rename(spooled, dest) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            let mut tmp = TempFile::create(dest, 0o600)?;
            io::copy(&mut File::open(spooled)?, tmp.file())?;
            tmp.publish()?;
            fs::remove_file(spooled)
        }
        other => other,
    }
}
