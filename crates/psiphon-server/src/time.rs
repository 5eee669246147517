//! UTC timestamps: psiphon-protocol's RFC 3339 functions (formatting, hour truncation, the
//! strict parser), and Unix seconds as Go counts them.

use std::time::{SystemTime, UNIX_EPOCH};

pub use psiphon_protocol::time::{parse_rfc3339, rfc3339, rfc3339_hour, rfc3339_millis, utc_date};

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
    use std::time::Duration;

    use super::*;

    #[test]
    fn unix_seconds_round_down() {
        let t = UNIX_EPOCH + Duration::from_millis(1_763_745_903_999);
        assert_eq!(unix_seconds(t), 1_763_745_903);
        assert_eq!(unix_seconds(UNIX_EPOCH), 0);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_millis(500)), -1);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(2)), -2);
        // The parser is tunnel-core's strict RFC 3339, offsets included.
        assert_eq!(
            parse_rfc3339("2025-11-21T18:25:03+01:00").map(unix_seconds),
            Some(1_763_745_903)
        );
    }
}
