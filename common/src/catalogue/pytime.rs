//! Timestamps in Python's `str(datetime)` form, as backup.info stores `begin_time` and
//! `end_time`: `2026-11-21 20:36:40.587807+00:00`.
//!
//! Printing drops `.ffffff` when the microseconds are 0 and adds `:SS` to the offset only
//! when it has seconds, like CPython. Parsing accepts that form plus the ISO `T` separator,
//! `Z` and `+HHMM` offsets; a string without an offset is read as local time, as Barman's
//! `load_datetime_tz` does.

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, Offset, TimeZone, Timelike};

/// Formats as Python's `str(datetime)` for an aware datetime.
pub fn format_py_datetime(t: &DateTime<FixedOffset>) -> String {
    let mut out = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let micros = t.nanosecond() / 1000 % 1_000_000;
    if micros != 0 {
        write!(out, ".{micros:06}").expect("writing to a String");
    }
    out.push_str(&format_offset(t.offset().local_minus_utc()));
    out
}

fn format_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    let (h, m, s) = (abs / 3600, abs / 60 % 60, abs % 60);
    if s == 0 {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}:{m:02}:{s:02}")
    }
}

/// Parses `YYYY-MM-DD[ T]HH:MM:SS[.f{1,6}][offset]`; `None` if malformed.
pub fn parse_py_datetime(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    let split =
        text.char_indices().skip(19).find(|&(_, c)| matches!(c, '+' | '-' | 'Z')).map_or(text.len(), |(i, _)| i);
    let (local, offset) = text.split_at(split);
    let naive = parse_naive(local)?;
    if offset.is_empty() {
        return local_to_fixed(&naive);
    }
    let offset = parse_offset(offset)?;
    offset.from_local_datetime(&naive).single()
}

fn parse_naive(text: &str) -> Option<NaiveDateTime> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) if (1..=6).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => (w, f),
        Some(_) => return None,
        None => (text, ""),
    };
    let fmt = if whole.as_bytes().get(10) == Some(&b'T') { "%Y-%m-%dT%H:%M:%S" } else { "%Y-%m-%d %H:%M:%S" };
    let naive = NaiveDateTime::parse_from_str(whole, fmt).ok()?;
    let micros: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().ok()? };
    naive.with_nanosecond(micros * 1000)
}

fn parse_offset(text: &str) -> Option<FixedOffset> {
    if text == "Z" {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = text.split_at(1);
    let digits: String = rest.chars().filter(|&c| c != ':').collect();
    let valid_shape = matches!(digits.len(), 2 | 4 | 6) && digits.bytes().all(|b| b.is_ascii_digit());
    if !valid_shape {
        return None;
    }
    let part = |i: usize| digits.get(i..i + 2).map_or(Some(0), |p| p.parse::<i32>().ok());
    let secs = part(0)? * 3600 + part(2)? * 60 + part(4)?;
    if sign == "-" {
        FixedOffset::west_opt(secs)
    } else {
        FixedOffset::east_opt(secs)
    }
}

/// A naive local time with the local offset in force then (the earlier one when ambiguous;
/// for a time skipped by a DST jump, the offset just before it).
fn local_to_fixed(naive: &NaiveDateTime) -> Option<DateTime<FixedOffset>> {
    if let Some(t) = Local.from_local_datetime(naive).earliest() {
        return Some(t.fixed_offset());
    }
    let offset = Local.offset_from_utc_datetime(naive).fix();
    offset.from_local_datetime(naive).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_python_forms() {
        for text in [
            "2026-11-21 20:36:40.587807+00:00",
            "2026-11-21 20:36:40+00:00",
            "2026-11-21 20:36:40.000001-05:30",
            "2026-01-01 00:00:00+01:00",
            "2026-01-01 00:00:00.5+02:00:30",
        ] {
            let parsed = parse_py_datetime(text).unwrap_or_else(|| panic!("{text}"));
            let want = text.replace(".5+", ".500000+");
            assert_eq!(format_py_datetime(&parsed), want);
        }
    }

    #[test]
    fn accepts_iso_and_compact_offsets() {
        let want = parse_py_datetime("2026-11-21 20:36:40+02:00").expect("reference");
        for text in
            ["2026-11-21T20:36:40+02:00", "2026-11-21 20:36:40+0200", "2026-11-21 20:36:40+02", "2026-11-21T18:36:40Z"]
        {
            assert_eq!(parse_py_datetime(text), Some(want), "{text}");
        }
    }

    #[test]
    fn naive_is_local_time() {
        let parsed = parse_py_datetime("2026-06-01 12:00:00").expect("naive");
        let local = Local.from_local_datetime(&parsed.naive_local()).earliest().expect("local");
        assert_eq!(parsed.offset().local_minus_utc(), local.offset().local_minus_utc());
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "",
            "None",
            "2026-11-21",
            "2026-11-21 25:00:00+00:00",
            "2026-11-21 20:36:40.1234567+00:00",
            "2026-11-21 20:36:40+0",
        ] {
            assert!(parse_py_datetime(text).is_none(), "{text}");
        }
    }
}
