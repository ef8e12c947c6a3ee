//! Issue 17: the maintenance subcommands against real Barman 3.20.1 on the same real
//! catalogue. `rebuild-xlogdb` must write the same xlog.db and print the same lines;
//! `list-files`, `check-wal-archive`, `check-archived-wal-range`, `list-processes`,
//! `terminate-process`, `verify-backup` and `generate-manifest` must give the same output
//! and exit status. `diagnose` must have Barman's shape, and `lock-directory-cleanup` must
//! remove only the unheld locks.

use std::fs;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{BackupId, Catalogue, ServerLayout};
use barman_integration::cmd::{as_user, execute};
use barman_integration::{cargo_bin, real_barman_catalogue, skip_unless, BarmanHome, Outcome, RealBarman, Scratch};
use serde_json::Value;

fn real(barman: &BarmanHome, args: &[&str]) -> Result<Outcome> {
    barman.outcome(args)
}

/// `sh -c script` as the catalogue's user (so its lock files are the user's).
fn spawn_as_barman(barman: &BarmanHome, script: &str) -> Result<Child> {
    let mut cmd = Command::new("/bin/sh");
    as_user(&mut cmd, barman.user());
    Ok(cmd.arg("-c").arg(script).spawn()?)
}

fn ours(barman: &BarmanHome, args: &[&str]) -> Result<Outcome> {
    execute(&mut barman.program_command(&cargo_bin("barman")?, args), None, Duration::from_mins(1))
}

/// Same exit status, stdout and stderr (or the sorted stdout lines, for `list-files`, where
/// Python's `os.walk` visits directories in on-disk order).
fn same(barman: &BarmanHome, args: &[&str], sort_lines: bool) -> Result<String> {
    let (r, o) = (real(barman, args)?, ours(barman, args)?);
    let lines = |s: String| {
        let mut l: Vec<String> = s.lines().map(str::to_owned).collect();
        if sort_lines {
            l.sort();
        }
        l
    };
    ensure!(r.code() == o.code(), "{args:?}: exit {:?}, Barman's {:?}\n{}", o.code(), r.code(), o.stderr_str());
    ensure!(
        lines(r.stdout_str()) == lines(o.stdout_str()),
        "{args:?} stdout differs:\n--- barman\n{}--- ours\n{}",
        r.stdout_str(),
        o.stdout_str()
    );
    ensure!(
        r.stderr_str() == o.stderr_str(),
        "{args:?} stderr: Barman {:?}, ours {:?}",
        r.stderr_str(),
        o.stderr_str()
    );
    Ok(o.stdout_str())
}

#[test]
fn maintenance_commands_match_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("maintenance cli")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let barman = &fixture.barman;
    rebuild_xlogdb_equals_barmans(barman)?;
    let layout = ServerLayout::default_for(&barman.home(), "pg");
    let catalogue = Catalogue::load(&layout)?;
    let (_, info) = catalogue.latest().context("a backup")?;
    let begin = info.begin_wal.as_ref().context("begin_wal")?.to_string();
    let end = info.end_wal.as_ref().context("end_wal")?.to_string();
    let beyond = format!("{}{:08X}", &end[..16], u32::from_str_radix(&end[16..], 16)? + 3);
    let mut compared = 0;
    for target in ["data", "standalone", "wal", "full"] {
        let listed = same(barman, &["list-files", "--target", target, "pg", "latest"], true)?;
        ensure!(!listed.is_empty(), "list-files --target {target} listed nothing");
        compared += 1;
    }
    same(barman, &["list-files", "--list-empty-directories", "pg", "latest"], true)?;
    let cases: &[&[&str]] = &[
        &["check-wal-archive", "pg"],
        &["check-wal-archive", "--timeline", "1", "pg"],
        &["check-wal-archive", "--timeline", "2", "pg"],
        &["-f", "json", "check-wal-archive", "--timeline", "2", "pg"],
        &["check-archived-wal-range", "pg", &begin, &end],
        &["check-archived-wal-range", "pg", &begin, &beyond],
        &["-f", "json", "check-archived-wal-range", "pg", &begin, &beyond],
        &["check-archived-wal-range", "pg", &end, &begin],
        &["check-archived-wal-range", "pg", "nonsense", &end],
        &["list-processes", "pg"],
        &["-f", "json", "list-processes", "pg"],
        &["terminate-process", "pg", "backup"],
        &["verify-backup", "pg", "latest"],
        &["verify", "pg", "oldest"],
    ];
    for args in cases {
        same(barman, args, false)?;
        compared += 1;
    }
    ensure!(ours(barman, &["verify-backup", "pg", "latest"])?.stdout_str().contains("backup successfully verified"));
    processes_match(barman)?;
    generate_manifest_matches(barman, &layout, catalogue.latest().context("a backup")?.0.as_str())?;
    diagnose_has_barmans_shape(barman)?;
    lock_cleanup_keeps_held_locks(barman)?;
    eprintln!("maintenance commands: {compared} command lines equal to Barman 3.20.1's");
    Ok(())
}

/// xlog.db emptied, rebuilt by Barman, emptied again, rebuilt by us: same file, same lines.
fn rebuild_xlogdb_equals_barmans(barman: &BarmanHome) -> Result<()> {
    let xlogdb = barman.xlog_db("pg");
    let original = fs::read_to_string(&xlogdb)?;
    // A stray file in a hash directory: skipped by both (and logged).
    let hash_dir = fs::read_dir(barman.server_dir("pg").join("wals"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .context("a hash directory")?;
    fs::write(hash_dir.join("unexpected-file"), "x")?;
    fs::write(&xlogdb, "")?;
    let theirs = real(barman, &["rebuild-xlogdb", "pg"])?;
    theirs.success()?;
    let their_db = fs::read_to_string(&xlogdb)?;
    fs::write(&xlogdb, "garbage\n")?;
    let mine = ours(barman, &["rebuild-xlogdb", "all"])?;
    mine.success()?;
    let our_db = fs::read_to_string(&xlogdb)?;
    ensure!(our_db == their_db, "xlog.db differs:\n--- barman\n{their_db}--- ours\n{our_db}");
    ensure!(mine.stdout_str() == theirs.stdout_str(), "{} vs {}", mine.stdout_str(), theirs.stdout_str());
    ensure!(their_db.lines().count() >= 3 && their_db.lines().count() == original.lines().count());
    fs::remove_file(hash_dir.join("unexpected-file"))?;
    Ok(())
}

/// A process holding `.pg-backup.lock` (its PID written in it, as Barman's locks are):
/// listed alike; terminated by ours with Barman's line.
fn processes_match(barman: &BarmanHome) -> Result<()> {
    let lock = barman.home().join(".pg-backup.lock");
    let script = format!("echo $$ > {0}; exec flock -o {0} sleep 120", lock.display());
    let mut holder = spawn_as_barman(barman, &script)?;
    std::thread::sleep(Duration::from_secs(1));
    let pid = holder.id();
    let listed = same(barman, &["list-processes", "pg"], false)?;
    ensure!(listed.contains(&format!("{pid} backup")), "holder {pid} not listed: {listed}");
    same(barman, &["-f", "json", "list-processes", "pg"], false)?;
    let stopped = ours(barman, &["terminate-process", "pg", "backup"])?;
    let status = holder.wait()?;
    ensure!(stopped.stdout_str() == format!("Stopped process backup({pid})\n"), "{}", stopped.stdout_str());
    ensure!(!status.success(), "the holder was not interrupted");
    Ok(())
}

/// The manifest of a backup without one: Barman's and ours hold the same entries.
fn generate_manifest_matches(barman: &BarmanHome, layout: &ServerLayout, id: &str) -> Result<()> {
    same(barman, &["generate-manifest", "pg", id], false)?; // both refuse: it exists
    let manifest = layout.backup_dir(&BackupId::new(id)?).join("data/backup_manifest");
    let saved = fs::read(&manifest)?;
    let parse = |text: &str| -> Result<Vec<Value>> {
        let v: Value = serde_json::from_str(text)?;
        let mut files = v["Files"].as_array().context("Files")?.clone();
        files.sort_by_key(|f| f["Path"].as_str().unwrap_or("").to_owned());
        Ok(files)
    };
    fs::remove_file(&manifest)?;
    let theirs = real(barman, &["generate-manifest", "pg", id])?;
    theirs.success()?;
    let their_files = parse(&fs::read_to_string(&manifest)?)?;
    fs::remove_file(&manifest)?;
    let mine = ours(barman, &["generate-manifest", "pg", id])?;
    ensure!(mine.stdout_str() == theirs.stdout_str(), "{} vs {}", mine.stdout_str(), theirs.stdout_str());
    let our_text = fs::read_to_string(&manifest)?;
    ensure!(parse(&our_text)? == their_files, "manifest entries differ:\n{our_text}");
    let (body, _) = our_text.rsplit_once("\"Manifest-Checksum\"").context("checksum line")?;
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
    ensure!(our_text.contains(&digest), "Manifest-Checksum is not the SHA256 of the manifest before it");
    fs::write(&manifest, saved)?;
    Ok(())
}

fn diagnose_has_barmans_shape(barman: &BarmanHome) -> Result<()> {
    let parse = |o: Outcome| -> Result<Value> { Ok(serde_json::from_str(&o.success()?.stdout_str())?) };
    let theirs = parse(real(barman, &["diagnose", "--show-config-source"])?)?;
    let mine = parse(ours(barman, &["diagnose", "--show-config-source"])?)?;
    let keys = |v: &Value| -> Vec<String> { v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default() };
    ensure!(keys(&mine) == keys(&theirs), "top level: {:?} vs {:?}", keys(&mine), keys(&theirs));
    let (ms, ts) = (&mine["servers"]["pg"], &theirs["servers"]["pg"]);
    for key in ["config", "msg_list", "active_model", "backups", "wals"] {
        ensure!(!ms[key].is_null() || ts[key].is_null(), "servers.pg.{key} missing");
    }
    ensure!(keys(&ms["backups"]) == keys(&ts["backups"]), "backups differ");
    ensure!(ms["config"]["conninfo"]["source"] == ts["config"]["conninfo"]["source"], "conninfo source differs");
    let tlis = |v: &Value| keys(&v["wals"]["last_archived_wal_per_timeline"]);
    ensure!(tlis(ms) == tlis(ts), "timelines {:?} vs {:?}", tlis(ms), tlis(ts));
    Ok(())
}

fn lock_cleanup_keeps_held_locks(barman: &BarmanHome) -> Result<()> {
    let home = barman.home();
    let stale = home.join(".pg-20000101T000000.lock");
    spawn_as_barman(barman, &format!("touch {}", stale.display()))?.wait()?;
    let held = home.join(".pg-cron.lock");
    let script = format!("exec flock -o {} sleep 60", held.display());
    let mut holder = spawn_as_barman(barman, &script)?;
    std::thread::sleep(Duration::from_secs(1));
    ours(barman, &["lock-directory-cleanup"])?.success()?;
    let gone = !stale.exists();
    let kept = held.exists();
    let _ = Command::new("kill").arg(holder.id().to_string()).status();
    let _ = holder.wait();
    ensure!(gone && kept, "stale lock removed: {gone}, held lock kept: {kept}");
    Ok(())
}
