//! `packaging/install.sh` into a temporary root installs everything, and the installed
//! binaries run.

use std::process::Command;

use anyhow::{ensure, Result};

#[test]
fn install_script_puts_everything_in_place() -> Result<()> {
    let root = tempfile::tempdir()?;
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let release = ws.join("target/release/barman");
    // The script builds release binaries itself; in the test suite, reuse the debug ones.
    let debug_dir = barman_integration::cmd::target_dir();
    let staged = ws.join("target/release");
    std::fs::create_dir_all(&staged)?;
    for b in
        ["barman", "barman-wal-archive", "barman-wal-restore", "barman-receive-wal", "barman-backup", "barman-relay"]
    {
        let src = debug_dir.join(b);
        if src.exists() && !staged.join(b).exists() {
            std::fs::copy(&src, staged.join(b))?;
        }
    }
    let status = Command::new("bash")
        .arg(ws.join("packaging/install.sh"))
        .args(["--prefix", "/usr", "--no-build", "--destdir"])
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
    let _ = release;
    Ok(())
}
