//! Semantic validation: one table row per rule, each naming the field it must point at.

#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use switchyard_model::validate::{Finding, Problem, Severity, ValidationOptions, validate};
use switchyard_model::{ClusterState, ObjectKey, ObjectKind, PortRange};
use switchyard_testing::objects;

/// A valid ClusterIP Service `default/<name>` with `spec` merged over it (null removes a field).
fn service(name: &str, spec: Value) -> (ObjectKey, Service) {
    let object = objects::service(name, json!({"clusterIPs": ["10.96.0.10"]}));
    let object = objects::with(object, json!({"spec": spec}));
    (objects::key_of(&object), objects::typed(&object))
}

fn with_status(mut service: (ObjectKey, Service), status: Value) -> (ObjectKey, Service) {
    service.1.status = Some(serde_json::from_value(status).unwrap());
    service
}

/// A valid slice `default/<name>` of Service web (one ready endpoint on node-a), `patch` over it.
fn slice(name: &str, patch: Value) -> (ObjectKey, EndpointSlice) {
    let endpoint =
        json!({"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "node-a"});
    let object = objects::with(objects::slice(name, "web", vec![endpoint]), patch);
    (objects::key_of(&object), objects::typed(&object))
}

fn node(name: &str, addresses: Value) -> (ObjectKey, Node) {
    let object = objects::with(
        objects::node(name, "zone-a", &[]),
        json!({"metadata": {"labels": null}, "status": {"addresses": addresses}}),
    );
    (objects::key_of(&object), objects::typed(&object))
}

/// A valid cluster around the objects under test: Service web with a slice, one node.
fn cluster(
    services: Vec<(ObjectKey, Service)>,
    slices: Vec<(ObjectKey, EndpointSlice)>,
) -> ClusterState {
    let mut state = ClusterState::default();
    for (key, object) in services {
        state.services.insert(key, object);
    }
    for (key, object) in slices {
        state.endpoint_slices.insert(key, object);
    }
    let (key, n) = node("node-a", json!([{"type": "InternalIP", "address": "192.168.0.10"}]));
    state.nodes.insert(key, n);
    state
}

fn errors(state: &ClusterState) -> Vec<Finding> {
    validate(state, &ValidationOptions::default()).into_iter().filter(Finding::is_error).collect()
}

/// (field, start of the message) of every error, for compact assertions.
fn error_fields(state: &ClusterState) -> Vec<(String, String)> {
    errors(state).iter().map(|f| (f.field.clone(), f.problem.to_string())).collect()
}

#[test]
fn valid_cluster_has_no_findings() {
    let state = cluster(vec![service("web", json!({}))], vec![slice("web-abc12", json!({}))]);
    assert_eq!(validate(&state, &ValidationOptions::default()), vec![]);
}

#[test]
fn service_rules_point_at_the_offending_field() {
    // (behaviour, spec patch, expected field, expected message fragment)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "port above 65535",
            json!({"ports": [{"name": "http", "port": 70000}]}),
            "spec.ports[0].port",
            "70000 is outside 1-65535",
        ),
        (
            "port zero",
            json!({"ports": [{"name": "http", "port": 0}]}),
            "spec.ports[0].port",
            "0 is outside 1-65535",
        ),
        (
            "numeric targetPort out of range",
            json!({"ports": [{"name": "http", "port": 80, "targetPort": 65536}]}),
            "spec.ports[0].targetPort",
            "65536 is outside",
        ),
        (
            "named targetPort too long",
            json!({"ports": [{"name": "http", "port": 80, "targetPort": "a-very-long-port-name"}]}),
            "spec.ports[0].targetPort",
            "1-15 characters",
        ),
        (
            "named targetPort without a letter",
            json!({"ports": [{"name": "http", "port": 80, "targetPort": "8080"}]}),
            "spec.ports[0].targetPort",
            "at least one letter",
        ),
        (
            "unknown protocol",
            json!({"ports": [{"name": "http", "port": 80, "protocol": "ICMP"}]}),
            "spec.ports[0].protocol",
            "\"ICMP\" is not supported",
        ),
        (
            "duplicate port name",
            json!({"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]}),
            "spec.ports[1].name",
            "duplicate port name \"http\" (also spec.ports[0])",
        ),
        (
            "duplicate port and protocol",
            json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}),
            "spec.ports[1].port",
            "duplicate port \"80/TCP\"",
        ),
        (
            "unnamed port among several",
            json!({"ports": [{"name": "a", "port": 80}, {"port": 81}]}),
            "spec.ports[1].name",
            "required when a Service has more than one port",
        ),
        (
            "port name not a DNS label",
            json!({"ports": [{"name": "HTTP", "port": 80}]}),
            "spec.ports[0].name",
            "lowercase",
        ),
        ("no ports", json!({"ports": []}), "spec.ports", "required"),
        (
            "nodePort below the range",
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 8080}]}),
            "spec.ports[0].nodePort",
            "NodePort 8080 is outside the NodePort range 30000-32767",
        ),
        (
            "nodePort on a ClusterIP Service",
            json!({"ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
            "spec.ports[0].nodePort",
            "may not be used when type is ClusterIP",
        ),
        (
            "same nodePort twice in one Service",
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30080}]}),
            "spec.ports[1].nodePort",
            "duplicate nodePort \"30080/TCP\"",
        ),
        (
            "clusterIP that does not parse",
            json!({"clusterIP": "10.96.0.300", "clusterIPs": null}),
            "spec.clusterIP",
            "\"10.96.0.300\" is not an IP address",
        ),
        (
            "clusterIPs entry that does not parse",
            json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::zz"]}),
            "spec.clusterIPs[1]",
            "\"fd00::zz\" is not an IP address",
        ),
        (
            "clusterIPs of one family twice",
            json!({"clusterIPs": ["10.96.0.10", "10.96.0.11"]}),
            "spec.clusterIPs[1]",
            "different families",
        ),
        (
            "clusterIP and clusterIPs disagree",
            json!({"clusterIP": "10.96.0.11"}),
            "spec.clusterIPs[0]",
            "must equal spec.clusterIP",
        ),
        (
            "ipFamilies not matching clusterIPs",
            json!({"ipFamilies": ["IPv6"]}),
            "spec.ipFamilies[0]",
            "IPv6 does not match",
        ),
        (
            "SingleStack with two cluster IPs",
            json!({"ipFamilyPolicy": "SingleStack", "clusterIPs": ["10.96.0.10", "fd00:96::10"]}),
            "spec.ipFamilyPolicy",
            "SingleStack allows one",
        ),
        (
            "externalIP that does not parse",
            json!({"externalIPs": ["192.0.2.1/32"]}),
            "spec.externalIPs[0]",
            "\"192.0.2.1/32\" is not an IP address",
        ),
        (
            "source range that does not parse",
            json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "nodePort": 30080}], "loadBalancerSourceRanges": ["10.0.0.0/40"]}),
            "spec.loadBalancerSourceRanges[0]",
            "prefix length",
        ),
        (
            "source ranges on a ClusterIP Service",
            json!({"loadBalancerSourceRanges": ["10.0.0.0/8"]}),
            "spec.loadBalancerSourceRanges",
            "only be used when type is LoadBalancer",
        ),
        ("unknown type", json!({"type": "Ingress"}), "spec.type", "\"Ingress\" is not supported"),
        (
            "headless NodePort",
            json!({"type": "NodePort", "clusterIP": "None", "clusterIPs": ["None"]}),
            "spec.clusterIP",
            "may not be None",
        ),
        (
            "ExternalName without a name",
            json!({"type": "ExternalName", "clusterIP": null, "clusterIPs": null}),
            "spec.externalName",
            "required",
        ),
        (
            "ExternalName with a bad name",
            json!({"type": "ExternalName", "clusterIP": null, "clusterIPs": null, "externalName": "db_host.example"}),
            "spec.externalName",
            "lowercase",
        ),
        (
            "ExternalName with a cluster IP",
            json!({"type": "ExternalName", "externalName": "db.example.com", "clusterIPs": null}),
            "spec.clusterIP",
            "must be empty",
        ),
        (
            "unknown external policy",
            json!({"type": "NodePort", "externalTrafficPolicy": "Nearest"}),
            "spec.externalTrafficPolicy",
            "\"Nearest\" is not supported",
        ),
        (
            "external policy on an internal Service",
            json!({"externalTrafficPolicy": "Local"}),
            "spec.externalTrafficPolicy",
            "externally-accessible",
        ),
        (
            "unknown internal policy",
            json!({"internalTrafficPolicy": "Node"}),
            "spec.internalTrafficPolicy",
            "\"Node\" is not supported",
        ),
        (
            "health check port without Local policy",
            json!({"type": "LoadBalancer", "healthCheckNodePort": 31000}),
            "spec.healthCheckNodePort",
            "externalTrafficPolicy is Local",
        ),
        (
            "health check port out of range",
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 1000}),
            "spec.healthCheckNodePort",
            "outside the NodePort range",
        ),
        (
            "affinity timeout above a day",
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}}),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "86401 is outside 1-86400",
        ),
        (
            "affinity timeout without affinity",
            json!({"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "sessionAffinity is None",
        ),
        (
            "unknown affinity",
            json!({"sessionAffinity": "Cookie"}),
            "spec.sessionAffinity",
            "\"Cookie\" is not supported",
        ),
        (
            "unknown traffic distribution",
            json!({"trafficDistribution": "PreferSameRack"}),
            "spec.trafficDistribution",
            "\"PreferSameRack\" is not supported",
        ),
    ];
    for (behaviour, patch, field, fragment) in cases {
        let state = cluster(vec![service("web", patch)], vec![slice("web-abc12", json!({}))]);
        let found = error_fields(&state);
        assert!(
            found.iter().any(|(f, message)| f == field && message.contains(fragment)),
            "{behaviour}: expected {field}: …{fragment}…, got {found:?}"
        );
    }
}

#[test]
fn load_balancer_status_addresses_are_checked() {
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "ingress ip that does not parse",
            json!([{"ip": "203.0.113.300"}]),
            "status.loadBalancer.ingress[0].ip",
            "is not an IP address",
        ),
        (
            "ingress entry without ip or hostname",
            json!([{}]),
            "status.loadBalancer.ingress[0]",
            "needs ip or hostname",
        ),
        (
            "unknown ipMode",
            json!([{"ip": "203.0.113.10", "ipMode": "DSR"}]),
            "status.loadBalancer.ingress[0].ipMode",
            "\"DSR\" is not supported",
        ),
    ];
    for (behaviour, ingress, field, fragment) in cases {
        let lb = service(
            "web",
            json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        );
        let lb = with_status(lb, json!({"loadBalancer": {"ingress": ingress}}));
        let state = cluster(vec![lb], vec![slice("web-abc12", json!({}))]);
        let found = error_fields(&state);
        assert!(
            found.iter().any(|(f, message)| f == field && message.contains(fragment)),
            "{behaviour}: expected {field}: …{fragment}…, got {found:?}"
        );
    }
}

#[test]
fn node_port_collision_between_services_names_both() {
    let nodeport = |name: &str, protocol: &str| {
        service(
            name,
            json!({"type": "NodePort", "clusterIP": null, "clusterIPs": null,
                             "ports": [{"name": "p", "port": 53, "protocol": protocol, "nodePort": 30053}]}),
        )
    };
    let state = cluster(vec![nodeport("dns-a", "UDP"), nodeport("dns-b", "UDP")], vec![]);
    let found = errors(&state);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].object, ObjectKey::new("default", "dns-b"));
    assert_eq!(found[0].field, "spec.ports[0].nodePort");
    match &found[0].problem {
        Problem::NodePortCollision { port, protocol, other, .. } => {
            assert_eq!(
                (*port, protocol.as_str(), other),
                (30053, "UDP", &ObjectKey::new("default", "dns-a"))
            );
        }
        other => panic!("expected a NodePort collision, got {other:?}"),
    }
}

#[test]
fn same_node_port_with_different_protocols_is_no_collision() {
    let state = cluster(
        vec![
            service(
                "dns-tcp",
                json!({"type": "NodePort", "clusterIP": null, "clusterIPs": null, "ports": [{"name": "p", "port": 53, "protocol": "TCP", "nodePort": 30053}]}),
            ),
            service(
                "dns-udp",
                json!({"type": "NodePort", "clusterIP": null, "clusterIPs": null, "ports": [{"name": "p", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
            ),
        ],
        vec![],
    );
    assert_eq!(errors(&state), vec![]);
}

#[test]
fn health_check_node_port_collides_with_a_tcp_node_port() {
    let state = cluster(
        vec![
            service(
                "a",
                json!({"type": "NodePort", "clusterIP": null, "clusterIPs": null, "ports": [{"name": "p", "port": 80, "nodePort": 31000}]}),
            ),
            service(
                "b",
                json!({"type": "LoadBalancer", "clusterIP": null, "clusterIPs": null, "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000, "ports": [{"name": "p", "port": 80, "nodePort": 31001}]}),
            ),
        ],
        vec![],
    );
    let found = error_fields(&state);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "spec.healthCheckNodePort");
    assert!(found[0].1.contains("already used by Service default/a"), "{found:?}");
}

#[test]
fn node_port_range_is_a_parameter() {
    let state = cluster(
        vec![service(
            "web",
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 8080}]}),
        )],
        vec![],
    );
    let options = ValidationOptions { node_port_range: PortRange { first: 8000, last: 9000 } };
    assert!(validate(&state, &options).iter().all(|f| !f.is_error()));
    assert!(!errors(&state).is_empty(), "8080 is outside the default range");
}

#[test]
fn cluster_ip_used_twice_is_an_error() {
    let state = cluster(vec![service("a", json!({})), service("b", json!({}))], vec![]);
    let found = error_fields(&state);
    assert_eq!(
        found,
        vec![(
            "spec.clusterIPs[0]".to_owned(),
            "cluster IP 10.96.0.10 is already used by Service default/a".to_owned()
        )]
    );
}

#[test]
fn endpoint_slice_rules_point_at_the_offending_field() {
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "IPv6 address in an IPv4 slice",
            json!({"endpoints": [{"addresses": ["fd00:244::5"]}]}),
            "endpoints[0].addresses[0]",
            "not an IPv4 address",
        ),
        (
            "IPv4 address in an IPv6 slice",
            json!({"addressType": "IPv6", "endpoints": [{"addresses": ["10.244.1.5"]}]}),
            "endpoints[0].addresses[0]",
            "not an IPv6 address",
        ),
        (
            "address that does not parse",
            json!({"endpoints": [{"addresses": ["10.244.1"]}]}),
            "endpoints[0].addresses[0]",
            "not an IP address",
        ),
        (
            "endpoint without addresses",
            json!({"endpoints": [{"addresses": []}]}),
            "endpoints[0].addresses",
            "required",
        ),
        (
            "unknown address type",
            json!({"addressType": "IPv5"}),
            "addressType",
            "\"IPv5\" is not supported",
        ),
        (
            "port out of range",
            json!({"ports": [{"name": "http", "port": 0}]}),
            "ports[0].port",
            "0 is outside 1-65535",
        ),
        (
            "duplicate port name",
            json!({"ports": [{"name": "http", "port": 8080}, {"name": "http", "port": 8081}]}),
            "ports[1].name",
            "duplicate port name",
        ),
        (
            "empty zone hint",
            json!({"endpoints": [{"addresses": ["10.244.1.5"], "hints": {"forZones": [{"name": ""}]}}]}),
            "endpoints[0].hints.forZones[0].name",
            "required",
        ),
    ];
    for (behaviour, patch, field, fragment) in cases {
        let state = cluster(vec![service("web", json!({}))], vec![slice("web-abc12", patch)]);
        let found = error_fields(&state);
        assert!(
            found.iter().any(|(f, message)| f == field && message.contains(fragment)),
            "{behaviour}: expected {field}: …{fragment}…, got {found:?}"
        );
    }
}

#[test]
fn broken_joins_are_warnings_naming_the_missing_object() {
    let state = cluster(
        vec![
            service("web", json!({})),
            service("lonely", json!({"clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"]})),
        ],
        vec![
            slice(
                "web-abc12",
                json!({"endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "node-z"}]}),
            ),
            slice(
                "orphan-x1",
                json!({"metadata": {"labels": {"kubernetes.io/service-name": "gone"}}}),
            ),
        ],
    );
    let findings = validate(&state, &ValidationOptions::default());
    assert!(findings.iter().all(|f| f.severity == Severity::Warning), "{findings:?}");
    let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
    let expect = [
        "Service default/lonely: spec: no EndpointSlice is labelled kubernetes.io/service-name=lonely",
        "EndpointSlice default/orphan-x1: metadata.labels[kubernetes.io/service-name]: Service default/gone does not exist",
        "EndpointSlice default/web-abc12: endpoints[0].nodeName: Node node-z does not exist",
    ];
    for expected in expect {
        assert!(text.iter().any(|t| t.starts_with(expected)), "missing {expected:?} in {text:#?}");
    }
}

#[test]
fn node_addresses_must_parse() {
    let mut state = cluster(vec![], vec![]);
    let (key, n) = node(
        "node-b",
        json!([{"type": "InternalIP", "address": "192.168.0.256"}, {"type": "Hostname", "address": "node-b"}]),
    );
    state.nodes.insert(key, n);
    let found = errors(&state);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].kind, found[0].field.as_str()),
        (ObjectKind::Node, "status.addresses[0].address")
    );
}

#[test]
fn headless_and_external_name_services_need_no_endpoints_or_ports() {
    let state = cluster(
        vec![
            service("db", json!({"clusterIP": "None", "clusterIPs": ["None"], "ports": []})),
            service(
                "ext",
                json!({"type": "ExternalName", "externalName": "db.example.com.", "clusterIP": null, "clusterIPs": null}),
            ),
        ],
        vec![],
    );
    assert_eq!(validate(&state, &ValidationOptions::default()), vec![]);
}

#[test]
fn findings_name_the_object_in_their_message() {
    let state = cluster(
        vec![service("web", json!({"ports": [{"name": "http", "port": 70000}]}))],
        vec![slice("web-abc12", json!({}))],
    );
    let text = errors(&state)[0].to_string();
    assert_eq!(text, "Service default/web: spec.ports[0].port: port 70000 is outside 1-65535");
}

#[test]
fn service_port_without_a_matching_slice_port_is_a_warning() {
    let state = cluster(
        vec![service(
            "web",
            json!({"ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
        )],
        vec![slice(
            "web-abc12",
            json!({"ports": [{"name": "web", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
        )],
    );
    let findings = validate(&state, &ValidationOptions::default());
    let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "Service default/web: spec.ports[0]: no EndpointSlice of this Service has a port named \"http\"/TCP (they have \"dns\"/UDP, \"web\"/TCP): this port has no backends"
        ]
    );
    assert_eq!(findings[0].severity, Severity::Warning);
}

#[test]
fn external_addresses_taking_a_cluster_ip_or_node_address_and_special_addresses_are_errors() {
    let dns = (
        ObjectKey::new("kube-system", "kube-dns"),
        service("kube-dns", json!({"clusterIPs": ["10.96.0.10"]})).1,
    );
    let evil = service(
        "evil",
        json!({"clusterIP": null, "clusterIPs": ["10.96.0.66"],
               "externalIPs": ["10.96.0.10", "192.168.0.10"]}),
    );
    let state = cluster(vec![dns.clone(), (ObjectKey::new("aaa", "evil"), evil.1)], vec![]);
    let taken = error_fields(&state);
    assert!(
        taken.contains(&(
            "spec.externalIPs[0]".to_owned(),
            "10.96.0.10 is the cluster IP of Service kube-system/kube-dns: an externalIP or \
             LoadBalancer IP may not take it, so it is not served"
                .to_owned()
        )),
        "{taken:?}"
    );
    assert!(
        taken.iter().any(|(field, message)| field == "spec.externalIPs[1]"
            && message.starts_with("192.168.0.10 is an address of Node node-a")),
        "{taken:?}"
    );
    let lb = with_status(
        service(
            "lb",
            json!({"clusterIP": null, "clusterIPs": ["10.96.0.20"], "type": "LoadBalancer",
                   "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        ),
        json!({"loadBalancer": {"ingress": [{"ip": "10.96.0.10"}]}}),
    );
    let state = cluster(vec![dns, lb], vec![]);
    let fields: Vec<String> = error_fields(&state).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["status.loadBalancer.ingress[0].ip"]);

    // Special addresses, in every field that names a frontend or an endpoint.
    for special in ["127.0.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1", "255.255.255.255"] {
        let state = cluster(
            vec![service(
                "web",
                json!({"clusterIP": null, "clusterIPs": [special], "externalIPs": [special]}),
            )],
            vec![slice(
                "web-abc12",
                json!({"endpoints": [{"addresses": [special], "conditions": {"ready": true}}]}),
            )],
        );
        let found = error_fields(&state);
        let fields: Vec<&str> = found
            .iter()
            .filter(|(_, message)| message.contains("never a Service or endpoint address"))
            .map(|(field, _)| field.as_str())
            .collect();
        assert_eq!(
            fields,
            ["spec.clusterIPs[0]", "spec.externalIPs[0]", "endpoints[0].addresses[0]"],
            "{special}: {found:?}"
        );
    }
}
