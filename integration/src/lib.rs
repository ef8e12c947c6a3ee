//! Test harness for the Barman-compatible toolkit: real processes, real outcomes.
//!
//! - [`scratch`]: a fresh `/tmp/barman-it-*` dir per test ([`Scratch`]), removed on drop
//!   unless `KEEP_SCRATCH=1`, with helpers to hand subdirectories to OS users.
//! - [`cmd`]: running commands with a timeout and a full failure dump ([`cmd::run`],
//!   [`cmd::run_as`], [`cmd::Outcome`]), OS users, [`cmd::cargo_bin`], [`cmd::free_port`].
//! - [`pg`]: PostgreSQL clusters run as `postgres` ([`PgCluster`], [`PgOptions`]), 15 by
//!   default, 13 to 18 with [`PgOptions::version`] ([`pgversion`]).
//! - [`sshd`]: a private sshd on 127.0.0.1 and per-user `ssh` wrappers ([`Sshd`]).
//! - [`barman`]: real Barman 3.20.1 ([`RealBarman`]), Barman configs and catalogues
//!   ([`BarmanHome`]) and the [`real_barman_catalogue`] fixture.
//!
//! # Users, permissions and `PATH`
//!
//! Tests run as root. Postgres runs as `postgres`; Barman catalogues belong to `barman`.
//! Scratch dirs are 0755 so both can traverse them; each daemon's files are owned by the
//! user that uses them. Nothing relies on the caller's `PATH`: the server's `PATH` is
//! [`PgOptions::path_prefix`] + PostgreSQL bin + system dirs, and remote commands over ssh
//! get `SetEnv PATH=` [`SshdOptions::remote_path`] + system dirs. To make `archive_command`
//! reach a `barman` over ssh: start an [`Sshd`] whose `remote_path` has that binary's
//! directory first, and give the cluster `path_prefix(sshd.ssh_wrapper_dir_for("postgres")?)`.
//!
//! # Prerequisites
//!
//! Tests begin with `skip_unless!(PgCluster::require())` (or `Sshd::require()`,
//! `RealBarman::require()`): without the prerequisite a test prints `SKIPPED` and passes,
//! except under `CI=true`, where it fails. Run `integration/setup.sh` as root to provision.

pub mod barman;
pub mod cmd;
pub mod conformance;
pub mod fixtures;
pub mod gnupg;
pub mod hosts;
pub mod man;
pub mod matrix;
pub mod netns;
pub mod objstore;
pub mod pg;
pub mod pgversion;
pub mod scratch;
pub mod soak;
pub mod sshd;

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

#[doc(hidden)]
pub use anyhow;
pub use barman::{real_barman_catalogue, BarmanHome, BarmanServerOptions, RealBarman, RealCatalogue};
pub use cmd::{cargo_bin, free_port, run, run_as, OsUser, Outcome};
pub use pg::{table_checksum, ArchiveMode, PgCluster, PgOptions};
pub use pgversion::PgVersion;
pub use scratch::Scratch;
pub use sshd::{Sshd, SshdOptions};

/// Whether we run under CI (`CI=true`), where a missing prerequisite is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Fails unless the tests run as root (they switch to `postgres`/`barman` and start sshd).
pub fn require_root() -> Result<()> {
    if !nix::unistd::getuid().is_root() {
        bail!("integration tests must run as root (they run processes as postgres and barman)");
    }
    Ok(())
}

/// Polls `check` (every 20 ms up to every 200 ms) until it returns true; fails after
/// `timeout` naming `what`, or at once when `check` fails.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// What a test function returns when it is skipped: `()` or `Ok(())`.
pub trait SkipReturn {
    /// The value returned by a skipped test.
    fn skipped() -> Self;
}

impl SkipReturn for () {
    fn skipped() -> Self {}
}

impl<E> SkipReturn for Result<(), E> {
    fn skipped() -> Self {
        Ok(())
    }
}

/// Reports a missing prerequisite: panics under `CI=true`, prints `SKIPPED` otherwise.
pub fn skip_or_fail(error: &anyhow::Error) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    assert!(!in_ci(), "{test}: prerequisite missing under CI=true (never skipped in CI): {error:#}");
    // Straight to stderr, past libtest's capture of `eprintln!`: a skip must be seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {error:#}");
}

/// `skip_unless!(prerequisite)`: evaluates a `Result`; on `Ok(v)` yields `v`, on `Err`
/// skips the test (returns) locally and panics under `CI=true`.
#[macro_export]
macro_rules! skip_unless {
    ($req:expr) => {
        match $req {
            Ok(value) => value,
            Err(error) => {
                $crate::skip_or_fail(&$crate::anyhow::Error::from(error));
                return $crate::SkipReturn::skipped();
            }
        }
    };
}
