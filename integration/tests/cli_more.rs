//! More `barman` commands against real Barman 3.20.1 on the same real catalogue:
//! `show-backup` (console and JSON, for DONE, WAITING_FOR_WALS, FAILED, SYNCING and kept
//! backups), `show-servers`, `switch-wal` and `replication-status`. Outputs must be equal
//! byte for byte once the values that depend on the time of the run are normalised.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use barman_common::catalogue::{BackupId, BackupInfo, BackupStatus, Catalogue, ServerLayout};
use barman_integration::cmd::{as_user, execute};
use barman_integration::{
    cargo_bin, real_barman_catalogue, skip_unless, BarmanHome, OsUser, PgCluster, PgOptions, RealBarman, Scratch,
};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn ours(config: &Path, args: &[&str]) -> Result<Run> {
    let mut cmd = Command::new(cargo_bin("barman")?);
    as_user(&mut cmd, &OsUser::lookup("barman")?);
    cmd.arg("-c").arg(config).args(args);
    let out = execute(&mut cmd, None, Duration::from_mins(2))?;
    Ok(Run { code: out.code(), stdout: out.stdout_str(), stderr: out.stderr_str() })
}

fn real(barman: &BarmanHome, config: &Path, args: &[&str]) -> Result<Run> {
    let mut cmd = barman.command(&[]);
    cmd.arg("-c").arg(config).args(args);
    let out = execute(&mut cmd, None, Duration::from_mins(2))?;
    Ok(Run { code: out.code(), stdout: out.stdout_str(), stderr: out.stderr_str() })
}

/// Runs `args` with both; exit codes and (normalised) stdout must be equal.
fn same(barman: &BarmanHome, config: &Path, args: &[&str], normalise: impl Fn(&str) -> String) -> Result<Run> {
    let r = real(barman, config, args)?;
    let o = ours(config, args)?;
    ensure!(
        o.code == r.code,
        "{args:?}: exit {:?} vs Barman's {:?}\n--- barman\n{}{}\n--- ours\n{}{}",
        o.code,
        r.code,
        r.stdout,
        r.stderr,
        o.stdout,
        o.stderr
    );
    let (rn, on) = (normalise(&r.stdout), normalise(&o.stdout));
    ensure!(rn == on, "{args:?} differs:\n--- barman\n{rn}\n--- ours\n{on}");
    Ok(r)
}

fn identity(s: &str) -> String {
    s.to_owned()
}

/// A copy of `base` saved under `id` with `status` (and no end data unless available).
fn fake_backup(layout: &ServerLayout, base: &BackupInfo, id: &str, status: BackupStatus) -> Result<()> {
    let mut info = BackupInfo { status, backup_name: None, ..base.clone() };
    if !status.is_available() {
        info.end_time = None;
        info.end_wal = None;
        info.end_xlog = None;
    }
    if status == BackupStatus::Failed {
        info.error = Some("failure copying files (connection lost)".into());
    }
    let id = BackupId::new(id)?;
    fs::create_dir_all(layout.backup_dir(&id))?;
    info.save(layout, &id)?;
    Ok(())
}

#[test]
fn show_backup_matches_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("cli more show-backup")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let barman = &fixture.barman;
    fixture.pg.psql("insert into harness_data select g, 'more' from generate_series(100001, 102000) g")?;
    barman.run(&["backup", "--name", "second one", "--wait", "pg"])?;
    let first = barman.done_backups("pg")?.into_iter().min().expect("two backups");
    barman.run(&["keep", "--target", "full", "pg", &first])?;

    let layout = ServerLayout::default_for(&barman.home(), "pg");
    let catalogue = Catalogue::load(&layout)?;
    let (_, done) = catalogue.latest().expect("a backup");
    fake_backup(&layout, done, "29991231T000000", BackupStatus::Failed)?;
    fake_backup(&layout, done, "29991231T000100", BackupStatus::Syncing)?;
    fake_backup(&layout, done, "29991231T000200", BackupStatus::WaitingForWals)?;
    // Two available backups sharing a name.
    for id in ["29991231T000300", "29991231T000400"] {
        let bid = BackupId::new(id)?;
        fs::create_dir_all(layout.backup_dir(&bid))?;
        BackupInfo { backup_name: Some("twin".into()), ..done.clone() }.save(&layout, &bid)?;
    }
    barman_integration::scratch::chown_recursive(&barman.home(), &OsUser::lookup("barman")?)?;

    let config = scratch.path().join("retention.conf");
    fs::write(&config, fs::read_to_string(barman.config_path())? + "retention_policy = REDUNDANCY 1\n")?;
    let ids =
        [first.as_str(), "latest", "oldest", "second one", "29991231T000000", "29991231T000100", "29991231T000200"];
    let mut compared = 0;
    for cfg in [barman.config_path(), config.clone()] {
        for id in ids {
            for json in [false, true] {
                let mut args = if json { vec!["-f", "json"] } else { Vec::new() };
                args.extend(["show-backup", "pg", id]);
                same(barman, &cfg, &args, identity)?;
                compared += 1;
            }
        }
        same(barman, &cfg, &["show-backup", "pg", "nosuch"], identity)?;
        same(barman, &cfg, &["show-backup", "pg", "twin"], identity)?;
        same(barman, &cfg, &["-f", "json", "show-backup", "pg", "twin"], identity)?;
        same(barman, &cfg, &["-f", "json", "show-backup", "pg", "nosuch"], identity)?;
    }
    ensure!(compared == 2 * 2 * ids.len());
    Ok(())
}

#[test]
fn metrics_report_passive_lag() -> Result<()> {
    let scratch = Scratch::new("cli more metrics")?;
    let mut home = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    home.add_raw_server("standby", &["description = \"passive\"", "primary_ssh_command = ssh primary.invalid"])?;
    let layout = ServerLayout::default_for(&home.home(), "standby");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    fs::create_dir_all(&layout.backup_directory)?;
    let state = barman_common::catalogue::relay::RelayState {
        checked_at: now,
        caught_up_at: now - 120.0,
        primary_position: 0x0300_0000,
        passive_position: 0x0200_0000,
        primary_wal: "000000010000000000000002".into(),
        passive_wal: "000000010000000000000001".into(),
    };
    state.save(&layout)?;
    barman_integration::scratch::chown_recursive(&home.home(), &OsUser::lookup("barman")?)?;
    let text = home.run(&["metrics"])?;
    ensure!(text.contains("# TYPE barman_passive_wal_lag_bytes gauge\n"), "{text}");
    ensure!(text.contains("# TYPE barman_passive_wal_lag_seconds gauge\n"), "{text}");
    ensure!(text.contains("barman_passive_wal_lag_bytes{server=\"standby\"} 16777216\n"), "{text}");
    let secs: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("barman_passive_wal_lag_seconds{server=\"standby\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0);
    ensure!((120.0..180.0).contains(&secs), "lag seconds {secs}\n{text}");
    Ok(())
}

/// Replaces WAL names (24 hex digits) with `<WAL>`.
fn mask_wal_names(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..].iter().take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()).count();
        if run == 24 {
            out.push_str("<WAL>");
            i += run;
        } else if run > 0 {
            out.extend(&chars[i..i + run]);
            i += run;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// show-servers lines (or JSON keys) whose values move between two runs.
const LIVE_KEYS: &[&str] = &[
    "current_lsn",
    "current_size",
    "current_xlog",
    "last_archived_time",
    "last_archived_wal",
    "current_archived_wals_per_second",
    "stats_reset",
    "archived_count",
    "failed_count",
    "last_failed_time",
    "last_failed_wal",
    "last_backup_maximum_age",
];

/// `key -> value text` of a show-servers console output.
fn show_server_keys(stdout: &str) -> std::collections::BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix('\t').and_then(|r| r.split_once(": ")))
        .map(|(k, v)| (k.to_owned(), if LIVE_KEYS.contains(&k) { "<live>".to_owned() } else { v.to_owned() }))
        .collect()
}

/// Blanks the values of replication-status fields that move between runs.
fn mask_replication(text: &str) -> String {
    const LIVE: &[&str] = &[
        "WAL sender PID  : ",
        "Started at      : ",
        "Current LSN on master: ",
        "Sent LSN   : ",
        "Write LSN  : ",
        "Flush LSN  : ",
        "Replay LSN : ",
        "(LSN @ ",
        " S:",
    ];
    if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) {
        fn walk(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, x) in m.iter_mut() {
                        if k.ends_with("_lsn") || k.contains("lsn_diff") || k == "wal_sender_pid" || k == "started_at" {
                            *x = serde_json::Value::String("<live>".into());
                        } else {
                            walk(x);
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
                _ => {}
            }
        }
        walk(&mut v);
        return v.to_string();
    }
    text.lines()
        .map(|l| match LIVE.iter().find_map(|m| l.find(m).map(|i| i + m.len())) {
            Some(i) => format!("{}<live>", &l[..i]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn server_commands_match_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("cli more servers")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let barman = &fixture.barman;
    let config = scratch.path().join("more.conf");
    fs::write(
        &config,
        fs::read_to_string(barman.config_path())?
            + "last_backup_maximum_age = 1 day\nretention_policy = REDUNDANCY 2\n\
               \n[passive]\ndescription = \"a passive node\"\nprimary_ssh_command = ssh primary.invalid\n\
               conninfo = host=/nonexistent user=postgres password=secret\nbackup_options = concurrent_backup\n\
               tablespace_bandwidth_limit = tbs1:100 tbs2:200\nlast_wal_maximum_age = 2 hours\n\
               \n[off]\ndescription = \"inactive\"\nactive = false\nprimary_ssh_command = ssh primary.invalid\n"
            // The same cluster under another name: its WAL files never reach this catalogue.
            + &format!(
                "\n[elsewhere]\ndescription = \"no archiving\"\nconninfo = {}\nbackup_method = postgres\n\
                 archiver = on\npath_prefix = {}\n",
                fixture.pg.conninfo(),
                barman_integration::pg::PG_BIN
            ),
    )?;
    barman_integration::scratch::chown_recursive(&barman.home(), &OsUser::lookup("barman")?)?;
    let mut errors = Vec::new();
    let mut check = |what: &str, r: Result<()>| {
        if let Err(e) = r {
            errors.push(format!("{what}: {e:#}"));
        }
    };

    // show-servers: the passive and inactive servers (no live values) byte for byte.
    for args in [
        &["show-servers", "passive"][..],
        &["-f", "json", "show-servers", "passive"],
        &["show-server", "off"],
        &["-f", "json", "show-servers", "off"],
        &["show-servers", "nosuch"],
        &["-f", "json", "show-servers", "nosuch", "passive"],
    ] {
        check(&format!("{args:?}"), same(barman, &config, args, identity).map(|_| ()));
    }
    // show-servers of the live server: every key Barman prints, with the same value.
    check("show-servers pg", {
        let r = real(barman, &config, &["show-servers", "pg"])?;
        let o = ours(&config, &["show-servers", "pg"])?;
        let (rk, ok) = (show_server_keys(&r.stdout), show_server_keys(&o.stdout));
        let missing: Vec<&String> = rk.keys().filter(|k| !ok.contains_key(*k)).collect();
        let extra: Vec<&String> = ok.keys().filter(|k| !rk.contains_key(*k)).collect();
        let differ: Vec<String> = rk
            .iter()
            .filter_map(|(k, v)| ok.get(k).filter(|o| *o != v).map(|o| format!("{k}: barman {v:?}, ours {o:?}")))
            .collect();
        eprintln!("show-servers pg: {} keys; missing {missing:?}; extra {extra:?}; differ {differ:?}", rk.len());
        ensure(
            r.stdout.lines().next() == o.stdout.lines().next()
                && missing.is_empty()
                && extra.is_empty()
                && differ.is_empty(),
            format!("header/missing/extra/differ:\n{}\n{missing:?}\n{extra:?}\n{differ:?}", o.stdout),
        )
    });
    check("-f json show-servers pg", {
        let args = ["-f", "json", "show-servers", "pg"];
        let parse = |text: &str| -> Result<serde_json::Value> {
            let mut v: serde_json::Value = serde_json::from_str(text)?;
            if let Some(m) = v.get_mut("pg").and_then(serde_json::Value::as_object_mut) {
                for k in LIVE_KEYS {
                    if let Some(x) = m.get_mut(*k) {
                        *x = serde_json::Value::String("<live>".into());
                    }
                }
                // libpq's and our connection error texts differ; both are null when connected.
            }
            Ok(v)
        };
        let (r, o) = (parse(&real(barman, &config, &args)?.stdout)?, parse(&ours(&config, &args)?.stdout)?);
        ensure(r == o, format!("--- barman\n{r}\n--- ours\n{o}"))
    });

    // switch-wal: force, then nothing to switch, then --archive through our archiver.
    // The archiver passes --archive runs while waiting archive whatever has arrived by then,
    // so their "Processing xlog segments" blocks depend on timing: compared without them.
    let wal_names = |s: &str| {
        mask_wal_names(s)
            .lines()
            .filter(|l| !l.starts_with("Processing xlog segments from file archival") && *l != "\t<WAL>")
            .collect::<Vec<_>>()
            .join("\n")
    };
    for args in [
        &["switch-wal", "--force", "pg"][..],
        &["switch-wal", "pg"],
        &["switch-xlog", "--force", "--archive", "--archive-timeout", "60", "pg"],
        &["-f", "json", "switch-wal", "--force", "pg"],
        &["switch-wal", "nosuch"],
        &["switch-wal", "off"],
        &["switch-wal", "--force", "--archive", "--archive-timeout", "2", "elsewhere"],
        &["-f", "json", "switch-wal", "--force", "--archive", "--archive-timeout", "2", "elsewhere"],
    ] {
        check(&format!("{args:?}"), same(barman, &config, args, wal_names).map(|_| ()));
    }
    check("our switch-wal --archive", {
        let o = ours(&config, &["switch-wal", "--force", "--archive", "pg"])?;
        ensure(o.code == Some(0) && o.stdout.contains("Waiting for the WAL file "), format!("{}{}", o.stdout, o.stderr))
    });
    check("our switch-wal passive", {
        let o = ours(&config, &["switch-wal", "passive"])?;
        ensure(o.code == Some(1) && o.stderr.starts_with("ERROR: "), format!("{:?} {}{}", o.code, o.stdout, o.stderr))
    });

    // replication-status: nothing attached, then a streaming standby.
    let cases: &[&[&str]] = &[
        &["replication-status", "pg"],
        &["replication-status", "--minimal", "pg"],
        &["-f", "json", "replication-status", "pg"],
        &["replication-status", "passive"],
        // Barman puts explicit names in a set: several skipped servers come in hash order.
        &["replication-status", "passive", "pg"],
        &["replication-status", "off", "pg"],
    ];
    for args in cases {
        check(&format!("{args:?} (no standby)"), same(barman, &config, args, mask_replication).map(|_| ()));
    }
    let standby = PgCluster::from_basebackup(&scratch, &fixture.pg, true, PgOptions::default())?;
    barman_integration::wait_until(Duration::from_mins(1), "standby streaming", || {
        Ok(fixture.pg.psql("select count(*) from pg_stat_replication where state = 'streaming'")?.trim() == "1")
    })?;
    let cases: &[&[&str]] = &[
        &["replication-status", "pg"],
        &["replication-status", "--minimal", "pg"],
        &["replication-status", "--target", "hot-standby", "pg"],
        &["replication-status", "--target", "wal-streamer", "pg"],
        &["-f", "json", "replication-status", "pg"],
        &["-f", "json", "replication-status", "--minimal", "pg"],
        &["replication-status", "--source", "wal-host", "pg"],
    ];
    for args in cases {
        let mut last = Ok(());
        for _ in 0..3 {
            last = same(barman, &config, args, mask_replication).map(|_| ());
            if last.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        check(&format!("{args:?} (standby)"), last);
    }
    drop(standby);
    ensure!(errors.is_empty(), "{}", errors.join("\n\n"));
    Ok(())
}

fn ensure(ok: bool, msg: String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(anyhow::anyhow!(msg))
    }
}
