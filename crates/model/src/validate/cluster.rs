//! Rules between objects: NodePort and cluster IP clashes, slices and endpoints that join nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::service::{is_headless, service_type};
use super::syntax::in_range;
use super::{Finding, Problem, Report, Severity, ValidationOptions};
use crate::input::{ClusterState, ObjectKey, ObjectKind};
use crate::parse::SERVICE_NAME_LABEL;

/// NodePorts (and health check node ports) are a cluster-wide resource: two Services may not
/// claim the same port and protocol ("should prevent NodePort collisions").
pub(super) fn check_node_port_collisions(
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
pub(super) fn check_cluster_ip_collisions(state: &ClusterState, findings: &mut Vec<Finding>) {
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

/// An externalIP or LoadBalancer ingress IP never takes another Service's cluster IP or a Node's
/// address (the model refuses it, see `crate::ownership`); say which owner keeps it.
pub(super) fn check_taken_addresses(state: &ClusterState, findings: &mut Vec<Finding>) {
    let mut owners: BTreeMap<IpAddr, (&ObjectKey, String)> = BTreeMap::new();
    for (key, node) in &state.nodes {
        let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
        for address in addresses.into_iter().flatten() {
            if let Ok(ip) = address.address.trim().parse::<IpAddr>() {
                owners.entry(ip).or_insert((key, format!("an address of Node {}", key.name)));
            }
        }
    }
    for (key, service) in &state.services {
        let Some(spec) = service.spec.as_ref() else { continue };
        let ips = spec.cluster_ips.iter().flatten().chain(spec.cluster_ip.iter());
        for ip in ips.filter_map(|text| text.parse::<IpAddr>().ok()) {
            owners.entry(ip).or_insert((key, format!("the cluster IP of Service {key}")));
        }
    }
    for (key, service) in &state.services {
        let Some(spec) = service.spec.as_ref() else { continue };
        let external = spec
            .external_ips
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, ip)| (format!("spec.externalIPs[{i}]"), ip.as_str()));
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, entry)| {
                Some((format!("status.loadBalancer.ingress[{i}].ip"), entry.ip.as_deref()?))
            });
        let mut report = Report { kind: ObjectKind::Service, object: key, findings };
        for (field, text) in external.chain(ingress) {
            let Ok(ip) = text.trim().parse::<IpAddr>() else { continue };
            if let Some((owner, what)) = owners.get(&ip)
                && *owner != key
            {
                report.error(field, Problem::AddressTaken { ip, owner: what.clone() });
            }
        }
    }
}

/// EndpointSlices reach a Service through the `kubernetes.io/service-name` label, and endpoints
/// reach a node through `nodeName`. A typo in either silently loses endpoints, so say so.
pub(super) fn check_joins(state: &ClusterState, findings: &mut Vec<Finding>) {
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
