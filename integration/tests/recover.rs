//! `barman recover` (local, without get-wal) against a real PostgreSQL 15 archiving through
//! our `barman-wal-archive`: one backup taken before a series of writes, then a recovery to
//! each kind of target (time, xid, lsn, restore point name, immediate) started with our
//! `restore_command = 'cp <dest>/barman_wal/%f %p'` lines, each holding exactly the rows
//! committed before its target. Barman's validations refuse before anything is copied,
//! and so does a backup whose WAL is missing from the archive.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{BackupId, BackupInfo, ServerLayout};
use barman_integration::cmd::{as_user, execute};
use barman_integration::pg::{PG_BIN, SYSTEM_PATH};
use barman_integration::scratch::chown_recursive;
use barman_integration::{skip_unless, OsUser, PgCluster, PgOptions, RealBarman, Sshd};

use barman_integration::fixtures::ArchivingCluster as Setup;

fn setup(name: &str) -> Result<Setup> {
    Setup::start(name)
}

/// The ids in `t`, in order, comma-separated.
fn ids(pg: &PgCluster) -> Result<String> {
    pg.psql("select coalesce(string_agg(id::text, ',' order by id), '') from t")
}

fn is_empty_or_missing(dir: &Path) -> bool {
    fs::read_dir(dir).map_or(true, |mut rd| rd.next().is_none())
}

/// Recovers into `dest` with `args`, checks the files Barman writes, starts PostgreSQL on
/// it, waits for the promotion and returns the ids in `t`.
fn recover_and_read(
    s: &Setup,
    (arg, id): (&str, &str),
    dest: &Path,
    target: &[&str],
    conf_line: &str,
    ts: Option<&Path>,
) -> Result<String> {
    let dest_s = dest.to_str().context("utf8")?;
    let mut args = vec!["recover", "--target-action", "promote"];
    args.extend_from_slice(target);
    let rule;
    if let Some(ts) = ts {
        rule = format!("ts1:{}", ts.display());
        args.extend(["--tablespace", &rule]);
    }
    args.extend(["pg", arg, dest_s]);
    let t0 = Instant::now();
    let out = s.barman.run(&args)?;
    let took = t0.elapsed();
    for line in [
        &format!("Starting local restore for server pg using backup {id}") as &str,
        &format!("Destination directory: {dest_s}"),
        "Doing PITR. Recovery target ",
        "Copying the base backup.",
        "Copying required WAL segments.",
        "Generating recovery configuration",
        "Identify dangerous settings in destination directory.",
        "Your PostgreSQL server has been successfully prepared for recovery!",
    ] {
        ensure!(out.contains(line), "recover output lacks {line:?}:\n{out}");
    }
    let auto = fs::read_to_string(dest.join("postgresql.auto.conf"))?;
    let want_head = format!(
        "restore_command = 'cp {dest_s}/barman_wal/%f %p'\nrecovery_end_command = 'rm -fr {dest_s}/barman_wal'\n{conf_line}\nrecovery_target_action = 'promote'\n"
    );
    ensure!(auto.ends_with(&want_head), "postgresql.auto.conf:\n{auto}");
    ensure!(dest.join("recovery.signal").is_file() && !dest.join("standby.signal").exists());
    ensure!(dest.join(".barman-recover.info").is_file());
    ensure!(dest.join(format!("backup_manifest.{id}")).is_file() && !dest.join("backup_manifest").exists());
    ensure!(!dest.join("backup_label").exists() || dest.join("backup_label").is_file());
    let wals: Vec<String> = fs::read_dir(dest.join("barman_wal"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24)
        .collect();
    ensure!(!wals.is_empty(), "no WAL copied into barman_wal");
    for w in &wals {
        let len = fs::metadata(dest.join("barman_wal").join(w))?.len();
        ensure!(len == 16 << 20, "{w} is {len} bytes (not decompressed?)");
    }
    if let Some(ts) = ts {
        let link = fs::read_link(dest.join("pg_tblspc").join(ts_oid(s, id)?))?;
        ensure!(link == ts, "pg_tblspc link → {}", link.display());
        chown_recursive(ts, &OsUser::lookup("postgres")?)?;
        fs::set_permissions(ts, fs::Permissions::from_mode(0o700))?;
    }
    let restored = PgCluster::start_existing(&s.scratch, dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    let got = ids(&restored)?;
    ensure!(!dest.join("barman_wal").exists(), "recovery_end_command did not remove barman_wal");
    eprintln!("recover {target:?} took {took:?}, rows {got}");
    Ok(got)
}

fn ts_oid(s: &Setup, id: &str) -> Result<String> {
    let layout = ServerLayout::default_for(&s.barman.home(), "pg");
    let info = BackupInfo::load(&layout, &BackupId::new(id)?)?.context("backup.info")?;
    Ok(info.tablespaces.context("tablespaces")?[0].oid.to_string())
}

#[test]
fn recover_to_each_target_kind_and_refuse_bad_requests() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let t_all = Instant::now();
    let s = setup("recover targets")?;
    let ts_dir = s.scratch.mkdir_owned_mode("ts1", "postgres", 0o700)?;
    s.pg.psql(&format!("create tablespace ts1 location '{}'", ts_dir.display()))?;
    s.pg.psql("create table t(id int primary key, v text) tablespace ts1")?;
    s.pg.psql("insert into t values (0, 'before backup')")?;
    s.barman.run(&["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    let id = s.barman.done_backups("pg")?.into_iter().next().context("no DONE backup")?;

    // The writes, each target between two commits.
    s.pg.psql("select pg_sleep(1.1)")?;
    s.pg.psql("insert into t values (1, 'a')")?;
    s.pg.psql("select pg_sleep(0.2)")?;
    let time = s.pg.psql("select clock_timestamp()::text")?;
    s.pg.psql("select pg_sleep(0.2)")?;
    s.pg.psql("insert into t values (2, 'b')")?;
    s.pg.psql("insert into t values (3, pg_current_xact_id()::text)")?;
    let xid = s.pg.psql("select v from t where id = 3")?;
    s.pg.psql("insert into t values (4, 'd')")?;
    s.pg.psql("insert into t values (5, 'e')")?;
    let lsn = s.pg.psql("select pg_current_wal_insert_lsn()::text")?;
    s.pg.psql("insert into t values (6, 'f')")?;
    s.pg.psql("insert into t values (7, 'g')")?;
    s.pg.psql("select pg_create_restore_point('rp1')")?;
    s.pg.psql("insert into t values (8, 'h')")?;
    let last = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&last, Duration::from_mins(1))?;
    s.barman.run(&["cron"])?;
    eprintln!("setup, backup and writes took {:?}", t_all.elapsed());

    let root = s.scratch.mkdir_owned("rec", "barman")?;
    let dest = |n: &str| -> PathBuf { root.join(n) };

    // Validations: ERROR, exit 1, nothing written.
    let refusals: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--target-xid".into(), xid.clone(), "--target-name".into(), "rp1".into()],
            "You cannot specify multiple targets for the recovery operation",
        ),
        (vec!["--target-action".into(), "promote".into()], "Can't enable recovery target action when PITR"),
        (vec!["--tablespace".into(), "nosuch:/tmp/x".into()], "Invalid tablespace name 'nosuch'"),
        (vec!["--target-time".into(), "2000-01-01 00:00:00+00".into()], "is before the backup end time"),
    ];
    let bad = dest("bad");
    for (extra, msg) in &refusals {
        let mut args: Vec<&str> = vec!["recover"];
        args.extend(extra.iter().map(String::as_str));
        args.extend(["pg", &id, bad.to_str().context("utf8")?]);
        let o = s.barman.outcome(&args)?;
        ensure!(
            o.code() == Some(1) && o.stderr_str().starts_with("ERROR: ") && o.stderr_str().contains(msg),
            "{args:?}: {}",
            o.stderr_str()
        );
        ensure!(is_empty_or_missing(&bad), "{args:?} wrote into the destination");
    }
    let o = s.barman.outcome(&["recover", "pg", &id, "host:/tmp/x"])?;
    ensure!(o.code() == Some(1) && o.stderr_str().contains("cannot contain the ':' character"), "{}", o.stderr_str());
    let full = s.scratch.mkdir_owned("rec/full", "barman")?;
    fs::write(full.join("keep"), "x")?;
    let o = s.barman.outcome(&["recover", "pg", &id, full.to_str().context("utf8")?])?;
    ensure!(o.code() == Some(1) && o.stderr_str().contains("is not empty"), "{}", o.stderr_str());
    ensure!(fs::read_dir(&full)?.count() == 1, "non-empty destination was written to");

    // Each target kind.
    let cases: Vec<(&str, Vec<String>, String, &str)> = vec![
        (
            "time",
            vec!["--target-time".into(), time.clone()],
            String::new(), // checked below: the time is rewritten in Python's format
            "0,1",
        ),
        ("xid", vec!["--target-xid".into(), xid.clone()], format!("recovery_target_xid = '{xid}'"), "0,1,2,3"),
        ("lsn", vec!["--target-lsn".into(), lsn.clone()], format!("recovery_target_lsn = '{lsn}'"), "0,1,2,3,4,5"),
        ("name", vec!["--target-name".into(), "rp1".into()], "recovery_target_name = 'rp1'".into(), "0,1,2,3,4,5,6,7"),
        ("immediate", vec!["--target-immediate".into()], "recovery_target = 'immediate'".into(), "0"),
    ];
    for (kind, target, line, want) in &cases {
        let d = dest(kind);
        let ts = dest(&format!("{kind}_ts"));
        let args: Vec<&str> = target.iter().map(String::as_str).collect();
        let backup_arg = if *kind == "name" { "latest" } else { id.as_str() };
        let line = if line.is_empty() { recover_line_for_time(&time)? } else { line.clone() };
        let got = recover_and_read(&s, (backup_arg, &id), &d, &args, &line, Some(&ts))
            .with_context(|| format!("recovery to the {kind} target"))?;
        ensure!(got == *want, "{kind} target: rows {got}, want {want}");
    }

    // Real Barman 3.20.1 on the same backup writes the same recovery settings and files.
    if let Some(real) = RealBarman::optional() {
        let xid_args = ["--target-xid", xid.as_str(), "--target-action", "promote", "--tablespace"];
        compare_with_real_barman(&s, &real, &id, &root, "pitr", &xid_args)?;
        compare_with_real_barman(&s, &real, &id, &root, "getwal", &["--get-wal", "--tablespace"])?;
        compare_with_real_barman(&s, &real, &id, &root, "plain", &["--no-get-wal", "--tablespace"])?;
        let standby = ["--standby-mode", "--get-wal", "--target-name", "rp1", "--tablespace"];
        compare_with_real_barman(&s, &real, &id, &root, "standby", &standby)?;
        let time_args = ["--target-time", time.as_str(), "--exclusive", "--tablespace"];
        compare_with_real_barman(&s, &real, &id, &root, "time", &time_args)?;
        let imm = ["--target-immediate", "--target-tli", "current", "--tablespace"];
        compare_with_real_barman(&s, &real, &id, &root, "immediate", &imm)?;
        let lsn_args = ["--target-lsn", lsn.as_str(), "--target-action", "pause", "--tablespace"];
        compare_with_real_barman(&s, &real, &id, &root, "lsn", &lsn_args)?;
    }

    // A WAL of the backup missing from the archive: refused before copying, naming it.
    let layout = ServerLayout::default_for(&s.barman.home(), "pg");
    let info = BackupInfo::load(&layout, &BackupId::new(&id)?)?.context("backup.info")?;
    let begin = info.begin_wal.context("begin_wal")?;
    let stored = layout.wal_path(&begin);
    let aside = s.scratch.join("aside");
    fs::rename(&stored, &aside)?;
    let missing = dest("missing");
    let o = s.barman.outcome(&["restore", "--target-immediate", "pg", &id, missing.to_str().context("utf8")?])?;
    fs::rename(&aside, &stored)?;
    ensure!(o.code() == Some(1) && o.stderr_str().contains(begin.as_str()), "missing WAL: {}", o.stderr_str());
    ensure!(is_empty_or_missing(&missing), "destination written despite the missing WAL");
    eprintln!("recover test total {:?}", t_all.elapsed());
    Ok(())
}

/// `recovery_target_time = '<Python str(datetime)>'` for PostgreSQL's `timestamptz::text`
/// (`2026-11-21 23:50:01.123456+00`).
fn recover_line_for_time(pg_text: &str) -> Result<String> {
    let dt = chrono::DateTime::parse_from_str(pg_text, "%Y-%m-%d %H:%M:%S%.f%#z")
        .with_context(|| format!("parsing {pg_text}"))?;
    Ok(format!("recovery_target_time = '{}'", barman_common::catalogue::format_py_datetime(&dt)))
}

/// `recover --target-xid X --target-action promote` by real Barman and by us into two
/// destinations: the same top-level files, the same `postgresql.auto.conf` (destination
/// path aside), the same `.barman-recover.info` and WAL names, the same console lines
/// (timings aside).
fn compare_with_real_barman(
    s: &Setup,
    real: &RealBarman,
    id: &str,
    root: &Path,
    tag: &str,
    extra: &[&str],
) -> Result<()> {
    let run = |ours: bool, dest: &Path, ts: &Path| -> Result<String> {
        let rule = format!("ts1:{}", ts.display());
        let mut args = vec!["recover"];
        args.extend_from_slice(extra);
        args.extend([rule.as_str(), "pg", id]);
        let mut cmd = if ours {
            s.barman.command(&args)
        } else {
            let mut cmd = Command::new(real.bin("barman"));
            as_user(&mut cmd, s.barman.user());
            let path = format!("{}:{PG_BIN}:{SYSTEM_PATH}", real.bin_dir().display());
            cmd.env("PATH", path).arg("-c").arg(s.barman.config_path()).args(args);
            cmd
        };
        cmd.arg(dest);
        let o = execute(&mut cmd, None, Duration::from_mins(2))?;
        o.success().with_context(|| format!("ours={ours}: {}", o.stderr_str()))?;
        let text = o.stdout_str().replace(dest.to_str().context("utf8")?, "DEST");
        Ok(text
            .lines()
            .filter(|l| !l.starts_with("Restore operation completed") && !l.starts_with("Processing xlog"))
            .collect::<Vec<_>>()
            .join("\n"))
    };
    let (d_real, d_ours) = (root.join(format!("{tag}_real")), root.join(format!("{tag}_ours")));
    let out_real = run(false, &d_real, &root.join(format!("{tag}_real_ts")))?;
    let out_ours = run(true, &d_ours, &root.join(format!("{tag}_ours_ts")))?;
    ensure!(out_real == out_ours, "{tag}: console differs:\n--- real\n{out_real}\n--- ours\n{out_ours}");
    let listing = |d: &Path| -> Result<Vec<String>> {
        let mut v: Vec<String> = fs::read_dir(d)?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        v.sort();
        Ok(v)
    };
    ensure!(listing(&d_real)? == listing(&d_ours)?, "{tag}: files: {:?} vs {:?}", listing(&d_real)?, listing(&d_ours)?);
    for f in [
        "postgresql.auto.conf.origin",
        "postgresql.conf.origin",
        "postgresql.auto.conf",
        "postgresql.conf",
        ".barman-recover.info",
    ] {
        let a = fs::read_to_string(d_real.join(f))?.replace(d_real.to_str().context("utf8")?, "DEST");
        let b = fs::read_to_string(d_ours.join(f))?.replace(d_ours.to_str().context("utf8")?, "DEST");
        ensure!(a == b, "{tag}: {f} differs:\n--- real\n{a:?}\n--- ours\n{b:?}");
    }
    for sub in ["barman_wal", "barman_wal/archive_status", "pg_wal", "pg_wal/archive_status"] {
        let (a, b) = (listing(&d_real.join(sub)).ok(), listing(&d_ours.join(sub)).ok());
        ensure!(a == b, "{tag}: {sub}: real {a:?} ours {b:?}");
    }
    eprintln!("{tag}: same as real Barman");
    Ok(())
}
