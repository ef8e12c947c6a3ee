//! `barman metrics`: every server's state in the Prometheus text exposition format (0.0.4),
//! for node_exporter's textfile collector (Barman issue #220). Write it atomically, e.g.
//! `barman metrics > /var/lib/node_exporter/barman.prom.$$ && mv … barman.prom`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use barman_common::catalogue::relay::RelayState;
use barman_common::catalogue::{lock_owner, BackupStatus, Catalogue, LockKind, XlogDb};

use crate::context::Context;
use crate::output::Output;
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

/// Prints the metrics of every configured server.
pub fn run(ctx: &Context, out: &mut Output) -> Result<(), CmdError> {
    let mut fams = vec![
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
    ];
    let now = chrono::Utc::now();
    for name in ctx.server_names() {
        let cfg = ctx.config().server(&name).expect("names come from the config");
        let srv = || vec![("server", name.clone())];
        fams[10].samples.push((srv(), f64::from(u8::from(cfg.is_passive()))));
        let Ok(server) = ctx.server(&name) else {
            fams[0].samples.push((srv(), 0.0));
            continue;
        };
        let Ok(catalogue) = Catalogue::load(&server.layout) else {
            fams[0].samples.push((srv(), 0.0));
            continue;
        };
        fams[0].samples.push((srv(), 1.0));
        if let Some(state) = RelayState::load(&server.layout) {
            fams[11].samples.push((srv(), state.lag_bytes() as f64));
            fams[12].samples.push((srv(), state.lag_seconds(now.timestamp_millis() as f64 / 1000.0)));
        }
        let mut by_status: BTreeMap<&str, usize> = BackupStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for (_, info) in catalogue.entries() {
            *by_status.entry(info.status.as_str()).or_default() += 1;
        }
        for (status, n) in by_status {
            fams[1].samples.push((vec![("server", name.clone()), ("status", status.to_owned())], n as f64));
        }
        let last_done = catalogue.entries().iter().rev().find(|(_, i)| i.status == BackupStatus::Done);
        if let Some((_, info)) = last_done {
            if let Some(end) = info.end_time {
                fams[2].samples.push((srv(), (now - end.to_utc()).num_milliseconds() as f64 / 1000.0));
            }
            fams[3].samples.push((srv(), info.size.unwrap_or(0) as f64));
        }
        let entries = XlogDb::open(&server.layout).and_then(|mut db| db.entries()).unwrap_or_default();
        fams[4].samples.push((srv(), entries.len() as f64));
        fams[5].samples.push((srv(), entries.iter().map(|(_, e)| e.size).sum::<u64>() as f64));
        if let Some(t) = entries.iter().map(|(_, e)| e.time).reduce(f64::max) {
            fams[6].samples.push((srv(), now.timestamp_millis() as f64 / 1000.0 - t));
        }
        // WAL names are ASCII; Barman's suffixes are lower-case.
        #[allow(clippy::case_sensitive_file_extension_comparisons)]
        let queued = |n: &str| !n.starts_with('.') && !n.ends_with(".tmp") && !n.ends_with(".partial");
        let queue = count_files(&server.layout.incoming, queued) + count_files(&server.layout.streaming, queued);
        fams[7].samples.push((srv(), queue as f64));
        for kind in ["duplicate", "unknown", "error"] {
            let n = count_files(&server.layout.errors, |f| f.ends_with(&format!(".{kind}")));
            fams[8].samples.push((vec![("server", name.clone()), ("kind", kind.to_owned())], n as f64));
        }
        let lock = server.layout.lock_directory.join(LockKind::ReceiveWal.file_name(&name));
        let running = lock.exists() && lock_owner(&lock).ok().flatten().is_some();
        fams[9].samples.push((srv(), f64::from(u8::from(running))));
    }
    out.line(render(&fams).trim_end().to_owned());
    Ok(())
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
