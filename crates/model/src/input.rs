//! What the model is fed: Kubernetes objects, whole or as changes.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::{Deserialize, Serialize};

/// The kinds of object the model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Service,
    EndpointSlice,
    Node,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Service => "Service",
            Self::EndpointSlice => "EndpointSlice",
            Self::Node => "Node",
        })
    }
}

/// Namespace and name of an object. Cluster-scoped objects (Nodes) have an empty namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }

    /// Key of a cluster-scoped object.
    pub fn cluster(name: impl Into<String>) -> Self {
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
}

/// One change to the cluster as a source saw it. Sources emit these so the model can recompute
/// only the Services a change touches.
#[derive(Debug, Clone)]
pub enum Change {
    Service(ObjectKey, Option<Box<Service>>),
    EndpointSlice(ObjectKey, Option<Box<EndpointSlice>>),
    Node(ObjectKey, Option<Box<Node>>),
}

impl Change {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::Service(..) => ObjectKind::Service,
            Self::EndpointSlice(..) => ObjectKind::EndpointSlice,
            Self::Node(..) => ObjectKind::Node,
        }
    }

    pub fn key(&self) -> &ObjectKey {
        match self {
            Self::Service(k, _) | Self::EndpointSlice(k, _) | Self::Node(k, _) => k,
        }
    }

    /// True when the change removes the object.
    pub fn is_delete(&self) -> bool {
        match self {
            Self::Service(_, o) => o.is_none(),
            Self::EndpointSlice(_, o) => o.is_none(),
            Self::Node(_, o) => o.is_none(),
        }
    }
}

impl ClusterState {
    /// Applies one change to the snapshot.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Service(k, Some(o)) => {
                self.services.insert(k, *o);
            }
            Change::Service(k, None) => {
                self.services.remove(&k);
            }
            Change::EndpointSlice(k, Some(o)) => {
                self.endpoint_slices.insert(k, *o);
            }
            Change::EndpointSlice(k, None) => {
                self.endpoint_slices.remove(&k);
            }
            Change::Node(k, Some(o)) => {
                self.nodes.insert(k, *o);
            }
            Change::Node(k, None) => {
                self.nodes.remove(&k);
            }
        }
    }
}
