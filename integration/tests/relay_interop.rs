//! Geo-redundancy interop with real Barman 3.20.1, both ways, each backup host with its own
//! sshd on 127.0.0.1 (no network namespaces needed):
//! (a) a real Barman primary A (PostgreSQL archiving into it with our `barman-wal-archive`,
//!     real `barman backup`) followed by our passive B (`barman-relay`): B's catalogue must
//!     equal A's, its WAL byte for byte, and our `barman recover` from B restores the right rows;
//! (b) our primary A followed by a real Barman passive B (real `barman cron`, which spawns
//!     `sync-backup`/`sync-wals`): B lists A's backups DONE and real Barman recovers from them.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{Catalogue, ServerLayout};
use barman_integration::hosts::{archive_now, ensure_same_tree, insert_rows, BackupHost};
use barman_integration::scratch::chown_recursive;
use barman_integration::{
    cargo_bin, skip_unless, wait_until, BarmanServerOptions, OsUser, PgCluster, PgOptions, RealBarman, Scratch, Sshd,
};

/// PostgreSQL archiving to primary A (our `barman-wal-archive` through A's sshd), passive B.
struct Sites {
    pg: PgCluster,
    a: BackupHost,
    b: BackupHost,
    scratch: Scratch,
}

fn sites(name: &str, a_bin: &Path, b_bin: &Path) -> Result<Sites> {
    let scratch = Scratch::new(name)?;
    let mut a = BackupHost::start(&scratch, "a", a_bin, None)?;
    let mut b = BackupHost::start(&scratch, "b", b_bin, None)?;
    b.trust(&a)?;
    let pg = a.archiving_cluster(&scratch, "pg")?;
    a.home.add_server(
        "pg",
        &pg,
        &BarmanServerOptions { compression: Some("gzip".into()), ..BarmanServerOptions::default() },
    )?;
    b.add_passive("pg", &a, "gzip", &[])?;
    Ok(Sites { pg, a, b, scratch })
}

/// Data, a tablespace, two backups on A; returns the recovery target time (rows 1..=300
/// are before it, 301..=400 after).
fn history(s: &Sites, tablespace: bool) -> Result<String> {
    archive_now(&s.pg, &s.a, "pg")?;
    if tablespace {
        let ts_dir = s.scratch.mkdir_owned_mode("ts1", "postgres", 0o700)?;
        s.pg.psql(&format!("create tablespace ts1 location '{}'", ts_dir.display()))?;
        s.pg.psql("create table t(id int primary key, v text) tablespace ts1")?;
    } else {
        s.pg.psql("create table t(id int primary key, v text)")?;
    }
    insert_rows(&s.pg, 1, 100)?;
    s.a.home.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    insert_rows(&s.pg, 101, 200)?;
    s.a.home.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    insert_rows(&s.pg, 201, 300)?;
    s.pg.psql("select pg_sleep(0.3)")?;
    let target = s.pg.psql("select clock_timestamp()::text")?;
    s.pg.psql("select pg_sleep(0.3)")?;
    insert_rows(&s.pg, 301, 400)?;
    archive_now(&s.pg, &s.a, "pg")?;
    Ok(target)
}

/// begin_wal of the oldest backup of `home`'s server `pg`.
fn first_begin_wal(home: &Path) -> Result<String> {
    let catalogue = Catalogue::load(&ServerLayout::default_for(home, "pg"))?;
    let (_, info) = catalogue.entries().first().context("no backup")?;
    Ok(info.begin_wal.as_ref().context("no begin_wal")?.to_string())
}

/// WAL-directory files (segments, history, backup labels; relative paths) from `from` on.
fn wal_files(dir: &Path, from: &str) -> Result<BTreeSet<String>> {
    Ok(barman_integration::hosts::tree(dir, &[])?
        .keys()
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            !n.ends_with("xlog.db")
                && n != "sync-wals.info"
                && (n.ends_with(".history") || n.get(..24).is_some_and(|s| s >= from))
        })
        .map(|p| p.display().to_string())
        .collect())
}

/// Every WAL file of A from `from` on is on B with the same bytes; returns how many.
fn same_wals(s: &Sites, from: &str) -> Result<usize> {
    let a_wals = s.a.home.home().join("pg/wals");
    let b_wals = s.b.home.home().join("pg/wals");
    let names = wal_files(&a_wals, from)?;
    let on_b = wal_files(&b_wals, from)?;
    ensure!(names == on_b, "WAL files differ:\nA: {names:?}\nB: {on_b:?}");
    for rel in &names {
        ensure!(fs::read(a_wals.join(rel))? == fs::read(b_wals.join(rel))?, "{rel} differs");
    }
    Ok(names.len())
}

/// xlog.db lines of `host` from `from` on, in file order.
fn xlog_lines(host: &BackupHost, from: &str) -> Result<Vec<String>> {
    let text = fs::read_to_string(host.home.xlog_db("pg"))?;
    Ok(text.lines().filter(|l| l.get(..24).is_some_and(|n| n >= from)).map(str::to_owned).collect())
}

/// B's xlog.db holds A's lines (from `from` on), once each and in A's order.
fn same_xlog(s: &Sites, from: &str) -> Result<usize> {
    let (a, b) = (xlog_lines(&s.a, from)?, xlog_lines(&s.b, from)?);
    ensure!(a == b, "xlog.db lines differ:\nA:\n{}\nB:\n{}", a.join("\n"), b.join("\n"));
    Ok(a.len())
}

/// The other implementation (`bin`) run on B's configuration, as B's user with B's `PATH`.
fn on_b_with(s: &Sites, bin: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = s.b.home.program_command(bin, args);
    let out = barman_integration::cmd::execute(&mut cmd, None, Duration::from_mins(3))?;
    out.success()?;
    Ok(out.stdout_str())
}

/// `(id, status)` of each backup of `pg` (`list-backup -f json`).
fn ids(host: &BackupHost) -> Result<Vec<(String, String)>> {
    let json = host.home.run_json(&["list-backup", "pg"])?;
    let list = json.get("pg").and_then(serde_json::Value::as_array).context("list-backup JSON")?;
    Ok(list
        .iter()
        .map(|b| {
            let field = |k: &str| b.get(k).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
            (field("backup_id"), field("status"))
        })
        .collect())
}

/// Starts a recovered data directory and checks that exactly rows 1..=300 are there.
fn check_recovered(s: &Sites, dest: &Path, extra_dirs: &[&Path]) -> Result<()> {
    let postgres = OsUser::lookup("postgres")?;
    chown_recursive(dest, &postgres)?;
    for d in extra_dirs {
        chown_recursive(d, &postgres)?;
    }
    let restored = PgCluster::start_existing(&s.scratch, dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    let got = restored.psql("select count(*), min(id), max(id) from t")?;
    ensure!(got == "300|1|300", "recovered from B: {got}");
    Ok(())
}

#[test]
fn our_passive_follows_real_barman_primary() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(RealBarman::require());
    let started = Instant::now();
    let s = sites("relay interop real primary", &real.bin("barman"), &cargo_bin("barman")?)?;
    let target = history(&s, true)?;
    let a_list = s.a.home.run(&["list-backup", "pg"])?;
    ensure!(ids(&s.a)?.iter().filter(|(_, st)| st == "DONE").count() == 2, "A's backups:\n{a_list}");

    // A keep annotation on the real primary (in its meta/, outside the backup tree).
    let kept = ids(&s.a)?.first().context("no backup on A")?.0.clone();
    s.a.home.run(&["keep", "pg", &kept, "--target", "full"])?;

    let out = s.b.relay(&["pg"])?;
    out.success().with_context(|| format!("B's log:\n{}", s.b.home.log()))?;
    let from = first_begin_wal(&s.a.home.home())?;
    // A second pass must find nothing left to do and change nothing.
    let again = s.b.relay(&["pg"])?;
    again.success()?;
    let b_list = s.b.home.run(&["list-backup", "pg"])?;
    ensure!(b_list == a_list, "list-backup differs:\nA:\n{a_list}\nB:\n{b_list}\nrelay said:\n{out}");
    let n = same_wals(&s, &from)?;
    let files = ensure_same_tree(&s.a.home.home().join("pg/base"), &s.b.home.home().join("pg/base"), &["backup.info"])?;
    let lines = same_xlog(&s, &from)?;
    eprintln!("B holds {n} WAL files ({lines} xlog.db lines) and {files} backup files, all equal to real Barman's");
    let check = s.b.home.outcome(&["check", "pg"])?;
    ensure!(check.stdout_str().contains("ssh: OK"), "our check on B:\n{check}");
    let keep = s.b.home.run(&["keep", "--status", "pg", &kept])?;
    ensure!(keep.contains("full"), "keep annotation of {kept} on B: {keep}");

    // More WAL: the incremental call (sync-wals.info's name and position sent to the real
    // primary) must bring exactly the new files, without a self-recovery.
    insert_rows(&s.pg, 401, 450)?;
    archive_now(&s.pg, &s.a, "pg")?;
    archive_now(&s.pg, &s.a, "pg")?;
    let inc = s.b.relay(&["pg"])?;
    inc.success()?;
    ensure!(!format!("{inc}").contains("out of sync"), "incremental relay fell back:\n{inc}");
    same_wals(&s, &from)?;
    let lines = same_xlog(&s, &from)?;
    let state = fs::read_to_string(s.b.home.home().join("pg/wals/sync-wals.info"))?;
    let info: serde_json::Value = serde_json::from_str(&fs::read_to_string(s.b.home.home().join("pg/primary.info"))?)?;
    let want = format!("{}\t{}", info["last_name"].as_str().unwrap_or_default(), info["last_position"]);
    ensure!(state == want, "sync-wals.info {state:?}, primary.info says {want:?}");

    // Real Barman takes B's catalogue over: it reads what we wrote (backup.info, xlog.db,
    // primary.info, sync-wals.info) and carries on from there without duplicates.
    let barman = real.bin("barman");
    let (a_now, b_real) = (s.a.home.run(&["list-backup", "pg"])?, on_b_with(&s, &barman, &["list-backup", "pg"])?);
    ensure!(b_real == a_now, "real list-backup on B differs:\nA:\n{a_now}\nB:\n{b_real}");
    for (id, _) in ids(&s.a)? {
        on_b_with(&s, &barman, &["check-backup", "pg", &id])?;
        let show = on_b_with(&s, &barman, &["show-backup", "pg", &id])?;
        ensure!(show.contains("Tablespaces") && show.contains("ts1"), "real show-backup {id} on B:\n{show}");
    }
    insert_rows(&s.pg, 451, 460)?;
    archive_now(&s.pg, &s.a, "pg")?;
    on_b_with(&s, &barman, &["sync-info", "--primary", "pg"])?;
    on_b_with(&s, &barman, &["sync-wals", "pg"])?;
    same_wals(&s, &from)?;
    let after = same_xlog(&s, &from)?;
    ensure!(after > lines, "real sync-wals on B copied nothing ({after} lines)");
    // And we take it back from real Barman's state files.
    insert_rows(&s.pg, 461, 470)?;
    archive_now(&s.pg, &s.a, "pg")?;
    s.b.relay(&["pg"])?.success()?;
    same_wals(&s, &from)?;
    let after = same_xlog(&s, &from)?;
    eprintln!("incremental relay and real Barman's takeover of B: {after} xlog.db lines equal");

    // Our recovery from B's copy, tablespace relocated.
    let id = s.b.home.done_backups("pg")?.pop().context("no backup on B")?;
    let rec = s.scratch.mkdir_owned("rec", "barman")?;
    let dest = rec.join("pgdata");
    let ts_new = rec.join("ts1");
    let rule = format!("ts1:{}", ts_new.display());
    let dest_s = dest.to_str().context("utf8")?;
    let args = ["recover", "--target-time", &target, "--target-action", "promote", "--tablespace", &rule];
    s.b.home.run(&[&args[..], &["pg", &id, dest_s]].concat())?;
    check_recovered(&s, &dest, &[&ts_new])?;
    // Real Barman recovers from our copy too.
    let rec = s.scratch.mkdir_owned("rec-real", "barman")?;
    let (dest, ts_new) = (rec.join("pgdata"), rec.join("ts1"));
    let rule = format!("ts1:{}", ts_new.display());
    let dest_s = dest.to_str().context("utf8")?;
    let args = ["recover", "--target-time", &target, "--target-action", "promote", "--tablespace", &rule];
    on_b_with(&s, &barman, &[&args[..], &["pg", &id, dest_s]].concat())?;
    check_recovered(&s, &dest, &[&ts_new])?;
    eprintln!("real primary → our passive: {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

#[test]
fn real_barman_passive_follows_our_primary() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(RealBarman::require());
    let started = Instant::now();
    let s = sites("relay interop real passive", &cargo_bin("barman")?, &real.bin("barman"))?;
    let target = history(&s, true)?;
    let a_ids = ids(&s.a)?;
    ensure!(a_ids.iter().filter(|(_, st)| st == "DONE").count() == 2, "A's backups: {a_ids:?}");
    let from = first_begin_wal(&s.a.home.home())?;

    // Real Barman quirk: its xlog.db accessor rebuilds a missing xlog.db from the wals
    // directory before appending, so a first sync-wals that finds no xlog.db indexes every
    // file it just copied twice (rebuilt, then appended). Whether one exists by then
    // depends on what ran before (list-backup creates it): make it exist, as any Barman
    // command touching the WAL index would.
    s.b.home.run(&["rebuild-xlogdb", "pg"])?;
    // Real cron copies one backup per run, and its first run races sync-wals against the
    // first sync-backup: run it until B holds everything.
    let mut crons = 0;
    wait_until(Duration::from_secs(90), "real Barman's B to catch up with A", || {
        if crons < 40 {
            crons += 1;
            s.b.home.run(&["cron"])?;
        }
        std::thread::sleep(Duration::from_millis(500));
        Ok(ids(&s.b)? == a_ids && same_wals(&s, &from).is_ok())
    })
    .with_context(|| {
        format!(
            "after {crons} cron runs\nA: {a_ids:?}\nB: {:?}\nWAL: {:?}\nB's log:\n{}",
            ids(&s.b),
            same_wals(&s, &from),
            s.b.home.log()
        )
    })?;
    let n = same_wals(&s, &from)?;
    let lines = same_xlog(&s, &from)?;
    eprintln!("real B caught up after {crons} cron runs, {n} WAL files ({lines} xlog.db lines) equal");

    // More WAL on A: real Barman's incremental sync-info (name and position from its
    // sync-wals.info) against our primary must bring exactly the new lines, no self-recovery.
    insert_rows(&s.pg, 401, 450)?;
    archive_now(&s.pg, &s.a, "pg")?;
    archive_now(&s.pg, &s.a, "pg")?;
    let want = xlog_lines(&s.a, &from)?.len();
    wait_until(Duration::from_secs(30), "real B to copy the new WAL", || {
        s.b.home.run(&["cron"])?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(xlog_lines(&s.b, &from)?.len() >= want)
    })
    .with_context(|| format!("B's log:\n{}", s.b.home.log()))?;
    same_wals(&s, &from)?;
    same_xlog(&s, &from)?;
    let log = s.b.home.log();
    ensure!(!log.contains("Self-recovery"), "real B had to fall back to a full listing:\n{log}");
    ensure!(!log.contains("Traceback") && !log.contains("Unexpected state"), "real B's log:\n{log}");
    let b_list = s.b.home.run(&["list-backup", "pg"])?;
    let a_list = s.a.home.run(&["list-backup", "pg"])?;
    ensure!(b_list == a_list, "list-backup differs:\nA:\n{a_list}\nB:\n{b_list}");

    // Real Barman's passive checks reach our primary cleanly (ssh, no stray output).
    let check = s.b.home.outcome(&["check", "pg"])?;
    let text = check.stdout_str();
    ensure!(text.contains("ssh: OK") && !text.contains("ssh output clean: FAILED"), "real check on B:\n{check}");
    for (id, _) in &a_ids {
        s.b.home.run(&["check-backup", "pg", id])?;
        let show = s.b.home.run(&["show-backup", "pg", id])?;
        ensure!(show.contains(&format!("Backup {id}")), "show-backup {id}:\n{show}");
    }
    // Real Barman recovers from what it copied.
    let id = a_ids.last().context("no backup")?.0.clone();
    for (label, bin) in [("rec-real", real.bin("barman")), ("rec-ours", cargo_bin("barman")?)] {
        let rec = s.scratch.mkdir_owned(label, "barman")?;
        let (dest, ts_new) = (rec.join("pgdata"), rec.join("ts1"));
        let rule = format!("ts1:{}", ts_new.display());
        let dest_s = dest.to_str().context("utf8")?;
        let args = ["recover", "--target-time", &target, "--target-action", "promote", "--tablespace", &rule];
        on_b_with(&s, &bin, &[&args[..], &["pg", &id, dest_s]].concat()).with_context(|| label.to_owned())?;
        check_recovered(&s, &dest, &[&ts_new]).with_context(|| label.to_owned())?;
    }
    eprintln!("our primary → real passive: {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}
