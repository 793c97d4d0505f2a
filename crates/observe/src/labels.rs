//! Which Service a kernel frontend entry belongs to.
//!
//! The maps only hold addresses and ids; metrics and inspection name Services. The agent
//! rebuilds this index from the desired state after every sync.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use switchyard_model::{DesiredState, FrontendKind, Protocol};

/// The Service port behind a frontend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLabel {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// `spec.ports[].name` (may be empty).
    pub port_name: String,
    /// ClusterIP, NodePort, LoadBalancer or ExternalIP.
    pub kind: String,
}

/// Service labels by frontend address, port and protocol (NodePorts also by port alone,
/// because the kernel holds them as one wildcard entry).
#[derive(Debug, Clone, Default)]
pub struct ServiceIndex {
    exact: BTreeMap<(IpAddr, u16, String), ServiceLabel>,
    node_ports: BTreeMap<(u16, String), ServiceLabel>,
}

/// `tcp`, `udp` or `sctp`, as [`crate::kernel::protocol_name`] spells them.
pub fn protocol_label(protocol: Protocol) -> String {
    protocol.as_str().to_ascii_lowercase()
}

impl ServiceIndex {
    /// The index of a desired state.
    pub fn from_desired(state: &DesiredState) -> Self {
        let mut index = ServiceIndex::default();
        for (key, frontend) in &state.frontends {
            let label = ServiceLabel {
                namespace: frontend.service.namespace.clone(),
                name: frontend.service.name.clone(),
                port_name: frontend.port_name.clone(),
                kind: frontend.kind.to_string(),
            };
            let protocol = protocol_label(key.protocol);
            if frontend.kind == FrontendKind::NodePort {
                index.node_ports.insert((key.port, protocol.clone()), label.clone());
            }
            index.exact.insert((key.ip, key.port, protocol), label);
        }
        index
    }

    /// Adds one frontend address (for callers without a desired state, and tests).
    pub fn insert(&mut self, ip: IpAddr, port: u16, protocol: &str, label: ServiceLabel) {
        if label.kind == "NodePort" {
            self.node_ports.insert((port, protocol.to_owned()), label.clone());
        }
        self.exact.insert((ip, port, protocol.to_owned()), label);
    }

    /// The Service of a kernel entry; `ip` `None` is a NodePort wildcard.
    pub fn lookup(&self, ip: Option<IpAddr>, port: u16, protocol: &str) -> Option<&ServiceLabel> {
        match ip {
            Some(ip) => self.exact.get(&(ip, port, protocol.to_owned())),
            None => self.node_ports.get(&(port, protocol.to_owned())),
        }
    }

    /// Number of frontend addresses known.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Every (address, port, protocol) of the desired state.
    pub fn keys(&self) -> impl Iterator<Item = &(IpAddr, u16, String)> {
        self.exact.keys()
    }
}
