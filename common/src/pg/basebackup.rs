//! `BASE_BACKUP` on a replication connection, PG15+ form: the option list, the two header
//! result sets (start position, tablespaces), and the single COPY OUT stream whose CopyData
//! payloads are typed `n` (new archive), `d` (data), `p` (progress) and `m` (manifest
//! follows), then the end-position result set.
//!
//! The payload decoder ([`BaseBackupEvent::parse`]) is sans-IO; [`BaseBackupStream`] owns
//! the reading. Facts: `spec/protocol.md` section 5.

use bytes::{Buf, Bytes};
use postgres_protocol::message::backend::Message;

use super::conn::{decode_row, log_notice, server_error};
use super::{PgError, ReplicationConnection, Row};
use crate::wal::{Lsn, TimelineId};

/// `MAX_RATE` bounds in kB/s; the server refuses anything else but 0 (22003).
pub const MAX_RATE_RANGE: std::ops::RangeInclusive<u32> = 32..=1_048_576;

/// The options of one `BASE_BACKUP` command (PG15+ syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackupOptions {
    /// `LABEL`.
    pub label: String,
    /// `PROGRESS`: size estimates in the tablespace header (costs a scan of the data dir).
    pub progress: bool,
    /// `CHECKPOINT 'fast'` instead of a spread checkpoint.
    pub fast_checkpoint: bool,
    /// `WAIT`: at the end, wait until the last WAL segment is archived (server default true).
    pub wait: bool,
    /// `MANIFEST 'yes'`.
    pub manifest: bool,
    /// `MANIFEST_CHECKSUMS` (`CRC32C` when `None`).
    pub manifest_checksums: Option<String>,
    /// `TABLESPACE_MAP`: a `tablespace_map` file instead of `pg_tblspc` symlink entries.
    pub tablespace_map: bool,
    /// `MAX_RATE` in kB/s.
    pub max_rate_kbps: Option<u32>,
    /// `COMPRESSION`: server-side compression (`gzip`, `lz4`, `zstd`); the archive names then
    /// carry the method's suffix (`base.tar.gz`, `.lz4`, `.zst`).
    pub compression: Option<String>,
    /// `COMPRESSION_DETAIL`, e.g. `level=3,workers=2` (only with `compression`).
    pub compression_detail: Option<String>,
    /// `INCREMENTAL` (PG 17+): a block-level incremental backup on top of the manifest sent
    /// first on the same connection ([`ReplicationConnection::upload_manifest`]).
    pub incremental: bool,
}

impl Default for BaseBackupOptions {
    fn default() -> Self {
        BaseBackupOptions {
            label: "base backup".into(),
            progress: true,
            fast_checkpoint: false,
            wait: true,
            manifest: true,
            manifest_checksums: None,
            tablespace_map: false,
            max_rate_kbps: None,
            compression: None,
            compression_detail: None,
            incremental: false,
        }
    }
}

impl BaseBackupOptions {
    /// The command text, e.g. `BASE_BACKUP ( LABEL 'x', PROGRESS, CHECKPOINT 'fast', ... )`.
    pub fn command(&self) -> String {
        let mut parts = vec![format!("LABEL {}", quote_literal(&self.label))];
        if self.progress {
            parts.push("PROGRESS".into());
        }
        if self.fast_checkpoint {
            parts.push("CHECKPOINT 'fast'".into());
        }
        if !self.wait {
            parts.push("WAIT false".into());
        }
        if self.manifest {
            parts.push("MANIFEST 'yes'".into());
            if let Some(alg) = &self.manifest_checksums {
                parts.push(format!("MANIFEST_CHECKSUMS {}", quote_literal(alg)));
            }
        }
        if self.tablespace_map {
            parts.push("TABLESPACE_MAP".into());
        }
        if let Some(rate) = self.max_rate_kbps {
            parts.push(format!("MAX_RATE {rate}"));
        }
        if let Some(method) = &self.compression {
            parts.push(format!("COMPRESSION {}", quote_literal(method)));
            if let Some(detail) = &self.compression_detail {
                parts.push(format!("COMPRESSION_DETAIL {}", quote_literal(detail)));
            }
        }
        if self.incremental {
            parts.push("INCREMENTAL".into());
        }
        format!("BASE_BACKUP ( {} )", parts.join(", "))
    }
}

impl BaseBackupOptions {
    /// The PG 12-14 form: `BASE_BACKUP LABEL 'x' PROGRESS FAST NOWAIT MAX_RATE n
    /// TABLESPACE_MAP MANIFEST 'yes' ...` (spec `protocol.md` 5.1). `MANIFEST` needs PG13.
    /// Server-side compression does not exist there: `None` when it is asked for.
    pub fn legacy_command(&self) -> Option<String> {
        if self.compression.is_some() || self.incremental {
            return None;
        }
        let mut parts = vec![format!("BASE_BACKUP LABEL {}", quote_literal(&self.label))];
        if self.progress {
            parts.push("PROGRESS".into());
        }
        if self.fast_checkpoint {
            parts.push("FAST".into());
        }
        if !self.wait {
            parts.push("NOWAIT".into());
        }
        if let Some(rate) = self.max_rate_kbps {
            parts.push(format!("MAX_RATE {rate}"));
        }
        if self.tablespace_map {
            parts.push("TABLESPACE_MAP".into());
        }
        if self.manifest {
            parts.push("MANIFEST 'yes'".into());
            if let Some(alg) = &self.manifest_checksums {
                parts.push(format!("MANIFEST_CHECKSUMS {}", quote_literal(alg)));
            }
        }
        Some(parts.join(" "))
    }
}

/// A single-quoted SQL (and `postgresql.conf`) string literal, `'` doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// One row of the tablespace header: extra tablespaces first, the main data dir last
/// (`oid` and `location` NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablespaceHeader {
    /// `spcoid`.
    pub oid: Option<u32>,
    /// `spclocation`: the tablespace directory on the server.
    pub location: Option<String>,
    /// Estimated size in kB (only with `PROGRESS`).
    pub size_kb: Option<u64>,
}

/// What the server reports before streaming: the backup start and the tablespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackupStart {
    /// The backup start LSN (the checkpoint's redo pointer).
    pub start_lsn: Lsn,
    /// The start timeline.
    pub timeline: TimelineId,
    /// One entry per archive that follows.
    pub tablespaces: Vec<TablespaceHeader>,
}

impl BaseBackupStart {
    fn from_sets(sets: &[Vec<Row>]) -> Result<BaseBackupStart, PgError> {
        let [start, spaces, ..] = sets else {
            return Err(PgError::protocol(format!("BASE_BACKUP: expected 2 result sets, got {}", sets.len())));
        };
        let (start_lsn, timeline) = lsn_tli(start, "start")?;
        let tablespaces = spaces.iter().map(tablespace_row).collect::<Result<_, _>>()?;
        Ok(BaseBackupStart { start_lsn, timeline, tablespaces })
    }
}

fn lsn_tli(rows: &[Row], what: &str) -> Result<(Lsn, TimelineId), PgError> {
    let bad = || PgError::protocol(format!("BASE_BACKUP: invalid {what} position"));
    let row = rows.first().filter(|r| r.len() >= 2).ok_or_else(bad)?;
    let lsn = row[0].as_deref().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let tli = row[1].as_deref().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    Ok((lsn, tli))
}

fn tablespace_row(row: &Row) -> Result<TablespaceHeader, PgError> {
    let bad = || PgError::protocol("BASE_BACKUP: invalid tablespace header row");
    let field = |i: usize| row.get(i).cloned().flatten();
    let oid = field(0).map(|v| v.parse().map_err(|_| bad())).transpose()?;
    let size_kb = field(2).map(|v| v.parse().map_err(|_| bad())).transpose()?;
    Ok(TablespaceHeader { oid, location: field(1), size_kb })
}

/// One decoded CopyData payload of the BASE_BACKUP stream, or its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseBackupEvent {
    /// `n`: a new archive starts (`base.tar` or `<oid>.tar`); `tablespace_path` is empty
    /// for the main data directory.
    Archive {
        /// The archive name.
        name: String,
        /// The tablespace location on the server.
        tablespace_path: String,
    },
    /// `d`: archive bytes, or manifest bytes after [`BaseBackupEvent::ManifestStart`].
    Data(Bytes),
    /// `p`: bytes sent so far.
    Progress(u64),
    /// `m`: the backup manifest follows.
    ManifestStart,
    /// The stream is over: the end position and timeline (the connection is idle again).
    End {
        /// The backup end LSN.
        end_lsn: Lsn,
        /// The end timeline.
        timeline: TimelineId,
    },
}

impl BaseBackupEvent {
    /// Decodes one CopyData payload.
    pub fn parse(mut payload: Bytes) -> Result<BaseBackupEvent, PgError> {
        let Some(&tag) = payload.first() else { return Err(PgError::protocol("empty CopyData in BASE_BACKUP")) };
        payload.advance(1);
        match tag {
            b'n' => {
                let name = take_cstring(&mut payload)?;
                let tablespace_path = take_cstring(&mut payload)?;
                if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
                    return Err(PgError::protocol(format!("invalid archive name \"{name}\"")));
                }
                Ok(BaseBackupEvent::Archive { name, tablespace_path })
            }
            b'd' => Ok(BaseBackupEvent::Data(payload)),
            b'p' if payload.len() >= 8 => Ok(BaseBackupEvent::Progress(payload.get_i64().max(0) as u64)),
            b'm' => Ok(BaseBackupEvent::ManifestStart),
            other => Err(PgError::protocol(format!(
                "unrecognized BASE_BACKUP message type \"{}\" (length {})",
                char::from(other),
                payload.len() + 1
            ))),
        }
    }
}

fn take_cstring(buf: &mut Bytes) -> Result<String, PgError> {
    let end = buf.iter().position(|&b| b == 0).ok_or_else(|| PgError::protocol("unterminated string"))?;
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.advance(end + 1);
    Ok(text)
}

/// The COPY OUT phase of `BASE_BACKUP`, borrowing its connection.
#[derive(Debug)]
pub struct BaseBackupStream<'a> {
    conn: &'a mut ReplicationConnection,
    in_manifest: bool,
    finished: bool,
    /// PG 12-14: one COPY OUT per archive instead of the typed stream.
    legacy: Option<Legacy>,
}

/// The state of a PG 12-14 stream (spec `protocol.md` 5.3): each tablespace arrives as its
/// own COPY OUT of raw, unterminated tar bytes, in header order (base last), then the
/// manifest (PG13+) as one more COPY OUT. It is presented as the PG15 event sequence.
#[derive(Debug)]
struct Legacy {
    /// Archive names still to come (`<oid>.tar`, ..., `base.tar`).
    names: std::collections::VecDeque<(String, String)>,
    /// An event decided while reading ahead.
    pending: Option<BaseBackupEvent>,
}

/// The end-of-archive blocks a PG15 server sends and older ones leave out.
static TAR_TRAILER: [u8; 1024] = [0; 1024];

impl BaseBackupStream<'_> {
    /// Whether the data now arriving is the manifest.
    pub fn in_manifest(&self) -> bool {
        self.in_manifest
    }

    /// The next event; after [`BaseBackupEvent::End`] it is an error to call again. Server
    /// errors (a checksum failure, a cancelled backup) come back as [`PgError::Server`].
    pub async fn next(&mut self) -> Result<BaseBackupEvent, PgError> {
        if self.finished {
            return Err(PgError::protocol("BASE_BACKUP stream already finished"));
        }
        if self.legacy.is_some() {
            return self.next_legacy().await;
        }
        loop {
            match self.conn.read_message().await? {
                Message::CopyData(body) => {
                    let event = BaseBackupEvent::parse(body.into_bytes())?;
                    match &event {
                        BaseBackupEvent::ManifestStart => self.in_manifest = true,
                        BaseBackupEvent::Archive { .. } if self.in_manifest => {
                            return Err(PgError::protocol("new archive after the manifest"));
                        }
                        _ => {}
                    }
                    return Ok(event);
                }
                Message::CopyDone => return self.finish().await,
                Message::ErrorResponse(body) => {
                    let error = server_error(body.fields());
                    let _ = self.conn.collect_result(Vec::new()).await;
                    self.finished = true;
                    return Err(PgError::Server(Box::new(error)));
                }
                Message::NoticeResponse(body) => log_notice(&server_error(body.fields())),
                _ => {}
            }
        }
    }

    async fn finish(&mut self) -> Result<BaseBackupEvent, PgError> {
        self.finished = true;
        let rows = self.conn.collect_result(Vec::new()).await?;
        let (end_lsn, timeline) = lsn_tli(&rows, "end")?;
        Ok(BaseBackupEvent::End { end_lsn, timeline })
    }

    async fn server_failure(&mut self, error: crate::pg::ServerError) -> PgError {
        let _ = self.conn.collect_result(Vec::new()).await;
        self.finished = true;
        PgError::Server(Box::new(error))
    }

    async fn next_legacy(&mut self) -> Result<BaseBackupEvent, PgError> {
        if let Some(event) = self.legacy.as_mut().and_then(|l| l.pending.take()) {
            return Ok(event);
        }
        loop {
            match self.conn.read_message().await? {
                Message::CopyData(body) => return Ok(BaseBackupEvent::Data(body.into_bytes())),
                Message::CopyDone => {
                    let was_manifest = self.in_manifest;
                    let following = self.after_legacy_copy().await?;
                    if was_manifest {
                        return Ok(following);
                    }
                    if let Some(l) = self.legacy.as_mut() {
                        l.pending = Some(following);
                    }
                    return Ok(BaseBackupEvent::Data(bytes::Bytes::from_static(&TAR_TRAILER)));
                }
                Message::ErrorResponse(body) => {
                    let error = server_error(body.fields());
                    return Err(self.server_failure(error).await);
                }
                Message::NoticeResponse(body) => log_notice(&server_error(body.fields())),
                _ => {}
            }
        }
    }

    /// After one COPY OUT: the next archive, the manifest, or the end position.
    async fn after_legacy_copy(&mut self) -> Result<BaseBackupEvent, PgError> {
        loop {
            match self.conn.read_message().await? {
                Message::CopyOutResponse(_) => {
                    let next = self.legacy.as_mut().and_then(|l| l.names.pop_front());
                    return match next {
                        Some((name, tablespace_path)) => Ok(BaseBackupEvent::Archive { name, tablespace_path }),
                        None if self.in_manifest => Err(PgError::protocol("BASE_BACKUP: a COPY after the manifest")),
                        None => {
                            self.in_manifest = true;
                            Ok(BaseBackupEvent::ManifestStart)
                        }
                    };
                }
                Message::RowDescription(_) => return self.finish().await,
                Message::ErrorResponse(body) => {
                    let error = server_error(body.fields());
                    return Err(self.server_failure(error).await);
                }
                Message::NoticeResponse(body) => log_notice(&server_error(body.fields())),
                Message::CommandComplete(_) => {}
                other => {
                    return Err(PgError::protocol(format!(
                        "BASE_BACKUP: unexpected message after a COPY (tag {})",
                        message_tag(&other)
                    )))
                }
            }
        }
    }
}

fn message_tag(message: &Message) -> &'static str {
    match message {
        Message::DataRow(_) => "DataRow",
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::CopyData(_) => "CopyData",
        _ => "other",
    }
}

impl ReplicationConnection {
    /// Sends `BASE_BACKUP` and reads the header result sets up to the COPY OUT stream
    /// (the start checkpoint is done by then). A PG 12-14 server gets the legacy syntax and
    /// its per-archive COPY streams are presented as the PG15 events.
    pub async fn base_backup(
        &mut self,
        options: &BaseBackupOptions,
    ) -> Result<(BaseBackupStart, BaseBackupStream<'_>), PgError> {
        let legacy = self.server_version_num().is_some_and(|v| v < 150_000);
        let command = if legacy {
            options.legacy_command().ok_or_else(|| {
                PgError::protocol("server-side backup compression needs PostgreSQL 15 or newer".to_owned())
            })?
        } else {
            options.command()
        };
        self.send_query(&command).await?;
        let mut sets: Vec<Vec<Row>> = Vec::new();
        loop {
            match self.read_message().await? {
                Message::RowDescription(_) => sets.push(Vec::new()),
                Message::DataRow(body) => {
                    let row = decode_row(&body)?;
                    sets.last_mut().ok_or_else(|| PgError::protocol("DataRow before RowDescription"))?.push(row);
                }
                Message::CopyOutResponse(_) => break,
                Message::ErrorResponse(body) => {
                    let error = server_error(body.fields());
                    let _ = self.collect_result(Vec::new()).await;
                    return Err(PgError::Server(Box::new(error)));
                }
                Message::NoticeResponse(body) => log_notice(&server_error(body.fields())),
                Message::ReadyForQuery(_) => return Err(PgError::protocol("BASE_BACKUP ended without data")),
                _ => {}
            }
        }
        let start = BaseBackupStart::from_sets(&sets)?;
        let legacy = legacy.then(|| {
            let mut names: std::collections::VecDeque<(String, String)> = start
                .tablespaces
                .iter()
                .map(|t| {
                    let name = t.oid.map_or_else(|| "base.tar".to_owned(), |oid| format!("{oid}.tar"));
                    (name, t.location.clone().unwrap_or_default())
                })
                .collect();
            // The first COPY OUT has begun already.
            let first =
                names.pop_front().map(|(name, tablespace_path)| BaseBackupEvent::Archive { name, tablespace_path });
            Legacy { names, pending: first }
        });
        Ok((start, BaseBackupStream { conn: self, in_manifest: false, finished: false, legacy }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_text() {
        let opts = BaseBackupOptions {
            label: "it's".into(),
            fast_checkpoint: true,
            max_rate_kbps: Some(1024),
            ..BaseBackupOptions::default()
        };
        assert_eq!(
            opts.command(),
            "BASE_BACKUP ( LABEL 'it''s', PROGRESS, CHECKPOINT 'fast', MANIFEST 'yes', MAX_RATE 1024 )"
        );
        let compressed = BaseBackupOptions {
            label: "b".into(),
            progress: false,
            compression: Some("zstd".into()),
            compression_detail: Some("level=3,workers=2".into()),
            ..BaseBackupOptions::default()
        };
        assert_eq!(
            compressed.command(),
            "BASE_BACKUP ( LABEL 'b', MANIFEST 'yes', COMPRESSION 'zstd', COMPRESSION_DETAIL 'level=3,workers=2' )"
        );
        assert_eq!(
            opts.legacy_command().as_deref(),
            Some("BASE_BACKUP LABEL 'it''s' PROGRESS FAST MAX_RATE 1024 MANIFEST 'yes'")
        );
        assert_eq!(compressed.legacy_command(), None);
        let bare = BaseBackupOptions { progress: false, wait: false, manifest: false, ..BaseBackupOptions::default() };
        assert_eq!(bare.command(), "BASE_BACKUP ( LABEL 'base backup', WAIT false )");
    }

    #[test]
    fn payloads_from_the_spec() {
        let n = BaseBackupEvent::parse(Bytes::from_static(b"n16393.tar\0/tmp/pgproto/ts1\0")).expect("n");
        assert_eq!(
            n,
            BaseBackupEvent::Archive { name: "16393.tar".into(), tablespace_path: "/tmp/pgproto/ts1".into() }
        );
        let base = BaseBackupEvent::parse(Bytes::from_static(b"nbase.tar\0\0")).expect("n");
        assert_eq!(base, BaseBackupEvent::Archive { name: "base.tar".into(), tablespace_path: String::new() });
        let mut p = vec![b'p'];
        p.extend_from_slice(&91_186_i64.to_be_bytes());
        assert_eq!(BaseBackupEvent::parse(Bytes::from(p)).expect("p"), BaseBackupEvent::Progress(91_186));
        assert_eq!(BaseBackupEvent::parse(Bytes::from_static(b"m")).expect("m"), BaseBackupEvent::ManifestStart);
        assert_eq!(
            BaseBackupEvent::parse(Bytes::from_static(b"dabc")).expect("d"),
            BaseBackupEvent::Data(Bytes::from_static(b"abc"))
        );
    }

    #[test]
    fn bad_payloads() {
        for bad in [&b""[..], b"x", b"n../x\0\0", b"n\0\0", b"na/b.tar\0\0", b"nbase.tar", b"p123"] {
            assert!(BaseBackupEvent::parse(Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_sets() {
        let sets = vec![
            vec![vec![Some("0/C000028".into()), Some("1".into())]],
            vec![
                vec![Some("16393".into()), Some("/tmp/ts1".into()), Some("66".into())],
                vec![None, None, Some("91186".into())],
            ],
        ];
        let start = BaseBackupStart::from_sets(&sets).expect("start");
        assert_eq!(start.start_lsn.to_string(), "0/C000028");
        assert_eq!(start.timeline.get(), 1);
        assert_eq!(start.tablespaces[0].oid, Some(16393));
        assert_eq!(start.tablespaces[1], TablespaceHeader { oid: None, location: None, size_kb: Some(91186) });
        assert!(BaseBackupStart::from_sets(&sets[..1]).is_err());
    }
}
