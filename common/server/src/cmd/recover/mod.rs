//! `barman recover` (alias `restore`): Barman 3.20.1's validations, the base backup and
//! tablespace copy, the required WAL (decompressed) or a get-wal `restore_command`, the
//! recovery settings appended to `postgresql.auto.conf`, the signal files and the
//! configuration safety pass (`#BARMAN#`), with Barman's console lines. A tar-format backup
//! (backup.info `compression` set) is extracted from its archives instead of copied
//! ([`tar`]). A local result is fsynced before success is reported.
//!
//! With `--remote-ssh-command` the destination is on another host: after Barman's checks
//! over that command (`<ssh> true`, the destination and tablespace directories empty), the
//! whole result is built in a local staging directory (under `recovery_staging_path`, else
//! inside `barman_home`) exactly as a local recovery would build it, but with every path
//! written into it (tablespace links, `restore_command`, `recovery_end_command`) naming the
//! remote locations; it is then shipped with `rsync -a --delete -e '<ssh>'` and removed.

pub mod tar;

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use barman_common::catalogue::{format_py_datetime, BackupId, BackupInfo, Catalogue, Tablespace, XlogDb, XlogDbEntry};
use barman_common::compress;
use barman_common::config::RecoveryOption;
use barman_common::durable;
use barman_common::wal::{Lsn, TimelineId, WalFileName, WalSegSize};
use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone};

use self::tar::TarFormat;
use crate::context::Context;
use crate::output::Output;
use crate::progress::Progress;
use crate::server::Server;
use crate::CmdError;

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

/// The options Barman's safety pass rewrites (`None`: only commented out).
const OPTIONS_TO_MANGLE: [(&str, Option<&str>); 9] = [
    ("archive_command", Some("false")),
    ("recovery_target", None),
    ("recovery_target_name", None),
    ("recovery_target_time", None),
    ("recovery_target_xid", None),
    ("recovery_target_lsn", None),
    ("recovery_target_inclusive", None),
    ("recovery_target_timeline", None),
    ("recovery_target_action", None),
];

/// Options the user must review after a recovery.
const DANGEROUS_OPTIONS: [&str; 14] = [
    "data_directory",
    "config_file",
    "hba_file",
    "ident_file",
    "external_pid_file",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "ssl_crl_file",
    "unix_socket_directory",
    "unix_socket_directories",
    "include",
    "include_dir",
    "include_if_exists",
];

/// Top-level PGDATA entries whose content is not copied (rsync `dir/*` excludes keep the
/// directory itself).
const EXCLUDED_CONTENT: [&str; 4] = ["pg_log", "log", "pg_xlog", "pg_wal"];
/// Top-level PGDATA files not copied.
const EXCLUDED_FILES: [&str; 3] = ["postmaster.pid", "recovery.conf", "tablespace_map"];

/// One line of the IMPORTANT/WARNING blocks: file, 0-based line, key, value.
struct Assertion {
    file: String,
    line: usize,
    key: String,
    value: String,
}

/// `recover SERVER BACKUP_ID DESTINATION`.
pub fn run(
    ctx: &Context,
    server_name: &str,
    backup: &str,
    destination: &str,
    opts: &Options,
    out: &mut Output,
) -> Result<(), CmdError> {
    let server = ctx.server(server_name)?;
    let cfg = ctx.config().server(server_name).expect("server() checked it exists");
    let targets = [
        opts.target_time.is_some(),
        opts.target_xid.is_some(),
        opts.target_lsn.is_some(),
        opts.target_name.is_some(),
        opts.target_immediate,
    ];
    if targets.iter().filter(|t| **t).count() > 1 {
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
    if destination.contains(':') {
        return Err(CmdError::Error(
            "The destination directory parameter cannot contain the ':' character\n\
             HINT: If you want to do a remote recovery you have to use the --remote-ssh-command option"
                .into(),
        ));
    }
    let remote = opts.remote_ssh_command.as_deref().filter(|c| !c.trim().is_empty());
    let dest = if remote.is_some() { PathBuf::from(destination) } else { absolute(Path::new(destination))? };
    let get_wal = opts.get_wal.unwrap_or_else(|| cfg.recovery_options.contains(&RecoveryOption::GetWal));
    let version = info.version.unwrap_or(0);
    if version < 120_000 {
        return Err(CmdError::Error(format!(
            "Recovery of PostgreSQL {version} backups (recovery.conf) is not supported by this toolkit"
        )));
    }

    // Where each tablespace goes, and the destination emptiness checks.
    let tablespaces: Vec<(Tablespace, PathBuf)> = info
        .tablespaces
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let to =
                relocations.iter().find(|(n, _)| *n == t.name).map(|(_, l)| l.clone()).unwrap_or(t.location.clone());
            if remote.is_some() {
                Ok((t, PathBuf::from(to)))
            } else {
                absolute(Path::new(&to)).map(|p| (t, p))
            }
        })
        .collect::<Result<_, _>>()?;

    // A tar-format backup: its archives must all be there before anything is written.
    let tar = info.compression.as_deref().map(TarFormat::from_compression).transpose()?;
    if let Some(fmt) = tar {
        let oids = tablespaces.iter().map(|(t, _)| t.oid);
        fmt.check_archives(&server.layout.backup_dir(id).join("data"), oids)?;
    }

    // Targets (Barman's _set_pitr_targets).
    let target_tli = opts.target_tli.map(|t| resolve_target_tli(&server, t, info));
    let mut target_datetime: Option<DateTime<FixedOffset>> = None;
    let is_pitr = targets.iter().any(|t| *t) || target_tli.is_some();
    let mut described: Vec<String> = Vec::new();
    if is_pitr {
        if let Some(t) = &opts.target_time {
            let (dt, naive) = parse_target_time(t)?;
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
            described.push(format!("time: '{}'", format_py_datetime(&dt)));
            target_datetime = Some(dt);
        }
        if let Some(x) = &opts.target_xid {
            described.push(format!("xid: '{x}'"));
        }
        if let Some(l) = &opts.target_lsn {
            described.push(format!("lsn: '{l}'"));
        }
        if let Some(tli) = target_tli {
            described.push(format!("timeline: '{tli}'"));
        }
        if let Some(n) = &opts.target_name {
            described.push(format!("name: '{n}'"));
        }
        if opts.target_immediate {
            described.push("immediate: True".into());
        }
    } else if opts.target_action.is_some() {
        return Err(CmdError::Error("Can't enable recovery target action when PITR is not required".into()));
    }

    // Barman archives the incoming WAL files first.
    if !opts.skip_archive_wal {
        if let Err(e) = crate::cmd::archive_wal_cmd(ctx, server_name, out) {
            out.warning(format!("Unable to archive the incoming WAL files: {e}"));
        }
    }

    // The WAL the backup needs must all be archived.
    let seg_size = info.xlog_segment_size.unwrap_or(WalSegSize::DEFAULT);
    let entries: Vec<XlogDbEntry> = XlogDb::open(&server.layout)?.entries()?.into_iter().map(|(_, e)| e).collect();
    if let Some(ssh) = remote {
        remote::check_connection(ssh)?;
    }
    check_backup_wals(&server, id, info, seg_size)?;
    if let Some(ssh) = remote {
        remote::ensure_empty(ssh, &dest, None)?;
        for (t, to) in &tablespaces {
            remote::ensure_empty(ssh, to, Some(&t.name))?;
        }
    } else {
        ensure_empty(&dest, None)?;
        for (t, to) in &tablespaces {
            ensure_empty(to, Some(&t.name))?;
        }
    }

    let start = Local::now();
    let kind = if remote.is_some() { "remote" } else { "local" };
    out.info(format!("Starting {kind} restore for server {server_name} using backup {id}"));
    out.info(format!("Destination directory: {}", dest.display()));
    if let Some(ssh) = remote {
        out.info(format!("Remote command: {ssh}"));
    }
    // Where files are written: the destination itself, or a local staging copy of it.
    let staging = match remote {
        Some(_) => Some(remote::Staging::create(ctx, server_name)?),
        None => None,
    };
    let root = staging.as_ref().map_or_else(|| dest.clone(), |s| s.path.join("data"));
    let write_to = |t: &Tablespace, to: &Path| -> PathBuf {
        staging.as_ref().map_or_else(|| to.to_owned(), |s| s.path.join("tblspc").join(t.oid.to_string()))
    };
    if is_pitr {
        out.info(format!("Doing PITR. Recovery target {}", described.join(", ")));
    }

    // 1. Base backup and tablespaces.
    out.info("Copying the base backup.");
    let backup_dir = server.layout.backup_dir(id);
    let mut progress = Progress::new("base backup", info.size.unwrap_or(0));
    let copy_failure = |e: io::Error| CmdError::Error(format!("Failure copying base backup: {e}"));
    if let Some(fmt) = tar {
        // Barman's order: the tablespaces first, then the base archive.
        let data = backup_dir.join("data");
        for (t, to) in &tablespaces {
            fmt.extract_tablespace(&data, t.oid, &write_to(t, to), &mut progress)?;
        }
        let links: Vec<(u32, PathBuf)> = tablespaces.iter().map(|(t, to)| (t.oid, to.clone())).collect();
        fmt.extract_base(&data, &root, &links, &mut progress)?;
        prepare_extracted(&root, tablespaces.iter().map(|(t, to)| write_to(t, to))).map_err(copy_failure)?;
    } else {
        copy_pgdata(&backup_dir.join("data"), &root, &mut progress).map_err(copy_failure)?;
    }
    for (t, to) in &tablespaces {
        let oid = t.oid.to_string();
        if tar.is_none() {
            copy_tree(&backup_dir.join(&oid), &write_to(t, to), &mut progress).map_err(copy_failure)?;
        }
        let link = root.join("pg_tblspc").join(&oid);
        if fs::symlink_metadata(&link).is_ok() {
            fs::remove_file(&link)?;
        }
        fs::create_dir_all(root.join("pg_tblspc"))?;
        symlink(to, &link)?;
        out.info(format!("\t{oid}, {}, {}", t.name, to.display()));
    }
    progress.finish();
    fs::copy(BackupInfo::locate(&server.layout, id), root.join(".barman-recover.info"))
        .map_err(|e| CmdError::Error(format!("copy of recovery metadata file failed: {e}")))?;
    let manifest = root.join("backup_manifest");
    if manifest.exists() {
        fs::rename(&manifest, root.join(format!("backup_manifest.{id}")))?;
    }

    // 2. WAL.
    let wal_dest = dest.join("barman_wal");
    if !get_wal {
        out.info("Copying required WAL segments.");
        let into = if is_pitr { root.join("barman_wal") } else { root.join("pg_wal") };
        fs::create_dir_all(into.join("archive_status"))?;
        let calculated_tli = match target_tli {
            Some(t) => t,
            None => resolve_target_tli(&server, TargetTli::Latest, info),
        };
        let target_wal = opts.target_lsn.and_then(|lsn| {
            TimelineId::new(calculated_tli).map(|tli| WalFileName::containing(tli, lsn, seg_size).to_string())
        });
        let wanted = required_wals(info, calculated_tli, opts.target_immediate, target_wal.as_deref(), &entries);
        let mut progress = Progress::new("WAL", wanted.len() as u64 * u64::from(seg_size.bytes()));
        for name in &wanted {
            let n = copy_wal(&server, name, &into)
                .map_err(|e| CmdError::Error(format!("Failure copying WAL files: {e}")))?;
            progress.add(n);
        }
        progress.finish();
        if !is_pitr {
            out.info("Generating archive status files");
            let status = into.join("archive_status");
            fs::create_dir_all(&status)?;
            for name in &wanted {
                File::create(status.join(format!("{name}.done")))?;
            }
        }
    }

    // 3-5. Recovery configuration.
    let mut lines: Vec<String> = Vec::new();
    if is_pitr || get_wal || opts.standby_mode {
        out.info("Generating recovery configuration");
        if let Some(custom) = opts.restore_command.as_ref().filter(|_| get_wal) {
            let escaped = custom.replace('\'', "''");
            lines.push(format!("restore_command = '{escaped}'"));
            out.info(format!("Custom restore command override: restore_command = '{escaped}'"));
        } else if get_wal {
            let user = &ctx.config().global().barman_user;
            let partial = if opts.standby_mode { "" } else { "-P" };
            if remote.is_some() {
                let port = opts.recovery_option_port.as_ref().map(|p| format!("--port {p}")).unwrap_or_default();
                let fqdn = remote::getfqdn();
                let mut cmd = format!(
                    "restore_command = 'barman-wal-restore {partial} -U {user} {port} {fqdn} {server_name} %f %p'"
                );
                let jobs = opts.jobs.unwrap_or(cfg.parallel_jobs);
                if jobs > 1 {
                    cmd.pop();
                    cmd.push_str(&format!(" -p {jobs}'"));
                }
                lines.push("# The 'barman-wal-restore' command is provided in the 'barman-cli' package".into());
                lines.push(cmd.split_whitespace().collect::<Vec<_>>().join(" "));
            } else {
                lines.push(format!("# The 'barman get-wal' command must run as '{user}' user"));
                lines.push(format!("restore_command = 'barman get-wal {partial} {server_name} %f > %p'"));
            }
        } else if !opts.standby_mode {
            if opts.restore_command.is_some() {
                out.warning("The provided custom restore command was ignored as it only works with get-wal mode.");
            }
            let w = wal_dest.display();
            lines.push(format!("restore_command = 'cp {w}/%f %p'"));
            lines.push(format!("recovery_end_command = 'rm -fr {w}'"));
        }
        if let Some(dt) = &target_datetime {
            lines.push(format!("recovery_target_time = '{}'", format_py_datetime(dt)));
        }
        if let Some(x) = &opts.target_xid {
            lines.push(format!("recovery_target_xid = '{x}'"));
        }
        if let Some(l) = &opts.target_lsn {
            lines.push(format!("recovery_target_lsn = '{l}'"));
        }
        if let Some(n) = &opts.target_name {
            lines.push(format!("recovery_target_name = '{n}'"));
        }
        if opts.target_immediate {
            lines.push("recovery_target = 'immediate'".into());
        }
        if opts.exclusive && (opts.target_xid.is_some() || opts.target_time.is_some() || opts.target_lsn.is_some()) {
            lines.push("recovery_target_inclusive = 'False'".into());
        }
        // The value as given (`current`, `latest` or a number), as Barman writes it.
        if let Some(tli) = &opts.target_tli {
            lines.push(format!("recovery_target_timeline = {tli}"));
        }
        if let Some(a) = opts.target_action.as_ref().filter(|_| is_pitr) {
            lines.push(format!("recovery_target_action = '{a}'"));
        }
        let signal = if opts.standby_mode { "standby.signal" } else { "recovery.signal" };
        File::create(root.join(signal))?;
    }

    // Barman always creates the archive_status directory of the WAL destination.
    let wal_dir = if is_pitr { root.join("barman_wal") } else { root.join("pg_wal") };
    fs::create_dir_all(wal_dir.join("archive_status"))?;

    // 6. Safety pass.
    out.info("Identify dangerous settings in destination directory.");
    let auto_conf = root.join("postgresql.auto.conf");
    if !lines.is_empty() && !auto_conf.exists() {
        File::create(&auto_conf)?;
        fs::set_permissions(&auto_conf, fs::Permissions::from_mode(0o600))?;
    }
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    for file in ["postgresql.conf", "postgresql.auto.conf"] {
        let path = root.join(file);
        if !path.exists() {
            continue;
        }
        let append = if file == "postgresql.auto.conf" { &lines[..] } else { &[] };
        changes.extend(mangle(&path, append)?);
        warnings.extend(detect_issues(&path)?);
    }

    // A local result is made durable before it is reported ready; a staged one is shipped
    // by rsync and removed.
    if remote.is_none() {
        let dirs = std::iter::once(root.clone()).chain(tablespaces.iter().map(|(_, to)| to.clone()));
        make_durable(dirs).map_err(|e| CmdError::Error(format!("Failure syncing the restored files: {e}")))?;
    }

    // A remote destination: ship the staged result.
    if let (Some(ssh), Some(staging)) = (remote, &staging) {
        // PGDATA first: its `--delete` must not remove a tablespace placed inside it.
        let mut items = vec![(root.clone(), dest.clone())];
        for (t, to) in &tablespaces {
            items.push((write_to(t, to), to.clone()));
        }
        for (from, to) in &items {
            remote::mkdir(ssh, to)?;
            remote::rsync(ssh, from, to)
                .map_err(|e| CmdError::Error(format!("Failure copying base backup: data transfer failure: {e}")))?;
        }
        staging.remove();
    }

    // Results.
    let mut block = |title: &str, intro: &str, items: &[Assertion]| {
        if items.is_empty() {
            return;
        }
        out.info("");
        out.info(title.to_owned());
        out.info(intro.to_owned());
        out.info("");
        for a in items {
            out.info(format!("{} line {}: {} = {}", a.file, a.line, a.key, a.value));
        }
    };
    block("IMPORTANT", "These settings have been modified to prevent data losses", &changes);
    block("WARNING", "You are required to review the following options as potentially dangerous", &warnings);
    if get_wal {
        out.info("");
        out.info("WARNING: 'get-wal' is in the specified 'recovery_options'.");
        out.info("Before you start up the PostgreSQL server, please review the postgresql.auto.conf file");
        out.info(
            "inside the target directory. Make sure that 'restore_command' can be executed by the PostgreSQL user.",
        );
    }
    out.info("");
    let elapsed = (Local::now() - start).num_milliseconds() as f64 / 1000.0;
    out.info(format!(
        "Restore operation completed (start time: {}, elapsed time: {})",
        format_py_datetime(&start.fixed_offset()),
        crate::cmd::show::human_seconds(elapsed)
    ));
    out.info("Your PostgreSQL server has been successfully prepared for recovery!");
    Ok(())
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
fn not_empty(dir: &Path, tablespace: Option<&str>) -> CmdError {
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

/// The destination must be missing or an empty directory.
fn ensure_empty(dir: &Path, tablespace: Option<&str>) -> Result<(), CmdError> {
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

/// The remote side of a `--remote-ssh-command` recovery.
mod remote {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};

    use barman_common::config::OptionValue;

    use crate::context::Context;
    use crate::CmdError;

    /// Single-quotes `s` for a POSIX shell.
    fn quote(s: &str) -> String {
        format!("'{}'", s.replace('\'', r"'\''"))
    }

    /// Runs `<ssh> <remote>` through the local shell, as Barman's `Command(shell=True)`.
    fn ssh(ssh: &str, remote: &str) -> Result<Output, CmdError> {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{ssh} {}", quote(remote)))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| CmdError::Error(format!("Unable to execute {ssh}: {e}")))
    }

    fn stderr(o: &Output) -> String {
        String::from_utf8_lossy(&o.stderr).trim().to_owned()
    }

    /// `<ssh> true`, as Barman's `UnixRemoteCommand` does first.
    pub fn check_connection(command: &str) -> Result<(), CmdError> {
        match ssh(command, "true") {
            Ok(o) if o.status.success() => Ok(()),
            _ => Err(CmdError::Error(format!("Unable to connect to the target host using the command '{command}'"))),
        }
    }

    /// Barman's `list_dir_content` check (`ls`; hidden files count here too, since the
    /// copy runs with `--delete`).
    pub fn ensure_empty(command: &str, dir: &Path, tablespace: Option<&str>) -> Result<(), CmdError> {
        let o = ssh(command, &format!("ls -A {}", quote(&dir.to_string_lossy())))?;
        if o.stdout.iter().any(|b| !b.is_ascii_whitespace()) {
            return Err(super::not_empty(dir, tablespace));
        }
        Ok(())
    }

    /// `mkdir -p DIR` on the remote host.
    pub fn mkdir(command: &str, dir: &Path) -> Result<(), CmdError> {
        let o = ssh(command, &format!("mkdir -p {}", quote(&dir.to_string_lossy())))?;
        if !o.status.success() {
            return Err(CmdError::Error(format!(
                "unable to initialise destination directory '{}': {}",
                dir.display(),
                stderr(&o)
            )));
        }
        Ok(())
    }

    /// `rsync -a --delete -e '<ssh>' FROM/ :TO/`.
    pub fn rsync(command: &str, from: &Path, to: &Path) -> Result<(), String> {
        let o = Command::new("rsync")
            .args(["-a", "--delete", "-e", command])
            .arg(format!("{}/", from.display()))
            .arg(format!(":{}/", to.display()))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("rsync: {e}"))?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!("rsync exited with {}: {}", o.status, stderr(&o)))
        }
    }

    /// Python's `socket.getfqdn()`: the host name, resolved and then reverse-resolved;
    /// the first of those names with a dot, else the reverse name.
    pub fn getfqdn() -> String {
        let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
        let getent = |key: &str| -> Option<Vec<String>> {
            let o = Command::new("getent").args(["hosts", key]).stdin(Stdio::null()).output().ok()?;
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let words: Vec<String> = text.lines().next()?.split_whitespace().map(str::to_owned).collect();
            (o.status.success() && words.len() > 1).then_some(words)
        };
        let Some(addr) = getent(&host).and_then(|w| w.first().cloned()) else { return host };
        let Some(names) = getent(&addr) else { return host };
        let names = &names[1..];
        names.iter().find(|n| n.contains('.')).or(names.first()).cloned().unwrap_or(host)
    }

    /// The local staging copy of a remote destination (`data/`, `tblspc/<oid>/`), removed
    /// when dropped.
    pub struct Staging {
        pub path: PathBuf,
    }

    impl Staging {
        /// `<recovery_staging_path or barman_home>/.barman-recover-<server>-<pid>`.
        pub fn create(ctx: &Context, server: &str) -> Result<Self, CmdError> {
            let base = ctx
                .config()
                .server(server)
                .and_then(|c| c.value("recovery_staging_path"))
                .and_then(OptionValue::as_str)
                .map_or_else(|| ctx.config().global().barman_home.clone(), PathBuf::from);
            let path = base.join(format!(".barman-recover-{server}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path)
                .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o700)))
                .map_err(|e| {
                    CmdError::Error(format!("unable to create the staging directory '{}': {e}", path.display()))
                })?;
            Ok(Self { path })
        }

        pub fn remove(&self) {
            let _ = fs::remove_dir_all(&self.path);
        }
    }

    impl Drop for Staging {
        fn drop(&mut self) {
            self.remove();
        }
    }
}

/// `--target-tli`: a number, `current` (the backup's) or `latest` (the highest timeline with
/// a history file in the archive).
fn resolve_target_tli(server: &Server, tli: TargetTli, info: &BackupInfo) -> u32 {
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

/// Refuses when a WAL segment between the backup's begin_wal and end_wal is not archived.
fn check_backup_wals(server: &Server, id: &BackupId, info: &BackupInfo, size: WalSegSize) -> Result<(), CmdError> {
    let (Some(begin), Some(end)) = (&info.begin_wal, &info.end_wal) else {
        return Err(CmdError::Error(format!("Backup {id} has no begin_wal/end_wal information")));
    };
    let missing = |wal: &WalFileName| {
        CmdError::Error(format!(
            "WAL file {wal} required by backup {id} is missing from the archive of server '{}'",
            server.name
        ))
    };
    if begin.timeline() != end.timeline() {
        // A backup across a timeline switch (from a standby): check both ends only.
        for wal in [begin, end] {
            if crate::cmd::get_wal::locate(server, wal, false).is_none() {
                return Err(missing(wal));
            }
        }
        return Ok(());
    }
    let mut wal = begin.clone();
    loop {
        if crate::cmd::get_wal::locate(server, &wal, false).is_none() {
            return Err(missing(&wal));
        }
        if wal >= *end {
            break;
        }
        wal = wal.next_segment(size).map_err(|e| CmdError::Exception(e.to_string()))?;
    }
    Ok(())
}

/// The archived WAL to ship, as Barman's `get_required_xlog_files` picks it from xlog.db:
/// every history file, and from begin_wal on the files of timelines up to the target one
/// (the latest archived without `--target-tli`), stopping after end_wal for an immediate
/// target and after the segment holding the LSN for an LSN target. `.partial` files are
/// skipped.
fn required_wals(
    info: &BackupInfo,
    calculated_tli: u32,
    immediate: bool,
    target_wal: Option<&str>,
    entries: &[XlogDbEntry],
) -> Vec<WalFileName> {
    let (Some(begin), Some(end)) = (&info.begin_wal, &info.end_wal) else { return Vec::new() };
    let mut end: &str = end.as_str();
    let mut out = Vec::new();
    let mut done = false;
    for e in entries {
        let name = e.name.as_str();
        if name.ends_with(".history") {
            out.push(e.name.clone());
            continue;
        }
        if done || name < begin.as_str() {
            continue;
        }
        if e.name.timeline().get() > calculated_tli {
            continue;
        }
        if name > end {
            if immediate || target_wal.is_some_and(|t| name > t) {
                done = true;
                continue;
            }
            end = name;
        }
        if name.ends_with(".partial") {
            continue;
        }
        out.push(e.name.clone());
    }
    out
}

/// Copies one archived WAL file, decompressed, into `dir`; returns its size.
fn copy_wal(server: &Server, name: &WalFileName, dir: &Path) -> io::Result<u64> {
    let Some(path) = crate::cmd::get_wal::locate(server, name, false) else {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("WAL file '{name}' not found")));
    };
    let input = BufReader::with_capacity(1 << 20, File::open(&path)?);
    let mut plain: Box<dyn io::Read> = match compress::detect_file(&path)? {
        Some(codec) => compress::decoder(codec, input)?,
        None => Box::new(input),
    };
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let n = io::copy(&mut plain, &mut w)?;
    w.flush()?;
    drop(w);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, dir.join(name.as_str()))?;
    Ok(n)
}

/// After a tar extraction: PGDATA and the tablespace directories 0700 (an existing empty
/// destination keeps its mode otherwise) and `pg_wal` present, as a plain copy leaves them.
fn prepare_extracted(root: &Path, tablespace_dirs: impl Iterator<Item = PathBuf>) -> io::Result<()> {
    for dir in std::iter::once(root.to_owned()).chain(tablespace_dirs) {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    }
    let wal = root.join("pg_wal");
    if !wal.exists() {
        fs::create_dir_all(&wal)?;
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes each of `dirs` (PGDATA and every tablespace, which may sit on other filesystems)
/// durable with one `syncfs` of its filesystem, which also covers its parent's entry.
fn make_durable(dirs: impl Iterator<Item = PathBuf>) -> io::Result<()> {
    for dir in dirs {
        durable::sync_filesystem_of(&dir)?;
    }
    Ok(())
}

/// Copies PGDATA with Barman's excludes.
fn copy_pgdata(src: &Path, dest: &Path, progress: &mut Progress) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    fs::set_permissions(dest, fs::metadata(src)?.permissions())?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let from = entry.path();
        let to = dest.join(&*name);
        let ft = entry.file_type()?;
        if EXCLUDED_FILES.contains(&name.as_ref()) {
            continue;
        }
        if EXCLUDED_CONTENT.contains(&name.as_ref()) {
            if ft.is_dir() {
                fs::create_dir_all(&to)?;
                fs::set_permissions(&to, fs::metadata(&from)?.permissions())?;
            } else if ft.is_symlink() {
                symlink(fs::read_link(&from)?, &to)?;
            }
            continue;
        }
        copy_entry(&from, &to, progress)?;
    }
    if !dest.join("pg_wal").exists() {
        fs::create_dir_all(dest.join("pg_wal"))?;
        fs::set_permissions(dest.join("pg_wal"), fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// `cp -a`-like copy of a directory's content into `dest` (created if missing).
fn copy_tree(src: &Path, dest: &Path, progress: &mut Progress) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    fs::set_permissions(dest, fs::metadata(src)?.permissions())?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        copy_entry(&entry.path(), &dest.join(entry.file_name()), progress)?;
    }
    Ok(())
}

fn copy_entry(from: &Path, to: &Path, progress: &mut Progress) -> io::Result<()> {
    let md = fs::symlink_metadata(from)?;
    if md.file_type().is_symlink() {
        symlink(fs::read_link(from)?, to)
    } else if md.is_dir() {
        copy_tree(from, to, progress)
    } else {
        progress.add(fs::copy(from, to)?);
        fs::set_permissions(to, md.permissions())?;
        if let Ok(mtime) = md.modified() {
            let _ = File::options().write(true).open(to).and_then(|f| f.set_modified(mtime));
        }
        Ok(())
    }
}

/// Barman's `PG_CONF_SETTING_RE` (`^\s*([^\s=]+)\s*=?\s*(.*)$`): key and value.
fn setting(line: &str) -> Option<(&str, &str)> {
    let t = line.trim_start();
    let end = t.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(t.len());
    if end == 0 {
        return None;
    }
    let (key, rest) = t.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    Some((key, rest.trim_end_matches(['\n', '\r'])))
}

/// The safety pass over one file (original kept as `<file>.origin`), appending `append`.
fn mangle(path: &Path, append: &[String]) -> Result<Vec<Assertion>, CmdError> {
    let content = fs::read(path)?;
    let text = String::from_utf8_lossy(&content);
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let origin = PathBuf::from(format!("{}.origin", path.display()));
    fs::rename(path, &origin)?;
    let mut mangled = String::with_capacity(text.len() + 256);
    let mut changes = Vec::new();
    let mut last: Option<&str> = None;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if let Some((key, _)) = setting(line) {
            if let Some((_, value)) = OPTIONS_TO_MANGLE.iter().find(|(k, _)| *k == key) {
                mangled.push_str("#BARMAN#");
                mangled.push_str(line);
                if let Some(v) = value {
                    mangled.push_str(&format!("{key} = {v}\n"));
                }
                changes.push(Assertion {
                    file: file.clone(),
                    line: n,
                    key: key.to_owned(),
                    value: value.unwrap_or("None").to_owned(),
                });
                continue;
            }
        }
        last = Some(line);
        mangled.push_str(line);
    }
    if !append.is_empty() {
        // Barman compares `last_line[-1]` (an int for bytes) with b"\n": always unequal, so
        // a newline is always added after a file with any unmangled line.
        if last.is_some_and(|l| !l.is_empty()) {
            mangled.push('\n');
        }
        mangled.push_str(&append.join("\n"));
        mangled.push('\n');
    }
    fs::write(path, mangled)?;
    fs::set_permissions(path, fs::metadata(&origin)?.permissions())?;
    Ok(changes)
}

/// Options the user must review (Barman's `ConfigIssueDetection`).
fn detect_issues(path: &Path) -> Result<Vec<Assertion>, CmdError> {
    let text = fs::read_to_string(path)?;
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(n, line)| {
            let (key, value) = setting(line)?;
            DANGEROUS_OPTIONS.contains(&key).then(|| Assertion {
                file: file.clone(),
                line: n,
                key: key.to_owned(),
                value: value.to_owned(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_parsed_like_barman() {
        assert_eq!(setting("archive_command = 'x %p'\n"), Some(("archive_command", "'x %p'")));
        assert_eq!(setting("  port=5432"), Some(("port", "5432")));
        assert_eq!(setting("#archive_command = 'x'"), Some(("#archive_command", "'x'")));
        assert_eq!(setting("   \n"), None);
    }

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

    #[test]
    fn mangle_comments_archive_command_and_appends() {
        let dir = std::env::temp_dir().join(format!("recover-mangle-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("test");
        let conf = dir.join("postgresql.auto.conf");
        fs::write(&conf, "port = 5\narchive_command = 'cp %p /x'\nrecovery_target_name = 'a'").expect("test");
        let changes = mangle(&conf, &["restore_command = 'cp'".to_owned()]).expect("test");
        let text = fs::read_to_string(&conf).expect("test");
        assert_eq!(
            text,
            "port = 5\n#BARMAN#archive_command = 'cp %p /x'\narchive_command = false\n\
             #BARMAN#recovery_target_name = 'a'\nrestore_command = 'cp'\n"
        );
        assert_eq!(changes.len(), 2);
        assert_eq!((changes[0].line, changes[0].value.as_str()), (1, "false"));
        assert!(dir.join("postgresql.auto.conf.origin").exists());
        fs::remove_dir_all(&dir).expect("test");
    }
}
