//! What announcing needs besides the desired state: the BGP objects, the pools, this node's
//! labels, addresses and drain, the labels of Services (for `serviceSelector`), and the Secrets
//! holding peers' TCP MD5 passwords.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Secret, Service};

use super::Drain;
use crate::crd::{AddressRange, BGPAdvertisementSpec, BGPPeerSpec, IPPool, pool_ranges};
use crate::desired::PrimaryAddresses;
use crate::input::{Change, ClusterState, ObjectKey};
use rustc_hash::FxHashMap;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// Service annotation that puts a LoadBalancer Service's addresses behind the directors (value
/// `"true"`). The directors serve and announce those addresses; nodes do not announce them,
/// whatever BGPAdvertisements select.
pub const DIRECTOR_ANNOTATION: &str = "switchyard.io/director";

/// True when `service` is reached through the directors.
pub fn reached_through_directors(service: &Service) -> bool {
    service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DIRECTOR_ANNOTATION))
        .is_some_and(|value| value == "true")
}

/// The facts of this node that peering and announcing depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NodeView {
    pub(crate) labels: Labels,
    pub(crate) drain: Option<Drain>,
    pub(crate) primary: PrimaryAddresses,
}

impl NodeView {
    fn of(node: Option<&Node>) -> NodeView {
        let Some(node) = node else { return NodeView::default() };
        NodeView {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            drain: Drain::of_node(node),
            primary: PrimaryAddresses::of_node(node),
        }
    }
}

/// Who announces: a node agent (its proxied LoadBalancer addresses) or a director (its VIPs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    /// A node agent: never announces a director VIP.
    #[default]
    Node,
    /// A director: announces only VIPs, and peers only with BGPPeers whose `spec.nodeSelector`
    /// is set and selects the labels of its own Node object.
    Director,
}

/// The objects announcing reads, kept up to date change by change. [`BgpInputs::apply`] says
/// whether a change matters, so a Service change that touches neither labels nor LoadBalancer
/// addresses costs no new plan.
#[derive(Debug, Clone, Default)]
pub struct BgpInputs {
    pub(crate) node_name: String,
    pub(crate) role: Role,
    pub(crate) node: NodeView,
    pub(crate) peers: BTreeMap<ObjectKey, BGPPeerSpec>,
    pub(crate) advertisements: BTreeMap<ObjectKey, BGPAdvertisementSpec>,
    /// Pool name → its parsed address ranges.
    pub(crate) pools: BTreeMap<String, Vec<AddressRange>>,
    /// Labels of the Services that have any.
    pub(crate) service_labels: FxHashMap<ObjectKey, Labels>,
    /// Services reached through the directors ([`DIRECTOR_ANNOTATION`]): the directors announce
    /// their addresses, nodes never do.
    pub(crate) director_services: BTreeSet<ObjectKey>,
    /// Data of the Secrets seen (key → bytes), for `spec.passwordSecret`.
    pub(crate) secrets: BTreeMap<ObjectKey, SecretData>,
}

/// The keys of a Secret with their values: `data`, overlaid with `stringData` as the API server
/// does on write (a manifest directory may use either).
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// What a Secret holds, as [`SecretData`].
pub fn secret_data(secret: &Secret) -> SecretData {
    let mut out: SecretData =
        secret.data.iter().flatten().map(|(key, value)| (key.clone(), value.0.clone())).collect();
    for (key, value) in secret.string_data.iter().flatten() {
        out.insert(key.clone(), value.clone().into_bytes());
    }
    out
}

impl BgpInputs {
    /// Inputs of the node `node_name` that has seen no objects yet.
    pub fn new(node_name: impl Into<String>) -> BgpInputs {
        BgpInputs { node_name: node_name.into(), ..BgpInputs::default() }
    }

    /// The same inputs for `role` (a director runs as the Node object of its own machine).
    pub fn with_role(mut self, role: Role) -> BgpInputs {
        self.role = role;
        self
    }

    /// Inputs of `node_name` from a whole snapshot.
    pub fn from_state(node_name: impl Into<String>, state: &ClusterState) -> BgpInputs {
        let mut inputs = BgpInputs::new(node_name);
        inputs.node = NodeView::of(state.nodes.get(&ObjectKey::cluster(inputs.node_name.clone())));
        inputs.peers = state.bgp_peers.iter().map(|(k, p)| (k.clone(), p.spec.clone())).collect();
        inputs.advertisements =
            state.bgp_advertisements.iter().map(|(k, a)| (k.clone(), a.spec.clone())).collect();
        inputs.pools =
            state.ip_pools.iter().map(|(k, p)| (k.name.to_string(), ranges(p))).collect();
        inputs.secrets = state.secrets.iter().map(|(k, s)| (k.clone(), secret_data(s))).collect();
        for (key, service) in &state.services {
            if reached_through_directors(service) {
                inputs.director_services.insert(key.clone());
            }
            if let Some(labels) = service.metadata.labels.as_ref().filter(|l| !l.is_empty()) {
                inputs.service_labels.insert(key.clone(), labels.clone());
            }
        }
        inputs
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
            Change::EndpointSlice(..) | Change::Namespace(..) | Change::L2Advertisement(..) => {
                false
            }
            Change::Node(key, node) => {
                if key.name != self.node_name {
                    return false;
                }
                let view = NodeView::of(node.as_deref());
                let changed = view != self.node;
                self.node = view;
                changed
            }
            Change::IPPool(key, pool) => {
                let ranges = pool.as_deref().map(ranges);
                replace(&mut self.pools, key.name.to_string(), ranges)
            }
            Change::BGPPeer(key, peer) => {
                replace(&mut self.peers, key.clone(), peer.as_ref().map(|p| p.spec.clone()))
            }
            Change::BGPAdvertisement(key, advertisement) => replace(
                &mut self.advertisements,
                key.clone(),
                advertisement.as_ref().map(|a| a.spec.clone()),
            ),
            Change::Secret(key, secret) => {
                let changed =
                    replace(&mut self.secrets, key.clone(), secret.as_deref().map(secret_data));
                // Only a Secret some peer names changes the plan.
                changed && self.names_secret(key)
            }
        }
    }

    /// Why the Node object says this node drains, if it does.
    pub fn node_drain(&self) -> Option<Drain> {
        self.node.drain
    }

    /// True when some BGPPeer's `spec.passwordSecret` names the Secret `key`.
    fn names_secret(&self, key: &ObjectKey) -> bool {
        self.peers
            .values()
            .filter_map(|p| p.password_secret.as_ref())
            .any(|secret| secret.name == key.name && secret.namespace == key.namespace)
    }

    /// True when some BGPPeer exists (whether or not it selects this node).
    pub fn has_peers(&self) -> bool {
        !self.peers.is_empty()
    }
}

/// Notes a Service's labels and whether it is reached through the directors (BGP and L2 mode
/// read both); true when either changed.
pub(crate) fn update_service(
    service_labels: &mut FxHashMap<ObjectKey, Labels>,
    director_services: &mut BTreeSet<ObjectKey>,
    key: &ObjectKey,
    service: Option<&Service>,
) -> bool {
    let director = service.is_some_and(reached_through_directors);
    let director_changed = if director {
        director_services.insert(key.clone())
    } else {
        director_services.remove(key)
    };
    let labels = service.and_then(|s| s.metadata.labels.clone()).filter(|l| !l.is_empty());
    let labels_changed = match labels {
        Some(labels) if service_labels.get(key) == Some(&labels) => false,
        Some(labels) => {
            service_labels.insert(key.clone(), labels);
            true
        }
        None => service_labels.remove(key).is_some(),
    };
    labels_changed || director_changed
}

pub(crate) fn ranges(pool: &IPPool) -> Vec<AddressRange> {
    pool_ranges(pool).into_iter().map(|(_, range)| range).collect()
}

/// Sets (`Some`) or removes (`None`) one entry; true when that changed the map.
pub(crate) fn replace<K: Ord, V: PartialEq>(
    map: &mut BTreeMap<K, V>,
    key: K,
    value: Option<V>,
) -> bool {
    match value {
        Some(value) if map.get(&key) == Some(&value) => false,
        Some(value) => {
            map.insert(key, value);
            true
        }
        None => map.remove(&key).is_some(),
    }
}
