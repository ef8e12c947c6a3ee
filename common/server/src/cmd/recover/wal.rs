//! The WAL side of a recovery: the incoming WAL archived first, every segment the backup
//! needs checked in the archive, and then either the required WAL copied (decompressed)
//! into the result as Barman's `get_required_xlog_files` picks it, or the `restore_command`
//! that fetches it (`barman get-wal`, a remote `barman-wal-restore`, a `--restore-command`).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use barman_common::catalogue::{XlogDb, XlogDbEntry};
use barman_common::compress;
use barman_common::gpg::{self, GpgError};
use barman_common::wal::{TimelineId, WalFileName};

use super::options::TargetTli;
use super::plan::{resolve_target_tli, Plan};
use super::remote;
use crate::context::Context;
use crate::output::Output;
use crate::progress::Progress;
use crate::server::Server;
use crate::CmdError;

/// Barman archives the incoming WAL files first; a failure is only a warning.
pub fn archive_incoming(ctx: &Context, server_name: &str, out: &mut Output) {
    if let Err(e) = crate::cmd::archive_wal_cmd(ctx, server_name, out) {
        out.warning(format!("Unable to archive the incoming WAL files: {e}"));
    }
}

/// The archived WAL as xlog.db lists it.
pub fn archived(server: &Server) -> Result<Vec<XlogDbEntry>, CmdError> {
    Ok(XlogDb::open(&server.layout)?.entries()?.into_iter().map(|(_, e)| e).collect())
}

/// Refuses when a WAL segment between the backup's begin_wal and end_wal is not archived.
pub fn check_backup_wals(plan: &Plan<'_>) -> Result<(), CmdError> {
    let (server, id) = (&plan.server, &plan.id);
    let (Some(begin), Some(end)) = (&plan.info.begin_wal, &plan.info.end_wal) else {
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
        wal = wal.next_segment(plan.seg_size).map_err(|e| CmdError::Exception(e.to_string()))?;
    }
    Ok(())
}

/// Phase 2 without get-wal: the required WAL copied into `barman_wal` (PITR) or `pg_wal`
/// under `root`, with `.done` archive status files for the latter.
pub fn copy_required(plan: &Plan<'_>, root: &Path, entries: &[XlogDbEntry], out: &mut Output) -> Result<(), CmdError> {
    out.info("Copying required WAL segments.");
    let into = plan.wal_dir(root);
    fs::create_dir_all(into.join("archive_status"))?;
    let wanted = wanted(plan, entries);
    let mut progress = Progress::new("WAL", wanted.len() as u64 * u64::from(plan.seg_size.bytes()));
    for name in &wanted {
        let n = copy_wal(&plan.server, name, &into).map_err(|e| match GpgError::from_io(e) {
            GpgError::Io(e) => CmdError::Error(format!("Failure copying WAL files: {e}")),
            gpg => CmdError::Gpg(gpg),
        })?;
        progress.add(n);
    }
    progress.finish();
    if !plan.targets.is_pitr {
        out.info("Generating archive status files");
        let status = into.join("archive_status");
        fs::create_dir_all(&status)?;
        for name in &wanted {
            File::create(status.join(format!("{}.done", stored_as(name))))?;
        }
    }
    Ok(())
}

/// Without get-wal, when the WAL to copy is encrypted, proves the passphrase opens the first
/// encrypted one before anything is written (a wrong passphrase then changes nothing).
pub fn check_passphrase(plan: &Plan<'_>, entries: &[XlogDbEntry]) -> Result<(), CmdError> {
    if plan.get_wal {
        return Ok(());
    }
    let encrypted: HashSet<&WalFileName> = entries.iter().filter(|e| e.encryption.is_some()).map(|e| &e.name).collect();
    if let Some(name) = wanted(plan, entries).into_iter().find(|n| encrypted.contains(n)) {
        let path = plan.server.layout.wal_path(&name);
        plan.server.gpg.check_opens(&path)?;
    }
    Ok(())
}

/// Barman always creates the archive_status directory of the WAL destination.
pub fn create_status_dir(plan: &Plan<'_>, root: &Path) -> Result<(), CmdError> {
    fs::create_dir_all(plan.wal_dir(root).join("archive_status"))?;
    Ok(())
}

/// The files to copy: up to the target timeline (the latest archived without
/// `--target-tli`) and, for an LSN target, the segment holding it.
fn wanted(plan: &Plan<'_>, entries: &[XlogDbEntry]) -> Vec<WalFileName> {
    let calculated_tli = match plan.targets.tli {
        Some(t) => t,
        None => resolve_target_tli(&plan.server, TargetTli::Latest, &plan.info),
    };
    let target_wal = plan.opts.target_lsn.and_then(|lsn| {
        TimelineId::new(calculated_tli).map(|tli| WalFileName::containing(tli, lsn, plan.seg_size).to_string())
    });
    let (mut wals, end) = required_wals(plan, calculated_tli, target_wal.as_deref(), entries);
    if plan.opts.partial_wal && !plan.get_wal && !plan.opts.target_immediate {
        wals.extend(streaming_partial(plan, calculated_tli, target_wal.as_deref(), end.as_ref()));
    }
    wals
}

/// `--partial-wal`: the `.partial` file pg_receivewal is writing in `streaming/`, when it is
/// the segment right after the last one copied, on the target timeline and not beyond an
/// LSN target (Barman's `get_required_xlog_files(include_partial=True)`).
fn streaming_partial(
    plan: &Plan<'_>,
    calculated_tli: u32,
    target_wal: Option<&str>,
    end: Option<&WalFileName>,
) -> Option<WalFileName> {
    let next = end?.next_segment(plan.seg_size).ok()?;
    if next.timeline().get() != calculated_tli || target_wal.is_some_and(|t| next.as_str() > t) {
        return None;
    }
    let name = format!("{next}.partial");
    plan.server.layout.streaming.join(&name).is_file().then(|| name.parse().ok()).flatten()
}

/// The name a copied WAL file gets: a `.partial` one without its suffix, so that
/// PostgreSQL finds it.
fn stored_as(name: &WalFileName) -> String {
    match name.as_str().strip_suffix(".partial") {
        Some(segment) => segment.to_owned(),
        None => name.to_string(),
    }
}

/// Barman's warnings for a `--partial-wal` that has no effect.
pub fn warn_partial(plan: &Plan<'_>, out: &mut Output) {
    if !plan.opts.partial_wal {
        return;
    }
    if plan.get_wal {
        out.warning("The --partial-wal option was ignored as it only works with --no-get-wal.");
    } else if plan.opts.target_immediate {
        out.warning("The --partial-wal option was ignored as it has no effect with --target-immediate.");
    }
}

/// The archived WAL to ship, as Barman's `get_required_xlog_files` picks it from xlog.db:
/// every history file, and from begin_wal on the files of timelines up to the target one
/// (the latest archived without `--target-tli`), stopping after end_wal for an immediate
/// target and after the segment holding the LSN for an LSN target. `.partial` files are
/// skipped unless `--partial-wal` asks for them. Also returns the last segment reached.
fn required_wals(
    plan: &Plan<'_>,
    calculated_tli: u32,
    target_wal: Option<&str>,
    entries: &[XlogDbEntry],
) -> (Vec<WalFileName>, Option<WalFileName>) {
    let (Some(begin), Some(end)) = (&plan.info.begin_wal, &plan.info.end_wal) else { return (Vec::new(), None) };
    let include_partial = plan.opts.partial_wal && !plan.get_wal;
    let immediate = plan.opts.target_immediate;
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
        if name.ends_with(".partial") && !include_partial {
            continue;
        }
        out.push(e.name.clone());
    }
    (out, end.parse().ok())
}

/// Copies one archived WAL file, decompressed, into `dir`; returns its size.
fn copy_wal(server: &Server, name: &WalFileName, dir: &Path) -> io::Result<u64> {
    let Some(path) = crate::cmd::get_wal::locate(server, name, false) else {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("WAL file '{name}' not found")));
    };
    let stored: Box<dyn io::Read> = if gpg::is_encrypted_file(&path)? {
        Box::new(server.gpg.decrypt(&path)?)
    } else {
        Box::new(File::open(&path)?)
    };
    let mut input = BufReader::with_capacity(1 << 20, stored);
    let mut plain: Box<dyn io::Read> = match compress::detect(input.fill_buf()?) {
        Some(codec) => compress::decoder(codec, input)?,
        None => Box::new(input),
    };
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let n = io::copy(&mut plain, &mut w)?;
    w.flush()?;
    drop(w);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, dir.join(stored_as(name)))?;
    Ok(n)
}

/// The `restore_command` lines (with their comment): `--restore-command` under get-wal,
/// `barman get-wal` (a remote `barman-wal-restore` back to this host for a remote
/// recovery), or, without get-wal and outside standby mode, a `cp` from the copied
/// `barman_wal` with its `recovery_end_command`.
pub fn restore_lines(plan: &Plan<'_>, out: &mut Output) -> Vec<String> {
    let opts = plan.opts;
    if let Some(custom) = opts.restore_command.as_ref().filter(|_| plan.get_wal) {
        let escaped = custom.replace('\'', "''");
        out.info(format!("Custom restore command override: restore_command = '{escaped}'"));
        return vec![format!("restore_command = '{escaped}'")];
    }
    if plan.get_wal {
        return get_wal_lines(plan);
    }
    if opts.standby_mode {
        return Vec::new();
    }
    if opts.restore_command.is_some() {
        out.warning("The provided custom restore command was ignored as it only works with get-wal mode.");
    }
    let wal_dest = plan.pitr_wal_dir(&plan.dest);
    let w = wal_dest.display();
    vec![format!("restore_command = 'cp {w}/%f %p'"), format!("recovery_end_command = 'rm -fr {w}'")]
}

/// The get-wal `restore_command`: `barman get-wal` run as the barman user, or for a remote
/// recovery `barman-wal-restore` reaching this host (`-p N` with parallel jobs).
fn get_wal_lines(plan: &Plan<'_>) -> Vec<String> {
    let (opts, user, server_name) = (plan.opts, &plan.barman_user, plan.server_name);
    let partial = if opts.standby_mode { "" } else { "-P" };
    if plan.remote.is_none() {
        return vec![
            format!("# The 'barman get-wal' command must run as '{user}' user"),
            format!("restore_command = 'barman get-wal {partial} {server_name} %f > %p'"),
        ];
    }
    let port = opts.recovery_option_port.as_ref().map(|p| format!("--port {p}")).unwrap_or_default();
    let fqdn = remote::getfqdn();
    let mut cmd =
        format!("restore_command = 'barman-wal-restore {partial} -U {user} {port} {fqdn} {server_name} %f %p'");
    let jobs = opts.jobs.unwrap_or(plan.parallel_jobs);
    if jobs > 1 {
        cmd.pop();
        cmd.push_str(&format!(" -p {jobs}'"));
    }
    vec![
        "# The 'barman-wal-restore' command is provided in the 'barman-cli' package".into(),
        cmd.split_whitespace().collect::<Vec<_>>().join(" "),
    ]
}
