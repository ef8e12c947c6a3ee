//! `barman check-wal-archive [--timeline N] SERVER`: whether the WAL archive can be used by a
//! new server, as Barman's `check_archive_usable`: with no timeline, xlog.db must be empty;
//! with one, no archived file may be on that timeline or a later one.

use barman_common::catalogue::XlogDb;
use barman_common::wal::TimelineId;
use serde_json::Value;

use crate::context::{layout, Context};
use crate::output::Output;
use crate::CmdError;

/// Why the archive is not usable (Barman's `WalArchiveContentError` texts).
pub fn unusable(names: &[String], timelines: &[TimelineId], timeline: Option<TimelineId>) -> Option<String> {
    let Some(timeline) = timeline else {
        return (!names.is_empty()).then(|| "Expected empty archive".to_owned());
    };
    let newer = timelines.iter().filter(|t| **t >= timeline).count();
    (newer > 0).then(|| {
        let plural = if newer > 1 { "s" } else { "" };
        format!("Found {newer} file{plural} in WAL archive equal to or newer than timeline {timeline}")
    })
}

/// `check-wal-archive [--timeline N] SERVER`.
pub fn run(ctx: &Context, name: &str, timeline: Option<TimelineId>, out: &mut Output) -> Result<(), CmdError> {
    let cfg = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    out.line(format!("Server {name}:"));
    let entries = XlogDb::open(&layout(cfg))?.entries()?;
    let names: Vec<String> = entries.iter().map(|(_, e)| e.name.to_string()).collect();
    let timelines: Vec<TimelineId> = entries.iter().map(|(_, e)| e.name.timeline()).collect();
    if let Some(reason) = unusable(&names, &timelines, timeline) {
        let msg = format!("WAL archive check failed for server {name}: {reason}");
        return Err(CmdError::Error(msg));
    }
    let passed = format!("WAL archive check for server {name} passed");
    if out.is_json() {
        out.result(name, Value::String(passed));
    } else {
        out.info(format!(" - {passed}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barman_messages() {
        let t = |n| TimelineId::new(n).expect("timeline");
        assert_eq!(unusable(&[], &[], None), None);
        assert_eq!(unusable(&["x".into()], &[t(1)], None).as_deref(), Some("Expected empty archive"));
        assert_eq!(unusable(&["x".into()], &[t(1)], Some(t(2))), None);
        let two = unusable(&["x".into(), "y".into()], &[t(2), t(3)], Some(t(2)));
        assert_eq!(two.as_deref(), Some("Found 2 files in WAL archive equal to or newer than timeline 2"));
    }
}
