//! Builders that read like manifests, and summaries that read like `switchyard services`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use serde_json::{Value, json};
use switchyard_model::{
    Backend, BackendState, ClusterState, DesiredState, Frontend, FrontendKey, NodeModel, ObjectKey,
    ProxyConfig,
};

pub const NODE: &str = "node-a";

/// A Service in namespace `default`; `spec` is merged over `{clusterIP, ports: [http 80]}`.
pub fn svc(name: &str, spec: Value) -> Value {
    let mut full = json!({
        "clusterIP": "10.96.0.10",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
    });
    merge(&mut full, spec);
    json!({"kind": "Service", "metadata": {"namespace": "default", "name": name}, "spec": full})
}

/// Adds metadata (labels, annotations) or status to an object.
pub fn with(mut object: Value, extra: Value) -> Value {
    merge(&mut object, extra);
    object
}

/// An IPv4 EndpointSlice of Service `service` with one port `http` 8080/TCP.
pub fn slice(name: &str, service: &str, endpoints: Vec<Value>) -> Value {
    slice_with(
        name,
        service,
        "IPv4",
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        endpoints,
    )
}

pub fn slice_with(
    name: &str,
    service: &str,
    address_type: &str,
    ports: Value,
    endpoints: Vec<Value>,
) -> Value {
    json!({
        "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": name,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    })
}

/// An endpoint on `node`; `state` is "ready", "unready", "terminating" (serving), or
/// "gone" (terminating, not serving), "serving-not-terminating" (not ready yet serving).
pub fn ep(ip: &str, node: &str, state: &str) -> Value {
    let (ready, serving, terminating) = match state {
        "ready" => (true, true, false),
        "unready" => (false, false, false),
        "terminating" => (false, true, true),
        "gone" => (false, false, true),
        "serving-not-terminating" => (false, true, false),
        other => panic!("unknown endpoint state {other}"),
    };
    json!({"addresses": [ip], "nodeName": node,
           "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

pub fn node(name: &str, zone: &str, addresses: &[(&str, &str)]) -> Value {
    let addresses: Vec<Value> =
        addresses.iter().map(|(t, a)| json!({"type": t, "address": a})).collect();
    json!({"kind": "Node",
           "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
           "status": {"addresses": addresses}})
}

/// The default node of these tests: zone-a, InternalIP 192.168.1.10.
pub fn this_node() -> Value {
    node(NODE, "zone-a", &[("InternalIP", "192.168.1.10"), ("Hostname", NODE)])
}

pub fn cluster(objects: &[Value]) -> ClusterState {
    let mut state = ClusterState::default();
    for object in objects {
        let metadata = &object["metadata"];
        let key = ObjectKey::new(
            metadata["namespace"].as_str().unwrap_or(""),
            metadata["name"].as_str().unwrap(),
        );
        match object["kind"].as_str().unwrap() {
            "Service" => {
                state.services.insert(key, serde_json::from_value(object.clone()).unwrap());
            }
            "EndpointSlice" => {
                state.endpoint_slices.insert(key, serde_json::from_value(object.clone()).unwrap());
            }
            "Node" => {
                state.nodes.insert(key, serde_json::from_value(object.clone()).unwrap());
            }
            other => panic!("unknown kind {other}"),
        }
    }
    state
}

pub fn desired(config: &ProxyConfig, objects: &[Value]) -> DesiredState {
    NodeModel::from_state(config.clone(), &cluster(objects)).desired().clone()
}

pub fn config() -> ProxyConfig {
    ProxyConfig::new(NODE)
}

pub fn key(text: &str) -> FrontendKey {
    let (address, protocol) = text.rsplit_once('/').unwrap();
    let address: std::net::SocketAddr = address.parse().unwrap();
    let protocol = match protocol {
        "TCP" => switchyard_model::Protocol::Tcp,
        "UDP" => switchyard_model::Protocol::Udp,
        "SCTP" => switchyard_model::Protocol::Sctp,
        other => panic!("unknown protocol {other}"),
    };
    FrontendKey::new(address.ip(), address.port(), protocol)
}

/// "ip:port" for ready backends, "ip:port(T)" for terminating ones, "+L" suffix when local.
pub fn backend_list(backends: &[Backend]) -> Vec<String> {
    backends
        .iter()
        .map(|b| {
            let address = std::net::SocketAddr::new(b.ip, b.port).to_string();
            let state = if b.state == BackendState::Terminating { "(T)" } else { "" };
            let local = if b.is_local { "+L" } else { "" };
            format!("{address}{state}{local}")
        })
        .collect()
}

pub fn backends_of(state: &DesiredState, frontend: &str) -> Option<Vec<String>> {
    state.get(&key(frontend)).map(|f| backend_list(&f.backends))
}

pub fn frontend<'a>(state: &'a DesiredState, frontend: &str) -> &'a Frontend {
    state
        .get(&key(frontend))
        .unwrap_or_else(|| panic!("no frontend {frontend}; have {:?}", keys(state)))
}

pub fn keys(state: &DesiredState) -> Vec<String> {
    state.frontends.keys().map(ToString::to_string).collect()
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (k, v) in extra {
                match base.get_mut(&k) {
                    Some(existing) if v.is_object() => merge(existing, v),
                    _ => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, extra) => *base = extra,
    }
}
