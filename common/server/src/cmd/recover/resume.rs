//! A local recovery killed half-way (SIGKILL, power loss, a full disk) must not need a
//! manual `rm -rf` before the same command works again, yet Barman's refusal of a
//! non-empty destination must stay for anything else. So each local destination gets a
//! marker file before the first byte is copied and loses it only once the result is
//! durable: a destination holding the marker is the unfinished work of a recovery of ours
//! and is emptied; any other non-empty destination is refused as Barman refuses it.

use std::fs;
use std::io;
use std::path::Path;

use barman_common::durable;

use super::plan;
use crate::output::Output;
use crate::CmdError;

/// The marker's name in each destination directory.
pub const MARKER: &str = ".barman-recover.incomplete";

/// Empties `dir` when an interrupted recovery left it (marker present), then applies
/// Barman's emptiness check.
pub fn ensure_empty_or_unfinished(dir: &Path, tablespace: Option<&str>, out: &mut Output) -> Result<(), CmdError> {
    if dir.join(MARKER).is_file() {
        out.info(format!("Removing the unfinished recovery left in '{}'", dir.display()));
        clear(dir).map_err(|e| CmdError::Error(format!("Cannot empty '{}': {e}", dir.display())))?;
    }
    plan::ensure_empty(dir, tablespace)
}

/// Removes every entry of `dir` (the marker last), keeping `dir` itself (it may be a
/// mount point).
fn clear(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == MARKER {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    fs::remove_file(dir.join(MARKER))?;
    durable::fsync_dir(dir)
}

/// Creates `dir` if needed and puts the marker in it, durably, before anything is copied.
pub fn mark(dir: &Path) -> Result<(), CmdError> {
    let io = |e: io::Error| CmdError::Error(format!("Cannot prepare destination '{}': {e}", dir.display()));
    durable::create_dir_all(dir).map_err(io)?;
    durable::write_replace(&dir.join(MARKER), b"barman recover in progress\n", 0o600).map_err(io)
}

/// Removes the marker once the result is durable.
pub fn unmark(dir: &Path) -> Result<(), CmdError> {
    let io = |e: io::Error| CmdError::Error(format!("Cannot finish destination '{}': {e}", dir.display()));
    fs::remove_file(dir.join(MARKER)).map_err(io)?;
    durable::fsync_dir(dir).map_err(io)
}
