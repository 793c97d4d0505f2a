//! The benchmark's [`DesiredState`] as the Kubernetes objects Switchyard's model reads, so
//! Switchyard is fed the very clusters the peers are: one Service and one EndpointSlice per
//! service port, and the node the proxy runs on (its InternalIP carries the NodePorts).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use switchyard_model::{Change, ClusterState, ObjectKey, ProxyConfig, SERVICE_NAME_LABEL};

use crate::state::{self, DesiredState, NodeConfig};

/// Name of the node the benchmarked proxy runs on.
pub const NODE_NAME: &str = "bench-node";

/// The proxy configuration for [`NODE_NAME`].
pub fn proxy_config() -> ProxyConfig {
    ProxyConfig::new(NODE_NAME)
}

/// The whole cluster: the node, then one Service and one EndpointSlice per service port.
pub fn cluster_state(config: &NodeConfig, desired: &DesiredState) -> ClusterState {
    let mut cluster = ClusterState::default();
    cluster.nodes.insert(ObjectKey::cluster(NODE_NAME), node(config));
    for port in &desired.services {
        let (key, service) = service(port);
        cluster.services.insert(key, service);
        let (key, slice) = endpoint_slice(port);
        cluster.endpoint_slices.insert(key, slice);
    }
    cluster
}

/// The changes that take the model from `before` to `after`: one EndpointSlice update per
/// service port whose endpoints differ (Services themselves are the same in both).
pub fn endpoint_changes(before: &DesiredState, after: &DesiredState) -> Vec<Change> {
    let old: BTreeMap<_, _> = before.services.iter().map(|s| (s.key(), s)).collect();
    after
        .services
        .iter()
        .filter(|s| old.get(&s.key()).is_none_or(|o| o.endpoints != s.endpoints))
        .map(|s| {
            let (key, slice) = endpoint_slice(s);
            Change::EndpointSlice(key, Some(Box::new(slice)))
        })
        .collect()
}

fn metadata(namespace: &str, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
        name: Some(name.to_owned()),
        labels: (!labels.is_empty()).then_some(labels),
        ..ObjectMeta::default()
    }
}

fn node(config: &NodeConfig) -> Node {
    Node {
        metadata: metadata("", NODE_NAME, BTreeMap::new()),
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            }]),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

fn protocol(port: &state::ServicePort) -> String {
    port.protocol.as_str().to_uppercase()
}

fn port_name(port: &state::ServicePort) -> Option<String> {
    (!port.port_name.is_empty()).then(|| port.port_name.clone())
}

fn service(port: &state::ServicePort) -> (ObjectKey, Service) {
    let key = ObjectKey::new(port.namespace.clone(), port.name.clone());
    let target = port.endpoints.first().map_or(port.port, |e| e.port);
    let service = Service {
        metadata: metadata(&port.namespace, &port.name, BTreeMap::new()),
        spec: Some(ServiceSpec {
            type_: Some(if port.node_port.is_some() { "NodePort" } else { "ClusterIP" }.into()),
            cluster_ip: Some(port.cluster_ip.to_string()),
            cluster_ips: Some(vec![port.cluster_ip.to_string()]),
            ip_families: Some(vec!["IPv4".into()]),
            ports: Some(vec![ServicePort {
                name: port_name(port),
                port: i32::from(port.port),
                protocol: Some(protocol(port)),
                target_port: Some(IntOrString::Int(i32::from(target))),
                node_port: port.node_port.map(i32::from),
                ..ServicePort::default()
            }]),
            external_traffic_policy: port.node_port.map(|_| "Cluster".into()),
            session_affinity: Some("None".into()),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    (key, service)
}

fn endpoint_slice(port: &state::ServicePort) -> (ObjectKey, EndpointSlice) {
    let name = format!("{}-bench", port.name);
    let key = ObjectKey::new(port.namespace.clone(), name.clone());
    let labels = BTreeMap::from([(SERVICE_NAME_LABEL.to_owned(), port.name.clone())]);
    let target = port.endpoints.first().map_or(port.port, |e| e.port);
    let slice = EndpointSlice {
        metadata: metadata(&port.namespace, &name, labels),
        address_type: "IPv4".into(),
        endpoints: port
            .endpoints
            .iter()
            .map(|e| Endpoint {
                addresses: vec![e.ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: port_name(port),
            port: Some(i32::from(target)),
            protocol: Some(protocol(port)),
            ..EndpointPort::default()
        }]),
    };
    (key, slice)
}

#[cfg(test)]
mod tests {
    use switchyard_model::NodeModel;

    use super::*;
    use crate::synthetic::{self, Shape};

    fn backend_count(model: &NodeModel) -> usize {
        model.desired().frontends.values().map(|f| f.backends.len()).sum()
    }

    #[test]
    fn every_service_port_becomes_a_cluster_ip_frontend_plus_one_per_node_port() {
        let cases = [(1, 1), (10, 3), (25, 4)];
        for (services, endpoints) in cases {
            let state = synthetic::cluster(Shape { services, endpoints_per_service: endpoints });
            let node_ports = state.services.iter().filter(|s| s.node_port.is_some()).count();
            let model = NodeModel::from_state(
                proxy_config(),
                &cluster_state(&NodeConfig::default(), &state),
            );
            assert_eq!(model.desired().len(), services + node_ports, "{services} × {endpoints}");
            assert_eq!(
                backend_count(&model),
                (services + node_ports) * endpoints,
                "{services} × {endpoints}"
            );
        }
    }

    #[test]
    fn one_replaced_endpoint_is_one_slice_change_that_reaches_the_model() {
        let before = synthetic::cluster(Shape { services: 9, endpoints_per_service: 3 });
        let after = synthetic::replace_one_endpoint(&before);
        let changes = endpoint_changes(&before, &after);
        assert_eq!(changes.len(), 1);
        let mut model =
            NodeModel::from_state(proxy_config(), &cluster_state(&NodeConfig::default(), &before));
        for change in changes {
            model.apply(change);
        }
        let expected =
            NodeModel::from_state(proxy_config(), &cluster_state(&NodeConfig::default(), &after));
        assert_eq!(model.desired(), expected.desired());
        assert_ne!(
            model.desired(),
            NodeModel::from_state(proxy_config(), &cluster_state(&NodeConfig::default(), &before))
                .desired()
        );
    }

    #[test]
    fn identical_states_need_no_change() {
        let state = synthetic::cluster(Shape { services: 5, endpoints_per_service: 2 });
        assert!(endpoint_changes(&state, &state).is_empty());
    }
}
