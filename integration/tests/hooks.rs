//! Hook scripts (`archive`, `delete`, `wal_delete`, standard and retry): the same operations
//! run by real Barman 3.20.1 and by our `barman` on identical catalogues (fake backups, WAL
//! files with a valid page header, no PostgreSQL needed) call the same scripts, in the same
//! order, with the same `BARMAN_*` variables and `PATH` (paths and compressed sizes
//! normalised). Retry scripts are rerun until they succeed; exit 63 from a pre retry script
//! stops archiving (the file stays queued) and stops a delete (exit 1, annotation left).
//! Also: our `wal_retention_window` keeps recent WAL that retention would otherwise purge.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_integration::cmd::execute;
use barman_integration::scratch::chown_recursive;
use barman_integration::{cargo_bin, skip_unless, BarmanHome, OsUser, Outcome, RealBarman, Scratch};

const SEG: u64 = 16 << 20;
const SYSID: u64 = 7_000_000_000_000_000_001;
const HOOKS: [&str; 6] = ["archive", "delete", "wal_delete", "archive_retry", "delete_retry", "wal_delete_retry"];

/// `(log, seg)` → segment name on timeline 1.
fn seg_name(log: u32, seg: u32) -> String {
    format!("00000001{log:08X}{seg:08X}")
}

/// A sparse 16 MiB segment whose long page header matches its name and [`SYSID`].
fn write_segment(dir: &Path, log: u32, seg: u32, fill: u8) -> Result<PathBuf> {
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(&0xD110u16.to_le_bytes());
    head.extend_from_slice(&2u16.to_le_bytes());
    head.extend_from_slice(&1u32.to_le_bytes());
    head.extend_from_slice(&((u64::from(log) << 32) + u64::from(seg) * SEG).to_le_bytes());
    head.extend_from_slice(&0u32.to_le_bytes());
    head.extend_from_slice(&0u32.to_le_bytes());
    head.extend_from_slice(&SYSID.to_le_bytes());
    head.extend_from_slice(&u32::try_from(SEG)?.to_le_bytes());
    head.extend_from_slice(&8192u32.to_le_bytes());
    head.extend_from_slice(&[fill; 24]);
    let path = dir.join(seg_name(log, seg));
    let f = fs::File::create(&path)?;
    std::io::Write::write_all(&mut &f, &head)?;
    f.set_len(SEG)?;
    Ok(path)
}

fn backup_info(status: &str, begin: &str, day: u32) -> String {
    let error = if status == "FAILED" { "failure copy (test)" } else { "None" };
    format!(
        "backup_label=None\nbegin_offset=40\nbegin_time=2026-01-0{day} 00:00:00+00:00\nbegin_wal={begin}\n\
         begin_xlog=0/28\nchildren_backup_ids=None\ncluster_size=100\ncompression=None\n\
         config_file=/x/postgresql.conf\ncopy_stats=None\ndata_checksums=on\ndeduplicated_size=100\n\
         encryption=None\nend_offset=0\nend_time=2026-01-0{day} 00:01:00+00:00\nend_wal={begin}\nend_xlog=0/100\n\
         error={error}\nhba_file=/x/pg_hba.conf\nident_file=/x/pg_ident.conf\nincluded_files=None\nmode=postgres\n\
         parent_backup_id=None\npgdata=/x\nserver_name=pg\nsize=100\nstatus={status}\nsummarize_wal=None\n\
         systemid={SYSID}\ntablespaces=None\ntimeline=1\nversion=150018\nxlog_segment_size={SEG}\n"
    )
}

/// One barman home (real Barman's or ours) whose hook scripts dump their environment.
struct Side {
    home: BarmanHome,
    dumps: PathBuf,
    ctl: PathBuf,
    bin_dir: String,
    script: String,
}

impl Side {
    fn new(scratch: &Scratch, label: &str, bin: PathBuf, hooks: &[&str], extra: &[&str]) -> Result<Side> {
        let bin_dir = bin.parent().context("bin dir")?.display().to_string();
        let mut home = BarmanHome::new(scratch, "barman", bin)?;
        let dumps = scratch.mkdir_owned(format!("{label}-dumps"), "barman")?;
        let ctl = scratch.mkdir_owned(format!("{label}-ctl"), "barman")?;
        let script = scratch.join(format!("{label}-hook.sh"));
        fs::write(
            &script,
            format!(
                "#!/bin/sh\nn=$(ls {d} | wc -l)\nf={d}/$(printf %04d $n)-$BARMAN_PHASE-$BARMAN_HOOK\n\
                 env | grep -E '^(BARMAN_|PATH=)' | sort > $f\nc={c}/$BARMAN_PHASE-$BARMAN_HOOK\n\
                 if [ -s $c ]; then code=$(head -1 $c); sed -i 1d $c; exit $code; fi\nexit 0\n",
                d = dumps.display(),
                c = ctl.display()
            ),
        )?;
        fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let mut lines: Vec<String> = [
            "conninfo = host=/nonexistent",
            "backup_method = postgres",
            "archiver = on",
            "compression = gzip",
            "path_prefix = /opt/hook-prefix",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        for h in hooks {
            lines.push(format!("{h}_script = {}", script.display()));
        }
        lines.extend(extra.iter().map(ToString::to_string));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        home.add_raw_server("pg", &refs)?;
        let server = home.server_dir("pg");
        for d in ["incoming", "streaming", "wals", "base", "meta", "errors"] {
            fs::create_dir_all(server.join(d))?;
        }
        chown_recursive(&home.home(), &OsUser::lookup("barman")?)?;
        Ok(Side { home, dumps, ctl, bin_dir, script: script.display().to_string() })
    }

    fn server(&self) -> PathBuf {
        self.home.server_dir("pg")
    }

    fn run(&self, args: &[&str]) -> Result<Outcome> {
        execute(&mut self.home.command(args), None, Duration::from_mins(3))
    }

    fn add_backup(&self, id: &str, status: &str, begin: &str, day: u32) -> Result<()> {
        let s = self.server();
        fs::create_dir_all(s.join("base").join(id).join("data"))?;
        fs::write(s.join("base").join(id).join("data/PG_VERSION"), "15\n")?;
        fs::write(s.join("meta").join(format!("{id}-backup.info")), backup_info(status, begin, day))?;
        chown_recursive(&s, &OsUser::lookup("barman")?)
    }

    /// Copies `files` (mtimes kept) into incoming/.
    fn queue(&self, files: &[PathBuf]) -> Result<()> {
        for f in files {
            let status =
                std::process::Command::new("cp").arg("-a").arg(f).arg(self.server().join("incoming")).status()?;
            ensure!(status.success(), "cp {}", f.display());
        }
        chown_recursive(&self.server().join("incoming"), &OsUser::lookup("barman")?)
    }

    fn control(&self, phase_hook: &str, codes: &[i32]) -> Result<()> {
        let text: String = codes.iter().map(|c| c.to_string() + "\n").collect();
        let path = self.ctl.join(phase_hook);
        fs::write(&path, text)?;
        chown_recursive(&path, &OsUser::lookup("barman")?)
    }

    /// Sizes recorded in xlog.db, by name.
    fn xlogdb_sizes(&self) -> BTreeMap<String, String> {
        let text = fs::read_to_string(self.home.xlog_db("pg")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                Some((f.first()?.to_string(), f.get(1)?.to_string()))
            })
            .collect()
    }

    /// The dumps written so far (then removed), normalised: home, config and binary paths
    /// replaced, and compressed sizes replaced by `<stored>` when they are the ones this
    /// side recorded in xlog.db (Python's gzip and ours need not produce the same bytes).
    fn take_dumps(&self, sizes: &BTreeMap<String, String>) -> Result<Vec<(String, BTreeMap<String, String>)>> {
        let mut names: Vec<PathBuf> =
            fs::read_dir(&self.dumps)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        names.sort();
        let home = self.home.home().display().to_string();
        let cfg = self.home.config_path().display().to_string();
        let mut out = Vec::new();
        for p in names {
            let label = p.file_name().and_then(|n| n.to_str()).unwrap_or("").get(5..).unwrap_or("").to_owned();
            let mut vars = BTreeMap::new();
            for line in fs::read_to_string(&p)?.lines() {
                let (k, v) = line.split_once('=').with_context(|| format!("{}: {line}", p.display()))?;
                let v = v
                    .replace(&self.script, "<SCRIPT>")
                    .replace(&cfg, "<CFG>")
                    .replace(&home, "<HOME>")
                    .replace(&self.bin_dir, "<BIN>");
                vars.insert(k.to_owned(), v);
            }
            if vars.get("BARMAN_COMPRESSION").is_some_and(|c| c == "gzip") {
                let seg = vars.get("BARMAN_SEGMENT").cloned().unwrap_or_default();
                if sizes.get(&seg) == vars.get("BARMAN_SIZE") {
                    vars.insert("BARMAN_SIZE".into(), "<stored>".into());
                }
            }
            fs::remove_file(&p)?;
            out.push((label, vars));
        }
        Ok(out)
    }
}

fn render(dumps: &[(String, BTreeMap<String, String>)]) -> String {
    let mut s = String::new();
    for (label, vars) in dumps {
        s.push_str(&format!("== {label}\n"));
        for (k, v) in vars {
            s.push_str(&format!("  {k}={v}\n"));
        }
    }
    s
}

/// Both sides' dumps since the last call must be identical; returns them.
fn same_dumps(
    step: &str,
    real: &Side,
    ours: &Side,
    sizes: &(BTreeMap<String, String>, BTreeMap<String, String>),
) -> Result<Vec<(String, BTreeMap<String, String>)>> {
    let (r, o) = (real.take_dumps(&sizes.0)?, ours.take_dumps(&sizes.1)?);
    ensure!(r == o, "{step}: hook runs differ\n--- barman\n{}--- ours\n{}", render(&r), render(&o));
    Ok(r)
}

fn labels(d: &[(String, BTreeMap<String, String>)]) -> Vec<&str> {
    d.iter().map(|(l, _)| l.as_str()).collect()
}

fn all_hooks() -> Vec<String> {
    HOOKS.iter().flat_map(|h| [format!("pre_{h}"), format!("post_{h}")]).collect()
}

fn pair(scratch: &Scratch, hooks: &[String], extra: &[&str]) -> Result<(Side, Side)> {
    let refs: Vec<&str> = hooks.iter().map(String::as_str).collect();
    let real = Side::new(scratch, "real", RealBarman::require()?.bin("barman"), &refs, extra)?;
    let ours = Side::new(scratch, "ours", cargo_bin("barman")?, &refs, extra)?;
    Ok((real, ours))
}

#[test]
fn archive_delete_and_retention_hooks_match_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("hooks env")?;
    let (real, ours) = pair(&scratch, &all_hooks(), &[])?;
    let seed = scratch.mkdir("seed")?;
    let mut files = Vec::new();
    for seg in 1..=6 {
        files.push(write_segment(&seed, 0, seg, 0)?);
    }
    files.push(write_segment(&seed, 1, 0, 0)?);
    files.push(write_segment(&seed, 1, 1, 0)?);
    for side in [&real, &ours] {
        side.add_backup("20260101T000000", "DONE", &seg_name(0, 2), 1)?;
        side.add_backup("20260102T000000", "FAILED", &seg_name(0, 3), 2)?;
        side.add_backup("20260103T000000", "DONE", &seg_name(0, 4), 3)?;
        side.add_backup("20260104T000000", "DONE", &seg_name(1, 1), 4)?;
        side.queue(&files)?;
        side.run(&["archive-wal", "pg"])?.success()?;
    }
    let sizes = (real.xlogdb_sizes(), ours.xlogdb_sizes());
    ensure!(sizes.0.len() == 8 && sizes.1.len() == 8, "archived: {sizes:?}");
    let d = same_dumps("archive-wal", &real, &ours, &sizes)?;
    ensure!(d.len() == 32, "4 hook runs per WAL file:\n{}", render(&d));
    ensure!(
        labels(&d[..4])
            == ["pre-archive_script", "pre-archive_retry_script", "post-archive_retry_script", "post-archive_script"],
        "order: {:?}",
        labels(&d[..4])
    );
    ensure!(d[2].1["BARMAN_COMPRESSION"] == "gzip" && d[0].1["BARMAN_COMPRESSION"].is_empty(), "{}", render(&d[..4]));

    // An identical copy and a different one arriving again: the errors post scripts get.
    let dup = scratch.mkdir("dup")?;
    let again = vec![files[2].clone(), write_segment(&dup, 0, 4, 7)?];
    for side in [&real, &ours] {
        side.queue(&again)?;
        side.run(&["archive-wal", "pg"])?.success()?;
    }
    let d = same_dumps("duplicates", &real, &ours, &sizes)?;
    ensure!(d.len() == 8, "{}", render(&d));
    ensure!(d[2].1["BARMAN_ERROR"].starts_with("MatchingDuplicateWalFile:WalFileInfo("), "{}", render(&d));
    ensure!(d[6].1["BARMAN_ERROR"].starts_with("DuplicateWalFile:WalFileInfo("), "{}", render(&d));

    // A FAILED backup: no WAL removed, its post scripts see no neighbours.
    for side in [&real, &ours] {
        side.run(&["delete", "pg", "20260102T000000"])?.success()?;
    }
    let d = same_dumps("delete FAILED", &real, &ours, &sizes)?;
    ensure!(d.len() == 4 && d[0].1["BARMAN_PREVIOUS_ID"] == "20260101T000000", "{}", render(&d));
    ensure!(d[3].1["BARMAN_PREVIOUS_ID"].is_empty() && d[3].1["BARMAN_STATUS"] == "FAILED", "{}", render(&d));

    // The oldest backup: WAL removed file by file.
    for side in [&real, &ours] {
        side.run(&["delete", "pg", "20260101T000000"])?.success()?;
    }
    let d = same_dumps("delete oldest", &real, &ours, &sizes)?;
    ensure!(d.iter().filter(|(l, _)| l == "pre-wal_delete_script").count() == 3, "{}", render(&d));

    // Retention by cron: a whole hash directory goes in one rmtree, then one more file.
    for side in [&real, &ours] {
        let cfg = fs::read_to_string(side.home.config_path())?;
        fs::write(side.home.config_path(), format!("{cfg}retention_policy = REDUNDANCY 1\n"))?;
        side.run(&["cron"])?.success()?;
    }
    let d = same_dumps("cron retention", &real, &ours, &sizes)?;
    let wal_runs: Vec<&str> = d
        .iter()
        .filter(|(l, _)| l.contains("wal_delete"))
        .map(|(l, v)| if l == "pre-wal_delete_script" { v["BARMAN_SEGMENT"].as_str() } else { "" })
        .filter(|s| !s.is_empty())
        .collect();
    ensure!(wal_runs == [seg_name(0, 4), seg_name(0, 5), seg_name(0, 6), seg_name(1, 0)], "{wal_runs:?}");
    let listing = |s: &Side| -> Result<Vec<String>> {
        let mut v: Vec<String> =
            fs::read_dir(s.server().join("wals"))?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        v.sort();
        Ok(v)
    };
    ensure!(listing(&real)? == listing(&ours)?, "wals/: {:?} vs {:?}", listing(&real)?, listing(&ours)?);
    Ok(())
}

#[test]
fn retry_scripts_rerun_and_abort_like_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("hooks retry")?;
    let (real, ours) = pair(&scratch, &all_hooks(), &[])?;
    let seed = scratch.mkdir("seed")?;
    let first = vec![write_segment(&seed, 0, 1, 0)?];
    let next = vec![write_segment(&seed, 0, 2, 0)?, write_segment(&seed, 0, 3, 0)?];
    let mut sizes = (BTreeMap::new(), BTreeMap::new());

    // Fails twice, then succeeds: three runs, 3 s apart, and the file is archived.
    for side in [&real, &ours] {
        side.add_backup("20260101T000000", "DONE", &seg_name(0, 1), 1)?;
        side.add_backup("20260102T000000", "DONE", &seg_name(0, 2), 2)?;
        side.control("pre-archive_retry_script", &[1, 1, 0])?;
        side.queue(&first)?;
        let t = Instant::now();
        side.run(&["archive-wal", "pg"])?.success()?;
        ensure!(t.elapsed() >= Duration::from_secs(6), "two 3 s breaks expected, took {:?}", t.elapsed());
    }
    sizes.0 = real.xlogdb_sizes();
    sizes.1 = ours.xlogdb_sizes();
    let d = same_dumps("retry", &real, &ours, &sizes)?;
    ensure!(
        labels(&d)
            == [
                "pre-archive_script",
                "pre-archive_retry_script",
                "pre-archive_retry_script",
                "pre-archive_retry_script",
                "post-archive_retry_script",
                "post-archive_script"
            ],
        "{}",
        render(&d)
    );

    // 63 from the pre retry script: the post scripts run with the abort as error, the file
    // stays in incoming/ and the next one is not even tried; exit 0.
    for side in [&real, &ours] {
        side.control("pre-archive_retry_script", &[63])?;
        side.queue(&next)?;
        side.run(&["archive-wal", "pg"])?.success()?;
        let mut left: Vec<String> = fs::read_dir(side.server().join("incoming"))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        left.sort();
        ensure!(left == [seg_name(0, 2), seg_name(0, 3)], "incoming/ after abort: {left:?}");
    }
    let d = same_dumps("abort archive", &real, &ours, &sizes)?;
    ensure!(d.len() == 4, "{}", render(&d));
    ensure!(
        d[2].1["BARMAN_ERROR"].starts_with("Abort 'pre_archive_retry_script' retry hook script ("),
        "{}",
        render(&d)
    );
    ensure!(d[3].1["BARMAN_ERROR"].is_empty(), "post_archive_script gets no error in Barman: {}", render(&d));

    // 63 before a delete: exit 1 with Barman's EXCEPTION, nothing deleted, annotation left.
    // 62 (abort and continue) and a post retry 63 (ignored) do not stop anything.
    for side in [&real, &ours] {
        side.control("pre-delete_retry_script", &[63])?;
        let o = side.run(&["delete", "pg", "20260101T000000"])?;
        o.fails_with_code(1)?.stderr_contains("EXCEPTION: Abort 'pre_delete_retry_script' retry hook script (")?;
        let meta = side.server().join("meta");
        ensure!(meta.join("20260101T000000-backup.info").exists(), "backup.info removed");
        ensure!(meta.join("20260101T000000-delete_this").exists(), "delete annotation not left");
        ensure!(side.server().join("base/20260101T000000/data").exists(), "data removed");
        fs::remove_file(meta.join("20260101T000000-delete_this"))?;
    }
    let d = same_dumps("abort delete", &real, &ours, &sizes)?;
    ensure!(labels(&d) == ["pre-delete_script", "pre-delete_retry_script"], "{}", render(&d));
    for side in [&real, &ours] {
        side.control("pre-delete_retry_script", &[62])?;
        side.control("post-delete_retry_script", &[63])?;
        side.run(&["delete", "pg", "20260101T000000"])?.success()?;
        ensure!(!side.server().join("meta/20260101T000000-backup.info").exists(), "not deleted");
    }
    same_dumps("abort-continue delete", &real, &ours, &sizes)?;
    Ok(())
}

/// `wal_retention_window` (ours only): with REDUNDANCY 1, cron's purge keeps the WAL files
/// archived within the window and removes the older ones, as real Barman removes them all.
#[test]
fn wal_retention_window_keeps_recent_wal() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("hooks walwindow")?;
    let hooks = ["pre_wal_delete"];
    let real = Side::new(&scratch, "real", RealBarman::require()?.bin("barman"), &hooks, &[])?;
    let ours = Side::new(&scratch, "ours", cargo_bin("barman")?, &hooks, &["wal_retention_window = 2 DAYS"])?;
    let seed = scratch.mkdir("seed")?;
    let mut files = Vec::new();
    for seg in 1..=6 {
        let f = write_segment(&seed, 0, seg, 0)?;
        // Segments 1-3 were archived 10 days ago, 4-6 an hour ago.
        let age = if seg <= 3 { "10 days ago" } else { "1 hour ago" };
        let status = std::process::Command::new("touch").arg("-m").arg("-d").arg(age).arg(&f).status()?;
        ensure!(status.success(), "touch");
        files.push(f);
    }
    for side in [&real, &ours] {
        side.add_backup("20260101T000000", "DONE", &seg_name(0, 1), 1)?;
        side.add_backup("20260102T000000", "DONE", &seg_name(0, 6), 2)?;
        side.queue(&files)?;
        side.run(&["archive-wal", "pg"])?.success()?;
        let cfg = fs::read_to_string(side.home.config_path())?;
        fs::write(side.home.config_path(), format!("{cfg}retention_policy = REDUNDANCY 1\n"))?;
        side.run(&["cron"])?.success()?;
    }
    let names = |s: &Side| -> Result<Vec<String>> {
        let text = fs::read_to_string(s.home.xlog_db("pg"))?;
        Ok(text.lines().filter_map(|l| l.split('\t').next()).map(str::to_owned).collect())
    };
    let expect_real: Vec<String> = vec![seg_name(0, 6)];
    let expect_ours: Vec<String> = (4..=6).map(|s| seg_name(0, s)).collect();
    ensure!(names(&real)? == expect_real, "real Barman kept {:?}", names(&real)?);
    ensure!(names(&ours)? == expect_ours, "we kept {:?}", names(&ours)?);
    for seg in 4..=5 {
        let p = ours.server().join("wals/0000000100000000").join(seg_name(0, seg));
        ensure!(p.exists(), "{} removed from wals/", p.display());
    }
    let pre: Vec<String> =
        ours.take_dumps(&BTreeMap::new())?.into_iter().map(|(_, v)| v["BARMAN_SEGMENT"].clone()).collect();
    ensure!(pre == (1..=3).map(|s| seg_name(0, s)).collect::<Vec<_>>(), "wal_delete hooks ran for {pre:?}");
    Ok(())
}
