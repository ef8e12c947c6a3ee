//! A one-line progress report for long copies, on stderr and only when stderr is a
//! terminal (scripts and cron see nothing): `label: copied/total MiB (pct%), rate`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress of one copy.
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    shown: Option<Instant>,
    enabled: bool,
}

impl Progress {
    /// A report for `total` bytes (0 if unknown), shown only on a terminal.
    pub fn new(label: &'static str, total: u64) -> Progress {
        Progress::with_output(label, total, std::io::stderr().is_terminal())
    }

    /// A report that is shown when `enabled`.
    pub fn with_output(label: &'static str, total: u64, enabled: bool) -> Progress {
        Progress { label, total, done: 0, started: Instant::now(), shown: None, enabled }
    }

    /// Counts `bytes` more; redraws at most once a second.
    pub fn add(&mut self, bytes: u64) {
        self.done += bytes;
        if self.enabled && self.shown.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.shown = Some(Instant::now());
            eprint!("\r{}", self.line());
            let _ = std::io::stderr().flush();
        }
    }

    /// The current line.
    pub fn line(&self) -> String {
        const MIB: f64 = 1024.0 * 1024.0;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let total = self.total.max(self.done);
        let pct = (self.done * 100).checked_div(total).unwrap_or(100);
        format!(
            "{}: {:.1}/{:.1} MiB ({pct}%), {:.1} MiB/s",
            self.label,
            self.done as f64 / MIB,
            total as f64 / MIB,
            self.done as f64 / MIB / secs
        )
    }

    /// Ends the line (only if something was shown).
    pub fn finish(&mut self) {
        if self.enabled && self.shown.is_some() {
            eprintln!("\r{}", self.line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reports_share_of_total() {
        let mut p = Progress::with_output("copy", 4 << 20, false);
        p.add(1 << 20);
        assert!(p.line().starts_with("copy: 1.0/4.0 MiB (25%), "), "{}", p.line());
        p.add(4 << 20);
        assert!(p.line().starts_with("copy: 5.0/5.0 MiB (100%)"), "{}", p.line());
    }
}
