//! `barman get-wal SERVER WAL`: the backup-host side of `barman-wal-restore` and of local
//! `restore_command`s. Sends one archived WAL file (decompressed unless asked otherwise) to
//! stdout or into a directory, or lists the next available names with `--peek`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use barman_common::compress::{self, Codec, Level};
use barman_common::durable::TempFile;
use barman_common::gpg;
use barman_common::wal::WalFileName;

use crate::server::Server;
use crate::CmdError;

/// Options of one get-wal call.
#[derive(Debug, Clone, Default)]
pub struct GetWal {
    /// The requested name.
    pub wal: String,
    /// `-o`: write `DIR/<WAL>` instead of stdout.
    pub output_dir: Option<PathBuf>,
    /// `-P`: also serve `.partial` files from streaming.
    pub partial: bool,
    /// `-z`/`-j`: recompress the output.
    pub recompress: Option<Codec>,
    /// `--keep-compression`: send the stored bytes.
    pub keep_compression: bool,
    /// `-p N`: list up to N available names instead.
    pub peek: Option<usize>,
    /// `--batch N` (our extension): send up to N available files starting at the name as
    /// one tar stream with a `SHA256SUMS` member, the put-wal wire format.
    pub batch: Option<usize>,
    /// `--batch-lz4` (our extension): in a batch, files stored uncompressed go out as LZ4
    /// frames. One ssh stream moves a few hundred MiB/s at the cost of a core on each end;
    /// LZ4 at GB/s shrinks WAL several times, so this relieves both ssh ends and both
    /// checksums, which then cover the smaller bytes sent.
    pub batch_lz4: bool,
}

/// Runs get-wal. Returns info lines for the console.
pub fn run(server: &Server, opts: &GetWal) -> Result<Vec<String>, CmdError> {
    let name: WalFileName =
        opts.wal.parse().map_err(|_| CmdError::Code(format!("'{}' is not a valid wal file name", opts.wal), 3))?;
    if opts.recompress.is_some() && opts.keep_compression {
        return Err(CmdError::Error("--keep-compression cannot be used with -z/-j".into()));
    }
    if let Some(n) = opts.peek {
        let mut out = io::stdout().lock();
        for found in peek(server, &name, n) {
            writeln!(out, "{found}")?;
        }
        return Ok(Vec::new());
    }
    if let Some(n) = opts.batch {
        barman_common::remote::widen_pipe(&io::stdout());
        let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
        send_batch(server, &name, n, opts, &mut out)?;
        return Ok(Vec::new());
    }
    let Some(path) = locate(server, &name, opts.partial) else {
        return Err(server.err(format!("WAL file '{name}' not found")));
    };
    match &opts.output_dir {
        None => {
            send(server, &path, opts, &mut BufWriter::with_capacity(1 << 20, io::stdout().lock())).map(|()| Vec::new())
        }
        Some(dir) => send_to_dir(server, &path, &name, dir, opts),
    }
}

fn send_to_dir(
    server: &Server,
    path: &Path,
    name: &WalFileName,
    dir: &Path,
    opts: &GetWal,
) -> Result<Vec<String>, CmdError> {
    let dest = dir.join(name.as_str());
    // Written beside the destination and renamed: a failure (a wrong passphrase, a corrupt
    // file) leaves the destination as it was.
    let mut tmp = TempFile::create(&dest, 0o600)
        .map_err(|e| CmdError::Code(format!("Unable to open '{}' file: {e}", dest.display()), 3))?;
    let mut out = BufWriter::with_capacity(1 << 20, tmp.file().try_clone()?);
    send(server, path, opts, &mut out)?;
    out.into_inner().map_err(io::IntoInnerError::into_error)?;
    tmp.publish()?;
    Ok(vec![format!("Sending WAL '{name}' for server '{}' into '{}' file", server.name, dest.display())])
}

/// Sends the available files from `first` on (as `--peek` lists them) as a tar stream, each
/// decompressed unless `--keep-compression`. Every data member is followed by a `SHA256SUMS`
/// member covering just that file, and the output is flushed there, so the client can verify
/// and publish each file as soon as it arrived instead of at the end of the batch. One ssh
/// round trip then carries many segments, so a restore's prefetcher pays the connection
/// cost once per batch instead of once per file.
fn send_batch(
    server: &Server,
    first: &WalFileName,
    n: usize,
    opts: &GetWal,
    out: &mut impl Write,
) -> Result<(), CmdError> {
    use barman_common::wire::{write_member, MemberMeta, SumAlgo};
    let mut packed = Vec::new();
    for name in peek(server, first, n) {
        let wal: WalFileName = name.parse().expect("peek lists valid names");
        let Some(path) = locate(server, &wal, false) else { continue };
        let digest = send_member(server, &path, &name, opts, out, &mut packed)?;
        let meta = MemberMeta { mode: 0o644, ..MemberMeta::default() };
        write_member(out, SumAlgo::Sha256.member_name(), meta, format!("{digest} *{name}\n").as_bytes())?;
        out.flush()?;
    }
    out.write_all(&[0u8; 1024])?;
    out.flush()?;
    Ok(())
}

/// Writes one batch member for the stored file `path` and returns its SHA-256. Stored bytes
/// that go out as they are (uncompressed, a partial, or `--keep-compression`) are streamed
/// and hashed in one pass; a file that must be decompressed, recompressed or (with
/// `--batch-lz4`) compressed is built in `packed` first, because a tar header needs the
/// size up front.
fn send_member(
    server: &Server,
    path: &Path,
    name: &str,
    opts: &GetWal,
    out: &mut impl Write,
    packed: &mut Vec<u8>,
) -> Result<String, CmdError> {
    use barman_common::wire::{write_member, write_member_header, write_padding, MemberMeta, SumAlgo};
    use std::os::unix::fs::MetadataExt;
    let mut file = File::open(path)?;
    let md = file.metadata()?;
    let meta = MemberMeta { mode: 0o600, uid: 0, gid: 0, mtime: md.mtime().max(0) as u64 };
    let partial = is_partial(path);
    let raw = partial || opts.keep_compression;
    let stored = compress::detect_file(path)?;
    let mut hasher = SumAlgo::Sha256.hasher();
    let built = if !partial && gpg::is_encrypted_file(path)? {
        packed.clear();
        send(server, path, opts, &mut *packed)?;
        true
    } else if opts.batch_lz4 && stored.is_none() && opts.recompress.is_none() {
        packed.clear();
        compress::compress(Codec::Lz4, Level::Low, BufReader::with_capacity(1 << 20, &mut file), &mut *packed)?;
        true
    } else if !raw && (opts.recompress.is_some() || stored.is_some()) {
        packed.clear();
        send(server, path, opts, &mut *packed)?;
        true
    } else {
        false
    };
    if built {
        hasher.update(packed);
        write_member(out, name, meta, packed)?;
        return Ok(hasher.hex());
    }
    write_member_header(out, name, meta, md.len())?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = md.len();
    while left > 0 {
        let k = file.read(&mut buf[..left.min(1 << 20) as usize])?;
        if k == 0 {
            return Err(CmdError::Error(format!("{} shrank while being sent", path.display())));
        }
        hasher.update(&buf[..k]);
        out.write_all(&buf[..k])?;
        left -= k as u64;
    }
    write_padding(out, md.len())?;
    Ok(hasher.hex())
}

/// Copies the stored file to `out`: decrypted first when gpg-encrypted (never a partial:
/// the archiver has not touched those), then raw for partials and `--keep-compression`,
/// otherwise decompressed (format sniffed from the magic), then recompressed if asked.
fn send(server: &Server, path: &Path, opts: &GetWal, out: &mut impl Write) -> Result<(), CmdError> {
    let partial = is_partial(path);
    let raw = partial || opts.keep_compression;
    let source: Box<dyn Read> = if !partial && gpg::is_encrypted_file(path)? {
        Box::new(server.gpg.decrypt(path)?)
    } else {
        Box::new(File::open(path)?)
    };
    let mut file = BufReader::with_capacity(1 << 20, source);
    let stored = if raw { None } else { compress::detect(file.fill_buf()?) };
    let mut plain: Box<dyn Read> = match stored {
        Some(codec) => compress::decoder(codec, file)?,
        None => Box::new(file),
    };
    match opts.recompress.filter(|_| !raw) {
        Some(codec) => {
            compress::compress(codec, Level::Medium, plain, &mut *out)?;
        }
        None => {
            io::copy(&mut plain, out)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn is_partial(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "partial")
}

/// Where `name` is found, in Barman's lookup order; `--partial` adds the `.partial`
/// variants. The archive is checked again last, for a file the archiver just moved.
pub fn locate(server: &Server, name: &WalFileName, partial: bool) -> Option<PathBuf> {
    let archived = server.layout.wal_path(name);
    let mut places =
        vec![archived.clone(), server.layout.incoming.join(name.as_str()), server.layout.streaming.join(name.as_str())];
    if partial {
        let p = format!("{name}.partial");
        places.push(server.layout.streaming.join(&p));
        places.push(server.layout.streaming.join(name.as_str()));
        places.push(archived.with_file_name(&p));
        places.push(server.layout.incoming.join(&p));
    }
    places.push(archived);
    places.into_iter().find(|p| p.is_file())
}

/// Up to `n` available names starting at `first`. The segment size is unknown here, so names
/// advance by one; at a gap whose low part is a power of two (the end of an xlogid for that
/// size) the next xlogid is tried once.
pub fn peek(server: &Server, first: &WalFileName, n: usize) -> Vec<String> {
    if !first.is_segment() {
        return locate(server, first, false).map(|_| first.to_string()).into_iter().take(n).collect();
    }
    let tli = first.timeline().get();
    let (mut log, mut seg) = first.log_and_seg();
    let (mut out, mut jumped) = (Vec::new(), false);
    while out.len() < n {
        let name: WalFileName = format!("{tli:08X}{log:08X}{seg:08X}").parse().expect("built from valid parts");
        if locate(server, &name, false).is_some() {
            out.push(name.to_string());
            (seg, jumped) = (seg.wrapping_add(1), false);
        } else if seg.is_power_of_two() && !jumped && !out.is_empty() {
            (log, seg, jumped) = (log + 1, 0, true);
        } else {
            break;
        }
    }
    out
}
