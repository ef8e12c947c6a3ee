//! One get-wal exchange: ssh, receive into a temp file, decompress, verify, rename; and
//! `get-wal --peek`.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;

use barman_common::compress;
use barman_common::durable::TempFile;
use barman_common::remote::{shell_quote, SshTarget, SSH_CONNECTION_FAILED};

use crate::{Options, ToolError};

fn target(opts: &Options) -> SshTarget {
    SshTarget { user: opts.user.clone(), host: opts.host.clone(), port: opts.port }
}

/// `barman [--config CFG] "get-wal <opts> 'SERVER' 'WAL'"`, the get-wal part as one word as
/// Barman's client builds it.
pub fn remote_words(opts: &Options, flags: &[String], wal: &str) -> Vec<String> {
    let mut words = vec!["barman".to_owned()];
    if let Some(cfg) = &opts.config {
        words.push(format!("--config {}", shell_quote(cfg)));
    }
    let mut get = vec!["get-wal".to_owned()];
    get.extend(flags.iter().cloned());
    get.extend([format!("'{}'", opts.server.replace('\'', "")), format!("'{}'", wal.replace('\'', ""))]);
    words.push(get.join(" "));
    words
}

pub(crate) fn map_status(code: Option<i32>) -> Result<(), ToolError> {
    match code {
        Some(0) => Ok(()),
        Some(SSH_CONNECTION_FAILED) => Err(ToolError::Connection),
        Some(c) => Err(ToolError::Remote(c)),
        None => Err(ToolError::Local("ssh was killed by a signal".into())),
    }
}

/// `--test`: print the remote output and return its raw status.
pub fn test_connection(opts: &Options) -> Result<(), ToolError> {
    let words = remote_words(opts, &["--test".to_owned()], "dummy_wal_name");
    let out =
        target(opts).command(&words).stdin(Stdio::null()).output().map_err(|e| ToolError::Local(e.to_string()))?;
    let _ = io::stdout().write_all(&out.stdout);
    let _ = io::stdout().write_all(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(()),
        c => Err(ToolError::TestStatus(c.unwrap_or(4))),
    }
}

/// `get-wal --peek N`: the available names starting at `wal`.
pub fn peek(opts: &Options, wal: &str, n: usize) -> Result<Vec<String>, ToolError> {
    let words = remote_words(opts, &["--peek".to_owned(), format!("'{n}'")], wal);
    let out = target(opts)
        .command(&words)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| ToolError::Local(e.to_string()))?;
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
    let local = |e: io::Error| ToolError::Local(format!("{}: {e}", tmp_dir.display()));
    let mut raw = TempFile::create(&tmp_dir.join(wal), 0o600)
        .map_err(|e| ToolError::BadDest(format!("cannot write into {}: {e}", tmp_dir.display())))?;
    let file = raw.file().try_clone().map_err(local)?;
    let status = target(opts)
        .command(&remote_words(opts, &get_flags(opts), wal))
        .stdin(Stdio::null())
        .stdout(file)
        .status()
        .map_err(local)?;
    map_status(status.code())?;
    let plain = decompress_if_needed(raw, tmp_dir, wal).map_err(local)?;
    verify(plain.temp_path(), wal)?;
    plain.publish_to(dest).map_err(local)
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
    let corrupt = |m: String| ToolError::Corrupt(format!("received {wal} failed verification: {m}"));
    let mut head = Vec::with_capacity(64);
    let f = File::open(path).map_err(|e| corrupt(e.to_string()))?;
    let len = f.metadata().map_err(|e| corrupt(e.to_string()))?.len();
    f.take(64).read_to_end(&mut head).map_err(|e| corrupt(e.to_string()))?;
    crate::batch::verify_head(wal, &head, len)
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
