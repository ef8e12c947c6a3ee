//! WAL statistics of a backup, as Barman's `Server.get_wal_info` computes them from
//! xlog.db: the WAL files from the backup's `begin_wal` up to the next backup's `end_wal`
//! on the backup's timeline or older, split into those needed by the backup (≤ `end_wal`)
//! and those after it.

use barman_common::catalogue::{BackupInfo, XlogDbEntry};
use barman_common::wal::WalFileKind;

/// Counters for one backup.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WalInfo {
    /// Files from begin_wal to end_wal.
    pub wal_num: u64,
    /// Their stored size.
    pub wal_size: u64,
    /// Files after end_wal, up to the next backup.
    pub until_next_num: u64,
    /// Their stored size.
    pub until_next_size: u64,
    /// First and last file with their xlog.db times.
    pub first: Option<(String, f64)>,
    /// The last file considered.
    pub last: Option<(String, f64)>,
}

impl WalInfo {
    /// WAL files per second between the first and last file.
    pub fn per_second(&self) -> f64 {
        match (&self.first, &self.last) {
            (Some((_, t0)), Some((_, t1))) if t1 > t0 => (self.wal_num + self.until_next_num) as f64 / (t1 - t0),
            _ => 0.0,
        }
    }
}

/// Computes the statistics of `backup`, whose next backup (WAITING_FOR_WALS or DONE) is
/// `next`, over the xlog.db `entries` in file order.
pub fn wal_info(backup: &BackupInfo, next: Option<&BackupInfo>, entries: &[XlogDbEntry]) -> WalInfo {
    let mut info = WalInfo::default();
    let (Some(begin), Some(end)) = (&backup.begin_wal, &backup.end_wal) else { return info };
    let next_end = next.and_then(|n| n.end_wal.as_ref()).map(|w| w.as_str().to_owned());
    let tli = begin.timeline();
    for e in entries {
        let name = e.name.as_str();
        if e.name.kind() == WalFileKind::History || name < begin.as_str() {
            continue;
        }
        if e.name.timeline() > tli || !matches!(e.name.kind(), WalFileKind::Segment) {
            continue;
        }
        if next_end.as_deref().is_some_and(|n| name > n) {
            break;
        }
        if name == begin.as_str() {
            info.first = Some((name.to_owned(), e.time));
        }
        if name <= end.as_str() {
            info.wal_num += 1;
            info.wal_size += e.size;
        } else {
            info.until_next_num += 1;
            info.until_next_size += e.size;
        }
        info.last = Some((name.to_owned(), e.time));
    }
    info
}

/// Barman's `pretty_size`: binary units, one decimal above bytes.
pub fn pretty_size(size: f64) -> String {
    const SUFFIXES: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = size;
    for (i, suffix) in SUFFIXES.iter().enumerate() {
        if size.abs() < 1024.0 || i == SUFFIXES.len() - 1 {
            return if i == 0 { format!("{} {suffix}", size.trunc()) } else { format!("{size:.1} {suffix}") };
        }
        size /= 1024.0;
    }
    unreachable!("the loop returns at the last suffix")
}

#[cfg(test)]
mod tests {
    use super::pretty_size;

    #[test]
    fn sizes_like_barman() {
        assert_eq!(pretty_size(65.0), "65 B");
        assert_eq!(pretty_size(33075.0), "32.3 KiB");
        assert_eq!(pretty_size(23_211_996.0), "22.1 MiB");
        assert_eq!(pretty_size(0.0), "0 B");
    }
}
