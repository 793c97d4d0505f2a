//! What the allocator reads from a Service: whether it is ours, the families it wants, what it
//! requests, how it may share, and the addresses its status already holds.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Annotation: the addresses a Service asks for, comma-separated, at most one per family.
pub const LOAD_BALANCER_IPS_ANNOTATION: &str = "switchyard.io/load-balancer-ips";
/// Annotation: the IPPool a Service takes its addresses from.
pub const IP_POOL_ANNOTATION: &str = "switchyard.io/ip-pool";
/// Annotation: Services with the same value may share an address (MetalLB's rule).
pub const ALLOW_SHARED_IP_ANNOTATION: &str = "switchyard.io/allow-shared-ip";

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    IPv4,
    IPv6,
}

impl Family {
    pub fn of(address: IpAddr) -> Self {
        if address.is_ipv4() { Self::IPv4 } else { Self::IPv6 }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::IPv4 => "IPv4",
            Self::IPv6 => "IPv6",
        })
    }
}

/// A port a Service exposes, for the sharing rule.
pub(crate) type PortKey = (String, i32);

/// A LoadBalancer Service of ours, as far as allocation cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wants {
    /// `spec.ipFamilies` (default: the family of the cluster IP, else IPv4), in order.
    pub(crate) families: Vec<Family>,
    /// Requested addresses (annotation, else `spec.loadBalancerIP`); `Err` says why the request
    /// cannot be read.
    pub(crate) requested: Result<Vec<IpAddr>, String>,
    /// `switchyard.io/ip-pool`.
    pub(crate) pool: Option<String>,
    /// `switchyard.io/allow-shared-ip`.
    pub(crate) sharing_key: Option<String>,
    /// (protocol, port) of every port.
    pub(crate) ports: Vec<PortKey>,
    /// `externalTrafficPolicy: Local`.
    pub(crate) local_policy: bool,
    /// `spec.selector` (compared for sharing under Local policy).
    pub(crate) selector: BTreeMap<String, String>,
}

impl Wants {
    /// The requested address of `family`, if the request names one.
    pub(crate) fn requested_of(&self, family: Family) -> Option<IpAddr> {
        self.requested.as_ref().ok()?.iter().copied().find(|a| Family::of(*a) == family)
    }
}

/// Everything the allocator reads from one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceFacts {
    /// `metadata.creationTimestamp`: the older claim wins.
    pub(crate) created: Option<Time>,
    pub(crate) labels: BTreeMap<String, String>,
    /// `None`: not a LoadBalancer Service of our class.
    pub(crate) wants: Option<Wants>,
    /// The IPs in `status.loadBalancer.ingress` (claimed when the allocator first sees it).
    pub(crate) status_ips: Vec<IpAddr>,
}

impl ServiceFacts {
    /// Reads `service`; `class` is our loadBalancerClass (Services with none are ours too).
    pub(crate) fn read(service: &Service, class: Option<&str>) -> Self {
        let metadata = &service.metadata;
        let spec = service.spec.as_ref();
        let is_load_balancer = spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        let service_class = spec.and_then(|s| s.load_balancer_class.as_deref());
        let ours = is_load_balancer && service_class.is_none_or(|c| Some(c) == class);
        let status_ips = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect();
        Self {
            created: metadata.creation_timestamp.clone(),
            labels: metadata.labels.clone().unwrap_or_default(),
            wants: ours.then(|| wants(service)),
            status_ips,
        }
    }
}

fn wants(service: &Service) -> Wants {
    let spec = service.spec.clone().unwrap_or_default();
    let annotations = service.metadata.annotations.clone().unwrap_or_default();
    let mut families: Vec<Family> = spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(Family::IPv4),
            "IPv6" => Some(Family::IPv6),
            _ => None,
        })
        .collect();
    families.dedup();
    if families.is_empty() {
        let cluster_ip = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok());
        families.push(cluster_ip.map_or(Family::IPv4, Family::of));
    }
    let request = match annotations.get(LOAD_BALANCER_IPS_ANNOTATION) {
        Some(text) => Some((format!("annotation {LOAD_BALANCER_IPS_ANNOTATION}"), text.clone())),
        None => spec
            .load_balancer_ip
            .clone()
            .filter(|ip| !ip.trim().is_empty())
            .map(|ip| ("spec.loadBalancerIP".to_owned(), ip)),
    };
    let requested = match request {
        None => Ok(Vec::new()),
        Some((field, text)) => parse_request(&field, &text, &families),
    };
    let non_empty =
        |key: &str| annotations.get(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    Wants {
        families,
        requested,
        pool: non_empty(IP_POOL_ANNOTATION),
        sharing_key: non_empty(ALLOW_SHARED_IP_ANNOTATION),
        ports: spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()), p.port))
            .collect(),
        local_policy: spec.external_traffic_policy.as_deref() == Some("Local"),
        selector: spec.selector.unwrap_or_default(),
    }
}

/// Parses a comma-separated request: addresses, at most one per family, each of a family the
/// Service has.
fn parse_request(field: &str, text: &str, families: &[Family]) -> Result<Vec<IpAddr>, String> {
    let mut addresses: Vec<IpAddr> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let address: IpAddr =
            item.parse().map_err(|_| format!("{field}: {item:?} is not an IP address"))?;
        let family = Family::of(address);
        if addresses.iter().any(|a| Family::of(*a) == family) {
            return Err(format!("{field}: more than one {family} address"));
        }
        if !families.contains(&family) {
            return Err(format!(
                "{field}: {address} is {family}, which spec.ipFamilies does not list"
            ));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

/// Why two Services may not share an address (MetalLB's rule: the same sharing key, no port used
/// by both with one protocol, the same externalTrafficPolicy, and under Local the same pods);
/// `None` when they may.
pub(crate) fn sharing_conflict(a: &Wants, b: &Wants) -> Option<String> {
    match (&a.sharing_key, &b.sharing_key) {
        (Some(x), Some(y)) if x == y => {}
        (None, _) | (_, None) => {
            return Some(format!("sharing needs annotation {ALLOW_SHARED_IP_ANNOTATION} on both"));
        }
        (Some(x), Some(y)) => return Some(format!("sharing keys differ ({x:?} and {y:?})")),
    }
    if let Some((protocol, port)) = a.ports.iter().find(|p| b.ports.contains(p)) {
        return Some(format!("both use port {port}/{protocol}"));
    }
    if a.local_policy != b.local_policy {
        return Some("their externalTrafficPolicy differs".to_owned());
    }
    if a.local_policy && a.selector != b.selector {
        return Some("externalTrafficPolicy Local needs the same pod selector".to_owned());
    }
    None
}
