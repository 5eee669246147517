//! What the censor on the router does, as an nftables ruleset. Pure: [`Censor::ruleset`] is
//! the text `nft -f -` reads, and [`Observations::parse`] reads `nft -j list table` back.
//!
//! The table is replaced whole in one nft transaction (create if absent, delete, define), so
//! a change at runtime is atomic and also resets the observation sets and counters.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde_json::Value;

use super::plan::Node;

/// The nftables table the lab owns (inside the router namespace only).
pub const TABLE: &str = "psiphon_lab";

/// A censorship policy. The default lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Censor {
    blackhole: BTreeSet<Ipv4Addr>,
    reset: BTreeSet<Ipv4Addr>,
    drop_ports: BTreeSet<u16>,
    confine: BTreeMap<Node, BTreeSet<Node>>,
    loss: BTreeMap<Node, u16>,
}

impl Censor {
    /// Lets everything through.
    pub fn new() -> Censor {
        Censor::default()
    }

    /// Drops every packet to and from these addresses (SYNs go unanswered; a flow in progress
    /// goes silent).
    #[must_use]
    pub fn blackhole(mut self, ips: impl IntoIterator<Item = Ipv4Addr>) -> Censor {
        self.blackhole.extend(ips);
        self
    }

    /// Answers every TCP segment to these addresses with a reset.
    #[must_use]
    pub fn reset(mut self, ips: impl IntoIterator<Item = Ipv4Addr>) -> Censor {
        self.reset.extend(ips);
        self
    }

    /// Drops TCP to this destination port on every address (another port stays open).
    #[must_use]
    pub fn drop_tcp_port(mut self, port: u16) -> Censor {
        self.drop_ports.insert(port);
        self
    }

    /// Packets arriving from `from` are forwarded only to the nodes in `to` (e.g. the client may
    /// reach only its upstream proxy).
    #[must_use]
    pub fn confine(mut self, from: Node, to: impl IntoIterator<Item = Node>) -> Censor {
        self.confine.entry(from).or_default().extend(to);
        self
    }

    /// Drops `permille` of a thousand packets at random in each direction of the link between
    /// the router and `node` (20 = 2 % each way).
    #[must_use]
    pub fn lose(mut self, node: Node, permille: u16) -> Censor {
        self.loss.insert(node, permille.min(1000));
        self
    }

    /// Whether this address is blackholed.
    pub fn is_blackholed(&self, ip: Ipv4Addr) -> bool {
        self.blackhole.contains(&ip)
    }

    /// The nft script that replaces the lab's table with this policy. `servers` is the subnet
    /// whose SYNs from the client are observed (first destination port, count per port).
    pub fn ruleset(&self, servers: (Ipv4Addr, u8)) -> String {
        let (net, len) = servers;
        let mut s = format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n");
        let _ = writeln!(s, "table inet {TABLE} {{");
        s.push_str("  set first_syn_port { type inet_service; size 1; flags dynamic; }\n");
        s.push_str("  set syn_ports { type inet_service; flags dynamic; counter; }\n");
        set(&mut s, "blackholed", "ipv4_addr", &self.blackhole);
        set(&mut s, "resetting", "ipv4_addr", &self.reset);
        set(&mut s, "dropped_ports", "inet_service", &self.drop_ports);
        s.push_str("  chain forward {\n");
        s.push_str("    type filter hook forward priority filter; policy accept;\n");
        // Observe first, so SYNs the censor drops are seen too.
        let syn = format!("iifname \"to-client\" ip daddr {net}/{len} tcp flags syn / syn,ack");
        let _ = writeln!(s, "    {syn} add @first_syn_port {{ tcp dport }}");
        let _ = writeln!(s, "    {syn} add @syn_ports {{ tcp dport counter }}");
        if !self.blackhole.is_empty() {
            s.push_str("    ip daddr @blackholed drop\n");
            s.push_str("    ip saddr @blackholed drop\n");
        }
        if !self.reset.is_empty() {
            s.push_str("    ip daddr @resetting meta l4proto tcp reject with tcp reset\n");
        }
        if !self.drop_ports.is_empty() {
            s.push_str("    tcp dport @dropped_ports drop\n");
        }
        for (from, to) in &self.confine {
            let (Some(iif), Some(allowed)) = (
                from.router_interface(),
                to.iter()
                    .map(|n| n.router_interface().map(|i| format!("\"{i}\"")))
                    .collect::<Option<Vec<_>>>(),
            ) else {
                continue;
            };
            if allowed.is_empty() {
                let _ = writeln!(s, "    iifname \"{iif}\" drop");
            } else {
                let _ = writeln!(
                    s,
                    "    iifname \"{iif}\" oifname != {{ {} }} drop",
                    allowed.join(", ")
                );
            }
        }
        for (node, permille) in &self.loss {
            if let Some(ifname) = node.router_interface() {
                for dir in ["iifname", "oifname"] {
                    let _ = writeln!(
                        s,
                        "    {dir} \"{ifname}\" numgen random mod 1000 < {permille} counter drop"
                    );
                }
            }
        }
        s.push_str("  }\n}\n");
        s
    }
}

fn set<T: std::fmt::Display>(s: &mut String, name: &str, ty: &str, elements: &BTreeSet<T>) {
    if elements.is_empty() {
        let _ = writeln!(s, "  set {name} {{ type {ty}; }}");
        return;
    }
    let list: Vec<String> = elements.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        s,
        "  set {name} {{ type {ty}; elements = {{ {} }} }}",
        list.join(", ")
    );
}

/// What the censor saw of the client's connection attempts to the servers since the policy
/// was last applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observations {
    /// The destination port of the client's first SYN to a server.
    pub first_syn_port: Option<u16>,
    /// SYNs to servers per destination port.
    pub syns_per_port: BTreeMap<u16, u64>,
}

impl Observations {
    /// Reads `nft -j list table inet psiphon_lab`.
    pub fn parse(json: &str) -> Option<Observations> {
        let v: Value = serde_json::from_str(json).ok()?;
        let mut o = Observations::default();
        for item in v.get("nftables")?.as_array()? {
            let Some(set) = item.get("set") else {
                continue;
            };
            let elems = set.get("elem").and_then(Value::as_array);
            match set.get("name").and_then(Value::as_str) {
                Some("first_syn_port") => {
                    o.first_syn_port = elems
                        .and_then(|e| e.first())
                        .and_then(Value::as_u64)
                        .and_then(|p| u16::try_from(p).ok());
                }
                Some("syn_ports") => {
                    for e in elems.into_iter().flatten() {
                        let inner = e.get("elem")?;
                        let port = u16::try_from(inner.get("val")?.as_u64()?).ok()?;
                        let packets = inner.get("counter")?.get("packets")?.as_u64()?;
                        o.syns_per_port.insert(port, packets);
                    }
                }
                _ => {}
            }
        }
        Some(o)
    }

    /// SYNs seen to `port`.
    pub fn syns(&self, port: u16) -> u64 {
        self.syns_per_port.get(&port).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVERS: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 19, 0, 0), 16);

    #[test]
    fn open_policy_only_observes() {
        let text = Censor::new().ruleset(SERVERS);
        assert!(text.starts_with(
            "table inet psiphon_lab {}\ndelete table inet psiphon_lab\ntable inet psiphon_lab {\n"
        ));
        assert!(
            !text.contains("drop\n") && !text.contains("reject"),
            "{text}"
        );
        assert!(text.contains(
            "iifname \"to-client\" ip daddr 198.19.0.0/16 tcp flags syn / syn,ack add @first_syn_port { tcp dport }"
        ));
        assert!(
            text.contains("set blackholed { type ipv4_addr; }"),
            "{text}"
        );
    }

    #[test]
    fn blackhole_reset_port_and_confinement() {
        let a = Ipv4Addr::new(198, 19, 1, 1);
        let b = Ipv4Addr::new(198, 19, 1, 2);
        let c = Ipv4Addr::new(198, 19, 1, 3);
        let censor = Censor::new()
            .blackhole([b, a])
            .reset([c])
            .drop_tcp_port(9999)
            .confine(Node::Client, [Node::Proxy])
            .lose(Node::Client, 20);
        assert!(censor.is_blackholed(a) && !censor.is_blackholed(c));
        let text = censor.ruleset(SERVERS);
        for line in [
            "  set blackholed { type ipv4_addr; elements = { 198.19.1.1, 198.19.1.2 } }",
            "  set resetting { type ipv4_addr; elements = { 198.19.1.3 } }",
            "  set dropped_ports { type inet_service; elements = { 9999 } }",
            "    ip daddr @blackholed drop",
            "    ip saddr @blackholed drop",
            "    ip daddr @resetting meta l4proto tcp reject with tcp reset",
            "    tcp dport @dropped_ports drop",
            "    iifname \"to-client\" oifname != { \"to-proxy\" } drop",
            "    iifname \"to-client\" numgen random mod 1000 < 20 counter drop",
            "    oifname \"to-client\" numgen random mod 1000 < 20 counter drop",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Observation comes before any verdict.
        let observe = text.find("@first_syn_port").unwrap();
        let verdict = text.find("drop\n").unwrap();
        assert!(observe < verdict);
        // Balanced braces: nft would reject the script otherwise.
        assert_eq!(text.matches('{').count(), text.matches('}').count());
        assert!(
            Censor::new()
                .confine(Node::Client, [])
                .ruleset(SERVERS)
                .contains("    iifname \"to-client\" drop\n")
        );
    }

    #[test]
    fn observations_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"set": {"family": "inet", "name": "first_syn_port", "table": "psiphon_lab", "type": "inet_service", "size": 1, "elem": [2222]}},
            {"set": {"family": "inet", "name": "syn_ports", "table": "psiphon_lab", "type": "inet_service",
             "elem": [{"elem": {"val": 2222, "counter": {"packets": 3, "bytes": 180}}},
                      {"elem": {"val": 9999, "counter": {"packets": 12, "bytes": 720}}}]}},
            {"set": {"family": "inet", "name": "blackholed", "table": "psiphon_lab", "type": "ipv4_addr"}}]}"#;
        let o = Observations::parse(json).unwrap();
        assert_eq!(o.first_syn_port, Some(2222));
        assert_eq!((o.syns(2222), o.syns(9999), o.syns(80)), (3, 12, 0));
        let empty = r#"{"nftables": [{"set": {"name": "first_syn_port"}}, {"set": {"name": "syn_ports"}}]}"#;
        assert_eq!(Observations::parse(empty).unwrap(), Observations::default());
        assert!(Observations::parse("not json").is_none());
    }
}
