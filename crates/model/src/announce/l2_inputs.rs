//! What L2 mode reads besides the desired state: L2Advertisements, pools, Service labels, every
//! Node (labels and whether it may answer), and which nodes have a ready endpoint of each
//! Service (for `externalTrafficPolicy: Local`). Kept up to date change by change; every agent
//! holds the same inputs for the same cluster, whatever its own node.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rustc_hash::FxHashMap;

use super::Drain;
use super::inputs::{Labels, ranges, replace, update_service};
use crate::crd::{AddressRange, L2AdvertisementSpec};
use crate::input::{Change, ClusterState, ObjectKey};
use crate::parse::{SERVICE_NAME_LABEL, node_eligible};

/// Node label that keeps a node out of external load balancing (Kubernetes' own, which cloud
/// load balancers honour too): such a node never answers ARP/NDP.
pub const EXCLUDE_FROM_EXTERNAL_LB_LABEL: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

/// Why a node may not answer for any address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ineligible {
    /// Cordoned or being deleted.
    Draining(Drain),
    /// Tainted `ToBeDeletedByClusterAutoscaler`.
    ToBeDeleted,
    /// Its `Ready` condition is not `True` (the kubelet stopped reporting, or reports trouble).
    NotReady,
    /// Labelled [`EXCLUDE_FROM_EXTERNAL_LB_LABEL`].
    Excluded,
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ineligible::Draining(drain) => write!(f, "{drain}"),
            Ineligible::ToBeDeleted => {
                f.write_str("node is tainted ToBeDeletedByClusterAutoscaler")
            }
            Ineligible::NotReady => f.write_str("node is not Ready"),
            Ineligible::Excluded => {
                write!(f, "node is labelled {EXCLUDE_FROM_EXTERNAL_LB_LABEL}")
            }
        }
    }
}

impl Ineligible {
    /// Why `node` may not answer, if it may not. A Node without a `Ready` condition (a manifest
    /// written by hand) counts as ready; one whose condition says anything but `True` does not.
    pub fn of_node(node: &Node) -> Option<Ineligible> {
        if let Some(drain) = Drain::of_node(node) {
            return Some(Ineligible::Draining(drain));
        }
        if !node_eligible(Some(node)) {
            return Some(Ineligible::ToBeDeleted);
        }
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        if ready.is_some_and(|c| c.status != "True") {
            return Some(Ineligible::NotReady);
        }
        let labels = node.metadata.labels.as_ref();
        if labels.is_some_and(|l| l.contains_key(EXCLUDE_FROM_EXTERNAL_LB_LABEL)) {
            return Some(Ineligible::Excluded);
        }
        None
    }
}

/// What L2 mode needs of one Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct L2Node {
    pub(crate) labels: Labels,
    pub(crate) ineligible: Option<Ineligible>,
}

impl L2Node {
    fn of(node: &Node) -> L2Node {
        L2Node {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            ineligible: Ineligible::of_node(node),
        }
    }
}

/// One EndpointSlice as L2 mode sees it: its Service and the nodes of its ready endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SliceNodes {
    service: ObjectKey,
    nodes: BTreeSet<String>,
}

impl SliceNodes {
    /// `None` also for a slice none of whose ready endpoints names a node: it adds nothing to
    /// the counts, so it is not kept (issue 20: 2 MB at 10,000 such slices).
    fn of(key: &ObjectKey, slice: &EndpointSlice) -> Option<SliceNodes> {
        let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        let nodes = slice
            .endpoints
            .iter()
            // Kubernetes: a missing `ready` means ready.
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .filter_map(|e| e.node_name.clone())
            .collect::<BTreeSet<String>>();
        if nodes.is_empty() {
            return None;
        }
        Some(SliceNodes { service: ObjectKey::new(key.namespace.clone(), name.clone()), nodes })
    }
}

/// The objects L2 mode reads, kept up to date change by change. [`L2Inputs::apply`] says whether
/// a change matters.
#[derive(Debug, Clone, Default)]
pub struct L2Inputs {
    pub(crate) node_name: String,
    pub(crate) advertisements: BTreeMap<ObjectKey, L2AdvertisementSpec>,
    /// Pool name → its parsed address ranges.
    pub(crate) pools: BTreeMap<String, Vec<AddressRange>>,
    /// Labels of the Services that have any.
    pub(crate) service_labels: FxHashMap<ObjectKey, Labels>,
    /// Services reached through the directors: nodes never answer for their addresses.
    pub(crate) director_services: BTreeSet<ObjectKey>,
    /// Every Node, by name.
    pub(crate) nodes: BTreeMap<String, L2Node>,
    slices: FxHashMap<ObjectKey, SliceNodes>,
    /// Service → node → how many of its slices list a ready endpoint on that node.
    pub(crate) ready: FxHashMap<ObjectKey, BTreeMap<String, u32>>,
}

impl L2Inputs {
    /// Inputs of the agent on `node_name` that has seen no objects yet.
    pub fn new(node_name: impl Into<String>) -> L2Inputs {
        L2Inputs { node_name: node_name.into(), ..L2Inputs::default() }
    }

    /// Inputs of `node_name` from a whole snapshot.
    pub fn from_state(node_name: impl Into<String>, state: &ClusterState) -> L2Inputs {
        let mut inputs = L2Inputs::new(node_name);
        let changes = state
            .l2_advertisements
            .iter()
            .map(|(k, a)| Change::L2Advertisement(k.clone(), Some(Box::new(a.clone()))))
            .chain(
                state
                    .ip_pools
                    .iter()
                    .map(|(k, p)| Change::IPPool(k.clone(), Some(Box::new(p.clone())))),
            )
            .chain(
                state.nodes.iter().map(|(k, n)| Change::Node(k.clone(), Some(Box::new(n.clone())))),
            )
            .chain(
                state
                    .services
                    .iter()
                    .map(|(k, s)| Change::Service(k.clone(), Some(Box::new(s.clone())))),
            )
            .chain(
                state
                    .endpoint_slices
                    .iter()
                    .map(|(k, s)| Change::EndpointSlice(k.clone(), Some(Box::new(s.clone())))),
            );
        for change in changes {
            inputs.apply(&change);
        }
        inputs
    }

    /// The node this agent runs on.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// True when some L2Advertisement exists (without one no node answers for anything).
    pub fn has_advertisements(&self) -> bool {
        !self.advertisements.is_empty()
    }

    /// Why `node` may not answer, if it may not; `None` for an eligible node and for a node
    /// without a Node object (see [`L2Inputs::is_known`]).
    pub fn ineligible(&self, node: &str) -> Option<Ineligible> {
        self.nodes.get(node).and_then(|n| n.ineligible)
    }

    /// True when a Node object of that name exists.
    pub fn is_known(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// Feeds one change; true when it changes an input of the plan.
    pub fn apply(&mut self, change: &Change) -> bool {
        match change {
            Change::Service(key, service) => update_service(
                &mut self.service_labels,
                &mut self.director_services,
                key,
                service.as_deref(),
            ),
            Change::EndpointSlice(key, slice) => {
                let new = slice.as_deref().and_then(|s| SliceNodes::of(key, s));
                let old = match &new {
                    Some(new) if self.slices.get(key) == Some(new) => return false,
                    Some(new) => self.slices.insert(key.clone(), new.clone()),
                    None => self.slices.remove(key),
                };
                if let Some(old) = &old {
                    self.count(old, false);
                }
                if let Some(new) = &new {
                    self.count(new, true);
                }
                old.is_some() || new.is_some()
            }
            Change::Node(key, node) => {
                let view = node.as_deref().map(L2Node::of);
                replace(&mut self.nodes, key.name.to_string(), view)
            }
            Change::IPPool(key, pool) => {
                replace(&mut self.pools, key.name.to_string(), pool.as_deref().map(ranges))
            }
            Change::L2Advertisement(key, advertisement) => replace(
                &mut self.advertisements,
                key.clone(),
                advertisement.as_ref().map(|a| a.spec.clone()),
            ),
            Change::BGPPeer(..)
            | Change::BGPAdvertisement(..)
            | Change::Secret(..)
            | Change::Namespace(..) => false,
        }
    }

    /// Adds (`add`) or takes away one slice's ready nodes from its Service's counts.
    fn count(&mut self, slice: &SliceNodes, add: bool) {
        let counts = self.ready.entry(slice.service.clone()).or_default();
        for node in &slice.nodes {
            if add {
                *counts.entry(node.clone()).or_default() += 1;
            } else if let Some(count) = counts.get_mut(node) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(node);
                }
            }
        }
        if counts.is_empty() {
            self.ready.remove(&slice.service);
        }
    }

    /// True when `node` has a ready endpoint of `service`.
    pub(crate) fn has_ready_endpoint(&self, service: &ObjectKey, node: &str) -> bool {
        self.ready.get(service).is_some_and(|nodes| nodes.contains_key(node))
    }
}
