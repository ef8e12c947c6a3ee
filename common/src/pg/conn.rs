//! The socket adapter: a replication connection over TCP or a Unix socket, startup and
//! authentication (trust, cleartext, md5, SCRAM-SHA-256), simple queries, the replication
//! commands, and the COPY BOTH stream of `START_REPLICATION`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::codec::{self, BackendMessage, ReplicationMessage, StandbyStatusUpdate, StreamMessage};
use super::{ConnInfo, ConnTarget, PgError, ServerError};
use crate::wal::{Lsn, TimelineId, WalSegSize};

trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// How much the receive buffer takes in at once (two maximal XLogData messages).
const READ_CHUNK: usize = 256 * 1024;

/// One result row: text values, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemIdentity {
    /// The database system identifier.
    pub system_id: u64,
    /// The server's current (on a standby: replay) timeline.
    pub timeline: TimelineId,
    /// The current WAL flush (standby: received/replayed) position.
    pub xlogpos: Lsn,
    /// Whether the connection is tied to a database (a logical walsender).
    pub has_dbname: bool,
}

/// `READ_REPLICATION_SLOT` of an existing slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// `physical` or `logical`.
    pub slot_type: String,
    /// The oldest WAL the slot keeps, if it reserves any.
    pub restart_lsn: Option<Lsn>,
    /// The timeline of `restart_lsn`.
    pub restart_tli: Option<TimelineId>,
}

/// `TIMELINE_HISTORY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineHistory {
    /// The file name the server gave, e.g. `00000002.history`.
    pub filename: String,
    /// The file's raw content.
    pub content: Vec<u8>,
}

/// A physical replication connection (`replication=true`).
pub struct ReplicationConnection {
    io: Box<dyn Transport>,
    rbuf: BytesMut,
    pub(super) wbuf: BytesMut,
    params: HashMap<String, String>,
    backend_pid: i32,
}

impl std::fmt::Debug for ReplicationConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationConnection").field("backend_pid", &self.backend_pid).finish_non_exhaustive()
    }
}

pub(super) fn server_error(fields: ErrorFields<'_>) -> ServerError {
    let pairs: Vec<(u8, String)> = fields
        .map(|f| Ok((f.type_(), String::from_utf8_lossy(f.value_bytes()).into_owned())))
        .collect()
        .unwrap_or_default();
    ServerError::from_fields(pairs.iter().map(|(k, v)| (*k, v.as_str())))
}

async fn open_socket(target: &ConnTarget) -> Result<Box<dyn Transport>, PgError> {
    if target.is_unix_socket() {
        let unix = with_timeout(target, UnixStream::connect(target.describe())).await?;
        return Ok(Box::new(unix));
    }
    let tcp = with_timeout(target, async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    })
    .await?;
    Ok(match super::tls::negotiate(tcp, target).await? {
        super::tls::Negotiated::Tls(stream) => Box::new(stream),
        super::tls::Negotiated::Plain(tcp) => Box::new(tcp),
    })
}

async fn with_timeout<T>(
    target: &ConnTarget,
    connect: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, PgError> {
    let result = match target.connect_timeout {
        Some(limit) => tokio::time::timeout(limit, connect)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout expired"))),
        None => connect.await,
    };
    result.map_err(|source| PgError::Connect { target: target.describe(), source })
}

impl ReplicationConnection {
    /// Connects and authenticates as a physical walsender client (TLS as `sslmode` says).
    pub async fn connect(info: &ConnInfo) -> Result<ReplicationConnection, PgError> {
        Self::connect_as(info, true).await
    }

    /// Connects and authenticates an ordinary SQL session to the connection string's
    /// database (no `replication` parameter): for the catalogue queries a replication
    /// connection refuses (`pg_tablespace`, `pg_switch_wal()`...). [`Self::simple_query`]
    /// runs SQL on it.
    pub async fn connect_database(info: &ConnInfo) -> Result<ReplicationConnection, PgError> {
        Self::connect_as(info, false).await
    }

    async fn connect_as(info: &ConnInfo, replication: bool) -> Result<ReplicationConnection, PgError> {
        let target = info.resolve()?;
        let io = open_socket(&target).await?;
        let mut conn = ReplicationConnection {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::new(),
            params: HashMap::new(),
            backend_pid: 0,
        };
        conn.startup(&target, replication).await?;
        Ok(conn)
    }

    async fn startup(&mut self, target: &ConnTarget, replication: bool) -> Result<(), PgError> {
        let mut params = if replication {
            vec![("user", target.user.as_str()), ("database", "replication"), ("replication", "true")]
        } else {
            vec![("user", target.user.as_str()), ("database", target.dbname.as_str())]
        };
        if let Some(name) = &target.application_name {
            params.push(("application_name", name.as_str()));
        }
        frontend::startup_message(params, &mut self.wbuf)?;
        self.flush().await?;
        self.authenticate(target).await?;
        loop {
            match self.read_message().await? {
                Message::ParameterStatus(body) => {
                    self.params.insert(body.name()?.to_owned(), body.value()?.to_owned());
                }
                Message::BackendKeyData(body) => self.backend_pid = body.process_id(),
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ErrorResponse(body) => return Err(PgError::Server(Box::new(server_error(body.fields())))),
                Message::NoticeResponse(body) => log_notice(&server_error(body.fields())),
                _ => return Err(PgError::protocol("unexpected message during startup")),
            }
        }
    }

    async fn authenticate(&mut self, target: &ConnTarget) -> Result<(), PgError> {
        let password =
            || target.password.clone().ok_or_else(|| PgError::Auth("fe_sendauth: no password supplied".into()));
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.read_message().await? {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?.as_bytes(), &mut self.wbuf)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(target.user.as_bytes(), password()?.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.wbuf)?;
                }
                Message::AuthenticationSasl(body) => {
                    let mechanisms: Vec<String> = body.mechanisms().map(|m| Ok(m.to_owned())).collect()?;
                    if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(PgError::Auth(format!("no supported SASL mechanism in {mechanisms:?}")));
                    }
                    let client = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, client.message(), &mut self.wbuf)?;
                    scram = Some(client);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let client = scram.as_mut().ok_or_else(|| PgError::protocol("SASLContinue before SASL"))?;
                    client.update(body.data()).map_err(|e| PgError::Auth(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(client.message(), &mut self.wbuf)?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let client = scram.as_mut().ok_or_else(|| PgError::protocol("SASLFinal before SASL"))?;
                    client.finish(body.data()).map_err(|e| PgError::Auth(format!("SCRAM server signature: {e}")))?;
                    continue;
                }
                Message::ErrorResponse(body) => return Err(PgError::Server(Box::new(server_error(body.fields())))),
                _ => {
                    return Err(PgError::Auth(
                        "authentication method not supported (only trust, password, md5 and SCRAM-SHA-256)".into(),
                    ))
                }
            }
            self.flush().await?;
        }
    }

    /// A parameter the server reported at startup (`server_version`, `in_hot_standby`...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The server version as `major * 10000 + minor`, parsed from `server_version`.
    pub fn server_version_num(&self) -> Option<u32> {
        let text = self.parameter("server_version")?;
        let number: String = text.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let mut parts = number.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        Some(major * 10000 + minor)
    }

    /// Queues a simple Query message and sends it (the response is read by the caller).
    pub(super) async fn send_query(&mut self, sql: &str) -> Result<(), PgError> {
        tracing::debug!(query = sql, "replication command");
        frontend::query(sql, &mut self.wbuf)?;
        self.flush().await
    }

    /// The walsender's process id.
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    pub(super) async fn flush(&mut self) -> Result<(), PgError> {
        self.io.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        self.io.flush().await?;
        Ok(())
    }

    /// Reads until one backend message is complete (cancel-safe: partial input stays buffered).
    async fn read_backend(&mut self) -> Result<BackendMessage, PgError> {
        loop {
            if let Some(message) = codec::parse_backend(&mut self.rbuf)? {
                return Ok(message);
            }
            self.read_more().await?;
        }
    }

    /// Reads what the socket has into `rbuf`, keeping room for a whole XLogData message
    /// first: without it, a buffer whose spare capacity was split off with the previous
    /// messages would be refilled 64 bytes at a time.
    async fn read_more(&mut self) -> Result<(), PgError> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 2 {
            self.rbuf.reserve(READ_CHUNK);
        }
        if self.io.read_buf(&mut self.rbuf).await? == 0 {
            return Err(PgError::Closed);
        }
        Ok(())
    }

    pub(super) async fn read_message(&mut self) -> Result<Message, PgError> {
        match self.read_backend().await? {
            BackendMessage::Other(m) => Ok(m),
            BackendMessage::CopyBothResponse => Err(PgError::protocol("unexpected CopyBothResponse")),
        }
    }

    /// Reads the rest of a query's response up to ReadyForQuery, collecting rows; the
    /// first ErrorResponse becomes the result (a FATAL one may end with the socket closing).
    pub(super) async fn collect_result(&mut self, mut rows: Vec<Row>) -> Result<Vec<Row>, PgError> {
        let mut error = None;
        loop {
            let message = match self.read_message().await {
                Ok(m) => m,
                Err(PgError::Closed) if error.is_some() => break,
                Err(e) => return Err(e),
            };
            match message {
                Message::DataRow(body) => rows.push(decode_row(&body)?),
                Message::ErrorResponse(body) => {
                    error.get_or_insert_with(|| server_error(body.fields()));
                }
                Message::NoticeResponse(body) => log_notice(&server_error(body.fields())),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        error.map_or(Ok(rows), |e| Err(PgError::Server(Box::new(e))))
    }

    /// Runs one simple query (a replication command or `SHOW`) and returns its rows.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, PgError> {
        tracing::debug!(query = sql, "replication command");
        frontend::query(sql, &mut self.wbuf)?;
        self.flush().await?;
        self.collect_result(Vec::new()).await
    }

    async fn one_row(&mut self, sql: &str, columns: usize) -> Result<Row, PgError> {
        let rows = self.simple_query(sql).await?;
        match rows.as_slice() {
            [row] if row.len() >= columns => Ok(row.clone()),
            _ => Err(PgError::protocol(format!(
                "could not send replication command \"{sql}\": got {} rows, expected 1 row with {columns} or more fields",
                rows.len()
            ))),
        }
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, PgError> {
        let row = self.one_row("IDENTIFY_SYSTEM", 3).await?;
        let field = |i: usize| row[i].as_deref().ok_or_else(|| PgError::protocol("IDENTIFY_SYSTEM returned NULL"));
        let bad = |what: &str| PgError::protocol(format!("IDENTIFY_SYSTEM: invalid {what}"));
        Ok(SystemIdentity {
            system_id: field(0)?.parse().map_err(|_| bad("systemid"))?,
            timeline: field(1)?.parse().map_err(|_| bad("timeline"))?,
            xlogpos: field(2)?.parse().map_err(|_| bad("xlogpos"))?,
            has_dbname: row.get(3).is_some_and(Option::is_some),
        })
    }

    /// `SHOW name`.
    pub async fn show(&mut self, name: &str) -> Result<String, PgError> {
        let row = self.one_row(&format!("SHOW {name}"), 1).await?;
        row[0].clone().ok_or_else(|| PgError::protocol(format!("SHOW {name} returned NULL")))
    }

    /// `SHOW wal_segment_size`, parsed like pg_receivewal (MB or GB, a power of two).
    pub async fn wal_segment_size(&mut self) -> Result<WalSegSize, PgError> {
        let text = self.show("wal_segment_size").await?;
        parse_wal_segment_size(&text)
            .ok_or_else(|| PgError::protocol(format!("invalid WAL segment size \"{text}\" reported by the server")))
    }

    /// `TIMELINE_HISTORY tli`.
    pub async fn timeline_history(&mut self, tli: TimelineId) -> Result<TimelineHistory, PgError> {
        let row = self.one_row(&format!("TIMELINE_HISTORY {tli}"), 2).await?;
        match (&row[0], &row[1]) {
            (Some(filename), Some(content)) => {
                Ok(TimelineHistory { filename: filename.clone(), content: content.clone().into_bytes() })
            }
            _ => Err(PgError::protocol("TIMELINE_HISTORY returned NULL")),
        }
    }

    /// `CREATE_REPLICATION_SLOT "name" [TEMPORARY] PHYSICAL [RESERVE_WAL]`.
    pub async fn create_physical_slot(
        &mut self,
        name: &str,
        temporary: bool,
        reserve_wal: bool,
    ) -> Result<(), PgError> {
        let sql = format!(
            "CREATE_REPLICATION_SLOT {}{} PHYSICAL{}",
            quote_ident(name),
            if temporary { " TEMPORARY" } else { "" },
            if reserve_wal { " RESERVE_WAL" } else { "" }
        );
        self.simple_query(&sql).await.map(drop)
    }

    /// `DROP_REPLICATION_SLOT "name" [WAIT]`.
    pub async fn drop_slot(&mut self, name: &str, wait: bool) -> Result<(), PgError> {
        let sql = format!("DROP_REPLICATION_SLOT {}{}", quote_ident(name), if wait { " WAIT" } else { "" });
        self.simple_query(&sql).await.map(drop)
    }

    /// `READ_REPLICATION_SLOT "name"` (PG 15+); `None` if the slot does not exist.
    pub async fn read_slot(&mut self, name: &str) -> Result<Option<SlotInfo>, PgError> {
        let row = self.one_row(&format!("READ_REPLICATION_SLOT {}", quote_ident(name)), 3).await?;
        let Some(slot_type) = row[0].clone() else { return Ok(None) };
        let bad = |what: &str| PgError::protocol(format!("READ_REPLICATION_SLOT: invalid {what}"));
        let restart_lsn = row[1].as_deref().map(|v| v.parse().map_err(|_| bad("restart_lsn"))).transpose()?;
        let restart_tli = row[2].as_deref().map(|v| v.parse().map_err(|_| bad("restart_tli"))).transpose()?;
        Ok(Some(SlotInfo { slot_type, restart_lsn, restart_tli }))
    }

    /// `START_REPLICATION [SLOT "s"] PHYSICAL X/X TIMELINE n`. Errors the server reports
    /// before COPY BOTH (an active slot, an unknown timeline) are returned here; those after
    /// it come from [`ReplicationStream::next`].
    pub async fn start_replication(
        &mut self,
        slot: Option<&str>,
        start: Lsn,
        timeline: TimelineId,
    ) -> Result<ReplicationStream<'_>, PgError> {
        let slot = slot.map(|s| format!("SLOT {} ", quote_ident(s))).unwrap_or_default();
        let sql = format!("START_REPLICATION {slot}PHYSICAL {start} TIMELINE {timeline}");
        tracing::debug!(query = sql.as_str(), "replication command");
        frontend::query(&sql, &mut self.wbuf)?;
        self.flush().await?;
        loop {
            match self.read_backend().await? {
                BackendMessage::CopyBothResponse => {
                    return Ok(ReplicationStream { conn: self, we_sent_done: false, pending: None })
                }
                BackendMessage::Other(Message::NoticeResponse(body)) => log_notice(&server_error(body.fields())),
                BackendMessage::Other(Message::ErrorResponse(body)) => {
                    let error = server_error(body.fields());
                    let _ = self.collect_result(Vec::new()).await;
                    return Err(PgError::Server(Box::new(error)));
                }
                // Start exactly at the switch point of a historic timeline: no COPY, the
                // next-timeline result set straight away.
                BackendMessage::Other(Message::RowDescription(_)) => {
                    let rows = self.collect_result(Vec::new()).await?;
                    let pending = Some(end_of_timeline(&rows)?);
                    return Ok(ReplicationStream { conn: self, we_sent_done: true, pending });
                }
                BackendMessage::Other(_) => {}
            }
        }
    }

    /// Sends Terminate and closes the socket.
    pub async fn close(mut self) {
        frontend::terminate(&mut self.wbuf);
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }
}

pub(super) fn log_notice(notice: &ServerError) {
    tracing::info!("server {}: {}", notice.severity, notice);
}

pub(super) fn decode_row(body: &postgres_protocol::message::backend::DataRowBody) -> Result<Row, PgError> {
    let buffer = body.buffer();
    body.ranges()
        .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned())))
        .collect()
        .map_err(PgError::from)
}

/// A double-quoted identifier (slot names keep their case and cannot inject syntax).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `16MB`, `1GB` (pg_receivewal accepts only these two units).
fn parse_wal_segment_size(text: &str) -> Option<WalSegSize> {
    let (number, multiplier) = if let Some(n) = text.strip_suffix("MB") {
        (n, 1024 * 1024)
    } else if let Some(n) = text.strip_suffix("GB") {
        (n, 1024 * 1024 * 1024)
    } else {
        return None;
    };
    let bytes = number.trim().parse::<u64>().ok()?.checked_mul(multiplier)?;
    WalSegSize::new(bytes).ok()
}

fn end_of_timeline(rows: &[Row]) -> Result<StreamEvent, PgError> {
    let bad = || PgError::protocol("unexpected result set after end-of-timeline");
    let row = rows.first().filter(|r| r.len() >= 2).ok_or_else(bad)?;
    let next_timeline = row[0].as_deref().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let start = row[1].as_deref().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    Ok(StreamEvent::EndOfTimeline { next_timeline, start })
}

/// What the COPY BOTH stream delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// WAL bytes.
    XLogData(codec::XLogDataBody),
    /// A keepalive.
    Keepalive(codec::PrimaryKeepaliveBody),
    /// The server finished streaming this (historic) timeline; the next one begins at
    /// `start`. The connection is ready for another command.
    EndOfTimeline {
        /// The following timeline.
        next_timeline: TimelineId,
        /// Where it forked off.
        start: Lsn,
    },
    /// The stream ended after our CopyDone ([`ReplicationStream::stop`]).
    Finished,
}

/// The COPY BOTH phase of `START_REPLICATION`, borrowing its connection.
#[derive(Debug)]
pub struct ReplicationStream<'a> {
    conn: &'a mut ReplicationConnection,
    we_sent_done: bool,
    pending: Option<StreamEvent>,
}

impl ReplicationStream<'_> {
    /// The next event, waiting for input. Cancel-safe: dropping the future loses nothing.
    /// Server errors after CopyBoth (e.g. WAL already removed) come back as
    /// [`PgError::Server`]; a shutdown (`COPY 0`) as [`PgError::StreamTerminated`].
    pub async fn next(&mut self) -> Result<StreamEvent, PgError> {
        loop {
            if let Some(event) = self.next_buffered().await? {
                return Ok(event);
            }
            self.conn.read_more().await?;
        }
    }

    /// The next event if one is already fully buffered, without reading the socket (an
    /// end of COPY still completes the exchange, which may read).
    pub async fn next_buffered(&mut self) -> Result<Option<StreamEvent>, PgError> {
        if let Some(event) = self.pending.take() {
            return Ok(Some(event));
        }
        loop {
            let Some(message) = codec::decode_stream(&mut self.conn.rbuf)? else { return Ok(None) };
            match message {
                StreamMessage::Replication(ReplicationMessage::XLogData(x)) if !self.we_sent_done => {
                    return Ok(Some(StreamEvent::XLogData(x)));
                }
                StreamMessage::Replication(ReplicationMessage::PrimaryKeepalive(k)) if !self.we_sent_done => {
                    return Ok(Some(StreamEvent::Keepalive(k)));
                }
                StreamMessage::Replication(_) => {}
                StreamMessage::Backend(BackendMessage::Other(message)) => {
                    if let Some(event) = self.on_backend(message).await? {
                        return Ok(Some(event));
                    }
                }
                StreamMessage::Backend(BackendMessage::CopyBothResponse) => {
                    return Err(PgError::protocol("unexpected CopyBothResponse while streaming"));
                }
            }
        }
    }

    async fn on_backend(&mut self, message: Message) -> Result<Option<StreamEvent>, PgError> {
        match message {
            Message::CopyDone => {
                if !self.we_sent_done {
                    codec::encode_copy_done(&mut self.conn.wbuf);
                    self.conn.flush().await?;
                    self.we_sent_done = true;
                }
                let rows = self.conn.collect_result(Vec::new()).await?;
                if rows.is_empty() {
                    Ok(Some(StreamEvent::Finished))
                } else {
                    end_of_timeline(&rows).map(Some)
                }
            }
            Message::ErrorResponse(body) => {
                let error = server_error(body.fields());
                Err(PgError::Server(Box::new(error)))
            }
            Message::CommandComplete(_) => Err(PgError::StreamTerminated),
            Message::NoticeResponse(body) => {
                log_notice(&server_error(body.fields()));
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Sends a standby status update.
    pub async fn send_status(&mut self, update: &StandbyStatusUpdate) -> Result<(), PgError> {
        update.encode(&mut self.conn.wbuf);
        self.conn.flush().await
    }

    /// Ends the stream from our side: CopyDone, then waits (up to `limit`) for the server to
    /// finish. WAL that still arrives is discarded. The connection can be reused after.
    pub async fn stop(&mut self, limit: Duration) -> Result<(), PgError> {
        if !self.we_sent_done {
            codec::encode_copy_done(&mut self.conn.wbuf);
            self.conn.flush().await?;
            self.we_sent_done = true;
        }
        let drain = async {
            loop {
                match self.next().await? {
                    StreamEvent::Finished | StreamEvent::EndOfTimeline { .. } => return Ok(()),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(limit, drain).await.unwrap_or(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_sizes_as_shown() {
        assert_eq!(parse_wal_segment_size("16MB").map(WalSegSize::bytes), Some(16 << 20));
        assert_eq!(parse_wal_segment_size("1GB").map(WalSegSize::bytes), Some(1 << 30));
        assert_eq!(parse_wal_segment_size("3MB"), None);
        assert_eq!(parse_wal_segment_size("16kB"), None);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("barman"), "\"barman\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
