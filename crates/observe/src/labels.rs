//! Which Service a kernel frontend entry belongs to.
//!
//! The maps only hold addresses and ids; metrics and inspection name Services. The agent
//! rebuilds this index from the desired state after every sync.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

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
///
/// Kept compact, because the agent holds one for as long as it runs (issue 20: a
/// [`ServiceLabel`] of four `String`s per entry in a `BTreeMap` keyed by a `String` protocol
/// took 3.4 MB at 10,000 Services): sorted vectors searched by bisection, the protocol as an
/// enum, and the label's strings shared (one allocation per namespace, Service name, port name
/// and kind, whatever the number of frontends naming it).
#[derive(Debug, Clone, Default)]
pub struct ServiceIndex {
    /// Sorted by key, each key once.
    exact: Vec<((IpAddr, u16, Protocol), Label)>,
    /// Sorted by key, each key once.
    node_ports: Vec<((u16, Protocol), Label)>,
}

/// A [`ServiceLabel`] with shared strings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Label {
    namespace: Arc<str>,
    name: Arc<str>,
    port_name: Arc<str>,
    kind: Arc<str>,
}

impl Label {
    fn to_label(&self) -> ServiceLabel {
        ServiceLabel {
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            port_name: self.port_name.to_string(),
            kind: self.kind.to_string(),
        }
    }
}

/// One allocation per distinct string while an index is built.
#[derive(Default)]
struct Strings(HashSet<Arc<str>>);

impl Strings {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

/// `tcp`, `udp` or `sctp`, as [`crate::kernel::protocol_name`] spells them.
pub fn protocol_label(protocol: Protocol) -> String {
    protocol.as_str().to_ascii_lowercase()
}

/// The protocol [`protocol_label`] spells `text` for (any case).
fn protocol_of(text: &str) -> Option<Protocol> {
    Protocol::from_kubernetes(Some(&text.to_ascii_uppercase()))
}

/// Inserts or replaces `key`'s value in a vector sorted by key.
fn put<K: Ord, V>(entries: &mut Vec<(K, V)>, key: K, value: V) {
    match entries.binary_search_by(|(k, _)| k.cmp(&key)) {
        Ok(at) => entries[at].1 = value,
        Err(at) => entries.insert(at, (key, value)),
    }
}

impl ServiceIndex {
    /// The index of a desired state.
    pub fn from_desired(state: &DesiredState) -> Self {
        let mut strings = Strings::default();
        let mut exact = Vec::with_capacity(state.frontends.len());
        let mut node_ports = Vec::new();
        for (key, frontend) in &state.frontends {
            let label = Label {
                namespace: strings.get(&frontend.service.namespace),
                name: strings.get(&frontend.service.name),
                port_name: strings.get(&frontend.port_name),
                kind: strings.get(&frontend.kind.to_string()),
            };
            if frontend.kind == FrontendKind::NodePort {
                node_ports.push(((key.port, key.protocol), label.clone()));
            }
            // The desired state is sorted by (address, port, protocol), and so is this.
            exact.push(((key.ip, key.port, key.protocol), label));
        }
        // One NodePort on several node addresses: the label of the last address stays, as in
        // the map this replaced (a stable sort keeps them in address order).
        node_ports.sort_by_key(|(key, _)| *key);
        node_ports.reverse();
        node_ports.dedup_by_key(|(key, _)| *key);
        node_ports.reverse();
        node_ports.shrink_to_fit();
        Self { exact, node_ports }
    }

    /// Adds one frontend address (for callers without a desired state, and tests). A protocol
    /// other than TCP, UDP and SCTP is not indexed.
    pub fn insert(&mut self, ip: IpAddr, port: u16, protocol: &str, label: ServiceLabel) {
        let Some(protocol) = protocol_of(protocol) else { return };
        let label = Label {
            namespace: label.namespace.into(),
            name: label.name.into(),
            port_name: label.port_name.into(),
            kind: label.kind.into(),
        };
        if &*label.kind == "NodePort" {
            put(&mut self.node_ports, (port, protocol), label.clone());
        }
        put(&mut self.exact, (ip, port, protocol), label);
    }

    /// The Service of a kernel entry; `ip` `None` is a NodePort wildcard.
    pub fn lookup(&self, ip: Option<IpAddr>, port: u16, protocol: &str) -> Option<ServiceLabel> {
        let protocol = protocol_of(protocol)?;
        let label = match ip {
            Some(ip) => {
                let key = (ip, port, protocol);
                let at = self.exact.binary_search_by(|(k, _)| k.cmp(&key)).ok()?;
                &self.exact[at].1
            }
            None => {
                let key = (port, protocol);
                let at = self.node_ports.binary_search_by(|(k, _)| k.cmp(&key)).ok()?;
                &self.node_ports[at].1
            }
        };
        Some(label.to_label())
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
    pub fn keys(&self) -> impl Iterator<Item = (IpAddr, u16, String)> + '_ {
        self.exact.iter().map(|((ip, port, protocol), _)| (*ip, *port, protocol_label(*protocol)))
    }
}
