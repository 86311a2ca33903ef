//! Human durations as users type them: `90s`, `30m`, `1h30m`, `2d`.
//!
//! The parser is strict on purpose: a typo in `--for` must not silently turn
//! into a longer grant. Units must be given, each unit at most once and in
//! decreasing order, and the total is capped.

use std::time::Duration;

use thiserror::Error;

/// The longest duration latch accepts anywhere (a year). Policy caps are far lower.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("duration is empty: write it like 30m, 1h30m, 90s or 2d")]
    Empty,
    #[error("duration {0:?} is too long to be one: write it like 30m, 1h30m, 90s or 2d")]
    TooLong(String),
    #[error("duration {input:?} has a number without a unit at the end: add s, m, h or d (e.g. 30m)")]
    MissingUnit { input: String },
    #[error("duration {input:?} has unknown unit {unit:?}: use s, m, h or d")]
    UnknownUnit { input: String, unit: char },
    #[error("duration {input:?} is malformed at position {pos}: write it like 30m, 1h30m, 90s or 2d")]
    Malformed { input: String, pos: usize },
    #[error("duration {input:?} repeats or misorders units: give each of d, h, m, s at most once, largest first")]
    UnitOrder { input: String },
    #[error("duration {input:?} must be greater than zero")]
    Zero { input: String },
    #[error("duration {input:?} exceeds the maximum of 366d")]
    Overflow { input: String },
}

fn unit_rank(u: char) -> Option<(u8, u64)> {
    match u {
        'd' => Some((4, 86_400)),
        'h' => Some((3, 3_600)),
        'm' => Some((2, 60)),
        's' => Some((1, 1)),
        _ => None,
    }
}

/// Parse a duration such as `1h30m`. Zero and anything above [`MAX_DURATION`] are errors.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.len() > 32 {
        let shown: String = s.chars().take(16).collect();
        return Err(DurationError::TooLong(format!("{shown}…")));
    }
    let owned = || s.to_string();
    let mut total: u64 = 0;
    let mut last_rank = u8::MAX;
    let mut digits: Option<u64> = None;
    for (pos, ch) in s.char_indices() {
        if let Some(d) = ch.to_digit(10) {
            let cur = digits.unwrap_or(0);
            let next = cur
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d)))
                .ok_or_else(|| DurationError::Overflow { input: owned() })?;
            digits = Some(next);
            continue;
        }
        let Some(n) = digits.take() else {
            return Err(DurationError::Malformed { input: owned(), pos });
        };
        let (rank, mult) = unit_rank(ch).ok_or_else(|| DurationError::UnknownUnit { input: owned(), unit: ch })?;
        if rank >= last_rank {
            return Err(DurationError::UnitOrder { input: owned() });
        }
        last_rank = rank;
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| DurationError::Overflow { input: owned() })?;
    }
    if digits.is_some() {
        return Err(DurationError::MissingUnit { input: owned() });
    }
    let d = Duration::from_secs(total);
    if d.is_zero() {
        return Err(DurationError::Zero { input: owned() });
    }
    if d > MAX_DURATION {
        return Err(DurationError::Overflow { input: owned() });
    }
    Ok(d)
}

/// Format a duration the way [`parse_duration`] reads it (`1h30m`).
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if s >= size {
            out.push_str(&(s / size).to_string());
            out.push(unit);
            s %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration(" 1d2h3m4s "), Ok(Duration::from_secs(93_784)));
    }

    #[test]
    fn rejects_bad_forms_with_reasons() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(parse_duration("30"), Err(DurationError::MissingUnit { .. })));
        assert!(matches!(parse_duration("30x"), Err(DurationError::UnknownUnit { unit: 'x', .. })));
        assert!(matches!(parse_duration("m30"), Err(DurationError::Malformed { pos: 0, .. })));
        assert!(matches!(parse_duration("30m1h"), Err(DurationError::UnitOrder { .. })));
        assert!(matches!(parse_duration("1m1m"), Err(DurationError::UnitOrder { .. })));
        assert!(matches!(parse_duration("0s"), Err(DurationError::Zero { .. })));
        assert!(matches!(parse_duration("367d"), Err(DurationError::Overflow { .. })));
        assert!(matches!(parse_duration("99999999999999999999s"), Err(DurationError::Overflow { .. })));
        assert!(matches!(parse_duration("-5m"), Err(DurationError::Malformed { .. })));
        assert!(matches!(parse_duration(&"1".repeat(10_000)), Err(DurationError::TooLong(_))));
    }

    #[test]
    fn format_round_trips() {
        for s in ["90s", "30m", "1h30m", "2d", "1d2h3m4s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
