//! The cloud tier end to end on a real SeaweedFS S3 store, ours against real Barman
//! 3.20.1's cloud tools on the same bucket: `barman-cloud-wal-archive` as `archive_command`,
//! two `barman-cloud-backup`s (the second with a tablespace, lz4, -J 4 and a small -S so it
//! is cut into several archives), `barman-cloud-backup-list --format json` identical to
//! Barman's, `barman-cloud-restore` of the newest with `barman-cloud-wal-restore -p 4` as
//! `restore_command`: PostgreSQL comes up with exactly the last committed rows. Then interop
//! both ways: real `barman-cloud-restore` + `barman-cloud-wal-restore` recover ours, and ours
//! recover a backup and WAL written by real Barman.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_integration::cmd::{self, as_user, execute, Outcome};
use barman_integration::objstore::{ObjectStore, Provider};
use barman_integration::scratch::write_file;
use barman_integration::{cargo_bin, skip_unless, OsUser, PgCluster, PgOptions, Scratch};

const VENV_BIN: &str = "/opt/barman-venv/bin";
const BUCKET: &str = "barman";

/// One store and how to call the tools on it.
struct Cloud {
    store: ObjectStore,
}

impl Cloud {
    fn start(scratch: &Scratch, provider: Provider) -> Result<Cloud> {
        let store = ObjectStore::start(scratch, provider)?;
        store.create_bucket(BUCKET)?;
        Ok(Cloud { store })
    }

    fn program(ours: bool, tool: &str) -> Result<PathBuf> {
        if ours {
            cargo_bin(tool)
        } else {
            Ok(PathBuf::from(VENV_BIN).join(tool))
        }
    }

    /// `tool` with the provider, endpoint and credentials, before its own arguments.
    fn command(&self, ours: bool, tool: &str) -> Result<Command> {
        let mut c = Command::new(Self::program(ours, tool)?);
        c.args(["--cloud-provider", self.store.provider().cli_name()]);
        if let Some(e) = self.store.endpoint_url() {
            c.args(["--endpoint-url", &e]);
        }
        self.store.apply_env(&mut c);
        Ok(c)
    }

    /// The same as a shell command line (for archive_command / restore_command).
    fn line(&self, ours: bool, tool: &str, args: &str) -> Result<String> {
        let mut s =
            format!("{} --cloud-provider {}", Self::program(ours, tool)?.display(), self.store.provider().cli_name());
        if let Some(e) = self.store.endpoint_url() {
            s.push_str(&format!(" --endpoint-url {e}"));
        }
        Ok(format!("{s} {args}"))
    }

    fn url(&self, prefix: &str) -> String {
        self.store.source_url(BUCKET, prefix)
    }

    fn run_as_postgres(&self, cmd: &mut Command, timeout: Duration) -> Result<Outcome> {
        let pg = OsUser::lookup("postgres")?;
        let out = execute(as_user(cmd, &pg), None, timeout)?;
        ensure!(
            out.status.success(),
            "{} failed ({:?}):\n{}\n--- store ---\n{}",
            out.line,
            out.status,
            out.stderr_str(),
            self.store.logs()
        );
        Ok(out)
    }

    /// A backup of `pg` into `prefix` with `extra` options.
    fn backup(&self, ours: bool, pg: &PgCluster, prefix: &str, extra: &[&str]) -> Result<()> {
        let mut c = self.command(ours, "barman-cloud-backup")?;
        c.args(["--immediate-checkpoint", "-h"]).arg(pg.socket_dir()).args(["-p", &pg.port().to_string()]).args(extra);
        c.args([&self.url(prefix), "pg"]);
        self.run_as_postgres(&mut c, Duration::from_mins(3)).map(drop)
    }

    fn list_json(&self, ours: bool, prefix: &str) -> Result<serde_json::Value> {
        let mut c = self.command(ours, "barman-cloud-backup-list")?;
        c.args(["--format", "json", &self.url(prefix), "pg"]);
        let out = cmd::run(&mut c)?;
        serde_json::from_slice(&out.stdout).context("backup-list JSON")
    }

    /// Restores `id` from `prefix` into `dest` (tablespace `ts` into `ts_dest`) as postgres.
    fn restore(&self, ours: bool, prefix: &str, id: &str, dest: &Path, ts_dest: &Path) -> Result<()> {
        let mut c = self.command(ours, "barman-cloud-restore")?;
        c.arg(format!("--tablespace=ts:{}", ts_dest.display())).args([&self.url(prefix), "pg", id]).arg(dest);
        self.run_as_postgres(&mut c, Duration::from_mins(3)).map(drop)
    }
}

/// A primary archiving into `prefix` with our or Barman's `barman-cloud-wal-archive`.
fn primary(scratch: &Scratch, cloud: &Cloud, ours: bool, prefix: &str) -> Result<PgCluster> {
    let archive = cloud.line(ours, "barman-cloud-wal-archive", &format!("-z {} pg %p", cloud.url(prefix)))?;
    let mut opts = PgOptions::default().archive_command(archive);
    for (k, v) in cloud.store.env() {
        opts = opts.env(k, v);
    }
    let pg = PgCluster::start(scratch, opts)?;
    let ts = scratch.mkdir_owned(format!("ts-{prefix}"), "postgres")?;
    pg.psql(&format!("create tablespace ts location '{}'", ts.display()))?;
    pg.psql("create table t(id int primary key, note text); create table u(id int) tablespace ts")?;
    Ok(pg)
}

fn write_rows(pg: &PgCluster, from: i32, to: i32) -> Result<()> {
    pg.psql(&format!("insert into t select g, md5(g::text) from generate_series({from},{to}) g; insert into u select generate_series({from},{to})"))
        .map(drop)
}

/// Forces the current segment out and waits until it is archived.
fn archive_now(pg: &PgCluster) -> Result<()> {
    let wal = pg.psql("select pg_walfile_name(pg_current_wal_lsn())")?;
    pg.switch_wal()?;
    pg.wait_for_archived(&wal, Duration::from_mins(2))
}

/// Restores the newest backup of `prefix` with `restorer`'s tools, starts it with
/// `restorer`'s `barman-cloud-wal-restore` as restore_command, and checks its rows equal
/// `expected` (checksums of t and u).
fn recover_and_check(
    scratch: &Scratch,
    cloud: &Cloud,
    restorer: bool,
    prefix: &str,
    expected: &(String, String),
) -> Result<()> {
    let tag = if restorer { "ours" } else { "real" };
    let dest = scratch.join(format!("restore-{prefix}-{tag}"));
    let ts_dest = scratch.join(format!("restore-ts-{prefix}-{tag}"));
    let listed = cloud.list_json(restorer, prefix)?;
    let newest = listed["backups_list"].as_array().and_then(|l| l.last()).context("no backup listed")?["backup_id"]
        .as_str()
        .context("backup_id")?
        .to_owned();
    scratch.mkdir_owned(format!("restore-{prefix}-{tag}"), "postgres")?;
    scratch.mkdir_owned(format!("restore-ts-{prefix}-{tag}"), "postgres")?;
    cloud.restore(restorer, prefix, &newest, &dest, &ts_dest)?;
    write_file(&dest.join("recovery.signal"), "", 0o600)?;
    let spool = scratch.mkdir_owned(format!("spool-{prefix}-{tag}"), "postgres")?;
    let restore = cloud.line(
        restorer,
        "barman-cloud-wal-restore",
        &format!("-p 4 --spool-dir {} {} pg %f %p", spool.display(), cloud.url(prefix)),
    )?;
    let mut opts =
        PgOptions::default().conf(format!("restore_command = '{restore}'")).conf("recovery_target_action = 'promote'");
    for (k, v) in cloud.store.env() {
        opts = opts.env(k, v);
    }
    opts.start_timeout = Duration::from_mins(3);
    let restored = PgCluster::start_existing(scratch, &dest, opts)?;
    restored.wait_for_recovery_end(Duration::from_mins(2))?;
    let got = (restored.table_checksum("t")?, restored.table_checksum("u")?);
    ensure!(&got == expected, "{tag} restore of {prefix}: rows differ from the last committed state");
    ensure!(restored.psql("select count(*) from t")? == "3000", "{tag} restore: wrong row count");
    ensure!(
        fs::read_link(
            dest.join(format!("pg_tblspc/{}", restored.psql("select oid from pg_tablespace where spcname = 'ts'")?))
        )? == ts_dest
    );
    Ok(())
}

/// Must-show (a) and (b) on S3.
#[test]
fn s3_end_to_end_and_interop() -> Result<()> {
    skip_unless!(ObjectStore::require(Provider::AwsS3));
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("cloud-s3")?;
    let cloud = Cloud::start(&scratch, Provider::AwsS3)?;

    // Ours: WAL archive, two backups, rows after the last one.
    let pg = primary(&scratch, &cloud, true, "ours")?;
    write_rows(&pg, 1, 1000)?;
    cloud.backup(true, &pg, "ours", &["-z", "-n", "first-one"])?;
    write_rows(&pg, 1001, 2000)?;
    cloud.backup(true, &pg, "ours", &["--lz4", "-J", "4", "-S", "1MB", "--min-chunk-size", "5MB"])?;
    write_rows(&pg, 2001, 3000)?;
    archive_now(&pg)?;
    let expected = (pg.table_checksum("t")?, pg.table_checksum("u")?);
    let keys: Vec<String> = cloud.store.list(BUCKET, "ours/pg/base/")?.into_iter().map(|(k, _)| k).collect();
    ensure!(keys.iter().any(|k| k.ends_with("/data_0001.tar.lz4")), "-S 1MB should cut data.tar: {keys:?}");
    let ours = cloud.list_json(true, "ours")?;
    let real = cloud.list_json(false, "ours")?;
    ensure!(ours == real, "backup-list JSON differs:\nours {ours}\nreal {real}");
    ensure!(ours["backups_list"].as_array().map(Vec::len) == Some(2), "two backups expected: {ours}");
    recover_and_check(&scratch, &cloud, true, "ours", &expected)?;
    recover_and_check(&scratch, &cloud, false, "ours", &expected)?;
    drop(pg);

    // Real Barman's uploads, restored by ours.
    let pg = primary(&scratch, &cloud, false, "real")?;
    write_rows(&pg, 1, 2000)?;
    cloud.backup(false, &pg, "real", &["--snappy"])?;
    write_rows(&pg, 2001, 3000)?;
    archive_now(&pg)?;
    let expected = (pg.table_checksum("t")?, pg.table_checksum("u")?);
    ensure!(cloud.list_json(true, "real")? == cloud.list_json(false, "real")?, "listing of Barman's backup differs");
    recover_and_check(&scratch, &cloud, true, "real", &expected)
}

/// Runs `barman-cloud-backup-delete` (ours or Barman's) with `args`; its stdout.
fn delete(cloud: &Cloud, ours: bool, prefix: &str, args: &[&str]) -> Result<String> {
    let mut c = cloud.command(ours, "barman-cloud-backup-delete")?;
    c.args(args).args([&cloud.url(prefix), "pg"]);
    Ok(String::from_utf8_lossy(&cmd::run(&mut c)?.stdout).into_owned())
}

/// Must-show (c): retention decisions, WAL included, equal to real Barman's on one bucket:
/// the `--dry-run` reports (which backups, archives and WAL objects would go) are identical
/// for REDUNDANCY 1 and a RECOVERY WINDOW, and after our REDUNDANCY 1 run real Barman finds
/// nothing more to delete and lists the one backup left.
#[test]
fn s3_retention_matches_barman() -> Result<()> {
    skip_unless!(ObjectStore::require(Provider::AwsS3));
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("cloud-retention")?;
    let cloud = Cloud::start(&scratch, Provider::AwsS3)?;
    let pg = primary(&scratch, &cloud, true, "ret")?;
    for i in 0..3 {
        write_rows(&pg, i * 100 + 1, i * 100 + 100)?;
        archive_now(&pg)?;
        cloud.backup(true, &pg, "ret", &["-z"])?;
        // Distinct backup IDs (they are named after the second).
        std::thread::sleep(Duration::from_millis(1100));
    }
    archive_now(&pg)?;
    for policy in ["REDUNDANCY 1", "REDUNDANCY 2", "RECOVERY WINDOW OF 1 DAYS"] {
        let ours = delete(&cloud, true, "ret", &["-r", policy, "--dry-run"])?;
        let real = delete(&cloud, false, "ret", &["-r", policy, "--dry-run"])?;
        ensure!(ours == real, "{policy} --dry-run differs:\nours:\n{ours}\nreal:\n{real}");
        ensure!(
            policy.starts_with("RECOVERY") || ours.contains("backup.info"),
            "{policy} should delete something: {ours}"
        );
    }
    let before = cloud.store.list(BUCKET, "ret/pg/wals/")?;
    delete(&cloud, true, "ret", &["-r", "REDUNDANCY 1"])?;
    ensure!(
        delete(&cloud, false, "ret", &["-r", "REDUNDANCY 1", "--dry-run"])?.is_empty(),
        "real Barman would still delete"
    );
    let listed = cloud.list_json(false, "ret")?;
    let left = listed["backups_list"].as_array().context("list")?;
    ensure!(left.len() == 1, "one backup should remain: {listed}");
    let begin = left[0]["begin_wal"].as_str().context("begin_wal")?.to_owned();
    let after = cloud.store.list(BUCKET, "ret/pg/wals/")?;
    ensure!(after.len() < before.len(), "WAL should have been removed");
    ensure!(
        after.iter().all(|(k, _)| k
            .rsplit('/')
            .next()
            .is_some_and(|n| n.get(..24).is_some_and(|s| s >= begin.as_str()) || n.contains("history"))),
        "WAL older than {begin} left: {after:?}"
    );
    Ok(())
}
