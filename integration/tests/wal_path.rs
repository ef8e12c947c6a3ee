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
    s.pg.psql("insert into marker values (42)")?;
    let last = s.pg.switch_wal()?;
    s.pg.wait_for_archived(&last, Duration::from_mins(2))?;
    s.barman.run(&["cron"])?;
    let tables = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history", "marker"];
    let want: Vec<String> = tables.iter().map(|t| s.pg.table_checksum(t)).collect::<Result<_>>()?;

    let spool = s.scratch.mkdir_owned("spool", "postgres")?;
    let restore = format!(
        "{} -p 8 --spool-dir {} -c {} --port {} 127.0.0.1 pg %f %p",
        cargo_bin("barman-wal-restore")?.display(),
        spool.display(),
        s.barman.config_path().display(),
        s.sshd.port()
    );
    fs::write(base.join("recovery.signal"), "")?;
    chown_recursive(&base, &barman_integration::OsUser::lookup("postgres")?)?;
    let opts = PgOptions::default()
        .conf(format!("restore_command = '{restore}'"))
        .path_prefix(s.sshd.ssh_wrapper_dir_for("postgres")?);
    let restored = PgCluster::start_existing(&s.scratch, &base, opts)?;
    restored.wait_for_recovery_end(Duration::from_mins(3))?;
    let got: Vec<String> = tables.iter().map(|t| restored.table_checksum(t)).collect::<Result<_>>()?;
    ensure!(got == want, "restored tables differ: {got:?} vs {want:?}");
    ensure!(restored.psql("select id from marker")? == "42");
    Ok(())
}
