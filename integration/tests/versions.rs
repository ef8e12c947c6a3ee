//! Issue 19: every data path on more than one PostgreSQL major. The CI subset of the version
//! matrix (`integration/matrix.sh` runs all of 13 to 18): PostgreSQL 15 (Debian) and 18 (the
//! newest, complete install) end to end: archive through barman-wal-archive, stream with
//! barman receive-wal, check/status/show-servers, barman backup, recover to a target time,
//! exactly the rows written before it.

use anyhow::{bail, Result};
use barman_integration::matrix::{run_version, table};
use barman_integration::{skip_unless, PgCluster, PgVersion, Sshd};

fn matrix_on(version: PgVersion) -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    skip_unless!(version.require());
    let report = run_version(version);
    eprintln!("{}", table(std::slice::from_ref(&report)));
    if let Some(failure) = report.failure() {
        bail!("{failure}");
    }
    Ok(())
}

#[test]
fn every_data_path_on_pg15() -> Result<()> {
    matrix_on(PgVersion::V15)
}

#[test]
fn every_data_path_on_pg18() -> Result<()> {
    matrix_on(PgVersion::V18)
}
