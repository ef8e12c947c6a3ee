//! `barman metrics`: every server's state in the Prometheus text exposition format (0.0.4),
//! for node_exporter's textfile collector (Barman issue #220). Write it atomically, e.g.
//! `barman metrics > /var/lib/node_exporter/barman.prom.$$ && mv … barman.prom`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use barman_common::catalogue::relay::RelayState;
use barman_common::catalogue::{lock_owner, BackupStatus, Catalogue, LockKind, ServerLayout, XlogDb};

use crate::context::Context;
use crate::output::Output;
use crate::server::Server;
use crate::CmdError;

/// One metric family: name, help, type and its samples (labels, value).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

fn family(name: &'static str, kind: &'static str, help: &'static str) -> Family {
    Family { name, help, kind, samples: Vec::new() }
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        out.push_str(&format!("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, f.kind));
        for (labels, value) in &f.samples {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            out.push_str(&format!("{}{{{}}} {}\n", f.name, l.join(","), value));
        }
    }
    out
}

fn count_files(dir: &Path, pred: impl Fn(&str) -> bool) -> usize {
    fs::read_dir(dir)
        .map_or(0, |rd| rd.filter_map(Result::ok).filter(|e| pred(&e.file_name().to_string_lossy())).count())
}

// The families, by index in `families()`.
const UP: usize = 0;
const BACKUPS: usize = 1;
const LAST_BACKUP_AGE: usize = 2;
const LAST_BACKUP_SIZE: usize = 3;
const WAL_FILES: usize = 4;
const WAL_SIZE: usize = 5;
const LAST_WAL_AGE: usize = 6;
const INCOMING: usize = 7;
const ARCHIVER_ERRORS: usize = 8;
const RECEIVE_WAL: usize = 9;
const PASSIVE: usize = 10;
const PASSIVE_LAG_BYTES: usize = 11;
const PASSIVE_LAG_SECONDS: usize = 12;

/// Every family, without samples, in the order they are printed.
fn families() -> Vec<Family> {
    vec![
        family(
            "barman_up",
            "gauge",
            "1 when the server's catalogue could be read, 0 when it is disabled or unreadable.",
        ),
        family("barman_backups", "gauge", "Number of backups by status."),
        family("barman_last_backup_age_seconds", "gauge", "Seconds since the end of the newest DONE backup."),
        family("barman_last_backup_size_bytes", "gauge", "Size of the newest DONE backup."),
        family("barman_wal_files", "gauge", "WAL files listed in xlog.db."),
        family("barman_wal_size_bytes", "gauge", "Stored size of the WAL files listed in xlog.db."),
        family(
            "barman_last_archived_wal_age_seconds",
            "gauge",
            "Seconds since the newest WAL file in xlog.db was written by Postgres.",
        ),
        family("barman_incoming_wal_files", "gauge", "WAL files waiting in incoming/ and streaming/."),
        family("barman_archiver_errors", "gauge", "Files in errors/ by kind (duplicate, unknown, error)."),
        family("barman_receive_wal_running", "gauge", "1 when a receive-wal process holds the server's lock."),
        family("barman_passive_node", "gauge", "1 for a passive node (primary_ssh_command set)."),
        family(
            "barman_passive_wal_lag_bytes",
            "gauge",
            "Passive node: xlog.db bytes the primary has that this node has not copied yet (from relay.info).",
        ),
        family(
            "barman_passive_wal_lag_seconds",
            "gauge",
            "Passive node: seconds since this node last held everything the primary had (from relay.info).",
        ),
    ]
}

/// Prints the metrics of every configured server.
pub fn run(ctx: &Context, out: &mut Output) -> Result<(), CmdError> {
    let mut fams = families();
    let now = chrono::Utc::now();
    for name in ctx.server_names() {
        let cfg = ctx.config().server(&name).expect("names come from the config");
        let srv = vec![("server", name.clone())];
        fams[PASSIVE].samples.push((srv.clone(), f64::from(u8::from(cfg.is_passive()))));
        let loaded =
            ctx.server(&name).ok().and_then(|server| Catalogue::load(&server.layout).ok().map(|c| (server, c)));
        let Some((server, catalogue)) = loaded else {
            fams[UP].samples.push((srv, 0.0));
            continue;
        };
        fams[UP].samples.push((srv, 1.0));
        let s = Sampler { fams: &mut fams, name: &name, now };
        s.server(&server, &catalogue);
    }
    out.line(render(&fams).trim_end().to_owned());
    Ok(())
}

/// Adds one readable server's samples.
struct Sampler<'a> {
    fams: &'a mut [Family],
    name: &'a str,
    now: chrono::DateTime<chrono::Utc>,
}

impl Sampler<'_> {
    /// `[("server", name)]` plus `extra`.
    fn labels(&self, extra: Option<(&'static str, String)>) -> Vec<(&'static str, String)> {
        let mut labels = vec![("server", self.name.to_owned())];
        labels.extend(extra);
        labels
    }

    fn push(&mut self, family: usize, extra: Option<(&'static str, String)>, value: f64) {
        let labels = self.labels(extra);
        self.fams[family].samples.push((labels, value));
    }

    fn server(mut self, server: &Server, catalogue: &Catalogue) {
        let layout = &server.layout;
        if let Some(state) = RelayState::load(layout) {
            self.push(PASSIVE_LAG_BYTES, None, state.lag_bytes() as f64);
            self.push(PASSIVE_LAG_SECONDS, None, state.lag_seconds(self.now.timestamp_millis() as f64 / 1000.0));
        }
        self.backups(catalogue);
        self.wals(layout);
        for kind in ["duplicate", "unknown", "error"] {
            let n = count_files(&layout.errors, |f| f.ends_with(&format!(".{kind}")));
            self.push(ARCHIVER_ERRORS, Some(("kind", kind.to_owned())), n as f64);
        }
        let lock = layout.lock_directory.join(LockKind::ReceiveWal.file_name(self.name));
        let running = lock.exists() && lock_owner(&lock).ok().flatten().is_some();
        self.push(RECEIVE_WAL, None, f64::from(u8::from(running)));
    }

    /// Backups by status, and the newest DONE one's age and size.
    fn backups(&mut self, catalogue: &Catalogue) {
        let mut by_status: BTreeMap<&str, usize> = BackupStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for (_, info) in catalogue.entries() {
            *by_status.entry(info.status.as_str()).or_default() += 1;
        }
        for (status, n) in by_status {
            self.push(BACKUPS, Some(("status", status.to_owned())), n as f64);
        }
        let last_done = catalogue.entries().iter().rev().find(|(_, i)| i.status == BackupStatus::Done);
        if let Some((_, info)) = last_done {
            if let Some(end) = info.end_time {
                self.push(LAST_BACKUP_AGE, None, (self.now - end.to_utc()).num_milliseconds() as f64 / 1000.0);
            }
            self.push(LAST_BACKUP_SIZE, None, info.size.unwrap_or(0) as f64);
        }
    }

    /// `xlog.db`'s files, size and newest file's age, and the queued files.
    fn wals(&mut self, layout: &ServerLayout) {
        let entries = XlogDb::open(layout).and_then(|mut db| db.entries()).unwrap_or_default();
        self.push(WAL_FILES, None, entries.len() as f64);
        self.push(WAL_SIZE, None, entries.iter().map(|(_, e)| e.size).sum::<u64>() as f64);
        if let Some(t) = entries.iter().map(|(_, e)| e.time).reduce(f64::max) {
            self.push(LAST_WAL_AGE, None, self.now.timestamp_millis() as f64 / 1000.0 - t);
        }
        // WAL names are ASCII; Barman's suffixes are lower-case.
        #[allow(clippy::case_sensitive_file_extension_comparisons)]
        let queued = |n: &str| !n.starts_with('.') && !n.ends_with(".tmp") && !n.ends_with(".partial");
        let queue = count_files(&layout.incoming, queued) + count_files(&layout.streaming, queued);
        self.push(INCOMING, None, queue as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::{family, render};

    #[test]
    fn passive_lag_gauges_render() {
        let mut f = family("barman_passive_wal_lag_bytes", "gauge", "lag.");
        f.samples.push((vec![("server", "pg".to_owned())], 4096.0));
        assert_eq!(
            render(&[f]),
            "# HELP barman_passive_wal_lag_bytes lag.\n# TYPE barman_passive_wal_lag_bytes gauge\n\
             barman_passive_wal_lag_bytes{server=\"pg\"} 4096\n"
        );
    }
}
