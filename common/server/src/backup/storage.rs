//! How a backup is stored: Barman's `backup_compression`, `backup_compression_format`,
//! `backup_compression_location`, `backup_compression_level` and
//! `backup_compression_workers` (what Barman turns into pg_basebackup's `--format` and
//! `--compress=[client-|server-]METHOD[:level=N,workers=N]`), validated with Barman
//! 3.20.1's rules and messages ([`backup_compression_issues`], which also disable the server
//! for `barman check`).
//!
//! * no `backup_compression`: plain, as `pg_basebackup -Fp`;
//! * `format = tar` (the default once a compression is set): `data/base.tar.<ext>`,
//!   `data/<oid>.tar.<ext>` and `data/backup_manifest`; the archives are compressed here
//!   (`location = client`, the default) or by the server (`location = server`, written as
//!   they arrive); `none` keeps uncompressed `.tar` files;
//! * `format = plain` with `location = server`: the server compresses (less network), and
//!   the archives are decompressed and extracted here into a plain data directory.

use barman_common::compress::{Codec, Level};
use barman_common::config::{
    backup_compression_issues, BackupCompression, BackupCompressionFormat, BackupCompressionLocation, ServerConfig,
};

/// Where the archives end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Extracted into `data/` and `<oid>/`.
    Plain,
    /// Kept as (compressed) tar files in `data/`.
    Tar,
}

/// The storage plan of one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// Plain or tar.
    pub format: Format,
    /// `backup_compression` as configured (`gzip`, `lz4`, `zstd`, `none`), unset for a plain
    /// uncompressed backup. Recorded as backup.info `compression` for tar backups.
    pub method: Option<BackupCompression>,
    /// The codec the server applies (`COMPRESSION`).
    pub server: Option<Codec>,
    /// `COMPRESSION_DETAIL` for the server (`level=N,workers=N`).
    pub server_detail: Option<String>,
    /// The codec and level applied here to tar archives.
    pub client: Option<(Codec, Level)>,
    /// zstd worker threads for client-side compression (0 = none).
    pub client_workers: u32,
}

impl Storage {
    /// A plain, uncompressed backup.
    pub fn plain() -> Storage {
        Storage {
            format: Format::Plain,
            method: None,
            server: None,
            server_detail: None,
            client: None,
            client_workers: 0,
        }
    }

    /// The plan for `cfg`, or every problem Barman would report (joined by `; `).
    pub fn from_config(cfg: &ServerConfig) -> Result<Storage, String> {
        let Some(method) = cfg.backup_compression else { return Ok(Storage::plain()) };
        let format = match cfg.backup_compression_format {
            Some(BackupCompressionFormat::Plain) => Format::Plain,
            Some(BackupCompressionFormat::Tar) | None => Format::Tar,
        };
        let location = cfg.backup_compression_location;
        let (level, workers) = (cfg.backup_compression_level, cfg.backup_compression_workers);
        let issues = backup_compression_issues(cfg);
        if !issues.is_empty() {
            return Err(issues.join("; "));
        }
        let codec = match method {
            BackupCompression::Gzip => Some(Codec::Gzip),
            BackupCompression::Lz4 => Some(Codec::Lz4),
            BackupCompression::Zstd => Some(Codec::Zstd),
            BackupCompression::NoCompression => None,
        };
        let server_side = location == Some(BackupCompressionLocation::Server);
        let mut storage = Storage { format, method: Some(method), ..Storage::plain() };
        if server_side {
            storage.server = codec;
            let mut detail = Vec::new();
            if let Some(l) = level {
                detail.push(format!("level={l}"));
            }
            if let Some(w) = workers {
                detail.push(format!("workers={w}"));
            }
            storage.server_detail = (!detail.is_empty() && codec.is_some()).then(|| detail.join(","));
        } else if let Some(codec) = codec {
            // -1 (gzip) and 0 (lz4) ask for the default level, as in pg_basebackup.
            let level = match (codec, level) {
                (_, None) | (Codec::Gzip, Some(-1)) | (Codec::Lz4, Some(0)) => Level::Int(default_level(codec)),
                (_, Some(l)) => Level::Int(i32::try_from(l).unwrap_or(i32::MAX)),
            };
            storage.client = Some((codec, level));
            // zstd compresses on worker threads here unless told otherwise: the cores
            // pg_basebackup leaves idle (`backup_compression_workers = 0` keeps one thread).
            let default_workers = if codec == Codec::Zstd { default_zstd_workers() } else { 0 };
            storage.client_workers = workers.and_then(|w| u32::try_from(w).ok()).unwrap_or(default_workers);
        }
        Ok(storage)
    }

    /// The server's `COMPRESSION` method name.
    pub fn server_method(&self) -> Option<&'static str> {
        self.server.map(method_name)
    }

    /// The suffix a server-compressed archive name carries (`.gz`, `.lz4`, `.zst`), or "".
    pub fn server_suffix(&self) -> &'static str {
        self.server.map_or("", Codec::suffix)
    }

    /// The name a tar archive is stored under: `base.tar` → `base.tar.gz` etc.
    pub fn stored_name(&self, tar_name: &str) -> String {
        let codec = self.server.or(self.client.map(|(c, _)| c));
        format!("{tar_name}{}", codec.map_or("", Codec::suffix))
    }

    /// backup.info `compression`: the method for tar backups, None for plain ones.
    pub fn recorded_compression(&self) -> Option<String> {
        match (self.format, self.method) {
            (Format::Tar, Some(m)) => Some(m.as_str().to_owned()),
            _ => None,
        }
    }
}

/// Client-side zstd threads when `backup_compression_workers` is unset: the machine's
/// cores, at most 4.
fn default_zstd_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get().min(4)).unwrap_or(1))
}

/// pg_basebackup's defaults: gzip 6 (`Z_DEFAULT_COMPRESSION`), lz4 fast, zstd 3.
fn default_level(codec: Codec) -> i32 {
    match codec {
        Codec::Gzip => 6,
        Codec::Zstd => 3,
        _ => 1,
    }
}

fn method_name(codec: Codec) -> &'static str {
    match codec {
        Codec::Gzip => "gzip",
        Codec::Lz4 => "lz4",
        _ => "zstd",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lines: &[&str]) -> ServerConfig {
        let mut text =
            String::from("[barman]\nbarman_home = /tmp/b\n[pg]\nconninfo = host=x\nbackup_method = postgres\n");
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("barman.conf");
        std::fs::write(&path, text).expect("write");
        let loaded = barman_common::config::Config::load(&path).expect("config");
        loaded.config.server("pg").expect("pg").clone()
    }

    #[test]
    fn plans() {
        assert_eq!(Storage::from_config(&cfg(&[])).expect("plain"), Storage::plain());
        let lz4 = Storage::from_config(&cfg(&["backup_compression = lz4"])).expect("lz4");
        assert_eq!((lz4.format, lz4.client, lz4.server), (Format::Tar, Some((Codec::Lz4, Level::Int(1))), None));
        assert_eq!(lz4.stored_name("base.tar"), "base.tar.lz4");
        assert_eq!(lz4.recorded_compression().as_deref(), Some("lz4"));
        let server = Storage::from_config(&cfg(&[
            "backup_compression = zstd",
            "backup_compression_location = server",
            "backup_compression_format = plain",
            "backup_compression_level = 5",
            "backup_compression_workers = 2",
        ]))
        .expect("server");
        assert_eq!((server.format, server.server_method()), (Format::Plain, Some("zstd")));
        assert_eq!(server.server_detail.as_deref(), Some("level=5,workers=2"));
        assert_eq!(server.recorded_compression(), None);
        let none = Storage::from_config(&cfg(&["backup_compression = none"])).expect("none");
        assert_eq!((none.client, none.server, none.stored_name("16384.tar")), (None, None, "16384.tar".into()));
        assert_eq!(none.recorded_compression().as_deref(), Some("none"));
    }

    #[test]
    fn barman_refusals() {
        let err = |lines: &[&str]| Storage::from_config(&cfg(lines)).expect_err("refused");
        assert_eq!(
            err(&["backup_compression = gzip", "backup_compression_format = plain"]),
            "backup_compression_format plain is not compatible with backup_compression_location None"
        );
        assert!(err(&["backup_compression = gzip", "backup_compression_level = 0"]).contains("between 1 and 9"));
        assert!(err(&["backup_compression = lz4", "backup_compression_workers = 2"]).contains("not compatible"));
        assert!(err(&["backup_compression = none", "backup_compression_level = 3"]).contains("only supports"));
    }
}
