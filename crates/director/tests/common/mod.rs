//! Objects for the director tests, written like manifests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use serde_json::{Value, json};
use switchyard_model::{ClusterState, ObjectKey};

/// A LoadBalancer Service `default/NAME` with ingress `ips`, port 80/TCP and 53/UDP, opted in
/// to the directors unless `annotation` says otherwise (`None`: no annotation).
pub fn lb_service(name: &str, ips: &[&str], local: bool, annotation: Option<&str>) -> Value {
    let mut metadata = json!({"namespace": "default", "name": name});
    if let Some(value) = annotation {
        metadata["annotations"] = json!({"switchyard.io/director": value});
    }
    let families: Vec<&str> =
        ips.iter().map(|ip| if ip.contains(':') { "IPv6" } else { "IPv4" }).collect();
    let cluster_ips: Vec<&str> =
        families.iter().map(|f| if *f == "IPv6" { "fd00:96::10" } else { "10.96.0.10" }).collect();
    json!({
        "metadata": metadata,
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": cluster_ips[0],
            "clusterIPs": cluster_ips,
            "ipFamilyPolicy": if families.len() > 1 { "RequireDualStack" } else { "SingleStack" },
            "ipFamilies": families,
            "externalTrafficPolicy": if local { "Local" } else { "Cluster" },
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353, "nodePort": 30053},
            ],
        },
        "status": {"loadBalancer": {"ingress": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>()}},
    })
}

/// An EndpointSlice of `service` with endpoints `(ip, node, ready)`.
pub fn slice(name: &str, service: &str, v6: bool, endpoints: &[(&str, &str, bool)]) -> Value {
    json!({
        "metadata": {"namespace": "default", "name": name,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": if v6 { "IPv6" } else { "IPv4" },
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                  {"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": endpoints.iter().map(|(ip, node, ready)| json!({
            "addresses": [ip], "nodeName": node,
            "conditions": {"ready": ready, "serving": ready, "terminating": false},
        })).collect::<Vec<_>>(),
    })
}

/// A Node with InternalIPs `addresses`; `extra` is merged into its metadata/status.
pub fn node(name: &str, addresses: &[&str]) -> Value {
    json!({
        "metadata": {"name": name},
        "status": {"addresses": addresses.iter().map(|a| json!({"type": "InternalIP", "address": a})).collect::<Vec<_>>()},
    })
}

/// `node` with an annotation.
pub fn annotated_node(name: &str, addresses: &[&str], key: &str, value: &str) -> Value {
    let mut n = node(name, addresses);
    n["metadata"]["annotations"] = json!({key: value});
    n
}

/// A cluster of objects.
pub fn cluster(services: &[Value], slices: &[Value], nodes: &[Value]) -> ClusterState {
    let mut state = ClusterState::default();
    for s in services {
        let key = ObjectKey::new("default", s["metadata"]["name"].as_str().unwrap());
        state.services.insert(key, serde_json::from_value(s.clone()).unwrap());
    }
    for s in slices {
        let key = ObjectKey::new("default", s["metadata"]["name"].as_str().unwrap());
        state.endpoint_slices.insert(key, serde_json::from_value(s.clone()).unwrap());
    }
    for n in nodes {
        let key = ObjectKey::cluster(n["metadata"]["name"].as_str().unwrap());
        state.nodes.insert(key, serde_json::from_value(n.clone()).unwrap());
    }
    state
}

/// Three dual-stack nodes a, b, c.
pub fn three_nodes() -> Vec<Value> {
    vec![
        node("node-a", &["10.0.0.1", "fd00::1"]),
        node("node-b", &["10.0.0.2", "fd00::2"]),
        node("node-c", &["10.0.0.3", "fd00::3"]),
    ]
}
