//! Replay history of obfuscation seeds (wire spec 1.5).
//!
//! A server remembers every seed that opened a preamble with a valid magic value, for 24 hours
//! and at most 1,000,000 seeds, and rejects a seed it has seen before. The peer address of each
//! seed is kept for only 2 minutes (at most 10,000), in a separate table, and only matters in the
//! non-strict mode used for meek cookies, where a retry from the same address is expected.
//!
//! The clock is passed in (`now`), so tests and simulations control time.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Limits of a [`SeedHistory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedHistoryConfig {
    /// How long a seed is remembered (default 24 h).
    pub seed_ttl: Duration,
    /// Most seeds remembered; the oldest is forgotten first (default 1,000,000).
    pub max_seeds: usize,
    /// How long the peer address of a seed is remembered (default 2 min).
    pub peer_ttl: Duration,
    /// Most peer addresses remembered (default 10,000).
    pub max_peers: usize,
}

impl Default for SeedHistoryConfig {
    fn default() -> Self {
        Self {
            seed_ttl: Duration::from_secs(24 * 60 * 60),
            max_seeds: 1_000_000,
            peer_ttl: Duration::from_secs(2 * 60),
            max_peers: 10_000,
        }
    }
}

/// How duplicates are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryMode {
    /// Any duplicate is rejected (OSSH: a real client never reuses a seed).
    Strict,
    /// A duplicate from the same peer address within the peer TTL is accepted (meek retries).
    AllowSamePeerRetry,
}

/// Whether a duplicate seed came from the address that first used it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerMatch {
    /// Same address.
    Equal,
    /// Another address.
    Unequal,
    /// The first address is no longer remembered (or none was given).
    Unknown,
}

impl fmt::Display for PeerMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Equal => "equal",
            Self::Unequal => "unequal",
            Self::Unknown => "unknown",
        })
    }
}

/// A seed that was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate {
    /// Time since the seed was first recorded.
    pub elapsed: Duration,
    /// Whether it came from the same peer address.
    pub peer: PeerMatch,
}

/// The outcome of [`SeedHistory::add_new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Never seen: recorded now.
    New,
    /// Seen before but allowed by the mode (same peer retry); worth a log line.
    AllowedDuplicate(Duplicate),
    /// Seen before: reject the connection.
    Rejected(Duplicate),
}

/// A bounded map whose entries expire a fixed time after insertion. Entries are never refreshed,
/// so insertion order is expiry order and the oldest entry is the one evicted at capacity.
#[derive(Debug)]
struct ExpiringMap<V> {
    entries: HashMap<Box<[u8]>, (Instant, V)>,
    order: VecDeque<(Box<[u8]>, Instant)>,
    ttl: Duration,
    capacity: usize,
}

impl<V> ExpiringMap<V> {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            ttl,
            capacity: capacity.max(1),
        }
    }

    fn expired(&self, inserted: Instant, now: Instant) -> bool {
        now.saturating_duration_since(inserted) >= self.ttl
    }

    /// Drops the front of `order`, and its entry if the entry is still that insertion.
    fn pop_oldest(&mut self) {
        if let Some((key, inserted)) = self.order.pop_front()
            && self.entries.get(&key).is_some_and(|(t, _)| *t == inserted)
        {
            self.entries.remove(&key);
        }
    }

    fn purge(&mut self, now: Instant) {
        while let Some((_, inserted)) = self.order.front() {
            if !self.expired(*inserted, now) {
                break;
            }
            self.pop_oldest();
        }
    }

    fn get(&self, key: &[u8], now: Instant) -> Option<&(Instant, V)> {
        self.entries
            .get(key)
            .filter(|(inserted, _)| !self.expired(*inserted, now))
    }

    fn insert(&mut self, key: &[u8], value: V, now: Instant) {
        self.purge(now);
        while self.entries.len() >= self.capacity && !self.order.is_empty() {
            self.pop_oldest();
        }
        let key: Box<[u8]> = key.into();
        self.entries.insert(key.clone(), (now, value));
        self.order.push_back((key, now));
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Debug)]
struct Tables {
    seeds: ExpiringMap<()>,
    peers: ExpiringMap<Option<IpAddr>>,
}

/// Shared, bounded replay history. Share it between listeners with an `Arc`; the lock is held only
/// for a map lookup and insert, never across an await.
#[derive(Debug)]
pub struct SeedHistory {
    tables: Mutex<Tables>,
}

impl Default for SeedHistory {
    fn default() -> Self {
        Self::new(SeedHistoryConfig::default())
    }
}

impl SeedHistory {
    /// An empty history with the given limits.
    #[must_use]
    pub fn new(config: SeedHistoryConfig) -> Self {
        Self {
            tables: Mutex::new(Tables {
                seeds: ExpiringMap::new(config.seed_ttl, config.max_seeds),
                peers: ExpiringMap::new(config.peer_ttl, config.max_peers),
            }),
        }
    }

    /// Records `seed` if it is new; otherwise judges the duplicate by `mode`.
    pub fn add_new(
        &self,
        seed: &[u8],
        peer: Option<IpAddr>,
        mode: HistoryMode,
        now: Instant,
    ) -> Admission {
        // A panic elsewhere while holding the lock cannot leave the maps inconsistent in a way
        // that matters here, so a poisoned lock is simply taken over.
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        tables.seeds.purge(now);
        tables.peers.purge(now);
        let Some(&(first_seen, ())) = tables.seeds.get(seed, now) else {
            tables.seeds.insert(seed, (), now);
            tables.peers.insert(seed, peer, now);
            return Admission::New;
        };
        let peer_match = match (tables.peers.get(seed, now), peer) {
            (Some((_, Some(before))), Some(now_peer)) if *before == now_peer => PeerMatch::Equal,
            (Some((_, Some(_))), Some(_)) => PeerMatch::Unequal,
            _ => PeerMatch::Unknown,
        };
        let duplicate = Duplicate {
            elapsed: now.saturating_duration_since(first_seen),
            peer: peer_match,
        };
        match (mode, peer_match) {
            (HistoryMode::AllowSamePeerRetry, PeerMatch::Equal) => {
                Admission::AllowedDuplicate(duplicate)
            }
            _ => Admission::Rejected(duplicate),
        }
    }

    /// Number of seeds remembered (expired ones may still count until the next insert).
    #[must_use]
    pub fn len(&self) -> usize {
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seeds
            .len()
    }

    /// Whether no seed is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));

    #[test]
    fn strict_mode_rejects_any_duplicate() {
        let h = SeedHistory::default();
        let t0 = Instant::now();
        assert_eq!(
            h.add_new(b"seed", A, HistoryMode::Strict, t0),
            Admission::New
        );
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            h.add_new(b"seed", A, HistoryMode::Strict, later),
            Admission::Rejected(Duplicate {
                elapsed: Duration::from_secs(5),
                peer: PeerMatch::Equal
            })
        );
        assert_eq!(
            h.add_new(b"other", A, HistoryMode::Strict, later),
            Admission::New
        );
    }

    #[test]
    fn seeds_expire_after_the_ttl() {
        let h = SeedHistory::default();
        let t0 = Instant::now();
        assert_eq!(
            h.add_new(b"s", None, HistoryMode::Strict, t0),
            Admission::New
        );
        let almost = t0 + Duration::from_secs(24 * 3600 - 1);
        assert!(matches!(
            h.add_new(b"s", None, HistoryMode::Strict, almost),
            Admission::Rejected(_)
        ));
        let after = t0 + Duration::from_secs(24 * 3600);
        assert_eq!(
            h.add_new(b"s", None, HistoryMode::Strict, after),
            Admission::New
        );
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let h = SeedHistory::new(SeedHistoryConfig {
            max_seeds: 3,
            ..SeedHistoryConfig::default()
        });
        let t = Instant::now();
        for s in [b"1", b"2", b"3", b"4"] {
            assert_eq!(h.add_new(s, None, HistoryMode::Strict, t), Admission::New);
        }
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.add_new(b"1", None, HistoryMode::Strict, t),
            Admission::New
        );
        assert!(matches!(
            h.add_new(b"4", None, HistoryMode::Strict, t),
            Admission::Rejected(_)
        ));
    }

    #[test]
    fn non_strict_allows_same_peer_within_peer_ttl_only() {
        let h = SeedHistory::default();
        let t0 = Instant::now();
        let mode = HistoryMode::AllowSamePeerRetry;
        assert_eq!(h.add_new(b"c", A, mode, t0), Admission::New);
        let soon = t0 + Duration::from_secs(30);
        assert!(matches!(
            h.add_new(b"c", A, mode, soon),
            Admission::AllowedDuplicate(_)
        ));
        assert!(matches!(
            h.add_new(b"c", B, mode, soon),
            Admission::Rejected(Duplicate {
                peer: PeerMatch::Unequal,
                ..
            })
        ));
        let late = t0 + Duration::from_secs(121);
        assert!(matches!(
            h.add_new(b"c", A, mode, late),
            Admission::Rejected(Duplicate {
                peer: PeerMatch::Unknown,
                ..
            })
        ));
    }
}
