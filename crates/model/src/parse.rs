//! Kubernetes objects → compact, already-validated facts the rules work on. Anything the proxy
//! cannot use (an address that does not parse, an unknown protocol, an FQDN slice) is dropped here,
//! so the rules never see strings. Reporting such input is the job of `validate`.

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::address::parse_ip;
use crate::cidr::Cidr;
use crate::config::{MAX_AFFINITY_TIMEOUT_SECONDS, NodePortAddresses, ProxyConfig};
use crate::desired::{Algorithm, FrontendKind, Protocol};
use crate::input::ObjectKey;
use crate::intern::Interner;
use crate::ownership::RefusalReason;
use crate::special::SpecialAddress;

/// Label naming the proxy that should serve a Service (absent: the default proxy).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Label marking a Service headless regardless of its clusterIP.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Label joining an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label carrying a Node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Legacy annotation asking for topology-aware routing (treated like `PreferSameZone`).
pub const TOPOLOGY_MODE_ANNOTATION: &str = "service.kubernetes.io/topology-mode";
/// Older spelling of [`TOPOLOGY_MODE_ANNOTATION`].
pub const TOPOLOGY_AWARE_HINTS_ANNOTATION: &str = "service.kubernetes.io/topology-aware-hints";

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Self::V4 } else { Self::V6 }
    }
}

/// Which topology hints a Service asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopologyMode {
    None,
    /// `PreferSameZone`, `PreferClose`, or the legacy topology-mode annotation.
    Zone,
    /// `PreferSameNode`: node hints first, zone hints as the next choice.
    NodeThenZone,
}

/// One port of a Service that the proxy can serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServicePortFacts {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    /// Set only for NodePort / LoadBalancer Services, and only inside the NodePort range.
    pub(crate) node_port: Option<u16>,
}

/// What the rules need to know about a Service that this proxy serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceFacts {
    pub(crate) ports: Vec<ServicePortFacts>,
    pub(crate) cluster_ips: Vec<IpAddr>,
    pub(crate) external_ips: Vec<IpAddr>,
    pub(crate) load_balancer_ips: Vec<IpAddr>,
    pub(crate) internal_local: bool,
    pub(crate) external_local: bool,
    pub(crate) affinity_timeout_seconds: Option<u32>,
    pub(crate) source_ranges: Vec<Cidr>,
    pub(crate) algorithm: Algorithm,
    pub(crate) health_check_node_port: Option<u16>,
    pub(crate) publish_not_ready: bool,
    pub(crate) topology: TopologyMode,
    /// Addresses left out because of the Service alone (special, outside the externalIP
    /// allow-list); refusals that depend on other objects are the engine's.
    pub(crate) refused: Vec<(FrontendKind, IpAddr, RefusalReason)>,
}

impl ServiceFacts {
    /// True when the Service has a cluster IP of `family` (NodePorts exist only in those).
    pub(crate) fn has_family(&self, family: Family) -> bool {
        self.cluster_ips.iter().any(|ip| Family::of(*ip) == family)
    }
}

/// Whether this proxy serves `service`, and if so the facts about it. `None` for Services the proxy
/// must leave alone: ExternalName, headless (clusterIP None/empty or the headless label), and
/// Services labelled for another proxy.
pub(crate) fn service_facts(config: &ProxyConfig, service: &Service) -> Option<ServiceFacts> {
    let labels = service.metadata.labels.as_ref();
    let label = |name: &str| labels.and_then(|l| l.get(name)).map(String::as_str);
    if label(SERVICE_PROXY_NAME_LABEL) != config.proxy_name.as_deref() {
        return None;
    }
    if label(HEADLESS_LABEL).is_some() {
        return None;
    }
    let spec = service.spec.as_ref()?;
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if service_type == "ExternalName" {
        return None;
    }
    let cluster_ip_texts: Vec<&str> = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    match cluster_ip_texts.first() {
        None | Some(&"") | Some(&"None") => return None,
        Some(_) => {}
    }
    let mut refused = Vec::new();
    let mut cluster_ips = unique_ips(cluster_ip_texts.into_iter());
    refuse_special(&mut cluster_ips, FrontendKind::ClusterIp, &mut refused);

    let exposes_node_ports = matches!(service_type, "NodePort" | "LoadBalancer");
    let is_load_balancer = service_type == "LoadBalancer";
    let mut ports: Vec<ServicePortFacts> = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(ServicePortFacts {
                name: p.name.clone().unwrap_or_default(),
                port: port_number(p.port)?,
                protocol: Protocol::from_kubernetes(p.protocol.as_deref())?,
                node_port: p
                    .node_port
                    .filter(|_| exposes_node_ports)
                    .and_then(port_number)
                    .filter(|n| config.node_port_range.contains(*n)),
            })
        })
        .collect();

    let external_ips = unique_ips(spec.external_ips.iter().flatten().map(String::as_str));
    let load_balancer_ips = if is_load_balancer {
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        // ipMode Proxy: the load balancer proxies to the nodes itself, so packets never carry the
        // ingress IP as destination here, and in-cluster traffic must go out to it (kube-proxy
        // programs nothing for such an IP).
        unique_ips(
            ingress
                .into_iter()
                .flatten()
                .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
                .filter_map(|i| i.ip.as_deref()),
        )
    } else {
        Vec::new()
    };

    let external_local =
        exposes_node_ports && spec.external_traffic_policy.as_deref() == Some("Local");
    let affinity_timeout_seconds =
        (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let configured = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0);
            configured
                .unwrap_or(config.default_affinity_timeout_seconds)
                .clamp(1, MAX_AFFINITY_TIMEOUT_SECONDS)
        });
    let source_ranges = if is_load_balancer {
        let mut ranges: Vec<Cidr> = spec
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .filter_map(|r| r.parse().ok())
            .collect();
        ranges.sort();
        ranges.dedup();
        ranges.shrink_to_fit();
        ranges
    } else {
        Vec::new()
    };
    let annotations = service.metadata.annotations.as_ref();
    let annotation = |name: &str| annotations.and_then(|a| a.get(name)).map(String::as_str);
    let algorithm = match annotation(&config.algorithm_annotation) {
        Some(value) if value.trim().eq_ignore_ascii_case("maglev") => Algorithm::Maglev,
        _ => Algorithm::Random,
    };
    let legacy_topology = [TOPOLOGY_MODE_ANNOTATION, TOPOLOGY_AWARE_HINTS_ANNOTATION]
        .iter()
        .any(|a| annotation(a).is_some_and(|v| v.eq_ignore_ascii_case("auto")));
    let topology = match spec.traffic_distribution.as_deref() {
        Some("PreferSameNode") => TopologyMode::NodeThenZone,
        Some("PreferSameZone" | "PreferClose") => TopologyMode::Zone,
        _ if legacy_topology => TopologyMode::Zone,
        _ => TopologyMode::None,
    };

    // Like kube-proxy (one proxier per family), external addresses exist only in the families the
    // Service has cluster IPs in; an IPv6 externalIP of an IPv4-only Service is not ours to answer.
    let cluster_families: Vec<Family> = cluster_ips.iter().map(|ip| Family::of(*ip)).collect();
    let in_service_family = |ip: &IpAddr| cluster_families.contains(&Family::of(*ip));
    let mut external_ips: Vec<IpAddr> =
        external_ips.into_iter().filter(in_service_family).collect();
    let mut load_balancer_ips: Vec<IpAddr> =
        load_balancer_ips.into_iter().filter(in_service_family).collect();
    refuse_special(&mut external_ips, FrontendKind::ExternalIp, &mut refused);
    refuse_special(&mut load_balancer_ips, FrontendKind::LoadBalancer, &mut refused);
    external_ips.retain(|ip| {
        let allowed = config.allows_external_ip(*ip);
        if !allowed {
            refused.push((FrontendKind::ExternalIp, *ip, RefusalReason::NotAllowed));
        }
        allowed
    });

    // The facts live as long as the Service: a filtered collect or a first push reserves room
    // for four (issue 20: 2 MB of spare capacity at 10,000 Services of one port and address).
    for list in [&mut cluster_ips, &mut external_ips, &mut load_balancer_ips] {
        list.shrink_to_fit();
    }
    ports.shrink_to_fit();
    refused.shrink_to_fit();
    Some(ServiceFacts {
        ports,
        cluster_ips,
        external_ips,
        load_balancer_ips,
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        external_local,
        affinity_timeout_seconds,
        source_ranges,
        algorithm,
        health_check_node_port: spec
            .health_check_node_port
            .filter(|_| external_local)
            .and_then(port_number),
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
        topology,
        refused,
    })
}

/// Moves the special addresses out of `ips` into `refused`.
fn refuse_special(
    ips: &mut Vec<IpAddr>,
    kind: FrontendKind,
    refused: &mut Vec<(FrontendKind, IpAddr, RefusalReason)>,
) {
    ips.retain(|ip| match SpecialAddress::of(*ip) {
        Some(what) => {
            refused.push((kind, *ip, RefusalReason::Special(what)));
            false
        }
        None => true,
    });
}

/// One port of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlicePort {
    pub(crate) name: String,
    pub(crate) protocol: Protocol,
    pub(crate) port: u16,
}

/// Node hints of an endpoint, as seen from this proxy's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeHint {
    /// The endpoint carries no node hint.
    Absent,
    ForThisNode,
    ForOtherNodes,
}

/// One endpoint of a slice (its first address, as kube-proxy uses). 24 bytes: its conditions,
/// whether it is on this node and its node hint share one byte, and where it is (node, zone,
/// zone hints) is a position in its slice's table of [`Place`]s (issue 20: 80 bytes each, 20 MB
/// at 250,000 endpoints, with the three apart; 32 with an `Arc<Place>` and the flags apart,
/// where a slice of 25 endpoints took a 896-byte allocation, 640 now).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct EndpointFacts {
    pub(crate) ip: IpAddr,
    flags: u8,
    /// Position of its place in [`SliceFacts::places`].
    place: u32,
}

impl EndpointFacts {
    const READY: u8 = 1;
    const SERVING: u8 = 1 << 1;
    const TERMINATING: u8 = 1 << 2;
    const LOCAL: u8 = 1 << 3;
    const HINT_THIS_NODE: u8 = 1 << 4;
    const HINT_OTHER_NODES: u8 = 1 << 5;

    fn new(
        ip: IpAddr,
        (ready, serving, terminating): (bool, bool, bool),
        is_local: bool,
        node_hint: NodeHint,
        place: u32,
    ) -> Self {
        let flag = |on: bool, flag: u8| if on { flag } else { 0 };
        let hint = match node_hint {
            NodeHint::Absent => 0,
            NodeHint::ForThisNode => Self::HINT_THIS_NODE,
            NodeHint::ForOtherNodes => Self::HINT_OTHER_NODES,
        };
        let flags = flag(ready, Self::READY)
            | flag(serving, Self::SERVING)
            | flag(terminating, Self::TERMINATING)
            | flag(is_local, Self::LOCAL)
            | hint;
        Self { ip, flags, place }
    }

    pub(crate) fn ready(&self) -> bool {
        self.flags & Self::READY != 0
    }

    pub(crate) fn serving(&self) -> bool {
        self.flags & Self::SERVING != 0
    }

    pub(crate) fn terminating(&self) -> bool {
        self.flags & Self::TERMINATING != 0
    }

    /// True when the endpoint's node is this proxy's node.
    pub(crate) fn is_local(&self) -> bool {
        self.flags & Self::LOCAL != 0
    }

    pub(crate) fn node_hint(&self) -> NodeHint {
        if self.flags & Self::HINT_THIS_NODE != 0 {
            NodeHint::ForThisNode
        } else if self.flags & Self::HINT_OTHER_NODES != 0 {
            NodeHint::ForOtherNodes
        } else {
            NodeHint::Absent
        }
    }
}

impl std::fmt::Debug for EndpointFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointFacts")
            .field("ip", &self.ip)
            .field("ready", &self.ready())
            .field("serving", &self.serving())
            .field("terminating", &self.terminating())
            .field("is_local", &self.is_local())
            .field("node_hint", &self.node_hint())
            .field("place", &self.place)
            .finish()
    }
}

/// Where an endpoint is, interned ([`Interner`]): endpoints on one node in one zone with the
/// same hints share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Place {
    pub(crate) node_name: Option<Arc<str>>,
    pub(crate) zone: Option<Arc<str>>,
    pub(crate) zone_hints: ZoneHints,
}

/// The interners a slice's facts are made with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interners {
    pub(crate) strings: Interner,
    pub(crate) places: Interner<Place>,
}

/// Zones named in an endpoint's `hints.forZones`. One zone is by far the common case and needs
/// no allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ZoneHints {
    Absent,
    One(Arc<str>),
    Many(Box<[Arc<str>]>),
}

impl ZoneHints {
    pub(crate) fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }

    pub(crate) fn contains(&self, zone: &str) -> bool {
        match self {
            Self::Absent => false,
            Self::One(z) => &**z == zone,
            Self::Many(zones) => zones.iter().any(|z| &**z == zone),
        }
    }
}

/// What the rules need from an EndpointSlice. Slices of addressType FQDN (or unknown) have no
/// family and contribute nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SliceFacts {
    pub(crate) service: Option<ObjectKey>,
    pub(crate) family: Option<Family>,
    pub(crate) ports: Vec<SlicePort>,
    pub(crate) endpoints: Vec<EndpointFacts>,
    /// Where its endpoints are, each place once (interned: shared with other slices).
    pub(crate) places: Box<[Arc<Place>]>,
}

impl SliceFacts {
    /// Where `endpoint`, one of this slice's, is.
    ///
    /// # Panics
    /// If `endpoint` is not one of this slice's: its place is a position in this slice's table.
    pub(crate) fn place(&self, endpoint: &EndpointFacts) -> &Arc<Place> {
        &self.places[endpoint.place as usize]
    }
}

pub(crate) fn slice_facts(
    config: &ProxyConfig,
    interners: &mut Interners,
    key: &ObjectKey,
    slice: &EndpointSlice,
) -> SliceFacts {
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .filter(|name| !name.is_empty())
        .map(|name| ObjectKey::new(key.namespace.clone(), name.clone()));
    let family = match slice.address_type.as_str() {
        "IPv4" => Some(Family::V4),
        "IPv6" => Some(Family::V6),
        _ => None,
    };
    let Some(family) = family else {
        return SliceFacts {
            service,
            family: None,
            ports: Vec::new(),
            endpoints: Vec::new(),
            places: Box::default(),
        };
    };
    let mut ports: Vec<SlicePort> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(SlicePort {
                name: p.name.clone().unwrap_or_default(),
                protocol: Protocol::from_kubernetes(p.protocol.as_deref())?,
                port: p.port.and_then(port_number)?,
            })
        })
        .collect();
    let mut endpoints = Vec::with_capacity(slice.endpoints.len());
    let mut places: Vec<Arc<Place>> = Vec::new();
    // Interned places are shared: the same place is the same allocation.
    let mut positions: rustc_hash::FxHashMap<*const Place, u32> = Default::default();
    endpoints.extend(slice.endpoints.iter().filter_map(|e| {
        let ip = parse_ip(e.addresses.first()?.trim())?;
        // A special endpoint would send the Service's traffic into the proxying host itself.
        if Family::of(ip) != family || SpecialAddress::of(ip).is_some() {
            return None;
        }
        let conditions = e.conditions.as_ref();
        // Kubernetes: a missing `ready` means ready; a missing `serving` means `ready`.
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
        let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
        let node_name = e.node_name.as_deref().filter(|n| !n.is_empty());
        let hints = e.hints.as_ref();
        let interner = &mut interners.strings;
        let zone_hints = match hints.and_then(|h| h.for_zones.as_deref()).unwrap_or_default() {
            [] => ZoneHints::Absent,
            [one] => ZoneHints::One(interner.intern(&one.name)),
            many => ZoneHints::Many(many.iter().map(|z| interner.intern(&z.name)).collect()),
        };
        let node_hints = hints.and_then(|h| h.for_nodes.as_ref()).filter(|n| !n.is_empty());
        let node_hint = match node_hints {
            None => NodeHint::Absent,
            Some(nodes) if nodes.iter().any(|n| n.name == config.node_name) => {
                NodeHint::ForThisNode
            }
            Some(_) => NodeHint::ForOtherNodes,
        };
        let place = Place {
            node_name: node_name.map(|n| interner.intern(n)),
            zone: e.zone.as_deref().filter(|z| !z.is_empty()).map(|z| interner.intern(z)),
            zone_hints,
        };
        let place = interners.places.intern_value(place);
        let position = match positions.entry(Arc::as_ptr(&place)) {
            std::collections::hash_map::Entry::Occupied(at) => *at.get(),
            std::collections::hash_map::Entry::Vacant(new) => {
                // Fewer than 2^32 places: each is an endpoint of the slice in memory.
                let position = u32::try_from(places.len()).ok()?;
                places.push(place);
                *new.insert(position)
            }
        };
        let is_local = node_name == Some(config.node_name.as_str());
        Some(EndpointFacts::new(ip, (ready, serving, terminating), is_local, node_hint, position))
    }));
    // Kept as long as the slice: no spare capacity (a filtered collect reserves room for four
    // ports; issue 20: 1 MB at 10,000 slices of one port).
    ports.shrink_to_fit();
    endpoints.shrink_to_fit();
    SliceFacts { service, family: Some(family), ports, endpoints, places: places.into() }
}

/// The taint the cluster autoscaler puts on a node it is about to remove.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// Whether a node may get traffic from external load balancers: it exists and is not going
/// away (deletionTimestamp set, or the cluster autoscaler's [`TO_BE_DELETED_TAINT`]), so load
/// balancers drain it first (kube-proxy's `nodeEligible`).
pub fn node_eligible(node: Option<&Node>) -> bool {
    node.is_some_and(|node| {
        let deleting = node.metadata.deletion_timestamp.is_some();
        let tainted = node
            .spec
            .as_ref()
            .and_then(|spec| spec.taints.as_ref())
            .is_some_and(|taints| taints.iter().any(|t| t.key == TO_BE_DELETED_TAINT));
        !deleting && !tainted
    })
}

/// What the rules need from this proxy's own Node object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NodeFacts {
    /// Addresses that carry NodePorts, sorted.
    pub(crate) node_port_addresses: Vec<IpAddr>,

    /// The node's own address per family (first InternalIP, else first ExternalIP).
    pub(crate) primary: crate::desired::PrimaryAddresses,
    pub(crate) zone: Option<String>,
}

pub(crate) fn node_facts(config: &ProxyConfig, node: Option<&Node>) -> NodeFacts {
    let Some(node) = node else {
        return NodeFacts::default();
    };
    let zone = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ZONE_LABEL))
        .filter(|z| !z.is_empty())
        .cloned();
    let addresses: Vec<(&str, IpAddr)> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| matches!(a.type_.as_str(), "InternalIP" | "ExternalIP"))
        .filter_map(|a| Some((a.type_.as_str(), parse_ip(a.address.trim())?)))
        .collect();
    let primary_of = |family: Family| {
        let of_type = |wanted: &str| {
            addresses
                .iter()
                .find(|(t, ip)| *t == wanted && Family::of(*ip) == family && !ip.is_loopback())
                .map(|(_, ip)| *ip)
        };
        of_type("InternalIP").or_else(|| of_type("ExternalIP"))
    };
    let primary = crate::desired::PrimaryAddresses {
        ipv4: match primary_of(Family::V4) {
            Some(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        },
        ipv6: match primary_of(Family::V6) {
            Some(IpAddr::V6(ip)) => Some(ip),
            _ => None,
        },
    };
    let mut chosen: Vec<IpAddr> = match &config.node_port_addresses {
        NodePortAddresses::All => {
            addresses.iter().map(|(_, ip)| *ip).filter(|ip| !ip.is_loopback()).collect()
        }
        NodePortAddresses::Primary => {
            [Family::V4, Family::V6].into_iter().filter_map(primary_of).collect()
        }
        NodePortAddresses::Cidrs(cidrs) => addresses
            .iter()
            .map(|(_, ip)| *ip)
            .filter(|ip| cidrs.iter().any(|c| c.contains(*ip)))
            .collect(),
    };
    chosen.sort();
    chosen.dedup();
    NodeFacts { node_port_addresses: chosen, primary, zone }
}

/// Every InternalIP and ExternalIP of a Node, sorted, each once: addresses no externalIP or
/// LoadBalancer IP may take.
pub(crate) fn node_addresses(node: Option<&Node>) -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = node
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| matches!(a.type_.as_str(), "InternalIP" | "ExternalIP"))
        .filter_map(|a| parse_ip(a.address.trim()))
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// A Kubernetes port number (i32) as a usable port: 1-65535.
pub(crate) fn port_number(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p != 0)
}

/// Parses addresses, skipping any that do not parse, keeping first-seen order without duplicates.
fn unique_ips<'a>(texts: impl Iterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in texts.filter_map(|t| parse_ip(t.trim())) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_facts_take_24_bytes_and_keep_their_flags() {
        assert_eq!(size_of::<EndpointFacts>(), 24);
        let ip: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        for hint in [NodeHint::Absent, NodeHint::ForThisNode, NodeHint::ForOtherNodes] {
            for bits in 0..16u8 {
                let on = |bit: u8| bits & (1 << bit) != 0;
                let e = EndpointFacts::new(ip, (on(0), on(1), on(2)), on(3), hint, 7);
                assert_eq!(
                    (e.ready(), e.serving(), e.terminating(), e.is_local(), e.node_hint()),
                    (on(0), on(1), on(2), on(3), hint)
                );
                assert_eq!((e.ip, e.place), (ip, 7));
            }
        }
    }
}
