//! The streaming loop: connect, choose the start, stream one timeline after another into
//! the directory, report positions, and retry after a lost connection (unless `-n`).

use std::path::PathBuf;
use std::time::Duration;

use barman_common::pg::codec::pg_now;
use barman_common::pg::{
    ConnInfo, PgError, ReplicationConnection, ReplicationStream, SlotInfo, StandbyStatusUpdate, StreamEvent,
};
use barman_common::wal::{Lsn, SegNo, TimelineId, WalSegSize};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{info, info_span, warn, Instrument};

use crate::cli::{Action, Options};
use crate::dir;
use crate::error::ToolError;
use crate::writer::SegmentWriter;

/// How long to wait between connection attempts (pg_receivewal's 5 seconds).
const RETRY_PAUSE: Duration = Duration::from_secs(5);
/// How long a clean stop waits for the server to finish the COPY.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// SIGINT and SIGTERM: both stop streaming cleanly.
struct StopSignals {
    int: Signal,
    term: Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals, ToolError> {
        let io = ToolError::io_at;
        Ok(StopSignals {
            int: signal(SignalKind::interrupt()).map_err(io("could not install signal handlers"))?,
            term: signal(SignalKind::terminate()).map_err(io("could not install signal handlers"))?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Everything fixed for the whole run.
struct Context<'a> {
    opts: &'a Options,
    dir: PathBuf,
    size: WalSegSize,
    system_id: u64,
    file_mode: u32,
}

/// How a timeline's stream ended without error.
enum Ended {
    /// The server moved on to `next_timeline` at `start`; we had received up to `received`.
    EndOfTimeline { next_timeline: TimelineId, start: Lsn, received: Lsn },
    /// Stopped on our side: a signal or `--endpos`.
    Stopped,
}

/// Runs the requested action.
pub async fn run(opts: &Options) -> Result<(), ToolError> {
    let mut signals = StopSignals::install()?;
    match opts.action {
        Action::CreateSlot { if_not_exists } => create_slot(opts, if_not_exists).await,
        Action::DropSlot => drop_slot(opts).await,
        Action::Identify => identify(opts).await,
        Action::Stream => stream(opts, &mut signals).await,
    }
}

async fn connect(info: &ConnInfo) -> Result<ReplicationConnection, PgError> {
    let mut conn = ReplicationConnection::connect(info).await?;
    let ident = conn.identify_system().await?;
    if ident.has_dbname {
        return Err(PgError::Protocol("replication connection is unexpectedly database specific".into()));
    }
    Ok(conn)
}

async fn create_slot(opts: &Options, if_not_exists: bool) -> Result<(), ToolError> {
    let slot = opts.slot.as_deref().expect("cli checked --slot");
    let mut conn = connect(&opts.conninfo).await.map_err(ToolError::Connect)?;
    info!("creating replication slot \"{slot}\"");
    match conn.create_physical_slot(slot, false, true).await {
        Err(PgError::Server(e)) if if_not_exists && e.is_duplicate_object() => {
            info!("replication slot \"{slot}\" already exists");
        }
        result => result.map_err(ToolError::Server)?,
    }
    conn.close().await;
    Ok(())
}

async fn drop_slot(opts: &Options) -> Result<(), ToolError> {
    let slot = opts.slot.as_deref().expect("cli checked --slot");
    let mut conn = connect(&opts.conninfo).await.map_err(ToolError::Connect)?;
    info!("dropping replication slot \"{slot}\"");
    conn.drop_slot(slot, false).await.map_err(ToolError::Server)?;
    conn.close().await;
    Ok(())
}

/// `--identify`: `system_id`, `timeline`, `xlogpos`, `wal_segment_size`,
/// `synchronous_standby_names` and, with `-S`, `slot` (`present`/`missing`) plus the slot's
/// `slot_restart_lsn`/`slot_restart_tli` when it reserves WAL (PG 15+ `READ_REPLICATION_SLOT`).
async fn identify(opts: &Options) -> Result<(), ToolError> {
    let mut conn = connect(&opts.conninfo).await.map_err(ToolError::Connect)?;
    let ident = conn.identify_system().await.map_err(ToolError::Server)?;
    let size = conn.wal_segment_size().await.map_err(ToolError::Server)?;
    let sync_names = conn.show("synchronous_standby_names").await.map_err(ToolError::Server)?;
    let mut text = format!(
        "system_id={}\ntimeline={}\nxlogpos={}\nwal_segment_size={}\nsynchronous_standby_names={}\n",
        ident.system_id,
        ident.timeline,
        ident.xlogpos,
        size.bytes(),
        sync_names.replace('\n', " ")
    );
    if let Some(slot) = opts.slot.as_deref().filter(|_| conn.server_version_num() >= Some(150_000)) {
        match conn.read_slot(slot).await.map_err(ToolError::Server)? {
            None => text.push_str("slot=missing\n"),
            Some(info) => {
                text.push_str("slot=present\n");
                if let Some(lsn) = info.restart_lsn {
                    text.push_str(&format!("slot_restart_lsn={lsn}\n"));
                }
                if let Some(tli) = info.restart_tli {
                    text.push_str(&format!("slot_restart_tli={tli}\n"));
                }
            }
        }
    }
    conn.close().await;
    print!("{text}");
    Ok(())
}

/// File mode from `data_directory_mode` (0750 gives group-readable files, as pg_receivewal).
async fn file_mode(conn: &mut ReplicationConnection) -> u32 {
    match conn.show("data_directory_mode").await.as_deref() {
        Ok("0750") => 0o640,
        _ => 0o600,
    }
}

async fn stream(opts: &Options, signals: &mut StopSignals) -> Result<(), ToolError> {
    let dir = opts.directory.clone().expect("cli checked -D");
    if !dir.is_dir() {
        return Err(ToolError::directory(format!("could not access directory \"{}\": not a directory", dir.display())));
    }
    let mut conn = tokio::select! {
        c = connect(&opts.conninfo) => c.map_err(ToolError::Connect)?,
        () = signals.recv() => return Ok(()),
    };
    let ident = conn.identify_system().await.map_err(ToolError::Connect)?;
    let size = conn.wal_segment_size().await.map_err(ToolError::Connect)?;
    let file_mode = file_mode(&mut conn).await;
    dir::check_same_system(&dir, ident.system_id, size)?;
    let ctx = Context { opts, dir, size, system_id: ident.system_id, file_mode };
    let mut conn = Some(conn);
    loop {
        let mut current = match conn.take() {
            Some(c) => c,
            None => match tokio::select! { c = connect(&opts.conninfo) => c, () = signals.recv() => return Ok(()) } {
                Ok(c) => c,
                Err(e) if opts.no_loop => return Err(ToolError::Connect(e)),
                Err(e) => {
                    warn!("could not connect: {e}; waiting 5 seconds to try again");
                    if pause(signals).await {
                        return Ok(());
                    }
                    continue;
                }
            },
        };
        match stream_session(&ctx, &mut current, signals).instrument(info_span!("session")).await {
            Ok(()) => {
                current.close().await;
                return Ok(());
            }
            Err(e) if opts.no_loop || e.is_fatal() => return Err(e),
            Err(e) => {
                warn!("{e}");
                warn!("disconnected; waiting 5 seconds to try again");
                if pause(signals).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Sleeps [`RETRY_PAUSE`]; true if a stop signal came first.
async fn pause(signals: &mut StopSignals) -> bool {
    tokio::select! {
        () = sleep(RETRY_PAUSE) => false,
        () = signals.recv() => true,
    }
}

/// Where to start: the directory, else the slot (PG 15+), else the server's position;
/// rounded down to a segment start.
async fn start_position(ctx: &Context<'_>, conn: &mut ReplicationConnection) -> Result<(Lsn, TimelineId), ToolError> {
    let ident = conn.identify_system().await.map_err(ToolError::Server)?;
    if ident.system_id != ctx.system_id {
        return Err(ToolError::directory(format!(
            "the server's system identifier changed from {} to {}",
            ctx.system_id, ident.system_id
        )));
    }
    let resume = dir::find_streaming_start(&ctx.dir, ctx.size)?;
    let slot = ctx.opts.slot.as_deref().filter(|_| conn.server_version_num() >= Some(150_000));
    let from_slot = match slot {
        Some(slot) => slot_start(ctx, conn, slot, resume.is_some()).await?,
        None => None,
    };
    let (lsn, tli) = if let Some(p) = resume {
        (p.start, p.timeline)
    } else if let Some((lsn, tli)) = from_slot {
        (lsn, tli.unwrap_or(ident.timeline))
    } else {
        (ident.xlogpos, ident.timeline)
    };
    if tli > ident.timeline {
        return Err(ToolError::Stream(format!("starting timeline {tli} is not present in the server")));
    }
    Ok((SegNo::containing(lsn, ctx.size).start_lsn(ctx.size), tli))
}

/// The slot's restart position (PG 15+ `READ_REPLICATION_SLOT`), checked on every attempt.
/// A NULL `restart_lsn` is either a slot that never reserved WAL or one invalidated by
/// `max_slot_wal_keep_size`; the server's `wal_status` tells them apart (a separate SQL
/// session, best effort). `lost` with nothing to resume from in the directory is fatal:
/// starting at the server's position would leave a gap. When `resuming` from the directory,
/// START_REPLICATION decides: the WAL is either still there (no gap) or "already removed",
/// which [`stream_error`] turns into the same fatal error.
async fn slot_start(
    ctx: &Context<'_>,
    conn: &mut ReplicationConnection,
    slot: &str,
    resuming: bool,
) -> Result<Option<(Lsn, Option<TimelineId>)>, ToolError> {
    match conn.read_slot(slot).await.map_err(ToolError::Server)? {
        None => Err(ToolError::Stream(format!("replication slot \"{slot}\" does not exist"))),
        Some(info) if info.slot_type != "physical" => {
            Err(ToolError::Stream(format!("slot \"{slot}\" is not a physical replication slot")))
        }
        Some(SlotInfo { restart_lsn: Some(lsn), restart_tli, .. }) => Ok(Some((lsn, restart_tli))),
        Some(_) => match slot_wal_status(&ctx.opts.conninfo, slot).await.as_deref() {
            Some("lost") if !resuming => {
                Err(ToolError::SlotInvalidated { slot: slot.to_owned(), detail: Some("wal_status is \"lost\"".into()) })
            }
            Some("lost") => {
                info!(
                    "replication slot \"{slot}\" has been invalidated; resuming only if the server still has the WAL"
                );
                Ok(None)
            }
            status if resuming => {
                info!("replication slot \"{slot}\" reserves no WAL (wal_status {})", status.unwrap_or("unknown"));
                Ok(None)
            }
            status => {
                warn!(
                    "replication slot \"{slot}\" reserves no WAL (wal_status {}); starting at the server's position",
                    status.unwrap_or("unknown")
                );
                Ok(None)
            }
        },
    }
}

/// `wal_status` of `slot` from `pg_replication_slots`, over an ordinary SQL connection to
/// the connection string's database (`postgres` if it names none, rather than libpq's
/// default of the user's name); `None` if that cannot be had (e.g. pg_hba allows only
/// replication connections).
async fn slot_wal_status(info: &ConnInfo, slot: &str) -> Option<String> {
    let mut info = info.clone();
    if info.get("dbname").is_none() && std::env::var_os("PGDATABASE").is_none() {
        info.set("dbname", "postgres").ok()?;
    }
    let query = async {
        let mut conn = ReplicationConnection::connect_database(&info).await?;
        let sql = format!(
            "select coalesce(wal_status, '') from pg_catalog.pg_replication_slots where slot_name = '{}'",
            slot.replace('\'', "''")
        );
        let rows = conn.simple_query(&sql).await;
        conn.close().await;
        rows
    };
    match tokio::time::timeout(Duration::from_secs(10), query).await {
        Ok(Ok(rows)) => rows.into_iter().next().and_then(|row| row.into_iter().next().flatten()),
        Ok(Err(e)) => {
            info!("could not read wal_status of slot \"{slot}\": {e}");
            None
        }
        Err(_) => None,
    }
}

/// One connection's worth of streaming, across timeline switches. `Ok` means stopped on
/// request (signal or `--endpos`).
async fn stream_session(
    ctx: &Context<'_>,
    conn: &mut ReplicationConnection,
    signals: &mut StopSignals,
) -> Result<(), ToolError> {
    let (mut start, mut tli) = start_position(ctx, conn).await?;
    loop {
        if tli.get() > 1 && !dir::has_history(&ctx.dir, tli) {
            let history = conn.timeline_history(tli).await.map_err(ToolError::Server)?;
            dir::write_history(&ctx.dir, tli, &history.filename, &history.content, ctx.file_mode)?;
        }
        info!("starting log streaming at {start} (timeline {tli})");
        let mut writer = SegmentWriter::new(&ctx.dir, ctx.size, tli, !ctx.opts.no_sync, ctx.file_mode)
            .compressed(ctx.opts.compression);
        let ended = stream_timeline(ctx, conn, &mut writer, start, tli, signals).await;
        let closed = writer.close_partial();
        match ended? {
            Ended::Stopped => {
                closed?;
                return sync_dir(ctx);
            }
            Ended::EndOfTimeline { next_timeline, start: next_start, received } => {
                closed?;
                if next_timeline <= tli {
                    return Err(ToolError::Stream(format!(
                        "server reported unexpected next timeline {next_timeline}, following timeline {tli}"
                    )));
                }
                if next_start > received {
                    return Err(ToolError::Stream(format!(
                        "server stopped streaming timeline {tli} at {received}, but reported next timeline {next_timeline} to begin at {next_start}"
                    )));
                }
                info!("switched to timeline {next_timeline} at {next_start}");
                tli = next_timeline;
                start = SegNo::containing(next_start, ctx.size).start_lsn(ctx.size);
            }
        }
    }
}

fn sync_dir(ctx: &Context<'_>) -> Result<(), ToolError> {
    if ctx.opts.no_sync {
        return Ok(());
    }
    barman_common::durable::fsync_dir(&ctx.dir).map_err(ToolError::Io)
}

/// Positions reported to the server.
struct Progress {
    received: Lsn,
    flushed: Lsn,
    report_flush: bool,
}

impl Progress {
    fn status(&self) -> StandbyStatusUpdate {
        StandbyStatusUpdate {
            write: self.received,
            flush: if self.report_flush { self.flushed } else { Lsn::INVALID },
            apply: Lsn::INVALID,
            client_time: pg_now(),
            reply_requested: false,
        }
    }
}

/// What to do after an event.
enum Next {
    Continue,
    Done(Ended),
}

async fn stream_timeline(
    ctx: &Context<'_>,
    conn: &mut ReplicationConnection,
    writer: &mut SegmentWriter,
    start: Lsn,
    tli: TimelineId,
    signals: &mut StopSignals,
) -> Result<Ended, ToolError> {
    let opts = ctx.opts;
    let stream_error = |e: PgError| stream_error(opts.slot.as_deref(), e);
    let mut stream = conn.start_replication(opts.slot.as_deref(), start, tli).await.map_err(stream_error)?;
    let mut progress =
        Progress { received: start, flushed: start, report_flush: opts.slot.is_some() || opts.synchronous };
    send_status(&mut stream, &progress).await?;
    let interval = opts.status_interval.unwrap_or(Duration::from_hours(1));
    let mut next_status = Instant::now() + interval;
    loop {
        let first = tokio::select! {
            event = stream.next() => event.map_err(stream_error)?,
            () = sleep_until(next_status), if opts.status_interval.is_some() => {
                send_status(&mut stream, &progress).await?;
                next_status = Instant::now() + interval;
                continue;
            }
            () = signals.recv() => {
                info!("received interrupt signal, exiting");
                writer.flush()?;
                let _ = stream.stop(STOP_GRACE).await;
                return Ok(Ended::Stopped);
            }
        };
        let mut event = Some(first);
        while let Some(e) = event {
            if let Next::Done(ended) = handle_event(ctx, &mut stream, writer, &mut progress, e).await? {
                return Ok(ended);
            }
            event = stream.next_buffered().await.map_err(stream_error)?;
        }
        if opts.synchronous && progress.flushed < progress.received && writer.is_open() {
            writer.flush()?;
            progress.flushed = progress.received;
            send_status(&mut stream, &progress).await?;
            next_status = Instant::now() + interval;
        }
    }
}

async fn handle_event(
    ctx: &Context<'_>,
    stream: &mut ReplicationStream<'_>,
    writer: &mut SegmentWriter,
    progress: &mut Progress,
    event: StreamEvent,
) -> Result<Next, ToolError> {
    match event {
        StreamEvent::XLogData(x) => {
            if let Some(segment_end) = writer.write(x.wal_start(), x.data())? {
                progress.flushed = progress.flushed.max(segment_end);
            }
            progress.received = x.end();
            if ctx.opts.endpos.is_some_and(|end| end < progress.received) {
                info!("stopped log streaming at {}", progress.received);
                writer.flush()?;
                let _ = stream.stop(STOP_GRACE).await;
                return Ok(Next::Done(Ended::Stopped));
            }
        }
        StreamEvent::Keepalive(k) if k.reply_requested() => {
            if progress.report_flush && progress.flushed < progress.received && writer.is_open() {
                writer.flush()?;
                progress.flushed = progress.received;
            }
            send_status(stream, progress).await?;
        }
        StreamEvent::Keepalive(_) => {}
        StreamEvent::EndOfTimeline { next_timeline, start } => {
            return Ok(Next::Done(Ended::EndOfTimeline { next_timeline, start, received: progress.received }));
        }
        StreamEvent::Finished => {
            return Err(ToolError::Stream("replication stream was terminated before stop point".into()))
        }
    }
    Ok(Next::Continue)
}

async fn send_status(stream: &mut ReplicationStream<'_>, progress: &Progress) -> Result<(), ToolError> {
    stream.send_status(&progress.status()).await.map_err(ToolError::Server)
}

/// A failure while streaming. A server error such as "requested WAL segment ... has
/// already been removed" keeps its text (and SQLSTATE); without `-n` it is retried, as
/// pg_receivewal does, and logged at each attempt, except when a slot is used: then the
/// slot was invalidated (or never covered that position) and retrying cannot help.
fn stream_error(slot: Option<&str>, e: PgError) -> ToolError {
    match (slot, e.server()) {
        (Some(slot), Some(server)) if server.is_wal_removed() => {
            ToolError::SlotInvalidated { slot: slot.to_owned(), detail: Some(server.message.clone()) }
        }
        _ => ToolError::Server(e),
    }
}

#[cfg(test)]
mod tests {
    use barman_common::exit::HasExitCode;
    use barman_common::pg::ServerError;

    use super::*;

    fn removed() -> PgError {
        PgError::Server(Box::new(ServerError {
            severity: "ERROR".into(),
            code: "58P01".into(),
            message: "requested WAL segment 000000010000000000000003 has already been removed".into(),
            ..ServerError::default()
        }))
    }

    #[test]
    fn removed_wal_under_a_slot_is_a_fatal_invalidation() {
        let e = stream_error(Some("barman"), removed());
        assert!(matches!(e, ToolError::SlotInvalidated { .. }), "{e}");
        assert!(e.is_fatal());
        assert_eq!(e.exit_code().code(), 1);
        let text = e.to_string();
        assert!(
            text.starts_with("replication slot \"barman\" has been invalidated (WAL needed was removed: requested"),
            "{text}"
        );
        assert!(text.ends_with("take a new backup and recreate the slot"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn removed_wal_without_a_slot_is_retried_like_pg_receivewal() {
        let e = stream_error(None, removed());
        assert!(matches!(e, ToolError::Server(_)) && !e.is_fatal(), "{e}");
        assert!(!stream_error(Some("barman"), PgError::Closed).is_fatal());
    }
}
