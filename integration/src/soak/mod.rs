//! The fault-injection soak (issue 20): SIGKILLs over every tool of the archive, stream,
//! backup and recovery paths, ENOSPC on the catalogue and on a recovery destination, and
//! PostgreSQL crashes mid-stream. After each fault the tools are run normally
//! ([`checks::heal`]: an error there counts as a manual repair) and the invariants are
//! checked ([`checks::verify`]). [`run`] returns one [`Row`] per path; [`table`] prints
//! them. `integration/soak.sh` runs the full soak (`src/bin/soak.rs`), `tests/soak_ci.rs`
//! a few faults per path.

pub mod checks;
pub mod cloud;
pub mod env;
pub mod faults;
pub mod procs;
pub mod sites;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Result;

pub use env::Env;
pub use faults::Path;

/// How much to inject.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Faults per path (attempts that missed their process are retried, up to twice this).
    pub per_path: u32,
    /// A sampled restore of the last DONE backup after every `restore_every`-th backup fault.
    pub restore_every: u32,
    /// Print a line per fault.
    pub verbose: bool,
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// The path.
    pub path: Path,
    /// Faults that hit.
    pub faults: u32,
    /// Segments lost or different.
    pub wal_lost: usize,
    /// Times a tool did not come back by itself.
    pub manual_repairs: u32,
    /// Other invariant violations (what they were is in `notes`).
    pub violations: usize,
    /// Sampled restores that worked.
    pub restores: u32,
    /// Wall time.
    pub duration: Duration,
    /// What went wrong, for the report.
    pub notes: Vec<String>,
}

impl Row {
    /// Nothing lost, nothing repaired, nothing violated.
    pub fn clean(&self) -> bool {
        self.wal_lost == 0 && self.manual_repairs == 0 && self.violations == 0
    }
}

fn note(row: &mut Row, verbose: bool, text: String) {
    if verbose {
        eprintln!("  {}: {text}", row.path.label());
    }
    row.notes.push(text);
}

/// One fault, the normal run after it, the invariants.
fn one_round(env: &mut Env, done: &mut checks::Verified, plan: &Plan, row: &mut Row, round: u32) -> Result<bool> {
    let hit = match faults::inject(env, row.path, round) {
        Ok(hit) => hit,
        Err(e) => {
            // Noted, not counted (as before): a rerun of `recover` right after its kill
            // failed once in CI on 2026-12-08 and is under investigation (issue 20 report).
            note(row, plan.verbose, format!("round {round}: injecting: {e:#}"));
            true
        }
    };
    let mut last = match checks::heal(env) {
        Ok(last) => last,
        Err(e) => {
            row.manual_repairs += 1;
            note(row, plan.verbose, format!("round {round}: tools did not come back: {e:#}"));
            return Ok(hit);
        }
    };
    if let Some(server) = row.path.backup_server() {
        let before = env.rows()?;
        if let Err(e) = env.barman.run(&["backup", server, "--wait", "--immediate-checkpoint"]) {
            row.manual_repairs += 1;
            note(row, plan.verbose, format!("round {round}: the next backup of {server} failed: {e:#}"));
        }
        checks::note_rows(env, server, before)?;
        match checks::heal(env) {
            Ok(l) => last = l,
            Err(e) => {
                row.manual_repairs += 1;
                note(row, plan.verbose, format!("round {round}: tools did not come back after the backup: {e:#}"));
                return Ok(hit);
            }
        }
        if hit && (row.faults + 1).is_multiple_of(plan.restore_every) {
            match checks::sampled_restore(env, server) {
                Ok(()) => row.restores += 1,
                Err(e) => {
                    row.violations += 1;
                    note(row, plan.verbose, format!("round {round}: sampled restore: {e:#}"));
                }
            }
        }
    }
    let mut f = checks::verify(env, &last, done)?;
    if let Some(backup) = row.path.cloud_backup() {
        if let Err(e) = cloud::heal(env, &last, backup) {
            row.manual_repairs += 1;
            note(row, plan.verbose, format!("round {round}: the cloud tools did not come back: {e:#}"));
        } else if backup && hit && (row.faults + 1).is_multiple_of(plan.restore_every) {
            match cloud::sampled_restore(env) {
                Ok(()) => row.restores += 1,
                Err(e) => {
                    row.violations += 1;
                    note(row, plan.verbose, format!("round {round}: sampled cloud restore: {e:#}"));
                }
            }
        }
        cloud::verify(env, &mut f)?;
    }
    if row.path.passive() {
        let p = passive_round(env, done, plan, row, (round, hit), &last)?;
        f.lost.extend(p.lost);
        f.violations.extend(p.violations);
    }
    row.wal_lost += f.lost.len();
    row.violations += f.violations.len();
    for l in f.lost {
        note(row, plan.verbose, format!("round {round}: WAL lost {l}"));
    }
    for v in f.violations {
        note(row, plan.verbose, format!("round {round}: {v}"));
    }
    Ok(hit)
}

/// After a fault on a passive path: the relay run normally, the passive's invariants, and a
/// sampled recovery from the passive alone.
fn passive_round(
    env: &Env,
    done: &mut checks::Verified,
    plan: &Plan,
    row: &mut Row,
    (round, hit): (u32, bool),
    last: &str,
) -> Result<checks::Findings> {
    if let Err(e) = sites::heal(env, last) {
        row.manual_repairs += 1;
        note(row, plan.verbose, format!("round {round}: the passive did not come back: {e:#}"));
        return Ok(checks::Findings::default());
    }
    let f = sites::verify(env, last, done)?;
    if hit && (row.faults + 1).is_multiple_of(plan.restore_every) {
        match checks::sampled_restore_from(env, &env.sites.passive.home, "pg") {
            Ok(()) => row.restores += 1,
            Err(e) => {
                row.violations += 1;
                note(row, plan.verbose, format!("round {round}: sampled restore from the passive: {e:#}"));
            }
        }
    }
    Ok(f)
}

/// Runs `plan` on every path of `paths` against `env`.
pub fn run(env: &mut Env, plan: &Plan, paths: &[Path]) -> Result<Vec<Row>> {
    let mut done = checks::Verified::default();
    let mut rows = Vec::new();
    for &path in paths {
        let t0 = Instant::now();
        let mut row = Row {
            path,
            faults: 0,
            wal_lost: 0,
            manual_repairs: 0,
            violations: 0,
            restores: 0,
            duration: Duration::ZERO,
            notes: Vec::new(),
        };
        let mut round = 0;
        while row.faults < plan.per_path && round < plan.per_path * 2 {
            if one_round(env, &mut done, plan, &mut row, round)? {
                row.faults += 1;
            }
            round += 1;
            if row.manual_repairs > 2 {
                note(&mut row, plan.verbose, "three manual repairs: path abandoned".into());
                break;
            }
        }
        row.duration = t0.elapsed();
        if plan.verbose {
            eprintln!("{}", table(std::slice::from_ref(&row)));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The table: path, faults, WAL lost, manual repairs, other violations, sampled restores,
/// duration; and a total line.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36} {:>6} {:>8} {:>14} {:>10} {:>8} {:>9}",
        "path", "faults", "WAL lost", "manual repairs", "violations", "restores", "duration"
    );
    let mut total = (0, 0, 0, 0, 0, Duration::ZERO);
    for r in rows {
        let _ = writeln!(
            out,
            "{:<36} {:>6} {:>8} {:>14} {:>10} {:>8} {:>8.0}s",
            r.path.label(),
            r.faults,
            r.wal_lost,
            r.manual_repairs,
            r.violations,
            r.restores,
            r.duration.as_secs_f64()
        );
        total = (
            total.0 + r.faults,
            total.1 + r.wal_lost,
            total.2 + r.manual_repairs,
            total.3 + r.violations,
            total.4 + r.restores,
            total.5 + r.duration,
        );
    }
    let _ = writeln!(
        out,
        "{:<36} {:>6} {:>8} {:>14} {:>10} {:>8} {:>8.0}s",
        "total",
        total.0,
        total.1,
        total.2,
        total.3,
        total.4,
        total.5.as_secs_f64()
    );
    out
}
