//! Validation kept up to date change by change, for the node agent: after an update only the
//! objects it touched, and those whose findings depend on them, are validated again — a
//! NodePort, cluster IP or address shared with a changed Service, the Service an EndpointSlice
//! names, the slices naming a Node that came or went. A whole-state
//! [`validate`](super::validate) after every update costs tens of milliseconds at 10,000
//! Services; this costs microseconds.
//!
//! The findings are those `validate` gives for the same state, in the same order
//! (`tests/validate_incremental.rs` checks it on random update sequences). The per-object rules
//! are shared with `validate` and run once per object version; the cross-object rules read
//! indexes and the few facts of each object they need, kept here instead of the objects: a
//! second copy of every Service and EndpointSlice was the agent's largest memory item.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rustc_hash::{FxHashMap, FxHashSet};

use super::service::{is_headless, service_type};
use super::syntax::in_range;
use super::{
    Finding, Problem, Report, ValidationOptions, load_balancing, validate_endpoint_slice,
    validate_node, validate_service,
};
use crate::input::{Change, ClusterState, ObjectKey, ObjectKind};
use crate::intern::Interner;
use crate::keyset::KeySet;
use crate::parse::SERVICE_NAME_LABEL;

/// One object, as findings name it.
pub type Object = (ObjectKind, ObjectKey);

/// An update of at least this many changes is a bulk load, after which the maps are rebuilt.
const COMPACT_AFTER_CHANGES: usize = 1000;

/// The facts of the objects seen so far, their findings, and the indexes the cross-object rules
/// read.
#[derive(Debug, Default)]
pub struct IncrementalValidation {
    options: ValidationOptions,
    services: BTreeMap<Key, ServiceFacts>,
    slices: BTreeMap<Key, SliceFacts>,
    nodes: BTreeMap<ObjectKey, NodeFacts>,
    /// IPPools, BGPPeers, BGPAdvertisements and L2Advertisements, whole: a handful, and their
    /// rules read each other. (Namespaces and Secrets are not kept: no rule reads them.)
    load_balancing: ClusterState,
    index: Index,
    /// Shares port names, protocols and node names between slices.
    interner: Interner,
    /// Shares thin references to node names between slices' endpoints.
    node_refs: Interner<Arc<str>>,
    /// Shares the keys of Services and EndpointSlices between the maps and indexes naming them.
    keys: Interner<ObjectKey>,
    /// Findings of each object that has any, in `validate`'s order: first its own rules' (kept
    /// from when its version came), then the cross-object ones.
    findings: BTreeMap<Object, Vec<Finding>>,
}

/// Who claims what, for the rules between objects.
#[derive(Debug, Default)]
struct Index {
    /// NodePort (or health check node port) and protocol → Services claiming it, with the field
    /// of each one's first claim. The smallest key owns it.
    node_ports: FxHashMap<(i32, String), Claims>,
    /// Cluster IP → Services listing it (the smallest owns it). This and the maps below are
    /// B-trees rebuilt after a bulk load ([`IncrementalValidation::compact`]): hash tables had
    /// up to twice as many buckets as entries (issue 20: 2.1 MB at 10,000 Services, 1.1 this
    /// way).
    cluster_ips: BTreeMap<IpAddr, KeySet<Key>>,
    /// Node address → Nodes that have it (they own it before any Service).
    node_addresses: BTreeMap<IpAddr, KeySet<ObjectKey>>,
    /// Any cluster IP field → Services (owners of the address when no Node has it).
    service_addresses: BTreeMap<IpAddr, KeySet<Key>>,
    /// externalIP or LoadBalancer ingress IP → Services asking for it.
    external: BTreeMap<IpAddr, KeySet<Key>>,
    /// Service (by the slices' `kubernetes.io/service-name` label) → its EndpointSlices.
    slices_of_service: BTreeMap<Key, KeySet<Key>>,
}

/// A port's name and protocol, interned.
type Port = (Arc<str>, Arc<str>);

/// A Service's or EndpointSlice's key, one allocation shared by every map and index entry
/// naming the object (issue 20: each entry held its own copy, two `String`s, about 2 MB at
/// 10,000 Services).
type Key = Arc<ObjectKey>;

/// The Services claiming one NodePort and the field of each one's first claim, sorted by key:
/// nearly always one, where a `BTreeMap` allocates a node with room for eleven (issue 20).
#[derive(Debug, Default)]
struct Claims(Vec<(Key, String)>);

impl Claims {
    fn insert(&mut self, key: Key, field: String) {
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(at) => self.0[at].1 = field,
            Err(at) => {
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact(1);
                }
                self.0.insert(at, (key, field));
            }
        }
    }

    fn remove(&mut self, key: &ObjectKey) {
        if let Ok(at) = self.0.binary_search_by(|(k, _)| (**k).cmp(key)) {
            self.0.remove(at);
        }
    }

    /// The owner (smallest key) and its field.
    fn first(&self) -> Option<(&Key, &String)> {
        self.0.first().map(|(key, field)| (key, field))
    }

    fn keys(&self) -> impl Iterator<Item = &Key> {
        self.0.iter().map(|(key, _)| key)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the cross-object rules read of one Service.
#[derive(Debug, Default)]
struct ServiceFacts {
    /// How many of its findings come from its own rules (they lead its findings).
    own: usize,
    /// First claim of each (port, protocol): field and what it is.
    node_ports: Vec<(i32, String, String, &'static str)>,
    /// `spec.clusterIPs` (or `spec.clusterIP`) with their index, as the collision rule reads it.
    cluster_ips: Vec<(usize, IpAddr)>,
    /// Every cluster IP field, as address ownership reads it.
    addresses: Vec<IpAddr>,
    /// externalIPs and LoadBalancer ingress IPs with their field.
    external: Vec<(String, IpAddr)>,
    /// Name and protocol of each port, when its slices' ports are checked against them (not for
    /// ExternalName or headless Services). Interned, as the slices' ports.
    ports: Option<Box<[Port]>>,
}

/// What the cross-object rules read of one EndpointSlice.
#[derive(Debug, Default)]
struct SliceFacts {
    own: usize,
    /// Its Service, from the `kubernetes.io/service-name` label (same namespace).
    service: Option<Key>,
    /// Name and protocol of each port.
    ports: Box<[Port]>,
    /// The node each endpoint names, by endpoint index; empty when none names one (endpoints
    /// outside the cluster, or the benchmark's: 2 MB at 250,000 endpoints kept as `None`s).
    nodes: Box<[Option<NodeRef>]>,
}

/// An interned node name behind a thin pointer: 8 bytes per endpoint where an `Arc<str>` takes
/// 16 (issue 20: 2 MB at 10,000 Services × 25 endpoints).
type NodeRef = Arc<Arc<str>>;

/// What the cross-object rules read of one Node.
#[derive(Debug, Default)]
struct NodeFacts {
    own: usize,
    addresses: Vec<IpAddr>,
}

/// Index entries an update changed; the objects reading them are validated again.
#[derive(Debug, Default)]
struct Touched {
    node_ports: FxHashSet<(i32, String)>,
    cluster_ips: FxHashSet<IpAddr>,
    /// Addresses whose owner may have changed.
    owned: FxHashSet<IpAddr>,
    /// Services whose slices changed (their port and "no EndpointSlice" findings).
    services: FxHashSet<Key>,
    /// Services that came or went (the "does not exist" findings of slices naming them).
    slices_of_service: FxHashSet<ObjectKey>,
    /// Nodes that came or went (the "does not exist" findings of slices naming them).
    nodes: FxHashSet<String>,
    load_balancing: bool,
}

impl IncrementalValidation {
    pub fn new(options: ValidationOptions) -> Self {
        Self { options, ..Self::default() }
    }

    /// Takes in an update and validates again what it touched. Returns those objects (their
    /// findings may or may not have changed; objects outside it kept theirs). Nothing of the
    /// changes is kept but the facts the rules read.
    pub fn update<C: Borrow<Change>>(
        &mut self,
        changes: impl IntoIterator<Item = C>,
    ) -> BTreeSet<Object> {
        let mut touched = Touched::default();
        let mut affected = BTreeSet::new();
        let had_no_nodes = self.nodes.is_empty();
        let mut count = 0;
        for change in changes {
            count += 1;
            let change = change.borrow();
            let (kind, key) = (change.kind(), change.key());
            match change {
                Change::Service(_, service) => {
                    if let Some(old) = self.services.remove(key) {
                        self.index.remove_service(key, &old);
                        touched.service(&old);
                    }
                    if let Some(service) = service {
                        let mut own = Vec::new();
                        validate_service(key, service, &self.options, &mut own);
                        let facts =
                            service_facts(service, &self.options, own.len(), &mut self.interner);
                        let shared = self.keys.intern_value(key.clone());
                        self.index.add_service(&shared, &facts);
                        touched.service(&facts);
                        self.services.insert(shared, facts);
                        self.set_findings((kind, key.clone()), own);
                    }
                    touched.slices_of_service.insert(key.clone());
                }
                Change::EndpointSlice(_, slice) => {
                    if let Some(old) = self.slices.remove(key) {
                        remove_all(&mut self.index.slices_of_service, old.service.as_slice(), key);
                        touched.services.extend(old.service);
                    }
                    if let Some(slice) = slice {
                        let mut own = Vec::new();
                        validate_endpoint_slice(key, slice, &mut own);
                        let facts = slice_facts(
                            key,
                            slice,
                            own.len(),
                            &mut self.interner,
                            &mut self.node_refs,
                            &mut self.keys,
                        );
                        let shared = self.keys.intern_value(key.clone());
                        add_all(
                            &mut self.index.slices_of_service,
                            facts.service.as_slice(),
                            &shared,
                        );
                        touched.services.extend(facts.service.clone());
                        self.slices.insert(shared, facts);
                        self.set_findings((kind, key.clone()), own);
                    }
                }
                Change::Node(_, node) => {
                    let old = self.nodes.remove(key);
                    if let Some(old) = &old {
                        remove_all(&mut self.index.node_addresses, &old.addresses, key);
                        touched.owned.extend(old.addresses.iter().copied());
                    }
                    if let Some(node) = node {
                        let mut own = Vec::new();
                        validate_node(key, node, &mut own);
                        let facts = NodeFacts { own: own.len(), addresses: node_addresses(node) };
                        add_all(&mut self.index.node_addresses, &facts.addresses, key);
                        touched.owned.extend(facts.addresses.iter().copied());
                        self.nodes.insert(key.clone(), facts);
                        self.set_findings((kind, key.clone()), own);
                    }
                    // Slices read only whether a Node exists.
                    if old.is_some() != node.is_some() {
                        touched.nodes.insert(key.name.to_string());
                    }
                }
                Change::IPPool(..)
                | Change::BGPPeer(..)
                | Change::BGPAdvertisement(..)
                | Change::L2Advertisement(..) => {
                    self.load_balancing.apply(change.clone());
                    touched.load_balancing = true;
                }
                // No rule reads them.
                Change::Namespace(..) | Change::Secret(..) => {
                    continue;
                }
            }
            affected.insert((kind, key.clone()));
        }
        let all_slices = had_no_nodes != self.nodes.is_empty();
        self.collect(&touched, all_slices, &mut affected);
        if touched.load_balancing {
            self.findings.retain(|(kind, _), _| !is_load_balancing(*kind));
            let mut findings = Vec::new();
            load_balancing::check(&self.load_balancing, &mut findings);
            for finding in findings {
                let object = (finding.kind, finding.object.clone());
                self.findings.entry(object).or_default().push(finding);
            }
            affected.extend(self.load_balancing_objects());
        }
        for object in &affected {
            if !is_load_balancing(object.0) {
                self.validate_object(object);
            }
        }
        if count >= COMPACT_AFTER_CHANGES {
            self.compact();
        }
        affected
    }

    /// Rebuilds the maps in one pass after a bulk load: inserted one by one in key order, a
    /// B-tree's nodes stay a little over half full (a full node splits into 6 and 5 entries and
    /// the left one gets no more); built from a sorted sequence they are full (issue 20: 1.5 MB
    /// at 10,000 Services).
    fn compact(&mut self) {
        self.services = std::mem::take(&mut self.services).into_iter().collect();
        self.slices = std::mem::take(&mut self.slices).into_iter().collect();
        self.nodes = std::mem::take(&mut self.nodes).into_iter().collect();
        self.findings = std::mem::take(&mut self.findings).into_iter().collect();
        let index = &mut self.index;
        index.cluster_ips = std::mem::take(&mut index.cluster_ips).into_iter().collect();
        index.service_addresses =
            std::mem::take(&mut index.service_addresses).into_iter().collect();
        index.external = std::mem::take(&mut index.external).into_iter().collect();
        index.slices_of_service =
            std::mem::take(&mut index.slices_of_service).into_iter().collect();
    }

    /// Findings of one object, in `validate`'s order.
    pub fn findings_of(&self, object: &Object) -> &[Finding] {
        self.findings.get(object).map_or(&[], Vec::as_slice)
    }

    /// Every finding, in `validate`'s order (kind, object, then field order).
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.values().flatten()
    }

    fn set_findings(&mut self, object: Object, findings: Vec<Finding>) {
        if findings.is_empty() {
            self.findings.remove(&object);
        } else {
            self.findings.insert(object, findings);
        }
    }

    /// The objects reading what `touched` names.
    fn collect(&self, touched: &Touched, all_slices: bool, affected: &mut BTreeSet<Object>) {
        let index = &self.index;
        let services = touched
            .node_ports
            .iter()
            .filter_map(|claim| index.node_ports.get(claim))
            .flat_map(Claims::keys)
            .chain(touched.cluster_ips.iter().filter_map(|ip| index.cluster_ips.get(ip)).flatten())
            .chain(touched.owned.iter().filter_map(|ip| index.external.get(ip)).flatten())
            .chain(touched.services.iter().filter(|key| self.services.contains_key(&***key)));
        affected.extend(services.map(|key| (ObjectKind::Service, ObjectKey::clone(key))));
        let slice = |key: &Key| (ObjectKind::EndpointSlice, ObjectKey::clone(key));
        if all_slices {
            affected.extend(self.slices.keys().map(slice));
            return;
        }
        let of_services = (touched.slices_of_service.iter())
            .filter_map(|service| index.slices_of_service.get(service))
            .flatten();
        affected.extend(of_services.map(slice));
        // A Node comes or goes rarely: a scan of the slices costs less than an index of them
        // by node (each slice key once per node it names).
        if !touched.nodes.is_empty() {
            let naming = self.slices.iter().filter(|(_, facts)| {
                facts.nodes.iter().flatten().any(|node| touched.nodes.contains(&***node))
            });
            affected.extend(naming.map(|(key, _)| slice(key)));
        }
    }

    fn load_balancing_objects(&self) -> impl Iterator<Item = Object> + '_ {
        let state = &self.load_balancing;
        let pools = state.ip_pools.keys().map(|k| (ObjectKind::IPPool, k.clone()));
        let peers = state.bgp_peers.keys().map(|k| (ObjectKind::BGPPeer, k.clone()));
        let ads =
            state.bgp_advertisements.keys().map(|k| (ObjectKind::BGPAdvertisement, k.clone()));
        let l2 = state.l2_advertisements.keys().map(|k| (ObjectKind::L2Advertisement, k.clone()));
        pools.chain(peers).chain(ads).chain(l2)
    }

    /// Validates one Service, EndpointSlice or Node again: its own rules' findings stay, the
    /// cross-object ones are found again in `validate`'s order.
    fn validate_object(&mut self, object: &Object) {
        let (kind, key) = object;
        let own = match kind {
            ObjectKind::Service => self.services.get(key).map(|facts| facts.own),
            ObjectKind::EndpointSlice => self.slices.get(key).map(|facts| facts.own),
            ObjectKind::Node => self.nodes.get(key).map(|facts| facts.own),
            _ => None,
        };
        let Some(own) = own else {
            self.findings.remove(object);
            return;
        };
        let mut findings = self.findings.remove(object).unwrap_or_default();
        findings.truncate(own);
        match kind {
            ObjectKind::Service => self.service_rules(key, &mut findings),
            ObjectKind::EndpointSlice => self.slice_rules(key, &mut findings),
            _ => {}
        }
        self.set_findings(object.clone(), findings);
    }

    /// `cluster.rs`'s rules for one Service, read from the indexes.
    fn service_rules(&self, key: &ObjectKey, findings: &mut Vec<Finding>) {
        let Some(facts) = self.services.get(key) else { return };
        let mut report = Report { kind: ObjectKind::Service, object: key, findings };
        for (port, protocol, field, what) in &facts.node_ports {
            let claims = self.index.node_ports.get(&(*port, protocol.clone()));
            if let Some((owner, owner_field)) = claims.and_then(Claims::first)
                && **owner != *key
            {
                let problem = Problem::NodePortCollision {
                    what,
                    port: *port,
                    protocol: protocol.clone(),
                    other: ObjectKey::clone(owner),
                    other_field: owner_field.clone(),
                };
                report.error(field.clone(), problem);
            }
        }
        let mut seen = BTreeSet::new();
        for &(i, ip) in &facts.cluster_ips {
            let first = seen.insert(ip);
            if let Some(owner) = self.index.cluster_ips.get(&ip).and_then(KeySet::first)
                && (**owner != *key || !first)
            {
                let problem = Problem::ClusterIpCollision { ip, other: ObjectKey::clone(owner) };
                report.error(format!("spec.clusterIPs[{i}]"), problem);
            }
        }
        for (field, ip) in &facts.external {
            let ip = *ip;
            let owner = match self.index.node_addresses.get(&ip).and_then(KeySet::first) {
                Some(node) => Some((node, format!("an address of Node {}", node.name))),
                None => (self.index.service_addresses.get(&ip).and_then(KeySet::first))
                    .map(|owner| (&**owner, format!("the cluster IP of Service {owner}"))),
            };
            if let Some((owner, what)) = owner
                && owner != key
            {
                report.error(field.clone(), Problem::AddressTaken { ip, owner: what });
            }
        }
        if let Some(ports) = &facts.ports {
            self.service_joins(key, ports, report);
        }
    }

    /// The end of `cluster::check_joins` for one Service: slices and their port names.
    fn service_joins(&self, key: &ObjectKey, ports: &[Port], mut report: Report<'_>) {
        let Some(slices) = self.index.slices_of_service.get(key) else {
            report.warning(
                "spec",
                Problem::Rule(format!(
                    "no EndpointSlice is labelled {SERVICE_NAME_LABEL}={}: connections will be refused",
                    key.name
                )),
            );
            return;
        };
        let offered: BTreeSet<(&str, &str)> = slices
            .iter()
            .filter_map(|slice| self.slices.get(slice))
            .flat_map(|slice| slice.ports.iter())
            .map(|(name, protocol)| (&**name, &**protocol))
            .collect();
        if offered.is_empty() {
            return;
        }
        for (i, (name, protocol)) in ports.iter().enumerate() {
            if !offered.contains(&(&**name, &**protocol)) {
                let offered: Vec<String> =
                    offered.iter().map(|(n, p)| format!("{n:?}/{p}")).collect();
                report.warning(
                    format!("spec.ports[{i}]"),
                    Problem::Rule(format!(
                        "no EndpointSlice of this Service has a port named {name:?}/{protocol} \
                         (they have {}): this port has no backends",
                        offered.join(", ")
                    )),
                );
            }
        }
    }

    /// The start of `cluster::check_joins` for one EndpointSlice: its Service and its nodes.
    fn slice_rules(&self, key: &ObjectKey, findings: &mut Vec<Finding>) {
        let Some(facts) = self.slices.get(key) else { return };
        let mut report = Report { kind: ObjectKind::EndpointSlice, object: key, findings };
        let label = format!("metadata.labels[{SERVICE_NAME_LABEL}]");
        match &facts.service {
            None => report.warning(
                label,
                Problem::Rule("missing: this EndpointSlice belongs to no Service".to_owned()),
            ),
            Some(service) if !self.services.contains_key(service) => {
                report.warning(label, Problem::Rule(format!("Service {service} does not exist")))
            }
            Some(_) => {}
        }
        if !self.nodes.is_empty() {
            for (i, node) in facts.nodes.iter().enumerate() {
                if let Some(node) = node.as_deref().map(|n| &**n)
                    && !self.nodes.contains_key(&ObjectKey::cluster(node))
                {
                    report.warning(
                        format!("endpoints[{i}].nodeName"),
                        Problem::Rule(format!("Node {node} does not exist")),
                    );
                }
            }
        }
    }
}

fn is_load_balancing(kind: ObjectKind) -> bool {
    matches!(
        kind,
        ObjectKind::IPPool
            | ObjectKind::BGPPeer
            | ObjectKind::BGPAdvertisement
            | ObjectKind::L2Advertisement
    )
}

impl Touched {
    fn service(&mut self, facts: &ServiceFacts) {
        let claims = facts.node_ports.iter().map(|(port, protocol, ..)| (*port, protocol.clone()));
        self.node_ports.extend(claims);
        self.cluster_ips.extend(facts.cluster_ips.iter().map(|(_, ip)| *ip));
        self.owned.extend(facts.addresses.iter().copied());
    }
}

impl Index {
    fn add_service(&mut self, key: &Key, facts: &ServiceFacts) {
        for (port, protocol, field, _) in &facts.node_ports {
            let claims = self.node_ports.entry((*port, protocol.clone())).or_default();
            claims.insert(Arc::clone(key), field.clone());
        }
        let cluster_ips: Vec<IpAddr> = facts.cluster_ips.iter().map(|(_, ip)| *ip).collect();
        add_all(&mut self.cluster_ips, &cluster_ips, key);
        add_all(&mut self.service_addresses, &facts.addresses, key);
        let external: Vec<IpAddr> = facts.external.iter().map(|(_, ip)| *ip).collect();
        add_all(&mut self.external, &external, key);
    }

    fn remove_service(&mut self, key: &ObjectKey, facts: &ServiceFacts) {
        for (port, protocol, ..) in &facts.node_ports {
            let claim = (*port, protocol.clone());
            if let Some(claims) = self.node_ports.get_mut(&claim) {
                claims.remove(key);
                if claims.is_empty() {
                    self.node_ports.remove(&claim);
                }
            }
        }
        let cluster_ips: Vec<IpAddr> = facts.cluster_ips.iter().map(|(_, ip)| *ip).collect();
        remove_all(&mut self.cluster_ips, &cluster_ips, key);
        remove_all(&mut self.service_addresses, &facts.addresses, key);
        let external: Vec<IpAddr> = facts.external.iter().map(|(_, ip)| *ip).collect();
        remove_all(&mut self.external, &external, key);
    }
}

fn add_all<K: Ord + Clone, V: Ord + Clone>(
    index: &mut BTreeMap<K, KeySet<V>>,
    entries: &[K],
    key: &V,
) {
    for entry in entries {
        index.entry(entry.clone()).or_default().insert(key.clone());
    }
}

fn remove_all<K: Ord, V: Ord + Borrow<ObjectKey>>(
    index: &mut BTreeMap<K, KeySet<V>>,
    entries: &[K],
    key: &ObjectKey,
) {
    for entry in entries {
        if let Some(keys) = index.get_mut(entry) {
            keys.remove(key);
            if keys.is_empty() {
                index.remove(entry);
            }
        }
    }
}

/// What `cluster.rs` reads of a Service, in the order it reads it.
fn service_facts(
    service: &Service,
    options: &ValidationOptions,
    own: usize,
    interner: &mut Interner,
) -> ServiceFacts {
    let mut facts = ServiceFacts { own, ..ServiceFacts::default() };
    let Some(spec) = service.spec.as_ref() else { return facts };
    if service_type(spec) != "ExternalName" && !is_headless(spec) {
        let ports = spec.ports.iter().flatten().map(|port| {
            let protocol = interner.intern(port.protocol.as_deref().unwrap_or("TCP"));
            (interner.intern(port.name.as_deref().unwrap_or_default()), protocol)
        });
        facts.ports = Some(ports.collect());
    }
    if matches!(service_type(spec), "NodePort" | "LoadBalancer") {
        let ports = spec.ports.iter().flatten().enumerate().filter_map(|(i, port)| {
            let node_port = port.node_port.filter(|p| in_range(options.node_port_range, *p))?;
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
            Some((node_port, protocol, format!("spec.ports[{i}].nodePort"), "NodePort"))
        });
        let health = (spec.health_check_node_port)
            .filter(|p| in_range(options.node_port_range, *p))
            .map(|port| {
                let field = "spec.healthCheckNodePort".to_owned();
                (port, "TCP".to_owned(), field, "healthCheckNodePort")
            });
        let mut own = BTreeSet::new();
        for claim in ports.chain(health) {
            if own.insert((claim.0, claim.1.clone())) {
                facts.node_ports.push(claim);
            }
        }
    }
    let listed: Vec<&String> = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().collect(),
        _ => spec.cluster_ip.iter().collect(),
    };
    facts.cluster_ips = (listed.into_iter().enumerate())
        .filter_map(|(i, text)| Some((i, text.parse().ok()?)))
        .collect();
    let all = spec.cluster_ips.iter().flatten().chain(spec.cluster_ip.iter());
    facts.addresses = all.filter_map(|text| text.parse().ok()).collect();
    let external = (spec.external_ips.iter().flatten().enumerate())
        .map(|(i, ip)| (format!("spec.externalIPs[{i}]"), ip.as_str()));
    let ingress = (service.status.as_ref())
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, entry)| {
            Some((format!("status.loadBalancer.ingress[{i}].ip"), entry.ip.as_deref()?))
        });
    facts.external = (external.chain(ingress))
        .filter_map(|(field, text)| Some((field, text.trim().parse().ok()?)))
        .collect();
    // Kept as long as the Service: a filtered collect or a first push reserves room for four
    // (issue 20: 1.5 MB of spare capacity at 10,000 Services of one port and address).
    facts.node_ports.shrink_to_fit();
    facts.cluster_ips.shrink_to_fit();
    facts.addresses.shrink_to_fit();
    facts.external.shrink_to_fit();
    facts
}

fn slice_facts(
    key: &ObjectKey,
    slice: &EndpointSlice,
    own: usize,
    interner: &mut Interner,
    node_refs: &mut Interner<Arc<str>>,
    keys: &mut Interner<ObjectKey>,
) -> SliceFacts {
    let label = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
    let service = label
        .filter(|name| !name.is_empty())
        .map(|name| keys.intern_value(ObjectKey::new(key.namespace.clone(), name.clone())));
    let ports = (slice.ports.iter().flatten())
        .map(|p| {
            let name = interner.intern(p.name.as_deref().unwrap_or_default());
            (name, interner.intern(p.protocol.as_deref().unwrap_or("TCP")))
        })
        .collect();
    let nodes: Box<[Option<NodeRef>]> = if slice.endpoints.iter().all(|e| e.node_name.is_none()) {
        Box::default()
    } else {
        (slice.endpoints.iter())
            .map(|e| {
                e.node_name.as_deref().map(|node| node_refs.intern_value(interner.intern(node)))
            })
            .collect()
    };
    SliceFacts { own, service, ports, nodes }
}

fn node_addresses(node: &Node) -> Vec<IpAddr> {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    addresses.into_iter().flatten().filter_map(|a| a.address.trim().parse().ok()).collect()
}
