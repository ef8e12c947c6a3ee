//! Retention reports: which backups a policy keeps, as Barman 3.20.1's
//! `RedundancyRetentionPolicy` / `RecoveryWindowRetentionPolicy._backup_report` decide.
//!
//! Backups are walked newest to oldest. Only DONE, non-incremental backups are classified;
//! any other status is `-` (never removed by retention). Incremental backups take the status
//! their root passes down. Keep annotations win over the policy.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

use super::annotations::KeepTarget;
use super::backup_id::BackupId;
use super::backup_info::{BackupInfo, BackupStatus};

/// A retention policy, as parsed from `retention_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `REDUNDANCY n`.
    Redundancy(u32),
    /// `RECOVERY WINDOW OF …`, as a duration.
    RecoveryWindow(TimeDelta),
}

/// A backup's status under the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionStatus {
    /// Kept by the policy.
    Valid,
    /// Outside the policy: retention removes it.
    Obsolete,
    /// Outside the window but kept for `minimum_redundancy` (`OBSOLETE*`).
    PotentiallyObsolete,
    /// Kept by a `full` keep annotation.
    KeepFull,
    /// Kept by a `standalone` keep annotation.
    KeepStandalone,
    /// Not classified (not DONE): `-`.
    None,
}

impl RetentionStatus {
    /// The text Barman prints.
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionStatus::Valid => "VALID",
            RetentionStatus::Obsolete => "OBSOLETE",
            RetentionStatus::PotentiallyObsolete => "OBSOLETE*",
            RetentionStatus::KeepFull => "KEEP:FULL",
            RetentionStatus::KeepStandalone => "KEEP:STANDALONE",
            RetentionStatus::None => "-",
        }
    }

    fn from_keep(keep: Option<KeepTarget>) -> Option<RetentionStatus> {
        keep.map(|k| match k {
            KeepTarget::Standalone => RetentionStatus::KeepStandalone,
            KeepTarget::Full => RetentionStatus::KeepFull,
        })
    }
}

impl fmt::Display for RetentionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backup as the report sees it.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    /// Its id.
    pub id: &'a BackupId,
    /// Its metadata.
    pub info: &'a BackupInfo,
    /// Its keep annotation.
    pub keep: Option<KeepTarget>,
}

/// Classifies `backups` (any order; EMPTY ones are ignored) under `policy` at time `now`.
pub fn report(
    policy: Policy,
    minimum_redundancy: u32,
    backups: &[Candidate<'_>],
    now: DateTime<Utc>,
) -> BTreeMap<BackupId, RetentionStatus> {
    let mut sorted: Vec<&Candidate<'_>> = backups.iter().filter(|c| c.info.status != BackupStatus::Empty).collect();
    sorted.sort_by(|a, b| b.id.cmp(a.id));
    let mut out = BTreeMap::new();
    let roots = sorted.iter().filter(|c| c.info.parent_backup_id.is_none());
    match policy {
        Policy::Redundancy(n) => redundancy(n.max(minimum_redundancy), roots, &mut out),
        Policy::RecoveryWindow(window) => recovery_window(now - window, minimum_redundancy, roots, &mut out),
    }
    propagate_to_children(&sorted, &mut out);
    out
}

fn redundancy<'a>(
    n: u32,
    roots: impl Iterator<Item = &'a &'a Candidate<'a>>,
    out: &mut BTreeMap<BackupId, RetentionStatus>,
) {
    let mut i = 0;
    for c in roots {
        let status = if c.info.status == BackupStatus::Done {
            let s = RetentionStatus::from_keep(c.keep).unwrap_or(if i < n {
                RetentionStatus::Valid
            } else {
                RetentionStatus::Obsolete
            });
            i += 1;
            s
        } else {
            RetentionStatus::None
        };
        out.insert(c.id.clone(), status);
    }
}

fn recovery_window<'a>(
    point: DateTime<Utc>,
    minimum_redundancy: u32,
    roots: impl Iterator<Item = &'a &'a Candidate<'a>>,
    out: &mut BTreeMap<BackupId, RetentionStatus>,
) {
    let (mut found, mut valid) = (false, 0u32);
    for c in roots {
        if c.info.status != BackupStatus::Done {
            out.insert(c.id.clone(), RetentionStatus::None);
            continue;
        }
        let keep = RetentionStatus::from_keep(c.keep);
        let status = if found {
            if valid < minimum_redundancy {
                valid += 1;
                keep.unwrap_or(RetentionStatus::PotentiallyObsolete)
            } else {
                keep.unwrap_or(RetentionStatus::Obsolete)
            }
        } else {
            valid += 1;
            if c.info.end_time.is_some_and(|t| t < point) {
                found = true;
            }
            keep.unwrap_or(RetentionStatus::Valid)
        };
        out.insert(c.id.clone(), status);
    }
}

/// Our `wal_retention_window` extension (Barman issue #902): true when a WAL file archived at
/// `wal_time` (xlog.db's epoch seconds, the file's mtime) is newer than `now - window`, so a
/// WAL purge must keep it even though it precedes the oldest remaining backup's begin_wal.
/// Always false without a window, which is Barman's behaviour.
pub fn keep_for_wal_window(window: Option<TimeDelta>, wal_time: f64, now: DateTime<Utc>) -> bool {
    let Some(window) = window else { return false };
    let Some(limit) = now.checked_sub_signed(window) else { return true };
    // Compare in microseconds: xlog.db times carry at most that precision that matters here.
    #[allow(clippy::cast_precision_loss)]
    let limit = limit.timestamp_micros() as f64 / 1e6;
    wal_time > limit
}

/// Incremental backups take their root's status: KEEP:FULL passes VALID, KEEP:STANDALONE
/// passes VALID unless the root is outside the policy.
fn propagate_to_children(sorted: &[&Candidate<'_>], out: &mut BTreeMap<BackupId, RetentionStatus>) {
    let parent_of: BTreeMap<&BackupId, &BackupId> =
        sorted.iter().filter_map(|c| c.info.parent_backup_id.as_ref().map(|p| (c.id, p))).collect();
    for (child, mut parent) in parent_of.clone() {
        while let Some(up) = parent_of.get(parent) {
            parent = up;
        }
        let status = match out.get(parent).copied().unwrap_or(RetentionStatus::None) {
            RetentionStatus::KeepFull | RetentionStatus::KeepStandalone => RetentionStatus::Valid,
            other => other,
        };
        out.insert(child.clone(), status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(days_old: i64, status: BackupStatus, now: DateTime<Utc>) -> BackupInfo {
        BackupInfo { status, end_time: Some((now - TimeDelta::days(days_old)).fixed_offset()), ..BackupInfo::default() }
    }

    fn ids(n: usize) -> Vec<BackupId> {
        (0..n).map(|i| BackupId::new(&format!("2026010{}T000000", i + 1)).expect("id")).collect()
    }

    #[test]
    fn wal_window_keeps_only_recent_wal_and_only_when_set() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z").expect("time").with_timezone(&Utc);
        #[allow(clippy::cast_precision_loss)]
        let at = |hours_ago: i64| (now - TimeDelta::hours(hours_ago)).timestamp() as f64;
        let week = TimeDelta::try_weeks(1);
        assert!(!keep_for_wal_window(None, at(0), now), "no window: Barman removes it");
        assert!(keep_for_wal_window(week, at(1), now));
        assert!(keep_for_wal_window(week, at(24 * 7 - 1), now));
        assert!(!keep_for_wal_window(week, at(24 * 7), now), "exactly at the limit is not newer");
        assert!(!keep_for_wal_window(week, at(24 * 8), now));
        assert!(keep_for_wal_window(week, at(-1), now), "a future mtime is within the window");
        assert!(!keep_for_wal_window(TimeDelta::try_seconds(0), at(1), now));
    }

    #[test]
    fn redundancy_counts_keeps_and_skips_failed() {
        let now = Utc::now();
        let ids = ids(5);
        let infos: Vec<BackupInfo> = [5, 4, 3, 2, 1]
            .iter()
            .enumerate()
            .map(|(i, d)| info(*d, if i == 3 { BackupStatus::Failed } else { BackupStatus::Done }, now))
            .collect();
        let keep = |i: usize| (i == 0).then_some(KeepTarget::Full);
        let cands: Vec<Candidate<'_>> =
            (0..5).map(|i| Candidate { id: &ids[i], info: &infos[i], keep: keep(i) }).collect();
        let r = report(Policy::Redundancy(2), 0, &cands, now);
        let got: Vec<&str> = ids.iter().map(|id| r[id].as_str()).collect();
        assert_eq!(got, ["KEEP:FULL", "OBSOLETE", "VALID", "-", "VALID"]);
    }

    #[test]
    fn recovery_window_keeps_the_base_and_minimum_redundancy() {
        let now = Utc::now();
        let ids = ids(4);
        let infos: Vec<BackupInfo> = [12, 9, 6, 3].iter().map(|d| info(*d, BackupStatus::Done, now)).collect();
        let cands: Vec<Candidate<'_>> =
            (0..4).map(|i| Candidate { id: &ids[i], info: &infos[i], keep: None }).collect();
        let r = report(Policy::RecoveryWindow(TimeDelta::weeks(1)), 0, &cands, now);
        let got: Vec<&str> = ids.iter().map(|id| r[id].as_str()).collect();
        assert_eq!(got, ["OBSOLETE", "VALID", "VALID", "VALID"]);
        let r = report(Policy::RecoveryWindow(TimeDelta::weeks(1)), 4, &cands, now);
        assert_eq!(r[&ids[0]], RetentionStatus::PotentiallyObsolete);
    }
}
