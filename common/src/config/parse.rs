//! Scalar value parsers with Barman's exact acceptance rules and error texts: booleans,
//! Python `int()`, time intervals (`N day[s]|week[s]|month[s]|hour[s]`) and sizes with
//! SI/IEC suffixes (`k`=1000, `Ki`=1024, … as `barman.config.parse_si_suffix`).

use chrono::TimeDelta;

/// `barman.config.parse_boolean`: `true|t|yes|1|on` / `false|f|no|0|off`, any case.
pub fn parse_boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "1" | "on" => Ok(true),
        "false" | "f" | "no" | "0" | "off" => Ok(false),
        _ => Err("Invalid boolean representation (must be one in: \
                  true|t|yes|1|on | false|f|no|0|off)"
            .to_owned()),
    }
}

/// Python's `int(value)` in base 10: surrounding whitespace, an optional sign, digits
/// with single underscores between them. The error is Python's `ValueError` text.
pub fn parse_python_int(value: &str) -> Result<i64, String> {
    let err = || format!("invalid literal for int() with base 10: {}", crate::catalogue::repr_str(value));
    let trimmed = value.trim();
    let (negative, digits) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let well_formed = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !well_formed {
        return Err(err());
    }
    let magnitude: i64 = digits.replace('_', "").parse().map_err(|_| err())?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// `barman.config.parse_time_interval`: `N unit` with unit `day`, `week`, `month` (31
/// days) or `hour`, optionally plural, any case, at least one space between. Empty → `None`.
pub fn parse_time_interval(value: &str) -> Result<Option<TimeDelta>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let err = || format!("Invalid value for a time interval {value}");
    let trimmed = value.trim();
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, rest) = trimmed.split_at(digits_end);
    if number.is_empty() || !rest.starts_with(char::is_whitespace) {
        return Err(err());
    }
    let n: i64 = number.parse().map_err(|_| err())?;
    let unit = rest.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('s').unwrap_or(&unit);
    let delta = match unit {
        "day" => TimeDelta::try_days(n),
        "week" => TimeDelta::try_weeks(n),
        "month" => n.checked_mul(31).and_then(TimeDelta::try_days),
        "hour" => TimeDelta::try_hours(n),
        _ => None,
    };
    delta.map(Some).ok_or_else(err)
}

/// `barman.config.parse_si_suffix`: `N` plus an optional, case-sensitive suffix `k`, `Ki`,
/// `M`, `Mi`, `G`, `Gi`, `T` or `Ti` (decimal without `i`, binary with it). Empty → `None`.
pub fn parse_si_suffix(value: &str) -> Result<Option<u64>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let err = || format!("Invalid value for a number {value}");
    let digits_end = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, rest) = value.split_at(digits_end);
    let multiplier: u64 = match rest.trim() {
        "" => 1,
        "k" => 1000,
        "Ki" => 1 << 10,
        "M" => 1_000_000,
        "Mi" => 1 << 20,
        "G" => 1_000_000_000,
        "Gi" => 1 << 30,
        "T" => 1_000_000_000_000,
        "Ti" => 1 << 40,
        _ => return Err(err()),
    };
    let n: u64 = number.parse().map_err(|_| err())?;
    n.checked_mul(multiplier).map(Some).ok_or_else(err)
}
