//! L2 mode: for each LoadBalancer address (and externalIP, where an advertisement opts in) that
//! an L2Advertisement selects, the one node that answers ARP (IPv4) and NDP neighbour
//! solicitations (IPv6) for it. Pure: every agent computes the same plan from the same objects,
//! so exactly one answers without talking to the others.
//!
//! The owner is the eligible node with the highest rendezvous score ([`score`]) for the address.
//! Eligible: the Node may answer at all ([`Ineligible`]: not draining, not tainted for deletion,
//! Ready, not excluded from external load balancers), an advertisement selecting the address
//! selects it by `spec.nodeSelectors`, and, when every Service on the address has
//! `externalTrafficPolicy: Local`, it has a ready endpoint of one of them. A node that becomes
//! ineligible moves only its own addresses; the others keep their owner.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use super::l2_inputs::L2Inputs;
use crate::crd::L2AdvertisementSpec;
use crate::desired::{DesiredState, FrontendKind, TrafficPolicy};
use crate::input::ObjectKey;
use crate::labels::{selects, selects_optional};

/// The rendezvous score of `node` for `address`: 64-bit FNV-1a over the node name, a 0xff
/// separator (no name contains it) and the address octets, then SplitMix64's finaliser to spread
/// FNV's weak low bits. Part of the contract between agents of different versions: every agent
/// must compute the same owner, so this must never change within `v1alpha1`.
pub fn score(node: &str, address: IpAddr) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let octets: Vec<u8> = match address {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let mut hash = OFFSET;
    for byte in node.bytes().chain([0xff]).chain(octets) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The node among `nodes` that answers for `address`: the highest [`score`], ties (never seen in
/// practice) to the greater name. `None` when `nodes` is empty.
pub fn owner<'a>(address: IpAddr, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes.into_iter().max_by_key(|node| (score(node, address), *node))
}

/// Where the owner answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interfaces {
    /// Every interface that does ARP (some selecting advertisement names none).
    All,
    /// Only these.
    Named(BTreeSet<String>),
}

impl Interfaces {
    /// True when the owner answers on `interface`.
    pub fn includes(&self, interface: &str) -> bool {
        match self {
            Interfaces::All => true,
            Interfaces::Named(names) => names.contains(interface),
        }
    }
}

impl fmt::Display for Interfaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interfaces::All => f.write_str("all interfaces"),
            Interfaces::Named(names) => {
                f.write_str(&names.iter().map(String::as_str).collect::<Vec<_>>().join(","))
            }
        }
    }
}

/// Why one L2Advertisement does not select an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L2Mismatch {
    /// An externalIP, and `spec.externalIPs` is off.
    ExternalIpsOff,
    /// `spec.ipPools` does not name the address's pool (`None`: the address is in no pool).
    OtherPool(Option<String>),
    /// `spec.serviceSelector` selects none of the Services on the address.
    ServiceLabels,
}

impl fmt::Display for L2Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            L2Mismatch::ExternalIpsOff => f.write_str("an externalIP, and spec.externalIPs is off"),
            L2Mismatch::OtherPool(Some(pool)) => {
                write!(f, "spec.ipPools does not name pool {pool}")
            }
            L2Mismatch::OtherPool(None) => {
                f.write_str("spec.ipPools is set and the address is in no pool")
            }
            L2Mismatch::ServiceLabels => {
                f.write_str("spec.serviceSelector selects none of its Services")
            }
        }
    }
}

/// Why no node answers for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// A Service on it is reached through the directors (they announce it over BGP).
    ThroughDirectors(ObjectKey),
    /// No L2Advertisement exists.
    NoAdvertisement,
    /// No L2Advertisement selects it, each for this reason.
    NotSelected(BTreeMap<String, L2Mismatch>),
    /// Advertisements select it, but no node is eligible.
    NoEligibleNode,
}

impl fmt::Display for Unanswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unanswered::ThroughDirectors(service) => {
                write!(f, "reached through the directors (Service {service})")
            }
            Unanswered::NoAdvertisement => f.write_str("no L2Advertisement exists"),
            Unanswered::NotSelected(why) => {
                let each: Vec<String> = why.iter().map(|(n, m)| format!("{n}: {m}")).collect();
                write!(f, "no L2Advertisement selects it ({})", each.join("; "))
            }
            Unanswered::NoEligibleNode => f.write_str(
                "no eligible node (all draining, not Ready, excluded, outside spec.nodeSelectors, \
                 or without a ready local endpoint for externalTrafficPolicy Local)",
            ),
        }
    }
}

/// Who answers for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L2Decision {
    /// `node` answers, on `interfaces`, because of `advertisements`.
    Answered { node: String, interfaces: Interfaces, advertisements: BTreeSet<String> },
    /// No node answers.
    Unanswered(Unanswered),
}

impl fmt::Display for L2Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            L2Decision::Answered { node, interfaces, advertisements } => {
                let by: Vec<&str> = advertisements.iter().map(String::as_str).collect();
                write!(f, "answered by {node} on {interfaces} (L2Advertisement {})", by.join(", "))
            }
            L2Decision::Unanswered(why) => write!(f, "unanswered: {why}"),
        }
    }
}

/// One address with the Services on it and who answers for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Address {
    /// LoadBalancer ingress IP or externalIP.
    pub kind: FrontendKind,
    /// The Services on the address.
    pub services: BTreeSet<ObjectKey>,
    /// Who answers.
    pub decision: L2Decision,
}

/// Every LoadBalancer IP and externalIP, and who answers for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L2Plan {
    pub addresses: BTreeMap<IpAddr, L2Address>,
}

impl L2Plan {
    /// The addresses `node` answers for, with the interfaces it answers on.
    pub fn answered_by<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (IpAddr, &'a Interfaces)> + 'a {
        self.addresses.iter().filter_map(move |(address, entry)| match &entry.decision {
            L2Decision::Answered { node: owner, interfaces, .. } if owner == node => {
                Some((*address, interfaces))
            }
            _ => None,
        })
    }
}

/// An address before the decision: its kind, Services, and whether any Service on it has
/// `externalTrafficPolicy: Cluster` (then any node will do).
struct Candidate {
    kind: FrontendKind,
    services: BTreeSet<ObjectKey>,
    any_cluster: bool,
}

/// Who answers for every LoadBalancer IP and externalIP of `desired` (whose frontends every
/// node has, whatever its own endpoints), as `inputs` decide.
pub fn l2_plan(desired: &DesiredState, inputs: &L2Inputs) -> L2Plan {
    let mut candidates: BTreeMap<IpAddr, Candidate> = BTreeMap::new();
    for (key, frontend) in &desired.frontends {
        if !matches!(frontend.kind, FrontendKind::LoadBalancer | FrontendKind::ExternalIp) {
            continue;
        }
        let entry = candidates.entry(key.ip).or_insert_with(|| Candidate {
            kind: frontend.kind,
            services: BTreeSet::new(),
            any_cluster: false,
        });
        if frontend.kind == FrontendKind::LoadBalancer {
            entry.kind = FrontendKind::LoadBalancer;
        }
        entry.services.insert(frontend.service.clone());
        entry.any_cluster |= frontend.traffic_policy == TrafficPolicy::Cluster;
    }
    let addresses = candidates
        .into_iter()
        .map(|(address, candidate)| {
            let decision = decide(address, &candidate, inputs);
            (address, L2Address { kind: candidate.kind, services: candidate.services, decision })
        })
        .collect();
    L2Plan { addresses }
}

fn decide(address: IpAddr, candidate: &Candidate, inputs: &L2Inputs) -> L2Decision {
    let through_directors = (candidate.kind == FrontendKind::LoadBalancer)
        .then(|| candidate.services.iter().find(|s| inputs.director_services.contains(*s)))
        .flatten();
    if let Some(service) = through_directors {
        return L2Decision::Unanswered(Unanswered::ThroughDirectors(service.clone()));
    }
    if inputs.advertisements.is_empty() {
        return L2Decision::Unanswered(Unanswered::NoAdvertisement);
    }
    let mut selecting: Vec<(&str, &L2AdvertisementSpec)> = Vec::new();
    let mut mismatches = BTreeMap::new();
    for (key, spec) in &inputs.advertisements {
        match select(spec, address, candidate, inputs) {
            Ok(()) => selecting.push((&key.name, spec)),
            Err(why) => {
                mismatches.insert(key.name.to_string(), why);
            }
        }
    }
    if selecting.is_empty() {
        return L2Decision::Unanswered(Unanswered::NotSelected(mismatches));
    }
    let eligible = inputs.nodes.iter().filter(|(name, node)| {
        node.ineligible.is_none()
            && selecting.iter().any(|(_, spec)| selects_node(spec, &node.labels))
            && (candidate.any_cluster
                || candidate.services.iter().any(|s| inputs.has_ready_endpoint(s, name)))
    });
    let Some(owner) = owner(address, eligible.map(|(name, _)| name.as_str())) else {
        return L2Decision::Unanswered(Unanswered::NoEligibleNode);
    };
    let labels = &inputs.nodes[owner].labels;
    let mut interfaces = Interfaces::Named(BTreeSet::new());
    let mut advertisements = BTreeSet::new();
    for (name, spec) in selecting.iter().filter(|(_, spec)| selects_node(spec, labels)) {
        advertisements.insert((*name).to_owned());
        match &mut interfaces {
            Interfaces::Named(_) if spec.interfaces.is_empty() => interfaces = Interfaces::All,
            Interfaces::Named(names) => names.extend(spec.interfaces.iter().cloned()),
            Interfaces::All => {}
        }
    }
    L2Decision::Answered { node: owner.to_owned(), interfaces, advertisements }
}

/// Whether `spec` selects `address` (whatever the node).
fn select(
    spec: &L2AdvertisementSpec,
    address: IpAddr,
    candidate: &Candidate,
    inputs: &L2Inputs,
) -> Result<(), L2Mismatch> {
    if candidate.kind == FrontendKind::ExternalIp && !spec.external_ips {
        return Err(L2Mismatch::ExternalIpsOff);
    }
    if !spec.ip_pools.is_empty() {
        let pool = inputs
            .pools
            .iter()
            .find(|(_, ranges)| ranges.iter().any(|r| r.contains(address)))
            .map(|(name, _)| name);
        if !pool.is_some_and(|pool| spec.ip_pools.contains(pool)) {
            return Err(L2Mismatch::OtherPool(pool.cloned()));
        }
    }
    if spec.service_selector.is_some() {
        let none = super::Labels::new();
        let selected = candidate.services.iter().any(|service| {
            let labels = inputs.service_labels.get(service).unwrap_or(&none);
            selects_optional(spec.service_selector.as_ref(), labels)
        });
        if !selected {
            return Err(L2Mismatch::ServiceLabels);
        }
    }
    Ok(())
}

/// True when `spec.nodeSelectors` selects a node with `labels` (empty: every node).
fn selects_node(spec: &L2AdvertisementSpec, labels: &super::Labels) -> bool {
    spec.node_selectors.is_empty() || spec.node_selectors.iter().any(|s| selects(s, labels))
}
