//! Synthetic clusters of N Services × E endpoints, and the one-endpoint change measured at each N.

use std::net::Ipv4Addr;

use crate::state::{DesiredState, Endpoint, Protocol, ServicePort};

/// First ClusterIP handed out (inside [`crate::state::NodeConfig::default`]'s service CIDR).
const SERVICE_BASE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// First pod IP handed out (inside the default cluster CIDR).
const POD_BASE: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 1);
/// Start of the default NodePort range 30000-32767.
const NODE_PORT_FIRST: u32 = 30000;
const NODE_PORT_LAST: u32 = 32767;
/// Every this many Services is a NodePort Service (while the NodePort range lasts).
const NODE_PORT_EVERY: usize = 10;
pub const SERVICE_PORT: u16 = 80;
pub const TARGET_PORT: u16 = 8080;

/// Shape of a synthetic cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub services: usize,
    pub endpoints_per_service: usize,
}

/// Address `offset` places after `base`.
fn nth_address(base: Ipv4Addr, offset: usize) -> Ipv4Addr {
    let offset = u32::try_from(offset).unwrap_or(u32::MAX);
    Ipv4Addr::from(u32::from(base).saturating_add(offset))
}

/// ClusterIP of the `index`-th synthetic Service.
pub fn cluster_ip(index: usize) -> Ipv4Addr {
    nth_address(SERVICE_BASE, index)
}

/// NodePort of the `index`-th synthetic Service, if it has one: every tenth Service until the
/// NodePort range runs out, so large clusters mix ClusterIP and NodePort Services.
pub fn node_port(index: usize) -> Option<u16> {
    if !index.is_multiple_of(NODE_PORT_EVERY) {
        return None;
    }
    let port = NODE_PORT_FIRST + u32::try_from(index / NODE_PORT_EVERY).ok()?;
    (port <= NODE_PORT_LAST).then(|| u16::try_from(port).ok()).flatten()
}

/// `shape.services` Services named `bench/svc-<i>`, each with one TCP port `http` (80 → 8080) and
/// `shape.endpoints_per_service` distinct pod IPs.
pub fn cluster(shape: Shape) -> DesiredState {
    let services = (0..shape.services)
        .map(|i| ServicePort {
            namespace: "bench".into(),
            name: format!("svc-{i}"),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: cluster_ip(i),
            port: SERVICE_PORT,
            node_port: node_port(i),
            endpoints: (0..shape.endpoints_per_service)
                .map(|j| Endpoint {
                    ip: nth_address(POD_BASE, i * shape.endpoints_per_service + j),
                    port: TARGET_PORT,
                })
                .collect(),
        })
        .collect();
    DesiredState { services }
}

/// The change measured at each N: one pod of the middle Service is replaced (its last endpoint
/// goes away and a pod with a fresh IP, outside every other Service's range, takes its place).
pub fn replace_one_endpoint(state: &DesiredState) -> DesiredState {
    let mut next = state.clone();
    let total = state.endpoint_count();
    let middle = state.services.len() / 2;
    if let Some(endpoint) = next.services.get_mut(middle).and_then(|s| s.endpoints.last_mut()) {
        endpoint.ip = nth_address(POD_BASE, total + 1);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_has_requested_shape_with_distinct_addresses() {
        let state = cluster(Shape { services: 25, endpoints_per_service: 4 });
        assert_eq!(state.services.len(), 25);
        assert_eq!(state.endpoint_count(), 100);
        let mut ips: Vec<_> =
            state.services.iter().flat_map(|s| s.endpoints.iter().map(|e| e.ip)).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 100);
    }

    #[test]
    fn node_ports_stay_inside_the_default_range() {
        let ports: Vec<u16> = (0..40_000).filter_map(node_port).collect();
        assert_eq!(ports.first(), Some(&30000));
        assert_eq!(ports.last(), Some(&32767));
        assert_eq!(ports.len(), 2768);
    }

    #[test]
    fn replacing_one_endpoint_changes_exactly_one_service() {
        let before = cluster(Shape { services: 9, endpoints_per_service: 3 });
        let after = replace_one_endpoint(&before);
        let changed: Vec<usize> =
            (0..9).filter(|&i| before.services[i] != after.services[i]).collect();
        assert_eq!(changed, vec![4]);
        assert_ne!(before.services[4].endpoints[2], after.services[4].endpoints[2]);
        assert_eq!(before.services[4].endpoints[..2], after.services[4].endpoints[..2]);
    }
}
