//! Synthetic clusters of any size, built without I/O, for benchmarks and property tests here
//! and in other crates (reconciler, kube-proxy peers).
//!
//! The shape follows what a real cluster's controllers write: every Service has a clusterIP and
//! a named targetPort; endpoints are spread over several EndpointSlices (at most
//! `endpoints_per_slice` each, like the endpointslice controller's `maxEndpointsPerSlice`) and over
//! nodes and zones; some Services are NodePort, LoadBalancer, dual-stack, topology-aware, use
//! local traffic policies or session affinity, and a few endpoints are terminating. Everything is
//! a pure function of the [`SyntheticCluster`] settings.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, NodeAddress, NodeStatus, Service, ServicePort,
    ServiceSpec, ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::ProxyConfig;
use crate::input::{Change, ClusterState, ObjectKey};
use crate::parse::{SERVICE_NAME_LABEL, ZONE_LABEL};

/// Size and mix of a synthetic cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticCluster {
    pub services: usize,
    pub endpoints_per_service: usize,
    /// Slices hold at most this many endpoints (the endpointslice controller uses 100; smaller
    /// values give several slices per Service).
    pub endpoints_per_slice: usize,
    pub nodes: usize,
    pub zones: usize,
    pub namespaces: usize,
}

impl Default for SyntheticCluster {
    fn default() -> Self {
        Self {
            services: 100,
            endpoints_per_service: 25,
            endpoints_per_slice: 10,
            nodes: 50,
            zones: 3,
            namespaces: 20,
        }
    }
}

/// Name of the `index`-th node.
pub fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// Key of the `index`-th Service.
pub fn service_key(spec: &SyntheticCluster, index: usize) -> ObjectKey {
    ObjectKey::new(format!("ns-{}", index % spec.namespaces.max(1)), format!("svc-{index}"))
}

/// Key of the `slice`-th IPv4 EndpointSlice of the `index`-th Service.
pub fn slice_key(spec: &SyntheticCluster, index: usize, slice: usize) -> ObjectKey {
    let service = service_key(spec, index);
    ObjectKey::new(service.namespace, format!("{}-v4-{slice}", service.name))
}

/// A proxy configuration for node 0 of a synthetic cluster.
pub fn config() -> ProxyConfig {
    ProxyConfig::new(node_name(0))
}

/// The cluster as the changes a source sends for it on its first complete reading: Nodes, then
/// Services, then EndpointSlices.
pub fn changes(state: &ClusterState) -> Vec<Change> {
    let nodes = state.nodes.iter().map(|(k, n)| Change::Node(k.clone(), Some(Box::new(n.clone()))));
    let services =
        state.services.iter().map(|(k, s)| Change::Service(k.clone(), Some(Box::new(s.clone()))));
    let slices = (state.endpoint_slices.iter())
        .map(|(k, s)| Change::EndpointSlice(k.clone(), Some(Box::new(s.clone()))));
    nodes.chain(services).chain(slices).collect()
}

/// Builds the cluster.
pub fn generate(spec: &SyntheticCluster) -> ClusterState {
    let mut state = ClusterState::default();
    for n in 0..spec.nodes.max(1) {
        let key = ObjectKey::cluster(node_name(n));
        state.nodes.insert(key, node(spec, n));
    }
    for index in 0..spec.services {
        let key = service_key(spec, index);
        let traits = Traits::of(index);
        state.services.insert(key.clone(), service(&key, index, traits));
        let per_slice = spec.endpoints_per_slice.max(1);
        let families: &[bool] = if traits.dual_stack { &[false, true] } else { &[false] };
        for &ipv6 in families {
            let mut first = 0;
            let mut slice_index = 0;
            while first < spec.endpoints_per_service {
                let count = per_slice.min(spec.endpoints_per_service - first);
                let slice = endpoint_slice(
                    spec,
                    &key,
                    index,
                    traits,
                    ipv6,
                    slice_index,
                    first..first + count,
                    0,
                );
                let name = slice.metadata.name.clone().unwrap_or_default();
                state.endpoint_slices.insert(ObjectKey::new(key.namespace.clone(), name), slice);
                first += count;
                slice_index += 1;
            }
        }
    }
    state
}

/// A new version of one IPv4 slice of the `index`-th Service, in which the readiness of one
/// endpoint depends on `generation` (so consecutive generations always differ).
pub fn changed_slice(
    spec: &SyntheticCluster,
    index: usize,
    slice: usize,
    generation: u64,
) -> Change {
    let key = service_key(spec, index);
    let traits = Traits::of(index);
    let per_slice = spec.endpoints_per_slice.max(1);
    let first = (slice * per_slice).min(spec.endpoints_per_service);
    let last = (first + per_slice).min(spec.endpoints_per_service);
    let object = endpoint_slice(spec, &key, index, traits, false, slice, first..last, generation);
    Change::EndpointSlice(slice_key(spec, index, slice), Some(Box::new(object)))
}

/// Which features the `index`-th Service uses; a fixed mix so every code path is exercised.
#[derive(Debug, Clone, Copy)]
struct Traits {
    node_port: bool,
    load_balancer: bool,
    dual_stack: bool,
    topology: bool,
    external_local: bool,
    internal_local: bool,
    affinity: bool,
}

impl Traits {
    fn of(index: usize) -> Self {
        let load_balancer = index % 10 == 3;
        Self {
            node_port: index.is_multiple_of(8) || load_balancer,
            load_balancer,
            dual_stack: index % 8 == 1,
            topology: index % 5 == 2,
            external_local: load_balancer && index % 20 == 3,
            internal_local: index % 50 == 7,
            affinity: index % 7 == 5,
        }
    }
}

fn metadata(namespace: &str, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
        name: Some(name.to_owned()),
        labels: (!labels.is_empty()).then_some(labels),
        ..ObjectMeta::default()
    }
}

fn node(spec: &SyntheticCluster, index: usize) -> Node {
    let labels = BTreeMap::from([(ZONE_LABEL.to_owned(), zone_name(index % spec.zones.max(1)))]);
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 168, 0, 0)) + index as u32 + 1);
    Node {
        metadata: metadata("", &node_name(index), labels),
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: ip.to_string() },
                NodeAddress { type_: "Hostname".into(), address: node_name(index) },
            ]),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

fn zone_name(index: usize) -> String {
    format!("zone-{}", (b'a' + (index % 26) as u8) as char)
}

fn cluster_ip(index: usize, ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::from(0xfd00_0000_0000_0000_0000_0000_0001_0000_u128 + index as u128))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + index as u32 + 1))
    }
}

fn service(key: &ObjectKey, index: usize, traits: Traits) -> Service {
    let mut cluster_ips = vec![cluster_ip(index, false).to_string()];
    if traits.dual_stack {
        cluster_ips.push(cluster_ip(index, true).to_string());
    }
    // Distinct NodePorts for up to ~12,000 Services (1 in 8 is NodePort, 1 in 10 LoadBalancer).
    let node_port_ordinal = if traits.load_balancer { 1_500 + index / 10 } else { index / 8 };
    let node_port = traits.node_port.then(|| 30_000 + (node_port_ordinal % 2_768) as i32);
    let service_type = if traits.load_balancer {
        "LoadBalancer"
    } else if traits.node_port {
        "NodePort"
    } else {
        "ClusterIP"
    };
    let ingress_ip =
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + index as u32 + 1).to_string();
    Service {
        metadata: metadata(&key.namespace, &key.name, BTreeMap::new()),
        spec: Some(ServiceSpec {
            type_: Some(service_type.into()),
            cluster_ip: cluster_ips.first().cloned(),
            cluster_ips: Some(cluster_ips),
            ip_families: Some(if traits.dual_stack {
                vec!["IPv4".into(), "IPv6".into()]
            } else {
                vec!["IPv4".into()]
            }),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::String("http".into())),
                node_port,
                ..ServicePort::default()
            }]),
            external_traffic_policy: traits
                .node_port
                .then(|| if traits.external_local { "Local" } else { "Cluster" }.into()),
            internal_traffic_policy: Some(
                if traits.internal_local { "Local" } else { "Cluster" }.into(),
            ),
            health_check_node_port: traits.external_local.then(|| 32_000 + (index % 700) as i32),
            session_affinity: Some(if traits.affinity { "ClientIP" } else { "None" }.into()),
            traffic_distribution: traits.topology.then(|| "PreferSameZone".into()),
            ..ServiceSpec::default()
        }),
        status: traits.load_balancer.then(|| ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(ingress_ip),
                    ip_mode: Some("VIP".into()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            ..ServiceStatus::default()
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn endpoint_slice(
    spec: &SyntheticCluster,
    service: &ObjectKey,
    index: usize,
    traits: Traits,
    ipv6: bool,
    slice: usize,
    endpoints: std::ops::Range<usize>,
    generation: u64,
) -> EndpointSlice {
    let family = if ipv6 { "v6" } else { "v4" };
    let name = format!("{}-{family}-{slice}", service.name);
    let labels = BTreeMap::from([(SERVICE_NAME_LABEL.to_owned(), service.name.to_string())]);
    let nodes = spec.nodes.max(1);
    let zones = spec.zones.max(1);
    let endpoints = endpoints
        .map(|j| {
            let global = index * spec.endpoints_per_service + j;
            let address: IpAddr = if ipv6 {
                IpAddr::V6(Ipv6Addr::from(
                    0xfd00_0000_0000_0001_0000_0000_0000_0000_u128 + global as u128,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + global as u32))
            };
            let node = global % nodes;
            let terminating = j % 25 == 24;
            let flipped = generation % 2 == 1 && j == endpoints_first_index(slice, spec);
            let ready = !terminating && !flipped;
            Endpoint {
                addresses: vec![address.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(!flipped),
                    terminating: Some(terminating),
                }),
                node_name: Some(node_name(node)),
                zone: Some(zone_name(node % zones)),
                hints: traits.topology.then(|| EndpointHints {
                    for_zones: Some(vec![ForZone { name: zone_name(node % zones) }]),
                    for_nodes: None,
                }),
                ..Endpoint::default()
            }
        })
        .collect();
    EndpointSlice {
        metadata: metadata(&service.namespace, &name, labels),
        address_type: if ipv6 { "IPv6" } else { "IPv4" }.into(),
        endpoints,
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    }
}

fn endpoints_first_index(slice: usize, spec: &SyntheticCluster) -> usize {
    slice * spec.endpoints_per_slice.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NodeModel;

    #[test]
    fn generated_cluster_has_the_requested_shape() {
        let cases = [
            SyntheticCluster {
                services: 40,
                endpoints_per_service: 25,
                endpoints_per_slice: 10,
                ..SyntheticCluster::default()
            },
            SyntheticCluster {
                services: 16,
                endpoints_per_service: 7,
                endpoints_per_slice: 100,
                nodes: 3,
                ..SyntheticCluster::default()
            },
        ];
        for spec in cases {
            let state = generate(&spec);
            let slices_per_family = spec.endpoints_per_service.div_ceil(spec.endpoints_per_slice);
            let dual_stack = (0..spec.services).filter(|i| Traits::of(*i).dual_stack).count();
            assert_eq!(state.services.len(), spec.services, "{spec:?}");
            assert_eq!(state.nodes.len(), spec.nodes, "{spec:?}");
            assert_eq!(
                state.endpoint_slices.len(),
                (spec.services + dual_stack) * slices_per_family,
                "{spec:?}"
            );
            let endpoints: usize = state.endpoint_slices.values().map(|s| s.endpoints.len()).sum();
            assert_eq!(
                endpoints,
                (spec.services + dual_stack) * spec.endpoints_per_service,
                "{spec:?}"
            );
            assert!(state.endpoint_slices.contains_key(&slice_key(&spec, 3, 0)), "{spec:?}");
        }
    }

    #[test]
    fn generated_cluster_yields_frontends_of_every_kind_without_collisions() {
        let spec = SyntheticCluster { services: 200, ..SyntheticCluster::default() };
        let model = NodeModel::from_state(config(), &generate(&spec));
        let kinds: std::collections::BTreeSet<_> =
            model.desired().frontends.values().map(|f| f.kind).collect();
        assert_eq!(kinds.len(), 3, "ClusterIP, NodePort, LoadBalancer: {kinds:?}");
        let node_port_services = (0..spec.services).filter(|i| Traits::of(*i).node_port).count();
        let node_port_frontends = model
            .desired()
            .frontends
            .values()
            .filter(|f| f.kind == crate::desired::FrontendKind::NodePort)
            .count();
        assert_eq!(node_port_frontends, node_port_services, "one NodePort each, none collide");
    }

    #[test]
    fn changed_slice_differs_between_consecutive_generations() {
        let spec = SyntheticCluster::default();
        let mut model = NodeModel::from_state(config(), &generate(&spec));
        for generation in 1..=4 {
            let diff = model.apply(changed_slice(&spec, 10, 1, generation));
            assert_eq!(
                diff.upserted.len(),
                1,
                "generation {generation}: the one ClusterIP frontend"
            );
            assert!(diff.removed.is_empty(), "generation {generation}");
        }
    }
}
