//! After each fault: the normal run of the tools (`heal`, which must work with no manual
//! step) and the invariants (`verify`): every segment PostgreSQL reported archived is in the
//! catalogue and byte-identical after decompression (and every segment in a streamed range
//! too), nothing partial under a final name, `xlog.db` equal to what `rebuild-xlogdb`
//! makes, every backup DONE or FAILED, and sampled restores of DONE backups that start and
//! hold the rows written before the backup began.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use barman_common::catalogue::{BackupStatus, Catalogue, ServerLayout, XlogDbEntry};
use barman_common::compress::read_maybe_compressed;
use barman_common::wal::WalFileName;
use sha2::{Digest, Sha256};

use super::env::Env;
use crate::{wait_until, BarmanHome, PgCluster, PgOptions};

const SEGMENT: usize = 16 << 20;

/// What the invariants found after one fault.
#[derive(Default, Debug)]
pub struct Findings {
    /// Segments PostgreSQL archived (or a slot streamed) missing or different.
    pub lost: Vec<String>,
    /// Other broken invariants.
    pub violations: Vec<String>,
}

/// What `verify` already checked (segments do not change once verified).
#[derive(Default, Debug)]
pub struct Verified {
    pub(super) segments: BTreeSet<(String, String)>,
    pub(super) lost: BTreeSet<String>,
}

/// The normal run after a fault: PostgreSQL's archiver gets a new segment through, and
/// `barman cron` (restarting the streamers, archiving) brings it into both catalogues. An
/// error here is a tool that did not come back by itself: a manual repair.
/// Returns the last segment PostgreSQL reported archived once the catalogues caught up: the
/// WAL invariant is checked up to it.
pub fn heal(env: &Env) -> Result<String> {
    let seg = env.write_and_switch()?;
    env.pg.wait_for_archived(&seg, Duration::from_mins(2)).context("archive_command did not recover")?;
    let name: WalFileName = seg.parse()?;
    wait_until(Duration::from_mins(2), &format!("{seg} in both catalogues and both slots active"), || {
        env.barman.run(&["cron"])?;
        let in_pg = env.layout("pg").wal_path(&name).is_file();
        let in_pgr = env.layout("pgr").wal_path(&name).is_file();
        let active = env.pg.psql("select count(*) from pg_replication_slots where active")? == "2";
        if !(in_pg && in_pgr && active) {
            std::thread::sleep(Duration::from_millis(300));
            env.pg.psql("select pg_switch_wal()")?;
        }
        Ok(in_pg && in_pgr && active)
    })
    .context("barman cron did not bring the catalogues back")?;
    // The loop's own switches may have been archived after its last cron: one more round
    // for whatever PostgreSQL reports archived now (no switch happens any more).
    let mut last = String::new();
    wait_until(Duration::from_mins(1), "the last archived segment in the catalogue", || {
        last = env.last_archived()?;
        env.barman.run(&["cron"])?;
        let name: WalFileName = last.parse()?;
        Ok(env.layout("pg").wal_path(&name).is_file() && env.last_archived()? == last)
    })
    .context("barman cron did not archive the last segment PostgreSQL archived")?;
    Ok(last)
}

/// The oldest DONE backup's `begin_wal`: Barman removes the WAL archived before a server's
/// first backup, so only what follows it must stay.
pub(super) fn first_backup_wal(env: &Env, server: &str) -> Result<String> {
    let cat = Catalogue::load(&env.layout(server))?;
    Ok(cat
        .entries()
        .iter()
        .filter(|(_, b)| b.status == BackupStatus::Done)
        .filter_map(|(_, b)| b.begin_wal.as_ref().map(ToString::to_string))
        .min()
        .unwrap_or_default())
}

pub(super) fn sha_of(path: &Path) -> Result<(String, usize)> {
    let (bytes, _) = read_maybe_compressed(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((hex::encode(Sha256::digest(&bytes)), bytes.len()))
}

/// xlog.db of `server` in `home` as (name, size, compression) lines, sorted.
fn xlogdb_of(home: &BarmanHome, server: &str) -> Result<Vec<String>> {
    let layout = ServerLayout::default_for(&home.home(), server);
    let text = fs::read_to_string(layout.xlogdb_path()).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let e = XlogDbEntry::parse_line(line).with_context(|| format!("{server} xlog.db line {line:?}"))?;
        out.push(format!("{} {} {:?}", e.name, e.size, e.compression));
    }
    out.sort();
    Ok(out)
}

/// The segments of `server`'s xlog.db.
fn catalogued(env: &Env, server: &str) -> Result<Vec<String>> {
    let names = xlogdb_of(&env.barman, server)?;
    Ok(names.iter().filter_map(|l| l.split(' ').next()).filter(|n| n.len() == 24).map(str::to_owned).collect())
}

/// WAL of `pg` up to PostgreSQL's last archived segment, and of `pgr` over the range its
/// slot streamed, against the reference SHA-256s.
fn check_wal(env: &Env, last: &str, done: &mut Verified, f: &mut Findings) -> Result<()> {
    let refs = env.references()?;
    let (from_pg, from_pgr) = (first_backup_wal(env, "pg")?, first_backup_wal(env, "pgr")?);
    let pgr = catalogued(env, "pgr")?;
    let (first_r, last_r) = (pgr.first().cloned().unwrap_or_default(), pgr.last().cloned().unwrap_or_default());
    for (name, sha) in &refs {
        let mut wanted = Vec::new();
        if name.as_str() <= last && name >= &from_pg {
            wanted.push("pg");
        }
        if !first_r.is_empty() && name >= &first_r && name <= &last_r && name >= &from_pgr {
            wanted.push("pgr");
        }
        for server in wanted {
            let key = (server.to_owned(), name.clone());
            if done.segments.contains(&key) {
                continue;
            }
            let path = env.layout(server).wal_path(&name.parse()?);
            let same = || path.is_file() && sha_of(&path).is_ok_and(|(s, _)| s == *sha);
            if same() {
                done.segments.insert(key);
                continue;
            }
            let whereabouts = find_named(&env.barman.home(), name);
            if !whereabouts.is_empty() {
                // Still queued after the normal run: one more archiver run tells a late
                // archive (a violation) from a loss.
                let out = env.barman.outcome(&["archive-wal", server])?;
                if same() {
                    done.segments.insert(key);
                    f.violations.push(format!(
                        "{server}/{name} was still queued ({whereabouts:?}) after cron; archive-wal then said: {}",
                        out.stdout_str().trim()
                    ));
                    continue;
                }
            }
            if done.lost.insert(format!("{server}/{name}")) {
                let state = if path.is_file() { "differs" } else { "missing" };
                f.lost.push(format!("{server}/{name} ({state}; found as {:?})", find_named(&env.barman.home(), name)));
            }
        }
    }
    Ok(())
}

/// Files whose name contains `name` anywhere under `root` (a lost segment's whereabouts).
pub(super) fn find_named(root: &Path, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().contains(name) {
                out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
            }
        }
    }
    out
}

/// No file under a final segment name in `wals/`, `streaming/` or `incoming/` of `server`
/// in `home` is short (`label` names the node in messages; `done` skips verified segments).
pub(super) fn check_no_partial_in(
    home: &BarmanHome,
    server: &str,
    done: &BTreeSet<(String, String)>,
    label: &str,
    f: &mut Findings,
) -> Result<()> {
    let layout = ServerLayout::default_for(&home.home(), server);
    let mut files = Vec::new();
    for dir in [&layout.streaming, &layout.incoming] {
        if let Ok(rd) = fs::read_dir(dir) {
            files.extend(rd.flatten().map(|e| e.path()));
        }
    }
    if let Ok(rd) = fs::read_dir(&layout.wals_directory) {
        for sub in rd.flatten().filter(|e| e.path().is_dir()) {
            files.extend(fs::read_dir(sub.path())?.flatten().map(|e| e.path()));
        }
    }
    for path in files {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        if name.len() != 24 || !name.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        if done.contains(&(label.to_owned(), name.clone())) && path.starts_with(&layout.wals_directory) {
            continue;
        }
        let shown = path.strip_prefix(home.home()).unwrap_or(&path).display().to_string();
        match sha_of(&path) {
            Ok((_, SEGMENT)) => {}
            Ok((_, n)) => f.violations.push(format!("{label}: {shown} has {n} bytes under a final name")),
            Err(e) => f.violations.push(format!("{label}: {shown}: {e:#}")),
        }
    }
    Ok(())
}

/// xlog.db of `server` in `home` equals what `barman rebuild-xlogdb` makes of the same
/// `wals/`.
pub(super) fn check_xlogdb_in(home: &BarmanHome, server: &str, label: &str, f: &mut Findings) -> Result<()> {
    let before = xlogdb_of(home, server)?;
    home.run(&["rebuild-xlogdb", server])?;
    let after = xlogdb_of(home, server)?;
    if before != after {
        let only_before: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
        let only_after: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
        f.violations.push(format!("{label} xlog.db differs from rebuild-xlogdb: {only_before:?} vs {only_after:?}"));
    }
    Ok(())
}

/// Every backup of `server` in `home` is DONE or FAILED.
pub(super) fn check_backups_in(home: &BarmanHome, server: &str, label: &str, f: &mut Findings) -> Result<()> {
    let cat = Catalogue::load(&ServerLayout::default_for(&home.home(), server))?;
    for (id, b) in cat.entries() {
        if !matches!(b.status, BackupStatus::Done | BackupStatus::Failed) {
            f.violations.push(format!("{label} backup {id} is {:?}", b.status));
        }
    }
    Ok(())
}

/// The invariants, after [`heal`].
pub fn verify(env: &Env, last: &str, done: &mut Verified) -> Result<Findings> {
    let mut f = Findings::default();
    check_wal(env, last, done, &mut f)?;
    for server in ["pg", "pgr"] {
        check_no_partial_in(&env.barman, server, &done.segments, server, &mut f)?;
        check_xlogdb_in(&env.barman, server, server, &mut f)?;
        check_backups_in(&env.barman, server, server, &mut f)?;
    }
    Ok(f)
}

/// A sampled restore: recovers the last DONE backup of `server` locally, starts PostgreSQL
/// on it and checks it holds at least the rows written before that backup began.
pub fn sampled_restore(env: &Env, server: &str) -> Result<()> {
    sampled_restore_from(env, &env.barman, server)
}

/// [`sampled_restore`] from the catalogue of `home` (the primary's or the passive's).
pub fn sampled_restore_from(env: &Env, home: &BarmanHome, server: &str) -> Result<()> {
    let Some(id) = home.done_backups(server)?.pop() else { bail!("{server} has no DONE backup") };
    let dest = env.recovery_dir("restore")?.join("pgdata");
    let dest_s = dest.to_str().context("utf8")?;
    home.run(&["recover", server, &id, dest_s])?;
    let restored = PgCluster::start_existing(&env.scratch, &dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(2))?;
    let rows = super::env::written(&restored)?;
    let want = env.rows_before.get(&id).copied().unwrap_or(0);
    ensure!(rows >= want, "{server} backup {id} restored rows up to {rows}, not the {want} written before it");
    drop(restored);
    let _ = fs::remove_dir_all(dest.parent().unwrap_or(&dest));
    Ok(())
}

/// Rows before a backup, recorded for [`sampled_restore`].
pub fn note_rows(env: &mut Env, server: &str, before: i64) -> Result<()> {
    let ids: BTreeMap<String, i64> = env.barman.done_backups(server)?.into_iter().map(|id| (id, before)).collect();
    for (id, rows) in ids {
        env.rows_before.entry(id).or_insert(rows);
    }
    Ok(())
}
