//! Issue 17: Barman's global options are honoured, not parsed and dropped: `--color`
//! colours `ERROR:` as Barman's `_red`, `-d` prints `DEBUG:` lines, `--log-level` sets the
//! log file's threshold, and `barman help [-h]` prints the usage. No PostgreSQL is needed.

use std::fs;
use std::process::{Command, Output};

use anyhow::{ensure, Result};
use barman_integration::{cargo_bin, Scratch};

fn barman(config: &std::path::Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(cargo_bin("barman")?).arg("-c").arg(config).args(args).output()?)
}

fn setup(scratch: &Scratch) -> Result<std::path::PathBuf> {
    let dir = scratch.path().display().to_string();
    let config = scratch.join("barman.conf");
    fs::create_dir_all(scratch.join("home"))?;
    fs::write(
        &config,
        format!(
            "[barman]\nbarman_home = {dir}/home\nbarman_user = root\nlog_file = {dir}/barman.log\nlog_level = INFO\n\n\
             [pg]\nconninfo = host=/nonexistent dbname=postgres\nbackup_method = postgres\n\
             streaming_conninfo = host=/nonexistent\narchiver = on\n"
        ),
    )?;
    Ok(config)
}

#[test]
fn color_debug_and_log_level_are_honoured() -> Result<()> {
    let scratch = Scratch::new("cli globals")?;
    let config = setup(&scratch)?;
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let red = barman(&config, &["--color", "always", "list-processes", "nosuch"])?;
    ensure!(err(&red) == "\x1b[31mERROR: Unknown server 'nosuch'\x1b[0m\n", "--color always: {:?}", err(&red));
    for plain in [&["--colour", "never"][..], &["--color", "auto"][..]] {
        let out = barman(&config, &[plain, &["list-processes", "nosuch"]].concat())?;
        ensure!(err(&out) == "ERROR: Unknown server 'nosuch'\n", "{plain:?}: {:?}", err(&out));
    }

    let range = ["check-archived-wal-range", "pg", "000000010000000000000001", "000000010000000000000003"];
    let debug = barman(&config, &[&["-d"][..], &range].concat())?;
    ensure!(err(&debug).contains("DEBUG: \tChecking WAL sequence from"), "-d: {:?}", err(&debug));
    ensure!(err(&debug).contains("No backup found for server 'pg'") && debug.status.code() == Some(1));
    let quiet = barman(&config, &range)?;
    ensure!(!err(&quiet).contains("DEBUG"), "no -d: {:?}", err(&quiet));

    let log = scratch.join("barman.log");
    let stale = scratch.join("home/.pg-20000101T000000.lock");
    fs::write(&stale, "")?;
    ensure!(barman(&config, &["--log-level", "DEBUG", "lock-directory-cleanup"])?.status.success());
    let text = fs::read_to_string(&log)?;
    ensure!(!stale.exists() && text.contains(" DEBUG: ") && text.contains("deleted"), "log at DEBUG:\n{text}");
    fs::write(&stale, "")?;
    ensure!(barman(&config, &["--log-level", "WARNING", "lock-directory-cleanup"])?.status.success());
    ensure!(fs::read_to_string(&log)? == text, "--log-level WARNING still logged INFO lines");
    let info = barman(&config, &["lock-directory-cleanup"])?;
    let after = fs::read_to_string(&log)?;
    ensure!(info.status.success() && after.len() > text.len() && !after[text.len()..].contains(" DEBUG: "));
    Ok(())
}

#[test]
fn help_subcommand_prints_the_usage() -> Result<()> {
    for args in [&["help"][..], &["help", "-h"][..]] {
        let out = Command::new(cargo_bin("barman")?).args(args).output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success() && stdout.contains("Usage: barman"), "barman {args:?}: {stdout}");
    }
    Ok(())
}
