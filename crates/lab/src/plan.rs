//! The address and naming plan: everything about a lab that follows from its topology and prefix.
//!
//! The plan is computed before anything is created and written to the state file first, so a lab
//! interrupted half-way is still found and removed by its prefix.
//!
//! Addresses (node `n`, pod `p` on it, client `c`, all counted from 1) live only inside the lab's
//! namespaces, which have no link to the host:
//!
//! | what                | IPv4               | IPv6                    |
//! |---------------------|--------------------|-------------------------|
//! | node uplink         | `10.100.n.2/24`    | `fd00:100:0:n::2/64`    |
//! | router side of it   | `10.100.n.1/24`    | `fd00:100:0:n::1/64`    |
//! | node pod CIDR       | `10.244.n.0/24`    | `fd00:244:0:n::/64`     |
//! | pod                 | `10.244.n.(p+1)/32`| `fd00:244:0:n::(p+1)/128`|
//! | client              | `10.200.c.2/24`    | `fd00:200:0:c::2/64`    |
//! | router side of it   | `10.200.c.1/24`    | `fd00:200:0:c::1/64`    |
//! | director `d`        | `10.150.d.2/24`    | `fd00:150:0:d::2/64`    |
//! | router side of it   | `10.150.d.1/24`    | `fd00:150:0:d::1/64`    |
//!
//! Pods reach their node through a link-local gateway (`169.254.1.1` and `fe80::1` on the node
//! side of every pod veth), as Calico does; the router routes each pod CIDR to its node.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::topology::Topology;

/// The pod-side gateway address on every node-side pod veth.
pub const POD_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The pod-side IPv6 gateway: a link-local address on every node-side pod veth.
pub const POD_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// Interface name of the single uplink inside node, pod and client namespaces.
pub const UPLINK: &str = "eth0";

/// Netns name suffix of the router namespace that joins nodes and clients.
pub const ROUTER: &str = "fabric";

/// An address with a prefix length, e.g. `10.244.1.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cidr {
    pub addr: IpAddr,
    #[serde(alias = "prefix_len")]
    pub prefix_len: u8,
}

impl Cidr {
    pub fn new(addr: impl Into<IpAddr>, prefix_len: u8) -> Self {
        Self { addr: addr.into(), prefix_len }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    /// Parses `addr/len`, or a bare address as a host route (`/32` or `/128`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|err| format!("{text:?}: {err}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            Some(len) => {
                len.parse::<u8>().map_err(|err| format!("{text:?}: prefix length: {err}"))?
            }
            None => max,
        };
        if prefix_len > max {
            return Err(format!("{text:?}: prefix length {prefix_len} is longer than {max}"));
        }
        Ok(Self { addr, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// One node: its namespace, addresses, devices, cgroup and bpffs directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    /// Netns name (`/run/netns/<netns>`).
    pub netns: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    #[serde(alias = "pod_cidr_v4")]
    pub pod_cidr_v4: Cidr,
    #[serde(alias = "pod_cidr_v6")]
    pub pod_cidr_v6: Cidr,
    /// The node's uplink device (towards the router), where TC programs attach.
    pub uplink: String,
    /// The router's side of the uplink (in the router namespace).
    #[serde(alias = "router_link")]
    pub router_link: String,
    #[serde(alias = "router_ipv4")]
    pub router_ipv4: Ipv4Addr,
    #[serde(alias = "router_ipv6")]
    pub router_ipv6: Ipv6Addr,
    /// cgroup v2 directory of the node's own and its pods' processes.
    pub cgroup: PathBuf,
    /// bpffs directory for this node's pins.
    #[serde(alias = "bpf_dir")]
    pub bpf_dir: PathBuf,
    pub pods: Vec<String>,
}

/// One pod: its namespace, addresses and the veth that joins it to its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    pub name: String,
    pub node: String,
    pub netns: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// Device inside the pod namespace.
    pub interface: String,
    /// The node-side end of the pod's veth (in the node namespace).
    #[serde(alias = "node_link")]
    pub node_link: String,
}

/// One external client: a namespace behind the router, outside the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub name: String,
    pub netns: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub interface: String,
    #[serde(alias = "router_link")]
    pub router_link: String,
    #[serde(alias = "router_ipv4")]
    pub router_ipv4: Ipv4Addr,
    #[serde(alias = "router_ipv6")]
    pub router_ipv6: Ipv6Addr,
}

/// One director: a one-armed namespace behind the router (VIP traffic comes in and the
/// encapsulated packets leave on the same link).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectorInfo {
    pub name: String,
    pub netns: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// The director's uplink (where its XDP program attaches).
    pub interface: String,
    /// The router's side of the uplink.
    #[serde(alias = "router_link")]
    pub router_link: String,
    #[serde(alias = "router_ipv4")]
    pub router_ipv4: Ipv4Addr,
    #[serde(alias = "router_ipv6")]
    pub router_ipv6: Ipv6Addr,
    /// bpffs directory for the director's pins.
    #[serde(alias = "bpf_dir")]
    pub bpf_dir: PathBuf,
}

/// Everything about a lab that tools need to find it again (the state file's content, and
/// what `switchyard lab status -o json` prints). Keys are camelCase like every other output;
/// the snake_case aliases read state files written before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabPlan {
    pub prefix: String,
    pub topology: Topology,
    /// Netns name of the router namespace.
    #[serde(alias = "router_netns")]
    pub router_netns: String,
    /// cgroup v2 directory of the whole lab (`<cgroup root>/<prefix>`).
    pub cgroup: PathBuf,
    /// cgroup of processes started in clients or the router (kept apart from node cgroups).
    #[serde(alias = "external_cgroup")]
    pub external_cgroup: PathBuf,
    /// The lab's run directory (`<run dir>/<prefix>`): state file and bpffs mount.
    #[serde(alias = "run_dir")]
    pub run_dir: PathBuf,
    /// Where the lab's bpffs is mounted; node directories are below it.
    pub bpffs: PathBuf,
    pub nodes: Vec<NodeInfo>,
    pub pods: Vec<PodInfo>,
    pub clients: Vec<ClientInfo>,
    /// Directors (absent in state files of labs built before directors existed).
    #[serde(default)]
    pub directors: Vec<DirectorInfo>,
}

fn octet(index: usize) -> u8 {
    // Topology::validate bounds every count by MAX_MEMBERS (200), so index + 1 fits an octet.
    u8::try_from(index + 1).unwrap_or(u8::MAX)
}

impl LabPlan {
    /// Derives names and addresses from a validated topology.
    pub fn new(prefix: &str, topology: &Topology, cgroup_root: &Path, run_root: &Path) -> Self {
        let cgroup = cgroup_root.join(prefix);
        let run_dir = run_root.join(prefix);
        let bpffs = run_dir.join("bpffs");
        let netns = |name: &str| format!("{prefix}-{name}");
        let mut nodes = Vec::new();
        let mut pods = Vec::new();
        for (n, spec) in topology.nodes.iter().enumerate() {
            let n8 = octet(n);
            let n16 = u16::from(n8);
            nodes.push(NodeInfo {
                name: spec.name.clone(),
                netns: netns(&spec.name),
                ipv4: Ipv4Addr::new(10, 100, n8, 2),
                ipv6: Ipv6Addr::new(0xfd00, 0x100, 0, n16, 0, 0, 0, 2),
                pod_cidr_v4: Cidr::new(Ipv4Addr::new(10, 244, n8, 0), 24),
                pod_cidr_v6: Cidr::new(Ipv6Addr::new(0xfd00, 0x244, 0, n16, 0, 0, 0, 0), 64),
                uplink: UPLINK.to_string(),
                router_link: format!("nd{n8}"),
                router_ipv4: Ipv4Addr::new(10, 100, n8, 1),
                router_ipv6: Ipv6Addr::new(0xfd00, 0x100, 0, n16, 0, 0, 0, 1),
                cgroup: cgroup.join(&spec.name),
                bpf_dir: bpffs.join(&spec.name),
                pods: spec.pods.clone(),
            });
            for (p, pod) in spec.pods.iter().enumerate() {
                // Host part p + 2: .1 stays free so no pod looks like a gateway.
                let host = octet(p + 1);
                pods.push(PodInfo {
                    name: pod.clone(),
                    node: spec.name.clone(),
                    netns: netns(pod),
                    ipv4: Ipv4Addr::new(10, 244, n8, host),
                    ipv6: Ipv6Addr::new(0xfd00, 0x244, 0, n16, 0, 0, 0, u16::from(host)),
                    interface: UPLINK.to_string(),
                    node_link: format!("veth{}", octet(p)),
                });
            }
        }
        let clients = topology
            .clients
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let c8 = octet(c);
                let c16 = u16::from(c8);
                ClientInfo {
                    name: name.clone(),
                    netns: netns(name),
                    ipv4: Ipv4Addr::new(10, 200, c8, 2),
                    ipv6: Ipv6Addr::new(0xfd00, 0x200, 0, c16, 0, 0, 0, 2),
                    interface: UPLINK.to_string(),
                    router_link: format!("cl{c8}"),
                    router_ipv4: Ipv4Addr::new(10, 200, c8, 1),
                    router_ipv6: Ipv6Addr::new(0xfd00, 0x200, 0, c16, 0, 0, 0, 1),
                }
            })
            .collect();
        let directors = topology
            .directors
            .iter()
            .enumerate()
            .map(|(d, name)| {
                let d8 = octet(d);
                let d16 = u16::from(d8);
                DirectorInfo {
                    name: name.clone(),
                    netns: netns(name),
                    ipv4: Ipv4Addr::new(10, 150, d8, 2),
                    ipv6: Ipv6Addr::new(0xfd00, 0x150, 0, d16, 0, 0, 0, 2),
                    interface: UPLINK.to_string(),
                    router_link: format!("dr{d8}"),
                    router_ipv4: Ipv4Addr::new(10, 150, d8, 1),
                    router_ipv6: Ipv6Addr::new(0xfd00, 0x150, 0, d16, 0, 0, 0, 1),
                    bpf_dir: bpffs.join(name),
                }
            })
            .collect();
        Self {
            prefix: prefix.to_string(),
            topology: topology.clone(),
            router_netns: netns(ROUTER),
            external_cgroup: cgroup.join("_external"),
            cgroup,
            run_dir,
            bpffs,
            nodes,
            pods,
            clients,
            directors,
        }
    }

    /// Every netns name of the lab, router first.
    pub fn all_netns(&self) -> Vec<String> {
        std::iter::once(self.router_netns.clone())
            .chain(self.nodes.iter().map(|n| n.netns.clone()))
            .chain(self.pods.iter().map(|p| p.netns.clone()))
            .chain(self.clients.iter().map(|c| c.netns.clone()))
            .chain(self.directors.iter().map(|d| d.netns.clone()))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plan() -> LabPlan {
        let topology = Topology { directors: vec!["dir1".to_string()], ..Topology::default() };
        LabPlan::new(
            "sy-test",
            &topology,
            Path::new("/sys/fs/cgroup/unified"),
            Path::new("/run/switchyard-lab"),
        )
    }

    #[test]
    fn cidrs_parse_and_reject_bad_input() {
        let good = [
            ("10.96.0.0/12", "10.96.0.0/12"),
            ("10.1.2.3", "10.1.2.3/32"),
            ("fd00::1", "fd00::1/128"),
        ];
        for (text, shown) in good {
            assert_eq!(text.parse::<Cidr>().unwrap().to_string(), shown);
        }
        for bad in ["10.0.0.0/33", "fd00::/129", "x/8", "10.0.0.0/", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn addresses_follow_positions() {
        let plan = plan();
        let node2 = &plan.nodes[1];
        assert_eq!(node2.ipv4, Ipv4Addr::new(10, 100, 2, 2));
        assert_eq!(node2.ipv6.to_string(), "fd00:100:0:2::2");
        assert_eq!(node2.pod_cidr_v4.to_string(), "10.244.2.0/24");
        assert_eq!(node2.pod_cidr_v6.to_string(), "fd00:244:0:2::/64");
        let pod2b = plan.pods.iter().find(|p| p.name == "pod2b").unwrap();
        assert_eq!(pod2b.ipv4, Ipv4Addr::new(10, 244, 2, 3));
        assert_eq!(pod2b.ipv6.to_string(), "fd00:244:0:2::3");
        assert_eq!(pod2b.node_link, "veth2");
        assert_eq!(plan.clients[0].ipv4, Ipv4Addr::new(10, 200, 1, 2));
    }

    #[test]
    fn every_address_is_unique_and_private() {
        let plan = plan();
        let mut all: Vec<IpAddr> = Vec::new();
        for n in &plan.nodes {
            all.extend([
                IpAddr::V4(n.ipv4),
                n.ipv6.into(),
                n.router_ipv4.into(),
                n.router_ipv6.into(),
            ]);
        }
        for p in &plan.pods {
            all.extend([IpAddr::V4(p.ipv4), p.ipv6.into()]);
        }
        for c in &plan.clients {
            all.extend([
                IpAddr::V4(c.ipv4),
                c.ipv6.into(),
                c.router_ipv4.into(),
                c.router_ipv6.into(),
            ]);
        }
        for d in &plan.directors {
            all.extend([
                IpAddr::V4(d.ipv4),
                d.ipv6.into(),
                d.router_ipv4.into(),
                d.router_ipv6.into(),
            ]);
        }
        let unique: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        for addr in all {
            let private = match addr {
                IpAddr::V4(a) => a.is_private(),
                IpAddr::V6(a) => a.segments()[0] & 0xfe00 == 0xfc00,
            };
            assert!(private, "{addr} is not a private address");
        }
    }

    #[test]
    fn names_carry_the_prefix_and_paths_sit_under_the_roots() {
        let plan = plan();
        assert!(plan.all_netns().iter().all(|n| n.starts_with("sy-test-")));
        assert_eq!(plan.all_netns().len(), 1 + 3 + 6 + 1 + 1);
        assert_eq!(plan.directors[0].ipv6.to_string(), "fd00:150:0:1::2");
        assert_eq!(plan.directors[0].bpf_dir, Path::new("/run/switchyard-lab/sy-test/bpffs/dir1"));
        assert_eq!(plan.nodes[0].cgroup, Path::new("/sys/fs/cgroup/unified/sy-test/node1"));
        assert_eq!(plan.nodes[0].bpf_dir, Path::new("/run/switchyard-lab/sy-test/bpffs/node1"));
    }

    /// `lab status -o json` is camelCase like every other output (issue 21), and a state file
    /// written before (snake_case) still reads, so labs built by an older binary are found.
    #[test]
    fn the_plan_serialises_in_camel_case_and_reads_old_snake_case_state() {
        fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, value) in map {
                        out.push(key.clone());
                        keys(value, out);
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
                _ => {}
            }
        }
        let plan = plan();
        let json = serde_json::to_value(&plan).expect("serialises");
        let mut all = Vec::new();
        keys(&json, &mut all);
        let snake: Vec<&String> = all.iter().filter(|k| k.contains('_')).collect();
        assert!(snake.is_empty(), "snake_case keys: {snake:?}");
        for key in ["routerNetns", "externalCgroup", "runDir", "bpfDir", "podCidrV4", "nodeLink"] {
            assert!(all.iter().any(|k| k == key), "{key} missing from {all:?}");
        }
        // The same document with the old spellings.
        let old = json
            .to_string()
            .replace("\"routerNetns\"", "\"router_netns\"")
            .replace("\"externalCgroup\"", "\"external_cgroup\"")
            .replace("\"runDir\"", "\"run_dir\"")
            .replace("\"bpfDir\"", "\"bpf_dir\"")
            .replace("\"podCidrV4\"", "\"pod_cidr_v4\"")
            .replace("\"podCidrV6\"", "\"pod_cidr_v6\"")
            .replace("\"routerLink\"", "\"router_link\"")
            .replace("\"routerIpv4\"", "\"router_ipv4\"")
            .replace("\"routerIpv6\"", "\"router_ipv6\"")
            .replace("\"nodeLink\"", "\"node_link\"")
            .replace("\"prefixLen\"", "\"prefix_len\"");
        assert!(old.contains("router_netns") && !old.contains("routerNetns"));
        let read: LabPlan = serde_json::from_str(&old).expect("old state reads");
        assert_eq!(read, plan);
    }
}
