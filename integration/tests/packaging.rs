//! `packaging/install.sh` into a temporary root installs everything, and the installed
//! binaries run.

use std::process::Command;

use anyhow::{ensure, Result};

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
        "lib/systemd/system/barman-receive-wal@.service",
        "lib/systemd/system/barman-relay@.service",
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
