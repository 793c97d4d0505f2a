//! The incremental, sans-IO engine: keeps the parsed cluster and the desired state of one node,
//! and recomputes only the Services a change touches.
//!
//! Two Services may claim the same frontend key (a NodePort or externalIP collision the API
//! server would have refused, but a manifest directory can hold). The Service with the smallest
//! namespace/name owns the key; the others wait as contenders and take over, in order, when the
//! owner lets go. The result is therefore independent of the order changes arrive in.
//!
//! That rule is for equals. An externalIP or LoadBalancer IP never takes a cluster IP of another
//! Service or an address of this node, whatever the names ([`crate::ownership`]): such an
//! address is refused before any key is claimed, and served again once its owner lets go.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;

use crate::config::ProxyConfig;
use crate::desired::{DesiredState, Frontend, FrontendKey, FrontendKind, StateDiff};
use crate::frontends::service_frontends;
use crate::input::{Change, ClusterState, ObjectKey};
use crate::keyset::KeySet;
use crate::ownership::{Refusal, RefusalReason};
use crate::parse::{
    Interners, NodeFacts, ServiceFacts, SliceFacts, node_addresses, node_eligible, node_facts,
    service_facts, slice_facts,
};
use rustc_hash::FxHashMap;

/// Old values of the frontend keys a change touched, to compute its difference at the end.
type Touched = BTreeMap<FrontendKey, Option<Frontend>>;

/// The desired state of one node, kept up to date change by change.
#[derive(Debug, Clone)]
pub struct NodeModel {
    config: ProxyConfig,
    node: NodeFacts,
    /// Services this proxy serves (others are not kept). The facts are boxed: a hash table has
    /// up to twice as many buckets as entries, and a bucket holding the facts themselves took
    /// 200 bytes (issue 20: 6 MB for these two maps at 10,000 Services, 4 boxed).
    services: FxHashMap<ObjectKey, Box<ServiceFacts>>,
    slices: FxHashMap<ObjectKey, Box<SliceFacts>>,
    /// Service → its EndpointSlices, by the `kubernetes.io/service-name` label. Ordered so that
    /// duplicate endpoints resolve the same way every time.
    slices_by_service: FxHashMap<ObjectKey, KeySet<ObjectKey>>,
    /// Service → the frontend keys it claims (owned or contended).
    claims: FxHashMap<ObjectKey, Vec<FrontendKey>>,
    /// Frontend key → Services claiming it that do not own it.
    contenders: FxHashMap<FrontendKey, KeySet<ObjectKey>>,
    desired: DesiredState,
    interners: Interners,
    /// Terminating endpoints (address, port) per EndpointSlice that has any.
    terminating: FxHashMap<ObjectKey, Vec<(IpAddr, u16)>>,
    /// Whether this node may get traffic from external load balancers ([`node_eligible`]).
    eligible: bool,
    /// Cluster IP → the served Services that have it.
    cluster_ip_owners: FxHashMap<IpAddr, KeySet<ObjectKey>>,
    /// Node address → the Nodes that have it; and each Node's addresses.
    node_address_owners: FxHashMap<IpAddr, KeySet<String>>,
    node_addresses: FxHashMap<String, Vec<IpAddr>>,
    /// Each Node's primary address per family (DSR encapsulates to them).
    node_primaries: FxHashMap<String, crate::desired::PrimaryAddresses>,
    /// externalIP or LoadBalancer IP → the Services that ask for it (to recompute them when a
    /// cluster IP or node address appears or goes).
    external_claims: FxHashMap<IpAddr, KeySet<ObjectKey>>,
    /// Service → the frontend addresses it asked for and does not get.
    refusals: FxHashMap<ObjectKey, Vec<Refusal>>,
}

impl NodeModel {
    /// A model that has seen no objects yet.
    pub fn new(config: ProxyConfig) -> Self {
        Self {
            node: node_facts(&config, None),
            config,
            services: FxHashMap::default(),
            slices: FxHashMap::default(),
            slices_by_service: FxHashMap::default(),
            claims: FxHashMap::default(),
            contenders: FxHashMap::default(),
            desired: DesiredState::default(),
            interners: Interners::default(),
            terminating: FxHashMap::default(),
            eligible: node_eligible(None),
            cluster_ip_owners: FxHashMap::default(),
            node_address_owners: FxHashMap::default(),
            node_addresses: FxHashMap::default(),
            node_primaries: FxHashMap::default(),
            external_claims: FxHashMap::default(),
            refusals: FxHashMap::default(),
        }
    }

    /// A model fed a whole snapshot at once.
    pub fn from_state(config: ProxyConfig, state: &ClusterState) -> Self {
        let mut model = Self::new(config);
        model.services.reserve(state.services.len());
        model.slices.reserve(state.endpoint_slices.len());
        model.slices_by_service.reserve(state.services.len());
        model.claims.reserve(state.services.len());
        let own_node = state.nodes.get(&ObjectKey::cluster(model.config.node_name.clone()));
        model.node = node_facts(&model.config, own_node);
        model.eligible = node_eligible(own_node);
        for (key, node) in &state.nodes {
            model.index_node(&key.name, Some(node));
        }
        for (key, slice) in &state.endpoint_slices {
            let facts = slice_facts(&model.config, &mut model.interners, key, slice);
            model.index_terminating(key, Some(&facts));
            if let Some(service) = &facts.service {
                model.index_slice(key, service);
            }
            model.slices.insert(key.clone(), Box::new(facts));
        }
        let facts: Vec<(&ObjectKey, ServiceFacts)> = state
            .services
            .iter()
            .filter_map(|(key, service)| Some((key, service_facts(&model.config, service)?)))
            .collect();
        for (key, facts) in &facts {
            model.index_addresses(key, None, Some(facts));
        }
        // Bulk path: Services come in name order, so the first to claim a key is the smallest
        // name and owns it; later claimants become contenders.
        for (key, facts) in facts {
            let (frontends, refusals) = model.frontends_of(key, &facts);
            model.set_refusals(key, refusals);
            if !frontends.is_empty() {
                model.claims.insert(key.clone(), frontends.iter().map(|(k, _)| *k).collect());
            }
            for (frontend_key, frontend) in frontends {
                match model.desired.frontends.entry(frontend_key) {
                    Entry::Vacant(slot) => {
                        slot.insert(frontend);
                    }
                    Entry::Occupied(_) => {
                        model.contenders.entry(frontend_key).or_default().insert(frontend.service);
                    }
                }
            }
            model.services.insert(key.clone(), Box::new(facts));
        }
        model
    }

    /// The frontends `service` may have, without looking at collisions of equals, and the
    /// addresses it is refused.
    fn frontends_of(
        &self,
        key: &ObjectKey,
        service: &ServiceFacts,
    ) -> (Vec<(FrontendKey, Frontend)>, Vec<Refusal>) {
        let mut refusals: Vec<Refusal> = service
            .refused
            .iter()
            .map(|(kind, ip, reason)| Refusal {
                service: key.clone(),
                kind: *kind,
                ip: *ip,
                reason: reason.clone(),
            })
            .collect();
        let external = service
            .load_balancer_ips
            .iter()
            .map(|ip| (FrontendKind::LoadBalancer, *ip))
            .chain(service.external_ips.iter().map(|ip| (FrontendKind::ExternalIp, *ip)));
        for (kind, ip) in external {
            if let Some(reason) = self.taken(key, ip) {
                refusals.push(Refusal { service: key.clone(), kind, ip, reason });
            }
        }
        let refused: Vec<IpAddr> =
            refusals.iter().filter(|r| r.kind != FrontendKind::ClusterIp).map(|r| r.ip).collect();
        refusals.sort();
        refusals.dedup();
        let slices: Vec<&SliceFacts> = self
            .slices_by_service
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|slice_key| self.slices.get(slice_key).map(Box::as_ref))
            .collect();
        (service_frontends(key, service, &slices, &self.node, &refused), refusals)
    }

    fn set_refusals(&mut self, key: &ObjectKey, refusals: Vec<Refusal>) {
        if refusals.is_empty() {
            self.refusals.remove(key);
        } else {
            self.refusals.insert(key.clone(), refusals);
        }
    }

    /// Whether `ip`, asked for as an external address by `service`, belongs to someone else.
    fn taken(&self, service: &ObjectKey, ip: IpAddr) -> Option<RefusalReason> {
        if let Some(owner) =
            self.cluster_ip_owners.get(&ip).and_then(|owners| owners.iter().find(|o| *o != service))
        {
            return Some(RefusalReason::ClusterIpOf(owner.clone()));
        }
        let node = self.node_address_owners.get(&ip).and_then(|nodes| nodes.first())?;
        Some(RefusalReason::NodeAddress(node.clone()))
    }

    /// Updates the node address index for Node `name` (`None`: deleted); returns the Services
    /// whose external addresses are among the addresses that came or went.
    fn index_node(&mut self, name: &str, node: Option<&Node>) -> BTreeSet<ObjectKey> {
        let new = node_addresses(node);
        match node.map(crate::desired::PrimaryAddresses::of_node) {
            Some(primary) if primary != crate::desired::PrimaryAddresses::default() => {
                self.node_primaries.insert(name.to_owned(), primary);
            }
            _ => {
                self.node_primaries.remove(name);
            }
        }
        let old = self.node_addresses.remove(name).unwrap_or_default();
        let mut moved = Vec::new();
        for ip in old.iter().filter(|ip| new.binary_search(ip).is_err()) {
            if let Some(set) = self.node_address_owners.get_mut(ip) {
                set.remove(name);
                if set.is_empty() {
                    self.node_address_owners.remove(ip);
                }
            }
            moved.push(*ip);
        }
        for ip in new.iter().filter(|ip| old.binary_search(ip).is_err()) {
            self.node_address_owners.entry(*ip).or_default().insert(name.to_owned());
            moved.push(*ip);
        }
        if !new.is_empty() {
            self.node_addresses.insert(name.to_owned(), new);
        }
        self.claimants(&moved, None)
    }

    /// The Services (other than `except`) asking for one of `ips` as an external address.
    fn claimants(&self, ips: &[IpAddr], except: Option<&ObjectKey>) -> BTreeSet<ObjectKey> {
        ips.iter()
            .filter_map(|ip| self.external_claims.get(ip))
            .flatten()
            .filter(|other| Some(*other) != except)
            .cloned()
            .collect()
    }

    /// Updates the address indexes for a Service going from `old` to `new`; returns the other
    /// Services whose external addresses are cluster IPs that came or went.
    fn index_addresses(
        &mut self,
        key: &ObjectKey,
        old: Option<&ServiceFacts>,
        new: Option<&ServiceFacts>,
    ) -> BTreeSet<ObjectKey> {
        let cluster = |facts: Option<&ServiceFacts>| -> BTreeSet<IpAddr> {
            facts.into_iter().flat_map(|f| f.cluster_ips.iter().copied()).collect()
        };
        let external = |facts: Option<&ServiceFacts>| -> BTreeSet<IpAddr> {
            facts
                .into_iter()
                .flat_map(|f| f.external_ips.iter().chain(&f.load_balancer_ips).copied())
                .collect()
        };
        let (old_cluster, new_cluster) = (cluster(old), cluster(new));
        let mut moved = Vec::new();
        for ip in old_cluster.difference(&new_cluster) {
            unindex(&mut self.cluster_ip_owners, *ip, key);
            moved.push(*ip);
        }
        for ip in new_cluster.difference(&old_cluster) {
            self.cluster_ip_owners.entry(*ip).or_default().insert(key.clone());
            moved.push(*ip);
        }
        let (old_external, new_external) = (external(old), external(new));
        for ip in old_external.difference(&new_external) {
            unindex(&mut self.external_claims, *ip, key);
        }
        for ip in new_external.difference(&old_external) {
            self.external_claims.entry(*ip).or_default().insert(key.clone());
        }
        self.claimants(&moved, Some(key))
    }

    /// Every frontend address a Service asked for and does not get on this node, sorted.
    pub fn refusals(&self) -> Vec<&Refusal> {
        let mut all: Vec<&Refusal> = self.refusals.values().flatten().collect();
        all.sort();
        all
    }

    /// Rebuilds the desired state's map in one pass; for after a bulk load (the first reading,
    /// a large update). Entries inserted one by one in key order leave a B-tree's nodes a
    /// little over half full (a full node splits into 6 and 5 entries, and the left one gets no
    /// more); built from a sorted sequence, its nodes are full (issue 20: 11,000 frontends took
    /// 3.7 MB inserted one by one). Contents, order and differences are unchanged.
    pub fn compact(&mut self) {
        self.desired.frontends = std::mem::take(&mut self.desired.frontends).into_iter().collect();
    }

    /// Feeds one change; returns how the desired state changed.
    pub fn apply(&mut self, change: Change) -> StateDiff {
        let mut touched = Touched::new();
        match change {
            Change::Service(key, service) => {
                let facts = service.and_then(|s| service_facts(&self.config, &s));
                let old = self.services.get(&key).map(Box::as_ref);
                if old != facts.as_ref() {
                    let old = old.cloned();
                    let affected = self.index_addresses(&key, old.as_ref(), facts.as_ref());
                    match facts {
                        Some(facts) => self.services.insert(key.clone(), Box::new(facts)),
                        None => self.services.remove(&key),
                    };
                    self.recompute(&key, Some(&mut touched));
                    // A cluster IP that came or went decides other Services' external addresses.
                    self.recompute_all(affected.iter(), &mut touched);
                }
            }
            Change::EndpointSlice(key, slice) => {
                let facts = slice.map(|s| slice_facts(&self.config, &mut self.interners, &key, &s));
                if self.slices.get(&key).map(Box::as_ref) == facts.as_ref() {
                    return StateDiff::default();
                }
                self.index_terminating(&key, facts.as_ref());
                let new_service = facts.as_ref().and_then(|f| f.service.clone());
                let old = match facts {
                    Some(facts) => self.slices.insert(key.clone(), Box::new(facts)),
                    None => self.slices.remove(&key),
                };
                let old_service = old.and_then(|o| o.service);
                if let Some(service) = &old_service {
                    self.unindex_slice(&key, service);
                }
                if let Some(service) = &new_service {
                    self.index_slice(&key, service);
                }
                // A relabelled slice moves from one Service to another: both change.
                self.recompute_all(
                    old_service
                        .iter()
                        .chain(new_service.iter().filter(|n| Some(*n) != old_service.as_ref())),
                    &mut touched,
                );
            }
            Change::Node(key, node) => {
                let affected = self.index_node(&key.name, node.as_deref());
                if key.name == self.config.node_name {
                    self.eligible = node_eligible(node.as_deref());
                    self.set_node(node.as_deref(), &mut touched);
                }
                self.recompute_all(affected.iter(), &mut touched);
            }
            // Pools and BGP objects (and the Secrets of BGP passwords, the Namespaces whose labels
            // pools select by) say where addresses come from and who hears of them, never how a
            // node forwards: the data plane follows the Services' status alone.
            Change::IPPool(..)
            | Change::BGPPeer(..)
            | Change::BGPAdvertisement(..)
            | Change::L2Advertisement(..)
            | Change::Secret(..)
            | Change::Namespace(..) => {}
        }
        self.finish(touched)
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    pub fn desired(&self) -> &DesiredState {
        &self.desired
    }

    /// This node's addresses that carry NodePorts (sorted), from its Node object and
    /// [`ProxyConfig::node_port_addresses`]. A data plane that matches NodePorts by port alone
    /// (a wildcard frontend) needs this list; the NodePort frontends in [`Self::desired`] are the
    /// same ports expanded over it.
    pub fn node_port_addresses(&self) -> &[IpAddr] {
        &self.node.node_port_addresses
    }

    /// This node's own address per family: what traffic to a backend on another node is
    /// SNATed to, so the replies come back through this node.
    pub fn primary_addresses(&self) -> crate::desired::PrimaryAddresses {
        self.node.primary
    }

    /// The primary addresses (per family) of every Node but this one, by name: where DSR
    /// sends a remote backend's packets, and the sources this node accepts DSR packets from.
    pub fn other_node_primaries(
        &self,
    ) -> impl Iterator<Item = (&str, crate::desired::PrimaryAddresses)> + '_ {
        self.node_primaries
            .iter()
            .filter(|(name, _)| name.as_str() != self.config.node_name.as_str())
            .map(|(name, primary)| (name.as_str(), *primary))
    }

    /// This node's zone (label `topology.kubernetes.io/zone` of its Node object), if known.
    pub fn zone(&self) -> Option<&str> {
        self.node.zone.as_deref()
    }

    /// Every endpoint (address, port) an EndpointSlice marks terminating (KEP-1669): a
    /// backend that leaves the frontends while terminating keeps its existing connections (and
    /// its per-packet flows) until the endpoint is gone.
    pub fn terminating_endpoints(&self) -> HashSet<(IpAddr, u16)> {
        self.terminating.values().flatten().copied().collect()
    }

    /// Whether any EndpointSlice marks an endpoint with this address terminating.
    pub fn is_terminating(&self, ip: IpAddr) -> bool {
        self.terminating.values().flatten().any(|(address, _)| *address == ip)
    }

    /// Whether this node may get traffic from external load balancers: its Node object exists
    /// and is not going away (kube-proxy's `nodeEligible` on /healthz).
    pub fn node_eligible(&self) -> bool {
        self.eligible
    }

    fn index_terminating(&mut self, key: &ObjectKey, facts: Option<&SliceFacts>) {
        let endpoints: Vec<(IpAddr, u16)> = facts
            .into_iter()
            .flat_map(|slice| {
                slice
                    .endpoints
                    .iter()
                    .filter(|e| e.terminating())
                    .flat_map(|e| slice.ports.iter().map(move |port| (e.ip, port.port)))
            })
            .collect();
        if endpoints.is_empty() {
            self.terminating.remove(key);
        } else {
            self.terminating.insert(key.clone(), endpoints);
        }
    }

    /// This node's addresses changed or its zone did: every Service may be affected.
    fn set_node(&mut self, node: Option<&Node>, touched: &mut Touched) {
        let facts = node_facts(&self.config, node);
        if facts == self.node {
            return;
        }
        self.node = facts;
        let mut keys: Vec<ObjectKey> =
            self.claims.keys().chain(self.services.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            self.recompute(&key, Some(touched));
        }
    }

    fn index_slice(&mut self, key: &ObjectKey, service: &ObjectKey) {
        match self.slices_by_service.get_mut(service) {
            Some(set) => set.insert(key.clone()),
            None => self.slices_by_service.entry(service.clone()).or_default().insert(key.clone()),
        };
    }

    fn unindex_slice(&mut self, key: &ObjectKey, service: &ObjectKey) {
        if let Some(set) = self.slices_by_service.get_mut(service) {
            set.remove(key);
            if set.is_empty() {
                self.slices_by_service.remove(service);
            }
        }
    }

    fn recompute_all<'k>(
        &mut self,
        services: impl Iterator<Item = &'k ObjectKey>,
        touched: &mut Touched,
    ) {
        for service in services {
            self.recompute(service, Some(touched));
        }
    }

    /// Recomputes one Service's frontends and settles ownership of every key it claimed or
    /// claims now. With `touched`, records the previous value of each key it changes.
    fn recompute(&mut self, key: &ObjectKey, mut touched: Option<&mut Touched>) {
        let (new_frontends, refusals) = match self.services.get(key) {
            Some(service) => self.frontends_of(key, service),
            None => (Vec::new(), Vec::new()),
        };
        self.set_refusals(key, refusals);
        let old_keys = self.claims.remove(key).unwrap_or_default();
        let mut successors: Vec<ObjectKey> = Vec::new();

        // Let go of keys no longer claimed.
        for frontend_key in
            old_keys.iter().filter(|k| new_frontends.binary_search_by_key(k, |(nk, _)| nk).is_err())
        {
            let owned = self.desired.frontends.get(frontend_key).is_some_and(|f| &f.service == key);
            if owned {
                remember(&mut touched, &self.desired, frontend_key);
                self.desired.frontends.remove(frontend_key);
                if let Some(next) = self.pop_contender(frontend_key) {
                    successors.push(next);
                }
            } else {
                self.drop_contender(frontend_key, key);
            }
        }

        // Claim the current ones.
        let mut new_keys = Vec::with_capacity(new_frontends.len());
        for (frontend_key, frontend) in new_frontends {
            new_keys.push(frontend_key);
            match self.desired.frontends.get(&frontend_key) {
                Some(current) if current.service == *key => {
                    if *current != frontend {
                        remember(&mut touched, &self.desired, &frontend_key);
                        self.desired.frontends.insert(frontend_key, frontend);
                    }
                }
                Some(current) if current.service < *key => {
                    self.contenders.entry(frontend_key).or_default().insert(key.clone());
                }
                Some(current) => {
                    let previous_owner = current.service.clone();
                    remember(&mut touched, &self.desired, &frontend_key);
                    self.drop_contender(&frontend_key, key);
                    self.contenders.entry(frontend_key).or_default().insert(previous_owner);
                    self.desired.frontends.insert(frontend_key, frontend);
                }
                None => {
                    remember(&mut touched, &self.desired, &frontend_key);
                    self.drop_contender(&frontend_key, key);
                    self.desired.frontends.insert(frontend_key, frontend);
                }
            }
        }
        if !new_keys.is_empty() {
            self.claims.insert(key.clone(), new_keys);
        }

        for successor in successors {
            self.recompute(&successor, touched.as_deref_mut());
        }
    }

    fn pop_contender(&mut self, frontend_key: &FrontendKey) -> Option<ObjectKey> {
        let set = self.contenders.get_mut(frontend_key)?;
        let next = set.pop_first();
        if set.is_empty() {
            self.contenders.remove(frontend_key);
        }
        next
    }

    fn drop_contender(&mut self, frontend_key: &FrontendKey, service: &ObjectKey) {
        if let Some(set) = self.contenders.get_mut(frontend_key) {
            set.remove(service);
            if set.is_empty() {
                self.contenders.remove(frontend_key);
            }
        }
    }

    fn finish(&self, touched: Touched) -> StateDiff {
        let mut diff = StateDiff::default();
        for (key, old) in touched {
            match (old, self.desired.frontends.get(&key)) {
                (Some(old), Some(new)) if old == *new => {}
                (None, None) => {}
                (_, Some(new)) => diff.upserted.push((key, new.clone())),
                (Some(_), None) => diff.removed.push(key),
            }
        }
        diff
    }
}

/// Removes `key` from the set of `ip`, and the set when it empties.
fn unindex(index: &mut FxHashMap<IpAddr, KeySet<ObjectKey>>, ip: IpAddr, key: &ObjectKey) {
    if let Some(set) = index.get_mut(&ip) {
        set.remove(key);
        if set.is_empty() {
            index.remove(&ip);
        }
    }
}

/// Records the value of `key` before its first change in this batch.
fn remember(touched: &mut Option<&mut Touched>, desired: &DesiredState, key: &FrontendKey) {
    if let Some(touched) = touched {
        touched.entry(*key).or_insert_with(|| desired.frontends.get(key).cloned());
    }
}
