//! Which addresses this node should announce over BGP, and why (issue 15's rules): a Service's
//! LoadBalancer IPs (externalIPs too, when an advertisement opts in) from every node for
//! `externalTrafficPolicy: Cluster`, only from nodes with a ready local endpoint for `Local`, and
//! nothing from a draining node ([`candidates`]). On top of that, [`plan`] decides which
//! BGPPeers this node peers with and, per peer, which BGPAdvertisement selects each address, as
//! which route and with which attributes — or why the address is not announced. Where no BGP
//! router is, [`l2`] decides the one node that answers ARP / NDP for each address.

mod inputs;
pub mod l2;
mod l2_inputs;
mod peers;
mod plan;

pub use inputs::{
    BgpInputs, DIRECTOR_ANNOTATION, Labels, Role, SecretData, reached_through_directors,
    secret_data,
};
pub use l2::{L2Address, L2Decision, L2Plan, l2_plan};
pub use l2_inputs::{EXCLUDE_FROM_EXTERNAL_LB_LABEL, Ineligible, L2Inputs};
pub use peers::{
    BFD_MAX_INTERVAL, BFD_MIN_INTERVAL, BfdSettings, MD5_MAX_KEY_LEN, Md5Password, NotPeering,
    PeerSettings, bfd_settings,
};
pub use plan::{AddressDecision, Mismatch, PeerPlan, Plan, Route, RouteAttributes, Withheld, plan};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;

use crate::desired::{DesiredState, FrontendKind, TrafficPolicy};
use crate::input::ObjectKey;

/// Why a node withdraws everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Drain {
    /// `spec.unschedulable` (cordoned, e.g. by `kubectl drain`).
    Unschedulable,
    /// `metadata.deletionTimestamp` is set.
    Deleting,
    /// The agent is shutting down.
    AgentShutdown,
}

impl Drain {
    /// Why `node` drains, if it does.
    pub fn of_node(node: &Node) -> Option<Drain> {
        if node.metadata.deletion_timestamp.is_some() {
            Some(Drain::Deleting)
        } else if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
            Some(Drain::Unschedulable)
        } else {
            None
        }
    }
}

impl fmt::Display for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Drain::Unschedulable => "node is unschedulable",
            Drain::Deleting => "node is being deleted",
            Drain::AgentShutdown => "agent is shutting down",
        })
    }
}

/// The decision for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Announce it.
    Announce,
    /// Do not: every Service on it has `externalTrafficPolicy: Local` and no ready endpoint here.
    NoLocalEndpoint,
    /// Do not: the node drains.
    Draining(Drain),
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Announce => f.write_str("announced"),
            Decision::NoLocalEndpoint => {
                f.write_str("withheld: externalTrafficPolicy Local and no ready local endpoint")
            }
            Decision::Draining(drain) => write!(f, "withheld: {drain}"),
        }
    }
}

/// One address a Service exposes outside the cluster, what this node decides, and the Services
/// behind it (an address may be shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// LoadBalancer ingress IP or externalIP.
    pub kind: FrontendKind,
    /// The Services exposing the address.
    pub services: BTreeSet<ObjectKey>,
    /// What this node does with it.
    pub decision: Decision,
}

/// Every LoadBalancer IP and externalIP this node proxies, with its decision. An address is
/// announced when any Service on it wants it announced (a shared address with one Cluster-policy
/// Service is reachable through every node).
pub fn candidates(state: &DesiredState, drain: Option<Drain>) -> BTreeMap<IpAddr, Candidate> {
    let mut out: BTreeMap<IpAddr, Candidate> = BTreeMap::new();
    for (key, frontend) in &state.frontends {
        if !matches!(frontend.kind, FrontendKind::LoadBalancer | FrontendKind::ExternalIp) {
            continue;
        }
        let wants = match frontend.traffic_policy {
            TrafficPolicy::Cluster => true,
            TrafficPolicy::Local => frontend.local_ready_backends() > 0,
        };
        let entry = out.entry(key.ip).or_insert_with(|| Candidate {
            kind: frontend.kind,
            services: BTreeSet::new(),
            decision: Decision::NoLocalEndpoint,
        });
        // A LoadBalancer IP that is also some Service's externalIP counts as a LoadBalancer IP.
        if frontend.kind == FrontendKind::LoadBalancer {
            entry.kind = FrontendKind::LoadBalancer;
        }
        entry.services.insert(frontend.service.clone());
        if wants {
            entry.decision = Decision::Announce;
        }
    }
    if let Some(drain) = drain {
        out.values_mut().for_each(|c| c.decision = Decision::Draining(drain));
    }
    out
}

/// A director's candidates: each VIP address with the Services behind it, announced unless the
/// director is shutting down (then withdrawn first, while it keeps forwarding).
pub fn director_candidates(
    vips: impl IntoIterator<Item = (IpAddr, ObjectKey)>,
    shutting_down: bool,
) -> BTreeMap<IpAddr, Candidate> {
    let decision =
        if shutting_down { Decision::Draining(Drain::AgentShutdown) } else { Decision::Announce };
    let mut out: BTreeMap<IpAddr, Candidate> = BTreeMap::new();
    for (address, service) in vips {
        out.entry(address)
            .or_insert_with(|| Candidate {
                kind: FrontendKind::LoadBalancer,
                services: BTreeSet::new(),
                decision: decision.clone(),
            })
            .services
            .insert(service);
    }
    out
}

/// The plan of the node `inputs` describe for `state`: its candidates with the node's own drain
/// (or `AgentShutdown` when `shutting_down`), then [`plan`].
pub fn plan_for(state: &DesiredState, inputs: &BgpInputs, shutting_down: bool) -> Plan {
    let drain = if shutting_down { Some(Drain::AgentShutdown) } else { inputs.node_drain() };
    plan(inputs, &candidates(state, drain))
}
