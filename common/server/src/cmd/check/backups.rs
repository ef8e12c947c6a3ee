//! The catalogue's checks: directories, retention policy settings, the latest backup's age
//! and size (`check_backup_validity`), the WAL archived after it (`check_wal_validity`)
//! and the backup manager's (failed backups, minimum redundancy). Also the catalogue
//! helpers `status` and `show-servers` share.

use barman_common::catalogue::{BackupId, BackupInfo, BackupStatus, BackupType, Catalogue, XlogDb};
use chrono::{DateTime, Utc};

use super::results::Checks;
use super::subject::Subject;
use crate::cmd::show::human_seconds;
use crate::walinfo::{pretty_size, wal_info};
use crate::CmdError;

/// Barman's `check_encryption` (with `encryption` set): the configuration as its
/// `_validate_gpg` sees it, then a test encryption to `encryption_key_id`.
pub fn check_encryption(s: &Subject<'_>, c: &mut Checks) {
    let cfg = s.cfg;
    if cfg.encryption.is_none() {
        return;
    }
    if let Some(issue) = barman_common::config::encryption_issue(cfg) {
        c.fail("encryption", issue);
        return;
    }
    let key = cfg.encryption_key_id.as_ref().expect("encryption_issue checks it is set");
    match barman_common::gpg::test_encryption(key) {
        Ok(()) => c.add("encryption", true, Some("encryption test succeeded".into())),
        Err(e) => {
            crate::log::error("server", &format!("encryption test failed: {e}"));
            c.fail("encryption", "encryption test failed. Check the log file for more details");
        }
    }
}

/// Barman's `human_readable_timedelta` of a signed number of seconds.
pub fn human_delta(secs: f64) -> String {
    let text = human_seconds(secs);
    if secs < 0.0 {
        format!("{text} ago")
    } else {
        text
    }
}

/// The last available (DONE or WAITING_FOR_WALS) backup.
pub fn last_backup(catalogue: &Catalogue) -> Option<&(BackupId, BackupInfo)> {
    catalogue.latest()
}

/// DONE backups that are not incremental (minimum redundancy counts these).
pub fn non_incremental_done(catalogue: &Catalogue) -> usize {
    catalogue.with_status(&[BackupStatus::Done]).filter(|(_, i)| i.backup_type() != BackupType::Incremental).count()
}

/// `check_directories`: the catalogue directories exist or can be made (not for disabled
/// servers).
pub fn check_directories(s: &Subject<'_>, c: &mut Checks) {
    if s.cfg.is_disabled() {
        return;
    }
    match s.layout.ensure_dirs() {
        Ok(()) => c.ok("directories"),
        Err(e) => c.fail("directories", e.to_string()),
    }
}

/// `check_retention_policy_settings`.
pub fn check_retention_policy_settings(s: &Subject<'_>, c: &mut Checks) {
    if s.cfg.retention_policy_invalid.is_some() {
        c.fail("retention policy settings", "see log");
    } else {
        c.ok("retention policy settings");
    }
}

/// `check_backup_validity`: the latest backup's age against `last_backup_maximum_age` and
/// its size against `last_backup_minimum_size` (the size is Nagios performance data).
pub fn check_backup_validity(s: &Subject<'_>, now: DateTime<Utc>, c: &mut Checks) {
    let last = last_backup(&s.catalogue);
    match s.cfg.last_backup_maximum_age {
        Some(max) => {
            let interval = human_delta(max.num_milliseconds() as f64 / 1000.0);
            let (ok, age) = match last.and_then(|(_, i)| i.end_time) {
                Some(end) => {
                    let age = now.signed_duration_since(end);
                    (age <= max, human_delta(age.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6))
                }
                None => (false, "No available backups".to_owned()),
            };
            c.add("backup maximum age", ok, Some(format!("interval provided: {interval}, latest backup age: {age}")));
        }
        None => c.add("backup maximum age", true, Some("no last_backup_maximum_age provided".into())),
    }
    let size = last.map_or(0, |(_, i)| i.size.unwrap_or(0));
    match s.cfg.last_backup_minimum_size {
        Some(min) => {
            let ok = last.is_some() && size >= min;
            let gtlt = if ok { ">" } else { "<" };
            let hint =
                format!("last backup size {} {gtlt} {} minimum", pretty_size(size as f64), pretty_size(min as f64));
            c.measure("backup minimum size", ok, hint, size);
        }
        None => c.measure("backup minimum size", true, pretty_size(size as f64), size),
    }
}

/// `check_wal_validity`: the age of the newest WAL file archived for the latest backup
/// against `last_wal_maximum_age`, and the size of those files (Nagios performance data).
pub fn check_wal_validity(s: &Subject<'_>, now: DateTime<Utc>, c: &mut Checks) -> Result<(), CmdError> {
    let wi = match last_backup(&s.catalogue) {
        Some((_, info)) => {
            let entries: Vec<_> = XlogDb::open(&s.layout)?.entries()?.into_iter().map(|(_, e)| e).collect();
            Some(wal_info(info, None, &entries))
        }
        None => None,
    };
    let wal_size = wi.as_ref().map_or(0, |w| w.until_next_size);
    match s.cfg.last_wal_maximum_age {
        Some(max) => match wi.as_ref().and_then(|w| w.last.as_ref()).map(|(_, t)| *t) {
            None => c.fail("wal maximum age", "No WAL files archived for last backup"),
            Some(t) => {
                let age = now.timestamp_micros() as f64 / 1e6 - t;
                let max_secs = max.num_milliseconds() as f64 / 1000.0;
                let hint =
                    format!("interval provided: {}, latest wal age: {}", human_delta(max_secs), human_delta(age));
                c.add("wal maximum age", age <= max_secs, Some(hint));
            }
        },
        None => c.add("wal maximum age", true, Some("no last_wal_maximum_age provided".into())),
    }
    c.measure("wal size", true, pretty_size(wal_size as f64), wal_size);
    Ok(())
}

/// `BackupManager.check`: compression settings, failed backups and minimum redundancy.
pub fn check_backup_manager(s: &Subject<'_>, c: &mut Checks) {
    c.ok("compression settings");
    let failed = s.catalogue.with_status(&[BackupStatus::Failed]).count();
    c.add("failed backups", failed == 0, Some(format!("there are {failed} failed backups")));
    let n = non_incremental_done(&s.catalogue);
    let min = s.cfg.minimum_redundancy;
    c.add(
        "minimum redundancy requirements",
        n >= min as usize,
        Some(format!("have {n} non-incremental backups, expected at least {min}")),
    );
}

/// `check_configuration`: a disabled server's failing line (its reasons follow it).
pub fn check_configuration(s: &Subject<'_>, c: &mut Checks) {
    if s.cfg.is_disabled() {
        c.add("configuration", false, None);
    }
}

#[cfg(test)]
mod tests {
    use super::human_delta;

    #[test]
    fn human_delta_like_barman() {
        assert_eq!(human_delta(3600.0), "1 hour");
        assert_eq!(human_delta(90061.5), "1 day, 1 hour, 1 minute, 1 second");
        assert_eq!(human_delta(-120.0), "2 minutes ago");
    }
}
