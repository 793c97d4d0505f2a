//! One Service → its frontends on this node, each with the backend list and flags it needs.

use std::net::IpAddr;

use crate::desired::{Frontend, FrontendKey, FrontendKind, TrafficPolicy, WhenEmpty};
use crate::input::ObjectKey;
use crate::parse::{Family, NodeFacts, ServiceFacts, ServicePortFacts, SliceFacts};
use crate::select::{Selection, candidates, select};

/// Every frontend of `service` on this node, sorted by key, each key once. When one Service names
/// the same address and port twice (e.g. an externalIP equal to its clusterIP) the first
/// occurrence wins: clusterIPs, then NodePorts, LoadBalancer IPs, externalIPs, in port order.
pub(crate) fn service_frontends(
    key: &ObjectKey,
    service: &ServiceFacts,
    slices: &[&SliceFacts],
    node: &NodeFacts,
) -> Vec<(FrontendKey, Frontend)> {
    let service_families = service.families();
    let mut frontends = Vec::new();
    for port in &service.ports {
        let node_port_ips = port.node_port.into_iter().flat_map(|node_port| {
            node.node_port_addresses
                .iter()
                .filter(|ip| service_families.contains(&Family::of(**ip)))
                .map(move |ip| (*ip, node_port, FrontendKind::NodePort))
        });
        let addresses: Vec<(IpAddr, u16, FrontendKind)> = service
            .cluster_ips
            .iter()
            .map(|ip| (*ip, port.port, FrontendKind::ClusterIp))
            .chain(node_port_ips)
            .chain(
                service
                    .load_balancer_ips
                    .iter()
                    .map(|ip| (*ip, port.port, FrontendKind::LoadBalancer)),
            )
            .chain(service.external_ips.iter().map(|ip| (*ip, port.port, FrontendKind::ExternalIp)))
            .collect();
        let selection_for = |family: Family| {
            addresses
                .iter()
                .any(|(ip, _, _)| Family::of(*ip) == family)
                .then(|| compute_selection(service, slices, family, port, node))
        };
        let selections = [selection_for(Family::V4), selection_for(Family::V6)];
        for (ip, frontend_port, kind) in addresses {
            if let Some(lists) = &selections[Family::of(ip) as usize] {
                frontends.push((
                    FrontendKey::new(ip, frontend_port, port.protocol),
                    frontend(key, service, port, kind, ip, lists),
                ));
            }
        }
    }
    // Stable sort keeps the first occurrence of a duplicate key first.
    frontends.sort_by_key(|(k, _)| *k);
    frontends.dedup_by_key(|(k, _)| *k);
    frontends
}

fn compute_selection(
    service: &ServiceFacts,
    slices: &[&SliceFacts],
    family: Family,
    port: &ServicePortFacts,
    node: &NodeFacts,
) -> Selection {
    let found = candidates(slices.iter().copied(), family, port);
    select(service, &found, node.zone.as_deref())
}

fn frontend(
    key: &ObjectKey,
    service: &ServiceFacts,
    port: &ServicePortFacts,
    kind: FrontendKind,
    ip: IpAddr,
    lists: &Selection,
) -> Frontend {
    let external = kind.is_external();
    let local = if external { service.external_local } else { service.internal_local };
    let (backends, in_cluster_backends) = match (local, external) {
        (false, _) => (lists.cluster.clone(), None),
        (true, false) => (lists.local.clone(), None),
        (true, true) => (lists.local.clone(), Some(lists.cluster.clone())),
    };
    Frontend {
        service: key.clone(),
        port_name: port.name.clone(),
        kind,
        backends,
        in_cluster_backends,
        traffic_policy: if local { TrafficPolicy::Local } else { TrafficPolicy::Cluster },
        affinity_timeout_seconds: service.affinity_timeout_seconds,
        source_ranges: if kind == FrontendKind::LoadBalancer {
            service.source_ranges.iter().filter(|r| r.is_ipv4() == ip.is_ipv4()).copied().collect()
        } else {
            Vec::new()
        },
        algorithm: service.algorithm,
        when_empty: if lists.has_any { WhenEmpty::Drop } else { WhenEmpty::Reject },
        health_check_node_port: if external { service.health_check_node_port } else { None },
    }
}
