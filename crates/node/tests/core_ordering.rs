//! The node core's ordering rules, without root: its effects carried out against the planner's
//! strict fake kernel, which checks after every single map operation that no lookup of a live
//! frontend finds a missing slot, table or backend.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_bpf::MapSizes;
use switchyard_dataplane::fake::FakeKernel;
use switchyard_dataplane::maglev_tables::MaglevTables;
use switchyard_dataplane::reconciler::limits_for;
use switchyard_dataplane::translate::{FrontendAttrs, MapBackend, MapKey, Scope};
use switchyard_dataplane::{MapOps, Snapshot};
use switchyard_model::{Change, ProxyConfig};
use switchyard_node::core::{CoreConfig, Effect, NodeCore};
use switchyard_testing::objects::{NODE, change, endpoint, service, slice, this_node, with};

type Kernel = FakeKernel<MapKey, MapBackend, FrontendAttrs>;

const TABLE_SIZE: u32 = 251;

/// A core and the fake kernel it programs; every effect is carried out as the runtime would.
struct Node {
    core: NodeCore,
    kernel: Kernel,
    /// Every effect handed out, in order, follow-ups included.
    seen: Vec<Effect>,
    /// The next `Program` fails before any operation.
    fail_next: bool,
    /// With `fail_next`: the reconciliation after the read-back fails too.
    fail_after_read_back: bool,
}

impl Node {
    fn new(per_packet: bool) -> Self {
        Self::with_dsr(per_packet, false)
    }

    fn with_dsr(per_packet: bool, dsr: bool) -> Self {
        let config = CoreConfig {
            proxy: ProxyConfig::new(NODE),
            limits: limits_for(&MapSizes::default(), TABLE_SIZE),
            per_packet,
            dsr,
            destroy_stale_sockets: true,
        };
        let tables = Arc::new(MaglevTables::new(TABLE_SIZE).unwrap());
        let (core, _) = NodeCore::adopt(config, Snapshot::default(), tables);
        let kernel = Kernel { check_each_op: true, ..Kernel::default() };
        Self { core, kernel, seen: Vec::new(), fail_next: false, fail_after_read_back: false }
    }

    fn start(&mut self, objects: &[Value]) -> Vec<Effect> {
        let effects = self.core.start(objects.iter().map(|o| change(o, false)).collect());
        self.carry_out(effects)
    }

    fn update(&mut self, changes: Vec<Change>) -> Vec<Effect> {
        let effects = self.core.update(changes);
        self.carry_out(effects)
    }

    /// Carries out `effects` and their follow-ups; returns them all in order.
    fn carry_out(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        let mut done = Vec::new();
        while let Some(effect) = queue.pop_front() {
            let next = match &effect {
                Effect::Program { ops, .. } => {
                    if std::mem::take(&mut self.fail_next) {
                        self.fail_next = std::mem::take(&mut self.fail_after_read_back);
                        self.core.programmed(false)
                    } else {
                        self.kernel.apply(ops).unwrap_or_else(|e| panic!("{e}"));
                        self.core.programmed(true)
                    }
                }
                Effect::ReadBack => self.core.read_back(self.kernel.snapshot()),
                _ => Vec::new(),
            };
            for follow_up in next.into_iter().rev() {
                queue.push_front(follow_up);
            }
            done.push(effect);
        }
        self.seen.extend(done.iter().cloned());
        done
    }

    /// The backends a lookup of `ip:port/TCP` finds.
    fn backends_of(&self, ip: &str, port: u16) -> BTreeSet<(IpAddr, u16)> {
        let key = map_key(ip, port);
        self.kernel.resolve().get(&key).map_or_else(BTreeSet::new, |resolved| {
            resolved.backends.iter().map(|b| (b.ip, b.port)).collect()
        })
    }

    /// Whether the backend map holds `ip:port` (under any flags).
    fn holds_backend(&self, ip: &str, port: u16) -> bool {
        let ip: IpAddr = ip.parse().unwrap();
        self.kernel.backends.values().any(|b| b.ip == ip && b.port == port)
    }
}

fn map_key(ip: &str, port: u16) -> MapKey {
    let frontend = switchyard_model::FrontendKey::new(
        ip.parse().unwrap(),
        port,
        switchyard_model::Protocol::Tcp,
    );
    MapKey { frontend, scope: Scope::Default }
}

fn endpoint_of(ip: &str) -> (IpAddr, u16) {
    (ip.parse().unwrap(), 8080)
}

/// Index of the first effect matching `what`.
fn position(effects: &[Effect], what: impl Fn(&Effect) -> bool) -> Option<usize> {
    effects.iter().position(what)
}

fn is_program(effect: &Effect) -> bool {
    matches!(effect, Effect::Program { .. })
}

fn swept(effects: &[Effect]) -> BTreeSet<(IpAddr, u16)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SweepSockets(targets) => Some(targets.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// A LoadBalancer Service with externalTrafficPolicy Local and a health check node port.
fn local_lb(health_port: u16) -> Value {
    with(
        service(
            "web",
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                   "healthCheckNodePort": health_port,
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                              "targetPort": "http", "nodePort": 30080}]}),
        ),
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}}),
    )
}

#[test]
fn the_programs_are_attached_only_after_the_first_complete_reconciliation() {
    let mut node = Node::new(false);
    let effects = node.start(&[
        this_node(),
        local_lb(32000),
        slice("web-1", "web", vec![endpoint("10.0.1.1", NODE, "ready")]),
    ]);
    let program = position(&effects, is_program).unwrap();
    let synced = position(&effects, |e| matches!(e, Effect::Synced { full: true, .. })).unwrap();
    let attach = position(&effects, |e| *e == Effect::Attach).unwrap();
    let health = position(&effects, |e| matches!(e, Effect::HealthCheck { .. })).unwrap();
    assert!(program < synced && synced < attach && attach < health, "{effects:#?}");
    assert_eq!(node.backends_of("10.96.0.10", 80), BTreeSet::from([endpoint_of("10.0.1.1")]));
    // Later updates never attach again.
    let effects = node.update(vec![change(
        &slice("web-1", "web", vec![endpoint("10.0.1.2", NODE, "ready")]),
        false,
    )]);
    assert!(!effects.contains(&Effect::Attach), "{effects:#?}");
}

#[test]
fn every_update_is_make_before_break() {
    // The fake kernel checks every lookup after every single operation (check_each_op).
    let mut node = Node::new(true);
    let web = service("web", json!({"sessionAffinity": "ClientIP"}));
    node.start(&[this_node(), web.clone()]);
    let steps: Vec<Vec<Value>> = vec![
        (1..=3).map(|i| endpoint(&format!("10.0.1.{i}"), NODE, "ready")).collect(),
        (2..=6).map(|i| endpoint(&format!("10.0.1.{i}"), "node-b", "ready")).collect(),
        vec![endpoint("10.0.1.9", NODE, "ready"), endpoint("10.0.1.2", NODE, "terminating")],
        vec![],
    ];
    for endpoints in steps {
        let want: BTreeSet<_> = endpoints
            .iter()
            .filter(|e| e["conditions"]["ready"] == json!(true))
            .map(|e| endpoint_of(e["addresses"][0].as_str().unwrap()))
            .collect();
        node.update(vec![change(&slice("web-1", "web", endpoints), false)]);
        assert_eq!(node.backends_of("10.96.0.10", 80), want);
    }
    node.update(vec![change(&web, true)]);
    assert!(node.kernel.frontends.is_empty());
    node.kernel.check_no_debris().unwrap();
}

#[test]
fn a_terminating_endpoint_keeps_its_backend_and_sockets_until_it_is_gone() {
    let mut node = Node::new(false);
    let web = service("web", json!({}));
    let ready =
        |ips: &[&str]| -> Vec<Value> { ips.iter().map(|ip| endpoint(ip, NODE, "ready")).collect() };
    node.start(&[this_node(), web, slice("web-1", "web", ready(&["10.0.1.1", "10.0.1.2"]))]);

    // .2 starts terminating: no new flows go to it, but its backend entry stays (conntrack of
    // the per-packet path points at it) and its sockets are kept.
    let mut endpoints = ready(&["10.0.1.1"]);
    endpoints.push(endpoint("10.0.1.2", NODE, "terminating"));
    let effects = node.update(vec![change(&slice("web-1", "web", endpoints), false)]);
    assert_eq!(node.backends_of("10.96.0.10", 80), BTreeSet::from([endpoint_of("10.0.1.1")]));
    assert!(node.holds_backend("10.0.1.2", 8080), "held while terminating");
    assert!(swept(&effects).is_empty(), "{effects:#?}");

    // The pod is gone: the backend entry goes, then (only then) its sockets.
    let effects = node.update(vec![change(&slice("web-1", "web", ready(&["10.0.1.1"])), false)]);
    assert!(!node.holds_backend("10.0.1.2", 8080));
    let program = position(&effects, is_program).unwrap();
    let sweep = position(&effects, |e| matches!(e, Effect::SweepSockets(_))).unwrap();
    assert!(program < sweep, "{effects:#?}");
    assert_eq!(swept(&effects), BTreeSet::from([endpoint_of("10.0.1.2")]));
}

#[test]
fn sockets_are_swept_only_after_the_maps_no_longer_lead_to_the_backend() {
    let mut node = Node::new(false);
    let two = vec![endpoint("10.0.1.1", NODE, "ready"), endpoint("10.0.1.2", NODE, "ready")];
    node.start(&[this_node(), service("web", json!({})), slice("web-1", "web", two)]);
    let one = slice("web-1", "web", vec![endpoint("10.0.1.1", NODE, "ready")]);

    // The write fails: nothing is swept; the core asks for the maps back and reconciles all.
    node.fail_next = true;
    let effects = node.update(vec![change(&one, false)]);
    let failed =
        position(&effects, |e| matches!(e, Effect::SyncFailed { reading_back: true })).unwrap();
    let read_back = position(&effects, |e| *e == Effect::ReadBack).unwrap();
    let full = position(&effects, |e| matches!(e, Effect::Program { full: true, .. })).unwrap();
    let sweep = position(&effects, |e| matches!(e, Effect::SweepSockets(_))).unwrap();
    assert!(failed < read_back && read_back < full && full < sweep, "{effects:#?}");
    assert_eq!(node.backends_of("10.96.0.10", 80), BTreeSet::from([endpoint_of("10.0.1.1")]));
    assert!(!node.holds_backend("10.0.1.2", 8080));
    assert_eq!(swept(&effects), BTreeSet::from([endpoint_of("10.0.1.2")]));

    // A backend another Service still uses keeps its sockets.
    let shared = |name: &str, ip: &str| {
        let svc = service(name, json!({"clusterIP": ip}));
        let eps = slice(&format!("{name}-1"), name, vec![endpoint("10.0.1.1", NODE, "ready")]);
        [change(&svc, false), change(&eps, false)]
    };
    node.update(shared("api", "10.96.0.11").to_vec());
    let effects = node.update(vec![change(&one, true)]);
    assert!(swept(&effects).is_empty(), "10.0.1.1 is still a backend of api: {effects:#?}");
}

#[test]
fn health_check_node_ports_follow_the_model() {
    let mut node = Node::new(false);
    let local = |state: &str| slice("web-1", "web", vec![endpoint("10.0.1.1", NODE, state)]);
    node.start(&[this_node(), local_lb(32000), local("ready")]);
    let checks = |effects: &[Effect]| -> Vec<(u16, Option<usize>)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::HealthCheck { port, check } => {
                    Some((*port, check.as_ref().map(|c| c.local_endpoints)))
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(checks(&node.seen), vec![(32000, Some(1))]);

    let effects = node.update(vec![change(&local("unready"), false)]);
    assert_eq!(checks(&effects), vec![(32000, Some(0))]);
    // A batch touching the port twice hands it out once, in its final state.
    let twice = vec![change(&local("ready"), false), change(&local("unready"), false)];
    assert_eq!(checks(&node.update(twice)), vec![(32000, Some(0))]);
    let effects = node.update(vec![change(&local_lb(32001), false)]);
    assert_eq!(checks(&effects), vec![(32000, None), (32001, Some(0))]);
    let effects = node.update(vec![change(&local_lb(32001), true)]);
    assert_eq!(checks(&effects), vec![(32001, None)]);
}

#[test]
fn source_ranges_come_before_the_frontend_flag_and_leave_after_it() {
    let mut node = Node::new(true);
    let ranged = |cidrs: &[&str]| {
        with(local_lb(32000), json!({"spec": {"loadBalancerSourceRanges": cidrs}}))
    };
    let eps = slice("web-1", "web", vec![endpoint("10.0.1.1", NODE, "ready")]);
    let effects = node.start(&[this_node(), ranged(&["198.51.100.0/24"]), eps]);
    // A new frontend has no id before the plan: its prefixes are written after it.
    let after = effects
        .iter()
        .find_map(|e| match e {
            Effect::SourceRanges { before: false, full: true, frontends } => Some(frontends),
            _ => None,
        })
        .unwrap();
    let lb = map_key("203.0.113.10", 80);
    let id = node.kernel.frontends[&lb].id.0;
    let lb_ranges = after.iter().find(|f| f.key == lb.frontend).unwrap();
    assert_eq!(lb_ranges.wanted.len(), 1);
    assert_eq!(lb_ranges.wanted[0].frontend_id, id);

    // An existing frontend gets its new prefix before the plan (under the id it keeps).
    let effects = node.update(vec![change(&ranged(&["198.51.100.0/24", "192.0.2.0/24"]), false)]);
    let before =
        position(&effects, |e| matches!(e, Effect::SourceRanges { before: true, .. })).unwrap();
    let program = position(&effects, is_program).unwrap();
    assert!(before < program, "{effects:#?}");
    let Effect::SourceRanges { frontends, .. } = &effects[before] else { unreachable!() };
    let lb_ranges = frontends.iter().find(|f| f.key == lb.frontend).unwrap();
    assert_eq!(lb_ranges.wanted.len(), 2);
    assert!(lb_ranges.wanted.iter().all(|r| r.frontend_id == id));
}

#[test]
fn node_addresses_are_handed_out_when_they_change() {
    let mut node = Node::new(true);
    let effects = node.start(&[this_node()]);
    let addresses = |effects: &[Effect]| -> Vec<Vec<IpAddr>> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::NodeAddresses { node_port_addresses, .. } => {
                    Some(node_port_addresses.clone())
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(addresses(&effects), vec![vec!["192.168.1.10".parse::<IpAddr>().unwrap()]]);
    assert!(addresses(&node.update(vec![change(&this_node(), false)])).is_empty());
    let moved =
        switchyard_testing::objects::node(NODE, "zone-a", &[("InternalIP", "192.168.1.11")]);
    assert_eq!(
        addresses(&node.update(vec![change(&moved, false)])),
        vec![vec!["192.168.1.11".parse::<IpAddr>().unwrap()]]
    );
}

#[test]
fn announcements_are_decided_again_only_once_the_maps_hold_the_change() {
    let mut node = Node::new(false);
    let eps = slice("web-1", "web", vec![endpoint("10.0.1.1", NODE, "ready")]);
    let effects = node.start(&[this_node(), local_lb(32000), eps]);
    let attach = position(&effects, |e| *e == Effect::Attach).unwrap();
    let announce = position(&effects, |e| matches!(e, Effect::Announcements { .. })).unwrap();
    assert!(attach < announce, "{effects:#?}");
    assert!(matches!(&effects[announce], Effect::Announcements { full: true, .. }));

    // A changed Service: after its maps are synced, with the difference written.
    let effects = node.update(vec![change(&local_lb(32001), false)]);
    let synced = position(&effects, |e| matches!(e, Effect::Synced { .. })).unwrap();
    let announce = position(&effects, |e| matches!(e, Effect::Announcements { .. })).unwrap();
    assert!(synced < announce, "{effects:#?}");
    let Effect::Announcements { changed, full: false } = &effects[announce] else {
        panic!("a listed difference: {effects:#?}")
    };
    let lb = map_key("203.0.113.10", 80).frontend;
    assert!(changed.iter().any(|d| d.upserted.iter().any(|(k, _)| *k == lb)), "{changed:#?}");

    // A failed write announces nothing; the successful read-back reconciliation does.
    node.fail_next = true;
    node.fail_after_read_back = true;
    let effects = node.update(vec![change(&local_lb(32002), false)]);
    assert!(!effects.iter().any(|e| matches!(e, Effect::Announcements { .. })), "{effects:#?}");
    let effects = node.update(vec![change(&local_lb(32003), false)]);
    let synced = position(&effects, |e| matches!(e, Effect::Synced { .. })).unwrap();
    let announce = position(&effects, |e| matches!(e, Effect::Announcements { .. })).unwrap();
    assert!(synced < announce, "{effects:#?}");
    // The lost difference is not listed: decide on everything.
    assert!(matches!(&effects[announce], Effect::Announcements { full: true, .. }));

    // Nothing changed: nothing to decide.
    assert!(node.update(Vec::new()).is_empty());
}

#[test]
fn with_dsr_the_other_nodes_and_the_nodes_of_remote_backends_are_handed_out() {
    type Dsr = (BTreeSet<IpAddr>, Vec<(IpAddr, IpAddr)>);
    let dsr = |effects: &[Effect]| -> Vec<Dsr> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::DsrNodes { sources, backends } => {
                    Some((sources.clone(), backends.iter().map(|(b, n)| (*b, *n)).collect()))
                }
                _ => None,
            })
            .collect()
    };
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let node_b = switchyard_testing::objects::node(
        "node-b",
        "zone-a",
        &[("InternalIP", "192.168.1.20"), ("InternalIP", "fd00::20")],
    );
    let web = service(
        "web",
        json!({"type": "NodePort",
               "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                          "targetPort": "http", "nodePort": 30080}]}),
    );
    let endpoints = |extra: &[(&str, &str)]| {
        let mut list =
            vec![endpoint("10.0.1.1", NODE, "ready"), endpoint("10.0.2.1", "node-b", "ready")];
        list.extend(extra.iter().map(|(ip, node)| endpoint(ip, node, "ready")));
        slice("web-1", "web", list)
    };
    let mut node = Node::with_dsr(true, true);
    // node-c is not known yet: its backend has no node to go to (SNATed until it is).
    let effects =
        node.start(&[this_node(), node_b.clone(), web, endpoints(&[("10.0.3.1", "node-c")])]);
    let sources = BTreeSet::from([ip("192.168.1.20"), ip("fd00::20")]);
    assert_eq!(dsr(&effects), vec![(sources.clone(), vec![(ip("10.0.2.1"), ip("192.168.1.20"))])]);
    // Nothing changed: nothing handed out.
    assert!(dsr(&node.update(vec![change(&node_b, false)])).is_empty());
    // node-c appears: a source, and its backend's node.
    let node_c =
        switchyard_testing::objects::node("node-c", "zone-a", &[("InternalIP", "192.168.1.30")]);
    let mut with_c = sources.clone();
    with_c.insert(ip("192.168.1.30"));
    assert_eq!(
        dsr(&node.update(vec![change(&node_c, false)])),
        vec![(
            with_c,
            vec![(ip("10.0.2.1"), ip("192.168.1.20")), (ip("10.0.3.1"), ip("192.168.1.30"))]
        )]
    );
    // node-b goes: no longer a source, its backend without a node.
    assert_eq!(
        dsr(&node.update(vec![change(&node_b, true)])),
        vec![(BTreeSet::from([ip("192.168.1.30")]), vec![(ip("10.0.3.1"), ip("192.168.1.30"))])]
    );
    // Without DSR, never.
    let mut plain = Node::new(true);
    assert!(dsr(&plain.start(&[this_node(), node_c])).is_empty());
}
