//! The configuration errors: everything that stops Barman (or us) from loading
//! `barman.conf`, each naming the file and, where there is one, the line.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a configuration file: the file as it was opened and a 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The file the value was read from.
    pub file: PathBuf,
    /// The line of the `key = value` header (continuation lines belong to it).
    pub line: usize,
}

impl Origin {
    /// A new origin.
    pub fn new(file: &Path, line: usize) -> Origin {
        Origin { file: file.to_path_buf(), line }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Why the configuration could not be loaded.
///
/// `Display` gives the line to print. Where Barman itself stops with a fixed text, the text
/// is the same (including Barman's `FATAL: ` prefix); our own additions name `file:line`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `-c FILE` or `$BARMAN_CONFIG_FILE` names a file that does not exist.
    #[error("Configuration file '{}' does not exist", .0.display())]
    NotFound(PathBuf),
    /// None of the default locations holds a configuration file.
    #[error("Could not find any configuration file at default locations.")]
    NoConfigFile,
    /// A file exists but cannot be read (permissions, a directory).
    #[error("cannot read configuration file '{}': {source}", .file.display())]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not UTF-8.
    #[error("cannot read configuration file '{}': not UTF-8: {source}", .file.display())]
    NotUtf8 {
        /// The file.
        file: PathBuf,
        /// The decoding error.
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// A line the INI reader cannot accept, or a broken `%(...)s` interpolation.
    #[error("{}:{line}: {message}", .file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value that fails its parser, in strict mode (or for the few keys where Barman
    /// itself stops: `lock_directory_cleanup`, `model`, the server directories). Boxed to
    /// keep `Result<_, ConfigError>` small.
    #[error("{0}")]
    InvalidValue(Box<InvalidValue>),
    /// The main file has no `[barman]` section.
    #[error("{}: no [barman] section", .0.display())]
    NoGlobalSection(PathBuf),
    /// A required key is missing (`barman_home` in `[barman]`, `cluster` in a model).
    #[error("Parameter \"{key}\" is required in [{section}] section.")]
    MissingRequired {
        /// The section.
        section: String,
        /// The missing key.
        key: String,
    },
    /// An included file (or `.barman.auto.conf`) changes the global settings. Barman
    /// names the file by its base name only.
    #[error("FATAL: the configuration file {basename} contains a not empty [barman] section")]
    GlobalSectionChanged {
        /// The base name of the file, as Barman prints it.
        basename: String,
        /// The full path, for callers that want it.
        file: PathBuf,
    },
    /// A server section uses a reserved name (`all`).
    #[error("FATAL: the reserved word '{0}' is not allowed as server name.Please rename it.")]
    ForbiddenName(String),
}

impl ConfigError {
    /// A syntax error at `origin`.
    pub(crate) fn syntax(origin: &Origin, message: impl Into<String>) -> ConfigError {
        ConfigError::Syntax { file: origin.file.clone(), line: origin.line, message: message.into() }
    }

    /// The file and line the error points at, when it has one.
    pub fn origin(&self) -> Option<Origin> {
        match self {
            ConfigError::Syntax { file, line, .. } => Some(Origin::new(file, *line)),
            ConfigError::InvalidValue(v) => Some(Origin::new(&v.file, v.line)),
            _ => None,
        }
    }
}

/// The details of [`ConfigError::InvalidValue`]: `file:line: invalid value '<v>' for
/// <key> in [<section>]: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: invalid value '{value}' for {key} in [{section}]: {reason}", .file.display())]
pub struct InvalidValue {
    /// The file holding the value.
    pub file: PathBuf,
    /// Its line.
    pub line: usize,
    /// The section holding the value.
    pub section: String,
    /// The option name.
    pub key: String,
    /// The value as read (after interpolation and quote stripping).
    pub value: String,
    /// The parser's complaint.
    pub reason: String,
}
