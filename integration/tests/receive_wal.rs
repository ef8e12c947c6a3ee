//! `barman-receive-wal` against a real PostgreSQL 15, with `pg_receivewal` as the oracle:
//! byte-identical segments, resuming after SIGKILL without a gap (checked by `pg_waldump`),
//! following a promotion onto a new timeline, replication slots, and the error exit codes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use barman_integration::pg::PG_BIN;
use barman_integration::{cargo_bin, cmd, free_port, skip_unless, wait_until, PgCluster, PgOptions, Scratch};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SEG: u64 = 16 * 1024 * 1024;
const WAIT: Duration = Duration::from_secs(20);

/// A streamer running in the background; killed on drop.
struct Receiver {
    child: Child,
    log: PathBuf,
    what: String,
}

impl Receiver {
    fn spawn(mut command: Command, log: PathBuf, what: &str) -> Result<Receiver> {
        let err = fs::File::create(&log)?;
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
        let child = command.spawn().with_context(|| format!("starting {}", cmd::describe(&command)))?;
        Ok(Receiver { child, log, what: what.to_owned() })
    }

    fn ours(pg: &PgCluster, dir: &Path, app: &str, extra: &[&str]) -> Result<Receiver> {
        let mut command = Command::new(cargo_bin("barman-receive-wal")?);
        command.arg("-D").arg(dir).arg("-d").arg(format!("{} application_name={app}", pg.conninfo()));
        command.args(["-v", "-s", "1"]).args(extra);
        Receiver::spawn(command, dir.with_extension("log"), "barman-receive-wal")
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(i32::try_from(self.child.id())?), signal)?;
        Ok(())
    }

    /// Waits for the exit status (fails after [`WAIT`]).
    fn wait(&mut self) -> Result<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                bail!("{} did not exit; log:\n{}", self.what, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT, then expects exit 0.
    fn stop(&mut self) -> Result<()> {
        self.signal(Signal::SIGINT)?;
        let code = self.wait()?;
        ensure!(code == 0, "{} exited {code} after SIGINT; log:\n{}", self.what, self.log());
        Ok(())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn current_lsn(pg: &PgCluster) -> Result<String> {
    pg.psql("select pg_current_wal_lsn()")
}

/// Waits until the walsender for `app` reports having written at least `lsn`.
fn wait_written(pg: &PgCluster, app: &str, lsn: &str, receiver: &Receiver) -> Result<()> {
    let sql = format!(
        "select coalesce(bool_and(write_lsn >= '{lsn}'::pg_lsn), false) from pg_stat_replication where application_name = '{app}'"
    );
    wait_until(WAIT, &format!("{app} to write {lsn}"), || Ok(pg.psql(&sql)? == "t"))
        .with_context(|| format!("{} log:\n{}", receiver.what, receiver.log()))
}

fn wait_file(path: &Path, receiver: &Receiver) -> Result<()> {
    wait_until(WAIT, &format!("{}", path.display()), || Ok(path.exists()))
        .with_context(|| format!("{} log:\n{}", receiver.what, receiver.log()))
}

/// Some WAL: a table with `rows` rows of 100 bytes.
fn write_rows(pg: &PgCluster, table: &str, rows: u32) -> Result<()> {
    pg.psql(&format!(
        "create table if not exists {table}(id int, pad text); insert into {table} select g, repeat('x', 100) from generate_series(1, {rows}) g"
    ))
    .map(drop)
}

/// WAL segment and `.partial` names in `dir`, sorted.
fn wal_files(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() >= 24 && n.chars().take(24).all(|c| c.is_ascii_hexdigit()))
        .collect();
    names.sort();
    Ok(names)
}

fn lsn_offset_in_segment(lsn: &str) -> Result<u64> {
    let (hi, lo) = lsn.split_once('/').context("lsn")?;
    Ok(((u64::from_str_radix(hi, 16)? << 32) | u64::from_str_radix(lo, 16)?) % SEG)
}

/// `pg_waldump` reads the whole range without error (`.partial` copied to plain names).
fn waldump(dir: &Path, tli: u32, start: &str, end: &str) -> Result<String> {
    for name in wal_files(dir)? {
        if let Some(plain) = name.strip_suffix(".partial") {
            if !dir.join(plain).exists() {
                fs::copy(dir.join(&name), dir.join(plain))?;
            }
        }
    }
    let mut dump = Command::new(Path::new(PG_BIN).join("pg_waldump"));
    dump.arg("-p").arg(dir).args(["-t", &tli.to_string(), "-s", start, "-e", end, "--stats"]);
    let out = cmd::run(&mut dump)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn segment_start_of(lsn: &str) -> Result<String> {
    let (hi, lo) = lsn.split_once('/').context("lsn")?;
    let lo = u64::from_str_radix(lo, 16)?;
    Ok(format!("{hi}/{:X}", lo - lo % SEG))
}

#[test]
fn segments_are_byte_identical_to_pg_receivewal() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("receive-wal identical")?;
    let pg = PgCluster::start(&scratch, PgOptions::default())?;
    let ours_dir = scratch.mkdir("ours")?;
    let theirs_dir = scratch.mkdir_owned("theirs", "postgres")?;
    let mut ours = Receiver::ours(&pg, &ours_dir, "ours", &[])?;
    let mut theirs_cmd = pg.pg_command("pg_receivewal");
    theirs_cmd.arg("-D").arg(&theirs_dir).args(["-v", "-s", "1", "-d", "application_name=theirs"]);
    let mut theirs = Receiver::spawn(theirs_cmd, scratch.join("theirs.log"), "pg_receivewal")?;

    write_rows(&pg, "t", 50_000)?;
    let first = pg.switch_wal()?;
    write_rows(&pg, "t", 120_000)?;
    let second = pg.switch_wal()?;
    write_rows(&pg, "t", 1_000)?;
    let end = current_lsn(&pg)?;
    wait_written(&pg, "ours", &end, &ours)?;
    wait_written(&pg, "theirs", &end, &theirs)?;
    for name in [&first, &second] {
        wait_file(&ours_dir.join(name), &ours)?;
        wait_file(&theirs_dir.join(name), &theirs)?;
    }
    ours.stop()?;
    theirs.stop()?;

    let (our_files, their_files) = (wal_files(&ours_dir)?, wal_files(&theirs_dir)?);
    ensure!(our_files == their_files, "file names differ: ours {our_files:?}, pg_receivewal {their_files:?}");
    ensure!(our_files.len() >= 3 && our_files.last().is_some_and(|n| n.ends_with(".partial")), "{our_files:?}");
    let valid = usize::try_from(lsn_offset_in_segment(&end)?)?;
    for name in &our_files {
        let (a, b) = (fs::read(ours_dir.join(name))?, fs::read(theirs_dir.join(name))?);
        ensure!(a.len() as u64 == SEG && b.len() as u64 == SEG, "{name}: sizes {} and {}", a.len(), b.len());
        let upto = if name.ends_with(".partial") { valid } else { a.len() };
        ensure!(a[..upto] == b[..upto], "{name} differs from pg_receivewal's in its first {upto} bytes");
    }
    Ok(())
}

#[test]
fn resumes_after_sigkill_without_a_gap() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("receive-wal resume")?;
    let pg = PgCluster::start(&scratch, PgOptions::default())?;
    let dir = scratch.mkdir("wal")?;
    let start = segment_start_of(&current_lsn(&pg)?)?;
    let mut first = Receiver::ours(&pg, &dir, "resume", &[])?;
    write_rows(&pg, "t", 20_000)?;
    let mid = current_lsn(&pg)?;
    wait_written(&pg, "resume", &mid, &first)?;
    first.signal(Signal::SIGKILL)?;
    first.wait()?;
    ensure!(
        wal_files(&dir)?.iter().any(|n| n.ends_with(".partial")),
        "no .partial after SIGKILL: {:?}",
        wal_files(&dir)?
    );

    write_rows(&pg, "t", 150_000)?; // crosses into the next segment while we are down
    let mut second = Receiver::ours(&pg, &dir, "resume", &[])?;
    let closed = pg.switch_wal()?;
    write_rows(&pg, "t", 1_000)?;
    let end = current_lsn(&pg)?;
    wait_written(&pg, "resume", &end, &second)?;
    wait_file(&dir.join(&closed), &second)?;
    second.stop()?;
    ensure!(
        second.log().contains(&format!("starting log streaming at {start}")),
        "did not resume at {start}:\n{}",
        second.log()
    );
    waldump(&dir, 1, &start, &end).with_context(|| format!("files {:?}", wal_files(&dir)))?;
    Ok(())
}

#[test]
fn follows_a_promotion_onto_the_new_timeline() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("receive-wal timeline")?;
    let primary = PgCluster::start(&scratch, PgOptions::default())?;
    let standby = PgCluster::from_basebackup(&scratch, &primary, true, PgOptions::default())?;
    let dir = scratch.mkdir("wal")?;
    let mut ours = Receiver::ours(&standby, &dir, "cascade", &[])?;
    write_rows(&primary, "t", 10_000)?;
    let lsn = current_lsn(&primary)?;
    wait_until(WAIT, "standby replay", || {
        Ok(standby.psql(&format!("select pg_last_wal_replay_lsn() >= '{lsn}'"))? == "t")
    })?;
    wait_written(&standby, "cascade", &lsn, &ours)?;

    standby.psql("select pg_promote()")?;
    write_rows(&standby, "t2", 10_000)?;
    let closed = standby.switch_wal()?;
    ensure!(closed.starts_with("00000002"), "promoted standby closed {closed}");
    wait_file(&dir.join("00000002.history"), &ours)?;
    wait_file(&dir.join(&closed), &ours)?;
    ours.stop()?;

    let expected = fs::read(standby.data_dir().join("pg_wal/00000002.history"))?;
    ensure!(fs::read(dir.join("00000002.history"))? == expected, "history file differs from the server's");
    let files = wal_files(&dir)?;
    ensure!(
        files.iter().any(|n| n.starts_with("00000001") && n.ends_with(".partial")),
        "old timeline's .partial kept: {files:?}"
    );
    ensure!(ours.log().contains("switched to timeline 2"), "log:\n{}", ours.log());
    Ok(())
}

#[test]
fn slots_keep_wal_and_errors_have_exit_codes() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("receive-wal slot")?;
    let pg = PgCluster::start(&scratch, PgOptions::default())?;
    let bin = cargo_bin("barman-receive-wal")?;
    let slot_cmd = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(["-d", &pg.conninfo(), "-S", "barman"]).args(args);
        cmd::outcome(&mut c)
    };
    slot_cmd(&["--create-slot"])?.success()?;
    slot_cmd(&["--create-slot"])?.fails_with_code(1)?.stderr_contains("already exists")?;
    slot_cmd(&["--create-slot", "--if-not-exists"])?.success()?;
    let restart = pg.psql("select restart_lsn from pg_replication_slots where slot_name = 'barman'")?;
    ensure!(!restart.is_empty(), "--create-slot reserves WAL (restart_lsn {restart:?})");

    let dir = scratch.mkdir("wal")?;
    let mut ours = Receiver::ours(&pg, &dir, "slot", &["-S", "barman"])?;
    write_rows(&pg, "t", 20_000)?;
    let closed = pg.switch_wal()?;
    wait_file(&dir.join(&closed), &ours)?;
    let boundary = current_lsn(&pg)?;
    wait_until(WAIT, "slot to advance to the closed segment's end", || {
        Ok(pg.psql(&format!(
            "select active and restart_lsn >= '{}' from pg_replication_slots where slot_name = 'barman'",
            segment_start_of(&boundary)?
        ))? == "t")
    })
    .with_context(|| ours.log())?;
    ours.stop()?;
    // While nobody streams, checkpoints must keep the slot's WAL.
    let kept =
        pg.psql("select pg_walfile_name(restart_lsn + 1) from pg_replication_slots where slot_name = 'barman'")?;
    write_rows(&pg, "t", 50_000)?;
    pg.switch_wal()?;
    pg.checkpoint()?;
    ensure!(pg.data_dir().join("pg_wal").join(&kept).exists(), "segment {kept} recycled despite the slot");
    slot_cmd(&["--drop-slot"])?.success()?;
    ensure!(pg.psql("select count(*) from pg_replication_slots")? == "0", "slot not dropped");

    // Errors: one line, Barman's exit codes.
    let port = free_port()?;
    let mut c = Command::new(&bin);
    c.args(["-D", &dir.display().to_string(), "-d", &format!("host=127.0.0.1 port={port} user=postgres")]);
    let unreachable = cmd::outcome(&mut c)?;
    unreachable.fails_with_code(2)?.stderr_contains("could not connect")?;
    ensure!(unreachable.stderr_str().trim().lines().count() == 1, "one line: {}", unreachable.stderr_str());
    let mut c = Command::new(&bin);
    c.args(["-D", &dir.display().to_string(), "-d", "host=/tmp bogus=1"]);
    cmd::outcome(&mut c)?.fails_with_code(3)?.stderr_contains("invalid connection option")?;
    let mut c = Command::new(&bin);
    c.args(["-d", &pg.conninfo()]);
    cmd::outcome(&mut c)?.fails_with_code(3)?.stderr_contains("no target directory")?;

    let foreign = scratch.mkdir("foreign")?;
    fs::write(foreign.join("000000010000000000000001"), foreign_segment())?;
    let mut c = Command::new(&bin);
    c.arg("-D").arg(&foreign).args(["-d", &pg.conninfo()]);
    let refused = cmd::outcome(&mut c)?;
    refused.fails_with_code(3)?.stderr_contains("does not belong to this server")?;
    ensure!(refused.stderr_str().trim().lines().count() == 1, "one line: {}", refused.stderr_str());
    Ok(())
}

/// A 16 MiB segment whose long page header names system identifier 42.
fn foreign_segment() -> Vec<u8> {
    let mut seg = vec![0u8; SEG as usize];
    seg[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    seg[2..4].copy_from_slice(&2u16.to_le_bytes());
    seg[4..8].copy_from_slice(&1u32.to_le_bytes());
    seg[8..16].copy_from_slice(&0x0100_0000u64.to_le_bytes());
    seg[24..32].copy_from_slice(&42u64.to_le_bytes());
    seg[32..36].copy_from_slice(&(SEG as u32).to_le_bytes());
    seg[36..40].copy_from_slice(&8192u32.to_le_bytes());
    seg
}

#[test]
fn authenticates_with_md5_and_scram_and_reports_flush_synchronously() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("receive-wal auth")?;
    let pg = PgCluster::start(&scratch, PgOptions::default())?;
    pg.psql(
        "set password_encryption = 'md5'; create role rep_md5 login replication password 'md5secret';
         set password_encryption = 'scram-sha-256'; create role rep_scram login replication password 'scr@m secret'",
    )?;
    let hba = pg.data_dir().join("pg_hba.conf");
    let rules = "host replication rep_md5 127.0.0.1/32 md5\nhost replication rep_scram 127.0.0.1/32 scram-sha-256\n";
    fs::write(&hba, format!("{rules}{}", fs::read_to_string(&hba)?))?;
    pg.psql("select pg_reload_conf()")?;
    let bin = cargo_bin("barman-receive-wal")?;
    let slot = |conninfo: String, env: &[(&str, &str)]| {
        let mut c = Command::new(&bin);
        c.args(["-d", &conninfo, "-S", "s", "--create-slot", "--if-not-exists"]).env_remove("PGPASSWORD");
        c.envs(env.iter().copied());
        cmd::outcome(&mut c)
    };
    let tcp = |user: &str| format!("host=127.0.0.1 port={} user={user}", pg.port());
    slot(format!("{} password=md5secret", tcp("rep_md5")), &[])?.success()?;
    slot(tcp("rep_scram"), &[("PGPASSWORD", "scr@m secret")])?.success()?;
    let pgpass = scratch.join("pgpass");
    fs::write(&pgpass, format!("127.0.0.1:{}:replication:rep_scram:scr@m secret\n", pg.port()))?;
    fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    slot(tcp("rep_scram"), &[("PGPASSFILE", pgpass.to_str().context("utf-8")?)])?.success()?;
    let wrong = slot(format!("{} password=nope", tcp("rep_scram")), &[])?;
    wrong.fails_with_code(2)?.stderr_contains("password authentication failed")?;
    slot(tcp("rep_md5"), &[])?.fails_with_code(2)?.stderr_contains("no password supplied")?;
    slot(format!("{} sslmode=require", tcp("rep_md5")), &[])?
        .fails_with_code(2)?
        .stderr_contains("server does not support SSL, but SSL was required")?;
    // -W asks on the terminal (a pty from script(1) here), echo off.
    let line = format!("{} -W -d '{}' -S s --create-slot --if-not-exists", bin.display(), tcp("rep_md5"));
    // The answer is typed after the prompt appears (typed ahead, the terminal would echo it).
    let mut prompted = Command::new("sh");
    prompted.args(["-c", "(sleep 1; echo md5secret) | script -qec \"$0\" /dev/null", &line]).env_remove("PGPASSWORD");
    let out = cmd::execute(&mut prompted, None, WAIT)?;
    ensure!(
        out.code() == Some(0) && out.stdout_str().contains("Password: "),
        "-W: {}{}",
        out.stdout_str(),
        out.stderr_str()
    );
    ensure!(!out.stdout_str().contains("md5secret"), "-W echoed the password: {}", out.stdout_str());

    // --synchronous reports flush = write at once, with periodic updates off (-s 0).
    let dir = scratch.mkdir("wal")?;
    let mut command = Command::new(&bin);
    command.arg("-D").arg(&dir).args(["-d", &format!("{} password=md5secret application_name=sync", tcp("rep_md5"))]);
    command.args(["-s", "0", "--synchronous", "-v"]);
    let mut ours = Receiver::spawn(command, scratch.join("sync.log"), "barman-receive-wal")?;
    wait_until(WAIT, "sync walsender", || {
        Ok(pg.psql("select count(*) from pg_stat_replication where application_name = 'sync'")? == "1")
    })?;
    write_rows(&pg, "t", 100)?;
    let lsn = current_lsn(&pg)?;
    wait_until(Duration::from_secs(5), "flush_lsn to reach the commit", || {
        Ok(pg.psql(&format!(
            "select coalesce(bool_and(flush_lsn >= '{lsn}'), false) from pg_stat_replication where application_name = 'sync'"
        ))? == "t")
    })
    .with_context(|| ours.log())?;
    ours.stop()?;

    // --endpos: resumes from the .partial, stops once past the position, exit 0.
    write_rows(&pg, "t", 100)?;
    let mut c = Command::new(&bin);
    c.arg("-D").arg(&dir).args(["-d", &format!("{} password=md5secret", tcp("rep_md5")), "-E", &lsn, "-n", "-v"]);
    cmd::outcome(&mut c)?.success()?.stderr_contains("stopped log streaming at")?;
    Ok(())
}

/// `lsn` as a `pg_lsn` number.
fn lsn_value(lsn: &str) -> Result<u64> {
    let (hi, lo) = lsn.split_once('/').context("lsn")?;
    Ok((u64::from_str_radix(hi, 16)? << 32) | u64::from_str_radix(lo, 16)?)
}

/// The timeline-1 segment holding `lsn` (16 MiB segments).
fn segment_name(lsn: &str) -> Result<String> {
    let segno = lsn_value(lsn)? / SEG;
    Ok(format!("00000001{:08X}{:08X}", segno / 256, segno % 256))
}

/// `barman-receive-wal <args>` against `pg`, run to completion.
fn ours_once(pg: &PgCluster, args: &[&str]) -> Result<cmd::Outcome> {
    let mut c = Command::new(cargo_bin("barman-receive-wal")?);
    c.args(["-d", &pg.conninfo()]).args(args);
    cmd::outcome(&mut c)
}

fn wait_walsender(pg: &PgCluster, app: &str, receiver: &Receiver) -> Result<()> {
    let sql =
        format!("select count(*) from pg_stat_replication where application_name = '{app}' and state = 'streaming'");
    wait_until(WAIT, &format!("walsender of {app}"), || Ok(pg.psql(&sql)? == "1"))
        .with_context(|| format!("{} log:\n{}", receiver.what, receiver.log()))
}

/// Completed segments, and each `.partial` under its plain name, copied into a new
/// postgres-owned directory for `restore_command`.
fn restore_dir_from(scratch: &Scratch, streamed: &Path) -> Result<PathBuf> {
    let restore = scratch.mkdir_owned("restore-wal", "postgres")?;
    let postgres = barman_integration::OsUser::lookup("postgres")?;
    for name in wal_files(streamed)? {
        let plain = name.strip_suffix(".partial").unwrap_or(&name);
        if plain.len() != 24 || restore.join(plain).exists() {
            continue;
        }
        fs::copy(streamed.join(&name), restore.join(plain))?;
        barman_integration::scratch::chown(&restore.join(plain), &postgres)?;
    }
    Ok(restore)
}

/// Must-show 4 (RPO = 0): with `--synchronous` named in `synchronous_standby_names`, a
/// commit returns only once our streamer has fsynced it; after SIGKILL of the server, a base
/// backup plus only the streamed WAL (the `.partial` renamed) recovers every committed row.
#[test]
fn synchronous_streaming_loses_no_commit_when_the_server_is_killed() -> Result<()> {
    const ROWS: u32 = 200;
    const APP: &str = "barman_receive_wal";
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("receive-wal rpo0")?;
    let mut pg = PgCluster::start(&scratch, PgOptions::default())?;
    ours_once(&pg, &["-S", "rpo", "--create-slot"])?.success()?;
    let dir = scratch.mkdir("wal")?;
    let mut ours = Receiver::ours(&pg, &dir, APP, &["-S", "rpo", "--synchronous"])?;
    wait_walsender(&pg, APP, &ours)?;

    let base = scratch.unique_dir("base", "postgres")?;
    barman_integration::scratch::set_mode(&base, 0o700)?;
    let mut backup = pg.pg_command("pg_basebackup");
    backup.arg("-D").arg(&base).args(["-X", "none", "-c", "fast", "--no-sync"]);
    pg.with_log(cmd::run(&mut backup))?;

    pg.psql(&format!("alter system set synchronous_standby_names = '{APP}'"))?;
    pg.psql("select pg_reload_conf()")?;
    wait_until(WAIT, "our streamer to be the synchronous standby", || {
        Ok(pg.psql(&format!("select sync_state from pg_stat_replication where application_name = '{APP}'"))? == "sync")
    })?;
    pg.psql("create table rpo(id int primary key)")?;
    // A commit waits for our flush: with the streamer stopped it hangs, and completes once
    // the streamer runs again.
    ours.signal(Signal::SIGSTOP)?;
    let mut waiting = pg.pg_command("psql");
    waiting.args(["-X", "-q", "-c", "insert into rpo values (0)"]).stdout(Stdio::null());
    let mut waiting = waiting.spawn()?;
    std::thread::sleep(Duration::from_secs(1));
    let hung = waiting.try_wait()?.is_none();
    ours.signal(Signal::SIGCONT)?;
    ensure!(hung, "a commit returned while the synchronous streamer was stopped");
    ensure!(waiting.wait()?.success(), "the waiting insert failed");
    let inserts = (1..=ROWS).fold(String::new(), |mut sql, i| {
        sql.push_str(&format!("insert into rpo values ({i});\n"));
        sql
    });
    pg.psql(&inserts)?;
    pg.kill9()?;
    ours.stop()?;

    let restore = restore_dir_from(&scratch, &dir)?;
    fs::write(base.join("recovery.signal"), "")?;
    let opts = PgOptions::default().conf(format!("restore_command = 'cp {}/%f %p'", restore.display()));
    let restored = PgCluster::start_existing(&scratch, &base, opts)?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    let count = restored.psql("select count(*) from rpo")?;
    ensure!(count == (ROWS + 1).to_string(), "restored {count} rows of {}; streamed {:?}", ROWS + 1, wal_files(&dir)?);
    Ok(())
}

/// Must-show 6: a server restart mid-stream. Without `-n` we reconnect (after pg_receivewal's
/// 5 s pause) and continue without a gap, with the same files as pg_receivewal doing the
/// same; with `-n` we exit with pg_receivewal's code.
#[test]
fn a_server_restart_is_survived_and_no_loop_exits_like_pg_receivewal() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("receive-wal restart")?;
    let mut pg = PgCluster::start(&scratch, PgOptions::default())?;
    let theirs = |name: &str, extra: &[&str]| -> Result<(Receiver, PathBuf)> {
        let dir = scratch.mkdir_owned(name, "postgres")?;
        let mut c = pg.pg_command("pg_receivewal");
        c.arg("-D").arg(&dir).args(["-v", "-s", "1", "-d", &format!("application_name={name}")]).args(extra);
        Ok((Receiver::spawn(c, scratch.join(format!("{name}.log")), "pg_receivewal")?, dir))
    };
    let loop_dir = scratch.mkdir("ours_loop")?;
    let once_dir = scratch.mkdir("ours_once")?;
    let mut ours_loop = Receiver::ours(&pg, &loop_dir, "ours_loop", &[])?;
    let mut ours_noloop = Receiver::ours(&pg, &once_dir, "ours_once", &["-n"])?;
    let (mut theirs_loop, theirs_loop_dir) = theirs("theirs_loop", &[])?;
    let (mut theirs_noloop, _) = theirs("theirs_once", &["-n"])?;
    let start = segment_start_of(&current_lsn(&pg)?)?;
    write_rows(&pg, "t", 20_000)?;
    let before = current_lsn(&pg)?;
    for (app, r) in [("ours_loop", &ours_loop), ("ours_once", &ours_noloop)] {
        wait_written(&pg, app, &before, r)?;
    }
    for (app, r) in [("theirs_loop", &theirs_loop), ("theirs_once", &theirs_noloop)] {
        wait_written(&pg, app, &before, r)?;
    }

    pg.stop()?;
    let (our_code, their_code) = (ours_noloop.wait()?, theirs_noloop.wait()?);
    ensure!(
        our_code == their_code && our_code != 0,
        "-n after a restart: we exit {our_code}, pg_receivewal {their_code}; ours:\n{}\ntheirs:\n{}",
        ours_noloop.log(),
        theirs_noloop.log()
    );
    pg.start_again()?;
    write_rows(&pg, "t", 150_000)?;
    let closed = pg.switch_wal()?;
    write_rows(&pg, "t", 1_000)?;
    let end = current_lsn(&pg)?;
    wait_written(&pg, "ours_loop", &end, &ours_loop)?;
    wait_written(&pg, "theirs_loop", &end, &theirs_loop)?;
    wait_file(&loop_dir.join(&closed), &ours_loop)?;
    wait_file(&theirs_loop_dir.join(&closed), &theirs_loop)?;
    ours_loop.stop()?;
    theirs_loop.stop()?;
    ensure!(ours_loop.log().contains("waiting 5 seconds to try again"), "log:\n{}", ours_loop.log());

    let (our_files, their_files) = (wal_files(&loop_dir)?, wal_files(&theirs_loop_dir)?);
    ensure!(our_files == their_files, "file names differ: ours {our_files:?}, pg_receivewal {their_files:?}");
    let valid = usize::try_from(lsn_offset_in_segment(&end)?)?;
    for name in our_files.iter().filter(|n| n.len() == 24 || n.ends_with(".partial")) {
        let (a, b) = (fs::read(loop_dir.join(name))?, fs::read(theirs_loop_dir.join(name))?);
        let upto = if name.ends_with(".partial") { valid } else { a.len() };
        ensure!(a.len() == b.len() && a[..upto] == b[..upto], "{name} differs from pg_receivewal's");
    }
    // After the comparison: the oracle copies each `.partial` to its plain name.
    waldump(&loop_dir, 1, &start, &end).with_context(|| format!("files {:?}", wal_files(&loop_dir)))?;
    Ok(())
}

/// Must-show 5: a slot created by us reserves WAL at once, so segments written between its
/// creation and the first stream are archived (pg_receivewal's slot, without RESERVE_WAL,
/// starts at the server's position instead); a slot invalidated by
/// `max_slot_wal_keep_size` stops us with one explicit error line and exit 1.
#[test]
fn reserved_slots_lose_no_wal_and_a_lost_slot_is_an_explicit_error() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("receive-wal lost slot")?;
    let pg = PgCluster::start(&scratch, PgOptions::default().conf("max_slot_wal_keep_size = 64MB"))?;
    let switch_segments = |n: u32| -> Result<()> {
        let sql: String = (0..n).map(|_| "insert into filler values (1); select pg_switch_wal();\n").collect();
        pg.psql(&format!("create table if not exists filler(x int);\n{sql}")).map(drop)
    };
    let slot_lsn = |slot: &str| {
        pg.psql(&format!("select coalesce(restart_lsn::text, '') from pg_replication_slots where slot_name = '{slot}'"))
    };

    ours_once(&pg, &["-S", "kept", "--create-slot"])?.success()?;
    let mut c = pg.pg_command("pg_receivewal");
    c.args(["-S", "theirs", "--create-slot"]);
    cmd::run(&mut c)?;
    let reserved = slot_lsn("kept")?;
    let first = segment_name(&reserved)?;
    switch_segments(3)?;
    pg.checkpoint()?;
    let dir = scratch.mkdir("kept")?;
    let theirs_dir = scratch.mkdir_owned("theirs", "postgres")?;
    let mut ours = Receiver::ours(&pg, &dir, "kept", &["-S", "kept"])?;
    let mut c = pg.pg_command("pg_receivewal");
    c.arg("-D").arg(&theirs_dir).args(["-S", "theirs", "-v", "-s", "1", "-d", "application_name=theirs"]);
    let mut theirs = Receiver::spawn(c, scratch.join("theirs.log"), "pg_receivewal")?;
    write_rows(&pg, "t", 1_000)?;
    let end = current_lsn(&pg)?;
    wait_written(&pg, "kept", &end, &ours)?;
    wait_written(&pg, "theirs", &end, &theirs)?;
    ours.stop()?;
    theirs.stop()?;
    ensure!(
        dir.join(&first).exists(),
        "segment {first} of the slot's creation ({reserved}) missing: {:?}",
        wal_files(&dir)?
    );
    ensure!(!theirs_dir.join(&first).exists(), "pg_receivewal's slot unexpectedly kept {first}");
    waldump(&dir, 1, &reserved, &end).with_context(|| format!("files {:?}", wal_files(&dir)))?;
    ours_once(&pg, &["-S", "kept", "--drop-slot"])?.success()?;
    ours_once(&pg, &["-S", "theirs", "--drop-slot"])?.success()?;

    // Lost: stream a little, stop, then write past max_slot_wal_keep_size and checkpoint.
    ours_once(&pg, &["-S", "doomed", "--create-slot"])?.success()?;
    let lost_dir = scratch.mkdir("doomed")?;
    let mut ours = Receiver::ours(&pg, &lost_dir, "doomed", &["-S", "doomed"])?;
    write_rows(&pg, "t", 1_000)?;
    let end = current_lsn(&pg)?;
    wait_written(&pg, "doomed", &end, &ours)?;
    ours.stop()?;
    switch_segments(8)?;
    pg.checkpoint()?;
    pg.checkpoint()?;
    let status = pg.psql("select wal_status from pg_replication_slots where slot_name = 'doomed'")?;
    ensure!(status == "lost", "slot not invalidated: wal_status {status}");
    let empty = scratch.mkdir("empty")?;
    for target in [&lost_dir, &empty] {
        let started = Instant::now();
        let out = ours_once(&pg, &["-D", &target.display().to_string(), "-S", "doomed"])?;
        out.fails_with_code(1)?.stderr_contains("replication slot \"doomed\" has been invalidated")?;
        ensure!(out.stderr_str().trim().lines().count() == 1, "one line: {}", out.stderr_str());
        ensure!(started.elapsed() < Duration::from_secs(5), "no retry loop: {:?}", started.elapsed());
    }
    let status = pg.psql("select wal_status from pg_replication_slots where slot_name = 'doomed'")?;
    ensure!(status == "lost", "our attempts revived the slot: wal_status {status}");
    Ok(())
}

fn decompress(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = fs::File::open(path)?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.contains(".gz") {
        flate2::read::MultiGzDecoder::new(file).read_to_end(&mut out)?;
    } else {
        lz4_flex::frame::FrameDecoder::new(file).read_to_end(&mut out)?;
    }
    Ok(out)
}

/// `-Z gzip` and `-Z lz4`: the same file names as pg_receivewal's (`NAME.gz`,
/// `NAME.lz4.partial`...), the same WAL once decompressed, and each tool resumes in the
/// other's directory where pg_receivewal would (a compressed `.partial` is restarted).
#[test]
fn compressed_segments_match_pg_receivewal_and_resume_across_tools() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("receive-wal compressed")?;
    let pg = PgCluster::start(&scratch, PgOptions::default())?;
    for method in ["gzip", "lz4"] {
        let suffix = if method == "gzip" { ".gz" } else { ".lz4" };
        let ours_dir = scratch.mkdir_owned(format!("ours-{method}"), "postgres")?;
        let theirs_dir = scratch.mkdir_owned(format!("theirs-{method}"), "postgres")?;
        let app_ours = format!("ours_{method}");
        let app_theirs = format!("theirs_{method}");
        let mut ours = Receiver::ours(&pg, &ours_dir, &app_ours, &["-Z", method])?;
        let mut theirs_cmd = pg.pg_command("pg_receivewal");
        theirs_cmd.arg("-D").arg(&theirs_dir).args(["-v", "-s", "1", "-Z", method]);
        theirs_cmd.args(["-d", &format!("application_name={app_theirs}")]);
        let mut theirs = Receiver::spawn(theirs_cmd, scratch.join(format!("theirs-{method}.log")), "pg_receivewal")?;
        wait_walsender(&pg, &app_ours, &ours)?;
        wait_walsender(&pg, &app_theirs, &theirs)?;
        write_rows(&pg, "z", 50_000)?;
        let first = pg.switch_wal()?;
        write_rows(&pg, "z", 1_000)?;
        let end = current_lsn(&pg)?;
        wait_written(&pg, &app_ours, &end, &ours)?;
        wait_written(&pg, &app_theirs, &end, &theirs)?;
        wait_file(&ours_dir.join(format!("{first}{suffix}")), &ours)?;
        wait_file(&theirs_dir.join(format!("{first}{suffix}")), &theirs)?;
        ours.stop()?;
        theirs.stop()?;
        let (our_files, their_files) = (wal_files(&ours_dir)?, wal_files(&theirs_dir)?);
        ensure!(our_files == their_files, "-Z {method}: ours {our_files:?}, pg_receivewal {their_files:?}");
        ensure!(our_files.last().is_some_and(|n| n.ends_with(&format!("{suffix}.partial"))), "{our_files:?}");
        let valid = usize::try_from(lsn_offset_in_segment(&end)?)?;
        for name in &our_files {
            let (a, b) = (decompress(&ours_dir.join(name))?, decompress(&theirs_dir.join(name))?);
            if name.ends_with(".partial") {
                ensure!(
                    a.len() >= valid && b.len() >= valid && a[..valid] == b[..valid],
                    "-Z {method}: {name} differs"
                );
            } else {
                ensure!(a.len() as u64 == SEG && a == b, "-Z {method}: {name} differs once decompressed");
            }
        }
        // Each resumes in the other's directory at the start of the compressed .partial.
        let partial_seg = our_files.last().context("files")?[..24].to_owned();
        let expected = segment_start_of(&end)?;
        let stop_at = current_lsn(&pg)?;
        // pg_current_wal_lsn() is the write position; a committed row past it makes sure
        // WAL up to stop_at is flushed (and so sent), or --endpos could wait for the walwriter.
        write_rows(&pg, "z", 10)?;
        barman_integration::scratch::chown_recursive(&ours_dir, &barman_integration::OsUser::lookup("postgres")?)?;
        let mut theirs_again = pg.pg_command("pg_receivewal");
        theirs_again.arg("-D").arg(&ours_dir).args(["-v", "-n", "-Z", method, "--endpos", &stop_at]);
        let out = cmd::execute(&mut theirs_again, None, WAIT)?;
        ensure!(
            out.stderr_str().contains(&format!("starting log streaming at {expected} (timeline 1)")),
            "pg_receivewal in our -Z {method} directory ({partial_seg}): {}",
            out.stderr_str()
        );
        let out = ours_once(
            &pg,
            &["-D", theirs_dir.to_str().context("utf8")?, "-v", "-n", "-Z", method, "--endpos", &stop_at],
        )?;
        ensure!(
            out.stderr_str().contains(&format!("starting log streaming at {expected} (timeline 1)")),
            "ours in pg_receivewal's -Z {method} directory: {}",
            out.stderr_str()
        );
    }
    Ok(())
}

/// Issue 20's window: SIGKILL at random moments under pgbench, many of them right after a
/// segment switch (while the next `.partial` is being padded or the last one renamed). Each
/// restart must resume by itself, the streamed range must read cleanly with `pg_waldump`, and
/// every completed segment must equal the primary's copy in `pg_wal` (kept by a slot).
#[test]
fn resumes_after_fifty_sigkills_under_load() -> Result<()> {
    use rand::Rng;
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("receive-wal kills")?;
    // The slot follows our flushes; wal_keep_size keeps every segment for the comparison.
    let pg = PgCluster::start(&scratch, PgOptions::default().conf("wal_keep_size = '4GB'"))?;
    pg.psql("select pg_create_physical_replication_slot('kills', true)")?;
    pg.pgbench_init(1)?;
    let dir = scratch.mkdir("wal")?;
    let start = segment_start_of(&current_lsn(&pg)?)?;
    let mut rng = rand::thread_rng();
    let load_done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| -> Result<()> {
        let load = s.spawn(|| {
            while !load_done.load(std::sync::atomic::Ordering::Relaxed) {
                pg.pgbench(&["-c", "2", "-T", "2", "-n"])?;
            }
            Ok::<(), anyhow::Error>(())
        });
        let kills = (0..50).try_for_each(|round| -> Result<()> {
            let mut streamer = Receiver::ours(&pg, &dir, "kills", &["-S", "kills"])?;
            if round % 3 == 0 {
                std::thread::sleep(Duration::from_millis(rng.gen_range(150..400)));
                pg.switch_wal()?;
                std::thread::sleep(Duration::from_millis(rng.gen_range(0..30)));
            } else {
                std::thread::sleep(Duration::from_millis(rng.gen_range(50..600)));
            }
            ensure!(
                streamer.child.try_wait()?.is_none(),
                "round {round}: the streamer exited by itself:\n{}",
                streamer.log()
            );
            streamer.signal(Signal::SIGKILL)?;
            streamer.wait()?;
            Ok(())
        });
        // The load stops whatever happened, so a failure ends the test instead of hanging it.
        load_done.store(true, std::sync::atomic::Ordering::Relaxed);
        load.join().map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        kills
    })?;
    let mut last = Receiver::ours(&pg, &dir, "kills", &["-S", "kills"])?;
    let closed = pg.switch_wal()?;
    write_rows(&pg, "t", 1_000)?;
    let end = current_lsn(&pg)?;
    wait_written(&pg, "kills", &end, &last)?;
    wait_file(&dir.join(&closed), &last)?;
    last.stop()?;
    let names = wal_files(&dir)?;
    let complete: Vec<&String> = names.iter().filter(|n| n.len() == 24).collect();
    ensure!(complete.len() >= 17, "only {} complete segments: {names:?}", complete.len());
    for name in &complete {
        let ours = fs::read(dir.join(name))?;
        let theirs = fs::read(pg.data_dir().join("pg_wal").join(name)).with_context(|| format!("pg_wal/{name}"))?;
        ensure!(ours == theirs, "segment {name} differs from the primary's");
    }
    waldump(&dir, 1, &start, &end).with_context(|| format!("files {names:?}"))?;
    eprintln!("50 SIGKILLs: {} complete segments equal to pg_wal, pg_waldump reads {start}..{end}", complete.len());
    Ok(())
}
