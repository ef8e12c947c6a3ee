//! `barman backup` / `barman-backup` (BASE_BACKUP, plain format) against a real PostgreSQL 15
//! archiving through our `barman-wal-archive` into the same catalogue: the backup reaches
//! DONE with `--wait`, `pg_verifybackup` accepts it (and catches a flipped byte), it restores
//! (with a tablespace outside PGDATA) and replays to the source's data, real Barman 3.20.1
//! lists and shows it like a backup of its own, and a bad conninfo fails cleanly.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{BackupId, BackupStatus, ServerLayout, ServerLock};
use barman_integration::cmd::{as_user, execute, Outcome, DEFAULT_TIMEOUT};
use barman_integration::pg::{PG_BIN, SYSTEM_PATH};
use barman_integration::scratch::chown_recursive;
use barman_integration::{
    cargo_bin, skip_unless, BarmanHome, BarmanServerOptions, OsUser, PgCluster, PgOptions, RealBarman, Scratch, Sshd,
};

use barman_integration::fixtures::{backup_ids, backup_info as info, ArchivingCluster as Setup};

fn setup(name: &str) -> Result<Setup> {
    Setup::start(name)
}

fn layout(barman: &BarmanHome) -> ServerLayout {
    ServerLayout::default_for(&barman.home(), "pg")
}

fn verifybackup(data: &Path) -> Result<Outcome> {
    let mut cmd = Command::new(Path::new(PG_BIN).join("pg_verifybackup"));
    cmd.arg("-n").arg("-m").arg(data.join("backup_manifest")).arg(data);
    execute(&mut cmd, None, DEFAULT_TIMEOUT)
}

/// `cp -a src dst`.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(src).arg(dst);
    barman_integration::run(&mut cp).map(drop)
}

/// Flips one byte in the middle of the largest relation file under `data/base`.
fn tamper(data: &Path) -> Result<PathBuf> {
    let mut largest: Option<(u64, PathBuf)> = None;
    for db in fs::read_dir(data.join("base"))? {
        for f in fs::read_dir(db?.path())? {
            let path = f?.path();
            let len = fs::metadata(&path)?.len();
            if largest.as_ref().is_none_or(|(l, _)| len > *l) {
                largest = Some((len, path));
            }
        }
    }
    let (len, path) = largest.context("no relation files")?;
    let mut bytes = fs::read(&path)?;
    let at = (len / 2) as usize;
    bytes[at] ^= 0xff;
    fs::write(&path, bytes)?;
    Ok(path)
}

/// The core path: `barman backup --wait` of a cluster with a tablespace outside PGDATA
/// reaches DONE, the copy is laid out as Barman's and verifies, a flipped byte is caught,
/// and a restore of it (tablespace included) replays WAL written after the backup.
#[test]
fn backup_waits_for_wal_verifies_and_restores_with_tablespace() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let s = setup("backup core")?;
    let ts_dir = s.scratch.mkdir_owned_mode("ts1", "postgres", 0o700)?;
    s.pg.psql(&format!("create tablespace ts1 location '{}'", ts_dir.display()))?;
    s.pg.psql("create table spaced(id int, v text) tablespace ts1; insert into spaced select g, md5(g::text) from generate_series(1, 20000) g")?;
    s.pg.pgbench_init(2)?;
    // WAL archived before the first backup: Barman removes it once the backup is taken.
    let early = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&early, Duration::from_mins(2))?;
    s.barman.run(&["cron"])?;
    let xlog_names = || -> Result<Vec<String>> {
        let text = fs::read_to_string(s.barman.xlog_db("pg"))?;
        Ok(text.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect())
    };
    ensure!(xlog_names()?.contains(&early), "{early} not archived before the backup");
    let t0 = Instant::now();
    let out = s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint", "--name", "first"])?;
    let took = t0.elapsed();
    ensure!(out.contains("Backup completed"), "backup output: {out}");
    let layout = layout(&s.barman);
    let ids = backup_ids(&layout);
    ensure!(ids.len() == 1, "backups: {ids:?}");
    let id = &ids[0];
    let bi = info(&layout, id)?;
    ensure!(bi.status == BackupStatus::Done, "status {:?} error {:?}", bi.status, bi.error);
    let begin_wal = bi.begin_wal.as_ref().context("begin_wal")?.to_string();
    let left = xlog_names()?;
    ensure!(
        !left.contains(&early) && left.iter().all(|n| n.ends_with(".history") || *n >= begin_wal),
        "WAL before the first backup ({begin_wal}) kept: {left:?}"
    );
    ensure!(bi.backup_name.as_deref() == Some("first"));
    ensure!(bi.mode.as_deref() == Some("postgres"));
    ensure!(bi.systemid == Some(s.pg.system_identifier()?.to_string()));
    ensure!(bi.version.is_some_and(|v| v >= 150_000) && bi.data_checksums.as_deref() == Some("on"));
    ensure!(bi.pgdata.as_deref() == Some(s.pg.data_dir().to_str().context("utf8")?));
    ensure!(bi.backup_label.as_deref().is_some_and(|l| l.starts_with("START WAL LOCATION:")));
    ensure!(bi.size.is_some_and(|n| n > 10_000_000) && bi.cluster_size.is_some());
    ensure!(bi.copy_stat("copy_time").is_some() && bi.copy_stat("total_time").is_some());
    let ts = bi.tablespaces.clone().context("no tablespaces recorded")?;
    ensure!(ts.len() == 1 && ts[0].name == "ts1" && Path::new(&ts[0].location) == ts_dir, "tablespaces {ts:?}");
    let identity = fs::read_to_string(layout.identity_path())?;
    ensure!(identity.contains("\"version\": \"15\""), "identity.json: {identity}");

    // Layout: data/ + <oid>/, pg_tblspc/<oid> → absolute base/<id>/<oid>, PG permissions.
    let backup_dir = layout.backup_dir(&BackupId::new(id)?);
    let data = backup_dir.join("data");
    let oid = ts[0].oid.to_string();
    let link = fs::read_link(data.join("pg_tblspc").join(&oid))?;
    ensure!(link == backup_dir.join(&oid) && link.is_absolute(), "pg_tblspc link → {}", link.display());
    ensure!(fs::metadata(&data)?.permissions().mode() & 0o777 == 0o700);
    ensure!(fs::metadata(data.join("PG_VERSION"))?.permissions().mode() & 0o777 == 0o600);
    ensure!(data.join("backup_label").is_file() && !data.join("backup_manifest.tmp").exists());
    let v = verifybackup(&data)?;
    ensure!(v.code() == Some(0) && v.stdout_str().contains("backup successfully verified"), "pg_verifybackup: {v:?}");
    eprintln!("backup of {} MiB took {took:?}", bi.size.unwrap_or(0) >> 20);

    // Writes after the backup, archived, so that the restore has WAL to replay.
    s.pg.pgbench(&["-c", "2", "-t", "300", "-n"])?;
    s.pg.psql("insert into spaced values (-1, 'after backup')")?;
    let last = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&last, Duration::from_mins(2))?;
    s.barman.run(&["cron"])?;
    let tables = ["pgbench_accounts", "pgbench_branches", "pgbench_history", "spaced"];
    let want: Vec<String> = tables.iter().map(|t| s.pg.table_checksum(t)).collect::<Result<_>>()?;

    // Restore a copy: data + tablespace elsewhere, symlink repointed.
    let restore_root = s.scratch.mkdir("restore")?;
    let rdata = restore_root.join("data");
    let rts = restore_root.join("ts1");
    copy_tree(&data, &rdata)?;
    copy_tree(&backup_dir.join(&oid), &rts)?;
    let rlink = rdata.join("pg_tblspc").join(&oid);
    fs::remove_file(&rlink)?;
    std::os::unix::fs::symlink(&rts, &rlink)?;
    let postgres = OsUser::lookup("postgres")?;
    chown_recursive(&restore_root, &postgres)?;
    fs::set_permissions(&rts, fs::Permissions::from_mode(0o700))?;
    fs::write(rdata.join("recovery.signal"), "")?;
    let spool = s.scratch.mkdir_owned("spool", "postgres")?;
    let restore = format!(
        "{} --spool-dir {} -c {} --port {} 127.0.0.1 pg %f %p",
        cargo_bin("barman-wal-restore")?.display(),
        spool.display(),
        s.barman.config_path().display(),
        s.sshd.port()
    );
    let opts = PgOptions::default()
        .conf(format!("restore_command = '{restore}'"))
        .path_prefix(s.sshd.ssh_wrapper_dir_for("postgres")?);
    let restored = PgCluster::start_existing(&s.scratch, &rdata, opts)?;
    restored.wait_for_recovery_end(Duration::from_mins(3))?;
    let got: Vec<String> = tables.iter().map(|t| restored.table_checksum(t)).collect::<Result<_>>()?;
    ensure!(got == want, "restored tables differ: {got:?} vs {want:?}");
    ensure!(restored.psql("select v from spaced where id = -1")? == "after backup");
    let location = restored.psql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'ts1'")?;
    ensure!(Path::new(&location) == rts, "restored tablespace at {location}");
    drop(restored);

    // A flipped byte in the backup is caught.
    let tampered = tamper(&data)?;
    let v = verifybackup(&data)?;
    ensure!(v.code() == Some(1), "pg_verifybackup accepted a tampered {}: {v:?}", tampered.display());
    Ok(())
}

/// Real Barman 3.20.1's `barman -c <config> <args>` on `barman`'s catalogue; its stdout.
fn real_barman(real: &RealBarman, barman: &BarmanHome, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(real.bin("barman"));
    as_user(&mut cmd, barman.user());
    let path = format!("{}:{PG_BIN}:{SYSTEM_PATH}", real.bin_dir().display());
    cmd.env("PATH", path).arg("-c").arg(barman.config_path()).args(args);
    let outcome = execute(&mut cmd, None, Duration::from_mins(3))?;
    outcome.success().with_context(|| format!("real barman {args:?}; log:\n{}", barman.log()))?;
    Ok(outcome.stdout_str())
}

/// Real Barman 3.20.1 on the same config and catalogue: `list-backup` shows our backup
/// and one it took itself, both DONE, and `show-backup` prints the same rows for both.
#[test]
fn real_barman_reads_our_backup_like_its_own() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(RealBarman::require());
    let s = setup("backup vs barman")?;
    s.pg.pgbench_init(1)?;
    // Without --wait the backup ends WAITING_FOR_WALS unless the archiver pass that ends it
    // found the end WAL already; `barman cron` archives it and promotes the backup.
    s.barman.run(&["backup", "pg", "--immediate-checkpoint"])?;
    let layout = layout(&s.barman);
    let ours = backup_ids(&layout).pop().context("no backup")?;
    let status = info(&layout, &ours)?.status;
    ensure!(matches!(status, BackupStatus::WaitingForWals | BackupStatus::Done), "after backup: {status:?}");
    s.barman.run(&["cron"])?;
    ensure!(info(&layout, &ours)?.status == BackupStatus::Done, "cron did not promote {ours}");
    // Next second at least: Barman's id must differ from ours.
    std::thread::sleep(Duration::from_millis(1100));
    let real_barman = |args: &[&str]| real_barman(&real, &s.barman, args);
    real_barman(&["backup", "pg", "--wait"])?;
    let ids = backup_ids(&layout);
    ensure!(ids.len() == 2, "backups: {ids:?}");
    let theirs = ids.iter().find(|i| **i != ours).context("barman's backup")?.clone();

    let list = real_barman(&["list-backups", "pg"])?;
    for id in [&ours, &theirs] {
        let line =
            list.lines().find(|l| l.contains(id.as_str())).with_context(|| format!("{id} not listed:\n{list}"))?;
        ensure!(line.contains("Size:") && !line.contains("FAILED") && !line.contains("WAITING"), "list line: {line}");
    }
    let labels = |id: &str| -> Result<Vec<String>> {
        let text = real_barman(&["show-backup", "pg", id])?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim().to_string()))
            // "WAL rate" is printed only when WAL follows the backup (ours is the older one).
            .filter(|k| !k.is_empty() && !k.starts_with("Backup ") && k != "Tablespaces" && k != "WAL rate")
            .collect())
    };
    let (a, b) = (labels(&ours)?, labels(&theirs)?);
    ensure!(a == b, "show-backup rows differ:\nours:   {a:?}\nbarman: {b:?}");
    ensure!(a.iter().any(|k| k == "Begin WAL") && a.iter().any(|k| k == "Status"), "rows: {a:?}");
    for id in [&ours, &theirs] {
        ensure!(info(&layout, id)?.status == BackupStatus::Done, "{id} not DONE");
    }
    // backup.info: the same keys, set (or None) alike.
    let keys = |id: &str| -> Result<Vec<(String, bool)>> {
        let text = fs::read_to_string(layout.meta_dir().join(format!("{id}-backup.info")))?;
        Ok(text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v == "None")).collect())
    };
    let (a, b) = (keys(&ours)?, keys(&theirs)?);
    ensure!(a == b, "backup.info keys differ:\nours:   {a:?}\nbarman: {b:?}");
    Ok(())
}

/// A server that cannot be reached: one clear stderr line, exit 2, nothing marked DONE,
/// the backup lock free again. The `barman backup` front end reports failure (exit 1).
#[test]
fn bad_conninfo_fails_cleanly() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("backup bad conninfo")?;
    let mut pg = PgCluster::start(&scratch, PgOptions::default())?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    barman.add_server("pg", &pg, &BarmanServerOptions::default())?;
    pg.stop()?;
    let mut direct = barman.program_command(&cargo_bin("barman-backup")?, &["pg"]);
    let outcome = execute(&mut direct, None, DEFAULT_TIMEOUT)?;
    outcome.fails_with_code(2)?;
    let err = outcome.stderr_str();
    ensure!(err.lines().count() == 1 && err.contains("cannot connect"), "stderr: {err:?}");
    let layout = layout(&barman);
    for id in backup_ids(&layout) {
        ensure!(info(&layout, &id)?.status != BackupStatus::Done, "{id} marked DONE");
    }
    let lock = layout.lock_directory.join(".pg-backup.lock");
    if lock.exists() {
        ServerLock::try_acquire(&lock).context("backup lock still held")?.release()?;
    }
    barman.outcome(&["backup", "pg"])?.fails_with_code(1)?;
    Ok(())
}

/// The walsender is killed in the middle of the copy (slowed by `bandwidth_limit`): exit
/// 1, one stderr line, backup.info FAILED with `failure copying files (...)`, lock free.
#[test]
fn interrupted_copy_is_marked_failed() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("backup interrupted")?;
    let pg = PgCluster::start(&scratch, PgOptions::default())?;
    pg.pgbench_init(1)?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    let server = BarmanServerOptions { extra: vec!["bandwidth_limit = 1024".into()], ..BarmanServerOptions::default() };
    barman.add_server("pg", &pg, &server)?;
    let mut cmd = barman.program_command(&cargo_bin("barman-backup")?, &["--immediate-checkpoint", "pg"]);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn()?;
    let layout = layout(&barman);
    barman_integration::wait_until(Duration::from_mins(1), "backup to start", || {
        Ok(backup_ids(&layout)
            .first()
            .is_some_and(|id| info(&layout, id).is_ok_and(|i| i.status == BackupStatus::Started)))
    })?;
    std::thread::sleep(Duration::from_secs(1));
    pg.psql("select pg_terminate_backend(pid) from pg_stat_activity where backend_type = 'walsender'")?;
    let output = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.code() == Some(1), "exit {:?}, stderr {err}", output.status);
    ensure!(err.lines().count() == 1 && err.contains("failure copying files"), "stderr: {err:?}");
    eprintln!("stderr of the interrupted backup: {err}");
    let id = backup_ids(&layout).pop().context("no backup dir")?;
    let bi = info(&layout, &id)?;
    ensure!(bi.status == BackupStatus::Failed, "status {:?}", bi.status);
    ensure!(bi.error.as_deref().is_some_and(|e| e.starts_with("failure copying files (")), "error {:?}", bi.error);
    ServerLock::try_acquire(&layout.lock_directory.join(".pg-backup.lock"))?.release()?;
    // Real Barman, if present, lists it as FAILED.
    if let Some(real) = RealBarman::optional() {
        let mut list = Command::new(real.bin("barman"));
        as_user(&mut list, barman.user());
        list.env("PATH", format!("{PG_BIN}:{SYSTEM_PATH}"))
            .arg("-c")
            .arg(barman.config_path())
            .args(["list-backups", "pg"]);
        let out = execute(&mut list, None, DEFAULT_TIMEOUT)?;
        ensure!(out.stdout_str().contains(&format!("{id} - F - FAILED")), "real list-backups: {out:?}");
    }
    Ok(())
}

/// Disk blocks (bytes) of the files under `dir` with one link only: what a backup adds on
/// disk when its other files are hard links to an earlier backup's.
fn own_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let m = fs::symlink_metadata(e.path())?;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && m.nlink() == 1 {
                total += m.blocks() * 512;
            }
        }
    }
    Ok(total)
}

#[test]
fn reuse_backup_link_shares_unchanged_files() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let s = setup("backup reuse link")?;
    s.pg.pgbench_init(5)?;
    s.pg.checkpoint()?;
    s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    let layout = layout(&s.barman);
    let first_id = backup_ids(&layout).pop().context("first backup")?;
    let first_own = own_bytes(&layout.basebackups_directory.join(&first_id))?;
    // A little change, then a second backup with reuse_backup = link.
    s.pg.psql("update pgbench_branches set bbalance = bbalance + 1")?;
    let out = s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint", "--reuse-backup", "link"])?;
    ensure!(out.contains("by hard link"), "backup output: {out}");
    let ids = backup_ids(&layout);
    ensure!(ids.len() == 2 && ids[0] == first_id, "{ids:?}");
    let second = layout.basebackups_directory.join(&ids[1]);
    let second_own = own_bytes(&second)?;
    let second_info = info(&layout, &ids[1])?;
    eprintln!(
        "first backup {first_own} bytes; second adds {second_own} bytes; backup.info size {:?} deduplicated {:?}",
        second_info.size, second_info.deduplicated_size
    );
    ensure!(second_own * 10 < first_own, "the second backup adds {second_own} bytes on disk, the first {first_own}");
    ensure!(
        second_info.deduplicated_size.unwrap_or(u64::MAX) * 10 < second_info.size.unwrap_or(0),
        "deduplicated_size"
    );
    // Still a complete, valid backup.
    let o = verifybackup(&second.join("data"))?;
    ensure!(o.code() == Some(0), "pg_verifybackup on the linked backup: {}{}", o.stdout_str(), o.stderr_str());
    Ok(())
}

/// Appends `lines` to the `[pg]` section (the last one) of the config as first written.
fn with_server_lines(barman: &BarmanHome, base: &str, lines: &[&str]) -> Result<()> {
    let mut text = base.to_owned();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    fs::write(barman.config_path(), text)?;
    Ok(())
}

/// `tar -x` of a (compressed) archive into `dest` with the system's own decompressor: an
/// oracle independent of our decoders.
fn system_untar(archive: &Path, dest: &Path) -> Result<()> {
    let name = archive.to_string_lossy();
    let filter = [(".lz4", Some("lz4")), (".zst", Some("zstd")), (".gz", Some("gzip")), (".tar", None)]
        .into_iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .with_context(|| format!("unknown archive {name}"))?
        .1;
    fs::create_dir_all(dest)?;
    let mut tar = Command::new("tar");
    if let Some(f) = filter {
        tar.arg("-I").arg(f);
    }
    tar.arg("-xf").arg(archive).arg("-C").arg(dest);
    barman_integration::run(&mut tar).map(drop)
}

/// `backup_compression` in Barman's shapes: lz4 tar compressed here, zstd tar compressed by
/// the server, gzip tar, `none` tar, and gzip compressed by the server but stored plain.
/// Each reaches DONE with Barman's layout and backup.info `compression`; the archives,
/// unpacked by the system's tar/lz4/zstd/gzip, pass pg_verifybackup (tablespace included);
/// real Barman 3.20.1 lists and shows every one.
#[test]
fn compressed_backups_in_barmans_formats() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(RealBarman::require());
    let s = setup("backup compression")?;
    let ts_dir = s.scratch.mkdir_owned_mode("ts1", "postgres", 0o700)?;
    s.pg.psql(&format!("create tablespace ts1 location '{}'", ts_dir.display()))?;
    s.pg.psql("create table spaced(id int, v text) tablespace ts1; insert into spaced select g, md5(g::text) from generate_series(1, 5000) g")?;
    s.pg.pgbench_init(1)?;
    let base_config = fs::read_to_string(s.barman.config_path())?;
    let layout = layout(&s.barman);
    let variants: [(&[&str], Option<&str>); 5] = [
        (&["backup_compression = lz4"], Some(".tar.lz4")),
        (
            &["backup_compression = zstd", "backup_compression_location = server", "backup_compression_level = 5"],
            Some(".tar.zst"),
        ),
        (&["backup_compression = gzip", "backup_compression_level = 1"], Some(".tar.gz")),
        (&["backup_compression = none"], Some(".tar")),
        (
            &["backup_compression = gzip", "backup_compression_location = server", "backup_compression_format = plain"],
            None,
        ),
    ];
    let mut ids = Vec::new();
    for (lines, ext) in variants {
        with_server_lines(&s.barman, &base_config, lines)?;
        let before = backup_ids(&layout);
        let out = s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
        ensure!(out.contains("Backup completed"), "{lines:?}: {out}");
        let id = backup_ids(&layout).into_iter().find(|i| !before.contains(i)).context("new backup")?;
        let bi = info(&layout, &id)?;
        ensure!(bi.status == BackupStatus::Done, "{lines:?}: {:?} {:?}", bi.status, bi.error);
        ensure!(bi.backup_label.as_deref().is_some_and(|l| l.starts_with("START WAL LOCATION:")), "{lines:?} label");
        let oid = bi.tablespaces.as_ref().and_then(|t| t.first()).context("tablespace")?.oid.to_string();
        let backup_dir = layout.backup_dir(&BackupId::new(&id)?);
        let data = backup_dir.join("data");
        if let Some(ext) = ext {
            let method = lines[0].rsplit(' ').next().context("method")?;
            ensure!(bi.compression.as_deref() == Some(method), "{lines:?}: compression {:?}", bi.compression);
            let mut names: Vec<String> = fs::read_dir(&data)?
                .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_>>()?;
            names.sort();
            let mut want = vec![format!("{oid}{ext}"), "backup_manifest".into(), format!("base{ext}")];
            want.sort();
            ensure!(names == want, "{lines:?}: data/ holds {names:?}");
            ensure!(fs::read_dir(backup_dir.join(&oid))?.next().is_none(), "{lines:?}: <oid>/ not empty");
            let unpacked = s.scratch.mkdir(format!("unpacked-{id}"))?;
            let (rdata, rts) = (unpacked.join("data"), unpacked.join("ts"));
            system_untar(&data.join(format!("base{ext}")), &rdata)?;
            system_untar(&data.join(format!("{oid}{ext}")), &rts)?;
            ensure!(rdata.join("tablespace_map").is_file(), "{lines:?}: no tablespace_map in base archive");
            fs::create_dir_all(rdata.join("pg_tblspc"))?;
            std::os::unix::fs::symlink(&rts, rdata.join("pg_tblspc").join(&oid))?;
            fs::copy(data.join("backup_manifest"), rdata.join("backup_manifest"))?;
            let v = verifybackup(&rdata)?;
            ensure!(v.code() == Some(0), "{lines:?}: pg_verifybackup of the unpacked archives: {v:?}");
        } else {
            ensure!(bi.compression.is_none(), "plain backup recorded compression {:?}", bi.compression);
            ensure!(data.join("PG_VERSION").is_file() && fs::read_link(data.join("pg_tblspc").join(&oid)).is_ok());
            let v = verifybackup(&data)?;
            ensure!(v.code() == Some(0), "{lines:?}: pg_verifybackup: {v:?}");
        }
        eprintln!("{lines:?}: {id} size {} bytes", bi.size.unwrap_or(0));
        ids.push(id);
        std::thread::sleep(Duration::from_millis(1100));
    }
    let real_barman = |args: &[&str]| real_barman(&real, &s.barman, args);
    let list = real_barman(&["list-backups", "pg"])?;
    for id in &ids {
        let line =
            list.lines().find(|l| l.contains(id.as_str())).with_context(|| format!("{id} not listed:\n{list}"))?;
        ensure!(line.contains("Size:") && !line.contains("FAILED"), "list line: {line}");
        let shown = real_barman(&["show-backup", "pg", id])?;
        ensure!(shown.contains("Status") && shown.contains("DONE"), "show-backup {id}: {shown}");
    }
    // Our `barman recover` of our lz4 tar backup (tablespace relocated) starts and holds the
    // source's rows.
    let want = s.pg.table_checksum("spaced")?;
    let dest = s.scratch.mkdir_owned_mode("recovered", "barman", 0o700)?;
    let rts = s.scratch.mkdir_owned_mode("recovered-ts", "barman", 0o700)?;
    let rule = format!("ts1:{}", rts.display());
    s.barman.run(&["recover", "--tablespace", &rule, "pg", &ids[0], dest.to_str().context("utf8")?])?;
    let postgres = OsUser::lookup("postgres")?;
    chown_recursive(&dest, &postgres)?;
    chown_recursive(&rts, &postgres)?;
    let restored = PgCluster::start_existing(&s.scratch, &dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(2))?;
    ensure!(restored.table_checksum("spaced")? == want, "recovered lz4 backup differs");
    drop(restored);

    // A combination Barman refuses is refused the same way, before anything is written.
    with_server_lines(&s.barman, &base_config, &["backup_compression = lz4", "backup_compression_format = plain"])?;
    let mut direct = s.barman.program_command(&cargo_bin("barman-backup")?, &["pg"]);
    let refused = execute(&mut direct, None, DEFAULT_TIMEOUT)?;
    refused.fails_with_code(3)?;
    ensure!(
        refused
            .stderr_str()
            .contains("backup_compression_format plain is not compatible with backup_compression_location None"),
        "stderr: {}",
        refused.stderr_str()
    );
    ensure!(backup_ids(&layout).len() == ids.len(), "the refused backup left a directory");
    // Both `barman check`s report it (Barman disables the server with the same words).
    let message = "backup_compression_format plain is not compatible with backup_compression_location None";
    let ours = s.barman.outcome(&["check", "pg"])?;
    ensure!(ours.code() == Some(1) && ours.stdout_str().contains(message), "our check: {ours:?}");
    let mut theirs = s.barman.program_command(&real.bin("barman"), &["check", "pg"]);
    theirs.env("PATH", format!("{}:{PG_BIN}:{SYSTEM_PATH}", real.bin_dir().display()));
    let theirs = execute(&mut theirs, None, Duration::from_mins(1))?;
    ensure!(theirs.code() == Some(1) && theirs.stdout_str().contains(message), "real check: {theirs:?}");
    Ok(())
}

/// `basebackup_retry_times`: the walsender is killed during the first copy; the copy starts
/// again after `basebackup_retry_sleep` and the backup ends DONE and verifies. The backup
/// hook scripts run around it with Barman's variables, and a `pre_backup_retry_script`
/// exiting 63 (ABORT_STOP) stops the next backup: FAILED, the post script sees it.
#[test]
fn retried_copy_and_backup_hooks() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let s = setup("backup retry hooks")?;
    s.pg.pgbench_init(1)?;
    let hooks = s.scratch.mkdir_owned("hooks", "barman")?;
    let record =
        |phase: &str| format!("sh -c 'env | grep ^BARMAN_ | sort > {}/{phase}.$BARMAN_BACKUP_ID'", hooks.display());
    let base_config = fs::read_to_string(s.barman.config_path())?;
    let pre = format!("pre_backup_script = {}", record("pre"));
    let post = format!("post_backup_script = {}", record("post"));
    with_server_lines(
        &s.barman,
        &base_config,
        &["basebackup_retry_times = 2", "basebackup_retry_sleep = 1", "bandwidth_limit = 4096", &pre, &post],
    )?;
    let mut cmd = s.barman.program_command(&cargo_bin("barman-backup")?, &["--immediate-checkpoint", "--wait", "pg"]);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn()?;
    let layout = layout(&s.barman);
    barman_integration::wait_until(Duration::from_mins(1), "backup to start", || {
        Ok(backup_ids(&layout)
            .first()
            .is_some_and(|id| info(&layout, id).is_ok_and(|i| i.status == BackupStatus::Started)))
    })?;
    std::thread::sleep(Duration::from_secs(1));
    s.pg.psql("select pg_terminate_backend(pid) from pg_stat_activity where backend_type = 'walsender'")?;
    let output = child.wait_with_output()?;
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    ensure!(output.status.success(), "exit {:?}\nstdout {out}\nstderr {err}", output.status);
    ensure!(format!("{out}{err}").contains("(attempt 1)"), "no retry reported:\n{out}\n{err}");
    let id = backup_ids(&layout).pop().context("backup")?;
    let bi = info(&layout, &id)?;
    ensure!(bi.status == BackupStatus::Done, "{:?} {:?}", bi.status, bi.error);
    let v = verifybackup(&layout.backup_dir(&BackupId::new(&id)?).join("data"))?;
    ensure!(v.code() == Some(0), "pg_verifybackup after the retry: {v:?}");
    let pre_env = fs::read_to_string(hooks.join(format!("pre.{id}")))?;
    let post_env = fs::read_to_string(hooks.join(format!("post.{id}")))?;
    for (env, phase, status) in [(&pre_env, "pre", "EMPTY"), (&post_env, "post", "DONE")] {
        for want in [
            format!("BARMAN_PHASE={phase}"),
            format!("BARMAN_BACKUP_ID={id}"),
            format!("BARMAN_STATUS={status}"),
            "BARMAN_HOOK=backup_script".into(),
            "BARMAN_SERVER=pg".into(),
            "BARMAN_ERROR=".into(),
            format!("BARMAN_BACKUP_DIR={}", layout.backup_dir(&BackupId::new(&id)?).display()),
        ] {
            ensure!(env.lines().any(|l| l == want), "{phase} hook env lacks {want}:\n{env}");
        }
    }
    std::thread::sleep(Duration::from_millis(1100));

    // ABORT_STOP from the pre retry script: FAILED before any copy; the post script sees it.
    let stop = "pre_backup_retry_script = sh -c 'exit 63'";
    with_server_lines(&s.barman, &base_config, &[stop, &post])?;
    let mut cmd = s.barman.program_command(&cargo_bin("barman-backup")?, &["pg"]);
    let stopped = execute(&mut cmd, None, DEFAULT_TIMEOUT)?;
    stopped.fails_with_code(1)?;
    let id2 = backup_ids(&layout).pop().context("second backup")?;
    ensure!(id2 != id, "no second backup directory");
    let bi2 = info(&layout, &id2)?;
    ensure!(bi2.status == BackupStatus::Failed, "{:?}", bi2.status);
    ensure!(bi2.error.as_deref().is_some_and(|e| e.contains("Abort 'pre_backup_retry_script'")), "{:?}", bi2.error);
    let post2 = fs::read_to_string(hooks.join(format!("post.{id2}")))?;
    ensure!(post2.lines().any(|l| l == "BARMAN_STATUS=FAILED"), "post env:\n{post2}");
    ensure!(!layout.backup_dir(&BackupId::new(&id2)?).join("data").exists(), "data copied despite ABORT_STOP");
    Ok(())
}
