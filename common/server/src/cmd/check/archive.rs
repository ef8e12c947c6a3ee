//! The WAL archive's checks: the archive itself and the incoming queues (Barman's
//! `check_archive` and the archivers' queue checks), the archivers (file: `archive_mode`,
//! `archive_command`, continuous archiving; streaming: the receiver and its lock) and the
//! files left in `errors/`.

use std::path::Path;

use barman_common::catalogue::{lock_owner, BackupStatus, LockKind};
use barman_common::remote::sibling_installed;

use super::results::Checks;
use super::subject::Subject;
use crate::cmd::live::Remote;

/// Python's case-sensitive `str.endswith`.
fn has_suffix(name: &str, suffix: &str) -> bool {
    name.as_bytes().ends_with(suffix.as_bytes())
}

/// Files in a WAL queue directory, except `.tmp` and `.partial` ones.
fn queue_len(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                !n.starts_with('.') && !has_suffix(&n, ".tmp") && !has_suffix(&n, ".partial")
            })
            .count()
    })
}

/// `check_archive`: something was archived, is waiting in a queue or is awaited by a
/// backup; then each archiver's queue (empty when the archiver is off, within
/// `max_incoming_wals_queue` when it is on).
pub fn check_archive(s: &Subject<'_>, c: &mut Checks) {
    let (cfg, layout) = (s.cfg, &s.layout);
    let xlogdb_has_data = std::fs::metadata(layout.xlogdb_path()).is_ok_and(|m| m.len() > 0);
    let waiting = s.catalogue.with_status(&[BackupStatus::WaitingForWals]).next().is_some();
    // Barman tries an archive-wal here, which does nothing without archivers (passive or
    // inactive servers have none), so only a live server's queues count.
    let queued = s.live && queue_len(&layout.incoming) + queue_len(&layout.streaming) > 0;
    if !xlogdb_has_data && !waiting && !queued {
        log_empty_queues(s);
        c.fail("WAL archive", "please make sure WAL shipping is setup");
    }
    for (dir, enabled, archiver, label) in [
        (&layout.incoming, cfg.archiver, "archiver", "incoming"),
        (&layout.streaming, cfg.streaming_archiver, "streaming_archiver", "streaming"),
    ] {
        check_queue(dir, enabled, archiver, label, cfg.max_incoming_wals_queue, c);
    }
}

/// The lines Barman's archivers log when its `check_archive` finds nothing to archive.
fn log_empty_queues(s: &Subject<'_>) {
    if !s.live {
        return;
    }
    for (enabled, label) in [(s.cfg.archiver, "file archival"), (s.cfg.streaming_archiver, "streaming")] {
        if enabled {
            let msg = format!("No xlog segments found from {label} for {}.", s.layout.name);
            crate::log::write(crate::log::Level::Info, "wal_archiver", &msg);
        }
    }
}

/// One archiver's queue directory.
fn check_queue(dir: &Path, enabled: bool, archiver: &str, label: &str, max: Option<i64>, c: &mut Checks) {
    let count = queue_len(dir);
    if !enabled {
        if count > 0 {
            c.fail(
                &format!("empty {label} directory"),
                format!("'{}' must be empty when {archiver}=off", dir.display()),
            );
        }
        return;
    }
    if let Some(max) = max {
        if i64::try_from(count).unwrap_or(i64::MAX) > max {
            c.fail(&format!("{label} WALs directory"), format!("there are too many WALs in queue: {count}, max {max}"));
        }
    }
}

/// The archivers' own checks, streaming first, then file (active, live servers only).
pub fn check_archivers(s: &Subject<'_>, remote: &Remote, c: &mut Checks) {
    if s.cfg.streaming_archiver {
        check_streaming_archiver(s, remote, c);
    }
    if s.cfg.archiver {
        check_file_archiver(remote, c);
    }
}

/// `StreamingWalArchiver.check`: our `barman-receive-wal` plays pg_receivewal's part.
fn check_streaming_archiver(s: &Subject<'_>, remote: &Remote, c: &mut Checks) {
    let found = sibling_installed("barman-receive-wal");
    c.add("pg_receivexlog", found, None);
    if found && remote.streaming_works() {
        c.ok("pg_receivexlog compatible");
    } else {
        let pg = remote.streaming_version_text();
        c.fail("pg_receivexlog compatible", format!("PostgreSQL version: {pg}, pg_receivexlog version: None"));
    }
    let held = lock_owner(&s.layout.lock_path(&LockKind::ReceiveWal)).ok().flatten().is_some();
    if held {
        c.ok("receive-wal running");
    } else {
        c.fail("receive-wal running", "See the Barman log file for more details");
    }
}

/// `FileWalArchiver.check`: `archive_mode`, `archive_command` and continuous archiving.
fn check_file_archiver(remote: &Remote, c: &mut Checks) {
    let Some(mode) = &remote.archive_mode else { return };
    if mode == "on" || mode == "always" {
        c.ok("archive_mode");
    } else {
        let mut msg = "please set it to 'on'".to_owned();
        if remote.server_version >= 90_500 {
            msg.push_str(" or 'always'");
        }
        c.fail("archive_mode", msg);
    }
    match remote.archive_command.as_deref() {
        Some(cmd) if !cmd.is_empty() && cmd != "(disabled)" => {
            c.ok("archive_command");
            if let Some(arch) = remote.archiver.as_ref().and_then(|a| a.is_archiving) {
                c.add("continuous archiving", arch, None);
            }
        }
        _ => c.fail("archive_command", "please set it accordingly to documentation"),
    }
}

/// `check_archiver_errors`: the files the archivers set aside in `errors/`.
pub fn check_archiver_errors(s: &Subject<'_>, c: &mut Checks) {
    let errors: Vec<String> = std::fs::read_dir(&s.layout.errors)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    c.add("archiver errors", errors.is_empty(), summarise_errors(&errors));
}

/// Barman's `WalArchiver.summarise_error_files`, in directory order.
fn summarise_errors(names: &[String]) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let mut counters: Vec<(&str, usize)> = Vec::new();
    for n in names {
        let kind = if has_suffix(n, ".error") {
            "not relevant"
        } else if has_suffix(n, ".duplicate") {
            "duplicates"
        } else if has_suffix(n, ".unknown") {
            "unknown"
        } else {
            "unknown failure"
        };
        match counters.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, c)) => *c += 1,
            None => counters.push((kind, 1)),
        }
    }
    Some(counters.iter().map(|(k, c)| format!("{k}: {c}")).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::summarise_errors;

    #[test]
    fn error_summary_like_barman() {
        let names: Vec<String> = ["a.duplicate", "b.unknown", "c.duplicate", "d.error", "e.x"].map(String::from).into();
        assert_eq!(
            summarise_errors(&names).as_deref(),
            Some("duplicates: 2, unknown: 1, not relevant: 1, unknown failure: 1")
        );
        assert_eq!(summarise_errors(&[]), None);
    }
}
