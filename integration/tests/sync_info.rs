//! `barman sync-info` (the primary side of geo-redundancy) against real Barman 3.20.1 on the
//! same config and the same real catalogue (two backups, one with a tablespace and a name),
//! and the passive-side parsing of real Barman's answer.
//!
//! The JSON texts must be byte-identical except:
//! * `version`: each side reports its own version (ours says 3.20.1 too, but the test does
//!   not rely on it);
//! * the order of the `backups` object: Barman fills it from `glob()`, i.e. directory order,
//!   which no implementation can promise; ours is ascending id. Real Barman's answer is
//!   re-serialised with its backups sorted, after checking that re-serialising it unchanged
//!   gives back its exact text (so the comparison is still a byte comparison).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use barman_common::catalogue::sync::{backup_from_json, parse_json_exact, wal_from_json, PrimaryInfo};
use barman_common::catalogue::{python_json, repr_str, BackupInfo, ServerLayout, XlogDbEntry};
use barman_integration::cmd::{as_user, execute, Outcome};
use barman_integration::scratch::chown_recursive;
use barman_integration::{cargo_bin, real_barman_catalogue, skip_unless, OsUser, RealBarman, Scratch};
use serde_json::{Map, Value};

const TIMEOUT: Duration = Duration::from_mins(1);

fn ours(config: &Path, args: &[&str]) -> Result<Outcome> {
    let mut cmd = Command::new(cargo_bin("barman")?);
    as_user(&mut cmd, &OsUser::lookup("barman")?);
    cmd.arg("-c").arg(config).args(args);
    execute(&mut cmd, None, TIMEOUT)
}

fn real(barman: &barman_integration::BarmanHome, args: &[&str]) -> Result<Outcome> {
    execute(&mut barman.command(args), None, TIMEOUT)
}

/// Real Barman's answer in the form ours must have byte for byte (see the module docs).
fn normalised(real_text: &str) -> Result<String> {
    let mut v = parse_json_exact(real_text)?;
    ensure!(python_json(&v, Some(4), false) == real_text, "re-serialising real Barman's answer changes it");
    let top = v.as_object_mut().context("top-level object")?;
    top.insert("version".into(), Value::String("<version>".into()));
    if let Some(Value::Object(backups)) = top.get_mut("backups") {
        let mut sorted: Vec<(String, Value)> = std::mem::take(backups).into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        *backups = sorted.into_iter().collect::<Map<_, _>>();
    }
    Ok(python_json(&v, Some(4), false))
}

fn with_version_placeholder(ours_text: &str) -> Result<String> {
    let mut v = parse_json_exact(ours_text)?;
    ensure!(python_json(&v, Some(4), false) == ours_text, "our answer does not re-serialise to itself");
    v.as_object_mut().context("top-level object")?.insert("version".into(), Value::String("<version>".into()));
    Ok(python_json(&v, Some(4), false))
}

/// Runs both on `args`; same exit status and stderr; on success same JSON. Returns real
/// Barman's stdout.
fn compare(barman: &barman_integration::BarmanHome, args: &[&str]) -> Result<String> {
    compare_with(barman, &barman.config_path(), args)
}

/// [`compare`] with another configuration file.
fn compare_with(barman: &barman_integration::BarmanHome, config: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = barman.command(&[]);
    cmd.arg("-c").arg(config).args(args);
    let r = execute(&mut cmd, None, TIMEOUT)?;
    let o = ours(config, args)?;
    ensure!(o.code() == r.code(), "{args:?}: exit {:?} vs Barman's {:?} ({})", o.code(), r.code(), o.stderr_str());
    ensure!(
        o.stderr_str() == r.stderr_str(),
        "{args:?} stderr:\n--- barman\n{}\n--- ours\n{}",
        r.stderr_str(),
        o.stderr_str()
    );
    if r.code() == Some(0) {
        let (want, got) = (normalised(&r.stdout_str())?, with_version_placeholder(&o.stdout_str())?);
        ensure!(want == got, "{args:?} differs:\n--- barman\n{want}\n--- ours\n{got}");
        ensure!(!o.stdout_str().ends_with('\n'), "no trailing newline");
    } else {
        ensure!(o.stdout_str() == r.stdout_str(), "{args:?} stdout differs");
    }
    Ok(r.stdout_str())
}

/// `(offset, line)` of every xlog.db line.
fn xlog_lines(path: &Path) -> Result<Vec<(u64, String)>> {
    let text = fs::read_to_string(path)?;
    let mut offset = 0;
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        out.push((offset, line.to_owned()));
        offset += line.len() as u64;
    }
    Ok(out)
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, many cases on the same expensive fixture
fn sync_info_matches_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("sync info")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let barman = &fixture.barman;

    // A tablespace and a second, named backup.
    let tbs = scratch.mkdir_owned("tbs1", "postgres")?;
    fixture.pg.psql(&format!("create tablespace tbs1 location '{}'", tbs.display()))?;
    fixture
        .pg
        .psql("create table in_tbs(id int) tablespace tbs1; insert into in_tbs select generate_series(1, 1000)")?;
    barman.run(&["backup", "--name", "second one", "--wait", "pg"])?;
    barman.run(&["switch-wal", "--force", "--archive", "--archive-timeout", "60", "pg"])?;

    // No LAST_WAL.
    let full = compare(barman, &["sync-info", "pg"])?;
    let info = PrimaryInfo::parse(&full)?;
    ensure!(info.backups.len() == 2, "two backups: {:?}", info.backups.iter().map(|b| &b.0).collect::<Vec<_>>());
    let (_, named) = &info.backups[1];
    ensure!(named.backup_name.as_deref() == Some("second one"), "{named:?}");
    ensure!(named.tablespaces.as_ref().is_some_and(|t| t[0].name == "tbs1"), "{named:?}");

    let lines = xlog_lines(&barman.xlog_db("pg"))?;
    ensure!(lines.len() >= 5, "xlog.db too short: {lines:?}");
    let (last_offset, last_line) = lines.last().cloned().context("a line")?;
    ensure!(info.last_position == last_offset, "last_position {} vs {last_offset}", info.last_position);
    ensure!(last_line.starts_with(&info.last_name), "last_name {} vs {last_line:?}", info.last_name);

    // A plain segment in the middle with its offset: the probe matches.
    let plain: Vec<&(u64, String)> =
        lines.iter().filter(|(_, l)| l.split('\t').next().is_some_and(|n| n.len() == 24)).collect();
    let (offset, line) = plain[plain.len() / 2];
    let name = line.split('\t').next().context("name")?;
    let pos = offset.to_string();
    let resumed = compare(barman, &["sync-info", "pg", name, &pos])?;
    // Same answer with a wrong position (fallback rescan from 0) and without a position.
    let wrong = (offset + 1).to_string();
    let rescanned = compare(barman, &["sync-info", "pg", name, &wrong])?;
    let no_pos = compare(barman, &["sync-info", "pg", name])?;
    ensure!(normalised(&resumed)? == normalised(&rescanned)? && normalised(&resumed)? == normalised(&no_pos)?);
    let resumed_info = PrimaryInfo::parse(&resumed)?;
    ensure!(resumed_info.wals.iter().all(|w| w.name.as_str() > name), "only newer WALs");

    // A `.backup` entry as LAST_WAL: the 24-character probe cannot match, rescan.
    if let Some((offset, line)) = lines.iter().find(|(_, l)| l.contains(".backup\t")) {
        let name = line.split('\t').next().context("name")?;
        compare(barman, &["sync-info", "pg", name, &offset.to_string()])?;
    }

    // The two errors (exit 1), position 0 (exit 2), unknown server, 'all'.
    let first = lines[0].1.split('\t').next().context("name")?;
    for (args, message) in [
        (
            &["sync-info", "pg", "000000000000000000000001"][..],
            format!("ERROR: last_wal '000000000000000000000001' is older than the first available wal '{first}'\n"),
        ),
        (
            &["sync-info", "pg", "0000000100000000000000FF", "1"][..],
            format!(
                "ERROR: last_wal '0000000100000000000000FF' is newer than the last available wal  '{}'\n",
                info.last_name
            ),
        ),
        (&["sync-info", "nope"][..], "ERROR: Unknown server 'nope'\n".to_owned()),
        (&["sync-info", "all"][..], "ERROR: You cannot use 'all' in a single server context\n".to_owned()),
        (&["sync-info", "--primary", "pg"][..], "ERROR: server pg is not passive\n".to_owned()),
    ] {
        compare(barman, args)?;
        let o = ours(&barman.config_path(), args)?;
        ensure!(o.code() == Some(1) && o.stderr_str() == message, "{args:?}: {:?} {}", o.code(), o.stderr_str());
    }
    compare(barman, &["sync-info", "pg", "0000000100000000000000FF"])?;
    // Position 0 (what Barman's passive sends after a one-line xlog.db): real Barman refuses
    // it with exit 2 and its passive stays stuck; ours answers as for a rescan from 0.
    let r = real(barman, &["sync-info", "pg", name, "0"])?;
    ensure!(r.code() == Some(2), "real Barman accepted position 0");
    let zero = ours(&barman.config_path(), &["sync-info", "pg", name, "0"])?;
    let none = ours(&barman.config_path(), &["sync-info", "pg", name])?;
    ensure!(zero.code() == Some(0) && zero.stdout == none.stdout, "position 0: {}", zero.stderr_str());
    for bad in ["-3", "x"] {
        let r = real(barman, &["sync-info", "pg", name, bad])?;
        let o = ours(&barman.config_path(), &["sync-info", "pg", name, bad])?;
        ensure!(r.code() == Some(2) && o.code() == Some(2), "{bad}: exit {:?} / ours {:?}", r.code(), o.code());
        let want = if bad == "x" {
            "'x' is not a valid input".to_owned()
        } else {
            format!("'{bad}' is not a valid positive integer")
        };
        ensure!(
            r.stderr_str().contains(&want) && o.stderr_str().contains(&want),
            "{}\n{}",
            r.stderr_str(),
            o.stderr_str()
        );
    }

    // The same catalogue with more options set on the server (retention, limits, intervals).
    let config = scratch.path().join("options.conf");
    fs::write(
        &config,
        fs::read_to_string(barman.config_path())?
            + "retention_policy = RECOVERY WINDOW OF 2 WEEKS\nminimum_redundancy = 1\nbandwidth_limit = 500\n\
               last_backup_maximum_age = 1 week\nlast_wal_maximum_age = 3 hours\nrecovery_options = get-wal\n",
    )?;
    let mut r = barman.command(&[]);
    r.arg("-c").arg(&config).args(["sync-info", "pg"]);
    let r = execute(&mut r, None, TIMEOUT)?;
    let o = ours(&config, &["sync-info", "pg"])?;
    ensure!(r.code() == Some(0) && o.code() == Some(0), "{}\n{}", r.stderr_str(), o.stderr_str());
    ensure!(normalised(&r.stdout_str())? == with_version_placeholder(&o.stdout_str())?, "options config differs");

    round_trip(barman, &scratch, &full)
}

/// The passive side: real Barman's answer parsed back equals the primary's files, and
/// backup.info files written from it load in real Barman.
fn round_trip(barman: &barman_integration::BarmanHome, scratch: &Scratch, answer: &str) -> Result<()> {
    let layout = ServerLayout::default_for(&barman.home(), "pg");
    let info = PrimaryInfo::parse(answer)?;
    ensure!(info.config_str("name") == Some("pg"));
    ensure!(info.config_str("wals_directory") == Some(layout.wals_directory.to_str().context("utf-8")?));
    ensure!(info.version == "3.20.1");

    // Every backup equals the primary's backup.info, label included (decoded once).
    let doc = parse_json_exact(answer)?;
    for (id, parsed) in &info.backups {
        let on_disk = BackupInfo::load(&layout, id)?.context("backup.info")?;
        ensure!(*parsed == on_disk, "{id}:\n{parsed:?}\n{on_disk:?}");
        let label = on_disk.backup_label.as_deref().context("label")?;
        ensure!(label.starts_with("START WAL LOCATION:") && parsed.backup_label.as_deref() == Some(label));
        ensure!(parsed.to_text() == fs::read_to_string(layout.backup_info_path(id))?, "{id}: file text differs");
        let (again_id, again) = backup_from_json(&doc["backups"][id.as_str()])?;
        ensure!(again_id == *id && again == on_disk);
    }

    // The WAL list equals the xlog.db lines from the first backup's begin_wal on.
    let first_wal = info.backups[0].1.begin_wal.as_ref().context("begin_wal")?.to_string();
    let expected: Vec<XlogDbEntry> = xlog_lines(&barman.xlog_db("pg"))?
        .iter()
        .map(|(_, l)| XlogDbEntry::parse_line(l))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|e| e.name.as_str() >= first_wal.as_str())
        .collect();
    ensure!(info.wals == expected, "wals:\n{:?}\n{expected:?}", info.wals);
    for (item, entry) in doc["wals"].as_array().context("wals")?.iter().zip(&expected) {
        ensure!(wal_from_json(item)? == *entry);
    }

    // Written with BackupInfo::save into another server, real Barman loads them.
    let copy = ServerLayout::default_for(&barman.home(), "copy");
    copy.ensure_dirs()?;
    for (id, parsed) in &info.backups {
        fs::create_dir_all(copy.backup_dir(id))?;
        parsed.save(&copy, id)?;
    }
    chown_recursive(&copy.backup_directory, &OsUser::lookup("barman")?)?;
    let config = scratch.path().join("copy.conf");
    fs::write(
        &config,
        fs::read_to_string(barman.config_path())?
            + "\n[copy]\ndescription = copy\nconninfo = host=/nonexistent\nbackup_method = postgres\narchiver = on\n",
    )?;
    // A copy the way a Barman passive leaves it (mode passive, label double-encoded) is
    // served by both alike; the copy has no xlog.db yet, so both rebuild an empty one.
    let (id, first) = &info.backups[0];
    let passive_style = BackupInfo {
        mode: Some("passive".into()),
        backup_label: first.backup_label.as_deref().map(repr_str),
        ..first.clone()
    };
    passive_style.save(&copy, id)?;
    chown_recursive(&copy.backup_directory, &OsUser::lookup("barman")?)?;
    let cascaded = compare_with(barman, &config, &["sync-info", "copy"])?;
    let cascaded = PrimaryInfo::parse(&cascaded)?;
    ensure!(cascaded.backups.len() == 2 && cascaded.wals.is_empty() && cascaded.last_name.is_empty());
    ensure!(cascaded.backups[0].1.backup_label == first.backup_label, "double encoding undone");
    ensure!(cascaded.backups[0].1.mode.as_deref() == Some("passive"));
    compare_with(barman, &config, &["sync-info", "copy", "000000010000000000000001", "5"])?;
    for id in info.backups.iter().map(|(id, _)| id.as_str()) {
        let mut show = barman.command(&[]);
        show.arg("-c").arg(&config).args(["show-backup", "copy", id]);
        let out = execute(&mut show, None, TIMEOUT)?;
        ensure!(out.code() == Some(0) && out.stdout_str().contains(id), "{}{}", out.stdout_str(), out.stderr_str());
    }
    Ok(())
}
