//! What `barman-relay` was asked to do, free of clap types.

/// What to synchronise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// WAL files (with the streaming `.partial` segment), then every missing backup.
    All,
    /// `--wals`: WAL files only (`barman sync-wals`).
    Wals,
    /// `--backups`: missing backups only.
    Backups,
    /// `--backup ID`: one backup (`barman sync-backup`).
    Backup(String),
    /// `--info`: ask the primary, save `primary.info` and print it (`barman sync-info --primary`).
    Info,
}

/// What the tool was asked to do, free of clap types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Barman configuration file (`-c`); the default search otherwise.
    pub config: Option<String>,
    /// The passive server.
    pub server: String,
    /// What to synchronise.
    pub mode: Mode,
    /// `--cached`: use the saved `primary.info` instead of asking the primary again.
    pub cached: bool,
    /// `--follow SECONDS`: keep relaying WAL (every `--interval`) for this long.
    pub follow: u64,
    /// `--interval SECONDS` between WAL passes with `--follow`.
    pub interval: u64,
    /// `--no-partial`: do not relay the primary's streaming `.partial` segment.
    pub no_partial: bool,
    /// `--last-wal` / `--last-position` for `--info`: ask incrementally from there.
    pub last: Option<(String, String)>,
    /// `-q`: errors only.
    pub quiet: bool,
}
