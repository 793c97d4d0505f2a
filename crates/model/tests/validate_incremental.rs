//! Incremental validation (issue 18 item 5): after any sequence of updates its findings are what
//! a whole-state `validate` finds, and an update validates again only what it touched.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard_model::validate::{IncrementalValidation, ValidationOptions, validate};
use switchyard_model::{ClusterState, ObjectKind};
use switchyard_testing::objects::{
    bgp_advertisement, bgp_peer, change, endpoint as ep, ip_pool, node, secret, service as svc,
    slice, slice_with, with,
};

fn node_port(name: &str, cluster_ip: &str, port: u16, protocol: &str) -> Value {
    svc(
        name,
        json!({"type": "NodePort", "clusterIP": cluster_ip,
               "ports": [{"name": "http", "port": 80, "protocol": protocol, "nodePort": port}]}),
    )
}

/// Versions of a few objects, chosen so that random sequences reach every cross-object rule:
/// NodePort and health check port clashes (owner changes when the smallest name goes), cluster
/// IP clashes (also inside one Service), externalIPs and ingress IPs on cluster IPs and node
/// addresses that come and go, slices that name missing Services, missing nodes and other port
/// names, the node list becoming empty, and the load-balancing kinds referring to each other.
fn pool() -> Vec<Value> {
    vec![
        node_port("a", "10.96.0.1", 30080, "TCP"),
        node_port("a", "10.96.0.1", 30081, "UDP"),
        node_port("b", "10.96.0.2", 30080, "TCP"),
        with(
            node_port("b", "10.96.0.2", 30081, "TCP"),
            json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                            "healthCheckNodePort": 30080}}),
        ),
        with(node_port("c", "10.96.0.1", 30081, "UDP"), json!({"spec": {"clusterIPs": null}})),
        svc("c", json!({"clusterIPs": ["10.96.0.3", "10.96.0.3"], "clusterIP": "10.96.0.3"})),
        svc("d", json!({"clusterIP": "10.96.0.4", "externalIPs": ["10.96.0.1", "192.168.1.12"]})),
        with(
            svc("d", json!({"clusterIP": "10.96.0.4", "type": "LoadBalancer"})),
            json!({"status": {"loadBalancer": {"ingress": [{"ip": " 10.96.0.3"},
                                                            {"ip": "192.168.1.11"}]}}}),
        ),
        svc("e", json!({"clusterIP": "None"})),
        svc(
            "e",
            json!({"clusterIP": "10.96.0.2", "ports": [
            {"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
        ),
        svc("a-b", json!({"type": "ExternalName", "externalName": "example.com"})),
        slice("a-1", "a", vec![ep("10.1.0.1", "node-a", "ready")]),
        slice("a-1", "b", vec![ep("10.1.0.1", "node-z", "ready")]),
        slice_with(
            "e-1",
            "e",
            "IPv4",
            json!([{"name": "dns", "port": 53, "protocol": "UDP"}]),
            vec![ep("10.1.0.2", "node-b", "ready")],
        ),
        slice_with("e-2", "e", "IPv4", json!([]), vec![ep("10.1.0.3", "node-b", "ready")]),
        with(slice("x-1", "x", vec![]), json!({"metadata": {"labels": null}})),
        slice("x-2", "d", vec![ep("127.0.0.1", "node-b", "ready")]),
        node("node-a", "zone-a", &[("InternalIP", "192.168.1.11")]),
        node("node-a", "zone-a", &[("InternalIP", "10.96.0.2"), ("ExternalIP", "bad")]),
        node("node-b", "zone-b", &[("InternalIP", "192.168.1.12")]),
        node("node-b", "zone-b", &[("Hostname", "node-b")]),
        ip_pool("p1", &["10.200.0.0/24"]),
        ip_pool("p2", &["10.200.0.128/25", "nonsense"]),
        bgp_peer("r1", "192.168.1.1", json!({"holdTime": "2s"})),
        bgp_advertisement("all", json!({"ipPools": ["p1"], "peers": ["r1"]})),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
        secret("default", "md5", json!({"password": "x"})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn incremental_findings_equal_a_full_validation(
        updates in prop::collection::vec(
            prop::collection::vec((0..27usize, prop::bool::weighted(0.25)), 1..4), 1..40)
    ) {
        let pool = pool();
        let options = ValidationOptions::default();
        let mut incremental = IncrementalValidation::new(options);
        let mut state = ClusterState::default();
        for update in updates {
            let changes: Vec<_> =
                update.iter().map(|(i, delete)| change(&pool[i % pool.len()], *delete)).collect();
            for change in &changes {
                state.apply(change.clone());
            }
            incremental.update(changes);
            let got: Vec<String> = incremental.findings().map(ToString::to_string).collect();
            let want: Vec<String> = validate(&state, &options).iter().map(ToString::to_string).collect();
            prop_assert_eq!(got, want);
            prop_assert!(incremental.findings().eq(validate(&state, &options).iter()));
        }
    }
}

/// The point of it: at 2,000 Services, changing one validates that Service and the few objects
/// sharing something with it, not the whole state.
#[test]
fn an_update_validates_only_what_it_touched() {
    let mut incremental = IncrementalValidation::new(ValidationOptions::default());
    let services = (0..2_000).map(|i| {
        let ip = format!("10.96.{}.{}", i / 250, i % 250 + 1);
        change(&svc(&format!("s{i:04}"), json!({"clusterIP": ip})), false)
    });
    let slices = (0..2_000).map(|i| {
        let ip = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        let name = format!("s{i:04}");
        change(&slice(&format!("{name}-1"), &name, vec![ep(&ip, "node-a", "ready")]), false)
    });
    let first = incremental.update(services.chain(slices));
    assert_eq!(first.len(), 4_000);
    assert_eq!(incremental.findings().count(), 0);

    // s0007 takes s0003's cluster IP: both Services are validated again, nothing else.
    let taken = change(&svc("s0007", json!({"clusterIP": "10.96.0.4"})), false);
    let affected = incremental.update([taken]);
    let names: Vec<String> = affected.iter().map(|(kind, key)| format!("{kind} {key}")).collect();
    assert_eq!(
        names,
        ["Service default/s0003", "Service default/s0007", "EndpointSlice default/s0007-1"]
    );
    let findings: Vec<String> = incremental.findings().map(ToString::to_string).collect();
    assert_eq!(
        findings,
        ["Service default/s0007: spec.clusterIPs[0]: cluster IP 10.96.0.4 is already used by \
          Service default/s0003"]
    );
    // A slice update touches the slice and its Service.
    let moved = change(&slice("s0009-1", "s0009", vec![ep("10.1.9.9", "node-a", "ready")]), false);
    let affected = incremental.update([moved]);
    assert_eq!(affected.len(), 2, "{affected:?}");
    assert!(affected.iter().all(|(kind, _)| *kind != ObjectKind::Node));
}
