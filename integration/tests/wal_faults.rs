//! Faults on the WAL path: SIGKILLs of `barman-wal-archive` and of the remote `put-wal`
//! while Postgres archives, a full disk under incoming/, a corrupted, truncated or hostile
//! put-wal stream, and a segment of another cluster (→ errors/).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{Identity, ServerLayout, XlogDb};
use barman_common::compress;
use barman_common::wal::WalFileName;
use barman_common::wire::{digest_hex, write_member, write_stream, MemberMeta, SumAlgo};
use barman_integration::cmd::{self, as_user, execute, Outcome};
use barman_integration::pg::SYSTEM_PATH;
use barman_integration::scratch::{chown, chown_recursive, write_file};
use barman_integration::{
    cargo_bin, skip_unless, BarmanHome, BarmanServerOptions, OsUser, PgCluster, PgOptions, Scratch, Sshd, SshdOptions,
};

const SEGMENT_SIZE: usize = 16 * 1024 * 1024;

/// A tiny xorshift generator: random moments without a dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
        Self((nanos as u64) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn layout(barman: &BarmanHome) -> ServerLayout {
    ServerLayout::default_for(&barman.home(), "pg")
}

/// Names of the entries of `dir` (none when it does not exist).
fn entries(dir: &Path) -> Result<Vec<String>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> =
        fs::read_dir(dir)?.map(|e| Ok(e?.file_name().to_string_lossy().into_owned())).collect::<Result<_>>()?;
    names.sort();
    Ok(names)
}

/// Runs our `barman put-wal pg` as `barman` with `stream` on stdin.
fn put_wal(barman: &BarmanHome, stream: &[u8]) -> Result<Outcome> {
    execute(&mut barman.command(&["put-wal", "pg"]), Some(stream), Duration::from_mins(1))
}

/// A valid put-wal stream carrying `data` as `name`.
fn stream_of(name: &str, data: &[u8]) -> Result<Vec<u8>> {
    let meta = MemberMeta { mode: 0o600, uid: 0, gid: 0, mtime: 1_700_000_000 };
    let mut buf = Vec::new();
    write_stream(&mut buf, SumAlgo::Sha256, &[(name, meta, data)])?;
    Ok(buf)
}

/// A copy of segment `name` from `pg`'s pg_wal (read as root).
fn segment_of(pg: &PgCluster, name: &str) -> Result<Vec<u8>> {
    let path = pg.data_dir().join("pg_wal").join(name);
    let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(data.len() == SEGMENT_SIZE, "{name} is {} bytes", data.len());
    Ok(data)
}

/// A cluster (not archiving) and our barman home with server `pg` for it.
fn plain_server(scratch: &Scratch, server: &BarmanServerOptions) -> Result<(PgCluster, BarmanHome)> {
    let pg = PgCluster::start(scratch, PgOptions::default())?;
    let mut barman = BarmanHome::new(scratch, "barman", cargo_bin("barman")?)?;
    barman.add_server("pg", &pg, server)?;
    Ok((pg, barman))
}

// ---------------------------------------------------------------------------------------
// 1. Kills

/// Pids of live processes descended from `ancestor` whose command line contains `needle`.
fn descendants_matching(ancestor: i32, needle: &str) -> Vec<i32> {
    cmd::descendants(ancestor)
        .into_iter()
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle) && cmdline.contains("barman")
        })
        .collect()
}

/// SIGKILLs the remote `put-wal` processes (children of our private sshd only) at random
/// moments until `stop`; counts the kills that hit a live process.
fn server_killer(sshd_pid: i32, stop: &AtomicBool, kills: &AtomicUsize) {
    let mut rng = Rng::seeded();
    while !stop.load(Ordering::Relaxed) {
        for pid in descendants_matching(sshd_pid, "put-wal") {
            if rng.below(100) < 50 {
                thread::sleep(Duration::from_millis(rng.below(150)));
                let raw = nix::unistd::Pid::from_raw(pid);
                if nix::sys::signal::kill(raw, nix::sys::signal::Signal::SIGKILL).is_ok() {
                    kills.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkills_during_archiving_lose_nothing() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let scratch = Scratch::new("faults kills")?;
    let sshd = Sshd::start(&scratch, SshdOptions::default())?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    let oracle = scratch.mkdir_owned("oracle", "postgres")?;
    let state = scratch.mkdir_owned("state", "postgres")?;
    let client_kills = state.join("kills");
    let no_kill = state.join("nokill");
    let client = format!(
        "{} -c {} --port {} 127.0.0.1 pg",
        cargo_bin("barman-wal-archive")?.display(),
        barman.config_path().display(),
        sshd.port()
    );
    // Copies Postgres's bytes to the oracle, then runs the client and, 75% of the time,
    // SIGKILLs it 0-300 ms later (failing the attempt: Postgres retries).
    let script = format!(
        r#"#!/bin/bash
cp "$2" "{oracle}/$1" || exit 1
if [ -e "{no_kill}" ]; then exec {client} "$2"; fi
{client} "$2" &
pid=$!
if [ $((RANDOM % 100)) -lt 75 ]; then
    sleep "0.$(printf '%03d' $((RANDOM % 300)))"
    if kill -9 "$pid" 2>/dev/null; then
        echo "$1" >> "{kills}"
        wait "$pid"
        exit 1
    fi
fi
wait "$pid"
"#,
        oracle = oracle.display(),
        no_kill = no_kill.display(),
        kills = client_kills.display(),
    );
    let script_path = scratch.join("archive.sh");
    write_file(&script_path, script, 0o755)?;
    let opts = PgOptions::default()
        .archive_command(format!("{} %f %p", script_path.display()))
        .path_prefix(sshd.ssh_wrapper_dir_for("postgres")?);
    let pg = PgCluster::start(&scratch, opts)?;
    barman.add_server("pg", &pg, &BarmanServerOptions::default())?;

    let sshd_pid: i32 = fs::read_to_string(scratch.join("sshd/sshd.pid"))?.trim().parse()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server_kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (stop, kills) = (Arc::clone(&stop), Arc::clone(&server_kills));
        thread::spawn(move || server_killer(sshd_pid, &stop, &kills))
    };
    let count_client_kills = || fs::read_to_string(&client_kills).map_or(0, |s| s.lines().count());

    pg.psql("create table filler(id int, v text)")?;
    let deadline = Instant::now() + Duration::from_mins(3);
    let mut segments = 0;
    let result = (|| -> Result<()> {
        loop {
            pg.psql("insert into filler select g, md5(g::text) from generate_series(1, 500) g")?;
            pg.switch_wal()?;
            segments += 1;
            thread::sleep(Duration::from_millis(300));
            let kills = count_client_kills() + server_kills.load(Ordering::Relaxed);
            if (kills >= 24 && segments >= 10) || Instant::now() > deadline {
                return Ok(());
            }
        }
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = killer.join();
    result?;
    let (ck, sk) = (count_client_kills(), server_kills.load(Ordering::Relaxed));
    ensure!(ck + sk >= 20, "only {ck} client + {sk} server kills in {segments} segments");

    // Archiving now finishes normally: Postgres retries every failed segment.
    write_file(&no_kill, "", 0o644)?;
    pg.psql("insert into filler values (0, 'last')")?;
    let last = pg.switch_wal()?;
    pg.wait_for_archived(&last, Duration::from_mins(2))?;
    barman.run(&["cron"])?;

    let layout = layout(&barman);
    // Every segment Postgres produced is archived once, byte-identical.
    let mut db = XlogDb::open(&layout)?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e) in db.entries()? {
        *counts.entry(e.name.to_string()).or_default() += 1;
    }
    drop(db);
    let produced = entries(&oracle)?;
    ensure!(produced.len() > segments, "oracle holds {} files for {segments} switches", produced.len());
    for name in &produced {
        let wal: WalFileName = name.parse()?;
        let (content, _) =
            compress::read_maybe_compressed(&layout.wal_path(&wal)).with_context(|| format!("{name} lost"))?;
        ensure!(content == fs::read(oracle.join(name))?, "{name}: archived bytes differ from Postgres's");
        ensure!(counts.get(name) == Some(&1), "{name} listed {:?} times in xlog.db", counts.get(name));
    }
    ensure!(counts.len() == produced.len(), "xlog.db lists {counts:?}, Postgres produced {produced:?}");
    // Nothing half-written under a final name: every file in wals/ equals the oracle...
    for dir in entries(&layout.wals_directory)? {
        let dir_path = layout.wals_directory.join(&dir);
        if !dir_path.is_dir() {
            continue;
        }
        for name in entries(&dir_path)? {
            let (content, _) = compress::read_maybe_compressed(&dir_path.join(&name))?;
            let want = fs::read(oracle.join(&name)).with_context(|| format!("wals/{dir}/{name} not produced"))?;
            ensure!(content == want, "wals/{dir}/{name} differs from Postgres's bytes");
        }
    }
    // ...and incoming/ is empty: cron also removed the temp files of killed put-wals.
    let left = entries(&layout.incoming)?;
    ensure!(left.is_empty(), "incoming/ holds {left:?} after cron");
    let errors = entries(&layout.errors)?;
    ensure!(errors.is_empty(), "errors/ holds {errors:?}");
    eprintln!("kills: {ck} client + {sk} server over {segments} segments, {} archived", produced.len());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Full disk

/// A tmpfs mounted at a directory; unmounted on drop (also when the test fails).
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    fn new(dir: &Path, size: &str) -> Result<Self> {
        let status =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status()?;
        ensure!(status.success(), "mount -t tmpfs on {} failed: {status}", dir.display());
        Ok(Self(dir.to_path_buf()))
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn full_disk_under_incoming_fails_and_leaves_nothing() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let scratch = Scratch::new("faults full disk")?;
    let incoming = scratch.mkdir("small-incoming")?;
    let mount = TmpfsMount::new(&incoming, "20M")?;
    chown(&incoming, &OsUser::lookup("barman")?)?;
    // 8 MiB taken: a 16 MiB segment cannot fit in the 12 MiB left.
    write_file(&incoming.join(".filler"), vec![1u8; 8 * 1024 * 1024], 0o644)?;

    let sshd = Sshd::start(&scratch, SshdOptions::default())?;
    let server = BarmanServerOptions {
        extra: vec![format!("incoming_wals_directory = {}", incoming.display())],
        ..BarmanServerOptions::default()
    };
    let (pg, barman) = plain_server(&scratch, &server)?;
    pg.psql("create table t(x int); insert into t values (1)")?;
    let name = pg.switch_wal()?;
    let src_dir = scratch.mkdir_owned("src", "postgres")?;
    let src = src_dir.join(&name);
    fs::write(&src, segment_of(&pg, &name)?)?;
    chown(&src, &OsUser::lookup("postgres")?)?;

    let mut cmd = Command::new(cargo_bin("barman-wal-archive")?);
    as_user(&mut cmd, &OsUser::lookup("postgres")?);
    cmd.env("PATH", format!("{}:{SYSTEM_PATH}", sshd.ssh_wrapper_dir_for("postgres")?.display()));
    cmd.arg("-c").arg(barman.config_path()).args(["--port", &sshd.port().to_string(), "127.0.0.1", "pg"]).arg(&src);
    let out = execute(&mut cmd, None, Duration::from_mins(1))?;
    ensure!(!out.status.success(), "archiving into a full incoming/ succeeded:\n{out}");
    ensure!(out.code().is_some_and(|c| c > 0 && c <= 125), "exit code must make Postgres retry:\n{out}");
    ensure!(out.stderr_str().contains("ERROR"), "no error reported:\n{out}");
    eprintln!("full incoming/: {}", out.stderr_str().trim());
    let left = entries(&incoming)?;
    ensure!(left == [".filler"], "incoming/ after the failure: {left:?}\n{out}");
    drop(mount);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Corrupted, truncated and hostile streams

/// One data member named `name` (bypassing the tar crate's path checks) with its
/// SHA256SUMS entry, as a complete stream.
fn hostile_stream(name: &str, data: &[u8]) -> Result<Vec<u8>> {
    let meta = MemberMeta { mode: 0o600, uid: 0, gid: 0, mtime: 1_700_000_000 };
    let mut buf = Vec::new();
    write_member(&mut buf, "placeholder", meta, data)?;
    let header = &mut buf[..512];
    header[..100].fill(0);
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let sums = format!("{} *{name}\n", digest_hex(SumAlgo::Sha256, data));
    write_member(&mut buf, "SHA256SUMS", MemberMeta { mode: 0o644, ..MemberMeta::default() }, sums.as_bytes())?;
    buf.extend_from_slice(&[0u8; 1024]);
    Ok(buf)
}

#[test]
fn corrupted_truncated_and_hostile_streams_are_refused() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("faults streams")?;
    let (pg, barman) = plain_server(&scratch, &BarmanServerOptions::default())?;
    let layout = layout(&barman);
    pg.psql("create table t(x int); insert into t values (1)")?;
    let name = pg.switch_wal()?;
    let data = segment_of(&pg, &name)?;
    let nothing_in_errors = |what: &str| -> Result<()> {
        let errors = entries(&layout.errors)?;
        ensure!(errors.is_empty(), "{what}: errors/ holds {errors:?}");
        Ok(())
    };
    let nothing_written = |what: &str, out: &Outcome| -> Result<()> {
        let left = entries(&layout.incoming)?;
        ensure!(left.is_empty(), "{what}: incoming/ holds {left:?}\n{out}");
        let errors = entries(&layout.errors)?;
        ensure!(errors.is_empty(), "{what}: errors/ holds {errors:?}\n{out}");
        Ok(())
    };

    // A flipped byte in the data area: refused on the checksum.
    let mut flipped = stream_of(&name, &data)?;
    flipped[512 + 4096 + 7] ^= 0x20;
    let out = put_wal(&barman, &flipped)?;
    out.fails_with_code(1)?.stderr_contains("Bad file checksum")?;
    nothing_written("flipped byte", &out)?;

    // Cut in the middle of the data.
    let full = stream_of(&name, &data)?;
    let out = put_wal(&barman, &full[..512 + SEGMENT_SIZE / 2])?;
    ensure!(!out.status.success(), "truncated stream accepted:\n{out}");
    nothing_written("truncated stream", &out)?;
    // Cut right after the data member, before the checksums.
    let out = put_wal(&barman, &full[..512 + SEGMENT_SIZE])?;
    ensure!(!out.status.success(), "stream without checksums accepted:\n{out}");
    nothing_written("stream without checksums", &out)?;

    // Hostile member names: nothing written anywhere.
    let victim = scratch.join("victim");
    let server_dir = barman.server_dir("pg");
    let small = vec![7u8; 8192];
    for hostile in ["../x", "../../x", &victim.display().to_string(), "passwd", "./sub/passwd"] {
        let out = put_wal(&barman, &hostile_stream(hostile, &small)?)?;
        ensure!(!out.status.success(), "member name {hostile:?} accepted:\n{out}");
        nothing_written(hostile, &out)?;
        for path in [server_dir.join("x"), barman.home().join("x"), victim.clone(), server_dir.join("passwd")] {
            ensure!(!path.exists(), "{hostile:?} wrote {}", path.display());
        }
    }

    // `--wire-lz4` (our client's framing): a member that is not a whole LZ4 frame is refused
    // even though its checksum (of the bytes sent) matches; a whole one is stored decoded.
    let mut framed = Vec::new();
    compress::compress(compress::Codec::Lz4, compress::Level::Low, &data[..], &mut framed)?;
    let wire = |stream: &[u8]| {
        execute(&mut barman.command(&["put-wal", "--wire-lz4", "pg"]), Some(stream), Duration::from_mins(1))
    };
    for (what, member) in [("cut LZ4 frame", &framed[..framed.len() / 2]), ("not LZ4 at all", &data[..])] {
        let out = wire(&stream_of(&name, member)?)?;
        out.fails_with_code(1)?.stderr_contains("LZ4")?;
        nothing_written(what, &out)?;
    }
    let out = wire(&stream_of(&name, &framed)?)?;
    out.success()?;
    ensure!(fs::read(layout.incoming.join(&name))? == data, "--wire-lz4: stored bytes are not the decoded segment");
    ensure!(framed.len() * 3 < data.len(), "WAL framed with LZ4 is {} of {} bytes", framed.len(), data.len());
    // Sent again (a retry after a lost acknowledgement): identical once decoded, so accepted.
    wire(&stream_of(&name, &framed)?)?.success()?;
    nothing_in_errors("--wire-lz4 re-sent")?;

    // The same valid stream is accepted: the refusals above were about the faults.
    let out = put_wal(&barman, &full)?;
    out.success()?;
    ensure!(entries(&layout.incoming)? == [name.clone()], "valid stream not committed");
    ensure!(fs::read(layout.incoming.join(&name))? == data, "committed bytes differ");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. A segment of another cluster

#[test]
fn segment_of_another_cluster_goes_to_errors() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("faults other cluster")?;
    let (pg, barman) = plain_server(&scratch, &BarmanServerOptions::default())?;
    let other = PgCluster::start(&scratch, PgOptions::default())?;
    let layout = layout(&barman);
    ensure!(pg.system_identifier()? != other.system_identifier()?, "both clusters share a system id");

    // Ours: segment 1 closed. The other's: segment 2 closed (a different name).
    pg.psql("create table t(x int); insert into t values (1)")?;
    let ours = pg.switch_wal()?;
    other.psql("create table t(x int); insert into t values (1)")?;
    other.switch_wal()?;
    other.psql("insert into t values (2)")?;
    let theirs = other.switch_wal()?;
    ensure!(ours != theirs, "same segment names {ours}");

    let (ours_data, theirs_data) = (segment_of(&pg, &ours)?, segment_of(&other, &theirs)?);
    put_wal(&barman, &stream_of(&ours, &ours_data)?)?.success()?;
    put_wal(&barman, &stream_of(&theirs, &theirs_data)?)?.success()?;
    let identity = Identity { systemid: pg.system_identifier()?.to_string(), version: "15".into() };
    write_file(&layout.identity_path(), identity.to_json(), 0o644)?;
    chown_recursive(&barman.server_dir("pg"), barman.user())?;

    let out = barman.outcome(&["archive-wal", "pg"])?;
    let stderr = out.stderr_str();
    ensure!(stderr.contains("system identifier"), "no system identifier mismatch reported:\n{out}");
    let errors = entries(&layout.errors)?;
    ensure!(
        errors.len() == 1
            && errors[0].starts_with(&format!("{theirs}."))
            && Path::new(&errors[0]).extension().is_some_and(|e| e == "error"),
        "errors/ holds {errors:?}\n{out}"
    );
    let theirs_name: WalFileName = theirs.parse()?;
    ensure!(!layout.wal_path(&theirs_name).exists(), "{theirs} archived into wals/");
    let ours_name: WalFileName = ours.parse()?;
    let (content, _) = compress::read_maybe_compressed(&layout.wal_path(&ours_name))?;
    ensure!(content == ours_data, "{ours} (our cluster) not archived intact");
    ensure!(fs::read(layout.errors.join(&errors[0]))? == theirs_data, "errors/ copy differs");
    ensure!(entries(&layout.incoming)?.is_empty(), "incoming/ not drained");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. WAL of a PostgreSQL major we do not know yet

/// Segments whose page magic is a newer major's (0xD11B, past PG 18's 0xD118) are not damaged
/// WAL: the archiver names the problem once per run and leaves them, and everything after
/// them, queued in incoming/; nothing goes to errors/. The segment before them is archived.
#[test]
fn segments_of_a_newer_major_stay_queued_with_one_error() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("faults newer major")?;
    let (pg, barman) = plain_server(&scratch, &BarmanServerOptions::default())?;
    let layout = layout(&barman);
    pg.psql("create table t(x int)")?;
    let mut names = Vec::new();
    for i in 0..3 {
        pg.psql(&format!("insert into t values ({i})"))?;
        names.push(pg.switch_wal()?);
    }
    for (i, name) in names.iter().enumerate() {
        let mut data = segment_of(&pg, name)?;
        if i > 0 {
            data[0] = 0x1B; // xlp_magic 0xD11B, little-endian
        }
        put_wal(&barman, &stream_of(name, &data)?)?.success()?;
    }
    for _ in 0..2 {
        let out = barman.outcome(&["archive-wal", "pg"])?;
        let text = format!("{}{}", out.stdout_str(), out.stderr_str());
        let said = text.matches("is from a PostgreSQL major newer than 18").count();
        ensure!(said == 1, "the newer major reported {said} times:\n{out}");
        ensure!(text.contains(&format!("{}: WAL page magic 0xD11B", names[1])), "names the first one:\n{out}");
        ensure!(entries(&layout.errors)?.is_empty(), "set aside in errors/: {:?}", entries(&layout.errors)?);
        ensure!(entries(&layout.incoming)? == names[1..], "incoming/ holds {:?}", entries(&layout.incoming)?);
    }
    ensure!(layout.wal_path(&names[0].parse()?).is_file(), "{} (PG 15) not archived", names[0]);
    Ok(())
}
