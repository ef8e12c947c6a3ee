//! backup.info: the `key=value` metadata file of one backup (spec §8), typed.
//!
//! The key set is exactly Barman 3.20.1's. Reading follows `FieldListFile.load`: blank
//! lines and lines starting with `#` are skipped, each line is split on its first `=` and
//! both sides stripped, the literal `None` means unset, and an unknown key is an error (Barman
//! prints "Unsupported field" and exits). Writing follows `FieldListFile.save`: every key in
//! alphabetical order, `None` for unset values, `backup_name` and `snapshots_info` omitted
//! when unset, empty repr-encoded values written as `None` (Barman's `null_repr`).
//!
//! The types are in `types`, reading and writing the file in `file`, the value encodings
//! (Python literals, integers, timestamps) in `values`.

mod file;
mod types;
mod values;

pub use types::{BackupInfo, BackupStatus, BackupType, Tablespace, BACKUP_INFO_KEYS};

#[cfg(test)]
mod tests;
