//! The put-wal wire format: a tar stream carrying WAL files and a `SHA256SUMS` (or
//! `MD5SUMS`) member, as Barman's `barman-wal-archive` sends it to `barman put-wal`.
//!
//! The writer emits ustar headers (mode, uid/gid and mtime copied from the source, as
//! Barman's client does; its PAX `mtime` record carries sub-second precision we do not need).
//! The reader accepts ustar, GNU and PAX headers and a leading `./` in names, through the
//! `tar` crate.
//!
//! [`StreamReader`] is the one reader of such streams: `barman put-wal` and the restore
//! helper's `get-wal --batch` receiver both take its members, WAL files hashed as they are
//! read, and check them with the parsed [`Sums`].

mod read;
mod sums;
mod write;

pub use read::{Member, Members, StreamReader, WalMember, WireError};
pub use sums::{digest_hex, parse_sums, Hasher, SumAlgo, SumError, Sums};
pub use write::{write_member, write_member_header, write_padding, write_stream, MemberMeta};
