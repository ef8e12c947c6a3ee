//! Log sequence numbers, printed and parsed in PostgreSQL's `X/X` form.

use std::fmt;
use std::str::FromStr;

/// A position in the WAL stream (PostgreSQL's `XLogRecPtr`).
///
/// Displays as `%X/%X` (high and low 32 bits in upper-case hex without padding), exactly as
/// `pg_lsn` and `backup.info`'s `begin_xlog` print it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(u64);

/// An LSN string that is not of the form `X/X` with at most 8 hex digits on each side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN '{0}'")]
pub struct LsnParseError(String);

impl Lsn {
    /// The invalid LSN, `0/0` (`InvalidXLogRecPtr`).
    pub const INVALID: Lsn = Lsn(0);

    /// Wraps a raw 64-bit position.
    pub const fn new(raw: u64) -> Lsn {
        Lsn(raw)
    }

    /// The raw 64-bit position.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self + bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }

    /// Bytes from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_sub(self, earlier: Lsn) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }
}

impl From<u64> for Lsn {
    fn from(raw: u64) -> Self {
        Lsn(raw)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.to_owned());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(h, 16).ok()
        };
        let (hi, lo) = (half(hi).ok_or_else(err)?, half(lo).ok_or_else(err)?);
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for (text, raw) in [("0/0", 0), ("0/3000028", 0x300_0028), ("1/0", 1 << 32), ("FFFFFFFF/FFFFFFFF", u64::MAX)] {
            assert_eq!(text.parse::<Lsn>(), Ok(Lsn(raw)));
            assert_eq!(Lsn(raw).to_string(), text);
        }
        assert_eq!("0/3000028".parse::<Lsn>().map(|l| l.to_string()), Ok("0/3000028".into()));
        assert_eq!("a/b".parse::<Lsn>(), Ok(Lsn(0xA_0000_000B)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "/", "0/", "/0", "0", "0/0/0", "g/0", "123456789/0", "0/-1", " 0/1"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Lsn(u64::MAX).checked_add(1), None);
        assert_eq!(Lsn(10).checked_sub(Lsn(11)), None);
        assert_eq!(Lsn(10).checked_sub(Lsn(4)), Some(6));
    }
}
