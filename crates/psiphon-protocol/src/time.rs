//! UTC timestamps as Psiphon writes them (RFC 3339, Go's `time.RFC3339` and `RFC3339Milli`
//! layouts), without a date library: formatting, hour truncation, and a strict parser.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds and nanoseconds since the Unix epoch (0 before it).
fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01 (H. Hinnant's `days_from_civil`), for years
/// from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

fn format(t: SystemTime, fraction: bool) -> String {
    let d = since_epoch(t);
    let secs = d.as_secs();
    let (y, mo, da) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if fraction {
        let ms = d.subsec_millis();
        format!("{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    } else {
        format!("{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

/// RFC 3339 UTC with whole seconds, e.g. `2026-11-21T17:25:03Z` (`server_timestamp`,
/// `localTimestamp`). Times before 1970 are written as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    format(t, false)
}

/// RFC 3339 UTC with milliseconds (Go's `RFC3339Milli`), for notices and logs.
pub fn rfc3339_millis(t: SystemTime) -> String {
    format(t, true)
}

/// The time truncated to the hour, RFC 3339 UTC (`connected_timestamp`, discovery
/// `localTimestamp`).
pub fn rfc3339_hour(t: SystemTime) -> String {
    let secs = since_epoch(t).as_secs();
    format(UNIX_EPOCH + Duration::from_secs(secs - secs % 3600), false)
}

/// The UTC date `YYYY-MM-DD`.
pub fn utc_date(t: SystemTime) -> String {
    let (y, mo, da) = civil_from_days(since_epoch(t).as_secs() / 86_400);
    format!("{y:04}-{mo:02}-{da:02}")
}

fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Parses RFC 3339 as Go's `time.Parse(time.RFC3339, ..)` accepts it:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. Returns `None` for anything else, and for
/// instants before 1970 (nothing Psiphon stores is older).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&month) || day == 0 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day > month_days[usize::try_from(month - 1).ok()?] {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let value = u32::try_from(digits(&frac[..n])?).ok()?;
        nanos = value * 10u32.pow(u32::try_from(9 - n).ok()?);
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = i64::try_from(digits(&[*h1, *h2])?).ok()?;
            let m = i64::try_from(digits(&[*m1, *m2])?).ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            let v = h * 3600 + m * 60;
            if *sign == b'+' { v } else { -v }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day)?;
    let local = i64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()?;
    let utc = u64::try_from(local - offset_secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(utc, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_millis(1_763_745_903_123);
        assert_eq!(rfc3339(t), "2025-11-21T17:25:03Z");
        assert_eq!(rfc3339_millis(t), "2025-11-21T17:25:03.123Z");
        assert_eq!(rfc3339_hour(t), "2025-11-21T17:00:00Z");
        assert_eq!(utc_date(t), "2025-11-21");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_date(leap), "2000-02-29");
    }

    #[test]
    fn parses_what_it_formats_and_go_forms() {
        let t = UNIX_EPOCH + Duration::from_secs(1_763_745_903);
        assert_eq!(parse_rfc3339("2025-11-21T17:25:03Z"), Some(t));
        assert_eq!(parse_rfc3339("2025-11-21T18:25:03+01:00"), Some(t));
        assert_eq!(parse_rfc3339("2025-11-21T12:25:03-05:00"), Some(t));
        assert_eq!(
            parse_rfc3339("2025-11-21T17:25:03.5Z"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z").map(utc_date),
            Some("2000-02-29".into())
        );
        for bad in [
            "",
            "2025-11-21",
            "2025-11-21 17:25:03Z",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-11-21T24:00:00Z",
            "2025-11-21T17:25:03",
            "2025-11-21T17:25:03.Z",
            "2025-11-21T17:25:03+0100",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn round_trips_every_day_of_a_leap_cycle() {
        for day in (0u64..(366 * 4 + 1)).map(|d| d + 10_957) {
            let t = UNIX_EPOCH + Duration::from_secs(day * 86_400 + 3_723);
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
    }
}
