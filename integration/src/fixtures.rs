//! The set-up most backup and recovery tests share: a PostgreSQL 15 cluster archiving
//! through our `barman-wal-archive`, over the private sshd, into our Barman home (server
//! `pg`), and the catalogue lookups they make.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use barman_common::catalogue::{BackupId, BackupInfo, ServerLayout};
use barman_common::wire::{digest_hex, SumAlgo};

use crate::{cargo_bin, BarmanHome, BarmanServerOptions, PgCluster, PgOptions, Scratch, Sshd, SshdOptions};

/// The cluster, the home and the sshd between them. Fields drop in order: the cluster stops
/// before the sshd it archives through, and the scratch directory goes last.
pub struct ArchivingCluster {
    /// PostgreSQL 15 with `archive_command = barman-wal-archive ... 127.0.0.1 pg %p`.
    pub pg: PgCluster,
    /// Our Barman home (`barman` user), server `pg`; its commands find the ssh wrapper first.
    pub barman: BarmanHome,
    /// The private sshd.
    pub sshd: Sshd,
    /// Where everything lives.
    pub scratch: Scratch,
}

impl ArchivingCluster {
    /// A fresh set-up in a scratch directory named after `name`.
    pub fn start(name: &str) -> Result<ArchivingCluster> {
        ArchivingCluster::start_with(name, |_| Ok(Vec::new()))
    }

    /// [`ArchivingCluster::start`] with extra lines for the server section, made from the
    /// scratch directory.
    pub fn start_with(name: &str, extra: impl FnOnce(&Scratch) -> Result<Vec<String>>) -> Result<ArchivingCluster> {
        ArchivingCluster::start_with_options(name, |scratch| {
            Ok(BarmanServerOptions { extra: extra(scratch)?, ..BarmanServerOptions::default() })
        })
    }

    /// [`ArchivingCluster::start`] with the server section's options made from the scratch
    /// directory (`backup_method`, `slot_name`, extra lines).
    pub fn start_with_options(
        name: &str,
        options: impl FnOnce(&Scratch) -> Result<BarmanServerOptions>,
    ) -> Result<ArchivingCluster> {
        let scratch = Scratch::new(name)?;
        let sshd = Sshd::start(&scratch, SshdOptions::default())?;
        let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
        barman.add_path_prefix(sshd.ssh_wrapper_dir_for("barman")?);
        let opts = PgOptions::default()
            .archive_command(archive_line(&barman, &sshd)?)
            .path_prefix(sshd.ssh_wrapper_dir_for("postgres")?);
        let pg = PgCluster::start(&scratch, opts)?;
        let server = options(&scratch)?;
        barman.add_server("pg", &pg, &server)?;
        Ok(ArchivingCluster { pg, barman, sshd, scratch })
    }

    /// The catalogue layout of server `pg`.
    pub fn layout(&self) -> ServerLayout {
        ServerLayout::default_for(&self.barman.home(), "pg")
    }
}

/// The `archive_command` of a cluster archiving into `barman`'s server `pg` through our
/// `barman-wal-archive` over `sshd` (with `sshd.ssh_wrapper_dir_for("postgres")` on its PATH).
pub fn archive_line(barman: &BarmanHome, sshd: &Sshd) -> Result<String> {
    Ok(format!(
        "{client} -c {cfg} --port {port} 127.0.0.1 pg %p",
        client = cargo_bin("barman-wal-archive")?.display(),
        cfg = barman.config_path().display(),
        port = sshd.port(),
    ))
}

/// Where `barman-wal-archive 127.0.0.1 pg` (with `--port`, `-c config`) keeps its private
/// cache: Barman's `/tmp/barman-pg-<first 16 hex of sha256("HOST:PORT:CONFIG")>`, `None`
/// for a port not given.
pub fn wal_archive_cache_dir(port: Option<u16>, config: &Path) -> PathBuf {
    let port = port.map_or_else(|| "None".to_owned(), |p| p.to_string());
    let key = format!("127.0.0.1:{port}:{}", config.display());
    PathBuf::from(format!("/tmp/barman-pg-{}", &digest_hex(SumAlgo::Sha256, key.as_bytes())[..16]))
}

/// The backup directories under `layout`, sorted (oldest first).
pub fn backup_ids(layout: &ServerLayout) -> Vec<String> {
    let mut ids: Vec<String> = match fs::read_dir(&layout.basebackups_directory) {
        Ok(rd) => rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
        Err(_) => Vec::new(),
    };
    ids.sort();
    ids
}

/// The backup.info of `id`.
pub fn backup_info(layout: &ServerLayout, id: &str) -> Result<BackupInfo> {
    BackupInfo::load(layout, &BackupId::new(id)?)?.with_context(|| format!("no backup.info for {id}"))
}
