//! Tests of backup.info: the spec example and real Barman 3.20.1 files, field by field
//! and byte for byte.
#![allow(clippy::unreadable_literal)] // values copied verbatim from the files

use std::path::Path;

use chrono::{DateTime, FixedOffset};

use super::*;
use crate::catalogue::backup_id::BackupId;
use crate::catalogue::error::CatalogueError;
use crate::catalogue::layout::ServerLayout;
use crate::wal::{TimelineId, WalFileName, WalSegSize};

/// The example of spec §8.3, as written by Barman 3.20.1.
const SPEC_EXAMPLE: &str = r"backup_label='START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\nCHECKPOINT LOCATION: 0/3000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-21 20:36:40 UTC\nLABEL: pg_basebackup base backup\nSTART TIMELINE: 1\n'
begin_offset=40
begin_time=2026-11-21 20:36:40.587807+00:00
begin_wal=000000010000000000000003
begin_xlog=0/3000028
children_backup_ids=None
cluster_size=23203529
compression=None
config_file=/tmp/bt/pgdata/postgresql.conf
copy_stats={'copy_time': 1.280923, 'total_time': 1.280923}
data_checksums=on
deduplicated_size=23195476
encryption=None
end_offset=0
end_time=2026-11-21 20:36:41.911397+00:00
end_wal=000000010000000000000003
end_xlog=0/4000000
error=None
hba_file=/tmp/bt/pgdata/pg_hba.conf
ident_file=/tmp/bt/pgdata/pg_ident.conf
included_files=None
mode=postgres
parent_backup_id=None
pgdata=/tmp/bt/pgdata
server_name=pg
size=23195476
status=DONE
summarize_wal=None
systemid=7710726391820181241
tablespaces=[('tbs1', 16384, '/tmp/bt/tbs1')]
timeline=1
version=150018
xlog_segment_size=16777216
";

const REAL_FIRST: &str = include_str!("../../../tests/fixtures/barman-3.20.1/20261121T220257-backup.info");
const REAL_NAMED: &str = include_str!("../../../tests/fixtures/barman-3.20.1/20261121T220301-backup.info");

fn parse(text: &str) -> BackupInfo {
    BackupInfo::parse(text, Path::new("test-backup.info")).unwrap_or_else(|e| panic!("{e}"))
}

fn time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

#[test]
fn keys_are_sorted() {
    let mut sorted = BACKUP_INFO_KEYS;
    sorted.sort_unstable();
    assert_eq!(sorted, BACKUP_INFO_KEYS);
}

#[test]
fn spec_example_parses_field_by_field() {
    let i = parse(SPEC_EXAMPLE);
    let label = i.backup_label.as_deref().expect("label");
    assert!(label.starts_with("START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\nCHECKPOINT"));
    assert!(label.ends_with("START TIMELINE: 1\n"));
    assert_eq!(i.backup_name, None);
    assert_eq!(i.begin_offset, Some(40));
    assert_eq!(i.begin_time, time("2026-11-21T20:36:40.587807+00:00"));
    assert_eq!(i.begin_wal.as_ref().map(WalFileName::as_str), Some("000000010000000000000003"));
    assert_eq!(i.begin_xlog, Some("0/3000028".parse().expect("lsn")));
    assert_eq!(i.children_backup_ids, None);
    assert_eq!(i.cluster_size, Some(23_203_529));
    assert_eq!(i.compression, None);
    assert_eq!(i.config_file.as_deref(), Some("/tmp/bt/pgdata/postgresql.conf"));
    assert_eq!(i.copy_stat("copy_time"), Some(1.280923));
    assert_eq!(i.copy_stat("total_time"), Some(1.280923));
    assert_eq!(i.data_checksums.as_deref(), Some("on"));
    assert_eq!(i.deduplicated_size, Some(23_195_476));
    assert_eq!(i.encryption, None);
    assert_eq!(i.end_offset, Some(0));
    assert_eq!(i.end_time, time("2026-11-21T20:36:41.911397+00:00"));
    assert_eq!(i.end_wal.as_ref().map(WalFileName::as_str), Some("000000010000000000000003"));
    assert_eq!(i.end_xlog, Some("0/4000000".parse().expect("lsn")));
    assert_eq!(i.error, None);
    assert_eq!(i.hba_file.as_deref(), Some("/tmp/bt/pgdata/pg_hba.conf"));
    assert_eq!(i.ident_file.as_deref(), Some("/tmp/bt/pgdata/pg_ident.conf"));
    assert_eq!(i.included_files, None);
    assert_eq!(i.mode.as_deref(), Some("postgres"));
    assert_eq!(i.parent_backup_id, None);
    assert_eq!(i.pgdata.as_deref(), Some("/tmp/bt/pgdata"));
    assert_eq!(i.server_name.as_deref(), Some("pg"));
    assert_eq!(i.size, Some(23_195_476));
    assert_eq!(i.snapshots_info, None);
    assert_eq!(i.status, BackupStatus::Done);
    assert_eq!(i.summarize_wal, None);
    assert_eq!(i.systemid.as_deref(), Some("7710726391820181241"));
    assert_eq!(i.systemid_u64(), Some(7_710_726_391_820_181_241));
    let tbs = Tablespace { name: "tbs1".into(), oid: 16384, location: "/tmp/bt/tbs1".into() };
    assert_eq!(i.tablespaces, Some(vec![tbs]));
    assert_eq!(i.timeline, TimelineId::new(1));
    assert_eq!(i.version, Some(150_018));
    assert_eq!(i.xlog_segment_size, Some(WalSegSize::DEFAULT));
    assert_eq!(i.backup_type(), BackupType::Full);
}

#[test]
fn spec_example_writes_back_byte_identical() {
    assert_eq!(parse(SPEC_EXAMPLE).to_text(), SPEC_EXAMPLE);
}

#[test]
fn real_barman_files_round_trip() {
    let first = parse(REAL_FIRST);
    assert_eq!(first.to_text(), REAL_FIRST);
    assert_eq!(first.status, BackupStatus::Done);
    assert_eq!(first.begin_time, time("2026-11-21T22:02:57.471349+00:00"));
    assert_eq!(first.end_time, time("2026-11-21T22:02:58.618700+00:00"));
    assert_eq!(first.copy_stat("copy_time"), Some(1.141229));
    assert_eq!(first.data_checksums.as_deref(), Some("off"));
    assert_eq!(first.tablespaces.as_ref().map(|t| (t[0].oid, t[0].location.as_str())), Some((16384, "/tmp/bfx/tbs1")));
    assert_eq!(first.backup_name, None);
    let named = parse(REAL_NAMED);
    assert_eq!(named.to_text(), REAL_NAMED);
    assert_eq!(named.backup_name.as_deref(), Some("second one"));
    assert_eq!(named.end_offset, Some(96));
    assert_eq!(named.end_wal.as_ref().map(WalFileName::as_str), Some("000000010000000000000006"));
    assert_eq!(named.end_xlog, Some("0/6000060".parse().expect("lsn")));
}

#[test]
fn unknown_key_is_refused() {
    let text = format!("{SPEC_EXAMPLE}shiny_new_field=1\n");
    let err = BackupInfo::parse(&text, Path::new("/x/meta/1-backup.info")).expect_err("unknown key");
    assert!(matches!(err, CatalogueError::UnsupportedField { ref key, .. } if key == "shiny_new_field"), "{err}");
    assert!(err.to_string().contains("Unsupported field 'shiny_new_field'"), "{err}");
}

#[test]
fn reader_quirks_follow_barman() {
    let text = "# comment\n\n   \nstatus = FAILED \nerror=failure backup (boom = bad)\nmode=rsync-concurrent\n";
    let i = parse(text);
    assert_eq!(i.status, BackupStatus::Failed);
    assert_eq!(i.error.as_deref(), Some("failure backup (boom = bad)"));
    assert_eq!(i.backup_type(), BackupType::Rsync);
    assert!(i.is_full());
    assert_eq!(i.xlog_segment_size, Some(WalSegSize::DEFAULT), "default when absent");
    assert!(matches!(BackupInfo::parse("no equals sign\n", Path::new("f")), Err(CatalogueError::InvalidLine { .. })));
    assert!(matches!(BackupInfo::parse("size=lots\n", Path::new("f")), Err(CatalogueError::InvalidValue { .. })));
    assert!(matches!(BackupInfo::parse("status=BOGUS\n", Path::new("f")), Err(CatalogueError::InvalidValue { .. })));
}

#[test]
fn empty_repr_values_are_written_as_none() {
    let info = BackupInfo {
        backup_label: Some(String::new()),
        copy_stats: Some(vec![]),
        included_files: Some(vec![]),
        tablespaces: Some(vec![]),
        children_backup_ids: Some(vec![]),
        ..BackupInfo::default()
    };
    let text = info.to_text();
    for key in ["backup_label", "copy_stats", "included_files", "tablespaces", "children_backup_ids"] {
        assert!(text.contains(&format!("\n{key}=None\n")) || text.starts_with(&format!("{key}=None\n")), "{key}");
    }
    assert!(!text.contains("backup_name") && !text.contains("snapshots_info"));
    assert!(text.contains("status=EMPTY\n") && text.ends_with("xlog_segment_size=16777216\n"));
}

#[test]
fn incremental_and_snapshot_fields_round_trip() {
    let text = SPEC_EXAMPLE
        .replace("children_backup_ids=None", "children_backup_ids=20261122T000000,20261123T000000")
        .replace("parent_backup_id=None", "parent_backup_id=20261120T000000")
        .replace("included_files=None", "included_files=['/etc/pg/a.conf', \"/etc/pg/it's.conf\"]")
        .replace("copy_stats={'copy_time': 1.280923, 'total_time': 1.280923}", "copy_stats={'total_time': 12.5, 'number_of_workers': 2, 'analysis_time': 0.25, 'analysis_time_per_item': {'data': 0.25}, 'copy_time': 11.0, 'copy_time_per_item': {'data': 10.0, 'tbs1': 1e-05}}")
        .replace("status=DONE", "snapshots_info={'provider': 'gcp', 'provider_info': {'project': 'p'}, 'snapshots': [{'mount': {'mount_options': 'rw', 'mount_point': '/opt/disk0'}}]}\nstatus=DONE")
        .replace("backup_label='", "backup_name=my backup\nbackup_label='")
        .replace("begin_time=2026-11-21 20:36:40.587807+00:00", "begin_time=2026-11-21 21:36:40+01:00");
    // backup_name must sort after backup_label.
    let text = text.replacen("backup_name=my backup\n", "", 1).replacen(
        "begin_offset=",
        "backup_name=my backup\nbegin_offset=",
        1,
    );
    let i = parse(&text);
    assert_eq!(i.backup_type(), BackupType::Incremental);
    assert!(!i.is_full());
    assert_eq!(i.children_backup_ids.as_ref().map(Vec::len), Some(2));
    assert_eq!(i.included_files.as_ref().map(|f| f[1].as_str()), Some("/etc/pg/it's.conf"));
    assert_eq!(i.copy_stat("number_of_workers"), Some(2.0));
    assert_eq!(i.to_text(), text);
}

#[test]
fn write_is_atomic_and_read_back() {
    let home = tempfile::tempdir().expect("tempdir");
    let layout = ServerLayout::default_for(home.path(), "pg");
    let id = BackupId::new("20261121T203640").expect("id");
    let info = parse(SPEC_EXAMPLE);
    info.save(&layout, &id).expect("save creates meta/");
    let path = layout.backup_info_path(&id);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), SPEC_EXAMPLE);
    assert_eq!(std::fs::read_dir(layout.meta_dir()).expect("ls").count(), 1, "no temp file left");
    assert_eq!(BackupInfo::load(&layout, &id).expect("load"), Some(info));
    assert_eq!(BackupInfo::load(&layout, &BackupId::new("20000101T000000").expect("id")).expect("load"), None);
}

#[test]
fn legacy_location_is_read_when_meta_is_missing() {
    let home = tempfile::tempdir().expect("tempdir");
    let layout = ServerLayout::default_for(home.path(), "pg");
    let id = BackupId::new("20261121T203640").expect("id");
    let legacy = layout.legacy_backup_info_path(&id);
    std::fs::create_dir_all(legacy.parent().expect("parent")).expect("mkdir");
    std::fs::write(&legacy, "status=FAILED\n").expect("write");
    assert_eq!(BackupInfo::locate(&layout, &id), legacy);
    assert_eq!(BackupInfo::load(&layout, &id).expect("load").map(|i| i.status), Some(BackupStatus::Failed));
    BackupInfo { status: BackupStatus::Done, ..BackupInfo::default() }.save(&layout, &id).expect("save");
    assert_eq!(BackupInfo::locate(&layout, &id), layout.backup_info_path(&id));
}
