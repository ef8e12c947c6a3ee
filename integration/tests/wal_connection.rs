//! The Postgres-host clients share one ssh connection per backup host (an ssh
//! `ControlMaster` in a private directory), and its failures are handled as a fresh
//! connection's would be: a master killed with SIGKILL leaves a stale socket that the next
//! call replaces; a backup host that goes away fails the call at once (ssh's 255, no hang on
//! the dead master), and a host back up is reached again; a control directory others could
//! enter disables reuse with a warning instead of riding it.
//!
//! Each test points `XDG_RUNTIME_DIR` at its own directory, so its control sockets are its
//! own.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use barman_integration::cmd::{as_user, execute, Outcome};
use barman_integration::pg::SYSTEM_PATH;
use barman_integration::{cargo_bin, skip_unless, BarmanHome, OsUser, Scratch, Sshd, SshdOptions};

/// `barman-wal-archive --test` (put-wal --test through the shared connection) as postgres.
fn archive_test(sshd: &Sshd, barman: &BarmanHome, xdg: &Path) -> Result<Outcome> {
    client(sshd, barman, xdg, "barman-wal-archive", &["-t", "127.0.0.1", "pg", "DUMMY"])
}

fn client(sshd: &Sshd, barman: &BarmanHome, xdg: &Path, tool: &str, args: &[&str]) -> Result<Outcome> {
    client_via(&sshd.ssh_wrapper_dir_for("postgres")?, barman, xdg, tool, args)
}

/// `tool -c CONFIG args…` as postgres, with `wrapper` (an ssh reaching one sshd) on PATH.
fn client_via(wrapper: &Path, barman: &BarmanHome, xdg: &Path, tool: &str, args: &[&str]) -> Result<Outcome> {
    let mut cmd = Command::new(cargo_bin(tool)?);
    cmd.arg("-c").arg(barman.config_path()).args(args);
    as_user(&mut cmd, &OsUser::lookup("postgres")?);
    cmd.env("PATH", format!("{}:{SYSTEM_PATH}", wrapper.display()));
    cmd.env("XDG_RUNTIME_DIR", xdg);
    execute(&mut cmd, None, Duration::from_mins(1))
}

fn accepted(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey").count()
}

/// Live ssh masters whose command line names `dir` (`ssh: <dir>/<hash> [mux]`).
fn masters(dir: &Path) -> Vec<i32> {
    let needle = dir.display().to_string();
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
            String::from_utf8_lossy(&cmdline).contains(&needle) && !zombie
        })
        .collect()
}

fn setup(name: &str) -> Result<(Scratch, Sshd, BarmanHome, PathBuf)> {
    let scratch = Scratch::new(name)?;
    let sshd = Sshd::start(&scratch, SshdOptions::default())?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    barman.add_raw_server(
        "pg",
        &["description = mux", "conninfo = host=/nonexistent", "backup_method = postgres", "archiver = on"],
    )?;
    let xdg = scratch.mkdir_owned_mode("xdg", "postgres", 0o700)?;
    Ok((scratch, sshd, barman, xdg))
}

#[test]
fn shared_connection_survives_a_killed_master_and_a_host_restart() -> Result<()> {
    skip_unless!(Sshd::require());
    let (scratch, sshd, barman, xdg) = setup("wal mux")?;
    let control = xdg.join("barman-ssh");

    archive_test(&sshd, &barman, &xdg)?.success()?;
    let md = fs::metadata(&control)?;
    ensure!(md.mode() & 0o777 == 0o700, "control dir mode {:o}", md.mode() & 0o777);
    ensure!(md.uid() == OsUser::lookup("postgres")?.uid, "control dir not owned by postgres");
    ensure!(masters(&control).len() == 1, "no ssh master after the first call");
    for _ in 0..5 {
        archive_test(&sshd, &barman, &xdg)?.success()?;
    }
    client(&sshd, &barman, &xdg, "barman-wal-restore", &["-t", "127.0.0.1", "pg", "DUMMY", "DUMMY"])?.success()?;
    ensure!(accepted(&sshd) == 1, "7 calls made {} ssh connections, not 1", accepted(&sshd));

    // A master killed outright leaves its socket behind: the next call replaces it.
    for pid in masters(&control) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)?;
    }
    ensure!(fs::read_dir(&control)?.count() == 1, "the stale socket should still be there");
    archive_test(&sshd, &barman, &xdg)?.success()?;
    ensure!(accepted(&sshd) == 2, "after the kill: {} connections, expected a second one", accepted(&sshd));

    // The backup host goes away (sshd and its sessions): the call fails at once with ssh's
    // connection status, as without a shared connection.
    let dead_host = sshd.ssh_wrapper_dir_for("postgres")?;
    drop(sshd);
    let start = Instant::now();
    let down = client_via(&dead_host, &barman, &xdg, "barman-wal-archive", &["-t", "127.0.0.1", "pg", "DUMMY"])?;
    ensure!(down.code() != Some(0), "a call to a dead host succeeded");
    ensure!(start.elapsed() < Duration::from_secs(20), "a call to a dead host took {:?}", start.elapsed());
    ensure!(masters(&control).is_empty(), "a master outlived its host");

    // The host is back (a new sshd): reached again with a new shared connection.
    let sshd = Sshd::start(&scratch, SshdOptions::default().listen_in(None, "127.0.0.1"))?;
    archive_test(&sshd, &barman, &xdg)?.success()?;
    archive_test(&sshd, &barman, &xdg)?.success()?;
    ensure!(accepted(&sshd) == 1, "the new host saw {} connections for 2 calls", accepted(&sshd));
    Ok(())
}

#[test]
fn a_control_directory_others_can_enter_disables_reuse() -> Result<()> {
    skip_unless!(Sshd::require());
    let (_scratch, sshd, barman, xdg) = setup("wal mux unsafe")?;
    let control = xdg.join("barman-ssh");
    fs::create_dir(&control)?;
    barman_integration::scratch::chown(&control, &OsUser::lookup("postgres")?)?;
    fs::set_permissions(&control, fs::Permissions::from_mode(0o755))?;
    let first = archive_test(&sshd, &barman, &xdg)?;
    first.success()?;
    first.stderr_contains("ssh connection reuse disabled")?;
    archive_test(&sshd, &barman, &xdg)?.success()?;
    ensure!(accepted(&sshd) == 2, "{} connections: reuse was not disabled", accepted(&sshd));
    ensure!(fs::read_dir(&control)?.count() == 0, "a socket was created in the unsafe directory");
    Ok(())
}
