//! The model's output: what one node's data plane should do, and how that changed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

pub use crate::backend::Backend;
use crate::cidr::Cidr;
use crate::input::ObjectKey;

/// Transport protocols a Service port can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Parses the Kubernetes spelling; a missing protocol means TCP.
    pub fn from_kubernetes(text: Option<&str>) -> Option<Self> {
        match text {
            None | Some("TCP") => Some(Self::Tcp),
            Some("UDP") => Some(Self::Udp),
            Some("SCTP") => Some(Self::Sctp),
            Some(_) => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a packet is matched on: destination address, destination port, protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FrontendKey {
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl FrontendKey {
    pub fn new(ip: IpAddr, port: u16, protocol: Protocol) -> Self {
        Self { ip, port, protocol }
    }
}

impl fmt::Display for FrontendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}/{}", self.port, self.protocol),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}/{}", self.port, self.protocol),
        }
    }
}

/// How a frontend address came to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FrontendKind {
    /// An entry of `spec.clusterIPs`. Internal traffic policy applies.
    #[serde(rename = "ClusterIP")]
    ClusterIp,
    /// `spec.ports[].nodePort` on one of this node's addresses. External traffic policy applies.
    NodePort,
    /// `status.loadBalancer.ingress[].ip` (ipMode VIP). External traffic policy applies.
    LoadBalancer,
    /// An entry of `spec.externalIPs`. External traffic policy applies.
    #[serde(rename = "ExternalIP")]
    ExternalIp,
}

impl FrontendKind {
    /// True for the kinds reached from outside the cluster (external traffic policy applies).
    pub fn is_external(self) -> bool {
        !matches!(self, Self::ClusterIp)
    }
}

impl fmt::Display for FrontendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClusterIp => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
            Self::ExternalIp => "ExternalIP",
        })
    }
}

/// The traffic policy in force for a frontend (internal for ClusterIP, external otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TrafficPolicy {
    /// Any ready endpoint in the cluster; the client source may be SNATed.
    Cluster,
    /// Only endpoints on this node; the client source IP is preserved.
    Local,
}

impl fmt::Display for TrafficPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cluster => "Cluster",
            Self::Local => "Local",
        })
    }
}

/// How a backend is picked for a new flow.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum Algorithm {
    #[default]
    Random,
    /// Consistent hashing of the flow over a Maglev table (same choice on every node).
    Maglev,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Random => "Random",
            Self::Maglev => "Maglev",
        })
    }
}

/// What to do with a new flow when `backends` is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WhenEmpty {
    /// The Service has no usable endpoint anywhere: refuse (TCP RST / ICMP port unreachable).
    Reject,
    /// The Service has endpoints, just none this node may use (Local policy): drop silently.
    Drop,
}

/// Whether a backend is used because it is ready, or as the serving+terminating fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BackendState {
    /// Ready (or unready but published because of `publishNotReadyAddresses`).
    Ready,
    /// Serving and terminating; used only because no ready endpoint is left in its list
    /// (KEP-1669).
    Terminating,
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ready => "Ready",
            Self::Terminating => "Terminating",
        })
    }
}

/// Everything the data plane needs to serve one frontend on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Frontend {
    /// The Service this frontend belongs to.
    pub service: ObjectKey,
    /// `spec.ports[].name` ("" when unnamed).
    pub port_name: String,
    pub kind: FrontendKind,
    /// Backends this node may use, sorted by (ip, port): after traffic policy, the ready →
    /// serving+terminating fallback, `publishNotReadyAddresses` and topology hints.
    pub backends: Vec<Backend>,
    /// For external frontends with `externalTrafficPolicy: Local` only: the cluster-wide list to
    /// use for traffic that originates inside the cluster (pods, the node itself), as kube-proxy
    /// short-circuits it. `None` means: use `backends` for every client.
    pub in_cluster_backends: Option<Vec<Backend>>,
    /// Internal policy for ClusterIP frontends, external policy for the others.
    pub traffic_policy: TrafficPolicy,
    /// `Some(seconds)` for `sessionAffinity: ClientIP`.
    pub affinity_timeout_seconds: Option<u32>,
    /// LoadBalancer frontends only: client prefixes allowed in (`loadBalancerSourceRanges`), of the
    /// frontend's address family. Empty means everyone.
    pub source_ranges: Vec<Cidr>,
    pub algorithm: Algorithm,
    /// What to do when `backends` is empty.
    pub when_empty: WhenEmpty,
    /// External frontends of a Service with `externalTrafficPolicy: Local`: the port the node's
    /// health check server answers on for this Service.
    pub health_check_node_port: Option<u16>,
}

impl Frontend {
    /// Ready backends on this node (what a health check node port reports as `localEndpoints`).
    pub fn local_ready_backends(&self) -> usize {
        self.backends.iter().filter(|b| b.is_local && b.state == BackendState::Ready).count()
    }
}

/// The desired state of one node's data plane: every frontend it serves.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DesiredState {
    /// Serialized as a list of `{"key": …, "frontend": …}` because JSON map keys must be strings.
    #[serde(with = "frontend_list")]
    pub frontends: BTreeMap<FrontendKey, Frontend>,
}

/// (De)serializes the frontend map as a list of entries.
mod frontend_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Frontend, FrontendKey};

    #[derive(Serialize)]
    struct EntryRef<'a> {
        key: &'a FrontendKey,
        frontend: &'a Frontend,
    }

    #[derive(Deserialize)]
    struct Entry {
        key: FrontendKey,
        frontend: Frontend,
    }

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<FrontendKey, Frontend>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter().map(|(key, frontend)| EntryRef { key, frontend }))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<FrontendKey, Frontend>, D::Error> {
        let entries = Vec::<Entry>::deserialize(deserializer)?;
        Ok(entries.into_iter().map(|e| (e.key, e.frontend)).collect())
    }
}

/// What a health check node port must answer for a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub service: ObjectKey,
    /// Ready endpoints of the Service on this node: 200 when > 0, 503 otherwise.
    pub local_endpoints: usize,
}

/// This node's own address per family (its first InternalIP, else its first ExternalIP, as the
/// Node object lists them): the source address of traffic SNATed towards a backend on another
/// node. `None` when the Node object has no address of that family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryAddresses {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

impl PrimaryAddresses {
    /// The primary addresses of any Node object (the director encapsulates to them).
    pub fn of_node(node: &k8s_openapi::api::core::v1::Node) -> Self {
        crate::parse::node_facts(&crate::ProxyConfig::new(""), Some(node)).primary
    }
}

/// The health check node ports of a desired state, kept up to date difference by difference
/// (so a change costs the frontends it touches, not the whole state). Answers exactly what
/// [`DesiredState::health_checks`] computes from scratch: per port, the first frontend (in
/// key order) that names it decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthCheckIndex {
    by_port: BTreeMap<u16, BTreeMap<FrontendKey, HealthCheck>>,
    port_of: BTreeMap<FrontendKey, u16>,
}

impl HealthCheckIndex {
    /// The index of a whole state.
    pub fn new(state: &DesiredState) -> Self {
        let mut index = Self::default();
        for (key, frontend) in &state.frontends {
            index.upsert(*key, frontend);
        }
        index
    }

    /// Applies one difference; returns the ports whose answer changed, with the new answer
    /// (`None`: the port is no longer served).
    pub fn apply(&mut self, diff: &StateDiff) -> BTreeMap<u16, Option<HealthCheck>> {
        let mut touched: BTreeMap<u16, Option<HealthCheck>> = BTreeMap::new();
        let mut before = |index: &Self, port: u16| {
            touched.entry(port).or_insert_with(|| index.get(port).cloned());
        };
        for key in &diff.removed {
            if let Some(port) = self.port_of.get(key).copied() {
                before(self, port);
                self.remove(key);
            }
        }
        for (key, frontend) in &diff.upserted {
            if let Some(port) = self.port_of.get(key).copied() {
                before(self, port);
            }
            if let Some(port) = frontend.health_check_node_port {
                before(self, port);
            }
            self.remove(key);
            self.upsert(*key, frontend);
        }
        touched
            .into_iter()
            .filter_map(|(port, old)| {
                let new = self.get(port).cloned();
                (new != old).then_some((port, new))
            })
            .collect()
    }

    /// What `port` must answer, if it is a health check node port.
    pub fn get(&self, port: u16) -> Option<&HealthCheck> {
        self.by_port.get(&port).and_then(|checks| checks.values().next())
    }

    /// Every served port and its answer.
    pub fn checks(&self) -> BTreeMap<u16, HealthCheck> {
        self.by_port.keys().filter_map(|port| Some((*port, self.get(*port)?.clone()))).collect()
    }

    fn upsert(&mut self, key: FrontendKey, frontend: &Frontend) {
        if let Some(port) = frontend.health_check_node_port {
            let check = HealthCheck {
                service: frontend.service.clone(),
                local_endpoints: frontend.local_ready_backends(),
            };
            self.by_port.entry(port).or_default().insert(key, check);
            self.port_of.insert(key, port);
        }
    }

    fn remove(&mut self, key: &FrontendKey) {
        if let Some(port) = self.port_of.remove(key)
            && let Some(checks) = self.by_port.get_mut(&port)
        {
            checks.remove(key);
            if checks.is_empty() {
                self.by_port.remove(&port);
            }
        }
    }
}

impl DesiredState {
    pub fn get(&self, key: &FrontendKey) -> Option<&Frontend> {
        self.frontends.get(key)
    }

    pub fn len(&self) -> usize {
        self.frontends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frontends.is_empty()
    }

    /// The health check node ports this node must serve, by port.
    pub fn health_checks(&self) -> BTreeMap<u16, HealthCheck> {
        let mut checks = BTreeMap::new();
        for frontend in self.frontends.values() {
            if let Some(port) = frontend.health_check_node_port {
                checks.entry(port).or_insert_with(|| HealthCheck {
                    service: frontend.service.clone(),
                    local_endpoints: frontend.local_ready_backends(),
                });
            }
        }
        checks
    }

    /// What must change to go from `old` to `new`, sorted by key.
    pub fn diff(old: &DesiredState, new: &DesiredState) -> StateDiff {
        let mut diff = StateDiff::default();
        for (key, frontend) in &new.frontends {
            if old.frontends.get(key) != Some(frontend) {
                diff.upserted.push((*key, frontend.clone()));
            }
        }
        diff.removed =
            old.frontends.keys().filter(|k| !new.frontends.contains_key(k)).copied().collect();
        diff
    }

    /// Applies a difference (the inverse of [`DesiredState::diff`]).
    pub fn apply(&mut self, diff: &StateDiff) {
        for key in &diff.removed {
            self.frontends.remove(key);
        }
        for (key, frontend) in &diff.upserted {
            self.frontends.insert(*key, frontend.clone());
        }
    }
}

/// The difference between two desired states: frontends added or changed, frontends removed.
/// Both lists are sorted by key and never name the same key twice.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StateDiff {
    pub upserted: Vec<(FrontendKey, Frontend)>,
    pub removed: Vec<FrontendKey>,
}

impl StateDiff {
    pub fn is_empty(&self) -> bool {
        self.upserted.is_empty() && self.removed.is_empty()
    }
}
