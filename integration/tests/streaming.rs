//! `barman receive-wal` and cron's supervision of it, against a real PostgreSQL 15: cron
//! starts one receiver per server (under `.<srv>-receive-wal.lock`), the streamed segments
//! reach `wals/` and xlog.db byte-identical to `pg_receivewal`'s, a killed receiver is
//! restarted by the next cron without a gap, slots are created and dropped, `--reset`, and
//! a segment arriving through both archivers is stored once.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{lock_owner, ServerLayout, XlogDb};
use barman_common::wal::{WalFileName, WalSegSize};
use barman_integration::scratch::chown_recursive;
use barman_integration::{
    cargo_bin, cmd, skip_unless, wait_until, BarmanHome, BarmanServerOptions, OsUser, PgCluster, PgOptions, Scratch,
    Sshd, SshdOptions,
};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

const WAIT: Duration = Duration::from_secs(30);
const APP: &str = "barman_receive_wal";

/// Stops whatever receive-wal holds the server's lock when dropped (SIGINT, then SIGKILL of
/// its process group), so no receiver outlives a test.
struct ReceiverGuard {
    lock: PathBuf,
}

impl ReceiverGuard {
    fn new(barman: &BarmanHome, server: &str) -> ReceiverGuard {
        ReceiverGuard { lock: barman.home().join(format!(".{server}-receive-wal.lock")) }
    }

    /// The PID of the running `barman receive-wal`, if any.
    fn pid(&self) -> Option<i32> {
        lock_owner(&self.lock).ok().flatten().and_then(|p| i32::try_from(p).ok())
    }

    fn wait_running(&self) -> Result<i32> {
        wait_until(WAIT, "receive-wal to take its lock", || Ok(self.pid().is_some()))?;
        self.pid().context("receive-wal lock released again")
    }

    fn wait_stopped(&self) -> Result<()> {
        wait_until(WAIT, "receive-wal to release its lock", || Ok(self.pid().is_none()))
    }
}

impl Drop for ReceiverGuard {
    fn drop(&mut self) {
        let Some(pid) = self.pid() else { return };
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        if self.wait_stopped().is_err() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// `pg_receivewal` (the oracle) streaming into `dir`; killed on drop.
struct PgReceiveWal {
    child: Child,
}

impl PgReceiveWal {
    fn start(pg: &PgCluster, dir: &Path, log: &Path) -> Result<PgReceiveWal> {
        let mut command = pg.pg_command("pg_receivewal");
        command.arg("-D").arg(dir).args(["-v", "-s", "1", "-d", "application_name=oracle"]);
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(fs::File::create(log)?);
        let child = command.spawn().with_context(|| format!("starting {}", cmd::describe(&command)))?;
        Ok(PgReceiveWal { child })
    }
}

impl Drop for PgReceiveWal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn layout(barman: &BarmanHome) -> ServerLayout {
    ServerLayout::default_for(&barman.home(), "pg")
}

fn streaming_server(slot: bool) -> BarmanServerOptions {
    BarmanServerOptions {
        archiver: false,
        streaming_archiver: true,
        slot_name: slot.then(|| "barman".to_owned()),
        ..BarmanServerOptions::default()
    }
}

/// Some WAL, then a switch; returns the closed segment's name.
fn write_and_switch(pg: &PgCluster, rows: u32) -> Result<String> {
    pg.psql(&format!(
        "create table if not exists t(id int, pad text); insert into t select g, repeat('x', 100) from generate_series(1, {rows}) g"
    ))?;
    pg.switch_wal()
}

/// A little WAL in the next segment, so the receiver opens its `.partial` and the segments
/// before it are complete (streaming/ keeps its newest file back).
fn write_a_little(pg: &PgCluster) -> Result<()> {
    pg.psql("create table if not exists t(id int, pad text); insert into t values (0, 'x')").map(drop)
}

/// Waits until the walsender for `app` reports having written everything up to now.
fn wait_caught_up(pg: &PgCluster, app: &str, barman: &BarmanHome) -> Result<()> {
    let lsn = pg.psql("select pg_current_wal_lsn()")?;
    let sql = format!(
        "select coalesce(bool_and(write_lsn >= '{lsn}'::pg_lsn), false) from pg_stat_replication where application_name = '{app}'"
    );
    wait_until(WAIT, &format!("{app} to write {lsn}"), || Ok(pg.psql(&sql)? == "t"))
        .with_context(|| format!("barman log:\n{}", barman.log()))
}

/// Waits until `name` is a complete segment in streaming/ or already archived.
fn wait_streamed(layout: &ServerLayout, name: &str, barman: &BarmanHome) -> Result<()> {
    let wal: WalFileName = name.parse()?;
    wait_until(WAIT, &format!("{name} to be streamed"), || {
        Ok(layout.streaming.join(name).exists() || layout.wal_path(&wal).exists())
    })
    .with_context(|| format!("barman log:\n{}", barman.log()))
}

/// xlog.db: name → how many times it is listed.
fn xlog_counts(layout: &ServerLayout) -> Result<BTreeMap<String, usize>> {
    let mut db = XlogDb::open(layout)?;
    let mut counts = BTreeMap::new();
    for (_, e) in db.entries()? {
        *counts.entry(e.name.to_string()).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Segment names listed in xlog.db, checked listed once and present in wals/.
fn archived_segments(layout: &ServerLayout) -> Result<Vec<WalFileName>> {
    let mut segments = Vec::new();
    for (name, n) in xlog_counts(layout)? {
        ensure!(n == 1, "{name} listed {n} times in xlog.db");
        let wal: WalFileName = name.parse()?;
        ensure!(layout.wal_path(&wal).is_file(), "{name} in xlog.db but not in wals/");
        if wal.is_segment() {
            segments.push(wal);
        }
    }
    Ok(segments)
}

/// Every segment between the first and the last archived one is there.
fn assert_no_gap(segments: &[WalFileName]) -> Result<()> {
    let size = WalSegSize::DEFAULT;
    for pair in segments.windows(2) {
        let next = pair[0].next_segment(size)?;
        ensure!(next == pair[1], "gap in wals/: {} is followed by {} (missing {next})", pair[0], pair[1]);
    }
    Ok(())
}

fn wait_connected(pg: &PgCluster, barman: &BarmanHome) -> Result<()> {
    wait_until(WAIT, "the receiver to connect", || {
        Ok(pg.psql(&format!("select count(*) from pg_stat_replication where application_name = '{APP}'"))? == "1")
    })
    .with_context(|| format!("barman log:\n{}", barman.log()))
}

fn wait_slot_released(pg: &PgCluster) -> Result<()> {
    wait_until(WAIT, "the slot to be released", || {
        Ok(pg.psql("select active from pg_replication_slots where slot_name = 'barman'")? == "f")
    })
}

/// The child processes of `pid` (the streamer under `barman receive-wal`).
fn children(pid: i32) -> Result<Vec<i32>> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
    let pids: Vec<i32> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    ensure!(!pids.is_empty(), "receive-wal {pid} has no child");
    Ok(pids)
}

fn slot_count(pg: &PgCluster) -> Result<String> {
    pg.psql("select count(*) from pg_replication_slots where slot_name = 'barman'")
}

#[test]
fn cron_supervises_receive_wal_and_archives_streamed_segments() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("streaming cron")?;
    let pg = PgCluster::start(&scratch, PgOptions::default())?;
    let oracle_dir = scratch.mkdir_owned("oracle", "postgres")?;
    let _oracle = PgReceiveWal::start(&pg, &oracle_dir, &scratch.join("oracle.log"))?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    barman.add_server("pg", &pg, &streaming_server(true))?;
    let receiver = ReceiverGuard::new(&barman, "pg");
    let layout = layout(&barman);

    let out = barman.run(&["cron"])?;
    ensure!(out.contains("Starting streaming archiver for server pg"), "cron output: {out}");
    let first_pid = receiver.wait_running()?;
    ensure!(slot_count(&pg)? == "1", "create_slot = auto did not create the slot");
    wait_connected(&pg, &barman)?;

    ensure!(barman.log().contains("pg: "), "the streamer's messages are not in the log:\n{}", barman.log());

    // A manual start while cron's receiver runs is refused.
    let busy = barman.outcome(&["receive-wal", "pg"])?;
    ensure!(busy.code() == Some(1), "second receive-wal: {busy:?}");
    busy.stderr_contains("Another receive-wal process is already running for server pg.")?;

    let mut switched = Vec::new();
    for rows in [40_000, 80_000, 10_000] {
        switched.push(write_and_switch(&pg, rows)?);
    }
    write_a_little(&pg)?;
    wait_caught_up(&pg, APP, &barman)?;
    for name in &switched {
        wait_streamed(&layout, name, &barman)?;
    }

    // The second cron archives what was streamed and does not start another receiver.
    let out = barman.run(&["cron"])?;
    ensure!(!out.contains("Starting streaming archiver"), "cron started a second receiver: {out}");
    ensure!(receiver.pid() == Some(first_pid), "the receiver changed");
    let segments = archived_segments(&layout)?;
    for name in &switched {
        ensure!(segments.iter().any(|s| s.as_str() == name), "{name} not archived; have {segments:?}");
    }
    let kept: Vec<_> =
        fs::read_dir(&layout.streaming)?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    ensure!(kept.len() == 1 && kept[0].ends_with(".partial"), "streaming/ should keep only its .partial: {kept:?}");

    // A crash of the receiver (SIGKILL of its process group); WAL written meanwhile is kept
    // by the slot and streamed once the next cron restarts it.
    killpg(Pid::from_raw(first_pid), Signal::SIGKILL)?;
    receiver.wait_stopped()?;
    wait_slot_released(&pg)?;
    let mut later = Vec::new();
    for rows in [30_000, 30_000] {
        later.push(write_and_switch(&pg, rows)?);
    }
    let out = barman.run(&["cron"])?;
    ensure!(out.contains("Starting streaming archiver for server pg"), "cron did not restart the receiver: {out}");
    let second_pid = receiver.wait_running()?;
    ensure!(second_pid != first_pid, "same receiver pid after restart");
    later.push(write_and_switch(&pg, 20_000)?);

    // The streamer child dying on its own ends receive-wal (lock released, logged); the
    // next cron starts a new one.
    wait_connected(&pg, &barman)?;
    for child in children(second_pid)? {
        kill(Pid::from_raw(child), Signal::SIGKILL)?;
    }
    receiver.wait_stopped()?;
    ensure!(
        barman.log().contains("pg: barman-receive-wal terminated by signal: 9"),
        "no termination logged:\n{}",
        barman.log()
    );
    wait_slot_released(&pg)?;
    later.push(write_and_switch(&pg, 20_000)?);
    let out = barman.run(&["cron"])?;
    ensure!(out.contains("Starting streaming archiver for server pg"), "cron did not restart the receiver: {out}");
    let third_pid = receiver.wait_running()?;
    write_a_little(&pg)?;
    wait_caught_up(&pg, APP, &barman)?;
    for name in &later {
        wait_streamed(&layout, name, &barman)?;
    }
    barman.run(&["cron"])?;

    let segments = archived_segments(&layout)?;
    for name in switched.iter().chain(&later) {
        ensure!(segments.iter().any(|s| s.as_str() == name), "{name} not archived; have {segments:?}");
    }
    assert_no_gap(&segments)?;

    // Byte-identical to pg_receivewal's copies of the same segments.
    wait_caught_up(&pg, "oracle", &barman)?;
    let mut compared = 0;
    for wal in &segments {
        let theirs = oracle_dir.join(wal.as_str());
        if !theirs.exists() {
            continue;
        }
        ensure!(fs::read(layout.wal_path(wal))? == fs::read(&theirs)?, "{wal} differs from pg_receivewal's");
        compared += 1;
    }
    ensure!(compared >= 6, "only {compared} segments compared with pg_receivewal ({segments:?})");

    // --stop ends the receiver, with Barman's deprecation warning.
    let stop = barman.outcome(&["receive-wal", "--stop", "pg"])?;
    stop.success()?;
    stop.stderr_contains("--stop is deprecated")?;
    stop.stdout_contains(&format!("Stopped process receive-wal({third_pid})"))?;
    receiver.wait_stopped()?;
    Ok(())
}

#[test]
fn create_drop_slot_stop_and_reset() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("streaming slots")?;
    let pg = PgCluster::start(&scratch, PgOptions::default())?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    barman.add_server("pg", &pg, &streaming_server(true))?;
    let _receiver = ReceiverGuard::new(&barman, "pg");
    let layout = layout(&barman);

    let out = barman.run(&["receive-wal", "--create-slot", "pg"])?;
    ensure!(out.contains("Replication slot 'barman' created"), "create-slot output: {out}");
    ensure!(slot_count(&pg)? == "1", "slot not created");
    let again = barman.outcome(&["receive-wal", "--create-slot", "pg"])?;
    ensure!(again.code() == Some(1), "second create-slot: {again:?}");
    again.stderr_contains("Replication slot 'barman' already exists")?;
    let out = barman.run(&["receive-wal", "--create-slot", "--if-not-exists", "pg"])?;
    ensure!(out.contains("Skipping creation"), "create-slot --if-not-exists output: {out}");

    let out = barman.run(&["receive-wal", "--drop-slot", "pg"])?;
    ensure!(out.contains("Replication slot 'barman' dropped"), "drop-slot output: {out}");
    ensure!(slot_count(&pg)? == "0", "slot not dropped");
    let again = barman.outcome(&["receive-wal", "--drop-slot", "pg"])?;
    ensure!(again.code() == Some(1), "second drop-slot: {again:?}");
    again.stderr_contains("Replication slot 'barman' does not exist")?;

    let stop = barman.outcome(&["receive-wal", "--stop", "pg"])?;
    ensure!(stop.code() == Some(1), "--stop without a receiver: {stop:?}");
    stop.stderr_contains("Termination of receive-wal failed: no such process for server pg")?;

    // --reset: an old status file is replaced by one at the server's current segment (the
    // slot is missing and create_slot = auto, but --reset does not create it).
    for rows in [1_000, 1_000, 1_000] {
        write_and_switch(&pg, rows)?;
    }
    // The segment holding the current position (pg_walfile_name of a segment boundary names
    // the previous segment, hence the + 1).
    let current = pg.psql("select pg_walfile_name(pg_current_wal_lsn() + 1)")?;
    fs::create_dir_all(&layout.streaming)?;
    fs::write(layout.streaming.join("000000010000000000000001.partial"), b"")?;
    chown_recursive(&layout.streaming, &OsUser::lookup("barman")?)?;
    let out = barman.run(&["receive-wal", "--reset", "pg"])?;
    ensure!(out.contains("Resetting receive-wal directory status"), "reset output: {out}");
    let names: Vec<String> =
        fs::read_dir(&layout.streaming)?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    ensure!(names == [format!("{current}.partial")], "streaming/ after reset: {names:?}, current {current}");
    let out = barman.run(&["receive-wal", "--reset", "pg"])?;
    ensure!(out.contains("Nothing to do. Position of receive-wal is aligned."), "second reset: {out}");
    ensure!(slot_count(&pg)? == "0", "--reset created the slot");

    // A partial of the wrong size is truncated before streaming; with create_slot = auto
    // the slot is created again.
    fs::write(layout.streaming.join(format!("{current}.partial")), b"garbage")?;
    let out = barman.run(&["cron"])?;
    ensure!(out.contains("Starting streaming archiver for server pg"), "cron output: {out}");
    let receiver = ReceiverGuard::new(&barman, "pg");
    receiver.wait_running()?;
    write_and_switch(&pg, 1_000)?;
    wait_caught_up(&pg, APP, &barman)?;
    ensure!(slot_count(&pg)? == "1", "slot not recreated");
    ensure!(layout.streaming.join(&current).exists(), "{current} not completed after the truncated partial");
    ensure!(barman.log().contains("Truncating partial file"), "no truncation logged:\n{}", barman.log());
    barman.run(&["receive-wal", "--stop", "pg"])?;
    receiver.wait_stopped()?;
    Ok(())
}

#[test]
fn segment_from_both_archivers_is_stored_once() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let scratch = Scratch::new("streaming both")?;
    let sshd = Sshd::start(&scratch, SshdOptions::default())?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    let archive_command = format!(
        "{client} -c {cfg} --port {port} 127.0.0.1 pg %p",
        client = cargo_bin("barman-wal-archive")?.display(),
        cfg = barman.config_path().display(),
        port = sshd.port(),
    );
    let opts = PgOptions::default().archive_command(archive_command).path_prefix(sshd.ssh_wrapper_dir_for("postgres")?);
    let pg = PgCluster::start(&scratch, opts)?;
    let server = BarmanServerOptions { archiver: true, ..streaming_server(true) };
    barman.add_server("pg", &pg, &server)?;
    let receiver = ReceiverGuard::new(&barman, "pg");
    let layout = layout(&barman);

    barman.run(&["cron"])?;
    receiver.wait_running()?;
    wait_connected(&pg, &barman)?;
    let mut switched = Vec::new();
    for rows in [20_000, 20_000, 20_000, 20_000] {
        switched.push(write_and_switch(&pg, rows)?);
    }
    write_a_little(&pg)?;
    let last = switched.last().context("switched")?.clone();
    pg.wait_for_archived(&last, Duration::from_mins(2))?;
    wait_caught_up(&pg, APP, &barman)?;
    for name in &switched {
        wait_streamed(&layout, name, &barman)?;
        // Both copies are waiting: the archiver sees each segment twice.
        ensure!(layout.streaming.join(name).is_file(), "{name} not in streaming/");
        ensure!(layout.incoming.join(name).is_file(), "{name} not in incoming/");
    }
    barman.run(&["cron"])?;
    barman.run(&["cron"])?;

    let segments = archived_segments(&layout)?;
    for name in &switched {
        ensure!(segments.iter().any(|s| s.as_str() == name), "{name} not archived; have {segments:?}");
    }
    assert_no_gap(&segments)?;
    let incoming: Vec<_> = fs::read_dir(&layout.incoming)?.collect();
    ensure!(incoming.is_empty(), "incoming/ not drained: {incoming:?}");
    let errors: Vec<_> = match fs::read_dir(&layout.errors) {
        Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
        Err(_) => Vec::new(),
    };
    ensure!(errors.is_empty(), "errors/ holds {errors:?}: the two copies differed");
    Ok(())
}
