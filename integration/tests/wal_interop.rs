//! Interop of the WAL path with real Barman 3.20.1, both ways: its `barman-wal-archive` →
//! our `put-wal`, our `barman-wal-archive` → its `put-wal`, our `barman-wal-restore` ← its
//! `get-wal`, its `barman-wal-restore` ← our `get-wal`. Every test compares real bytes: what
//! lands in `wals/` against Postgres's own segments, what is restored against the archive.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{ServerLayout, XlogDb};
use barman_common::compress;
use barman_common::wal::WalFileName;
use barman_integration::cmd::{as_user, execute, Outcome};
use barman_integration::pg::SYSTEM_PATH;
use barman_integration::{
    cargo_bin, skip_unless, wait_until, BarmanHome, BarmanServerOptions, OsUser, PgCluster, PgOptions, RealBarman,
    Scratch, Sshd, SshdOptions,
};

/// sshd reaching a `barman` (ours or real) as user `barman`, a barman home with server `pg`,
/// and a cluster archiving through `client`, copying every segment into `oracle/` first.
struct Setup {
    pg: PgCluster,
    barman: BarmanHome,
    sshd: Sshd,
    oracle: PathBuf,
    scratch: Scratch,
}

fn setup(name: &str, real_server: bool, client: &Path) -> Result<Setup> {
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
    barman.add_server("pg", &pg, &BarmanServerOptions::default())?;
    Ok(Setup { pg, barman, sshd, oracle, scratch })
}

/// Closes `n` fresh segments (a small write, then a switch each) and waits until Postgres
/// archived them all; returns their names, consecutive.
fn make_segments(pg: &PgCluster, n: usize) -> Result<Vec<String>> {
    pg.psql("create table if not exists filler(id int, v text)")?;
    let mut names = Vec::new();
    for i in 0..n {
        pg.psql(&format!("insert into filler select g, md5(g::text) from generate_series(1, {}) g", 100 + i))?;
        names.push(pg.switch_wal()?);
    }
    let last = names.last().context("no segment")?;
    pg.wait_for_archived(last, Duration::from_mins(2))?;
    Ok(names)
}

fn layout(barman: &BarmanHome) -> ServerLayout {
    ServerLayout::default_for(&barman.home(), "pg")
}

/// Every file in `oracle` is in `wals/` once, byte-identical (stored uncompressed), and
/// listed exactly once in xlog.db with its stored size. Returns how many were checked.
fn assert_archive_matches(oracle: &Path, layout: &ServerLayout) -> Result<usize> {
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
        ensure!(found.is_none(), "{name}: stored as {found:?}, no compression configured");
        ensure!(content == fs::read(&path)?, "{name}: archived bytes differ from Postgres's");
        let (n, size) = counts.get(name.as_str()).copied().unwrap_or_default();
        ensure!(n == 1, "{name} listed {n} times in xlog.db");
        ensure!(size == fs::metadata(&stored)?.len(), "{name}: xlog.db size {size} != stored size");
        checked += 1;
    }
    let left: Vec<_> = fs::read_dir(&layout.incoming)?.collect();
    ensure!(left.is_empty(), "incoming/ not drained: {left:?}");
    Ok(checked)
}

/// A `barman-wal-restore` run as `postgres` with the postgres ssh wrapper first on `PATH`.
fn restore_cmd(client: &Path, s: &Setup, extra: &[&str], wal: &str, dest: &Path) -> Result<Outcome> {
    let mut cmd = Command::new(client);
    as_user(&mut cmd, &OsUser::lookup("postgres")?);
    let path = format!("{}:{SYSTEM_PATH}", s.sshd.ssh_wrapper_dir_for("postgres")?.display());
    cmd.env("PATH", path).args(extra);
    cmd.arg("-c").arg(s.barman.config_path()).arg("--port").arg(s.sshd.port().to_string());
    cmd.args(["127.0.0.1", "pg", wal]).arg(dest);
    execute(&mut cmd, None, Duration::from_mins(1))
}

/// Restores `names[0]` plainly, then with a prefetch of `jobs` into a spool, then a WAL that
/// does not exist; checks bytes against the oracle and the not-found exit code (1).
fn check_restores(s: &Setup, client: &Path, names: &[String], jobs: usize) -> Result<()> {
    let out = s.scratch.mkdir_owned("restored", "postgres")?;
    let spool = s.scratch.mkdir_owned("spool", "postgres")?.join("wal");
    let oracle = |name: &str| fs::read(s.oracle.join(name)).with_context(|| format!("oracle {name}"));

    let dest = out.join("plain");
    restore_cmd(client, s, &[], &names[0], &dest)?.success()?;
    ensure!(fs::read(&dest)? == oracle(&names[0])?, "{}: restored bytes differ", names[0]);

    let dest = out.join("prefetch");
    let jobs_arg = jobs.to_string();
    let spool_arg = spool.display().to_string();
    let args = ["-p", jobs_arg.as_str(), "--spool-dir", spool_arg.as_str()];
    restore_cmd(client, s, &args, &names[1], &dest)?.success()?;
    ensure!(fs::read(&dest)? == oracle(&names[1])?, "{}: restored bytes differ", names[1]);
    // Our client prefetches in a background process, Barman's before it exits: wait for
    // the spool to hold exactly the following segments under their final names.
    let want: Vec<String> = names[2..=jobs].to_vec();
    let mut spooled = Vec::new();
    let filled = wait_until(Duration::from_secs(30), "the spool to fill", || {
        spooled = fs::read_dir(&spool)?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.as_ref().map_or(true, |n: &String| !n.starts_with('.')))
            .collect::<Result<Vec<String>>>()?;
        spooled.sort();
        Ok(spooled == want)
    });
    filled.with_context(|| format!("spool holds {spooled:?}, wanted {want:?}"))?;
    for name in &want {
        ensure!(fs::read(spool.join(name))? == oracle(name)?, "spooled {name} differs");
    }
    // A spool hit: the next one comes from the spool, which then no longer holds it.
    let dest = out.join("from-spool");
    restore_cmd(client, s, &args, &names[2], &dest)?.success()?;
    ensure!(fs::read(&dest)? == oracle(&names[2])?, "{}: spool-restored bytes differ", names[2]);
    ensure!(!spool.join(&names[2]).exists(), "spool hit left {} behind", names[2]);

    let missing = "00000001000000AA00000001";
    restore_cmd(client, s, &[], missing, &out.join("missing"))?
        .fails_with_code(1)?
        .stderr_contains("Remote 'barman get-wal' command has failed!")?;
    // With a peek, a missing WAL is "not available" (exit 2): still a failure for Postgres.
    let outcome = restore_cmd(client, s, &args, missing, &out.join("missing-p"))?;
    ensure!(!outcome.status.success(), "missing WAL with -p succeeded:\n{outcome}");
    Ok(())
}

#[test]
fn real_wal_archive_into_our_put_wal() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(RealBarman::require());
    let s = setup("interop real-archive our-put", false, &real.bin("barman-wal-archive"))?;
    let names = make_segments(&s.pg, 3)?;
    let out = s.barman.run(&["archive-wal", "pg"])?;
    ensure!(out.contains(&names[0]), "archive-wal output does not name {}: {out}", names[0]);
    let n = assert_archive_matches(&s.oracle, &layout(&s.barman))?;
    ensure!(n >= 3, "only {n} files checked");
    check_batch_lz4(&s, &names)?;
    Ok(())
}

/// Our `get-wal --batch N --keep-compression --batch-lz4` from this uncompressed store: every
/// segment goes out as an LZ4 frame followed by its own `SHA256SUMS` member, the sum is that
/// of the bytes sent, and the frame decompresses to Postgres's segment.
fn check_batch_lz4(s: &Setup, names: &[String]) -> Result<()> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let got = s.barman.outcome(&["get-wal", "--batch", "3", "--keep-compression", "--batch-lz4", "pg", &names[0]])?;
    got.success()?;
    let mut archive = tar::Archive::new(&got.stdout[..]);
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut body = Vec::new();
        entry.read_to_end(&mut body)?;
        members.push((name, body));
    }
    ensure!(
        members.len() == 6,
        "expected 3 segments with their sums, got {:?}",
        members.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    for (pair, name) in members.chunks(2).zip(names) {
        let [(data_name, packed), (sums_name, sums)] = pair else { unreachable!("chunks of 2") };
        ensure!(data_name == name && sums_name == "SHA256SUMS", "members {data_name}, {sums_name} for {name}");
        ensure!(compress::detect(packed) == Some(compress::Codec::Lz4), "{name} was not sent as LZ4");
        let line = format!("{} *{name}\n", hex::encode(Sha256::digest(packed)));
        ensure!(sums[..] == *line.as_bytes(), "sums of {name}: {}", String::from_utf8_lossy(sums));
        let mut plain = Vec::new();
        compress::decompress(compress::Codec::Lz4, &packed[..], &mut plain)?;
        ensure!(plain == fs::read(s.oracle.join(name))?, "{name} differs from Postgres's segment after LZ4");
        ensure!(packed.len() < plain.len() / 2, "{name}: {} LZ4 bytes for {}", packed.len(), plain.len());
    }
    Ok(())
}

#[test]
fn our_wal_archive_into_real_put_wal() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    skip_unless!(RealBarman::require());
    let s = setup("interop our-archive real-put", true, &cargo_bin("barman-wal-archive")?)?;
    let names = make_segments(&s.pg, 3)?;
    s.barman.run(&["archive-wal", "pg"])?;
    let n = assert_archive_matches(&s.oracle, &layout(&s.barman))?;
    ensure!(n >= 3, "only {n} files checked");
    // Real Barman's own view: its xlog.db lines start with each name, once.
    let xlog = fs::read_to_string(s.barman.xlog_db("pg"))?;
    for name in &names {
        let lines = xlog.lines().filter(|l| l.split('\t').next() == Some(name.as_str())).count();
        ensure!(lines == 1, "{name} appears {lines} times in real xlog.db:\n{xlog}");
    }
    // Our client offered `put-wal --wire-lz4` once; real Barman refused the flag, which the
    // client remembered (and then sent Barman's plain stream, checked above).
    let cache = barman_integration::fixtures::wal_archive_cache_dir(Some(s.sshd.port()), &s.barman.config_path());
    ensure!(cache.join("put-wal-plain").exists(), "no refusal of --wire-lz4 remembered in {}", cache.display());
    // And it serves them back: `barman get-wal` of real Barman returns Postgres's bytes.
    let got = s.barman.outcome(&["get-wal", "pg", &names[1]])?;
    got.success()?;
    ensure!(got.stdout == fs::read(s.oracle.join(&names[1]))?, "real get-wal bytes differ");
    Ok(())
}

#[test]
fn our_wal_restore_from_real_get_wal() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(RealBarman::require());
    let s = setup("interop our-restore real-get", true, &real.bin("barman-wal-archive"))?;
    let names = make_segments(&s.pg, 5)?;
    s.barman.run(&["archive-wal", "pg"])?;
    check_restores(&s, &cargo_bin("barman-wal-restore")?, &names, 4)
}

#[test]
fn real_wal_restore_from_our_get_wal() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let real = skip_unless!(RealBarman::require());
    let s = setup("interop real-restore our-get", false, &cargo_bin("barman-wal-archive")?)?;
    let names = make_segments(&s.pg, 4)?;
    s.barman.run(&["archive-wal", "pg"])?;
    check_restores(&s, &real.bin("barman-wal-restore"), &names, 3)
}
