//! How this proxy instance is configured: which node it serves and the knobs kube-proxy also has.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;

/// Annotation that selects the backend selection algorithm (value `maglev` or `random`).
pub const DEFAULT_ALGORITHM_ANNOTATION: &str = "switchyard.io/lb-algorithm";
/// Session affinity timeout Kubernetes applies when a Service does not set one.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;
/// Largest session affinity timeout Kubernetes accepts.
pub const MAX_AFFINITY_TIMEOUT_SECONDS: u32 = 86_400;

/// Settings of one proxy instance. The model computes the desired state of `node_name` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// Name of the Node object this proxy runs on; endpoints with this `nodeName` are local.
    pub node_name: String,
    /// `None`: serve only Services without the `service.kubernetes.io/service-proxy-name` label.
    /// `Some(name)`: serve only Services whose label equals `name`.
    pub proxy_name: Option<String>,
    /// Which of the node's addresses accept NodePort traffic.
    pub node_port_addresses: NodePortAddresses,
    /// NodePorts outside this range are not programmed (validation reports them).
    pub node_port_range: PortRange,
    /// Service annotation whose value `maglev` selects Maglev hashing instead of random choice.
    pub algorithm_annotation: String,
    /// Affinity timeout for `sessionAffinity: ClientIP` without `timeoutSeconds`.
    pub default_affinity_timeout_seconds: u32,
    /// `spec.externalIPs` served only inside these prefixes (the agent's `--external-ip-cidrs`);
    /// empty serves none. Whatever the list, an externalIP never takes another Service's cluster
    /// IP or an address of this node (see [`crate::Refusal`]).
    #[serde(default = "all_addresses")]
    pub external_ip_cidrs: Vec<Cidr>,
}

impl ProxyConfig {
    /// The defaults for a proxy on `node_name` (kube-proxy's defaults where it has one).
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            proxy_name: None,
            node_port_addresses: NodePortAddresses::default(),
            node_port_range: PortRange::default(),
            algorithm_annotation: DEFAULT_ALGORITHM_ANNOTATION.to_owned(),
            default_affinity_timeout_seconds: DEFAULT_AFFINITY_TIMEOUT_SECONDS,
            external_ip_cidrs: all_addresses(),
        }
    }

    /// Whether `spec.externalIPs` may hold `ip` ([`Self::external_ip_cidrs`]).
    pub fn allows_external_ip(&self, ip: std::net::IpAddr) -> bool {
        self.external_ip_cidrs.iter().any(|cidr| cidr.contains(ip))
    }
}

/// `0.0.0.0/0` and `::/0`: the default of [`ProxyConfig::external_ip_cidrs`] (kube-proxy serves
/// every externalIP; the ownership rules already keep them off cluster IPs and node addresses).
pub fn all_addresses() -> Vec<Cidr> {
    ["0.0.0.0/0", "::/0"].iter().filter_map(|text| text.parse().ok()).collect()
}

/// Parses `--external-ip-cidrs`: `all`, `none`, or a comma-separated CIDR list.
pub fn parse_external_ip_cidrs(text: &str) -> Result<Vec<Cidr>, crate::CidrError> {
    match text.trim() {
        "all" => Ok(all_addresses()),
        "none" | "" => Ok(Vec::new()),
        list => list.split(',').map(|cidr| cidr.trim().parse()).collect(),
    }
}

/// Parses `--nodeport-addresses` (kube-proxy's flag): `all` (or empty), `primary`, or a
/// comma-separated CIDR list.
pub fn parse_node_port_addresses(text: &str) -> Result<NodePortAddresses, crate::CidrError> {
    match text.trim() {
        "all" | "" => Ok(NodePortAddresses::All),
        "primary" => Ok(NodePortAddresses::Primary),
        list => list
            .split(',')
            .map(|cidr| cidr.trim().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(NodePortAddresses::Cidrs),
    }
}

/// Which node addresses (from the Node object's `status.addresses`) carry NodePorts.
/// Loopback addresses never do unless a CIDR names them explicitly (CVE-2020-8558).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodePortAddresses {
    /// The node's first InternalIP of each address family (its first ExternalIP if it has no
    /// InternalIP of that family) — kube-proxy's `--nodeport-addresses primary`.
    Primary,
    /// Every InternalIP and ExternalIP of the node (kube-proxy's default without the flag).
    #[default]
    All,
    /// Every InternalIP and ExternalIP of the node that lies in one of these prefixes.
    Cidrs(Vec<Cidr>),
}

/// An inclusive range of port numbers, e.g. the NodePort range `30000-32767`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl Default for PortRange {
    fn default() -> Self {
        Self { first: 30_000, last: 32_767 }
    }
}

/// Why a port range did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a port range: expected FIRST-LAST with 1 <= FIRST <= LAST <= 65535")]
pub struct PortRangeError(String);

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || PortRangeError(text.to_owned());
        let (first, last) = text.trim().split_once('-').ok_or_else(error)?;
        let first: u16 = first.trim().parse().map_err(|_| error())?;
        let last: u16 = last.trim().parse().map_err(|_| error())?;
        if first == 0 || first > last {
            return Err(error());
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_parses_inclusive_bounds() {
        let cases: &[(&str, Option<(u16, u16)>)] = &[
            ("30000-32767", Some((30000, 32767))),
            ("80-80", Some((80, 80))),
            (" 1 - 65535 ", Some((1, 65535))),
            ("0-100", None),
            ("200-100", None),
            ("30000", None),
            ("30000-70000", None),
        ];
        for (input, expected) in cases {
            let got = input.parse::<PortRange>().ok().map(|r| (r.first, r.last));
            assert_eq!(got, *expected, "input {input:?}");
        }
        let range: PortRange = "100-200".parse().unwrap();
        assert!(range.contains(100) && range.contains(200));
        assert!(!range.contains(99) && !range.contains(201));
    }

    #[test]
    fn external_ip_cidrs_parse_keywords_and_lists() {
        let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        let config = |text: &str| ProxyConfig {
            external_ip_cidrs: parse_external_ip_cidrs(text).unwrap(),
            ..ProxyConfig::new("n")
        };
        assert!(config("all").allows_external_ip(ip("203.0.113.5")));
        assert!(config("all").allows_external_ip(ip("2001:db8::5")));
        assert!(ProxyConfig::new("n").allows_external_ip(ip("203.0.113.5")));
        assert!(!config("none").allows_external_ip(ip("203.0.113.5")));
        let listed = config("203.0.113.0/24, 2001:db8::/64");
        assert!(listed.allows_external_ip(ip("203.0.113.5")));
        assert!(listed.allows_external_ip(ip("2001:db8::5")));
        assert!(!listed.allows_external_ip(ip("198.51.100.5")));
        assert!(parse_external_ip_cidrs("203.0.113.5").is_err());
    }
}
