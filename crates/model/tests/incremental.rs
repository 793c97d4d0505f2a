//! The incremental engine: a change recomputes only what it touches, and the result never depends
//! on whether the state was built at once or change by change.
// Case tables are tuples of slices; naming each shape would hide the table.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard_model::{Change, ClusterState, DesiredState, NodeModel};
use switchyard_testing::objects::change;

fn node_port_service(name: &str, cluster_ip: &str, node_port: u16) -> Value {
    svc(
        name,
        json!({"type": "NodePort", "clusterIP": cluster_ip,
                     "ports": [{"name": "http", "port": 80, "nodePort": node_port}]}),
    )
}

/// Versions of a handful of objects, chosen so that random sequences hit every engine path:
/// collisions (NodePort and clusterIP/externalIP), a slice moving between Services, a Service
/// turning headless, this node changing address and zone, external addresses refused because
/// they are a cluster IP or a node address that comes and goes.
fn pool() -> Vec<Value> {
    let mut hinted = ep("10.1.0.5", "node-b", "ready");
    hinted["hints"] = json!({"forZones": [{"name": "zone-a"}]});
    vec![
        node_port_service("a", "10.96.0.1", 30080),
        with(
            node_port_service("a", "10.96.0.1", 30081),
            json!({"spec": {"externalTrafficPolicy": "Local"}}),
        ),
        with(
            node_port_service("b", "10.96.0.2", 30080),
            json!({"spec": {"externalIPs": ["10.96.0.1"]}}),
        ),
        svc("b", json!({"clusterIP": "10.96.0.1", "sessionAffinity": "ClientIP"})),
        svc("c", json!({"clusterIP": "10.96.0.3", "trafficDistribution": "PreferSameZone"})),
        with(
            svc("c", json!({"clusterIP": "10.96.0.3"})),
            json!({"metadata": {"labels": {"service.kubernetes.io/headless": ""}}}),
        ),
        slice("a-1", "a", vec![ep("10.1.0.1", NODE, "ready"), ep("10.1.0.2", "node-b", "ready")]),
        slice(
            "a-1",
            "a",
            vec![ep("10.1.0.1", NODE, "terminating"), ep("10.1.0.2", "node-b", "unready")],
        ),
        slice(
            "a-2",
            "a",
            vec![ep("10.1.0.2", "node-b", "ready"), ep("10.1.0.3", "node-c", "terminating")],
        ),
        slice("b-1", "b", vec![ep("10.1.0.4", "node-b", "ready")]),
        slice("b-1", "a", vec![ep("10.1.0.4", "node-b", "ready")]),
        slice("c-1", "c", vec![hinted.clone(), ep("10.1.0.6", NODE, "ready")]),
        slice("c-1", "c", vec![hinted]),
        this_node(),
        node(NODE, "zone-b", &[("InternalIP", "192.168.1.11")]),
        node("node-b", "zone-a", &[("InternalIP", "192.168.1.12")]),
        svc("d", json!({"clusterIP": "10.96.0.4", "externalIPs": ["192.168.1.12", "10.96.0.3"]})),
        svc("d", json!({"clusterIP": "10.96.0.4", "externalIPs": ["192.168.1.11", "127.0.0.1"]})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn incremental_updates_equal_a_full_recomputation(
        steps in prop::collection::vec((0..18usize, prop::bool::weighted(0.2)), 1..40)
    ) {
        let pool = pool();
        let mut model = NodeModel::new(config());
        let mut snapshot = ClusterState::default();
        let mut previous = DesiredState::default();
        for (index, delete) in steps {
            let change = change(&pool[index % pool.len()], delete);
            snapshot.apply(change.clone());
            let diff = model.apply(change);

            let full = NodeModel::from_state(config(), &snapshot);
            prop_assert_eq!(model.desired(), full.desired());
            prop_assert_eq!(model.refusals(), full.refusals());
            prop_assert_eq!(&diff, &DesiredState::diff(&previous, model.desired()));
            let mut replayed = previous.clone();
            replayed.apply(&diff);
            prop_assert_eq!(&replayed, model.desired());
            previous = model.desired().clone();
        }
    }
}

#[test]
fn a_change_reports_only_the_frontends_it_changed() {
    let base = [
        this_node(),
        node_port_service("a", "10.96.0.1", 30080),
        svc("b", json!({"clusterIP": "10.96.0.2"})),
        slice("a-1", "a", vec![ep("10.1.0.1", "node-b", "ready")]),
        slice("b-1", "b", vec![ep("10.1.0.2", "node-b", "ready")]),
    ];
    // (case, change, frontends upserted, frontends removed)
    let cases: Vec<(&str, Change, Vec<&str>, Vec<&str>)> = vec![
        (
            "slice of b gains an endpoint",
            change(
                &slice(
                    "b-1",
                    "b",
                    vec![ep("10.1.0.2", "node-b", "ready"), ep("10.1.0.3", "node-c", "ready")],
                ),
                false,
            ),
            vec!["10.96.0.2:80/TCP"],
            vec![],
        ),
        ("identical slice: nothing", change(&base[4], false), vec![], vec![]),
        (
            "slice of a deleted",
            change(&base[3], true),
            vec!["10.96.0.1:80/TCP", "192.168.1.10:30080/TCP"],
            vec![],
        ),
        ("service b deleted", change(&base[2], true), vec![], vec!["10.96.0.2:80/TCP"]),
        (
            "service b becomes headless",
            change(
                &with(
                    base[2].clone(),
                    json!({"metadata": {"labels": {"service.kubernetes.io/headless": ""}}}),
                ),
                false,
            ),
            vec![],
            vec!["10.96.0.2:80/TCP"],
        ),
        (
            "this node changes address: NodePort moves",
            change(&node(NODE, "zone-a", &[("InternalIP", "192.168.1.99")]), false),
            vec!["192.168.1.99:30080/TCP"],
            vec!["192.168.1.10:30080/TCP"],
        ),
        (
            "another node changes: nothing",
            change(&node("node-b", "zone-c", &[("InternalIP", "192.168.1.12")]), false),
            vec![],
            vec![],
        ),
        (
            "this node deleted: NodePorts go",
            change(&this_node(), true),
            vec![],
            vec!["192.168.1.10:30080/TCP"],
        ),
    ];
    for (name, change, upserted, removed) in cases {
        let mut model = NodeModel::from_state(config(), &cluster(&base));
        let diff = model.apply(change);
        let got_upserted: Vec<String> = diff.upserted.iter().map(|(k, _)| k.to_string()).collect();
        let got_removed: Vec<String> = diff.removed.iter().map(ToString::to_string).collect();
        assert_eq!(got_upserted, upserted, "{name}: upserted");
        assert_eq!(got_removed, removed, "{name}: removed");
    }
}

#[test]
fn deleting_the_owner_of_a_colliding_frontend_hands_it_to_the_next_service() {
    let objects = [
        this_node(),
        node_port_service("a", "10.96.0.1", 30080),
        node_port_service("b", "10.96.0.2", 30080),
        node_port_service("c", "10.96.0.3", 30080),
    ];
    let node_port = key("192.168.1.10:30080/TCP");
    // Delete in this order; after each step the owner is the smallest remaining name.
    let cases: &[(usize, Option<&str>)] =
        &[(1, Some("default/b")), (2, Some("default/c")), (3, None)];
    let mut model = NodeModel::from_state(config(), &cluster(&objects));
    assert_eq!(model.desired().get(&node_port).unwrap().service.to_string(), "default/a");
    for (index, owner) in cases {
        let diff = model.apply(change(&objects[*index], true));
        let got = model.desired().get(&node_port).map(|f| f.service.to_string());
        assert_eq!(
            got.as_deref(),
            *owner,
            "after deleting {}",
            objects[*index]["metadata"]["name"]
        );
        assert_eq!(diff.removed.contains(&node_port), owner.is_none());
    }
}

#[test]
fn diff_lists_added_changed_and_removed_frontends_sorted() {
    let old = desired(
        &config(),
        &[svc("a", json!({"clusterIP": "10.96.0.1"})), svc("b", json!({"clusterIP": "10.96.0.2"}))],
    );
    let cases: &[(&str, Vec<Value>, &[&str], &[&str])] = &[
        (
            "same",
            vec![
                svc("a", json!({"clusterIP": "10.96.0.1"})),
                svc("b", json!({"clusterIP": "10.96.0.2"})),
            ],
            &[],
            &[],
        ),
        (
            "one added",
            vec![
                svc("a", json!({"clusterIP": "10.96.0.1"})),
                svc("b", json!({"clusterIP": "10.96.0.2"})),
                svc("c", json!({"clusterIP": "10.96.0.0"})),
            ],
            &["10.96.0.0:80/TCP"],
            &[],
        ),
        (
            "one changed",
            vec![
                svc("a", json!({"clusterIP": "10.96.0.1", "sessionAffinity": "ClientIP"})),
                svc("b", json!({"clusterIP": "10.96.0.2"})),
            ],
            &["10.96.0.1:80/TCP"],
            &[],
        ),
        ("all removed", vec![], &[], &["10.96.0.1:80/TCP", "10.96.0.2:80/TCP"]),
    ];
    for (name, objects, upserted, removed) in cases {
        let new = desired(&config(), objects);
        let diff = DesiredState::diff(&old, &new);
        let got_upserted: Vec<String> = diff.upserted.iter().map(|(k, _)| k.to_string()).collect();
        let got_removed: Vec<String> = diff.removed.iter().map(ToString::to_string).collect();
        assert_eq!(got_upserted, *upserted, "{name}");
        assert_eq!(got_removed, *removed, "{name}");
        assert_eq!(diff.is_empty(), upserted.is_empty() && removed.is_empty(), "{name}");
    }
}

#[test]
fn desired_state_and_diff_round_trip_through_json() {
    let cases: &[(&str, Vec<Value>)] = &[
        ("empty", vec![]),
        (
            "every kind of frontend",
            vec![
                this_node(),
                with(
                    svc(
                        "web",
                        json!({
                            "type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 32100,
                            "clusterIPs": ["10.96.0.10", "fd00::10"], "externalIPs": ["203.0.113.5"],
                            "sessionAffinity": "ClientIP", "loadBalancerSourceRanges": ["198.51.100.0/24"],
                            "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
                        }),
                    ),
                    json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}),
                ),
                slice(
                    "web-1",
                    "web",
                    vec![ep("10.1.0.1", NODE, "ready"), ep("10.1.0.2", "node-b", "terminating")],
                ),
            ],
        ),
    ];
    for (name, objects) in cases {
        let state = desired(&config(), objects);
        let text = serde_json::to_string(&state).unwrap();
        let back: DesiredState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, state, "{name}");
        let diff = DesiredState::diff(&DesiredState::default(), &state);
        let back: switchyard_model::StateDiff =
            serde_json::from_str(&serde_json::to_string(&diff).unwrap()).unwrap();
        assert_eq!(back, diff, "{name}");
    }
}
