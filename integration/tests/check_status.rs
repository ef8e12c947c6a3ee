//! Our `barman check` (console, `--nagios`, JSON) and `barman status` against real Barman
//! 3.20.1 on the same real catalogue and live PostgreSQL 15: every check line and status row
//! both print must be equal (values that depend on the time of the run are normalised).
//! Then the three Nagios CRITICAL cases: last backup older than `last_backup_maximum_age`,
//! archiving failures (errors/ and a failing `archive_command`), and the WAL receiver down.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use barman_common::catalogue::{BackupInfo, Catalogue, ServerLayout};
use barman_integration::cmd::{as_user, execute};
use barman_integration::{cargo_bin, real_barman_catalogue, skip_unless, wait_until, OsUser, RealBarman, Scratch};

struct Run {
    code: Option<i32>,
    stdout: String,
}

fn ours(config: &Path, args: &[&str]) -> Result<Run> {
    let mut cmd = Command::new(cargo_bin("barman")?);
    as_user(&mut cmd, &OsUser::lookup("barman")?);
    cmd.arg("-c").arg(config).args(args);
    let out = execute(&mut cmd, None, Duration::from_mins(2))?;
    Ok(Run { code: out.code(), stdout: out.stdout_str() })
}

fn real(barman: &barman_integration::BarmanHome, config: &Path, args: &[&str]) -> Result<Run> {
    let mut cmd = barman.command(&[]);
    cmd.arg("-c").arg(config).args(args);
    let out = execute(&mut cmd, None, Duration::from_mins(2))?;
    Ok(Run { code: out.code(), stdout: out.stdout_str() })
}

/// Replaces the parts of a check/status line that depend on when it runs.
fn normalise(line: &str) -> String {
    for marker in ["latest backup age: ", "latest wal age: "] {
        if let Some(i) = line.find(marker) {
            return format!("{}{marker}<age>)", &line[..i]);
        }
    }
    for prefix in ["\tServer WAL archiving rate: ", "\tLast archived WAL: ", "\tFailures of WAL archiver: "] {
        if line.starts_with(prefix) {
            return format!("{prefix}<time-dependent>");
        }
    }
    line.to_owned()
}

/// `(key, normalised line)` per `\t<key>: ...` line.
fn keyed(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix('\t').and_then(|r| r.split_once(": ")).map(|(k, _)| (k.to_owned(), normalise(l)))
        })
        .collect()
}

/// Compares the lines whose key both outputs have, in order; returns the keys compared.
fn compare_common(what: &str, real_out: &str, ours_out: &str) -> Result<Vec<String>> {
    let r = keyed(real_out);
    let o = keyed(ours_out);
    let common: Vec<&String> = o.iter().map(|(k, _)| k).filter(|k| r.iter().any(|(rk, _)| rk == *k)).collect();
    let pick = |v: &[(String, String)]| -> Vec<String> {
        v.iter().filter(|(k, _)| common.contains(&k)).map(|(_, l)| l.clone()).collect()
    };
    let (rl, ol) = (pick(&r), pick(&o));
    let diff: Vec<String> =
        rl.iter().zip(&ol).filter(|(a, b)| a != b).map(|(a, b)| format!("barman: {a}\nours:   {b}")).collect();
    ensure!(
        rl == ol,
        "{what}: common lines differ:\n{}\n--- barman\n{real_out}\n--- ours\n{ours_out}",
        diff.join("\n")
    );
    ensure!(
        real_out.lines().next() == ours_out.lines().next(),
        "{what}: header differs\n--- barman\n{real_out}\n--- ours\n{ours_out}"
    );
    let only_ours: Vec<&String> = o.iter().map(|(k, _)| k).filter(|k| !common.contains(k)).collect();
    let only_real: Vec<&String> = r.iter().map(|(k, _)| k).filter(|k| !common.contains(k)).collect();
    eprintln!("{what}: {} common lines; only Barman: {only_real:?}; only ours: {only_ours:?}", common.len());
    ensure!(only_ours.is_empty(), "{what}: lines Barman does not print: {only_ours:?}\n--- barman\n{real_out}");
    ensure!(only_real.is_empty(), "{what}: lines we do not print: {only_real:?}\n--- ours\n{ours_out}");
    Ok(common.into_iter().cloned().collect())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Runs `check --nagios pg` with both; the exit codes and first lines must match.
fn nagios_same(barman: &barman_integration::BarmanHome, config: &Path, what: &str) -> Result<String> {
    let args = ["check", "--nagios", "pg"];
    let r = real(barman, config, &args)?;
    let o = ours(config, &args)?;
    ensure!(o.code == r.code, "{what}: nagios exit {:?} vs Barman's {:?}\n{}\n{}", o.code, r.code, r.stdout, o.stdout);
    ensure!(
        first_line(&o.stdout) == first_line(&r.stdout),
        "{what}: nagios first line differs\n--- barman\n{}\n--- ours\n{}",
        r.stdout,
        o.stdout
    );
    // The detail lines: same failing checks (hints may hold ages).
    let names = |s: &str| -> Vec<String> {
        s.lines().skip(1).filter_map(|l| l.split_once(": FAILED").map(|(k, _)| k.to_owned())).collect()
    };
    ensure!(names(&o.stdout) == names(&r.stdout), "{what}: nagios details differ\n{}\n{}", r.stdout, o.stdout);
    Ok(r.stdout)
}

/// `status pg` with both; the rows both print must be equal. Live values (data size, current
/// WAL) may move between the two runs, so a mismatch is retried twice.
fn status_same(barman: &barman_integration::BarmanHome, config: &Path, what: &str) -> Result<(Vec<String>, String)> {
    let mut last = None;
    for _ in 0..3 {
        let r = real(barman, config, &["status", "pg"])?;
        let o = ours(config, &["status", "pg"])?;
        ensure!(o.code == r.code, "{what}: status exit {:?} vs {:?}", o.code, r.code);
        match compare_common(what, &r.stdout, &o.stdout) {
            Ok(rows) => return Ok((rows, o.stdout)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("three attempts"))
}

fn config_with(scratch: &Scratch, barman: &barman_integration::BarmanHome, name: &str, extra: &str) -> Result<PathBuf> {
    let config = scratch.path().join(name);
    fs::write(&config, fs::read_to_string(barman.config_path())? + extra)?;
    fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    Ok(config)
}

#[test]
fn check_and_status_match_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("check status")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let barman = &fixture.barman;
    let config = barman.config_path();

    // Healthy: console check, nagios, json, status.
    let r = real(barman, &config, &["check", "pg"])?;
    let o = ours(&config, &["check", "pg"])?;
    ensure!(
        o.code == r.code && r.code == Some(0),
        "check exit {:?} vs Barman's {:?}\n{}\n{}",
        o.code,
        r.code,
        r.stdout,
        o.stdout
    );
    let compared = compare_common("check", &r.stdout, &o.stdout)?;
    for must in [
        "PostgreSQL",
        "superuser or standard user with backup privileges",
        "PostgreSQL streaming",
        "wal_level",
        "directories",
        "retention policy settings",
        "backup maximum age",
        "backup minimum size",
        "wal maximum age",
        "wal size",
        "compression settings",
        "pg_basebackup",
        "pg_basebackup compatible",
        "pg_basebackup supports tablespaces mapping",
        "failed backups",
        "minimum redundancy requirements",
        "systemid coherence",
        "archive_mode",
        "archive_command",
        "continuous archiving",
        "archiver errors",
    ] {
        ensure!(compared.iter().any(|c| c == must), "check '{must}' not compared:\n{}", o.stdout);
    }
    let healthy = nagios_same(barman, &config, "healthy")?;
    ensure!(healthy.starts_with("BARMAN OK - Ready to serve the Espresso backup for pg|pg="), "{healthy}");

    let rj: serde_json::Value = serde_json::from_str(&real(barman, &config, &["-f", "json", "check", "pg"])?.stdout)?;
    let oj: serde_json::Value =
        serde_json::from_str(&ours(&config, &["-f", "json", "check", "pg"])?.stdout).context("our check JSON")?;
    let (rm, om) = (rj["pg"].as_object().context("real json")?, oj["pg"].as_object().context("our json")?);
    let mut json_compared = 0;
    for (k, v) in om {
        ensure!(rm.contains_key(k), "JSON key {k} unknown to Barman");
        if !k.ends_with("maximum_age") {
            ensure!(rm[k] == *v, "JSON {k}: {v} vs Barman's {}", rm[k]);
        }
        json_compared += 1;
    }
    ensure!(json_compared >= 15, "{json_compared} JSON checks compared");

    let (rows, _) = status_same(barman, &config, "status")?;
    ensure!(rows.len() >= 17, "only {} status rows compared: {rows:?}", rows.len());
    let rj: serde_json::Value = serde_json::from_str(&real(barman, &config, &["-f", "json", "status", "pg"])?.stdout)?;
    let oj: serde_json::Value = serde_json::from_str(&ours(&config, &["-f", "json", "status", "pg"])?.stdout)?;
    let skip = ["server_archived_wals_per_hour", "last_archived_wal", "failed_count", "current_size", "current_xlog"];
    let om: &BTreeMap<String, serde_json::Value> = &oj["pg"].as_object().context("json")?.clone().into_iter().collect();
    for (k, v) in om {
        ensure!(rj["pg"].get(k).is_some(), "status JSON key {k} unknown to Barman");
        if !skip.contains(&k.as_str()) {
            ensure!(rj["pg"][k] == *v, "status JSON {k}: {v} vs Barman's {}", rj["pg"][k]);
        }
    }

    // Unknown and inactive servers.
    for args in [&["check", "nosuch"][..], &["check", "--nagios", "nosuch"], &["status", "nosuch"]] {
        let r = real(barman, &config, args)?;
        let o = ours(&config, args)?;
        ensure!(
            o.code == r.code && o.stdout == r.stdout,
            "{args:?}: {:?} {:?}\n{}\n{}",
            o.code,
            r.code,
            r.stdout,
            o.stdout
        );
    }
    let inactive = config_with(&scratch, barman, "inactive.conf", "active = false\n")?;
    let r = real(barman, &inactive, &["check", "pg"])?;
    let o = ours(&inactive, &["check", "pg"])?;
    ensure!(o.code == r.code, "inactive check exit {:?} vs {:?}", o.code, r.code);
    compare_common("check (inactive)", &r.stdout, &o.stdout)?;
    nagios_same(barman, &inactive, "inactive")?;
    status_same(barman, &inactive, "status (inactive)")?;

    // Size, redundancy and retention settings; a replication slot that does not exist.
    let settings = config_with(
        &scratch,
        barman,
        "settings.conf",
        "last_backup_minimum_size = 1073741824\nminimum_redundancy = 3\nretention_policy = REDUNDANCY 3\n\
         last_wal_maximum_age = 1 DAYS\nstreaming_archiver = on\nslot_name = nosuchslot\n",
    )?;
    let r = real(barman, &settings, &["check", "pg"])?;
    let o = ours(&settings, &["check", "pg"])?;
    ensure!(o.code == r.code && r.code == Some(1), "settings check exit {:?} vs {:?}", o.code, r.code);
    let compared = compare_common("check (settings)", &r.stdout, &o.stdout)?;
    ensure!(compared.iter().any(|c| c == "replication slot"), "{}", o.stdout);
    ensure!(o.stdout.contains("minimum redundancy requirements: FAILED"), "{}", o.stdout);
    nagios_same(barman, &settings, "settings")?;
    let (_, o) = status_same(barman, &settings, "status (settings)")?;
    ensure!(o.contains("\tMinimum redundancy requirements: FAILED (1/3)"), "{o}");

    // 1. The last backup is older than last_backup_maximum_age.
    let layout = ServerLayout::default_for(&barman.home(), "pg");
    let catalogue = Catalogue::load(&layout)?;
    let originals: Vec<_> = catalogue.entries().to_vec();
    for (id, info) in &originals {
        let shift = chrono::TimeDelta::days(2);
        let aged = BackupInfo {
            begin_time: info.begin_time.map(|t| t - shift),
            end_time: info.end_time.map(|t| t - shift),
            ..info.clone()
        };
        aged.save(&layout, id)?;
    }
    barman_integration::scratch::chown_recursive(&barman.home(), &OsUser::lookup("barman")?)?;
    let aged = config_with(&scratch, barman, "aged.conf", "last_backup_maximum_age = 1 HOURS\n")?;
    let out = nagios_same(barman, &aged, "old backup")?;
    ensure!(
        out.starts_with("BARMAN CRITICAL - server pg has issues * pg FAILED: backup maximum age|"),
        "old backup: {out}"
    );
    let r = real(barman, &aged, &["check", "pg"])?;
    let o = ours(&aged, &["check", "pg"])?;
    ensure!(o.code == r.code && r.code == Some(1), "old backup check exit {:?} vs {:?}", o.code, r.code);
    compare_common("check (old backup)", &r.stdout, &o.stdout)?;
    for (id, info) in &originals {
        info.save(&layout, id)?;
    }

    // 2a. Archiving failures recorded in errors/.
    let errors = barman.server_dir("pg").join("errors");
    let bad = errors.join("000000010000000000000042.20261121T000000Z.duplicate");
    fs::write(&bad, b"x")?;
    barman_integration::scratch::chown_recursive(&barman.home(), &OsUser::lookup("barman")?)?;
    let out = nagios_same(barman, &config, "errors/")?;
    ensure!(
        out.contains("pg FAILED: archiver errors|") && out.contains("pg.archiver errors: FAILED (duplicates: 1)"),
        "{out}"
    );
    let r = real(barman, &config, &["check", "pg"])?;
    let o = ours(&config, &["check", "pg"])?;
    ensure!(o.code == r.code && r.code == Some(1), "errors/ check exit {:?} vs {:?}", o.code, r.code);
    compare_common("check (errors/)", &r.stdout, &o.stdout)?;
    fs::remove_file(&bad)?;

    // 3. The WAL receiver is down.
    let streaming = config_with(&scratch, barman, "streaming.conf", "streaming_archiver = on\n")?;
    let out = nagios_same(barman, &streaming, "receiver down")?;
    ensure!(out.contains("pg FAILED: receive-wal running|"), "{out}");
    ensure!(out.contains("pg.receive-wal running: FAILED (See the Barman log file for more details)"), "{out}");
    let r = real(barman, &streaming, &["check", "pg"])?;
    let o = ours(&streaming, &["check", "pg"])?;
    ensure!(o.code == r.code && r.code == Some(1), "receiver check exit {:?} vs {:?}", o.code, r.code);
    compare_common("check (receiver down)", &r.stdout, &o.stdout)?;

    // 2b. A failing archive_command: pg_stat_archiver reports failures.
    fixture.pg.psql("alter system set archive_command = 'false'; select pg_reload_conf()")?;
    std::thread::sleep(Duration::from_millis(500));
    fixture.pg.psql("insert into harness_data select g, 'x' from generate_series(200001, 200100) g")?;
    fixture.pg.switch_wal()?;
    wait_until(Duration::from_mins(1), "an archiver failure", || {
        Ok(fixture.pg.psql("select failed_count > 0 from pg_stat_archiver")?.trim() == "t")
    })?;
    let out = nagios_same(barman, &config, "archive_command failing")?;
    ensure!(out.contains("pg FAILED: continuous archiving|"), "{out}");
    let (_, o) = status_same(barman, &config, "status (archiver failing)")?;
    ensure!(o.contains("\tFailures of WAL archiver: ") && !o.contains("\tFailures of WAL archiver: 0\n"), "{o}");
    Ok(())
}
