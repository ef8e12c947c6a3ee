//! `encryption = gpg` beyond the backup host (issue 20, Must show 4), on a catalogue our
//! archiver and `barman backup` encrypted with a passphrase-protected key in a throwaway
//! GnuPG home of `barman` (`tests/gpg.rs` covers the catalogue itself and interop):
//!
//! 1. PITR through `barman-wal-restore` over ssh: `barman recover --get-wal --target-time`,
//!    then PostgreSQL's `restore_command` is our `barman-wal-restore` (prefetching) reaching
//!    the backup host's sshd, whose `barman get-wal` decrypts with
//!    `encryption_passphrase_command` on the backup host, as Barman 3.20.1's get-wal does:
//!    exactly the rows committed before the target come back;
//! 2. a wrong passphrase through `barman-wal-restore`, ours and real Barman 3.20.1's client
//!    against the same backup host: both exit with the remote get-wal's code (as Barman's
//!    client does, "Remote 'barman get-wal' command has failed!"), get-wal's `Bad passphrase`
//!    error reaches the caller, nothing is written;
//! 3. the relay of the encrypted catalogue to a passive node (its own configuration, the
//!    same key and passphrase command): WAL and backup arrive still encrypted, xlog.db says
//!    `gpg`, and a PITR from the passive alone gives the same rows.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::ServerLayout;
use barman_integration::cmd::{as_user, execute, target_dir, Outcome};
use barman_integration::fixtures::ArchivingCluster as Setup;
use barman_integration::gnupg::{Gnupg, PASSPHRASE};
use barman_integration::hosts::BackupHost;
use barman_integration::scratch::{chown_recursive, write_file};
use barman_integration::{cargo_bin, skip_unless, OsUser, PgCluster, PgOptions, RealBarman, Sshd, SshdOptions};

/// An sshd for the backup host whose remote `barman` is ours with the primary's
/// configuration and the GnuPG home, as the `barman` user's login environment would give it.
fn backup_host_sshd(s: &Setup, g: &Gnupg) -> Result<Sshd> {
    let bin_dir = s.scratch.unique_dir("remote-bin", "barman")?;
    let wrapper = format!(
        "#!/bin/sh\nGNUPGHOME='{}'\nBARMAN_CONFIG_FILE='{}'\nexport GNUPGHOME BARMAN_CONFIG_FILE\nexec '{}' \"$@\"\n",
        g.home.display(),
        s.barman.config_path().display(),
        cargo_bin("barman")?.display()
    );
    write_file(&bin_dir.join("barman"), wrapper, 0o755)?;
    let mut opts = SshdOptions::default().listen_in(None, "127.0.0.1");
    opts.remote_path.insert(0, bin_dir);
    Sshd::start(&s.scratch, opts)
}

/// `barman` on the primary with the GnuPG home.
fn barman(s: &Setup, g: &Gnupg, args: &[&str]) -> Result<String> {
    let mut c = s.barman.command(args);
    c.env("GNUPGHOME", &g.home);
    let o = execute(&mut c, None, Duration::from_mins(3))?;
    o.success().with_context(|| format!("barman {args:?}\n{}", s.barman.log()))?;
    Ok(o.stdout_str())
}

fn replace_config(path: &Path, from: &str, to: &str) -> Result<()> {
    let text = fs::read_to_string(path)?;
    ensure!(text.contains(from), "{} lacks {from:?}", path.display());
    fs::write(path, text.replacen(from, to, 1))?;
    Ok(())
}

/// `barman-wal-restore` (ours, or `program`) as `postgres`, reaching `sshd`.
fn wal_restore(program: &Path, s: &Setup, sshd: &Sshd, args: &[&str]) -> Result<Outcome> {
    let mut c = Command::new(program);
    as_user(&mut c, &OsUser::lookup("postgres")?);
    let path = format!("{}:{}:/usr/bin:/bin", sshd.ssh_wrapper_dir_for("postgres")?.display(), target_dir().display());
    c.env("PATH", path).args(["-U", "barman", "-c"]).arg(s.barman.config_path());
    c.args(["--port", &sshd.port().to_string(), "127.0.0.1"]).args(args);
    execute(&mut c, None, Duration::from_mins(2))
}

fn ids(pg: &PgCluster) -> Result<String> {
    pg.psql("select coalesce(string_agg(id::text, ',' order by id), '') from t")
}

/// Recovers with `barman recover --get-wal --target-time` from `home` (with the GnuPG home)
/// into a fresh directory, points `restore_command` at our `barman-wal-restore` over
/// `sshd`, starts PostgreSQL and returns the rows and how many segments it restored.
fn get_wal_pitr(s: &Setup, g: &Gnupg, sshd: &Sshd, id: &str, time: &str) -> Result<(String, usize)> {
    let root = s.scratch.unique_dir("pitr", "barman")?;
    let dest = root.join("pgdata");
    let dest_s = dest.to_str().context("utf8")?;
    let args = ["recover", "--get-wal", "--target-time", time, "--target-action", "promote", "pg", id, dest_s];
    barman(s, g, &args)?;
    let spool = s.scratch.mkdir_owned_mode(root.join("spool"), "postgres", 0o700)?;
    let restore = format!(
        "barman-wal-restore -p 4 --spool-dir {} -U barman -c {} --port {} 127.0.0.1 pg %f %p",
        spool.join("walrestore").display(),
        s.barman.config_path().display(),
        sshd.port()
    );
    let auto = dest.join("postgresql.auto.conf");
    let text = fs::read_to_string(&auto)?;
    ensure!(text.contains("restore_command = 'barman get-wal"), "recover --get-wal wrote:\n{text}");
    let text: Vec<String> = text
        .lines()
        .map(|l| if l.starts_with("restore_command = ") { format!("restore_command = '{restore}'") } else { l.into() })
        .collect();
    fs::write(&auto, text.join("\n") + "\n")?;
    chown_recursive(&dest, &OsUser::lookup("postgres")?)?;
    let opts = PgOptions::default().path_prefix(sshd.ssh_wrapper_dir_for("postgres")?).path_prefix(target_dir());
    let restored = PgCluster::start_existing(&s.scratch, &dest, opts)?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    let rows = ids(&restored)?;
    let restored_segments = restored.log().matches("restored log file \"0000").count();
    Ok((rows, restored_segments))
}

/// The passive: its own home and configuration (same key id and passphrase command),
/// pulling `pg` from the backup host through `sshd`.
fn passive(s: &Setup, g: &Gnupg, sshd: &Sshd) -> Result<BackupHost> {
    let mut b = BackupHost::start(&s.scratch, "passive", &cargo_bin("barman")?, None)?;
    b.home.add_path_prefix(sshd.ssh_wrapper_dir_for("barman")?);
    let mut lines = vec![
        "description = \"encrypted passive copy\"".to_string(),
        format!("primary_ssh_command = ssh barman@{}", sshd.host()),
    ];
    lines.extend(g.server_lines(&s.scratch)?);
    b.home.add_raw_server("pg", &lines.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(b)
}

fn encrypted_wal_count(layout: &ServerLayout) -> Result<usize> {
    let text = fs::read_to_string(layout.xlogdb_path())?;
    let mut n = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        ensure!(f.len() == 5 && f[4] == "gpg", "xlog.db line {line:?}");
        let path = layout.wal_path(&f[0].parse()?);
        ensure!(barman_common::gpg::is_encrypted_file(&path)?, "{} is stored in clear", path.display());
        n += 1;
    }
    Ok(n)
}

fn real_client() -> Result<PathBuf> {
    Ok(RealBarman::require()?.bin("barman-wal-restore"))
}

#[test]
fn encrypted_catalogue_through_barman_wal_restore_and_a_passive() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(real_client());
    let mut gnupg = None;
    let s = Setup::start_with("gpg remote", |scratch| {
        let g = Gnupg::generate(scratch)?;
        let lines = g.server_lines(scratch)?;
        gnupg = Some(g);
        Ok(lines)
    })?;
    let g = gnupg.context("key generated")?;
    let sshd = backup_host_sshd(&s, &g)?;

    s.pg.psql("create table t(id int primary key)")?;
    s.pg.psql("insert into t values (0)")?;
    barman(&s, &g, &["backup", "pg", "--wait", "--immediate-checkpoint"])?;
    let id = s.barman.done_backups("pg")?.into_iter().next().context("no DONE backup")?;
    for i in 1..=3 {
        s.pg.psql(&format!("insert into t values ({i}); select pg_switch_wal()"))?;
    }
    s.pg.psql("select pg_sleep(0.3)")?;
    let time = s.pg.psql("select clock_timestamp()::text")?;
    s.pg.psql("select pg_sleep(0.3)")?;
    s.pg.psql("insert into t values (99)")?;
    let last = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&last, Duration::from_mins(1))?;
    barman(&s, &g, &["archive-wal", "pg"])?;
    let count = encrypted_wal_count(&s.layout())?;
    ensure!(count >= 4, "only {count} encrypted WAL files");

    // 1. PITR through barman-wal-restore over ssh.
    let (rows, restored) = get_wal_pitr(&s, &g, &sshd, &id, &time)?;
    ensure!(rows == "0,1,2,3", "PITR through barman-wal-restore: rows {rows}");
    ensure!(restored >= 3, "only {restored} segments came through barman-wal-restore");
    ensure!(sshd.log().contains("Accepted publickey for barman"), "no ssh session reached the backup host");
    ensure!(!s.barman.log().contains(PASSPHRASE), "passphrase in the log");

    // 2. A wrong passphrase through barman-wal-restore: ours and Barman's client.
    let cfg = s.barman.config_path();
    replace_config(&cfg, "pass/good", "pass/bad")?;
    for (who, program) in [("ours", cargo_bin("barman-wal-restore")?), ("Barman's", real)] {
        let out_dir = s.scratch.unique_dir("wrong", "postgres")?;
        let target = out_dir.join(&last);
        let target_s = target.to_str().context("utf8")?;
        let o = wal_restore(&program, &s, &sshd, &["-p", "1", "pg", &last, target_s])?;
        let err = o.stderr_str();
        eprintln!("{who} barman-wal-restore, wrong passphrase: exit {:?}: {}", o.code(), err.trim());
        ensure!(o.code() == Some(3), "{who}: exit {:?}, want get-wal's 3: {err}", o.code());
        ensure!(err.contains("Bad passphrase"), "{who}: get-wal's error did not reach the caller: {err}");
        ensure!(err.contains("Remote 'barman get-wal' command has failed!"), "{who}: {err}");
        // Barman's client opens WAL_DEST before it runs ssh and leaves it empty; ours writes
        // nothing at all.
        let written = fs::metadata(&target).map(|m| m.len());
        match who {
            "ours" => ensure!(written.is_err(), "ours: {target_s} was written"),
            _ => ensure!(written.unwrap_or(0) == 0, "Barman's: {target_s} holds data"),
        }
    }
    replace_config(&cfg, "pass/bad", "pass/good")?;

    // 3. The relay of the encrypted catalogue, and a PITR from the passive alone.
    let host_b = passive(&s, &g, &sshd)?;
    let relay = host_b.relay(&["pg"])?;
    relay.success().with_context(|| host_b.home.log())?;
    ensure!(
        host_b.home.done_backups("pg")? == vec![id.clone()],
        "passive backups: {:?}",
        host_b.home.done_backups("pg")
    );
    let b_layout = ServerLayout::default_for(&host_b.home.home(), "pg");
    let b_n = encrypted_wal_count(&b_layout)?;
    ensure!(b_n >= 4, "the passive holds {b_n} encrypted WAL files");
    let dest = s.scratch.unique_dir("passive-rec", "barman")?.join("pgdata");
    let dest_s = dest.to_str().context("utf8")?;
    let mut c =
        host_b.home.command(&["recover", "--target-time", &time, "--target-action", "promote", "pg", &id, dest_s]);
    c.env("GNUPGHOME", &g.home);
    execute(&mut c, None, Duration::from_mins(3))?.success().with_context(|| host_b.home.log())?;
    chown_recursive(&dest, &OsUser::lookup("postgres")?)?;
    let restored = PgCluster::start_existing(&s.scratch, &dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    ensure!(ids(&restored)? == "0,1,2,3", "PITR from the passive: rows {}", ids(&restored)?);
    Ok(())
}
