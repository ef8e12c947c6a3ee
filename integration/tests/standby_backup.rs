//! Issue 18, must-show 2: backups from a real PostgreSQL 15 streaming standby
//! (`archive_mode = always`, archiving through our `barman-wal-archive`) with
//! `primary_conninfo` set, one server per method (`rsync` over ssh as `postgres`, and
//! `postgres`). The primary stays idle during the backups: without the WAL switches on the
//! primary, `pg_backup_stop` on the standby would wait forever for its last segment to be
//! archived (Barman's #448, #596, #717). Each backup completes (`--wait`: DONE with its WAL)
//! and a remote recovery of it (started without the standby's `standby.signal` that a
//! `BASE_BACKUP` of a standby carries) holds exactly the rows written on the primary.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_integration::cmd::{cargo_bin, execute};
use barman_integration::fixtures::ArchivingCluster as Setup;
use barman_integration::pg::ArchiveMode;
use barman_integration::{skip_unless, BarmanServerOptions, PgCluster, PgOptions, Sshd};

const SSH_POSTGRES: &str = "ssh postgres@127.0.0.1";

fn ids(pg: &PgCluster) -> Result<String> {
    pg.psql("select coalesce(string_agg(id::text, ',' order by id), '') from t")
}

#[test]
fn backups_from_an_idle_primarys_standby_complete_and_recover() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let t_all = Instant::now();
    let mut s = Setup::start("standby backup")?;
    s.pg.psql("create table t(id int primary key, v text)")?;
    s.pg.psql("insert into t select g, 'primary' from generate_series(1, 100) g")?;

    // The standby archives every segment into both servers' catalogues.
    let archive = |server: &str| -> Result<String> {
        Ok(format!(
            "{client} -c {cfg} --port {port} 127.0.0.1 {server} %p",
            client = cargo_bin("barman-wal-archive")?.display(),
            cfg = s.barman.config_path().display(),
            port = s.sshd.port(),
        ))
    };
    let mut opts = PgOptions::default()
        .archive_command(format!("{} && {}", archive("sb_rsync")?, archive("sb_pg")?))
        .path_prefix(s.sshd.ssh_wrapper_dir_for("postgres")?);
    opts.archive_mode = ArchiveMode::Always;
    let standby = PgCluster::from_basebackup(&s.scratch, &s.pg, true, opts)?;
    let primary_conninfo = format!("primary_conninfo = {}", s.pg.conninfo());
    for (name, method) in [("sb_rsync", "rsync"), ("sb_pg", "postgres")] {
        let mut extra = vec![primary_conninfo.clone(), "primary_checkpoint_timeout = 30".into()];
        if method == "rsync" {
            extra.push(format!("ssh_command = {SSH_POSTGRES}"));
        }
        let server = BarmanServerOptions { backup_method: method.into(), extra, ..BarmanServerOptions::default() };
        s.barman.add_server(name, &standby, &server)?;
    }
    barman_integration::wait_until(Duration::from_mins(1), "standby replay", || {
        Ok(standby.psql("select count(*) from t").is_ok_and(|n| n == "100"))
    })?;
    ensure!(standby.psql("select pg_is_in_recovery()")? == "t", "not a standby");
    // Barman refuses a first backup while the WAL archive is empty (its "WAL archive" check
    // is critical): let the standby archive the switched segment, and the archiver file it.
    standby.with_log(barman_integration::wait_until(
        Duration::from_mins(1),
        "the standby archiving a segment",
        || {
            if standby.psql("select archived_count > 0 from pg_stat_archiver")? == "t" {
                return Ok(true);
            }
            s.pg.psql("select pg_catalog.txid_current()")?;
            s.pg.switch_wal()?;
            std::thread::sleep(Duration::from_millis(500));
            Ok(false)
        },
    ))?;
    s.barman.run(&["cron"])?;
    // The segments pg_basebackup gave the standby are never archived by it: a checkpoint in
    // a new segment gives the standby a restartpoint its own archive covers.
    s.pg.switch_wal()?;
    s.pg.checkpoint()?;
    let lsn = s.pg.psql("select pg_current_wal_lsn()")?;
    barman_integration::wait_until(Duration::from_mins(1), "standby catch-up", || {
        Ok(standby.psql(&format!("select pg_last_wal_replay_lsn() >= '{lsn}'"))? == "t")
    })?;
    let want = ids(&s.pg)?;

    for name in ["sb_rsync", "sb_pg"] {
        // The primary writes nothing from here on.
        let t0 = Instant::now();
        let mut cmd = s.barman.command(&["backup", name, "--wait", "--wait-timeout", "90", "--immediate-checkpoint"]);
        let o = execute(&mut cmd, None, Duration::from_mins(3))?;
        let took = t0.elapsed();
        o.success().with_context(|| format!("backup {name}: {}\n{}", o.stderr_str(), s.barman.log()))?;
        let done = s.barman.done_backups(name)?;
        ensure!(done.len() == 1, "{name}: DONE backups {done:?}\n{}", o.stdout_str());
        s.barman.run(&["cron"])?;

        let remote = s.scratch.mkdir_owned_mode(format!("rec_{name}"), "postgres", 0o700)?;
        let dest = remote.join("pgdata");
        let dest_s = dest.to_str().context("utf8")?;
        s.barman.run(&["recover", "--remote-ssh-command", SSH_POSTGRES, name, &done[0], dest_s])?;
        // BASE_BACKUP of a standby carries its standby.signal (as pg_basebackup's does with
        // Barman): removed, so the copy replays its own WAL and ends recovery.
        let _ = std::fs::remove_file(dest.join("standby.signal"));
        let restored = PgCluster::start_existing(&s.scratch, &dest, PgOptions::default())?;
        restored.wait_for_recovery_end(Duration::from_mins(1))?;
        let rows = ids(&restored)?;
        ensure!(rows == want, "{name}: recovered {} rows", rows.split(',').count());
        drop(restored);
        eprintln!("{name}: backup from the standby took {took:?}");
    }
    s.pg.psql("select 1")?;
    eprintln!("test {:?}", t_all.elapsed());
    Ok(())
}
