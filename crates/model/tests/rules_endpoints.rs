//! One table-driven test per rule of service-semantics.md that decides which endpoints back a
//! frontend (readiness, terminating fallback, families, slices, topology, locality); the
//! frontends' own rules are in rules.rs.
// Case tables are tuples of slices; naming each shape would hide the table.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;

use common::*;
use serde_json::{Value, json};
use switchyard_model::{TrafficPolicy, WhenEmpty};
use switchyard_testing::objects::slice_with;

const CIP: &str = "10.96.0.10:80/TCP";

#[test]
fn ready_endpoints_are_used_and_serving_terminating_ones_only_as_fallback() {
    let cases: &[(&str, &[(&str, &str)], &[&str], WhenEmpty)] = &[
        (
            "all ready",
            &[("10.1.0.1", "ready"), ("10.1.0.2", "ready")],
            &["10.1.0.1:8080", "10.1.0.2:8080"],
            WhenEmpty::Drop,
        ),
        (
            "ready beats terminating",
            &[("10.1.0.1", "ready"), ("10.1.0.2", "terminating")],
            &["10.1.0.1:8080"],
            WhenEmpty::Drop,
        ),
        (
            "ready beats unready",
            &[("10.1.0.1", "unready"), ("10.1.0.2", "ready")],
            &["10.1.0.2:8080"],
            WhenEmpty::Drop,
        ),
        (
            "only terminating: fallback",
            &[("10.1.0.1", "terminating"), ("10.1.0.2", "gone")],
            &["10.1.0.1:8080(T)"],
            WhenEmpty::Drop,
        ),
        ("terminating but not serving: nothing", &[("10.1.0.1", "gone")], &[], WhenEmpty::Reject),
        ("unready only: nothing", &[("10.1.0.1", "unready")], &[], WhenEmpty::Reject),
        (
            "serving but not terminating is no fallback",
            &[("10.1.0.1", "serving-not-terminating")],
            &[],
            WhenEmpty::Reject,
        ),
        ("no endpoints: reject", &[], &[], WhenEmpty::Reject),
    ];
    for (name, endpoints, expected, when_empty) in cases {
        let eps = endpoints.iter().map(|(ip, state)| ep(ip, "node-b", state)).collect();
        let state =
            desired(&config(), &[this_node(), svc("web", json!({})), slice("web-1", "web", eps)]);
        let f = frontend(&state, CIP);
        assert_eq!(backend_list(&f.backends), *expected, "{name}");
        assert_eq!(f.when_empty, *when_empty, "{name}");
    }
}

#[test]
fn local_list_falls_back_to_terminating_separately_from_cluster_list() {
    // (case, endpoints (ip, node, state), cluster-policy backends, local-policy backends, local when_empty)
    type Case<'a> =
        (&'a str, &'a [(&'a str, &'a str, &'a str)], &'a [&'a str], &'a [&'a str], WhenEmpty);
    let cases: &[Case<'_>] = &[
        (
            "local ready wins",
            &[("10.1.0.1", NODE, "ready"), ("10.1.0.2", "node-b", "ready")],
            &["10.1.0.1:8080+L", "10.1.0.2:8080"],
            &["10.1.0.1:8080+L"],
            WhenEmpty::Drop,
        ),
        (
            "local terminating, remote ready: local list falls back, cluster list does not",
            &[("10.1.0.1", NODE, "terminating"), ("10.1.0.2", "node-b", "ready")],
            &["10.1.0.2:8080"],
            &["10.1.0.1:8080(T)+L"],
            WhenEmpty::Drop,
        ),
        (
            "nothing local: local list empty, dropped not rejected",
            &[("10.1.0.2", "node-b", "ready")],
            &["10.1.0.2:8080"],
            &[],
            WhenEmpty::Drop,
        ),
        (
            "only remote terminating: cluster falls back, local stays empty",
            &[("10.1.0.2", "node-b", "terminating")],
            &["10.1.0.2:8080(T)"],
            &[],
            WhenEmpty::Drop,
        ),
        ("no endpoints at all: reject", &[], &[], &[], WhenEmpty::Reject),
    ];
    for (name, endpoints, cluster_expected, local_expected, local_when_empty) in cases {
        let eps: Vec<Value> = endpoints.iter().map(|(ip, n, s)| ep(ip, n, s)).collect();
        for (policy, expected) in [("Cluster", cluster_expected), ("Local", local_expected)] {
            let objects = [
                this_node(),
                svc("web", json!({"internalTrafficPolicy": policy})),
                slice("web-1", "web", eps.clone()),
            ];
            let f = frontend(&desired(&config(), &objects), CIP).clone();
            assert_eq!(backend_list(&f.backends), **expected, "{name}, ITP {policy}");
            if policy == "Local" {
                assert_eq!(f.traffic_policy, TrafficPolicy::Local, "{name}");
                assert_eq!(f.when_empty, *local_when_empty, "{name}");
            }
        }
    }
}

#[test]
fn publish_not_ready_addresses_uses_unready_endpoints_only_when_true() {
    let cases: &[(Option<bool>, &[&str])] = &[
        (None, &["10.1.0.2:8080"]),
        (Some(false), &["10.1.0.2:8080"]),
        (Some(true), &["10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080"]),
    ];
    for (publish, expected) in cases {
        let spec = match publish {
            Some(p) => json!({"publishNotReadyAddresses": p}),
            None => json!({}),
        };
        let eps = vec![
            ep("10.1.0.1", "n", "unready"),
            ep("10.1.0.2", "n", "ready"),
            ep("10.1.0.3", "n", "terminating"),
        ];
        let state = desired(&config(), &[svc("web", spec), slice("web-1", "web", eps)]);
        assert_eq!(
            backends_of(&state, CIP).unwrap(),
            *expected,
            "publishNotReadyAddresses {publish:?}"
        );
    }
}

#[test]
fn named_target_ports_resolve_per_endpoint_slice_port() {
    let cases: &[(&str, Value, &[&str])] = &[
        (
            "port named like the service port",
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
            &["10.1.0.1:8080"],
        ),
        (
            "other number in this slice",
            json!([{"name": "http", "port": 9090, "protocol": "TCP"}]),
            &["10.1.0.1:9090"],
        ),
        (
            "name mismatch: slice ignored",
            json!([{"name": "metrics", "port": 9100, "protocol": "TCP"}]),
            &[],
        ),
        (
            "protocol mismatch: slice ignored",
            json!([{"name": "http", "port": 8080, "protocol": "UDP"}]),
            &[],
        ),
        ("protocol defaults to TCP", json!([{"name": "http", "port": 8081}]), &["10.1.0.1:8081"]),
        ("port without number: ignored", json!([{"name": "http", "protocol": "TCP"}]), &[]),
    ];
    for (name, ports, expected) in cases {
        let objects = [
            svc("web", json!({})),
            slice_with("web-1", "web", "IPv4", ports.clone(), vec![ep("10.1.0.1", "n", "ready")]),
        ];
        assert_eq!(backends_of(&desired(&config(), &objects), CIP).unwrap(), *expected, "{name}");
    }
    // Two slices of one Service whose pods disagree on the container port.
    let objects = [
        svc("web", json!({})),
        slice("web-1", "web", vec![ep("10.1.0.1", "n", "ready")]),
        slice_with(
            "web-2",
            "web",
            "IPv4",
            json!([{"name": "http", "port": 9090}]),
            vec![ep("10.1.0.2", "n", "ready")],
        ),
    ];
    assert_eq!(
        backends_of(&desired(&config(), &objects), CIP).unwrap(),
        ["10.1.0.1:8080", "10.1.0.2:9090"]
    );
}

#[test]
fn dual_stack_cluster_ips_get_backends_of_their_own_family() {
    let v6_ports = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);
    let cases: &[(&str, Value, &[(&str, &[&str])])] = &[
        (
            "dual stack",
            json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10"]}),
            &[
                ("10.96.0.10:80/TCP", &["10.1.0.1:8080"]),
                ("[fd00::10]:80/TCP", &["[fd00:1::1]:8080"]),
            ],
        ),
        (
            "IPv6 only",
            json!({"clusterIP": "fd00::10", "clusterIPs": ["fd00::10"]}),
            &[("[fd00::10]:80/TCP", &["[fd00:1::1]:8080"])],
        ),
        ("IPv4 only", json!({}), &[("10.96.0.10:80/TCP", &["10.1.0.1:8080"])]),
    ];
    for (name, spec, expected) in cases {
        let objects = [
            svc("web", spec.clone()),
            slice("web-v4", "web", vec![ep("10.1.0.1", "n", "ready")]),
            slice_with(
                "web-v6",
                "web",
                "IPv6",
                v6_ports.clone(),
                vec![ep("fd00:1::1", "n", "ready")],
            ),
        ];
        let state = desired(&config(), &objects);
        let got: Vec<(String, Vec<String>)> = state
            .frontends
            .iter()
            .map(|(k, f)| (k.to_string(), backend_list(&f.backends)))
            .collect();
        let want: Vec<(String, Vec<String>)> = expected
            .iter()
            .map(|(k, b)| ((*k).to_owned(), b.iter().map(|s| (*s).to_owned()).collect()))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn endpoints_whose_address_does_not_match_the_slice_family_or_fqdn_slices_are_ignored() {
    let ports = json!([{"name": "http", "port": 8080}]);
    let cases: &[(&str, &str, &str, &[&str])] = &[
        ("IPv4 slice, IPv4 address", "IPv4", "10.1.0.1", &["10.1.0.1:8080"]),
        ("IPv4 slice, IPv6 address", "IPv4", "fd00:1::1", &[]),
        ("IPv6 slice feeds no IPv4 frontend", "IPv6", "fd00:1::1", &[]),
        ("FQDN slice", "FQDN", "db.example.com", &[]),
        ("address that does not parse", "IPv4", "10.1.0.300", &[]),
    ];
    for (name, address_type, address, expected) in cases {
        let objects = [
            svc("web", json!({})),
            slice_with(
                "web-1",
                "web",
                address_type,
                ports.clone(),
                vec![ep(address, "n", "ready")],
            ),
        ];
        assert_eq!(backends_of(&desired(&config(), &objects), CIP).unwrap(), *expected, "{name}");
    }
}

#[test]
fn topology_hints_apply_only_when_every_ready_endpoint_is_hinted_and_one_matches() {
    // Endpoints: (ip, node, zone hint, node hint). This node: node-a in zone-a.
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        &'a [(&'a str, Option<&'a str>, Option<&'a str>)],
        &'a [&'a str],
    );
    let cases: &[Case<'_>] = &[
        (
            "PreferSameZone, all hinted, one matches",
            Some("PreferSameZone"),
            &[("10.1.0.1", Some("zone-a"), None), ("10.1.0.2", Some("zone-b"), None)],
            &["10.1.0.1:8080"],
        ),
        (
            "PreferClose is PreferSameZone",
            Some("PreferClose"),
            &[("10.1.0.1", Some("zone-a"), None), ("10.1.0.2", Some("zone-b"), None)],
            &["10.1.0.1:8080"],
        ),
        (
            "one ready endpoint unhinted: ignored",
            Some("PreferSameZone"),
            &[("10.1.0.1", Some("zone-a"), None), ("10.1.0.2", None, None)],
            &["10.1.0.1:8080", "10.1.0.2:8080"],
        ),
        (
            "no hint names our zone: ignored",
            Some("PreferSameZone"),
            &[("10.1.0.1", Some("zone-c"), None), ("10.1.0.2", Some("zone-b"), None)],
            &["10.1.0.1:8080", "10.1.0.2:8080"],
        ),
        (
            "no trafficDistribution: hints ignored",
            None,
            &[("10.1.0.1", Some("zone-a"), None), ("10.1.0.2", Some("zone-b"), None)],
            &["10.1.0.1:8080", "10.1.0.2:8080"],
        ),
        (
            "PreferSameNode, node hints match",
            Some("PreferSameNode"),
            &[
                ("10.1.0.1", Some("zone-a"), Some("node-b")),
                ("10.1.0.2", Some("zone-a"), Some(NODE)),
                ("10.1.0.3", Some("zone-b"), Some("node-c")),
            ],
            &["10.1.0.2:8080"],
        ),
        (
            "PreferSameNode, no node hint for us: zone hints next",
            Some("PreferSameNode"),
            &[
                ("10.1.0.1", Some("zone-a"), Some("node-b")),
                ("10.1.0.3", Some("zone-b"), Some("node-c")),
            ],
            &["10.1.0.1:8080"],
        ),
        (
            "PreferSameZone ignores node hints",
            Some("PreferSameZone"),
            &[
                ("10.1.0.1", Some("zone-a"), Some("node-b")),
                ("10.1.0.2", Some("zone-a"), Some(NODE)),
                ("10.1.0.3", Some("zone-b"), Some("node-c")),
            ],
            &["10.1.0.1:8080", "10.1.0.2:8080"],
        ),
    ];
    for (name, distribution, endpoints, expected) in cases {
        let eps = endpoints
            .iter()
            .map(|(ip, zone, node_hint)| {
                let mut e = ep(ip, "node-x", "ready");
                let mut hints = json!({});
                if let Some(z) = zone {
                    hints["forZones"] = json!([{"name": z}]);
                }
                if let Some(n) = node_hint {
                    hints["forNodes"] = json!([{"name": n}]);
                }
                e["hints"] = hints;
                e
            })
            .collect();
        let spec = match distribution {
            Some(d) => json!({"trafficDistribution": d}),
            None => json!({}),
        };
        let state =
            desired(&config(), &[this_node(), svc("web", spec), slice("web-1", "web", eps)]);
        assert_eq!(backends_of(&state, CIP).unwrap(), *expected, "{name}");
    }
}

#[test]
fn topology_hints_consider_only_ready_endpoints_and_not_the_local_list() {
    // An unhinted terminating endpoint does not disable hints; ITP Local ignores hints.
    let mut hinted = ep("10.1.0.1", "node-b", "ready");
    hinted["hints"] = json!({"forZones": [{"name": "zone-a"}]});
    let mut other = ep("10.1.0.2", NODE, "ready");
    other["hints"] = json!({"forZones": [{"name": "zone-b"}]});
    let unhinted_terminating = ep("10.1.0.3", "node-c", "terminating");
    let cases: &[(&str, &str, &[&str])] = &[
        ("Cluster", "PreferSameZone", &["10.1.0.1:8080"]),
        ("Local", "PreferSameZone", &["10.1.0.2:8080+L"]),
    ];
    for (policy, distribution, expected) in cases {
        let objects = [
            this_node(),
            svc(
                "web",
                json!({"trafficDistribution": distribution, "internalTrafficPolicy": policy}),
            ),
            slice(
                "web-1",
                "web",
                vec![hinted.clone(), other.clone(), unhinted_terminating.clone()],
            ),
        ];
        assert_eq!(
            backends_of(&desired(&config(), &objects), CIP).unwrap(),
            *expected,
            "ITP {policy}"
        );
    }
}

#[test]
fn endpoints_are_local_by_node_name_only() {
    let cases: &[(&str, Value, bool)] = &[
        ("nodeName is ours", json!({"addresses": ["10.1.0.1"], "nodeName": NODE}), true),
        (
            "nodeName is another node",
            json!({"addresses": ["10.1.0.1"], "nodeName": "node-b"}),
            false,
        ),
        (
            "no nodeName, hostname equal to ours",
            json!({"addresses": ["10.1.0.1"], "hostname": NODE}),
            false,
        ),
        (
            "no nodeName, zone equal to ours",
            json!({"addresses": ["10.1.0.1"], "zone": "zone-a"}),
            false,
        ),
    ];
    for (name, endpoint, local) in cases {
        let state = desired(
            &config(),
            &[this_node(), svc("web", json!({})), slice("web-1", "web", vec![endpoint.clone()])],
        );
        let f = frontend(&state, CIP);
        assert_eq!(f.backends.len(), 1, "{name}");
        assert_eq!(f.backends[0].is_local, *local, "{name}");
    }
}

#[test]
fn endpoints_listed_in_several_slices_are_used_once_in_their_best_state() {
    let cases: &[(&str, &[(&str, &str)], &[&str])] = &[
        (
            "same endpoint ready twice",
            &[("web-1", "ready"), ("web-2", "ready")],
            &["10.1.0.1:8080"],
        ),
        (
            "ready in the second slice wins",
            &[("web-1", "unready"), ("web-2", "ready")],
            &["10.1.0.1:8080"],
        ),
        (
            "terminating beats unready",
            &[("web-1", "unready"), ("web-2", "terminating")],
            &["10.1.0.1:8080(T)"],
        ),
    ];
    for (name, copies, expected) in cases {
        let mut objects = vec![svc("web", json!({}))];
        objects.extend(
            copies.iter().map(|(slice_name, state)| {
                slice(slice_name, "web", vec![ep("10.1.0.1", "n", state)])
            }),
        );
        assert_eq!(backends_of(&desired(&config(), &objects), CIP).unwrap(), *expected, "{name}");
    }
}
