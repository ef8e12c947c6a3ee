//! The workspace's layering, checked on the code itself: no crate under `bins/` depends on
//! another crate under `bins/`, the server core depends only on `barman-common`, no module
//! imports a module that imports it back, and no product file or function is over the
//! size limits (the README's "Layout" section).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Each workspace crate's name, its directory relative to the workspace, and the names of
/// the workspace crates it depends on (any kind of dependency).
fn crates() -> Result<BTreeMap<String, (String, Vec<String>)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace())
        .output()
        .context("cargo metadata")?;
    ensure!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let root = meta["workspace_root"].as_str().context("workspace_root")?.to_owned();
    let packages = meta["packages"].as_array().context("packages")?;
    let names: Vec<String> = packages.iter().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect();
    let mut map = BTreeMap::new();
    for p in packages {
        let name = p["name"].as_str().context("name")?.to_owned();
        let manifest = p["manifest_path"].as_str().context("manifest_path")?;
        let dir = Path::new(manifest).parent().context("dir")?.strip_prefix(&root)?.display().to_string();
        let deps = p["dependencies"]
            .as_array()
            .context("dependencies")?
            .iter()
            .filter_map(|d| d["name"].as_str())
            .filter(|d| names.iter().any(|n| n == d))
            .map(str::to_owned)
            .collect();
        map.insert(name, (dir, deps));
    }
    Ok(map)
}

#[test]
fn no_binary_crate_depends_on_another() -> Result<()> {
    let crates = crates()?;
    let bins: Vec<&String> = crates.iter().filter(|(_, (dir, _))| dir.starts_with("bins/")).map(|(n, _)| n).collect();
    ensure!(bins.len() >= 6, "expected the six binaries under bins/, found {bins:?}");
    for name in &bins {
        let deps = &crates[*name].1;
        let bad: Vec<&String> = deps.iter().filter(|d| bins.contains(d)).collect();
        ensure!(bad.is_empty(), "{name} depends on other bins crates: {bad:?}");
        let allowed = ["barman-common", "barman-server", "barman-cloud"];
        ensure!(deps.iter().all(|d| allowed.contains(&d.as_str())), "{name} depends on {deps:?}");
    }
    ensure!(crates["barman-common"].1.is_empty(), "barman-common depends on {:?}", crates["barman-common"].1);
    ensure!(crates["barman-server"].1 == ["barman-common"], "barman-server depends on {:?}", crates["barman-server"].1);
    let cloud = &crates["barman-cloud"].1;
    ensure!(cloud.iter().all(|d| d == "barman-common" || d == "barman-server"), "barman-cloud depends on {cloud:?}");
    Ok(())
}

fn tool(script: &str) -> Result<()> {
    let out = Command::new("python3").arg(workspace().join("integration/tools").join(script)).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{script} reports:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[test]
fn no_module_import_cycles() -> Result<()> {
    tool("module-cycles.py")
}

#[test]
fn no_product_file_or_function_over_the_limits() -> Result<()> {
    tool("code-sizes.py")
}
