//! Logging as Barman: for the same events on equivalent setups, our `log_file` holds the
//! lines real Barman 3.20.1 writes to its own (timestamps and pids masked): a `barman cron`
//! that enforces a retention policy (copies of one real catalogue with two backups), a
//! backup that fails (PostgreSQL unreachable) and a check that fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use barman_integration::cmd::{as_user, execute};
use barman_integration::scratch::{chown, write_file};
use barman_integration::{cargo_bin, real_barman_catalogue, skip_unless, OsUser, RealBarman, Scratch};

/// One configuration (copy of the fixture's, or a new one) with its own log file.
struct Setup {
    config: PathBuf,
    log: PathBuf,
}

impl Setup {
    fn new(scratch: &Scratch, name: &str, config_text: &str) -> Result<Setup> {
        let barman = OsUser::lookup("barman")?;
        let log = scratch.path().join(format!("{name}.log"));
        write_file(&log, "", 0o644)?;
        chown(&log, &barman)?;
        let config = scratch.path().join(format!("{name}.conf"));
        write_file(&config, config_text.replace("@LOG@", &log.display().to_string()), 0o644)?;
        Ok(Setup { config, log })
    }

    /// Runs `bin -c <config> args` as `barman`; returns the exit code.
    fn run(&self, bin: &Path, args: &[&str]) -> Result<Option<i32>> {
        let mut cmd = Command::new(bin);
        as_user(&mut cmd, &OsUser::lookup("barman")?);
        cmd.env(
            "PATH",
            format!("{}:/usr/lib/postgresql/15/bin:/usr/bin:/bin", bin.parent().expect("bin dir").display()),
        );
        cmd.arg("-c").arg(&self.config).args(args);
        Ok(execute(&mut cmd, None, Duration::from_mins(2))?.code())
    }

    /// The log's lines with the time and pid masked, and `masks` replaced by `<X>`.
    fn lines(&self, masks: &[&str]) -> Result<Vec<String>> {
        let text = fs::read_to_string(&self.log)?;
        Ok(text.lines().map(|l| normalise(l, masks)).collect())
    }
}

/// `2026-12-07 22:10:00,123 [4242] barman.x INFO: m` -> `barman.x INFO: m`, with `masks`
/// and the clock-dependent parts of the `Deleted backup` line replaced by `<X>`.
fn normalise(line: &str, masks: &[&str]) -> String {
    let rest = line.split_once("] ").map_or(line, |(_, r)| r);
    let mut rest = rest.to_owned();
    for m in masks {
        rest = rest.replace(m, "<X>");
    }
    if let Some(a) = rest.find("(start time: ").filter(|_| rest.contains(", elapsed time: ")) {
        rest.replace_range(a.., "(start time: <X>, elapsed time: <X>)");
    }
    rest
}

fn copy_home(scratch: &Scratch, home: &Path, config: &Path, log: &Path, name: &str, extra: &str) -> Result<Setup> {
    let dest = scratch.path().join(name);
    let status = Command::new("cp").arg("-a").arg(home).arg(&dest).status()?;
    ensure!(status.success(), "cp -a failed");
    let text = fs::read_to_string(config)?
        .replace(&home.display().to_string(), &dest.display().to_string())
        .replace(&log.display().to_string(), "@LOG@");
    Setup::new(scratch, name, &format!("{text}{extra}"))
}

/// Lines of `real` missing from `ours`.
fn missing(real: &[String], ours: &[String]) -> Vec<String> {
    real.iter().filter(|l| !ours.contains(l)).cloned().collect()
}

#[test]
fn cron_retention_failed_backup_and_failed_check_log_as_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("logging")?;
    let fixture = real_barman_catalogue(&scratch)?;
    fixture.barman.run(&["backup", "--wait", "pg"])?;
    let real = RealBarman::require()?.bin("barman");
    let ours = cargo_bin("barman")?;
    let home = fixture.barman.home();
    let log = home.parent().expect("home dir").join("barman.log");
    let policy = "retention_policy = REDUNDANCY 1\n";
    let real_copy = copy_home(&scratch, &home, &fixture.barman.config_path(), &log, "cron-real", policy)?;
    let our_copy = copy_home(&scratch, &home, &fixture.barman.config_path(), &log, "cron-ours", policy)?;
    real_copy.run(&real, &["cron"])?;
    our_copy.run(&ours, &["cron"])?;
    // Barman's cron starts its archiver in the background: wait for the archiver's line.
    barman_integration::wait_until(Duration::from_secs(20), "Barman's archive-wal line", || {
        Ok(fs::read_to_string(&real_copy.log)?.contains("xlog segments"))
    })?;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (r, o) = (sorted(real_copy.lines(&["cron-real"])?), sorted(our_copy.lines(&["cron-ours"])?));
    report("cron enforcing REDUNDANCY 1", &r, &o);
    ensure!(
        r.iter().any(|l| l.starts_with("barman.backup INFO: Deleted backup")),
        "real Barman's cron deleted nothing"
    );
    // Barman's archiver runs concurrently with the deletions: the lines are compared as sets.
    ensure!(r == o, "cron: the logs differ:\n--- Barman\n{}\n--- ours\n{}", r.join("\n"), o.join("\n"));

    // PostgreSQL unreachable: the backup is refused after its checks, and check fails.
    let bad = "[barman]\nbarman_home = @HOME@\nbarman_user = barman\nlog_file = @LOG@\nlog_level = INFO\n\n\
               [bad]\nconninfo = host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=2\n\
               streaming_conninfo = host=127.0.0.1 port=1 user=postgres\nbackup_method = postgres\n\
               archiver = on\n";
    let mut logs = Vec::new();
    for (name, bin) in [("bad-real", &real), ("bad-ours", &ours)] {
        let home = scratch.mkdir_owned(name, "barman")?;
        let setup = Setup::new(&scratch, name, &bad.replace("@HOME@", &home.display().to_string()))?;
        let backup = setup.run(bin, &["backup", "bad"])?;
        ensure!(backup == Some(1), "{name}: backup exit {backup:?}, expected 1");
        let backup_lines = setup.lines(&[name])?;
        let check = setup.run(bin, &["check", "bad"])?;
        ensure!(check == Some(1), "{name}: check exit {check:?}, expected 1");
        let all = setup.lines(&[name])?;
        logs.push((backup_lines.clone(), all[backup_lines.len()..].to_vec()));
    }
    let ((real_backup, real_check), (our_backup, our_check)) = (&logs[0], &logs[1]);
    report("failed backup", real_backup, our_backup);
    report("failed check", real_check, our_check);
    for (what, r, o) in [("backup", real_backup, our_backup), ("check", real_check, our_check)] {
        ensure!(r.iter().any(|l| l.contains(" ERROR: ")), "real Barman's failed {what} logged no error");
        ensure!(missing(r, o).is_empty(), "failed {what}: lines of Barman missing from ours: {:#?}", missing(r, o));
    }
    Ok(())
}

/// `backup --check-timeout 2` against a server that accepts connections and never answers:
/// the pre-backup checks give up after 2 s (not the server's `check_timeout` of 30 s), a
/// failed `check timeout` is logged and the backup is refused. (Real Barman 3.20.1 is not
/// compared here: without `connect_timeout` its psycopg2 connection waits forever.)
#[test]
fn backup_check_timeout_bounds_the_pre_backup_checks() -> Result<()> {
    let scratch = Scratch::new("logging timeout")?;
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port();
    let home = scratch.mkdir_owned("hang", "barman")?;
    let conf = format!(
        "[barman]\nbarman_home = {}\nbarman_user = barman\nlog_file = @LOG@\nlog_level = INFO\n\n\
         [hang]\nconninfo = host=127.0.0.1 port={port} user=postgres dbname=postgres\n\
         streaming_conninfo = host=127.0.0.1 port={port} user=postgres\nbackup_method = postgres\narchiver = on\n",
        home.display()
    );
    let setup = Setup::new(&scratch, "hang", &conf)?;
    let start = std::time::Instant::now();
    let code = setup.run(&cargo_bin("barman")?, &["backup", "--check-timeout", "2", "hang"])?;
    let took = start.elapsed();
    let log = setup.lines(&[])?;
    eprintln!("backup --check-timeout 2: exit {code:?} after {took:?}\n{}", log.join("\n"));
    ensure!(code == Some(1), "exit {code:?}");
    ensure!(took < Duration::from_secs(15), "the checks took {took:?}");
    for line in [
        "barman.server ERROR: Check 'check timeout' failed for server 'hang'",
        "barman.server ERROR: Impossible to start the backup. Check the log for more details, or run 'barman check hang'",
    ] {
        ensure!(log.iter().any(|l| l == line), "log lacks {line:?}");
    }
    drop(silent);
    Ok(())
}

/// Prints both logs of one event side by side (the test's evidence).
fn report(event: &str, real: &[String], ours: &[String]) {
    eprintln!("=== {event}\n--- Barman 3.20.1\n{}\n--- ours\n{}", real.join("\n"), ours.join("\n"));
}
