//! The plan of one node: the sessions it runs and, per session, every candidate address with the
//! routes it becomes (or why it does not), as BGPAdvertisements decide.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use super::inputs::BgpInputs;
use super::peers::{NotPeering, PeerSettings, peer_settings};
use super::{Candidate, Decision};
use crate::crd::{BGPAdvertisementSpec, Community, parse_community};
use crate::desired::FrontendKind;
use crate::input::ObjectKey;
use crate::labels::selects_optional;

/// What one node announces to whom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Sessions to run, by BGPPeer name.
    pub peers: BTreeMap<String, PeerPlan>,
    /// BGPPeers this node runs no session with, and why.
    pub not_peering: BTreeMap<String, NotPeering>,
}

/// One session: its settings, the routes it announces, and the decision for every address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPlan {
    /// How to run the session.
    pub settings: PeerSettings,
    /// The routes to announce, with their attributes.
    pub routes: BTreeMap<Route, RouteAttributes>,
    /// Every LoadBalancer IP and externalIP of the node, announced or not, and why.
    pub addresses: BTreeMap<IpAddr, AddressDecision>,
}

/// A prefix to announce: an address with its host bits cleared, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// The network address.
    pub network: IpAddr,
    /// The prefix length.
    pub length: u8,
}

impl Route {
    /// `address` aggregated to `length` bits (host bits cleared); `None` when the length does not
    /// fit the family.
    pub fn aggregate(address: IpAddr, length: u8) -> Option<Route> {
        let network = match address {
            IpAddr::V4(v4) if length <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(length)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) if length <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(length)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
            _ => return None,
        };
        Some(Route { network, length })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.length)
    }
}

/// Attributes of a route, merged over the advertisements that select it: every community of
/// any of them, and the highest LOCAL_PREF.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteAttributes {
    /// Standard and large communities.
    pub communities: BTreeSet<Community>,
    /// LOCAL_PREF (iBGP sessions only).
    pub local_pref: Option<u32>,
}

/// What a session does with one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressDecision {
    /// Announced as these routes, because of these BGPAdvertisements.
    Announced {
        /// The routes carrying the address (one per aggregation length in use).
        routes: BTreeSet<Route>,
        /// The advertisements selecting it.
        advertisements: BTreeSet<String>,
    },
    /// Not announced.
    Withheld(Withheld),
}

impl AddressDecision {
    /// True when the address is announced.
    pub fn is_announced(&self) -> bool {
        matches!(self, AddressDecision::Announced { .. })
    }
}

/// Why an address is not announced to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withheld {
    /// The node does not want it announced at all (no ready local endpoint, draining).
    Node(Decision),
    /// No BGPAdvertisement exists (nothing is announced without one).
    NoAdvertisement,
    /// No advertisement selects it for this peer: each one and why.
    NotSelected(BTreeMap<String, Mismatch>),
    /// The node has no address of the family to use as next hop.
    NoNextHop,
    /// A Service on the address is reached through the directors, which announce it (a node
    /// announcing it too would pull the directors' traffic past them).
    ThroughDirectors(ObjectKey),
}

/// Why one BGPAdvertisement does not select an address for a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// `spec.peers` names other peers.
    OtherPeers,
    /// The address is an externalIP and `spec.externalIPs` is off.
    ExternalIpsOff,
    /// `spec.ipPools` does not name the address's pool (`None`: it is in no pool).
    OtherPool(Option<String>),
    /// `spec.serviceSelector` selects none of the Services on the address.
    ServiceLabels,
    /// The advertisement is unusable: which field, and why (validate reports it too).
    Invalid(String),
}

impl fmt::Display for AddressDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressDecision::Announced { routes, advertisements } => {
                let routes: Vec<String> = routes.iter().map(ToString::to_string).collect();
                let by: Vec<&str> = advertisements.iter().map(String::as_str).collect();
                write!(f, "announced as {} (BGPAdvertisement {})", routes.join(", "), by.join(", "))
            }
            AddressDecision::Withheld(why) => write!(f, "withheld: {why}"),
        }
    }
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Withheld::Node(Decision::NoLocalEndpoint) => {
                f.write_str("externalTrafficPolicy Local and no ready local endpoint")
            }
            Withheld::Node(Decision::Draining(drain)) => write!(f, "{drain}"),
            Withheld::Node(Decision::Announce) => f.write_str("(announced by the node)"),
            Withheld::NoAdvertisement => f.write_str("no BGPAdvertisement exists"),
            Withheld::NotSelected(why) => {
                let each: Vec<String> =
                    why.iter().map(|(name, m)| format!("{name}: {m}")).collect();
                write!(f, "no BGPAdvertisement selects it ({})", each.join("; "))
            }
            Withheld::NoNextHop => f.write_str("the node has no address of this family"),
            Withheld::ThroughDirectors(service) => write!(
                f,
                "reached through the directors (Service {service} has {}: \"true\"); they announce it",
                super::DIRECTOR_ANNOTATION
            ),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::OtherPeers => f.write_str("spec.peers names other peers"),
            Mismatch::ExternalIpsOff => f.write_str("an externalIP, and spec.externalIPs is off"),
            Mismatch::OtherPool(Some(pool)) => write!(f, "spec.ipPools does not name pool {pool}"),
            Mismatch::OtherPool(None) => {
                f.write_str("spec.ipPools is set and the address is in no pool")
            }
            Mismatch::ServiceLabels => {
                f.write_str("spec.serviceSelector selects none of its Services")
            }
            Mismatch::Invalid(reason) => write!(f, "unusable: {reason}"),
        }
    }
}

/// An advertisement with its text fields parsed, or why it is unusable.
struct Advertisement<'a> {
    name: String,
    spec: &'a BGPAdvertisementSpec,
    parsed: Result<RouteAttributes, String>,
}

impl<'a> Advertisement<'a> {
    fn new(key: &ObjectKey, spec: &'a BGPAdvertisementSpec) -> Self {
        let parsed = spec
            .communities
            .iter()
            .enumerate()
            .map(|(i, text)| {
                parse_community(text).map_err(|e| format!("spec.communities[{i}]: {e}"))
            })
            .collect::<Result<BTreeSet<Community>, String>>()
            .and_then(|communities| {
                for (field, length, max) in [
                    ("spec.aggregationLength", spec.aggregation_length, 32),
                    ("spec.aggregationLengthV6", spec.aggregation_length_v6, 128),
                ] {
                    if let Some(length) = length.filter(|l| *l > max) {
                        return Err(format!("{field}: {length} is not a prefix length (0-{max})"));
                    }
                }
                Ok(RouteAttributes { communities, local_pref: spec.local_pref })
            });
        Advertisement { name: key.name.to_string(), spec, parsed }
    }

    /// The route of `address` and its attributes, or why this advertisement does not select it.
    fn select(
        &self,
        address: IpAddr,
        candidate: &Candidate,
        peer: &str,
        inputs: &BgpInputs,
    ) -> Result<(Route, &RouteAttributes), Mismatch> {
        let attributes = self.parsed.as_ref().map_err(|e| Mismatch::Invalid(e.clone()))?;
        let spec = self.spec;
        if !spec.peers.is_empty() && !spec.peers.iter().any(|p| p == peer) {
            return Err(Mismatch::OtherPeers);
        }
        if candidate.kind == FrontendKind::ExternalIp && !spec.external_ips {
            return Err(Mismatch::ExternalIpsOff);
        }
        if !spec.ip_pools.is_empty() {
            let pool = inputs
                .pools
                .iter()
                .find(|(_, ranges)| ranges.iter().any(|r| r.contains(address)))
                .map(|(name, _)| name);
            if !pool.is_some_and(|pool| spec.ip_pools.contains(pool)) {
                return Err(Mismatch::OtherPool(pool.cloned()));
            }
        }
        if spec.service_selector.is_some() {
            let none = super::inputs::Labels::new();
            let selected = candidate.services.iter().any(|service| {
                let labels = inputs.service_labels.get(service).unwrap_or(&none);
                selects_optional(spec.service_selector.as_ref(), labels)
            });
            if !selected {
                return Err(Mismatch::ServiceLabels);
            }
        }
        let length = match address {
            IpAddr::V4(_) => spec.aggregation_length.unwrap_or(32),
            IpAddr::V6(_) => spec.aggregation_length_v6.unwrap_or(128),
        };
        let route = Route::aggregate(address, length)
            .ok_or_else(|| Mismatch::Invalid(format!("{length} is not a prefix length")))?;
        Ok((route, attributes))
    }
}

/// The plan of this node, from its inputs and its candidates (`super::candidates`, computed with
/// the node's drain).
pub fn plan(inputs: &BgpInputs, candidates: &BTreeMap<IpAddr, Candidate>) -> Plan {
    let advertisements: Vec<Advertisement<'_>> =
        inputs.advertisements.iter().map(|(key, spec)| Advertisement::new(key, spec)).collect();
    let mut out = Plan::default();
    for (key, spec) in &inputs.peers {
        let settings = match peer_settings(spec, inputs) {
            Ok(settings) => settings,
            Err(why) => {
                out.not_peering.insert(key.name.to_string(), why);
                continue;
            }
        };
        let mut peer = PeerPlan { settings, routes: BTreeMap::new(), addresses: BTreeMap::new() };
        for (&address, candidate) in candidates {
            let decision =
                decide(&mut peer, &key.name, address, candidate, &advertisements, inputs);
            peer.addresses.insert(address, decision);
        }
        out.peers.insert(key.name.to_string(), peer);
    }
    out
}

/// The decision for one address on one session; adds its routes to the session's.
fn decide(
    peer: &mut PeerPlan,
    name: &str,
    address: IpAddr,
    candidate: &Candidate,
    advertisements: &[Advertisement<'_>],
    inputs: &BgpInputs,
) -> AddressDecision {
    // The directors serve LoadBalancer ingress addresses (not externalIPs).
    let through_directors = (candidate.kind == FrontendKind::LoadBalancer
        && inputs.role == super::Role::Node)
        .then(|| candidate.services.iter().find(|s| inputs.director_services.contains(*s)))
        .flatten();
    if let Some(service) = through_directors {
        return AddressDecision::Withheld(Withheld::ThroughDirectors(service.clone()));
    }
    if candidate.decision != Decision::Announce {
        return AddressDecision::Withheld(Withheld::Node(candidate.decision.clone()));
    }
    if advertisements.is_empty() {
        return AddressDecision::Withheld(Withheld::NoAdvertisement);
    }
    let has_next_hop = match address {
        IpAddr::V4(_) => peer.settings.next_hop_v4.is_some(),
        IpAddr::V6(_) => peer.settings.next_hop_v6.is_some(),
    };
    if !has_next_hop {
        return AddressDecision::Withheld(Withheld::NoNextHop);
    }
    let mut routes = BTreeSet::new();
    let mut by = BTreeSet::new();
    let mut mismatches = BTreeMap::new();
    for advertisement in advertisements {
        match advertisement.select(address, candidate, name, inputs) {
            Ok((route, attributes)) => {
                let merged = peer.routes.entry(route).or_default();
                merged.communities.extend(attributes.communities.iter().copied());
                merged.local_pref = merged.local_pref.max(attributes.local_pref);
                routes.insert(route);
                by.insert(advertisement.name.clone());
            }
            Err(why) => {
                mismatches.insert(advertisement.name.clone(), why);
            }
        }
    }
    if routes.is_empty() {
        AddressDecision::Withheld(Withheld::NotSelected(mismatches))
    } else {
        AddressDecision::Announced { routes, advertisements: by }
    }
}
