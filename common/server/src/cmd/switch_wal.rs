//! `switch-wal [--force] [--archive] [--archive-timeout S] SERVER...|all` (alias
//! `switch-xlog`): Barman 3.20.1's `Server.switch_wal`. Runs `CHECKPOINT` (with `--force`)
//! and `pg_switch_wal()` over `conninfo`, names the WAL file it closed, and with `--archive`
//! runs the archiver until that file is in the archive or the timeout passes.

use std::time::{Duration, Instant};

use barman_common::config::ServerConfig;
use barman_common::pg::{ConnInfo, ReplicationConnection};
use barman_common::wal::WalFileName;

use crate::cmd::archive_wal;
use crate::cmd::live::{query_one, segment_before, value};
use crate::context::Context;
use crate::output::Output;
use crate::server::Server;
use crate::CmdError;

/// The command's flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--force`: `CHECKPOINT` first.
    pub force: bool,
    /// `--archive`: wait for the closed file to be archived.
    pub archive: bool,
    /// `--archive-timeout` seconds (0 = wait forever, as Barman).
    pub archive_timeout: u64,
}

/// What the PostgreSQL side of a switch gave.
enum Switch {
    /// The file closed by the switch.
    Closed(String),
    /// Nothing was written since the last switch.
    NotRequired,
    /// The server is a standby.
    InRecovery,
    /// `--force` without superuser or `pg_checkpoint`.
    NoCheckpointPrivileges,
    /// Connecting or a query failed.
    Failed,
}

async fn switch(cfg: &ServerConfig, force: bool) -> Switch {
    let Some(info) = cfg.conninfo.as_deref().and_then(|c| ConnInfo::parse(c).ok()) else { return Switch::Failed };
    let Ok(mut conn) = ReplicationConnection::connect_database(&info).await else { return Switch::Failed };
    let result = switch_on(&mut conn, force).await;
    conn.close().await;
    result
}

async fn switch_on(conn: &mut ReplicationConnection, force: bool) -> Switch {
    let version = conn.server_version_num().unwrap_or(0);
    if force {
        let role = if version >= 150_000 { " OR pg_has_role(CURRENT_USER, 'pg_checkpoint', 'MEMBER')" } else { "" };
        let sql = format!("SELECT usesuper{role} FROM pg_user WHERE usename = CURRENT_USER");
        if value(conn, &sql).await.as_deref() != Some("t") {
            return Switch::NoCheckpointPrivileges;
        }
        // Barman logs a failed CHECKPOINT and goes on with the switch.
        let _ = conn.simple_query("CHECKPOINT").await;
    }
    match value(conn, "SELECT pg_is_in_recovery()").await.as_deref() {
        Some("t") => return Switch::InRecovery,
        Some(_) => {}
        None => return Switch::Failed,
    }
    let pre_sql = if version >= 170_000 {
        "SELECT file_name, file_offset FROM pg_walfile_name_offset(pg_current_wal_insert_lsn())"
    } else {
        "SELECT pg_walfile_name(pg_current_wal_insert_lsn()), NULL"
    };
    let Some(pre) = query_one(conn, pre_sql).await else { return Switch::Failed };
    let Some(Some(pre_name)) = pre.first().cloned() else { return Switch::Failed };
    if conn.simple_query("SELECT pg_walfile_name(pg_switch_wal())").await.is_err() {
        return Switch::Failed;
    }
    let Some(post) = value(conn, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())").await else {
        return Switch::Failed;
    };
    if pre_name >= post {
        return Switch::NotRequired;
    }
    if version >= 170_000 && pre.get(1).cloned().flatten().as_deref() == Some("0") {
        return Switch::Closed(segment_before(conn, pre_name).await);
    }
    Switch::Closed(pre_name)
}

/// Runs the archiver until `wal` is in the archive or `timeout` (0 = never) passes; false
/// when an `ERROR:` was printed.
fn wait_for_wal(server: &Server, wal: Option<&str>, timeout: u64, out: &mut Output) -> bool {
    let name = &server.name;
    let max = if timeout > 0 { format!(" (max: {timeout} seconds)") } else { String::new() };
    match wal {
        Some(w) => out.info(format!("Waiting for the WAL file {w} from server '{name}'{max}")),
        None => out.info(format!("Waiting for a WAL file from server '{name}' to be archived{max}")),
    }
    let target = wal.and_then(|w| w.parse::<WalFileName>().ok());
    let newest = || {
        barman_common::catalogue::XlogDb::open(&server.layout)
            .and_then(|mut db| db.entries())
            .ok()
            .and_then(|e| e.into_iter().map(|(_, e)| e.name.as_str().to_owned()).max())
    };
    let initial = newest();
    let end = (timeout > 0).then(|| Instant::now() + Duration::from_secs(timeout));
    while end.is_none_or(|e| Instant::now() < e) {
        if let Ok(lock) = archive_wal::lock(server) {
            let lines = archive_wal::run(server).unwrap_or_default();
            drop(lock);
            if !lines.is_empty() {
                out.info(format!("Processing xlog segments from file archival for {name}"));
            }
            for line in lines {
                out.info(line);
            }
        }
        let done = match &target {
            Some(t) => server.layout.wal_path(t).exists(),
            None => newest() != initial,
        };
        if done {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(w) = wal {
        out.error(format!("The WAL file {w} has not been received in {timeout} seconds"));
        false
    } else {
        out.info(format!("A WAL file has not been received in {timeout} seconds"));
        true
    }
}

/// `switch-wal [--force] [--archive] [--archive-timeout S] SERVER...|all`.
pub fn run(ctx: &Context, names: &[String], opts: &Options, out: &mut Output) -> Result<(), CmdError> {
    let requested = crate::cmd::list::expand_servers(ctx, names);
    let mut names = Vec::new();
    for name in &requested {
        match ctx.config().server(name) {
            Some(cfg) if !cfg.active => out.info(format!("Skipping inactive server '{name}'")),
            _ => names.push(name.clone()),
        }
    }
    names.sort();
    names.dedup();
    let mut failed = false;
    let rt = crate::cmd::sql_runtime().map_err(|e| CmdError::Exception(e.to_string()))?;
    for name in &names {
        let Some(cfg) = ctx.config_or_report(name, out) else {
            failed = true;
            continue;
        };
        if cfg.is_passive() {
            out.error(format!("switch-wal is not supported on passive server '{name}'"));
            failed = true;
            continue;
        }
        let server = ctx.server(name)?;
        let closed = match rt.block_on(switch(cfg, opts.force)) {
            Switch::Closed(w) => {
                out.info(format!("The WAL file {w} has been closed on server '{name}'"));
                Some(w)
            }
            Switch::NotRequired => {
                out.info(format!("No switch required for server '{name}'"));
                None
            }
            Switch::InRecovery => {
                out.info(format!("No switch performed because server '{name}' is a standby."));
                None
            }
            Switch::NoCheckpointPrivileges => {
                out.error("Barman switch-wal --force requires superuser rights or the 'pg_checkpoint' role");
                failed = true;
                continue;
            }
            Switch::Failed => {
                out.error(format!("Unable to perform pg_switch_wal for server '{name}'."));
                failed = true;
                continue;
            }
        };
        if opts.archive {
            failed |= !wait_for_wal(&server, closed.as_deref(), opts.archive_timeout, out);
        }
    }
    if failed {
        return Err(CmdError::Silent(1));
    }
    Ok(())
}
