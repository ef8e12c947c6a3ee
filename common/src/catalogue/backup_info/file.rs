//! Reading and writing a backup.info file (`FieldListFile.load` / `save`): one
//! `key=value` line per field, in [`BACKUP_INFO_KEYS`] order.

use std::fmt;
use std::path::{Path, PathBuf};

use super::types::{BackupInfo, BackupStatus, BACKUP_INFO_KEYS};
use super::values::{
    dict_repr, join_ids, list_repr, parse_dict, parse_display, parse_ids, parse_int, parse_repr_str, parse_seg_size,
    parse_str_dict, parse_str_list, parse_tablespaces, parse_time, parse_timeline, tablespaces_repr,
};
use crate::catalogue::backup_id::BackupId;
use crate::catalogue::error::CatalogueError;
use crate::catalogue::fsio::{create_dir_all_durable, io_err, read_optional, write_atomic};
use crate::catalogue::layout::ServerLayout;
use crate::catalogue::pyliteral::repr_str;
use crate::catalogue::pytime::format_py_datetime;
use crate::durable::parent_of;

/// Keys left out of the file when unset (Barman's `_hide_if_null`).
const HIDDEN_IF_NONE: [&str; 2] = ["backup_name", "snapshots_info"];

enum FieldError {
    Unknown,
    Invalid(String),
}

impl BackupInfo {
    /// Parses the content of a backup.info; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<BackupInfo, CatalogueError> {
        let mut info = BackupInfo::default();
        for line in text.split_inclusive('\n') {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(CatalogueError::InvalidLine { path: path.to_path_buf(), line: line.trim().to_owned() });
            };
            let (key, value) = (key.trim(), value.trim());
            info.set(key, (value != "None").then_some(value)).map_err(|e| field_error(e, path, key, value))?;
        }
        Ok(info)
    }

    /// Reads a backup.info file.
    pub fn read(path: &Path) -> Result<BackupInfo, CatalogueError> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| CatalogueError::InvalidLine { path: path.to_path_buf(), line: "<not UTF-8>".to_owned() })?;
        BackupInfo::parse(&text, path)
    }

    /// The path Barman reads for `id`: `meta/<id>-backup.info` if it exists or if the legacy
    /// `base/<id>/backup.info` does not, else the legacy one.
    pub fn locate(layout: &ServerLayout, id: &BackupId) -> PathBuf {
        let path = layout.backup_info_path(id);
        let old = layout.legacy_backup_info_path(id);
        if path.exists() || !old.exists() {
            path
        } else {
            old
        }
    }

    /// Loads the backup.info of `id` (see [`BackupInfo::locate`]); `None` if there is none.
    pub fn load(layout: &ServerLayout, id: &BackupId) -> Result<Option<BackupInfo>, CatalogueError> {
        let path = BackupInfo::locate(layout, id);
        let Some(bytes) = read_optional(&path)? else { return Ok(None) };
        let text = String::from_utf8(bytes)
            .map_err(|_| CatalogueError::InvalidLine { path: path.clone(), line: "<not UTF-8>".to_owned() })?;
        BackupInfo::parse(&text, &path).map(Some)
    }

    /// Saves to `meta/<id>-backup.info` (always the new location), durably.
    pub fn save(&self, layout: &ServerLayout, id: &BackupId) -> Result<(), CatalogueError> {
        self.write(&layout.backup_info_path(id))
    }

    /// Writes the file: a temp file in the same directory, fsync, rename, fsync the
    /// directory (Barman does not fsync the data; we do). Creates the directory if missing.
    pub fn write(&self, path: &Path) -> Result<(), CatalogueError> {
        create_dir_all_durable(parent_of(path))?;
        write_atomic(path, self.to_text().as_bytes())
    }

    /// The file content, byte-identical to what Barman 3.20.1 writes for the same values.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for key in BACKUP_INFO_KEYS {
            let value = self.field_text(key);
            if value.is_none() && HIDDEN_IF_NONE.contains(&key) {
                continue;
            }
            out.push_str(key);
            out.push('=');
            out.push_str(value.as_deref().unwrap_or("None"));
            out.push('\n');
        }
        out
    }

    fn set(&mut self, key: &str, v: Option<&str>) -> Result<(), FieldError> {
        match key {
            "backup_label" => self.backup_label = opt(v, parse_repr_str)?,
            "backup_name" => self.backup_name = v.map(str::to_owned),
            "begin_offset" => self.begin_offset = opt(v, parse_int)?,
            "begin_time" => self.begin_time = opt(v, parse_time)?,
            "begin_wal" => self.begin_wal = opt(v, parse_display)?,
            "begin_xlog" => self.begin_xlog = opt(v, parse_display)?,
            "children_backup_ids" => self.children_backup_ids = opt(v, parse_ids)?,
            "cluster_size" => self.cluster_size = opt(v, parse_int)?,
            "compression" => self.compression = v.map(str::to_owned),
            "config_file" => self.config_file = v.map(str::to_owned),
            "copy_stats" => self.copy_stats = opt(v, parse_str_dict)?,
            "data_checksums" => self.data_checksums = v.map(str::to_owned),
            "deduplicated_size" => self.deduplicated_size = opt(v, parse_int)?,
            "encryption" => self.encryption = v.map(str::to_owned),
            "end_offset" => self.end_offset = opt(v, parse_int)?,
            "end_time" => self.end_time = opt(v, parse_time)?,
            "end_wal" => self.end_wal = opt(v, parse_display)?,
            "end_xlog" => self.end_xlog = opt(v, parse_display)?,
            "error" => self.error = v.map(str::to_owned),
            _ => return self.set_second_half(key, v),
        }
        Ok(())
    }

    fn set_second_half(&mut self, key: &str, v: Option<&str>) -> Result<(), FieldError> {
        match key {
            "hba_file" => self.hba_file = v.map(str::to_owned),
            "ident_file" => self.ident_file = v.map(str::to_owned),
            "included_files" => self.included_files = opt(v, parse_str_list)?,
            "mode" => self.mode = v.map(str::to_owned),
            "parent_backup_id" => self.parent_backup_id = opt(v, |s| BackupId::new(s).map_err(|e| e.to_string()))?,
            "pgdata" => self.pgdata = v.map(str::to_owned),
            "server_name" => self.server_name = v.map(str::to_owned),
            "size" => self.size = opt(v, parse_int)?,
            "snapshots_info" => self.snapshots_info = opt(v, parse_dict)?,
            "status" => self.status = parse_status(v)?,
            "summarize_wal" => self.summarize_wal = v.map(str::to_owned),
            "systemid" => self.systemid = v.map(str::to_owned),
            "tablespaces" => self.tablespaces = opt(v, parse_tablespaces)?.flatten(),
            "timeline" => self.timeline = opt(v, parse_timeline)?,
            "version" => self.version = opt(v, parse_int)?,
            "xlog_segment_size" => self.xlog_segment_size = opt(v, parse_seg_size)?,
            _ => return Err(FieldError::Unknown),
        }
        Ok(())
    }

    /// The value text of `key` as Barman's dump functions produce it, `None` for `None`.
    fn field_text(&self, key: &str) -> Option<String> {
        match key {
            "backup_label" => self.backup_label.as_deref().filter(|s| !s.is_empty()).map(repr_str),
            "backup_name" => self.backup_name.clone(),
            "begin_offset" => text(self.begin_offset.as_ref()),
            "begin_time" => self.begin_time.as_ref().map(format_py_datetime),
            "begin_wal" => text(self.begin_wal.as_ref()),
            "begin_xlog" => text(self.begin_xlog.as_ref()),
            "children_backup_ids" => {
                self.children_backup_ids.as_ref().filter(|ids| !ids.is_empty()).map(|ids| join_ids(ids))
            }
            "cluster_size" => text(self.cluster_size.as_ref()),
            "compression" => self.compression.clone(),
            "config_file" => self.config_file.clone(),
            "copy_stats" => self.copy_stats.as_ref().filter(|d| !d.is_empty()).map(|d| dict_repr(d)),
            "data_checksums" => self.data_checksums.clone(),
            "deduplicated_size" => text(self.deduplicated_size.as_ref()),
            "encryption" => self.encryption.clone(),
            "end_offset" => text(self.end_offset.as_ref()),
            "end_time" => self.end_time.as_ref().map(format_py_datetime),
            "end_wal" => text(self.end_wal.as_ref()),
            "end_xlog" => text(self.end_xlog.as_ref()),
            "error" => self.error.clone(),
            _ => self.field_text_second_half(key),
        }
    }

    fn field_text_second_half(&self, key: &str) -> Option<String> {
        match key {
            "hba_file" => self.hba_file.clone(),
            "ident_file" => self.ident_file.clone(),
            "included_files" => self.included_files.as_ref().filter(|l| !l.is_empty()).map(|l| list_repr(l)),
            "mode" => self.mode.clone(),
            "parent_backup_id" => text(self.parent_backup_id.as_ref()),
            "pgdata" => self.pgdata.clone(),
            "server_name" => self.server_name.clone(),
            "size" => text(self.size.as_ref()),
            "snapshots_info" => text(self.snapshots_info.as_ref()),
            "status" => Some(self.status.as_str().to_owned()),
            "summarize_wal" => self.summarize_wal.clone(),
            "systemid" => self.systemid.clone(),
            "tablespaces" => self.tablespaces.as_ref().filter(|t| !t.is_empty()).map(|t| tablespaces_repr(t)),
            "timeline" => text(self.timeline.as_ref()),
            "version" => text(self.version.as_ref()),
            "xlog_segment_size" => self.xlog_segment_size.map(|s| s.bytes().to_string()),
            _ => None,
        }
    }
}

fn field_error(e: FieldError, path: &Path, key: &str, value: &str) -> CatalogueError {
    let path = path.to_path_buf();
    match e {
        FieldError::Unknown => CatalogueError::UnsupportedField { path, key: key.to_owned() },
        FieldError::Invalid(reason) => {
            CatalogueError::InvalidValue { path, key: key.to_owned(), value: value.to_owned(), reason }
        }
    }
}

fn parse_status(v: Option<&str>) -> Result<BackupStatus, FieldError> {
    let text = v.ok_or_else(|| FieldError::Invalid("status cannot be None".into()))?;
    text.parse().map_err(FieldError::Invalid)
}

fn opt<T>(v: Option<&str>, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<Option<T>, FieldError> {
    v.map(parse).transpose().map_err(FieldError::Invalid)
}

fn text<T: fmt::Display>(v: Option<&T>) -> Option<String> {
    v.map(ToString::to_string)
}
