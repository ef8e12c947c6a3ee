//! What Barman decides about a server beyond parsing: the checks and fix-ups of
//! `Server.__init__` / `BackupManager` / the backup executors (disabled reasons, forced
//! archiver, default backup strategy, minimum redundancy, bandwidth limits, retention),
//! conflicting paths between and within servers, and active models.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

use super::error::ConfigError;
use super::options::OptionValue;
use super::parse::parse_python_int;
use super::resolve::{invalid_value, Resolved};
use super::server::{ModelConfig, ServerConfig};
use super::types::{
    BackupCompression, BackupCompressionFormat, BackupCompressionLocation, BackupMethod, BackupOption, ReuseBackup,
};
use super::warning::{ConfigWarning, WarningLevel};

/// Collects the diagnostics of one server's checks.
pub(crate) struct ServerChecks<'a> {
    pub(crate) strict: bool,
    pub(crate) warnings: &'a mut Vec<ConfigWarning>,
}

impl ServerChecks<'_> {
    /// Runs `Server.__init__`'s checks and fix-ups on `s`, in Barman's order.
    pub(crate) fn run(&mut self, s: &mut ServerConfig) -> Result<(), ConfigError> {
        // Passive nodes get no Postgres connection, no archivers, and an executor that
        // only needs primary_ssh_command (set, by definition).
        if s.active && !s.is_passive() {
            check_connections(s);
            self.check_executor(s);
            self.check_archivers(s);
        }
        self.init_bandwidth_limits(s)?;
        self.init_minimum_redundancy(s)?;
        self.init_retention(s)
    }

    fn warn(&mut self, s: &ServerConfig, level: WarningLevel, message: String, key: Option<&str>) {
        let origin = key.and_then(|k| s.source(k)).map(|src| src.origin.clone());
        self.warnings.push(ConfigWarning::server(level, s.name(), message, origin));
    }

    /// A log-level complaint about `key`'s value, or (strict) an error at its line.
    fn bad_value(&mut self, s: &ServerConfig, key: &str, value: &str, message: String) -> Result<(), ConfigError> {
        if let (true, Some(src)) = (self.strict, s.source(key)) {
            return Err(invalid_value(&src.origin, &src.section, key, value, &message));
        }
        self.warn(s, WarningLevel::Log, message, Some(key));
        Ok(())
    }

    /// `BackupManager.__init__`: the executor for the backup method and its validation.
    fn check_executor(&mut self, s: &mut ServerConfig) {
        match s.backup_method {
            BackupMethod::Postgres => self.check_postgres_method(s),
            BackupMethod::LocalRsync if s.ssh_command.is_some() => s.disabled_reasons.push(format!(
                "Local copy requires ssh_command in barman configuration to be empty for server {}",
                s.name()
            )),
            BackupMethod::Rsync if s.ssh_command.is_none() => s
                .disabled_reasons
                .push(format!("Missing or invalid ssh_command in barman configuration for server {}", s.name())),
            BackupMethod::Rsync | BackupMethod::LocalRsync => self.check_rsync_method(s),
            // Snapshot and cloud executors are out of scope: not validated here.
            BackupMethod::Snapshot | BackupMethod::LocalToCloud => {}
        }
    }

    /// `ExternalBackupExecutor` (default strategy) + `RsyncBackupExecutor.validate_configuration`.
    fn check_rsync_method(&mut self, s: &mut ServerConfig) {
        let has_strategy = s.backup_options.contains(&BackupOption::ConcurrentBackup)
            || s.backup_options.contains(&BackupOption::ExclusiveBackup);
        if !has_strategy {
            s.backup_options.insert(BackupOption::ConcurrentBackup);
            let message =
                format!("No backup strategy set for server '{}' (using default 'concurrent_backup').", s.name());
            self.warn(s, WarningLevel::Warning, message, None);
        }
        if s.backup_compression.is_some() {
            s.disabled_reasons.push("backup_compression option is not supported by rsync backup_method".to_owned());
        }
    }

    /// `PostgresBackupExecutor.validate_configuration` (the parts that need no connection).
    fn check_postgres_method(&mut self, s: &mut ServerConfig) {
        if s.backup_options.remove(&BackupOption::ExclusiveBackup) {
            let message = "'exclusive_backup' is not a valid backup_option using postgres backup_method. \
                           Overriding with 'concurrent_backup'.";
            self.warn(s, WarningLevel::Warning, message.to_owned(), Some("backup_options"));
        }
        s.backup_options.insert(BackupOption::ConcurrentBackup);
        let unsupported = [
            ("tablespace_bandwidth_limit", s.value("tablespace_bandwidth_limit").is_some()),
            // Barman refuses both; barman-backup implements `link` for its plain backups
            // (identical files become hard links to the previous backup's), so only `copy`,
            // meaningless for a streamed backup, still disables the server.
            ("reuse_backup", matches!(s.reuse_backup, Some(ReuseBackup::Copy))),
            ("network_compression", s.network_compression),
        ];
        for (option, set) in unsupported {
            if set {
                s.disabled_reasons.push(format!("{option} option is not supported by postgres backup_method"));
            }
        }
        let issues = backup_compression_issues(s);
        s.disabled_reasons.extend(issues);
    }

    /// `Server._init_archivers` (configuration part).
    fn check_archivers(&mut self, s: &mut ServerConfig) {
        if !s.archiver && s.streaming_archiver && s.slot_name.is_none() {
            s.disabled_reasons.push(
                "Streaming-only archiver requires 'streaming_conninfo' and 'slot_name' \
                 options to be properly configured"
                    .to_owned(),
            );
        }
        if !s.archiver && !s.streaming_archiver {
            let message = format!(
                "No archiver enabled for server '{}'. Please turn on 'archiver', \
                 'streaming_archiver' or both",
                s.name()
            );
            self.warn(s, WarningLevel::Warning, message, None);
            self.warn(s, WarningLevel::Warning, "Forcing 'archiver = on'".to_owned(), None);
            s.archiver = true;
        }
    }

    /// `Server._init_bandwidth_limits`.
    fn init_bandwidth_limits(&mut self, s: &mut ServerConfig) -> Result<(), ConfigError> {
        if let Some(raw) = raw_text(s, "bandwidth_limit") {
            if let Ok(n) = parse_python_int(&raw) {
                s.bandwidth_limit = Some(n);
            } else {
                let msg = format!("Invalid bandwidth_limit \"{raw}\" for server \"{}\" (fallback to \"0\")", s.name());
                self.bad_value(s, "bandwidth_limit", &raw, msg)?;
            }
        }
        let Some(raw) = raw_text(s, "tablespace_bandwidth_limit") else {
            return Ok(());
        };
        let mut rules = BTreeMap::new();
        for rule in raw.split_whitespace() {
            let parsed = rule.split_once(':').and_then(|(k, v)| Some((k, parse_python_int(v).ok()?)));
            match parsed {
                Some((name, kbps)) if Some(kbps) != s.bandwidth_limit => {
                    rules.insert(name.to_owned(), kbps);
                }
                Some(_) => {}
                None => {
                    let msg = format!("Invalid tablespace_bandwidth_limit rule '{rule}'");
                    self.bad_value(s, "tablespace_bandwidth_limit", &raw, msg)?;
                }
            }
        }
        s.tablespace_bandwidth_limit = rules;
        Ok(())
    }

    /// `Server._init_minimum_redundancy`.
    fn init_minimum_redundancy(&mut self, s: &mut ServerConfig) -> Result<(), ConfigError> {
        let raw = raw_text(s, "minimum_redundancy").unwrap_or_else(|| "None".to_owned());
        let problem = match parse_python_int(&raw) {
            Ok(n) if n < 0 => "Negative value of minimum_redundancy",
            Ok(n) => match u32::try_from(n) {
                Ok(n) => {
                    s.minimum_redundancy = n;
                    return Ok(());
                }
                Err(_) => "Invalid minimum_redundancy",
            },
            Err(_) => "Invalid minimum_redundancy",
        };
        let msg = format!("{problem} \"{raw}\" for server \"{}\" (fallback to \"0\")", s.name());
        self.bad_value(s, "minimum_redundancy", &raw, msg)
    }

    /// `Server._init_retention_policies`.
    fn init_retention(&mut self, s: &mut ServerConfig) -> Result<(), ConfigError> {
        if s.retention_policy_mode != "auto" {
            let raw = s.retention_policy_mode.clone();
            let msg = format!(
                "Unsupported retention_policy_mode \"{raw}\" for server \"{}\" (fallback to \"auto\")",
                s.name()
            );
            self.bad_value(s, "retention_policy_mode", &raw, msg)?;
            "auto".clone_into(&mut s.retention_policy_mode);
        }
        let Some(raw) = raw_text(s, "retention_policy") else {
            return Ok(());
        };
        if s.wal_retention_policy.as_deref() != Some("main") {
            let wal = s.wal_retention_policy.clone().unwrap_or_else(|| "None".to_owned());
            let msg = format!(
                "Unsupported wal_retention_policy value \"{wal}\" for server \"{}\" (fallback to \"main\")",
                s.name()
            );
            self.bad_value(s, "wal_retention_policy", &wal, msg)?;
            s.wal_retention_policy = Some("main".to_owned());
        }
        if let Ok(policy) = raw.parse() {
            s.retention_policy = Some(policy);
        } else {
            let msg = format!("Invalid retention_policy setting \"{raw}\" for server \"{}\"", s.name());
            self.bad_value(s, "retention_policy", &raw, msg)?;
            s.retention_policy_invalid = Some(raw);
        }
        Ok(())
    }
}

/// The resolved text of a string option.
fn raw_text(s: &ServerConfig, key: &str) -> Option<String> {
    s.value(key).and_then(OptionValue::as_str).map(str::to_owned)
}

/// `Server._init_postgres` (configuration part): conninfo strings must be present and
/// parse as `key=value` words (`PostgreSQL.parse_dsn`).
fn check_connections(s: &mut ServerConfig) {
    let name = s.name().to_owned();
    let problem = |key: &str, value: Option<&str>| match value {
        None => Some(format!("Missing '{key}' parameter for server '{name}'")),
        Some(dsn) if !dsn.split_whitespace().all(|w| w.contains('=')) => {
            Some(format!("Cannot connect to postgres: \"{dsn}\" is not a valid connection string"))
        }
        Some(_) => None,
    };
    let main = problem("conninfo", s.conninfo.as_deref())
        .or_else(|| s.primary_conninfo.as_deref().and_then(|p| problem("primary_conninfo", Some(p))));
    let streaming = (s.backup_method == BackupMethod::Postgres || s.streaming_archiver)
        .then(|| problem("streaming_conninfo", s.streaming_conninfo.as_deref()))
        .flatten();
    if let Some(msg) = main {
        s.disabled_reasons.push(format!("PostgreSQL connection: {msg}"));
    }
    if let Some(msg) = streaming {
        s.disabled_reasons.push(format!("Streaming connection: {msg}"));
    }
}

/// `Config._check_conflicting_paths`: servers in name order, their six directories in
/// label order; a clash inside one server disables it, a clash between two servers is
/// a global error (returned).
pub(crate) fn check_conflicting_paths(servers: &mut BTreeMap<String, ServerConfig>) -> Vec<String> {
    let mut seen: HashMap<PathBuf, (&'static str, String)> = HashMap::new();
    let mut global = Vec::new();
    for (name, s) in servers.iter_mut() {
        for (label, path) in server_paths(s) {
            let text = path.to_string_lossy().into_owned();
            if text.contains("://") {
                continue;
            }
            let real = realpath(&path);
            let Some((first_label, first_server)) = seen.get(&real) else {
                seen.insert(real, (label, name.clone()));
                continue;
            };
            let link = if real.as_os_str() == path.as_os_str() {
                String::new()
            } else {
                format!(" (symlink to: {})", real.display())
            };
            if first_server == name {
                s.disabled_reasons.push(format!(
                    "Conflicting path: {label}={text}{link} conflicts with '{first_label}' for server '{first_server}'"
                ));
            } else {
                global.push(format!(
                    "Conflicting path: {label}={text}{link} for server '{name}' conflicts with \
                     '{first_label}' for server '{first_server}'"
                ));
            }
        }
    }
    global
}

fn server_paths(s: &ServerConfig) -> [(&'static str, PathBuf); 6] {
    [
        ("backup_directory", s.backup_directory.clone()),
        ("basebackups_directory", s.basebackups_directory.clone()),
        ("errors_directory", s.errors_directory.clone()),
        ("incoming_wals_directory", s.incoming_wals_directory.clone()),
        ("streaming_wals_directory", s.streaming_wals_directory.clone()),
        ("wals_directory", s.wals_directory.clone()),
    ]
}

/// Python's `os.path.realpath` (non-strict): absolute, `.`/`..` resolved, symlinks
/// followed as far as they exist.
pub(crate) fn realpath(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
    };
    resolve_links(&absolute, 0)
}

fn resolve_links(path: &Path, depth: usize) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => {
                out.push(part);
                if let (Ok(target), true) = (fs::read_link(&out), depth < 40) {
                    out.pop();
                    out = resolve_links(&out.join(target), depth + 1);
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// `Config._apply_models` for one server: reads `<backup_directory>/.active-model.auto`
/// and lays the model over `resolved`. Returns the model applied and any disabled reason.
pub(crate) fn apply_active_model(
    name: &str,
    resolved: &mut Resolved,
    models: &BTreeMap<String, ModelConfig>,
    warnings: &mut Vec<ConfigWarning>,
) -> (Option<String>, Option<String>) {
    let Some(backup_directory) = resolved.values.get("backup_directory").map(ToString::to_string) else {
        return (None, None);
    };
    let Some(active) = read_active_model(&Path::new(&backup_directory).join(".active-model.auto")) else {
        return (None, None);
    };
    let Some(model) = models.get(&active) else {
        let reason = format!(
            "Model '{active}' is set as the active model for the server '{name}' but the model does not exist."
        );
        return (None, Some(reason));
    };
    let server_cluster = resolved.values.get("cluster").map(ToString::to_string);
    if server_cluster.as_deref() != model.cluster() {
        let message = format!(
            "Model '{active}' has 'cluster={}', which is not compatible with 'cluster={}' from server '{name}'",
            model.cluster().unwrap_or("None"),
            server_cluster.as_deref().unwrap_or("None"),
        );
        warnings.push(ConfigWarning { level: WarningLevel::Error, ..ConfigWarning::always(message, None) });
        return (None, None);
    }
    overlay(resolved, model);
    (Some(active), None)
}

fn overlay(resolved: &mut Resolved, model: &ModelConfig) {
    for (key, value) in model.overrides() {
        resolved.values.insert(key, value.clone());
        match model.resolved().sources.get(key) {
            Some(source) => resolved.sources.insert(key, source.clone()),
            None => resolved.sources.remove(key),
        };
    }
}

/// The stripped content of the active-model file; `None` when missing, unreadable or blank.
fn read_active_model(path: &Path) -> Option<String> {
    match fs::read_to_string(path) {
        Ok(text) => Some(text.trim().to_owned()).filter(|t| !t.is_empty()),
        // Barman fails on an unreadable file; a missing one means "no model".
        Err(_) => None,
    }
}

/// Barman's `PgBaseBackupCompressionOption.validate` (pg_basebackup 15+ client rules) for
/// `backup_compression*`: each problem, in Barman's words. Barman disables the server with
/// them; `barman-backup` refuses to start.
pub fn backup_compression_issues(s: &ServerConfig) -> Vec<String> {
    let Some(method) = s.backup_compression else { return Vec::new() };
    let location = s.backup_compression_location;
    let plain = s.backup_compression_format == Some(BackupCompressionFormat::Plain);
    let mut issues = Vec::new();
    if plain && location != Some(BackupCompressionLocation::Server) {
        issues.push(format!(
            "backup_compression_format plain is not compatible with backup_compression_location {}",
            location.map_or("None", BackupCompressionLocation::as_str)
        ));
    }
    issues.extend(compression_level_issue(method, s.backup_compression_level));
    issues.extend(compression_workers_issue(method, s.backup_compression_workers));
    issues
}

/// `backup_compression_level` out of the method's range.
fn compression_level_issue(method: BackupCompression, level: Option<i64>) -> Option<String> {
    let unsupported =
        |l: i64, rest: &str| format!("backup_compression_level {l} unsupported by compression algorithm. {rest}");
    let l = level?;
    match method {
        BackupCompression::Gzip if !(1..=9).contains(&l) && l != -1 => {
            let mut msg = unsupported(
                l,
                "gzip expects a compression level between 1 and 9 (-1 will use default compression level).",
            );
            if l == 0 {
                msg.push_str(
                    " If you need to create an archive not compressed, you should set `backup_compression = none`.",
                );
            }
            Some(msg)
        }
        BackupCompression::Lz4 if !(0..=12).contains(&l) => Some(unsupported(
            l,
            "lz4 expects a compression level between 1 and 12 (0 will use default compression level).",
        )),
        BackupCompression::Zstd if !(-131_072..=22).contains(&l) => Some(unsupported(
            l,
            "'zstd' expects a compression level between -131072 and 22 (3 will use default compression level).",
        )),
        BackupCompression::NoCompression if l != 0 => {
            Some("backup_compression none only supports backup_compression_level 0.".into())
        }
        _ => None,
    }
}

/// `backup_compression_workers` with a method that takes none, or a negative count.
fn compression_workers_issue(method: BackupCompression, workers: Option<i64>) -> Option<String> {
    let w = workers?;
    match method {
        BackupCompression::Gzip => Some("backup_compression_workers is not compatible with compression gzip".into()),
        BackupCompression::Lz4 => Some("backup_compression_workers is not compatible with compression lz4.".into()),
        BackupCompression::Zstd if w < 0 => {
            Some(format!("backup_compression_workers should be a positive integer: '{w}' is invalid."))
        }
        BackupCompression::Zstd => None,
        BackupCompression::NoCompression => {
            Some("backup_compression_workers is not compatible with compression 'none'.".into())
        }
    }
}

/// Barman's `EncryptionManager._validate_gpg` for `encryption = gpg`: the first problem, in
/// Barman's words (it checks them in this order). Encrypted backups must be tar backups of
/// the postgres method, so a plain-format backup with encryption is refused.
pub fn encryption_issue(s: &ServerConfig) -> Option<String> {
    s.encryption?;
    let issue = if s.encryption_key_id.is_none() {
        "Encryption is set as gpg, but encryption_key_id is unset"
    } else if s.backup_method != BackupMethod::Postgres {
        "Encryption is set as gpg, but backup_method != postgres"
    } else if s.backup_compression.is_none() {
        "Encryption is set as gpg, but backup_compression is unset"
    } else if s.backup_compression_format != Some(BackupCompressionFormat::Tar) {
        "Encryption is set as gpg, but backup_compression_format != tar"
    } else {
        return None;
    };
    Some(issue.to_owned())
}
