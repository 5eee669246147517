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
}
