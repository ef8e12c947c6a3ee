//! The sync-info answer ([`sync_info`]): backups, WAL entries after the passive's position,
//! the server's configuration and our version, as Barman 3.20.1's `Server.sync_status`.

use serde_json::{Map, Value};

use super::backup_json::backup_to_json;
use super::config::config_to_json;
use super::json::{float, opt_str};
use crate::catalogue::backup_id::BackupId;
use crate::catalogue::backup_info::BackupInfo;
use crate::catalogue::backups::Catalogue;
use crate::catalogue::error::CatalogueError;
use crate::catalogue::identity::python_json;
use crate::catalogue::layout::ServerLayout;
use crate::catalogue::xlogdb::{XlogDb, XlogDbEntry};
use crate::config::ServerConfig;

/// The Barman version sync-info reports: the release this toolkit is compatible with.
pub const VERSION: &str = "3.20.1";

/// Arguments of `sync-info SERVER [LAST_WAL [LAST_POSITION]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncInfoRequest {
    /// The last WAL name the passive has (`LAST_WAL`).
    pub last_wal: Option<String>,
    /// The xlog.db byte offset where that WAL's line started (`LAST_POSITION`, ≥ 1).
    pub last_position: Option<u64>,
}

/// Errors Barman prints as `ERROR: <msg>` with exit 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncInfoError {
    /// `LAST_WAL` precedes the first xlog.db line (after a rescan from 0).
    #[error("last_wal '{last_wal}' is older than the first available wal '{first}'")]
    OlderThanFirst {
        /// The requested WAL.
        last_wal: String,
        /// The first line's name.
        first: String,
    },
    /// `LAST_WAL` follows the last xlog.db line (Barman's message has two spaces).
    #[error("last_wal '{last_wal}' is newer than the last available wal  '{last}'")]
    NewerThanLast {
        /// The requested WAL.
        last_wal: String,
        /// The last line's name.
        last: String,
    },
    /// Reading the catalogue failed.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}

/// The full JSON text Barman prints for `sync-info` (indent 4, ASCII only, no trailing
/// newline), built under the xlog.db lock.
pub fn sync_info(layout: &ServerLayout, config: &ServerConfig, req: &SyncInfoRequest) -> Result<String, SyncInfoError> {
    let catalogue = Catalogue::load(layout)?;
    let backups: Vec<&(BackupId, BackupInfo)> = catalogue.available().collect();
    let first_useful_wal = backups.first().and_then(|(_, info)| info.begin_wal.as_ref()).map(ToString::to_string);
    let last_wal = req.last_wal.as_deref();

    let mut db = XlogDb::open(layout)?;
    let position = req.last_position.unwrap_or(0);
    let probe = db.probe(position, 24)?;
    let start = if last_wal.is_some_and(|w| w.as_bytes() == probe.as_slice()) { position } else { 0 };
    let entries = db.entries_from(start)?;

    let mut check_first = start == 0 && last_wal.is_some();
    let mut wals = Vec::new();
    for (_, entry) in &entries {
        let name = entry.name.as_str();
        if let (true, Some(w)) = (check_first, last_wal) {
            if w < name {
                return Err(SyncInfoError::OlderThanFirst { last_wal: w.to_owned(), first: name.to_owned() });
            }
            check_first = false;
        }
        // Python's `if last_wal:`: an empty LAST_WAL filters like none at all.
        match last_wal.filter(|w| !w.is_empty()) {
            Some(w) if name <= w => continue,
            None if first_useful_wal.as_deref().is_some_and(|f| name < f) => continue,
            _ => {}
        }
        wals.push(wal_to_json(entry));
    }
    let (last_position, last_name) = match entries.last() {
        Some((offset, entry)) => {
            if let Some(w) = last_wal.filter(|w| *w > entry.name.as_str()) {
                return Err(SyncInfoError::NewerThanLast { last_wal: w.to_owned(), last: entry.name.to_string() });
            }
            (*offset, entry.name.to_string())
        }
        None => (0, String::new()),
    };

    let mut top = Map::new();
    top.insert("last_position".into(), Value::from(last_position));
    top.insert("last_name".into(), Value::String(last_name));
    let backups: Map<String, Value> =
        backups.iter().map(|(id, info)| (id.as_str().to_owned(), backup_to_json(id, info))).collect();
    top.insert("backups".into(), Value::Object(backups));
    top.insert("wals".into(), Value::Array(wals));
    top.insert("version".into(), Value::String(VERSION.to_owned()));
    top.insert("config".into(), config_to_json(config));
    let text = python_json(&Value::Object(top), Some(4), false);
    // The xlog.db lock is released once the answer is complete, as in Barman.
    drop(db);
    Ok(text)
}

/// One xlog.db entry as sync-info encodes it (`WalFileInfo.to_json`).
pub fn wal_to_json(entry: &XlogDbEntry) -> Value {
    let mut m = Map::new();
    m.insert("compression".into(), opt_str(entry.compression.as_deref()));
    m.insert("encryption".into(), opt_str(entry.encryption.as_deref()));
    m.insert("name".into(), Value::String(entry.name.to_string()));
    m.insert("size".into(), Value::from(entry.size));
    m.insert("time".into(), float(entry.time));
    Value::Object(m)
}
