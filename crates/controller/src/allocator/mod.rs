//! The allocation core, sans-IO: Services, IPPools and namespace labels in; addresses, Service
//! conditions, pool status and Events out. No clock, no API server, no files.
//!
//! State is the addresses each Service holds. A Service's status is read once, when the core
//! first sees the Service (after a restart that is every Service, in age order, so the older
//! claim wins); from then on the core's own record is what counts and its status is only
//! written. A claim never takes an address another Service already holds, whatever the order
//! Services arrive in: the holder keeps it and the claimant gets another (`AddressConflict`). Held addresses never move because of pools: a pool that shrinks, is disabled or goes
//! away leaves its holders alone (they get a warning). They go when the Service goes, stops
//! being a LoadBalancer of our class, or asks for something else.

mod free;
mod outcome;
mod pool;
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use switchyard_model::crd::{IPPool, is_buggy};
use switchyard_model::{Change, ObjectKey};

pub use outcome::{
    ALLOCATED_CONDITION, Effects, Event, Outcome, PoolReport, Reason, ServiceStatus, Subject,
    VALID_CONDITION,
};
pub use service::{
    ALLOW_SHARED_IP_ANNOTATION, Family, IP_POOL_ANNOTATION, LOAD_BALANCER_IPS_ANNOTATION,
};

use pool::Pool;
use service::{ServiceFacts, Wants, sharing_conflict};

/// One Service the core knows.
#[derive(Debug, Clone)]
struct Tracked {
    facts: ServiceFacts,
    /// Addresses held, at most one per family.
    held: Vec<IpAddr>,
    /// Status addresses not yet considered (read when the Service was first seen).
    claims: Vec<IpAddr>,
    outcome: Option<Outcome>,
}

/// Who holds an address, and which pool it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub address: IpAddr,
    /// `None`: in no pool (the pool shrank or went away).
    pub pool: Option<String>,
    pub services: Vec<ObjectKey>,
}

/// A failed attempt to get one address.
struct Failure {
    reason: Reason,
    message: String,
}

fn fail(reason: Reason, message: String) -> Failure {
    Failure { reason, message }
}

/// The LoadBalancer address allocator.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    /// Our loadBalancerClass: Services without a class or with this one are ours.
    class: Option<String>,
    pool_objects: BTreeMap<String, IPPool>,
    pools: BTreeMap<String, Pool>,
    pools_changed: bool,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    services: BTreeMap<ObjectKey, Tracked>,
    holders: BTreeMap<IpAddr, BTreeSet<ObjectKey>>,
    /// Addresses held by Services with a sharing key, by key.
    shared: BTreeMap<String, BTreeSet<IpAddr>>,
    /// Services to look at in the next reconcile.
    dirty: BTreeSet<ObjectKey>,
    /// Services of ours without every address they want, retried when an address is freed.
    waiting: BTreeSet<ObjectKey>,
    /// Services whose status carries ours but that are not ours any more.
    released: BTreeSet<ObjectKey>,
    freed: bool,
    reported_pools: BTreeMap<String, PoolReport>,
}

impl Allocator {
    /// An allocator for `class` (`--load-balancer-class`; Services without a class are ours
    /// either way).
    pub fn new(class: Option<String>) -> Self {
        Self { class, ..Self::default() }
    }

    /// Takes in one change; kinds other than Service, IPPool and Namespace are ignored.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Service(key, service) => {
                let facts =
                    service.as_deref().map(|s| ServiceFacts::read(s, self.class.as_deref()));
                self.set_service(key, facts);
            }
            Change::IPPool(key, pool) => {
                match pool {
                    Some(pool) => self.pool_objects.insert(key.name.to_string(), (**pool).clone()),
                    None => self.pool_objects.remove(key.name.as_str()),
                };
                self.pools_changed = true;
            }
            Change::Namespace(key, namespace) => {
                let labels =
                    namespace.as_ref().map(|ns| ns.metadata.labels.clone().unwrap_or_default());
                self.set_namespace(&key.name, labels);
            }
            _ => {}
        }
    }

    /// Sets (or, with `None`, forgets) the labels of a namespace, for `namespaceSelector`.
    pub fn set_namespace(&mut self, name: &str, labels: Option<BTreeMap<String, String>>) {
        let changed = match labels {
            Some(labels) => self.namespaces.insert(name.to_owned(), labels.clone()) != Some(labels),
            None => self.namespaces.remove(name).is_some(),
        };
        if changed {
            let inside = self.services.keys().filter(|k| k.namespace == name).cloned();
            self.dirty.extend(inside.collect::<Vec<_>>());
        }
    }

    fn set_service(&mut self, key: &ObjectKey, facts: Option<ServiceFacts>) {
        let Some(facts) = facts else {
            if let Some(tracked) = self.services.remove(key) {
                for address in tracked.held {
                    self.release(key, address, tracked.facts.wants.as_ref());
                }
            }
            self.waiting.remove(key);
            self.dirty.remove(key);
            self.released.remove(key);
            return;
        };
        match self.services.get_mut(key) {
            Some(tracked) => {
                let same = tracked.facts.created == facts.created
                    && tracked.facts.labels == facts.labels
                    && tracked.facts.wants == facts.wants;
                let mut held = tracked.held.clone();
                let mut shown = facts.status_ips.clone();
                held.sort();
                shown.sort();
                if !same || held != shown {
                    self.dirty.insert(key.clone());
                }
                tracked.facts = facts;
            }
            None => {
                let claims =
                    if facts.wants.is_some() { facts.status_ips.clone() } else { Vec::new() };
                self.services.insert(
                    key.clone(),
                    Tracked { facts, held: Vec::new(), claims, outcome: None },
                );
                self.dirty.insert(key.clone());
            }
        }
    }

    /// Decides everything that changed since the last call.
    pub fn reconcile(&mut self) -> Effects {
        let mut effects = Effects::default();
        if self.pools_changed {
            self.rebuild_pools();
            self.dirty.extend(self.services.keys().cloned().collect::<Vec<_>>());
        }
        let dirty: Vec<ObjectKey> = std::mem::take(&mut self.dirty).into_iter().collect();
        for key in &dirty {
            self.drop_unwanted(key);
        }
        let mut order: BTreeSet<ObjectKey> = dirty.iter().cloned().collect();
        if std::mem::take(&mut self.freed) {
            order.extend(self.waiting.iter().cloned());
        }
        let mut order: Vec<(Option<_>, ObjectKey)> = order
            .into_iter()
            .filter_map(|k| self.services.get(&k).map(|t| (t.facts.created.clone(), k)))
            .collect();
        order.sort();
        for (_, key) in &order {
            self.allocate(key, &mut effects.events);
        }
        for (_, key) in &order {
            if let Some(status) = self.status_of(key) {
                effects.services.push(status);
            }
        }
        let all_pools = std::mem::take(&mut self.pools_changed);
        self.report_pools(&mut effects, all_pools);
        effects
    }

    fn rebuild_pools(&mut self) {
        self.pools = pool::build(&self.pool_objects);
        let addresses: Vec<IpAddr> = self.holders.keys().copied().collect();
        for address in addresses {
            if let Some(pool) = self.pool_of_mut(address) {
                pool.free(Family::of(address)).take(address);
            }
        }
    }

    fn pool_of(&self, address: IpAddr) -> Option<&Pool> {
        self.pools.values().find(|p| p.contains(address))
    }

    fn pool_of_mut(&mut self, address: IpAddr) -> Option<&mut Pool> {
        self.pools.values_mut().find(|p| p.contains(address))
    }

    fn hold(&mut self, key: &ObjectKey, address: IpAddr, wants: &Wants) {
        let holders = self.holders.entry(address).or_default();
        if holders.is_empty()
            && let Some(pool) = self.pools.values_mut().find(|p| p.contains(address))
        {
            pool.free(Family::of(address)).take(address);
        }
        holders.insert(key.clone());
        if let Some(sharing) = &wants.sharing_key {
            self.shared.entry(sharing.clone()).or_default().insert(address);
        }
        if let Some(tracked) = self.services.get_mut(key) {
            tracked.held.push(address);
        }
    }

    fn release(&mut self, key: &ObjectKey, address: IpAddr, wants: Option<&Wants>) {
        if let Some(tracked) = self.services.get_mut(key) {
            tracked.held.retain(|a| *a != address);
        }
        let Some(holders) = self.holders.get_mut(&address) else { return };
        holders.remove(key);
        let remaining: Vec<ObjectKey> = holders.iter().cloned().collect();
        if remaining.is_empty() {
            self.holders.remove(&address);
            if let Some(pool) = self.pool_of_mut(address) {
                pool.free(Family::of(address)).give_back(address);
            }
            self.freed = true;
        }
        if let Some(sharing) = wants.and_then(|w| w.sharing_key.as_ref()) {
            let still_shared = remaining.iter().any(|k| {
                self.services
                    .get(k)
                    .and_then(|t| t.facts.wants.as_ref())
                    .and_then(|w| w.sharing_key.as_ref())
                    == Some(sharing)
            });
            if !still_shared && let Some(set) = self.shared.get_mut(sharing) {
                set.remove(&address);
            }
        }
    }

    /// Releases what a changed Service no longer wants: everything when it is not ours, an
    /// address of a family it dropped, one that differs from its request or pool, one it may no
    /// longer share.
    fn drop_unwanted(&mut self, key: &ObjectKey) {
        let Some(tracked) = self.services.get(key) else { return };
        let wants = tracked.facts.wants.clone();
        let mut unwanted = Vec::new();
        for &address in &tracked.held {
            let keep = wants.as_ref().is_some_and(|w| {
                let family = Family::of(address);
                w.families.contains(&family)
                    && w.requested_of(family).is_none_or(|r| r == address)
                    && w.pool
                        .as_ref()
                        .is_none_or(|p| self.pool_of(address).is_some_and(|pool| pool.name == *p))
                    && self.may_share(key, w, address).is_ok()
            });
            if !keep {
                unwanted.push(address);
            }
        }
        if wants.is_none() && (tracked.outcome.is_some() || !tracked.held.is_empty()) {
            self.released.insert(key.clone());
        }
        for address in unwanted {
            self.release(key, address, wants.as_ref());
        }
        if wants.is_none()
            && let Some(tracked) = self.services.get_mut(key)
        {
            tracked.outcome = None;
            tracked.claims.clear();
            self.waiting.remove(key);
        }
    }

    /// Whether `key` may hold `address` next to its current holders.
    fn may_share(&self, key: &ObjectKey, wants: &Wants, address: IpAddr) -> Result<(), String> {
        for holder in self.holders.get(&address).into_iter().flatten().filter(|h| *h != key) {
            let Some(other) = self.services.get(holder).and_then(|t| t.facts.wants.as_ref()) else {
                continue;
            };
            if let Some(reason) = sharing_conflict(wants, other) {
                return Err(format!("{address} is held by Service {holder}: {reason}"));
            }
        }
        Ok(())
    }

    fn namespace_labels(&self, key: &ObjectKey) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.namespaces.get(key.namespace.as_str()).unwrap_or(&EMPTY)
    }

    /// Gives a Service of ours the addresses it lacks, and sets its outcome.
    fn allocate(&mut self, key: &ObjectKey, events: &mut Vec<Event>) {
        let Some(tracked) = self.services.get_mut(key) else { return };
        let Some(wants) = tracked.facts.wants.clone() else { return };
        let claims = std::mem::take(&mut tracked.claims);
        let labels = tracked.facts.labels.clone();
        let previous = tracked.outcome.clone();

        let mut outcome = None;
        let mut fresh = Vec::new();
        let mut conflicts = Vec::new();
        if let Err(message) = &wants.requested {
            outcome = Some(Outcome {
                allocated: false,
                reason: Reason::InvalidRequest,
                message: message.clone(),
            });
        } else {
            for &family in &wants.families {
                if self.holds(key, family) {
                    continue;
                }
                let claim = claims.iter().copied().find(|c| Family::of(*c) == family);
                match self.find(key, &wants, &labels, family, claim, &mut conflicts) {
                    Ok(address) => {
                        self.hold(key, address, &wants);
                        fresh.push(address);
                    }
                    Err(failure) => {
                        outcome = Some(Outcome {
                            allocated: false,
                            reason: failure.reason,
                            message: failure.message,
                        });
                        break;
                    }
                }
            }
        }
        if outcome.is_some() {
            // All or nothing: what this pass took goes back (what was held before stays). That
            // frees nothing anyone was waiting for.
            let freed = self.freed;
            for address in std::mem::take(&mut fresh) {
                self.release(key, address, Some(&wants));
            }
            self.freed = freed;
        }
        let held = self.held_in_order(key, &wants);
        let outcome = outcome.map(|mut o| {
            if !held.is_empty() {
                o.message = format!("{} (keeps {})", o.message, join(&held));
            }
            o
        });
        let outcome = outcome.unwrap_or_else(|| self.held_outcome(&held, &conflicts));
        if outcome.allocated {
            self.waiting.remove(key);
        } else {
            self.waiting.insert(key.clone());
        }
        if outcome.is_warning() && previous.as_ref() != Some(&outcome) {
            events.push(Event {
                subject: Subject::Service(key.clone()),
                warning: true,
                reason: outcome.reason.as_str().to_owned(),
                message: outcome.message.clone(),
            });
        }
        if !fresh.is_empty() {
            events.push(Event {
                subject: Subject::Service(key.clone()),
                warning: false,
                reason: "IPAllocated".to_owned(),
                message: format!("allocated {}", join(&fresh)),
            });
        }
        if let Some(tracked) = self.services.get_mut(key) {
            tracked.outcome = Some(outcome);
        }
    }

    /// The outcome for a Service that has every family it wants.
    fn held_outcome(&self, held: &[IpAddr], conflicts: &[String]) -> Outcome {
        let outside: Vec<IpAddr> =
            held.iter().copied().filter(|a| self.pool_of(*a).is_none()).collect();
        if !outside.is_empty() {
            return Outcome {
                allocated: true,
                reason: Reason::NotInPool,
                message: format!(
                    "{} is in no IPPool any more; the Service keeps it until it releases it",
                    join(&outside)
                ),
            };
        }
        let place = |a: &IpAddr| match self.pool_of(*a) {
            Some(pool) => format!("{a} from IPPool {}", pool.name),
            None => a.to_string(),
        };
        let places: Vec<String> = held.iter().map(place).collect();
        if !conflicts.is_empty() {
            return Outcome {
                allocated: true,
                reason: Reason::AddressConflict,
                message: format!("{}; allocated {}", conflicts.join("; "), places.join(", ")),
            };
        }
        Outcome {
            allocated: true,
            reason: Reason::Allocated,
            message: format!("allocated {}", places.join(", ")),
        }
    }

    fn holds(&self, key: &ObjectKey, family: Family) -> bool {
        self.services.get(key).is_some_and(|t| t.held.iter().any(|a| Family::of(*a) == family))
    }

    fn held_in_order(&self, key: &ObjectKey, wants: &Wants) -> Vec<IpAddr> {
        let held = self.services.get(key).map(|t| t.held.clone()).unwrap_or_default();
        let mut ordered: Vec<IpAddr> = wants
            .families
            .iter()
            .filter_map(|f| held.iter().copied().find(|a| Family::of(*a) == *f))
            .collect();
        let rest: Vec<IpAddr> = held.iter().copied().filter(|a| !ordered.contains(a)).collect();
        ordered.extend(rest);
        ordered
    }

    /// One address of `family` for a Service: its status claim, its request, an address it may
    /// share, or the lowest free address of the first pool that serves it.
    fn find(
        &mut self,
        key: &ObjectKey,
        wants: &Wants,
        labels: &BTreeMap<String, String>,
        family: Family,
        claim: Option<IpAddr>,
        conflicts: &mut Vec<String>,
    ) -> Result<IpAddr, Failure> {
        let requested = wants.requested_of(family);
        if let Some(claim) = claim
            && requested.is_none_or(|r| r == claim)
            && wants
                .pool
                .as_ref()
                .is_none_or(|p| self.pool_of(claim).is_some_and(|pool| pool.name == *p))
        {
            match self.may_share(key, wants, claim) {
                Ok(()) => return Ok(claim),
                Err(reason) => conflicts.push(format!(
                    "status held {reason}, which keeps it (an older claim, or one held first)"
                )),
            }
        }
        let namespace_labels = self.namespace_labels(key).clone();
        if let Some(address) = requested {
            let Some(pool) = self.pool_of(address) else {
                return Err(fail(
                    Reason::RequestedNotInPool,
                    format!("requested {address} is in no IPPool"),
                ));
            };
            self.check_pool(pool, labels, &namespace_labels)?;
            if let Some(named) = wants.pool.as_ref().filter(|p| **p != pool.name) {
                return Err(fail(
                    Reason::InvalidRequest,
                    format!(
                        "requested {address} is in IPPool {}, not in IPPool {named}",
                        pool.name
                    ),
                ));
            }
            if pool.avoid_buggy && is_buggy(address) {
                return Err(fail(
                    Reason::InvalidRequest,
                    format!(
                        "requested {address} ends in .0 or .255, which IPPool {} avoids",
                        pool.name
                    ),
                ));
            }
            return match self.may_share(key, wants, address) {
                Ok(()) => Ok(address),
                Err(reason) => Err(fail(Reason::AddressInUse, format!("requested {reason}"))),
            };
        }
        if let Some(sharing) = &wants.sharing_key {
            let candidates: Vec<IpAddr> = self
                .shared
                .get(sharing)
                .into_iter()
                .flatten()
                .copied()
                .filter(|a| Family::of(*a) == family)
                .collect();
            for address in candidates {
                let eligible = self.pool_of(address).is_some_and(|pool| {
                    self.check_pool(pool, labels, &namespace_labels).is_ok()
                        && match &wants.pool {
                            Some(named) => pool.name == *named,
                            None => pool.auto_assign,
                        }
                });
                if eligible && self.may_share(key, wants, address).is_ok() {
                    return Ok(address);
                }
            }
        }
        let names: Vec<String> = match &wants.pool {
            Some(named) => {
                let Some(pool) = self.pools.get(named) else {
                    return Err(fail(
                        Reason::PoolNotFound,
                        format!("IPPool {named} does not exist"),
                    ));
                };
                self.check_pool(pool, labels, &namespace_labels)?;
                if !pool.has_family(family) {
                    return Err(fail(
                        Reason::NoPoolMatches,
                        format!("IPPool {named} has no {family} addresses"),
                    ));
                }
                vec![named.clone()]
            }
            None => self
                .pools
                .values()
                .filter(|p| {
                    p.auto_assign
                        && p.has_family(family)
                        && self.check_pool(p, labels, &namespace_labels).is_ok()
                })
                .map(|p| p.name.clone())
                .collect(),
        };
        if names.is_empty() {
            return Err(fail(
                Reason::NoPoolMatches,
                format!(
                    "no enabled IPPool with autoAssign offers {family} addresses to this Service"
                ),
            ));
        }
        for name in &names {
            if let Some(address) =
                self.pools.get_mut(name).and_then(|p| p.free(family).take_lowest())
            {
                return Ok(address);
            }
        }
        Err(fail(
            Reason::PoolExhausted,
            format!("no free {family} address in IPPool {}", names.join(", ")),
        ))
    }

    /// Whether `pool` may hand a new address to a Service with `labels`.
    fn check_pool(
        &self,
        pool: &Pool,
        labels: &BTreeMap<String, String>,
        namespace_labels: &BTreeMap<String, String>,
    ) -> Result<(), Failure> {
        if let Some(problem) = &pool.problem {
            return Err(fail(
                Reason::PoolUnusable,
                format!("IPPool {} is invalid: {}", pool.name, problem.message),
            ));
        }
        if pool.disabled {
            return Err(fail(Reason::PoolUnusable, format!("IPPool {} is disabled", pool.name)));
        }
        if !pool.selects(labels, namespace_labels) {
            return Err(fail(
                Reason::NoPoolMatches,
                format!("IPPool {} does not select this Service or its namespace", pool.name),
            ));
        }
        Ok(())
    }

    fn status_of(&mut self, key: &ObjectKey) -> Option<ServiceStatus> {
        let tracked = self.services.get(key)?;
        match &tracked.facts.wants {
            Some(wants) => Some(ServiceStatus {
                service: key.clone(),
                addresses: self.held_in_order(key, wants),
                condition: tracked.outcome.clone(),
            }),
            None => self.released.remove(key).then(|| ServiceStatus {
                service: key.clone(),
                addresses: Vec::new(),
                condition: None,
            }),
        }
    }

    fn report_pools(&mut self, effects: &mut Effects, all: bool) {
        let mut reports: BTreeMap<String, PoolReport> = BTreeMap::new();
        for pool in self.pools.values() {
            let report = PoolReport {
                used_ipv4: 0,
                used_ipv6: 0,
                available_ipv4: saturate(pool.free_v4.available()),
                available_ipv6: saturate(pool.free_v6.available()),
                problem: pool.problem.as_ref().map(|p| (p.reason.to_owned(), p.message.clone())),
            };
            reports.insert(pool.name.clone(), report);
        }
        for address in self.holders.keys() {
            if let Some(report) = self.pool_of(*address).and_then(|p| reports.get_mut(&p.name)) {
                match Family::of(*address) {
                    Family::IPv4 => report.used_ipv4 += 1,
                    Family::IPv6 => report.used_ipv6 += 1,
                }
            }
        }
        for (name, report) in reports {
            let before = self.reported_pools.get(&name);
            if before.map(|b| &b.problem) != Some(&report.problem)
                && let Some((reason, message)) = &report.problem
            {
                effects.events.push(Event {
                    subject: Subject::IPPool(name.clone()),
                    warning: true,
                    reason: reason.clone(),
                    message: message.clone(),
                });
            }
            if all || before != Some(&report) {
                effects.pools.push((name.clone(), report.clone()));
                self.reported_pools.insert(name, report);
            }
        }
        self.reported_pools.retain(|name, _| self.pools.contains_key(name));
    }

    /// Every held address with its pool and holders, in address order.
    pub fn holdings(&self) -> Vec<Holding> {
        self.holders
            .iter()
            .map(|(address, services)| Holding {
                address: *address,
                pool: self.pool_of(*address).map(|p| p.name.clone()),
                services: services.iter().cloned().collect(),
            })
            .collect()
    }

    /// The last reports of every pool.
    pub fn pool_reports(&self) -> &BTreeMap<String, PoolReport> {
        &self.reported_pools
    }

    /// The current outcome of a Service (`None`: not ours, or not reconciled yet).
    pub fn outcome(&self, key: &ObjectKey) -> Option<&Outcome> {
        self.services.get(key)?.outcome.as_ref()
    }

    /// Every Service of ours with its outcome, in key order.
    pub fn outcomes(&self) -> impl Iterator<Item = (&ObjectKey, &Outcome)> {
        self.services.iter().filter_map(|(k, t)| Some((k, t.outcome.as_ref()?)))
    }

    /// The addresses a Service holds, in its family order.
    pub fn addresses(&self, key: &ObjectKey) -> Vec<IpAddr> {
        let Some(wants) = self.services.get(key).and_then(|t| t.facts.wants.as_ref()) else {
            return Vec::new();
        };
        self.held_in_order(key, wants)
    }
}

fn saturate(n: u128) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn join(addresses: &[IpAddr]) -> String {
    addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
