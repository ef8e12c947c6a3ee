//! `UPLOAD_MANIFEST` (PostgreSQL 17+): the parent backup's `backup_manifest` sent over COPY IN
//! on the replication connection that then runs `BASE_BACKUP ( ..., INCREMENTAL )`, as
//! `pg_basebackup --incremental=FILE` does. The walsender keeps the manifest for the rest
//! of the session, so both commands must share one connection.

use bytes::BufMut;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::conn::{server_error, ReplicationConnection};
use super::PgError;

/// The manifest goes in CopyData messages of this size (pg_basebackup uses 128 kB).
const CHUNK: usize = 128 * 1024;

impl ReplicationConnection {
    /// Sends `UPLOAD_MANIFEST`, then `manifest` as COPY IN data, and waits for the server to
    /// accept it (it parses and checks it: system identifier, WAL ranges, checksums).
    ///
    /// # Errors
    /// The server's refusal (an older server, an unparsable manifest) or a broken connection.
    pub async fn upload_manifest(&mut self, manifest: &[u8]) -> Result<(), PgError> {
        self.send_query("UPLOAD_MANIFEST").await?;
        loop {
            match self.read_message().await? {
                Message::CopyInResponse(_) => break,
                Message::ErrorResponse(body) => {
                    let error = server_error(body.fields());
                    let _ = self.collect_result(Vec::new()).await;
                    return Err(PgError::Server(Box::new(error)));
                }
                Message::ReadyForQuery(_) => {
                    return Err(PgError::protocol("UPLOAD_MANIFEST: the server did not start COPY IN".to_owned()));
                }
                _ => {}
            }
        }
        for chunk in manifest.chunks(CHUNK) {
            encode_copy_data(chunk, &mut self.wbuf);
            self.flush().await?;
        }
        frontend::copy_done(&mut self.wbuf);
        self.flush().await?;
        self.collect_result(Vec::new()).await.map(|_| ())
    }
}

/// A frontend CopyData message: `d`, the length (itself included), the bytes.
fn encode_copy_data(data: &[u8], buf: &mut bytes::BytesMut) {
    buf.put_u8(b'd');
    let len = i32::try_from(data.len() + 4).expect("chunks are 128 kB");
    buf.put_i32(len);
    buf.put_slice(data);
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_data_framing() {
        let mut buf = bytes::BytesMut::new();
        super::encode_copy_data(b"{}", &mut buf);
        assert_eq!(&buf[..], b"d\0\0\0\x06{}");
    }
}
