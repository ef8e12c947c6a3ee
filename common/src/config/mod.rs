//! Barman-compatible configuration: reads `barman.conf`, the `*.conf` files of
//! `configuration_files_directory` and `<barman_home>/.barman.auto.conf` exactly as
//! Barman 3.20.1 does, and gives typed, defaulted, inherited settings per server.
//!
//! Loading ([`Config::load`]): the main file, then every `*.conf` of the include
//! directory in name order (a file may repeat `[barman]` only without changing it), then
//! `.barman.auto.conf`. Then per section: `all` is refused, `model = true` sections become
//! [`ModelConfig`]s, the others [`ServerConfig`]s. Each server option comes from the
//! server section, else (inheritable options) from `[barman]`, else from its default.
//! Finally the checks Barman runs when it builds a `Server` mark servers disabled, force
//! `archiver = on` when no archiver is on, and so on.
//!
//! Nothing is printed: warnings come back as [`ConfigWarning`]s with their file and line.
//! In strict mode ([`LoadOptions::strict`]) a value that fails its parser is an error
//! instead ([`ConfigError::InvalidValue`], `file:line: invalid value …`). Syntax errors
//! are always errors with `file:line`.
//!
//! Where Barman 3.20.1's source disagrees with the written spec, the source wins:
//! * values are interpolated twice (see `ini.rs`): a literal `%` must be written `%%%%`;
//!   `%%s` is an error and `log_format = %%(asctime)s …` fails, `%%%%(asctime)s` works;
//! * `None` or empty blocks inheritance only for options whose parser accepts an empty
//!   string (text, `compression`, `compression_level`, CSV options); for booleans,
//!   integers and enumerations Barman warns about `''` and inherits the `[barman]` value;
//! * the include-directory error names the file by its base name only;
//! * `[DEFAULT]` only reaches the sections of its own file, and its keys are copied into
//!   them (so an unknown `[DEFAULT]` key is warned about once per section).
//!
//! Deliberate differences from Barman: unknown keys starting with `aws_`, `azure_`,
//! `gcp_`, `snapshot_`, `cloud_`, `backup_compression`, `encryption` (and
//! `combine_mode`) are accepted silently; an unreadable included
//! file gives a warning instead of being skipped silently; a server directory set to
//! `None` is an error instead of a crash; and `wal_retention_window` is our own option.

mod checks;
pub use checks::{backup_compression_issues, encryption_issue};
mod error;
mod global;
mod ini;
mod options;
mod parse;
mod resolve;
mod retention;
mod server;
mod types;
pub mod update;
mod warning;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

pub use error::{ConfigError, InvalidValue, Origin};
pub use global::{GlobalConfig, DEFAULT_LOG_FORMAT};
pub use options::{documented_options, OptionDoc, OptionValue};
pub use parse::{parse_boolean, parse_python_int, parse_si_suffix, parse_time_interval};
pub use resolve::ValueSource;
pub use retention::{RetentionPolicy, RetentionPolicyParseError, WindowUnit};
pub use server::{HookEvent, HookPhase, ModelConfig, ServerConfig};
pub use types::{
    BackupCompression, BackupCompressionFormat, BackupCompressionLocation, BackupMethod, BackupOption, Compression,
    CompressionLevel, CreateSlot, RecoveryOption, ReuseBackup, StagingLocation,
};
pub use warning::{ConfigWarning, WarningLevel, WarningScope};

use checks::{apply_active_model, check_conflicting_paths, ServerChecks};
use global::global_value;
use ini::{Entry, Ini};
use options::{global_key_allowed, model_key_allowed, server_key_allowed};
use resolve::{invalid_value, Resolved, Resolver};

/// The environment variable naming the configuration file when `-c` is not given.
pub const CONFIG_FILE_ENV: &str = "BARMAN_CONFIG_FILE";

/// The files tried, in order, when neither `-c` nor the environment names one.
pub const DEFAULT_CONFIG_FILES: [&str; 3] = ["~/.barman.conf", "/etc/barman.conf", "/etc/barman/barman.conf"];

/// Section names that cannot be servers.
pub const FORBIDDEN_SERVER_NAMES: &[&str] = &["all"];

/// The directory options a server cannot do without (Barman fails on an unset one).
const DIRECTORY_KEYS: [&str; 7] = [
    "backup_directory",
    "basebackups_directory",
    "errors_directory",
    "incoming_wals_directory",
    "streaming_wals_directory",
    "wals_directory",
    "xlogdb_directory",
];

/// How to load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Turn values that fail their parser into [`ConfigError::InvalidValue`] instead of
    /// warnings (Barman itself only warns).
    pub strict: bool,
}

/// A loaded configuration and the diagnostics Barman would print while loading it.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings, in the order Barman emits them.
    pub warnings: Vec<ConfigWarning>,
}

/// The whole Barman configuration.
#[derive(Debug, Clone)]
pub struct Config {
    main_file: PathBuf,
    files: Vec<PathBuf>,
    global: GlobalConfig,
    servers: BTreeMap<String, ServerConfig>,
    models: BTreeMap<String, ModelConfig>,
    global_errors: Vec<String>,
}

impl Config {
    /// Loads `path` (as `barman -c path`), warning about invalid values.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        Config::load_with(path, &LoadOptions::default())
    }

    /// Loads `path` with `options`.
    pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Loaded, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::NotFound(path.to_path_buf()));
        }
        let loader = Loader { ini: Ini::default(), files: Vec::new(), warnings: Vec::new(), strict: options.strict };
        loader.load(path)
    }

    /// The main configuration file, as given or found: the path to hand down with `-c`.
    pub fn config_file(&self) -> &Path {
        &self.main_file
    }

    /// Every file read, in order (main file, included files, auto file).
    pub fn loaded_files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The `[barman]` settings.
    pub fn global(&self) -> &GlobalConfig {
        &self.global
    }

    /// The server `name`.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.get(name)
    }

    /// All servers, in name order.
    pub fn servers(&self) -> impl Iterator<Item = &ServerConfig> {
        self.servers.values()
    }

    /// The model `name`.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.get(name)
    }

    /// All models, in name order.
    pub fn models(&self) -> impl Iterator<Item = &ModelConfig> {
        self.models.values()
    }

    /// Errors that concern several servers (a path shared by two of them). Barman prints
    /// them as `ERROR:` lines and stops before any server command.
    pub fn global_errors(&self) -> &[String] {
        &self.global_errors
    }
}

/// Loads `path` with the default options (same as [`Config::load`]).
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    Config::load(path)
}

/// Finds the configuration file ([`find_config_file`]) and loads it.
pub fn load_default(explicit: Option<&Path>, options: &LoadOptions) -> Result<Loaded, ConfigError> {
    Config::load_with(&find_config_file(explicit)?, options)
}

/// The configuration file to use: `explicit` (`-c`), else `$BARMAN_CONFIG_FILE`, else the
/// first readable one of [`DEFAULT_CONFIG_FILES`]. A named file must exist.
pub fn find_config_file(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let env = std::env::var_os(CONFIG_FILE_ENV);
    let candidates: Vec<PathBuf> = DEFAULT_CONFIG_FILES.iter().map(|f| expand_user(Path::new(f))).collect();
    locate_config_file(explicit, env.as_deref(), &candidates)
}

fn locate_config_file(
    explicit: Option<&Path>,
    env: Option<&OsStr>,
    candidates: &[PathBuf],
) -> Result<PathBuf, ConfigError> {
    let named =
        explicit.map(Path::to_path_buf).or_else(|| env.map(PathBuf::from)).filter(|p| !p.as_os_str().is_empty());
    if let Some(path) = named {
        return if path.exists() { Ok(path) } else { Err(ConfigError::NotFound(path)) };
    }
    candidates.iter().find(|c| c.is_file() && fs::File::open(c).is_ok()).cloned().ok_or(ConfigError::NoConfigFile)
}

/// Python's `os.path.expanduser`: `~` and `~user` at the start.
pub(crate) fn expand_user(path: &Path) -> PathBuf {
    let Some(rest) = path.to_str().and_then(|s| s.strip_prefix('~')) else {
        return path.to_path_buf();
    };
    let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let home = if user.is_empty() {
        std::env::var_os("HOME").map(PathBuf::from).or_else(|| {
            let uid = nix::unistd::Uid::current();
            nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.dir)
        })
    } else {
        nix::unistd::User::from_name(user).ok().flatten().map(|u| u.dir)
    };
    match home {
        Some(home) if tail.is_empty() => home,
        Some(home) => home.join(tail),
        None => path.to_path_buf(),
    }
}

/// The state of one load.
struct Loader {
    ini: Ini,
    files: Vec<PathBuf>,
    warnings: Vec<ConfigWarning>,
    strict: bool,
}

type GlobalSnapshot = BTreeSet<(String, String)>;

/// Resolved sections, before the typed servers are built.
#[derive(Default)]
struct Sections {
    servers: Vec<(String, Resolved)>,
    models: BTreeMap<String, ModelConfig>,
}

/// The outcome of populating servers and models.
struct Populated {
    servers: BTreeMap<String, ServerConfig>,
    models: BTreeMap<String, ModelConfig>,
    global_errors: Vec<String>,
}

impl Loader {
    fn load(mut self, path: &Path) -> Result<Loaded, ConfigError> {
        let main = expand_user(path);
        self.ini.merge_file(&main)?;
        self.files.push(main);
        if !self.ini.has_section("barman") {
            return Err(ConfigError::NoGlobalSection(path.to_path_buf()));
        }
        let global_items = self.ini.items("barman")?;
        let snapshot = snapshot_of(&global_items);
        self.include_directory(&snapshot)?;
        self.include_auto_conf(&snapshot)?;
        let global = GlobalConfig::from_ini(&self.ini)?;
        self.warn_unknown_global_keys(&global_items);
        let populated = self.populate(&global)?;
        let config = Config {
            main_file: path.to_path_buf(),
            files: self.files,
            global,
            servers: populated.servers,
            models: populated.models,
            global_errors: populated.global_errors,
        };
        Ok(Loaded { config, warnings: self.warnings })
    }

    fn log(&mut self, message: String) {
        self.warnings.push(ConfigWarning { level: WarningLevel::Log, ..ConfigWarning::always(message, None) });
    }

    /// `Config.load_configuration_files_directory`.
    fn include_directory(&mut self, snapshot: &GlobalSnapshot) -> Result<(), ConfigError> {
        let Some(dir) = global_value(&self.ini, "configuration_files_directory")? else {
            return Ok(());
        };
        let expanded = expand_user(Path::new(&dir));
        let listing = fs::read_dir(&expanded).ok().filter(|_| expanded.is_dir());
        let Some(listing) = listing else {
            self.log(format!("Ignoring the \"configuration_files_directory\" option as \"{dir}\" is not a directory"));
            return Ok(());
        };
        let mut files: Vec<PathBuf> = listing
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(is_conf_name))
            .collect();
        files.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
        files.iter().try_for_each(|f| self.include_file(f, snapshot))
    }

    /// `<barman_home>/.barman.auto.conf`, if it exists.
    fn include_auto_conf(&mut self, snapshot: &GlobalSnapshot) -> Result<(), ConfigError> {
        let Some(home) = global_value(&self.ini, "barman_home")? else {
            return Ok(());
        };
        let auto = PathBuf::from(format!("{home}/.barman.auto.conf"));
        if auto.exists() {
            self.include_file(&auto, snapshot)?;
        }
        Ok(())
    }

    /// `Config.load_config_file`: merge one file; it must not change `[barman]`.
    fn include_file(&mut self, file: &Path, snapshot: &GlobalSnapshot) -> Result<(), ConfigError> {
        let basename = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !file.exists() {
            self.log(format!("Discarding configuration file: {basename} (not found)"));
            return Ok(());
        }
        if !file.is_file() {
            self.log(format!("Discarding configuration file: {basename} (not a file)"));
            return Ok(());
        }
        if let Err(e) = fs::File::open(file) {
            // Python's ConfigParser.read skips unreadable files silently; say so at least.
            let message = format!("Discarding configuration file: {basename} (cannot read: {e})");
            self.warnings.push(ConfigWarning::always(message, None));
            return Ok(());
        }
        self.ini.merge_file(file)?;
        self.files.push(file.to_path_buf());
        if snapshot_of(&self.ini.items("barman")?) != *snapshot {
            return Err(ConfigError::GlobalSectionChanged { basename, file: file.to_path_buf() });
        }
        Ok(())
    }

    /// `Config.validate_global_config`: unknown keys of the main file's `[barman]`.
    fn warn_unknown_global_keys(&mut self, items: &[(String, Entry)]) {
        for (key, entry) in items.iter().filter(|(k, _)| !global_key_allowed(k)) {
            let message = format!("Invalid configuration option \"{key}\" in [barman] section.");
            self.warnings.push(ConfigWarning::always(message, Some(entry.origin.clone())));
        }
    }

    /// `Config._populate_servers_and_models` plus the per-server `Server` checks.
    fn populate(&mut self, global: &GlobalConfig) -> Result<Populated, ConfigError> {
        let sections = self.resolve_sections(global)?;
        let mut servers = BTreeMap::new();
        let mut model_reasons = Vec::new();
        for (name, mut values) in sections.servers {
            self.require_directories(&name, &values)?;
            let (active, reason) = apply_active_model(&name, &mut values, &sections.models, &mut self.warnings);
            let mut server = ServerConfig::build(&name, global, values);
            server.active_model = active;
            model_reasons.extend(reason.map(|r| (name.clone(), r)));
            servers.insert(name, server);
        }
        let global_errors = check_conflicting_paths(&mut servers);
        for (name, reason) in model_reasons {
            if let Some(server) = servers.get_mut(&name) {
                server.disabled_reasons.push(reason);
            }
        }
        let mut checks = ServerChecks { strict: self.strict, warnings: &mut self.warnings };
        servers.values_mut().try_for_each(|s| checks.run(s))?;
        Ok(Populated { servers, models: sections.models, global_errors })
    }

    /// Every non-global section, in file order: refused, a model, or a server.
    fn resolve_sections(&mut self, global: &GlobalConfig) -> Result<Sections, ConfigError> {
        let home = global.barman_home.to_string_lossy().into_owned();
        let mut sections = Sections::default();
        for name in self.ini.section_names().into_iter().filter(|n| n != "barman") {
            if FORBIDDEN_SERVER_NAMES.contains(&name.as_str()) {
                return Err(ConfigError::ForbiddenName(name));
            }
            let is_model = self.is_model(&name)?;
            let mut resolver = Resolver { ini: &self.ini, strict: self.strict, warnings: &mut self.warnings };
            if is_model {
                let items = resolver.check_keys(&name, model_key_allowed)?;
                require_model_keys(&name, &items)?;
                let model = ModelConfig::new(&name, resolver.resolve_model(&name)?);
                sections.models.insert(name, model);
            } else {
                resolver.check_keys(&name, server_key_allowed)?;
                let values = resolver.resolve_server(&name, &home)?;
                sections.servers.push((name, values));
            }
        }
        Ok(sections)
    }

    /// `Config._is_model`: the raw `model` value must be a boolean (Barman stops otherwise).
    fn is_model(&self, section: &str) -> Result<bool, ConfigError> {
        let Some(entry) = self.ini.get(section, "model")? else {
            return Ok(false);
        };
        parse_boolean(&entry.text)
            .map_err(|reason| invalid_value(&entry.origin, section, "model", &entry.text, &reason))
    }

    /// Barman crashes on a server whose directory option is explicitly emptied.
    fn require_directories(&self, name: &str, values: &Resolved) -> Result<(), ConfigError> {
        let Some(key) = DIRECTORY_KEYS.into_iter().find(|k| !values.values.contains_key(k)) else {
            return Ok(());
        };
        let reason = "a server directory cannot be unset";
        let entry = [name, "barman"].into_iter().find_map(|s| self.ini.get(s, key).ok().flatten());
        Err(match entry {
            Some(entry) => invalid_value(&entry.origin, name, key, &entry.text, reason),
            None => ConfigError::MissingRequired { section: name.to_owned(), key: key.to_owned() },
        })
    }
}

/// `ModelConfig.REQUIRED_KEYS`: `cluster` and `model` must be present.
fn require_model_keys(name: &str, items: &[(String, Entry)]) -> Result<(), ConfigError> {
    for key in ["cluster", "model"] {
        if !items.iter().any(|(k, _)| k == key) {
            return Err(ConfigError::MissingRequired { section: name.to_owned(), key: key.to_owned() });
        }
    }
    Ok(())
}

/// The comparable content of `[barman]` (`set(self._config.items("barman"))`).
fn snapshot_of(items: &[(String, Entry)]) -> GlobalSnapshot {
    items.iter().map(|(k, e)| (k.clone(), e.text.clone())).collect()
}

/// `glob("*.conf")`: a visible name ending in `.conf`.
fn is_conf_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.ends_with(b".conf") && !bytes.starts_with(b".")
}
