//! UTC timestamps in RFC 3339, without a date library.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds and nanoseconds since the Unix epoch (0 before it).
fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's `civil_from_days`.
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

/// RFC 3339 UTC with whole seconds, e.g. `2026-11-21T17:25:03Z` (`server_timestamp`).
pub fn rfc3339(t: SystemTime) -> String {
    format(t, false)
}

/// RFC 3339 UTC with milliseconds, for log timestamps.
pub fn rfc3339_millis(t: SystemTime) -> String {
    format(t, true)
}

/// The time truncated to the hour, RFC 3339 UTC (`connected_timestamp`).
pub fn rfc3339_hour(t: SystemTime) -> String {
    let secs = since_epoch(t).as_secs();
    format(UNIX_EPOCH + Duration::from_secs(secs - secs % 3600), false)
}

/// The UTC date `YYYY-MM-DD`.
pub fn utc_date(t: SystemTime) -> String {
    let (y, mo, da) = civil_from_days(since_epoch(t).as_secs() / 86_400);
    format!("{y:04}-{mo:02}-{da:02}")
}

/// 1970-01-01 plus `days` (negative before it), Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 timestamp as Go's `time.Time` JSON decoding accepts it:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)`. `None` if it is not one.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let max_day = match month {
        2 if leap => 29,
        1..=12 => *month_days.get(usize::try_from(month - 1).ok()?)?,
        _ => return None,
    };
    if !(1..=max_day).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if sep(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = b.get(start..i)?;
        if frac.is_empty() {
            return None;
        }
        let mut scale = 100_000_000;
        for &d in frac.iter().take(9) {
            nanos += u32::from(d - b'0') * scale;
            scale /= 10;
        }
    }
    let offset = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && sep(i + 3, b':') => {
            let (oh, om) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let whole = Duration::from_secs(secs.unsigned_abs());
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(whole)?
    } else {
        UNIX_EPOCH.checked_sub(whole)?
    };
    t.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// Whole seconds since the Unix epoch, rounded down (negative before it), as Go's
/// `time.Time.Unix`.
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                -whole - 1
            } else {
                -whole
            }
        }
    }
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
    fn parses_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_secs(1_763_745_903);
        assert_eq!(parse_rfc3339("2025-11-21T17:25:03Z"), Some(t));
        assert_eq!(parse_rfc3339("2025-11-21T18:25:03+01:00"), Some(t));
        assert_eq!(parse_rfc3339("2025-11-21T16:55:03-00:30"), Some(t));
        assert_eq!(
            parse_rfc3339("2025-11-21T17:25:03.5Z"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59Z"),
            Some(UNIX_EPOCH - Duration::from_secs(1))
        );
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_millis(500)), -1);
        assert_eq!(unix_seconds(t), 1_763_745_903);
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z").map(utc_date),
            Some("2000-02-29".into())
        );
        for bad in [
            "",
            "2025-11-21",
            "2025-11-21 17:25:03Z",
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-11-21T24:00:00Z",
            "2025-11-21T17:25:03",
            "2025-11-21T17:25:03.Z",
            "2025-11-21T17:25:03+0100",
            "2025-11-21T17:25:03Zjunk",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
