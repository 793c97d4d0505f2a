//! Semantic validation: what the API server (and an experienced operator) would reject in objects
//! that parsed fine — ports out of range, NodePort clashes, addresses that do not parse, values no
//! proxy understands. Pure: objects in, findings out.
//!
//! The model itself is lenient (it drops what it cannot use, see `parse`); this module says *why*
//! something would be dropped, naming the object and the field.

use std::fmt;
use std::net::IpAddr;

use crate::cidr::CidrError;
use crate::config::PortRange;
use crate::input::{ClusterState, ObjectKey, ObjectKind};

mod cluster;
mod endpoint_slice;
mod incremental;
mod load_balancing;
mod node;
mod service;
mod syntax;

pub use endpoint_slice::validate_endpoint_slice;
pub use incremental::{IncrementalValidation, Object};
pub use node::validate_node;
pub use service::validate_service;

/// Settings validation depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidationOptions {
    /// The cluster's NodePort range (kube-apiserver `--service-node-port-range`).
    pub node_port_range: PortRange,
}

/// How bad a finding is. Errors make `switchyard validate` fail; warnings point at things that
/// are legal but almost certainly not what was meant (a Service without endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A required field is missing.
    #[error("required")]
    Required,
    /// A port is outside 1-65535.
    #[error("port {value} is outside 1-65535")]
    PortOutOfRange { value: i64 },
    /// A NodePort is outside the cluster's NodePort range.
    #[error("NodePort {value} is outside the NodePort range {range}")]
    NodePortOutOfRange { value: i32, range: PortRange },
    /// Another Service claims the same NodePort and protocol.
    #[error("{what} {port}/{protocol} is already used by Service {other} ({other_field})")]
    NodePortCollision {
        what: &'static str,
        port: i32,
        protocol: String,
        other: ObjectKey,
        other_field: String,
    },
    /// Another Service has the same cluster IP.
    #[error("cluster IP {ip} is already used by Service {other}")]
    ClusterIpCollision { ip: IpAddr, other: ObjectKey },
    /// A value is not an IP address.
    #[error("{value:?} is not an IP address")]
    BadAddress { value: String },
    /// An address of the other family than the field or slice allows.
    #[error("{value:?} is not an {family} address")]
    WrongFamily { value: String, family: &'static str },
    /// A special address (loopback, link-local, …) where a Service or endpoint address goes.
    #[error("{value:?} is {what}: never a Service or endpoint address")]
    SpecialAddress { value: String, what: crate::special::SpecialAddress },
    /// An externalIP or LoadBalancer IP that is another Service's cluster IP or a Node's
    /// address: the owner keeps it and this Service does not get it.
    #[error(
        "{ip} is {owner}: an externalIP or LoadBalancer IP may not take it, so it is not served"
    )]
    AddressTaken { ip: IpAddr, owner: String },
    /// A CIDR does not parse.
    #[error(transparent)]
    BadCidr(#[from] CidrError),
    /// A value outside the ones Kubernetes defines.
    #[error("{value:?} is not supported; expected one of {expected}")]
    Unsupported { value: String, expected: &'static str },
    /// A name breaks its syntax rule (DNS label, subdomain, port name).
    #[error("{value:?} is not a valid {what}: {rule}")]
    BadName { value: String, what: &'static str, rule: &'static str },
    /// A name, port or address appears twice where it must be unique.
    #[error("duplicate {what} {value:?} (also {other_field})")]
    Duplicate { what: &'static str, value: String, other_field: String },
    /// A rule that needs a sentence of its own.
    #[error("{0}")]
    Rule(String),
}

/// One finding: which object, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub kind: ObjectKind,
    pub object: ObjectKey,
    /// Field path as the API server prints it, e.g. `spec.ports[1].nodePort`.
    pub field: String,
    pub problem: Problem,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}: {}", self.kind, self.object, self.field, self.problem)
    }
}

impl Finding {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Collects findings for one object.
struct Report<'a> {
    kind: ObjectKind,
    object: &'a ObjectKey,
    findings: &'a mut Vec<Finding>,
}

impl Report<'_> {
    fn error(&mut self, field: impl Into<String>, problem: Problem) {
        self.push(Severity::Error, field.into(), problem);
    }

    fn warning(&mut self, field: impl Into<String>, problem: Problem) {
        self.push(Severity::Warning, field.into(), problem);
    }

    fn push(&mut self, severity: Severity, field: String, problem: Problem) {
        self.findings.push(Finding {
            severity,
            kind: self.kind,
            object: self.object.clone(),
            field,
            problem,
        });
    }
}

/// Validates every object and the relations between them (NodePort and cluster IP clashes,
/// EndpointSlices without a Service). Findings are sorted by kind, object, then field order.
/// [`IncrementalValidation`] keeps the same findings up to date change by change.
pub fn validate(state: &ClusterState, options: &ValidationOptions) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (key, service) in &state.services {
        validate_service(key, service, options, &mut findings);
    }
    for (key, slice) in &state.endpoint_slices {
        validate_endpoint_slice(key, slice, &mut findings);
    }
    for (key, node) in &state.nodes {
        validate_node(key, node, &mut findings);
    }
    cluster::check_node_port_collisions(state, options, &mut findings);
    cluster::check_cluster_ip_collisions(state, &mut findings);
    cluster::check_taken_addresses(state, &mut findings);
    cluster::check_joins(state, &mut findings);
    load_balancing::check(state, &mut findings);
    findings.sort_by(|a, b| (a.kind, &a.object).cmp(&(b.kind, &b.object)));
    findings
}
