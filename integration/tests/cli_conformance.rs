//! Issue 17: our `barman`, `barman-wal-archive` and `barman-wal-restore` (and, issue 22, the
//! nine `barman-cloud-*` tools) accept every subcommand, alias and option of Barman 3.20.1 with the same arity and choices. The
//! reference is generated from Barman's own argparse tree (`integration/tools/barman-cli-tree.py`
//! in the interop venv), never copied by hand; the test fails listing whatever is missing.
//!
//! Options that are parsed but refused (a one-line error, exit 3) until the issue that owns
//! their machinery wires them are listed in `man/REFUSED-OPTIONS.md`; the second test checks
//! that they are refused, never silently ignored.

use std::process::Command;

use anyhow::{ensure, Result};
use barman_integration::conformance::{barman_tree, compare_all};
use barman_integration::{cargo_bin, skip_unless, RealBarman};

#[test]
fn every_barman_3_20_1_subcommand_and_option_is_accepted_with_the_same_arity() -> Result<()> {
    let real = skip_unless!(RealBarman::require());
    let tools = barman_tree(&real)?;
    let report = compare_all(&tools)?;
    eprintln!(
        "conformance with Barman 3.20.1: {} subcommands and aliases, {} option strings and positionals checked, {} missing",
        report.subcommands,
        report.options,
        report.missing.len()
    );
    ensure!(report.subcommands > 40 && report.options > 250, "suspiciously small dump: {report:?}");
    ensure!(report.missing.is_empty(), "missing or different from Barman 3.20.1:\n  {}", report.missing.join("\n  "));
    Ok(())
}

/// Each line: arguments after `barman -c <missing file>`, then the word the message names.
const REFUSED: &[(&[&str], &str)] = &[
    (&["backup", "--cloud-staging-directory", "/tmp", "pg"], "--cloud-staging-directory"),
    (&["backup", "--cloud-staging-max-size", "1", "pg"], "--cloud-staging-max-size"),
    (&["recover", "--snapshot-recovery-instance", "i", "pg", "latest", "/tmp/x"], "--snapshot-recovery-instance"),
    (&["recover", "--aws-region", "r", "pg", "latest", "/tmp/x"], "--aws-region"),
    (&["cloud-wal-archive", "pg", "/tmp/x"], "cloud-wal-archive"),
    (&["cloud-wal-restore", "pg", "000000010000000000000001", "/tmp/x"], "cloud-wal-restore"),
];

#[test]
fn options_wired_by_other_issues_are_refused_not_ignored() -> Result<()> {
    let bin = cargo_bin("barman")?;
    for (args, word) in REFUSED {
        let out = Command::new(&bin).args(["-c", "/nonexistent/barman.conf"]).args(*args).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(3),
            "barman {args:?}: exit {:?}, want 3; stderr: {stderr}",
            out.status.code()
        );
        ensure!(
            stderr.contains(word) && stderr.contains("not supported") && stderr.lines().count() == 1,
            "barman {args:?}: want one line naming {word}: {stderr}"
        );
    }
    Ok(())
}
