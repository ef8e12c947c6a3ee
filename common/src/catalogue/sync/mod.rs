//! Geo-redundancy (spec `relay.md` §3): `barman sync-info`, the JSON status a primary (or
//! a cascading passive) gives its passive nodes, and the reverse parsing the passive side
//! needs (`primary.info`).
//!
//! # The answer
//! [`sync_info`] reproduces Barman 3.20.1's `Server.sync_status` byte for byte (Python's
//! `json.dump(..., indent=4)`, ASCII only, no trailing newline): top-level keys
//! `last_position`, `last_name`, `backups`, `wals`, `version`, `config`. The xlog.db is read
//! under its blocking lock; the 24-character probe at `LAST_POSITION` decides whether the
//! scan resumes there or restarts from 0 (§3.1). Two known differences, neither of which a
//! passive can observe:
//! * `backups` is in ascending id order; Barman uses `glob()` order (directory order).
//! * CSV options with several values (`backup_options`, `recovery_options`) are joined in
//!   our fixed order; Barman joins a Python `set`, whose order changes with the hash seed.
//!
//! `version` is our version ([`VERSION`]), the Barman release we are compatible with.
//!
//! # Reading an answer back ([`PrimaryInfo`], [`backup_from_json`])
//! Deliberate decisions for turning a backup object into a [`BackupInfo`]:
//! * `begin_time`/`end_time` come from `begin_time_iso`/`end_time_iso` when present, else
//!   from the `ctime()` text read as local time (older primaries), as Barman does.
//! * `backup_label` arrives as a Python repr string. It is decoded to the real label text,
//!   and decoding goes on while the result is itself a quoted Python string literal: this
//!   undoes the double encoding a Barman passive leaves in its own catalogue, at every
//!   cascade hop. So the label we store is always the real text (Barman would store the
//!   repr of the repr). A value that is not a Python literal is kept as is.
//! * `mode` and every other field are kept as sent (Barman's passive overwrites `mode` with
//!   `passive`; that is for the copying code to decide, not the parser).
//! * `tablespaces` from `[[name, oid, location], ...]` (an empty list means none);
//!   `copy_stats` and `snapshots_info` from JSON objects (key order kept);
//!   `children_backup_ids` from the comma-joined string; `included_files` from a list.
//! * `backup_id`, `begin_time_iso` and `end_time_iso` are consumed; any other unknown key is
//!   ignored (not an error). A missing key leaves the field unset, except `status`
//!   (`EMPTY`) and `xlog_segment_size` (16 MiB), Barman's defaults.
//!
//! The result saved with [`BackupInfo::save`] is a backup.info real Barman loads.
//! Numbers are parsed exactly (WAL `time` values must equal the primary's xlog.db text), so
//! the JSON text goes through a small parser of our own rather than `serde_json`'s
//! best-effort float parsing.
//!
//! The answer is built in `answer`, its `config` object in `config`, backups in
//! `backup_json`; `primary` parses an answer back, through the exact JSON reader in `json`.

mod answer;
mod backup_json;
mod config;
mod json;
mod primary;

pub use answer::{sync_info, wal_to_json, SyncInfoError, SyncInfoRequest, VERSION};
pub use backup_json::{backup_from_json, backup_to_json};
pub use config::{config_to_json, human_readable_timedelta, CONFIG_KEYS};
pub use json::parse_json_exact;
pub use primary::{wal_from_json, PrimaryInfo};

#[cfg(test)]
mod tests;
