//! The objects a manifest directory can contribute to the model.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use switchyard_model::crd::{BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};
use switchyard_model::{Change, ObjectKey, ObjectKind};

/// One Kubernetes object the model reads. Shared (`Arc`) so that unchanged files cost no copies
/// when the directory state is recomputed.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Node(Arc<Node>),
    IPPool(Arc<IPPool>),
    BGPPeer(Arc<BGPPeer>),
    BGPAdvertisement(Arc<BGPAdvertisement>),
    L2Advertisement(Arc<L2Advertisement>),
    Namespace(Arc<Namespace>),
    /// A Secret (BGPPeers' TCP MD5 passwords).
    Secret(Arc<Secret>),
}

/// Identifies an object across files: kind plus namespace/name.
pub type ObjectId = (ObjectKind, ObjectKey);

impl Object {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::Service(_) => ObjectKind::Service,
            Self::EndpointSlice(_) => ObjectKind::EndpointSlice,
            Self::Node(_) => ObjectKind::Node,
            Self::IPPool(_) => ObjectKind::IPPool,
            Self::BGPPeer(_) => ObjectKind::BGPPeer,
            Self::BGPAdvertisement(_) => ObjectKind::BGPAdvertisement,
            Self::L2Advertisement(_) => ObjectKind::L2Advertisement,
            Self::Namespace(_) => ObjectKind::Namespace,
            Self::Secret(_) => ObjectKind::Secret,
        }
    }

    /// Cheap identity check first: objects from files that were not re-read are the same `Arc`.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Service(a), Self::Service(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::EndpointSlice(a), Self::EndpointSlice(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::Node(a), Self::Node(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::IPPool(a), Self::IPPool(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::BGPPeer(a), Self::BGPPeer(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::BGPAdvertisement(a), Self::BGPAdvertisement(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::L2Advertisement(a), Self::L2Advertisement(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::Namespace(a), Self::Namespace(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::Secret(a), Self::Secret(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        }
    }

    /// The model change that sets this object.
    pub fn to_change(&self, key: ObjectKey) -> Change {
        match self {
            Self::Service(o) => Change::Service(key, Some(Box::new(Service::clone(o)))),
            Self::EndpointSlice(o) => {
                Change::EndpointSlice(key, Some(Box::new(EndpointSlice::clone(o))))
            }
            Self::Node(o) => Change::Node(key, Some(Box::new(Node::clone(o)))),
            Self::IPPool(o) => Change::IPPool(key, Some(Box::new(IPPool::clone(o)))),
            Self::BGPPeer(o) => Change::BGPPeer(key, Some(Box::new(BGPPeer::clone(o)))),
            Self::BGPAdvertisement(o) => {
                Change::BGPAdvertisement(key, Some(Box::new(BGPAdvertisement::clone(o))))
            }
            Self::L2Advertisement(o) => {
                Change::L2Advertisement(key, Some(Box::new(L2Advertisement::clone(o))))
            }
            Self::Namespace(o) => Change::Namespace(key, Some(Box::new(Namespace::clone(o)))),
            Self::Secret(o) => Change::Secret(key, Some(Box::new(Secret::clone(o)))),
        }
    }
}

/// The model change that removes an object.
pub(crate) fn delete_change(kind: ObjectKind, key: ObjectKey) -> Change {
    match kind {
        ObjectKind::Service => Change::Service(key, None),
        ObjectKind::EndpointSlice => Change::EndpointSlice(key, None),
        ObjectKind::Node => Change::Node(key, None),
        ObjectKind::IPPool => Change::IPPool(key, None),
        ObjectKind::BGPPeer => Change::BGPPeer(key, None),
        ObjectKind::BGPAdvertisement => Change::BGPAdvertisement(key, None),
        ObjectKind::L2Advertisement => Change::L2Advertisement(key, None),
        ObjectKind::Namespace => Change::Namespace(key, None),
        ObjectKind::Secret => Change::Secret(key, None),
    }
}
