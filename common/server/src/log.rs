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

fn write(level: &str, module: &str, msg: &str) {
    let number = match level {
        "DEBUG" => 10,
        "INFO" => 20,
        "WARNING" => 30,
        _ => 40,
    };
    if number < LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%3f");
    let line = format!("{now} [{}] barman.{module} {level}: {msg}\n", std::process::id());
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
    write("DEBUG", module, msg);
}

/// An INFO line.
pub fn info(module: &str, msg: &str) {
    write("INFO", module, msg);
}

/// A WARNING line.
pub fn warning(module: &str, msg: &str) {
    write("WARNING", module, msg);
}

/// An ERROR line.
pub fn error(module: &str, msg: &str) {
    write("ERROR", module, msg);
}
