//! Recovery hook scripts: real Barman 3.20.1 and our `barman recover` restore the same real
//! backup with `pre_recovery_script`, `pre_recovery_retry_script`,
//! `post_recovery_retry_script` and `post_recovery_script` configured. Both run the same
//! scripts, in the same order, with the same `BARMAN_*` variables (destinations
//! normalised); a pre retry script exiting 63 (ABORT_STOP) stops both recoveries the same
//! way, before anything is written.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use barman_integration::cmd::execute;
use barman_integration::scratch::write_file;
use barman_integration::{cargo_bin, real_barman_catalogue, skip_unless, BarmanHome, RealBarman, Scratch};

const HOOK: &str = "#!/bin/sh\n\
    n=$(ls \"$HOOK_OUT\" | wc -l)\n\
    env | grep '^BARMAN_' | sort > \"$HOOK_OUT/$(printf %02d \"$n\")-$BARMAN_PHASE-$BARMAN_HOOK\"\n\
    if [ \"$BARMAN_HOOK\" = recovery_retry_script ] && [ \"$BARMAN_PHASE\" = pre ]; then exit \"${HOOK_RETRY_EXIT:-0}\"; fi\n\
    exit 0\n";

/// Runs `bin` (real Barman's or ours) on the home's configuration with the hooks writing
/// into `out`; returns (exit code, stderr).
fn recover(
    barman: &BarmanHome,
    bin: &Path,
    out: &Path,
    retry_exit: i32,
    args: &[&str],
) -> Result<(Option<i32>, String)> {
    fs::create_dir_all(out)?;
    barman_integration::scratch::chown_recursive(out, barman.user())?;
    let mut cmd: Command = barman.program_command(bin, args);
    cmd.env("HOOK_OUT", out).env("HOOK_RETRY_EXIT", retry_exit.to_string());
    let outcome = execute(&mut cmd, None, Duration::from_mins(3))?;
    Ok((outcome.code(), outcome.stderr_str()))
}

/// The dumps in call order: (`<phase>-<hook>`, variables).
fn dumps(dir: &Path, masks: &[(&str, &str)]) -> Result<Vec<(String, BTreeMap<String, String>)>> {
    let mut names: Vec<String> =
        fs::read_dir(dir)?.map(|e| Ok(e?.file_name().to_string_lossy().into_owned())).collect::<Result<_>>()?;
    names.sort();
    let mut all = Vec::new();
    for name in names {
        let mut text = fs::read_to_string(dir.join(&name))?;
        for (from, to) in masks {
            text = text.replace(from, to);
        }
        let vars = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        all.push((name[3..].to_owned(), vars));
    }
    Ok(all)
}

#[test]
fn recovery_hooks_run_as_real_barman_runs_them() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("recovery hooks")?;
    let mut fixture = real_barman_catalogue(&scratch)?;
    let hook = scratch.path().join("hook.sh");
    write_file(&hook, HOOK, 0o755)?;
    let h = hook.display();
    fixture.barman.add_global(&[
        &format!("pre_recovery_script = {h}"),
        &format!("pre_recovery_retry_script = {h}"),
        &format!("post_recovery_retry_script = {h}"),
        &format!("post_recovery_script = {h}"),
    ])?;
    let barman = &fixture.barman;
    let id = barman.done_backups("pg")?.first().cloned().expect("a DONE backup");
    let real = RealBarman::require()?.bin("barman");
    let ours = cargo_bin("barman")?;
    let dir = scratch.mkdir_owned("dests", "barman")?.display().to_string();
    let masks = [("dest-real", "dest"), ("dest-ours", "dest")];
    let mut seen = Vec::new();
    for (label, bin) in [("real", &real), ("ours", &ours)] {
        let dest = format!("{dir}/dest-{label}");
        let args =
            ["recover", "--skip-archive-wal", "--target-immediate", "--target-action", "promote", "pg", &id, &dest];
        let (code, err) = recover(barman, bin, &scratch.path().join(format!("hooks-{label}")), 0, &args)?;
        ensure!(code == Some(0), "{label}: recover exit {code:?}: {err}");
        ensure!(Path::new(&dest).join("PG_VERSION").exists(), "{label}: nothing recovered");
        seen.push(dumps(&scratch.path().join(format!("hooks-{label}")), &masks)?);
    }
    let order: Vec<&str> = seen[0].iter().map(|(n, _)| n.as_str()).collect();
    eprintln!("Barman's hook runs: {order:?}\n{:#?}", seen[0]);
    ensure!(order.len() == 4, "real Barman ran {order:?}");
    ensure!(seen[0] == seen[1], "hook runs differ:\n--- Barman\n{:#?}\n--- ours\n{:#?}", seen[0], seen[1]);

    // ABORT_STOP from the pre retry script: no recovery, the same message and exit code.
    let mut stops = Vec::new();
    for (label, bin) in [("real", &real), ("ours", &ours)] {
        let dest = format!("{dir}/stop-{label}");
        let args = ["recover", "--skip-archive-wal", "pg", &id, &dest];
        let out = scratch.path().join(format!("stop-hooks-{label}"));
        let (code, err) = recover(barman, bin, &out, 63, &args)?;
        ensure!(!Path::new(&dest).join("PG_VERSION").exists(), "{label}: recovered despite ABORT_STOP");
        let runs: Vec<String> = dumps(&out, &[])?.into_iter().map(|(n, _)| n).collect();
        let err = err.replace(&format!("stop-{label}"), "stop");
        stops.push((code, err.lines().next().unwrap_or_default().to_owned(), runs));
    }
    eprintln!("ABORT_STOP: Barman {:?}\n            ours   {:?}", stops[0], stops[1]);
    ensure!(stops[0] == stops[1], "ABORT_STOP differs: {stops:?}");
    Ok(())
}
