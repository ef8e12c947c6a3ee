//! `barman-cloud-backup-delete`, as Barman 3.20.1's `cloud_backup_delete.py`: one backup
//! (`-b`, refused when it has a keep annotation or when `-m` would be breached) or every
//! backup a retention policy (`-r "REDUNDANCY n"` / `"RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS"`,
//! classified by the shared `catalogue::retention` report) marks OBSOLETE. For each: its
//! archives, then backup.info, then the WAL no remaining backup needs (`should_remove_wals`:
//! the previous backup must not exist, or be a chain of keep:standalone ones whose
//! begin..end ranges survive; whole `<tli+log>` directories before the next backup's
//! begin_wal go at once; history files and timelines of other backups stay). `--dry-run`
//! prints what would be deleted in Barman's words and deletes nothing.

use std::collections::{BTreeMap, BTreeSet};

use barman_common::catalogue::retention::{report, Candidate, Policy, RetentionStatus};
use barman_common::catalogue::{BackupId, BackupInfo, BackupStatus, KeepTarget};
use barman_common::config::RetentionPolicy;
use barman_common::wal::WalFileName;

use crate::catalog::Catalog;
use crate::error::CloudError;
use crate::log;
use crate::store::{ConnectOptions, Store};

/// What to delete.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where.
    pub connect: ConnectOptions,
    /// Barman server name.
    pub server: String,
    /// `-b`.
    pub backup_id: Option<String>,
    /// `-r`.
    pub policy: Option<String>,
    /// `-m`.
    pub minimum_redundancy: u32,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `-t`.
    pub test: bool,
}

/// Python's `repr` of a list of strings.
fn py_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| barman_common::catalogue::repr_str(s)).collect();
    format!("[{}]", inner.join(", "))
}

struct Deleter<'c, 's> {
    catalog: &'c Catalog<'s>,
    backups: BTreeMap<String, BackupInfo>,
    dry_run: bool,
    /// Barman's `_wal_paths` cache: listed once, entries dropped as they are deleted (or
    /// would be, under `--dry-run`).
    wals: Option<BTreeMap<String, String>>,
}

/// Barman's `DEFAULT_STATUS_FILTER` (`STATUS_COPY_DONE`).
const COPY_DONE: [BackupStatus; 2] = [BackupStatus::WaitingForWals, BackupStatus::Done];

fn keep_of(text: Option<&str>) -> Option<KeepTarget> {
    match text {
        Some("standalone") => Some(KeepTarget::Standalone),
        Some(_) => Some(KeepTarget::Full),
        None => None,
    }
}

/// Runs the tool.
pub fn run(opts: &Options) -> Result<(), CloudError> {
    let store = Store::open(&opts.connect)?;
    if opts.test {
        return store.test_connectivity();
    }
    let catalog = Catalog::new(&store, &opts.server);
    let backups = catalog.backups()?;
    let mut d = Deleter { catalog: &catalog, backups, dry_run: opts.dry_run, wals: None };
    if let Some(id) = &opts.backup_id {
        let id = catalog.resolve(&d.backups, id)?;
        if catalog.keep_target(&id)?.is_some() {
            return Err(CloudError::Failed(format!(
                "Skipping delete of backup {id} for server {} as it has a current keep request. If you really want to delete this backup please remove the keep and try again.",
                opts.server
            )));
        }
        let completed = d.backups.values().filter(|b| b.status != BackupStatus::Started).count();
        if opts.minimum_redundancy > 0 && opts.minimum_redundancy as usize >= completed {
            return Err(CloudError::Failed(format!(
                "Skipping delete of backup {id} for server {} due to minimum redundancy requirements (minimum redundancy = {}, current redundancy = {completed})",
                opts.server, opts.minimum_redundancy
            )));
        }
        return d.delete(&id, true);
    }
    let text = opts.policy.as_deref().unwrap_or_default();
    let policy: RetentionPolicy =
        text.parse().map_err(|e| CloudError::Usage(format!("Could not create retention policy {text}: {e}")))?;
    let policy = match policy.window() {
        Some(w) => Policy::RecoveryWindow(w),
        None => match policy {
            RetentionPolicy::Redundancy(n) => Policy::Redundancy(n),
            RetentionPolicy::RecoveryWindow { .. } => {
                return Err(CloudError::Usage(format!("invalid retention policy {text}")))
            }
        },
    };
    for id in d.obsolete(policy, opts.minimum_redundancy)? {
        d.delete(&id, false)?;
    }
    Ok(())
}

impl Deleter<'_, '_> {
    /// The backups the policy marks OBSOLETE, oldest first.
    fn obsolete(&self, policy: Policy, minimum: u32) -> Result<Vec<String>, CloudError> {
        let mut ids = Vec::new();
        for (id, info) in &self.backups {
            ids.push((
                BackupId::new(id).map_err(CloudError::general)?,
                info,
                keep_of(self.catalog.keep_target(id)?.as_deref()),
            ));
        }
        let candidates: Vec<Candidate<'_>> =
            ids.iter().map(|(id, info, keep)| Candidate { id, info, keep: *keep }).collect();
        let statuses = report(policy, minimum, &candidates, chrono::Utc::now());
        Ok(statuses
            .into_iter()
            .filter(|(_, s)| *s == RetentionStatus::Obsolete)
            .map(|(id, _)| id.as_str().to_owned())
            .collect())
    }

    fn say_or_delete(&self, keys: &[String]) -> Result<(), CloudError> {
        if self.dry_run {
            println!("Skipping deletion of objects {} due to --dry-run option", py_list(keys));
            Ok(())
        } else {
            self.catalog.store.delete(keys)
        }
    }

    /// `_delete_backup`.
    fn delete(&mut self, id: &str, skip_if_standalone: bool) -> Result<(), CloudError> {
        let Some(info) = self.catalog.backup_info(id)? else {
            log::warning(&format!("Backup {id} does not exist"));
            return Ok(());
        };
        let files = self.catalog.backup_files(id, &info, true)?;
        let mut order: Vec<_> = files.iter().collect();
        order.sort_by_key(|(oid, _)| oid.map_or(-1, i64::from));
        let mut objects: Vec<String> = Vec::new();
        for (_, archives) in order {
            let mut extra: Vec<String> = archives.iter().skip(1).map(|a| a.key.clone()).collect();
            extra.sort();
            objects.extend(archives.first().map(|a| a.key.clone()));
            objects.extend(extra);
        }
        let info_key = self.catalog.keys.backup_info(id);
        if self.dry_run {
            let mut all = objects.clone();
            all.push(info_key);
            self.say_or_delete(&all)?;
        } else {
            self.catalog
                .store
                .delete(&objects)
                .and_then(|()| self.catalog.store.delete(&[info_key]))
                .map_err(|e| CloudError::Failed(format!("Could not delete backup {id}: {e}")))?;
            self.catalog.abort_orphaned_uploads(Some(id))?;
        }
        self.remove_wals(id, &info, skip_if_standalone)?;
        self.backups.remove(id);
        Ok(())
    }

    fn previous<'a>(&'a self, id: &str, statuses: &[BackupStatus]) -> Option<(&'a String, &'a BackupInfo)> {
        self.backups.range::<String, _>(..id.to_owned()).rev().find(|(_, b)| statuses.contains(&b.status))
    }

    /// `BackupManager.should_remove_wals`.
    fn should_remove_wals(
        &self,
        id: &str,
        info: &BackupInfo,
        skip: bool,
    ) -> Result<(bool, Vec<(String, String)>), CloudError> {
        let mut statuses = COPY_DONE.to_vec();
        statuses.push(info.status);
        let mut ranges = Vec::new();
        let mut cursor = id.to_owned();
        loop {
            let Some((prev_id, prev)) = self.previous(&cursor, &statuses) else { return Ok((true, ranges)) };
            if keep_of(self.catalog.keep_target(prev_id)?.as_deref()) != Some(KeepTarget::Standalone) || skip {
                return Ok((false, Vec::new()));
            }
            if let (Some(b), Some(e)) = (&prev.begin_wal, &prev.end_wal) {
                ranges.push((b.to_string(), e.to_string()));
            }
            cursor.clone_from(prev_id);
        }
    }

    /// `_remove_wals_for_backup`.
    fn remove_wals(&mut self, id: &str, info: &BackupInfo, skip: bool) -> Result<(), CloudError> {
        let (remove, ranges) = self.should_remove_wals(id, info, skip)?;
        if !remove {
            return Ok(());
        }
        let next = self
            .backups
            .range::<String, _>((std::ops::Bound::Excluded(id.to_owned()), std::ops::Bound::Unbounded))
            .find(|(_, b)| COPY_DONE.contains(&b.status));
        let until = next.map_or(info, |(_, b)| b);
        let Some(until_wal) = until.begin_wal.clone() else { return Ok(()) };
        let mut protect: BTreeSet<u32> = self
            .backups
            .iter()
            .filter(|(bid, _)| bid.as_str() != id)
            .filter_map(|(_, b)| b.timeline.map(barman_common::wal::TimelineId::get))
            .collect();
        if let Some(t) = until.timeline {
            protect.remove(&t.get());
        }
        let in_ranges = |name: &str| ranges.iter().any(|(b, e)| name >= b.as_str() && name <= e.as_str());
        let (until_tli, until_log) = until_wal.log_and_seg_tli();
        let mut prefixes = Vec::new();
        for dir in self.catalog.store.list_dirs(&self.catalog.keys.wals())? {
            let hash = dir.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
            let (Ok(tli), Ok(log)) = (
                u32::from_str_radix(hash.get(..8).unwrap_or("x"), 16),
                u32::from_str_radix(hash.get(8..).unwrap_or("x"), 16),
            ) else {
                log::warning(&format!("Ignoring malformed WAL object prefix: {dir}"));
                continue;
            };
            let ranged = ranges.iter().any(|(b, e)| {
                let (bt, bl) = tli_log(b);
                let (et, el) = tli_log(e);
                tli >= bt && log >= bl && tli <= et && log <= el
            });
            if hash.len() == 16 && !protect.contains(&tli) && !ranged && tli == until_tli && log < until_log {
                prefixes.push(dir);
            }
        }
        for p in &prefixes {
            if self.dry_run {
                println!("Skipping deletion of all objects under prefix {p} due to --dry-run option");
            } else {
                let keys: Vec<String> = self.catalog.store.list(p)?.into_iter().map(|o| o.key).collect();
                self.catalog.store.delete(&keys)?;
            }
        }
        let mut doomed = Vec::new();
        if self.wals.is_none() {
            self.wals = Some(self.catalog.wal_paths()?);
        }
        let mut names = Vec::new();
        for (name, key) in self.wals.iter().flatten() {
            let Ok(wal) = name.parse::<WalFileName>() else { continue };
            if prefixes.iter().any(|p| key.starts_with(p.as_str())) || wal.hash_dir().is_none() {
                continue;
            }
            if protect.contains(&wal.timeline().get()) || in_ranges(name.get(..24).unwrap_or(name)) {
                continue;
            }
            if name.as_str() < until_wal.as_str() {
                doomed.push(key.clone());
                names.push(name.clone());
            }
        }
        doomed.sort();
        if !doomed.is_empty() {
            self.say_or_delete(&doomed)?;
        }
        if let Some(w) = self.wals.as_mut() {
            for n in names {
                w.remove(&n);
            }
        }
        Ok(())
    }
}

fn tli_log(name: &str) -> (u32, u32) {
    let p = |r: std::ops::Range<usize>| name.get(r).and_then(|s| u32::from_str_radix(s, 16).ok()).unwrap_or(0);
    (p(0..8), p(8..16))
}

trait TliLog {
    fn log_and_seg_tli(&self) -> (u32, u32);
}

impl TliLog for WalFileName {
    fn log_and_seg_tli(&self) -> (u32, u32) {
        tli_log(self.as_str())
    }
}
