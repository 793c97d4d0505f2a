//! Durations written as Kubernetes writes them (Go's `time.ParseDuration`: `90s`, `1m30s`, `500ms`).

use std::time::Duration;

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty, a sign, a number without a unit, or an unknown unit.
    #[error(
        "{0:?} is not a duration: expected a number and a unit (ns, us, ms, s, m, h), e.g. 90s or 1m30s"
    )]
    Syntax(String),
    /// A negative duration where only zero or more makes sense.
    #[error("{0:?} is negative")]
    Negative(String),
    /// More than a `u64` of nanoseconds (about 584 years).
    #[error("{0:?} is too long")]
    Overflow(String),
}

/// Parses Go's duration syntax: a sequence of decimal numbers (with optional fraction), each
/// with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`); `0` alone is zero. Negative durations are
/// refused (no field of ours means anything by them).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_owned());
    let mut rest = text.trim();
    if let Some(unsigned) = rest.strip_prefix('+') {
        rest = unsigned;
    } else if rest.starts_with('-') {
        return Err(DurationError::Negative(text.to_owned()));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(syntax());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(syntax)?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(syntax()),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
            return Err(syntax());
        }
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| syntax())? };
        let mut part = whole.checked_mul(nanos_per_unit).ok_or_else(|| overflow(text))?;
        let mut scale = nanos_per_unit;
        for digit in fraction.bytes() {
            scale /= 10;
            part += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(part).ok_or_else(|| overflow(text))?;
        rest = tail;
    }
    let nanos = u64::try_from(total).map_err(|_| overflow(text))?;
    Ok(Duration::from_nanos(nanos))
}

fn overflow(text: &str) -> DurationError {
    DurationError::Overflow(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_go_parses() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("9s", Duration::from_secs(9)),
            ("90s", Duration::from_secs(90)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("1.5h", Duration::from_secs(5400)),
            ("500ms", Duration::from_millis(500)),
            (".5s", Duration::from_millis(500)),
            ("3s200ms", Duration::from_millis(3200)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("+2m", Duration::from_secs(120)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(*expected), "{text}");
        }
    }

    #[test]
    fn refuses_what_go_refuses_and_negative_values() {
        for text in ["", "90", "s", "1x", "1m30", "..s", "1.2.3s", "abc", "9 s"] {
            assert_eq!(parse_duration(text), Err(DurationError::Syntax(text.to_owned())), "{text}");
        }
        assert_eq!(parse_duration("-1s"), Err(DurationError::Negative("-1s".to_owned())));
        assert!(matches!(parse_duration("99999999999h"), Err(DurationError::Overflow(_))));
    }
}
