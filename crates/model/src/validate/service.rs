//! Rules of one Service on its own: type, cluster IPs, ports, traffic policies, affinity.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::syntax::{
    check_dns1035_label, check_dns1123_label, check_dns1123_subdomain, check_port_name_syntax,
    check_service_ip, in_range,
};
use super::{Finding, Problem, Report, ValidationOptions};
use crate::cidr::Cidr;
use crate::config::MAX_AFFINITY_TIMEOUT_SECONDS;
use crate::input::{ObjectKey, ObjectKind};

pub(super) const SERVICE_TYPES: &str = "ClusterIP, NodePort, LoadBalancer, ExternalName";
pub(super) const PROTOCOLS: &str = "TCP, UDP, SCTP";
pub(super) const POLICIES: &str = "Cluster, Local";

pub(super) fn service_type(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("ClusterIP")
}

pub(super) fn is_headless(spec: &ServiceSpec) -> bool {
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
        check_service_ip(&mut report, format!("spec.externalIPs[{i}]"), ip, None);
    }
    if let Some(ip) = spec.load_balancer_ip.as_deref().filter(|ip| !ip.is_empty()) {
        check_service_ip(&mut report, "spec.loadBalancerIP", ip, None);
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
            (Some(ip), _) => check_service_ip(&mut report, format!("{field}.ip"), ip, None),
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
            check_service_ip(report, "spec.clusterIP", ip, None);
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
                Ok(parsed) => {
                    families.push((i, parsed.is_ipv4()));
                    check_service_ip(report, format!("spec.clusterIPs[{i}]"), ip, None);
                }
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
