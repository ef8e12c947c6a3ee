//! What a recovery will do, settled before anything is written ([`Plan`]): Barman 3.20.1's
//! validations (one target at most, a DONE backup, PostgreSQL 12+, no `:` in the
//! destination), the backup resolved from the catalogue, where each tablespace goes
//! (`--tablespace NAME:LOCATION` rules), a tar-format backup's archives all present, the
//! recovery targets (Barman's `_set_pitr_targets`), the destination emptiness checks, and
//! where the files are written ([`WriteTo`]: the destination or a staging copy of it).
//!
//! This is the leaf the phases share: it imports none of them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use barman_common::catalogue::{format_py_datetime, BackupId, BackupInfo, Catalogue, Tablespace};
use barman_common::config::{OptionValue, RecoveryOption, ServerConfig};
use barman_common::remote::RemoteShell;
use barman_common::wal::{TimelineId, WalFileName, WalSegSize};
use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone};

use super::options::{Options, TargetTli};
use super::tar::TarFormat;
use crate::backup::rsync_method::RsyncSettings;
use crate::context::Context;
use crate::output::Output;
use crate::server::Server;
use crate::CmdError;

/// Everything the phases of one recovery need, validated.
pub struct Plan<'a> {
    /// The options as given.
    pub opts: &'a Options,
    /// The server's name.
    pub server_name: &'a str,
    /// The server.
    pub server: Server,
    /// The backup restored.
    pub id: BackupId,
    /// Its backup.info.
    pub info: BackupInfo,
    /// The destination PGDATA (absolute for a local recovery; as given for a remote one).
    pub dest: PathBuf,
    /// `--remote-ssh-command`, when the destination is on another host.
    pub remote: Option<RemoteShell>,
    /// Whether the recovery fetches WAL with get-wal (`restore_command`) instead of copying it.
    pub get_wal: bool,
    /// The server's `parallel_jobs`.
    pub parallel_jobs: i64,
    /// The global `barman_user`.
    pub barman_user: String,
    /// Each tablespace of the backup with its location (relocated or not).
    pub tablespaces: Vec<(Tablespace, PathBuf)>,
    /// How a tar-format backup's archives are stored (`None`: a plain copy).
    pub tar: Option<TarFormat>,
    /// The recovery targets.
    pub targets: Targets,
    /// The backup's WAL segment size.
    pub seg_size: WalSegSize,
    /// The rsync copy's settings (`parallel_jobs`, limits, retries...) with the command
    /// line's overrides.
    pub rsync: RsyncSettings,
    /// Delta restore (`recovery_options`, `--delta-restore`): the destinations may hold files.
    pub delta: bool,
    /// `recovery_staging_path` (`--recovery-staging-path`).
    pub staging_path: Option<PathBuf>,
    /// The incremental chain to combine (`None`: not an incremental backup).
    pub chain: Option<super::combine::Chain>,
}

/// The recovery targets, as Barman's `_set_pitr_targets` settles them.
#[derive(Default)]
pub struct Targets {
    /// Whether this is a point-in-time recovery (any target, or a timeline).
    pub is_pitr: bool,
    /// `--target-tli` resolved to a timeline number.
    pub tli: Option<u32>,
    /// `--target-time` parsed.
    pub datetime: Option<DateTime<FixedOffset>>,
    /// The targets as the "Doing PITR" line lists them.
    pub described: Vec<String>,
}

impl<'a> Plan<'a> {
    /// Validates a `recover SERVER BACKUP_ID DESTINATION` call and settles what it will do,
    /// in Barman's order of checks (the naive `--target-time` warning goes to `out`).
    pub fn build(
        ctx: &Context,
        server_name: &'a str,
        backup: &str,
        destination: &str,
        opts: &'a Options,
        out: &mut Output,
    ) -> Result<Self, CmdError> {
        let server = ctx.server(server_name)?;
        let cfg = ctx.config().server(server_name).expect("server() checked it exists");
        if opts.targets().iter().filter(|t| **t).count() > 1 {
            return Err(CmdError::Error("You cannot specify multiple targets for the recovery operation".into()));
        }
        let catalogue = Catalogue::load(&server.layout)?;
        let (id, info) = crate::cmd::resolve_backup(&catalogue, backup, server_name)?;
        if !info.status.is_available() {
            return Err(CmdError::Error(format!(
                "Cannot restore from backup '{backup}' of server '{server_name}': backup status is not DONE"
            )));
        }
        let relocations = tablespace_rules(&opts.tablespaces, info)?;
        check_destination_name(destination)?;
        if opts.copy.network_compression == Some(true) && opts.remote_ssh_command.is_none() {
            return Err(CmdError::Error(
                "Network compression can only be used with remote recovery.\n\
                 HINT: If you want to do a remote recovery you have to use the --remote-ssh-command option"
                    .into(),
            ));
        }
        let remote = opts.remote_ssh_command.as_deref().filter(|c| !c.trim().is_empty()).map(RemoteShell::new);
        if remote.is_some() && (opts.staging_wal_directory.is_some() || opts.recovery_conf_filename.is_some()) {
            return Err(CmdError::Unsupported(
                "--staging-wal-directory and --recovery-conf-filename are not supported with --remote-ssh-command yet"
                    .into(),
            ));
        }
        let dest = if remote.is_some() { PathBuf::from(destination) } else { absolute(Path::new(destination))? };
        let get_wal = opts.get_wal.unwrap_or_else(|| cfg.recovery_options.contains(&RecoveryOption::GetWal));
        check_version(info)?;
        let tablespaces = place_tablespaces(info, &relocations, remote.is_some())?;
        let tar = check_tar_archives(&server, id, info, &tablespaces)?;
        let targets = Targets::settle(&server, opts, info, out)?;
        let delta = check_delta(opts, cfg, info, remote.is_some())?;
        let staging_path = staging_path(opts, cfg)?;
        let chain =
            super::combine::Chain::prepare(cfg, (&catalogue, &server.layout), (id, info), opts, remote.is_some(), out)?;
        Ok(Plan {
            opts,
            server_name,
            id: id.clone(),
            info: info.clone(),
            dest,
            remote,
            get_wal,
            parallel_jobs: cfg.parallel_jobs,
            barman_user: ctx.config().global().barman_user.clone(),
            tablespaces,
            tar,
            targets,
            seg_size: info.xlog_segment_size.unwrap_or(WalSegSize::DEFAULT),
            chain,
            server,
            rsync: rsync_settings(opts, cfg),
            delta,
            staging_path,
        })
    }

    /// Whether the base backup is copied straight into a remote destination (a plain
    /// backup; a tar-format one is extracted into the staging directory and shipped).
    pub fn pushed(&self) -> bool {
        self.remote.is_some() && self.tar.is_none() && self.chain.is_none()
    }

    /// The backup's directory in the catalogue.
    pub fn backup_dir(&self) -> PathBuf {
        self.server.layout.backup_dir(&self.id)
    }

    /// Where the WAL goes under `root`: `barman_wal` for a PITR (replayed by
    /// `restore_command`), else `pg_wal`.
    pub fn wal_dir(&self, root: &Path) -> PathBuf {
        if self.targets.is_pitr {
            self.pitr_wal_dir(root)
        } else {
            root.join("pg_wal")
        }
    }

    /// A PITR's WAL directory: `--staging-wal-directory`, else `barman_wal` under `root`.
    pub fn pitr_wal_dir(&self, root: &Path) -> PathBuf {
        self.opts.staging_wal_directory.as_ref().map_or_else(|| root.join("barman_wal"), PathBuf::from)
    }

    /// The destination and every tablespace location (with the tablespace's name), each
    /// of which must be missing or empty.
    pub fn destinations(&self) -> impl Iterator<Item = (&Path, Option<&str>)> {
        std::iter::once((self.dest.as_path(), None))
            .chain(self.tablespaces.iter().map(|(t, to)| (to.as_path(), Some(t.name.as_str()))))
    }
}

impl Targets {
    /// Barman's `_set_pitr_targets`: the timeline resolved, `--target-time` parsed and
    /// checked against the backup's end, and `--target-action` refused without a target.
    fn settle(server: &Server, opts: &Options, info: &BackupInfo, out: &mut Output) -> Result<Self, CmdError> {
        let tli = opts.target_tli.map(|t| resolve_target_tli(server, t, info));
        let is_pitr = opts.targets().iter().any(|t| *t) || tli.is_some();
        if !is_pitr {
            if opts.target_action.is_some() {
                return Err(CmdError::Error("Can't enable recovery target action when PITR is not required".into()));
            }
            return Ok(Targets::default());
        }
        let datetime = opts.target_time.as_deref().map(|t| target_time(t, info, out)).transpose()?;
        let mut described = Vec::new();
        if let Some(dt) = &datetime {
            described.push(format!("time: '{}'", format_py_datetime(dt)));
        }
        if let Some(x) = &opts.target_xid {
            described.push(format!("xid: '{x}'"));
        }
        if let Some(l) = &opts.target_lsn {
            described.push(format!("lsn: '{l}'"));
        }
        if let Some(tli) = tli {
            described.push(format!("timeline: '{tli}'"));
        }
        if let Some(n) = &opts.target_name {
            described.push(format!("name: '{n}'"));
        }
        if opts.target_immediate {
            described.push("immediate: True".into());
        }
        Ok(Targets { is_pitr, tli, datetime, described })
    }
}

/// `--target-time` parsed (a warning when it has no zone), refused before the backup's end.
fn target_time(text: &str, info: &BackupInfo, out: &mut Output) -> Result<DateTime<FixedOffset>, CmdError> {
    let (dt, naive) = parse_target_time(text)?;
    if naive {
        out.warning(
            "No time zone has been specified through '--target-time' command-line option. \
             Barman assumed the same time zone from the Barman host.",
        );
    }
    if let Some(end) = info.end_time {
        if end > dt {
            return Err(CmdError::Error(format!(
                "The requested target time {} is before the backup end time {}",
                format_py_datetime(&dt),
                format_py_datetime(&end)
            )));
        }
    }
    Ok(dt)
}

/// The copy settings: the server's, with `--jobs`, `--bwlimit`, `--retry-*`,
/// `--jobs-start-batch-*` and `--[no-]network-compression` over them.
fn rsync_settings(opts: &Options, cfg: &ServerConfig) -> RsyncSettings {
    let mut rs = RsyncSettings::from_config(cfg, false);
    let c = &opts.copy;
    if let Some(jobs) = opts.jobs.and_then(|j| usize::try_from(j).ok()) {
        rs.workers = jobs.max(1);
    }
    if let Some(kbps) = c.bwlimit {
        rs.bwlimit = (kbps > 0).then_some(kbps);
    }
    if let Some(times) = c.retry_times {
        rs.retry.0 = times;
    }
    if let Some(secs) = c.retry_sleep {
        rs.retry.1 = Duration::from_secs(secs);
    }
    if let Some(size) = c.start_batch_size {
        rs.start_batch.0 = size as usize;
    }
    if let Some(secs) = c.start_batch_period.filter(|&s| s > 0) {
        rs.start_batch.1 = Duration::from_secs(u64::from(secs));
    }
    if let Some(z) = c.network_compression {
        rs.compress = z;
    }
    rs
}

/// Delta restore as `recovery_options` and `--[no-]delta-restore` ask; refused, as Barman
/// does, for a local recovery of a backup that is not plain.
fn check_delta(opts: &Options, cfg: &ServerConfig, info: &BackupInfo, remote: bool) -> Result<bool, CmdError> {
    let delta = opts.copy.delta_restore.unwrap_or_else(|| cfg.recovery_options.contains(&RecoveryOption::DeltaRestore));
    if delta && !remote && (info.compression.is_some() || info.encryption.is_some()) {
        return Err(CmdError::Error(
            "Cannot restore a backup locally with delta mode when the backup is not plain.".into(),
        ));
    }
    Ok(delta)
}

/// `--recovery-staging-path` (absolute, as Barman's `parse_staging_path` wants), else
/// `recovery_staging_path`.
fn staging_path(opts: &Options, cfg: &ServerConfig) -> Result<Option<PathBuf>, CmdError> {
    if let Some(p) = &opts.copy.recovery_staging_path {
        if !Path::new(p).is_absolute() {
            return Err(CmdError::Error(format!(
                "Cannot parse recovery staging path: Invalid value : '{p}' (must be an absolute path)"
            )));
        }
        return Ok(Some(PathBuf::from(p)));
    }
    Ok(cfg.value("recovery_staging_path").and_then(OptionValue::as_str).map(PathBuf::from))
}

/// A destination with `:` looks like Barman's old `host:path` form: refused with a hint.
fn check_destination_name(destination: &str) -> Result<(), CmdError> {
    if destination.contains(':') {
        return Err(CmdError::Error(
            "The destination directory parameter cannot contain the ':' character\n\
             HINT: If you want to do a remote recovery you have to use the --remote-ssh-command option"
                .into(),
        ));
    }
    Ok(())
}

/// Backups of PostgreSQL before 12 (recovery.conf) are refused.
fn check_version(info: &BackupInfo) -> Result<(), CmdError> {
    let version = info.version.unwrap_or(0);
    if version < 120_000 {
        return Err(CmdError::Error(format!(
            "Recovery of PostgreSQL {version} backups (recovery.conf) is not supported by this toolkit"
        )));
    }
    Ok(())
}

/// Where each tablespace goes: its relocation rule's location, else its own; made
/// absolute for a local recovery.
fn place_tablespaces(
    info: &BackupInfo,
    relocations: &[(String, String)],
    remote: bool,
) -> Result<Vec<(Tablespace, PathBuf)>, CmdError> {
    info.tablespaces
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let to =
                relocations.iter().find(|(n, _)| *n == t.name).map(|(_, l)| l.clone()).unwrap_or(t.location.clone());
            if remote {
                Ok((t, PathBuf::from(to)))
            } else {
                absolute(Path::new(&to)).map(|p| (t, p))
            }
        })
        .collect()
}

/// A tar-format backup's format, once its archives are all known to be there (before
/// anything is written).
fn check_tar_archives(
    server: &Server,
    id: &BackupId,
    info: &BackupInfo,
    tablespaces: &[(Tablespace, PathBuf)],
) -> Result<Option<TarFormat>, CmdError> {
    let encryption = info.encryption.as_deref();
    let tar = info.compression.as_deref().map(|c| TarFormat::from_info(c, encryption)).transpose()?;
    if let Some(fmt) = tar {
        let oids = tablespaces.iter().map(|(t, _)| t.oid);
        let data = server.layout.backup_dir(id).join("data");
        fmt.check_archives(&data, oids)?;
        fmt.check_passphrase(&data, &server.gpg)?;
    }
    Ok(tar)
}

fn absolute(p: &Path) -> Result<PathBuf, CmdError> {
    if p.is_absolute() {
        Ok(p.to_owned())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

/// `NAME:LOCATION` rules, checked against the backup's tablespaces.
fn tablespace_rules(rules: &[String], info: &BackupInfo) -> Result<Vec<(String, String)>, CmdError> {
    let valid: Vec<String> = info.tablespaces.iter().flatten().map(|t| t.name.clone()).collect();
    let mut out = Vec::new();
    for rule in rules {
        let Some((name, location)) = rule.split_once(':') else {
            return Err(CmdError::Error(format!(
                "Invalid tablespace relocation rule '{rule}'\nHINT: The valid syntax for a relocation rule is NAME:LOCATION"
            )));
        };
        out.push((name.to_owned(), location.to_owned()));
    }
    for (name, _) in &out {
        if !valid.contains(name) {
            return Err(CmdError::Error(format!(
                "Invalid tablespace name '{name}'\nHINT: Please use any of the following tablespaces: {}",
                valid.join(", ")
            )));
        }
    }
    Ok(out)
}

/// Barman's refusal of a non-empty destination (`tablespace`: for that tablespace's).
pub fn not_empty(dir: &Path, tablespace: Option<&str>) -> CmdError {
    let dir = dir.display();
    CmdError::Error(match tablespace {
        None => format!(
            "The restore operation cannot proceed because the destination folder '{dir}' is not empty. \
             To prevent accidental data loss, the destination must be empty. \
             Please choose a different location or manually empty the folder."
        ),
        Some(name) => format!(
            "The restore operation cannot proceed. The destination path '{dir}' for the tablespace '{name}' \
             is not empty. To prevent accidental data loss, the tablespace destination must be empty. \
             Please choose a different location or manually empty the folder."
        ),
    })
}

/// A local destination must be missing or an empty directory.
pub fn ensure_empty(dir: &Path, tablespace: Option<&str>) -> Result<(), CmdError> {
    match fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(not_empty(dir, tablespace));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(not_empty(dir, tablespace)),
        Err(e) => Err(CmdError::Error(format!("Cannot access destination directory '{}': {e}", dir.display()))),
    }
}

/// `--target-tli`: a number, `current` (the backup's) or `latest` (the highest timeline with
/// a history file in the archive).
pub fn resolve_target_tli(server: &Server, tli: TargetTli, info: &BackupInfo) -> u32 {
    let current = info.timeline.map_or(1, TimelineId::get);
    match tli {
        TargetTli::Current => current,
        TargetTli::Latest => {
            let mut tli = current;
            while let Some(next) = TimelineId::new(tli + 1) {
                if crate::cmd::get_wal::locate(server, &WalFileName::history(next), false).is_none() {
                    break;
                }
                tli += 1;
            }
            tli
        }
        TargetTli::Id(id) => id.get(),
    }
}

/// dateutil-like parsing of the common forms; `true` when no zone was given (local assumed).
fn parse_target_time(text: &str) -> Result<(DateTime<FixedOffset>, bool), CmdError> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok((dt, false));
    }
    let normalized = t.replacen('T', " ", 1);
    let with_zone = |s: &str| {
        for f in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M%:z"] {
            if let Ok(dt) = DateTime::parse_from_str(s, f) {
                return Some(dt);
            }
        }
        None
    };
    let z = normalized.strip_suffix('Z').map(|s| format!("{s}+00:00"));
    if let Some(dt) = with_zone(z.as_deref().unwrap_or(&normalized)) {
        return Ok((dt, false));
    }
    let naive = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&normalized, f).ok())
        .or_else(|| NaiveDate::parse_from_str(&normalized, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)));
    if let Some(n) = naive {
        if let Some(dt) = Local.from_local_datetime(&n).earliest() {
            return Ok((dt.fixed_offset(), true));
        }
    }
    Err(CmdError::Error(format!("Unable to parse the target time parameter '{text}': unknown format")))
}

/// Where the files are written: the destination itself, or a local staging directory
/// (`data/`, `tblspc/<oid>/`) shipped to it afterwards.
pub struct WriteTo {
    /// The PGDATA written.
    pub root: PathBuf,
    staging: Option<PathBuf>,
}

impl WriteTo {
    /// The destination (`staging` `None`) or the staging copy under `staging`.
    pub fn new(plan: &Plan<'_>, staging: Option<&Path>) -> Self {
        let root = staging.map_or_else(|| plan.dest.clone(), |s| s.join("data"));
        WriteTo { root, staging: staging.map(Path::to_owned) }
    }

    /// Where tablespace `t` (whose location is `to`) is written.
    pub fn tablespace(&self, t: &Tablespace, to: &Path) -> PathBuf {
        self.staging.as_ref().map_or_else(|| to.to_owned(), |s| s.join("tblspc").join(t.oid.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_times_parse() {
        let (dt, naive) = parse_target_time("2030-01-01 00:00:00+00:00").expect("test");
        assert!(!naive);
        assert_eq!(format_py_datetime(&dt), "2030-01-01 00:00:00+00:00");
        let (dt, _) = parse_target_time("2030-01-01T10:00:00.123456Z").expect("test");
        assert_eq!(format_py_datetime(&dt), "2030-01-01 10:00:00.123456+00:00");
        let (dt, _) = parse_target_time("2030-01-01 10:00:00.5+02").expect("test");
        assert_eq!(format_py_datetime(&dt), "2030-01-01 10:00:00.500000+02:00");
        assert!(parse_target_time("2030-01-01 10:00:00").expect("test").1);
        assert!(parse_target_time("yesterday").is_err());
    }
}
