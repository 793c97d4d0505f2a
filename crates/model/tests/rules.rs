//! One table-driven test per rule of service-semantics.md that decides frontends (node ports, traffic
//! policies, affinity, source ranges, LB and external IPs, collisions); endpoint choice: rules_endpoints.rs.
// Case tables are tuples of slices; naming each shape would hide the table.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;

use common::*;
use serde_json::{Value, json};
use switchyard_model::{
    Algorithm, Cidr, FrontendKind, NodePortAddresses, ProxyConfig, TrafficPolicy,
};
use switchyard_testing::objects::slice_with;

const CIP: &str = "10.96.0.10:80/TCP";

#[test]
fn headless_and_external_name_services_are_not_proxied() {
    let cases: &[(&str, Value, bool)] = &[
        ("plain ClusterIP", svc("s", json!({})), true),
        ("clusterIP None", svc("s", json!({"clusterIP": "None"})), false),
        (
            "clusterIPs [None]",
            svc("s", json!({"clusterIP": "None", "clusterIPs": ["None"]})),
            false,
        ),
        ("no clusterIP", with(svc("s", json!({})), json!({"spec": {"clusterIP": ""}})), false),
        (
            "headless label",
            with(
                svc("s", json!({})),
                json!({"metadata": {"labels": {"service.kubernetes.io/headless": ""}}}),
            ),
            false,
        ),
        (
            "ExternalName",
            svc(
                "s",
                json!({"type": "ExternalName", "externalName": "example.com", "clusterIP": ""}),
            ),
            false,
        ),
        (
            "ExternalName with clusterIP",
            svc("s", json!({"type": "ExternalName", "externalName": "example.com"})),
            false,
        ),
    ];
    for (name, service, proxied) in cases {
        let state = desired(
            &config(),
            &[service.clone(), slice("s-1", "s", vec![ep("10.1.0.1", "n", "ready")])],
        );
        assert_eq!(!state.is_empty(), *proxied, "{name}: {:?}", keys(&state));
    }
}

#[test]
fn service_proxy_name_label_selects_the_proxy() {
    let cases: &[(Option<&str>, Option<&str>, bool)] = &[
        (None, None, true),
        (None, Some("switchyard"), false),
        (Some("switchyard"), None, false),
        (Some("switchyard"), Some("switchyard"), true),
        (Some("switchyard"), Some("other"), false),
    ];
    for (ours, label, served) in cases {
        let mut service = svc("web", json!({}));
        if let Some(label) = label {
            service = with(
                service,
                json!({"metadata": {"labels": {"service.kubernetes.io/service-proxy-name": label}}}),
            );
        }
        let config = ProxyConfig { proxy_name: ours.map(str::to_owned), ..config() };
        let state = desired(&config, &[service]);
        assert_eq!(!state.is_empty(), *served, "our name {ours:?}, label {label:?}");
    }
}

#[test]
fn node_ports_open_on_the_configured_node_addresses_only() {
    let addresses = [
        ("InternalIP", "192.168.1.10"),
        ("InternalIP", "10.0.0.10"),
        ("ExternalIP", "203.0.113.10"),
        ("InternalIP", "127.0.0.1"),
        ("InternalIP", "2001:db8::10"),
        ("Hostname", "node-a"),
    ];
    let cidrs = |list: &[&str]| {
        NodePortAddresses::Cidrs(list.iter().map(|c| c.parse::<Cidr>().unwrap()).collect())
    };
    let cases: Vec<(&str, NodePortAddresses, bool, Vec<&str>)> = vec![
        (
            "all, single stack",
            NodePortAddresses::All,
            false,
            vec!["10.0.0.10", "192.168.1.10", "203.0.113.10"],
        ),
        (
            "all, dual stack",
            NodePortAddresses::All,
            true,
            vec!["10.0.0.10", "192.168.1.10", "203.0.113.10", "2001:db8::10"],
        ),
        ("primary", NodePortAddresses::Primary, true, vec!["192.168.1.10", "2001:db8::10"]),
        ("cidr list", cidrs(&["192.168.0.0/16", "2001:db8::/32"]), false, vec!["192.168.1.10"]),
        ("cidr naming loopback explicitly", cidrs(&["127.0.0.0/8"]), false, vec!["127.0.0.1"]),
        ("cidr matching nothing", cidrs(&["172.16.0.0/12"]), false, vec![]),
    ];
    for (name, node_port_addresses, dual_stack, expected) in cases {
        let mut spec =
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
        if dual_stack {
            spec["clusterIPs"] = json!(["10.96.0.10", "fd00::10"]);
        }
        let config = ProxyConfig { node_port_addresses, ..config() };
        let state = desired(&config, &[node(NODE, "zone-a", &addresses), svc("web", spec)]);
        let mut got: Vec<std::net::IpAddr> = state
            .frontends
            .iter()
            .filter(|(_, f)| f.kind == FrontendKind::NodePort)
            .map(|(k, _)| {
                assert_eq!(k.port, 30080, "{name}");
                k.ip
            })
            .collect();
        got.sort();
        let mut want: Vec<std::net::IpAddr> = expected.iter().map(|a| a.parse().unwrap()).collect();
        want.sort();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn node_ports_outside_the_range_or_without_a_node_object_are_not_opened() {
    let cases: &[(&str, i32, bool, bool)] = &[
        ("in range", 30080, true, true),
        ("below range", 29999, true, false),
        ("above range", 32768, true, false),
        ("no Node object for this node", 30080, false, false),
    ];
    for (name, node_port, with_node, opened) in cases {
        let mut objects = vec![svc(
            "web",
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": node_port}]}),
        )];
        if *with_node {
            objects.push(this_node());
        }
        let state = desired(&config(), &objects);
        let node_port_key = format!("192.168.1.10:{node_port}/TCP");
        assert_eq!(state.get(&key(&node_port_key)).is_some(), *opened, "{name}");
        assert!(state.get(&key(CIP)).is_some(), "{name}: the clusterIP stays");
    }
}

#[test]
fn external_traffic_policy_local_keeps_external_frontends_on_local_endpoints() {
    let eps = vec![ep("10.1.0.1", NODE, "ready"), ep("10.1.0.2", "node-b", "ready")];
    let lb = |policy: &str| {
        with(
            svc(
                "web",
                json!({
                    "type": "LoadBalancer", "externalTrafficPolicy": policy, "healthCheckNodePort": 32100,
                    "externalIPs": ["203.0.113.50"],
                    "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
                }),
            ),
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}}),
        )
    };
    // (policy, frontend, backends, in-cluster backends, health check port)
    type Case<'a> = (&'a str, &'a str, &'a [&'a str], Option<&'a [&'a str]>, Option<u16>);
    let both: &[&str] = &["10.1.0.1:8080+L", "10.1.0.2:8080"];
    let cases: &[Case<'_>] = &[
        ("Local", CIP, both, None, None),
        ("Local", "192.168.1.10:30080/TCP", &["10.1.0.1:8080+L"], Some(both), Some(32100)),
        ("Local", "198.51.100.7:80/TCP", &["10.1.0.1:8080+L"], Some(both), Some(32100)),
        ("Local", "203.0.113.50:80/TCP", &["10.1.0.1:8080+L"], Some(both), Some(32100)),
        ("Cluster", "192.168.1.10:30080/TCP", both, None, None),
        ("Cluster", "198.51.100.7:80/TCP", both, None, None),
    ];
    for (policy, name, backends, in_cluster, health) in cases {
        let state =
            desired(&config(), &[this_node(), lb(policy), slice("web-1", "web", eps.clone())]);
        let f = frontend(&state, name);
        let expected_policy = if *policy == "Local" && f.kind != FrontendKind::ClusterIp {
            TrafficPolicy::Local
        } else {
            TrafficPolicy::Cluster
        };
        assert_eq!(f.traffic_policy, expected_policy, "{policy} {name}");
        assert_eq!(backend_list(&f.backends), *backends, "{policy} {name}");
        assert_eq!(
            f.in_cluster_backends.as_deref().map(backend_list),
            in_cluster.map(|l| l.iter().map(|s| (*s).to_owned()).collect()),
            "{policy} {name}"
        );
        assert_eq!(f.health_check_node_port, *health, "{policy} {name}");
    }
}

#[test]
fn health_check_reports_ready_local_endpoints_only() {
    let cases: &[(&str, &[(&str, &str, &str)], usize)] = &[
        (
            "two local ready",
            &[
                ("10.1.0.1", NODE, "ready"),
                ("10.1.0.2", NODE, "ready"),
                ("10.1.0.3", "node-b", "ready"),
            ],
            2,
        ),
        (
            "only local terminating: 0 (503) while traffic still flows",
            &[("10.1.0.1", NODE, "terminating"), ("10.1.0.3", "node-b", "ready")],
            0,
        ),
        ("none local", &[("10.1.0.3", "node-b", "ready")], 0),
    ];
    for (name, endpoints, expected) in cases {
        let eps = endpoints.iter().map(|(ip, n, s)| ep(ip, n, s)).collect();
        let service = svc(
            "web",
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 32100,
                                         "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        );
        let state = desired(&config(), &[this_node(), service, slice("web-1", "web", eps)]);
        let checks = state.health_checks();
        assert_eq!(checks.len(), 1, "{name}");
        assert_eq!(checks[&32100].local_endpoints, *expected, "{name}");
        assert_eq!(checks[&32100].service.to_string(), "default/web", "{name}");
    }
}

#[test]
fn session_affinity_client_ip_timeout_defaults_and_clamps() {
    let cases: &[(&str, Value, u32, Option<u32>)] = &[
        ("no affinity", json!({}), 10800, None),
        ("affinity None", json!({"sessionAffinity": "None"}), 10800, None),
        ("ClientIP, default timeout", json!({"sessionAffinity": "ClientIP"}), 10800, Some(10800)),
        ("ClientIP, configured default", json!({"sessionAffinity": "ClientIP"}), 600, Some(600)),
        (
            "ClientIP, own timeout",
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
            10800,
            Some(60),
        ),
        (
            "ClientIP, timeout above max clamped",
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 100000}}}),
            10800,
            Some(86400),
        ),
        (
            "ClientIP, zero timeout means default",
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
            10800,
            Some(10800),
        ),
    ];
    for (name, spec, default, expected) in cases {
        let config = ProxyConfig { default_affinity_timeout_seconds: *default, ..config() };
        let state = desired(&config, &[svc("web", spec.clone())]);
        assert_eq!(frontend(&state, CIP).affinity_timeout_seconds, *expected, "{name}");
    }
}

#[test]
fn load_balancer_source_ranges_apply_to_load_balancer_frontends_of_their_family() {
    let service = with(
        svc(
            "web",
            json!({
                "type": "LoadBalancer", "clusterIPs": ["10.96.0.10", "fd00::10"],
                "loadBalancerSourceRanges": ["203.0.113.0/24", " 198.51.100.0/24", "2001:db8::/32", "bogus"],
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
            }),
        ),
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"ip": "2001:db8:ff::1"}]}}}),
    );
    let state = desired(&config(), &[this_node(), service]);
    let cases: &[(&str, &[&str])] = &[
        ("192.0.2.1:80/TCP", &["198.51.100.0/24", "203.0.113.0/24"]),
        ("[2001:db8:ff::1]:80/TCP", &["2001:db8::/32"]),
        ("192.168.1.10:30080/TCP", &[]),
        (CIP, &[]),
    ];
    for (name, expected) in cases {
        let got: Vec<String> =
            frontend(&state, name).source_ranges.iter().map(ToString::to_string).collect();
        assert_eq!(got, *expected, "{name}");
    }
}

#[test]
fn load_balancer_ingress_ips_are_frontends_unless_ip_mode_proxy() {
    let cases: &[(&str, Value, &[&str])] = &[
        ("VIP mode", json!([{"ip": "192.0.2.1", "ipMode": "VIP"}]), &["192.0.2.1:80/TCP"]),
        ("no ipMode means VIP", json!([{"ip": "192.0.2.1"}]), &["192.0.2.1:80/TCP"]),
        (
            "Proxy mode: left to the load balancer",
            json!([{"ip": "192.0.2.1", "ipMode": "Proxy"}]),
            &[],
        ),
        ("hostname only", json!([{"hostname": "lb.example.com"}]), &[]),
        (
            "two ingress IPs",
            json!([{"ip": "192.0.2.2"}, {"ip": "192.0.2.1"}]),
            &["192.0.2.1:80/TCP", "192.0.2.2:80/TCP"],
        ),
    ];
    for (name, ingress, expected) in cases {
        let service = with(
            svc(
                "web",
                json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
            ),
            json!({"status": {"loadBalancer": {"ingress": ingress}}}),
        );
        let state = desired(&config(), &[this_node(), service]);
        let got: Vec<String> = state
            .frontends
            .iter()
            .filter(|(_, f)| f.kind == FrontendKind::LoadBalancer)
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(got, *expected, "{name}");
    }
    // A ClusterIP Service never gets LoadBalancer frontends from a stale status.
    let service = with(
        svc("web", json!({})),
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}),
    );
    assert_eq!(keys(&desired(&config(), &[service])), [CIP]);
}

#[test]
fn external_ips_are_frontends_of_every_port_in_the_service_families() {
    let cases: &[(&str, Value, &[&str])] = &[
        ("one external IP", json!({"externalIPs": ["203.0.113.5"]}), &[CIP, "203.0.113.5:80/TCP"]),
        (
            "invalid external IP skipped",
            json!({"externalIPs": ["203.0.113.500", "203.0.113.6"]}),
            &[CIP, "203.0.113.6:80/TCP"],
        ),
        (
            "external IP equal to clusterIP: the clusterIP frontend wins",
            json!({"externalIPs": ["10.96.0.10"]}),
            &[CIP],
        ),
        (
            "IPv6 external IP of an IPv4-only Service: not ours",
            json!({"externalIPs": ["2001:db8::5", "203.0.113.5"]}),
            &[CIP, "203.0.113.5:80/TCP"],
        ),
        (
            "IPv6 external IP of a dual-stack Service",
            json!({"clusterIPs": ["10.96.0.10", "fd00::10"], "externalIPs": ["2001:db8::5"]}),
            &[CIP, "[2001:db8::5]:80/TCP", "[fd00::10]:80/TCP"],
        ),
    ];
    for (name, spec, expected) in cases {
        let state = desired(&config(), &[svc("web", spec.clone())]);
        assert_eq!(keys(&state), *expected, "{name}");
        assert_eq!(frontend(&state, CIP).kind, FrontendKind::ClusterIp, "{name}");
    }
}

#[test]
fn multiple_ports_and_same_port_number_with_different_protocols() {
    let service = svc(
        "dns",
        json!({"ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            {"name": "metrics", "port": 9153, "protocol": "TCP"},
            {"name": "sctp", "port": 53, "protocol": "SCTP"},
            {"name": "bad", "port": 70000, "protocol": "TCP"},
            {"name": "quic", "port": 443, "protocol": "QUIC"},
        ]}),
    );
    let slice_ports = json!([
        {"name": "dns", "port": 5353, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 5354, "protocol": "TCP"},
        {"name": "metrics", "port": 9153, "protocol": "TCP"},
        {"name": "sctp", "port": 5355, "protocol": "SCTP"},
    ]);
    let state = desired(
        &config(),
        &[
            service,
            slice_with("dns-1", "dns", "IPv4", slice_ports, vec![ep("10.1.0.1", "n", "ready")]),
        ],
    );
    let cases: &[(&str, &str, &str)] = &[
        ("10.96.0.10:53/UDP", "dns", "10.1.0.1:5353"),
        ("10.96.0.10:53/TCP", "dns-tcp", "10.1.0.1:5354"),
        ("10.96.0.10:9153/TCP", "metrics", "10.1.0.1:9153"),
        ("10.96.0.10:53/SCTP", "sctp", "10.1.0.1:5355"),
    ];
    assert_eq!(state.len(), cases.len(), "invalid ports are skipped: {:?}", keys(&state));
    for (name, port_name, backend) in cases {
        let f = frontend(&state, name);
        assert_eq!(f.port_name, *port_name, "{name}");
        assert_eq!(backend_list(&f.backends), [*backend], "{name}");
    }
}

#[test]
fn algorithm_annotation_selects_maglev() {
    let cases: &[(Option<&str>, Algorithm)] = &[
        (None, Algorithm::Random),
        (Some("maglev"), Algorithm::Maglev),
        (Some("Maglev"), Algorithm::Maglev),
        (Some("random"), Algorithm::Random),
        (Some("round-robin"), Algorithm::Random),
    ];
    for (value, expected) in cases {
        let mut service = svc("web", json!({}));
        if let Some(value) = value {
            service = with(
                service,
                json!({"metadata": {"annotations": {"switchyard.io/lb-algorithm": value}}}),
            );
        }
        assert_eq!(
            frontend(&desired(&config(), &[service]), CIP).algorithm,
            *expected,
            "{value:?}"
        );
    }
}

#[test]
fn colliding_frontends_go_to_the_smallest_service_name() {
    let a = svc(
        "a",
        json!({"type": "NodePort", "clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    let b = svc(
        "b",
        json!({"type": "NodePort", "clusterIP": "10.96.0.2", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    let cases: &[(&str, Vec<Value>, Option<&str>)] = &[
        ("both", vec![this_node(), a.clone(), b.clone()], Some("default/a")),
        ("order does not matter", vec![b.clone(), this_node(), a.clone()], Some("default/a")),
        ("only b", vec![this_node(), b.clone()], Some("default/b")),
        ("neither", vec![this_node()], None),
    ];
    for (name, objects, owner) in cases {
        let state = desired(&config(), objects);
        let got = state.get(&key("192.168.1.10:30080/TCP")).map(|f| f.service.to_string());
        assert_eq!(got.as_deref(), *owner, "{name}");
    }
}

#[test]
fn health_check_index_follows_differences_like_a_full_recompute() {
    // A sequence of states; the index, fed only the differences, must answer what
    // health_checks() computes from scratch after every step.
    let web = |port: Option<u16>, policy: &str| {
        let mut spec = json!({"type": "LoadBalancer", "externalTrafficPolicy": policy,
                              "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
        if let Some(port) = port {
            spec["healthCheckNodePort"] = json!(port);
        }
        svc("web", spec)
    };
    let eps = |states: &[&str]| {
        states.iter().enumerate().map(|(i, s)| ep(&format!("10.1.0.{}", i + 1), NODE, s)).collect()
    };
    let steps: Vec<(&str, Vec<Value>)> = vec![
        (
            "one local ready",
            vec![this_node(), web(Some(32100), "Local"), slice("s", "web", eps(&["ready"]))],
        ),
        (
            "two ready",
            vec![
                this_node(),
                web(Some(32100), "Local"),
                slice("s", "web", eps(&["ready", "ready"])),
            ],
        ),
        (
            "only terminating",
            vec![this_node(), web(Some(32100), "Local"), slice("s", "web", eps(&["terminating"]))],
        ),
        (
            "port moved",
            vec![this_node(), web(Some(32101), "Local"), slice("s", "web", eps(&["ready"]))],
        ),
        (
            "policy Cluster: no port",
            vec![this_node(), web(None, "Cluster"), slice("s", "web", eps(&["ready"]))],
        ),
        (
            "back to Local",
            vec![this_node(), web(Some(32100), "Local"), slice("s", "web", eps(&[]))],
        ),
        ("service gone", vec![this_node()]),
    ];
    let mut index = switchyard_model::HealthCheckIndex::default();
    let mut previous = switchyard_model::DesiredState::default();
    for (name, objects) in steps {
        let state = desired(&config(), &objects);
        let before = index.checks();
        let changed = index.apply(&switchyard_model::DesiredState::diff(&previous, &state));
        assert_eq!(index.checks(), state.health_checks(), "{name}");
        assert_eq!(index, switchyard_model::HealthCheckIndex::new(&state), "{name}");
        // The reported changes are exactly the ports whose answer differs.
        for (port, answer) in &changed {
            assert_ne!(before.get(port), answer.as_ref(), "{name}: port {port} reported unchanged");
            assert_eq!(state.health_checks().get(port), answer.as_ref(), "{name}");
        }
        let all: std::collections::BTreeSet<u16> =
            before.keys().chain(state.health_checks().keys()).copied().collect();
        for port in all {
            if before.get(&port) != state.health_checks().get(&port) {
                assert!(changed.contains_key(&port), "{name}: change of port {port} not reported");
            }
        }
        previous = state;
    }
}

#[test]
fn primary_addresses_are_the_first_internal_ip_per_family_else_external() {
    let cases: &[(&str, &[(&str, &str)], Option<&str>, Option<&str>)] = &[
        ("internal v4 only", &[("InternalIP", "192.168.1.10")], Some("192.168.1.10"), None),
        (
            "internal beats external, first wins",
            &[
                ("ExternalIP", "203.0.113.1"),
                ("InternalIP", "192.168.1.10"),
                ("InternalIP", "192.168.1.11"),
                ("InternalIP", "fd00::10"),
            ],
            Some("192.168.1.10"),
            Some("fd00::10"),
        ),
        ("external when no internal", &[("ExternalIP", "2001:db8::1")], None, Some("2001:db8::1")),
        (
            "loopback and hostnames never",
            &[("InternalIP", "127.0.0.1"), ("Hostname", "n")],
            None,
            None,
        ),
    ];
    for (name, addresses, v4, v6) in cases {
        let state = cluster(&[node(NODE, "zone-a", addresses)]);
        let model = switchyard_model::NodeModel::from_state(config(), &state);
        let primary = model.primary_addresses();
        assert_eq!(primary.ipv4.map(|a| a.to_string()).as_deref(), *v4, "{name}");
        assert_eq!(primary.ipv6.map(|a| a.to_string()).as_deref(), *v6, "{name}");
    }
}
