//! Sans-IO codec for a replication connection: backend message framing (including
//! `CopyBothResponse`, which `postgres-protocol` does not parse) and the physical
//! replication payloads carried in CopyData: XLogData `w`, primary keepalive `k`, and the
//! standby status update `r` we send back.
//!
//! Parsers take a `BytesMut` of received bytes and return `Ok(None)` when they need more;
//! encoders append to a `BytesMut`. No sockets here (see `conn` for the adapter).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::PgError;
use crate::wal::Lsn;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A backend message: everything `postgres-protocol` parses, plus `W`.
pub enum BackendMessage {
    /// `W` CopyBothResponse: the server entered COPY BOTH (START_REPLICATION).
    CopyBothResponse,
    /// Any other message, as parsed by `postgres-protocol`.
    Other(Message),
}

impl std::fmt::Debug for BackendMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendMessage::CopyBothResponse => f.write_str("CopyBothResponse"),
            BackendMessage::Other(_) => f.write_str("BackendMessage"),
        }
    }
}

/// Takes one complete backend message off the front of `buf`; `Ok(None)` if incomplete.
pub fn parse_backend(buf: &mut BytesMut) -> Result<Option<BackendMessage>, PgError> {
    if buf.len() >= 5 && buf[0] == b'W' {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len < 4 {
            return Err(PgError::protocol("invalid CopyBothResponse length"));
        }
        if buf.len() < len + 1 {
            buf.reserve(len + 1 - buf.len());
            return Ok(None);
        }
        buf.advance(len + 1);
        return Ok(Some(BackendMessage::CopyBothResponse));
    }
    Message::parse(buf)
        .map(|m| m.map(BackendMessage::Other))
        .map_err(|e| PgError::protocol(format!("bad message: {e}")))
}

/// XLogData (`w`): WAL bytes starting at [`XLogDataBody::wal_start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogDataBody {
    wal_start: Lsn,
    wal_end: Lsn,
    send_time: i64,
    data: Bytes,
}

impl XLogDataBody {
    /// LSN of the first payload byte.
    pub fn wal_start(&self) -> Lsn {
        self.wal_start
    }

    /// The server's WAL end when it sent this message.
    pub fn wal_end(&self) -> Lsn {
        self.wal_end
    }

    /// The server's clock (PG timestamp, microseconds since 2000-01-01).
    pub fn send_time(&self) -> i64 {
        self.send_time
    }

    /// The WAL bytes, exactly as they sit in the segment file.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The LSN just after the last payload byte.
    pub fn end(&self) -> Lsn {
        Lsn::new(self.wal_start.as_u64() + self.data.len() as u64)
    }
}

/// Primary keepalive (`k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryKeepaliveBody {
    wal_end: Lsn,
    send_time: i64,
    reply_requested: bool,
}

impl PrimaryKeepaliveBody {
    /// The last position sent to this client.
    pub fn wal_end(&self) -> Lsn {
        self.wal_end
    }

    /// The server's clock (PG timestamp).
    pub fn send_time(&self) -> i64 {
        self.send_time
    }

    /// Whether the server wants a status update now (or will time the connection out).
    pub fn reply_requested(&self) -> bool {
        self.reply_requested
    }
}

/// A CopyData payload of a physical replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// `w`.
    XLogData(XLogDataBody),
    /// `k`.
    PrimaryKeepalive(PrimaryKeepaliveBody),
}

impl ReplicationMessage {
    /// Decodes one CopyData payload (the payload is framed by CopyData, so it is complete).
    pub fn parse(mut payload: Bytes) -> Result<ReplicationMessage, PgError> {
        let short = || PgError::protocol("streaming header too small");
        match payload.first() {
            Some(b'w') if payload.len() >= 25 => {
                payload.advance(1);
                let wal_start = Lsn::new(payload.get_u64());
                let wal_end = Lsn::new(payload.get_u64());
                let send_time = payload.get_i64();
                Ok(ReplicationMessage::XLogData(XLogDataBody { wal_start, wal_end, send_time, data: payload }))
            }
            Some(b'k') if payload.len() >= 18 => {
                payload.advance(1);
                let wal_end = Lsn::new(payload.get_u64());
                let send_time = payload.get_i64();
                let reply_requested = payload.get_u8() != 0;
                Ok(ReplicationMessage::PrimaryKeepalive(PrimaryKeepaliveBody { wal_end, send_time, reply_requested }))
            }
            Some(&tag) if tag != b'w' && tag != b'k' => {
                Err(PgError::protocol(format!("unrecognized streaming header: \"{}\"", char::from(tag))))
            }
            _ => Err(short()),
        }
    }
}

/// What the stream decoder yields: a replication payload, or a message that changes state.
#[derive(Debug)]
pub enum StreamMessage {
    /// A CopyData payload.
    Replication(ReplicationMessage),
    /// Any other backend message (CopyDone, CommandComplete, ErrorResponse, ...).
    Backend(BackendMessage),
}

/// Decodes the next message of a COPY BOTH stream from `buf`; `Ok(None)` if incomplete.
pub fn decode_stream(buf: &mut BytesMut) -> Result<Option<StreamMessage>, PgError> {
    match parse_backend(buf)? {
        None => Ok(None),
        Some(BackendMessage::Other(Message::CopyData(body))) => {
            ReplicationMessage::parse(body.into_bytes()).map(|m| Some(StreamMessage::Replication(m)))
        }
        Some(other) => Ok(Some(StreamMessage::Backend(other))),
    }
}

/// Standby status update (`r`), client to server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// Last byte received and written, plus one.
    pub write: Lsn,
    /// Last byte durably stored, plus one; [`Lsn::INVALID`] means "not reported".
    pub flush: Lsn,
    /// Last byte applied (always invalid for an archiver).
    pub apply: Lsn,
    /// The client's clock (PG timestamp).
    pub client_time: i64,
    /// Ask the server for an immediate keepalive.
    pub reply_requested: bool,
}

impl StandbyStatusUpdate {
    /// The 34-byte payload.
    pub fn payload(&self) -> [u8; 34] {
        let mut out = [0u8; 34];
        out[0] = b'r';
        out[1..9].copy_from_slice(&self.write.as_u64().to_be_bytes());
        out[9..17].copy_from_slice(&self.flush.as_u64().to_be_bytes());
        out[17..25].copy_from_slice(&self.apply.as_u64().to_be_bytes());
        out[25..33].copy_from_slice(&self.client_time.to_be_bytes());
        out[33] = u8::from(self.reply_requested);
        out
    }

    /// Appends the update, framed as CopyData, to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        let payload = self.payload();
        buf.put_u8(b'd');
        buf.put_u32(4 + 34);
        buf.put_slice(&payload);
    }
}

/// Appends a CopyDone to `buf`.
pub fn encode_copy_done(buf: &mut BytesMut) {
    frontend::copy_done(buf);
}

/// Now as a PG timestamp (microseconds since 2000-01-01 00:00:00 UTC).
pub fn pg_now() -> i64 {
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(unix.as_micros()).unwrap_or(i64::MAX) - PG_EPOCH_OFFSET_MICROS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).expect("hex")
    }

    fn copy_data(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![b'd'];
        out.extend_from_slice(&(4 + payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn copy_both_response_is_parsed_byte_by_byte() {
        let wire = hex("57 00000007 00 0000");
        let mut buf = BytesMut::new();
        for (i, b) in wire.iter().enumerate() {
            assert!(parse_backend(&mut buf).expect("ok").is_none(), "complete after {i} bytes?");
            buf.put_u8(*b);
        }
        assert!(matches!(parse_backend(&mut buf), Ok(Some(BackendMessage::CopyBothResponse))));
        assert!(buf.is_empty());
    }

    #[test]
    fn xlogdata_from_the_spec() {
        let mut payload = hex("77 0000000005037190 0000000005039200 000303cdfc1c14f9");
        payload.extend_from_slice(&[0xAB; 8304]);
        let wire = copy_data(&payload);
        let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
        assert!(decode_stream(&mut buf).expect("ok").is_none(), "needs the last byte");
        buf.put_u8(0xAB);
        let Some(StreamMessage::Replication(ReplicationMessage::XLogData(x))) = decode_stream(&mut buf).expect("ok")
        else {
            panic!("not XLogData")
        };
        assert_eq!(x.wal_start().to_string(), "0/5037190");
        assert_eq!(x.wal_end().to_string(), "0/5039200");
        assert_eq!(x.send_time(), 0x0003_03cd_fc1c_14f9);
        assert_eq!(x.data().len(), 8304);
        assert_eq!(x.end().to_string(), "0/5039200");
    }

    #[test]
    fn keepalive_from_the_spec() {
        let mut buf = BytesMut::from(&copy_data(&hex("6b 0000000005037190 000303cdfb81c87f 01"))[..]);
        let Some(StreamMessage::Replication(ReplicationMessage::PrimaryKeepalive(k))) =
            decode_stream(&mut buf).expect("ok")
        else {
            panic!("not a keepalive")
        };
        assert_eq!((k.wal_end().to_string().as_str(), k.reply_requested()), ("0/5037190", true));
        assert_eq!(k.send_time(), 0x0003_03cd_fb81_c87f);
    }

    #[test]
    fn bad_payloads_are_errors() {
        assert!(ReplicationMessage::parse(Bytes::from_static(b"w123")).is_err());
        assert!(ReplicationMessage::parse(Bytes::from_static(b"k")).is_err());
        assert!(ReplicationMessage::parse(Bytes::from_static(b"zzzz")).is_err());
        assert!(ReplicationMessage::parse(Bytes::new()).is_err());
    }

    #[test]
    fn status_update_matches_the_spec() {
        let update = StandbyStatusUpdate {
            write: "0/5037190".parse().expect("lsn"),
            flush: "0/5037190".parse().expect("lsn"),
            apply: Lsn::INVALID,
            client_time: 0x0003_03cd_fc0e_b6cd,
            reply_requested: false,
        };
        let expected = hex("72 0000000005037190 0000000005037190 0000000000000000 000303cdfc0eb6cd 00");
        assert_eq!(update.payload().to_vec(), expected);
        let mut buf = BytesMut::new();
        update.encode(&mut buf);
        assert_eq!(buf.to_vec(), copy_data(&expected));
    }

    #[test]
    fn other_messages_pass_through() {
        let mut buf = BytesMut::from(&b"c\x00\x00\x00\x04Z\x00\x00\x00\x05I"[..]);
        assert!(matches!(
            decode_stream(&mut buf).expect("ok"),
            Some(StreamMessage::Backend(BackendMessage::Other(Message::CopyDone)))
        ));
        assert!(matches!(
            decode_stream(&mut buf).expect("ok"),
            Some(StreamMessage::Backend(BackendMessage::Other(Message::ReadyForQuery(_))))
        ));
        assert!(decode_stream(&mut buf).expect("ok").is_none());
    }

    #[test]
    fn pg_now_is_after_2020() {
        assert!(pg_now() > 631_152_000_000_000, "2020-01-01 in PG microseconds");
    }
}
