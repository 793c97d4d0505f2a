//! Which addresses become VIPs and which nodes serve them, as tables of cases.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;

use common::*;
use switchyard_director::{vip_set, vip_set_at};
use switchyard_model::{FrontendKey, NodeModel, Protocol, ProxyConfig, TrafficPolicy};

fn key(ip: &str, port: u16, protocol: Protocol) -> FrontendKey {
    FrontendKey::new(ip.parse().unwrap(), port, protocol)
}

fn names(set: &switchyard_director::VipSet, k: &FrontendKey) -> Vec<(String, String, u32)> {
    set.vips[k]
        .nodes
        .iter()
        .map(|n| (n.name.to_string(), n.address.to_string(), n.weight))
        .collect()
}

#[test]
fn only_annotated_load_balancer_addresses_are_vips() {
    let state = cluster(
        &[
            lb_service("web", &["192.0.2.10"], false, Some("true")),
            lb_service("plain", &["192.0.2.11"], false, None),
            lb_service("off", &["192.0.2.12"], false, Some("false")),
        ],
        &[],
        &three_nodes(),
    );
    let set = vip_set(&state);
    let keys: Vec<String> = set.vips.keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["192.0.2.10:53/UDP", "192.0.2.10:80/TCP"]);
    assert!(set.problems.is_empty(), "{:?}", set.problems);
}

#[test]
fn a_bad_opt_in_value_is_reported_and_not_served() {
    let state =
        cluster(&[lb_service("web", &["192.0.2.10"], false, Some("yes"))], &[], &three_nodes());
    let set = vip_set(&state);
    assert!(set.vips.is_empty());
    assert_eq!(set.problems.len(), 1);
    let text = set.problems[0].to_string();
    assert!(text.starts_with("Service default/web: annotation switchyard.io/director"), "{text}");
}

#[test]
fn cluster_policy_uses_every_eligible_node_of_the_vip_family() {
    let state = cluster(
        &[lb_service("web", &["192.0.2.10", "2001:db8::10"], false, Some("true"))],
        &[slice("web-1", "web", false, &[("10.1.0.5", "node-a", true)])],
        &three_nodes(),
    );
    let set = vip_set(&state);
    let v4 = key("192.0.2.10", 80, Protocol::Tcp);
    let v6 = key("2001:db8::10", 80, Protocol::Tcp);
    assert_eq!(set.vips[&v4].policy, TrafficPolicy::Cluster);
    assert_eq!(
        names(&set, &v4),
        [
            ("node-a".into(), "10.0.0.1".into(), 1),
            ("node-b".into(), "10.0.0.2".into(), 1),
            ("node-c".into(), "10.0.0.3".into(), 1)
        ]
    );
    assert_eq!(
        names(&set, &v6).iter().map(|n| n.1.as_str()).collect::<Vec<_>>(),
        ["fd00::1", "fd00::2", "fd00::3"]
    );
}

#[test]
fn local_policy_uses_nodes_with_ready_endpoints_weighted_by_their_count() {
    let state = cluster(
        &[lb_service("web", &["192.0.2.10"], true, Some("true"))],
        &[slice(
            "web-1",
            "web",
            false,
            &[
                ("10.1.0.5", "node-a", true),
                ("10.1.0.6", "node-a", true),
                ("10.1.1.5", "node-b", false),
                ("10.1.2.5", "node-c", true),
            ],
        )],
        &three_nodes(),
    );
    let set = vip_set(&state);
    let k = key("192.0.2.10", 80, Protocol::Tcp);
    assert_eq!(set.vips[&k].policy, TrafficPolicy::Local);
    assert_eq!(
        names(&set, &k),
        [("node-a".into(), "10.0.0.1".into(), 2), ("node-c".into(), "10.0.0.3".into(), 1)]
    );
}

/// The director's Local list is exactly the set of nodes whose own model reports ready local
/// endpoints (what their health check node port answers 200 for).
#[test]
fn local_nodes_agree_with_each_nodes_own_model() {
    let state = cluster(
        &[lb_service("web", &["192.0.2.10"], true, Some("true"))],
        &[slice(
            "web-1",
            "web",
            false,
            &[
                ("10.1.0.5", "node-a", true),
                ("10.1.1.5", "node-b", false),
                ("10.1.2.5", "node-c", true),
            ],
        )],
        &three_nodes(),
    );
    let set = vip_set(&state);
    let k = key("192.0.2.10", 80, Protocol::Tcp);
    let directors: Vec<String> = set.vips[&k].nodes.iter().map(|n| n.name.to_string()).collect();
    let own: Vec<String> = ["node-a", "node-b", "node-c"]
        .into_iter()
        .filter(|name| {
            let model = NodeModel::from_state(ProxyConfig::new(*name), &state);
            model.desired().frontends[&k].local_ready_backends() > 0
        })
        .map(String::from)
        .collect();
    assert_eq!(directors, own);
}

#[test]
fn unready_excluded_and_zero_weight_nodes_are_left_out() {
    let mut not_ready = node("node-b", &["10.0.0.2"]);
    not_ready["status"]["conditions"] = serde_json::json!([{"type": "Ready", "status": "False"}]);
    let mut excluded = node("node-c", &["10.0.0.3"]);
    excluded["metadata"]["labels"] =
        serde_json::json!({"node.kubernetes.io/exclude-from-external-load-balancers": ""});
    let nodes = [
        node("node-a", &["10.0.0.1"]),
        not_ready,
        excluded,
        annotated_node("node-d", &["10.0.0.4"], "switchyard.io/director-weight", "0"),
        annotated_node("node-e", &["10.0.0.5"], "switchyard.io/director-weight", "3"),
    ];
    let state = cluster(&[lb_service("web", &["192.0.2.10"], false, Some("true"))], &[], &nodes);
    let set = vip_set(&state);
    assert_eq!(
        names(&set, &key("192.0.2.10", 80, Protocol::Tcp)),
        [("node-a".into(), "10.0.0.1".into(), 1), ("node-e".into(), "10.0.0.5".into(), 3)]
    );
}

#[test]
fn a_bad_weight_is_reported_and_counts_as_one() {
    let nodes = [annotated_node("node-a", &["10.0.0.1"], "switchyard.io/director-weight", "heavy")];
    let state = cluster(&[lb_service("web", &["192.0.2.10"], false, Some("true"))], &[], &nodes);
    let set = vip_set(&state);
    assert_eq!(names(&set, &key("192.0.2.10", 80, Protocol::Tcp))[0].2, 1);
    assert_eq!(set.problems.len(), 1);
    assert!(
        set.problems[0].to_string().starts_with("Node node-a: annotation"),
        "{:?}",
        set.problems
    );
}

#[test]
fn a_node_without_the_vip_family_gets_the_other_one() {
    let nodes = [node("node-a", &["10.0.0.1"]), node("node-b", &["fd00::2"])];
    let state = cluster(
        &[lb_service("web", &["192.0.2.10", "2001:db8::10"], false, Some("true"))],
        &[],
        &nodes,
    );
    let set = vip_set(&state);
    let v4: Vec<IpAddr> =
        set.vips[&key("192.0.2.10", 80, Protocol::Tcp)].nodes.iter().map(|n| n.address).collect();
    let v6: Vec<IpAddr> =
        set.vips[&key("2001:db8::10", 80, Protocol::Tcp)].nodes.iter().map(|n| n.address).collect();
    assert_eq!(v4, ["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::2".parse().unwrap()]);
    assert_eq!(v6, ["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::2".parse().unwrap()]);
}

#[test]
fn a_node_without_addresses_is_reported() {
    let nodes = [node("node-a", &["10.0.0.1"]), node("node-x", &[])];
    let state = cluster(&[lb_service("web", &["192.0.2.10"], false, Some("true"))], &[], &nodes);
    let set = vip_set(&state);
    assert_eq!(set.vips[&key("192.0.2.10", 80, Protocol::Tcp)].nodes.len(), 1);
    assert!(set.problems.iter().any(|p| p.object == "Node node-x"), "{:?}", set.problems);
}

#[test]
fn drained_and_deleted_nodes_get_weight_zero_and_a_bad_drain_value_is_reported() {
    let mut deleting = node("node-c", &["10.0.0.3"]);
    deleting["metadata"]["deletionTimestamp"] = serde_json::json!("2026-12-06T10:00:00Z");
    let mut tainted = node("node-f", &["10.0.0.6"]);
    tainted["spec"] = serde_json::json!({"taints": [
        {"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]});
    let nodes = [
        node("node-a", &["10.0.0.1"]),
        annotated_node("node-b", &["10.0.0.2"], "switchyard.io/drain", "true"),
        deleting,
        annotated_node("node-d", &["10.0.0.4"], "switchyard.io/drain", "false"),
        annotated_node("node-e", &["10.0.0.5"], "switchyard.io/drain", "soon"),
        tainted,
    ];
    let state = cluster(&[lb_service("web", &["192.0.2.10"], false, Some("true"))], &[], &nodes);
    let set = vip_set(&state);
    assert_eq!(
        names(&set, &key("192.0.2.10", 80, Protocol::Tcp)),
        [
            ("node-a".into(), "10.0.0.1".into(), 1),
            ("node-d".into(), "10.0.0.4".into(), 1),
            ("node-e".into(), "10.0.0.5".into(), 1)
        ]
    );
    assert_eq!(set.problems.len(), 1, "{:?}", set.problems);
    let text = set.problems[0].to_string();
    assert!(text.starts_with("Node node-e: annotation switchyard.io/drain: \"soon\""), "{text}");
}

#[test]
fn a_drained_node_also_leaves_local_policy_vips() {
    let nodes = [
        node("node-a", &["10.0.0.1"]),
        annotated_node("node-b", &["10.0.0.2"], "switchyard.io/drain", "true"),
    ];
    let state = cluster(
        &[lb_service("web", &["192.0.2.10"], true, Some("true"))],
        &[slice(
            "web-1",
            "web",
            false,
            &[("10.1.0.5", "node-a", true), ("10.1.0.6", "node-b", true)],
        )],
        &nodes,
    );
    let set = vip_set(&state);
    let listed: Vec<String> =
        names(&set, &key("192.0.2.10", 80, Protocol::Tcp)).into_iter().map(|n| n.0).collect();
    assert_eq!(listed, ["node-a"]);
}

/// A drained node is listed as draining (with its weight: node weight × its ready endpoints
/// under Local), so a director that starts during the drain can name it as a previous node.
#[test]
fn a_drained_node_is_listed_as_draining_with_the_weight_it_had() {
    let nodes = [
        node("node-a", &["10.0.0.1"]),
        annotated_node("node-b", &["10.0.0.2"], "switchyard.io/drain", "true"),
    ];
    let state = cluster(
        &[lb_service("web", &["192.0.2.10"], true, Some("true"))],
        &[slice(
            "web-1",
            "web",
            false,
            &[
                ("10.1.0.5", "node-a", true),
                ("10.1.0.6", "node-b", true),
                ("10.1.0.7", "node-b", true),
            ],
        )],
        &nodes,
    );
    let set = vip_set(&state);
    let vip = &set.vips[&key("192.0.2.10", 80, Protocol::Tcp)];
    let draining: Vec<(String, u32)> =
        vip.draining.iter().map(|n| (n.name.to_string(), n.weight)).collect();
    assert_eq!(draining, [("node-b".to_owned(), 2)]);
    assert_eq!(vip.nodes.iter().map(|n| n.name.to_string()).collect::<Vec<_>>(), ["node-a"]);
}

/// A node whose `Ready` condition turned True less than the window ago is joining (so a
/// director that starts now seeds previous tables without it); an older one, one without a
/// transition time and a not-ready one are not. Every director that reads the same objects at
/// about the same time derives the same list.
#[test]
fn a_node_that_turned_ready_within_the_window_is_joining() {
    use std::time::{Duration, SystemTime};
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let ready_at = |name: &str, ip: &str, status: &str, at: &str| {
        let mut n = node(name, &[ip]);
        n["status"]["conditions"] = serde_json::json!([
            {"type": "Ready", "status": status, "lastTransitionTime": at}
        ]);
        n
    };
    let nodes = [
        ready_at("node-a", "10.0.0.1", "True", "2027-01-15T07:59:50Z"), // 10 s before
        ready_at("node-b", "10.0.0.2", "True", "2027-01-15T07:39:50Z"), // 1,210 s before
        node("node-c", &["10.0.0.3"]),                                  // no conditions
        ready_at("node-d", "10.0.0.4", "False", "2027-01-15T07:59:50Z"), // not ready
        ready_at("node-e", "10.0.0.5", "True", "2027-01-15T08:00:50Z"), // 50 s after (a skewed clock)
    ];
    assert_eq!(
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap().to_string(),
        "2027-01-15T08:00:00Z",
        "the test's times are relative to `now`"
    );
    let state = cluster(&[lb_service("web", &["192.0.2.10"], false, Some("true"))], &[], &nodes);
    let vip_names = |set: &switchyard_director::VipSet, joining: bool| -> Vec<String> {
        let vip = &set.vips[&key("192.0.2.10", 80, Protocol::Tcp)];
        let list = if joining { &vip.joining } else { &vip.nodes };
        list.iter().map(|n| n.name.to_string()).collect()
    };
    let set = vip_set_at(&state, now, Some(Duration::from_secs(600)));
    assert_eq!(vip_names(&set, false), ["node-a", "node-b", "node-c", "node-e"]);
    assert_eq!(vip_names(&set, true), ["node-a", "node-e"]);
    // A longer window (the TTL) takes node-b in too; the default (None) is 600 s.
    let set = vip_set_at(&state, now, Some(Duration::from_secs(1_800)));
    assert_eq!(vip_names(&set, true), ["node-a", "node-b", "node-e"]);
    let set = vip_set_at(&state, now, None);
    assert_eq!(vip_names(&set, true), ["node-a", "node-e"]);
    // Ten minutes later node-a and node-e have joined for good.
    let set = vip_set_at(&state, now + Duration::from_secs(700), None);
    assert!(vip_names(&set, true).is_empty());
}
