//! The `backup_label` of each backup of a chain: where it starts and, for an incremental
//! backup, the start of the backup it was taken on (`INCREMENTAL FROM LSN/TLI`). The chain
//! is checked as `pg_combinebackup` checks it, and the combined result gets the newest
//! label without the two `INCREMENTAL FROM` lines.

use std::path::Path;

use crate::wal::{Lsn, TimelineId};

use super::error::CombineError;

/// What a combine needs from a `backup_label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The label's text.
    pub text: String,
    /// `START WAL LOCATION`.
    pub start: Lsn,
    /// `START TIMELINE`.
    pub timeline: TimelineId,
    /// `INCREMENTAL FROM LSN` / `INCREMENTAL FROM TLI`, for an incremental backup.
    pub parent: Option<(Lsn, TimelineId)>,
}

const FROM_LSN: &str = "INCREMENTAL FROM LSN: ";
const FROM_TLI: &str = "INCREMENTAL FROM TLI: ";

impl Label {
    /// Reads `<data>/backup_label`.
    pub fn read(data: &Path) -> Result<Label, CombineError> {
        let path = data.join("backup_label");
        let text = std::fs::read_to_string(&path).map_err(|e| CombineError::io(&path, e))?;
        let bad = |what: &str| CombineError::Invalid { path: path.clone(), reason: format!("no valid {what}") };
        let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
        let lsn = |key: &str| field(key).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse::<Lsn>().ok());
        let tli = |key: &str| field(key).and_then(|v| v.parse::<TimelineId>().ok());
        let start = lsn("START WAL LOCATION: ").ok_or_else(|| bad("START WAL LOCATION"))?;
        let timeline = tli("START TIMELINE: ").ok_or_else(|| bad("START TIMELINE"))?;
        let parent = match (field(FROM_LSN), field(FROM_TLI)) {
            (None, None) => None,
            _ => Some((
                lsn(FROM_LSN).ok_or_else(|| bad("INCREMENTAL FROM LSN"))?,
                tli(FROM_TLI).ok_or_else(|| bad("INCREMENTAL FROM TLI"))?,
            )),
        };
        Ok(Label { text, start, timeline, parent })
    }

    /// The combined backup's label: this one without the `INCREMENTAL FROM` lines.
    pub fn combined_text(&self) -> String {
        self.text.split_inclusive('\n').filter(|l| !l.starts_with(FROM_LSN) && !l.starts_with(FROM_TLI)).collect()
    }
}

/// Checks that each backup was taken on the one before it (oldest first): the first is a
/// full backup, every other one names the previous one's start.
pub fn check_chain(labels: &[(&Path, Label)]) -> Result<(), CombineError> {
    for (i, (dir, label)) in labels.iter().enumerate() {
        let broken = |reason: String| CombineError::Chain { dir: dir.to_path_buf(), reason };
        match (i, label.parent) {
            (0, None) => {}
            (0, Some(_)) => return Err(broken("is incremental but no older backup is in the chain".into())),
            (_, None) => return Err(broken("is a full backup in the middle of the chain".into())),
            (_, Some((lsn, tli))) => {
                let before = &labels[i - 1].1;
                if (lsn, tli) != (before.start, before.timeline) {
                    return Err(broken(format!(
                        "was taken on the backup starting at {lsn} on timeline {tli}, but the one before it starts at {} on timeline {}",
                        before.start, before.timeline
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000080\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-12-08 01:00:00 UTC\nLABEL: x\nSTART TIMELINE: 1\n";

    fn label(dir: &Path, text: &str) -> Label {
        std::fs::write(dir.join("backup_label"), text).expect("write");
        Label::read(dir).expect("label")
    }

    #[test]
    fn chain_and_combined_label() {
        let dir = tempfile::tempdir().expect("tmp");
        let full = label(dir.path(), FULL);
        let incr_text =
            FULL.replace("0/2000028", "0/4000028") + "INCREMENTAL FROM LSN: 0/2000028\nINCREMENTAL FROM TLI: 1\n";
        let incr = label(dir.path(), &incr_text);
        assert_eq!(incr.parent, Some(("0/2000028".parse().expect("lsn"), TimelineId::new(1).expect("tli"))));
        assert_eq!(incr.combined_text(), FULL.replace("0/2000028", "0/4000028"));
        check_chain(&[(dir.path(), full.clone()), (dir.path(), incr.clone())]).expect("chain");
        let e = check_chain(&[(dir.path(), incr.clone()), (dir.path(), full.clone())]).expect_err("reversed");
        assert!(e.to_string().contains("no older backup"), "{e}");
        let e = check_chain(&[(dir.path(), full), (dir.path(), incr.clone()), (dir.path(), incr)]).expect_err("skip");
        assert!(e.to_string().contains("0/4000028"), "{e}");
    }
}
