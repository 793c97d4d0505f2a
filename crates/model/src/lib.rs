//! The Switchyard model: everything Kubernetes *means* for a service proxy, decided without I/O.
//!
//! Input is ordinary Kubernetes objects (k8s-openapi `Service`, `EndpointSlice`, `Node`), fed either
//! as a whole [`ClusterState`] or as a stream of [`Change`]s. Output is the desired state of one
//! node's data plane ([`DesiredState`]) and the difference from the previous desired state
//! ([`StateDiff`]). Kernel and network code only carry that difference out.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod address;
pub mod announce;
mod backend;
pub mod cidr;
pub mod config;
pub mod crd;
pub mod desired;
pub mod duration;
pub mod engine;
mod frontends;
pub mod input;
mod intern;
mod keyset;
pub mod labels;
mod name;
pub mod ownership;
mod parse;
mod select;
pub mod snat_ports;
pub mod special;
pub mod synthetic;
pub mod validate;

pub use cidr::{Cidr, CidrError};
pub use config::{NodePortAddresses, PortRange, ProxyConfig};
pub use desired::{
    Algorithm, Backend, BackendState, DesiredState, Frontend, FrontendKey, FrontendKind,
    HealthCheck, HealthCheckIndex, PrimaryAddresses, Protocol, StateDiff, TrafficPolicy, WhenEmpty,
};
pub use engine::NodeModel;
pub use input::{Change, ClusterState, Name, ObjectKey, ObjectKind};
pub use ownership::{Refusal, RefusalReason};
pub use parse::{
    HEADLESS_LABEL, SERVICE_NAME_LABEL, SERVICE_PROXY_NAME_LABEL, TO_BE_DELETED_TAINT,
    TOPOLOGY_AWARE_HINTS_ANNOTATION, TOPOLOGY_MODE_ANNOTATION, ZONE_LABEL, node_eligible,
};
pub use snat_ports::{SnatPorts, SnatPortsError, SnatPortsSource, choose_snat_ports};
pub use special::SpecialAddress;
