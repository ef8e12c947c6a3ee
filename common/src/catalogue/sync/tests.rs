//! Tests of sync-info: exact JSON, label layers, times, backup round trips, and the answer's
//! positions, filters and errors.
#![allow(clippy::unreadable_literal, clippy::float_cmp)]

use serde_json::Value;

use super::backup_json::{decode_label, time_from};
use super::json::parse_json;
use super::*;
use crate::catalogue::backup_id::BackupId;
use crate::catalogue::backup_info::{BackupInfo, BackupStatus};
use crate::catalogue::identity::python_json;
use crate::catalogue::layout::ServerLayout;
use crate::catalogue::pyliteral::repr_str;
use crate::catalogue::pytime::format_py_datetime;

#[test]
fn exact_floats_and_escapes() {
    let v = parse_json(r#"{"t": 1795293407.6400094, "s": "a\u00e9\ud83d\ude00\n", "n": -3, "e": [], "o": {}}"#)
        .expect("parse");
    assert_eq!(v["t"].as_f64(), Some("1795293407.6400094".parse::<f64>().expect("f64")));
    assert_eq!(v["s"], "a\u{e9}\u{1f600}\n");
    assert_eq!(v["n"], -3);
    assert_eq!(python_json(&v, Some(4), false).lines().count(), 7);
    assert!(parse_json("{\"a\": 1} x").is_err());
    assert!(parse_json("[1,").is_err());
}

#[test]
fn label_layers_are_unwrapped() {
    let label = "START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\nSTART TIMELINE: 1\n";
    let once = repr_str(label);
    let twice = repr_str(&once);
    assert_eq!(decode_label(&once), label);
    assert_eq!(decode_label(&twice), label);
    assert_eq!(decode_label(&repr_str(&twice)), label);
    assert_eq!(decode_label("not a literal"), "not a literal");
}

#[test]
fn ctime_only_times_are_local() {
    let t = time_from("begin_time", &Value::String("Sun Nov  1 20:36:47 2026".into())).expect("ctime");
    assert_eq!(t.format("%Y-%m-%d %H:%M:%S").to_string(), "2026-11-01 20:36:47");
    let iso = time_from("x", &Value::String("2026-11-21T20:36:47.564065+01:00".into())).expect("iso");
    assert_eq!(format_py_datetime(&iso), "2026-11-21 20:36:47.564065+01:00");
}

#[test]
fn backup_json_round_trips() {
    let text = "backup_label='START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\\nSTART TIMELINE: 1\\n'\nbackup_name=second one\nbegin_offset=40\nbegin_time=2026-11-01 20:36:40.587807+00:00\nbegin_wal=000000010000000000000003\nbegin_xlog=0/3000028\nchildren_backup_ids=20261122T000000,20261123T000000\ncopy_stats={'copy_time': 1.280923, 'total_time': 1e-05}\nend_time=2026-11-21 20:36:41+02:00\nincluded_files=['/etc/a.conf']\nmode=postgres\nstatus=DONE\nsystemid=7710726391820181241\ntablespaces=[('tbs1', 16384, '/tmp/bt/tbs1')]\ntimeline=1\nversion=150018\n";
    let info = BackupInfo::parse(text, std::path::Path::new("x")).expect("parse");
    let id = BackupId::new("20261121T203640").expect("id");
    let json = backup_to_json(&id, &info);
    assert_eq!(json["begin_time"], "Sun Nov  1 20:36:40 2026");
    assert_eq!(json["end_time_iso"], "2026-11-21T20:36:41+02:00");
    assert_eq!(json["tablespaces"], serde_json::json!([["tbs1", 16384, "/tmp/bt/tbs1"]]));
    let keys: Vec<&String> = json.as_object().expect("object").keys().collect();
    assert_eq!(keys.last().map(|k| k.as_str()), Some("end_time_iso"));
    let (back_id, back) = backup_from_json(&json).expect("back");
    assert_eq!(back_id, id);
    assert_eq!(back, info);
    assert_eq!(back.to_text(), info.to_text());
}

const XLOG: &str = "000000010000000000000002\t16\t1795293400.852009\tgzip\tNone\n\
                    000000010000000000000003\t16\t1795293401.5\tgzip\tNone\n\
                    000000010000000000000003.00000028.backup\t25\t1795293402.0\tgzip\tNone\n\
                    000000010000000000000004\t16\t1795293403.1318574\tNone\tNone\n";

fn setup() -> (tempfile::TempDir, ServerLayout, crate::config::Config) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("barman.conf");
    let home = dir.path().join("home");
    std::fs::write(
        &conf,
        format!("[barman]\nbarman_home = {}\n[pg]\nconninfo = x\nbackup_method = postgres\n", home.display()),
    )
    .expect("conf");
    let config = crate::config::Config::load(&conf).expect("load").config;
    let layout = ServerLayout::default_for(&home, "pg");
    layout.ensure_dirs().expect("dirs");
    std::fs::write(layout.xlogdb_path(), XLOG).expect("xlog.db");
    let info = BackupInfo {
        status: BackupStatus::Done,
        begin_wal: Some("000000010000000000000003".parse().expect("wal")),
        ..BackupInfo::default()
    };
    info.save(&layout, &BackupId::new("20261121T203640").expect("id")).expect("save");
    (dir, layout, config)
}

fn ask(
    layout: &ServerLayout,
    config: &crate::config::Config,
    wal: Option<&str>,
    pos: Option<u64>,
) -> Result<PrimaryInfo, String> {
    let req = SyncInfoRequest { last_wal: wal.map(str::to_owned), last_position: pos };
    let server = config.server("pg").expect("pg");
    let text = sync_info(layout, server, &req).map_err(|e| e.to_string())?;
    assert!(text.starts_with("{\n    \"last_position\": ") && text.ends_with("\n}"), "{text}");
    Ok(PrimaryInfo::parse(&text).expect("parse"))
}

#[test]
fn sync_info_positions_filters_and_errors() {
    let (_dir, layout, config) = setup();
    let names = |i: &PrimaryInfo| i.wals.iter().map(|w| w.name.to_string()).collect::<Vec<_>>();
    let all = ask(&layout, &config, None, None).expect("all");
    assert_eq!((all.last_position, all.last_name.as_str()), (174, "000000010000000000000004"));
    assert_eq!(names(&all).len(), 3, "older than the first backup's begin_wal skipped");
    assert_eq!(all.backups.len(), 1);
    assert_eq!(all.config_str("name"), Some("pg"));
    assert_eq!(all.wals[2].time, 1795293403.1318574);
    let from = ask(&layout, &config, Some("000000010000000000000003"), Some(56)).expect("probe matches");
    assert_eq!(names(&from), ["000000010000000000000003.00000028.backup", "000000010000000000000004"]);
    let rescan = ask(&layout, &config, Some("000000010000000000000003"), Some(7)).expect("rescan");
    assert_eq!(from, rescan);
    let older = ask(&layout, &config, Some("000000010000000000000001"), None).expect_err("older");
    assert_eq!(
        older,
        "last_wal '000000010000000000000001' is older than the first available wal '000000010000000000000002'"
    );
    let newer = ask(&layout, &config, Some("000000010000000000000009"), Some(174)).expect_err("newer");
    assert_eq!(
        newer,
        "last_wal '000000010000000000000009' is newer than the last available wal  '000000010000000000000004'"
    );
    std::fs::write(layout.xlogdb_path(), "").expect("empty");
    let empty = ask(&layout, &config, Some("000000010000000000000009"), Some(3)).expect("empty xlog.db");
    assert_eq!((empty.last_position, empty.last_name.as_str(), empty.wals.len()), (0, "", 0));
}

#[test]
fn timedelta_words() {
    assert_eq!(human_readable_timedelta(86_400 * 7), "7 days");
    assert_eq!(human_readable_timedelta(90_061), "1 day, 1 hour, 1 minute, 1 second");
    assert_eq!(human_readable_timedelta(0), "less than one second");
}
