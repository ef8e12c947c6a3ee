//! The backup.info types: [`BackupInfo`] with its [`BackupStatus`], [`BackupType`] and
//! [`Tablespace`], and the key list.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset};

use crate::catalogue::backup_id::BackupId;
use crate::catalogue::pyliteral::PyValue;
use crate::wal::{Lsn, TimelineId, WalFileName, WalSegSize};

/// Every backup.info key of Barman 3.20.1, in the (alphabetical) order they are written.
pub const BACKUP_INFO_KEYS: [&str; 35] = [
    "backup_label",
    "backup_name",
    "begin_offset",
    "begin_time",
    "begin_wal",
    "begin_xlog",
    "children_backup_ids",
    "cluster_size",
    "compression",
    "config_file",
    "copy_stats",
    "data_checksums",
    "deduplicated_size",
    "encryption",
    "end_offset",
    "end_time",
    "end_wal",
    "end_xlog",
    "error",
    "hba_file",
    "ident_file",
    "included_files",
    "mode",
    "parent_backup_id",
    "pgdata",
    "server_name",
    "size",
    "snapshots_info",
    "status",
    "summarize_wal",
    "systemid",
    "tablespaces",
    "timeline",
    "version",
    "xlog_segment_size",
];

/// The `status` of a backup (spec §8.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackupStatus {
    /// Initial state; parent/child lookups treat it as absent.
    #[default]
    Empty,
    /// Start-backup metadata collected, copy in progress.
    Started,
    /// Copy done, not all required WALs archived yet.
    WaitingForWals,
    /// Copy done and all required WALs present.
    Done,
    /// The backup failed.
    Failed,
    /// A passive node is copying it.
    Syncing,
}

impl BackupStatus {
    /// Every status (Barman's `STATUS_ALL`).
    pub const ALL: [BackupStatus; 6] = [
        BackupStatus::Empty,
        BackupStatus::Started,
        BackupStatus::WaitingForWals,
        BackupStatus::Done,
        BackupStatus::Syncing,
        BackupStatus::Failed,
    ];
    /// The statuses of usable backups (Barman's `STATUS_COPY_DONE`, the default filter).
    pub const AVAILABLE: [BackupStatus; 2] = [BackupStatus::WaitingForWals, BackupStatus::Done];

    /// The text written in backup.info.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Empty => "EMPTY",
            BackupStatus::Started => "STARTED",
            BackupStatus::WaitingForWals => "WAITING_FOR_WALS",
            BackupStatus::Done => "DONE",
            BackupStatus::Failed => "FAILED",
            BackupStatus::Syncing => "SYNCING",
        }
    }

    /// True for `WAITING_FOR_WALS` and `DONE`.
    pub fn is_available(self) -> bool {
        BackupStatus::AVAILABLE.contains(&self)
    }
}

impl FromStr for BackupStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackupStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("unknown backup status {s:?}"))
    }
}

impl fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backup's type as Barman derives it from `mode` and `parent_backup_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupType {
    /// `postgres` (or `passive`, ...) without a parent.
    Full,
    /// Has a `parent_backup_id` (PG17 incremental).
    Incremental,
    /// `mode` starts with `rsync`.
    Rsync,
    /// `mode` starts with `snapshot`.
    Snapshot,
}

impl BackupType {
    /// Barman's name: `full`, `incremental`, `rsync` or `snapshot`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Incremental => "incremental",
            BackupType::Rsync => "rsync",
            BackupType::Snapshot => "snapshot",
        }
    }
}

/// One tablespace: the `(name, oid, location)` tuples of the `tablespaces` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tablespace {
    /// Tablespace name.
    pub name: String,
    /// Tablespace OID (also the directory name under `base/<id>/`).
    pub oid: u32,
    /// Location on the PostgreSQL host.
    pub location: String,
}

/// The metadata of one backup. `None` is Python's `None`. The backup id is not part of the
/// file (it comes from the file name).
#[derive(Clone, Debug, PartialEq)]
pub struct BackupInfo {
    /// Text of the backup_label (stored repr-encoded).
    pub backup_label: Option<String>,
    /// `--name` given to `barman backup`; omitted from the file when unset.
    pub backup_name: Option<String>,
    /// Offset of `begin_xlog` within `begin_wal`.
    pub begin_offset: Option<u64>,
    /// Backup start, with the PostgreSQL session's offset.
    pub begin_time: Option<DateTime<FixedOffset>>,
    /// First required segment.
    pub begin_wal: Option<WalFileName>,
    /// Start LSN.
    pub begin_xlog: Option<Lsn>,
    /// Incremental children (stored comma-joined).
    pub children_backup_ids: Option<Vec<BackupId>>,
    /// Database size at start, bytes (3.11+).
    pub cluster_size: Option<u64>,
    /// Base-backup compression of tar-format backups (`gzip`, `lz4`, `zstd`, `none`).
    pub compression: Option<String>,
    /// `postgresql.conf` path on the PostgreSQL host.
    pub config_file: Option<String>,
    /// Copy statistics (stored as a dict repr), in file order.
    pub copy_stats: Option<Vec<(String, PyValue)>>,
    /// `on`/`off` (3.11+).
    pub data_checksums: Option<String>,
    /// Bytes not hard-linked from another backup.
    pub deduplicated_size: Option<u64>,
    /// `gpg` or unset (3.14+).
    pub encryption: Option<String>,
    /// Offset of `end_xlog` within `end_wal`.
    pub end_offset: Option<u64>,
    /// Backup end.
    pub end_time: Option<DateTime<FixedOffset>>,
    /// Last required segment.
    pub end_wal: Option<WalFileName>,
    /// End LSN.
    pub end_xlog: Option<Lsn>,
    /// Failure message.
    pub error: Option<String>,
    /// `pg_hba.conf` path.
    pub hba_file: Option<String>,
    /// `pg_ident.conf` path.
    pub ident_file: Option<String>,
    /// Files included by postgresql.conf (stored as a list repr).
    pub included_files: Option<Vec<String>>,
    /// `postgres`, `rsync-concurrent`, `passive`, ...
    pub mode: Option<String>,
    /// Parent of a PG17 incremental backup (3.11+).
    pub parent_backup_id: Option<BackupId>,
    /// PGDATA on the PostgreSQL host.
    pub pgdata: Option<String>,
    /// Server section name.
    pub server_name: Option<String>,
    /// Bytes under `base/<id>`.
    pub size: Option<u64>,
    /// Cloud snapshot metadata (a dict repr); omitted from the file when unset.
    pub snapshots_info: Option<PyValue>,
    /// Status, default `EMPTY`.
    pub status: BackupStatus,
    /// `on`/`off`, unset before PG17 (3.11+).
    pub summarize_wal: Option<String>,
    /// Database system identifier, decimal text.
    pub systemid: Option<String>,
    /// Tablespaces (stored as a list of tuples repr).
    pub tablespaces: Option<Vec<Tablespace>>,
    /// Timeline at backup start.
    pub timeline: Option<TimelineId>,
    /// `server_version_num` (`150018`).
    pub version: Option<u32>,
    /// WAL segment size, default 16 MiB.
    pub xlog_segment_size: Option<WalSegSize>,
}

impl Default for BackupInfo {
    fn default() -> Self {
        BackupInfo {
            backup_label: None,
            backup_name: None,
            begin_offset: None,
            begin_time: None,
            begin_wal: None,
            begin_xlog: None,
            children_backup_ids: None,
            cluster_size: None,
            compression: None,
            config_file: None,
            copy_stats: None,
            data_checksums: None,
            deduplicated_size: None,
            encryption: None,
            end_offset: None,
            end_time: None,
            end_wal: None,
            end_xlog: None,
            error: None,
            hba_file: None,
            ident_file: None,
            included_files: None,
            mode: None,
            parent_backup_id: None,
            pgdata: None,
            server_name: None,
            size: None,
            snapshots_info: None,
            status: BackupStatus::Empty,
            summarize_wal: None,
            systemid: None,
            tablespaces: None,
            timeline: None,
            version: None,
            xlog_segment_size: Some(WalSegSize::DEFAULT),
        }
    }
}

impl BackupInfo {
    /// Barman's `backup_type`.
    pub fn backup_type(&self) -> BackupType {
        let mode = self.mode.as_deref().unwrap_or("");
        if mode.starts_with("snapshot") {
            BackupType::Snapshot
        } else if mode.starts_with("rsync") {
            BackupType::Rsync
        } else if self.parent_backup_id.is_some() {
            BackupType::Incremental
        } else {
            BackupType::Full
        }
    }

    /// Barman's `is_full`: neither snapshot nor incremental (rsync backups count as full).
    pub fn is_full(&self) -> bool {
        !matches!(self.backup_type(), BackupType::Snapshot | BackupType::Incremental)
    }

    /// A numeric entry of `copy_stats` (`copy_time`, `total_time`, ...).
    pub fn copy_stat(&self, key: &str) -> Option<f64> {
        self.copy_stats.as_ref()?.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_f64())
    }

    /// The system identifier as a number.
    pub fn systemid_u64(&self) -> Option<u64> {
        self.systemid.as_deref()?.parse().ok()
    }
}
