//! The base backup of a tar-format backup (Barman `backup_method = postgres` with
//! `backup_compression` and `backup_compression_format = tar`), as Barman 3.20.1's
//! `DecompressOperation` restores it: `data/<oid>.tar.<ext>` into each tablespace's
//! location (or its `--tablespace` relocation), then `data/base.tar.<ext>` into the
//! destination without `recovery.conf` and `tablespace_map`. The archives are read with
//! [`barman_common::compress::decoder`] and written by the streaming
//! [`barman_common::tar::Extractor`], which refuses names escaping the destination.
//!
//! An archive is accepted only whole: the codec's own integrity checks must pass, and the
//! extractor must neither stop inside an entry nor miss the end-of-archive blocks.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use barman_common::compress::{self, Codec};
use barman_common::gpg::{Encryption, Gpg, GpgError};
use barman_common::tar::Extractor;

use crate::progress::Progress;
use crate::CmdError;

/// Top-level base archive entries not restored (Barman's `exclude`).
const EXCLUDED: [&str; 2] = ["recovery.conf", "tablespace_map"];

/// How a tar-format backup's archives are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarFormat {
    codec: Option<Codec>,
    /// backup.info `encryption = gpg`: every archive is `<name>.gpg`, decrypted on the fly.
    encrypted: bool,
}

impl TarFormat {
    /// The format for backup.info's `compression` value (`gzip`, `lz4`, `zstd`, `none`) and
    /// `encryption` (`gpg`, or unset).
    pub fn from_info(value: &str, encryption: Option<&str>) -> Result<TarFormat, CmdError> {
        let encrypted = match encryption {
            None => false,
            Some(e) if Encryption::from_name(e).is_some() => true,
            Some(other) => return Err(CmdError::Error(format!("Unexpected encryption: {other} (expected gpg)"))),
        };
        let codec = match value {
            "gzip" => Some(Codec::Gzip),
            "lz4" => Some(Codec::Lz4),
            "zstd" => Some(Codec::Zstd),
            "none" => None,
            other => {
                return Err(CmdError::Error(format!(
                    "Unexpected compression format: {other} (expected gzip, lz4, zstd or none)"
                )))
            }
        };
        Ok(TarFormat { codec, encrypted })
    }

    /// `<data>/<stem>.tar.<ext>`, with Barman's `.gpg` suffix when encrypted.
    fn archive(self, data: &Path, stem: &str) -> PathBuf {
        let gpg = if self.encrypted { ".gpg" } else { "" };
        data.join(format!("{stem}.tar{}{gpg}", self.codec.map_or("", Codec::suffix)))
    }

    /// For an encrypted backup, proves the passphrase opens its base archive (before
    /// anything is written).
    pub fn check_passphrase(self, data: &Path, gpg: &Gpg) -> Result<(), CmdError> {
        if self.encrypted {
            gpg.check_opens(&self.archive(data, "base"))?;
        }
        Ok(())
    }

    /// The base archive and one per tablespace OID, all of which must exist.
    pub fn check_archives(self, data: &Path, oids: impl IntoIterator<Item = u32>) -> Result<(), CmdError> {
        let stems = std::iter::once("base".to_owned()).chain(oids.into_iter().map(|o| o.to_string()));
        for stem in stems {
            let path = self.archive(data, &stem);
            if !path.is_file() {
                return Err(CmdError::Error(format!(
                    "Failure copying base backup: archive '{}' is missing from the backup",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// Extracts `data/<oid>.tar.<ext>` into `dest` (a tablespace's location).
    pub fn extract_tablespace(self, data: &Path, oid: u32, dest: &Path, src: Source<'_>) -> Result<(), CmdError> {
        let archive = self.archive(data, &oid.to_string());
        self.extract(&archive, dest, BTreeMap::new(), &[], src).map_err(|e| failure(&archive, e))
    }

    /// Extracts `data/base.tar.<ext>` into `dest` (the PGDATA), with `pg_tblspc/<oid>`
    /// links pointing at `links[oid]`, without `recovery.conf` and `tablespace_map`.
    pub fn extract_base(
        self,
        data: &Path,
        dest: &Path,
        links: &[(u32, PathBuf)],
        src: Source<'_>,
    ) -> Result<(), CmdError> {
        let archive = self.archive(data, "base");
        let map = links.iter().map(|(oid, to)| (format!("pg_tblspc/{oid}"), to.clone())).collect();
        self.extract(&archive, dest, map, &EXCLUDED, src).map_err(|e| failure(&archive, e))
    }

    /// Streams `archive` through its decoder into an [`Extractor`] on `dest`.
    fn extract(
        self,
        archive: &Path,
        dest: &Path,
        links: BTreeMap<String, PathBuf>,
        exclude: &[&str],
        src: Source<'_>,
    ) -> io::Result<()> {
        let Source { gpg, progress } = src;
        let stored: Box<dyn Read> = if self.encrypted {
            Box::new(gpg.decrypt(archive).map_err(io::Error::from)?)
        } else {
            Box::new(File::open(archive)?)
        };
        let input = Counting { inner: stored, progress };
        let mut plain: Box<dyn Read + '_> = match self.codec {
            Some(codec) => compress::decoder(codec, input)?,
            None => Box::new(io::BufReader::with_capacity(1 << 20, input)),
        };
        let mut extractor = Extractor::new(dest, links)?.excluding(exclude);
        extractor.feed_from(&mut plain)?;
        extractor.finish().map(drop)
    }
}

/// What reading the archives needs: the server's gpg settings (for an encrypted backup) and
/// the progress line.
pub struct Source<'a> {
    /// Decrypts the archives of an encrypted backup.
    pub gpg: &'a Gpg,
    /// Counts the bytes read.
    pub progress: &'a mut Progress,
}

/// The one-line error for a failed archive (a gpg failure keeps its own type and exit code).
fn failure(archive: &Path, e: io::Error) -> CmdError {
    let e = match GpgError::from_io(e) {
        GpgError::Io(e) => e,
        gpg => return CmdError::Gpg(gpg),
    };
    let cause = e.to_string().replace('\n', " ");
    CmdError::Error(format!("Failure copying base backup: cannot extract '{}': {cause}", archive.display()))
}

/// A reader that reports the (compressed) bytes it reads to the progress line.
struct Counting<'p, R> {
    inner: R,
    progress: &'p mut Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// A small PostgreSQL-like base archive: a file, a directory, a tablespace link, the
    /// excluded files and the end-of-archive blocks.
    fn base_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, name, data).expect("append");
        };
        add("PG_VERSION", b"15\n");
        add("tablespace_map", b"16384 /old\n");
        add("recovery.conf", b"x");
        let mut d = tar::Header::new_ustar();
        d.set_entry_type(tar::EntryType::Directory);
        d.set_mode(0o700);
        d.set_size(0);
        d.set_cksum();
        b.append_data(&mut d, "pg_tblspc/", io::empty()).expect("dir");
        let mut l = tar::Header::new_ustar();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        l.set_mode(0o777);
        b.append_link(&mut l, "pg_tblspc/16384", "/old").expect("link");
        b.into_inner().expect("finish")
    }

    fn write_gz(path: &Path, data: &[u8]) {
        let mut out = File::create(path).expect("create");
        compress::compress(Codec::Gzip, compress::Level::Low, data, &mut out).expect("compress");
    }

    #[test]
    fn base_is_extracted_with_links_mapped_and_excludes_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("mkdir");
        write_gz(&data.join("base.tar.gz"), &base_tar());
        let fmt = TarFormat::from_info("gzip", None).expect("gzip");
        fmt.check_archives(&data, []).expect("present");
        let dest = dir.path().join("dest");
        let mut progress = Progress::with_output("t", 0, false);
        fmt.extract_base(
            &data,
            &dest,
            &[(16384, PathBuf::from("/new"))],
            Source { gpg: &Gpg::default(), progress: &mut progress },
        )
        .expect("extract");
        assert_eq!(fs::read(dest.join("PG_VERSION")).expect("read"), b"15\n");
        assert_eq!(fs::metadata(dest.join("PG_VERSION")).expect("md").permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_link(dest.join("pg_tblspc/16384")).expect("link"), PathBuf::from("/new"));
        assert!(!dest.join("tablespace_map").exists() && !dest.join("recovery.conf").exists());
        assert!(progress.line().contains("MiB"));
    }

    #[test]
    fn truncated_corrupt_missing_and_unknown_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("mkdir");
        let fmt = TarFormat::from_info("gzip", None).expect("gzip");
        let msg = fmt.check_archives(&data, [16384]).expect_err("missing").to_string();
        assert!(msg.contains("base.tar.gz' is missing"), "{msg}");
        assert!(TarFormat::from_info("bzip2", None).is_err());

        let mut packed = Vec::new();
        compress::compress(Codec::Gzip, compress::Level::Low, &base_tar()[..], &mut packed).expect("compress");
        let mut progress = Progress::with_output("t", 0, false);
        for (tag, bytes) in [
            ("truncated", packed[..packed.len() / 2].to_vec()),
            ("corrupt", {
                let mut c = packed.clone();
                let mid = c.len() / 2;
                c[mid] ^= 0xff;
                c[mid + 1] ^= 0xff;
                c
            }),
        ] {
            fs::write(data.join("base.tar.gz"), &bytes).expect("write");
            let dest = dir.path().join(tag);
            let err = fmt
                .extract_base(&data, &dest, &[], Source { gpg: &Gpg::default(), progress: &mut progress })
                .expect_err(tag)
                .to_string();
            assert!(err.starts_with("Failure copying base backup: cannot extract '"), "{tag}: {err}");
            assert!(!err.contains('\n'), "{tag}: {err}");
        }

        // An uncompressed archive cut at an entry boundary: no end-of-archive marker.
        let plain = TarFormat::from_info("none", None).expect("none");
        let whole = base_tar();
        fs::write(data.join("base.tar"), &whole[..512 * 2]).expect("write");
        let err = plain
            .extract_base(&data, &dir.path().join("cut"), &[], Source { gpg: &Gpg::default(), progress: &mut progress })
            .expect_err("cut");
        assert!(err.to_string().contains("truncated"), "{err}");
        fs::write(data.join("base.tar"), &whole).expect("write");
        plain
            .extract_base(
                &data,
                &dir.path().join("whole"),
                &[],
                Source { gpg: &Gpg::default(), progress: &mut progress },
            )
            .expect("whole");
    }
}
