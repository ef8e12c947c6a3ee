//! The version matrix: runs [`barman_integration::matrix::run_version`] on each PostgreSQL
//! major given (default: 13 to 18), one after the other, and prints the results table.
//! Exits 1 when any major fails. Run as root after `integration/setup.sh`, through
//! `integration/matrix.sh`.

use std::process::ExitCode;

use anyhow::Result;
use barman_integration::matrix::{run_version, table, VersionReport};
use barman_integration::PgVersion;

fn main() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let versions: Vec<PgVersion> = if args.is_empty() {
        PgVersion::ALL.to_vec()
    } else {
        args.iter().map(|a| a.parse()).collect::<Result<_>>()?
    };
    let mut reports = Vec::new();
    for version in versions {
        eprintln!("matrix: PostgreSQL {version}...");
        let report = run_version(version);
        eprintln!(
            "matrix: PostgreSQL {version}: {} in {:.1} s",
            if report.passed() { "PASS" } else { "FAIL" },
            report.total.as_secs_f64()
        );
        reports.push(report);
    }
    print!("{}", table(&reports));
    Ok(if reports.iter().all(VersionReport::passed) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
