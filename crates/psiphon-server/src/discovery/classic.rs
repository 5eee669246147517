//! The `classic` strategy (psi_ops' original, ported by tunnel-core): the client address picks
//! one of about `sqrt(n)` buckets, the hour of the day picks the server in the bucket.

use std::net::IpAddr;
use std::ops::Range;

use aws_lc_rs::hmac;

use super::canonical_ip_string;

/// Seconds per time step: the server changes once an hour.
pub const TIME_GRANULARITY_SECS: i64 = 3600;

/// The first byte of HMAC-SHA256(key = the ASCII bytes of `DiscoveryValueHMACKey` as
/// configured, message = the client address as Go prints it).
pub fn discovery_value(hmac_key: &str, client: IpAddr) -> u8 {
    let key = hmac::Key::new(hmac::HMAC_SHA256, hmac_key.as_bytes());
    let tag = hmac::sign(&key, canonical_ip_string(client).as_bytes());
    tag.as_ref().first().copied().unwrap_or(0)
}

/// `ceil(sqrt(n))`, computed exactly in integers (tunnel-core uses float64, which gives the
/// same value for every `n` below 2^52).
pub fn bucket_count(n: usize) -> usize {
    let mut b = n.isqrt();
    if b.saturating_mul(b) < n {
        b += 1;
    }
    b
}

/// The server list of `n` cut into [`bucket_count`] nearly equal slices, exactly as
/// tunnel-core (and psi_ops before it) cut it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicBuckets {
    buckets: Vec<Range<usize>>,
}

/// `trunc(division * i + 0.5)` in float64, as tunnel-core computes a slice bound.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
fn bound(division: f64, i: usize, n: usize) -> usize {
    // The value lies in [0, n + 0.5): truncation to an index is the intent, and the result
    // is clamped to the list.
    let v = (division * i as f64 + 0.5) as usize;
    v.min(n)
}

impl ClassicBuckets {
    /// Buckets for a list of `n` servers (none for `n = 0`).
    #[allow(clippy::cast_precision_loss)] // n is a server count, far below 2^52
    pub fn new(n: usize) -> ClassicBuckets {
        let count = bucket_count(n);
        if count == 0 {
            return ClassicBuckets {
                buckets: Vec::new(),
            };
        }
        let division = n as f64 / count as f64;
        let buckets = (0..count)
            .map(|i| {
                let start = bound(division, i, n);
                let end = bound(division, i + 1, n).max(start);
                start..end
            })
            .collect();
        ClassicBuckets { buckets }
    }

    /// The number of buckets.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether there are no buckets (no servers).
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Bucket `i` as a range of list indexes.
    pub fn bucket(&self, i: usize) -> Option<Range<usize>> {
        self.buckets.get(i).cloned()
    }

    /// The bucket a discovery value picks: `value mod bucket count`.
    pub fn bucket_index(&self, discovery_value: u8) -> Option<usize> {
        let n = self.buckets.len();
        (n > 0).then(|| usize::from(discovery_value) % n)
    }

    /// The list index picked for a discovery value at a Unix time: the bucket by value,
    /// the server in it by `(unix_seconds / 3600) mod bucket size`.
    pub fn select(&self, discovery_value: u8, unix_seconds: i64) -> Option<usize> {
        let bucket = self.bucket(self.bucket_index(discovery_value)?)?;
        let size = i64::try_from(bucket.len()).ok().filter(|&s| s > 0)?;
        let hour = unix_seconds.div_euclid(TIME_GRANULARITY_SECS);
        let offset = usize::try_from(hour.rem_euclid(size)).ok()?;
        Some(bucket.start + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts_and_cover() {
        assert_eq!(bucket_count(0), 0);
        assert_eq!(bucket_count(1), 1);
        assert_eq!(bucket_count(4), 2);
        assert_eq!(bucket_count(5), 3);
        assert_eq!(bucket_count(100), 10);
        assert_eq!(bucket_count(101), 11);
        for n in 0..300 {
            let b = ClassicBuckets::new(n);
            let covered: Vec<usize> = (0..b.len())
                .flat_map(|i| b.bucket(i).unwrap_or_default())
                .collect();
            assert_eq!(covered, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
        assert_eq!(ClassicBuckets::new(0).select(7, 0), None);
    }
}
