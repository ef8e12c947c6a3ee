//! Non-fatal configuration diagnostics, collected instead of printed: the caller decides
//! where they go (Barman prints `WARNING: <message>` on stderr for [`WarningLevel::Warning`]
//! and `ERROR: <message>` for [`WarningLevel::Error`]; [`WarningLevel::Log`] ones only reach
//! its log file).

use std::fmt;

use super::error::Origin;

/// How Barman reports a diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarningLevel {
    /// `output.warning`: `WARNING: …` on stderr (and in the log).
    Warning,
    /// `output.error`: `ERROR: …` on stderr; sets exit status 1 in Barman.
    Error,
    /// `_logger.warning`: log file only.
    Log,
}

/// When Barman emits a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WarningScope {
    /// Whenever the configuration (with its servers) is loaded.
    Always,
    /// Only when a `Server` object is built for this server, i.e. by commands that act on
    /// it (`check pg` does not print `pg2`'s archiver warning).
    Server(String),
}

/// One diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The text, without the `WARNING: ` prefix, exactly as Barman words it.
    pub message: String,
    /// How it is reported.
    pub level: WarningLevel,
    /// When it is reported.
    pub scope: WarningScope,
    /// The file and line of the value concerned, when there is one.
    pub origin: Option<Origin>,
}

impl ConfigWarning {
    /// A `WARNING:` diagnostic printed on every load.
    pub(crate) fn always(message: String, origin: Option<Origin>) -> ConfigWarning {
        ConfigWarning { message, level: WarningLevel::Warning, scope: WarningScope::Always, origin }
    }

    /// A diagnostic tied to building the server `name`.
    pub(crate) fn server(level: WarningLevel, name: &str, message: String, origin: Option<Origin>) -> ConfigWarning {
        ConfigWarning { message, level, scope: WarningScope::Server(name.to_owned()), origin }
    }

    /// The line Barman prints: `WARNING: …` or `ERROR: …` (log-only ones get `WARNING: `).
    pub fn barman_line(&self) -> String {
        match self.level {
            WarningLevel::Error => format!("ERROR: {}", self.message),
            WarningLevel::Warning | WarningLevel::Log => format!("WARNING: {}", self.message),
        }
    }
}

impl fmt::Display for ConfigWarning {
    /// The message followed by ` (file:line)` when the origin is known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) => write!(f, "{} ({origin})", self.message),
            None => f.write_str(&self.message),
        }
    }
}
