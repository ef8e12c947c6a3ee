//! What the user asked of one `barman recover`: the [`Options`] the command line fills in
//! (targets, tablespace relocations, WAL handling, remote destination) and the
//! `--target-tli` value ([`TargetTli`]), and the copy settings it overrides
//! ([`CopyOverrides`]).

use barman_common::wal::{Lsn, TimelineId};

/// Options of one recover call.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--target-time`.
    pub target_time: Option<String>,
    /// `--target-xid`.
    pub target_xid: Option<String>,
    /// `--target-lsn`.
    pub target_lsn: Option<Lsn>,
    /// `--target-name`.
    pub target_name: Option<String>,
    /// `--target-immediate`.
    pub target_immediate: bool,
    /// `--target-tli`: a number, `current` or `latest`.
    pub target_tli: Option<TargetTli>,
    /// `--target-action`: `pause`, `shutdown` or `promote`.
    pub target_action: Option<&'static str>,
    /// `--exclusive`.
    pub exclusive: bool,
    /// `--tablespace NAME:LOCATION` rules.
    pub tablespaces: Vec<String>,
    /// `--get-wal` (true) / `--no-get-wal` (false); `None` follows `recovery_options`.
    pub get_wal: Option<bool>,
    /// `--standby-mode`.
    pub standby_mode: bool,
    /// `--remote-ssh-command`: recover onto another host through this command.
    pub remote_ssh_command: Option<String>,
    /// `--skip-archive-wal`.
    pub skip_archive_wal: bool,
    /// `--restore-command`: replaces the generated get-wal `restore_command`.
    pub restore_command: Option<String>,
    /// `-j/--jobs`: overrides `parallel_jobs` (`-p N` of a remote `barman-wal-restore`).
    pub jobs: Option<i64>,
    /// `--recovery-option-port`: `--port` of a remote `barman-wal-restore`.
    pub recovery_option_port: Option<String>,
    /// `--staging-wal-directory`: where a PITR's WAL is copied (default `<dest>/barman_wal`).
    pub staging_wal_directory: Option<String>,
    /// `--partial-wal`: also copy the `.partial` segment (without get-wal).
    pub partial_wal: bool,
    /// `--recovery-conf-filename`: the file (under the destination) receiving the recovery
    /// settings, instead of `postgresql.auto.conf`.
    pub recovery_conf_filename: Option<String>,
    /// The copy's overrides of the server's settings.
    pub copy: CopyOverrides,
    /// `--staging-path`, `--staging-location`, `--local-staging-path`, `--combine-mode`.
    pub staging: Staging,
}

/// What the command line overrides of the settings the rsync copy of a remote recovery
/// uses, as Barman's `recover` sets them on the server's configuration.
#[derive(Debug, Clone, Default)]
pub struct CopyOverrides {
    /// `--bwlimit` (KiB/s, 0: none): `bandwidth_limit`.
    pub bwlimit: Option<u64>,
    /// `--retry-times` (`--no-retry`: 0): `basebackup_retry_times`.
    pub retry_times: Option<u32>,
    /// `--retry-sleep`: `basebackup_retry_sleep`.
    pub retry_sleep: Option<u64>,
    /// `--jobs-start-batch-size`: `parallel_jobs_start_batch_size`.
    pub start_batch_size: Option<u32>,
    /// `--jobs-start-batch-period`: `parallel_jobs_start_batch_period`.
    pub start_batch_period: Option<u32>,
    /// `--network-compression` / `--no-network-compression`.
    pub network_compression: Option<bool>,
    /// `--delta-restore` / `--no-delta-restore`: `recovery_options` gains or loses it.
    pub delta_restore: Option<bool>,
    /// `--recovery-staging-path`: `recovery_staging_path`.
    pub recovery_staging_path: Option<String>,
}

impl Options {
    /// The file the recovery settings are appended to.
    pub(super) fn recovery_conf(&self) -> &str {
        self.recovery_conf_filename.as_deref().unwrap_or("postgresql.auto.conf")
    }

    /// Which of the exclusive targets (time, xid, lsn, name, immediate) are given.
    pub(super) fn targets(&self) -> [bool; 5] {
        [
            self.target_time.is_some(),
            self.target_xid.is_some(),
            self.target_lsn.is_some(),
            self.target_name.is_some(),
            self.target_immediate,
        ]
    }
}

/// The staging options of one recover call (command line; the configuration fills the rest).
#[derive(Debug, Clone, Default)]
pub struct Staging {
    /// `--local-staging-path` (deprecated by Barman for `--staging-path`).
    pub local_staging_path: Option<String>,
    /// `--staging-path`.
    pub staging_path: Option<String>,
    /// `--staging-location` (`local` or `remote`).
    pub staging_location: Option<String>,
    /// `--combine-mode`.
    pub combine_mode: Option<String>,
}

/// `--target-tli`: a timeline number, `current` (the backup's) or `latest` (the newest
/// with a history file in the archive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetTli {
    /// `current`.
    Current,
    /// `latest`.
    Latest,
    /// A timeline number.
    Id(TimelineId),
}

impl std::str::FromStr for TargetTli {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "current" => Ok(TargetTli::Current),
            "latest" => Ok(TargetTli::Latest),
            n => {
                n.parse::<u32>().ok().and_then(TimelineId::new).map(TargetTli::Id).ok_or_else(|| {
                    format!("'{n}' is not a valid recovery target timeline (a number, current or latest)")
                })
            }
        }
    }
}

impl std::fmt::Display for TargetTli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetTli::Current => f.write_str("current"),
            TargetTli::Latest => f.write_str("latest"),
            TargetTli::Id(id) => write!(f, "{}", id.get()),
        }
    }
}
