//! The lab's address plan: which namespace holds which addresses, and the `ip -batch` scripts
//! that build it. Pure: no commands run here, so the plan is unit-tested.
//!
//! Every address is in 198.18.0.0/15 (RFC 2544, benchmarking). Each leaf namespace has one
//! interface `eth0`, a veth whose peer lives in the router namespace; the only routes are to
//! the other lab subnets, through the router. Nothing has a default route.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The whole lab range: 198.18.0.0/15.
pub const LAB_RANGE: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);

/// The most server addresses a lab holds (198.19.1.1 .. 198.19.254.254, 254 per /24).
pub const MAX_SERVERS: usize = 254 * 254;

/// A namespace of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// The censored user: the client and curl run here.
    Client,
    /// Forwards between the others; the censor (nftables, netem) lives here.
    Router,
    /// Every server address, on one interface.
    Servers,
    /// The "Internet": web pages, remote server lists.
    Origin,
    /// An upstream proxy host the client may be confined to (optional).
    Proxy,
}

impl Node {
    /// The leaf nodes, in the order they are built.
    pub const LEAVES: [Node; 4] = [Node::Client, Node::Servers, Node::Origin, Node::Proxy];

    /// The role in namespace names: `<prefix>-<role>`.
    pub fn role(self) -> &'static str {
        match self {
            Node::Client => "client",
            Node::Router => "router",
            Node::Servers => "servers",
            Node::Origin => "origin",
            Node::Proxy => "proxy",
        }
    }

    /// The router's interface towards this leaf (`to-client`, ...); the router has none.
    pub fn router_interface(self) -> Option<&'static str> {
        match self {
            Node::Client => Some("to-client"),
            Node::Router => None,
            Node::Servers => Some("to-servers"),
            Node::Origin => Some("to-origin"),
            Node::Proxy => Some("to-proxy"),
        }
    }
}

/// The interface name inside every leaf namespace.
pub const LEAF_INTERFACE: &str = "eth0";

/// One leaf's link to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The leaf.
    pub node: Node,
    /// The leaf's subnet.
    pub subnet: (Ipv4Addr, u8),
    /// The router's address on this link (the leaf's gateway to the other subnets).
    pub router_address: Ipv4Addr,
    /// The leaf's addresses (for the servers: one per server).
    pub addresses: Vec<Ipv4Addr>,
    /// The source address of connections the leaf opens to other subnets. For the servers it
    /// is none of the server addresses (198.19.0.2), so blackholing a server address never
    /// cuts the other servers' way to the origin.
    pub egress: Ipv4Addr,
}

/// The address plan of one lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One link per leaf.
    pub links: Vec<Link>,
    /// Leaves whose link runs through a userspace delay line in the router (see
    /// [`wire_interfaces`]).
    pub wired: Vec<Node>,
}

/// For a wired leaf: the two router interfaces the delay line copies frames between. The
/// leaf's veth peer is the first; the second is paired with the routed interface (which keeps
/// its `to-<leaf>` name, so the censor's rules are the same either way).
pub fn wire_interfaces(node: Node) -> Option<(String, String)> {
    node.router_interface()?;
    Some((format!("w-{}", node.role()), format!("w-{}-b", node.role())))
}

/// The address of server `i` (0-based): 198.19.(1 + i / 254).(1 + i % 254).
pub fn server_address(i: usize) -> Option<Ipv4Addr> {
    if i >= MAX_SERVERS {
        return None;
    }
    let hi = u8::try_from(1 + i / 254).ok()?;
    let lo = u8::try_from(1 + i % 254).ok()?;
    Some(Ipv4Addr::new(198, 19, hi, lo))
}

impl Plan {
    /// The plan for `servers` server addresses (at most [`MAX_SERVERS`]), with or without the
    /// proxy host. `None` when `servers` is too large.
    pub fn new(servers: usize, proxy: bool) -> Option<Plan> {
        let small = |node, third| Link {
            node,
            subnet: (Ipv4Addr::new(198, 18, third, 0), 24),
            router_address: Ipv4Addr::new(198, 18, third, 1),
            addresses: vec![Ipv4Addr::new(198, 18, third, 2)],
            egress: Ipv4Addr::new(198, 18, third, 2),
        };
        let addresses = (0..servers)
            .map(server_address)
            .collect::<Option<Vec<_>>>()?;
        let mut links = vec![
            small(Node::Client, 1),
            Link {
                node: Node::Servers,
                subnet: (Ipv4Addr::new(198, 19, 0, 0), 16),
                router_address: Ipv4Addr::new(198, 19, 0, 1),
                addresses,
                egress: Ipv4Addr::new(198, 19, 0, 2),
            },
            small(Node::Origin, 3),
        ];
        if proxy {
            links.push(small(Node::Proxy, 2));
        }
        Some(Plan {
            links,
            wired: Vec::new(),
        })
    }

    /// The link of a leaf, if the plan has it.
    pub fn link(&self, node: Node) -> Option<&Link> {
        self.links.iter().find(|l| l.node == node)
    }

    /// The router's `ip -batch` script: one veth pair per leaf (the peer created straight in
    /// the leaf's namespace, so no interface ever appears in the root namespace), addresses,
    /// links up. `namespace` names a leaf's namespace.
    pub fn router_script(&self, namespace: impl Fn(Node) -> String) -> String {
        let mut s = String::from("link set lo up\n");
        for l in &self.links {
            let Some(ifname) = l.node.router_interface() else {
                continue;
            };
            match wire_interfaces(l.node).filter(|_| self.wired.contains(&l.node)) {
                Some((a, b)) => {
                    let _ = writeln!(
                        s,
                        "link add {a} type veth peer name {LEAF_INTERFACE} netns {}",
                        namespace(l.node)
                    );
                    let _ = writeln!(s, "link add {ifname} type veth peer name {b}");
                    let _ = writeln!(s, "link set {a} up");
                    let _ = writeln!(s, "link set {b} up");
                }
                None => {
                    let _ = writeln!(
                        s,
                        "link add {ifname} type veth peer name {LEAF_INTERFACE} netns {}",
                        namespace(l.node)
                    );
                }
            }
            let _ = writeln!(
                s,
                "address add {}/{} dev {ifname}",
                l.router_address, l.subnet.1
            );
            let _ = writeln!(s, "link set {ifname} up");
        }
        s
    }

    /// A leaf's `ip -batch` script: `lo` and `eth0` up, its addresses (the egress address
    /// first), and a route to every other lab subnet through the router, from the egress
    /// address. No default route.
    pub fn leaf_script(&self, node: Node) -> Option<String> {
        let link = self.link(node)?;
        let mut s = String::from("link set lo up\n");
        let egress = (!link.addresses.contains(&link.egress)).then_some(link.egress);
        for a in egress.iter().chain(&link.addresses) {
            let _ = writeln!(s, "address add {a}/{} dev {LEAF_INTERFACE}", link.subnet.1);
        }
        let _ = writeln!(s, "link set {LEAF_INTERFACE} up");
        for other in self.links.iter().filter(|o| o.node != node) {
            let _ = writeln!(
                s,
                "route add {}/{} via {} dev {LEAF_INTERFACE} src {}",
                other.subnet.0, other.subnet.1, link.router_address, link.egress
            );
        }
        Some(s)
    }
}

/// Whether `ip` is inside `net/prefix`.
pub fn contains(net: (Ipv4Addr, u8), ip: Ipv4Addr) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(net.1)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net.0) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_is_in_the_benchmarking_range_and_distinct() {
        let plan = Plan::new(1000, true).unwrap();
        let mut all = Vec::new();
        for l in &plan.links {
            assert!(contains(LAB_RANGE, l.subnet.0), "{l:?}");
            assert!(contains(l.subnet, l.router_address));
            all.push(l.router_address);
            assert!(contains(l.subnet, l.egress));
            if !l.addresses.contains(&l.egress) {
                all.push(l.egress);
            }
            for a in &l.addresses {
                assert!(contains(l.subnet, *a), "{a} outside {:?}", l.subnet);
                assert!(contains(LAB_RANGE, *a));
                all.push(*a);
            }
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "an address is used twice");
        // Subnets do not overlap.
        for a in &plan.links {
            for b in plan.links.iter().filter(|b| b.node != a.node) {
                assert!(!contains(a.subnet, b.subnet.0) && !contains(b.subnet, a.subnet.0));
            }
        }
    }

    #[test]
    fn server_addresses_skip_network_and_broadcast_octets() {
        assert_eq!(server_address(0), Some(Ipv4Addr::new(198, 19, 1, 1)));
        assert_eq!(server_address(253), Some(Ipv4Addr::new(198, 19, 1, 254)));
        assert_eq!(server_address(254), Some(Ipv4Addr::new(198, 19, 2, 1)));
        assert_eq!(
            server_address(MAX_SERVERS - 1),
            Some(Ipv4Addr::new(198, 19, 254, 254))
        );
        assert_eq!(server_address(MAX_SERVERS), None);
        assert!(Plan::new(MAX_SERVERS + 1, false).is_none());
        let plan = Plan::new(100, false).unwrap();
        assert_eq!(plan.link(Node::Servers).unwrap().addresses.len(), 100);
        assert!(plan.link(Node::Proxy).is_none());
    }

    #[test]
    fn scripts_route_only_between_lab_subnets() {
        let plan = Plan::new(3, false).unwrap();
        let router = plan.router_script(|n| format!("lab-{}", n.role()));
        assert_eq!(
            router,
            "link set lo up\n\
             link add to-client type veth peer name eth0 netns lab-client\n\
             address add 198.18.1.1/24 dev to-client\n\
             link set to-client up\n\
             link add to-servers type veth peer name eth0 netns lab-servers\n\
             address add 198.19.0.1/16 dev to-servers\n\
             link set to-servers up\n\
             link add to-origin type veth peer name eth0 netns lab-origin\n\
             address add 198.18.3.1/24 dev to-origin\n\
             link set to-origin up\n"
        );
        let servers = plan.leaf_script(Node::Servers).unwrap();
        assert_eq!(
            servers,
            "link set lo up\n\
             address add 198.19.0.2/16 dev eth0\n\
             address add 198.19.1.1/16 dev eth0\n\
             address add 198.19.1.2/16 dev eth0\n\
             address add 198.19.1.3/16 dev eth0\n\
             link set eth0 up\n\
             route add 198.18.1.0/24 via 198.19.0.1 dev eth0 src 198.19.0.2\n\
             route add 198.18.3.0/24 via 198.19.0.1 dev eth0 src 198.19.0.2\n"
        );
        let mut wired = plan.clone();
        wired.wired.push(Node::Client);
        let router = wired.router_script(|n| format!("lab-{}", n.role()));
        assert!(router.starts_with(
            "link set lo up\n\
             link add w-client type veth peer name eth0 netns lab-client\n\
             link add to-client type veth peer name w-client-b\n\
             link set w-client up\n\
             link set w-client-b up\n\
             address add 198.18.1.1/24 dev to-client\n\
             link set to-client up\n"
        ));
        assert_eq!(
            wire_interfaces(Node::Client),
            Some(("w-client".to_owned(), "w-client-b".to_owned()))
        );
        assert!(
            wire_interfaces(Node::Servers).is_some_and(|(a, b)| a.len() <= 15 && b.len() <= 15)
        );
        for node in [Node::Client, Node::Servers, Node::Origin] {
            let s = plan.leaf_script(node).unwrap();
            assert!(!s.contains("default") && !s.contains("0.0.0.0"), "{s}");
        }
        assert!(plan.leaf_script(Node::Proxy).is_none());
        assert!(plan.leaf_script(Node::Router).is_none());
    }
}
