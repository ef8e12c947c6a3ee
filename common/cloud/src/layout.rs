//! Barman 3.20.1's object names (`barman/cloud.py`, `clients/cloud_walarchive.py`): where a
//! server's WAL files and backups live under the URL's path, and how compression shows in
//! a name. WAL files carry a suffix per compression (`.gz`, `.bz2`, `.xz`, `.snappy`,
//! `.zst`, `.lz4`); backup archives are `<name>[_NNNN].tar[.gz|.bz2|.snappy|.lz4|.zst]`.

use barman_common::compress::Codec;
use barman_common::wal::WalFileName;

use crate::url::CloudUrl;

/// A WAL file's suffix for `codec` (Barman's `retrieve_wal_name`).
pub fn wal_suffix(codec: Option<Codec>) -> &'static str {
    match codec {
        None => "",
        Some(Codec::Gzip) => ".gz",
        Some(Codec::Bzip2) => ".bz2",
        Some(Codec::Xz) => ".xz",
        Some(Codec::Snappy) => ".snappy",
        Some(Codec::Zstd) => ".zst",
        Some(Codec::Lz4) => ".lz4",
    }
}

/// Barman's `ALLOWED_COMPRESSIONS`, in its order: suffix and codec.
pub const WAL_SUFFIXES: [(&str, Codec); 6] = [
    (".gz", Codec::Gzip),
    (".bz2", Codec::Bzip2),
    (".xz", Codec::Xz),
    (".snappy", Codec::Snappy),
    (".zst", Codec::Zstd),
    (".lz4", Codec::Lz4),
];

/// Splits a WAL object's base name into the WAL name and its compression.
pub fn split_wal_suffix(name: &str) -> (&str, Option<Codec>) {
    for (suffix, codec) in WAL_SUFFIXES {
        if let Some(stem) = name.strip_suffix(suffix) {
            return (stem, Some(codec));
        }
    }
    (name, None)
}

/// A backup archive's compression suffix (`CloudUploadController._build_dest_name`); xz is
/// not offered for backups.
pub fn tar_suffix(codec: Option<Codec>) -> &'static str {
    match codec {
        None | Some(Codec::Xz) => "",
        Some(Codec::Gzip) => ".gz",
        Some(Codec::Bzip2) => ".bz2",
        Some(Codec::Snappy) => ".snappy",
        Some(Codec::Lz4) => ".lz4",
        Some(Codec::Zstd) => ".zst",
    }
}

/// The codec of a backup archive's extension after the stem (`tar`, `tar.gz`...),
/// an unknown one (`get_backup_files`).
pub fn tar_codec(ext: &str) -> Option<Option<Codec>> {
    match ext {
        "tar" => Some(None),
        "tar.gz" => Some(Some(Codec::Gzip)),
        "tar.bz2" => Some(Some(Codec::Bzip2)),
        "tar.snappy" => Some(Some(Codec::Snappy)),
        "tar.lz4" => Some(Some(Codec::Lz4)),
        "tar.zst" => Some(Some(Codec::Zstd)),
        _ => None,
    }
}

/// The keys of one server under a URL.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    /// `<path>/<server>`.
    pub root: String,
}

impl ServerKeys {
    /// The keys of `server` under `url`.
    pub fn new(url: &CloudUrl, server: &str) -> ServerKeys {
        ServerKeys { root: url.join(server) }
    }

    /// `<root>/wals`.
    pub fn wals(&self) -> String {
        format!("{}/wals", self.root)
    }

    /// `<root>/base`.
    pub fn base(&self) -> String {
        format!("{}/base", self.root)
    }

    /// The directory of one WAL file: its hash directory, or `wals` itself for history files.
    pub fn wal_dir(&self, wal: &WalFileName) -> String {
        match wal.hash_dir() {
            Some(h) => format!("{}/{h}", self.wals()),
            None => self.wals(),
        }
    }

    /// The object of `wal` stored with `codec`.
    pub fn wal(&self, wal: &WalFileName, codec: Option<Codec>) -> String {
        format!("{}/{}{}", self.wal_dir(wal), wal.as_str(), wal_suffix(codec))
    }

    /// `<root>/base/<id>`.
    pub fn backup_dir(&self, id: &str) -> String {
        format!("{}/{id}", self.base())
    }

    /// `<root>/base/<id>/backup.info`.
    pub fn backup_info(&self, id: &str) -> String {
        format!("{}/backup.info", self.backup_dir(id))
    }

    /// An archive of a backup: `<name>[_NNNN].tar<suffix>`.
    pub fn archive(&self, id: &str, name: &str, part: usize, codec: Option<Codec>) -> String {
        let count = if part > 0 { format!("_{part:04}") } else { String::new() };
        format!("{}/{name}{count}.tar{}", self.backup_dir(id), tar_suffix(codec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Provider;

    #[test]
    fn names() {
        let url = CloudUrl::parse(Provider::AwsS3, "s3://b/p").expect("valid");
        let k = ServerKeys::new(&url, "pg");
        let w: WalFileName = "000000010000000000000003".parse().expect("valid");
        assert_eq!(k.wal(&w, Some(Codec::Gzip)), "p/pg/wals/0000000100000000/000000010000000000000003.gz");
        let h: WalFileName = "00000002.history".parse().expect("valid");
        assert_eq!(k.wal(&h, None), "p/pg/wals/00000002.history");
        assert_eq!(k.archive("X", "data", 1, Some(Codec::Zstd)), "p/pg/base/X/data_0001.tar.zst");
        assert_eq!(split_wal_suffix("000000010000000000000003.lz4"), ("000000010000000000000003", Some(Codec::Lz4)));
    }
}
