//! `barman check-archived-wal-range SERVER BEGIN_WAL END_WAL`: every segment of the closed
//! range, with the segment size of the latest backup, must be in `wals/` (Barman's
//! `Server.check_archived_wal_range`; same checks, messages and JSON).

use barman_common::catalogue::{BackupStatus, Catalogue};
use barman_common::wal::{WalFileName, WalSegSize};
use serde_json::json;

use crate::context::{layout, Context};
use crate::output::Output;
use crate::CmdError;

/// The segments from `begin` to `end` included (same timeline, `begin <= end`).
pub fn segments(begin: &WalFileName, end: &WalFileName, size: WalSegSize) -> Result<Vec<WalFileName>, CmdError> {
    let bad = |e: barman_common::wal::WalNameError| CmdError::Error(e.to_string());
    let mut names = Vec::new();
    let mut name = begin.clone();
    while name.segno(size).map_err(bad)? <= end.segno(size).map_err(bad)? {
        let next = name.next_segment(size).map_err(bad)?;
        names.push(name);
        name = next;
    }
    Ok(names)
}

fn validate(begin: &WalFileName, end: &WalFileName) -> Result<(), CmdError> {
    for n in [begin, end] {
        if !n.is_segment() {
            return Err(CmdError::Error(format!("Invalid WAL segment name: {n}")));
        }
    }
    if begin.timeline() != end.timeline() {
        return Err(CmdError::Error(format!("begin_wal ({begin}) and end_wal ({end}) must be on the same timeline")));
    }
    if begin.as_str() > end.as_str() {
        return Err(CmdError::Error(format!("begin_wal ({begin}) must not be greater than end_wal ({end})")));
    }
    Ok(())
}

/// `check-archived-wal-range SERVER BEGIN_WAL END_WAL`.
pub fn run(
    ctx: &Context,
    name: &str,
    begin: &WalFileName,
    end: &WalFileName,
    out: &mut Output,
) -> Result<(), CmdError> {
    let cfg = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    validate(begin, end)?;
    out.line(format!("Server {name}:"));
    out.debug(format!("\tChecking WAL sequence from {begin} to {end}"));
    let layout = layout(cfg);
    let catalogue = Catalogue::load(&layout)?;
    let statuses = [BackupStatus::WaitingForWals, BackupStatus::Done];
    let Some((_, last)) = catalogue.with_status(&statuses).last() else {
        return Err(CmdError::Error(format!("No backup found for server '{name}': cannot determine WAL segment size")));
    };
    let size = last.xlog_segment_size.unwrap_or(WalSegSize::DEFAULT);
    let missing: Vec<String> =
        segments(begin, end, size)?.iter().filter(|n| !layout.wal_path(n).exists()).map(ToString::to_string).collect();
    if out.is_json() {
        out.result(name, json!({"begin_wal": begin.to_string(), "end_wal": end.to_string(), "missing_wals": missing}));
    } else if missing.is_empty() {
        out.info(format!("\tWAL sequence check for server {name}: all segments are present"));
    } else {
        out.info(format!("\tWAL sequence check for server {name}: {} missing segment(s):", missing.len()));
        for wal in &missing {
            out.info(format!("\t\t{wal}"));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(CmdError::Error(format!(
        "WAL sequence check failed for server '{name}': {} missing segment(s) in range {begin}..{end}",
        missing.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_crosses_the_xlogid_boundary_with_the_segment_size() {
        let n = |s: &str| s.parse::<WalFileName>().expect("name");
        let got = segments(&n("0000000100000000000000FE"), &n("000000010000000100000001"), WalSegSize::DEFAULT)
            .expect("range");
        let names: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "0000000100000000000000FE",
                "0000000100000000000000FF",
                "000000010000000100000000",
                "000000010000000100000001"
            ]
        );
    }
}
