//! The small cluster the golden tests and `switchyard-bench ruleset` render: the same names and
//! addresses as kube-proxy's own proxier unit tests, so the output can be compared by eye.

use std::net::Ipv4Addr;

use crate::state::{DesiredState, Endpoint, NodeConfig, Protocol, ServicePort};

/// Node settings of kube-proxy's unit tests (cluster CIDR 10.0.0.0/8, node IP 192.168.0.2).
pub fn node_config() -> NodeConfig {
    NodeConfig {
        cluster_cidr: "10.0.0.0/8".into(),
        service_cidr: "172.30.0.0/16".into(),
        node_ip: Ipv4Addr::new(192, 168, 0, 2),
        masquerade_bit: 14,
    }
}

/// `ns1/svc1:p80`, a ClusterIP Service with three endpoints, and `ns2/svc2:p80`, a NodePort
/// Service (3001) with one.
pub fn state() -> DesiredState {
    let endpoint = |last: u8| Endpoint { ip: Ipv4Addr::new(10, 180, 0, last), port: 80 };
    DesiredState {
        services: vec![
            ServicePort {
                namespace: "ns1".into(),
                name: "svc1".into(),
                port_name: "p80".into(),
                protocol: Protocol::Tcp,
                cluster_ip: Ipv4Addr::new(172, 30, 0, 41),
                port: 80,
                node_port: None,
                endpoints: vec![endpoint(1), endpoint(2), endpoint(3)],
            },
            ServicePort {
                namespace: "ns2".into(),
                name: "svc2".into(),
                port_name: "p80".into(),
                protocol: Protocol::Tcp,
                cluster_ip: Ipv4Addr::new(172, 30, 0, 42),
                port: 80,
                node_port: Some(3001),
                endpoints: vec![endpoint(4)],
            },
        ],
    }
}

/// [`state`] after `ns1/svc1`'s endpoint 10.180.0.3 was replaced by 10.180.0.5.
pub fn state_after_endpoint_change() -> DesiredState {
    let mut next = state();
    if let Some(endpoint) = next.services.first_mut().and_then(|s| s.endpoints.last_mut()) {
        endpoint.ip = Ipv4Addr::new(10, 180, 0, 5);
    }
    next
}
