//! Issue 17: `barman export-backup` / `import-backup` against real Barman 3.20.1, both ways.
//! A backup taken by real Barman is exported by real Barman (gzip) and by ours (bzip2): the
//! two tarballs hold the same members and the same identity.json, backup.info and xlog.db.
//! Real Barman's tarball is imported by ours into a second catalogue, ours by real Barman
//! into a third; each catalogue then lists the backup DONE and kept `standalone`, and a
//! recovery from each (ours from the first, real Barman's from the second) starts and holds
//! exactly the rows written before the backup. The refusals (bad checksum, bad name,
//! already imported, another cluster, bad options, a missing directory) give the same
//! output and exit status as real Barman's, and a refused import leaves nothing behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_integration::cmd::execute;
use barman_integration::{
    cargo_bin, real_barman_catalogue, skip_unless, BarmanHome, BarmanServerOptions, Outcome, PgCluster, PgOptions,
    RealBarman, Scratch,
};

fn ours(home: &BarmanHome, args: &[&str]) -> Result<Outcome> {
    execute(&mut home.program_command(&cargo_bin("barman")?, args), None, Duration::from_mins(2))
}

fn real(home: &BarmanHome, args: &[&str]) -> Result<Outcome> {
    home.outcome(args)
}

/// Same exit status, stdout and stderr from real Barman and ours on the same catalogue.
fn same(home: &BarmanHome, args: &[&str]) -> Result<Outcome> {
    let (r, o) = (real(home, args)?, ours(home, args)?);
    ensure!(r.code() == o.code(), "{args:?}: exit {:?}, Barman's {:?}\n{}", o.code(), r.code(), o.stderr_str());
    ensure!(
        r.stdout_str() == o.stdout_str(),
        "{args:?} stdout:\n--- barman\n{}--- ours\n{}",
        r.stdout_str(),
        o.stdout_str()
    );
    ensure!(
        r.stderr_str() == o.stderr_str(),
        "{args:?} stderr:\n--- barman\n{}--- ours\n{}",
        r.stderr_str(),
        o.stderr_str()
    );
    Ok(o)
}

/// The one file of `dir`.
fn only_file(dir: &Path) -> Result<PathBuf> {
    let files: Vec<PathBuf> = fs::read_dir(dir)?.map(|e| Ok(e?.path())).collect::<Result<_>>()?;
    ensure!(files.len() == 1, "{} holds {files:?}", dir.display());
    Ok(files[0].clone())
}

/// `tar -tvf` member names, with a trailing `/` on directories, sorted.
fn members(tarball: &Path) -> Result<Vec<String>> {
    let out = Command::new("tar").arg("-tf").arg(tarball).output()?;
    ensure!(out.status.success(), "tar -tf {}: {}", tarball.display(), String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> =
        String::from_utf8(out.stdout)?.lines().map(|l| l.trim_start_matches("./").to_owned()).collect();
    names.sort();
    Ok(names)
}

fn member(tarball: &Path, name: &str) -> Result<Vec<u8>> {
    let out = Command::new("tar").arg("-xOf").arg(tarball).arg(name).output()?;
    ensure!(out.status.success(), "tar -xOf {} {name}", tarball.display());
    Ok(out.stdout)
}

/// A new real-Barman home for the same cluster with the source's identity.json (what an
/// operator has on the receiving server once it is configured).
fn receiving_home(scratch: &Scratch, pg: &PgCluster, identity: &[u8]) -> Result<BarmanHome> {
    let mut home = BarmanHome::real(scratch, &RealBarman::require()?, "barman")?;
    home.add_server("pg", pg, &BarmanServerOptions::default())?;
    let dir = scratch.mkdir_owned(home.server_dir("pg"), "barman")?;
    fs::write(dir.join("identity.json"), identity)?;
    Ok(home)
}

/// Recovers `id` from `home` (with `barman`, ours or real), starts PostgreSQL on it and
/// returns the row count of `harness_data`.
fn recover_and_count(scratch: &Scratch, home: &BarmanHome, id: &str, with_ours: bool, tag: &str) -> Result<String> {
    let dest = scratch.mkdir_owned_mode(format!("restored-{tag}"), "barman", 0o700)?;
    let args = ["recover", "pg", id, dest.to_str().context("utf8")?];
    let o = if with_ours { ours(home, &args)? } else { real(home, &args)? };
    o.success()?.stdout_contains("Your PostgreSQL server has been successfully prepared for recovery!")?;
    let restored = PgCluster::start_existing(scratch, &dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    restored.psql("select count(*) from harness_data")
}

#[test]
fn export_and_import_interoperate_with_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("export import")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let source = &fixture.barman;
    let id = source.done_backups("pg")?.into_iter().next().context("a DONE backup")?;
    ensure!(fixture.pg.psql("select count(*) from harness_data")?.trim() == "2000");

    // Both exports of the same backup: the same members and metadata.
    let (real_dir, our_dir) =
        (scratch.mkdir_owned("export-real", "barman")?, scratch.mkdir_owned("export-ours", "barman")?);
    let r = real(source, &["export-backup", "--compression", "gzip", "pg", &id, real_dir.to_str().context("utf8")?])?;
    r.success()?;
    let o = ours(source, &["export-backup", "--compression", "bzip2", "pg", &id, our_dir.to_str().context("utf8")?])?;
    o.success()?;
    let (theirs, mine) = (only_file(&real_dir)?, only_file(&our_dir)?);
    let our_name = mine.file_name().context("name")?.to_string_lossy().into_owned();
    ensure!(our_name.starts_with(&format!("backup-export-pg-{id}-")) && our_name.ends_with(".tar.bz2"), "{our_name}");
    for (out, path, dir) in [(&r, &theirs, &real_dir), (&o, &mine, &our_dir)] {
        let want = format!(
            "Exporting backup '{id}' from server 'pg' to '{}'\nExport completed successfully: {}\n",
            dir.display(),
            path.display()
        );
        ensure!(out.stdout_str() == want, "stdout {:?}, want {want:?}", out.stdout_str());
    }
    let listed = members(&mine)?;
    ensure!(listed == members(&theirs)?, "members differ:\n--- barman\n{:?}\n--- ours\n{listed:?}", members(&theirs)?);
    ensure!(listed.iter().any(|m| m.starts_with("wals/")) && listed.iter().any(|m| m.starts_with("backup/data/")));
    for name in ["identity.json", "backup.info", "xlog.db"] {
        ensure!(member(&mine, name)? == member(&theirs, name)?, "{name} differs");
    }

    // Ours imports Barman's tarball; Barman imports ours.
    let identity = fs::read(source.server_dir("pg").join("identity.json"))?;
    let ours_home = receiving_home(&scratch, &fixture.pg, &identity)?;
    let real_home = receiving_home(&scratch, &fixture.pg, &identity)?;
    let imported = ours(&ours_home, &["import-backup", "pg", theirs.to_str().context("utf8")?])?;
    imported.success()?;
    let want = format!(
        "Importing backup from '{}' to server 'pg'\nSuccessfully imported backup '{id}' into server 'pg'\n",
        theirs.display()
    );
    ensure!(imported.stdout_str() == want, "ours: {:?}", imported.stdout_str());
    real(&real_home, &["import-backup", "pg", mine.to_str().context("utf8")?])?.success()?;
    for home in [&ours_home, &real_home] {
        ensure!(home.done_backups("pg")? == vec![id.clone()], "{:?}", home.done_backups("pg")?);
        ensure!(real(home, &["keep", "--status", "pg", &id])?.stdout_str().contains("standalone"));
        real(home, &["check-backup", "pg", &id])?.success()?;
    }

    // The refusals, compared with Barman's on the same catalogues.
    refusals_match(&scratch, source, &real_home, &mine, &id, &identity, &fixture.pg)?;

    // Each imported backup recovers to exactly the rows written before it.
    ensure!(recover_and_count(&scratch, &ours_home, &id, true, "ours")?.trim() == "1000");
    ensure!(recover_and_count(&scratch, &real_home, &id, false, "real")?.trim() == "1000");
    Ok(())
}

fn refusals_match(
    scratch: &Scratch,
    source: &BarmanHome,
    imported: &BarmanHome,
    tarball: &Path,
    id: &str,
    identity: &[u8],
    pg: &PgCluster,
) -> Result<()> {
    let path = tarball.to_str().context("utf8")?;
    let o = same(imported, &["import-backup", "pg", path])?;
    o.fails_with_code(1)?.stderr_contains("already exists in the catalog for server 'pg'")?;
    // A renamed copy whose checksum does not match, a name of another server, no file.
    let dir = scratch.mkdir_owned("tampered", "barman")?;
    let name = tarball.file_name().context("name")?.to_string_lossy().into_owned();
    let checksum = &name[name.len() - 16..name.len() - 8];
    let bad = dir.join(name.replace(checksum, "00000000"));
    fs::copy(tarball, &bad)?;
    same(imported, &["import-backup", "pg", bad.to_str().context("utf8")?])?.stderr_contains("checksum mismatch")?;
    let other = dir.join(name.replace("backup-export-pg-", "backup-export-other-"));
    fs::copy(tarball, &other)?;
    same(imported, &["import-backup", "pg", other.to_str().context("utf8")?])?.fails_with_code(1)?;
    same(imported, &["import-backup", "pg", "/nonexistent/backup-export-pg-x.tar"])?.fails_with_code(1)?;
    let out = scratch.mkdir_owned("export-refused", "barman")?;
    let out = out.to_str().context("utf8")?;
    for args in [
        &["export-backup", "--compression-level", "5", "pg", id, out][..],
        &["export-backup", "--compression", "gzip", "--compression-level", "0", "pg", id, out],
        &["export-backup", "--compression", "xz", "--compression-level", "10", "pg", id, out],
        &["export-backup", "pg", id, "/nonexistent/dir"],
        &["export-backup", "pg", "20000101T000000", out],
    ] {
        same(source, args)?.fails_with_code(1)?;
    }
    ensure!(fs::read_dir(out)?.next().is_none(), "a refused export wrote something");
    // Another cluster's catalogue refuses the tarball and is left empty.
    let mut other_identity: serde_json::Value = serde_json::from_slice(identity)?;
    other_identity["systemid"] = "42".into();
    let stranger = receiving_home(scratch, pg, other_identity.to_string().as_bytes())?;
    same(&stranger, &["import-backup", "pg", path])?.fails_with_code(1)?.stderr_contains("Server identity mismatch")?;
    let base = stranger.server_dir("pg").join("base");
    ensure!(fs::read_dir(&base)?.next().is_none(), "a refused import left files in {}", base.display());
    Ok(())
}
