//! What the model is fed: Kubernetes objects, whole or as changes.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::{Deserialize, Serialize};

use crate::crd::{BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};
pub use crate::name::Name;

/// The kinds of object the model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Service,
    EndpointSlice,
    Node,
    /// `switchyard.io/v1alpha1` IPPool: LoadBalancer addresses (the controller's input).
    IPPool,
    /// `switchyard.io/v1alpha1` BGPPeer: a router to announce to.
    BGPPeer,
    /// `switchyard.io/v1alpha1` BGPAdvertisement: what is announced to whom.
    BGPAdvertisement,
    /// `switchyard.io/v1alpha1` L2Advertisement: which addresses a node answers ARP/NDP for.
    L2Advertisement,
    /// core/v1 Namespace: its labels, for IPPool `namespaceSelector` (the controller's input).
    Namespace,
    /// A Secret holding a BGPPeer's TCP MD5 password (`spec.passwordSecret`); the API source
    /// watches only the Secrets BGPPeers name.
    Secret,
}

impl ObjectKind {
    /// True for kinds without a namespace.
    pub fn is_cluster_scoped(self) -> bool {
        !matches!(self, Self::Service | Self::EndpointSlice | Self::Secret)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Service => "Service",
            Self::EndpointSlice => "EndpointSlice",
            Self::Node => "Node",
            Self::IPPool => "IPPool",
            Self::BGPPeer => "BGPPeer",
            Self::BGPAdvertisement => "BGPAdvertisement",
            Self::L2Advertisement => "L2Advertisement",
            Self::Namespace => "Namespace",
            Self::Secret => "Secret",
        })
    }
}

/// Namespace and name of an object. Cluster-scoped objects (Nodes, our own kinds) have an empty
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct ObjectKey {
    pub namespace: Name,
    pub name: Name,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<Name>, name: impl Into<Name>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }

    /// Key of a cluster-scoped object.
    pub fn cluster(name: impl Into<Name>) -> Self {
        Self::new("", name)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// Every object the model reads, keyed by namespace/name. A full snapshot of what a source knows.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    pub services: BTreeMap<ObjectKey, Service>,
    pub endpoint_slices: BTreeMap<ObjectKey, EndpointSlice>,
    pub nodes: BTreeMap<ObjectKey, Node>,
    pub ip_pools: BTreeMap<ObjectKey, IPPool>,
    pub bgp_peers: BTreeMap<ObjectKey, BGPPeer>,
    pub bgp_advertisements: BTreeMap<ObjectKey, BGPAdvertisement>,
    pub l2_advertisements: BTreeMap<ObjectKey, L2Advertisement>,
    pub namespaces: BTreeMap<ObjectKey, Namespace>,
    pub secrets: BTreeMap<ObjectKey, Secret>,
}

/// One change to the cluster as a source saw it. Sources emit these so the model can recompute
/// only the Services a change touches.
#[derive(Debug, Clone)]
pub enum Change {
    Service(ObjectKey, Option<Box<Service>>),
    EndpointSlice(ObjectKey, Option<Box<EndpointSlice>>),
    Node(ObjectKey, Option<Box<Node>>),
    IPPool(ObjectKey, Option<Box<IPPool>>),
    BGPPeer(ObjectKey, Option<Box<BGPPeer>>),
    BGPAdvertisement(ObjectKey, Option<Box<BGPAdvertisement>>),
    L2Advertisement(ObjectKey, Option<Box<L2Advertisement>>),
    Namespace(ObjectKey, Option<Box<Namespace>>),
    Secret(ObjectKey, Option<Box<Secret>>),
}

impl Change {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::Service(..) => ObjectKind::Service,
            Self::EndpointSlice(..) => ObjectKind::EndpointSlice,
            Self::Node(..) => ObjectKind::Node,
            Self::IPPool(..) => ObjectKind::IPPool,
            Self::BGPPeer(..) => ObjectKind::BGPPeer,
            Self::BGPAdvertisement(..) => ObjectKind::BGPAdvertisement,
            Self::L2Advertisement(..) => ObjectKind::L2Advertisement,
            Self::Namespace(..) => ObjectKind::Namespace,
            Self::Secret(..) => ObjectKind::Secret,
        }
    }

    pub fn key(&self) -> &ObjectKey {
        match self {
            Self::Service(k, _)
            | Self::EndpointSlice(k, _)
            | Self::Node(k, _)
            | Self::IPPool(k, _)
            | Self::BGPPeer(k, _)
            | Self::BGPAdvertisement(k, _)
            | Self::L2Advertisement(k, _)
            | Self::Namespace(k, _)
            | Self::Secret(k, _) => k,
        }
    }

    /// True when the change removes the object.
    pub fn is_delete(&self) -> bool {
        match self {
            Self::Service(_, o) => o.is_none(),
            Self::EndpointSlice(_, o) => o.is_none(),
            Self::Node(_, o) => o.is_none(),
            Self::IPPool(_, o) => o.is_none(),
            Self::BGPPeer(_, o) => o.is_none(),
            Self::BGPAdvertisement(_, o) => o.is_none(),
            Self::L2Advertisement(_, o) => o.is_none(),
            Self::Namespace(_, o) => o.is_none(),
            Self::Secret(_, o) => o.is_none(),
        }
    }
}

impl ClusterState {
    /// Applies one change to the snapshot.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Service(k, o) => set(&mut self.services, k, o),
            Change::EndpointSlice(k, o) => set(&mut self.endpoint_slices, k, o),
            Change::Node(k, o) => set(&mut self.nodes, k, o),
            Change::IPPool(k, o) => set(&mut self.ip_pools, k, o),
            Change::BGPPeer(k, o) => set(&mut self.bgp_peers, k, o),
            Change::BGPAdvertisement(k, o) => set(&mut self.bgp_advertisements, k, o),
            Change::L2Advertisement(k, o) => set(&mut self.l2_advertisements, k, o),
            Change::Namespace(k, o) => set(&mut self.namespaces, k, o),
            Change::Secret(k, o) => set(&mut self.secrets, k, o),
        }
    }
}

/// Upserts (`Some`) or removes (`None`) one object of a map.
fn set<T>(map: &mut BTreeMap<ObjectKey, T>, key: ObjectKey, object: Option<Box<T>>) {
    match object {
        Some(object) => {
            map.insert(key, *object);
        }
        None => {
            map.remove(&key);
        }
    }
}
