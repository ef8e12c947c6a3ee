//! The remote `barman get-wal` command: its ssh target, its command line as Barman's client
//! builds it, and what its exit status means.

use barman_common::remote::{shell_quote, SshTarget, SSH_CONNECTION_FAILED};

use crate::cli::Options;
use crate::error::ToolError;

/// The backup host, as ssh reaches it.
pub fn target(opts: &Options) -> SshTarget {
    SshTarget { user: opts.user.clone(), host: opts.host.clone(), port: opts.port }
}

/// `barman [--config CFG] "get-wal <opts> 'SERVER' 'WAL'"`, the get-wal part as one word as
/// Barman's client builds it.
pub fn remote_words(opts: &Options, flags: &[String], wal: &str) -> Vec<String> {
    let mut words = vec!["barman".to_owned()];
    if let Some(cfg) = &opts.config {
        words.push(format!("--config {}", shell_quote(cfg)));
    }
    let mut get = vec!["get-wal".to_owned()];
    get.extend(flags.iter().cloned());
    get.extend([format!("'{}'", opts.server.replace('\'', "")), format!("'{}'", wal.replace('\'', ""))]);
    words.push(get.join(" "));
    words
}

/// The result of a get-wal by ssh's exit status (`None`: killed by a signal).
pub fn map_status(code: Option<i32>) -> Result<(), ToolError> {
    match code {
        Some(0) => Ok(()),
        Some(SSH_CONNECTION_FAILED) => Err(ToolError::Connection),
        Some(c) => Err(ToolError::Remote(c)),
        None => Err(ToolError::Killed),
    }
}
