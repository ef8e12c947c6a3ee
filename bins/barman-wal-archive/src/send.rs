//! One put-wal exchange: spawn ssh, stream the tar with its checksum member, map the exit
//! status.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use barman_common::compress;
use barman_common::exit::ExitCode;
use barman_common::remote::{shell_quote, SshTarget, SSH_CONNECTION_FAILED};
use barman_common::wire::{write_member, write_member_header, write_padding, MemberMeta, SumAlgo};

use crate::cli::Options;
use crate::error::ToolError;

fn target(opts: &Options) -> SshTarget {
    SshTarget { user: opts.user.clone(), host: opts.host.clone(), port: opts.port }
}

/// The remote words: `barman [--config='CFG'] put-wal SERVER [--test]`.
fn remote_words(opts: &Options, test: bool) -> Vec<String> {
    let mut words = vec!["barman".to_owned()];
    if let Some(cfg) = &opts.config {
        words.push(format!("--config={}", shell_quote(cfg)));
    }
    words.extend(["put-wal".to_owned(), shell_quote(&opts.server)]);
    if test {
        words.push("--test".to_owned());
    }
    words
}

/// `--test`: run `put-wal --test`, print its output, return its raw status.
pub fn test_connection(opts: &Options) -> Result<(), ToolError> {
    let out = target(opts).command(&remote_words(opts, true)).stdin(Stdio::null()).output()?;
    io::stdout().write_all(&out.stdout)?;
    io::stdout().write_all(&out.stderr)?;
    match out.status.code() {
        Some(0) => Ok(()),
        Some(c) => Err(ToolError::TestStatus(c)),
        // Killed by a signal.
        None => Err(ToolError::TestStatus(ExitCode::Internal.code())),
    }
}

/// Sends `paths` in one stream. Succeeds only when the remote put-wal exited 0, which it does
/// after fsyncing every file into its incoming directory.
pub fn send_files(opts: &Options, paths: &[PathBuf]) -> Result<(), ToolError> {
    let mut child = target(opts).command(&remote_words(opts, false)).stdin(Stdio::piped()).spawn()?;
    let stdin = child.stdin.take().expect("stdin was requested as piped");
    barman_common::remote::widen_pipe(&stdin);
    let written = write_stream(opts, paths, stdin);
    let status = wait(&mut child)?;
    match (status, written) {
        (Some(0), Ok(())) => Ok(()),
        (Some(SSH_CONNECTION_FAILED), _) => Err(ToolError::Connection),
        (Some(0), Err(e)) => Err(ToolError::Io(e)),
        (_, Err(e)) if e.kind() != io::ErrorKind::BrokenPipe => Err(ToolError::Io(e)),
        (Some(code), _) => Err(ToolError::Remote(code)),
        (None, _) => Err(ToolError::Io(io::Error::other("ssh was killed by a signal"))),
    }
}

fn wait(child: &mut Child) -> io::Result<Option<i32>> {
    Ok(child.wait()?.code())
}

fn write_stream(opts: &Options, paths: &[PathBuf], stdin: impl Write) -> io::Result<()> {
    let algo = if opts.md5 { SumAlgo::Md5 } else { SumAlgo::Sha256 };
    let mut out = BufWriter::with_capacity(1 << 20, stdin);
    let mut sums = String::new();
    match opts.compression {
        // Several files to compress (parallel mode): compress the next file on a second
        // thread while this one goes out, so compression overlaps with ssh.
        Some(codec) if paths.len() > 1 => std::thread::scope(|s| -> io::Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Packed>>(1);
            s.spawn(move || {
                for path in paths {
                    let packed = pack(codec, opts, algo, path);
                    let failed = packed.is_err();
                    if tx.send(packed).is_err() || failed {
                        return;
                    }
                }
            });
            for _ in paths {
                let packed = rx.recv().map_err(|_| io::Error::other("compression thread stopped"))??;
                write_member(&mut out, &packed.name, packed.meta, &packed.data)?;
                let _ = writeln!(sums, "{} *{}", packed.digest, packed.name);
            }
            Ok(())
        })?,
        _ => {
            for path in paths {
                let (name, digest) = write_file(opts, algo, path, &mut out)?;
                let _ = writeln!(sums, "{digest} *{name}");
            }
        }
    }
    write_member(&mut out, algo.member_name(), MemberMeta { mode: 0o644, ..MemberMeta::default() }, sums.as_bytes())?;
    out.write_all(&[0u8; 1024])?;
    out.flush()
}

/// A file compressed in memory, ready to be sent.
struct Packed {
    name: String,
    meta: MemberMeta,
    data: Vec<u8>,
    digest: String,
}

/// The member name and tar metadata of `path`, and the open file.
fn open_member(path: &Path) -> io::Result<(String, MemberMeta, File, u64)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid WAL path {}", path.display())))?
        .to_owned();
    let file = File::open(path)?;
    let md = file.metadata()?;
    let meta = MemberMeta {
        mode: md.mode() & 0o7777,
        uid: u64::from(md.uid()),
        gid: u64::from(md.gid()),
        mtime: md.mtime().max(0) as u64,
    };
    Ok((name, meta, file, md.len()))
}

/// Compresses `path` into memory (a tar member's size must be known before its data) and
/// hashes the compressed bytes, which are what is sent and stored.
fn pack(codec: compress::Codec, opts: &Options, algo: SumAlgo, path: &Path) -> io::Result<Packed> {
    let (name, meta, file, len) = open_member(path)?;
    let mut data = Vec::with_capacity(len as usize / 4);
    compress::compress(codec, opts.level, BufReader::with_capacity(1 << 20, file), &mut data)?;
    let mut hasher = algo.hasher();
    hasher.update(&data);
    Ok(Packed { name, meta, data, digest: hasher.hex() })
}

/// Writes one member for `path`, hashing what is sent; returns its name and digest.
fn write_file(opts: &Options, algo: SumAlgo, path: &Path, out: &mut impl Write) -> io::Result<(String, String)> {
    if let Some(codec) = opts.compression {
        let packed = pack(codec, opts, algo, path)?;
        write_member(out, &packed.name, packed.meta, &packed.data)?;
        return Ok((packed.name, packed.digest));
    }
    let (name, meta, mut file, len) = open_member(path)?;
    let mut hasher = algo.hasher();
    // Uncompressed: stream the file, hashing each chunk as it is sent, so reading, hashing
    // and ssh's encryption overlap instead of running one after the other.
    write_member_header(out, &name, meta, len)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = file.read(&mut buf[..left.min(1 << 20) as usize])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being sent", path.display()),
            ));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    write_padding(out, len)?;
    Ok((name, hasher.hex()))
}
