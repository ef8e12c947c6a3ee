//! Log lines as Barman's cloud tools print them on stderr
//! (`%(asctime)s [%(process)s] %(levelname)s: %(message)s`), at WARNING and above unless
//! `-v` lowers or `-q` raises the threshold.

use std::sync::atomic::{AtomicI32, Ordering};

/// Python logging levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// DEBUG (10).
    Debug = 10,
    /// INFO (20).
    Info = 20,
    /// WARNING (30).
    Warning = 30,
    /// ERROR (40).
    Error = 40,
}

static THRESHOLD: AtomicI32 = AtomicI32::new(30);

/// Sets the threshold from `-v` and `-q` counts (`configure_logging`).
pub fn configure(verbose: u8, quiet: u8) {
    let level = (30 - (i32::from(verbose) - i32::from(quiet)) * 10).max(10);
    THRESHOLD.store(level, Ordering::Relaxed);
}

/// Prints one line at `level`.
pub fn log(level: Level, msg: &str) {
    if (level as i32) < THRESHOLD.load(Ordering::Relaxed) {
        return;
    }
    let name = match level {
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Warning => "WARNING",
        Level::Error => "ERROR",
    };
    let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%3f");
    eprintln!("{now} [{}] {name}: {msg}", std::process::id());
}

/// INFO line.
pub fn info(msg: &str) {
    log(Level::Info, msg);
}

/// WARNING line.
pub fn warning(msg: &str) {
    log(Level::Warning, msg);
}

/// ERROR line.
pub fn error(msg: &str) {
    log(Level::Error, msg);
}
