//! The limits on a tunnel's TCP port forwards under its traffic rules: the dial queue and dial
//! slots, and the open forwards ordered by activity, the least recently active being closed
//! when a new one would exceed `MaxTCPPortForwardCount`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, Semaphore};

use crate::traffic_rules::TrafficRules;

/// A tunnel's rules after the API handshake and the limits on its port forwards.
pub(super) struct ForwardLimits {
    pub(super) rules: Arc<TrafficRules>,
    pub(super) queue: Arc<Semaphore>,
    pub(super) dial_slots: Arc<Semaphore>,
    pub(super) lru: Arc<Mutex<ForwardLru>>,
}

impl ForwardLimits {
    /// `lru`: the tunnel's open forwards, kept across rule changes.
    pub(super) fn new(rules: TrafficRules, lru: Arc<Mutex<ForwardLru>>) -> ForwardLimits {
        let dialing = rules.max_tcp_dialing_port_forward_count;
        let queue = rules.max_tcp_port_forward_count.saturating_add(dialing);
        ForwardLimits {
            queue: Arc::new(Semaphore::new(queue.min(Semaphore::MAX_PERMITS))),
            dial_slots: Arc::new(Semaphore::new(dialing.min(Semaphore::MAX_PERMITS))),
            lru,
            rules: Arc::new(rules),
        }
    }
}

/// The open TCP forwards of a tunnel: the time of each one's last activity and how to close it.
#[derive(Default)]
pub(super) struct ForwardLru {
    next_id: u64,
    open: HashMap<u64, (Arc<AtomicU64>, Arc<Notify>)>,
}

/// Removes a forward from the LRU when it ends.
pub(super) struct LruEntry {
    lru: Arc<Mutex<ForwardLru>>,
    id: u64,
}

impl Drop for LruEntry {
    fn drop(&mut self) {
        self.lru
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .remove(&self.id);
    }
}

impl ForwardLru {
    /// Adds a forward; at `max` open forwards (0 = no limit), first closes the one least
    /// recently active. The forward ends when the returned `Notify` fires.
    pub(super) fn register(
        lru: &Arc<Mutex<ForwardLru>>,
        max: usize,
        activity: &Arc<AtomicU64>,
    ) -> (LruEntry, Arc<Notify>) {
        let mut this = lru.lock().unwrap_or_else(PoisonError::into_inner);
        while max > 0 && this.open.len() >= max {
            let oldest = this
                .open
                .iter()
                .min_by_key(|(id, (last, _))| (last.load(Ordering::Relaxed), **id))
                .map(|(id, _)| *id);
            let Some(evicted) = oldest.and_then(|id| this.open.remove(&id)) else {
                break;
            };
            // A stored permit: the forward ends even if it is not waiting yet.
            evicted.1.notify_one();
        }
        let id = this.next_id;
        this.next_id += 1;
        let close = Arc::new(Notify::new());
        this.open
            .insert(id, (Arc::clone(activity), Arc::clone(&close)));
        drop(this);
        (
            LruEntry {
                lru: Arc::clone(lru),
                id,
            },
            close,
        )
    }
}
