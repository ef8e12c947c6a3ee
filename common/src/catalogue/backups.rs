//! The backup catalogue of one server: every backup.info, and Barman's ways of naming a
//! backup (id, `backup_name`, shortcuts).
//!
//! Loading mirrors `BackupManager._load_backup_cache`: `base/*/backup.info` first, then
//! `meta/*-backup.info`, the latter winning for the same id (globs skip dot files).
//! Resolution mirrors `cli.parse_backup_id` + `get_backup_id_using_shortcut`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::backup_id::looks_like_backup_id;
use super::backup_id::BackupId;
use super::backup_info::{BackupInfo, BackupStatus};
use super::error::CatalogueError;
use super::fsio::io_err;
use super::layout::ServerLayout;

/// All backups of a server, sorted by id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalogue {
    server: String,
    backups: Vec<(BackupId, BackupInfo)>,
}

impl Catalogue {
    /// Reads every backup.info of the server. A malformed or unsupported file is an error
    /// (Barman aborts too).
    pub fn load(layout: &ServerLayout) -> Result<Catalogue, CatalogueError> {
        let mut found = BTreeMap::new();
        for (id, path) in
            legacy_info_files(&layout.basebackups_directory)?.into_iter().chain(meta_info_files(&layout.meta_dir())?)
        {
            found.insert(id, BackupInfo::read(&path)?);
        }
        Ok(Catalogue { server: layout.name.clone(), backups: found.into_iter().collect() })
    }

    /// A catalogue from already loaded entries (sorted and deduplicated here, last wins).
    pub fn from_entries(server: &str, entries: Vec<(BackupId, BackupInfo)>) -> Catalogue {
        let map: BTreeMap<_, _> = entries.into_iter().collect();
        Catalogue { server: server.to_owned(), backups: map.into_iter().collect() }
    }

    /// Every backup, oldest id first.
    pub fn entries(&self) -> &[(BackupId, BackupInfo)] {
        &self.backups
    }

    /// The entries, by value.
    pub fn into_entries(self) -> Vec<(BackupId, BackupInfo)> {
        self.backups
    }

    /// The backup with this exact id, any status.
    pub fn get(&self, id: &str) -> Option<&(BackupId, BackupInfo)> {
        self.backups.iter().find(|(bid, _)| bid.as_str() == id)
    }

    /// Backups whose status is in `statuses`, oldest first.
    pub fn with_status<'a>(
        &'a self,
        statuses: &'a [BackupStatus],
    ) -> impl DoubleEndedIterator<Item = &'a (BackupId, BackupInfo)> + 'a {
        self.backups.iter().filter(move |(_, info)| statuses.contains(&info.status))
    }

    /// `WAITING_FOR_WALS` and `DONE` backups, oldest first.
    pub fn available(&self) -> impl DoubleEndedIterator<Item = &(BackupId, BackupInfo)> + '_ {
        self.with_status(&BackupStatus::AVAILABLE)
    }

    /// `latest`/`last`: the newest available backup.
    pub fn latest(&self) -> Option<&(BackupId, BackupInfo)> {
        self.available().next_back()
    }

    /// `oldest`/`first`: the oldest available backup.
    pub fn oldest(&self) -> Option<&(BackupId, BackupInfo)> {
        self.available().next()
    }

    /// `last-failed`: the newest `FAILED` backup.
    pub fn last_failed(&self) -> Option<&(BackupId, BackupInfo)> {
        self.with_status(&[BackupStatus::Failed]).next_back()
    }

    /// `latest-full`/`last-full`: the newest available backup that is neither incremental
    /// nor a snapshot (rsync backups count).
    pub fn latest_full(&self) -> Option<&(BackupId, BackupInfo)> {
        self.available().rev().find(|(_, info)| info.is_full())
    }

    /// The available backup named `name`; an error if several share it.
    pub fn by_name(&self, name: &str) -> Result<Option<&(BackupId, BackupInfo)>, CatalogueError> {
        let matches: Vec<_> = self.available().filter(|(_, i)| i.backup_name.as_deref() == Some(name)).collect();
        match matches.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(CatalogueError::AmbiguousName {
                name: name.to_owned(),
                ids: many.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(" "),
            }),
        }
    }

    /// The backup a user means by `text`, as Barman resolves it: a shortcut, then an id
    /// (`YYYYMMDDTHHMMSS`, any status), then a `backup_name` among available backups. As
    /// an extension, a non-standard id from an old catalogue is also matched exactly.
    pub fn resolve(&self, text: &str) -> Result<&(BackupId, BackupInfo), CatalogueError> {
        let found = match shortcut(text) {
            Some(Shortcut::Latest) => self.latest(),
            Some(Shortcut::Oldest) => self.oldest(),
            Some(Shortcut::LastFailed) => self.last_failed(),
            Some(Shortcut::LatestFull) => self.latest_full(),
            None if looks_like_backup_id(text) => self.get(text),
            None => self.by_name(text)?.or_else(|| self.get(text)),
        };
        found.ok_or_else(|| CatalogueError::UnknownBackup { text: text.to_owned(), server: self.server.clone() })
    }

    /// The closest older backup whose status is in `statuses` (Barman's
    /// `get_previous_backup`).
    pub fn previous(&self, id: &BackupId, statuses: &[BackupStatus]) -> Option<&(BackupId, BackupInfo)> {
        self.backups.iter().rev().skip_while(|(b, _)| b >= id).find(|(_, i)| statuses.contains(&i.status))
    }

    /// The closest newer backup whose status is in `statuses` (Barman's `get_next_backup`).
    pub fn next(&self, id: &BackupId, statuses: &[BackupStatus]) -> Option<&(BackupId, BackupInfo)> {
        self.backups.iter().skip_while(|(b, _)| b <= id).find(|(_, i)| statuses.contains(&i.status))
    }
}

enum Shortcut {
    Latest,
    Oldest,
    LastFailed,
    LatestFull,
}

/// Barman's shortcut test. `last-failed` is tested with `shortcut in ("last-failed")`,
/// which is a *substring* test in Python, so any substring of `last-failed` (`failed`,
/// `t-f`, even the empty string) means the last failed backup; we keep that.
fn shortcut(text: &str) -> Option<Shortcut> {
    match text {
        "latest" | "last" => Some(Shortcut::Latest),
        "oldest" | "first" => Some(Shortcut::Oldest),
        t if "last-failed".contains(t) => Some(Shortcut::LastFailed),
        "latest-full" | "last-full" => Some(Shortcut::LatestFull),
        _ => None,
    }
}

/// `glob("<base>/*/backup.info")`: the id is the directory name.
fn legacy_info_files(base: &Path) -> Result<Vec<(BackupId, std::path::PathBuf)>, CatalogueError> {
    let mut out = Vec::new();
    for name in visible_names(base)? {
        let path = base.join(&name).join("backup.info");
        if path.is_file() {
            out.extend(BackupId::new(&name).ok().map(|id| (id, path)));
        }
    }
    Ok(out)
}

/// `glob("<meta>/*-backup.info")`: the id is the name before `-backup.info`.
fn meta_info_files(meta: &Path) -> Result<Vec<(BackupId, std::path::PathBuf)>, CatalogueError> {
    let mut out = Vec::new();
    for name in visible_names(meta)? {
        let Some(id) = name.strip_suffix("-backup.info").and_then(|id| BackupId::new(id).ok()) else { continue };
        out.push((id, meta.join(&name)));
    }
    Ok(out)
}

/// Sorted UTF-8 names not starting with `.`; none if the directory is missing.
fn visible_names(dir: &Path) -> Result<Vec<String>, CatalogueError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry.map_err(io_err(dir))?.file_name();
        names.extend(name.to_str().filter(|n| !n.starts_with('.')).map(str::to_owned));
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_FIRST: &str = include_str!("../../tests/fixtures/barman-3.20.1/20261121T220257-backup.info");
    const REAL_NAMED: &str = include_str!("../../tests/fixtures/barman-3.20.1/20261121T220301-backup.info");

    fn info(status: BackupStatus, name: Option<&str>, mode: &str, parent: Option<&str>) -> BackupInfo {
        BackupInfo {
            status,
            backup_name: name.map(str::to_owned),
            mode: Some(mode.to_owned()),
            parent_backup_id: parent.map(|p| BackupId::new(p).expect("id")),
            ..BackupInfo::default()
        }
    }

    fn sample() -> Catalogue {
        let id = |s: &str| BackupId::new(s).expect("id");
        Catalogue::from_entries(
            "pg",
            vec![
                (id("20260105T000000"), info(BackupStatus::Done, Some("inc"), "postgres", Some("20260104T000000"))),
                (id("20260101T000000"), info(BackupStatus::Failed, None, "postgres", None)),
                (id("20260102T000000"), info(BackupStatus::Done, Some("dup"), "rsync-concurrent", None)),
                (id("20260103T000000"), info(BackupStatus::WaitingForWals, Some("dup"), "postgres", None)),
                (id("20260104T000000"), info(BackupStatus::Done, None, "snapshot-concurrent", None)),
                (id("20260106T000000"), info(BackupStatus::Started, Some("running"), "postgres", None)),
                (id("20260107T000000"), info(BackupStatus::Failed, None, "postgres", None)),
                (id("old style"), info(BackupStatus::Done, None, "postgres", None)),
            ],
        )
    }

    fn resolved(c: &Catalogue, text: &str) -> String {
        c.resolve(text).map_or_else(|e| e.to_string(), |(id, _)| id.to_string())
    }

    #[test]
    fn shortcuts_follow_barman_status_filters() {
        let c = sample();
        assert_eq!(resolved(&c, "latest"), "old style");
        assert_eq!(resolved(&c, "first"), "20260102T000000");
        assert_eq!(resolved(&c, "oldest"), "20260102T000000");
        assert_eq!(resolved(&c, "last-failed"), "20260107T000000");
        assert_eq!(resolved(&c, "failed"), "20260107T000000", "Python substring quirk");
        assert_eq!(resolved(&c, "latest-full"), "old style");
        let without_old =
            Catalogue::from_entries("pg", c.entries().iter().filter(|(id, _)| id.is_standard()).cloned().collect());
        assert_eq!(resolved(&without_old, "latest-full"), "20260103T000000", "skips incremental and snapshot");
        assert_eq!(resolved(&without_old, "last"), "20260105T000000");
    }

    #[test]
    fn ids_and_names() {
        let c = sample();
        assert_eq!(resolved(&c, "20260106T000000"), "20260106T000000", "ids resolve whatever the status");
        assert_eq!(resolved(&c, "inc"), "20260105T000000");
        assert_eq!(
            resolved(&c, "running"),
            "Unknown backup 'running' for server 'pg'",
            "names only among available backups"
        );
        assert_eq!(
            resolved(&c, "dup"),
            "Multiple backups found matching name 'dup' (try using backup ID instead): 20260102T000000 20260103T000000"
        );
        assert_eq!(resolved(&c, "20991231T000000"), "Unknown backup '20991231T000000' for server 'pg'");
        assert_eq!(resolved(&c, "old style"), "old style");
    }

    #[test]
    fn previous_and_next() {
        let c = sample();
        let id = BackupId::new("20260104T000000").expect("id");
        assert_eq!(c.previous(&id, &BackupStatus::AVAILABLE).map(|(i, _)| i.as_str()), Some("20260103T000000"));
        assert_eq!(c.next(&id, &BackupStatus::AVAILABLE).map(|(i, _)| i.as_str()), Some("20260105T000000"));
        assert_eq!(c.previous(&id, &[BackupStatus::Failed]).map(|(i, _)| i.as_str()), Some("20260101T000000"));
    }

    #[test]
    fn loads_both_locations_meta_wins() {
        let home = tempfile::tempdir().expect("tempdir");
        let layout = ServerLayout::default_for(home.path(), "pg");
        layout.ensure_dirs().expect("dirs");
        let write = |p: std::path::PathBuf, text: &str| {
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, text).expect("write");
        };
        let first = BackupId::new("20261121T220257").expect("id");
        let named = BackupId::new("20261121T220301").expect("id");
        let legacy_only = BackupId::new("20200101T000000").expect("id");
        write(layout.legacy_backup_info_path(&first), "status=FAILED\n");
        write(layout.backup_info_path(&first), REAL_FIRST);
        write(layout.backup_info_path(&named), REAL_NAMED);
        write(layout.legacy_backup_info_path(&legacy_only), "status=DONE\n");
        write(layout.meta_dir().join(".hidden-backup.info"), "garbage\n");
        write(layout.meta_dir().join("20261121T220257-keep"), "full");
        write(layout.meta_dir().join("20261121T220301-backup.info.tmp"), "garbage\n");
        let c = Catalogue::load(&layout).expect("load");
        let ids: Vec<&str> = c.entries().iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["20200101T000000", "20261121T220257", "20261121T220301"]);
        assert_eq!(c.get("20261121T220257").map(|(_, i)| i.status), Some(BackupStatus::Done));
        assert_eq!(resolved(&c, "second one"), "20261121T220301");
        assert_eq!(resolved(&c, "latest"), "20261121T220301");
    }

    #[test]
    fn broken_file_fails_the_load_with_its_path() {
        let home = tempfile::tempdir().expect("tempdir");
        let layout = ServerLayout::default_for(home.path(), "pg");
        layout.ensure_dirs().expect("dirs");
        let path = layout.meta_dir().join("20260101T000000-backup.info");
        fs::write(&path, "future_key=1\n").expect("write");
        let err = Catalogue::load(&layout).expect_err("unsupported");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }
}
