//! Barman's on-disk catalogue (spec `catalogue.md`), readable and writable by both our
//! tools and Python Barman 3.20.1: the directory layout of a server, backup.info files,
//! annotations (keep, delete markers), the xlog.db WAL index, identity.json and the
//! `flock(2)` lock files.
//!
//! Paths always come from a [`ServerLayout`]; this module never reads the configuration.
//! Every write is crash-safe (temp file + fsync + rename + directory fsync), except xlog.db,
//! which Barman's byte offsets force to be appended to and rewritten in place.

mod annotations;
mod backup_id;
mod backup_info;
mod backups;
mod error;
mod fsio;
mod identity;
mod layout;
mod lock;
mod pyliteral;
mod pytime;
pub mod relay;
pub mod retention;
pub mod sync;
mod xlogdb;
mod xlogdb_merge;

pub use annotations::{
    clear_deletion_mark, delete_annotation, get_annotation, is_kept, is_marked_for_deletion, keep, keep_target,
    mark_for_deletion, put_annotation, release_keep, KeepTarget, DELETE_KEY, DELETE_VALUE, KEEP_KEY,
};
pub use backup_id::BackupId;
pub use backup_info::{BackupInfo, BackupStatus, BackupType, Tablespace, BACKUP_INFO_KEYS};
pub use backups::Catalogue;
pub use error::{CatalogueError, LockError};
pub use identity::{json_ascii, major_version, python_json, Identity};
pub use layout::{ErrorsKind, ServerLayout};
pub use lock::{cleanup_stale, lock_owner, read_lock_pid, LockKind, ServerLock};
pub use pyliteral::{repr_float, repr_str, PyLiteralError, PyValue};
pub use pytime::{format_py_datetime, parse_py_datetime};
pub use xlogdb::{
    no_encryption, sniff_compression_magic, RebuildCounts, RewriteOutcome, WalSniffer, XlogDb, XlogDbEntry,
    XlogLineError,
};
