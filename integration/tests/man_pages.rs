//! The committed man pages are the ones the clap definitions generate, and `man` renders them.

use std::process::Command;

use anyhow::{ensure, Context, Result};

#[test]
fn committed_man_pages_are_current_and_render() -> Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
    for page in barman_integration::man::pages()? {
        let path = dir.join(&page.file);
        let committed = std::fs::read_to_string(&path).with_context(|| format!("{} missing", path.display()))?;
        ensure!(committed == page.text, "{} is stale: run `cargo run -p barman-integration --bin gen-man`", page.file);
        ensure!(page.text.contains(".SH \"EXIT STATUS\""), "{} has no EXIT STATUS", page.file);
        let out = Command::new("man").arg("-l").arg("-P").arg("cat").arg(&path).env("MANWIDTH", "80").output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            ensure!(out.status.success() && text.contains("EXIT STATUS"), "man -l {} failed: {text}", path.display());
        }
    }
    for file in barman_integration::man::extras()? {
        let path = dir.join(&file.file);
        let committed = std::fs::read_to_string(&path).with_context(|| format!("{} missing", path.display()))?;
        ensure!(committed == file.text, "{} is stale: run `cargo run -p barman-integration --bin gen-man`", file.file);
    }
    let five = dir.join("barman.5");
    if let Ok(out) = Command::new("man").arg("-l").arg("-P").arg("cat").arg(&five).env("MANWIDTH", "80").output() {
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && text.contains("SERVER OPTIONS") && text.contains("retention_policy"),
            "barman.5: {text}"
        );
    }
    Ok(())
}
