//! Block-level incremental backups (PostgreSQL 17+) against a real PostgreSQL 18 with
//! `summarize_wal = on`, archiving through our `barman-wal-archive`: a full backup and two
//! chained incrementals after pgbench runs (each incremental much smaller than the full),
//! the chain fields as Barman writes them, `recover` of the newest (exact rows and pgbench
//! balances) and a PITR between the second and the third, Barman's refusals, `delete` of
//! the root taking the whole tree; then real Barman 3.20.1 both ways on one catalogue: it
//! recovers our chain, takes an incremental on top of our backup, and we recover its chain.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{BackupInfo, BackupStatus, ServerLayout};
use barman_integration::cmd::{as_user, execute};
use barman_integration::fixtures::{backup_ids, backup_info};
use barman_integration::hosts::BackupHost;
use barman_integration::pg::SYSTEM_PATH;
use barman_integration::pgversion::PgVersion;
use barman_integration::{
    cargo_bin, skip_unless, BarmanHome, BarmanServerOptions, PgCluster, PgOptions, RealBarman, Scratch, Sshd,
    SshdOptions,
};

/// PostgreSQL `version` archiving into our catalogue (server `pg`), WAL summaries on.
struct Chain {
    pg: PgCluster,
    barman: BarmanHome,
    _sshd: Sshd,
    scratch: Scratch,
    version: PgVersion,
}

impl Chain {
    fn start(name: &str, version: PgVersion) -> Result<Chain> {
        let scratch = Scratch::new(name)?;
        let sshd = Sshd::start(&scratch, SshdOptions::default())?;
        let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
        barman.add_path_prefix(sshd.ssh_wrapper_dir_for("barman")?);
        let archive_command = format!(
            "{client} -c {cfg} --port {port} 127.0.0.1 pg %p",
            client = cargo_bin("barman-wal-archive")?.display(),
            cfg = barman.config_path().display(),
            port = sshd.port(),
        );
        let mut opts = PgOptions::default()
            .version(version)
            .archive_command(archive_command)
            .path_prefix(sshd.ssh_wrapper_dir_for("postgres")?);
        if version >= PgVersion::V17 {
            opts = opts.conf("summarize_wal = on");
        }
        let pg = PgCluster::start(&scratch, opts)?;
        barman.add_server("pg", &pg, &BarmanServerOptions::default())?;
        Ok(Chain { pg, barman, _sshd: sshd, scratch, version })
    }

    fn layout(&self) -> ServerLayout {
        ServerLayout::default_for(&self.barman.home(), "pg")
    }

    fn info(&self, id: &str) -> Result<BackupInfo> {
        backup_info(&self.layout(), id)
    }

    /// A backup (incremental on `parent` when given), `--wait`; its id and wall time.
    fn backup(&self, parent: Option<&str>) -> Result<(String, Duration)> {
        let before = backup_ids(&self.layout());
        let mut args = vec!["backup", "pg", "--wait", "--immediate-checkpoint"];
        if let Some(p) = parent {
            args.extend(["--incremental", p]);
        }
        let t0 = Instant::now();
        self.barman.run(&args)?;
        let took = t0.elapsed();
        eprintln!("barman {args:?}: {took:?}");
        let id = backup_ids(&self.layout()).into_iter().find(|i| !before.contains(i)).context("no new backup")?;
        ensure!(self.info(&id)?.status == BackupStatus::Done, "{id} not DONE");
        Ok((id, took))
    }

    /// Rows added to `t` (ids `from..=to`) and a pgbench run before them.
    fn work(&self, from: u32, to: u32) -> Result<()> {
        self.pg.pgbench(&["-n", "-t", "200", "-c", "2"])?;
        self.pg.psql(&format!("insert into t select g from generate_series({from},{to}) g"))?;
        Ok(())
    }

    /// What the recovered cluster must hold: the rows of `t` and the pgbench balances.
    fn state(pg: &PgCluster) -> Result<(String, String)> {
        Ok((
            pg.psql("select count(*) || ':' || max(id) from t")?,
            pg.psql("select sum(abalance) from pgbench_accounts")?,
        ))
    }

    /// `barman recover` (ours, or `real`'s) of `id` into a fresh directory, started.
    fn recover(&self, real: Option<&RealBarman>, id: &str, extra: &[&str]) -> Result<PgCluster> {
        let dest = self.scratch.mkdir_owned_mode(format!("rec-{id}-{}", extra.len()), "barman", 0o700)?;
        let dest_s = dest.to_str().context("utf8")?;
        let mut args = vec!["recover"];
        args.extend_from_slice(extra);
        args.extend(["pg", id, dest_s]);
        match real {
            None => {
                let t0 = Instant::now();
                self.barman.run(&args)?;
                eprintln!("barman {args:?}: {:?}", t0.elapsed());
            }
            Some(real) => real_barman(real, self, &args).map(drop)?,
        }
        ensure!(dest.join("global/pg_control").is_file(), "nothing recovered in {dest_s}");
        let restored = PgCluster::start_existing(&self.scratch, &dest, PgOptions::default().version(self.version))?;
        let t0 = Instant::now();
        restored.wait_for_recovery_end(Duration::from_mins(2))?;
        eprintln!("recovery end after {:?}", t0.elapsed());
        Ok(restored)
    }
}

/// Real Barman 3.20.1's `barman -c <config> <args>` on our catalogue (PG tools first on PATH).
fn real_barman(real: &RealBarman, c: &Chain, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(real.bin("barman"));
    as_user(&mut cmd, c.barman.user());
    let path = format!("{}:{}:{SYSTEM_PATH}", real.bin_dir().display(), c.version.client_bin().display());
    cmd.env("PATH", path).arg("-c").arg(c.barman.config_path()).args(args);
    let t0 = Instant::now();
    let outcome = execute(&mut cmd, None, Duration::from_mins(3))?;
    eprintln!("real barman {args:?}: {:?}", t0.elapsed());
    outcome.success().with_context(|| format!("real barman {args:?}; log:\n{}", c.barman.log()))?;
    Ok(outcome.stdout_str())
}

fn size(c: &Chain, id: &str) -> Result<u64> {
    c.info(id)?.size.context("no size")
}

/// Must-show 2 on PostgreSQL 18.
#[test]
fn chain_of_two_incrementals_recovers_and_deletes_as_barman() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    skip_unless!(PgVersion::V18.require());
    chain_of_two_incrementals(PgVersion::V18)
}

/// Must-show 2 on PostgreSQL 17 (server only here: PostgreSQL 18's client tools, and no
/// `pg_combinebackup` 17 anywhere: the chain is combined natively).
#[test]
fn chain_of_two_incrementals_on_postgres_17() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    skip_unless!(PgVersion::V17.require());
    chain_of_two_incrementals(PgVersion::V17)
}

fn chain_of_two_incrementals(version: PgVersion) -> Result<()> {
    let c = Chain::start(&format!("incremental {}", version.major()), version)?;
    c.pg.pgbench_init(3)?;
    c.pg.psql("create table t (id int primary key)")?;
    c.work(1, 100)?;
    let (full, full_time) = c.backup(None)?;
    c.work(101, 200)?;
    let (inc1, inc1_time) = c.backup(Some("latest"))?;
    // Rows before and after a target time between the second and the third backups.
    c.pg.psql("insert into t select g from generate_series(201,250) g")?;
    let at_target = Chain::state(&c.pg)?;
    std::thread::sleep(Duration::from_millis(1100));
    let target = c.pg.psql("select now()::text")?;
    std::thread::sleep(Duration::from_millis(1100));
    c.work(251, 300)?;
    let at_inc2 = Chain::state(&c.pg)?;
    let (inc2, inc2_time) = c.backup(Some(&inc1))?;
    c.pg.psql("insert into t select g from generate_series(301,400) g")?;

    // The chain as Barman 3.20.1 writes it.
    let (f, i1, i2) = (c.info(&full)?, c.info(&inc1)?, c.info(&inc2)?);
    ensure!(
        f.parent_backup_id.is_none()
            && i1.parent_backup_id.as_ref().map(barman_common::catalogue::BackupId::as_str) == Some(&full)
    );
    ensure!(i2.parent_backup_id.as_ref().map(barman_common::catalogue::BackupId::as_str) == Some(inc1.as_str()));
    let kids = |i: &BackupInfo| {
        i.children_backup_ids.clone().unwrap_or_default().iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    ensure!(kids(&f) == [inc1.clone()] && kids(&i1) == [inc2.clone()] && kids(&i2).is_empty(), "children");
    for i in [&f, &i1, &i2] {
        ensure!(i.summarize_wal.as_deref() == Some("on") && i.data_checksums.as_deref() == Some("on"));
    }
    let text = fs::read_to_string(BackupInfo::locate(&c.layout(), &backup_id(&inc2)?))?;
    ensure!(text.contains(&format!("parent_backup_id={inc1}\n")), "backup.info:\n{text}");
    let show = c.barman.run_json(&["show-backup", "pg", &inc2])?;
    let shown = show.to_string();
    ensure!(shown.contains(&full) && shown.contains("incremental"), "show-backup -f json: {shown}");
    let (sf, s1, s2) = (size(&c, &full)?, size(&c, &inc1)?, size(&c, &inc2)?);
    eprintln!(
        "PG{}: full {sf} B in {full_time:?}; incremental 1 {s1} B ({:.1} %) in {inc1_time:?}; incremental 2 {s2} B ({:.1} %) in {inc2_time:?}",
        version.major(),
        s1 as f64 * 100.0 / sf as f64,
        s2 as f64 * 100.0 / sf as f64
    );
    ensure!(s1 * 3 < sf && s2 * 3 < sf, "incrementals not smaller than a third of the full: {sf} {s1} {s2}");

    // Barman's refusals: a parent taken without WAL summaries, an unknown parent.
    let bad = c.barman.outcome(&["backup", "pg", "--incremental", "20000101T000000"])?;
    ensure!(bad.code() == Some(1) && bad.stderr_str().contains("Unknown backup '20000101T000000'"), "{bad:?}");

    // Recovery of the newest: exactly the state at its end.
    let restored = c.recover(None, &inc2, &[])?;
    ensure!(Chain::state(&restored)? == at_inc2, "recovered newest: {:?} want {at_inc2:?}", Chain::state(&restored)?);
    drop(restored);
    // PITR on a chain of two, between the second and the third backups.
    let restored = c.recover(None, &inc1, &["--target-time", &target, "--target-action", "promote"])?;
    ensure!(Chain::state(&restored)? == at_target, "PITR: {:?} want {at_target:?}", Chain::state(&restored)?);
    drop(restored);

    // A damaged link is refused before anything is written, naming the link.
    let manifest = c.layout().backup_dir(&backup_id(&inc1)?).join("data/backup_manifest");
    fs::rename(&manifest, manifest.with_extension("moved"))?;
    let dest = c.scratch.join("never-written");
    let out = c.barman.outcome(&["recover", "pg", &inc2, dest.to_str().context("utf8")?])?;
    ensure!(out.code() == Some(1) && out.stderr_str().contains(&format!("link {inc1}")), "{out:?}");
    ensure!(!dest.exists(), "a refused recovery wrote {}", dest.display());
    fs::rename(manifest.with_extension("moved"), &manifest)?;

    // Deleting the root takes the whole tree, leaves first, as Barman.
    let del = c.barman.run(&["delete", "pg", &full])?;
    let order: Vec<usize> = [&inc2, &inc1, &full]
        .iter()
        .map(|id| del.find(&format!("Deleting backup {id} ")).with_context(|| format!("{id} not deleted:\n{del}")))
        .collect::<Result<_>>()?;
    ensure!(order.windows(2).all(|w| w[0] < w[1]), "delete order:\n{del}");
    ensure!(backup_ids(&c.layout()).is_empty(), "left: {:?}", backup_ids(&c.layout()));
    Ok(())
}

fn backup_id(id: &str) -> Result<barman_common::catalogue::BackupId> {
    id.parse().map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// Must-show 3 (interop): real Barman 3.20.1 recovers our chain; it takes an incremental on
/// top of our full backup, and we recover that chain.
#[test]
fn real_barman_and_ours_recover_each_others_chains() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    skip_unless!(PgVersion::V18.require());
    let real = skip_unless!(RealBarman::require());
    let c = Chain::start("incremental interop", PgVersion::V18)?;
    c.pg.pgbench_init(2)?;
    c.pg.psql("create table t (id int primary key)")?;
    c.work(1, 100)?;
    let (full, _) = c.backup(None)?;
    c.work(101, 200)?;
    let (ours, _) = c.backup(Some("latest"))?;
    let at_ours = Chain::state(&c.pg)?;
    let restored = c.recover(Some(&real), &ours, &[])?;
    ensure!(Chain::state(&restored)? == at_ours, "Barman recovered our chain: {:?}", Chain::state(&restored)?);
    drop(restored);

    // Barman's incremental on top of our full backup, then ours on top of Barman's.
    c.work(201, 300)?;
    std::thread::sleep(Duration::from_millis(1100));
    real_barman(&real, &c, &["backup", "pg", "--wait", "--immediate-checkpoint", "--incremental", &full])?;
    let theirs = backup_ids(&c.layout()).pop().context("barman's backup")?;
    ensure!(c.info(&theirs)?.parent_backup_id.map(|p| p.to_string()) == Some(full.clone()), "Barman's parent");
    let at_theirs = Chain::state(&c.pg)?;
    let kids = c.info(&full)?.children_backup_ids.unwrap_or_default();
    ensure!(kids.len() == 2, "the full lists both children: {kids:?}");
    let restored = c.recover(None, &theirs, &[])?;
    ensure!(Chain::state(&restored)? == at_theirs, "we recovered Barman's chain: {:?}", Chain::state(&restored)?);
    drop(restored);
    c.work(301, 400)?;
    let (top, _) = c.backup(Some(&theirs))?;
    let at_top = Chain::state(&c.pg)?;
    let restored = c.recover(Some(&real), &top, &[])?;
    ensure!(Chain::state(&restored)? == at_top, "Barman recovered a mixed chain: {:?}", Chain::state(&restored)?);
    // Barman lists the chain it reads from our catalogue.
    let list = real_barman(&real, &c, &["list-backups", "pg"])?;
    ensure!([&full, &ours, &theirs, &top].iter().all(|id| list.contains(id.as_str())), "list-backups:\n{list}");
    Ok(())
}

/// Barman's refusal before PostgreSQL 17, before anything is written (exit 1).
#[test]
fn incremental_refused_before_postgres_17() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let c = Chain::start("incremental pg15", PgVersion::V15)?;
    let (full, _) = c.backup(None)?;
    let out = c.barman.outcome(&["backup", "pg", "--incremental", &full])?;
    let want = "failed to start backup: Postgres version 17 or greater is required for incremental backups";
    ensure!(out.code() == Some(1) && out.stderr_str().contains(want), "{out:?}");
    ensure!(backup_ids(&c.layout()) == [full], "a refused incremental left a backup");
    Ok(())
}

/// Must-show 3 (relay): a chain taken on our primary A is relayed to our passive B (parents
/// first, chain fields kept, the parent's children refreshed when a later incremental
/// arrives) and recovered on B alone.
#[test]
fn chain_relayed_to_a_passive_node_recovers_there() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    skip_unless!(PgVersion::V18.require());
    let scratch = Scratch::new("incremental relay")?;
    let ours = cargo_bin("barman")?;
    let mut a = BackupHost::start(&scratch, "a", &ours, None)?;
    let mut b = BackupHost::start(&scratch, "b", &ours, None)?;
    b.trust(&a)?;
    let archive_command = format!(
        "{client} --port {port} {addr} pg %p",
        client = cargo_bin("barman-wal-archive")?.display(),
        port = a.sshd.port(),
        addr = a.sshd.host(),
    );
    let opts = PgOptions::default()
        .version(PgVersion::V18)
        .archive_command(archive_command)
        .path_prefix(a.sshd.ssh_wrapper_dir_for("postgres")?)
        .conf("summarize_wal = on");
    let pg = PgCluster::start(&scratch, opts)?;
    let gzip = BarmanServerOptions { compression: Some("gzip".into()), ..BarmanServerOptions::default() };
    a.home.add_server("pg", &pg, &gzip)?;
    let prefix = format!("path_prefix = {}", PgVersion::V18.client_bin().display());
    b.add_passive("pg", &a, "gzip", &[&prefix])?;
    let (la, lb) = (ServerLayout::default_for(&a.home.home(), "pg"), ServerLayout::default_for(&b.home.home(), "pg"));
    let backup = |parent: Option<&str>| -> Result<String> {
        let mut args = vec!["backup", "pg", "--wait", "--immediate-checkpoint"];
        args.extend(parent.map(|p| ["--incremental", p]).iter().flatten());
        a.home.run(&args)?;
        backup_ids(&la).pop().context("no backup on A")
    };
    pg.pgbench_init(2)?;
    pg.psql("create table t (id int primary key)")?;
    pg.psql("insert into t select generate_series(1, 100)")?;
    let full = backup(None)?;
    pg.pgbench(&["-n", "-t", "300", "-c", "2"])?;
    pg.psql("insert into t select generate_series(101, 200)")?;
    let inc1 = backup(Some("latest"))?;
    b.relay(&["pg"])?.success().with_context(|| format!("B's log:\n{}", b.home.log()))?;
    ensure!(backup_ids(&lb) == [full.clone(), inc1.clone()], "B holds {:?}", backup_ids(&lb));
    pg.pgbench(&["-n", "-t", "300", "-c", "2"])?;
    pg.psql("insert into t select generate_series(201, 300)")?;
    let inc2 = backup(Some("latest"))?;
    let want = Chain::state(&pg)?;
    b.relay(&["pg"])?.success().with_context(|| format!("B's log:\n{}", b.home.log()))?;
    for id in [&full, &inc1, &inc2] {
        let (on_a, on_b) = (backup_info(&la, id)?, backup_info(&lb, id)?);
        ensure!(on_b.status == BackupStatus::Done, "{id} on B: {:?}", on_b.status);
        ensure!(on_a.parent_backup_id == on_b.parent_backup_id, "{id}: parent differs");
        ensure!(on_a.children_backup_ids == on_b.children_backup_ids, "{id}: children differ on B");
    }
    let dest = scratch.mkdir_owned_mode("recovered-on-b", "barman", 0o700)?;
    b.home.run(&["recover", "pg", &inc2, dest.to_str().context("utf8")?])?;
    let restored = PgCluster::start_existing(&scratch, &dest, PgOptions::default().version(PgVersion::V18))?;
    restored.wait_for_recovery_end(Duration::from_mins(2))?;
    ensure!(Chain::state(&restored)? == want, "recovered on B: {:?} want {want:?}", Chain::state(&restored)?);
    Ok(())
}
