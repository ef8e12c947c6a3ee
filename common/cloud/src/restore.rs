//! `barman-cloud-restore`, as Barman's `CloudBackupDownloaderObjectStore`: the backup is
//! resolved (ID, name, shortcut, or `auto` with `--target-*`), every destination must be
//! missing or empty, each archive is streamed from the store, decompressed and extracted
//! (PGDATA into the recovery directory, each tablespace into its location or the
//! `--tablespace NAME:LOCATION` one, archives of different destinations in parallel),
//! then `pg_tblspc/<oid>` symlinks are created and an empty `pg_wal` if the backup had
//! none. Like Barman, no recovery settings are written: the caller adds `restore_command`.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};

use barman_common::catalogue::{BackupInfo, BackupStatus};
use barman_common::compress;
use barman_common::tar::Extractor;
use bytes::Bytes;

use crate::catalog::{ArchiveFile, Catalog};
use crate::error::CloudError;
use crate::log;
use crate::store::{ConnectOptions, Store};

/// What to restore.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where from.
    pub connect: ConnectOptions,
    /// Barman server name.
    pub server: String,
    /// Backup ID, name, shortcut or `auto`.
    pub backup_id: String,
    /// The recovery directory.
    pub dest: PathBuf,
    /// `--tablespace NAME:LOCATION` rules.
    pub tablespaces: BTreeMap<String, PathBuf>,
    /// `--target-time` (with `auto`): the newest backup ending before it.
    pub target_time: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// `--target-lsn` (with `auto`).
    pub target_lsn: Option<barman_common::wal::Lsn>,
    /// `--target-tli` (with `auto`).
    pub target_tli: Option<u32>,
    /// `-t`.
    pub test: bool,
}

/// Runs the tool.
pub fn run(opts: &Options) -> Result<(), CloudError> {
    let store = Store::open(&opts.connect)?;
    if opts.test {
        return store.test_connectivity();
    }
    let catalog = Catalog::new(&store, &opts.server);
    let backups = catalog.backups()?;
    let id = if opts.backup_id == "auto" {
        pick_auto(&backups, opts)
            .ok_or_else(|| CloudError::Failed("Cannot find any candidate backup for recovery.".into()))?
    } else {
        catalog.resolve(&backups, &opts.backup_id)?
    };
    log::info(&format!("Restoring from backup_id: {id}"));
    let info = catalog
        .backup_info(&id)?
        .ok_or_else(|| CloudError::Failed(format!("Backup {id} for server {} does not exists", opts.server)))?;
    if info.snapshots_info.is_some() {
        return Err(CloudError::Usage(format!(
            "Backup {id} is a snapshot backup: snapshot recovery is not supported by this implementation yet"
        )));
    }
    download(&catalog, &id, &info, opts)
}

/// `auto`: the newest non-STARTED backup matching the targets (Barman's
/// `get_last_backup_id` / `get_backup_id_from_target_time` / `_lsn` / `_tli`).
fn pick_auto(backups: &BTreeMap<String, BackupInfo>, opts: &Options) -> Option<String> {
    let ok = |b: &BackupInfo| {
        let tli = opts.target_tli.is_none_or(|t| b.timeline.is_some_and(|x| x.get() == t));
        let time = opts.target_time.is_none_or(|t| b.end_time.is_some_and(|e| e <= t));
        let lsn = opts.target_lsn.is_none_or(|l| b.end_xlog.is_some_and(|e| e <= l));
        b.status == BackupStatus::Done && tli && time && lsn
    };
    backups.iter().rev().find(|(_, b)| ok(b)).map(|(k, _)| k.clone())
}

fn ensure_empty(dir: &Path) -> Result<(), CloudError> {
    if dir.exists() && std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_some()) {
        return Err(CloudError::Failed(format!("Destination {} already exists and it is not empty", dir.display())));
    }
    Ok(())
}

/// Plans the destinations, extracts every archive, then links the tablespaces.
fn download(catalog: &Catalog<'_>, id: &str, info: &BackupInfo, opts: &Options) -> Result<(), CloudError> {
    let files = catalog.backup_files(id, info, false)?;
    let mut jobs: Vec<(PathBuf, Vec<ArchiveFile>)> = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (oid, archives) in files {
        let target = match oid {
            None => opts.dest.clone(),
            Some(oid) => {
                let ts =
                    info.tablespaces.iter().flatten().find(|t| t.oid == oid).expect("files come from the tablespaces");
                let target = match opts.tablespaces.get(&ts.name) {
                    Some(loc) => std::fs::canonicalize(loc).unwrap_or_else(|_| loc.clone()),
                    None => PathBuf::from(&ts.location),
                };
                links.push((opts.dest.join(format!("pg_tblspc/{oid}")), target.clone()));
                target
            }
        };
        ensure_empty(&target)?;
        jobs.push((target, archives));
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(target, archives)| s.spawn(move || extract_all(catalog.store, archives, target)))
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| CloudError::General("extraction thread panicked".into()))?)
    })?;
    for (link, target) in links {
        std::os::unix::fs::symlink(&target, &link)
            .map_err(|e| CloudError::General(format!("{}: {e}", link.display())))?;
    }
    let wal = opts.dest.join(if info.version.is_some_and(|v| v < 100_000) { "pg_xlog" } else { "pg_wal" });
    if !wal.exists() {
        std::fs::create_dir(&wal)?;
    }
    Ok(())
}

fn extract_all(store: &Store, archives: &[ArchiveFile], target: &Path) -> Result<(), CloudError> {
    for a in archives {
        log::info(&format!("Extracting {} to {}", a.key, target.display()));
        extract(store, a, target)?;
    }
    Ok(())
}

/// Bytes arriving from the download thread, read as a stream.
struct ChannelReader {
    rx: Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(chunk) => self.cur = chunk?,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Streams one archive through its decoder into an [`Extractor`].
fn extract(store: &Store, a: &ArchiveFile, target: &Path) -> Result<(), CloudError> {
    let (tx, rx) = sync_channel::<io::Result<Bytes>>(32);
    std::thread::scope(|s| {
        let fetch = s.spawn(move || {
            let errtx = tx.clone();
            let r = store.get_into(&a.key, &mut |chunk| {
                tx.send(Ok(Bytes::copy_from_slice(chunk))).map_err(|_| io::Error::other("extraction stopped"))
            });
            match r {
                Ok(true) => Ok(()),
                Ok(false) => Err(CloudError::Failed(format!("{} vanished", a.key))),
                Err(e) => {
                    let _ = errtx.send(Err(io::Error::other(e.to_string())));
                    Err(e)
                }
            }
        });
        let reader = BufReader::with_capacity(1 << 20, ChannelReader { rx, cur: Bytes::new() });
        let mut input: Box<dyn Read> = match a.codec {
            None => Box::new(reader),
            Some(c) => compress::decoder(c, reader)?,
        };
        let mut x = Extractor::new(target, BTreeMap::new())?;
        let copied = io::copy(&mut input, &mut x).and_then(|_| x.finish());
        drop(input);
        let fetched = fetch.join().map_err(|_| CloudError::General("download thread panicked".into()))?;
        copied.map_err(|e| CloudError::General(format!("tar extraction into {} failed: {e}", target.display())))?;
        fetched
    })
}
