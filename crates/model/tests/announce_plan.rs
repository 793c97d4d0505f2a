//! Which peers a node runs and, per peer, which addresses BGPAdvertisements announce (issue 15),
//! as tables of cases.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use switchyard_model::ObjectKey;
use switchyard_model::announce::{
    AddressDecision, BgpInputs, NotPeering, Plan, Role, Route, Withheld, director_candidates,
    plan_for,
};
use switchyard_model::crd::Community;
use switchyard_model::{NodeModel, announce::Drain};
use switchyard_testing::objects::{bgp_advertisement, bgp_peer, change, ip_pool, secret};

const LB: &str = "198.51.100.7";
const LB6: &str = "2001:db8:7::7";
const EXT: &str = "203.0.113.50";

/// A dual-stack LoadBalancer Service `name` on `ip` (and LB6), policy `policy`, with `labels`.
fn lb(name: &str, policy: &str, ips: &[&str], labels: Value) -> Value {
    let ingress: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    with(
        svc(
            name,
            json!({
                "type": "LoadBalancer", "externalTrafficPolicy": policy, "healthCheckNodePort": 32100,
                "externalIPs": [EXT], "clusterIPs": ["10.96.0.10", "fd00:96::10"],
                "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
            }),
        ),
        json!({"metadata": {"labels": labels}, "status": {"loadBalancer": {"ingress": ingress}}}),
    )
}

/// This node (dual-stack, labelled rack=r1) and one Cluster-policy Service on LB, LB6 and EXT.
fn base() -> Vec<Value> {
    vec![
        with(
            node(NODE, "zone-a", &[("InternalIP", "192.168.1.10"), ("InternalIP", "fd00::10")]),
            json!({"metadata": {"labels": {"rack": "r1"}}}),
        ),
        lb("web", "Cluster", &[LB, LB6], json!({"app": "web"})),
        slice("web-1", "web", vec![ep("10.1.0.2", "node-b", "ready")]),
        bgp_peer("tor", "192.168.1.1", json!({})),
    ]
}

fn plan_of(objects: &[Value]) -> Plan {
    let state = cluster(objects);
    let model = NodeModel::from_state(config(), &state);
    plan_for(model.desired(), &BgpInputs::from_state(NODE, &state), false)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The decision of peer `tor` for `address`, as `switchyard bgp` prints it.
fn decision(plan: &Plan, address: &str) -> String {
    plan.peers["tor"].addresses[&ip(address)].to_string()
}

#[test]
fn advertisements_decide_what_each_address_becomes() {
    let pools = || [ip_pool("public", &["198.51.100.0/24"]), ip_pool("edge", &["2001:db8:7::/64"])];
    // (case, advertisements and pools, expected decision of LB)
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        ("no advertisement: nothing announced", vec![], "withheld: no BGPAdvertisement exists"),
        (
            "an empty advertisement announces everything",
            vec![bgp_advertisement("all", json!({}))],
            "announced as 198.51.100.7/32 (BGPAdvertisement all)",
        ),
        (
            "the address's pool is named",
            [pools().to_vec(), vec![bgp_advertisement("pub", json!({"ipPools": ["public"]}))]]
                .concat(),
            "announced as 198.51.100.7/32 (BGPAdvertisement pub)",
        ),
        (
            "another pool is named",
            [pools().to_vec(), vec![bgp_advertisement("e", json!({"ipPools": ["edge"]}))]].concat(),
            "withheld: no BGPAdvertisement selects it (e: spec.ipPools does not name pool public)",
        ),
        (
            "pools named, the address in none",
            vec![bgp_advertisement("e", json!({"ipPools": ["edge"]}))],
            "withheld: no BGPAdvertisement selects it (e: spec.ipPools is set and the address is in no pool)",
        ),
        (
            "the Service selector matches",
            vec![bgp_advertisement(
                "w",
                json!({"serviceSelector": {"matchLabels": {"app": "web"}}}),
            )],
            "announced as 198.51.100.7/32 (BGPAdvertisement w)",
        ),
        (
            "the Service selector does not match",
            vec![bgp_advertisement(
                "db",
                json!({"serviceSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]}}),
            )],
            "withheld: no BGPAdvertisement selects it (db: spec.serviceSelector selects none of its Services)",
        ),
        (
            "this peer is named",
            vec![bgp_advertisement("p", json!({"peers": ["tor"]}))],
            "announced as 198.51.100.7/32 (BGPAdvertisement p)",
        ),
        (
            "other peers are named",
            vec![bgp_advertisement("p", json!({"peers": ["spine"]}))],
            "withheld: no BGPAdvertisement selects it (p: spec.peers names other peers)",
        ),
        (
            "aggregated, by two advertisements",
            vec![
                bgp_advertisement("agg", json!({"aggregationLength": 24})),
                bgp_advertisement("host", json!({})),
            ],
            "announced as 198.51.100.0/24, 198.51.100.7/32 (BGPAdvertisement agg, host)",
        ),
        (
            "an unusable advertisement selects nothing",
            vec![bgp_advertisement("bad", json!({"communities": ["65000:x"]}))],
            "withheld: no BGPAdvertisement selects it (bad: unusable: spec.communities[0]: \"65000:x\" is not a community: expected 65000:100, 65000:1:2 or a well-known name)",
        ),
    ];
    for (case, extra, expected) in cases {
        let plan = plan_of(&[base(), extra].concat());
        assert_eq!(decision(&plan, LB), expected, "{case}");
        let routes = &plan.peers["tor"].routes;
        let announced = plan.peers["tor"].addresses[&ip(LB)].is_announced();
        assert_eq!(
            routes.keys().any(|r| r.network.is_ipv4()),
            announced,
            "{case}: routes follow the decision: {routes:?}"
        );
    }
}

#[test]
fn external_ips_only_when_an_advertisement_opts_in() {
    let plan = plan_of(&[base(), vec![bgp_advertisement("all", json!({}))]].concat());
    assert_eq!(
        decision(&plan, EXT),
        "withheld: no BGPAdvertisement selects it (all: an externalIP, and spec.externalIPs is off)"
    );
    let plan =
        plan_of(&[base(), vec![bgp_advertisement("ext", json!({"externalIPs": true}))]].concat());
    assert_eq!(decision(&plan, EXT), "announced as 203.0.113.50/32 (BGPAdvertisement ext)");
    assert_eq!(decision(&plan, LB6), "announced as 2001:db8:7::7/128 (BGPAdvertisement ext)");
}

#[test]
fn attributes_merge_over_the_advertisements_of_a_route() {
    let advertisements = vec![
        bgp_advertisement("a", json!({"communities": ["65000:100", "no-export"], "localPref": 50})),
        bgp_advertisement("b", json!({"communities": ["65000:1:2"], "localPref": 200})),
        bgp_advertisement("v6", json!({"aggregationLengthV6": 64, "peers": ["tor"]})),
    ];
    let plan = plan_of(&[base(), advertisements].concat());
    let routes = &plan.peers["tor"].routes;
    let host = &routes[&Route::aggregate(ip(LB), 32).unwrap()];
    assert_eq!(
        host.communities.iter().copied().collect::<Vec<_>>(),
        [
            Community::Standard(65000 << 16 | 100),
            Community::Standard(0xFFFF_FF01),
            Community::Large(65000, 1, 2)
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(host.local_pref, Some(200), "the highest LOCAL_PREF wins");
    let keys: Vec<String> = routes.keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["198.51.100.7/32", "2001:db8:7::/64", "2001:db8:7::7/128"]);
}

#[test]
fn local_policy_drain_and_missing_next_hops_withhold() {
    let all = vec![bgp_advertisement("all", json!({}))];
    // (case, objects replacing the base's Service or node, expected decision of LB)
    let local = |state| {
        vec![
            lb("web", "Local", &[LB, LB6], json!({})),
            slice("web-1", "web", vec![ep("10.1.0.1", NODE, state)]),
        ]
    };
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        (
            "Local with a ready local endpoint",
            local("ready"),
            "announced as 198.51.100.7/32 (BGPAdvertisement all)",
        ),
        (
            "Local, the local endpoint terminating",
            local("terminating"),
            "withheld: externalTrafficPolicy Local and no ready local endpoint",
        ),
        (
            "cordoned",
            vec![with(base()[0].clone(), json!({"spec": {"unschedulable": true}}))],
            "withheld: node is unschedulable",
        ),
        (
            "being deleted",
            vec![with(
                base()[0].clone(),
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            )],
            "withheld: node is being deleted",
        ),
        (
            "no IPv4 address on the node",
            vec![node(NODE, "zone-a", &[("InternalIP", "fd00::10")])],
            "withheld: the node has no address of this family",
        ),
    ];
    for (case, replace, expected) in cases {
        let mut objects = base();
        for object in replace {
            let key = switchyard_testing::objects::key_of(&object);
            objects.retain(|o| switchyard_testing::objects::key_of(o) != key);
            objects.push(object);
        }
        objects.extend(all.clone());
        let plan = plan_of(&objects);
        assert_eq!(decision(&plan, LB), expected, "{case}");
    }
    // An IPv4-only node has no next hop for IPv6 addresses.
    let mut objects = [base(), all.clone()].concat();
    objects[0] = this_node();
    assert_eq!(
        decision(&plan_of(&objects), LB6),
        "withheld: the node has no address of this family"
    );
    // Agent shutdown withdraws everything, whatever the node says.
    let state = cluster(&[base(), all].concat());
    let model = NodeModel::from_state(config(), &state);
    let plan = plan_for(model.desired(), &BgpInputs::from_state(NODE, &state), true);
    assert!(plan.peers["tor"].routes.is_empty());
    assert_eq!(
        plan.peers["tor"].addresses[&ip(LB)],
        AddressDecision::Withheld(Withheld::Node(switchyard_model::announce::Decision::Draining(
            Drain::AgentShutdown
        )))
    );
}

#[test]
fn peers_are_selected_by_node_labels_and_their_settings_parsed() {
    let peers = vec![
        bgp_peer(
            "tor",
            "192.168.1.1",
            json!({"holdTime": "9s", "keepaliveTime": "3s", "gracefulRestart": true, "peerPort": 1179,
                   "nodeSelector": {"matchLabels": {"rack": "r1"}}}),
        ),
        bgp_peer("tor6", "fd00::1", json!({"ebgpMultiHop": true, "peerASN": 64512})),
        bgp_peer(
            "other-rack",
            "192.168.2.1",
            json!({"nodeSelector": {"matchLabels": {"rack": "r2"}}}),
        ),
        bgp_peer("short-hold", "192.168.1.2", json!({"holdTime": "2s"})),
        bgp_peer("slow-keepalive", "192.168.1.3", json!({"holdTime": "9s", "keepaliveTime": "9s"})),
        bgp_peer("bad-address", "192.168.1", json!({})),
        bgp_peer(
            "md5",
            "192.168.1.4",
            json!({"passwordSecret": {"name": "bgp", "namespace": "kube-system"}}),
        ),
        bgp_peer(
            "md5-other-key",
            "192.168.1.5",
            json!({"passwordSecret": {"name": "bgp", "key": "router2"}}),
        ),
        bgp_peer(
            "md5-no-key",
            "192.168.1.6",
            json!({"passwordSecret": {"name": "bgp", "key": "x"}}),
        ),
        bgp_peer("md5-no-secret", "192.168.1.7", json!({"passwordSecret": {"name": "gone"}})),
        bgp_peer(
            "md5-other-namespace",
            "192.168.1.8",
            json!({"passwordSecret": {"name": "bgp", "namespace": "default"}}),
        ),
        bgp_peer(
            "md5-too-long",
            "192.168.1.9",
            json!({"passwordSecret": {"name": "bgp", "key": "long"}}),
        ),
    ];
    let secrets = vec![secret(
        "kube-system",
        "bgp",
        json!({"password": "s3cret", "router2": "other", "long": "x".repeat(81)}),
    )];
    let mut objects = base();
    objects.retain(|o| o["kind"] != "BGPPeer");
    let plan = plan_of(&[objects, peers, secrets].concat());
    assert_eq!(plan.peers.keys().collect::<Vec<_>>(), ["md5", "md5-other-key", "tor", "tor6"]);
    let key = |peer: &str| plan.peers[peer].settings.password.as_ref().map(|p| p.bytes().to_vec());
    assert_eq!(key("md5"), Some(b"s3cret".to_vec()), "key `password` by default");
    assert_eq!(key("md5-other-key"), Some(b"other".to_vec()), "namespace kube-system by default");
    assert_eq!(key("tor"), None);
    assert_eq!(
        format!("{:?}", plan.peers["md5"].settings.password),
        "Some(Md5Password(6 bytes))",
        "no password in logs"
    );
    let tor = &plan.peers["tor"].settings;
    assert_eq!(
        (tor.address, tor.port, tor.peer_asn, tor.my_asn),
        (ip("192.168.1.1"), 1179, 64500, 64512)
    );
    assert_eq!(
        (tor.hold_time, tor.keepalive_time),
        (Duration::from_secs(9), Some(Duration::from_secs(3)))
    );
    assert!(tor.graceful_restart && !tor.ebgp_multi_hop);
    assert_eq!(tor.source, Some(ip("192.168.1.10")));
    assert_eq!(tor.router_id.to_string(), "192.168.1.10");
    assert_eq!(tor.next_hop_v6.map(|v6| v6.to_string()).as_deref(), Some("fd00::10"));
    let tor6 = &plan.peers["tor6"].settings;
    assert_eq!(tor6.source, Some(ip("fd00::10")), "the node's address of the peer's family");
    assert_eq!((tor6.hold_time, tor6.keepalive_time), (Duration::from_secs(90), None));
    assert!(tor6.ebgp_multi_hop && !tor6.graceful_restart);
    let why: Vec<String> =
        plan.not_peering.iter().map(|(name, why)| format!("{name}: {why}")).collect();
    assert_eq!(
        why,
        [
            "bad-address: spec.peerAddress: \"192.168.1\" is not an IP address",
            "md5-no-key: spec.passwordSecret: Secret kube-system/bgp has no key \"x\"",
            "md5-no-secret: spec.passwordSecret: Secret kube-system/gone not found",
            "md5-other-namespace: spec.passwordSecret: Secret default/bgp not found",
            "md5-too-long: spec.passwordSecret: key \"long\" of Secret kube-system/bgp holds 81 \
             bytes; a TCP MD5 password has 1 to 80",
            "other-rack: spec.nodeSelector does not select this node",
            "short-hold: spec.holdTime: must be 0 or at least 3s (RFC 4271)",
            "slow-keepalive: spec.keepaliveTime: must be shorter than the hold time",
        ]
    );
    assert_eq!(plan.not_peering["other-rack"], NotPeering::NotSelected);
}

#[test]
fn bfd_settings_are_parsed_and_refused_with_the_field_and_reason() {
    let peers = vec![
        bgp_peer("bfd-default", "192.168.1.1", json!({"bfd": {}})),
        bgp_peer(
            "bfd-fast",
            "192.168.1.2",
            json!({"bfd": {"interval": "50ms", "detectMultiplier": 5}}),
        ),
        bgp_peer("no-bfd", "192.168.1.3", json!({})),
        bgp_peer("bfd-multihop", "192.168.1.4", json!({"ebgpMultiHop": true, "bfd": {}})),
        bgp_peer("bfd-too-fast", "192.168.1.5", json!({"bfd": {"interval": "5ms"}})),
        bgp_peer("bfd-mult-0", "192.168.1.6", json!({"bfd": {"detectMultiplier": 0}})),
        bgp_peer("bfd-garbage", "192.168.1.7", json!({"bfd": {"interval": "soon"}})),
    ];
    let mut objects = base();
    objects.retain(|o| o["kind"] != "BGPPeer");
    let plan = plan_of(&[objects, peers].concat());
    let bfd = |peer: &str| {
        plan.peers[peer].settings.bfd.map(|b| (b.interval.as_millis(), b.detect_multiplier))
    };
    assert_eq!(bfd("bfd-default"), Some((100, 3)), "100 ms × 3 by default");
    assert_eq!(bfd("bfd-fast"), Some((50, 5)));
    assert_eq!(bfd("no-bfd"), None);
    let why: Vec<String> =
        plan.not_peering.iter().map(|(name, why)| format!("{name}: {why}")).collect();
    assert_eq!(
        why,
        [
            "bfd-garbage: spec.bfd.interval: \"soon\" is not a duration: expected a number and a \
             unit (ns, us, ms, s, m, h), e.g. 90s or 1m30s",
            "bfd-mult-0: spec.bfd.detectMultiplier: must be at least 1",
            "bfd-multihop: spec.bfd: BFD runs single hop (RFC 5881); it cannot be used with \
             ebgpMultiHop",
            "bfd-too-fast: spec.bfd.interval: 5ms is not between 10ms and 60s",
        ]
    );
}

#[test]
fn inputs_say_which_changes_matter() {
    let objects = [base(), vec![bgp_advertisement("all", json!({}))]].concat();
    let mut inputs = BgpInputs::from_state(NODE, &cluster(&objects));
    let relabelled = lb("web", "Cluster", &[LB, LB6], json!({"app": "web", "tier": "front"}));
    let other_node = node("node-b", "zone-b", &[("InternalIP", "192.168.1.11")]);
    // (case, change, matters)
    let cases = [
        ("the same Service again", change(&objects[1], false), false),
        ("an endpoint change", change(&slice("web-1", "web", vec![]), false), false),
        ("another node", change(&other_node, false), false),
        ("a Service without labels", change(&svc("plain", json!({})), false), false),
        ("relabelled Service", change(&relabelled, false), true),
        ("its labels again", change(&relabelled, false), false),
        (
            "this node cordoned",
            change(&with(objects[0].clone(), json!({"spec": {"unschedulable": true}})), false),
            true,
        ),
        ("a new advertisement", change(&bgp_advertisement("two", json!({})), false), true),
        ("a pool", change(&ip_pool("p", &["10.0.0.0/24"]), false), true),
        ("the same pool", change(&ip_pool("p", &["10.0.0.0/24"]), false), false),
        (
            "a Secret no peer names",
            change(&secret("kube-system", "s", json!({"a": "b"})), false),
            false,
        ),
        (
            "the peer names it",
            change(
                &bgp_peer("tor", "192.168.1.1", json!({"passwordSecret": {"name": "s"}})),
                false,
            ),
            true,
        ),
        ("the Secret changes", change(&secret("kube-system", "s", json!({"a": "c"})), false), true),
        ("the same Secret", change(&secret("kube-system", "s", json!({"a": "c"})), false), false),
        ("the Secret deleted", change(&secret("kube-system", "s", json!({})), true), true),
        ("the peer deleted", change(&objects[3], true), true),
    ];
    for (case, change, matters) in cases {
        assert_eq!(inputs.apply(&change), matters, "{case}");
    }
    assert_eq!(inputs.node_drain(), Some(Drain::Unschedulable));
    assert!(!inputs.has_peers());
}

#[test]
fn nodes_never_announce_an_address_reached_through_the_directors() {
    // Each its own node port (a clash would hide a Service for another reason).
    let plain = |name: &str, ips: &[&str], node_port: u16| {
        let ports = json!([{"name": "http", "port": 80, "nodePort": node_port}]);
        with(lb(name, "Cluster", ips, json!({})), json!({"spec": {"ports": ports}}))
    };
    let annotated = |name: &str, ips: &[&str], node_port: u16, value: &str| {
        let annotations = json!({"switchyard.io/director": value});
        with(plain(name, ips, node_port), json!({"metadata": {"annotations": annotations}}))
    };
    let director = |name: &str, ips: &[&str]| annotated(name, ips, 30090, "true");
    let edge = "198.51.100.8";
    let objects = [
        base(),
        vec![
            bgp_advertisement("all", json!({})),
            director("edge", &[edge]),
            slice("edge-1", "edge", vec![ep("10.1.0.3", "node-b", "ready")]),
            // An address shared with a Service the nodes would announce: the directors own it.
            plain("shared-plain", &["198.51.100.9"], 30091),
            annotated("shared-edge", &["198.51.100.9"], 30092, "true"),
            // Another value than "true" is no opt-in (the directors report it as a problem).
            annotated("maybe", &["198.51.100.10"], 30093, "yes"),
        ],
    ]
    .concat();
    let plan = plan_of(&objects);
    let routes: Vec<String> = plan.peers["tor"].routes.keys().map(ToString::to_string).collect();
    assert_eq!(routes, ["198.51.100.7/32", "198.51.100.10/32", "2001:db8:7::7/128"]);
    assert_eq!(
        decision(&plan, edge),
        "withheld: reached through the directors (Service default/edge has \
         switchyard.io/director: \"true\"); they announce it"
    );
    assert!(decision(&plan, "198.51.100.9").contains("Service default/shared-edge"));

    // The annotation comes and goes: a change that matters, and the plan follows.
    let mut inputs = BgpInputs::from_state(NODE, &cluster(&objects));
    assert!(!inputs.apply(&change(&director("edge", &[edge]), false)), "unchanged");
    let without = plain("edge", &[edge], 30090);
    assert!(inputs.apply(&change(&without, false)), "annotation removed");
    let objects: Vec<Value> = objects
        .into_iter()
        .map(|o| if o == director("edge", &[edge]) { without.clone() } else { o })
        .collect();
    let model = NodeModel::from_state(config(), &cluster(&objects));
    let plan = plan_for(model.desired(), &inputs, false);
    assert_eq!(decision(&plan, edge), format!("announced as {edge}/32 (BGPAdvertisement all)"));
}

#[test]
fn a_director_announces_its_vips_to_the_peers_that_select_it_with_itself_as_next_hop() {
    let director = "dir1";
    let objects = vec![
        with(
            node(director, "zone-a", &[("InternalIP", "10.100.4.2"), ("InternalIP", "fd00:4::2")]),
            json!({"metadata": {"labels": {"switchyard.io/role": "director"}}}),
        ),
        bgp_peer(
            "edge",
            "10.100.4.1",
            json!({"nodeSelector": {"matchLabels": {"switchyard.io/role": "director"}}}),
        ),
        bgp_peer("tor", "10.100.4.1", json!({})),
        bgp_peer("racks", "10.100.4.1", json!({"nodeSelector": {"matchLabels": {"rack": "r1"}}})),
        bgp_advertisement("all", json!({})),
    ];
    let state = cluster(&objects);
    let inputs = BgpInputs::from_state(director, &state).with_role(Role::Director);
    let vips = [
        (ip("198.51.100.8"), ObjectKey::new("default", "edge")),
        (ip("2001:db8:7::8"), ObjectKey::new("default", "edge")),
    ];
    let plan = switchyard_model::announce::plan(&inputs, &director_candidates(vips.clone(), false));
    assert_eq!(plan.peers.keys().collect::<Vec<_>>(), ["edge"]);
    let why: Vec<String> = plan.not_peering.iter().map(|(n, w)| format!("{n}: {w}")).collect();
    assert_eq!(
        why,
        [
            "racks: spec.nodeSelector does not select this node",
            "tor: spec.nodeSelector is unset (every node); a director peers only when it selects the director's labels",
        ]
    );
    let edge = &plan.peers["edge"];
    let routes: Vec<String> = edge.routes.keys().map(ToString::to_string).collect();
    assert_eq!(
        routes,
        ["198.51.100.8/32", "2001:db8:7::8/128"],
        "VIPs are announced, not withheld"
    );
    assert_eq!(edge.settings.next_hop_v4, Some("10.100.4.2".parse().unwrap()), "next hop self");
    assert_eq!(edge.settings.next_hop_v6, Some("fd00:4::2".parse().unwrap()));
    // Graceful shutdown: every VIP withdrawn while the sessions stay up.
    let draining = switchyard_model::announce::plan(&inputs, &director_candidates(vips, true));
    assert!(draining.peers["edge"].routes.is_empty());
    assert_eq!(
        draining.peers["edge"].addresses[&ip("198.51.100.8")].to_string(),
        "withheld: agent is shutting down"
    );
}
