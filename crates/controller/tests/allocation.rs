//! The allocation rules of issue 14 as tables: each case is pools and Services in, addresses and
//! conditions out, run through the sans-IO core without a cluster.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};
use switchyard_controller::allocator::{Allocator, Effects, Reason, Subject};
use switchyard_model::crd::IPPool;
use switchyard_model::{Change, ObjectKey};

/// A cluster as the runtime would show it to the core: objects in, status written back.
struct World {
    allocator: Allocator,
    services: BTreeMap<String, Value>,
    /// Every Event so far.
    events: Vec<(Subject, bool, String, String)>,
    clock: u32,
}

fn pool(name: &str, spec: Value) -> IPPool {
    serde_json::from_value(json!({
        "apiVersion": "switchyard.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn timestamp(second: u32) -> String {
    format!("2026-01-01T{:02}:{:02}:{:02}Z", second / 3600, second / 60 % 60, second % 60)
}

fn key(name: &str) -> ObjectKey {
    let (namespace, name) = name.split_once('/').unwrap_or(("default", name));
    ObjectKey::new(namespace, name)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (k, v) in patch {
                if v.is_null() {
                    base.remove(&k);
                } else {
                    merge(base.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (base, patch) => *base = patch,
    }
}

impl World {
    fn new() -> Self {
        Self::with_class(None)
    }

    fn with_class(class: Option<&str>) -> Self {
        Self {
            allocator: Allocator::new(class.map(str::to_owned)),
            services: BTreeMap::new(),
            events: Vec::new(),
            clock: 0,
        }
    }

    fn pool(&mut self, name: &str, spec: Value) -> &mut Self {
        let change = Change::IPPool(ObjectKey::cluster(name), Some(Box::new(pool(name, spec))));
        self.allocator.apply(&change);
        self
    }

    fn delete_pool(&mut self, name: &str) -> &mut Self {
        self.allocator.apply(&Change::IPPool(ObjectKey::cluster(name), None));
        self
    }

    /// A LoadBalancer Service `ns/name` (default namespace without a slash), created after every
    /// earlier one, with `patch` merged over `{type: LoadBalancer, ports: [80/TCP]}`.
    fn service(&mut self, name: &str, patch: Value) -> &mut Self {
        self.clock += 1;
        let k = key(name);
        let mut object = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": k.namespace, "name": k.name,
                         "creationTimestamp": timestamp(self.clock)},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.1",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        });
        merge(&mut object, patch);
        self.put(name, object);
        self
    }

    /// Changes a Service already there.
    fn update(&mut self, name: &str, patch: Value) -> &mut Self {
        let mut object = self.services[name].clone();
        merge(&mut object, patch);
        self.put(name, object);
        self
    }

    fn delete(&mut self, name: &str) -> &mut Self {
        self.services.remove(name);
        self.allocator.apply(&Change::Service(key(name), None));
        self
    }

    fn put(&mut self, name: &str, object: Value) {
        let service: Service = serde_json::from_value(object.clone()).unwrap();
        self.services.insert(name.to_owned(), object);
        self.allocator.apply(&Change::Service(key(name), Some(Box::new(service))));
    }

    /// Reconciles, writes the status back as the runtime would, and checks that doing so
    /// changes nothing.
    fn run(&mut self) -> Effects {
        let effects = self.allocator.reconcile();
        self.record(&effects);
        for status in &effects.services {
            let name = if status.service.namespace == "default" {
                status.service.name.to_string()
            } else {
                status.service.to_string()
            };
            let ingress: Vec<Value> = status
                .addresses
                .iter()
                .map(|a| json!({"ip": a.to_string(), "ipMode": "VIP"}))
                .collect();
            let mut object = self.services[&name].clone();
            object["status"] = json!({"loadBalancer": {"ingress": ingress}});
            let service: Service = serde_json::from_value(object.clone()).unwrap();
            self.services.insert(name, object);
            self.allocator.apply(&Change::Service(status.service.clone(), Some(Box::new(service))));
        }
        let again = self.allocator.reconcile();
        assert!(again.services.is_empty() && again.events.is_empty(), "not idempotent: {again:?}");
        effects
    }

    fn record(&mut self, effects: &Effects) {
        for e in &effects.events {
            self.events.push((e.subject.clone(), e.warning, e.reason.clone(), e.message.clone()));
        }
    }

    fn addresses(&self, name: &str) -> Vec<IpAddr> {
        self.allocator.addresses(&key(name))
    }

    fn reason(&self, name: &str) -> Option<Reason> {
        self.allocator.outcome(&key(name)).map(|o| o.reason)
    }

    fn message(&self, name: &str) -> String {
        self.allocator.outcome(&key(name)).map(|o| o.message.clone()).unwrap_or_default()
    }

    fn warnings_about(&self, name: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|(s, w, _, _)| *w && *s == Subject::Service(key(name)))
            .map(|(_, _, r, _)| r.clone())
            .collect()
    }
}

/// Expected result for one Service: its addresses and its condition's reason.
fn expect(world: &World, name: &str, addresses: &[&str], reason: Option<Reason>) {
    let want: Vec<IpAddr> = addresses.iter().map(|a| ip(a)).collect();
    assert_eq!(world.addresses(name), want, "{name}: addresses ({})", world.message(name));
    assert_eq!(world.reason(name), reason, "{name}: reason ({})", world.message(name));
}

#[test]
fn which_services_get_addresses() {
    let mut w = World::with_class(Some("switchyard.io/lb"));
    w.pool("blue", json!({"addresses": ["10.0.0.0/29"]}));
    w.service("plain", json!({}))
        .service("cluster-ip", json!({"spec": {"type": "ClusterIP"}}))
        .service("node-port", json!({"spec": {"type": "NodePort"}}))
        .service("our-class", json!({"spec": {"loadBalancerClass": "switchyard.io/lb"}}))
        .service("other-class", json!({"spec": {"loadBalancerClass": "metallb"}}));
    w.run();
    expect(&w, "plain", &["10.0.0.0"], Some(Reason::Allocated));
    expect(&w, "cluster-ip", &[], None);
    expect(&w, "node-port", &[], None);
    expect(&w, "our-class", &["10.0.0.1"], Some(Reason::Allocated));
    expect(&w, "other-class", &[], None);
}

#[test]
fn one_address_per_family_all_or_nothing() {
    let mut w = World::new();
    w.pool("v4", json!({"addresses": ["10.0.0.10-10.0.0.20"]}))
        .pool("v6", json!({"addresses": ["2001:db8::/126"]}));
    w.service("dual", json!({"spec": {"ipFamilies": ["IPv6", "IPv4"]}}))
        .service("v6-only", json!({"spec": {"ipFamilies": ["IPv6"], "clusterIP": "fd00::1"}}))
        .service("by-cluster-ip", json!({"spec": {"clusterIP": "fd00::2"}}))
        .service("default-v4", json!({"spec": {"clusterIP": null}}));
    w.run();
    expect(&w, "dual", &["2001:db8::", "10.0.0.10"], Some(Reason::Allocated));
    expect(&w, "v6-only", &["2001:db8::1"], Some(Reason::Allocated));
    expect(&w, "by-cluster-ip", &["2001:db8::2"], Some(Reason::Allocated));
    expect(&w, "default-v4", &["10.0.0.11"], Some(Reason::Allocated));

    // No IPv6 left: a dual-stack Service gets nothing rather than half.
    w.service("late", json!({"spec": {"ipFamilies": ["IPv4", "IPv6"], "clusterIP": "10.96.0.9"}}))
        .service("takes-last-v6", json!({"spec": {"ipFamilies": ["IPv6"]}}));
    w.run();
    expect(&w, "late", &["10.0.0.12", "2001:db8::3"], Some(Reason::Allocated));
    expect(&w, "takes-last-v6", &[], Some(Reason::PoolExhausted));
    w.service("late-dual", json!({"spec": {"ipFamilies": ["IPv4", "IPv6"]}}));
    w.run();
    expect(&w, "late-dual", &[], Some(Reason::PoolExhausted));
    assert!(
        w.message("late-dual").contains("no free IPv6 address in IPPool v6"),
        "{}",
        w.message("late-dual")
    );
    // The IPv4 address it held for a moment went back.
    w.service("v4-after", json!({}));
    w.run();
    expect(&w, "v4-after", &["10.0.0.13"], Some(Reason::Allocated));
}

#[test]
fn requested_addresses() {
    let mut w = World::new();
    w.pool("blue", json!({"addresses": ["10.0.0.0/24", "2001:db8::/120"], "avoidBuggyIPs": true}))
        .pool("green", json!({"addresses": ["10.0.1.0/24"], "autoAssign": false}));
    let ann =
        |v: &str| json!({"metadata": {"annotations": {"switchyard.io/load-balancer-ips": v}}});
    w.service("annotated", ann("10.0.0.7"))
        .service("deprecated-field", json!({"spec": {"loadBalancerIP": "10.0.0.8"}}))
        .service("annotation-wins", {
            let mut p = ann("10.0.0.9");
            merge(&mut p, json!({"spec": {"loadBalancerIP": "10.0.0.10"}}));
            p
        })
        .service("dual", {
            let mut p = ann("10.0.0.11, 2001:db8::11");
            merge(&mut p, json!({"spec": {"ipFamilies": ["IPv4", "IPv6"]}}));
            p
        })
        .service("from-non-auto-pool", ann("10.0.1.5"))
        .service("outside", ann("192.0.2.1"))
        .service("taken", ann("10.0.0.7"))
        .service("garbage", ann("10.0.0.x"))
        .service("two-v4", ann("10.0.0.20,10.0.0.21"))
        .service("wrong-family", ann("2001:db8::30"))
        .service("buggy", ann("10.0.0.255"));
    w.run();
    expect(&w, "annotated", &["10.0.0.7"], Some(Reason::Allocated));
    expect(&w, "deprecated-field", &["10.0.0.8"], Some(Reason::Allocated));
    expect(&w, "annotation-wins", &["10.0.0.9"], Some(Reason::Allocated));
    expect(&w, "dual", &["10.0.0.11", "2001:db8::11"], Some(Reason::Allocated));
    expect(&w, "from-non-auto-pool", &["10.0.1.5"], Some(Reason::Allocated));
    expect(&w, "outside", &[], Some(Reason::RequestedNotInPool));
    expect(&w, "taken", &[], Some(Reason::AddressInUse));
    assert!(
        w.message("taken").contains("held by Service default/annotated"),
        "{}",
        w.message("taken")
    );
    expect(&w, "garbage", &[], Some(Reason::InvalidRequest));
    expect(&w, "two-v4", &[], Some(Reason::InvalidRequest));
    expect(&w, "wrong-family", &[], Some(Reason::InvalidRequest));
    assert!(w.message("wrong-family").contains("spec.ipFamilies"), "{}", w.message("wrong-family"));
    expect(&w, "buggy", &[], Some(Reason::InvalidRequest));
    // Auto-assignment skips requested addresses and .0.
    w.service("auto", json!({}));
    w.run();
    expect(&w, "auto", &["10.0.0.1"], Some(Reason::Allocated));

    // Changing the request moves the Service (the user asked); the old address is free again.
    w.update("annotated", ann("10.0.0.50"));
    w.run();
    expect(&w, "annotated", &["10.0.0.50"], Some(Reason::Allocated));
    expect(&w, "taken", &["10.0.0.7"], Some(Reason::Allocated));
}

#[test]
fn pool_choice_selectors_auto_assign_and_disabled() {
    let mut w = World::new();
    w.pool(
        "a-restricted",
        json!({"addresses": ["10.0.1.0/30"],
                                   "serviceSelector": {"matchLabels": {"tier": "edge"}}}),
    )
    .pool("b-general", json!({"addresses": ["10.0.2.0/30"]}))
    .pool("c-manual", json!({"addresses": ["10.0.3.0/30"], "autoAssign": false}))
    .pool("d-off", json!({"addresses": ["10.0.4.0/30"], "disabled": true}))
    .pool(
        "e-team",
        json!({"addresses": ["10.0.5.0/30"], "autoAssign": false,
                               "namespaceSelector": {"matchLabels": {"team": "x"}}}),
    );
    w.allocator.set_namespace("team-x", Some([("team".to_owned(), "x".to_owned())].into()));
    let named = |p: &str| json!({"metadata": {"annotations": {"switchyard.io/ip-pool": p}}});
    w.service("edge", json!({"metadata": {"labels": {"tier": "edge"}}}))
        .service("ordinary", json!({}))
        .service("manual", named("c-manual"))
        .service("named-off", named("d-off"))
        .service("named-missing", named("nope"))
        .service("named-restricted", named("a-restricted"))
        .service("team-x/app", named("e-team"))
        .service("team-y/app", named("e-team"));
    w.run();
    expect(&w, "edge", &["10.0.1.0"], Some(Reason::Allocated));
    expect(&w, "ordinary", &["10.0.2.0"], Some(Reason::Allocated));
    expect(&w, "manual", &["10.0.3.0"], Some(Reason::Allocated));
    expect(&w, "named-off", &[], Some(Reason::PoolUnusable));
    expect(&w, "named-missing", &[], Some(Reason::PoolNotFound));
    expect(&w, "named-restricted", &[], Some(Reason::NoPoolMatches));
    expect(&w, "team-x/app", &["10.0.5.0"], Some(Reason::Allocated));
    expect(&w, "team-y/app", &[], Some(Reason::NoPoolMatches));

    // Labelling the namespace lets its Service in.
    w.allocator.set_namespace("team-y", Some([("team".to_owned(), "x".to_owned())].into()));
    w.run();
    expect(&w, "team-y/app", &["10.0.5.1"], Some(Reason::Allocated));

    // Disabling a pool keeps its holders and hands out nothing new.
    w.pool("b-general", json!({"addresses": ["10.0.2.0/30"], "disabled": true}));
    w.service("after-disable", json!({}));
    w.run();
    expect(&w, "ordinary", &["10.0.2.0"], Some(Reason::Allocated));
    expect(&w, "after-disable", &[], Some(Reason::NoPoolMatches));
}

#[test]
fn exhaustion_waits_and_is_served_in_age_order_when_an_address_frees() {
    let mut w = World::new();
    w.pool("tiny", json!({"addresses": ["10.0.0.1/32"]}));
    w.service("first", json!({})).service("second", json!({})).service("third", json!({}));
    w.run();
    expect(&w, "first", &["10.0.0.1"], Some(Reason::Allocated));
    expect(&w, "second", &[], Some(Reason::PoolExhausted));
    expect(&w, "third", &[], Some(Reason::PoolExhausted));
    assert_eq!(w.warnings_about("second"), ["PoolExhausted"]);
    w.delete("first");
    w.run();
    expect(&w, "second", &["10.0.0.1"], Some(Reason::Allocated));
    expect(&w, "third", &[], Some(Reason::PoolExhausted));
    assert_eq!(
        w.warnings_about("third"),
        ["PoolExhausted"],
        "one Event per outcome, not per reconcile"
    );
    // Growing the pool serves the one still waiting.
    w.pool("tiny", json!({"addresses": ["10.0.0.1-10.0.0.2"]}));
    w.run();
    expect(&w, "third", &["10.0.0.2"], Some(Reason::Allocated));
}

#[test]
fn release_on_delete_and_type_change() {
    let mut w = World::new();
    w.pool("p", json!({"addresses": ["10.0.0.1-10.0.0.2"]}));
    w.service("a", json!({})).service("b", json!({}));
    w.run();
    w.update("a", json!({"spec": {"type": "ClusterIP"}}));
    let effects = w.run();
    let released = effects.services.iter().find(|s| s.service == key("a")).unwrap();
    assert!(released.addresses.is_empty() && released.condition.is_none(), "{released:?}");
    w.service("c", json!({}));
    w.update("b", json!({"spec": {"loadBalancerClass": "someone-else"}}));
    w.service("d", json!({}));
    w.run();
    expect(&w, "c", &["10.0.0.1"], Some(Reason::Allocated));
    expect(&w, "d", &["10.0.0.2"], Some(Reason::Allocated));
}

#[test]
fn sharing_follows_metallbs_rule() {
    let mut w = World::new();
    w.pool("p", json!({"addresses": ["10.0.0.0/28"]}));
    let shared = |k: &str, port: u16, policy: &str| {
        json!({"metadata": {"annotations": {"switchyard.io/allow-shared-ip": k}},
               "spec": {"ports": [{"port": port, "protocol": "TCP"}],
                        "externalTrafficPolicy": policy, "selector": {"app": "web"}}})
    };
    w.service("web", shared("k1", 80, "Cluster"))
        .service("tls", shared("k1", 443, "Cluster"))
        .service("same-port", shared("k1", 80, "Cluster"))
        .service("other-key", shared("k2", 8080, "Cluster"))
        .service("local", shared("k1", 8443, "Local"));
    w.run();
    expect(&w, "web", &["10.0.0.0"], Some(Reason::Allocated));
    expect(&w, "tls", &["10.0.0.0"], Some(Reason::Allocated));
    expect(&w, "same-port", &["10.0.0.1"], Some(Reason::Allocated));
    expect(&w, "other-key", &["10.0.0.2"], Some(Reason::Allocated));
    // The first address has Cluster-policy holders; the second (same-port) also: Local differs.
    expect(&w, "local", &["10.0.0.3"], Some(Reason::Allocated));

    // Asking for a shared address: refused with the reason.
    let ask = |k: &str, port: u16, policy: &str| {
        let mut p = shared(k, port, policy);
        merge(
            &mut p,
            json!({"metadata": {"annotations": {"switchyard.io/load-balancer-ips": "10.0.0.0"}}}),
        );
        p
    };
    w.service("clash", ask("k1", 443, "Cluster"))
        .service("wrong-key", ask("k9", 9000, "Cluster"))
        .service("wrong-policy", ask("k1", 9001, "Local"))
        .service("fits", ask("k1", 9002, "Cluster"));
    w.run();
    expect(&w, "clash", &[], Some(Reason::AddressInUse));
    assert!(w.message("clash").contains("both use port 443/TCP"), "{}", w.message("clash"));
    expect(&w, "wrong-key", &[], Some(Reason::AddressInUse));
    assert!(w.message("wrong-key").contains("sharing keys differ"), "{}", w.message("wrong-key"));
    expect(&w, "wrong-policy", &[], Some(Reason::AddressInUse));
    expect(&w, "fits", &["10.0.0.0"], Some(Reason::Allocated));
    assert_eq!(w.warnings_about("clash"), ["AddressInUse"]);

    // The address stays until its last holder goes.
    w.delete("web").delete("tls").run();
    w.service("newcomer", json!({}));
    w.run();
    expect(&w, "newcomer", &["10.0.0.4"], Some(Reason::Allocated));
    // Once free, the oldest Service waiting for it gets it.
    w.delete("fits").run();
    expect(&w, "clash", &["10.0.0.0"], Some(Reason::Allocated));
    expect(&w, "wrong-key", &[], Some(Reason::AddressInUse));
}

#[test]
fn restart_adopts_status_and_moves_nothing() {
    let mut w = World::new();
    w.pool("p", json!({"addresses": ["10.0.0.0/24", "2001:db8::/64"]}));
    for i in 0..50 {
        let families = if i % 3 == 0 { json!(["IPv4", "IPv6"]) } else { json!(["IPv4"]) };
        w.service(&format!("s{i}"), json!({"spec": {"ipFamilies": families}}));
    }
    w.run();
    for i in (0..50).step_by(4) {
        w.delete(&format!("s{i}"));
    }
    w.run();
    let before: BTreeMap<String, Vec<IpAddr>> =
        w.services.keys().map(|n| (n.clone(), w.addresses(n))).collect();

    // A new controller sees the same objects, in reverse order, and a new Service among them.
    let mut restarted = World::new();
    restarted.pool("p", json!({"addresses": ["10.0.0.0/24", "2001:db8::/64"]}));
    for (name, object) in w.services.iter().rev() {
        restarted.put(name, object.clone());
    }
    restarted.clock = w.clock;
    restarted.service("fresh", json!({}));
    restarted.run();
    for (name, addresses) in &before {
        assert_eq!(&restarted.addresses(name), addresses, "{name} moved");
    }
    expect(&restarted, "fresh", &["10.0.0.0"], Some(Reason::Allocated));
}

#[test]
fn older_claim_wins_a_status_conflict() {
    let mut w = World::new();
    w.pool("p", json!({"addresses": ["10.0.0.1-10.0.0.3"]}));
    let status = |a: &str| json!({"status": {"loadBalancer": {"ingress": [{"ip": a}]}}});
    // Both claim 10.0.0.2; the younger one is listed first.
    w.clock = 10;
    w.service("young", status("10.0.0.2"));
    w.clock = 0;
    w.service("old", status("10.0.0.2"));
    w.run();
    expect(&w, "old", &["10.0.0.2"], Some(Reason::Allocated));
    expect(&w, "young", &["10.0.0.1"], Some(Reason::AddressConflict));
    assert!(w.message("young").contains("held by Service default/old"), "{}", w.message("young"));
    assert_eq!(w.warnings_about("young"), ["AddressConflict"]);
}

#[test]
fn a_claim_seen_later_never_takes_a_held_address() {
    let mut w = World::new();
    w.pool("p", json!({"addresses": ["10.0.0.1-10.0.0.3"]}));
    let status = |a: &str| json!({"status": {"loadBalancer": {"ingress": [{"ip": a}]}}});
    w.clock = 10;
    w.service("young", status("10.0.0.2"));
    w.run();
    expect(&w, "young", &["10.0.0.2"], Some(Reason::Allocated));
    // An older Service first seen in a later batch, claiming the same address.
    w.clock = 0;
    w.service("old", status("10.0.0.2"));
    w.run();
    expect(&w, "young", &["10.0.0.2"], Some(Reason::Allocated));
    expect(&w, "old", &["10.0.0.1"], Some(Reason::AddressConflict));
    assert!(w.message("old").contains("held by Service default/young"), "{}", w.message("old"));
}

#[test]
fn a_shrinking_pool_keeps_holders_and_warns() {
    let mut w = World::new();
    w.pool("p", json!({"addresses": ["10.0.0.1-10.0.0.4"]}));
    w.service("a", json!({})).service("b", json!({})).service("c", json!({}));
    w.run();
    w.pool("p", json!({"addresses": ["10.0.0.1-10.0.0.2"]}));
    w.service("d", json!({}));
    w.run();
    expect(&w, "a", &["10.0.0.1"], Some(Reason::Allocated));
    expect(&w, "c", &["10.0.0.3"], Some(Reason::NotInPool));
    assert_eq!(w.warnings_about("c"), ["NotInPool"]);
    expect(&w, "d", &[], Some(Reason::PoolExhausted));
    assert_eq!(w.allocator.pool_reports()["p"].used_ipv4, 2);
    // Deleting the pool altogether: still no one loses an address.
    w.delete_pool("p").run();
    expect(&w, "a", &["10.0.0.1"], Some(Reason::NotInPool));
    // Once the pool is back, the address is accounted to it again.
    w.pool("p", json!({"addresses": ["10.0.0.1-10.0.0.4"]})).run();
    expect(&w, "c", &["10.0.0.3"], Some(Reason::Allocated));
    expect(&w, "d", &["10.0.0.4"], Some(Reason::Allocated));
}

#[test]
fn invalid_pools_report_and_hand_out_nothing() {
    let mut w = World::new();
    w.pool("a", json!({"addresses": ["10.0.0.0/30"]}))
        .pool("b-overlaps", json!({"addresses": ["10.0.0.2-10.0.0.9"]}))
        .pool("c-garbage", json!({"addresses": ["10.0.1.0/33"]}))
        .pool("d-empty", json!({"addresses": []}));
    let effects = w.run();
    let reports: BTreeMap<String, _> = effects.pools.into_iter().collect();
    assert_eq!(reports["a"].problem, None);
    assert_eq!(reports["a"].available_ipv4, 4);
    let problem = |n: &str| reports[n].problem.clone().unwrap();
    assert_eq!(problem("b-overlaps").0, "Overlap");
    assert!(problem("b-overlaps").1.contains("overlaps IPPool a"), "{:?}", problem("b-overlaps"));
    assert_eq!(problem("c-garbage").0, "InvalidAddresses");
    assert_eq!(problem("d-empty").0, "Empty");
    let pool_warnings: Vec<&String> = w
        .events
        .iter()
        .filter(|(s, w, ..)| *w && matches!(s, Subject::IPPool(_)))
        .map(|e| &e.2)
        .collect();
    assert_eq!(pool_warnings, ["Overlap", "InvalidAddresses", "Empty"]);
    for i in 0..5 {
        w.service(&format!("s{i}"), json!({}));
    }
    w.run();
    expect(&w, "s3", &["10.0.0.3"], Some(Reason::Allocated));
    expect(&w, "s4", &[], Some(Reason::PoolExhausted));
    assert!(
        w.message("s4").contains("IPPool a"),
        "only the valid pool is tried: {}",
        w.message("s4")
    );
}

#[test]
fn pool_status_counts_per_family() {
    let mut w = World::new();
    w.pool("p", json!({"addresses": ["10.0.0.0/24", "2001:db8::/64"], "avoidBuggyIPs": true}));
    w.service("a", json!({"spec": {"ipFamilies": ["IPv4", "IPv6"]}})).service("b", json!({}));
    w.run();
    let report = &w.allocator.pool_reports()["p"];
    assert_eq!((report.used_ipv4, report.available_ipv4), (2, 252));
    assert_eq!((report.used_ipv6, report.available_ipv6), (1, u64::MAX));
    let holdings = w.allocator.holdings();
    assert_eq!(holdings.len(), 3);
    assert_eq!(holdings[0].services, [key("a")]);
    assert_eq!(holdings[0].pool.as_deref(), Some("p"));
}
