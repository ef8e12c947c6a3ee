//! The cloud tier end to end on real object stores, ours against real Barman 3.20.1's cloud
//! tools on the same bucket, on each provider (SeaweedFS S3, Azurite, fake-gcs-server) through
//! one shared scenario ([`end_to_end`]): `barman-cloud-wal-archive` as `archive_command`, two
//! `barman-cloud-backup`s (the second with a tablespace, lz4, -J 4 and a small -S so it is cut
//! into several archives), `barman-cloud-backup-list --format json` identical to Barman's,
//! `barman-cloud-restore` of the newest with `barman-cloud-wal-restore -p 4` as
//! `restore_command`: PostgreSQL comes up with exactly the last committed rows. On S3, interop
//! both ways too: real `barman-cloud-restore` + `barman-cloud-wal-restore` recover ours, and
//! ours recover a backup and WAL written by real Barman; and retention decisions equal to
//! Barman's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_integration::cmd::{self, as_user, execute, Outcome};
use barman_integration::objstore::{ObjectStore, Provider, SeaweedOptions};
use barman_integration::scratch::write_file;
use barman_integration::{cargo_bin, skip_unless, wait_until, OsUser, PgCluster, PgOptions, Scratch};

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

    /// `barman-cloud-backup` of `pg` into `prefix` with `extra` options, run as postgres.
    fn backup_command(&self, ours: bool, pg: &PgCluster, prefix: &str, extra: &[&str]) -> Result<Command> {
        let mut c = Command::new(Self::program(ours, "barman-cloud-backup")?);
        as_user(&mut c, &OsUser::lookup("postgres")?);
        c.args(["--cloud-provider", self.store.provider().cli_name()]);
        if let Some(e) = self.store.endpoint_url() {
            c.args(["--endpoint-url", &e]);
        }
        self.store.apply_env(&mut c);
        c.args(["--immediate-checkpoint", "-h"]).arg(pg.socket_dir()).args(["-p", &pg.port().to_string()]).args(extra);
        c.args([&self.url(prefix), "pg"]);
        Ok(c)
    }

    /// A backup of `pg` into `prefix` with `extra` options.
    fn backup(&self, ours: bool, pg: &PgCluster, prefix: &str, extra: &[&str]) -> Result<()> {
        let mut c = self.backup_command(ours, pg, prefix, extra)?;
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

/// The two backups' options on `provider`. fake-gcs-server lacks GCS's XML multipart API
/// (fsouza/fake-gcs-server#852), so there every archive is kept under one chunk (`-S 1MB`,
/// stored with a single PUT); on Azure the second backup goes up in 64 KiB blocks.
fn backup_options(provider: Provider) -> [&'static [&'static str]; 2] {
    match provider {
        Provider::AwsS3 => [&["-z", "-n", "first-one"], &["--lz4", "-J", "4", "-S", "1MB", "--min-chunk-size", "5MB"]],
        Provider::AzureBlobStorage => [&["-z", "-n", "first-one"], &["--lz4", "-J", "4", "-S", "1MB"]],
        Provider::GoogleCloudStorage => [&["-z", "-S", "1MB", "-n", "first-one"], &["--lz4", "-J", "4", "-S", "1MB"]],
    }
}

/// Must-show #1 on `provider`: our WAL archive, two backups, listings equal to Barman's,
/// our restore of the newest with our WAL restore; the cloud and the primary's last rows.
fn end_to_end(scratch: &Scratch, cloud: &Cloud) -> Result<(String, String)> {
    let [first, second] = backup_options(cloud.store.provider());
    let pg = primary(scratch, cloud, true, "ours")?;
    write_rows(&pg, 1, 1000)?;
    cloud.backup(true, &pg, "ours", first)?;
    write_rows(&pg, 1001, 2000)?;
    cloud.backup(true, &pg, "ours", second)?;
    write_rows(&pg, 2001, 3000)?;
    archive_now(&pg)?;
    let expected = (pg.table_checksum("t")?, pg.table_checksum("u")?);
    let keys: Vec<String> = cloud.store.list(BUCKET, "ours/pg/base/")?.into_iter().map(|(k, _)| k).collect();
    ensure!(keys.iter().any(|k| k.ends_with("/data_0001.tar.lz4")), "-S 1MB should cut data.tar: {keys:?}");
    let ours = cloud.list_json(true, "ours")?;
    let real = cloud.list_json(false, "ours")?;
    ensure!(ours == real, "backup-list JSON differs:\nours {ours}\nreal {real}");
    ensure!(ours["backups_list"].as_array().map(Vec::len) == Some(2), "two backups expected: {ours}");
    recover_and_check(scratch, cloud, true, "ours", &expected)?;
    Ok(expected)
}

/// Must-show #1 and #2 on S3.
#[test]
fn s3_end_to_end_and_interop() -> Result<()> {
    skip_unless!(ObjectStore::require(Provider::AwsS3));
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("cloud-s3")?;
    let cloud = Cloud::start(&scratch, Provider::AwsS3)?;
    let expected = end_to_end(&scratch, &cloud)?;
    recover_and_check(&scratch, &cloud, false, "ours", &expected)?;

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

/// Must-show #1 on Azure Blob Storage (Azurite).
#[test]
fn azure_end_to_end() -> Result<()> {
    skip_unless!(ObjectStore::require(Provider::AzureBlobStorage));
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("cloud-azure")?;
    let cloud = Cloud::start(&scratch, Provider::AzureBlobStorage)?;
    end_to_end(&scratch, &cloud).map(drop)
}

/// Must-show #1 on Google Cloud Storage (fake-gcs-server).
#[test]
fn gcs_end_to_end() -> Result<()> {
    skip_unless!(ObjectStore::require(Provider::GoogleCloudStorage));
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("cloud-gcs")?;
    let cloud = Cloud::start(&scratch, Provider::GoogleCloudStorage)?;
    end_to_end(&scratch, &cloud).map(drop)
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

/// A primary with ~60 MB of incompressible-enough rows besides `t` and `u` (1..=1000), so a
/// backup slowed by `--max-bandwidth` is still uploading seconds after it started.
fn big_primary(scratch: &Scratch, cloud: &Cloud, prefix: &str) -> Result<PgCluster> {
    let pg = primary(scratch, cloud, true, prefix)?;
    write_rows(&pg, 1, 1000)?;
    pg.psql("create table big as select g, repeat(md5(g::text), 6) as pad from generate_series(1, 250000) g")?;
    Ok(pg)
}

/// Starts our `barman-cloud-backup` slowed to 8 MB/s and waits until a multipart upload of
/// it is in progress.
fn start_slow_backup(cloud: &Cloud, pg: &PgCluster, prefix: &str) -> Result<Child> {
    let mut c = cloud.backup_command(true, pg, prefix, &["--max-bandwidth", "8MB", "-J", "1"])?;
    let child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    wait_until(Duration::from_secs(30), "a multipart upload in progress", || {
        Ok(!cloud.store.pending_multipart_uploads(BUCKET, &format!("{prefix}/pg/base/"))?.is_empty())
    })?;
    Ok(child)
}

/// Our listing equals real Barman's, and no listed backup is DONE without being complete:
/// every DONE backup's archives are all there. Returns the listing's (id, status) pairs.
fn check_listing(cloud: &Cloud, prefix: &str) -> Result<Vec<(String, String)>> {
    let ours = cloud.list_json(true, prefix)?;
    let real = cloud.list_json(false, prefix)?;
    ensure!(ours == real, "backup-list JSON differs:\nours {ours}\nreal {real}");
    let mut out = Vec::new();
    for b in ours["backups_list"].as_array().context("backups_list")? {
        let id = b["backup_id"].as_str().context("backup_id")?.to_owned();
        let status = b["status"].as_str().context("status")?.to_owned();
        if status == "DONE" {
            let keys = cloud.store.list(BUCKET, &format!("{prefix}/pg/base/{id}/"))?;
            ensure!(keys.iter().any(|(k, _)| k.contains("/data.tar")), "DONE backup {id} without data.tar: {keys:?}");
        }
        out.push((id, status));
    }
    Ok(out)
}

/// Must-show #4, kill -9: a `barman-cloud-backup` killed mid-upload leaves a STARTED
/// backup.info (listed as STARTED by ours and by Barman alike, never DONE) and a pending
/// multipart upload; the next run succeeds; deleting the killed backup aborts its upload; the
/// new backup restores the last committed rows.
#[test]
fn s3_backup_killed_mid_upload() -> Result<()> {
    skip_unless!(ObjectStore::require(Provider::AwsS3));
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("cloud-kill")?;
    let cloud = Cloud::start(&scratch, Provider::AwsS3)?;
    let pg = big_primary(&scratch, &cloud, "kill")?;
    let mut child = start_slow_backup(&cloud, &pg, "kill")?;
    std::thread::sleep(Duration::from_secs(1));
    child.kill()?;
    child.wait()?;
    ensure!(!cloud.store.pending_multipart_uploads(BUCKET, "kill/")?.is_empty(), "the kill left no upload behind");
    let listed = check_listing(&cloud, "kill")?;
    ensure!(listed.len() == 1 && listed[0].1 == "STARTED", "the killed backup should show as STARTED: {listed:?}");
    let killed = listed[0].0.clone();
    std::thread::sleep(Duration::from_millis(1100));
    cloud.backup(true, &pg, "kill", &["-z"])?;
    write_rows(&pg, 1001, 3000)?;
    archive_now(&pg)?;
    let expected = (pg.table_checksum("t")?, pg.table_checksum("u")?);
    let listed = check_listing(&cloud, "kill")?;
    ensure!(listed.iter().filter(|(_, s)| s == "DONE").count() == 1, "one DONE backup expected: {listed:?}");
    delete(&cloud, true, "kill", &["-b", &killed])?;
    let pending = cloud.store.pending_multipart_uploads(BUCKET, "kill/")?;
    ensure!(pending.is_empty(), "deleting the killed backup left uploads: {pending:?}");
    ensure!(check_listing(&cloud, "kill")?.len() == 1, "only the new backup should be listed");
    recover_and_check(&scratch, &cloud, true, "kill", &expected)
}

/// Must-show #4, node loss: on a two-volume-server SeaweedFS (replication 001), one volume
/// server is killed while our backup uploads and restarted 6 s later. Whatever the run's
/// outcome, no pending upload is left, ours and Barman's listings agree and show no
/// incomplete backup as DONE, the next run succeeds, and it restores the last committed rows.
#[test]
fn s3_volume_server_killed_mid_upload() -> Result<()> {
    skip_unless!(ObjectStore::require(Provider::AwsS3));
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("cloud-volume")?;
    let mut cloud = Cloud { store: ObjectStore::seaweed(&scratch, &SeaweedOptions::cluster())? };
    cloud.store.create_bucket(BUCKET)?;
    let pg = big_primary(&scratch, &cloud, "vol")?;
    let mut child = start_slow_backup(&cloud, &pg, "vol")?;
    cloud.store.kill_volume_server(1)?;
    std::thread::sleep(Duration::from_secs(6));
    cloud.store.restart_volume_server(1)?;
    let deadline = Instant::now() + Duration::from_mins(3);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        ensure!(Instant::now() < deadline, "the backup did not end after the volume server came back");
        std::thread::sleep(Duration::from_millis(200));
    };
    let pending = cloud.store.pending_multipart_uploads(BUCKET, "vol/")?;
    ensure!(pending.is_empty(), "uploads left pending after a run that ended ({status:?}): {pending:?}");
    let listed = check_listing(&cloud, "vol")?;
    let expect = if status.success() { "DONE" } else { "FAILED" };
    ensure!(listed.len() == 1 && listed[0].1 == expect, "run ended {status:?}, listed {listed:?}");
    std::thread::sleep(Duration::from_millis(1100));
    cloud.backup(true, &pg, "vol", &["-z"])?;
    write_rows(&pg, 1001, 3000)?;
    archive_now(&pg)?;
    let expected = (pg.table_checksum("t")?, pg.table_checksum("u")?);
    ensure!(check_listing(&cloud, "vol")?.last().is_some_and(|(_, s)| s == "DONE"), "the next run is not DONE");
    recover_and_check(&scratch, &cloud, true, "vol", &expected)
}
