//! The `consistent` strategy: tunnel-core's consistent hashing ring (its fork of
//! buraksezer/consistent) with xxHash64, one ring point per server and as many partitions as
//! servers, so that every server owns exactly one partition.

use xxhash_rust::xxh64::xxh64;

/// xxHash64 with seed 0, the hash of tunnel-core's ring.
pub fn xxhash64(data: &[u8]) -> u64 {
    xxh64(data, 0)
}

/// The ring point of a member: xxHash64 of its name followed by the replica number (always
/// `0`: replication factor 1).
pub fn ring_point(member: &str) -> u64 {
    let mut key = Vec::with_capacity(member.len() + 1);
    key.extend_from_slice(member.as_bytes());
    key.push(b'0');
    xxhash64(&key)
}

/// The hash that places partition `p` on the ring: xxHash64 of `p` as 8 bytes little-endian.
pub fn partition_point(partition: u64) -> u64 {
    xxhash64(&partition.to_le_bytes())
}

/// A ring built once for a set of members (server IP strings, distinct), in list order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistentRing {
    /// Partition number to the index of its owner in the member list; `None` only when two
    /// members share a ring point (tunnel-core panics there; we leave the partition empty).
    owners: Vec<Option<usize>>,
}

impl ConsistentRing {
    /// Builds the ring. Partitions are assigned in order `0..n`: partition `p` starts at the
    /// first ring point at or after [`partition_point`]`(p)` (wrapping) and walks forward to
    /// the first member that does not own a partition yet (the load bound is 1).
    pub fn new<S: AsRef<str>>(members: &[S]) -> ConsistentRing {
        let n = members.len();
        // Ring point to member; a later member with the same point replaces an earlier one,
        // as in tunnel-core's map, and the point stays in the sorted list twice.
        let mut points: Vec<(u64, usize)> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (ring_point(m.as_ref()), i))
            .collect();
        points.sort_by_key(|&(h, _)| h);
        let mut owner_of_point = Vec::with_capacity(points.len());
        for run in points.chunk_by(|a, b| a.0 == b.0) {
            let last = run.iter().map(|&(_, i)| i).max().unwrap_or(0);
            owner_of_point.extend(std::iter::repeat_n(last, run.len()));
        }
        let mut owns = vec![false; n];
        let mut owners = Vec::with_capacity(n);
        for p in 0..n {
            let key = partition_point(u64::try_from(p).unwrap_or(u64::MAX));
            let start = points.partition_point(|&(h, _)| h < key);
            let start = if start >= points.len() { 0 } else { start };
            let mut owner = None;
            for step in 0..points.len() {
                let idx = (start + step) % points.len();
                let Some(&member) = owner_of_point.get(idx) else {
                    break;
                };
                if let Some(slot) = owns.get_mut(member)
                    && !*slot
                {
                    *slot = true;
                    owner = Some(member);
                    break;
                }
            }
            owners.push(owner);
        }
        ConsistentRing { owners }
    }

    /// The number of partitions (= members).
    pub fn partition_count(&self) -> usize {
        self.owners.len()
    }

    /// The partition of a key hash: `hash mod n`; `None` for an empty ring.
    pub fn partition_of_hash(&self, hash: u64) -> Option<usize> {
        let n = u64::try_from(self.owners.len()).ok().filter(|&n| n > 0)?;
        usize::try_from(hash % n).ok()
    }

    /// The member index owning a partition.
    pub fn owner(&self, partition: usize) -> Option<usize> {
        self.owners.get(partition).copied().flatten()
    }

    /// The member index for a key hash (see [`super::ClientKey`]).
    pub fn locate_hash(&self, hash: u64) -> Option<usize> {
        self.owner(self.partition_of_hash(hash)?)
    }

    /// The member index for a key (for a client: its 16-byte address).
    pub fn locate(&self, key: &[u8]) -> Option<usize> {
        self.locate_hash(xxhash64(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_owns_one_partition() {
        let members: Vec<String> = (0..50).map(|i| format!("198.51.100.{i}")).collect();
        let ring = ConsistentRing::new(&members);
        assert_eq!(ring.partition_count(), 50);
        let mut owners: Vec<usize> = (0..50).filter_map(|p| ring.owner(p)).collect();
        owners.sort_unstable();
        assert_eq!(owners, (0..50).collect::<Vec<_>>());
        assert_eq!(ConsistentRing::new::<&str>(&[]).locate(b"x"), None);
        assert_eq!(ConsistentRing::new(&["a"]).locate(b"anything"), Some(0));
    }
}
