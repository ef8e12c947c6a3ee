//! The continuous WAL path end to end, against a real PostgreSQL 15, a private sshd and our
//! binaries: `barman-wal-archive` → `barman put-wal` → `barman cron` (archiver) → `wals/`,
//! and back with `barman-wal-restore -p 8` ← `barman get-wal` into a restored cluster.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{ServerLayout, XlogDb};
use barman_common::compress;
use barman_common::wal::WalFileName;
use barman_integration::scratch::chown_recursive;
use barman_integration::{
    cargo_bin, skip_unless, BarmanHome, BarmanServerOptions, PgCluster, PgOptions, RealBarman, Scratch, Sshd,
    SshdOptions,
};

/// Everything a WAL-path test needs: sshd reaching `barman_bin` as user `barman`, a barman
/// home for server `pg`, and a source cluster archiving through `client` (plus a copy of
/// every segment into `oracle/`, Postgres's own bytes to compare with).
struct Setup {
    pg: PgCluster,
    barman: BarmanHome,
    sshd: Sshd,
    oracle: PathBuf,
    scratch: Scratch,
}

fn setup(name: &str, real_server: bool, client: &Path, compression: Option<&str>) -> Result<Setup> {
    let scratch = Scratch::new(name)?;
    let sshd_opts = if real_server { SshdOptions::real_barman_first() } else { SshdOptions::default() };
    let sshd = Sshd::start(&scratch, sshd_opts)?;
    let mut barman = if real_server {
        BarmanHome::real(&scratch, &RealBarman::require()?, "barman")?
    } else {
        BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?
    };
    let oracle = scratch.mkdir_owned("oracle", "postgres")?;
    let archive_command = format!(
        "cp %p {oracle}/%f && {client} -c {cfg} --port {port} 127.0.0.1 pg %p",
        oracle = oracle.display(),
        client = client.display(),
        cfg = barman.config_path().display(),
        port = sshd.port(),
    );
    let opts = PgOptions::default().archive_command(archive_command).path_prefix(sshd.ssh_wrapper_dir_for("postgres")?);
    let pg = PgCluster::start(&scratch, opts)?;
    let server = BarmanServerOptions { compression: compression.map(str::to_owned), ..BarmanServerOptions::default() };
    barman.add_server("pg", &pg, &server)?;
    Ok(Setup { pg, barman, sshd, oracle, scratch })
}

/// Writes WAL with pgbench until at least `segments` segments were archived.
fn write_wal(pg: &PgCluster, scale: u32, segments: usize) -> Result<String> {
    pg.pgbench_init(scale)?;
    pg.pgbench(&["-c", "2", "-t", "500", "-n"])?;
    let last = pg.switch_wal()?;
    pg.wait_for_archived(&last, Duration::from_mins(3))?;
    let archived = pg.psql("select archived_count from pg_stat_archiver")?;
    ensure!(archived.parse::<usize>()? >= segments, "only {archived} segments archived, wanted {segments}");
    Ok(last)
}

fn layout(barman: &BarmanHome) -> ServerLayout {
    ServerLayout::default_for(&barman.home(), "pg")
}

/// Every segment Postgres archived is in `wals/` once, identical after decompression, and
/// listed exactly once in xlog.db with its stored size.
fn assert_archive_matches(oracle: &Path, layout: &ServerLayout, codec: Option<compress::Codec>) -> Result<usize> {
    let mut db = XlogDb::open(layout)?;
    let mut counts: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for (_, e) in db.entries()? {
        let slot = counts.entry(e.name.to_string()).or_default();
        slot.0 += 1;
        slot.1 = e.size;
    }
    drop(db);
    let mut checked = 0;
    for entry in fs::read_dir(oracle)? {
        let path = entry?.path();
        let name: WalFileName = path.file_name().and_then(|n| n.to_str()).context("name")?.parse()?;
        let stored = layout.wal_path(&name);
        let (content, found) =
            compress::read_maybe_compressed(&stored).with_context(|| format!("{name} not archived"))?;
        if name.is_segment() {
            ensure!(found == codec, "{name}: stored as {found:?}, configured {codec:?}");
        }
        ensure!(content == fs::read(&path)?, "{name}: archived bytes differ from Postgres's");
        let (n, size) = counts.get(name.as_str()).copied().unwrap_or_default();
        ensure!(n == 1, "{name} listed {n} times in xlog.db");
        ensure!(size == fs::metadata(&stored)?.len(), "{name}: xlog.db size {size} != stored size");
        checked += 1;
    }
    Ok(checked)
}

#[test]
fn archive_64_segments_through_put_wal_and_cron() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let s = setup("wal archive", false, &cargo_bin("barman-wal-archive")?, Some("gzip"))?;
    write_wal(&s.pg, 90, 64)?;
    let out = s.barman.run(&["cron"])?;
    ensure!(out.contains("Starting WAL archiving for server pg"), "cron output: {out}");
    let layout = layout(&s.barman);
    let n = assert_archive_matches(&s.oracle, &layout, Some(compress::Codec::Gzip))?;
    ensure!(n >= 64, "only {n} segments checked");
    let left: Vec<_> = fs::read_dir(&layout.incoming)?.collect();
    ensure!(left.is_empty(), "incoming/ not drained: {left:?}");
    // A second cron finds nothing to do and changes nothing.
    let before = fs::read(layout.xlogdb_path())?;
    s.barman.run(&["cron"])?;
    ensure!(fs::read(layout.xlogdb_path())? == before, "idle cron rewrote xlog.db");
    Ok(())
}

/// Restores a base backup taken before the workload with `restore_command =
/// barman-wal-restore -p 8 …` and checks every pgbench table equals the source's.
#[test]
fn restore_with_parallel_prefetch_replays_everything() -> Result<()> {
    restore_replays_everything(Some(8))
}

/// The same with the line as Barman documents it (no `-p`, no `--spool-dir`): the restore
/// helper still prefetches, into a private spool of its own, so the segments travel in a
/// few get-wal streams over one shared ssh connection rather than one handshake each.
#[test]
fn documented_restore_line_prefetches_over_one_connection() -> Result<()> {
    restore_replays_everything(None)
}

fn restore_replays_everything(jobs: Option<u32>) -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let s = setup("wal restore", false, &cargo_bin("barman-wal-archive")?, Some("zstd"))?;
    s.pg.psql("create table marker(id int)")?;
    let base = s.scratch.mkdir_owned("base", "postgres")?;
    fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let mut bb = s.pg.pg_command("pg_basebackup");
    bb.arg("-D").arg(&base).args(["-X", "none", "-c", "fast", "--no-sync"]);
    barman_integration::run(&mut bb)?;
    write_wal(&s.pg, 10, 8)?;
    for i in 0..20 {
        s.pg.psql(&format!("insert into marker select -g from generate_series(1, {}) g", 1000 * (i + 1)))?;
        s.pg.switch_wal()?;
    }
    s.pg.psql("delete from marker")?;
    s.pg.psql("insert into marker values (42)")?;
    let last = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&last, Duration::from_mins(2))?;
    s.barman.run(&["cron"])?;
    let tables = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history", "marker"];
    let want: Vec<String> = tables.iter().map(|t| s.pg.table_checksum(t)).collect::<Result<_>>()?;

    let spool = s.scratch.mkdir_owned("spool", "postgres")?;
    let prefetch = jobs.map(|j| format!("-p {j} --spool-dir {} ", spool.display())).unwrap_or_default();
    let restore = format!(
        "{} {prefetch}-c {} 127.0.0.1 pg %f %p",
        cargo_bin("barman-wal-restore")?.display(),
        s.barman.config_path().display(),
    );
    fs::write(base.join("recovery.signal"), "")?;
    chown_recursive(&base, &barman_integration::OsUser::lookup("postgres")?)?;
    let (connections0, sessions0) = ssh_counts(&s.sshd);
    let opts = PgOptions::default()
        .conf(format!("restore_command = '{restore}'"))
        .path_prefix(s.sshd.ssh_wrapper_dir_for("postgres")?);
    let restored = PgCluster::start_existing(&s.scratch, &base, opts)?;
    restored.wait_for_recovery_end(Duration::from_mins(3))?;
    let got: Vec<String> = tables.iter().map(|t| restored.table_checksum(t)).collect::<Result<_>>()?;
    ensure!(got == want, "restored tables differ: {got:?} vs {want:?}");
    ensure!(restored.psql("select id from marker")? == "42");
    let log = fs::read_to_string(restored.log_path()).unwrap_or_default();
    let restored_segments = log.matches("restored log file \"0").count();
    let (connections, sessions) = ssh_counts(&s.sshd);
    let (connections, sessions) = (connections - connections0, sessions - sessions0);
    eprintln!("restored {restored_segments} segments over {connections} ssh connections, {sessions} sessions");
    if jobs.is_some() {
        spool_is_cleared_when_idle(&s, &spool, &restore)?;
    }
    ensure!(restored_segments >= 20, "only {restored_segments} segments restored");
    ensure!(connections <= 3, "{connections} ssh handshakes for {restored_segments} segments: not shared");
    // A handful of sessions are fixed costs: timeline history probes, and at the end the
    // segment after the last one, which is not in the archive.
    ensure!(
        sessions < restored_segments,
        "{sessions} get-wal sessions for {restored_segments} segments: not batched\nbarman log:\n{}\nsshd log:\n{}",
        s.barman.log(),
        s.sshd.log()
    );
    Ok(())
}

/// A recovery that stops early leaves segments fetched ahead in the spool; once nobody asks
/// for more, the prefetcher removes them instead of leaving them in `/var/tmp`. (One call for
/// the first segment, as at the start of a recovery, then nothing.)
fn spool_is_cleared_when_idle(s: &Setup, spool: &Path, restore: &str) -> Result<()> {
    let wal_files = || {
        fs::read_dir(spool).map_or(0, |d| {
            d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().parse::<WalFileName>().is_ok()))
                .count()
        })
    };
    let dest = s.scratch.mkdir_owned("one-call", "postgres")?;
    let line = restore.replace("%f", "000000010000000000000002").replace("%p", &dest.join("seg").display().to_string());
    let mut call = std::process::Command::new("/bin/sh");
    call.args(["-c", &line]).env(
        "PATH",
        format!("{}:{}", s.sshd.ssh_wrapper_dir_for("postgres")?.display(), barman_integration::pg::SYSTEM_PATH),
    );
    barman_integration::cmd::as_user(&mut call, &barman_integration::OsUser::lookup("postgres")?);
    barman_integration::cmd::outcome(&mut call)?.success()?;
    let start = std::time::Instant::now();
    let mut most = 0;
    while start.elapsed() < Duration::from_secs(40) {
        most = most.max(wal_files());
        if most > 0 && wal_files() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(most > 0, "the prefetcher spooled nothing ahead");
    ensure!(wal_files() == 0, "{} WAL files left in the spool after {:?} idle", wal_files(), start.elapsed());
    eprintln!("{most} segments fetched ahead, removed after {:?} without requests", start.elapsed());
    Ok(())
}

/// How many ssh connections (authentications) and sessions (remote commands) the sshd has
/// served so far, from its VERBOSE log.
fn ssh_counts(sshd: &Sshd) -> (usize, usize) {
    let log = sshd.log();
    (log.matches("Accepted publickey").count(), log.matches("Starting session: command").count())
}

/// PostgreSQL falls behind (archiving fails while WAL is written), then the documented line
/// (`barman-wal-archive -c CFG HOST pg %p`, no `-p`, no ssh configuration) drains the
/// backlog: the `.ready` segments go in a few put-wal streams over one shared connection,
/// every one of them byte-identical in the catalogue.
#[test]
fn documented_archive_line_drains_a_backlog_in_few_streams() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let s = setup("wal backlog", false, &cargo_bin("barman-wal-archive")?, None)?;
    let line = s.pg.psql("show archive_command")?;
    s.pg.psql("alter system set archive_command = 'false'")?;
    s.pg.psql("select pg_reload_conf()")?;
    s.pg.pgbench_init(5)?;
    let mut last = s.pg.switch_wal()?;
    for i in 0..40 {
        s.pg.psql(&format!("update pgbench_branches set bbalance = bbalance + {i}"))?;
        last = s.pg.switch_wal()?;
    }
    let ready = fs::read_dir(s.pg.data_dir().join("pg_wal/archive_status"))?
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".ready")))
        .count();
    ensure!(ready >= 40, "only {ready} segments waiting");
    let (connections0, sessions0) = ssh_counts(&s.sshd);
    let documented = line.replace(&format!(" --port {}", s.sshd.port()), "");
    s.pg.psql(&format!("alter system set archive_command = '{documented}'"))?;
    s.pg.psql("select pg_reload_conf()")?;
    s.pg.wait_for_archived(&last, Duration::from_mins(3))?;
    let (connections, sessions) = ssh_counts(&s.sshd);
    let (connections, sessions) = (connections - connections0, sessions - sessions0);
    eprintln!("backlog of {ready} segments: {connections} ssh connections, {sessions} put-wal sessions");
    ensure!(connections <= 2, "{connections} ssh handshakes for a backlog of {ready}: not shared");
    ensure!(sessions <= ready.div_ceil(16) + 3, "{sessions} put-wal sessions for a backlog of {ready}: not batched");
    s.barman.run(&["cron"])?;
    let n = assert_archive_matches(&s.oracle, &layout(&s.barman), None)?;
    ensure!(n >= ready, "only {n} segments checked");
    // Our put-wal took the LZ4-framed streams (`--wire-lz4`): no refusal was remembered.
    let cache = barman_integration::fixtures::wal_archive_cache_dir(None, &s.barman.config_path());
    ensure!(cache.join("wal-sent-ahead").exists(), "no sent-ahead cache in {}", cache.display());
    ensure!(!cache.join("put-wal-plain").exists(), "our put-wal refused --wire-lz4");
    Ok(())
}

/// A segment sent ahead is confirmed only while the file is the one that was sent: once a
/// different file sits under that name (a new cluster reusing names, say) the call sends it,
/// and put-wal refuses different contents under an archived name — where a name-ordered
/// cache (Barman's `wal-last-archived`) would answer 0 and lose that WAL.
#[test]
fn sent_ahead_cache_confirms_only_the_file_that_was_sent() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let s = setup("wal sent ahead", false, &cargo_bin("barman-wal-archive")?, None)?;
    write_wal(&s.pg, 5, 3)?;
    let mut segs: Vec<PathBuf> = fs::read_dir(&s.oracle)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    segs.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.len() == 24));
    segs.sort();
    ensure!(segs.len() >= 4, "need 4 segments, have {}", segs.len());
    // A pg_wal-like directory holding three consecutive segments, all ready.
    let wal = s.scratch.mkdir_owned("pgwal", "postgres")?;
    let status = s.scratch.mkdir_owned("pgwal/archive_status", "postgres")?;
    for seg in &segs[..3] {
        let name = seg.file_name().context("name")?;
        fs::copy(seg, wal.join(name))?;
        fs::write(status.join(format!("{}.ready", name.to_string_lossy())), "")?;
    }
    chown_recursive(&wal, &barman_integration::OsUser::lookup("postgres")?)?;
    let cache = s.scratch.mkdir_owned("cache", "postgres")?;
    fs::set_permissions(&cache, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let archive = |seg: &Path| -> Result<barman_integration::Outcome> {
        let path = wal.join(seg.file_name().context("name")?);
        let mut cmd = std::process::Command::new(cargo_bin("barman-wal-archive")?);
        cmd.arg("--prefetch-cache-dir").arg(&cache).arg("-c").arg(s.barman.config_path());
        cmd.args(["127.0.0.1", "pg"]).arg(path);
        barman_integration::cmd::as_user(&mut cmd, &barman_integration::OsUser::lookup("postgres")?);
        cmd.env(
            "PATH",
            format!("{}:{}", s.sshd.ssh_wrapper_dir_for("postgres")?.display(), barman_integration::pg::SYSTEM_PATH),
        );
        barman_integration::cmd::outcome(&mut cmd)
    };
    let incoming = layout(&s.barman).incoming;
    archive(&segs[0])?.success()?;
    for seg in &segs[..3] {
        ensure!(incoming.join(seg.file_name().context("name")?).is_file(), "{} not sent ahead", seg.display());
    }
    archive(&segs[1])?.success()?; // the file that was sent: confirmed from the cache
                                   // Another file under the third name: it must be sent, and put-wal refuses it.
    let third = wal.join(segs[2].file_name().context("name")?);
    fs::remove_file(&third)?;
    fs::copy(&segs[3], &third)?;
    let out = archive(&segs[2])?;
    ensure!(out.code() != Some(0), "a different file under a sent name was confirmed: {}", out.stderr_str());
    Ok(())
}
