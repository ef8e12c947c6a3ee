//! Retention policies: on copies of one real catalogue (five real Barman 3.20.1 backups with
//! WAL in between, end times moved into the past to play the clock), our `list-backups`
//! retention column equals real Barman's, and our `barman cron` removes exactly the backups
//! and WAL files that real Barman's `cron` removes.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use barman_common::catalogue::{BackupInfo, Catalogue, ServerLayout};
use barman_integration::cmd::{as_user, execute};
use barman_integration::{cargo_bin, real_barman_catalogue, skip_unless, OsUser, RealBarman, Scratch};

/// A copy of the barman home with its own config file.
struct Copy {
    home: PathBuf,
    config: PathBuf,
}

fn copy_home(scratch: &Scratch, src_home: &Path, src_config: &Path, name: &str, extra: &str) -> Result<Copy> {
    let home = scratch.path().join(name);
    let status = Command::new("cp").arg("-a").arg(src_home).arg(&home).status()?;
    ensure!(status.success(), "cp -a failed");
    let text = fs::read_to_string(src_config)?.replace(&src_home.display().to_string(), &home.display().to_string());
    let config = scratch.path().join(format!("{name}.conf"));
    fs::write(&config, format!("{text}{extra}"))?;
    Ok(Copy { home, config })
}

fn run(bin: &Path, config: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(bin);
    as_user(&mut cmd, &OsUser::lookup("barman")?);
    cmd.env("PATH", format!("{}:/usr/bin:/bin", bin.parent().expect("bin dir").display()));
    cmd.arg("-c").arg(config).args(args);
    let out = execute(&mut cmd, None, Duration::from_mins(2))?;
    out.success()?;
    Ok(out.stdout_str())
}

/// Backup ids, WAL files on disk and xlog.db lines of a home.
fn state(home: &Path) -> Result<(Vec<String>, BTreeSet<String>, Vec<String>)> {
    let layout = ServerLayout::default_for(home, "pg");
    let ids = Catalogue::load(&layout)?.entries().iter().map(|(id, _)| id.to_string()).collect();
    let mut wals = BTreeSet::new();
    for e in walkdir(&layout.wals_directory)? {
        let name = e.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if !name.ends_with("xlog.db") {
            wals.insert(name);
        }
    }
    let db = fs::read_to_string(layout.xlogdb_path())?
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").to_owned())
        .collect();
    Ok((ids, wals, db))
}

fn walkdir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walkdir(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

/// Moves each backup's times `ages[i]` days into the past (oldest first).
fn age_backups(home: &Path, ages_days: &[i64]) -> Result<()> {
    let layout = ServerLayout::default_for(home, "pg");
    let catalogue = Catalogue::load(&layout)?;
    for ((id, info), days) in catalogue.entries().iter().zip(ages_days) {
        let shift = chrono::TimeDelta::days(*days);
        let aged = BackupInfo {
            begin_time: info.begin_time.map(|t| t - shift),
            end_time: info.end_time.map(|t| t - shift),
            ..info.clone()
        };
        aged.save(&layout, id)?;
    }
    barman_integration::scratch::chown_recursive(home, &OsUser::lookup("barman")?)
}

#[test]
fn retention_decisions_and_cron_deletions_match_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("retention")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let barman = &fixture.barman;
    for i in 0..4 {
        fixture.pg.psql(&format!(
            "insert into harness_data select g, 'r{i}' from generate_series({}, {}) g",
            10_000 * (i + 2),
            10_000 * (i + 2) + 100
        ))?;
        fixture.pg.switch_wal()?;
        barman.run(&["backup", "--wait", "pg"])?;
    }
    ensure!(barman.done_backups("pg")?.len() == 5, "five backups");
    let real = RealBarman::require()?.bin("barman");
    let ours = cargo_bin("barman")?;
    let scenarios: &[(&str, &str, &[i64], Option<usize>)] = &[
        ("redundancy", "retention_policy = REDUNDANCY 2\n", &[40, 30, 20, 10, 1], Some(1)),
        ("window", "retention_policy = RECOVERY WINDOW OF 1 WEEKS\n", &[40, 12, 9, 6, 3], None),
        (
            "minimum",
            "retention_policy = RECOVERY WINDOW OF 1 WEEKS\nminimum_redundancy = 3\n",
            &[50, 40, 30, 20, 10],
            None,
        ),
    ];
    for (name, extra, ages, keep_index) in scenarios {
        let real_copy = copy_home(&scratch, &barman.home(), &barman.config_path(), &format!("{name}-real"), extra)?;
        let our_copy = copy_home(&scratch, &barman.home(), &barman.config_path(), &format!("{name}-ours"), extra)?;
        for copy in [&real_copy, &our_copy] {
            age_backups(&copy.home, ages)?;
            if let Some(k) = keep_index {
                let ids = state(&copy.home)?.0;
                run(&real, &copy.config, &["keep", "--target", "full", "pg", &ids[*k]])?;
            }
        }
        let before_real = run(&real, &real_copy.config, &["list-backups", "pg"])?;
        let before_ours = run(&ours, &our_copy.config, &["list-backups", "pg"])?;
        let mask = |s: &str| s.replace(&format!("{name}-real"), "H").replace(&format!("{name}-ours"), "H");
        ensure!(
            mask(&before_real) == mask(&before_ours),
            "{name}: retention differs:\n--- barman\n{before_real}--- ours\n{before_ours}"
        );
        ensure!(before_real.contains("OBSOLETE"), "{name}: scenario has nothing obsolete:\n{before_real}");
        run(&real, &real_copy.config, &["cron"])?;
        run(&ours, &our_copy.config, &["cron"])?;
        let (real_state, our_state) = (state(&real_copy.home)?, state(&our_copy.home)?);
        ensure!(real_state == our_state, "{name}: after cron\n barman: {real_state:?}\n ours:   {our_state:?}");
        ensure!(real_state.0.len() < 5, "{name}: cron removed nothing");
    }
    Ok(())
}
