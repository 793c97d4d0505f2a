//! L2 mode (issue 17): which node answers ARP / NDP for each LoadBalancer address, as tables of
//! cases and as properties (one owner per address, the same whichever agent decides, and a node
//! leaving moves only its own addresses).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard_model::announce::l2::{Interfaces, owner, score};
use switchyard_model::announce::{L2Decision, L2Inputs, L2Plan, l2_plan};
use switchyard_model::{Change, NodeModel, ProxyConfig};
use switchyard_testing::objects::{change, ip_pool, l2_advertisement};

const LB: &str = "198.51.100.7";
const LB6: &str = "2001:db8:7::7";
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A LoadBalancer Service `name` on `ips` with `policy`, labelled `labels`.
fn lb(name: &str, policy: &str, ips: &[&str], labels: Value) -> Value {
    let ingress: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    let families: Vec<&str> =
        ips.iter().map(|i| if i.contains(':') { "IPv6" } else { "IPv4" }).collect();
    with(
        svc(
            name,
            json!({
                "type": "LoadBalancer", "externalTrafficPolicy": policy, "healthCheckNodePort": 32100,
                "clusterIPs": ["10.96.0.10", "fd00:96::10"], "ipFamilies": ["IPv4", "IPv6"],
                "ipFamilyPolicy": if families.len() > 1 { "RequireDualStack" } else { "SingleStack" },
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
            }),
        ),
        json!({"metadata": {"labels": labels}, "status": {"loadBalancer": {"ingress": ingress}}}),
    )
}

/// Node `name` with `labels` merged over its zone label and `ready` as its Ready condition
/// (`None`: no conditions, as a hand-written manifest).
fn l2_node(name: &str, labels: Value, ready: Option<&str>) -> Value {
    let mut object = node(name, "zone-a", &[("InternalIP", "192.168.1.10")]);
    object = with(object, json!({"metadata": {"labels": labels}}));
    if let Some(status) = ready {
        object =
            with(object, json!({"status": {"conditions": [{"type": "Ready", "status": status}]}}));
    }
    object
}

/// Three ready nodes (rack r1, r1, r2), a Cluster-policy Service on LB and LB6 in pool `public`.
fn base() -> Vec<Value> {
    vec![
        l2_node("node-a", json!({"rack": "r1"}), Some("True")),
        l2_node("node-b", json!({"rack": "r1"}), Some("True")),
        l2_node("node-c", json!({"rack": "r2"}), None),
        ip_pool("public", &["198.51.100.0/24", "2001:db8:7::/64"]),
        lb("web", "Cluster", &[LB, LB6], json!({"app": "web"})),
        slice("web-1", "web", vec![ep("10.1.0.2", "node-b", "ready")]),
    ]
}

/// The plan as the agent on `agent` computes it from `objects`.
fn plan_on(agent: &str, objects: &[Value]) -> L2Plan {
    let state = cluster(objects);
    let model = NodeModel::from_state(ProxyConfig::new(agent), &state);
    l2_plan(model.desired(), &L2Inputs::from_state(agent, &state))
}

fn decision(plan: &L2Plan, address: &str) -> String {
    plan.addresses[&ip(address)].decision.to_string()
}

fn owner_of(plan: &L2Plan, address: &str) -> Option<String> {
    match &plan.addresses[&ip(address)].decision {
        L2Decision::Answered { node, .. } => Some(node.clone()),
        L2Decision::Unanswered(_) => None,
    }
}

/// The expected owner of `address` among `nodes`, by the documented rendezvous score.
fn expected(address: &str, nodes: &[&'static str]) -> String {
    owner(ip(address), nodes.iter().copied()).unwrap().to_owned()
}

#[test]
fn advertisements_pick_one_node_per_address_or_say_why_none() {
    let all = || l2_advertisement("all", json!({}));
    let cases: Vec<(&str, Vec<Value>, String)> = vec![
        ("no advertisement", vec![], "unanswered: no L2Advertisement exists".into()),
        (
            "empty advertisement: every ready node",
            vec![all()],
            format!("answered by {} on all interfaces (L2Advertisement all)", expected(LB, &NODES)),
        ),
        (
            "other pool",
            vec![l2_advertisement("p", json!({"ipPools": ["private"]}))],
            "unanswered: no L2Advertisement selects it (p: spec.ipPools does not name pool public)"
                .into(),
        ),
        (
            "service selector selects nothing",
            vec![l2_advertisement(
                "db",
                json!({"serviceSelector": {"matchLabels": {"app": "db"}}}),
            )],
            "unanswered: no L2Advertisement selects it (db: spec.serviceSelector selects none of \
             its Services)"
                .into(),
        ),
        (
            "node selector: rack r1 only",
            vec![l2_advertisement(
                "r1",
                json!({"nodeSelectors": [{"matchLabels": {"rack": "r1"}}], "interfaces": ["eth1"]}),
            )],
            format!(
                "answered by {} on eth1 (L2Advertisement r1)",
                expected(LB, &["node-a", "node-b"])
            ),
        ),
        (
            "node selector that selects nobody",
            vec![l2_advertisement(
                "none",
                json!({"nodeSelectors": [{"matchLabels": {"rack": "r9"}}]}),
            )],
            "unanswered: no eligible node (all draining, not Ready, excluded, outside \
             spec.nodeSelectors, or without a ready local endpoint for externalTrafficPolicy Local)"
                .into(),
        ),
    ];
    for (behaviour, extra, want) in cases {
        let mut objects = base();
        objects.extend(extra);
        assert_eq!(decision(&plan_on("node-a", &objects), LB), want, "{behaviour}");
    }
}

#[test]
fn interfaces_are_the_union_of_the_owners_advertisements_and_empty_means_all() {
    let mut objects = base();
    objects.push(l2_advertisement("one", json!({"interfaces": ["eth1"]})));
    objects.push(l2_advertisement("two", json!({"interfaces": ["eth2", "eth1"]})));
    let plan = plan_on("node-a", &objects);
    let L2Decision::Answered { interfaces, advertisements, .. } = &plan.addresses[&ip(LB)].decision
    else {
        panic!("unanswered: {plan:?}")
    };
    assert_eq!(interfaces, &Interfaces::Named(["eth1".into(), "eth2".into()].into()));
    assert_eq!(advertisements.len(), 2);
    objects.push(l2_advertisement("three", json!({})));
    let plan = plan_on("node-a", &objects);
    assert!(decision(&plan, LB).contains(" on all interfaces "), "{plan:?}");
}

#[test]
fn ineligible_nodes_never_answer() {
    // Each case makes one node ineligible; the owner must be the rendezvous choice among the
    // other two (checked for both addresses, so the outcome does not depend on luck).
    let cases: Vec<(&str, Value)> = vec![
        ("not ready", l2_node("X", json!({}), Some("False"))),
        ("ready unknown", l2_node("X", json!({}), Some("Unknown"))),
        ("cordoned", with(l2_node("X", json!({}), None), json!({"spec": {"unschedulable": true}}))),
        (
            "being deleted",
            with(
                l2_node("X", json!({}), None),
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            ),
        ),
        (
            "excluded from external load balancers",
            l2_node(
                "X",
                json!({"node.kubernetes.io/exclude-from-external-load-balancers": ""}),
                None,
            ),
        ),
        (
            "to be deleted by the autoscaler",
            with(
                l2_node("X", json!({}), None),
                json!({"spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]}}),
            ),
        ),
    ];
    for (behaviour, template) in cases {
        for gone in NODES {
            let rest: Vec<&str> = NODES.iter().copied().filter(|n| *n != gone).collect();
            let mut objects = base();
            objects.retain(|o| o["metadata"]["name"] != gone);
            objects.push(with(template.clone(), json!({"metadata": {"name": gone}})));
            objects.push(l2_advertisement("all", json!({})));
            let plan = plan_on("node-a", &objects);
            for address in [LB, LB6] {
                assert_eq!(
                    owner_of(&plan, address),
                    Some(expected(address, &rest)),
                    "{behaviour}: {gone} ineligible, {address}"
                );
            }
        }
    }
}

#[test]
fn local_policy_picks_among_nodes_with_a_ready_local_endpoint() {
    let mut objects = base();
    objects.retain(|o| o["kind"] != "Service");
    objects.push(lb("web", "Local", &[LB], json!({})));
    objects.push(slice(
        "web-2",
        "web",
        vec![ep("10.1.0.3", "node-c", "unready"), ep("10.1.0.4", "node-a", "terminating")],
    ));
    objects.push(l2_advertisement("all", json!({})));
    // Only node-b has a ready endpoint (web-1).
    assert_eq!(owner_of(&plan_on("node-a", &objects), LB).as_deref(), Some("node-b"));
    // No ready endpoint anywhere: nobody answers (the address would only drop traffic).
    objects.retain(|o| o["metadata"]["name"] != "web-1");
    assert!(decision(&plan_on("node-a", &objects), LB).starts_with("unanswered: no eligible node"));
    // A Cluster-policy Service sharing the address makes every node eligible again.
    objects.push(with(
        lb("web-shared", "Cluster", &[LB], json!({})),
        json!({"spec": {"ports": [{"name": "http", "port": 81, "nodePort": 30081}]}}),
    ));
    assert_eq!(owner_of(&plan_on("node-a", &objects), LB), Some(expected(LB, &NODES)));
}

#[test]
fn director_services_and_external_ips_follow_their_rules() {
    let mut objects = base();
    objects.retain(|o| o["kind"] != "Service");
    objects.push(with(
        lb("web", "Cluster", &[LB], json!({})),
        json!({"metadata": {"annotations": {"switchyard.io/director": "true"}},
               "spec": {"externalIPs": ["203.0.113.50"]}}),
    ));
    objects.push(l2_advertisement("all", json!({})));
    let plan = plan_on("node-a", &objects);
    assert_eq!(
        decision(&plan, LB),
        "unanswered: reached through the directors (Service default/web)"
    );
    assert_eq!(
        decision(&plan, "203.0.113.50"),
        "unanswered: no L2Advertisement selects it (all: an externalIP, and spec.externalIPs is off)"
    );
    objects.push(l2_advertisement("ext", json!({"externalIPs": true})));
    assert!(decision(&plan_on("node-a", &objects), "203.0.113.50").starts_with("answered by "));
}

#[test]
fn every_agent_computes_the_same_plan() {
    // The desired states differ per node (local endpoints, Local policy), the plan must not.
    let mut objects = base();
    objects.push(lb("local", "Local", &["198.51.100.8"], json!({})));
    objects.push(slice(
        "local-1",
        "local",
        vec![ep("10.1.0.5", "node-a", "ready"), ep("10.1.0.6", "node-c", "ready")],
    ));
    objects.push(l2_advertisement("all", json!({})));
    let plans: Vec<L2Plan> = NODES.iter().map(|agent| plan_on(agent, &objects)).collect();
    assert!(plans.windows(2).all(|w| w[0] == w[1]), "{plans:#?}");
    assert_eq!(plans[0].addresses.len(), 3, "{:#?}", plans[0]);
    let owned: usize = NODES.iter().map(|n| plans[0].answered_by(n).count()).sum();
    assert_eq!(owned, 3, "every address answered by exactly one node");
}

#[test]
fn the_score_is_the_documented_function() {
    // Pinned values: agents of different builds must agree, so the score may never drift.
    assert_eq!(score("node-a", ip(LB)), score("node-a", ip(LB)));
    assert_ne!(score("node-a", ip(LB)), score("node-b", ip(LB)));
    assert_ne!(score("node-a", ip(LB)), score("node-a", ip("198.51.100.8")));
    let pinned = [score("node-a", ip(LB)), score("node-b", ip(LB6))];
    assert_eq!(pinned, [PINNED_A_LB, PINNED_B_LB6], "{pinned:x?}");
}

// Computed by an independent implementation (Python, from the description in docs/l2.md).
const PINNED_A_LB: u64 = 0xd770_ff31_9bae_19bb;
const PINNED_B_LB6: u64 = 0x76fa_fe45_7867_fac1;

#[test]
fn addresses_spread_over_the_nodes() {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..3000u32 {
        let address = IpAddr::V4(Ipv4Addr::from(0xc633_6400 + i));
        *counts.entry(owner(address, NODES).unwrap()).or_default() += 1;
    }
    // 1000 each on average; a fair hash stays well within ±15%.
    assert!(counts.values().all(|c| (850..=1150).contains(c)), "{counts:?}");
}

fn node_names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-z]{1,6}(-[0-9]{1,2})?", 1..12)
        .prop_map(|s| s.into_iter().collect())
}

fn addresses() -> impl Strategy<Value = Vec<IpAddr>> {
    proptest::collection::vec(
        prop_oneof![
            any::<u32>().prop_map(|v| IpAddr::V4(v.into())),
            any::<u128>().prop_map(|v| IpAddr::V6(v.into())),
        ],
        1..40,
    )
}

proptest! {
    #[test]
    fn exactly_one_owner_whatever_the_order(nodes in node_names(), addresses in addresses(),
                                            rotate in 0usize..12) {
        let mut shuffled = nodes.clone();
        shuffled.reverse();
        let len = shuffled.len();
        shuffled.rotate_left(rotate % len);
        for address in addresses {
            let a = owner(address, nodes.iter().map(String::as_str));
            let b = owner(address, shuffled.iter().map(String::as_str));
            prop_assert!(a.is_some());
            prop_assert_eq!(a, b);
            prop_assert!(nodes.iter().any(|n| Some(n.as_str()) == a));
        }
    }

    #[test]
    fn a_node_leaving_moves_only_its_addresses(nodes in node_names(), addresses in addresses(),
                                               leaving in 0usize..12) {
        prop_assume!(nodes.len() > 1);
        let leaving = &nodes[leaving % nodes.len()];
        let rest: Vec<&str> = nodes.iter().map(String::as_str).filter(|n| n != leaving).collect();
        for address in addresses {
            let before = owner(address, nodes.iter().map(String::as_str)).unwrap();
            let after = owner(address, rest.iter().copied()).unwrap();
            if before != leaving {
                prop_assert_eq!(before, after, "{} moved though {} left", address, leaving);
            } else {
                prop_assert_ne!(after, leaving.as_str());
            }
        }
    }

    /// Through the whole plan: nodes flip Ready; each address has exactly one eligible owner,
    /// and only the addresses of the node that flipped move. Fed change by change, as an agent.
    #[test]
    fn plan_moves_only_the_flipped_nodes_addresses(
        ready in proptest::collection::vec(any::<bool>(), 4),
        flip in 0usize..4,
        count in 1u32..24,
    ) {
        let names = ["n0", "n1", "n2", "n3"];
        let mut objects: Vec<Value> = (0..count)
            .map(|i| lb(&format!("s{i}"), "Cluster", &[&format!("198.51.100.{}", i + 1)], json!({})))
            .collect();
        objects.push(l2_advertisement("all", json!({})));
        let node_object = |i: usize, up: bool| {
            l2_node(names[i], json!({}), Some(if up { "True" } else { "False" }))
        };
        objects.extend((0..4).map(|i| node_object(i, ready[i])));
        let state = cluster(&objects);
        let mut model = NodeModel::from_state(ProxyConfig::new("n0"), &state);
        let mut inputs = L2Inputs::from_state("n0", &state);
        let before = l2_plan(model.desired(), &inputs);
        let flipped = change(&node_object(flip, !ready[flip]), false);
        prop_assert!(inputs.apply(&flipped));
        model.apply(flipped);
        let after = l2_plan(model.desired(), &inputs);
        let eligible = |up: &dyn Fn(usize) -> bool| -> Vec<&str> {
            (0..4).filter(|i| up(*i)).map(|i| names[i]).collect()
        };
        let before_nodes = eligible(&|i| ready[i]);
        let after_nodes = eligible(&|i| if i == flip { !ready[i] } else { ready[i] });
        for (address, entry) in &after.addresses {
            let was = match &before.addresses[address].decision {
                L2Decision::Answered { node, .. } => Some(node.as_str()),
                L2Decision::Unanswered(_) => None,
            };
            let now = match &entry.decision {
                L2Decision::Answered { node, .. } => Some(node.as_str()),
                L2Decision::Unanswered(_) => None,
            };
            prop_assert_eq!(was, owner(*address, before_nodes.iter().copied()));
            prop_assert_eq!(now, owner(*address, after_nodes.iter().copied()));
            if was != now {
                prop_assert!(was == Some(names[flip]) || now == Some(names[flip]),
                    "{} moved {:?} -> {:?} though only {} flipped", address, was, now, names[flip]);
            }
        }
    }

    /// Endpoint slices fed change by change (adds, updates, deletions) leave the same inputs as a
    /// snapshot of the end state.
    #[test]
    fn incremental_slices_match_the_snapshot(
        steps in proptest::collection::vec((0usize..3, proptest::collection::vec(0usize..3, 0..3), any::<bool>()), 1..20),
    ) {
        let mut objects = base();
        objects.retain(|o| o["kind"] != "Service" && o["kind"] != "EndpointSlice");
        objects.push(lb("web", "Local", &[LB], json!({})));
        objects.push(l2_advertisement("all", json!({})));
        let state = cluster(&objects);
        let mut inputs = L2Inputs::from_state("node-a", &state);
        let mut slices: BTreeMap<usize, Value> = BTreeMap::new();
        for (slot, on, delete) in steps {
            let endpoints: Vec<Value> = on
                .iter()
                .enumerate()
                .map(|(i, n)| ep(&format!("10.1.{slot}.{i}"), NODES[*n], "ready"))
                .collect();
            let object = slice(&format!("web-{slot}"), "web", endpoints);
            if delete {
                inputs.apply(&change(&object, true));
                slices.remove(&slot);
            } else {
                inputs.apply(&change(&object, false));
                slices.insert(slot, object);
            }
        }
        let mut end = objects.clone();
        end.extend(slices.into_values());
        let end_state = cluster(&end);
        let model = NodeModel::from_state(ProxyConfig::new("node-a"), &end_state);
        let snapshot = L2Inputs::from_state("node-a", &end_state);
        prop_assert_eq!(l2_plan(model.desired(), &inputs), l2_plan(model.desired(), &snapshot));
    }
}

#[test]
fn changes_that_do_not_matter_say_so() {
    let state = cluster(&base());
    let mut inputs = L2Inputs::from_state("node-a", &state);
    let same_node = change(&l2_node("node-b", json!({"rack": "r1"}), Some("True")), false);
    assert!(!inputs.apply(&same_node), "an unchanged Node");
    let cordoned = with(
        l2_node("node-b", json!({"rack": "r1"}), Some("True")),
        json!({"spec": {"unschedulable": true}}),
    );
    assert!(inputs.apply(&change(&cordoned, false)));
    let advertisement = l2_advertisement("all", json!({}));
    assert!(inputs.apply(&change(&advertisement, false)));
    assert!(!inputs.apply(&change(&advertisement, false)));
    assert!(!inputs.apply(&Change::BGPPeer(switchyard_model::ObjectKey::cluster("tor"), None)));
}
