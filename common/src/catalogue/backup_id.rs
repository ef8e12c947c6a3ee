//! Backup ids: `YYYYMMDDTHHMMSS` in the Barman host's local time at backup start.
//!
//! Generated ids are always in that form. Old catalogues may hold other ids (Barman takes
//! the id from the file or directory name), so reading only refuses ids that cannot be a
//! single path component.

use std::fmt;
use std::str::FromStr;

use chrono::{Local, NaiveDateTime};

use super::error::CatalogueError;

const ID_FORMAT: &str = "%Y%m%dT%H%M%S";

/// A backup id. Ordered as strings, which is Barman's catalogue order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(String);

impl BackupId {
    /// Accepts any id that is a plain file name component (not empty, no `/`, no NUL, not
    /// `.` or `..`), as found in existing catalogues.
    pub fn new(id: &str) -> Result<BackupId, CatalogueError> {
        let bad = id.is_empty() || id == "." || id == ".." || id.contains(['/', '\0']);
        if bad {
            return Err(CatalogueError::InvalidBackupId(id.to_owned()));
        }
        Ok(BackupId(id.to_owned()))
    }

    /// Accepts only a valid `YYYYMMDDTHHMMSS` timestamp.
    pub fn new_strict(id: &str) -> Result<BackupId, CatalogueError> {
        let valid = id.len() == 15 && NaiveDateTime::parse_from_str(id, ID_FORMAT).is_ok();
        if valid {
            Ok(BackupId(id.to_owned()))
        } else {
            Err(CatalogueError::InvalidBackupId(id.to_owned()))
        }
    }

    /// The id for a backup starting now (local time, like Barman's
    /// `datetime.now().strftime("%Y%m%dT%H%M%S")`).
    pub fn now_local() -> BackupId {
        BackupId::from_local_time(&Local::now().naive_local())
    }

    /// The id for a backup starting at `time` (local wall-clock time).
    pub fn from_local_time(time: &NaiveDateTime) -> BackupId {
        BackupId(time.format(ID_FORMAT).to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the id matches Barman's `is_backup_id` (`^\d{8}T\d{6}$`); only such ids
    /// can be given directly on Barman's command line.
    pub fn is_standard(&self) -> bool {
        looks_like_backup_id(&self.0)
    }

    /// The local start time encoded in a standard id.
    pub fn local_time(&self) -> Option<NaiveDateTime> {
        NaiveDateTime::parse_from_str(&self.0, ID_FORMAT).ok()
    }
}

/// Barman's `is_backup_id`: eight digits, `T`, six digits, nothing else.
pub(crate) fn looks_like_backup_id(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 15 && b[8] == b'T' && b[..8].iter().chain(&b[9..]).all(u8::is_ascii_digit)
}

/// Lenient parse, as [`BackupId::new`].
impl FromStr for BackupId {
    type Err = CatalogueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackupId::new(s)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for BackupId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_lenient() {
        assert!(BackupId::new_strict("20261121T203640").is_ok());
        for bad in ["20261321T203640", "20261121T256640", "2026112T2036400", "latest", "20261121T203640x"] {
            assert!(BackupId::new_strict(bad).is_err(), "{bad}");
        }
        assert!(BackupId::new("old-style id").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(BackupId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_strict() {
        let id = BackupId::now_local();
        assert!(BackupId::new_strict(id.as_str()).is_ok(), "{id}");
        assert!(id.is_standard());
        assert_eq!(id.local_time().map(|t| BackupId::from_local_time(&t)), Some(id));
    }

    #[test]
    fn ordering_is_lexical() {
        let mut ids: Vec<BackupId> =
            ["20261121T203750", "20250101T000000", "20261121T203640"].iter().map(|s| s.parse().expect("id")).collect();
        ids.sort();
        assert_eq!(ids[0].as_str(), "20250101T000000");
        assert_eq!(ids[2].as_str(), "20261121T203750");
    }
}
