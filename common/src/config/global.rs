//! The global settings of `[barman]` (`Config._parse_global_config`): the catalogue root,
//! the user, locks, logging and the include directory. Empty and `None` values mean
//! "use the default" here.

use std::path::PathBuf;

use super::error::ConfigError;
use super::ini::Ini;
use super::parse::parse_boolean;
use super::resolve::{invalid_value, strip_quotes};

/// Barman's default `log_format`.
pub const DEFAULT_LOG_FORMAT: &str = "%(asctime)s [%(process)s] %(name)s %(levelname)s: %(message)s";

/// The `[barman]` settings that are not server options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    /// `barman_home`: root of the catalogue (required).
    pub barman_home: PathBuf,
    /// `barman_user` (default `barman`): the user Barman runs as.
    pub barman_user: String,
    /// `barman_lock_directory` (default `barman_home`): where `.*.lock` files live.
    pub barman_lock_directory: PathBuf,
    /// `lock_directory_cleanup` (default true): cron removes stale lock files.
    pub lock_directory_cleanup: bool,
    /// `config_changes_queue` (default `<barman_home>/cfg_changes.queue`).
    pub config_changes_queue: PathBuf,
    /// `log_file`; `None` means stderr.
    pub log_file: Option<PathBuf>,
    /// `log_level` as written (default `INFO`); Barman accepts a level name in any case
    /// or a number, and only logs a warning for anything else.
    pub log_level: String,
    /// `log_format` (default [`DEFAULT_LOG_FORMAT`]), a Python logging format. Barman
    /// warns that it is an invalid option even though it uses it.
    pub log_format: String,
    /// `configuration_files_directory`, as written (not `~`-expanded).
    pub configuration_files_directory: Option<PathBuf>,
}

impl GlobalConfig {
    /// Reads `[barman]` from the merged configuration.
    pub(crate) fn from_ini(ini: &Ini) -> Result<GlobalConfig, ConfigError> {
        let get = |key: &str| global_value(ini, key);
        let barman_home = get("barman_home")?.ok_or_else(|| ConfigError::MissingRequired {
            section: "barman".to_owned(),
            key: "barman_home".to_owned(),
        })?;
        Ok(GlobalConfig {
            barman_user: get("barman_user")?.unwrap_or_else(|| "barman".to_owned()),
            barman_lock_directory: PathBuf::from(get("barman_lock_directory")?.unwrap_or_else(|| barman_home.clone())),
            lock_directory_cleanup: lock_directory_cleanup(ini)?,
            config_changes_queue: PathBuf::from(
                get("config_changes_queue")?.unwrap_or_else(|| format!("{barman_home}/cfg_changes.queue")),
            ),
            log_file: get("log_file")?.map(PathBuf::from),
            log_level: get("log_level")?.unwrap_or_else(|| "INFO".to_owned()),
            log_format: get("log_format")?.unwrap_or_else(|| DEFAULT_LOG_FORMAT.to_owned()),
            configuration_files_directory: get("configuration_files_directory")?.map(PathBuf::from),
            barman_home: PathBuf::from(barman_home),
        })
    }
}

/// `Config.get("barman", key)` followed by Python's `or default`: unset, empty and `None`
/// all give `None`.
pub(crate) fn global_value(ini: &Ini, key: &str) -> Result<Option<String>, ConfigError> {
    let Some(entry) = ini.get("barman", key)? else {
        return Ok(None);
    };
    if entry.text == "None" {
        return Ok(None);
    }
    let text = strip_quotes(&entry.text);
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// `parse_boolean(get(...) or "true")`: an invalid value stops Barman, so it is an error.
fn lock_directory_cleanup(ini: &Ini) -> Result<bool, ConfigError> {
    let Some(entry) = ini.get("barman", "lock_directory_cleanup")? else {
        return Ok(true);
    };
    let text = strip_quotes(&entry.text);
    if text.is_empty() || entry.text == "None" {
        return Ok(true);
    }
    parse_boolean(text)
        .map_err(|reason| invalid_value(&entry.origin, "barman", "lock_directory_cleanup", text, &reason))
}
