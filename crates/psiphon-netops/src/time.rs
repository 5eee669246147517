//! Dates for discovery ranges: UTC, whole seconds since the Unix epoch in the database,
//! RFC 3339 in exports (as tunnel-core's psinet reads them), `YYYY-MM-DD` on the command line.

use std::time::{Duration, UNIX_EPOCH};

const DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Parses `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` to Unix seconds.
pub fn parse(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if date.len() != 10
        || !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
    {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) * DAY;
    if let Some(t) = time {
        let hms: Vec<i64> = t
            .split(':')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let [h, m, s] = hms.as_slice() else {
            return None;
        };
        if t.len() != 8 || *h > 23 || *m > 59 || *s > 59 {
            return None;
        }
        secs += h * 3600 + m * 60 + s;
    }
    Some(secs)
}

/// Midnight UTC at the start of the day after `now`.
pub fn start_of_tomorrow(now: i64) -> i64 {
    (now.div_euclid(DAY) + 1) * DAY
}

/// `days` days, in seconds.
pub fn days(days: u32) -> i64 {
    i64::from(days) * DAY
}

/// RFC 3339 UTC, e.g. `2026-11-22T00:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0);
    psiphon_server::time::rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse("1970-01-01"), Some(0));
        assert_eq!(parse("2000-02-29"), Some(951_782_400));
        assert_eq!(parse("2026-11-21T17:25:03Z"), Some(1_795_281_903));
        assert_eq!(rfc3339(1_795_281_903), "2026-11-21T17:25:03Z");
        for bad in [
            "2001-02-29",
            "2026-13-01",
            "2026-1-01",
            "tomorrow",
            "2026-11-21T25:00:00Z",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(
            start_of_tomorrow(1_795_281_903),
            parse("2026-11-22").unwrap()
        );
        assert_eq!(
            start_of_tomorrow(parse("2026-11-22").unwrap()),
            parse("2026-11-23").unwrap()
        );
    }
}
