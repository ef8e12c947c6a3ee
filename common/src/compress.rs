//! WAL and file compression in Barman's formats, with detection by magic bytes.
//!
//! Barman stores compressed WAL files under their bare names and tells the format from the
//! `xlog.db` column or, for foreign files, from magic bytes, trying its compressors in
//! alphabetical order (`bzip2, custom, gzip, lz4, pigz, pybzip2, pygzip, snappy, xz, zstd`).
//! The on-disk format is what matters here: `gzip`, `pygzip` and `pigz` all write gzip, and
//! `bzip2`/`pybzip2` bzip2. Gzip decoding accepts multi-member streams, as pigz writes them.
//!
//! LZ4 goes through the reference C library, which decodes this WAL at several times
//! lz4_flex's rate (the restore path decompresses every prefetched segment) and compresses
//! it faster too. Frames are written in 4 MiB independent blocks without content checksum
//! (what is sent or stored is checksummed by its own sums member or manifest), in LZ4's
//! fast mode for Barman's named levels: LZ4 is chosen for speed, so `low`/`medium`/`high`
//! do not switch to LZ4HC as Barman's lz4 levels 3 and above do; an explicit integer level
//! of 3 or more does. [`Lz4Reader`] adds what the C binding's reader lacks: a stream cut
//! short is an error, and concatenated frames are read whole.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

/// An on-disk compression format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// bzip2 (`bzip2`, `pybzip2`).
    Bzip2,
    /// gzip (`gzip`, `pygzip`, `pigz`).
    Gzip,
    /// LZ4 frame format.
    Lz4,
    /// Snappy framing format.
    Snappy,
    /// xz container.
    Xz,
    /// Zstandard frame.
    Zstd,
}

/// Every codec, in Barman's detection order (alphabetical by its compressor names).
pub const DETECTION_ORDER: [Codec; 6] = [Codec::Bzip2, Codec::Gzip, Codec::Lz4, Codec::Snappy, Codec::Xz, Codec::Zstd];

/// The longest magic of any codec (snappy's stream identifier).
pub const MAX_MAGIC_LEN: usize = 10;

/// How hard to compress: Barman's `compression_level` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Level {
    /// `low`.
    Low,
    /// `medium` (the default).
    #[default]
    Medium,
    /// `high`.
    High,
    /// An explicit integer, clamped into the codec's range.
    Int(i32),
}

/// A name that is not a known compression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression '{0}'")]
pub struct UnknownCodec(pub String);

impl Codec {
    /// The format behind one of Barman's `compression` names (`gzip`, `pigz`, `pygzip`,
    /// `bzip2`, `pybzip2`, `xz`, `zstd`, `lz4`, `snappy`).
    pub fn from_barman_name(name: &str) -> Result<Codec, UnknownCodec> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "gzip" | "pygzip" | "pigz" => Codec::Gzip,
            "bzip2" | "pybzip2" => Codec::Bzip2,
            "xz" => Codec::Xz,
            "zstd" => Codec::Zstd,
            "lz4" => Codec::Lz4,
            "snappy" => Codec::Snappy,
            _ => return Err(UnknownCodec(name.to_owned())),
        })
    }

    /// The name Barman reports for this format when it detects it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Bzip2 => "bzip2",
            Codec::Gzip => "gzip",
            Codec::Lz4 => "lz4",
            Codec::Snappy => "snappy",
            Codec::Xz => "xz",
            Codec::Zstd => "zstd",
        }
    }

    /// The file-name suffix of this format (`.gz`, `.lz4`, `.zst`...), as PostgreSQL,
    /// pg_basebackup and Barman name compressed tar archives.
    pub fn suffix(self) -> &'static str {
        match self {
            Codec::Bzip2 => ".bz2",
            Codec::Gzip => ".gz",
            Codec::Lz4 => ".lz4",
            Codec::Snappy => ".sz",
            Codec::Xz => ".xz",
            Codec::Zstd => ".zst",
        }
    }

    /// The magic bytes a stream of this format starts with.
    pub fn magic(self) -> &'static [u8] {
        match self {
            Codec::Bzip2 => b"BZh",
            Codec::Gzip => &[0x1f, 0x8b, 0x08],
            Codec::Lz4 => &[0x04, 0x22, 0x4d, 0x18],
            Codec::Snappy => &[0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59],
            Codec::Xz => &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
            Codec::Zstd => &[0x28, 0xb5, 0x2f, 0xfd],
        }
    }

    /// The numeric level for `level`, with Barman's low/medium/high values per codec and
    /// integers clamped into the codec's range.
    pub fn level_value(self, level: Level) -> i32 {
        let (low, medium, high, min, max) = match self {
            Codec::Gzip => (1, 6, 9, 1, 9),
            Codec::Bzip2 => (1, 5, 9, 1, 9),
            Codec::Xz => (1, 3, 5, 0, 9),
            Codec::Zstd => (1, 4, 9, -22, 22),
            Codec::Lz4 => (0, 6, 10, 0, 16),
            Codec::Snappy => (0, 0, 0, 0, 0),
        };
        match level {
            Level::Low => low,
            Level::Medium => medium,
            Level::High => high,
            Level::Int(n) => n.clamp(min, max),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The codec whose magic `head` starts with, in Barman's detection order; `None` for
/// uncompressed data (a WAL segment starts with its page magic, never one of these).
pub fn detect(head: &[u8]) -> Option<Codec> {
    DETECTION_ORDER.into_iter().find(|c| head.starts_with(c.magic()))
}

/// Detects the codec of the file at `path` from its first bytes.
pub fn detect_file(path: &Path) -> io::Result<Option<Codec>> {
    let mut head = Vec::with_capacity(MAX_MAGIC_LEN);
    File::open(path)?.take(MAX_MAGIC_LEN as u64).read_to_end(&mut head)?;
    Ok(detect(&head))
}

/// A streaming decoder for `codec` over `input`.
pub fn decoder<'a, R: Read + 'a>(codec: Codec, input: R) -> io::Result<Box<dyn Read + 'a>> {
    let input = BufReader::with_capacity(256 * 1024, input);
    Ok(match codec {
        Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Codec::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(input)),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Codec::Lz4 => Box::new(Lz4Reader::new(input)?),
        Codec::Snappy => Box::new(snap::read::FrameDecoder::new(input)),
    })
}

/// LZ4 frames decoded by the C library. Its reader reports the end of the input as the end
/// of the data even inside a frame, and stops after the first frame; this one checks that
/// each frame was complete and goes on with the next one while input remains.
pub struct Lz4Reader<R: BufRead> {
    frame: Option<lz4::Decoder<R>>,
}

impl<R: BufRead> Lz4Reader<R> {
    /// A reader of the LZ4 frames in `input`.
    pub fn new(input: R) -> io::Result<Lz4Reader<R>> {
        Ok(Lz4Reader { frame: Some(lz4::Decoder::new(input)?) })
    }
}

impl<R: BufRead> Read for Lz4Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(frame) = self.frame.as_mut() else { return Ok(0) };
            let n = frame.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            // The decoder reads no further than its frame, so after a complete frame the
            // input is positioned at the next one, if any.
            let (mut input, complete) = self.frame.take().expect("checked above").finish();
            complete.map_err(|_| io::Error::new(io::ErrorKind::UnexpectedEof, "lz4 stream is truncated"))?;
            if input.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.frame = Some(lz4::Decoder::new(input)?);
        }
    }
}

/// A streaming compressor writing `codec` frames into `W`; [`Encoder::finish`] writes the
/// trailer and returns the output.
#[allow(clippy::large_enum_variant)] // one per stream, never in collections
pub enum Encoder<W: Write> {
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// bzip2.
    Bzip2(bzip2::write::BzEncoder<W>),
    /// xz.
    Xz(xz2::write::XzEncoder<W>),
    /// Zstandard.
    Zstd(zstd::stream::write::Encoder<'static, W>),
    /// LZ4 frame.
    Lz4(lz4::Encoder<W>),
    /// Snappy framing format.
    Snappy(snap::write::FrameEncoder<W>),
}

impl<W: Write> Encoder<W> {
    /// An encoder for `codec` at `level`; `workers` > 0 asks zstd for that many compression
    /// threads (ignored by the other codecs).
    pub fn new(codec: Codec, level: Level, output: W, workers: u32) -> io::Result<Encoder<W>> {
        let lvl = codec.level_value(level);
        Ok(match codec {
            Codec::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(output, flate2::Compression::new(lvl as u32))),
            Codec::Bzip2 => Encoder::Bzip2(bzip2::write::BzEncoder::new(output, bzip2::Compression::new(lvl as u32))),
            Codec::Xz => Encoder::Xz(xz2::write::XzEncoder::new(output, lvl as u32)),
            Codec::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(output, lvl)?;
                if workers > 0 {
                    enc.multithread(workers)?;
                }
                Encoder::Zstd(enc)
            }
            Codec::Lz4 => {
                let hc = match level {
                    Level::Int(n) if n >= 3 => lvl.unsigned_abs(),
                    _ => 0,
                };
                let encoder = lz4::EncoderBuilder::new()
                    .level(hc)
                    .block_size(lz4::BlockSize::Max4MB)
                    .block_mode(lz4::BlockMode::Independent)
                    .checksum(lz4::ContentChecksum::NoChecksum)
                    .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                    .build(output)?;
                Encoder::Lz4(encoder)
            }
            Codec::Snappy => Encoder::Snappy(snap::write::FrameEncoder::new(output)),
        })
    }

    /// Writes the trailer; returns the output (not flushed to disk).
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Bzip2(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Lz4(e) => match e.finish() {
                (output, Ok(())) => Ok(output),
                (_, Err(e)) => Err(e),
            },
            Encoder::Snappy(e) => e.into_inner().map_err(snap::write::IntoInnerError::into_error),
        }
    }

    fn inner(&mut self) -> &mut dyn Write {
        match self {
            Encoder::Gzip(e) => e,
            Encoder::Bzip2(e) => e,
            Encoder::Xz(e) => e,
            Encoder::Zstd(e) => e,
            Encoder::Lz4(e) => e,
            Encoder::Snappy(e) => e,
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner().flush()
    }
}

/// Compresses all of `input` into `output` with `codec` at `level`; returns the number of
/// uncompressed bytes read. The output is complete (trailers written) when this returns.
pub fn compress<R: Read, W: Write>(codec: Codec, level: Level, mut input: R, output: W) -> io::Result<u64> {
    let mut enc = Encoder::new(codec, level, output, 0)?;
    let n = io::copy(&mut input, &mut enc)?;
    enc.finish()?;
    Ok(n)
}

/// Decompresses all of `input` into `output`; returns the number of bytes written.
pub fn decompress<R: Read, W: Write>(codec: Codec, input: R, output: &mut W) -> io::Result<u64> {
    io::copy(&mut decoder(codec, input)?, output)
}

/// Reads a whole file, decompressing it if its magic names a codec. Returns the content and
/// the codec found.
pub fn read_maybe_compressed(path: &Path) -> io::Result<(Vec<u8>, Option<Codec>)> {
    let codec = detect_file(path)?;
    let file = File::open(path)?;
    let mut out = Vec::new();
    match codec {
        Some(c) => decoder(c, file)?.read_to_end(&mut out)?,
        None => BufReader::new(file).read_to_end(&mut out)?,
    };
    Ok((out, codec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        // Something WAL-like: a header, then repetitive records and zero padding.
        let mut v: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        v.resize(1 << 20, 0);
        v
    }

    #[test]
    fn every_codec_round_trips_and_is_detected() {
        let data = sample();
        for codec in DETECTION_ORDER {
            for level in [Level::Low, Level::Medium, Level::High, Level::Int(99)] {
                let mut packed = Vec::new();
                compress(codec, level, &data[..], &mut packed).expect("compress");
                assert_eq!(detect(&packed), Some(codec), "{codec} magic");
                assert!(packed.len() < data.len() / 2, "{codec} compresses");
                let mut out = Vec::new();
                decompress(codec, &packed[..], &mut out).expect("decompress");
                assert!(out == data, "{codec} round trip");
            }
        }
    }

    #[test]
    fn multi_member_gzip_as_pigz_writes_is_read_whole() {
        let mut two = Vec::new();
        compress(Codec::Gzip, Level::Low, &b"hello "[..], &mut two).expect("first");
        compress(Codec::Gzip, Level::Low, &b"world"[..], &mut two).expect("second");
        let mut out = Vec::new();
        decompress(Codec::Gzip, &two[..], &mut out).expect("decompress");
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn uncompressed_wal_is_not_detected_and_truncation_fails() {
        assert_eq!(detect(&[0x10, 0xd1, 0x02, 0x00]), None);
        let mut packed = Vec::new();
        compress(Codec::Zstd, Level::Medium, &sample()[..], &mut packed).expect("compress");
        packed.truncate(packed.len() / 2);
        let mut out = Vec::new();
        assert!(decompress(Codec::Zstd, &packed[..], &mut out).is_err());
    }

    #[test]
    fn every_codec_refuses_a_truncated_stream() {
        let data = sample();
        for codec in DETECTION_ORDER {
            let mut packed = Vec::new();
            compress(codec, Level::Medium, &data[..], &mut packed).expect("compress");
            for cut in [packed.len() / 2, packed.len() - 1] {
                let mut out = Vec::new();
                let got = decompress(codec, &packed[..cut], &mut out);
                assert!(
                    got.is_err(),
                    "{codec} cut at {cut} of {} gave {} bytes without error",
                    packed.len(),
                    out.len()
                );
            }
        }
    }

    #[test]
    fn concatenated_lz4_frames_are_read_whole() {
        let mut two = Vec::new();
        compress(Codec::Lz4, Level::Low, &b"hello "[..], &mut two).expect("first");
        compress(Codec::Lz4, Level::Low, &b"world"[..], &mut two).expect("second");
        let mut out = Vec::new();
        decompress(Codec::Lz4, &two[..], &mut out).expect("decompress");
        assert_eq!(out, b"hello world");
        // A frame written by the C library reads back too.
        let mut enc = lz4::EncoderBuilder::new().build(Vec::new()).expect("encoder");
        enc.write_all(&sample()).expect("write");
        let (c_made, done) = enc.finish();
        done.expect("finish");
        let mut out = Vec::new();
        decompress(Codec::Lz4, &c_made[..], &mut out).expect("decompress");
        assert!(out == sample());
    }

    #[test]
    fn barman_names() {
        assert_eq!(Codec::from_barman_name("pigz"), Ok(Codec::Gzip));
        assert_eq!(Codec::from_barman_name("PyBzip2"), Ok(Codec::Bzip2));
        assert!(Codec::from_barman_name("custom").is_err());
        assert_eq!(Codec::Zstd.level_value(Level::Int(-50)), -22);
        assert_eq!(Codec::Lz4.level_value(Level::High), 10);
    }
}
