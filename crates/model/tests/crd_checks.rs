//! Semantic checks of our own kinds, one table row per rule, and proof that they never change
//! what the model programs for Services.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use switchyard_model::crd::{BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};
use switchyard_model::validate::{Finding, Severity, ValidationOptions, validate};
use switchyard_model::{Change, ClusterState, NodeModel, ObjectKey, ObjectKind, ProxyConfig};

fn object<T: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> T {
    serde_json::from_value(json!({
        "apiVersion": "switchyard.io/v1alpha1", "kind": kind,
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn pool(name: &str, spec: Value) -> (ObjectKey, IPPool) {
    (ObjectKey::cluster(name), object("IPPool", name, spec))
}

fn peer(name: &str, patch: Value) -> (ObjectKey, BGPPeer) {
    let mut spec = json!({"peerAddress": "192.0.2.1", "peerASN": 65000, "myASN": 65001});
    for (key, value) in patch.as_object().unwrap() {
        spec[key] = value.clone();
    }
    (ObjectKey::cluster(name), object("BGPPeer", name, spec))
}

fn advertisement(name: &str, spec: Value) -> (ObjectKey, BGPAdvertisement) {
    (ObjectKey::cluster(name), object("BGPAdvertisement", name, spec))
}

/// (severity, kind object: field: message) of every finding.
fn findings(state: &ClusterState) -> Vec<(Severity, String)> {
    validate(state, &ValidationOptions::default())
        .iter()
        .map(|f: &Finding| (f.severity, f.to_string()))
        .collect()
}

fn one_finding(state: &ClusterState) -> (Severity, String) {
    let mut all = findings(state);
    assert_eq!(all.len(), 1, "expected exactly one finding, got {all:?}");
    all.remove(0)
}

#[test]
fn valid_objects_have_no_findings() {
    let mut state = ClusterState::default();
    state.ip_pools.extend([
        pool("v4", json!({"addresses": ["192.0.2.0/28", "192.0.2.100-192.0.2.110"]})),
        pool(
            "v6",
            json!({"addresses": ["2001:db8::/120"], "serviceSelector": {
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["edge"]}]}}),
        ),
    ]);
    state.bgp_peers.extend([
        peer("tor", json!({"holdTime": "9s", "keepaliveTime": "3s", "peerPort": 1179})),
        peer(
            "tor6",
            json!({"peerAddress": "2001:db8::1", "holdTime": "0s", "myASN": 4200000000u32}),
        ),
    ]);
    state.bgp_advertisements.extend([
        advertisement("all", json!({})),
        advertisement(
            "some",
            json!({"ipPools": ["v4"], "peers": ["tor"], "localPref": 200,
            "communities": ["65000:100", "65000:1:2", "no-export"], "aggregationLength": 24}),
        ),
    ]);
    assert_eq!(findings(&state), vec![]);
}

#[test]
fn pool_rules_point_at_the_offending_field() {
    let cases: &[(&str, Value, Severity, &str)] = &[
        (
            "not a CIDR or range",
            json!({"addresses": ["192.0.2.7"]}),
            Severity::Error,
            "IPPool p: spec.addresses[0]: \"192.0.2.7\" is neither a CIDR",
        ),
        (
            "bad prefix length",
            json!({"addresses": ["192.0.2.0/24", "192.0.2.0/40"]}),
            Severity::Error,
            "IPPool p: spec.addresses[1]: \"192.0.2.0/40\" is not a CIDR: the prefix length",
        ),
        (
            "reversed range",
            json!({"addresses": ["192.0.2.9-192.0.2.1"]}),
            Severity::Error,
            "spec.addresses[0]: \"192.0.2.9-192.0.2.1\": the first address comes after the last",
        ),
        (
            "mixed families in a range",
            json!({"addresses": ["192.0.2.1-2001:db8::1"]}),
            Severity::Error,
            "both ends of a range must be of one family",
        ),
        (
            "overlap inside one pool",
            json!({"addresses": ["192.0.2.0/24", "192.0.2.10-192.0.2.20"]}),
            Severity::Error,
            "IPPool p: spec.addresses[1]: 192.0.2.10-192.0.2.20 overlaps spec.addresses[0] of this pool",
        ),
        (
            "empty",
            json!({"addresses": []}),
            Severity::Warning,
            "IPPool p: spec.addresses: empty: this pool hands out nothing",
        ),
        (
            "selector operator",
            json!({"addresses": ["192.0.2.0/28"], "namespaceSelector": {
                "matchExpressions": [{"key": "team", "operator": "Equals", "values": ["a"]}]}}),
            Severity::Error,
            "IPPool p: spec.namespaceSelector.matchExpressions[0].operator: \"Equals\" is not supported",
        ),
        (
            "In without values",
            json!({"addresses": ["192.0.2.0/28"], "serviceSelector": {
                "matchExpressions": [{"key": "team", "operator": "In"}]}}),
            Severity::Error,
            "spec.serviceSelector.matchExpressions[0].values: required for operator In",
        ),
    ];
    for (behaviour, spec, severity, expected) in cases {
        let mut state = ClusterState::default();
        state.ip_pools.extend([pool("p", spec.clone())]);
        let (got_severity, message) = one_finding(&state);
        assert!(message.contains(expected), "{behaviour}: {message}");
        assert_eq!(got_severity, *severity, "{behaviour}");
    }
}

#[test]
fn overlapping_pools_blame_the_later_one_and_name_the_other() {
    let mut state = ClusterState::default();
    state.ip_pools.extend([
        pool("a", json!({"addresses": ["192.0.2.0/24"]})),
        pool("b", json!({"addresses": ["198.51.100.0/24", "192.0.2.250-192.0.3.5"]})),
        pool("c", json!({"addresses": ["2001:db8::/64"]})),
    ]);
    assert_eq!(
        one_finding(&state),
        (
            Severity::Error,
            "IPPool b: spec.addresses[1]: 192.0.2.250-192.0.3.5 overlaps IPPool a \
             (spec.addresses[0]): pools may not share addresses"
                .to_owned()
        )
    );
}

#[test]
fn peer_rules_point_at_the_offending_field() {
    let cases: &[(&str, Value, &str)] = &[
        (
            "address",
            json!({"peerAddress": "tor-1"}),
            "spec.peerAddress: \"tor-1\" is not an IP address",
        ),
        ("ASN 0", json!({"peerASN": 0}), "spec.peerASN: AS 0 is reserved"),
        ("AS_TRANS", json!({"myASN": 23456}), "spec.myASN: AS 23456 is AS_TRANS"),
        ("port 0", json!({"peerPort": 0}), "spec.peerPort: port 0 is outside 1-65535"),
        ("duration syntax", json!({"holdTime": "90"}), "spec.holdTime: \"90\" is not a duration"),
        (
            "hold 2s",
            json!({"holdTime": "2s"}),
            "spec.holdTime: must be 0 (no keepalives) or at least 3s",
        ),
        (
            "fractional",
            json!({"holdTime": "9.5s"}),
            "spec.holdTime: \"9.5s\" is not a whole number of seconds",
        ),
        ("too long", json!({"holdTime": "19h"}), "longer than BGP's 65535 seconds"),
        (
            "keepalive not shorter",
            json!({"holdTime": "9s", "keepaliveTime": "9s"}),
            "spec.keepaliveTime: 9s is not shorter than the hold time 9s",
        ),
        ("negative", json!({"keepaliveTime": "-3s"}), "spec.keepaliveTime: \"-3s\" is negative"),
        (
            "secret without a namespace",
            json!({"passwordSecret": {"name": "bgp", "namespace": ""}}),
            "spec.passwordSecret.namespace: required",
        ),
    ];
    for (behaviour, patch, expected) in cases {
        let mut state = ClusterState::default();
        state.bgp_peers.extend([peer("tor", patch.clone())]);
        let (severity, message) = one_finding(&state);
        assert_eq!(severity, Severity::Error, "{behaviour}");
        assert!(message.starts_with("BGPPeer tor: "), "{behaviour}: {message}");
        assert!(message.contains(expected), "{behaviour}: {message}");
    }
}

#[test]
fn advertisement_rules_point_at_the_offending_field() {
    let cases: &[(&str, Value, Severity, &str)] = &[
        (
            "unknown pool",
            json!({"ipPools": ["nope"]}),
            Severity::Warning,
            "spec.ipPools[0]: IPPool nope does not exist",
        ),
        (
            "unknown peer",
            json!({"peers": ["nope"]}),
            Severity::Warning,
            "spec.peers[0]: BGPPeer nope does not exist",
        ),
        (
            "community",
            json!({"communities": ["65536:1"]}),
            Severity::Error,
            "spec.communities[0]: \"65536:1\" is not a community",
        ),
        (
            "community words",
            json!({"communities": ["no-such"]}),
            Severity::Error,
            "spec.communities[0]: \"no-such\"",
        ),
        (
            "v4 length",
            json!({"aggregationLength": 33}),
            Severity::Error,
            "spec.aggregationLength: 33 is not a prefix length (0-32)",
        ),
        (
            "v6 length",
            json!({"aggregationLengthV6": 129}),
            Severity::Error,
            "spec.aggregationLengthV6: 129",
        ),
    ];
    for (behaviour, spec, severity, expected) in cases {
        let mut state = ClusterState::default();
        state.bgp_advertisements.extend([advertisement("adv", spec.clone())]);
        let (got, message) = one_finding(&state);
        assert_eq!(got, *severity, "{behaviour}");
        assert!(message.starts_with("BGPAdvertisement adv: "), "{behaviour}: {message}");
        assert!(message.contains(expected), "{behaviour}: {message}");
    }
}

fn l2_advertisement(name: &str, spec: Value) -> (ObjectKey, L2Advertisement) {
    (ObjectKey::cluster(name), object("L2Advertisement", name, spec))
}

/// `switchyard validate` checks L2Advertisements as it checks BGPAdvertisements: pools that do
/// not exist, selectors the API server refuses, and interface names Linux refuses.
#[test]
fn l2_advertisement_rules_point_at_the_offending_field() {
    let mut valid = ClusterState::default();
    valid.ip_pools.extend([pool("v4", json!({"addresses": ["192.0.2.0/28"]}))]);
    valid.l2_advertisements.extend([
        l2_advertisement("all", json!({})),
        l2_advertisement(
            "some",
            json!({"ipPools": ["v4"], "interfaces": ["eth0", "bond0.100", "enp0s31f6"],
                   "nodeSelectors": [{"matchLabels": {"l2": "yes"}}],
                   "serviceSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}),
        ),
    ]);
    assert_eq!(findings(&valid), [], "valid L2Advertisements");
    let cases: &[(&str, Value, Severity, &str)] = &[
        (
            "unknown pool",
            json!({"ipPools": ["nope"]}),
            Severity::Warning,
            "spec.ipPools[0]: IPPool nope does not exist",
        ),
        (
            "service selector",
            json!({"serviceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
            Severity::Error,
            "spec.serviceSelector.matchExpressions[0].values: required for operator In",
        ),
        (
            "node selector operator",
            json!({"nodeSelectors": [{"matchExpressions": [{"key": "a", "operator": "Gt"}]}]}),
            Severity::Error,
            "spec.nodeSelectors[0].matchExpressions[0].operator",
        ),
        (
            "empty node selector",
            json!({"nodeSelectors": [{"matchLabels": {"l2": "yes"}}, {}]}),
            Severity::Warning,
            "spec.nodeSelectors[1]: empty: selects every node",
        ),
        (
            "interface too long",
            json!({"interfaces": ["a-very-long-name0"]}),
            Severity::Error,
            "spec.interfaces[0]: \"a-very-long-name0\" is longer than 15 bytes",
        ),
        (
            "interface with a slash",
            json!({"interfaces": ["eth0", "eth/1"]}),
            Severity::Error,
            "spec.interfaces[1]: \"eth/1\" contains '/'",
        ),
        (
            "interface with a space",
            json!({"interfaces": ["eth 0"]}),
            Severity::Error,
            "spec.interfaces[0]: \"eth 0\" contains ' '",
        ),
        (
            "empty interface",
            json!({"interfaces": [""]}),
            Severity::Error,
            "spec.interfaces[0]: empty",
        ),
        ("dot", json!({"interfaces": [".."]}), Severity::Error, "\"..\" is no interface name"),
    ];
    for (behaviour, spec, severity, expected) in cases {
        let mut state = ClusterState::default();
        state.l2_advertisements.extend([l2_advertisement("l2", spec.clone())]);
        let (got, message) = one_finding(&state);
        assert_eq!(got, *severity, "{behaviour}");
        assert!(message.starts_with("L2Advertisement l2: "), "{behaviour}: {message}");
        assert!(message.contains(expected), "{behaviour}: {message}");
    }
}

#[test]
fn our_kinds_never_change_what_the_model_programs() {
    let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10",
                 "ports": [{"port": 80, "nodePort": 30080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.5"}]}},
    }))
    .unwrap();
    let mut model = NodeModel::new(ProxyConfig::new("node-a"));
    model.apply(Change::Service(ObjectKey::new("default", "web"), Some(Box::new(service))));
    let before = model.desired().clone();
    let (pool_key, pool) = pool("p", json!({"addresses": ["192.0.2.0/24"]}));
    let (peer_key, peer) = peer("tor", json!({}));
    let (adv_key, adv) = advertisement("all", json!({}));
    for change in [
        Change::IPPool(pool_key.clone(), Some(Box::new(pool))),
        Change::BGPPeer(peer_key.clone(), Some(Box::new(peer))),
        Change::BGPAdvertisement(adv_key.clone(), Some(Box::new(adv))),
        Change::IPPool(pool_key, None),
        Change::BGPPeer(peer_key, None),
        Change::BGPAdvertisement(adv_key, None),
    ] {
        let kind = change.kind();
        assert!(kind.is_cluster_scoped() && kind != ObjectKind::Node);
        let diff = model.apply(change);
        assert!(diff.upserted.is_empty() && diff.removed.is_empty(), "{kind}: {diff:?}");
        assert_eq!(model.desired(), &before, "{kind}");
    }
}
