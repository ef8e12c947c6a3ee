//! Barman's log file: `<time> [<pid>] barman.<module> <LEVEL>: <message>` lines appended to
//! `log_file`, or written to stderr when no log file is configured (as Barman does).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

static LOG_FILE: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The threshold, as Python's logging numbers it (DEBUG 10, INFO 20, WARNING 30, ERROR 40).
static LEVEL: AtomicU8 = AtomicU8::new(20);

/// Sets the threshold from a Barman level name (`log_level`, `--log-level`; any case,
/// `WARN`/`FATAL` too, or a number); false, changing nothing, for an unknown name.
pub fn set_level(name: &str) -> bool {
    let level = match name.trim().to_ascii_uppercase().as_str() {
        "NOTSET" => 0,
        "DEBUG" => 10,
        "INFO" => 20,
        "WARNING" | "WARN" => 30,
        "ERROR" => 40,
        "CRITICAL" | "FATAL" => 50,
        n => match n.parse::<u8>() {
            Ok(n) => n,
            Err(_) => return false,
        },
    };
    LEVEL.store(level, Ordering::Relaxed);
    true
}

/// Sets the destination once, from the loaded configuration.
pub fn init(log_file: Option<PathBuf>) {
    let _ = LOG_FILE.set(log_file);
}

/// A message's level, as Python's logging names and numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `DEBUG` (10).
    Debug,
    /// `INFO` (20).
    Info,
    /// `WARNING` (30).
    Warning,
    /// `ERROR` (40).
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }

    fn number(self) -> u8 {
        match self {
            Level::Debug => 10,
            Level::Info => 20,
            Level::Warning => 30,
            Level::Error => 40,
        }
    }
}

/// Appends one line for a message a command also printed (Barman logs every printed message
/// under its caller's module). Only to a `log_file`: without one, the message is already
/// on the terminal and is not repeated there.
pub fn write(level: Level, module: &str, msg: &str) {
    if has_file() {
        append(level, module, msg);
    }
}

fn append(level: Level, module: &str, msg: &str) {
    if level.number() < LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%3f");
    let line = format!("{now} [{}] barman.{module} {}: {msg}\n", std::process::id(), level.name());
    match LOG_FILE.get().and_then(Option::as_ref) {
        Some(path) => {
            if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
                let _ = f.write_all(line.as_bytes());
            }
        }
        None => eprint!("{line}"),
    }
}

/// Whether a `log_file` is configured (tools that also print their lines use this to avoid
/// writing them twice to the terminal).
pub fn has_file() -> bool {
    LOG_FILE.get().is_some_and(Option::is_some)
}

/// A DEBUG line (written only when the level is DEBUG).
pub fn debug(module: &str, msg: &str) {
    append(Level::Debug, module, msg);
}

/// An INFO line.
pub fn info(module: &str, msg: &str) {
    append(Level::Info, module, msg);
}

/// A WARNING line.
pub fn warning(module: &str, msg: &str) {
    append(Level::Warning, module, msg);
}

/// An ERROR line.
pub fn error(module: &str, msg: &str) {
    append(Level::Error, module, msg);
}
