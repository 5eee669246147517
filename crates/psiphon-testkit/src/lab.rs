//! The censor lab: network namespaces joined by a router that censors.
//!
//! ```text
//!  client 198.18.1.2 ──┐            ┌── servers 198.19.1.1, .1.2, ... (one interface;
//!                      │  router    │           connections out from 198.19.0.2)
//!  proxy  198.18.2.2 ──┤ nftables   ├── origin  198.18.3.2
//!        (optional)    │  netem     │
//! ```
//!
//! A [`Lab`] creates its namespaces (`psl<pid>n<k>-client`, `-router`, `-servers`, `-origin`,
//! `-proxy`), a veth pair from the router to each (made inside the router's namespace, the
//! peer moved straight into the leaf's), addresses from 198.18.0.0/15, routes only between
//! the lab's subnets, `ip_forward` on in the router only. The root namespace gets no
//! interface, address, route or rule. Dropping the lab kills what still runs inside its
//! namespaces and deletes them; creating one first sweeps namespaces left by crashed runs of
//! this harness (their owning pid is gone).
//!
//! Needs root, iproute2 (`ip netns`, `tc`), nftables (`nft`) and `ethtool` (segmentation
//! offloads are turned off on every lab link, so the censor sees wire packets): see
//! [`Lab::available`].

mod censor;
mod netem;
mod plan;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub use censor::{Censor, Observations, TABLE};
pub use plan::{
    LAB_RANGE, LEAF_INTERFACE, MAX_SERVERS, Node, Plan, contains, server_address, wire_interfaces,
};

/// The delay line (Python, AF_PACKET), for kernels without netem.
const WIRE_PY: &str = include_str!("lab/wire.py");

/// Set this variable to make an unavailable lab an error instead of a skip (CI, as root).
pub const REQUIRE_ENV: &str = "PSIPHON_REQUIRE_LAB";

/// Everything that can go wrong building or driving the lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// The machine cannot run the lab (not root, no `ip netns`, no `nft`).
    #[error("the censor lab cannot run here: {0}")]
    Unavailable(String),
    /// More servers than the plan has addresses for.
    #[error("{0} servers asked for; the lab holds at most {MAX_SERVERS}")]
    TooManyServers(usize),
    /// A program could not be started.
    #[error("{what}: cannot run {program}: {source}")]
    Spawn {
        /// What the lab was doing.
        what: String,
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("{what}: `{command}` failed ({status}): {stderr}")]
    Command {
        /// What the lab was doing.
        what: String,
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// This kernel has no netem qdisc (`CONFIG_NET_SCH_NETEM`), so links cannot be delayed.
    #[error(
        "the kernel has no tc netem (CONFIG_NET_SCH_NETEM is not set): links cannot be delayed"
    )]
    NoNetem,
    /// The censor's counters could not be read.
    #[error("reading the censor's observations: unexpected `nft -j` output")]
    Observations,
}

/// Which lab in this process: part of the namespace prefix, so two labs never collide.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A lab being described; [`LabBuilder::build`] creates it.
#[derive(Debug, Clone)]
pub struct LabBuilder {
    servers: usize,
    proxy: bool,
    delays: Vec<(Node, std::time::Duration)>,
}

impl LabBuilder {
    /// How many server addresses the servers namespace holds (default 1).
    #[must_use]
    pub fn servers(mut self, n: usize) -> LabBuilder {
        self.servers = n;
        self
    }

    /// Adds the proxy host (198.18.2.2).
    #[must_use]
    pub fn proxy(mut self, on: bool) -> LabBuilder {
        self.proxy = on;
        self
    }

    /// Delays every frame on the link between the router and `node` by `delay` in each
    /// direction (100 ms makes a 200 ms round trip), with a userspace delay line in the
    /// router: works on kernels without netem. Needs `python3` and `ethtool` (checksum and
    /// segmentation offloads are turned off on the link's two ends so frames can be copied).
    #[must_use]
    pub fn delay(mut self, node: Node, delay: std::time::Duration) -> LabBuilder {
        if node.router_interface().is_some() {
            self.delays.retain(|(n, _)| *n != node);
            self.delays.push((node, delay));
        }
        self
    }

    /// Creates the namespaces, links, addresses and routes, and an open censor.
    ///
    /// # Errors
    /// [`LabError::TooManyServers`], or the failing command. What was made before the
    /// failure is removed.
    pub fn build(self) -> Result<Lab, LabError> {
        let mut plan =
            Plan::new(self.servers, self.proxy).ok_or(LabError::TooManyServers(self.servers))?;
        plan.wired = self.delays.iter().map(|(n, _)| *n).collect();
        sweep_stale();
        let prefix = format!(
            "psl{}n{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            prefix,
            plan,
            created: Vec::new(),
            wires: Vec::new(),
        };
        lab.create()?;
        for (node, delay) in &self.delays {
            lab.start_wire(*node, *delay)?;
        }
        Ok(lab)
    }
}

/// A running lab. Dropping it tears it down.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    plan: Plan,
    created: Vec<String>,
    wires: Vec<std::process::Child>,
}

impl Lab {
    /// A lab with one server address and no proxy host; see [`LabBuilder`].
    pub fn builder() -> LabBuilder {
        LabBuilder {
            servers: 1,
            proxy: false,
            delays: Vec::new(),
        }
    }

    /// Whether the lab can run here: root, `ip netns` and `nft` working (checked by making
    /// and deleting a namespace and listing its ruleset). `Ok(false)`, after a note on stderr,
    /// means "skip the test".
    ///
    /// # Errors
    /// [`LabError::Unavailable`] when the lab cannot run and `PSIPHON_REQUIRE_LAB` is set.
    pub fn available() -> Result<bool, LabError> {
        match probe() {
            Ok(()) => Ok(true),
            Err(reason) if std::env::var_os(REQUIRE_ENV).is_some() => Err(LabError::Unavailable(
                format!("{reason} ({REQUIRE_ENV} is set)"),
            )),
            Err(reason) => {
                eprintln!("skipping: the censor lab cannot run here: {reason}");
                Ok(false)
            }
        }
    }

    /// The name of a node's namespace.
    pub fn namespace(&self, node: Node) -> String {
        format!("{}-{}", self.prefix, node.role())
    }

    /// The lab's address plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// A leaf's (first) address; `None` for the router or an absent proxy.
    pub fn address(&self, node: Node) -> Option<Ipv4Addr> {
        self.plan
            .link(node)
            .and_then(|l| l.addresses.first().copied())
    }

    /// Every server address, in order.
    pub fn server_addresses(&self) -> &[Ipv4Addr] {
        self.plan
            .link(Node::Servers)
            .map_or(&[], |l| l.addresses.as_slice())
    }

    /// `ip netns exec <namespace> <program>`: add arguments and run it.
    pub fn command(&self, node: Node, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.arg("netns")
            .arg("exec")
            .arg(self.namespace(node))
            .arg(program);
        c
    }

    /// As [`Lab::command`], for tokio. `kill_on_drop` is set.
    pub fn tokio_command(
        &self,
        node: Node,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> tokio::process::Command {
        let mut c = tokio::process::Command::from(self.command(node, program));
        c.kill_on_drop(true);
        c
    }

    /// Replaces the censor's policy (atomically); also resets its observations.
    ///
    /// # Errors
    /// The failing `nft` command.
    pub fn censor(&self, censor: &Censor) -> Result<(), LabError> {
        let servers = self
            .plan
            .link(Node::Servers)
            .map_or(LAB_RANGE, |l| l.subnet);
        let script = censor.ruleset(servers);
        let mut c = self.command(Node::Router, "nft");
        c.args(["-f", "-"]);
        run_with_input(c, &script, "applying the censor's nftables ruleset")
    }

    /// What the censor saw since the policy was last applied.
    ///
    /// # Errors
    /// The failing `nft` command, or [`LabError::Observations`].
    pub fn observations(&self) -> Result<Observations, LabError> {
        let mut c = self.command(Node::Router, "nft");
        c.args(["-j", "list", "table", "inet", TABLE]);
        let out = output(c, "reading the censor's counters")?;
        Observations::parse(&out).ok_or(LabError::Observations)
    }

    /// Delays the link between the router and `node` in both directions by `delay` each way
    /// (so 100 ms makes a 200 ms round trip): `tc netem` on the router's interface towards
    /// `node` and on `node`'s own interface.
    ///
    /// # Errors
    /// [`LabError::NoNetem`] when the kernel has no netem, or the failing `tc` command.
    pub fn delay(&self, node: Node, delay: std::time::Duration) -> Result<(), LabError> {
        let Some(interface) = node.router_interface() else {
            return Ok(());
        };
        for (ns, ifname) in [(Node::Router, interface), (node, plan::LEAF_INTERFACE)] {
            let mut c = self.command(ns, "tc");
            c.args(netem::delay_args(ifname, delay));
            match output(c, "setting a netem delay") {
                Err(LabError::Command { stderr, .. })
                    if stderr.contains("qdisc kind is unknown") =>
                {
                    return Err(LabError::NoNetem);
                }
                other => other.map(drop)?,
            }
        }
        Ok(())
    }

    /// Removes the delay from the link between the router and `node` (if any).
    pub fn clear_delay(&self, node: Node) {
        if let Some(interface) = node.router_interface() {
            for (ns, ifname) in [(Node::Router, interface), (node, plan::LEAF_INTERFACE)] {
                let mut c = self.command(ns, "tc");
                c.args(netem::clear_args(ifname));
                let _ = output(c, "clearing netem");
            }
        }
    }

    /// Starts the delay line of a wired link and waits for it to say it is ready.
    fn start_wire(&mut self, node: Node, delay: std::time::Duration) -> Result<(), LabError> {
        use std::io::BufRead as _;
        let (Some(routed), Some((a, b))) = (node.router_interface(), wire_interfaces(node)) else {
            return Ok(());
        };
        // Frames are copied as they are: the two ends must send complete, checksummed frames
        // (segmentation offloads are off on every lab link already).
        for (ns, ifname) in [(Node::Router, routed), (node, plan::LEAF_INTERFACE)] {
            let mut c = self.command(ns, "ethtool");
            c.args(["-K", ifname, "tx", "off"]);
            output(c, "turning offloads off for the delay line")?;
        }
        let mut c = self.command(Node::Router, "python3");
        c.arg("-c")
            .arg(WIRE_PY)
            .arg(&a)
            .arg(&b)
            .arg((delay.as_secs_f64() * 1000.0).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let what = "starting the delay line";
        let mut child = c.spawn().map_err(|source| LabError::Spawn {
            what: what.to_owned(),
            program: "python3".to_owned(),
            source,
        })?;
        let mut line = String::new();
        let ready = child
            .stdout
            .take()
            .map(|out| std::io::BufReader::new(out).read_line(&mut line));
        self.wires.push(child);
        if !line.starts_with("wire ready") {
            return Err(LabError::Command {
                what: what.to_owned(),
                command: format!("python3 -c <wire.py> {a} {b}"),
                status: format!("{ready:?}"),
                stderr: "the delay line did not start (see stderr above)".to_owned(),
            });
        }
        Ok(())
    }

    fn create(&mut self) -> Result<(), LabError> {
        let mut nodes = vec![Node::Router];
        nodes.extend(self.plan.links.iter().map(|l| l.node));
        for node in nodes {
            let ns = self.namespace(node);
            let mut c = Command::new("ip");
            c.args(["netns", "add", &ns]);
            output(c, "creating a namespace")?;
            self.created.push(ns);
        }
        let router = self.namespace(Node::Router);
        let script = self.plan.router_script(|n| self.namespace(n));
        let mut c = Command::new("ip");
        c.args(["-n", &router, "-batch", "-"]);
        run_with_input(c, &script, "building the router")?;
        for link in &self.plan.links {
            let Some(script) = self.plan.leaf_script(link.node) else {
                continue;
            };
            let mut c = Command::new("ip");
            c.args(["-n", &self.namespace(link.node), "-batch", "-"]);
            run_with_input(c, &script, "building a leaf namespace")?;
        }
        // No segmentation offloads anywhere: every packet the censor sees (and drops, counts or
        // loses) is one packet on the wire, not a 64 KiB GSO super-packet.
        for link in &self.plan.links {
            if let Some(routed) = link.node.router_interface() {
                for (ns, ifname) in [(Node::Router, routed), (link.node, plan::LEAF_INTERFACE)] {
                    let mut c = self.command(ns, "ethtool");
                    c.args(["-K", ifname, "tso", "off", "gso", "off", "gro", "off"]);
                    output(c, "turning segmentation offloads off")?;
                }
            }
        }
        let mut c = self.command(Node::Router, "sh");
        c.args(["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        output(c, "enabling forwarding in the router")?;
        self.censor(&Censor::new())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut wire in self.wires.drain(..) {
            let _ = wire.kill();
            let _ = wire.wait();
        }
        for ns in self.created.drain(..).rev() {
            remove_namespace(&ns);
        }
    }
}

/// The pid that created a lab namespace (`psl<pid>n<k>-<role>`), or `None` for any other name.
pub fn namespace_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("psl")?;
    let (pid, rest) = rest.split_once('n')?;
    let (k, role) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let roles = ["client", "router", "servers", "origin", "proxy", "probe"];
    if !digits(pid) || !digits(k) || !roles.contains(&role) {
        return None;
    }
    pid.parse().ok()
}

/// Kills what runs inside `ns` (processes this harness started there), then deletes it.
fn remove_namespace(ns: &str) {
    let mut c = Command::new("ip");
    c.args(["netns", "pids", ns]);
    if let Ok(pids) = output(c, "listing a namespace's processes") {
        for pid in pids.split_whitespace().filter(|p| p.parse::<u32>().is_ok()) {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
    let mut c = Command::new("ip");
    c.args(["netns", "delete", ns]);
    let _ = output(c, "deleting a namespace");
}

/// Best effort: deletes lab namespaces whose creating process is gone (a crashed run).
fn sweep_stale() {
    let mut c = Command::new("ip");
    c.args(["netns", "list"]);
    let Ok(list) = output(c, "listing namespaces") else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if let Some(pid) = namespace_owner(name)
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            remove_namespace(name);
        }
    }
}

fn probe() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1));
    if euid != Some("0") {
        return Err("not root".to_owned());
    }
    for (program, arg) in [
        ("ip", "-V"),
        ("nft", "--version"),
        ("tc", "-V"),
        ("ethtool", "--version"),
    ] {
        let ok = Command::new(program)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!(
                "`{program}` is missing (apt-get install iproute2 nftables ethtool)"
            ));
        }
    }
    let ns = format!(
        "psl{}n{}-probe",
        std::process::id(),
        NEXT_LAB.fetch_add(1, Ordering::Relaxed)
    );
    let mut c = Command::new("ip");
    c.args(["netns", "add", &ns]);
    output(c, "ip netns add").map_err(|e| e.to_string())?;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns, "nft", "list", "ruleset"]);
    let nft = output(c, "nft in a namespace").map(drop);
    remove_namespace(&ns);
    nft.map_err(|e| e.to_string())
}

fn describe(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `c` to completion; its stdout on success.
fn output(mut c: Command, what: &str) -> Result<String, LabError> {
    let command = describe(&c);
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            what: what.to_owned(),
            program: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            what: what.to_owned(),
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `c` with `input` on its stdin.
fn run_with_input(mut c: Command, input: &str, what: &str) -> Result<(), LabError> {
    use std::io::Write as _;
    let command = describe(&c);
    let spawn_err = |source| LabError::Spawn {
        what: what.to_owned(),
        program: command.clone(),
        source,
    };
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(LabError::Command {
            what: what.to_owned(),
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_harness_namespaces_are_swept() {
        assert_eq!(namespace_owner("psl1234n0-client"), Some(1234));
        assert_eq!(namespace_owner("psl7n12-probe"), Some(7));
        for other in [
            "psl1234n0-other",
            "pslxn0-client",
            "psl12n-client",
            "psl12-client",
            "cni-1234",
            "psl1234n0client",
            "xpsl1n0-client",
        ] {
            assert_eq!(namespace_owner(other), None, "{other}");
        }
    }

    #[test]
    fn builder_refuses_too_many_servers() {
        let err = Lab::builder().servers(MAX_SERVERS + 1).build().unwrap_err();
        assert!(matches!(err, LabError::TooManyServers(_)), "{err}");
    }
}
