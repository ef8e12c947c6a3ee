//! WAL addressing and file formats: LSNs, timelines, segment numbers, the names of the
//! files in a WAL archive, timeline history files and segment page headers.
//!
//! Nothing here assumes 16 MiB segments or a single timeline: every conversion takes the
//! cluster's [`WalSegSize`].

mod header;
mod history;
mod lsn;
mod name;

pub use header::{read_head, validate_segment_header, ExpectedSegment, HeaderError, LongPageHeader, PgMajor};
pub use history::{parse_history, HistoryEntry, HistoryError};
pub use lsn::{Lsn, LsnParseError};
pub use name::{SegNo, TimelineId, WalFileKind, WalFileName, WalNameError, WalSegSize};
