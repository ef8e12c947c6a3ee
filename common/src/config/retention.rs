//! Retention policies (`retention_policy`): `REDUNDANCY n` and
//! `RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS`, parsed as Barman's `retention_policies.py`
//! does (case-insensitive, surrounding whitespace allowed, optional plural) and printed in
//! its normalised form.

use std::fmt;
use std::str::FromStr;

use chrono::TimeDelta;

/// The unit of a recovery window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowUnit {
    /// Days.
    Days,
    /// Weeks (7 days).
    Weeks,
    /// Months, counted as 31 days like Barman.
    Months,
}

impl WindowUnit {
    /// The plural upper-case name Barman prints.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowUnit::Days => "DAYS",
            WindowUnit::Weeks => "WEEKS",
            WindowUnit::Months => "MONTHS",
        }
    }

    fn days(self) -> i64 {
        match self {
            WindowUnit::Days => 1,
            WindowUnit::Weeks => 7,
            WindowUnit::Months => 31,
        }
    }
}

/// A base-backup retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetentionPolicy {
    /// Keep the newest `n` DONE backups.
    Redundancy(u32),
    /// Keep what is needed to recover to any point in the last `n` units.
    RecoveryWindow {
        /// The number of units.
        n: u32,
        /// The unit.
        unit: WindowUnit,
    },
}

impl RetentionPolicy {
    /// The recovery window as a duration (month = 31 days), `None` for redundancy.
    pub fn window(&self) -> Option<TimeDelta> {
        match *self {
            RetentionPolicy::Redundancy(_) => None,
            RetentionPolicy::RecoveryWindow { n, unit } => TimeDelta::try_days(i64::from(n) * unit.days()),
        }
    }
}

impl fmt::Display for RetentionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetentionPolicy::Redundancy(n) => write!(f, "REDUNDANCY {n}"),
            RetentionPolicy::RecoveryWindow { n, unit } => {
                write!(f, "RECOVERY WINDOW OF {n} {}", unit.as_str())
            }
        }
    }
}

/// A string that is neither a redundancy nor a recovery-window policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Cannot parse option retention_policy: {0}")]
pub struct RetentionPolicyParseError(String);

impl FromStr for RetentionPolicy {
    type Err = RetentionPolicyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || RetentionPolicyParseError(s.to_owned());
        let lower = s.to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        match words.as_slice() {
            ["redundancy", n] => Ok(RetentionPolicy::Redundancy(parse_count(n).ok_or_else(err)?)),
            ["recovery", "window", "of", n, unit] => Ok(RetentionPolicy::RecoveryWindow {
                n: parse_count(n).ok_or_else(err)?,
                unit: parse_unit(unit).ok_or_else(err)?,
            }),
            _ => Err(err()),
        }
    }
}

/// `\d+`, within `u32`.
fn parse_count(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `(day|month|week)s?`.
fn parse_unit(s: &str) -> Option<WindowUnit> {
    match s.strip_suffix('s').unwrap_or(s) {
        "day" => Some(WindowUnit::Days),
        "week" => Some(WindowUnit::Weeks),
        "month" => Some(WindowUnit::Months),
        _ => None,
    }
}
