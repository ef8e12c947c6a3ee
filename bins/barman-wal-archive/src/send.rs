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
use crate::wire;

fn target(opts: &Options) -> SshTarget {
    SshTarget { user: opts.user.clone(), host: opts.host.clone(), port: opts.port }
}

/// The remote words: `barman [--config='CFG'] put-wal [--wire-lz4] SERVER [--test]`.
fn remote_words(opts: &Options, test: bool, wire_lz4: bool) -> Vec<String> {
    let mut words = vec!["barman".to_owned()];
    if let Some(cfg) = &opts.config {
        words.push(format!("--config={}", shell_quote(cfg)));
    }
    words.push("put-wal".to_owned());
    if wire_lz4 {
        words.push(wire::FLAG.to_owned());
    }
    words.push(shell_quote(&opts.server));
    if test {
        words.push("--test".to_owned());
    }
    words
}

/// `--test`: run `put-wal --test`, print its output, return its raw status.
pub fn test_connection(opts: &Options) -> Result<(), ToolError> {
    let out = target(opts).command(&remote_words(opts, true, false)).stdin(Stdio::null()).output()?;
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
///
/// Plain files go out LZ4-framed (`put-wal --wire-lz4`, decoded before they are stored)
/// when the backup host's `barman` has the extension; one without it (real Barman) refuses
/// the flag before reading a byte, which is remembered (see [`wire`]) and the stream is
/// sent again as Barman's client sends it. `cache` is the client's private cache directory,
/// where that is remembered (none: the stream goes as Barman's).
pub fn send_files(opts: &Options, paths: &[PathBuf], cache: Option<&Path>) -> Result<(), ToolError> {
    if let Some(cache) = cache.filter(|c| wire::usable(opts, c)) {
        let (result, stderr) = send_stream(opts, paths, true);
        if result.is_err() && wire::refused(&stderr) {
            wire::remember_unsupported(cache);
        } else {
            io::stderr().write_all(stderr.as_bytes())?;
            return result;
        }
    }
    send_stream(opts, paths, false).0
}

/// One put-wal exchange; with `wire_lz4` the remote stderr is captured and returned (to tell
/// a refused flag from other failures), otherwise it goes straight to ours.
fn send_stream(opts: &Options, paths: &[PathBuf], wire_lz4: bool) -> (Result<(), ToolError>, String) {
    let mut command = target(opts).command(&remote_words(opts, false, wire_lz4));
    command.stdin(Stdio::piped());
    if wire_lz4 {
        command.stderr(Stdio::piped());
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return (Err(e.into()), String::new()),
    };
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let stdin = child.stdin.take().expect("stdin was requested as piped");
    barman_common::remote::widen_pipe(&stdin);
    let codec = if wire_lz4 {
        Some((compress::Codec::Lz4, compress::Level::Low))
    } else {
        opts.compression.map(|c| (c, opts.level))
    };
    let written = write_stream(opts, codec, paths, stdin);
    let status = wait(&mut child);
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    let status = match status {
        Ok(status) => status,
        Err(e) => return (Err(e.into()), stderr),
    };
    let result = match (status, written) {
        (Some(0), Ok(())) => Ok(()),
        (Some(SSH_CONNECTION_FAILED), _) => Err(ToolError::Connection),
        (Some(0), Err(e)) => Err(ToolError::Io(e)),
        (_, Err(e)) if e.kind() != io::ErrorKind::BrokenPipe => Err(ToolError::Io(e)),
        (Some(code), _) => Err(ToolError::Remote(code)),
        (None, _) => Err(ToolError::Io(io::Error::other("ssh was killed by a signal"))),
    };
    (result, stderr)
}

fn wait(child: &mut Child) -> io::Result<Option<i32>> {
    Ok(child.wait()?.code())
}

fn write_stream(
    opts: &Options,
    codec: Option<(compress::Codec, compress::Level)>,
    paths: &[PathBuf],
    stdin: impl Write,
) -> io::Result<()> {
    let algo = if opts.md5 { SumAlgo::Md5 } else { SumAlgo::Sha256 };
    let mut out = BufWriter::with_capacity(1 << 20, stdin);
    let mut sums = String::new();
    match codec {
        // Several files to compress (parallel mode): compress the next file on a second
        // thread while this one goes out, so compression overlaps with ssh.
        Some(codec) if paths.len() > 1 => std::thread::scope(|s| -> io::Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Packed>>(1);
            s.spawn(move || {
                for path in paths {
                    let packed = pack(codec, algo, path);
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
                let (name, digest) = write_file(codec, algo, path, &mut out)?;
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
fn pack(codec: (compress::Codec, compress::Level), algo: SumAlgo, path: &Path) -> io::Result<Packed> {
    let (name, meta, file, len) = open_member(path)?;
    let mut data = Vec::with_capacity(len as usize / 4);
    compress::compress(codec.0, codec.1, BufReader::with_capacity(1 << 20, file), &mut data)?;
    let mut hasher = algo.hasher();
    hasher.update(&data);
    Ok(Packed { name, meta, data, digest: hasher.hex() })
}

/// Writes one member for `path`, hashing what is sent; returns its name and digest.
fn write_file(
    codec: Option<(compress::Codec, compress::Level)>,
    algo: SumAlgo,
    path: &Path,
    out: &mut impl Write,
) -> io::Result<(String, String)> {
    if let Some(codec) = codec {
        let packed = pack(codec, algo, path)?;
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
