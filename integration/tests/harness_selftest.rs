//! Self tests of the harness: every piece really starts and does what later tests rely on.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_integration::{
    cmd, real_barman_catalogue, skip_unless, BarmanHome, OsUser, PgCluster, PgOptions, RealBarman, Scratch, Sshd,
    SshdOptions,
};

#[test]
fn command_failure_explains_itself() -> Result<()> {
    let err = cmd::run(Command::new("sh").args(["-c", "echo to-out; echo to-err >&2; exit 3"]))
        .expect_err("exit 3 is a failure");
    let text = format!("{err:#}");
    for needle in ["sh -c", "exit code 3", "to-out", "to-err"] {
        ensure!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let outcome = cmd::outcome(Command::new("sh").args(["-c", "exit 1"]))?;
    outcome.fails_with_code(1)?;
    ensure!(outcome.success().is_err());
    Ok(())
}

#[test]
fn hung_command_times_out() {
    let err = cmd::execute(Command::new("sleep").arg("30"), None, Duration::from_millis(300))
        .expect_err("sleep 30 outlives a 300 ms timeout");
    assert!(format!("{err:#}").contains("timed out"), "{err:#}");
}

#[test]
fn scratch_is_traversable_and_removed() -> Result<()> {
    skip_unless!(barman_integration::require_root());
    let scratch = Scratch::new("scratch selftest")?;
    let path = scratch.path().to_path_buf();
    assert_eq!(std::fs::metadata(&path)?.mode() & 0o777, 0o755);
    let owned = scratch.mkdir_owned("pgstuff", "postgres")?;
    assert_eq!(std::fs::metadata(&owned)?.uid(), OsUser::lookup("postgres")?.uid);
    drop(scratch);
    assert!(std::env::var("KEEP_SCRATCH").is_ok() || !path.exists(), "{} not removed", path.display());
    Ok(())
}

#[test]
fn pg_cluster_round_trip() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("pg selftest")?;
    let mut pg = PgCluster::start(&scratch, PgOptions::default())?;
    pg.psql("create table t(id int, v text); insert into t select g, 'row ' || g from generate_series(1, 100) g")?;
    assert_eq!(pg.psql("select count(*), max(v) from t where id > 50")?, "50|row 99");

    let sysid = pg.system_identifier()?;
    assert_eq!(sysid.to_string().len(), 19, "system identifier {sysid}");
    assert_eq!(pg.psql("select system_identifier from pg_control_system()")?, sysid.to_string());
    assert_eq!(pg.wal_segment_size()?, 16 * 1024 * 1024);
    assert!(pg.conninfo().contains(&format!("port={}", pg.port())));

    // A crash loses no committed row, and the harness brings the cluster back.
    let before = pg.table_checksum("t")?;
    pg.kill9()?;
    pg.start_again()?;
    assert_eq!(pg.table_checksum("t")?, before);
    pg.restart_with(&["work_mem = '7MB'"])?;
    assert_eq!(pg.psql("show work_mem")?, "7MB");

    let err = pg.psql("select * from no_such_table").expect_err("bad SQL fails");
    let text = format!("{err:#}");
    assert!(text.contains("no_such_table") && text.contains("server log"), "{text}");
    Ok(())
}

#[test]
fn pg_archives_and_restores_existing_data_dir() -> Result<()> {
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("pg archive selftest")?;
    let archive = scratch.mkdir_owned("archive", "postgres")?;
    let opts = PgOptions::default().archive_command(format!("cp %p {}/%f", archive.display()));
    let pg = PgCluster::start(&scratch, opts)?;
    pg.pgbench_init(1)?;
    let wal = pg.switch_wal()?;
    pg.wait_for_archived(&wal, Duration::from_secs(30))?;
    assert!(archive.join(&wal).is_file(), "{wal} not in {}", archive.display());

    let standby = PgCluster::from_basebackup(&scratch, &pg, false, PgOptions::default())?;
    standby.wait_for_recovery_end(Duration::from_secs(30))?;
    assert_eq!(standby.table_checksum("pgbench_branches")?, pg.table_checksum("pgbench_branches")?);
    assert_eq!(standby.system_identifier()?, pg.system_identifier()?);
    Ok(())
}

#[test]
fn sshd_reaches_barman_as_root_and_postgres() -> Result<()> {
    skip_unless!(Sshd::require());
    let scratch = Scratch::new("sshd selftest")?;
    let extra = scratch.mkdir("remote-bin")?;
    let mut opts = SshdOptions::default();
    opts.remote_path.insert(0, extra.clone());
    let sshd = Sshd::start(&scratch, opts)?;

    // Exactly what a tool does: `ssh -p PORT barman@127.0.0.1 ...` with the wrapper on PATH.
    let wrapper = sshd.ssh_wrapper_dir().join("ssh");
    let output =
        cmd::run(Command::new(&wrapper).args(["-p", &sshd.port().to_string(), "barman@127.0.0.1", "id", "-un"]))
            .with_context(|| sshd.log())?;
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "barman");

    let mut as_postgres = sshd.ssh_command("postgres", "barman", "id -un; echo $PATH")?;
    let outcome = cmd::outcome(&mut as_postgres)?;
    outcome.success().with_context(|| sshd.log())?;
    let stdout = outcome.stdout_str();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("barman"));
    let path = lines.next().unwrap_or_default();
    assert!(path.starts_with(&extra.display().to_string()), "remote PATH {path}");
    assert_eq!(path, sshd.remote_path());
    Ok(())
}

#[test]
fn real_barman_version() -> Result<()> {
    let barman = skip_unless!(RealBarman::require());
    assert_eq!(barman.version()?, "3.20.1");
    for bin in ["barman-wal-archive", "barman-wal-restore"] {
        assert!(barman.bin(bin).is_file(), "{bin} missing");
    }
    // Barman accepts root as barman_user when run as root.
    skip_unless!(barman_integration::require_root());
    let scratch = Scratch::new("real barman root")?;
    let home = BarmanHome::real(&scratch, &barman, "root")?;
    assert_eq!(home.run(&["list-servers"])?.trim(), "");
    Ok(())
}

#[test]
fn real_barman_catalogue_has_backup_and_wal() -> Result<()> {
    skip_unless!(RealBarman::require());
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let scratch = Scratch::new("real barman selftest")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let barman = &fixture.barman;

    let check = barman.run(&["check", "pg"])?;
    assert!(!check.contains("FAILED"), "barman check:\n{check}");
    assert_eq!(barman.done_backups("pg")?.len(), 1);
    let listing = barman.run(&["list-backup", "pg"])?;
    assert_eq!(listing.lines().count(), 1, "list-backup:\n{listing}");

    let xlog_db = std::fs::read_to_string(barman.xlog_db("pg"))?;
    assert!(xlog_db.lines().count() >= 2, "xlog.db:\n{xlog_db}");
    let owner = std::fs::metadata(barman.server_dir("pg"))?.uid();
    assert_eq!(owner, OsUser::lookup("barman")?.uid);

    // The cluster keeps archiving through Barman's client after the fixture returns.
    fixture.pg.psql("insert into harness_data values (5000, 'late')")?;
    let wal = fixture.pg.switch_wal()?;
    fixture.pg.wait_for_archived(&wal, Duration::from_secs(30))?;
    Ok(())
}
