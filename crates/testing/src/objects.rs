//! Service, EndpointSlice and Node objects that read like manifests, as JSON (which is also YAML,
//! so the same objects feed the model, a manifest file, and the fake API server).
//!
//! Every builder returns a valid object with the usual defaults; a test states only what it is
//! about by merging a patch over it ([`with`], `null` removes a field).

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use switchyard_model::{Change, ClusterState, ObjectKey};

/// The node most tests look from.
pub const NODE: &str = "node-a";

/// A Service `default/<name>`; `spec` is merged over `{clusterIP: 10.96.0.10, ports: [http 80/TCP
/// → targetPort http]}`.
pub fn service(name: &str, spec: Value) -> Value {
    let object = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "default", "name": name},
        "spec": {
            "clusterIP": "10.96.0.10",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
        },
    });
    with(object, json!({"spec": spec}))
}

/// An IPv4 EndpointSlice `default/<name>` of Service `service` with one port `http` 8080/TCP.
pub fn slice(name: &str, service: &str, endpoints: Vec<Value>) -> Value {
    slice_with(
        name,
        service,
        "IPv4",
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        endpoints,
    )
}

/// An EndpointSlice `default/<name>` of Service `service` with the given family and ports.
pub fn slice_with(
    name: &str,
    service: &str,
    address_type: &str,
    ports: Value,
    endpoints: Vec<Value>,
) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": name,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    })
}

/// An endpoint on `node`; `state` is "ready", "unready", "terminating" (serving), "gone"
/// (terminating, not serving) or "serving-not-terminating" (not ready, yet serving).
pub fn endpoint(ip: &str, node: &str, state: &str) -> Value {
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

/// A Node in `zone` with `(type, address)` pairs (`InternalIP`, `ExternalIP`, `Hostname`).
pub fn node(name: &str, zone: &str, addresses: &[(&str, &str)]) -> Value {
    let addresses: Vec<Value> =
        addresses.iter().map(|(t, a)| json!({"type": t, "address": a})).collect();
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
           "status": {"addresses": addresses}})
}

/// [`NODE`] in zone-a with InternalIP 192.168.1.10.
pub fn this_node() -> Value {
    node(NODE, "zone-a", &[("InternalIP", "192.168.1.10"), ("Hostname", NODE)])
}

/// A `switchyard.io/v1alpha1` object of `kind` (cluster-scoped) with `spec`.
pub fn switchyard_object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "switchyard.io/v1alpha1", "kind": kind, "metadata": {"name": name},
           "spec": spec})
}

/// An IPPool handing out `addresses` (CIDRs or ranges).
pub fn ip_pool(name: &str, addresses: &[&str]) -> Value {
    switchyard_object("IPPool", name, json!({"addresses": addresses}))
}

/// A BGPPeer at `address` (eBGP: AS 64512 towards AS 64500) with `spec` merged over that.
pub fn bgp_peer(name: &str, address: &str, spec: Value) -> Value {
    let base = json!({"peerAddress": address, "peerASN": 64500, "myASN": 64512});
    switchyard_object("BGPPeer", name, with(base, spec))
}

/// A Secret in `namespace` holding `string_data` (key → text), as a manifest would write it.
pub fn secret(namespace: &str, name: &str, string_data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": namespace}, "stringData": string_data})
}

/// An L2Advertisement with `spec` (`{}`: every address, from every node, on every interface).
pub fn l2_advertisement(name: &str, spec: Value) -> Value {
    switchyard_object("L2Advertisement", name, spec)
}

/// A BGPAdvertisement with `spec` (`{}` announces everything to every peer).
pub fn bgp_advertisement(name: &str, spec: Value) -> Value {
    switchyard_object("BGPAdvertisement", name, spec)
}

/// `object` with `patch` merged over it: objects merge key by key, `null` removes a key,
/// anything else (arrays included) replaces.
pub fn with(mut object: Value, patch: Value) -> Value {
    merge(&mut object, patch);
    object
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    base.remove(&key);
                } else {
                    merge(base.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (base, patch) => *base = patch,
    }
}

/// The key of an object (`namespace/name`; Nodes have no namespace).
pub fn key_of(object: &Value) -> ObjectKey {
    let metadata = &object["metadata"];
    let name = metadata["name"].as_str().expect("object without metadata.name");
    ObjectKey::new(metadata["namespace"].as_str().unwrap_or(""), name)
}

/// A built object as the typed Kubernetes object it stands for.
pub fn typed<T: serde::de::DeserializeOwned>(object: &Value) -> T {
    serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{e}: not a valid object: {object}"))
}

/// The change a source emits for `object` (`delete`: its removal).
pub fn change(object: &Value, delete: bool) -> Change {
    let key = key_of(object);
    match object["kind"].as_str() {
        Some("Service") => {
            Change::Service(key, (!delete).then(|| Box::new(typed::<Service>(object))))
        }
        Some("EndpointSlice") => {
            Change::EndpointSlice(key, (!delete).then(|| Box::new(typed::<EndpointSlice>(object))))
        }
        Some("Node") => Change::Node(key, (!delete).then(|| Box::new(typed::<Node>(object)))),
        Some("IPPool") => Change::IPPool(key, (!delete).then(|| Box::new(typed(object)))),
        Some("BGPPeer") => Change::BGPPeer(key, (!delete).then(|| Box::new(typed(object)))),
        Some("BGPAdvertisement") => {
            Change::BGPAdvertisement(key, (!delete).then(|| Box::new(typed(object))))
        }
        Some("L2Advertisement") => {
            Change::L2Advertisement(key, (!delete).then(|| Box::new(typed(object))))
        }
        Some("Namespace") => Change::Namespace(key, (!delete).then(|| Box::new(typed(object)))),
        Some("Secret") => Change::Secret(key, (!delete).then(|| Box::new(typed(object)))),
        other => panic!("unknown kind {other:?}"),
    }
}

/// The cluster state holding `objects`.
pub fn cluster(objects: &[Value]) -> ClusterState {
    let mut state = ClusterState::default();
    for object in objects {
        state.apply(change(object, false));
    }
    state
}
