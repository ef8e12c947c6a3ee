//! `barman-relay`: the passive node of Barman's geo-redundancy. For one passive server
//! (`primary_ssh_command` set), it asks the primary backup host for its catalogue
//! (`barman sync-info`, saved as `primary.info`), then copies the WAL files and the
//! backups this host lacks with rsync over the same ssh command — the transport a real
//! Barman primary offers — and records them in a catalogue Barman 3.20.1 reads. `barman
//! cron` starts it for each passive server; `barman sync-backup`, `sync-wals` and
//! `sync-info --primary` call it for one step.
//!
//! Beyond Barman (see `spec/relay.md`): WAL is chosen by name against the local xlog.db
//! (never wedged by an edge of the primary's xlog.db), the primary's streaming `.partial`
//! segment is relayed too, a backup is DONE only once verified against its manifest and
//! with its WAL present, an interrupted copy resumes without re-sending complete files,
//! tablespace links and keep annotations are carried, and `relay.info` records the lag.
#![forbid(unsafe_code)]

pub mod backup;
mod error;
mod options;
pub mod primary;
mod session;
pub mod wals;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::context::Context;
use crate::output::Output;

use barman_common::catalogue::relay as state;
use barman_common::catalogue::sync::PrimaryInfo;
use barman_common::catalogue::{BackupId, Catalogue};

pub use error::RelayError;
pub use options::{Mode, Options};
pub use session::Relay;
use session::{LOG_MODULE, RECOVERY_WARNING};

use self::primary::Primary;
use crate::rsync::Rsync;

/// Runs the tool.
pub fn run(opts: &Options) -> Result<(), RelayError> {
    let mut out = Output::new(false, opts.quiet);
    out.set_logger(LOG_MODULE);
    let mut boot = Output::new(false, opts.quiet);
    boot.set_logger(LOG_MODULE);
    let result = Context::load(opts.config.as_deref(), &mut boot)
        .map_err(|e| RelayError::Usage(e.to_string()))
        .and_then(|ctx| run_with(&ctx, opts, out));
    if let Err(e) = &result {
        boot.error(e.to_string());
    }
    boot.close();
    result
}

fn run_with(ctx: &Context, opts: &Options, out: Output) -> Result<(), RelayError> {
    let name = &opts.server;
    let cfg = ctx.config().server(name).ok_or_else(|| RelayError::Usage(format!("Unknown server '{name}'")))?;
    let Some(ssh) = cfg.primary_ssh_command.clone() else {
        return Err(RelayError::Usage(format!("server {name} is not passive")));
    };
    let server = ctx.server(name).map_err(|e| RelayError::Usage(e.to_string()))?;
    let forward_config = cfg.forward_config_path.then(|| ctx.config().config_file().display().to_string());
    let relay = Relay {
        server,
        cfg,
        primary: Primary { ssh_command: ssh.clone(), server: name.clone(), forward_config },
        rsync: Rsync {
            ssh_command: Some(ssh),
            bwlimit: cfg.bandwidth_limit.and_then(|b| u64::try_from(b).ok()),
            compress: cfg.network_compression,
        },
        out: RefCell::new(out),
    };
    let result = run_mode(&relay, opts);
    relay.out.into_inner().close();
    result
}

fn run_mode(relay: &Relay<'_>, opts: &Options) -> Result<(), RelayError> {
    let info = |incremental| if opts.cached { relay.cached_info() } else { relay.fetch_info(incremental) };
    match &opts.mode {
        Mode::Info => {
            let last = opts.last.as_ref().map(|(w, p)| (w.as_str(), p.as_str()));
            let answer = relay.primary.sync_info(last)?;
            if answer.recovered {
                relay.warn(RECOVERY_WARNING);
            }
            state::save_primary_info(&relay.server.layout, &answer.text)?;
            print!("{}", answer.text);
            Ok(())
        }
        Mode::Backup(id) => {
            let id: BackupId = id.parse().map_err(|_| RelayError::Usage(format!("invalid backup id '{id}'")))?;
            report(relay, &backup::sync(relay, &info(false)?, &id)?);
            Ok(())
        }
        Mode::Wals => {
            let info = info(true)?;
            wals::sync(relay, &info, !opts.no_partial)?;
            follow(relay, opts);
            Ok(())
        }
        Mode::Backups => sync_backups(relay, &info(false)?),
        Mode::All => {
            let info = info(true)?;
            let wal_result = wals::sync(relay, &info, !opts.no_partial);
            let backup_result = sync_backups(relay, &info);
            wal_result?;
            backup_result?;
            follow(relay, opts);
            Ok(())
        }
    }
}

fn report(relay: &Relay<'_>, outcome: &backup::Outcome) {
    if let backup::Outcome::Skipped(why) | backup::Outcome::Busy(why) = outcome {
        relay.say(why.clone());
    }
}

/// Copies every missing backup, oldest first, one at a time.
fn sync_backups(relay: &Relay<'_>, info: &PrimaryInfo) -> Result<(), RelayError> {
    let local = Catalogue::load(&relay.server.layout)?;
    let todo = backup::candidates(&local, info);
    if todo.is_empty() {
        relay.say(format!("No backup synchronisation required for server {}", relay.server.name));
        return Ok(());
    }
    for id in &todo {
        relay.say(format!("Starting copy of backup {id} for server {}", relay.server.name));
        let outcome = backup::sync(relay, info, id)?;
        report(relay, &outcome);
        if matches!(outcome, backup::Outcome::Busy(_)) {
            // One backup copy at a time per server: the running relay goes on with the rest.
            break;
        }
    }
    Ok(())
}

/// `--follow`: more WAL passes, every `--interval` seconds, until `--follow` seconds
/// have passed.
fn follow(relay: &Relay<'_>, opts: &Options) {
    if opts.follow == 0 || opts.cached {
        return;
    }
    let until = Instant::now() + Duration::from_secs(opts.follow);
    while Instant::now() + Duration::from_secs(opts.interval) < until {
        std::thread::sleep(Duration::from_secs(opts.interval));
        match relay.fetch_info(true) {
            Ok(info) => {
                if let Err(e) = wals::sync(relay, &info, !opts.no_partial) {
                    relay.warn(e.to_string());
                }
            }
            Err(e) => relay.warn(e.to_string()),
        }
    }
}
