//! RFC 3339 timestamps, both ways: `2026-12-01T00:00:00Z` or `2026-12-01T09:30:00.250+02:00`
//! to milliseconds since the Unix epoch, and back.
//!
//! The flight of a campaign (`[flight]` in the spec) and the period of a spend report
//! are written this way. The core reads no clock and keeps its dependencies to rand,
//! rand_distr and thiserror, so the few lines of calendar arithmetic live here instead
//! of in a date library: the proleptic Gregorian calendar, years 0000 to 9999, an
//! offset required (`Z` or `±HH:MM`), fractions of a second kept to the millisecond
//! (further digits are truncated), no leap second (`:60` is refused).
//!
//! ```
//! use tla_core::timestamp::{format_rfc3339, parse_rfc3339};
//! let ms = parse_rfc3339("2026-12-01T02:00:00+02:00").unwrap();
//! assert_eq!(format_rfc3339(ms), "2026-12-01T00:00:00Z");
//! ```

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// What an RFC 3339 timestamp looks like, for refusal messages.
pub const RFC3339_EXAMPLE: &str = "an RFC 3339 timestamp with an offset, like \"2026-12-01T00:00:00Z\" or \"2026-12-01T09:30:00+02:00\"";

/// Why a text is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not {RFC3339_EXAMPLE}: {problem}")]
pub struct TimestampError {
    /// The text given (at most 64 characters of it).
    pub text: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// Parses an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`) into
/// milliseconds since the Unix epoch (UTC).
pub fn parse_rfc3339(text: &str) -> Result<i64, TimestampError> {
    let refuse = |problem: &'static str| TimestampError {
        text: text.chars().take(64).collect(),
        problem,
    };
    let bytes = text.as_bytes();
    if bytes.len() < 19 {
        return Err(refuse(
            "too short; the date, the time and the offset are all needed",
        ));
    }
    let digits = |from: usize, count: usize| -> Option<i64> {
        let part = bytes.get(from..from + count)?;
        part.iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day)) = (digits(0, 4), digits(5, 2), digits(8, 2)) else {
        return Err(refuse("the date must be YYYY-MM-DD"));
    };
    if bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(refuse("the date must be YYYY-MM-DD"));
    }
    if !matches!(bytes[10], b'T' | b't') {
        return Err(refuse("the date and the time are separated by 'T'"));
    }
    let (Some(hour), Some(minute), Some(second)) = (digits(11, 2), digits(14, 2), digits(17, 2))
    else {
        return Err(refuse("the time must be HH:MM:SS"));
    };
    if bytes[13] != b':' || bytes[16] != b':' {
        return Err(refuse("the time must be HH:MM:SS"));
    }
    if !(1..=12).contains(&month) {
        return Err(refuse("the month must be 01 to 12"));
    }
    if !(1..=days_in_month(year, month)).contains(&day) {
        return Err(refuse("the day does not exist in that month"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(refuse("the time must be 00:00:00 to 23:59:59"));
    }
    let mut at = 19;
    let mut millis = 0i64;
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            if at - start < 3 {
                millis = millis * 10 + i64::from(bytes[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return Err(refuse("a '.' must be followed by the fraction's digits"));
        }
        for _ in (at - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match &bytes[at..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] => {
            let rest = &bytes[at..];
            let (Some(hours), Some(minutes)) = (digits(at + 1, 2), digits(at + 4, 2)) else {
                return Err(refuse("the offset must be Z or +HH:MM or -HH:MM"));
            };
            if rest.len() != 6 || rest[3] != b':' || hours > 23 || minutes > 59 {
                return Err(refuse("the offset must be Z or +HH:MM or -HH:MM"));
            }
            let minutes = hours * 60 + minutes;
            if *sign == b'-' { -minutes } else { minutes }
        }
        [] => return Err(refuse("the offset is missing; end with Z for UTC")),
        _ => return Err(refuse("the offset must be Z or +HH:MM or -HH:MM")),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

/// Milliseconds since the Unix epoch as an RFC 3339 timestamp in UTC:
/// `2026-12-01T00:00:00Z`, with `.mmm` when the milliseconds are not 0.
pub fn format_rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    let seconds = in_day / 1_000;
    let millis = in_day % 1_000;
    let (hour, minute, second) = (seconds / 3_600, seconds / 60 % 60, seconds % 60);
    let fraction = if millis == 0 {
        String::new()
    } else {
        format!(".{millis:03}")
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar (the
/// era-based method: 400-year eras of 146,097 days, the year counted from March).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day counted from 1970-01-01: the inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-12-01T00:00:00Z"), Ok(1_796_083_200_000));
        assert_eq!(
            parse_rfc3339("2026-12-01T02:00:00+02:00"),
            Ok(1_796_083_200_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-30T19:00:00-05:00"),
            Ok(1_796_083_200_000)
        );
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00.5z"), Ok(951_825_600_500));
        assert_eq!(
            parse_rfc3339("2000-02-29t12:00:00.123456Z"),
            Ok(951_825_600_123)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Ok(-1_000));
    }

    #[test]
    fn formatting_inverts_parsing_over_four_centuries() {
        // A day every 97 days over 400 years, at a time with milliseconds.
        let start = parse_rfc3339("1900-01-01T00:00:00Z").unwrap();
        for step in 0..1_510 {
            let ms = start + step * 97 * DAY_MS + 45_296_789;
            let text = format_rfc3339(ms);
            assert_eq!(parse_rfc3339(&text), Ok(ms), "{text}");
        }
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_825_600_500), "2000-02-29T12:00:00.500Z");
    }

    #[test]
    fn malformed_text_is_refused_saying_what_is_wrong() {
        for (text, says) in [
            ("", "too short"),
            ("2026-12-01", "too short"),
            ("2026-12-01T00:00:00", "offset is missing"),
            ("2026-12-01 00:00:00Z", "separated by 'T'"),
            ("2026/12/01T00:00:00Z", "YYYY-MM-DD"),
            ("2026-13-01T00:00:00Z", "month"),
            ("2026-02-29T00:00:00Z", "does not exist"),
            ("2026-04-31T00:00:00Z", "does not exist"),
            ("2026-12-01T24:00:00Z", "00:00:00 to 23:59:59"),
            ("2026-12-01T23:59:60Z", "00:00:00 to 23:59:59"),
            ("2026-12-01T00:00:00.Z", "fraction"),
            ("2026-12-01T00:00:00+0200", "offset"),
            ("2026-12-01T00:00:00+02:00x", "offset"),
            ("2026-12-01T00:00:00UTC", "offset"),
            ("2026-12-01T00:00:00.123", "offset is missing"),
            ("２026-12-01T00:00:00Z", "YYYY-MM-DD"),
        ] {
            let error = parse_rfc3339(text).unwrap_err();
            assert!(error.to_string().contains(says), "{text:?}: {error}");
            assert!(
                error.to_string().contains("2026-12-01T00:00:00Z"),
                "{error}"
            );
        }
    }
}
