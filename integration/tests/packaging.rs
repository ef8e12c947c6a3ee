//! `packaging/install.sh` into a temporary root installs everything, honours its prefix and
//! never overwrites an operator's configuration; the Debian packages built by
//! `packaging/deb/build.sh` install with dpkg on this machine, `barman check` runs from them
//! on a configuration, and they purge cleanly.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use barman_integration::cmd::execute;
use barman_integration::{require_root, skip_unless, OsUser, PgCluster, PgOptions, Scratch};

#[test]
fn install_script_puts_everything_in_place() -> Result<()> {
    let root = tempfile::tempdir()?;
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Install the binaries this test run built (the script builds release ones by default).
    let status = Command::new("bash")
        .arg(ws.join("packaging/install.sh"))
        .args(["--prefix", "/usr", "--from"])
        .arg(barman_integration::cmd::target_dir())
        .arg("--destdir")
        .arg(root.path())
        .status()?;
    ensure!(status.success(), "install.sh failed");
    for f in [
        "usr/bin/barman",
        "usr/bin/barman-wal-archive",
        "usr/bin/barman-wal-restore",
        "usr/share/man/man1/barman.1",
        "etc/cron.d/barman",
        "etc/logrotate.d/barman",
        "etc/barman.conf",
        "usr/lib/systemd/system/barman-receive-wal@.service",
        "usr/lib/systemd/system/barman-relay@.service",
        "usr/share/man/man5/barman.5",
        "usr/share/bash-completion/completions/barman",
        "usr/share/zsh/vendor-completions/_barman",
        "usr/bin/barman-relay",
        "usr/share/man/man1/barman-relay.1",
    ] {
        ensure!(root.path().join(f).exists(), "{f} not installed");
    }
    let out = Command::new(root.path().join("usr/bin/barman")).arg("--version").output()?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("barman"),
        "installed barman --version failed"
    );
    let cron = std::fs::read_to_string(root.path().join("etc/cron.d/barman"))?;
    ensure!(cron.contains("barman -q cron"));
    Ok(())
}

#[test]
fn install_script_keeps_existing_configuration_and_honours_its_prefix() -> Result<()> {
    let root = tempfile::tempdir()?;
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mine = ["etc/cron.d/barman", "etc/logrotate.d/barman", "etc/barman.conf", "etc/barman.d/pg.conf-template"];
    for f in mine {
        let path = root.path().join(f);
        fs::create_dir_all(path.parent().expect("a parent"))?;
        fs::write(&path, "# the operator's own\n")?;
    }
    let status = Command::new("bash")
        .arg(ws.join("packaging/install.sh"))
        .args(["--prefix", "/usr/local", "--from"])
        .arg(barman_integration::cmd::target_dir())
        .arg("--destdir")
        .arg(root.path())
        .status()?;
    ensure!(status.success(), "install.sh failed");
    for f in mine {
        ensure!(fs::read_to_string(root.path().join(f))? == "# the operator's own\n", "{f} was overwritten");
        let new = fs::read_to_string(root.path().join(format!("{f}.new")))?;
        ensure!(!new.contains("operator's own"), "{f}.new is not the shipped file");
    }
    ensure!(
        root.path().join("usr/local/bin/barman").exists() && !root.path().join("usr/bin").exists(),
        "prefix ignored"
    );
    let cron = fs::read_to_string(root.path().join("etc/cron.d/barman.new"))?;
    ensure!(cron.contains("/usr/local/bin/barman -q cron") && !cron.contains("/usr/bin/"), "cron.d: {cron}");
    let unit = fs::read_to_string(root.path().join("usr/local/lib/systemd/system/barman-receive-wal@.service"))?;
    ensure!(unit.contains("ExecStart=/usr/local/bin/barman ") && !unit.contains("/usr/bin/"), "unit: {unit}");
    Ok(())
}

fn dpkg(args: &[&str]) -> Result<barman_integration::Outcome> {
    execute(Command::new("dpkg").args(args).env("DEBIAN_FRONTEND", "noninteractive"), None, Duration::from_mins(3))
}

fn installed(package: &str) -> Result<bool> {
    let out = execute(
        Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", package]),
        None,
        Duration::from_secs(30),
    )?;
    Ok(out.stdout_str() == "installed")
}

/// The Debian packages: build, install with dpkg, `barman check` as root (running as
/// `barman`), purge.
#[test]
fn debian_packages_build_install_check_and_purge() -> Result<()> {
    skip_unless!(require_root());
    skip_unless!(PgCluster::require());
    for theirs in ["barman", "barman-cli"] {
        if installed(theirs)? {
            bail!("Debian's {theirs} is installed: the package test would have to remove it");
        }
    }
    let scratch = Scratch::new("packaging")?;
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = scratch.mkdir("debs")?;
    let build = execute(
        Command::new("bash")
            .arg(ws.join("packaging/deb/build.sh"))
            .arg("--from")
            .arg(barman_integration::cmd::target_dir())
            .arg("--out")
            .arg(&out_dir),
        None,
        Duration::from_mins(5),
    )?;
    build.success()?;
    let debs: Vec<String> = build.stdout_str().lines().map(str::to_owned).collect();
    ensure!(debs.len() == 2, "expected two packages: {debs:?}");
    for (deb, conflicts) in debs.iter().zip(["barman, barman-cli", "barman-cli"]) {
        let field = execute(Command::new("dpkg-deb").args(["-f", deb, "Conflicts"]), None, Duration::from_secs(30))?;
        ensure!(field.stdout_str().trim() == conflicts, "{deb}: Conflicts {}", field.stdout_str());
    }
    // A previous interrupted run may have left them installed.
    dpkg(&["--purge", "barman-rs", "barman-rs-cli"])?;
    let result = install_and_check(&scratch, &debs);
    let purge = dpkg(&["--purge", "barman-rs", "barman-rs-cli"])?;
    result?;
    purge.success()?;
    for gone in [
        "/usr/bin/barman",
        "/usr/bin/barman-wal-archive",
        "/etc/barman.conf",
        "/etc/cron.d/barman",
        "/etc/logrotate.d/barman",
        "/var/log/barman",
        "/usr/lib/systemd/system/barman-cron.timer",
    ] {
        ensure!(!Path::new(gone).exists(), "{gone} left behind by the purge");
    }
    ensure!(!installed("barman-rs")? && !installed("barman-rs-cli")?, "still installed after purge");
    ensure!(Path::new("/var/lib/barman").is_dir(), "the purge removed the catalogue root");
    Ok(())
}

fn install_and_check(scratch: &Scratch, debs: &[String]) -> Result<()> {
    let mut args = vec!["--force-confold", "--force-confdef", "-i"];
    args.extend(debs.iter().map(String::as_str));
    dpkg(&args)?.success()?;
    ensure!(installed("barman-rs")? && installed("barman-rs-cli")?, "not installed");
    let barman = OsUser::lookup("barman")?;
    for (dir, mode) in [("/var/lib/barman", 0o700), ("/var/log/barman", 0o755)] {
        let m = fs::metadata(dir)?;
        ensure!(
            m.uid() == barman.uid && m.permissions().mode() & 0o7777 == mode,
            "{dir}: {:o} uid {}",
            m.permissions().mode(),
            m.uid()
        );
    }
    let conffiles = execute(
        Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "barman-rs"]),
        None,
        Duration::from_secs(30),
    )?;
    for f in ["/etc/barman.conf", "/etc/barman.d/pg.conf-template", "/etc/cron.d/barman", "/etc/logrotate.d/barman"] {
        ensure!(conffiles.stdout_str().contains(f), "{f} is not a conffile: {}", conffiles.stdout_str());
    }
    for f in [
        "/usr/bin/barman-backup",
        "/usr/bin/barman-wal-restore",
        "/usr/share/man/man5/barman.5",
        "/usr/share/bash-completion/completions/barman",
        "/usr/lib/systemd/system/barman-relay@.service",
    ] {
        ensure!(Path::new(f).exists(), "{f} not installed");
    }
    let pg = PgCluster::start(scratch, PgOptions::default())?;
    let home = scratch.mkdir_owned("home", "barman")?;
    let config = scratch.write(
        "barman.conf",
        format!(
            "[barman]\nbarman_home = {}\nlog_file = /var/log/barman/barman.log\n\n[pg]\nconninfo = {}\n\
             streaming_conninfo = host={} port={} user=postgres\nbackup_method = postgres\narchiver = on\n",
            home.display(),
            pg.conninfo(),
            pg.socket_dir().display(),
            pg.port()
        ),
    )?;
    // As root, as an operator would: the command becomes the package's barman user.
    let check = execute(
        Command::new("/usr/bin/barman").arg("-c").arg(&config).args(["check", "pg"]),
        None,
        Duration::from_mins(1),
    )?;
    let text = check.stdout_str();
    for line in ["Server pg:", "\tPostgreSQL: OK", "\tdirectories: OK", "\tpg_basebackup compatible: OK"] {
        ensure!(text.contains(line), "barman check lacks {line:?}:\n{text}{}", check.stderr_str());
    }
    let log = fs::metadata("/var/log/barman/barman.log")?;
    ensure!(log.uid() == barman.uid, "the log is not owned by barman");
    eprintln!("installed barman check pg (exit {:?}):\n{text}", check.code());
    Ok(())
}
