//! Who may answer on an address: frontend addresses a Service asked for and did not get, and why.
//!
//! An externalIP or a LoadBalancer ingress IP is written by whoever may create a Service (or
//! patch its status); a cluster IP is allocated by the API server and a node address belongs to
//! the node. So an external address never takes a cluster IP of another Service, nor an address
//! of a node (its NodePorts and its own listeners), whichever Service is older or has the
//! smaller name — and that holds for every Node's addresses, as a pod here may connect to
//! another node (CVE-2020-8554: kube-proxy serves whatever the Service says and leaves the
//! defence to an admission webhook). Special addresses are refused everywhere, and externalIPs
//! outside `--external-ip-cidrs` are not served.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::desired::FrontendKind;
use crate::input::ObjectKey;
use crate::special::SpecialAddress;

/// A frontend address a Service asked for that this node does not serve.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    pub service: ObjectKey,
    /// Which field named the address (`spec.clusterIPs`, `spec.externalIPs`, the ingress).
    pub kind: FrontendKind,
    pub ip: IpAddr,
    pub reason: RefusalReason,
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RefusalReason {
    /// A special address (loopback, link-local, …): never a frontend.
    Special(#[serde(serialize_with = "display")] SpecialAddress),
    /// An externalIP outside `--external-ip-cidrs`.
    NotAllowed,
    /// The cluster IP of another Service, which keeps it.
    ClusterIpOf(ObjectKey),
    /// An address of a Node, which keeps it (its NodePorts and its own listeners).
    NodeAddress(String),
}

fn display<S: serde::Serializer>(value: &SpecialAddress, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Special(what) => write!(f, "{what} addresses are never frontends"),
            Self::NotAllowed => f.write_str("outside --external-ip-cidrs"),
            Self::ClusterIpOf(owner) => write!(f, "it is the cluster IP of Service {owner}"),
            Self::NodeAddress(node) => write!(f, "it is an address of Node {node}"),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Service {}: {} {} refused: {}", self.service, self.kind, self.ip, self.reason)
    }
}
