//! Our command lines against real Barman's, generated from Barman's own argparse tree.
//!
//! `integration/tools/barman-cli-tree.py`, run with the interop venv's Python, dumps every
//! subcommand, alias, option string, arity and choice list of `barman`, `barman-wal-archive`,
//! `barman-wal-restore` and the nine `barman-cloud-*` tools as JSON. [`compare`] walks that tree against a clap
//! [`clap::Command`] and lists every subcommand, alias, option, positional or choice that
//! Barman accepts and we do not, or accept with another arity.

use std::path::Path;
use std::process::Command as Process;

use anyhow::{bail, ensure, Context, Result};
use clap::{Arg, ArgAction, Command};
use serde_json::Value;

use crate::RealBarman;

/// What a comparison checked and what it found missing.
#[derive(Debug, Default)]
pub struct Report {
    /// Subcommands checked (aliases included).
    pub subcommands: usize,
    /// Option strings checked (`-j` and `--jobs` count as two), positionals included.
    pub options: usize,
    /// One line per difference.
    pub missing: Vec<String>,
}

/// Runs the dump script with the venv's Python and returns `tools` from its JSON.
pub fn barman_tree(real: &RealBarman) -> Result<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/barman-cli-tree.py");
    let out = Process::new(real.bin("python")).arg(&script).output().context("running barman-cli-tree.py")?;
    ensure!(out.status.success(), "barman-cli-tree.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(tree["version"] == crate::barman::BARMAN_VERSION, "the venv holds Barman {}", tree["version"]);
    Ok(tree["tools"].clone())
}

/// Compares one tool's dumped tree (`{"options", "positionals", "subcommands"?}`) with ours.
pub fn compare(tool: &str, tree: &Value, mut ours: Command) -> Result<Report> {
    ours.build();
    let mut report = Report::default();
    compare_parser(tool, tree, &ours, &mut report)?;
    for sub in tree["subcommands"].as_array().into_iter().flatten() {
        let name = sub["name"].as_str().context("subcommand without a name")?;
        let aliases: Vec<&str> = sub["aliases"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        report.subcommands += 1 + aliases.len();
        let Some(found) = ours.find_subcommand(name).or_else(|| aliases.iter().find_map(|a| ours.find_subcommand(a)))
        else {
            report.missing.push(format!("{tool} {name}: no such subcommand"));
            continue;
        };
        for alias in std::iter::once(&name).chain(&aliases) {
            if found.get_name() != *alias && !found.get_all_aliases().any(|a| a == *alias) {
                report.missing.push(format!("{tool} {name}: alias {alias} missing"));
            }
        }
        compare_parser(&format!("{tool} {name}"), sub, found, &mut report)?;
    }
    Ok(report)
}

fn compare_parser(ctx: &str, tree: &Value, ours: &Command, report: &mut Report) -> Result<()> {
    for opt in tree["options"].as_array().context("no options")? {
        let arity = opt["arity"].as_str().context("no arity")?;
        for s in opt["strings"].as_array().context("no strings")?.iter().filter_map(Value::as_str) {
            report.options += 1;
            match find_option(ours, s) {
                None => report.missing.push(format!("{ctx}: option {s} missing")),
                Some(arg) => check_arg(&format!("{ctx}: option {s}"), arg, arity, &opt["choices"], report),
            }
        }
    }
    let positionals: Vec<&Arg> = ours.get_positionals().filter(|a| !a.is_hide_set()).collect();
    for (i, pos) in tree["positionals"].as_array().context("no positionals")?.iter().enumerate() {
        report.options += 1;
        let dest = pos["dest"].as_str().unwrap_or("?");
        match positionals.get(i) {
            None => report.missing.push(format!("{ctx}: positional {dest} (#{}) missing", i + 1)),
            Some(arg) => check_arg(
                &format!("{ctx}: positional {dest}"),
                arg,
                pos["arity"].as_str().unwrap_or("1"),
                &pos["choices"],
                report,
            ),
        }
    }
    let barman_positionals = tree["positionals"].as_array().map_or(0, Vec::len);
    if positionals.len() > barman_positionals && tree["subcommands"].is_null() {
        let extra: Vec<String> = positionals[barman_positionals..].iter().map(|a| a.get_id().to_string()).collect();
        report.missing.push(format!("{ctx}: positionals Barman does not have: {}", extra.join(" ")));
    }
    Ok(())
}

/// The argument answering to `-x` or `--long` (aliases included).
fn find_option<'a>(cmd: &'a Command, s: &str) -> Option<&'a Arg> {
    if let Some(long) = s.strip_prefix("--") {
        return cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|al| al.contains(&long)));
    }
    let short = s.strip_prefix('-').and_then(|c| c.chars().next())?;
    cmd.get_arguments()
        .find(|a| a.get_short() == Some(short) || a.get_all_short_aliases().is_some_and(|al| al.contains(&short)))
}

fn check_arg(what: &str, arg: &Arg, arity: &str, choices: &Value, report: &mut Report) {
    let ours = our_arity(arg);
    if ours != arity {
        report.missing.push(format!("{what}: arity {ours}, Barman's is {arity}"));
    }
    let possible: Vec<String> = arg.get_possible_values().iter().map(|v| v.get_name().to_owned()).collect();
    if possible.is_empty() {
        return;
    }
    for choice in choices.as_array().into_iter().flatten().filter_map(Value::as_str) {
        if !possible.iter().any(|p| p == choice) {
            report.missing.push(format!("{what}: value {choice} not accepted"));
        }
    }
}

/// The arity of a clap argument in argparse's nargs notation.
fn our_arity(arg: &Arg) -> String {
    let takes_values = !matches!(
        arg.get_action(),
        ArgAction::SetTrue
            | ArgAction::SetFalse
            | ArgAction::Count
            | ArgAction::Help
            | ArgAction::HelpShort
            | ArgAction::HelpLong
            | ArgAction::Version
    );
    if !takes_values {
        return "0".into();
    }
    let range = arg.get_num_args().unwrap_or_default();
    let (min, max) = (range.min_values(), range.max_values());
    let required = arg.is_required_set() || !arg.is_positional();
    // An optional positional taking one value (or more) reads as argparse's `?` (or `*`).
    let min = if required { min } else { 0 };
    match (min, max) {
        (0, 1) => "?".into(),
        (1, 1) => "1".into(),
        (0, usize::MAX) => "*".into(),
        (1, usize::MAX) => "+".into(),
        (n, m) if n == m => n.to_string(),
        (n, m) => format!("{n}..{m}"),
    }
}

/// Compares every tool (`barman`, the two ssh clients, the nine cloud tools); fails only when the dump itself cannot be read.
pub fn compare_all(tools: &Value) -> Result<Report> {
    let mut total = Report::default();
    let ours: [(&str, Command); 12] = [
        ("barman", barman::cli::command()),
        ("barman-wal-archive", barman_wal_archive::cli::command()),
        ("barman-wal-restore", barman_wal_restore::cli::command()),
        ("barman-cloud-wal-archive", barman_cloud_wal_archive::cli::command()),
        ("barman-cloud-wal-restore", barman_cloud_wal_restore::cli::command()),
        ("barman-cloud-backup", barman_cloud_backup::cli::command()),
        ("barman-cloud-restore", barman_cloud_restore::cli::command()),
        ("barman-cloud-backup-list", barman_cloud_backup_list::cli::command()),
        ("barman-cloud-backup-show", barman_cloud_backup_show::cli::command()),
        ("barman-cloud-backup-delete", barman_cloud_backup_delete::cli::command()),
        ("barman-cloud-backup-keep", barman_cloud_backup_keep::cli::command()),
        ("barman-cloud-check-wal-archive", barman_cloud_check_wal_archive::cli::command()),
    ];
    for (tool, cmd) in ours {
        if tools[tool].is_null() {
            bail!("the dump has no {tool}");
        }
        let r = compare(tool, &tools[tool], cmd)?;
        total.subcommands += r.subcommands;
        total.options += r.options;
        total.missing.extend(r.missing);
    }
    Ok(total)
}
