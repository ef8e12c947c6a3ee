//! The check every received file passes before it is published: a segment must be a whole
//! segment whose first page is where its name says.

use barman_common::wal::{validate_segment_header, ExpectedSegment, WalFileName};

use crate::error::{Corruption, ToolError};

/// Checks a received file from its first bytes `head` and its length; files that are not
/// segments (history, backup labels, partial files) pass.
pub fn verify_head(wal: &str, head: &[u8], len: u64) -> Result<(), ToolError> {
    let Ok(name) = wal.parse::<WalFileName>() else { return Ok(()) };
    if !name.is_segment() {
        return Ok(());
    }
    let expected = ExpectedSegment { name: &name, system_id: None, seg_size: None, file_len: Some(len) };
    validate_segment_header(head, &expected)
        .map(|_| ())
        .map_err(|source| Corruption::Header { wal: wal.to_owned(), source }.into())
}
