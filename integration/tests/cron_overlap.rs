//! Two `barman cron` processes started at the same instant on the same catalogue: no WAL is
//! archived twice, xlog.db gets exactly one well-formed line per file, nothing lands in
//! errors/, and both exit 0 (the loser prints Barman's "Another cron process is already
//! running…" or finds nothing left to do). Several rounds of 200 generated segments (1 MiB
//! segments with a valid long page header for a fake system identifier). A manual
//! `barman archive-wal` joins the race: it also exits 0, with Barman's "Another archive-wal
//! process is already running…" when it loses.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use barman_common::catalogue::XlogDbEntry;
use barman_integration::scratch::chown_recursive;
use barman_integration::{cargo_bin, BarmanHome, OsUser, Scratch};

const SEG: u64 = 1 << 20;
const SYSID: u64 = 7_000_000_000_000_000_002;
const PER_ROUND: u64 = 200;
const ROUNDS: u64 = 4;

/// Segment number `n` (1 MiB segments: 4096 per xlogid) on timeline 1.
fn name(n: u64) -> String {
    let per_log = 0x1_0000_0000 / SEG;
    format!("00000001{:08X}{:08X}", n / per_log, n % per_log)
}

fn write_segment(dir: &Path, n: u64) -> Result<()> {
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(&0xD110u16.to_le_bytes());
    head.extend_from_slice(&2u16.to_le_bytes());
    head.extend_from_slice(&1u32.to_le_bytes());
    head.extend_from_slice(&(n * SEG).to_le_bytes());
    head.extend_from_slice(&[0; 8]);
    head.extend_from_slice(&SYSID.to_le_bytes());
    head.extend_from_slice(&u32::try_from(SEG)?.to_le_bytes());
    head.extend_from_slice(&8192u32.to_le_bytes());
    head.extend_from_slice(&n.to_le_bytes());
    // Write under a temp name and rename, as put-wal publishes into incoming/.
    let tmp = dir.join(format!(".{}.tmp", name(n)));
    let f = fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut &f, &head)?;
    f.set_len(SEG)?;
    drop(f);
    fs::rename(&tmp, dir.join(name(n)))?;
    Ok(())
}

/// Every regular file under `dir` (recursively) by name, with how many times it appears.
fn files_under(dir: &Path, out: &mut BTreeMap<String, usize>) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            files_under(&p, out)?;
        } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
            *out.entry(n.to_owned()).or_default() += 1;
        }
    }
    Ok(())
}

/// Spawns `barman <command>` as the home's user, held at a start line: it waits for `go`
/// to exist, then execs, so that all processes start within the same instant.
fn spawn_at(home: &BarmanHome, go: &Path, command: &str) -> Result<Child> {
    let bin = home.barman_bin();
    let bin_dir = bin.parent().context("bin dir")?;
    let mut sh = Command::new("/bin/sh");
    barman_integration::cmd::as_user(&mut sh, home.user());
    sh.env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()));
    sh.arg("-c").arg(format!(
        "while [ ! -e '{}' ]; do :; done; exec '{}' -c '{}' {command}",
        go.display(),
        bin.display(),
        home.config_path().display()
    ));
    sh.stdout(Stdio::piped()).stderr(Stdio::piped());
    Ok(sh.spawn()?)
}

fn finish(child: Child, deadline: Instant) -> Result<(i32, String)> {
    let mut child = child;
    loop {
        if child.try_wait()?.is_some() {
            let out = child.wait_with_output()?;
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            return Ok((out.status.code().unwrap_or(-1), text));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("cron did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_crons_at_once_archive_each_wal_once() -> Result<()> {
    barman_integration::require_root()?;
    let scratch = Scratch::new("cron overlap")?;
    let mut home = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    home.add_raw_server(
        "pg",
        &["conninfo = host=/nonexistent", "backup_method = postgres", "archiver = on", "compression = gzip"],
    )?;
    let server = home.server_dir("pg");
    let incoming = server.join("incoming");
    for d in ["incoming", "streaming", "wals", "base", "meta", "errors"] {
        fs::create_dir_all(server.join(d))?;
    }
    let barman = OsUser::lookup("barman")?;
    chown_recursive(&home.home(), &barman)?;
    let mut next = 1u64;
    let (mut skipped, mut busy_archivers) = (0, 0);
    for round in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            write_segment(&incoming, next)?;
            next += 1;
        }
        chown_recursive(&incoming, &barman)?;
        let go: PathBuf = scratch.join(format!("go-{round}"));
        let a = spawn_at(&home, &go, "cron")?;
        let b = spawn_at(&home, &go, "cron")?;
        // From round 2 on, a manual archive-wal races with them.
        let c = if round > 0 { Some(spawn_at(&home, &go, "archive-wal pg")?) } else { None };
        std::thread::sleep(Duration::from_millis(200));
        fs::write(&go, "")?;
        let deadline = Instant::now() + Duration::from_mins(5);
        let (ra, oa) = finish(a, deadline)?;
        let (rb, ob) = finish(b, deadline)?;
        let (rc, oc) = match c {
            Some(c) => finish(c, deadline)?,
            None => (0, String::new()),
        };
        ensure!(
            ra == 0 && rb == 0 && rc == 0,
            "round {round}: exit codes {ra}/{rb}/{rc}\n--- a\n{oa}--- b\n{ob}--- archive-wal\n{oc}"
        );
        if oc.contains("Another archive-wal process is already running on server pg. Skipping to the next server") {
            busy_archivers += 1;
        }
        for o in [&oa, &ob, &oc] {
            ensure!(!o.contains("ERROR") && !o.contains("EXCEPTION"), "round {round}: cron reported\n{o}");
            if o.contains("Another cron process is already running on server pg") {
                skipped += 1;
            }
        }
        // Exactly one copy of each WAL so far, one xlog.db line each, all well formed.
        let mut stored = BTreeMap::new();
        files_under(&server.join("wals"), &mut stored)?;
        stored.remove("pg-xlog.db");
        let expected: BTreeMap<String, usize> = (1..next).map(|n| (name(n), 1)).collect();
        ensure!(stored == expected, "round {round}: wals/ holds {} names, expected {}", stored.len(), expected.len());
        let text = fs::read_to_string(home.xlog_db("pg"))?;
        let mut lines: BTreeMap<String, usize> = BTreeMap::new();
        for line in text.lines() {
            let e =
                XlogDbEntry::parse_line(line).with_context(|| format!("round {round}: bad xlog.db line {line:?}"))?;
            ensure!(e.compression.as_deref() == Some("gzip"), "round {round}: {line:?}");
            *lines.entry(e.name.to_string()).or_default() += 1;
        }
        ensure!(text.ends_with('\n'), "round {round}: xlog.db does not end with a newline");
        ensure!(
            lines == expected,
            "round {round}: xlog.db has {} lines for {} files",
            text.lines().count(),
            expected.len()
        );
        let errors: Vec<_> = fs::read_dir(server.join("errors"))?.collect();
        ensure!(errors.is_empty(), "round {round}: errors/ holds {errors:?}");
        let left: Vec<_> = fs::read_dir(&incoming)?.collect();
        ensure!(left.is_empty(), "round {round}: incoming/ not drained: {left:?}");
    }
    eprintln!(
        "{ROUNDS} rounds: {skipped} cron runs skipped on the cron lock, {busy_archivers} archive-wal runs on the archiver lock"
    );
    Ok(())
}
