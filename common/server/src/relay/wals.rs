//! Relaying WAL files: every file the primary's xlog.db lists that the passive lacks (from
//! the oldest backup either side needs on), copied with rsync (temp name, then rename: a
//! file is never visible half-written under its final name), checked against the
//! primary's recorded size, fsynced, then indexed in the local xlog.db with the primary's
//! metadata line and recorded in `sync-wals.info`. Then the primary's streaming `.partial`
//! segment, so the passive's recovery point follows the primary within seconds instead of
//! a segment (Barman #283).
//!
//! Unlike Barman's `sync-wals`, the selection is by name against the local xlog.db, not
//! only "newer than the last synchronised name": a lost `sync-wals.info` re-appends nothing,
//! a backup re-copied after its WAL was purged gets that WAL back, and a primary whose
//! oldest WAL predates the passive's oldest backup does not stop the sync.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use barman_common::catalogue::relay::{self, RelayState};
use barman_common::catalogue::sync::PrimaryInfo;
use barman_common::catalogue::{BackupStatus, Catalogue, LockKind, ServerLock, XlogDb, XlogDbEntry};
use barman_common::durable;
use barman_common::wal::{WalFileName, WalSegSize};

use super::error::RelayError;
use super::session::Relay;
use crate::rsync::{local_dir, Rsync, Stats};

/// What one WAL pass did.
#[derive(Debug, Default, Clone)]
pub struct WalPass {
    /// Files copied and indexed.
    pub copied: usize,
    /// Files listed by the primary but gone from its disk.
    pub vanished: usize,
    /// rsync counters.
    pub stats: Stats,
    /// The `.partial` segment relayed, if any.
    pub partial: Option<String>,
    /// The lag after the pass.
    pub state: Option<RelayState>,
}

/// The oldest begin_wal among the local backups that are not FAILED and the primary's
/// backups: WAL older than that is of no use to either.
pub fn horizon(local: &Catalogue, info: &PrimaryInfo) -> Option<String> {
    let local = local
        .entries()
        .iter()
        .filter(|(_, b)| !matches!(b.status, BackupStatus::Failed | BackupStatus::Empty))
        .filter_map(|(_, b)| b.begin_wal.as_ref());
    let remote = info
        .backups
        .iter()
        .filter(|(_, b)| matches!(b.status, BackupStatus::Done | BackupStatus::WaitingForWals))
        .filter_map(|(_, b)| b.begin_wal.as_ref());
    local.chain(remote).map(|w| w.as_str()[..24].to_owned()).min()
}

/// The local xlog.db's names.
pub fn local_names(relay: &Relay<'_>) -> Result<HashSet<String>, RelayError> {
    let mut db = XlogDb::open(&relay.server.layout)?;
    Ok(db.entries()?.into_iter().map(|(_, e)| e.name.to_string()).collect())
}

/// Refuses to mix compressions: the passive stores the primary's files verbatim.
pub fn check_compression(relay: &Relay<'_>, info: &PrimaryInfo) -> Result<(), RelayError> {
    let local = relay.cfg.compression.map(|c| c.as_str().to_owned());
    let remote = info.config_str("compression").map(str::to_owned);
    if local == remote {
        return Ok(());
    }
    let show = |c: &Option<String>| c.clone().unwrap_or_else(|| "None".into());
    Err(RelayError::Sync(format!(
        "WAL synchronisation for server {0} failed with: Compression method on server {0} ({1}) does not match local compression method ({2})",
        relay.server.name,
        show(&remote),
        show(&local)
    )))
}

/// One WAL pass under the `sync-wal` lock (skipped, not waited for, when another relay
/// holds it).
pub fn sync(relay: &Relay<'_>, info: &PrimaryInfo, partial: bool) -> Result<WalPass, RelayError> {
    let name = &relay.server.name;
    let Ok(_lock) = ServerLock::acquire(&relay.server.layout.lock_directory, name, &LockKind::SyncWal) else {
        relay.say(format!("Another WAL synchronisation for server {name} is in progress"));
        return Ok(WalPass::default());
    };
    check_compression(relay, info)?;
    let catalogue = Catalogue::load(&relay.server.layout)?;
    let Some(horizon) = horizon(&catalogue, info) else {
        relay.say(format!("No base backup for server {name}"));
        return Ok(WalPass::default());
    };
    let have = local_names(relay)?;
    let todo: Vec<&XlogDbEntry> = info
        .wals
        .iter()
        .filter(|w| !have.contains(w.name.as_str()))
        .filter(|w| !w.name.is_segment_like() || w.name.as_str()[..24] >= *horizon)
        .collect();
    warn_gap(relay, info, &have, &todo);
    let mut pass = copy(relay, info, &todo)?;
    // Files the primary listed but no longer has (its retention ran meanwhile) are gone for
    // good: nothing to wait for, so the position moves on.
    relay::write_sync_wals_info(&relay.server.layout, &info.last_name, info.last_position)?;
    if pass.copied > 0 {
        relay.say(format!(
            "Copied {} WAL files for server {name} ({} bytes received)",
            pass.copied, pass.stats.bytes_received
        ));
    }
    if partial {
        pass.partial = sync_partial(relay, info, &have, &todo)?;
    }
    pass.state = Some(record_lag(relay, info, pass.partial.as_deref())?);
    Ok(pass)
}

/// Says so when the primary no longer has the segments between the passive's newest and
/// the first one it is about to copy (its retention removed them first): every backup is
/// still restorable, but not a point in time inside the gap.
fn warn_gap(relay: &Relay<'_>, info: &PrimaryInfo, have: &HashSet<String>, todo: &[&XlogDbEntry]) {
    let size = segment_size(info);
    let Some(newest) = have.iter().filter(|n| n.len() == 24).max() else { return };
    let Some(first) = todo.iter().filter(|e| e.name.is_segment()).map(|e| e.name.as_str()).min() else { return };
    let Ok(expected) = newest.parse::<WalFileName>().and_then(|w| w.next_segment(size)) else { return };
    if expected.as_str() < first && expected.as_str()[..8] == first[..8] {
        relay.warn(format!(
            "WAL gap on server {}: the primary no longer has {expected} up to the segment before {first} \
             (its retention removed them before this node copied them); point-in-time recovery inside the gap is not possible",
            relay.server.name
        ));
    }
}

/// Copies `entries` (the primary's metadata) and indexes those that arrived intact.
pub fn copy(relay: &Relay<'_>, info: &PrimaryInfo, entries: &[&XlogDbEntry]) -> Result<WalPass, RelayError> {
    let mut pass = WalPass::default();
    if entries.is_empty() {
        return Ok(pass);
    }
    let layout = &relay.server.layout;
    let remote = info
        .config_str("wals_directory")
        .ok_or_else(|| RelayError::Sync("the primary did not report its wals_directory".into()))?;
    let list: String = entries.iter().flat_map(|e| [relative(&e.name), "\n".to_owned()]).collect();
    durable::create_dir_all(&layout.wals_directory)?;
    // A file not yet in xlog.db was never made durable by us (an earlier pass may have died
    // between rsync's rename and our fsync): it is fetched again, not trusted because its
    // size and mtime look right to rsync's quick check.
    for e in entries {
        match fs::remove_file(layout.wal_path(&e.name)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err.into()),
            _ => {}
        }
    }
    let mut cmd = relay.rsync.command();
    cmd.args(["--recursive", "--perms", "--times", "--ignore-missing-args", "--files-from=-"])
        .arg(Rsync::remote_dir(remote))
        .arg(local_dir(&layout.wals_directory));
    pass.stats = relay
        .rsync
        .run(cmd, Some(&list))
        .map_err(|f| RelayError::Sync(format!("WAL synchronisation for server {} failed: {f}", relay.server.name)))?;
    let mut arrived = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut bad = Vec::new();
    for e in entries {
        let path = layout.wal_path(&e.name);
        match fs::metadata(&path) {
            Err(_) => pass.vanished += 1,
            Ok(m) if m.len() != e.size => {
                bad.push(format!("{}: {} bytes, the primary's xlog.db says {}", e.name, m.len(), e.size));
                fs::remove_file(&path)?;
            }
            Ok(_) => {
                File::open(&path)?.sync_all()?;
                dirs.insert(path.parent().map(PathBuf::from).unwrap_or_default());
                arrived.push((*e).clone());
            }
        }
    }
    for d in &dirs {
        durable::fsync_dir(d)?;
    }
    durable::fsync_dir(&layout.wals_directory)?;
    XlogDb::open(layout)?.append(&arrived)?;
    pass.copied = arrived.len();
    if !bad.is_empty() {
        return Err(RelayError::Sync(format!(
            "WAL synchronisation for server {}: {} file(s) differ from the primary's record, not indexed: {}",
            relay.server.name,
            bad.len(),
            bad.join("; ")
        )));
    }
    Ok(pass)
}

/// `<hashdir>/<name>`, or `<name>` for history files (relative to the wals directory).
fn relative(name: &WalFileName) -> String {
    match name.hash_dir() {
        Some(dir) => format!("{dir}/{name}"),
        None => name.to_string(),
    }
}

trait SegmentLike {
    fn is_segment_like(&self) -> bool;
}

impl SegmentLike for WalFileName {
    /// Segments, `.partial` and `.backup` files (named after a segment); not history files.
    fn is_segment_like(&self) -> bool {
        self.segment_name().is_some()
    }
}

/// Relays the primary's newest streaming `.partial` segment into the local `streaming/`
/// (where `get-wal --partial` finds it), unless that segment is archived already. Older
/// local `.partial` files are removed.
fn sync_partial(
    relay: &Relay<'_>,
    info: &PrimaryInfo,
    have: &HashSet<String>,
    copied: &[&XlogDbEntry],
) -> Result<Option<String>, RelayError> {
    let layout = &relay.server.layout;
    let Some(remote) = info.config_str("streaming_wals_directory") else { return Ok(None) };
    let archived = |seg: &str| have.contains(seg) || copied.iter().any(|e| e.name.as_str() == seg);
    durable::create_dir_all(&layout.streaming)?;
    // The primary may finish the segment (rename it) between the listing and the copy:
    // then list again once.
    let mut newest = None;
    for _ in 0..2 {
        let listing = match relay.rsync.list(remote) {
            Ok(l) => l,
            Err(f) => {
                relay.warn(format!("cannot list the primary's streaming directory: {f}"));
                return Ok(None);
            }
        };
        let Some(name) = listing
            .iter()
            .filter_map(|(n, _)| n.strip_suffix(".partial").map(|seg| (n, seg)))
            .filter(|(_, seg)| seg.parse::<WalFileName>().is_ok_and(|w| w.is_segment()) && !archived(seg))
            .map(|(n, _)| n.clone())
            .max()
        else {
            break;
        };
        let mut cmd = relay.rsync.command();
        cmd.args(["--times", "--perms", "--ignore-missing-args"])
            .arg(format!(" :{}/{name}", remote.trim_end_matches('/')))
            .arg(local_dir(&layout.streaming));
        if let Err(f) = relay.rsync.run(cmd, None) {
            relay.warn(format!("cannot copy the primary's {name}: {f}"));
            return Ok(None);
        }
        let local = layout.streaming.join(&name);
        if local.is_file() {
            File::open(&local)?.sync_all()?;
            newest = Some(name);
            break;
        }
    }
    for entry in fs::read_dir(&layout.streaming)? {
        let entry = entry?;
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.ends_with(".partial") && Some(&n) != newest.as_ref() {
            fs::remove_file(entry.path())?;
        }
    }
    durable::fsync_dir(&layout.streaming)?;
    Ok(newest)
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// The segment size the catalogue uses (newest backup's, else 16 MiB).
fn segment_size(info: &PrimaryInfo) -> WalSegSize {
    info.backups.iter().rev().find_map(|(_, b)| b.xlog_segment_size).unwrap_or(WalSegSize::DEFAULT)
}

fn segment_end(name: &str, size: WalSegSize) -> u64 {
    name.parse::<WalFileName>().ok().and_then(|w| w.segno(size).ok()).map_or(0, |s| s.next().start_lsn(size).as_u64())
}

/// Writes `relay.info`: the primary's position as it reported it against the passive's.
fn record_lag(relay: &Relay<'_>, info: &PrimaryInfo, partial: Option<&str>) -> Result<RelayState, RelayError> {
    let layout = &relay.server.layout;
    let size = segment_size(info);
    let local = local_names(relay)?;
    let newest_local = local.iter().filter(|n| n.len() == 24).max().cloned().unwrap_or_default();
    let newest_remote = info
        .wals
        .iter()
        .map(|w| w.name.as_str())
        .chain(std::iter::once(info.last_name.as_str()))
        .filter(|n| n.len() == 24)
        .max()
        .map(str::to_owned)
        .unwrap_or_default()
        .max(newest_local.clone());
    let mut primary_position = segment_end(&newest_remote, size);
    let mut passive_position = segment_end(&newest_local, size);
    let (mut primary_wal, mut passive_wal) = (newest_remote, newest_local);
    if let Some(name) = partial {
        let seg = name.trim_end_matches(".partial");
        let start = segment_end(seg, size).saturating_sub(u64::from(size.bytes()));
        let pos = start + relay::partial_written_bytes(&layout.streaming.join(name))?;
        if pos > primary_position {
            primary_position = pos;
            name.clone_into(&mut primary_wal);
        }
        if pos > passive_position {
            passive_position = pos;
            name.clone_into(&mut passive_wal);
        }
    }
    let t = now();
    let previous = RelayState::load(layout).unwrap_or_default();
    let caught_up_at = if passive_position >= primary_position { t } else { previous.caught_up_at };
    let state =
        RelayState { checked_at: t, caught_up_at, primary_position, passive_position, primary_wal, passive_wal };
    state.save(layout)?;
    Ok(state)
}
