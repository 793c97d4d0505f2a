//! The desired state the benchmarks program: Services with their ports and ready endpoints.
//!
//! This is a deliberately small stand-in for `switchyard_model`'s desired state: it carries exactly
//! what kube-proxy's rule writers read (service port name, protocol, cluster IP, port, NodePort,
//! endpoint addresses), so both peers and Switchyard are fed from one description.

use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;

/// Transport protocol of a service port, spelled as kube-proxy spells it in rules (lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Lower-case name, as kube-proxy writes it (`strings.ToLower(string(protocol))`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ready endpoint of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// One port of one Service, with its endpoints: the unit kube-proxy writes chains for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name; empty for a Service's single unnamed port.
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// kube-proxy's `ServicePortName.String()`: `namespace/name` plus `:port` when the port is named.
    pub fn service_port_name(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }

    /// Identity of the service port across two states, to tell which ones changed.
    pub fn key(&self) -> (&str, &str, &str, Protocol) {
        (&self.namespace, &self.name, &self.port_name, self.protocol)
    }
}

/// Node-wide settings kube-proxy's rules depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// Pod CIDR of the cluster (`--cluster-cidr`): traffic from outside it to a ClusterIP is
    /// masqueraded.
    pub cluster_cidr: String,
    /// Service CIDR: the nftables mode drops traffic to unallocated ClusterIPs in it.
    pub service_cidr: String,
    /// The node's primary IP: nftables mode accepts NodePort traffic on it.
    pub node_ip: Ipv4Addr,
    /// The masquerade mark bit (`--iptables-masquerade-bit`, default 14, i.e. 0x4000).
    pub masquerade_bit: u8,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            cluster_cidr: "10.128.0.0/9".into(),
            service_cidr: "10.96.0.0/12".into(),
            node_ip: Ipv4Addr::new(192, 168, 0, 2),
            masquerade_bit: 14,
        }
    }
}

impl NodeConfig {
    pub fn masquerade_mark(&self) -> u32 {
        1u32 << self.masquerade_bit
    }
}

/// Every service port the node serves, in the order rules are written for them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DesiredState {
    pub services: Vec<ServicePort>,
}

impl DesiredState {
    pub fn endpoint_count(&self) -> usize {
        self.services.iter().map(|s| s.endpoints.len()).sum()
    }
}
