//! Which addresses the directors serve (VIPs) and which nodes each one may send to, decided
//! from the model's view of the cluster: the director re-derives no Kubernetes meaning.
//!
//! - A VIP is a LoadBalancer ingress address (with port and protocol) of a Service annotated
//!   `switchyard.io/director: "true"` ([`DIRECTOR_ANNOTATION`]).
//! - Its nodes: `externalTrafficPolicy: Cluster` — every eligible node (any node can forward to
//!   any endpoint); `Local` — the eligible nodes with a ready endpoint of the Service (the nodes
//!   whose health check node port answers 200), weighted by how many they have.
//! - A node is eligible unless its `Ready` condition is False or Unknown, it carries
//!   [`EXCLUDE_LABEL`], or it has weight 0 ([`NODE_WEIGHT_ANNOTATION`]) or no address.
//! - A draining node gets weight 0 (no new flows; its flows finish through the second chance):
//!   annotated [`DRAIN_ANNOTATION`]` = "true"`, or going away (`deletionTimestamp` set, or the
//!   cluster autoscaler's `ToBeDeletedByClusterAutoscaler` taint: the model's `node_eligible`).
//! - A node whose `Ready` condition turned True less than the previous-node TTL ago is
//!   *joining* ([`Vip::joining`]): a director that builds a VIP's first table then leaves it out
//!   of the previous table it seeds, as if it had seen the node join.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Node;
use switchyard_model::{
    BackendState, ClusterState, FrontendKey, FrontendKind, NodeModel, ObjectKey, PrimaryAddresses,
    ProxyConfig, TrafficPolicy,
};

use crate::config::{
    DEFAULT_PREVIOUS_TTL, DIRECTOR_ANNOTATION, DRAIN_ANNOTATION, EXCLUDE_LABEL,
    NODE_WEIGHT_ANNOTATION,
};

/// The node name the director's model runs as: not a valid Kubernetes name, so no endpoint is
/// ever "local" to it and the model hands out every list cluster-wide.
const DIRECTOR_NODE: &str = "switchyard:director";

/// One node a VIP sends to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeTarget {
    /// The Node's name: its identity in the Maglev table (so an address change moves no flow).
    pub name: Arc<str>,
    /// Where encapsulated packets go: the node's primary address of the VIP's family, else of
    /// the other family.
    pub address: IpAddr,
    /// Maglev weight: the node's weight, times its ready endpoints under policy Local.
    pub weight: u32,
}

/// A VIP: one LoadBalancer address, port and protocol, and the nodes that serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    /// The Service the address belongs to.
    pub service: ObjectKey,
    /// Its `externalTrafficPolicy`.
    pub policy: TrafficPolicy,
    /// Sorted by name; empty when no node may serve it (the program drops and counts).
    pub nodes: Vec<NodeTarget>,
    /// `spec.healthCheckNodePort` of a `Local` Service: what the directors probe on its nodes.
    pub health_check_node_port: Option<u16>,
    /// Nodes that would serve it but drain (weight 0), with the weight they had: a director
    /// that builds the VIP's first table while they drain takes them as the previous nodes
    /// (as if it had seen the drain), so their flows keep the second chance on every director.
    pub draining: Vec<NodeTarget>,
    /// Of `nodes`, those that joined recently (their `Ready` condition turned True less than
    /// the window of [`vip_set_at`] ago): a director that builds the VIP's first table leaves
    /// them out of the previous table it seeds, as every director that saw them join did.
    pub joining: Vec<NodeTarget>,
}

/// Something in the objects the directors could not use as written. The object is still
/// served as well as possible (an unreadable weight counts as 1, an unreadable opt-in as no).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `Service namespace/name` or `Node name`.
    pub object: String,
    /// What is wrong, naming the field.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.reason)
    }
}

/// The directors' view of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VipSet {
    /// Every VIP by (address, port, protocol).
    pub vips: BTreeMap<FrontendKey, Vip>,
    /// Problems found, each naming its object.
    pub problems: Vec<Problem>,
}

/// An eligible node.
#[derive(Debug, Clone)]
struct EligibleNode {
    name: Arc<str>,
    addresses: PrimaryAddresses,
    weight: u32,
    /// When its `Ready` condition last turned True (`lastTransitionTime`), if it says.
    ready_since: Option<SystemTime>,
}

impl EligibleNode {
    /// The address to encapsulate to for a VIP of `vip`'s family.
    fn address_for(&self, vip: IpAddr) -> Option<IpAddr> {
        let v4 = self.addresses.ipv4.map(IpAddr::V4);
        let v6 = self.addresses.ipv6.map(IpAddr::V6);
        if vip.is_ipv4() { v4.or(v6) } else { v6.or(v4) }
    }
}

/// Computes the VIPs and their nodes from a snapshot of the cluster, now, with the default
/// previous-node TTL as the joining window ([`vip_set_at`]).
pub fn vip_set(state: &ClusterState) -> VipSet {
    vip_set_at(state, SystemTime::now(), Some(DEFAULT_PREVIOUS_TTL))
}

/// [`vip_set`] at `now`: a node is joining ([`Vip::joining`]) when its `Ready` condition's
/// `lastTransitionTime` is less than `window` (the previous-node TTL: as long as the
/// directors that saw it join keep naming previous nodes; `None`: the default TTL) before
/// `now`, or after it (another clock).
pub fn vip_set_at(state: &ClusterState, now: SystemTime, window: Option<Duration>) -> VipSet {
    let window = window.unwrap_or(DEFAULT_PREVIOUS_TTL);
    let mut problems = Vec::new();
    let (nodes, drained) = eligible_nodes(state, &mut problems);
    let model = NodeModel::from_state(ProxyConfig::new(DIRECTOR_NODE), state);
    let mut opted_in: BTreeMap<&ObjectKey, bool> = BTreeMap::new();
    let mut vips = BTreeMap::new();
    for (key, frontend) in &model.desired().frontends {
        if frontend.kind != FrontendKind::LoadBalancer {
            continue;
        }
        let wanted = *opted_in
            .entry(&frontend.service)
            .or_insert_with(|| opts_in(state, &frontend.service, &mut problems));
        if !wanted {
            continue;
        }
        // The pseudo node has no local endpoints, so the model keeps the cluster-wide list in
        // `in_cluster_backends`: for Local, count its ready endpoints per node.
        let mut ready: BTreeMap<&str, u32> = BTreeMap::new();
        if frontend.traffic_policy == TrafficPolicy::Local {
            let list = frontend.in_cluster_backends.as_ref().unwrap_or(&frontend.backends);
            for backend in list.iter().filter(|b| b.state == BackendState::Ready) {
                if let Some(node) = backend.node_name() {
                    *ready.entry(node).or_default() += 1;
                }
            }
        }
        let serving = |from: &BTreeMap<Arc<str>, EligibleNode>| -> Vec<NodeTarget> {
            match frontend.traffic_policy {
                TrafficPolicy::Cluster => from
                    .values()
                    .filter_map(|n| {
                        Some(NodeTarget {
                            name: n.name.clone(),
                            address: n.address_for(key.ip)?,
                            weight: n.weight,
                        })
                    })
                    .collect(),
                TrafficPolicy::Local => ready
                    .iter()
                    .filter_map(|(node, count)| {
                        let n = from.get(*node)?;
                        Some(NodeTarget {
                            name: n.name.clone(),
                            address: n.address_for(key.ip)?,
                            weight: n.weight.saturating_mul(*count),
                        })
                    })
                    .collect(),
            }
        };
        let targets = serving(&nodes);
        let draining = serving(&drained);
        let joining = targets
            .iter()
            .filter(|t| {
                nodes
                    .get(&t.name)
                    .and_then(|n| n.ready_since)
                    .is_some_and(|since| now.duration_since(since).map_or(true, |age| age < window))
            })
            .cloned()
            .collect();
        vips.insert(
            *key,
            Vip {
                service: frontend.service.clone(),
                policy: frontend.traffic_policy,
                nodes: targets,
                health_check_node_port: frontend.health_check_node_port,
                draining,
                joining,
            },
        );
    }
    VipSet { vips, problems }
}

/// Does the Service carry `switchyard.io/director: "true"`?
fn opts_in(state: &ClusterState, service: &ObjectKey, problems: &mut Vec<Problem>) -> bool {
    let value = state
        .services
        .get(service)
        .and_then(|s| s.metadata.annotations.as_ref())
        .and_then(|a| a.get(DIRECTOR_ANNOTATION));
    match value.map(|v| v.trim()) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            problems.push(Problem {
                object: format!("Service {service}"),
                reason: format!(
                    "annotation {DIRECTOR_ANNOTATION}: {other:?} is neither \"true\" nor \"false\"; \
                     not served by the directors"
                ),
            });
            false
        }
    }
}

/// Nodes that may receive VIP traffic, by name (weight above 0, ready, not excluded), and
/// the nodes that would but drain (with the weight they would have).
fn eligible_nodes(
    state: &ClusterState,
    problems: &mut Vec<Problem>,
) -> (BTreeMap<Arc<str>, EligibleNode>, BTreeMap<Arc<str>, EligibleNode>) {
    let mut out = BTreeMap::new();
    let mut drained = BTreeMap::new();
    for (key, node) in &state.nodes {
        let is_draining = draining(key, node, problems);
        let weight = node_weight(key, node, problems);
        if weight == 0 || excluded(node) || !ready(node) {
            continue;
        }
        let addresses = PrimaryAddresses::of_node(node);
        if addresses.ipv4.is_none() && addresses.ipv6.is_none() {
            problems.push(Problem {
                object: format!("Node {key}"),
                reason:
                    "status.addresses has no InternalIP or ExternalIP: no director can reach it"
                        .to_owned(),
            });
            continue;
        }
        let name: Arc<str> = Arc::from(key.name.as_str());
        let into = if is_draining { &mut drained } else { &mut out };
        into.insert(
            name.clone(),
            EligibleNode { name, addresses, weight, ready_since: ready_since(node) },
        );
    }
    (out, drained)
}

fn node_weight(key: &ObjectKey, node: &Node, problems: &mut Vec<Problem>) -> u32 {
    let Some(text) = node.metadata.annotations.as_ref().and_then(|a| a.get(NODE_WEIGHT_ANNOTATION))
    else {
        return 1;
    };
    match text.trim().parse::<u32>() {
        Ok(weight) if weight <= 1_000 => weight,
        _ => {
            problems.push(Problem {
                object: format!("Node {key}"),
                reason: format!(
                    "annotation {NODE_WEIGHT_ANNOTATION}: {text:?} is not a whole number from 0 \
                     to 1000; weight 1 used"
                ),
            });
            1
        }
    }
}

/// Draining: annotated [`DRAIN_ANNOTATION`]` = "true"`, or going away as the model says
/// (deletionTimestamp, the cluster autoscaler's taint: `node_eligible`). Another value is
/// reported and does not drain (like a bad weight, it leaves the node serving).
fn draining(key: &ObjectKey, node: &Node, problems: &mut Vec<Problem>) -> bool {
    if !switchyard_model::node_eligible(Some(node)) {
        return true;
    }
    let value = node.metadata.annotations.as_ref().and_then(|a| a.get(DRAIN_ANNOTATION));
    match value.map(|v| v.trim()) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            problems.push(Problem {
                object: format!("Node {key}"),
                reason: format!(
                    "annotation {DRAIN_ANNOTATION}: {other:?} is neither \"true\" nor \"false\"; \
                     not drained"
                ),
            });
            false
        }
    }
}

fn excluded(node: &Node) -> bool {
    node.metadata.labels.as_ref().is_some_and(|l| l.contains_key(EXCLUDE_LABEL))
}

/// Not ready only when the Ready condition says so (manifests often carry no status).
fn ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    !conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && matches!(c.status.as_str(), "False" | "Unknown"))
}

/// When the `Ready` condition last turned True, if it is True and says.
fn ready_since(node: &Node) -> Option<SystemTime> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
    let at = ready.last_transition_time.as_ref()?.0;
    let millis = u64::try_from(at.as_millisecond()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}
