//! Fuzzing the model's incremental apply (issue 18 item 7): random sequences of Services,
//! EndpointSlices and Nodes — well-typed, as both sources deliver them, but with every field
//! drawn from values that break some rule (cluster IP `10.96.0.300`, port 70000, special
//! addresses, a slice of the other family, an externalIP that is another Service's cluster IP,
//! NodePort clashes) — are applied one change at a time. After every change the difference it
//! returned must turn the previous desired state into the new one, and at the end of every
//! sequence (and every 8th change) the incremental state must equal a full recomputation from
//! the same objects, refusals included. A panic is caught and counted.
//!
//! A generator of our own on stable Rust, as `switchyard_bgp::fuzz` (cargo-fuzz needs nightly):
//! it knows the objects' shape, so every input reaches the engine instead of a deserializer;
//! `crates/model/tests/incremental.rs` checks the same property with proptest on a fixed pool.
//! The suite runs a short pass (`crates/model/tests/fuzz_short.rs`); `cargo run -p
//! switchyard-model --example fuzz_apply -- N` applies N changes (docs/model.md).

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Value, json};
use switchyard_model::{Change, ClusterState, DesiredState, NodeModel, ProxyConfig};

use crate::objects::{NODE, change};

/// What a fuzz run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Changes applied (deletions included).
    pub changes: u64,
    /// Of those, deletions.
    pub deletes: u64,
    /// Sequences (each starts from an empty model).
    pub sequences: u64,
    /// Comparisons of the incremental state with a full recomputation.
    pub comparisons: u64,
    /// Comparisons (or difference replays) that disagreed.
    pub mismatches: u64,
    /// Largest number of frontends one desired state held.
    pub max_frontends: usize,
    /// Largest number of refused frontend addresses at once.
    pub max_refusals: usize,
    /// Sequences that panicked.
    pub panics: u64,
    /// The first failing sequences (panic or mismatch), as JSON lines of their objects.
    pub failures: Vec<String>,
}

/// A small xorshift generator: reproducible runs from a seed, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    /// Up to `max` picks.
    fn some<'a>(&mut self, from: &[&'a str], max: usize) -> Vec<&'a str> {
        (0..self.below(max + 1)).map(|_| self.pick(from)).collect()
    }
}

const NAMESPACES: &[&str] = &["default", "kube-system", "aaa"];
const SERVICES: &[&str] = &["web", "dns", "evil", "db"];
const NODES: &[&str] = &[NODE, "node-b", "node-c"];
/// Cluster IPs, node addresses, pod addresses, special and broken ones, both families.
const ADDRESSES: &[&str] = &[
    "10.96.0.10",
    "10.96.0.11",
    "10.96.0.12",
    "fd00:96::10",
    "fd00:96::11",
    "192.168.1.10",
    "192.168.1.11",
    "fd00:192::10",
    "10.244.1.5",
    "10.244.2.5",
    "10.244.1.6",
    "fd00:244::5",
    "192.0.2.10",
    "192.0.2.11",
    "127.0.0.1",
    "169.254.169.254",
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "fe80::1",
    "10.96.0.300",
    "not-an-ip",
    "",
    "None",
];
const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "Odd"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP", "ICMP"];
const PORT_NAMES: &[&str] = &["http", "dns", "", "metrics", "Bad_Name"];
const PORTS: &[i64] = &[80, 53, 8080, 0, -1, 65535, 70000];
const NODE_PORTS: &[i64] = &[30080, 30081, 29999, 32767, 0, 8443];
const POLICIES: &[&str] = &["Local", "Cluster", "Odd"];
const ZONES: &[&str] = &["zone-a", "zone-b", ""];

fn service(rng: &mut Rng, namespace: &str, name: &str) -> Value {
    let mut spec = json!({"type": rng.pick(SERVICE_TYPES)});
    if rng.chance(90) {
        spec["clusterIP"] = json!(rng.pick(ADDRESSES));
    }
    if rng.chance(30) {
        spec["clusterIPs"] = json!(rng.some(ADDRESSES, 3));
        spec["ipFamilies"] = json!(rng.some(&["IPv4", "IPv6", "IPv5"], 2));
        spec["ipFamilyPolicy"] = json!(rng.pick(&["SingleStack", "PreferDualStack", "Odd"]));
    }
    if rng.chance(30) {
        spec["externalIPs"] = json!(rng.some(ADDRESSES, 3));
    }
    if rng.chance(20) {
        spec["loadBalancerSourceRanges"] =
            json!(rng.some(&["10.0.0.0/8", "192.0.2.0/24", "fd00::/8", "10.0.0.0/33", "x"], 2));
    }
    if rng.chance(30) {
        spec["externalTrafficPolicy"] = json!(rng.pick(POLICIES));
    }
    if rng.chance(20) {
        spec["internalTrafficPolicy"] = json!(rng.pick(POLICIES));
    }
    if rng.chance(15) {
        spec["healthCheckNodePort"] = json!(NODE_PORTS[rng.below(NODE_PORTS.len())]);
    }
    if rng.chance(20) {
        spec["sessionAffinity"] = json!(rng.pick(&["ClientIP", "None", "Odd"]));
        let timeout = [10, 0, -1, 86_400, 86_401][rng.below(5)];
        spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": timeout}});
    }
    if rng.chance(10) {
        spec["trafficDistribution"] = json!(rng.pick(&["PreferClose", "PreferSameZone", "Odd"]));
    }
    if rng.chance(10) {
        spec["externalName"] = json!(rng.pick(&["db.example.com", "", "Not A Name"]));
    }
    let ports: Vec<Value> = (0..rng.below(4))
        .map(|_| {
            let mut port = json!({
                "name": rng.pick(PORT_NAMES),
                "port": PORTS[rng.below(PORTS.len())],
                "protocol": rng.pick(PROTOCOLS),
            });
            if rng.chance(50) {
                port["targetPort"] = if rng.chance(50) {
                    json!(PORTS[rng.below(PORTS.len())])
                } else {
                    json!(rng.pick(PORT_NAMES))
                };
            }
            if rng.chance(40) {
                port["nodePort"] = json!(NODE_PORTS[rng.below(NODE_PORTS.len())]);
            }
            port
        })
        .collect();
    spec["ports"] = json!(ports);
    let mut labels = json!({});
    if rng.chance(10) {
        labels["service.kubernetes.io/headless"] = json!("");
    }
    if rng.chance(10) {
        labels["service.kubernetes.io/service-proxy-name"] = json!("other-proxy");
    }
    let mut object = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": spec,
    });
    if rng.chance(20) {
        let ingress: Vec<Value> = rng
            .some(ADDRESSES, 2)
            .into_iter()
            .map(|ip| json!({"ip": ip, "ipMode": rng.pick(&["VIP", "Proxy", "Odd"])}))
            .collect();
        object["status"] = json!({"loadBalancer": {"ingress": ingress}});
    }
    if rng.chance(10) {
        object["metadata"]["annotations"] =
            json!({"switchyard.io/lb-algorithm": rng.pick(&["maglev", "random", "odd"])});
    }
    object
}

fn slice(rng: &mut Rng, namespace: &str, name: &str) -> Value {
    let endpoints: Vec<Value> = (0..rng.below(5))
        .map(|_| {
            let mut conditions = json!({});
            for condition in ["ready", "serving", "terminating"] {
                if rng.chance(70) {
                    conditions[condition] = json!(rng.chance(60));
                }
            }
            let mut endpoint = json!({
                "addresses": rng.some(ADDRESSES, 2),
                "conditions": conditions,
            });
            if rng.chance(80) {
                endpoint["nodeName"] = json!(rng.pick(NODES));
            }
            if rng.chance(40) {
                endpoint["zone"] = json!(rng.pick(ZONES));
            }
            if rng.chance(15) {
                endpoint["hints"] = json!({"forZones": [{"name": rng.pick(ZONES)}]});
            }
            endpoint
        })
        .collect();
    let ports: Vec<Value> = (0..rng.below(3))
        .map(|_| {
            json!({"name": rng.pick(PORT_NAMES), "port": PORTS[rng.below(PORTS.len())],
                   "protocol": rng.pick(PROTOCOLS)})
        })
        .collect();
    let mut labels = json!({});
    if rng.chance(90) {
        labels["kubernetes.io/service-name"] = json!(rng.pick(SERVICES));
    }
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "addressType": rng.pick(&["IPv4", "IPv6", "FQDN", "Odd"]),
        "ports": ports,
        "endpoints": endpoints,
    })
}

fn node(rng: &mut Rng, name: &str) -> Value {
    let addresses: Vec<Value> = (0..rng.below(4))
        .map(|_| {
            json!({"type": rng.pick(&["InternalIP", "ExternalIP", "Hostname", "Odd"]),
                   "address": rng.pick(ADDRESSES)})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": rng.pick(ZONES)}},
           "status": {"addresses": addresses}})
}

/// One random object of a small universe of names, so that later changes replace, move and
/// delete earlier ones.
fn object(rng: &mut Rng) -> Value {
    let namespace = rng.pick(NAMESPACES);
    match rng.below(10) {
        0..=3 => {
            let name = rng.pick(SERVICES);
            service(rng, namespace, name)
        }
        4..=7 => {
            let name = format!("{}-{}", rng.pick(SERVICES), rng.below(2));
            slice(rng, namespace, &name)
        }
        _ => {
            let name = rng.pick(NODES);
            node(rng, name)
        }
    }
}

/// Applies one sequence of `length` changes from an empty model, counting into `report` and
/// logging each change into `log` (the failing sequence is reported).
fn sequence(rng: &mut Rng, length: usize, report: &mut Report, log: &mut Vec<String>) {
    let config = ProxyConfig::new(NODE);
    let mut model = NodeModel::new(config.clone());
    let mut snapshot = ClusterState::default();
    let mut previous = DesiredState::default();
    for step in 0..length {
        let object = object(rng);
        let delete = rng.chance(15);
        log.push(format!("{}{object}", if delete { "delete " } else { "" }));
        let change: Change = change(&object, delete);
        report.changes += 1;
        report.deletes += u64::from(delete);
        snapshot.apply(change.clone());
        let diff = model.apply(change);
        let mut replayed = previous.clone();
        replayed.apply(&diff);
        if &replayed != model.desired() {
            report.mismatches += 1;
        }
        previous = model.desired().clone();
        report.max_frontends = report.max_frontends.max(previous.frontends.len());
        if step % 8 == 7 || step + 1 == length {
            let full = NodeModel::from_state(config.clone(), &snapshot);
            report.comparisons += 1;
            if full.desired() != model.desired() || full.refusals() != model.refusals() {
                report.mismatches += 1;
            }
            report.max_refusals = report.max_refusals.max(model.refusals().len());
        }
    }
}

/// Applies at least `changes` changes from `seed`, in sequences of 1 to 40.
pub fn run(seed: u64, changes: u64) -> Report {
    let mut rng = Rng::new(seed);
    let mut report = Report::default();
    while report.changes < changes {
        let length = 1 + rng.below(40);
        let mut log = Vec::new();
        let mismatches = report.mismatches;
        let mut one = Report::default();
        let mut sequence_rng = rng.clone();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            sequence(&mut sequence_rng, length, &mut one, &mut log);
        }));
        rng = sequence_rng;
        report.sequences += 1;
        report.changes += one.changes;
        report.deletes += one.deletes;
        report.comparisons += one.comparisons;
        report.mismatches += one.mismatches;
        report.max_frontends = report.max_frontends.max(one.max_frontends);
        report.max_refusals = report.max_refusals.max(one.max_refusals);
        let panicked = outcome.is_err();
        if panicked {
            report.panics += 1;
        }
        if (panicked || report.mismatches > mismatches) && report.failures.len() < 3 {
            report.failures.push(log.join("\n"));
        }
    }
    report
}
