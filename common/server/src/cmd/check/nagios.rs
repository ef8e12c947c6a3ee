//! The Nagios writer (Barman's `NagiosOutputWriter`): one summary line with performance
//! data (backup and WAL sizes), then one line per failed check.

use super::results::ServerChecks;

/// Every line `check --nagios` prints. `unknown`: a requested server is not configured;
/// `failed_active`: an active server failed a check (or is unknown).
pub fn lines(all: &[ServerChecks], unknown: bool, failed_active: bool) -> Vec<String> {
    if unknown && all.iter().all(|s| !s.has_issues()) {
        return vec!["BARMAN CRITICAL - Global configuration errors".to_owned()];
    }
    let issues: Vec<&ServerChecks> = all.iter().filter(|s| s.has_issues()).collect();
    let perf = perfdata(all);
    if !issues.is_empty() && failed_active {
        critical(all.len(), &issues, &perf)
    } else {
        vec![ok(all, &issues, &perf)]
    }
}

/// `|<server>=<bytes>B <server>_wals=<bytes>B …`, or nothing.
fn perfdata(all: &[ServerChecks]) -> String {
    let mut perf = Vec::new();
    for s in all {
        for c in &s.checks {
            if c.name == "backup minimum size" {
                perf.push(format!("{}={}B", s.name, c.perfdata.unwrap_or(0)));
            }
            if c.name == "wal size" {
                perf.push(format!("{}_wals={}B", s.name, c.perfdata.unwrap_or(0)));
            }
        }
    }
    if perf.is_empty() {
        String::new()
    } else {
        format!("|{}", perf.join(" "))
    }
}

/// `BARMAN CRITICAL - …` and a `server.check: FAILED (hint)` line per failure.
fn critical(servers: usize, issues: &[&ServerChecks], perf: &str) -> Vec<String> {
    let summary: Vec<String> = issues
        .iter()
        .map(|s| {
            let failed: Vec<&str> = s.failed().map(|c| c.name.as_str()).collect();
            format!("{} FAILED: {}", s.name, failed.join(", "))
        })
        .collect();
    let mut lines = Vec::new();
    if servers == 1 {
        lines.push(format!("BARMAN CRITICAL - server {} has issues * {}{perf}", issues[0].name, summary.join(" * ")));
    } else {
        lines.push(format!(
            "BARMAN CRITICAL - {} server out of {servers} have issues * {}{perf}",
            issues.len(),
            summary.join(" * ")
        ));
    }
    for s in issues {
        for c in s.failed() {
            match c.hint.as_deref().filter(|h| !h.is_empty()) {
                Some(h) => lines.push(format!("{}.{}: FAILED ({h})", s.name, c.name)),
                None => lines.push(format!("{}.{}: FAILED", s.name, c.name)),
            }
        }
    }
    lines
}

/// `BARMAN OK - …`, naming the servers without issues and ignoring the inactive ones that
/// have some.
fn ok(all: &[ServerChecks], issues: &[&ServerChecks], perf: &str) -> String {
    let ignoring: String = issues.iter().map(|s| format!(" * IGNORING: {}", s.name)).collect::<Vec<_>>().concat();
    let good: Vec<&str> =
        all.iter().map(|s| s.name.as_str()).filter(|n| !issues.iter().any(|s| s.name == *n)).collect();
    match good.len() {
        0 => format!("BARMAN OK - No server configured{ignoring}"),
        1 => format!("BARMAN OK - Ready to serve the Espresso backup for {}{ignoring}{perf}", good[0]),
        n => format!(
            "BARMAN OK - Ready to serve the Espresso backup for {n} servers * {}{ignoring}{perf}",
            good.join(" * ")
        ),
    }
}
