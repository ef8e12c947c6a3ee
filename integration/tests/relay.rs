//! Geo-redundancy end to end: a PostgreSQL 15 primary archiving (barman-wal-archive over
//! ssh) and streaming (barman-receive-wal) to backup host A, and a backup host B that is
//! passive for it, each host a network namespace of its own with its own sshd, linked by a
//! veth pair. B's `barman cron` starts `barman-relay`, which pulls everything from A
//! through `primary_ssh_command`; B's catalogue must then equal A's, byte for byte, and a
//! recovery from B alone must restore the right rows.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{Catalogue, ServerLayout};
use barman_integration::hosts::{archive_now, ensure_same_tree, insert_rows, BackupHost};
use barman_integration::netns::{Link, NetNs};
use barman_integration::scratch::chown_recursive;
use barman_integration::{
    cargo_bin, skip_unless, wait_until, BarmanServerOptions, OsUser, PgCluster, PgOptions, Scratch, Sshd,
};

/// PostgreSQL in the root namespace; A and B in namespaces of their own; root ↔ A ↔ B.
struct Sites {
    pg: PgCluster,
    a: BackupHost,
    b: BackupHost,
    /// The A ↔ B link (A end = `a`, B end = `b`).
    ab: Link,
    _root_a: Link,
    _ns: (NetNs, NetNs),
    scratch: Scratch,
}

fn sites(name: &str, b_extra: &[&str]) -> Result<Sites> {
    sites_with(name, &[], b_extra)
}

/// [`sites`] with extra lines for A's server section too.
fn sites_with(name: &str, a_extra: &[&str], b_extra: &[&str]) -> Result<Sites> {
    let scratch = Scratch::new(name)?;
    let (nsa, nsb) = (NetNs::create("ra")?, NetNs::create("rb")?);
    let mut root_a = Link::connect(None, &nsa)?;
    let ab = Link::connect(Some(&nsa), &nsb)?;
    // The root namespace (PostgreSQL) reaches A's address on the A ↔ B link through root ↔ A.
    root_a.route_from_a(&ab.subnet())?;
    let a_addr = ab.addr_a().to_string();
    let b_addr = ab.addr_b().to_string();
    let mut a = BackupHost::start(&scratch, "a", &cargo_bin("barman")?, Some((&nsa, &a_addr)))?;
    let mut b = BackupHost::start(&scratch, "b", &cargo_bin("barman")?, Some((&nsb, &b_addr)))?;
    b.trust(&a)?;
    let pg = a.archiving_cluster(&scratch, "pg")?;
    a.home.add_server(
        "pg",
        &pg,
        &BarmanServerOptions {
            compression: Some("gzip".into()),
            streaming_archiver: true,
            slot_name: Some("barman".into()),
            extra: a_extra.iter().map(ToString::to_string).collect(),
            ..BarmanServerOptions::default()
        },
    )?;
    b.add_passive("pg", &a, "gzip", b_extra)?;
    Ok(Sites { pg, a, b, ab, _root_a: root_a, _ns: (nsa, nsb), scratch })
}

/// Segment, history and backup-label files of a wals directory (not xlog.db or state), from
/// the first backup's begin_wal on (older WAL serves no backup: neither Barman nor we relay it).
fn wal_files(dir: &Path, from: &str) -> Result<BTreeSet<String>> {
    Ok(barman_integration::hosts::tree(dir, &[])?
        .keys()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.ends_with("xlog.db") && n != "sync-wals.info")
        .filter(|n| n.ends_with(".history") || n.get(..24).is_some_and(|s| s >= from))
        .collect())
}

/// begin_wal of the oldest backup of `home`'s server `pg`.
fn first_begin_wal(home: &Path) -> Result<String> {
    let layout = ServerLayout::default_for(home, "pg");
    let catalogue = Catalogue::load(&layout)?;
    let (_, info) = catalogue.entries().first().context("no backup")?;
    Ok(info.begin_wal.as_ref().context("no begin_wal")?.to_string())
}

fn xlog_lines(dir: &Path) -> Result<BTreeSet<String>> {
    let path = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("xlog.db"))
        .context("no xlog.db")?;
    Ok(fs::read_to_string(path)?.lines().map(str::to_owned).collect())
}

#[test]
fn passive_host_follows_primary_and_recovers_alone() -> Result<()> {
    skip_unless!(NetNs::require());
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let s = sites("relay two hosts", &[])?;
    let ts_dir = s.scratch.mkdir_owned_mode("ts1", "postgres", 0o700)?;
    s.pg.psql(&format!("create tablespace ts1 location '{}'", ts_dir.display()))?;
    s.pg.psql("create table t(id int primary key, v text) tablespace ts1")?;
    insert_rows(&s.pg, 1, 100)?;
    // A streams too: cron starts barman-receive-wal (slot created by create_slot = auto).
    s.a.home.run(&["cron"])?;
    s.a.home.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    insert_rows(&s.pg, 101, 200)?;
    s.a.home.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    insert_rows(&s.pg, 201, 300)?;
    s.pg.psql("select pg_sleep(0.3)")?;
    let target = s.pg.psql("select clock_timestamp()::text")?;
    s.pg.psql("select pg_sleep(0.3)")?;
    insert_rows(&s.pg, 301, 400)?;
    archive_now(&s.pg, &s.a, "pg")?;

    // A keep on the primary travels with the backup (Barman leaves it behind).
    let first_id = s.a.home.done_backups("pg")?.first().cloned().context("no backup on A")?;
    s.a.home.run(&["keep", "--target", "full", "pg", &first_id])?;

    // B: one cron run starts the relay; it must end with A's catalogue.
    let a_list = s.a.home.run(&["list-backups", "pg"])?;
    let cron = s.b.home.run(&["cron"])?;
    ensure!(cron.contains("Starting synchronisation with the primary for server pg"), "cron said:\n{cron}");
    let a_wals = s.a.home.home().join("pg/wals");
    let b_wals = s.b.home.home().join("pg/wals");
    let from = first_begin_wal(&s.a.home.home())?;
    wait_until(Duration::from_secs(40), "B's list-backup to equal A's", || {
        Ok(s.b.home.run(&["list-backups", "pg"])? == a_list && wal_files(&b_wals, &from)? == wal_files(&a_wals, &from)?)
    })
    .with_context(|| {
        let again = s.b.relay(&["pg"]).map(|o| format!("{}{}", o.stdout_str(), o.stderr_str()));
        let info = fs::read_to_string(s.b.home.home().join("pg/primary.info")).unwrap_or_default();
        let lists = (s.a.home.run(&["list-backups", "pg"]), s.b.home.run(&["list-backups", "pg"]));
        let w = (wal_files(&a_wals, &from), wal_files(&b_wals, &from));
        format!(
            "B's log:\n{}\nA foreground relay run: {again:?}\nlists: {lists:?}\nwals: {w:?}\nprimary.info: {}",
            s.b.home.log(),
            &info[..info.len().min(300)]
        )
    })?;
    let mut n = 0;
    for name in wal_files(&a_wals, &from)? {
        let rel = match name.get(..16) {
            Some(dir) if !name.ends_with(".history") => format!("{dir}/{name}"),
            _ => name.clone(),
        };
        ensure!(fs::read(a_wals.join(&rel))? == fs::read(b_wals.join(&rel))?, "{rel} differs");
        n += 1;
    }
    let a_lines: BTreeSet<String> =
        xlog_lines(&a_wals)?.into_iter().filter(|l| l.get(..24).is_some_and(|s| s >= from.as_str())).collect();
    ensure!(a_lines == xlog_lines(&b_wals)?, "xlog.db entries differ");
    let a_base = s.a.home.home().join("pg/base");
    let b_base = s.b.home.home().join("pg/base");
    let files = ensure_same_tree(&a_base, &b_base, &[])?;
    eprintln!("B holds {n} WAL files and {files} backup files, all equal to A's");
    // The tablespace link points into B's own copy.
    let id = s.b.home.done_backups("pg")?.pop().context("no backup on B")?;
    let links: Vec<PathBuf> = fs::read_dir(b_base.join(&id).join("data/pg_tblspc"))?
        .map(|e| Ok(fs::read_link(e?.path())?))
        .collect::<Result<_>>()?;
    ensure!(links.len() == 1 && links[0].starts_with(b_base.join(&id)), "tablespace links: {links:?}");
    let keep = s.b.home.run(&["keep", "--status", "pg", &first_id])?;
    ensure!(keep.contains("full"), "keep status of {first_id} on B: {keep}");
    // The primary's streaming .partial segment is relayed too, beyond the archived WAL.
    let b_stream = s.b.home.home().join("pg/streaming");
    let partials: Vec<String> = fs::read_dir(&b_stream)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    let newest = wal_files(&b_wals, &from)?.into_iter().filter(|n| n.len() == 24).max().context("no WAL on B")?;
    ensure!(
        partials.len() == 1 && partials[0][..24] > *newest,
        "B's streaming/: {partials:?}, newest archived {newest}"
    );
    let partial_wal = &partials[0][..24];
    let got = s.b.home.outcome(&["get-wal", "--partial", "pg", partial_wal])?;
    ensure!(got.code() == Some(0) && got.stdout.len() == 16 << 20, "get-wal --partial on B: {}", got.stderr_str());
    // Barman's single-step commands on the passive: sync-info --primary prints (and saves)
    // the primary's answer; sync-backup and sync-wals find nothing left to do.
    let answer: serde_json::Value = serde_json::from_str(&s.b.home.run(&["sync-info", "--primary", "pg"])?)?;
    ensure!(answer["backups"].get(&id).is_some() && answer["config"]["name"] == "pg", "sync-info --primary: {answer}");
    let o = s.b.home.run(&["sync-backup", "pg", &id])?;
    ensure!(o.contains(&format!("Backup {id} is already synced with pg server")), "sync-backup: {o}");
    s.b.home.run(&["sync-wals", "pg"])?;
    let o = s.b.home.outcome(&["sync-wals", "nosuch"])?;
    ensure!(o.code() == Some(1), "sync-wals of an unknown server: {}", o.stderr_str());
    let o = s.a.home.outcome(&["sync-backup", "pg", &id])?;
    ensure!(
        o.code() == Some(1) && o.stderr_str().contains("server pg is not passive"),
        "sync-backup on A: {}",
        o.stderr_str()
    );
    // B's status reports its lag behind A: none once the relay pass has finished.
    let status = s.b.home.run(&["status", "pg"])?;
    ensure!(status.contains("Passive node: True") && status.contains("Passive WAL lag: 0 bytes"), "{status}");
    let json = s.b.home.run_json(&["status", "pg"])?;
    ensure!(json["pg"]["passive_wal_lag_bytes"]["message"] == "0", "status -f json: {json}");

    // Recovery from B alone (A unreachable): exactly the rows before the target.
    s.ab.set_down()?;
    let rec = s.scratch.mkdir_owned("rec", "barman")?;
    let dest = rec.join("pgdata");
    let ts_new = rec.join("ts1");
    let rule = format!("ts1:{}", ts_new.display());
    let dest_s = dest.to_str().context("utf8")?;
    s.b.home.run(&[
        "recover",
        "--target-time",
        &target,
        "--target-action",
        "promote",
        "--tablespace",
        &rule,
        "pg",
        &id,
        dest_s,
    ])?;
    let postgres = OsUser::lookup("postgres")?;
    chown_recursive(&dest, &postgres)?;
    chown_recursive(&ts_new, &postgres)?;
    let restored = PgCluster::start_existing(&s.scratch, &dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    let got = restored.psql("select count(*), min(id), max(id) from t")?;
    ensure!(got == "300|1|300", "recovered from B: {got}");
    Ok(())
}

/// Bytes of the regular files under `dir` (the rsync partial dir included).
fn du(dir: &Path) -> u64 {
    barman_integration::hosts::tree(dir, &[]).map_or(0, |t| t.values().map(|v| v.len() as u64).sum())
}

#[test]
fn cut_link_mid_backup_resumes_without_resending() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::process::Stdio;
    skip_unless!(NetNs::require());
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    // A bandwidth limit on the passive makes the copy last long enough to cut it midway.
    let s = sites("relay cut link", &["bandwidth_limit = 8000"])?;
    s.pg.pgbench_init(4)?;
    s.pg.psql("create table t(id int primary key, v text)")?;
    insert_rows(&s.pg, 1, 1000)?;
    // The pre-backup checks want the slot and receive-wal running (as Barman's).
    s.a.home.run(&["receive-wal", "--create-slot", "pg"])?;
    s.a.home.run(&["cron"])?;
    s.a.home.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    let id = s.a.home.done_backups("pg")?.pop().context("no backup on A")?;
    let a_dir = s.a.home.home().join("pg/base").join(&id);
    let b_dir = s.b.home.home().join("pg/base").join(&id);
    let total = du(&a_dir);

    let relay_bin = cargo_bin("barman-relay")?;
    let child =
        s.b.home
            .program_command(&relay_bin, &["--backups", "pg"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
    wait_until(Duration::from_mins(1), "a third of the backup to reach B", || Ok(du(&b_dir) > total / 3))?;
    // One copy per backup at a time: a second relay leaves it to the first.
    let second = s.b.relay(&["--backups", "pg"])?;
    ensure!(
        second.code() == Some(0)
            && second
                .stdout_str()
                .contains(&format!("Another synchronisation process for backup {id} of server pg is already running")),
        "a second relay during the copy: {}{}",
        second.stdout_str(),
        second.stderr_str()
    );
    s.ab.set_down()?;
    let first = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&first.stderr).into_owned();
    ensure!(first.status.code() == Some(1), "relay over a cut link: {:?}\n{stderr}", first.status);
    ensure!(stderr.contains(&format!("failure syncing server pg backup {id}")), "relay stderr: {stderr}");
    let listed = s.b.home.run(&["list-backups", "pg"])?;
    ensure!(listed.trim() == format!("pg {id} - F - SYNCING"), "B during the outage: {listed}");

    // Files complete on B before the cut: same size and mtime as A's; remember their inodes.
    let mut complete = Vec::new();
    let mut complete_bytes = 0;
    for rel in barman_integration::hosts::tree(&a_dir, &[])?.keys() {
        let (a, b) = (fs::metadata(a_dir.join(rel))?, fs::metadata(b_dir.join(rel)));
        if let Ok(b) = b {
            if a.len() == b.len() && a.mtime() == b.mtime() {
                complete.push((rel.clone(), b.ino()));
                complete_bytes += b.len();
            }
        }
    }
    ensure!(complete.len() > 100, "only {} files complete before the cut", complete.len());
    // rsync keeps the part of the file it was receiving (--partial-dir): not sent again either.
    let kept: u64 = barman_integration::hosts::tree(&b_dir, &[])?
        .iter()
        .filter(|(p, _)| p.components().any(|c| c.as_os_str() == ".barman-relay-partial"))
        .map(|(_, v)| v.len() as u64)
        .sum();

    s.ab.set_up()?;
    let before = s.ab.counters_b()?.rx_bytes;
    let second = s.b.relay(&["--backups", "pg"])?;
    ensure!(second.code() == Some(0), "resumed relay: {}{}", second.stdout_str(), second.stderr_str());
    let received = s.ab.counters_b()?.rx_bytes - before;
    ensure!(
        s.b.home.done_backups("pg")? == vec![id.clone()],
        "B after the resume: {}",
        s.b.home.run(&["list-backups", "pg"])?
    );
    ensure_same_tree(&a_dir, &b_dir, &[])?;
    for (rel, ino) in &complete {
        ensure!(fs::metadata(b_dir.join(rel))?.ino() == *ino, "{} was sent again", rel.display());
    }
    let missing = total - complete_bytes - kept;
    eprintln!(
        "backup {total} bytes; before the cut {complete_bytes} in complete files + {kept} kept partial; \
         link bytes on resume {received} (missing part {missing})"
    );
    ensure!(received < missing + missing / 5 + (2 << 20), "resume moved {received} bytes for {missing} missing");

    // A passive whose compression differs from the primary's copies no WAL.
    let mut c = BackupHost::start(&s.scratch, "c", &cargo_bin("barman")?, None)?;
    c.trust(&s.a)?;
    c.add_passive("pg", &s.a, "bzip2", &[])?;
    let o = c.relay(&["--wals", "pg"])?;
    ensure!(
        o.code() == Some(1)
            && o.stderr_str()
                .contains("Compression method on server pg (gzip) does not match local compression method (bzip2)"),
        "relay with another compression: {}{}",
        o.stdout_str(),
        o.stderr_str()
    );
    let c_wals = c.home.home().join("pg/wals");
    ensure!(!c_wals.exists() || wal_files(&c_wals, "")?.is_empty(), "WAL copied despite the compression mismatch");
    Ok(())
}

/// Issue 18: with `reuse_backup = link` and `parallel_jobs = 2` on the passive, B pulls each
/// backup with the backup's copy controller: the second copy's unchanged files are hard
/// links into B's first copy, and both still pass the `backup_manifest` check.
#[test]
fn passive_reuses_its_previous_copy_with_links_and_workers() -> Result<()> {
    skip_unless!(NetNs::require());
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    // A links its own unchanged files too, so the same file has the same time in both of
    // A's backups (BASE_BACKUP writes files with the time they were received).
    let s = sites_with("relay reuse", &["reuse_backup = link"], &["reuse_backup = link", "parallel_jobs = 2"])?;
    s.pg.psql("create table t(id int primary key, v text)")?;
    s.pg.pgbench_init(1)?;
    insert_rows(&s.pg, 1, 100)?;
    s.a.home.run(&["receive-wal", "--create-slot", "pg"])?;
    s.a.home.run(&["cron"])?;
    s.a.home.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    // B copies the first backup before the second exists: it is the reference.
    let first = s.a.home.run(&["list-backups", "pg"])?;
    s.b.home.run(&["cron"])?;
    wait_until(Duration::from_mins(1), "B's first copy", || Ok(s.b.home.run(&["list-backups", "pg"])? == first))
        .with_context(|| s.b.home.log())?;
    insert_rows(&s.pg, 101, 200)?;
    s.a.home.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    archive_now(&s.pg, &s.a, "pg")?;
    let a_list = s.a.home.run(&["list-backups", "pg"])?;
    s.b.home.run(&["cron"])?;
    wait_until(Duration::from_mins(1), "B's second copy", || Ok(s.b.home.run(&["list-backups", "pg"])? == a_list))
        .with_context(|| s.b.home.log())?;
    let mut ids = s.b.home.done_backups("pg")?;
    ids.sort();
    ensure!(ids.len() == 2, "B's DONE backups: {ids:?}");
    let data = s.b.home.home().join("pg/base").join(&ids[1]).join("data");
    let (mut files, mut linked) = (0_u64, 0_u64);
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let path = e?.path();
            let md = fs::symlink_metadata(&path)?;
            if md.is_dir() {
                stack.push(path);
            } else if md.is_file() {
                files += 1;
                linked += u64::from(std::os::unix::fs::MetadataExt::nlink(&md) > 1);
            }
        }
    }
    ensure!(linked * 10 >= files * 7, "only {linked} of {files} files of B's second copy are hard links");
    let log = s.b.home.log();
    ensure!(log.contains("(2 workers)") && log.contains("files match backup_manifest"), "B's log:\n{log}");
    eprintln!("relay reuse: {linked}/{files} files of the second copy linked");
    Ok(())
}
