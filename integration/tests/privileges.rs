//! Privileges as Barman (`drop_privileges`): `barman backup pg` started as root becomes
//! `barman_user`, so every file it creates in the catalogue (and the log) is owned by that
//! user; a user that cannot switch is refused with Barman's message and exit code, compared
//! with real Barman 3.20.1 on the same configuration.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use barman_integration::cmd::{as_user, execute};
use barman_integration::fixtures::ArchivingCluster;
use barman_integration::pg::SYSTEM_PATH;
use barman_integration::{cargo_bin, require_root, skip_unless, OsUser, RealBarman};

/// Every path under `dir` (itself included).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    out.push(dir.to_path_buf());
    if fs::symlink_metadata(dir)?.is_dir() {
        for e in fs::read_dir(dir)? {
            walk(&e?.path(), out)?;
        }
    }
    Ok(())
}

#[test]
fn backup_run_as_root_creates_only_barman_user_files() -> Result<()> {
    skip_unless!(require_root());
    let set = ArchivingCluster::start("privileges")?;
    set.pg.psql("create table t(i int); insert into t select generate_series(1, 1000)")?;
    set.barman.run(&["switch-wal", "--force", "--archive", "--archive-timeout", "60", "pg"])?;
    let home = set.barman.home();
    let mut before = Vec::new();
    walk(&home, &mut before)?;

    // As root, with the same PATH the harness gives the barman user.
    let as_barman = set.barman.command(&["backup", "--wait", "--wait-timeout", "60", "pg"]);
    let mut cmd = Command::new(as_barman.get_program());
    cmd.args(as_barman.get_args()).envs(as_barman.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let out = execute(&mut cmd, None, Duration::from_mins(3))?;
    out.success()?;

    let barman = OsUser::lookup("barman")?;
    let mut after = Vec::new();
    walk(&home, &mut after)?;
    let log = home.parent().expect("home has a parent").join("barman.log");
    after.push(log);
    let created: Vec<&PathBuf> = after.iter().filter(|p| !before.contains(p)).collect();
    ensure!(created.len() > 10, "the backup created only {} paths: {created:?}", created.len());
    let foreign: Vec<String> = created
        .iter()
        .filter_map(|p| {
            let m = fs::symlink_metadata(p).ok()?;
            (m.uid() != barman.uid || m.gid() != barman.gid)
                .then(|| format!("{} ({}:{})", p.display(), m.uid(), m.gid()))
        })
        .collect();
    ensure!(foreign.is_empty(), "files not owned by barman_user: {foreign:#?}");
    eprintln!("{} paths created by `barman backup pg` run as root, all owned by barman", created.len());
    ensure!(!set.barman.done_backups("pg")?.is_empty(), "no DONE backup");
    Ok(())
}

#[test]
fn a_user_that_cannot_switch_is_refused_as_barman_does() -> Result<()> {
    skip_unless!(require_root());
    skip_unless!(RealBarman::require());
    let real = RealBarman::require()?;
    let dir = tempfile::tempdir()?;
    fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let config = dir.path().join("barman.conf");
    for user in ["barman", "nosuchuser"] {
        fs::write(&config, format!("[barman]\nbarman_home = {}/home\nbarman_user = {user}\n", dir.path().display()))?;
        let mut results = Vec::new();
        for bin in [real.bin("barman"), cargo_bin("barman")?] {
            let mut cmd = Command::new(&bin);
            as_user(&mut cmd, &OsUser::lookup("postgres")?);
            cmd.env("PATH", SYSTEM_PATH).arg("-c").arg(&config).arg("list-servers");
            let out = execute(&mut cmd, None, Duration::from_mins(1))?;
            results.push((out.code(), out.stderr_str()));
        }
        eprintln!("barman_user = {user}, run as postgres:\n  Barman: {:?}\n  ours:   {:?}", results[0], results[1]);
        ensure!(results[0] == results[1], "differs from Barman: {results:?}");
        ensure!(results[0].0 == Some(1), "not refused: {results:?}");
    }
    Ok(())
}
