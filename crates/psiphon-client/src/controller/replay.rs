//! What worked on this network, remembered in the datastore (tunnel-core calls it replay):
//! the protocol each server last connected with, and the protocols that were blocked here
//! (every attempt failed as a censor's drop or reset would, none succeeded). Candidates are
//! ordered with this: a replayed protocol first, blocked protocols last. Records expire after
//! [`REPLAY_TTL`], as tunnel-core's replay parameters do, so a lifted block is found again.

use std::time::{Duration, SystemTime};

use psiphon_protocol::TunnelProtocol;
use psiphon_protocol::time::{parse_rfc3339, rfc3339};

use crate::datastore::Datastore;

/// How long a record is trusted.
pub const REPLAY_TTL: Duration = Duration::from_secs(24 * 3600);

fn server_key(network: &str, ip: &str) -> String {
    format!("replay/{network}/server/{ip}")
}

fn blocked_key(network: &str, protocol: TunnelProtocol) -> String {
    format!("replay/{network}/blocked/{}", protocol.name())
}

fn fresh(stamp: &str) -> bool {
    parse_rfc3339(stamp).is_some_and(|t| {
        SystemTime::now()
            .duration_since(t)
            .is_ok_and(|age| age < REPLAY_TTL)
    })
}

/// The replay memory of one network.
#[derive(Debug, Clone)]
pub struct Replay {
    network: String,
}

impl Replay {
    /// The memory of `network` (tunnel-core's `NetworkID`; "" means unknown).
    pub fn new(network: &str) -> Replay {
        let network = if network.is_empty() {
            "UNKNOWN"
        } else {
            network
        };
        Replay {
            network: network.replace('/', "_"),
        }
    }

    /// The protocol `ip` last connected with on this network, if recent.
    pub fn server_protocol(&self, store: &Datastore, ip: &str) -> Option<TunnelProtocol> {
        let v = store.get(&server_key(&self.network, ip)).ok().flatten()?;
        let (name, stamp) = v.split_once(' ')?;
        if !fresh(stamp) {
            return None;
        }
        TunnelProtocol::from_name(name)
    }

    /// Whether `protocol` was blocked on this network recently.
    pub fn is_blocked(&self, store: &Datastore, protocol: TunnelProtocol) -> bool {
        store
            .get(&blocked_key(&self.network, protocol))
            .ok()
            .flatten()
            .is_some_and(|stamp| fresh(&stamp))
    }

    /// A tunnel connected: remember the protocol for this server, and that it is not blocked.
    pub fn succeeded(&self, store: &Datastore, ip: &str, protocol: TunnelProtocol) {
        let now = rfc3339(SystemTime::now());
        let _ = store.set(
            &server_key(&self.network, ip),
            Some(&format!("{} {now}", protocol.name())),
        );
        let _ = store.set(&blocked_key(&self.network, protocol), None);
    }

    /// Every attempt with `protocol` in a round looked blocked and none succeeded.
    pub fn blocked(&self, store: &Datastore, protocol: TunnelProtocol) {
        let _ = store.set(
            &blocked_key(&self.network, protocol),
            Some(&rfc3339(SystemTime::now())),
        );
    }

    /// A replayed server failed: forget its protocol so it is not preferred blindly.
    pub fn forget_server(&self, store: &Datastore, ip: &str) {
        let _ = store.set(&server_key(&self.network, ip), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_network_and_expires() {
        let store = Datastore::in_memory().unwrap_or_else(|e| panic!("{e}"));
        let home = Replay::new("home");
        let cafe = Replay::new("cafe");
        home.succeeded(&store, "192.0.2.1", TunnelProtocol::Ssh);
        assert_eq!(
            home.server_protocol(&store, "192.0.2.1"),
            Some(TunnelProtocol::Ssh)
        );
        assert_eq!(cafe.server_protocol(&store, "192.0.2.1"), None);
        home.blocked(&store, TunnelProtocol::Ossh);
        assert!(home.is_blocked(&store, TunnelProtocol::Ossh));
        assert!(!cafe.is_blocked(&store, TunnelProtocol::Ossh));
        home.succeeded(&store, "192.0.2.2", TunnelProtocol::Ossh);
        assert!(
            !home.is_blocked(&store, TunnelProtocol::Ossh),
            "a success lifts the mark"
        );
        // An old record is ignored.
        let _ = store.set(
            &server_key("home", "192.0.2.3"),
            Some("SSH 2000-01-01T00:00:00Z"),
        );
        assert_eq!(home.server_protocol(&store, "192.0.2.3"), None);
        home.forget_server(&store, "192.0.2.1");
        assert_eq!(home.server_protocol(&store, "192.0.2.1"), None);
    }
}
