//! Per-domain byte stats: clients report `host_bytes` in `psiphon-status` (the domain names
//! their sponsor's `https_request_regexes` mapped, or `(OTHER)`); psiphond adds them into
//! buckets of (domain, client_region, client_asn, sponsor_id, client_platform, device_region)
//! and logs each bucket as a `domain_dest_bytes` event every `DestinationBytesPeriodSeconds`
//! (default 5 min) and at shutdown, as tunnel-core's psiphond does (wire notes 10.4).
//!
//! The event holds `domain`, `client_region`, `client_asn`, `sponsor_id`, `client_platform`,
//! `device_region`, `bytes_tcp`, `bytes_udp` (always 0) and `bytes`: no address, no session.
//!
//! Bounded: at most [`MAX_BUCKETS`] buckets between two logs; reports for new buckets past
//! that are dropped and counted, and the count is logged as a warning with the next flush.
//! Reaching [`SOFT_MAX_BUCKETS`] asks for an early flush.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::log::{EventLog, Level};

/// Buckets past which an early flush is asked for (tunnel-core: 100,000).
pub const SOFT_MAX_BUCKETS: usize = 100_000;
/// Buckets past which new ones are dropped (tunnel-core: 1,000,000).
pub const MAX_BUCKETS: usize = 1_000_000;

/// The longest domain name accepted in a report.
pub const MAX_DOMAIN_LEN: usize = 256;
/// The most `host_bytes` entries read from one status request.
pub const MAX_DOMAINS_PER_STATUS: usize = 1000;

/// Who a report came from, as bucketed (GeoIP and handshake fields, never an address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reporter {
    /// GeoIP country of the client.
    pub client_region: String,
    /// GeoIP ASN of the client.
    pub client_asn: String,
    /// Handshake `sponsor_id`.
    pub sponsor_id: String,
    /// Normalised handshake `client_platform`.
    pub client_platform: String,
    /// Handshake `device_region`.
    pub device_region: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bucket {
    domain: String,
    reporter: Reporter,
}

#[derive(Debug, Default)]
struct Inner {
    buckets: HashMap<Bucket, u64>,
    dropped: u64,
}

/// The server's domain byte buckets.
#[derive(Debug)]
pub struct DomainBytes {
    inner: Mutex<Inner>,
    max_buckets: usize,
    soft_max_buckets: usize,
    /// Signalled when the soft bound is reached.
    flush_soon: Notify,
}

impl Default for DomainBytes {
    fn default() -> Self {
        DomainBytes::with_bounds(SOFT_MAX_BUCKETS, MAX_BUCKETS)
    }
}

/// Whether a reported name may be logged: a domain-like name or `(OTHER)`, nothing that
/// looks like a URL, a path, an address or free text.
pub fn acceptable_domain(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_DOMAIN_LEN {
        return false;
    }
    if name == "(OTHER)" {
        return true;
    }
    let charset = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*'));
    charset && name.parse::<std::net::IpAddr>().is_err()
}

impl DomainBytes {
    /// With explicit bounds (tests use small ones).
    pub fn with_bounds(soft_max_buckets: usize, max_buckets: usize) -> DomainBytes {
        DomainBytes {
            inner: Mutex::new(Inner::default()),
            max_buckets,
            soft_max_buckets,
            flush_soon: Notify::new(),
        }
    }

    /// Adds one reported count. Zero counts are ignored.
    pub fn add(&self, domain: &str, reporter: &Reporter, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let bucket = Bucket {
            domain: domain.to_owned(),
            reporter: reporter.clone(),
        };
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let len = inner.buckets.len();
        if let Some(total) = inner.buckets.get_mut(&bucket) {
            *total = total.saturating_add(bytes);
            return;
        }
        if len >= self.soft_max_buckets {
            self.flush_soon.notify_one();
        }
        if len >= self.max_buckets {
            inner.dropped = inner.dropped.saturating_add(1);
            return;
        }
        inner.buckets.insert(bucket, bytes);
    }

    /// How many buckets are waiting to be logged.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .buckets
            .len()
    }

    /// Whether no bucket is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Completes when the soft bound was reached since the last call.
    pub async fn flush_requested(&self) {
        self.flush_soon.notified().await;
    }

    /// Logs every bucket as a `domain_dest_bytes` event and starts over; reports dropped for
    /// the bound are logged as one warning.
    pub fn flush(&self, log: &EventLog) {
        let taken = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::take(&mut *inner)
        };
        for (bucket, bytes) in taken.buckets {
            let r = bucket.reporter;
            let mut f = Map::new();
            f.insert("domain".to_owned(), Value::from(bucket.domain));
            f.insert("client_region".to_owned(), Value::from(r.client_region));
            f.insert("client_asn".to_owned(), Value::from(r.client_asn));
            f.insert("sponsor_id".to_owned(), Value::from(r.sponsor_id));
            f.insert("client_platform".to_owned(), Value::from(r.client_platform));
            f.insert("device_region".to_owned(), Value::from(r.device_region));
            f.insert("bytes_tcp".to_owned(), Value::from(bytes));
            f.insert("bytes_udp".to_owned(), Value::from(0));
            f.insert("bytes".to_owned(), Value::from(bytes));
            log.event("domain_dest_bytes", f);
        }
        if taken.dropped > 0 {
            log.message(
                Level::Warning,
                &format!(
                    "domain_dest_bytes: {} reports dropped at the bound of {} buckets",
                    taken.dropped, self.max_buckets
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Level;

    fn reporter(region: &str) -> Reporter {
        Reporter {
            client_region: region.to_owned(),
            client_asn: "64496".to_owned(),
            sponsor_id: "SPONSOR".to_owned(),
            client_platform: "Android".to_owned(),
            device_region: "CA".to_owned(),
        }
    }

    #[test]
    fn buckets_are_summed_bounded_and_logged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = EventLog::open(Some(&path), "h", Level::Info).unwrap();
        let d = DomainBytes::with_bounds(2, 3);
        d.add("example.test", &reporter("CA"), 10);
        d.add("example.test", &reporter("CA"), 5);
        d.add("example.test", &reporter("US"), 7);
        d.add("zero.test", &reporter("US"), 0);
        d.add("(OTHER)", &reporter("US"), 1);
        assert_eq!(d.len(), 3);
        d.add("late.test", &reporter("US"), 1);
        d.add("later.test", &reporter("US"), 1);
        assert_eq!(d.len(), 3);
        d.flush(&log);
        assert!(d.is_empty());
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect();
        let domain = |region: &str, name: &str| {
            events
                .iter()
                .find(|e| e["domain"] == name && e["client_region"] == region)
                .cloned()
        };
        let ca = domain("CA", "example.test").unwrap();
        assert_eq!(ca["event_name"], "domain_dest_bytes");
        assert_eq!(ca["bytes"], 15);
        assert_eq!(ca["bytes_tcp"], 15);
        assert_eq!(ca["bytes_udp"], 0);
        assert_eq!(ca["client_asn"], "64496");
        assert_eq!(ca["sponsor_id"], "SPONSOR");
        assert_eq!(ca["client_platform"], "Android");
        assert_eq!(ca["device_region"], "CA");
        assert_eq!(domain("US", "example.test").unwrap()["bytes"], 7);
        assert!(domain("US", "late.test").is_none());
        assert!(text.contains("2 reports dropped"), "{text}");
        // Nothing left: a second flush logs nothing.
        d.flush(&log);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[tokio::test]
    async fn soft_bound_asks_for_a_flush() {
        let d = DomainBytes::with_bounds(1, 10);
        d.add("a.test", &reporter("CA"), 1);
        d.add("b.test", &reporter("CA"), 1);
        tokio::time::timeout(std::time::Duration::from_secs(5), d.flush_requested())
            .await
            .unwrap();
    }

    #[test]
    fn only_domains_are_acceptable() {
        for ok in [
            "example.test",
            "(OTHER)",
            "a-b_c.example",
            "*.wildcard.test",
            "x",
        ] {
            assert!(acceptable_domain(ok), "{ok}");
        }
        for bad in [
            "",
            "http://example.test/",
            "example.test/path",
            "example.test?q=1",
            "user@example.test",
            "192.0.2.1",
            "2001:db8::1",
            "a b",
            "example.test:443",
            &"a".repeat(MAX_DOMAIN_LEN + 1),
        ] {
            assert!(!acceptable_domain(bad), "{bad}");
        }
    }
}
