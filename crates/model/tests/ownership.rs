//! Frontend ownership (CVE-2020-8554): an externalIP or LoadBalancer IP never takes a cluster IP,
//! a NodePort or a node address, whatever the names; special addresses are never frontends nor
//! endpoints; externalIPs are served only inside `--external-ip-cidrs`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use switchyard_model::config::parse_external_ip_cidrs;
use switchyard_model::{
    ClusterState, FrontendKind, NodeModel, ObjectKey, ProxyConfig, RefusalReason,
};
use switchyard_testing::objects::change;

fn in_namespace(namespace: &str, object: Value) -> Value {
    with(object, json!({"metadata": {"namespace": namespace}}))
}

/// kube-system/kube-dns on 10.96.0.10:53/UDP with one endpoint.
fn kube_dns() -> Vec<Value> {
    let dns = svc(
        "kube-dns",
        json!({"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
    );
    let slice = with(
        slice("kube-dns-1", "kube-dns", vec![ep("10.244.0.53", "node-b", "ready")]),
        json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
    );
    vec![in_namespace("kube-system", dns), in_namespace("kube-system", slice)]
}

/// aaa/evil (smaller than kube-system/kube-dns) with `spec` over a ClusterIP on 10.96.0.66 that
/// also listens on 53/UDP, with its own endpoint.
fn evil(spec: Value) -> Vec<Value> {
    let base = json!({"clusterIP": "10.96.0.66", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]});
    let service = with(svc("evil", base), json!({"spec": spec}));
    let slice = with(
        slice("evil-1", "evil", vec![ep("10.244.6.66", "node-b", "ready")]),
        json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
    );
    vec![in_namespace("aaa", service), in_namespace("aaa", slice)]
}

fn lb_status(ip: &str) -> Value {
    json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
}

/// The model fed `objects` one by one in this order, checked against the all-at-once model.
fn model_of(config: &ProxyConfig, objects: &[Value]) -> NodeModel {
    let mut model = NodeModel::new(config.clone());
    for object in objects {
        model.apply(change(object, false));
    }
    let full = NodeModel::from_state(config.clone(), &cluster(objects));
    assert_eq!(model.desired(), full.desired(), "incremental and full differ");
    assert_eq!(model.refusals(), full.refusals(), "incremental and full refusals differ");
    model
}

fn owner(model: &NodeModel, frontend: &str) -> Option<String> {
    model.desired().get(&key(frontend)).map(|f| f.service.to_string())
}

fn refused(model: &NodeModel) -> Vec<String> {
    model.refusals().iter().map(|r| r.to_string()).collect()
}

#[test]
fn an_external_address_never_takes_a_cluster_ip_whatever_the_names() {
    let evil_lb = with(
        evil(json!({"type": "LoadBalancer", "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}))
            [0]
            .clone(),
        lb_status("10.96.0.10"),
    );
    let cases: Vec<(&str, Vec<Value>)> = vec![
        (
            "externalIP, owner first",
            [kube_dns(), evil(json!({"externalIPs": ["10.96.0.10"]}))].concat(),
        ),
        (
            "externalIP, thief first",
            [evil(json!({"externalIPs": ["10.96.0.10"]})), kube_dns()].concat(),
        ),
        ("LoadBalancer ingress IP", [vec![evil_lb.clone()], kube_dns()].concat()),
        ("LoadBalancer ingress IP, owner first", [kube_dns(), vec![evil_lb]].concat()),
    ];
    for (name, objects) in cases {
        let model = model_of(&config(), &[vec![this_node()], objects].concat());
        assert_eq!(
            owner(&model, "10.96.0.10:53/UDP").as_deref(),
            Some("kube-system/kube-dns"),
            "{name}"
        );
        let dns = model.desired().get(&key("10.96.0.10:53/UDP")).unwrap();
        assert_eq!(dns.kind, FrontendKind::ClusterIp, "{name}");
        assert_eq!(backend_list(&dns.backends), ["10.244.0.53:53"], "{name}");
        // No other port of that address either.
        let taken: Vec<String> = model
            .desired()
            .frontends
            .iter()
            .filter(|(k, f)| k.ip.to_string() == "10.96.0.10" && f.service.name == "evil")
            .map(|(k, _)| k.to_string())
            .collect();
        assert!(taken.is_empty(), "{name}: {taken:?}");
        let refusals = model.refusals();
        assert_eq!(refusals.len(), 1, "{name}: {:?}", refused(&model));
        assert_eq!(refusals[0].service, ObjectKey::new("aaa", "evil"), "{name}");
        assert_eq!(
            refusals[0].reason,
            RefusalReason::ClusterIpOf(ObjectKey::new("kube-system", "kube-dns")),
            "{name}"
        );
        // evil keeps its own cluster IP.
        assert_eq!(owner(&model, "10.96.0.66:53/UDP").as_deref(), Some("aaa/evil"), "{name}");
    }
}

#[test]
fn the_external_address_is_served_again_once_the_cluster_ip_is_gone() {
    let objects =
        [vec![this_node()], kube_dns(), evil(json!({"externalIPs": ["10.96.0.10"]}))].concat();
    let mut model = model_of(&config(), &objects);
    let dns = &kube_dns()[0];
    let diff = model.apply(change(dns, true));
    assert_eq!(owner(&model, "10.96.0.10:53/UDP").as_deref(), Some("aaa/evil"));
    assert!(diff.upserted.iter().any(|(k, _)| k.to_string() == "10.96.0.10:53/UDP"), "{diff:?}");
    assert!(model.refusals().is_empty(), "{:?}", refused(&model));
    // And it goes back to the cluster IP's Service when that returns.
    model.apply(change(dns, false));
    assert_eq!(owner(&model, "10.96.0.10:53/UDP").as_deref(), Some("kube-system/kube-dns"));
    assert_eq!(refused(&model).len(), 1);
}

#[test]
fn an_external_address_never_takes_a_node_address_or_its_node_ports() {
    let node_port = svc(
        "web",
        json!({"type": "NodePort", "clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    let other_node = node("node-b", "zone-b", &[("InternalIP", "192.168.1.11")]);
    for (name, address, port) in [
        ("this node's NodePort", "192.168.1.10", 30080),
        ("this node's own port", "192.168.1.10", 22),
        ("another node's address", "192.168.1.11", 10250),
    ] {
        let thief = in_namespace(
            "aaa",
            svc(
                "thief",
                json!({"clusterIP": "10.96.0.66", "externalIPs": [address],
                       "ports": [{"name": "http", "port": port}]}),
            ),
        );
        let objects = vec![this_node(), other_node.clone(), node_port.clone(), thief];
        let model = model_of(&config(), &objects);
        let frontend = format!("{address}:{port}/TCP");
        let expected = (port == 30080).then_some("default/web");
        assert_eq!(owner(&model, &frontend).as_deref(), expected, "{name}");
        let refusals = model.refusals();
        assert_eq!(refusals.len(), 1, "{name}: {:?}", refused(&model));
        let node = if address.ends_with(".10") { NODE } else { "node-b" };
        assert_eq!(refusals[0].reason, RefusalReason::NodeAddress(node.to_owned()), "{name}");
    }
    // A Node that appears later takes its address back; one that goes releases it.
    let thief = in_namespace(
        "aaa",
        svc("thief", json!({"clusterIP": "10.96.0.66", "externalIPs": ["192.168.1.11"]})),
    );
    let mut model = model_of(&config(), &[this_node(), thief]);
    assert_eq!(owner(&model, "192.168.1.11:80/TCP").as_deref(), Some("aaa/thief"));
    model.apply(change(&other_node, false));
    assert_eq!(owner(&model, "192.168.1.11:80/TCP"), None);
    model.apply(change(&other_node, true));
    assert_eq!(owner(&model, "192.168.1.11:80/TCP").as_deref(), Some("aaa/thief"));
}

#[test]
fn special_addresses_are_never_frontends_nor_endpoints() {
    let specials = ["127.0.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1", "255.255.255.255"];
    for special in specials {
        let lb = with(
            svc(
                "lb",
                json!({"type": "LoadBalancer", "clusterIP": "10.96.0.30",
                       "ports": [{"name": "http", "port": 80, "nodePort": 30081}]}),
            ),
            lb_status(special),
        );
        let objects = vec![
            this_node(),
            svc("ext", json!({"clusterIP": "10.96.0.20", "externalIPs": [special]})),
            svc("cip", json!({"clusterIP": special})),
            lb,
            svc("web", json!({"clusterIP": "10.96.0.40"})),
            slice(
                "web-1",
                "web",
                vec![ep(special, NODE, "ready"), ep("10.244.1.5", NODE, "ready")],
            ),
        ];
        let model = model_of(&config(), &objects);
        let on_special: Vec<String> = model
            .desired()
            .frontends
            .keys()
            .filter(|k| k.ip.to_string() == special)
            .map(ToString::to_string)
            .collect();
        assert!(on_special.is_empty(), "{special}: {on_special:?}");
        let web = model.desired().get(&key("10.96.0.40:80/TCP")).unwrap();
        assert_eq!(backend_list(&web.backends), ["10.244.1.5:8080+L"], "{special}");
        let reasons: Vec<(String, FrontendKind)> = model
            .refusals()
            .iter()
            .filter(|r| matches!(r.reason, RefusalReason::Special(_)))
            .map(|r| (r.service.name.to_string(), r.kind))
            .collect();
        assert_eq!(
            reasons,
            [
                ("cip".to_owned(), FrontendKind::ClusterIp),
                ("ext".to_owned(), FrontendKind::ExternalIp),
                ("lb".to_owned(), FrontendKind::LoadBalancer),
            ],
            "{special}"
        );
    }
    // An IPv4-mapped IPv6 address would alias the IPv4 one in the data plane's 16-byte form.
    let mapped = svc(
        "mapped",
        json!({"clusterIPs": ["10.96.0.20", "fd00::20"], "externalIPs": ["::ffff:10.96.0.10"]}),
    );
    let model = model_of(&config(), &[this_node(), mapped]);
    assert_eq!(refused(&model).len(), 1, "{:?}", refused(&model));
}

#[test]
fn external_ips_are_served_only_inside_the_allow_list() {
    let service = svc("ext", json!({"externalIPs": ["203.0.113.5", "198.51.100.5"]}));
    let cases = [
        ("all (the default)", "all", vec!["203.0.113.5:80/TCP", "198.51.100.5:80/TCP"]),
        ("none", "none", vec![]),
        ("one prefix", "203.0.113.0/24", vec!["203.0.113.5:80/TCP"]),
    ];
    for (name, flag, served) in cases {
        let config =
            ProxyConfig { external_ip_cidrs: parse_external_ip_cidrs(flag).unwrap(), ..config() };
        let model = model_of(&config, &[this_node(), service.clone()]);
        let external: Vec<String> = model
            .desired()
            .frontends
            .iter()
            .filter(|(_, f)| f.kind == FrontendKind::ExternalIp)
            .map(|(k, _)| k.to_string())
            .collect();
        let mut served: Vec<String> = served.into_iter().map(str::to_owned).collect();
        served.sort_by_key(|text| key(text));
        assert_eq!(external, served, "{name}");
        let not_allowed =
            model.refusals().iter().filter(|r| r.reason == RefusalReason::NotAllowed).count();
        assert_eq!(not_allowed, 2 - served.len(), "{name}");
    }
    // LoadBalancer IPs are not externalIPs: the list does not apply to them.
    let lb = with(
        svc(
            "lb",
            json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "nodePort": 30081}]}),
        ),
        lb_status("203.0.113.9"),
    );
    let config = ProxyConfig { external_ip_cidrs: Vec::new(), ..config() };
    let model = model_of(&config, &[this_node(), lb]);
    assert!(owner(&model, "203.0.113.9:80/TCP").is_some());
}

#[test]
fn a_snapshot_and_a_stream_agree_on_refusals_in_any_order() {
    let objects = [
        vec![this_node(), node("node-b", "zone-b", &[("InternalIP", "192.168.1.11")])],
        kube_dns(),
        evil(json!({"externalIPs": ["10.96.0.10", "192.168.1.11", "127.0.0.1"]})),
    ]
    .concat();
    let mut reversed = objects.clone();
    reversed.reverse();
    let forward = model_of(&config(), &objects);
    let backward = model_of(&config(), &reversed);
    assert_eq!(forward.refusals(), backward.refusals());
    assert_eq!(refused(&forward).len(), 3, "{:?}", refused(&forward));
    let state: ClusterState = cluster(&objects);
    assert_eq!(state.services.len(), 2);
}
