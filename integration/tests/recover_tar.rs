//! `barman recover` of tar-format backups taken by real Barman 3.20.1
//! (`backup_method = postgres`, `backup_compression = gzip|lz4|zstd|none`,
//! `backup_compression_format = tar`): one PostgreSQL 15 with a tablespace outside PGDATA,
//! archiving through Barman's own `barman-wal-archive` over the private sshd; one backup per
//! compression; then OUR `barman recover` of each (the tablespace relocated with
//! `--tablespace`), PostgreSQL started on the result as `postgres` and the rows checked:
//! those written before the backup plus those replayed from the archived WAL, up to a
//! restore point or to the end. One recovery goes through `--remote-ssh-command`, and real
//! Barman's own recovery of the gzip backup lays out the same files. Bad input (a truncated
//! or corrupted `base.tar.gz`, a missing tablespace archive, an unknown `compression`) is a
//! one-line `ERROR:`, exit 1, and no success line.
//!
//! A tar-format backup relayed by our passive `barman-relay` from a real Barman primary is
//! verified with the rsync dry run (its `backup_manifest` describes the archives' content),
//! ends DONE, and our `barman recover` on the passive restores it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{BackupId, BackupInfo, ServerLayout};
use barman_integration::cmd::{as_user, execute, Outcome};
use barman_integration::hosts::{archive_now, ensure_same_tree, insert_rows, BackupHost};
use barman_integration::pg::{PG_BIN, SYSTEM_PATH};
use barman_integration::scratch::{chown, chown_recursive};
use barman_integration::{
    cargo_bin, skip_unless, BarmanHome, BarmanServerOptions, OsUser, PgCluster, PgOptions, RealBarman, Scratch, Sshd,
    SshdOptions,
};

const SSH_POSTGRES: &str = "ssh postgres@127.0.0.1";

/// The cluster, the real Barman home that backs it up, and the binaries.
struct Setup {
    pg: PgCluster,
    barman: BarmanHome,
    _sshd: Sshd,
    real: RealBarman,
    ours: PathBuf,
    scratch: Scratch,
}

fn setup() -> Result<Setup> {
    let real = RealBarman::require()?;
    let scratch = Scratch::new("recover tar")?;
    let sshd = Sshd::start(&scratch, SshdOptions::real_barman_first())?;
    let mut barman = BarmanHome::real(&scratch, &real, "barman")?;
    barman.add_path_prefix(sshd.ssh_wrapper_dir_for("barman")?);
    let archive_command =
        format!("{} -c {} 127.0.0.1 pg %p", real.bin("barman-wal-archive").display(), barman.config_path().display());
    let opts = PgOptions::default().archive_command(archive_command).path_prefix(sshd.ssh_wrapper_dir_for("postgres")?);
    let pg = PgCluster::start(&scratch, opts)?;
    let server = BarmanServerOptions {
        extra: vec!["backup_compression = gzip".into(), "backup_compression_format = tar".into()],
        ..BarmanServerOptions::default()
    };
    barman.add_server("pg", &pg, &server)?;
    Ok(Setup { pg, barman, _sshd: sshd, real, ours: cargo_bin("barman")?, scratch })
}

impl Setup {
    /// Switches the server's `backup_compression` in barman.conf.
    fn set_backup_compression(&self, from: &str, to: &str) -> Result<()> {
        let path = self.barman.config_path();
        let text = fs::read_to_string(&path)?;
        let (old, new) = (format!("backup_compression = {from}\n"), format!("backup_compression = {to}\n"));
        ensure!(text.contains(&old), "barman.conf lacks {old:?}");
        fs::write(&path, text.replace(&old, &new))?;
        Ok(())
    }

    /// `barman backup` by real Barman; returns the new backup's id.
    fn real_backup(&self) -> Result<String> {
        let before = self.barman.done_backups("pg")?;
        self.barman.run(&["backup", "pg", "--wait", "--wait-timeout", "60", "--immediate-checkpoint"])?;
        let after = self.barman.done_backups("pg")?;
        after.into_iter().find(|id| !before.contains(id)).context("no new DONE backup")
    }

    /// OUR `barman recover` against the same configuration and catalogue.
    fn our_recover(&self, args: &[&str]) -> Result<Outcome> {
        let mut all = vec!["recover"];
        all.extend_from_slice(args);
        execute(&mut self.barman.program_command(&self.ours, &all), None, Duration::from_mins(2))
    }

    fn info(&self, id: &str) -> Result<BackupInfo> {
        let layout = ServerLayout::default_for(&self.barman.home(), "pg");
        BackupInfo::load(&layout, &BackupId::new(id)?)?.context("backup.info")
    }

    fn data_dir(&self, id: &str) -> PathBuf {
        self.barman.server_dir("pg").join("base").join(id).join("data")
    }
}

/// The ids in `t`, in order, comma-separated, and the row count of `big`.
fn rows(pg: &PgCluster) -> Result<String> {
    pg.psql("select coalesce(string_agg(id::text, ',' order by id), '') || ' / ' || (select count(*) from big) from t")
}

fn listing(d: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(d)?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    v.sort();
    Ok(v)
}

/// Hands the relocated tablespace to `postgres`, starts PostgreSQL on `dest`, waits for the
/// end of recovery and returns [`rows`].
fn start_and_read(s: &Setup, dest: &Path, ts: &Path) -> Result<String> {
    chown_recursive(ts, &OsUser::lookup("postgres")?)?;
    fs::set_permissions(ts, fs::Permissions::from_mode(0o700))?;
    let restored = PgCluster::start_existing(&s.scratch, dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    rows(&restored)
}

/// A successful local recovery of `id` into `dest` with `ts1` relocated to `ts`: the
/// console lines, the files, the tablespace link, then the rows PostgreSQL sees.
fn recover_local(s: &Setup, id: &str, dest: &Path, ts: &Path, target: &[&str]) -> Result<String> {
    let rule = format!("ts1:{}", ts.display());
    let mut args = vec!["--tablespace", rule.as_str()];
    args.extend_from_slice(target);
    args.extend(["pg", id, dest.to_str().context("utf8")?]);
    let o = s.our_recover(&args)?;
    o.success()?;
    let out = o.stdout_str();
    for line in [
        &format!("Starting local restore for server pg using backup {id}") as &str,
        "Copying the base backup.",
        &format!("\t{}, ts1, {}", s.info(id)?.tablespaces.context("tablespaces")?[0].oid, ts.display()),
        "Your PostgreSQL server has been successfully prepared for recovery!",
    ] {
        ensure!(out.contains(line), "recover output lacks {line:?}:\n{out}");
    }
    let files = listing(dest)?;
    for f in ["PG_VERSION", "backup_label", "global", "base", "pg_wal", ".barman-recover.info", "pg_tblspc"] {
        ensure!(files.iter().any(|n| n == f), "{f} missing from the destination: {files:?}");
    }
    for f in ["base.tar.gz", "tablespace_map", "recovery.conf", "backup_manifest"] {
        ensure!(!files.iter().any(|n| n == f), "{f} in the destination: {files:?}");
    }
    let oid = listing(&dest.join("pg_tblspc"))?.into_iter().next().context("no pg_tblspc link")?;
    ensure!(
        fs::read_link(dest.join("pg_tblspc").join(&oid))? == ts,
        "pg_tblspc/{oid} does not point at {}",
        ts.display()
    );
    ensure!(listing(ts)?.iter().any(|n| n.starts_with("PG_15_")), "tablespace not extracted: {:?}", listing(ts)?);
    start_and_read(s, dest, ts)
}

/// A recovery that must fail: exit 1, one `ERROR:` line containing `want`, no success line.
fn recover_fails(s: &Setup, id: &str, dest: &Path, want: &str) -> Result<()> {
    let rule = format!("ts1:{}", dest.with_extension("ts").display());
    let o = s.our_recover(&["--tablespace", &rule, "pg", id, dest.to_str().context("utf8")?])?;
    let err = o.stderr_str();
    ensure!(o.code() == Some(1), "exit {:?}, want 1: {err}", o.code());
    ensure!(err.lines().count() == 1 && err.starts_with("ERROR: ") && err.contains(want), "stderr: {err:?}");
    ensure!(!o.stdout_str().contains("successfully prepared"), "claimed success:\n{}", o.stdout_str());
    eprintln!("refused as expected: {}", err.trim());
    Ok(())
}

#[test]
fn recover_tar_format_backups_taken_by_real_barman() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    skip_unless!(RealBarman::require());
    let t_all = Instant::now();
    let s = setup()?;
    s.barman.run(&["switch-wal", "--force", "--archive", "--archive-timeout", "60", "pg"])?;
    let ts_dir = s.scratch.mkdir_owned_mode("ts1", "postgres", 0o700)?;
    s.pg.psql(&format!("create tablespace ts1 location '{}'", ts_dir.display()))?;
    s.pg.psql("create table t(id int primary key, v text) tablespace ts1")?;
    s.pg.psql("create table big as select g as id, md5(g::text) as v from generate_series(1, 50000) g")?;
    s.pg.psql("insert into t values (0, 'before the gzip backup')")?;

    // One backup per compression, a row after each.
    let mut ids = Vec::new();
    let mut previous = "gzip";
    for (n, compression) in ["gzip", "lz4", "zstd", "none"].into_iter().enumerate() {
        s.set_backup_compression(previous, compression)?;
        previous = compression;
        let t0 = Instant::now();
        let id = s.real_backup().with_context(|| format!("real Barman {compression} backup"))?;
        let info = s.info(&id)?;
        ensure!(info.compression.as_deref() == Some(compression), "{id}: compression {:?}", info.compression);
        let ext = match compression {
            "gzip" => "tar.gz",
            "lz4" => "tar.lz4",
            "zstd" => "tar.zst",
            _ => "tar",
        };
        let oid = info.tablespaces.as_ref().context("tablespaces")?[0].oid;
        let data = listing(&s.data_dir(&id))?;
        for f in [format!("base.{ext}"), format!("{oid}.{ext}"), "backup_manifest".into()] {
            ensure!(data.contains(&f), "{id}: data/ lacks {f}: {data:?}");
        }
        eprintln!("real Barman {compression} backup {id} took {:?}: {data:?}", t0.elapsed());
        ids.push(id);
        s.pg.psql(&format!("insert into t values ({}, 'after the {compression} backup')", n + 1))?;
    }
    s.pg.psql("select pg_create_restore_point('rp')")?;
    s.pg.psql("insert into t values (99, 'after the restore point')")?;
    s.pg.psql("insert into big select g, 'late' from generate_series(50001, 50100) g")?;
    s.barman.run(&["switch-wal", "--force", "--archive", "--archive-timeout", "60", "pg"])?;
    s.barman.run(&["cron"])?;
    eprintln!("setup and backups took {:?}", t_all.elapsed());

    let root = s.scratch.mkdir_owned("rec", "barman")?;
    let (gzip, lz4, zstd, none) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    let at_rp = "0,1,2,3,4 / 50000";
    let at_end = "0,1,2,3,4,99 / 50100";

    // gzip: to the restore point, through barman_wal.
    let t0 = Instant::now();
    let target = ["--target-name", "rp", "--target-action", "promote"];
    let got = recover_local(&s, gzip, &root.join("gzip"), &root.join("gzip_ts"), &target)?;
    ensure!(got == at_rp, "gzip: rows {got}, want {at_rp}");
    eprintln!("gzip recovery (to rp) and start took {:?}", t0.elapsed());

    // lz4 and none: no target, the WAL copied into pg_wal and replayed to the end.
    for (tag, id) in [("lz4", lz4), ("none", none)] {
        let t0 = Instant::now();
        let got = recover_local(&s, id, &root.join(tag), &root.join(format!("{tag}_ts")), &[])?;
        ensure!(got == at_end, "{tag}: rows {got}, want {at_end}");
        eprintln!("{tag} recovery (to the end) and start took {:?}", t0.elapsed());
    }

    // zstd: over ssh into directories only postgres can write, staged locally.
    let t0 = Instant::now();
    let remote = s.scratch.mkdir_owned_mode("remote", "postgres", 0o700)?;
    let (dest, ts) = (remote.join("pgdata"), remote.join("ts1_relocated"));
    fs::create_dir(&dest)?;
    chown(&dest, &OsUser::lookup("postgres")?)?;
    let rule = format!("ts1:{}", ts.display());
    let dest_s = dest.to_str().context("utf8")?;
    let args = ["--remote-ssh-command", SSH_POSTGRES, "--tablespace", &rule, "--target-name", "rp"];
    let mut args = args.to_vec();
    args.extend(["--target-action", "promote", "pg", zstd.as_str(), dest_s]);
    let o = s.our_recover(&args)?;
    o.success()?;
    o.stdout_contains(&format!("Starting remote restore for server pg using backup {zstd}"))?;
    o.stdout_contains("Your PostgreSQL server has been successfully prepared for recovery!")?;
    let staged: Vec<String> =
        listing(&s.barman.home())?.into_iter().filter(|n| n.starts_with(".barman-recover-")).collect();
    ensure!(staged.is_empty(), "staging left behind: {staged:?}");
    ensure!(fs::read_link(dest.join("pg_tblspc").join(listing(&dest.join("pg_tblspc"))?[0].as_str()))? == ts);
    let got = start_and_read(&s, &dest, &ts)?;
    ensure!(got == at_rp, "zstd remote: rows {got}, want {at_rp}");
    eprintln!("zstd remote recovery and start took {:?}", t0.elapsed());

    // Real Barman's own recovery of the gzip backup lays out the same top-level files.
    compare_with_real_barman(&s, gzip, &root)?;

    // Bad input: one ERROR line, exit 1, no success claimed.
    let data = s.data_dir(gzip);
    let base = data.join("base.tar.gz");
    let aside = s.scratch.join("base.tar.gz.orig");
    fs::copy(&base, &aside)?;
    let whole = fs::read(&base)?;
    fs::write(&base, &whole[..whole.len() / 2])?;
    recover_fails(&s, gzip, &root.join("truncated"), "Failure copying base backup: cannot extract")?;
    let mut corrupt = whole.clone();
    for b in &mut corrupt[whole.len() / 3..whole.len() / 3 + 64] {
        *b ^= 0x5a;
    }
    fs::write(&base, &corrupt)?;
    recover_fails(&s, gzip, &root.join("corrupt"), "Failure copying base backup: cannot extract")?;
    fs::copy(&aside, &base)?;
    let oid = s.info(gzip)?.tablespaces.context("tablespaces")?[0].oid;
    let ts_archive = data.join(format!("{oid}.tar.gz"));
    fs::rename(&ts_archive, &aside)?;
    let missing = root.join("missing");
    recover_fails(&s, gzip, &missing, "is missing from the backup")?;
    ensure!(!missing.exists(), "destination written despite the missing archive");
    fs::rename(&aside, &ts_archive)?;
    let meta = s.barman.server_dir("pg").join("meta").join(format!("{gzip}-backup.info"));
    let info_text = fs::read_to_string(&meta)?;
    fs::write(&meta, info_text.replace("compression=gzip\n", "compression=bzip2\n"))?;
    let unknown = root.join("unknown");
    recover_fails(&s, gzip, &unknown, "Unexpected compression format: bzip2")?;
    fs::write(&meta, info_text)?;
    ensure!(!unknown.exists(), "destination written despite the unknown compression");
    eprintln!("recover_tar total {:?}", t_all.elapsed());
    Ok(())
}

/// Real Barman 3.20.1 and we recover the gzip backup to the restore point: the same
/// top-level entries, the same `pg_tblspc` entries and the same recovery settings.
fn compare_with_real_barman(s: &Setup, id: &str, root: &Path) -> Result<()> {
    let t0 = Instant::now();
    let mut results = Vec::new();
    for who in ["real", "ours"] {
        let dest = root.join(format!("cmp_{who}"));
        let ts = root.join(format!("cmp_{who}_ts"));
        let rule = format!("ts1:{}", ts.display());
        let args = ["recover", "--tablespace", &rule, "--target-name", "rp", "pg", id, dest.to_str().context("utf8")?];
        let out = if who == "real" {
            let mut cmd = Command::new(s.real.bin("barman"));
            as_user(&mut cmd, s.barman.user());
            let path = format!("{}:{PG_BIN}:{SYSTEM_PATH}", s.real.bin_dir().display());
            cmd.env("PATH", path).arg("-c").arg(s.barman.config_path()).args(args);
            let o = execute(&mut cmd, None, Duration::from_mins(2))?;
            o.success()?;
            o.stdout_str()
        } else {
            let o = s.our_recover(&args[1..])?;
            o.success()?;
            o.stdout_str()
        };
        ensure!(out.contains("successfully prepared"), "{who}: {out}");
        let auto = fs::read_to_string(dest.join("postgresql.auto.conf"))?.replace(dest.to_str().context("utf8")?, "D");
        let tblspc: Vec<(String, PathBuf)> = listing(&dest.join("pg_tblspc"))?
            .into_iter()
            .map(|n| Ok((n.clone(), fs::read_link(dest.join("pg_tblspc").join(&n))?)))
            .collect::<Result<_>>()?;
        let tblspc: Vec<(String, String)> = tblspc
            .into_iter()
            .map(|(n, p)| (n, p.display().to_string().replace(&*ts.to_string_lossy(), "TS")))
            .collect();
        results.push((listing(&dest)?, tblspc, auto, listing(&ts)?));
    }
    let (a, b) = (&results[0], &results[1]);
    ensure!(a.0 == b.0, "top-level entries differ:\n real {:?}\n ours {:?}", a.0, b.0);
    ensure!(a.1 == b.1, "pg_tblspc differs: real {:?} ours {:?}", a.1, b.1);
    ensure!(a.2 == b.2, "postgresql.auto.conf differs:\n--- real\n{}\n--- ours\n{}", a.2, b.2);
    ensure!(a.3 == b.3, "tablespace entries differ: real {:?} ours {:?}", a.3, b.3);
    eprintln!("gzip: same layout as real Barman 3.20.1 ({:?})", t0.elapsed());
    Ok(())
}

#[test]
fn passive_relay_verifies_and_recovers_a_tar_backup() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(RealBarman::require());
    let t_all = Instant::now();
    let scratch = Scratch::new("recover tar relay")?;
    let mut a = BackupHost::start(&scratch, "a", &real.bin("barman"), None)?;
    let mut b = BackupHost::start(&scratch, "b", &cargo_bin("barman")?, None)?;
    b.trust(&a)?;
    let pg = a.archiving_cluster(&scratch, "pg")?;
    let server = BarmanServerOptions {
        compression: Some("gzip".into()),
        extra: vec!["backup_compression = zstd".into(), "backup_compression_format = tar".into()],
        ..BarmanServerOptions::default()
    };
    a.home.add_server("pg", &pg, &server)?;
    b.add_passive("pg", &a, "gzip", &[])?;
    archive_now(&pg, &a, "pg")?;
    let ts_dir = scratch.mkdir_owned_mode("ts1", "postgres", 0o700)?;
    pg.psql(&format!("create tablespace ts1 location '{}'", ts_dir.display()))?;
    pg.psql("create table t(id int primary key, v text) tablespace ts1")?;
    insert_rows(&pg, 1, 100)?;
    a.home.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    let id = a.home.done_backups("pg")?.into_iter().next().context("no DONE backup on A")?;
    insert_rows(&pg, 101, 200)?;
    archive_now(&pg, &a, "pg")?;

    let out = b.relay(&["pg"])?;
    out.success().with_context(|| format!("B's log:\n{}", b.home.log()))?;
    let said = format!("{out}");
    ensure!(!said.contains("match backup_manifest"), "a tar backup checked against its manifest:\n{said}");
    ensure!(b.home.done_backups("pg")? == [id.clone()], "B: {}", b.home.run(&["list-backup", "pg"])?);
    let base = |h: &BackupHost| h.home.home().join("pg/base").join(&id);
    let files = ensure_same_tree(&base(&a), &base(&b), &["backup.info"])?;
    ensure!(!base(&b).join("data/pg_tblspc").exists(), "tablespace links added to a tar-format copy");

    let root = scratch.mkdir_owned("rec", "barman")?;
    let (dest, ts) = (root.join("pgdata"), root.join("ts"));
    let rule = format!("ts1:{}", ts.display());
    b.home.run(&["recover", "--tablespace", &rule, "pg", &id, dest.to_str().context("utf8")?])?;
    chown_recursive(&ts, &OsUser::lookup("postgres")?)?;
    let restored = PgCluster::start_existing(&scratch, &dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    let got = restored.psql("select count(*), min(id), max(id) from t")?;
    ensure!(got == "200|1|200", "recovered from the passive: {got}");
    eprintln!("relayed tar backup ({files} files) verified and recovered in {:?}", t_all.elapsed());
    Ok(())
}
