//! One Service → its frontends on this node, each with the backend list and flags it needs.

use std::net::IpAddr;

use crate::desired::{Backend, Frontend, FrontendKey, FrontendKind, TrafficPolicy, WhenEmpty};
use crate::input::ObjectKey;
use crate::parse::{Family, NodeFacts, ServiceFacts, ServicePortFacts, SliceFacts};
use crate::select::{Selection, candidates, select};

/// Every frontend of `service` on this node, sorted by key, each key once. When one Service names
/// the same address and port twice (e.g. an externalIP equal to its clusterIP) the first
/// occurrence wins: clusterIPs, then NodePorts, LoadBalancer IPs, externalIPs, in port order.
/// LoadBalancer IPs and externalIPs in `refused` are left out (see [`crate::ownership`]).
pub(crate) fn service_frontends(
    key: &ObjectKey,
    service: &ServiceFacts,
    slices: &[&SliceFacts],
    node: &NodeFacts,
    refused: &[IpAddr],
) -> Vec<(FrontendKey, Frontend)> {
    let served = |ip: &&IpAddr| !refused.contains(ip);
    let mut frontends = Vec::new();
    let mut addresses: Vec<(IpAddr, u16, FrontendKind)> = Vec::new();
    for port in &service.ports {
        addresses.clear();
        addresses
            .extend(service.cluster_ips.iter().map(|ip| (*ip, port.port, FrontendKind::ClusterIp)));
        if let Some(node_port) = port.node_port {
            addresses.extend(
                node.node_port_addresses
                    .iter()
                    .filter(|ip| service.has_family(Family::of(**ip)))
                    .map(|ip| (*ip, node_port, FrontendKind::NodePort)),
            );
        }
        addresses.extend(
            service
                .load_balancer_ips
                .iter()
                .filter(served)
                .map(|ip| (*ip, port.port, FrontendKind::LoadBalancer)),
        );
        addresses.extend(
            service
                .external_ips
                .iter()
                .filter(served)
                .map(|ip| (*ip, port.port, FrontendKind::ExternalIp)),
        );

        // One selection per family, shared by that family's frontends; the last frontend to use
        // it takes its lists instead of copying them.
        let uses = |family: Family| {
            addresses.iter().filter(|(ip, _, _)| Family::of(*ip) == family).count()
        };
        let mut remaining = [uses(Family::V4), uses(Family::V6)];
        let needs_local = service.internal_local || service.external_local;
        let mut selections = [Family::V4, Family::V6].map(|family| {
            (remaining[family as usize] > 0)
                .then(|| compute_selection(service, slices, family, port, node, needs_local))
        });
        for (ip, frontend_port, kind) in addresses.iter().copied() {
            let family = Family::of(ip) as usize;
            remaining[family] -= 1;
            let last = remaining[family] == 0;
            if let Some(lists) = &mut selections[family] {
                frontends.push((
                    FrontendKey::new(ip, frontend_port, port.protocol),
                    frontend(key, service, port, kind, ip, lists, last),
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
    needs_local: bool,
) -> Selection {
    let found = candidates(slices.iter().copied(), family, port);
    select(service, &found, node.zone.as_deref(), needs_local)
}

/// Moves the list out on its last use, copies it otherwise.
fn take_or_copy(list: &mut Vec<Backend>, last: bool) -> Vec<Backend> {
    if last { std::mem::take(list) } else { list.clone() }
}

fn frontend(
    key: &ObjectKey,
    service: &ServiceFacts,
    port: &ServicePortFacts,
    kind: FrontendKind,
    ip: IpAddr,
    lists: &mut Selection,
    last: bool,
) -> Frontend {
    let external = kind.is_external();
    let local = if external { service.external_local } else { service.internal_local };
    let (backends, in_cluster_backends) = match (local, external) {
        (false, _) => (take_or_copy(&mut lists.cluster, last), None),
        (true, false) => (take_or_copy(&mut lists.local, last), None),
        (true, true) => {
            (take_or_copy(&mut lists.local, last), Some(take_or_copy(&mut lists.cluster, last)))
        }
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
