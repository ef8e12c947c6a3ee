//! The common crate's formats against the real thing, produced in the same run: a catalogue
//! real Barman 3.20.1 wrote (backup.info, keep annotations, xlog.db, identity.json), WAL
//! segments and a timeline history file a real PostgreSQL 15 wrote, and files Barman's own
//! compressor classes wrote. Every expected value comes from the real tool, never from a
//! constant in this file.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use barman_common::catalogue::{
    format_py_datetime, keep, major_version, BackupId, BackupInfo, BackupType, Catalogue, Identity, KeepTarget,
    PyValue, ServerLayout, Tablespace, WalSniffer, XlogDb, XlogDbEntry, BACKUP_INFO_KEYS,
};
use barman_common::compress::{self, Codec, Level};
use barman_common::wal::{
    parse_history, validate_segment_header, ExpectedSegment, HeaderError, Lsn, PgMajor, TimelineId, WalFileName,
    WalSegSize,
};
use barman_integration::scratch::chown_recursive;
use barman_integration::{
    cmd, real_barman_catalogue, skip_unless, BarmanHome, BarmanServerOptions, OsUser, PgCluster, PgOptions, RealBarman,
    Scratch, Sshd,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// 1. Catalogue interop
// ---------------------------------------------------------------------------------------

/// Dumps every `Field` of Barman's own `BackupInfo`, loaded by Barman from each file given,
/// as JSON (times as `[epoch µs, UTC offset s]`, dicts as their Python repr).
const PY_BACKUP_INFO: &str = r#"
import datetime, inspect, json, sys
import barman.output  # breaks the output <-> infofile import cycle
from barman.infofile import BackupInfo, Field
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
def norm(name, v):
    if v is None:
        return None
    if isinstance(v, datetime.datetime):
        return [(v - EPOCH) // datetime.timedelta(microseconds=1), int(v.utcoffset().total_seconds())]
    if name == "tablespaces":
        return [[t.name, t.oid, t.location] for t in v]
    if name == "copy_stats":
        return repr(v)
    if name == "snapshots_info":
        return repr(v.to_dict())
    return v
out = {}
for path in sys.argv[1:]:
    info = BackupInfo(backup_id="unused")
    info.load(path)
    out[path] = {n: norm(n, getattr(info, n)) for n, f in inspect.getmembers(BackupInfo) if isinstance(f, Field)}
print(json.dumps(out))
"#;

/// Our parsed [`BackupInfo`] in the shape [`PY_BACKUP_INFO`] prints.
fn normalized(i: &BackupInfo) -> Value {
    // (`chrono` is not a dependency here: the type is inferred from the field.)
    macro_rules! time {
        ($t:expr) => {
            $t.as_ref().map(|t| json!([t.timestamp_micros(), t.offset().local_minus_utc()]))
        };
    }
    let s = |v: Option<String>| v.map_or(Value::Null, Value::String);
    let ids = |ids: &Vec<BackupId>| ids.iter().map(BackupId::as_str).map(str::to_owned).collect::<Vec<_>>();
    let tablespaces = |l: &Vec<Tablespace>| l.iter().map(|t| json!([t.name, t.oid, t.location])).collect::<Vec<_>>();
    let dict = |pairs: &Vec<(String, PyValue)>| {
        PyValue::Dict(pairs.iter().map(|(k, v)| (PyValue::Str(k.clone()), v.clone())).collect()).to_string()
    };
    json!({
        "backup_label": i.backup_label,
        "backup_name": i.backup_name,
        "begin_offset": i.begin_offset,
        "begin_time": time!(i.begin_time),
        "begin_wal": s(i.begin_wal.as_ref().map(ToString::to_string)),
        "begin_xlog": s(i.begin_xlog.as_ref().map(ToString::to_string)),
        "children_backup_ids": i.children_backup_ids.as_ref().map(ids),
        "cluster_size": i.cluster_size,
        "compression": i.compression,
        "config_file": i.config_file,
        "copy_stats": i.copy_stats.as_ref().map(dict),
        "data_checksums": i.data_checksums,
        "deduplicated_size": i.deduplicated_size,
        "encryption": i.encryption,
        "end_offset": i.end_offset,
        "end_time": time!(i.end_time),
        "end_wal": s(i.end_wal.as_ref().map(ToString::to_string)),
        "end_xlog": s(i.end_xlog.as_ref().map(ToString::to_string)),
        "error": i.error,
        "hba_file": i.hba_file,
        "ident_file": i.ident_file,
        "included_files": i.included_files,
        "mode": i.mode,
        "parent_backup_id": s(i.parent_backup_id.as_ref().map(ToString::to_string)),
        "pgdata": i.pgdata,
        "server_name": i.server_name,
        "size": i.size,
        "snapshots_info": s(i.snapshots_info.as_ref().map(ToString::to_string)),
        "status": i.status.as_str(),
        "summarize_wal": i.summarize_wal,
        "systemid": i.systemid,
        "tablespaces": i.tablespaces.as_ref().map(tablespaces),
        "timeline": i.timeline.map(TimelineId::get),
        "version": i.version,
        "xlog_segment_size": i.xlog_segment_size.map(WalSegSize::bytes),
    })
}

/// Runs a Python snippet in real Barman's venv; returns stdout.
fn python(real: &RealBarman, script: &str, args: &[&str]) -> Result<String> {
    let mut py = Command::new(real.bin("python"));
    py.arg("-c").arg(script).args(args).env("PATH", "/usr/bin:/bin");
    let output = cmd::run(&mut py)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `cp -a src dst`: contents, owners, modes and nanosecond mtimes.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    cmd::run(Command::new("cp").arg("-a").arg(src).arg(dst)).map(drop)
}

/// A new real-Barman home with server `pg` (pointing at `pg`) holding a copy of `from`'s
/// `pg` catalogue. A retention policy makes `list-backup` show keep annotations.
fn catalogue_copy(scratch: &Scratch, real: &RealBarman, pg: &PgCluster, from: &Path) -> Result<BarmanHome> {
    let mut home = BarmanHome::real(scratch, real, "barman")?;
    let opts = BarmanServerOptions { extra: vec!["retention_policy = REDUNDANCY 1".into()], ..Default::default() };
    home.add_server("pg", pg, &opts)?;
    copy_tree(from, &home.server_dir("pg"))?;
    Ok(home)
}

fn layout_of(home: &BarmanHome) -> ServerLayout {
    ServerLayout::default_for(&home.home(), "pg")
}

/// What we write as root must stay usable by Barman, which runs as `barman`.
fn hand_to_barman(home: &BarmanHome) -> Result<()> {
    chown_recursive(&home.home(), &OsUser::lookup("barman")?)
}

/// Real Barman's views of a catalogue: `list-backup` and `show-backup` (text and JSON) and,
/// when `keep` is set, `keep --status` of every backup.
fn real_views(home: &BarmanHome, ids: &[String], keep_status: bool) -> Result<Vec<(String, String)>> {
    let mut commands: Vec<Vec<&str>> = vec![vec!["list-backup", "pg"], vec!["-f", "json", "list-backup", "pg"]];
    for id in ids {
        commands.push(vec!["show-backup", "pg", id]);
        commands.push(vec!["-f", "json", "show-backup", "pg", id]);
        if keep_status {
            commands.push(vec!["keep", "--status", "pg", id]);
        }
    }
    commands.into_iter().map(|args| Ok((args.join(" "), home.run(&args)?))).collect()
}

fn ensure_same_views(what: &str, expected: &[(String, String)], actual: &[(String, String)]) -> Result<()> {
    ensure!(expected.len() == actual.len(), "{what}: {} views against {}", expected.len(), actual.len());
    for ((command, want), (_, got)) in expected.iter().zip(actual) {
        ensure!(want == got, "{what}: `barman {command}` differs\n--- expected ---\n{want}\n--- actual ---\n{got}");
    }
    Ok(())
}

/// Relative paths of every file under `dir`, skipping `skip` (relative) subtrees.
fn file_set(dir: &Path, skip: &[&str]) -> Result<BTreeSet<PathBuf>> {
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeSet<PathBuf>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            let rel = path.strip_prefix(root)?.to_path_buf();
            if skip.iter().any(|s| rel == Path::new(s)) {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, skip, out)?;
            } else {
                out.insert(rel);
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, skip, &mut out)?;
    Ok(out)
}

fn json_at<'a>(value: &'a Value, path: &[&str]) -> Result<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key).ok_or_else(|| anyhow!("no {key:?} in {v}")))
}

/// (a) Every field of our parse of `text` against Barman's own parse (`py`) and against
/// what `barman -f json show-backup` reports; (b) `to_text()` is byte-identical.
fn check_backup_info(id: &str, path: &Path, text: &str, py: &Value, show: &Value, sysid: u64) -> Result<BackupInfo> {
    let info = BackupInfo::parse(text, path)?;
    let ours = normalized(&info);
    let (Some(theirs), Some(ours)) = (py.as_object(), ours.as_object()) else {
        return Err(anyhow!("{id}: not JSON objects: {py} / {ours}"));
    };
    let keys: BTreeSet<&String> = theirs.keys().collect();
    let our_keys: BTreeSet<&String> = ours.keys().collect();
    ensure!(keys == our_keys, "{id}: Barman's BackupInfo fields {keys:?}, ours {our_keys:?}");
    let known: BTreeSet<&str> = BACKUP_INFO_KEYS.into_iter().collect();
    ensure!(keys.iter().map(|k| k.as_str()).collect::<BTreeSet<_>>() == known, "BACKUP_INFO_KEYS is not Barman's set");
    for key in keys {
        ensure!(theirs[key] == ours[key], "{id}: field {key}: Barman parsed {}, we parsed {}", theirs[key], ours[key]);
    }
    ensure!(
        info.to_text() == text,
        "{id}: to_text() differs from the file\n--- file ---\n{text}\n--- ours ---\n{}",
        info.to_text()
    );

    // What Barman shows about the backup, from our values.
    let show = show.get("pg").ok_or_else(|| anyhow!("show-backup JSON without pg: {show}"))?;
    let base = json_at(show, &["base_backup_information"])?;
    let lsn = |l: &Option<Lsn>| l.map(|l| l.to_string());
    let wal = |w: &Option<WalFileName>| w.as_ref().map(ToString::to_string);
    let checks: Vec<(&str, Value, Value)> = vec![
        ("backup_id", show["backup_id"].clone(), json!(id)),
        ("status", show["status"].clone(), json!(info.status.as_str())),
        ("system_id", show["system_id"].clone(), json!(info.systemid)),
        ("system_id (live cluster)", show["system_id"].clone(), json!(sysid.to_string())),
        ("postgresql_version", show["postgresql_version"].clone(), json!(info.version)),
        ("pgdata_directory", show["pgdata_directory"].clone(), json!(info.pgdata)),
        ("cluster_size_bytes", show["cluster_size_bytes"].clone(), json!(info.cluster_size)),
        ("backup_name", show.get("backup_name").cloned().unwrap_or(Value::Null), json!(info.backup_name)),
        ("data_checksums", show["server_information"]["data_checksums"].clone(), json!(info.data_checksums)),
        ("summarize_wal", show["server_information"]["summarize_wal"].clone(), json!(info.summarize_wal)),
        ("backup_type", show["backup_type"].clone(), json!(format!("{:?}", info.backup_type()).to_lowercase())),
        (
            "tablespaces",
            show["tablespaces"].clone(),
            json!(info
                .tablespaces
                .iter()
                .flatten()
                .map(|t| json!({"name": t.name, "oid": t.oid, "location": t.location}))
                .collect::<Vec<_>>()),
        ),
        ("backup_method", base["backup_method"].clone(), json!(info.mode)),
        ("compression", base["compression"].clone(), json!(info.compression)),
        ("encryption", base["encryption"].clone(), json!(info.encryption)),
        ("backup_size_bytes", base["backup_size_bytes"].clone(), json!(info.deduplicated_size)),
        ("timeline", base["timeline"].clone(), json!(info.timeline.map(TimelineId::get))),
        ("begin_wal", base["begin_wal"].clone(), json!(wal(&info.begin_wal))),
        ("end_wal", base["end_wal"].clone(), json!(wal(&info.end_wal))),
        ("begin_lsn", base["begin_lsn"].clone(), json!(lsn(&info.begin_xlog))),
        ("end_lsn", base["end_lsn"].clone(), json!(lsn(&info.end_xlog))),
        ("begin_offset", base["begin_offset"].clone(), json!(info.begin_offset)),
        ("end_offset", base["end_offset"].clone(), json!(info.end_offset)),
        ("begin_time", base["begin_time"].clone(), json!(info.begin_time.as_ref().map(format_py_datetime))),
        ("end_time", base["end_time"].clone(), json!(info.end_time.as_ref().map(format_py_datetime))),
        (
            "begin_time_timestamp",
            base["begin_time_timestamp"].clone(),
            json!(info.begin_time.map(|t| t.timestamp().to_string())),
        ),
        (
            "end_time_timestamp",
            base["end_time_timestamp"].clone(),
            json!(info.end_time.map(|t| t.timestamp().to_string())),
        ),
        ("copy_time_seconds", base["copy_time_seconds"].clone(), json!(info.copy_stat("copy_time"))),
    ];
    for (what, barman, ours) in checks {
        ensure!(barman == ours, "{id}: show-backup {what} is {barman}, our parse gives {ours}");
    }
    ensure!(info.backup_type() == BackupType::Full && info.is_full());
    ensure!(info.systemid_u64() == Some(sysid), "{id}: systemid {:?} is not the cluster's {sysid}", info.systemid);
    Ok(info)
}

/// What `barman archive-wal` does with `incoming/`, through our API: each file (in name
/// order) is renamed into the archive and its entry appended to xlog.db.
fn archive_incoming_like_barman(layout: &ServerLayout) -> Result<usize> {
    let mut names: Vec<String> = fs::read_dir(&layout.incoming)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    let mut db = XlogDb::open(layout)?;
    for name in &names {
        let wal: WalFileName = name.parse().map_err(|e| anyhow!("incoming {name}: {e}"))?;
        let dst = layout.wal_path(&wal);
        fs::create_dir_all(dst.parent().expect("wal paths have a parent"))?;
        fs::rename(layout.incoming.join(name), &dst)?;
        db.append(&[XlogDbEntry::from_file(&dst, wal, &WalSniffer::default())?])?;
    }
    Ok(names.len())
}

/// (d) Every xlog.db entry names a stored file of that size and compression.
fn check_xlog_db_against_archive(layout: &ServerLayout) -> Result<Vec<XlogDbEntry>> {
    let entries: Vec<XlogDbEntry> = XlogDb::open(layout)?.entries()?.into_iter().map(|(_, e)| e).collect();
    ensure!(!entries.is_empty(), "{}: empty", layout.xlogdb_path().display());
    for entry in &entries {
        let path = layout.wal_path(&entry.name);
        let meta = fs::metadata(&path).with_context(|| format!("xlog.db names {}, not on disk", entry.name))?;
        ensure!(meta.len() == entry.size, "{}: xlog.db size {}, file {}", entry.name, entry.size, meta.len());
        let detected = compress::detect_file(&path)?.map(Codec::name);
        ensure!(
            detected == entry.compression.as_deref(),
            "{}: xlog.db compression {:?}, magic says {detected:?}",
            entry.name,
            entry.compression
        );
        ensure!(entry.encryption.is_none(), "{}: unexpected encryption", entry.name);
    }
    Ok(entries)
}

#[test]
fn catalogue_interop_with_real_barman() -> Result<()> {
    let real = skip_unless!(RealBarman::require());
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let scratch = Scratch::new("foundation catalogue")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let (pg, original) = (&fixture.pg, &fixture.barman);
    let sysid = pg.system_identifier()?;

    // A second backup, named and with a tablespace, then one more WAL left in incoming/.
    let tbs = scratch.mkdir_owned_mode("tbs1", "postgres", 0o700)?;
    pg.psql(&format!("create tablespace tbs1 location '{}'", tbs.display()))?;
    pg.psql("create table in_tbs tablespace tbs1 as select g from generate_series(1, 100) g")?;
    original.run(&[
        "backup",
        "--name",
        "second one",
        "--immediate-checkpoint",
        "--wait",
        "--wait-timeout",
        "60",
        "pg",
    ])?;
    pg.psql("insert into harness_data select g, 'late' from generate_series(5001, 6000) g")?;
    let last = pg.switch_wal()?;
    pg.wait_for_archived(&last, Duration::from_secs(30))?;
    let listed = original.done_backups("pg")?; // newest first
    ensure!(listed.len() == 2, "expected 2 DONE backups, got {listed:?}");
    let ids: Vec<String> = listed.iter().rev().cloned().collect();

    // (a), (b): every backup.info parses, field by field as Barman reads it, and writes
    // back byte-identical.
    let orig_layout = layout_of(original);
    let paths: Vec<PathBuf> = ids.iter().map(|id| orig_layout.meta_dir().join(format!("{id}-backup.info"))).collect();
    let path_args: Vec<&str> = paths.iter().map(|p| p.to_str().expect("UTF-8 path")).collect();
    let py: Value = serde_json::from_str(&python(&real, PY_BACKUP_INFO, &path_args)?)?;
    let mut infos = Vec::new();
    for (id, path) in ids.iter().zip(&paths) {
        let text = fs::read_to_string(path)?;
        let show = original.run_json(&["show-backup", "pg", id])?;
        let py_info =
            py.get(path.to_str().expect("UTF-8")).ok_or_else(|| anyhow!("python said nothing on {path:?}"))?;
        infos.push(check_backup_info(id, path, &text, py_info, &show, sysid)?);
    }
    ensure!(infos[1].backup_name.as_deref() == Some("second one"), "backup_name: {:?}", infos[1].backup_name);
    let tablespaces = infos[1].tablespaces.as_ref().ok_or_else(|| anyhow!("second backup has no tablespaces"))?;
    let oid = pg.psql("select oid from pg_tablespace where spcname = 'tbs1'")?;
    ensure!(tablespaces.len() == 1 && tablespaces[0].oid.to_string() == oid, "tablespaces {tablespaces:?}, oid {oid}");
    ensure!(infos[0].tablespaces.is_none(), "first backup: {:?}", infos[0].tablespaces);

    // Our catalogue sees the backups real Barman lists, in the same order.
    let catalogue = Catalogue::load(&orig_layout)?;
    let our_ids: Vec<&str> = catalogue.available().rev().map(|(id, _)| id.as_str()).collect();
    ensure!(our_ids == listed, "Catalogue::load gives {our_ids:?} (newest first), barman list-backup {listed:?}");
    // identity.json as Barman wrote it.
    let identity_text = fs::read_to_string(orig_layout.identity_path())?;
    let identity = Identity::read(&orig_layout)?.ok_or_else(|| anyhow!("no identity.json"))?;
    ensure!(identity.systemid == sysid.to_string(), "identity systemid {}", identity.systemid);
    let version = infos[0].version.ok_or_else(|| anyhow!("no version"))?;
    ensure!(identity.version == major_version(version), "identity version {}", identity.version);
    ensure!(identity.to_json() == identity_text, "identity.json:\n{identity_text}\nours:\n{}", identity.to_json());

    // (c) Write-back. Three copies of the catalogue as it is now: S stays untouched, real
    // Barman changes A, our API changes B.
    let snapshot = catalogue_copy(&scratch, &real, pg, &original.server_dir("pg"))?;
    let by_barman = catalogue_copy(&scratch, &real, pg, &original.server_dir("pg"))?;
    let by_us = catalogue_copy(&scratch, &real, pg, &original.server_dir("pg"))?;
    let before = real_views(&snapshot, &ids, false)?;
    let us = layout_of(&by_us);
    for id in &ids {
        let id = BackupId::new(id)?;
        let info = BackupInfo::read(&us.backup_info_path(&id))?;
        info.save(&us, &id)?;
    }
    hand_to_barman(&by_us)?;
    ensure_same_views("after our backup.info rewrite", &before, &real_views(&by_us, &ids, false)?)?;

    // The same changes both ways: keep the first backup, archive what is in incoming/.
    by_barman.run(&["keep", "--target", "full", "pg", &ids[0]])?;
    by_barman.run(&["archive-wal", "pg"])?;
    keep(&us, &BackupId::new(&ids[0])?, KeepTarget::Full)?;
    let archived = archive_incoming_like_barman(&us)?;
    ensure!(archived > 0, "nothing in incoming/ to archive");
    hand_to_barman(&by_us)?;
    let expected = real_views(&by_barman, &ids, true)?;
    ensure_same_views("after keep + archive", &expected, &real_views(&by_us, &ids, true)?)?;
    let listing = &expected[0].1;
    let kept_line = listing.lines().find(|l| l.contains(ids[0].as_str())).unwrap_or_default();
    ensure!(kept_line.contains("KEEP:FULL"), "list-backup after keep:\n{listing}");
    ensure!(!before[0].1.contains("KEEP:"), "list-backup before keep:\n{}", before[0].1);
    let status = &expected.iter().find(|(c, _)| c == &format!("keep --status pg {}", ids[0])).expect("asked").1;
    ensure!(status.contains("full"), "keep --status: {status}");
    // The files themselves: same set, same bytes where we wrote.
    let them = layout_of(&by_barman);
    let files = file_set(&them.backup_directory, &["base"])?;
    ensure!(files == file_set(&us.backup_directory, &["base"])?, "file sets differ");
    for rel in files.iter().filter(|r| r.starts_with("meta") || r.ends_with("pg-xlog.db")) {
        let (want, got) = (fs::read(them.backup_directory.join(rel))?, fs::read(us.backup_directory.join(rel))?);
        ensure!(
            want == got,
            "{} differs:\n--- Barman ---\n{}\n--- ours ---\n{}",
            rel.display(),
            String::from_utf8_lossy(&want),
            String::from_utf8_lossy(&got)
        );
    }

    // (d) xlog.db as real Barman wrote it (archiver, then archive-wal) parses and matches
    // the stored files.
    let original_entries = check_xlog_db_against_archive(&orig_layout)?;
    let entries = check_xlog_db_against_archive(&them)?;
    ensure!(entries.len() == original_entries.len() + archived, "archive-wal added {archived}: {entries:?}");
    hand_to_barman(&by_barman)?;

    // Rebuild: real `barman rebuild-xlogdb` on one copy, ours on another, of an archive with
    // compressed segments, a partial, a temporary and a stray file.
    let rebuilt_by_barman = catalogue_copy(&scratch, &real, pg, &them.backup_directory)?;
    let theirs = layout_of(&rebuilt_by_barman);
    let codecs = [Codec::Gzip, Codec::Zstd, Codec::Bzip2, Codec::Lz4, Codec::Xz, Codec::Snappy];
    let segments: Vec<&XlogDbEntry> = entries.iter().filter(|e| e.name.is_segment()).collect();
    ensure!(segments.len() >= 3, "too few segments to vary: {segments:?}");
    for (entry, codec) in segments.iter().zip(codecs) {
        let path = theirs.wal_path(&entry.name);
        let tmp = path.with_extension("compressing");
        compress::compress(codec, Level::Low, fs::File::open(&path)?, fs::File::create(&tmp)?)?;
        fs::rename(&tmp, &path)?;
    }
    let first = theirs.wal_path(&segments[0].name);
    fs::copy(theirs.wal_path(&segments[1].name), first.with_file_name(format!("{}.partial", segments[2].name)))?;
    fs::write(first.with_file_name("000000010000000000000099.tmp"), "temporary")?;
    fs::write(theirs.wals_directory.join("stray-file"), "stray")?;
    hand_to_barman(&rebuilt_by_barman)?;
    let rebuilt_by_us = scratch.mkdir("rebuilt-by-us")?;
    copy_tree(&theirs.backup_directory, &rebuilt_by_us.join("pg"))?;
    let ours = ServerLayout::default_for(&rebuilt_by_us, "pg");
    let said = rebuilt_by_barman.run(&["rebuild-xlogdb", "pg"])?;
    let counts = XlogDb::rebuild(&ours, &WalSniffer::default())?;
    ensure!(said.contains(&counts.message("pg")), "barman rebuild-xlogdb said:\n{said}\nwe: {}", counts.message("pg"));
    let log = rebuilt_by_barman.log();
    let logged = log.lines().filter(|l| l.contains("rebuilding the wal database")).count();
    ensure!(logged > 0, "Barman warned about none of the odd files:\n{log}");
    ensure!(logged == counts.warnings.len(), "Barman logged {logged} warnings, we {:?}\n{log}", counts.warnings);
    for warning in &counts.warnings {
        let theirs_too =
            warning.replace(&rebuilt_by_us.display().to_string(), &rebuilt_by_barman.home().display().to_string());
        ensure!(log.contains(&theirs_too), "Barman did not warn {theirs_too:?}:\n{log}");
    }
    let (want, got) = (fs::read_to_string(theirs.xlogdb_path())?, fs::read_to_string(ours.xlogdb_path())?);
    ensure!(want == got, "rebuilt xlog.db differs\n--- Barman ---\n{want}--- ours ---\n{got}");
    let rebuilt = check_xlog_db_against_archive(&theirs)?;
    let compressed: BTreeSet<&str> = rebuilt.iter().filter_map(|e| e.compression.as_deref()).collect();
    ensure!(compressed.len() >= 3, "rebuilt xlog.db names too few compressions: {want}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. WAL headers and history files of a real PostgreSQL 15
// ---------------------------------------------------------------------------------------

fn expected(name: &WalFileName, system_id: u64, seg_size: WalSegSize, len: u64) -> ExpectedSegment<'_> {
    ExpectedSegment { name, system_id: Some(system_id), seg_size: Some(seg_size), file_len: Some(len) }
}

fn pg_field(text: &str) -> Result<u32> {
    text.trim().parse().with_context(|| format!("not a number: {text:?}"))
}

fn controldata_u64(pg: &PgCluster, field: &str) -> Result<u64> {
    let data = pg.controldata()?;
    let value = data.get(field).ok_or_else(|| anyhow!("pg_controldata has no {field:?}"))?;
    value.parse().with_context(|| format!("pg_controldata {field:?} = {value:?}"))
}

#[test]
fn wal_headers_and_history_of_real_pg15() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("foundation wal headers")?;
    let archive = scratch.mkdir_owned("archive", "postgres")?;
    let opts = PgOptions::default().archive_command(format!("cp %p {}/%f", archive.display()));
    let mut pg = PgCluster::start(&scratch, opts)?;
    let sysid = pg.system_identifier()?;
    let seg_size = WalSegSize::new(pg.wal_segment_size()?)?;
    let block_size = controldata_u64(&pg, "WAL block size")?;
    pg.psql("create table t(id int, v text)")?;
    let mut switched = Vec::new();
    for round in 0..3 {
        pg.psql(&format!(
            "insert into t select g, md5(g::text) from generate_series({round} * 1000, {round} * 1000 + 999) g"
        ))?;
        switched.push(pg.switch_wal()?);
    }
    pg.wait_for_archived(switched.last().expect("three switches"), Duration::from_secs(30))?;

    // Every archived segment passes, and its header says what pg_controldata says.
    let mut segments = Vec::new();
    for entry in fs::read_dir(&archive)? {
        let path = entry?.path();
        let name: WalFileName = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().parse()?;
        if name.is_segment() {
            segments.push((name, fs::read(&path)?));
        }
    }
    segments.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    for switched in &switched {
        ensure!(segments.iter().any(|(n, _)| n.as_str() == switched), "{switched} not archived");
    }
    for (name, bytes) in &segments {
        let header = validate_segment_header(bytes, &expected(name, sysid, seg_size, bytes.len() as u64))
            .with_context(|| format!("real segment {name} refused"))?;
        ensure!(header.system_id == sysid, "{name}: header sysid {}", header.system_id);
        ensure!(header.pageaddr == name.start_lsn(seg_size)?, "{name}: page address {}", header.pageaddr);
        ensure!(header.tli == name.timeline().get(), "{name}: header timeline {}", header.tli);
        ensure!(u64::from(header.seg_size) == u64::from(seg_size.bytes()), "{name}: seg size {}", header.seg_size);
        ensure!(u64::from(header.block_size) == block_size, "{name}: block size {}", header.block_size);
        ensure!(header.pg_major().map(PgMajor::number) == Some(15), "{name}: magic {:#06x}", header.magic);
    }

    // Faults: a truncated copy, a renamed copy, another cluster's segment.
    let (name, bytes) = &segments[0];
    let half = &bytes[..bytes.len() / 2];
    let err =
        validate_segment_header(half, &expected(name, sysid, seg_size, half.len() as u64)).expect_err("truncated");
    ensure!(
        matches!(err, HeaderError::Length { len, expected, .. }
            if len == half.len() as u64 && expected == seg_size.bytes()),
        "truncated copy: {err}"
    );
    let next = name.next_segment(seg_size)?;
    let err =
        validate_segment_header(bytes, &expected(&next, sysid, seg_size, bytes.len() as u64)).expect_err("renamed");
    ensure!(
        matches!(err, HeaderError::PageAddr { expected, found, .. }
            if expected == next.start_lsn(seg_size)? && found == name.start_lsn(seg_size)?),
        "renamed copy: {err}"
    );
    let other = PgCluster::start(&scratch, PgOptions::default())?;
    let other_sysid = other.system_identifier()?;
    ensure!(other_sysid != sysid, "two initdb runs gave one system identifier {sysid}");
    let other_name =
        WalFileName::containing(TimelineId::FIRST, other.psql("select pg_current_wal_lsn()")?.parse()?, seg_size);
    let other_bytes = fs::read(other.data_dir().join("pg_wal").join(other_name.as_str()))?;
    let len = other_bytes.len() as u64;
    let err = validate_segment_header(&other_bytes, &expected(&other_name, sysid, seg_size, len)).expect_err("foreign");
    ensure!(
        matches!(err, HeaderError::SystemId { expected, found, .. } if expected == sysid && found == other_sysid),
        "other cluster's segment: {err}"
    );
    validate_segment_header(&other_bytes, &expected(&other_name, other_sysid, seg_size, len))?;
    drop(other);

    // A history file: promote a streaming standby once it has replayed all the primary wrote.
    let standby = PgCluster::from_basebackup(&scratch, &pg, true, PgOptions::default())?;
    pg.stop()?;
    let end_of_primary: Lsn = pg.controldata()?["Latest checkpoint location"].parse()?;
    let mut replayed = Lsn::new(0);
    barman_integration::wait_until(Duration::from_secs(30), "standby to replay the shutdown checkpoint", || {
        replayed = standby.psql("select pg_last_wal_replay_lsn()")?.parse()?;
        Ok(replayed > end_of_primary)
    })?;
    ensure!(standby.psql("select pg_promote()")? == "t", "pg_promote failed");
    standby.wait_for_recovery_end(Duration::from_secs(30))?;
    let tli = TimelineId::new(pg_field(&standby.psql("select timeline_id from pg_control_checkpoint()")?)?)
        .ok_or_else(|| anyhow!("timeline 0"))?;
    let history_name = WalFileName::history(tli);
    let text = fs::read_to_string(standby.data_dir().join("pg_wal").join(history_name.as_str()))?;
    let history = parse_history(&text)?;
    ensure!(history.len() == 1, "{history_name}: {history:?}\n{text}");
    // The first record of the new timeline, as pg_waldump decodes it, is the end of recovery
    // at the switch point, naming both timelines.
    let mut waldump = standby.pg_command("pg_waldump");
    waldump.arg("-p").arg(standby.data_dir().join("pg_wal"));
    waldump.args(["-t", &tli.to_string(), "-s", &history[0].switch_point.to_string(), "-n", "1"]);
    let dump = String::from_utf8_lossy(&cmd::run(&mut waldump)?.stdout).into_owned();
    let field =
        |key: &str| dump.split(key).nth(1).and_then(|rest| rest.split([',', ';', ' ']).next()).map(str::to_owned);
    let record_lsn: Lsn = field("lsn: ").ok_or_else(|| anyhow!("no lsn in pg_waldump output: {dump}"))?.parse()?;
    let desc = format!("END_OF_RECOVERY tli {tli}; prev tli {}", history[0].parent);
    ensure!(dump.contains(&desc), "expected {desc:?} in pg_waldump output: {dump}");
    let switch = history[0].switch_point;
    ensure!(switch == replayed, "switch point {switch}, standby replayed up to {replayed} before promotion");
    ensure!(
        record_lsn >= switch && record_lsn.checked_sub(switch).is_some_and(|gap| gap < 64),
        "end-of-recovery record at {record_lsn}, switch point {switch}"
    );
    // PostgreSQL names the segment holding the switch point on the new timeline as we do;
    // that segment begins with the parent's records, under the new timeline's name.
    let pg_name = standby.psql(&format!("select pg_walfile_name('{switch}')"))?;
    let first_of_tli = WalFileName::containing(tli, switch, seg_size);
    ensure!(pg_name == first_of_tli.as_str(), "pg_walfile_name({switch}) = {pg_name}, ours {first_of_tli}");
    let bytes = fs::read(standby.data_dir().join("pg_wal").join(first_of_tli.as_str()))?;
    let header = validate_segment_header(&bytes, &expected(&first_of_tli, sysid, seg_size, bytes.len() as u64))?;
    ensure!(header.tli <= tli.get(), "{first_of_tli}: header timeline {}", header.tli);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Compression interop with Barman's own compressors
// ---------------------------------------------------------------------------------------

/// Barman's `compression` names: every compressor class it has (`custom` aside).
const BARMAN_COMPRESSIONS: [&str; 9] = ["gzip", "pygzip", "pigz", "bzip2", "pybzip2", "xz", "zstd", "lz4", "snappy"];

/// `compress DIR NAME...`: Barman's compressor for each NAME compresses `DIR/original` into
/// `DIR/barman.NAME`. `decompress DIR NAME...`: it decompresses `DIR/ours.NAME` into
/// `DIR/ours.NAME.out`. Prints, per name, the compressor class and what
/// `CompressionManager.identify_compression` says of the compressed file.
const PY_COMPRESSION: &str = r#"
import json, sys
from types import SimpleNamespace
import barman.output
from barman.compression import CompressionManager
mode, d = sys.argv[1], sys.argv[2]
out = {}
for name in sys.argv[3:]:
    config = SimpleNamespace(compression=name, compression_level="medium", custom_compression_magic=None)
    manager = CompressionManager(config, None)
    compressor = manager.get_compressor(name)
    if mode == "compress":
        packed = "%s/barman.%s" % (d, name)
        compressor.compress("%s/original" % d, packed)
    else:
        packed = "%s/ours.%s" % (d, name)
        compressor.decompress(packed, packed + ".out")
    out[name] = {"class": type(compressor).__name__, "identify": manager.identify_compression(packed)}
print(json.dumps(out))
"#;

#[test]
fn compression_interop_with_barman_compressors() -> Result<()> {
    let real = skip_unless!(RealBarman::require());
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("foundation compression")?;
    let archive = scratch.mkdir_owned("archive", "postgres")?;
    let opts = PgOptions::default().archive_command(format!("cp %p {}/%f", archive.display()));
    let pg = PgCluster::start(&scratch, opts)?;
    pg.pgbench_init(1)?;
    let last = pg.switch_wal()?;
    pg.wait_for_archived(&last, Duration::from_secs(30))?;
    // The fullest archived segment: real records, not just zeros.
    let mut fullest: Option<(usize, Vec<u8>)> = None;
    for entry in fs::read_dir(&archive)? {
        let bytes = fs::read(entry?.path())?;
        let used = bytes.iter().filter(|&&b| b != 0).count();
        if fullest.as_ref().is_none_or(|(best, _)| used > *best) {
            fullest = Some((used, bytes));
        }
    }
    let (_, original) = fullest.ok_or_else(|| anyhow!("nothing archived"))?;

    let dir = scratch.mkdir("compression")?;
    fs::write(dir.join("original"), &original)?;
    let parse = |text: String| -> Result<Value> { Ok(serde_json::from_str(&text)?) };
    let barman_said = parse(python(
        &real,
        PY_COMPRESSION,
        &[&["compress", dir.to_str().expect("UTF-8")][..], &BARMAN_COMPRESSIONS[..]].concat(),
    )?)?;
    for name in BARMAN_COMPRESSIONS {
        let codec = Codec::from_barman_name(name)?;
        let packed_path = dir.join(format!("barman.{name}"));
        let packed = fs::read(&packed_path)?;
        // Barman's output: our detection agrees with Barman's, and we decompress it.
        let identified = &barman_said[name]["identify"];
        ensure!(compress::detect(&packed) == Some(codec), "{name}: our detect says {:?}", compress::detect(&packed));
        ensure!(
            identified == &json!(codec.name()),
            "{name}: Barman identifies its output as {identified}, we as {codec}"
        );
        let mut unpacked = Vec::new();
        compress::decompress(codec, &packed[..], &mut unpacked)
            .with_context(|| format!("decompressing Barman's {name}"))?;
        ensure!(
            unpacked == original,
            "{name}: Barman's output decompresses to {} bytes, not the segment",
            unpacked.len()
        );
        let (read, found) = compress::read_maybe_compressed(&packed_path)?;
        ensure!(found == Some(codec) && read == original, "{name}: read_maybe_compressed found {found:?}");
        // Our output, for Barman to decompress.
        compress::compress(codec, Level::Medium, &original[..], fs::File::create(dir.join(format!("ours.{name}")))?)?;
    }
    let barman_said = parse(python(
        &real,
        PY_COMPRESSION,
        &[&["decompress", dir.to_str().expect("UTF-8")][..], &BARMAN_COMPRESSIONS[..]].concat(),
    )?)?;
    for name in BARMAN_COMPRESSIONS {
        let codec = Codec::from_barman_name(name)?;
        let identified = &barman_said[name]["identify"];
        ensure!(identified == &json!(codec.name()), "{name}: Barman identifies our output as {identified}");
        let unpacked = fs::read(dir.join(format!("ours.{name}.out")))?;
        ensure!(
            unpacked == original,
            "{name}: Barman decompresses our output to {} bytes, not the segment",
            unpacked.len()
        );
    }
    ensure!(barman_said["pigz"]["class"] == json!("PigzCompressor"), "pigz ran {}", barman_said["pigz"]["class"]);
    Ok(())
}
