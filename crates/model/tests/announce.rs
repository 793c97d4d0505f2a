//! Which addresses a node announces over BGP (issue 15), as tables of cases.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use switchyard_model::FrontendKind;
use switchyard_model::announce::{Decision, Drain, candidates};

const LB: &str = "198.51.100.7";

fn lb(name: &str, policy: &str, ip: &str, port: u16) -> Value {
    with(
        svc(
            name,
            json!({
                "type": "LoadBalancer", "externalTrafficPolicy": policy, "healthCheckNodePort": 32100,
                "ports": [{"name": "http", "port": port, "nodePort": 30000 + port}],
            }),
        ),
        json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}),
    )
}

/// (case, externalTrafficPolicy, endpoints (ip, node, state), expected decision).
type Case =
    (&'static str, &'static str, &'static [(&'static str, &'static str, &'static str)], Decision);

#[test]
fn cluster_policy_announces_from_every_node_local_only_with_a_ready_local_endpoint() {
    // (case, policy, endpoints (ip, node, state), expected decision)
    let cases: &[Case] = &[
        (
            "Cluster, endpoints elsewhere",
            "Cluster",
            &[("10.1.0.2", "node-b", "ready")],
            Decision::Announce,
        ),
        ("Cluster, no endpoints at all", "Cluster", &[], Decision::Announce),
        (
            "Local, a ready local endpoint",
            "Local",
            &[("10.1.0.1", NODE, "ready"), ("10.1.0.2", "node-b", "ready")],
            Decision::Announce,
        ),
        (
            "Local, endpoints elsewhere only",
            "Local",
            &[("10.1.0.2", "node-b", "ready")],
            Decision::NoLocalEndpoint,
        ),
        (
            "Local, local endpoint unready",
            "Local",
            &[("10.1.0.1", NODE, "unready")],
            Decision::NoLocalEndpoint,
        ),
        // Only terminating endpoints left here: the health check says 503, so the route goes too.
        (
            "Local, local endpoint terminating",
            "Local",
            &[("10.1.0.1", NODE, "terminating")],
            Decision::NoLocalEndpoint,
        ),
    ];
    for (case, policy, endpoints, expected) in cases {
        let eps = endpoints.iter().map(|(ip, node, state)| ep(ip, node, state)).collect();
        let state = desired(
            &config(),
            &[this_node(), lb("web", policy, LB, 80), slice("web-1", "web", eps)],
        );
        let found = candidates(&state, None);
        let candidate =
            found.get(&LB.parse().unwrap()).unwrap_or_else(|| panic!("{case}: no candidate"));
        assert_eq!(&candidate.decision, expected, "{case}");
        assert_eq!(candidate.kind, FrontendKind::LoadBalancer, "{case}");
        assert_eq!(
            found.len(),
            1,
            "{case}: only the LoadBalancer IP is a candidate, not ClusterIP or NodePort"
        );
    }
}

#[test]
fn a_draining_node_withdraws_everything() {
    let objects = [
        this_node(),
        lb("web", "Cluster", LB, 80),
        slice("web-1", "web", vec![ep("10.1.0.1", NODE, "ready")]),
    ];
    let state = desired(&config(), &objects);
    for drain in [Drain::Unschedulable, Drain::Deleting, Drain::AgentShutdown] {
        let found = candidates(&state, Some(drain));
        assert_eq!(found[&LB.parse().unwrap()].decision, Decision::Draining(drain));
    }
    let cordoned: k8s_openapi::api::core::v1::Node =
        serde_json::from_value(with(this_node(), json!({"spec": {"unschedulable": true}})))
            .unwrap();
    assert_eq!(Drain::of_node(&cordoned), Some(Drain::Unschedulable));
    let deleting: k8s_openapi::api::core::v1::Node = serde_json::from_value(with(
        this_node(),
        json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
    ))
    .unwrap();
    assert_eq!(Drain::of_node(&deleting), Some(Drain::Deleting));
    let ready: k8s_openapi::api::core::v1::Node = serde_json::from_value(this_node()).unwrap();
    assert_eq!(Drain::of_node(&ready), None);
}

#[test]
fn a_shared_address_is_announced_when_any_service_on_it_wants_it() {
    let objects = [
        this_node(),
        node("node-b", "zone-b", &[("InternalIP", "192.168.1.11")]),
        lb("local", "Local", LB, 80),
        slice("local-1", "local", vec![ep("10.1.0.2", "node-b", "ready")]),
        lb("cluster", "Cluster", LB, 443),
        slice("cluster-1", "cluster", vec![ep("10.1.0.3", "node-b", "ready")]),
    ];
    let found = candidates(&desired(&config(), &objects), None);
    let shared = &found[&LB.parse().unwrap()];
    assert_eq!(shared.decision, Decision::Announce);
    let names: Vec<&str> = shared.services.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["cluster", "local"]);
}

#[test]
fn external_ips_are_candidates_of_their_own_kind_and_decisions_explain_themselves() {
    // externalTrafficPolicy applies to NodePort and LoadBalancer Services only.
    let service = svc(
        "ext",
        json!({"type": "LoadBalancer", "externalIPs": ["203.0.113.50"], "externalTrafficPolicy": "Local",
               "healthCheckNodePort": 32100, "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    let objects =
        [this_node(), service, slice("ext-1", "ext", vec![ep("10.1.0.2", "node-b", "ready")])];
    let found = candidates(&desired(&config(), &objects), None);
    let ext = &found[&"203.0.113.50".parse().unwrap()];
    assert_eq!(ext.kind, FrontendKind::ExternalIp);
    assert_eq!(ext.decision, Decision::NoLocalEndpoint);
    assert_eq!(
        ext.decision.to_string(),
        "withheld: externalTrafficPolicy Local and no ready local endpoint"
    );
    assert_eq!(
        Decision::Draining(Drain::Unschedulable).to_string(),
        "withheld: node is unschedulable"
    );
}
