//! Timeline history files (`TTTTTTTT.history`), as written by PostgreSQL at promotion
//! (`writeTimeLineHistory`) and read by `readTimeLineHistory`.

use super::{Lsn, TimelineId};

/// One line of a history file: the timeline that was left, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The parent timeline.
    pub parent: TimelineId,
    /// The LSN at which the child timeline branched off `parent`.
    pub switch_point: Lsn,
    /// The free-text reason PostgreSQL wrote (`no recovery target specified`, ...).
    pub reason: String,
}

/// A malformed history file line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the timeline history file is invalid: {text:?}")]
pub struct HistoryError {
    /// 1-based line number.
    pub line: usize,
    /// The offending line.
    pub text: String,
}

/// Parses a history file. Blank lines and `#` comments are skipped, as PostgreSQL does;
/// parent timelines must increase from line to line.
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>, HistoryError> {
    let mut entries: Vec<HistoryEntry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = || HistoryError { line: i + 1, text: raw.to_owned() };
        let mut fields = line.splitn(3, char::is_whitespace);
        let parent = fields.next().and_then(|f| f.parse::<TimelineId>().ok()).ok_or_else(err)?;
        let switch_point = fields.next().and_then(|f| f.trim().parse::<Lsn>().ok()).ok_or_else(err)?;
        if entries.last().is_some_and(|e| e.parent >= parent) {
            return Err(err());
        }
        let reason = fields.next().unwrap_or("").trim().to_owned();
        entries.push(HistoryEntry { parent, switch_point, reason });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_history() {
        let text = "1\t0/5000060\tno recovery target specified\n\n# comment\n2\t0/7000000\tat restore point \"x\"\n";
        let h = parse_history(text).expect("valid");
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].parent, TimelineId::FIRST);
        assert_eq!(h[0].switch_point.to_string(), "0/5000060");
        assert_eq!(h[1].reason, "at restore point \"x\"");
    }

    #[test]
    fn rejects_bad_lines() {
        assert_eq!(parse_history("1\tnot-an-lsn\tx\n").map_err(|e| e.line), Err(1));
        assert_eq!(parse_history("2\t0/1\tx\n1\t0/2\ty\n").map_err(|e| e.line), Err(2));
        assert!(parse_history("0\t0/1\tx").is_err());
    }
}
