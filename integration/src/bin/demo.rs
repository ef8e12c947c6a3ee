//! The demo: a throwaway PostgreSQL 15 archives its WAL through `barman-wal-archive` over a
//! private sshd into a `barman` catalogue, a base backup is taken, and the backup is
//! recovered to a point in time with `barman-wal-restore -p 4`; the recovered rows are
//! checked against what was written before and after the target. Every step is printed.
//!
//! Run as root (Postgres runs as the `postgres` OS user, barman as `barman`) after
//! `integration/setup.sh`; see README.md.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_integration::scratch::chown_recursive;
use barman_integration::{
    cargo_bin, BarmanHome, BarmanServerOptions, OsUser, PgCluster, PgOptions, Scratch, Sshd, SshdOptions,
};

fn step(n: u32, what: &str) {
    println!("\n[{n}] {what}");
}

fn main() -> Result<()> {
    let t0 = Instant::now();
    let scratch = Scratch::new("demo")?;
    step(1, "Starting a private sshd on 127.0.0.1 (the backup host, user 'barman')");
    let sshd = Sshd::start(&scratch, SshdOptions::default())?;
    println!("    sshd on port {}", sshd.port());
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    let archive = format!(
        "{} -c {} --port {} 127.0.0.1 pg %p",
        cargo_bin("barman-wal-archive")?.display(),
        barman.config_path().display(),
        sshd.port()
    );
    step(2, "Starting a throwaway PostgreSQL 15 cluster");
    let opts = PgOptions::default().archive_command(archive.clone()).path_prefix(sshd.ssh_wrapper_dir_for("postgres")?);
    let pg = PgCluster::start(&scratch, opts)?;
    barman.add_server("pg", &pg, &BarmanServerOptions { compression: Some("zstd".into()), ..Default::default() })?;
    println!("    data directory {} on port {}", pg.data_dir().display(), pg.port());
    println!("    archive_command = '{archive}'");
    println!("    barman.conf: {}", barman.config_path().display());

    step(3, "Taking a base backup with `barman backup pg --wait` (barman-backup over the replication protocol)");
    pg.psql("create table demo(id int primary key, written_at timestamptz default clock_timestamp(), note text)")?;
    print!("{}", indent(&barman.run(&["backup", "--wait", "--immediate-checkpoint", "pg"])?));
    print!("{}", indent(&barman.run(&["list-backups", "pg"])?));
    let id = barman.run(&["list-backups", "--minimal", "pg"])?.trim().to_owned();

    step(4, "Writing rows before the target time, then pgbench load, then rows after it");
    pg.psql("insert into demo(id, note) select g, 'before target' from generate_series(1, 1000) g")?;
    pg.pgbench_init(5)?;
    std::thread::sleep(Duration::from_millis(1100));
    let target = pg.psql("select now()")?;
    std::thread::sleep(Duration::from_millis(1100));
    pg.psql("insert into demo(id, note) select g, 'after target' from generate_series(1001, 1500) g")?;
    let before_checksum =
        pg.psql("select md5(string_agg(id || note, ',' order by id)) from demo where note = 'before target'")?;
    println!("    1000 rows before {target}, 500 rows after it");

    step(5, "Archiving: switching WAL and waiting for archive_command to acknowledge");
    let last = pg.switch_wal()?;
    pg.wait_for_archived(&last, Duration::from_mins(3))?;
    let archived = pg.psql("select archived_count from pg_stat_archiver")?;
    println!("    {archived} WAL files acknowledged by barman put-wal (durable in incoming/)");

    step(6, "barman cron: moving incoming WAL into the compressed archive");
    print!("{}", indent(&barman.run(&["cron"])?));
    let db = fs::read_to_string(barman.xlog_db("pg")).context("xlog.db")?;
    println!("    xlog.db now lists {} files", db.lines().count());

    step(7, "barman recover: the backup, to the target time, into a new directory");
    let base = scratch.mkdir_owned("recovery", "barman")?.join("pgdata");
    let recover = barman.run(&[
        "recover",
        "--target-time",
        &target,
        "--target-action",
        "promote",
        "pg",
        &id,
        &base.display().to_string(),
    ])?;
    print!("{}", indent(&recover));
    chown_recursive(&base, &OsUser::lookup("postgres")?)?;
    fs::set_permissions(&base, fs::Permissions::from_mode(0o700))?;
    step(8, "Starting PostgreSQL on the recovered directory (WAL replayed from barman_wal/)");
    let ropts = PgOptions::default();
    let t_recover = Instant::now();
    let restored = PgCluster::start_existing(&scratch, &base, ropts)?;
    restored.wait_for_recovery_end(Duration::from_mins(3))?;
    println!("    recovered and promoted in {:.1} s", t_recover.elapsed().as_secs_f64());

    step(9, "Checking the recovered data");
    let counts = restored.psql("select note, count(*) from demo group by note order by note")?;
    let got =
        restored.psql("select md5(string_agg(id || note, ',' order by id)) from demo where note = 'before target'")?;
    println!("    rows by kind: {}", counts.replace('\n', ", "));
    ensure!(counts == "before target|1000", "expected exactly the 1000 rows written before the target, got {counts}");
    ensure!(got == before_checksum, "recovered rows differ from the rows written");
    let branches = restored.psql("select count(*) from pgbench_branches")?;
    ensure!(branches == "5", "pgbench_branches has {branches} rows");
    println!("    OK: the 1000 rows before the target are back, byte for byte; the 500 after it are not.");
    println!("\nDemo finished in {:.1} s; everything it started is being torn down.", t0.elapsed().as_secs_f64());
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().fold(String::new(), |mut out, l| {
        out.push_str("    ");
        out.push_str(l);
        out.push('\n');
        out
    })
}
