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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_active_is_closed_first() {
        let lru = Arc::new(Mutex::new(ForwardLru::default()));
        let at = |ms| Arc::new(AtomicU64::new(ms));
        let (a_act, b_act, c_act) = (at(10), at(5), at(5));
        let (_a, a) = ForwardLru::register(&lru, 3, &a_act);
        let (_b, b) = ForwardLru::register(&lru, 3, &b_act);
        let (c_entry, c) = ForwardLru::register(&lru, 3, &c_act);
        // b and c are equally old: the one opened first goes.
        let (_d, _) = ForwardLru::register(&lru, 3, &at(20));
        let fired = |n: &Notify| {
            let waiter = n.notified();
            tokio::pin!(waiter);
            waiter.enable()
        };
        assert!(fired(&b) && !fired(&a) && !fired(&c));
        // Activity moves a forward to the back.
        c_act.store(30, Ordering::Relaxed);
        let (_e, _) = ForwardLru::register(&lru, 3, &at(40));
        assert!(fired(&a) && !fired(&c));
        // A forward that ends leaves room; 0 = no limit.
        drop(c_entry);
        let (_f, _) = ForwardLru::register(&lru, 3, &at(50));
        assert_eq!(lru.lock().unwrap().open.len(), 3);
        for _ in 0..10 {
            std::mem::forget(ForwardLru::register(&lru, 0, &at(60)));
        }
        assert_eq!(lru.lock().unwrap().open.len(), 13);
    }
}
