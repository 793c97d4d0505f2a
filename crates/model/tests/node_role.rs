//! What the model tells the node role besides frontends: the endpoints EndpointSlices mark
//! terminating (held, their connections kept) and whether this node is eligible for traffic.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::json;
use switchyard_model::{NodeModel, ProxyConfig, TO_BE_DELETED_TAINT};
use switchyard_testing::objects::{NODE, change, endpoint, slice, slice_with, this_node, with};

fn endpoints(list: &[(&str, u16)]) -> HashSet<(IpAddr, u16)> {
    list.iter().map(|(ip, port)| (ip.parse().unwrap(), *port)).collect()
}

#[test]
fn terminating_endpoints_are_those_a_slice_marks_terminating_until_it_changes() {
    let mut model = NodeModel::new(ProxyConfig::new(NODE));
    let web = |states: &[(&str, &str)]| {
        slice("web-1", "web", states.iter().map(|(ip, state)| endpoint(ip, NODE, state)).collect())
    };
    model.apply(change(&web(&[("10.0.0.1", "ready"), ("10.0.0.2", "terminating")]), false));
    // A second slice with two ports and a terminating, no longer serving endpoint.
    let two_ports = json!([{"name": "a", "port": 80, "protocol": "TCP"},
                           {"name": "b", "port": 443, "protocol": "TCP"}]);
    let api =
        slice_with("api-1", "api", "IPv4", two_ports, vec![endpoint("10.0.0.3", NODE, "gone")]);
    model.apply(change(&api, false));
    assert_eq!(
        model.terminating_endpoints(),
        endpoints(&[("10.0.0.2", 8080), ("10.0.0.3", 80), ("10.0.0.3", 443)])
    );
    assert!(model.is_terminating("10.0.0.2".parse().unwrap()));
    assert!(!model.is_terminating("10.0.0.1".parse().unwrap()));

    // The endpoint left its slice: no longer terminating. A deleted slice forgets its own.
    model.apply(change(&web(&[("10.0.0.1", "ready")]), false));
    assert!(!model.is_terminating("10.0.0.2".parse().unwrap()));
    model.apply(change(&api, true));
    assert!(model.terminating_endpoints().is_empty());
}

#[test]
fn a_node_is_eligible_while_it_exists_and_is_not_going_away() {
    let mut model = NodeModel::new(ProxyConfig::new(NODE));
    assert!(!model.node_eligible(), "no Node object yet");
    model.apply(change(&this_node(), false));
    assert!(model.node_eligible());
    let tainted = with(
        this_node(),
        json!({"spec": {"taints": [{"key": TO_BE_DELETED_TAINT, "effect": "NoSchedule"}]}}),
    );
    model.apply(change(&tainted, false));
    assert!(!model.node_eligible(), "the autoscaler's taint");
    let other_taint = with(
        this_node(),
        json!({"spec": {"taints": [{"key": "dedicated", "effect": "NoSchedule"}]}}),
    );
    model.apply(change(&other_taint, false));
    assert!(model.node_eligible(), "another taint");
    let deleting =
        with(this_node(), json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
    model.apply(change(&deleting, false));
    assert!(!model.node_eligible(), "deletionTimestamp");
    model.apply(change(&this_node(), true));
    assert!(!model.node_eligible(), "deleted");
}
