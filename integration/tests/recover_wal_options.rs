//! Issue 17: `barman recover --no-get-wal --partial-wal --staging-wal-directory DIR
//! --recovery-conf-filename FILE` on a catalogue written by real Barman 3.20.1. Rows are
//! written after the last archived segment and marked by a restore point, so they exist
//! only in the segment PostgreSQL is still writing, which sits in `streaming/` as the
//! `.partial` pg_receivewal would hold. Our recovery copies the archived WAL and that
//! `.partial` (under its segment name) into DIR, writes the recovery settings into FILE and
//! not postgresql.auto.conf, and PostgreSQL started on the result reaches the restore point
//! with every row. Real Barman's recovery with the same options lays out the same WAL files
//! and the same settings.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_integration::cmd::execute;
use barman_integration::scratch::{chown, chown_recursive};
use barman_integration::{
    cargo_bin, real_barman_catalogue, skip_unless, OsUser, PgCluster, PgOptions, RealBarman, Scratch,
};

fn listing(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    Ok(names)
}

#[test]
fn recover_copies_the_partial_segment_into_the_staging_wal_directory() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("recover wal options")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let (pg, barman) = (&fixture.pg, &fixture.barman);
    let id = barman.done_backups("pg")?.into_iter().next().context("a DONE backup")?;
    // Rows only in the segment being written, then a restore point and a commit flushing it.
    pg.psql("insert into harness_data select g, md5(g::text) from generate_series(2001, 3000) g")?;
    pg.psql("select pg_create_restore_point('after3000')")?;
    pg.psql("create table flush_marker(i int)")?;
    let current = pg.psql("select pg_walfile_name(pg_current_wal_lsn())")?.trim().to_owned();
    let streaming = scratch.mkdir_owned(barman.server_dir("pg").join("streaming"), "barman")?;
    let partial = streaming.join(format!("{current}.partial"));
    fs::copy(pg.data_dir().join("pg_wal").join(&current), &partial)?;
    chown(&partial, &OsUser::lookup("barman")?)?;

    let mut layouts = Vec::new();
    for (tag, ours) in [("ours", true), ("real", false)] {
        let dest = scratch.mkdir_owned_mode(format!("dest-{tag}"), "barman", 0o700)?;
        // Inside a directory barman may write to (the scratch root is root's); created by recover.
        let wal_dir = scratch.mkdir_owned(format!("walroot-{tag}"), "barman")?.join("walstage");
        let args = [
            "recover",
            "--no-get-wal",
            "--partial-wal",
            "--staging-wal-directory",
            wal_dir.to_str().context("utf8")?,
            "--recovery-conf-filename",
            "barman-recovery.conf",
            "--target-name",
            "after3000",
            "--target-action",
            "promote",
            "pg",
            &id,
            dest.to_str().context("utf8")?,
        ];
        let o = if ours {
            execute(&mut barman.program_command(&cargo_bin("barman")?, &args), None, Duration::from_mins(2))?
        } else {
            barman.outcome(&args)?
        };
        o.success()?.stdout_contains("Your PostgreSQL server has been successfully prepared for recovery!")?;
        let staged = listing(&wal_dir)?;
        ensure!(staged.contains(&current), "{tag}: {current} not staged in {staged:?}");
        let conf = fs::read_to_string(dest.join("barman-recovery.conf"))?;
        ensure!(conf.contains(&format!("restore_command = 'cp {}/%f %p'", wal_dir.display())), "{tag}: {conf}");
        ensure!(conf.contains("recovery_target_name = 'after3000'"), "{tag}: {conf}");
        let auto = fs::read_to_string(dest.join("postgresql.auto.conf")).unwrap_or_default();
        ensure!(!auto.contains("restore_command"), "{tag}: postgresql.auto.conf got the settings:\n{auto}");
        let settings: Vec<String> = conf
            .replace(&wal_dir.display().to_string(), "WALDIR")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        layouts.push((staged, settings, dest, wal_dir));
    }
    ensure!(layouts[0].0 == layouts[1].0, "staged WAL differs: ours {:?}, Barman's {:?}", layouts[0].0, layouts[1].0);
    ensure!(layouts[0].1 == layouts[1].1, "settings differ:\nours {:?}\nBarman's {:?}", layouts[0].1, layouts[1].1);

    // PostgreSQL on our result, reading the settings file, reaches the restore point.
    let (_, _, dest, wal_dir) = &layouts[0];
    fs::write(
        dest.join("postgresql.conf"),
        format!("{}\ninclude 'barman-recovery.conf'\n", fs::read_to_string(dest.join("postgresql.conf"))?),
    )?;
    chown_recursive(wal_dir, &OsUser::lookup("postgres")?)?;
    let restored = PgCluster::start_existing(&scratch, dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    ensure!(restored.psql("select count(*) from harness_data")?.trim() == "3000");
    Ok(())
}
