//! What the node role is told at start: the binary's flags, parsed, as one plain struct.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use switchyard_bpf::MapSizes;
use switchyard_bpf::nodeport::PacketMapSizes;
use switchyard_model::{Cidr, NodePortAddresses, PortRange};

/// Everything `switchyard agent` needs to run (see its `--help` for each setting).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Name of the Node this agent serves (endpoints with this nodeName are local).
    pub node_name: String,
    /// cgroup v2 directory whose processes get socket-level load balancing.
    pub cgroup: PathBuf,
    /// bpffs directory for pinned maps and program links.
    pub bpf_dir: PathBuf,
    /// Where objects come from, and the kube-proxy compatible health endpoints.
    pub source: SourceConfig,
    /// Capacities of the maps.
    pub sizes: MapSizes,
    /// Capacities of the per-packet conntrack and NAT tables.
    pub packet_sizes: PacketMapSizes,
    /// Maglev table size M, a prime; the same on every node.
    pub maglev_table_size: u32,
    /// Quiet time after a manifest change before the changed files are re-read.
    pub debounce: Duration,
    /// Destroy sockets connected to removed backends (kube-proxy's conntrack flush).
    pub destroy_stale_sockets: bool,
    /// Devices that receive traffic from outside the node (the per-packet programs).
    pub devices: Vec<String>,
    /// The per-packet XDP program in front of TC on `devices` (`--xdp native|generic`); None:
    /// off, TC alone.
    pub xdp: Option<switchyard_bpf::director::XdpMode>,
    /// Host-side pod interfaces, by name or prefix (`veth*`), that get the per-packet pod entry
    /// point for traffic the socket hooks cannot see (`--pod-devices`).
    pub pod_devices: Vec<String>,
    /// Source ports for flows SNATed to this node's address (`--snat-port-range`); None: chosen
    /// at start from the NodePort range and `net.ipv4.ip_local_port_range`
    /// ([`switchyard_model::choose_snat_ports`]).
    pub snat_port_range: Option<PortRange>,
    /// The cluster's NodePort range.
    pub node_port_range: PortRange,
    /// externalIPs are served only inside these prefixes (`--external-ip-cidrs`).
    pub external_ip_cidrs: Vec<Cidr>,
    /// Which of the Node's addresses carry NodePorts (`--nodeport-addresses`).
    pub node_port_addresses: NodePortAddresses,
    /// Unix socket of the local API (`/metrics`, `/status`, `/desired`).
    pub api_socket: PathBuf,
    /// Also serve `/metrics` (and `/status`) on this TCP address.
    pub metrics_bind_address: Option<SocketAddr>,
    /// Directors whose encapsulated VIP traffic `devices` accept (docs/director.md).
    pub directors: Directors,
    /// How NodePort / LoadBalancer / ExternalIP traffic reaches a backend on another node
    /// (`--nodeport-mode`).
    pub nodeport_mode: NodePortMode,
    /// After SIGTERM: how long /healthz (and the health check node ports) answer 503 while the
    /// agent keeps forwarding, so directors and load balancers drain the node first.
    pub shutdown_grace: Duration,
}

impl NodeConfig {
    /// The UDP port this node decapsulates on: `--gue-port` when directors send to it or
    /// NodePort DSR has its peers send to it; `None`: no decapsulation is loaded.
    pub fn decap_port(&self) -> Option<u16> {
        (!self.directors.addresses.is_empty() || self.nodeport_mode == NodePortMode::Dsr)
            .then_some(self.directors.gue_port)
    }
}

/// How traffic from outside reaches a backend on another node (`--nodeport-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodePortMode {
    /// SNATed to this node's address: the reply comes back through this node.
    #[default]
    Snat,
    /// DSR: encapsulated (GUE, `directors.gue_port`) to the backend's node with the client's
    /// address kept; that node answers the client directly (docs/datapath.md "DSR").
    Dsr,
}

/// Which directors' encapsulated packets the node accepts (none: no decapsulation).
#[derive(Debug, Clone, Default)]
pub struct Directors {
    /// Outer source addresses accepted; encapsulated packets from others are dropped and counted.
    pub addresses: BTreeSet<IpAddr>,
    /// Destination UDP port of the directors' GUE and FOU packets.
    pub gue_port: u16,
}

/// Where the agent's objects come from and how it reports its own health.
#[derive(Debug, Clone, Default)]
pub struct SourceConfig {
    /// A directory of manifests (watched); without it the API server is the source.
    pub manifests: Option<PathBuf>,
    /// The kubeconfig naming the API server; without it (and without `manifests`), the pod's
    /// in-cluster configuration.
    pub kubeconfig: Option<PathBuf>,
    /// Serve only Services labelled service.kubernetes.io/service-proxy-name=NAME.
    pub proxy_name: Option<String>,
    /// Address of /healthz and /livez: `None` picks the default (0.0.0.0:10256 with the API
    /// server, off with manifests), an empty string turns it off.
    pub healthz_bind_address: Option<String>,
    /// /healthz answers 503 once an update has waited this long to be programmed.
    pub health_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_bpf::nodeport::PacketSettings;
    use switchyard_model::snat_ports::{LINUX_LOCAL_PORTS, choose_snat_ports};

    /// The BPF crate's default (tests, benchmarks) is what the agent chooses on a node with
    /// Kubernetes' and Linux's defaults, so what they measure is what a node runs.
    #[test]
    fn the_datapath_default_snat_ports_are_the_agents_choice_on_a_default_node() {
        let chosen = choose_snat_ports(None, PortRange::default(), Some(LINUX_LOCAL_PORTS), None)
            .unwrap_or_else(|e| panic!("{e}"));
        let settings = PacketSettings::default();
        let ports = (*settings.snat_ports.start(), *settings.snat_ports.end());
        assert_eq!((chosen.range.first, chosen.range.last), ports);
        let node_ports = (*settings.node_port_range.start(), *settings.node_port_range.end());
        assert_eq!(node_ports, (PortRange::default().first, PortRange::default().last));
    }
}
