//! The backups of one server in a bucket, as Barman's `CloudBackupCatalog` reads them:
//! every directory under `base/` with a readable backup.info (others are warned about and
//! skipped), backup identifiers resolved from IDs, shortcuts (`first`/`oldest`,
//! `last`/`latest` skipping STARTED backups, `last-failed`) and names, the archive files
//! of a backup, the archived WAL files and the keep annotations.

use std::collections::BTreeMap;
use std::path::Path;

use barman_common::catalogue::{BackupId, BackupInfo, BackupStatus};
use barman_common::compress::Codec;
use barman_common::wal::WalFileName;

use crate::error::CloudError;
use crate::layout::{split_wal_suffix, tar_codec, ServerKeys};
use crate::log;
use crate::store::Store;

/// The catalogue of one server.
pub struct Catalog<'s> {
    /// The store.
    pub store: &'s Store,
    /// The server's keys.
    pub keys: ServerKeys,
    /// The server's name.
    pub server: String,
}

/// One archive of a backup: its key and compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    /// The object.
    pub key: String,
    /// Its compression.
    pub codec: Option<Codec>,
}

/// The archives of one destination (`None`: PGDATA, else a tablespace oid), main then
/// additional (`_NNNN`) ones.
pub type BackupFiles = BTreeMap<Option<u32>, Vec<ArchiveFile>>;

/// Whether `id` looks like a backup ID (`YYYYMMDDTHHMMSS`).
pub fn is_backup_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 15 && b[8] == b'T' && b.iter().enumerate().all(|(i, c)| i == 8 || c.is_ascii_digit())
}

impl<'s> Catalog<'s> {
    /// The catalogue of `server` in `store`.
    pub fn new(store: &'s Store, server: &str) -> Catalog<'s> {
        Catalog { store, keys: ServerKeys::new(&store.url, server), server: server.to_owned() }
    }

    /// One backup's metadata, `None` if it has no backup.info.
    pub fn backup_info(&self, id: &str) -> Result<Option<BackupInfo>, CloudError> {
        let key = self.keys.backup_info(id);
        let Some(body) = self.store.get(&key)? else { return Ok(None) };
        let text = String::from_utf8_lossy(&body);
        BackupInfo::parse(&text, Path::new(&key)).map(Some).map_err(CloudError::general)
    }

    /// Every backup with a readable backup.info, sorted by ID.
    pub fn backups(&self) -> Result<BTreeMap<String, BackupInfo>, CloudError> {
        let mut out = BTreeMap::new();
        for dir in self.store.list_dirs(&self.keys.base())? {
            let id = dir.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned();
            match self.backup_info(&id) {
                Ok(Some(info)) => {
                    out.insert(id, info);
                }
                Ok(None) => {}
                Err(e) => log::warning(&format!("Unable to open backup.info file for {id}: {e}")),
            }
        }
        Ok(out)
    }

    /// Aborts the multipart uploads left pending under `base/<id>/` (all backups when `id`
    /// is `None`) by a writer that is gone: those of a backup whose backup.info is not
    /// `STARTED`, or, with `id` given, of that backup whatever its state (it is being deleted).
    /// Returns how many were aborted. See [`crate::pending`].
    pub fn abort_orphaned_uploads(&self, id: Option<&str>) -> Result<usize, CloudError> {
        let base = format!("{}/", self.keys.base());
        let prefix = id.map_or_else(|| base.clone(), |id| format!("{}/", self.keys.backup_dir(id)));
        let mut live: BTreeMap<String, bool> = BTreeMap::new();
        let mut aborted = 0;
        for upload in self.store.pending_uploads(&prefix)? {
            let owner = upload.key.strip_prefix(&base).and_then(|r| r.split('/').next()).unwrap_or_default().to_owned();
            let running = match (id, live.get(&owner).copied()) {
                (Some(_), _) => false,
                (None, Some(r)) => r,
                (None, None) => {
                    // Unreadable: assume a live writer rather than abort its upload.
                    let r = match self.backup_info(&owner) {
                        Ok(Some(info)) => info.status == BackupStatus::Started,
                        Ok(None) => false,
                        Err(_) => true,
                    };
                    live.insert(owner.clone(), r);
                    r
                }
            };
            if !running {
                log::info(&format!("Aborting the pending multipart upload of '{}'", upload.key));
                self.store.abort_upload(&upload)?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }

    /// Resolves an ID, a shortcut or a backup name (`parse_backup_id`).
    pub fn resolve(&self, backups: &BTreeMap<String, BackupInfo>, id: &str) -> Result<String, CloudError> {
        if is_backup_id(id) {
            return Ok(id.to_owned());
        }
        let usable = |(_, b): &(&String, &BackupInfo)| b.status != BackupStatus::Started;
        let found = match id {
            "last" | "latest" => backups.iter().rev().find(usable).map(|(k, _)| k.clone()),
            "first" | "oldest" => backups.iter().find(usable).map(|(k, _)| k.clone()),
            "last-failed" => {
                backups.iter().rev().find(|(_, b)| b.status == BackupStatus::Failed).map(|(k, _)| k.clone())
            }
            _ => None,
        };
        let by_name = || backups.iter().find(|(_, b)| b.backup_name.as_deref() == Some(id)).map(|(k, _)| k.clone());
        found
            .or_else(by_name)
            .ok_or_else(|| CloudError::General(format!("Unknown backup '{id}' for server '{}'", self.server)))
    }

    /// The archives of a backup (`get_backup_files`); a missing one is an error unless
    /// `allow_missing`.
    pub fn backup_files(&self, id: &str, info: &BackupInfo, allow_missing: bool) -> Result<BackupFiles, CloudError> {
        let dir = self.keys.backup_dir(id);
        let mut bases: Vec<(Option<u32>, String)> = vec![(None, format!("{dir}/data"))];
        for ts in info.tablespaces.iter().flatten() {
            bases.push((Some(ts.oid), format!("{dir}/{}", ts.oid)));
        }
        let mut files: BackupFiles = bases.iter().map(|(oid, _)| (*oid, Vec::new())).collect();
        for obj in self.store.list(&format!("{dir}/"))? {
            for (oid, base) in &bases {
                let Some(suffix) = obj.key.strip_prefix(base.as_str()) else { continue };
                let (additional, ext) = match suffix.chars().next() {
                    Some('_') => (true, suffix.split_once('.').map_or("", |(_, e)| e)),
                    Some('.') => (false, &suffix[1..]),
                    _ => continue,
                };
                let Some(codec) = tar_codec(ext) else {
                    log::warning(&format!("Skipping unknown extension: {ext}"));
                    continue;
                };
                let list = files.get_mut(oid).expect("inserted above");
                let file = ArchiveFile { key: obj.key.clone(), codec };
                if additional {
                    list.push(file);
                } else {
                    list.insert(0, file);
                }
                break;
            }
        }
        for ((oid, list), (_, base)) in files.iter().zip(&bases) {
            let main_missing =
                list.first().is_none_or(|f| f.key.strip_prefix(base.as_str()).is_some_and(|s| s.starts_with('_')));
            if main_missing && info.snapshots_info.is_none() {
                let msg = format!("Missing file {base}.* for server {}", self.server);
                if !allow_missing {
                    return Err(CloudError::Failed(msg));
                }
                log::warning(&msg);
            }
            let _ = oid;
        }
        Ok(files)
    }

    /// Every archived WAL object by WAL name (`get_wal_paths`), with one compression
    /// suffix allowed.
    pub fn wal_paths(&self) -> Result<BTreeMap<String, String>, CloudError> {
        let mut out = BTreeMap::new();
        for obj in self.store.list(&format!("{}/", self.keys.wals()))? {
            let base = obj.key.rsplit('/').next().unwrap_or_default();
            let (stem, _) = split_wal_suffix(base);
            if stem.parse::<WalFileName>().is_ok() {
                out.insert(stem.to_owned(), obj.key.clone());
            }
        }
        Ok(out)
    }

    /// The key of a backup's keep annotation (`KeepManagerMixinCloud`).
    pub fn keep_key(&self, id: &str) -> String {
        format!("{}/annotations/keep", self.keys.backup_dir(id))
    }

    /// The keep target of a backup (`full` or `standalone`), if any.
    pub fn keep_target(&self, id: &str) -> Result<Option<String>, CloudError> {
        Ok(self.store.get(&self.keep_key(id))?.map(|b| String::from_utf8_lossy(&b).trim().to_owned()))
    }

    /// Backup IDs as [`BackupId`] (for the JSON encoding).
    pub fn backup_id(id: &str) -> Result<BackupId, CloudError> {
        BackupId::new(id).map_err(CloudError::general)
    }
}
