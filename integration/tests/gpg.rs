//! `encryption = gpg` as Barman 3.20.1 does it, against a real PostgreSQL 15 archiving
//! through our `barman-wal-archive`, a throwaway `GNUPGHOME` (owned by `barman`) holding a
//! generated, passphrase-protected key, and `encryption_passphrase_command = cat <file>`:
//!
//! 1. our archiver stores every WAL file gzip-compressed then gpg-encrypted under its bare
//!    name (`<name> <size> <time> gzip gpg` in xlog.db); our `barman backup` of a
//!    `backup_compression = gzip`, `backup_compression_format = tar` server leaves
//!    `base.tar.gz.gpg` (+ clear `backup_manifest`) and `encryption=gpg` in backup.info;
//! 2. our `barman recover --target-time` from that catalogue, PostgreSQL started on it: exactly
//!    the rows committed before the target;
//! 3. real Barman 3.20.1 on our catalogue: its `get-wal` returns the bytes ours does, and its
//!    `recover` to the same target gives the same rows;
//! 4. real Barman's archiver and backup on the same server, then ours: our `get-wal` of its
//!    encrypted WAL and our `recover` of its encrypted backup (all rows);
//! 5. a wrong passphrase (and no passphrase command) is one `ERROR:` line, exit 3, and
//!    changes nothing: the recovery destination stays empty, get-wal's directory too;
//!    a plain-format backup with encryption is refused before it starts, as Barman's
//!    `_validate_gpg` words it.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{BackupId, BackupInfo, ServerLayout};
use barman_integration::cmd::{execute, Outcome};
use barman_integration::fixtures::ArchivingCluster as Setup;
use barman_integration::gnupg::{Gnupg, PASSPHRASE};
use barman_integration::{skip_unless, OsUser, PgCluster, PgOptions, RealBarman, Scratch, Sshd};

/// A server section with encryption, and files holding the right and a wrong passphrase.
fn encrypted_server(scratch: &Scratch, g: &Gnupg) -> Result<Vec<String>> {
    g.server_lines(scratch)
}

/// `barman` (ours, or real Barman's when `program` is given) with the GnuPG home.
fn barman(s: &Setup, g: &Gnupg, program: Option<&Path>, args: &[&str]) -> Result<Outcome> {
    let mut c = match program {
        None => s.barman.command(args),
        Some(p) => s.barman.program_command(p, args),
    };
    c.env("GNUPGHOME", &g.home);
    execute(&mut c, None, Duration::from_mins(3))
}

fn ok(s: &Setup, g: &Gnupg, program: Option<&Path>, args: &[&str]) -> Result<String> {
    let o = barman(s, g, program, args)?;
    o.success().with_context(|| format!("barman {args:?}\n{}", s.barman.log()))?;
    Ok(o.stdout_str())
}

/// Replaces `from` by `to` in barman.conf.
fn edit_config(s: &Setup, from: &str, to: &str) -> Result<()> {
    let path = s.barman.config_path();
    let text = fs::read_to_string(&path)?;
    ensure!(text.contains(from), "barman.conf lacks {from:?}");
    fs::write(&path, text.replacen(from, to, 1))?;
    Ok(())
}

fn ids(pg: &PgCluster) -> Result<String> {
    pg.psql("select coalesce(string_agg(id::text, ',' order by id), '') from t")
}

fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).map_or(true, |mut rd| rd.next().is_none())
}

/// Whether a file starts with an OpenPGP encrypted session key packet.
fn encrypted(path: &Path) -> Result<bool> {
    Ok(barman_common::gpg::is_encrypted_file(path)?)
}

/// Starts PostgreSQL on a recovered `dest`, waits for the end of recovery, returns the ids.
fn start_and_read(s: &Setup, dest: &Path) -> Result<String> {
    barman_integration::scratch::chown_recursive(dest, &OsUser::lookup("postgres")?)?;
    let restored = PgCluster::start_existing(&s.scratch, dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    ids(&restored)
}

/// The xlog.db lines (5 fields each), and a check that each stored segment is encrypted.
fn check_encrypted_wals(layout: &ServerLayout) -> Result<Vec<Vec<String>>> {
    let text = fs::read_to_string(layout.wals_directory.join("pg-xlog.db"))?;
    let lines: Vec<Vec<String>> =
        text.lines().map(|l| l.split('\t').map(str::to_owned).collect()).collect::<Vec<Vec<String>>>();
    for f in &lines {
        ensure!(f.len() == 5, "xlog.db line {f:?}");
        let name: barman_common::wal::WalFileName = f[0].parse()?;
        let path = layout.wal_path(&name);
        ensure!(encrypted(&path)?, "{} is stored in clear", path.display());
        ensure!(fs::metadata(&path)?.len().to_string() == f[1], "{}: size column {}", f[0], f[1]);
    }
    Ok(lines)
}

/// Our encrypted backup: the files and backup.info fields Barman writes.
fn check_encrypted_backup(layout: &ServerLayout, id: &str) -> Result<()> {
    let info = BackupInfo::load(layout, &BackupId::new(id)?)?.context("backup.info")?;
    ensure!(info.encryption.as_deref() == Some("gpg"), "encryption {:?}", info.encryption);
    ensure!(info.compression.as_deref() == Some("gzip"), "compression {:?}", info.compression);
    let data = layout.backup_dir(&BackupId::new(id)?).join("data");
    let mut files: Vec<String> = fs::read_dir(&data)?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    files.sort();
    ensure!(files == ["backup_manifest", "base.tar.gz.gpg"], "data/: {files:?}");
    ensure!(encrypted(&data.join("base.tar.gz.gpg"))?, "base.tar.gz.gpg is not encrypted");
    let text = fs::read_to_string(BackupInfo::locate(layout, &BackupId::new(id)?))?;
    ensure!(!text.contains(PASSPHRASE) && !text.contains("pass/good"), "secret in backup.info");
    Ok(())
}

/// A recovery that must be refused: exit 3, one `ERROR:` line with `want`, `dest` empty.
fn refused(o: &Outcome, want: &str, dest: &Path) -> Result<()> {
    let err = o.stderr_str();
    ensure!(o.code() == Some(3), "exit {:?}, want 3: {err}", o.code());
    ensure!(err.lines().count() == 1 && err.starts_with("ERROR: ") && err.contains(want), "stderr: {err:?}");
    ensure!(is_empty(dest), "{} was written to", dest.display());
    eprintln!("refused as expected: {}", err.trim());
    Ok(())
}

#[test]
fn encrypted_catalogue_pitr_interop_and_wrong_passphrase() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(RealBarman::require());
    let t_all = Instant::now();
    let mut gnupg = None;
    let s = Setup::start_with("gpg", |scratch| {
        let g = Gnupg::generate(scratch)?;
        let lines = encrypted_server(scratch, &g)?;
        gnupg = Some(g);
        Ok(lines)
    })?;
    let g = gnupg.context("key generated")?;
    let layout = s.layout();
    let real_bin = real.bin("barman");
    let realb = Some(real_bin.as_path());
    eprintln!("setup with key generation took {:?}", t_all.elapsed());

    // `barman check` runs Barman's encryption test, with Barman's line.
    for program in [None, realb] {
        let out = barman(&s, &g, program, &["check", "pg"])?.stdout_str();
        let line = out.lines().find(|l| l.trim_start().starts_with("encryption:")).unwrap_or_default();
        ensure!(line.trim() == "encryption: OK (encryption test succeeded)", "{program:?}: check says:\n{out}");
    }

    // A plain-format backup with encryption is refused before anything is written.
    let plain = "backup_compression_format = plain\nbackup_compression_location = server";
    edit_config(&s, "backup_compression_format = tar", plain)?;
    let o = barman(&s, &g, None, &["backup", "pg"])?;
    // `barman backup` exits 1 for any failed backup, as Barman does.
    ensure!(o.code() == Some(1), "plain + gpg: exit {:?}: {}", o.code(), o.stderr_str());
    // The pre-backup checks (as Barman's) stop it; `check` names the reason.
    let why = "Encryption is set as gpg, but backup_compression_format != tar";
    let check = barman(&s, &g, None, &["check", "pg"])?.stdout_str();
    ensure!(
        o.stderr_str().contains(why)
            || (o.stderr_str().contains("Impossible to start the backup") && check.contains(why)),
        "plain + gpg: backup said {}\ncheck said {check}",
        o.stderr_str()
    );
    ensure!(is_empty(&layout.basebackups_directory), "a backup directory was created");
    edit_config(&s, plain, "backup_compression_format = tar")?;

    // 1. Our archiver and backup.
    s.pg.psql("create table t(id int primary key)")?;
    s.pg.psql("insert into t values (0)")?;
    let t0 = Instant::now();
    ok(&s, &g, None, &["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    let id = s.barman.done_backups("pg")?.into_iter().next().context("no DONE backup")?;
    eprintln!("our encrypted backup took {:?}", t0.elapsed());
    check_encrypted_backup(&layout, &id)?;
    s.pg.psql("select pg_sleep(1.1)")?;
    s.pg.psql("insert into t values (1)")?;
    s.pg.psql("select pg_sleep(0.2)")?;
    let time = s.pg.psql("select clock_timestamp()::text")?;
    s.pg.psql("select pg_sleep(0.2)")?;
    s.pg.psql("insert into t values (2)")?;
    let last = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&last, Duration::from_mins(1))?;
    ok(&s, &g, None, &["archive-wal", "pg"])?;
    let lines = check_encrypted_wals(&layout)?;
    ensure!(lines.iter().all(|f| f[3] == "gzip" && f[4] == "gpg"), "xlog.db: {lines:?}");
    ensure!(!s.barman.log().contains(PASSPHRASE), "passphrase in the log");

    // 2. Our PITR from the encrypted catalogue.
    let root = s.scratch.mkdir_owned("rec", "barman")?;
    let dest = root.join("ours");
    let t0 = Instant::now();
    let out = ok(
        &s,
        &g,
        None,
        &["recover", "--target-action", "promote", "--target-time", &time, "pg", &id, dest.to_str().context("utf8")?],
    )?;
    ensure!(out.contains("successfully prepared for recovery"), "{out}");
    ensure!(start_and_read(&s, &dest)? == "0,1", "our PITR rows");
    eprintln!("our PITR from the encrypted catalogue took {:?}", t0.elapsed());

    // 3. Real Barman on our catalogue: get-wal and recover.
    let seg = lines.iter().map(|f| f[0].clone()).find(|n| n.len() == 24).context("no segment archived")?;
    let theirs = barman(&s, &g, realb, &["get-wal", "pg", &seg])?;
    theirs.success()?;
    let mine = barman(&s, &g, None, &["get-wal", "pg", &seg])?;
    mine.success()?;
    ensure!(theirs.stdout.len() == 16 << 20 && theirs.stdout == mine.stdout, "get-wal {seg}: bytes differ");
    // barman-wal-restore's batch stream: the first member (header, then data) is decrypted.
    let batch = barman(&s, &g, None, &["get-wal", "--batch", "2", "pg", &seg])?;
    batch.success()?;
    ensure!(batch.stdout.get(512..512 + (16 << 20)) == Some(&mine.stdout[..]), "get-wal --batch {seg}");
    let dest = root.join("real");
    let t0 = Instant::now();
    ok(
        &s,
        &g,
        realb,
        &["recover", "--target-action", "promote", "--target-time", &time, "pg", &id, dest.to_str().context("utf8")?],
    )?;
    ensure!(start_and_read(&s, &dest)? == "0,1", "real Barman's PITR rows from our catalogue");
    eprintln!("real Barman's recovery of our encrypted backup took {:?}", t0.elapsed());

    // 4. Real Barman's archiver and backup, then ours on them.
    s.pg.psql("insert into t values (3)")?;
    let last = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&last, Duration::from_mins(1))?;
    ok(&s, &g, realb, &["archive-wal", "pg"])?;
    let theirs_line = check_encrypted_wals(&layout)?.into_iter().find(|f| f[0] == last).context("real archived")?;
    eprintln!("real Barman's xlog.db line: {theirs_line:?}");
    ok(&s, &g, realb, &["backup", "pg", "--wait", "--wait-timeout", "60", "--immediate-checkpoint"])?;
    let real_id = s.barman.done_backups("pg")?.into_iter().find(|i| *i != id).context("no real backup")?;
    check_encrypted_backup(&layout, &real_id)?;
    let plain = barman(&s, &g, None, &["get-wal", "pg", &last])?;
    plain.success()?;
    ensure!(plain.stdout.len() == 16 << 20 && plain.stdout[..2] == [0x10, 0xd1], "our get-wal of real's WAL");
    let dest = root.join("ours-of-real");
    ok(&s, &g, None, &["recover", "pg", &real_id, dest.to_str().context("utf8")?])?;
    ensure!(start_and_read(&s, &dest)? == "0,1,2,3", "our recovery of real Barman's encrypted backup");

    // 5. Wrong and missing passphrase: refused, nothing changed.
    edit_config(&s, "pass/good", "pass/bad")?;
    let dest = s.scratch.mkdir_owned("rec/wrong", "barman")?;
    let o = barman(&s, &g, None, &["recover", "pg", &id, dest.to_str().context("utf8")?])?;
    refused(&o, "Bad passphrase", &dest)?;
    let o = barman(&s, &g, None, &["get-wal", "pg", &seg, "-o", dest.to_str().context("utf8")?])?;
    refused(&o, "Bad passphrase", &dest)?;
    let log = s.barman.log();
    ensure!(!log.contains("not the passphrase") && !log.contains(PASSPHRASE), "passphrase in the log");
    let bad_line = format!("encryption_passphrase_command = cat {}\n", s.scratch.join("pass/bad").display());
    edit_config(&s, &bad_line, "")?;
    let o = barman(&s, &g, None, &["recover", "pg", &id, dest.to_str().context("utf8")?])?;
    refused(&o, "no 'encryption_passphrase_command' is configured", &dest)?;
    eprintln!("whole test took {:?}", t_all.elapsed());
    Ok(())
}
