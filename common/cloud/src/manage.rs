//! The small catalogue tools: `barman-cloud-backup-keep` (the `annotations/keep` object
//! Barman's `KeepManagerMixinCloud` reads), `barman-cloud-backup-show` (console rows as
//! Barman's `render_show_backup`, JSON as `{server_name: to_json()}`) and
//! `barman-cloud-check-wal-archive` (Barman's `check_archive_usable` over the bucket's WAL).

use barman_common::catalogue::sync::backup_to_json;
use barman_common::catalogue::{format_py_datetime, python_json, BackupInfo, BackupStatus};
use barman_common::wal::{TimelineId, WalFileName};
use bytes::Bytes;

use crate::catalog::Catalog;
use crate::error::CloudError;
use crate::store::{ConnectOptions, Store};

/// `-r`, `-s` or `--target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepAction {
    /// `-r/--release`.
    Release,
    /// `-s/--status`.
    Status,
    /// `--target full|standalone`.
    Keep(String),
}

/// Runs `barman-cloud-backup-keep`.
pub fn keep(
    connect: &ConnectOptions,
    server: &str,
    backup: &str,
    action: &KeepAction,
    test: bool,
) -> Result<(), CloudError> {
    let store = Store::open(connect)?;
    if test {
        return store.test_connectivity();
    }
    let catalog = Catalog::new(&store, server);
    let backups = catalog.backups()?;
    let id = catalog.resolve(&backups, backup)?;
    match action {
        KeepAction::Release => store.delete(&[catalog.keep_key(&id)]),
        KeepAction::Status => {
            println!("Keep: {}", catalog.keep_target(&id)?.unwrap_or_else(|| "nokeep".into()));
            Ok(())
        }
        KeepAction::Keep(target) => {
            let status = catalog.backup_info(&id)?.map(|b| b.status);
            if status != Some(BackupStatus::Done) {
                let shown = status.map_or("None", BackupStatus::as_str);
                return Err(CloudError::Failed(format!(
                    "Cannot add keep to backup {id} because it has status {shown}. Only backups with status DONE can be kept."
                )));
            }
            store.put(&catalog.keep_key(&id), Bytes::from(target.clone()), None)
        }
    }
}

/// Runs `barman-cloud-check-wal-archive`.
pub fn check_wal_archive(
    connect: &ConnectOptions,
    server: &str,
    timeline: Option<u32>,
    test: bool,
) -> Result<(), CloudError> {
    let store = Store::open(connect)?;
    store.test_connectivity()?;
    if test {
        return Ok(());
    }
    let catalog = Catalog::new(&store, server);
    let names: Vec<String> = catalog.wal_paths()?.into_keys().collect();
    let timelines: Vec<TimelineId> =
        names.iter().filter_map(|n| n.parse::<WalFileName>().ok()).map(|w| w.timeline()).collect();
    let timeline = timeline
        .map(|t| TimelineId::new(t).ok_or_else(|| CloudError::Usage(format!("invalid timeline {t}"))))
        .transpose()?;
    match barman_server::cmd::check_wal_archive::unusable(&names, &timelines, timeline) {
        Some(reason) => Err(CloudError::Failed(format!("WAL archive check failed for server {server}: {reason}"))),
        None => Ok(()),
    }
}

fn size(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if v.abs() < 1024.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    format!("{v:.1} PiB")
}

fn show_console(id: &str, b: &BackupInfo) -> Vec<String> {
    let row = |k: &str, v: &str| format!("  {k:<23}: {v}");
    let nested = |k: &str, v: &str| format!("    {k:<21}: {v}");
    let opt = |v: Option<String>| v.unwrap_or_else(|| "None".into());
    let mut out = vec![format!("Backup {id}:")];
    if let Some(n) = &b.backup_name {
        out.push(row("Backup Name", n));
    }
    out.push(row("Server Name", &opt(b.server_name.clone())));
    out.push(row("System Id", &opt(b.systemid.clone())));
    out.push(row("Status", b.status.as_str()));
    out.push(row("PostgreSQL Version", &opt(b.version.map(|v| v.to_string()))));
    out.push(row("PGDATA directory", &opt(b.pgdata.clone())));
    if let Some(c) = b.cluster_size {
        out.push(row("Estimated Cluster Size", &size(c)));
    }
    out.push(String::new());
    out.push("  Server information:".into());
    out.push(nested("Checksums", &opt(b.data_checksums.clone())));
    if b.status != BackupStatus::Done && b.status != BackupStatus::WaitingForWals {
        if let Some(e) = &b.error {
            out.push(row("Error", e));
        }
        return out;
    }
    if let Some(ts) = b.tablespaces.as_ref().filter(|t| !t.is_empty()) {
        out.push(String::new());
        out.push("  Tablespaces:".into());
        for t in ts {
            out.push(nested(&t.name, &format!("{} (oid: {})", t.location, t.oid)));
        }
    }
    out.push(String::new());
    out.push("  Base backup information:".into());
    out.push(nested("Timeline", &opt(b.timeline.map(|t| t.get().to_string()))));
    out.push(nested("Begin WAL", &opt(b.begin_wal.as_ref().map(ToString::to_string))));
    out.push(nested("End WAL", &opt(b.end_wal.as_ref().map(ToString::to_string))));
    out.push(nested("Begin time", &opt(b.begin_time.as_ref().map(format_py_datetime))));
    out.push(nested("End time", &opt(b.end_time.as_ref().map(format_py_datetime))));
    if let Some(t) = b.copy_stat("copy_time") {
        out.push(nested("Copy time", &barman_common::catalogue::sync::human_readable_timedelta(t as i64)));
    }
    out.push(nested("Begin Offset", &opt(b.begin_offset.map(|v| v.to_string()))));
    out.push(nested("End Offset", &opt(b.end_offset.map(|v| v.to_string()))));
    out.push(nested("Begin LSN", &opt(b.begin_xlog.map(|v| v.to_string()))));
    out.push(nested("End LSN", &opt(b.end_xlog.map(|v| v.to_string()))));
    out.push(String::new());
    out
}

/// Runs `barman-cloud-backup-show`.
pub fn show(connect: &ConnectOptions, server: &str, backup: &str, format: &str, test: bool) -> Result<(), CloudError> {
    let store = Store::open(connect)?;
    if test {
        return store.test_connectivity();
    }
    let catalog = Catalog::new(&store, server);
    let backups = catalog.backups()?;
    let id = catalog.resolve(&backups, backup)?;
    let info = catalog
        .backup_info(&id)?
        .ok_or_else(|| CloudError::Failed(format!("Backup {id} for server {server} does not exist")))?;
    if format == "console" {
        for line in show_console(&id, &info) {
            println!("{line}");
        }
    } else {
        let key = info.server_name.clone().unwrap_or_default();
        let body = backup_to_json(&Catalog::backup_id(&id)?, &info);
        println!("{}", python_json(&serde_json::json!({ key: body }), None, false));
    }
    Ok(())
}
