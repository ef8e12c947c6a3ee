//! A passive node's state files (spec `relay.md` §2), shared by `barman-relay` and the
//! `barman` commands that report on a passive server.
//!
//! * `<backup_directory>/primary.info`: the raw JSON of the primary's last `sync-info`
//!   answer (written like Barman: temp file + rename; we also fsync).
//! * `<wals_directory>/sync-wals.info`: `<last_name>\t<last_position>` of the primary's
//!   xlog.db after the last complete WAL sync, no trailing newline (Barman's format, so
//!   either implementation can take over a passive catalogue).
//! * `<backup_directory>/relay.info`: ours, JSON: how far the passive is behind the primary
//!   (see [`RelayState`]). Barman ignores the file.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::layout::ServerLayout;
use crate::durable;

/// `<backup_directory>/primary.info`.
pub fn primary_info_path(layout: &ServerLayout) -> PathBuf {
    layout.backup_directory.join("primary.info")
}

/// Saves the primary's `sync-info` answer as `primary.info`, durably.
pub fn save_primary_info(layout: &ServerLayout, text: &str) -> io::Result<()> {
    durable::create_dir_all(&layout.backup_directory)?;
    durable::write_replace(&primary_info_path(layout), text.as_bytes(), 0o600)
}

/// `<wals_directory>/sync-wals.info`.
pub fn sync_wals_info_path(layout: &ServerLayout) -> PathBuf {
    layout.wals_directory.join("sync-wals.info")
}

/// The last synchronised `(name, position)`, both kept as text like Barman does; `None`
/// when the file is missing or its first line has no TAB.
pub fn read_sync_wals_info(layout: &ServerLayout) -> Option<(String, String)> {
    let text = fs::read_to_string(sync_wals_info_path(layout)).ok()?;
    let line = text.lines().next()?;
    let (name, position) = line.split_once('\t')?;
    Some((name.trim().to_owned(), position.trim().to_owned()))
}

/// Records the primary's xlog.db position after a complete WAL sync.
pub fn write_sync_wals_info(layout: &ServerLayout, name: &str, position: u64) -> io::Result<()> {
    durable::create_dir_all(&layout.wals_directory)?;
    durable::write_replace(&sync_wals_info_path(layout), format!("{name}\t{position}").as_bytes(), 0o600)
}

/// `<backup_directory>/relay.info`.
pub fn relay_state_path(layout: &ServerLayout) -> PathBuf {
    layout.backup_directory.join("relay.info")
}

/// How far a passive node is behind its primary, written by each WAL pass of the relay.
///
/// Positions are WAL byte positions (LSNs as integers): the end of the newest complete
/// segment each side holds, or, when a streaming `.partial` segment is relayed, its start
/// plus the bytes written into it so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayState {
    /// Unix time of the pass.
    pub checked_at: f64,
    /// Unix time of the last pass that left the passive holding everything the primary
    /// reported (`checked_at` itself when this pass did).
    pub caught_up_at: f64,
    /// The primary's position as reported by `sync-info` (and its `.partial` listing).
    pub primary_position: u64,
    /// The passive's position after the pass.
    pub passive_position: u64,
    /// The primary's newest WAL file name.
    pub primary_wal: String,
    /// The passive's newest WAL file name.
    pub passive_wal: String,
}

impl RelayState {
    /// Bytes of WAL the primary had that the passive lacked at the last pass.
    pub fn lag_bytes(&self) -> u64 {
        self.primary_position.saturating_sub(self.passive_position)
    }

    /// Seconds since the passive last held everything its primary had (as of `now`).
    pub fn lag_seconds(&self, now: f64) -> f64 {
        (now - self.caught_up_at).max(0.0)
    }

    /// Reads `relay.info`; `None` when missing or unreadable.
    pub fn load(layout: &ServerLayout) -> Option<RelayState> {
        serde_json::from_str(&fs::read_to_string(relay_state_path(layout)).ok()?).ok()
    }

    /// Writes `relay.info` durably.
    pub fn save(&self, layout: &ServerLayout) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        durable::write_replace(&relay_state_path(layout), text.as_bytes(), 0o600)
    }
}

/// The bytes written so far into a streaming `.partial` segment: pg_receivewal (and
/// barman-receive-wal) create it zero-filled at full size and write WAL from the start, so
/// this is the end of the last 8 KiB page holding a non-zero byte.
pub fn partial_written_bytes(path: &Path) -> io::Result<u64> {
    const PAGE: u64 = 8192;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 1 << 20];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
            let last = start + i as u64;
            return Ok(((last / PAGE) + 1).saturating_mul(PAGE).min(len));
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_wals_info_round_trip_has_no_newline() {
        let dir = tempfile::tempdir().expect("tmp");
        let layout = ServerLayout::default_for(dir.path(), "pg");
        assert_eq!(read_sync_wals_info(&layout), None);
        write_sync_wals_info(&layout, "000000010000000000000006", 329).expect("write");
        let raw = fs::read(sync_wals_info_path(&layout)).expect("read");
        assert_eq!(raw, b"000000010000000000000006\t329");
        assert_eq!(read_sync_wals_info(&layout), Some(("000000010000000000000006".into(), "329".into())));
    }

    #[test]
    fn partial_size_is_page_rounded() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("x.partial");
        let mut data = vec![0u8; 4 << 20];
        fs::write(&p, &data).expect("write");
        assert_eq!(partial_written_bytes(&p).expect("size"), 0);
        data[3 * 8192 + 17] = 1;
        fs::write(&p, &data).expect("write");
        assert_eq!(partial_written_bytes(&p).expect("size"), 4 * 8192);
        data[(4 << 20) - 1] = 1;
        fs::write(&p, &data).expect("write");
        assert_eq!(partial_written_bytes(&p).expect("size"), 4 << 20);
    }

    #[test]
    fn lag_figures() {
        let s = RelayState {
            checked_at: 100.0,
            caught_up_at: 90.0,
            primary_position: 50,
            passive_position: 20,
            ..RelayState::default()
        };
        assert_eq!(s.lag_bytes(), 30);
        assert!((s.lag_seconds(95.0) - 5.0).abs() < f64::EPSILON);
    }
}
