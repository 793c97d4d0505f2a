//! Semantic validation: what the API server (and an experienced operator) would reject in objects
//! that parsed fine — ports out of range, NodePort clashes, addresses that do not parse, values no
//! proxy understands. Pure: objects in, findings out.
//!
//! The model itself is lenient (it drops what it cannot use, see `parse`); this module says *why*
//! something would be dropped, naming the object and the field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::cidr::{Cidr, CidrError};
use crate::config::{MAX_AFFINITY_TIMEOUT_SECONDS, PortRange};
use crate::input::{ClusterState, ObjectKey, ObjectKind};
use crate::parse::SERVICE_NAME_LABEL;

/// Settings validation depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    #[error("required")]
    Required,
    #[error("port {value} is outside 1-65535")]
    PortOutOfRange { value: i64 },
    #[error("NodePort {value} is outside the NodePort range {range}")]
    NodePortOutOfRange { value: i32, range: PortRange },
    #[error("{what} {port}/{protocol} is already used by Service {other} ({other_field})")]
    NodePortCollision {
        what: &'static str,
        port: i32,
        protocol: String,
        other: ObjectKey,
        other_field: String,
    },
    #[error("cluster IP {ip} is already used by Service {other}")]
    ClusterIpCollision { ip: IpAddr, other: ObjectKey },
    #[error("{value:?} is not an IP address")]
    BadAddress { value: String },
    #[error("{value:?} is not an {family} address")]
    WrongFamily { value: String, family: &'static str },
    #[error(transparent)]
    BadCidr(#[from] CidrError),
    #[error("{value:?} is not supported; expected one of {expected}")]
    Unsupported { value: String, expected: &'static str },
    #[error("{value:?} is not a valid {what}: {rule}")]
    BadName { value: String, what: &'static str, rule: &'static str },
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
    check_node_port_collisions(state, options, &mut findings);
    check_cluster_ip_collisions(state, &mut findings);
    check_joins(state, &mut findings);
    crate::crd::check::check(state, &mut findings);
    findings.sort_by(|a, b| (a.kind, &a.object).cmp(&(b.kind, &b.object)));
    findings
}

const SERVICE_TYPES: &str = "ClusterIP, NodePort, LoadBalancer, ExternalName";
const PROTOCOLS: &str = "TCP, UDP, SCTP";
const POLICIES: &str = "Cluster, Local";

fn service_type(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("ClusterIP")
}

fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some("None")
        || spec
            .cluster_ips
            .as_ref()
            .is_some_and(|ips| ips.first().map(String::as_str) == Some("None"))
}

/// Validates one Service on its own (no cross-object checks).
pub fn validate_service(
    key: &ObjectKey,
    service: &Service,
    options: &ValidationOptions,
    findings: &mut Vec<Finding>,
) {
    let mut report = Report { kind: ObjectKind::Service, object: key, findings };
    check_dns1035_label(&mut report, "metadata.name", &key.name, "Service name");
    let Some(spec) = service.spec.as_ref() else {
        report.error("spec", Problem::Required);
        return;
    };
    let type_ = service_type(spec);
    if !matches!(type_, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        report.error(
            "spec.type",
            Problem::Unsupported { value: type_.to_owned(), expected: SERVICE_TYPES },
        );
        return;
    }
    let headless = is_headless(spec);
    if type_ == "ExternalName" {
        match spec.external_name.as_deref() {
            None | Some("") => report.error("spec.externalName", Problem::Required),
            Some(name) => check_dns1123_subdomain(
                &mut report,
                "spec.externalName",
                name.trim_end_matches('.'),
                "DNS name",
            ),
        }
        if spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty() && ip != "None") {
            report.error(
                "spec.clusterIP",
                Problem::Rule("must be empty for type ExternalName".to_owned()),
            );
        }
    } else {
        if headless && matches!(type_, "NodePort" | "LoadBalancer") {
            report.error(
                "spec.clusterIP",
                Problem::Rule(format!("may not be None (headless) for type {type_}")),
            );
        }
        check_cluster_ips(&mut report, spec);
        if spec.ports.as_ref().is_none_or(Vec::is_empty) && !headless {
            report.error("spec.ports", Problem::Required);
        }
    }
    check_service_ports(&mut report, spec, type_, options);

    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        check_ip(&mut report, format!("spec.externalIPs[{i}]"), ip, None);
    }
    if let Some(ip) = spec.load_balancer_ip.as_deref().filter(|ip| !ip.is_empty()) {
        check_ip(&mut report, "spec.loadBalancerIP", ip, None);
    }
    let ranges = spec.load_balancer_source_ranges.as_deref().unwrap_or_default();
    if !ranges.is_empty() && type_ != "LoadBalancer" {
        report.error(
            "spec.loadBalancerSourceRanges",
            Problem::Rule("may only be used when type is LoadBalancer".to_owned()),
        );
    }
    for (i, range) in ranges.iter().enumerate() {
        if let Err(err) = range.parse::<Cidr>() {
            report.error(format!("spec.loadBalancerSourceRanges[{i}]"), err.into());
        }
    }
    check_traffic_policies(&mut report, spec, type_, options);
    check_session_affinity(&mut report, spec);
    if let Some(distribution) = spec.traffic_distribution.as_deref()
        && !matches!(distribution, "PreferClose" | "PreferSameZone" | "PreferSameNode")
    {
        report.error(
            "spec.trafficDistribution",
            Problem::Unsupported {
                value: distribution.to_owned(),
                expected: "PreferClose, PreferSameZone, PreferSameNode",
            },
        );
    }

    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for (i, entry) in ingress.into_iter().flatten().enumerate() {
        let field = format!("status.loadBalancer.ingress[{i}]");
        match (entry.ip.as_deref(), entry.hostname.as_deref()) {
            (Some(ip), _) => check_ip(&mut report, format!("{field}.ip"), ip, None),
            (None, Some(_)) => {}
            (None, None) => {
                report.error(field.clone(), Problem::Rule("needs ip or hostname".to_owned()))
            }
        }
        if let Some(mode) = entry.ip_mode.as_deref() {
            if !matches!(mode, "VIP" | "Proxy") {
                report.error(
                    format!("{field}.ipMode"),
                    Problem::Unsupported { value: mode.to_owned(), expected: "VIP, Proxy" },
                );
            } else if entry.ip.is_none() {
                report.error(format!("{field}.ipMode"), Problem::Rule("requires ip".to_owned()));
            }
        }
    }
}

fn check_cluster_ips(report: &mut Report<'_>, spec: &ServiceSpec) {
    let cluster_ips = spec.cluster_ips.as_deref().unwrap_or_default();
    if let (Some(single), Some(first)) = (spec.cluster_ip.as_deref(), cluster_ips.first())
        && !single.is_empty()
        && single != first
    {
        report.error(
            "spec.clusterIPs[0]",
            Problem::Rule(format!("must equal spec.clusterIP ({single}), is {first}")),
        );
    }
    let mut families = Vec::new();
    if cluster_ips.is_empty() {
        if let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") {
            check_ip(report, "spec.clusterIP", ip, None);
        }
    } else if cluster_ips[0] != "None" {
        if cluster_ips.len() > 2 {
            report.error(
                "spec.clusterIPs",
                Problem::Rule(format!(
                    "at most two addresses (one per family), found {}",
                    cluster_ips.len()
                )),
            );
        }
        for (i, ip) in cluster_ips.iter().enumerate() {
            match ip.parse::<IpAddr>() {
                Ok(parsed) => families.push((i, parsed.is_ipv4())),
                Err(_) => report.error(
                    format!("spec.clusterIPs[{i}]"),
                    Problem::BadAddress { value: ip.clone() },
                ),
            }
        }
        if let [(_, first), (second_index, second)] = families[..]
            && first == second
        {
            report.error(
                format!("spec.clusterIPs[{second_index}]"),
                Problem::Rule("dual-stack cluster IPs must be of different families".to_owned()),
            );
        }
    }
    if let Some(policy) = spec.ip_family_policy.as_deref() {
        match policy {
            "SingleStack" if cluster_ips.len() > 1 => report.error(
                "spec.ipFamilyPolicy",
                Problem::Rule("SingleStack allows one cluster IP, found two".to_owned()),
            ),
            "RequireDualStack" if families.len() == 1 => report.error(
                "spec.ipFamilyPolicy",
                Problem::Rule("RequireDualStack needs a cluster IP of each family".to_owned()),
            ),
            "SingleStack" | "PreferDualStack" | "RequireDualStack" => {}
            other => report.error(
                "spec.ipFamilyPolicy",
                Problem::Unsupported {
                    value: other.to_owned(),
                    expected: "SingleStack, PreferDualStack, RequireDualStack",
                },
            ),
        }
    }
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        let expected_v4 = match family.as_str() {
            "IPv4" => true,
            "IPv6" => false,
            other => {
                report.error(
                    format!("spec.ipFamilies[{i}]"),
                    Problem::Unsupported { value: other.to_owned(), expected: "IPv4, IPv6" },
                );
                continue;
            }
        };
        if let Some((_, is_v4)) = families.iter().find(|(index, _)| *index == i)
            && *is_v4 != expected_v4
        {
            report.error(
                format!("spec.ipFamilies[{i}]"),
                Problem::Rule(format!("{family} does not match spec.clusterIPs[{i}]")),
            );
        }
    }
}

fn check_service_ports(
    report: &mut Report<'_>,
    spec: &ServiceSpec,
    type_: &str,
    options: &ValidationOptions,
) {
    let ports = spec.ports.as_deref().unwrap_or_default();
    let exposes_node_ports = matches!(type_, "NodePort" | "LoadBalancer");
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut numbers: BTreeMap<(i32, &str), usize> = BTreeMap::new();
    let mut node_ports: BTreeMap<(i32, &str), usize> = BTreeMap::new();
    for (i, port) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            report.error(
                format!("{field}.protocol"),
                Problem::Unsupported { value: protocol.to_owned(), expected: PROTOCOLS },
            );
        }
        check_port_name(report, &field, port, ports.len(), &mut names, i);
        if !(1..=65535).contains(&port.port) {
            report.error(
                format!("{field}.port"),
                Problem::PortOutOfRange { value: port.port.into() },
            );
        } else if let Some(first) = numbers.insert((port.port, protocol), i) {
            report.error(
                format!("{field}.port"),
                Problem::Duplicate {
                    what: "port",
                    value: format!("{}/{protocol}", port.port),
                    other_field: format!("spec.ports[{first}]"),
                },
            );
        }
        match &port.target_port {
            Some(IntOrString::Int(target)) if *target != 0 && !(1..=65535).contains(target) => {
                report.error(
                    format!("{field}.targetPort"),
                    Problem::PortOutOfRange { value: (*target).into() },
                );
            }
            Some(IntOrString::String(name)) => {
                check_port_name_syntax(report, format!("{field}.targetPort"), name);
            }
            _ => {}
        }
        if let Some(node_port) = port.node_port.filter(|p| *p != 0) {
            let node_port_field = format!("{field}.nodePort");
            if !exposes_node_ports {
                report.error(
                    node_port_field,
                    Problem::Rule(format!("may not be used when type is {type_}")),
                );
            } else if !in_range(options.node_port_range, node_port) {
                report.error(
                    node_port_field,
                    Problem::NodePortOutOfRange {
                        value: node_port,
                        range: options.node_port_range,
                    },
                );
            } else if let Some(first) = node_ports.insert((node_port, protocol), i) {
                report.error(
                    node_port_field,
                    Problem::Duplicate {
                        what: "nodePort",
                        value: format!("{node_port}/{protocol}"),
                        other_field: format!("spec.ports[{first}].nodePort"),
                    },
                );
            }
        }
    }
}

fn check_port_name<'s>(
    report: &mut Report<'_>,
    field: &str,
    port: &'s ServicePort,
    port_count: usize,
    names: &mut BTreeMap<&'s str, usize>,
    index: usize,
) {
    match port.name.as_deref().filter(|n| !n.is_empty()) {
        None if port_count > 1 => report.error(
            format!("{field}.name"),
            Problem::Rule("required when a Service has more than one port".to_owned()),
        ),
        None => {}
        Some(name) => {
            check_dns1123_label(report, format!("{field}.name"), name, "port name");
            if let Some(first) = names.insert(name, index) {
                report.error(
                    format!("{field}.name"),
                    Problem::Duplicate {
                        what: "port name",
                        value: name.to_owned(),
                        other_field: format!("spec.ports[{first}]"),
                    },
                );
            }
        }
    }
}

fn check_traffic_policies(
    report: &mut Report<'_>,
    spec: &ServiceSpec,
    type_: &str,
    options: &ValidationOptions,
) {
    let externally_accessible = matches!(type_, "NodePort" | "LoadBalancer")
        || spec.external_ips.as_ref().is_some_and(|ips| !ips.is_empty());
    if let Some(policy) = spec.external_traffic_policy.as_deref() {
        if !matches!(policy, "Cluster" | "Local") {
            report.error(
                "spec.externalTrafficPolicy",
                Problem::Unsupported { value: policy.to_owned(), expected: POLICIES },
            );
        } else if !externally_accessible && type_ != "ExternalName" {
            report.error(
                "spec.externalTrafficPolicy",
                Problem::Rule(
                    "may only be set for externally-accessible Services (NodePort, LoadBalancer, externalIPs)"
                        .to_owned(),
                ),
            );
        }
    }
    if let Some(policy) = spec.internal_traffic_policy.as_deref()
        && !matches!(policy, "Cluster" | "Local")
    {
        report.error(
            "spec.internalTrafficPolicy",
            Problem::Unsupported { value: policy.to_owned(), expected: POLICIES },
        );
    }
    if let Some(port) = spec.health_check_node_port.filter(|p| *p != 0) {
        let local_load_balancer =
            type_ == "LoadBalancer" && spec.external_traffic_policy.as_deref() == Some("Local");
        if !local_load_balancer {
            report.error(
                "spec.healthCheckNodePort",
                Problem::Rule(
                    "may only be set when type is LoadBalancer and externalTrafficPolicy is Local"
                        .to_owned(),
                ),
            );
        } else if !in_range(options.node_port_range, port) {
            report.error(
                "spec.healthCheckNodePort",
                Problem::NodePortOutOfRange { value: port, range: options.node_port_range },
            );
        }
    }
}

fn check_session_affinity(report: &mut Report<'_>, spec: &ServiceSpec) {
    let affinity = spec.session_affinity.as_deref().unwrap_or("None");
    if !matches!(affinity, "None" | "ClientIP") {
        report.error(
            "spec.sessionAffinity",
            Problem::Unsupported { value: affinity.to_owned(), expected: "None, ClientIP" },
        );
        return;
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    let Some(timeout) = timeout else { return };
    let field = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
    if affinity == "None" {
        report
            .error(field, Problem::Rule("must not be set when sessionAffinity is None".to_owned()));
    } else if timeout < 1 || i64::from(timeout) > i64::from(MAX_AFFINITY_TIMEOUT_SECONDS) {
        report.error(
            field,
            Problem::Rule(format!("{timeout} is outside 1-{MAX_AFFINITY_TIMEOUT_SECONDS} seconds")),
        );
    }
}

/// Validates one EndpointSlice on its own.
pub fn validate_endpoint_slice(
    key: &ObjectKey,
    slice: &EndpointSlice,
    findings: &mut Vec<Finding>,
) {
    let mut report = Report { kind: ObjectKind::EndpointSlice, object: key, findings };
    let family = match slice.address_type.as_str() {
        "IPv4" => Some(true),
        "IPv6" => Some(false),
        "FQDN" => None,
        other => {
            report.error(
                "addressType",
                Problem::Unsupported { value: other.to_owned(), expected: "IPv4, IPv6, FQDN" },
            );
            return;
        }
    };
    for (i, endpoint) in slice.endpoints.iter().enumerate() {
        let field = format!("endpoints[{i}]");
        if endpoint.addresses.is_empty() {
            report.error(format!("{field}.addresses"), Problem::Required);
        }
        for (j, address) in endpoint.addresses.iter().enumerate() {
            let address_field = format!("{field}.addresses[{j}]");
            match family {
                Some(is_v4) => check_ip(&mut report, address_field, address, Some(is_v4)),
                None => check_dns1123_subdomain(&mut report, address_field, address, "FQDN"),
            }
        }
        let hints = endpoint.hints.as_ref();
        for (j, zone) in hints.and_then(|h| h.for_zones.as_ref()).into_iter().flatten().enumerate()
        {
            if zone.name.is_empty() {
                report.error(format!("{field}.hints.forZones[{j}].name"), Problem::Required);
            }
        }
        for (j, node) in hints.and_then(|h| h.for_nodes.as_ref()).into_iter().flatten().enumerate()
        {
            if node.name.is_empty() {
                report.error(format!("{field}.hints.forNodes[{j}].name"), Problem::Required);
            }
        }
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, port) in slice.ports.iter().flatten().enumerate() {
        let field = format!("ports[{i}]");
        if let Some(number) = port.port
            && !(1..=65535).contains(&number)
        {
            report.error(format!("{field}.port"), Problem::PortOutOfRange { value: number.into() });
        }
        if let Some(protocol) = port.protocol.as_deref()
            && !matches!(protocol, "TCP" | "UDP" | "SCTP")
        {
            report.error(
                format!("{field}.protocol"),
                Problem::Unsupported { value: protocol.to_owned(), expected: PROTOCOLS },
            );
        }
        let name = port.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            check_dns1123_label(&mut report, format!("{field}.name"), name, "port name");
        }
        if let Some(first) = names.insert(name, i) {
            report.error(
                format!("{field}.name"),
                Problem::Duplicate {
                    what: "port name",
                    value: name.to_owned(),
                    other_field: format!("ports[{first}]"),
                },
            );
        }
    }
}

/// Validates one Node on its own.
pub fn validate_node(key: &ObjectKey, node: &Node, findings: &mut Vec<Finding>) {
    let mut report = Report { kind: ObjectKind::Node, object: key, findings };
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    let mut has_ip = false;
    for (i, address) in addresses.into_iter().flatten().enumerate() {
        let field = format!("status.addresses[{i}]");
        match address.type_.as_str() {
            "InternalIP" | "ExternalIP" => {
                has_ip = true;
                check_ip(&mut report, format!("{field}.address"), &address.address, None);
            }
            "Hostname" | "InternalDNS" | "ExternalDNS" => {}
            other => report.warning(
                format!("{field}.type"),
                Problem::Unsupported {
                    value: other.to_owned(),
                    expected: "InternalIP, ExternalIP, Hostname, InternalDNS, ExternalDNS",
                },
            ),
        }
    }
    if !has_ip {
        report.warning(
            "status.addresses",
            Problem::Rule(
                "no InternalIP or ExternalIP: this node cannot serve NodePorts".to_owned(),
            ),
        );
    }
    let spec = node.spec.as_ref();
    if let Some(cidr) = spec.and_then(|s| s.pod_cidr.as_deref())
        && let Err(err) = cidr.parse::<Cidr>()
    {
        report.error("spec.podCIDR", err.into());
    }
    for (i, cidr) in spec.and_then(|s| s.pod_cidrs.as_ref()).into_iter().flatten().enumerate() {
        if let Err(err) = cidr.parse::<Cidr>() {
            report.error(format!("spec.podCIDRs[{i}]"), err.into());
        }
    }
}

/// NodePorts (and health check node ports) are a cluster-wide resource: two Services may not
/// claim the same port and protocol ("should prevent NodePort collisions").
fn check_node_port_collisions(
    state: &ClusterState,
    options: &ValidationOptions,
    findings: &mut Vec<Finding>,
) {
    let mut owners: BTreeMap<(i32, String), (&ObjectKey, String)> = BTreeMap::new();
    for (key, service) in &state.services {
        let Some(spec) = service.spec.as_ref() else { continue };
        if !matches!(service_type(spec), "NodePort" | "LoadBalancer") {
            continue;
        }
        let mut claims: Vec<(i32, String, String, &'static str)> = Vec::new();
        for (i, port) in spec.ports.iter().flatten().enumerate() {
            if let Some(node_port) =
                port.node_port.filter(|p| in_range(options.node_port_range, *p))
            {
                let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
                claims.push((node_port, protocol, format!("spec.ports[{i}].nodePort"), "NodePort"));
            }
        }
        if let Some(port) =
            spec.health_check_node_port.filter(|p| in_range(options.node_port_range, *p))
        {
            // The health check is served over HTTP, so it takes the TCP port.
            claims.push((
                port,
                "TCP".to_owned(),
                "spec.healthCheckNodePort".to_owned(),
                "healthCheckNodePort",
            ));
        }
        let mut own = BTreeSet::new();
        for (port, protocol, field, what) in claims {
            if !own.insert((port, protocol.clone())) {
                continue; // a clash inside one Service is reported by validate_service
            }
            match owners.get(&(port, protocol.clone())) {
                Some((other, other_field)) => findings.push(Finding {
                    severity: Severity::Error,
                    kind: ObjectKind::Service,
                    object: key.clone(),
                    field,
                    problem: Problem::NodePortCollision {
                        what,
                        port,
                        protocol,
                        other: (*other).clone(),
                        other_field: other_field.clone(),
                    },
                }),
                None => {
                    owners.insert((port, protocol), (key, field));
                }
            }
        }
    }
}

/// A cluster IP belongs to one Service; two Services with the same one cannot both be served.
fn check_cluster_ip_collisions(state: &ClusterState, findings: &mut Vec<Finding>) {
    let mut owners: BTreeMap<IpAddr, &ObjectKey> = BTreeMap::new();
    for (key, service) in &state.services {
        let Some(spec) = service.spec.as_ref() else { continue };
        let ips: Vec<&String> = match spec.cluster_ips.as_deref() {
            Some(ips) if !ips.is_empty() => ips.iter().collect(),
            _ => spec.cluster_ip.iter().collect(),
        };
        for (i, text) in ips.into_iter().enumerate() {
            let Ok(ip) = text.parse::<IpAddr>() else { continue };
            match owners.get(&ip) {
                Some(other) => findings.push(Finding {
                    severity: Severity::Error,
                    kind: ObjectKind::Service,
                    object: key.clone(),
                    field: format!("spec.clusterIPs[{i}]"),
                    problem: Problem::ClusterIpCollision { ip, other: (*other).clone() },
                }),
                None => {
                    owners.insert(ip, key);
                }
            }
        }
    }
}

/// EndpointSlices reach a Service through the `kubernetes.io/service-name` label, and endpoints
/// reach a node through `nodeName`. A typo in either silently loses endpoints, so say so.
fn check_joins(state: &ClusterState, findings: &mut Vec<Finding>) {
    // Service → (port name, protocol) pairs its EndpointSlices offer.
    let mut slice_ports: BTreeMap<ObjectKey, BTreeSet<(String, String)>> = BTreeMap::new();
    for (key, slice) in &state.endpoint_slices {
        let mut report = Report { kind: ObjectKind::EndpointSlice, object: key, findings };
        let service_name = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
        match service_name.filter(|name| !name.is_empty()) {
            None => report.warning(
                format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
                Problem::Rule("missing: this EndpointSlice belongs to no Service".to_owned()),
            ),
            Some(name) => {
                let service = ObjectKey::new(key.namespace.clone(), name.clone());
                if state.services.contains_key(&service) {
                    let offered = slice.ports.iter().flatten().map(|p| {
                        let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
                        (p.name.clone().unwrap_or_default(), protocol)
                    });
                    slice_ports.entry(service).or_default().extend(offered);
                } else {
                    report.warning(
                        format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
                        Problem::Rule(format!("Service {service} does not exist")),
                    );
                }
            }
        }
        if !state.nodes.is_empty() {
            for (i, endpoint) in slice.endpoints.iter().enumerate() {
                if let Some(node) = endpoint.node_name.as_deref()
                    && !state.nodes.contains_key(&ObjectKey::cluster(node))
                {
                    report.warning(
                        format!("endpoints[{i}].nodeName"),
                        Problem::Rule(format!("Node {node} does not exist")),
                    );
                }
            }
        }
    }
    for (key, service) in &state.services {
        let Some(spec) = service.spec.as_ref() else { continue };
        if service_type(spec) == "ExternalName" || is_headless(spec) {
            continue;
        }
        let mut report = Report { kind: ObjectKind::Service, object: key, findings };
        let Some(offered) = slice_ports.get(key) else {
            report.warning(
                "spec",
                Problem::Rule(format!(
                    "no EndpointSlice is labelled {SERVICE_NAME_LABEL}={}: connections will be refused",
                    key.name
                )),
            );
            continue;
        };
        // Backends are found by Service port name and protocol; a hand-written slice whose port
        // names differ leaves the Service port without backends.
        if offered.is_empty() {
            continue;
        }
        for (i, port) in spec.ports.iter().flatten().enumerate() {
            let name = port.name.clone().unwrap_or_default();
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
            if !offered.contains(&(name.clone(), protocol.clone())) {
                let offered: Vec<String> =
                    offered.iter().map(|(n, p)| format!("{n:?}/{p}")).collect();
                report.warning(
                    format!("spec.ports[{i}]"),
                    Problem::Rule(format!(
                        "no EndpointSlice of this Service has a port named {name:?}/{protocol} \
                         (they have {}): this port has no backends",
                        offered.join(", ")
                    )),
                );
            }
        }
    }
}

fn in_range(range: PortRange, port: i32) -> bool {
    u16::try_from(port).is_ok_and(|p| range.contains(p))
}

/// Checks an address; `family` is `Some(true)` for IPv4 only, `Some(false)` for IPv6 only.
fn check_ip(report: &mut Report<'_>, field: impl Into<String>, text: &str, family: Option<bool>) {
    match text.parse::<IpAddr>() {
        Err(_) => report.error(field, Problem::BadAddress { value: text.to_owned() }),
        Ok(ip) => {
            match family {
                Some(true) if !ip.is_ipv4() => report
                    .error(field, Problem::WrongFamily { value: text.to_owned(), family: "IPv4" }),
                Some(false) if !ip.is_ipv6() => report
                    .error(field, Problem::WrongFamily { value: text.to_owned(), family: "IPv6" }),
                _ => {}
            }
        }
    }
}

fn is_dns_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// RFC 1123 label: lowercase alphanumerics and '-', starts and ends alphanumeric, at most 63.
fn dns1123_label_rule(value: &str) -> Option<&'static str> {
    if value.is_empty() || value.len() > 63 {
        return Some("must be 1-63 characters");
    }
    if !value.chars().all(is_dns_label_char) {
        return Some("must consist of lowercase letters, digits and '-'");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Some("must start and end with a letter or digit");
    }
    None
}

fn check_dns1123_label(
    report: &mut Report<'_>,
    field: impl Into<String>,
    value: &str,
    what: &'static str,
) {
    if let Some(rule) = dns1123_label_rule(value) {
        report.error(field, Problem::BadName { value: value.to_owned(), what, rule });
    }
}

/// RFC 1035 label (Service names): an RFC 1123 label that starts with a letter.
fn check_dns1035_label(
    report: &mut Report<'_>,
    field: impl Into<String>,
    value: &str,
    what: &'static str,
) {
    let rule = dns1123_label_rule(value).or_else(|| {
        (!value.starts_with(|c: char| c.is_ascii_lowercase())).then_some("must start with a letter")
    });
    if let Some(rule) = rule {
        report.error(field, Problem::BadName { value: value.to_owned(), what, rule });
    }
}

fn check_dns1123_subdomain(
    report: &mut Report<'_>,
    field: impl Into<String>,
    value: &str,
    what: &'static str,
) {
    let rule = if value.is_empty() || value.len() > 253 {
        Some("must be 1-253 characters")
    } else {
        value.split('.').find_map(dns1123_label_rule)
    };
    if let Some(rule) = rule {
        report.error(field, Problem::BadName { value: value.to_owned(), what, rule });
    }
}

/// IANA service name (named targetPorts): 1-15 characters of lowercase letters, digits and '-',
/// at least one letter, no leading, trailing or doubled '-'.
fn check_port_name_syntax(report: &mut Report<'_>, field: String, value: &str) {
    let rule = if value.is_empty() || value.len() > 15 {
        Some("must be 1-15 characters")
    } else if !value.chars().all(is_dns_label_char) {
        Some("must consist of lowercase letters, digits and '-'")
    } else if !value.chars().any(|c| c.is_ascii_lowercase()) {
        Some("must contain at least one letter")
    } else if value.starts_with('-') || value.ends_with('-') || value.contains("--") {
        Some("must not start or end with '-' or contain '--'")
    } else {
        None
    };
    if let Some(rule) = rule {
        report.error(field, Problem::BadName { value: value.to_owned(), what: "port name", rule });
    }
}
