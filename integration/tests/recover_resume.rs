//! Issue 20, found by the soak: `barman recover` killed with SIGKILL half-way left a
//! destination the same command then refused ("not empty", Barman's check), so someone had
//! to empty it by hand. Now a local recovery marks each destination while it writes it
//! (`.barman-recover.incomplete`): run again, it empties its own unfinished work and
//! recovers; any other non-empty destination is still refused as Barman refuses it.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_integration::fixtures::ArchivingCluster as Setup;
use barman_integration::scratch::chown_recursive;
use barman_integration::{skip_unless, OsUser, PgCluster, PgOptions, Sshd};

const MARKER: &str = ".barman-recover.incomplete";

fn rows(pg: &PgCluster) -> Result<String> {
    pg.psql("select count(*) from t")
}

/// Starts PostgreSQL on `dest` and returns the rows of `t`.
fn start_and_count(s: &Setup, dest: &Path) -> Result<String> {
    chown_recursive(dest, &OsUser::lookup("postgres")?)?;
    let restored = PgCluster::start_existing(&s.scratch, dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    rows(&restored)
}

#[test]
fn recover_killed_half_way_is_redone_by_the_same_command_and_foreign_files_are_still_refused() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let s = Setup::start("recover resume")?;
    s.pg.psql("create table t(id int); insert into t select generate_series(1, 5000)")?;
    s.pg.pgbench_init(3)?;
    s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    let id = s.barman.done_backups("pg")?.pop().context("no DONE backup")?;
    let root = s.scratch.mkdir_owned("rec", "barman")?;

    // A real SIGKILL while the destination is being written (the marker is there).
    let dest = root.join("killed");
    let dest_s = dest.to_str().context("utf8")?;
    let mut child = s.barman.command(&["recover", "pg", &id, dest_s]).spawn()?;
    let t0 = Instant::now();
    while !dest.join(MARKER).is_file() && t0.elapsed() < Duration::from_mins(1) && child.try_wait()?.is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(30));
    let killed = child.try_wait()?.is_none();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(child.id())?), nix::sys::signal::Signal::SIGKILL)?;
    child.wait()?;
    ensure!(killed, "recover finished before it could be killed");
    ensure!(dest.join(MARKER).is_file(), "the killed recover left no marker");
    let out = s.barman.run(&["recover", "pg", &id, dest_s])?;
    ensure!(out.contains("Removing the unfinished recovery left in"), "second run:\n{out}");
    ensure!(!dest.join(MARKER).exists(), "the marker stayed after a finished recovery");
    ensure!(start_and_count(&s, &dest)? == "5000", "rows after the redone recovery");

    // An unfinished recovery with stray files in it: emptied, then recovered.
    let dest = root.join("stray");
    let dest_s = dest.to_str().context("utf8")?;
    fs::create_dir_all(dest.join("base"))?;
    fs::write(dest.join(MARKER), "")?;
    fs::write(dest.join("base/stray"), "left by an interrupted run")?;
    chown_recursive(&dest, &OsUser::lookup("barman")?)?;
    s.barman.run(&["recover", "pg", &id, dest_s])?;
    ensure!(!dest.join("base/stray").exists(), "a stray file survived");

    // Anything else non-empty: Barman's refusal, nothing touched.
    let foreign = root.join("foreign");
    fs::create_dir_all(&foreign)?;
    fs::write(foreign.join("precious"), "someone's data")?;
    chown_recursive(&foreign, &OsUser::lookup("barman")?)?;
    let o = s.barman.outcome(&["recover", "pg", &id, foreign.to_str().context("utf8")?])?;
    ensure!(o.code() == Some(1), "exit {:?}", o.code());
    ensure!(o.stderr_str().contains("is not empty. To prevent accidental data loss"), "{}", o.stderr_str());
    ensure!(fs::read_to_string(foreign.join("precious"))? == "someone's data", "foreign file changed");
    ensure!(fs::read_dir(&foreign)?.count() == 1, "files added to a foreign destination");
    Ok(())
}
