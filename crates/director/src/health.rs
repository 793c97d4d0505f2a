//! Node health as the directors see it (issue 17), sans IO: which probes are due, what their
//! answers mean, and when a node leaves or rejoins the tables. The runtime sends the probes
//! (`crate::probe`: through the encapsulated path itself) and feeds the outcomes back; time is
//! passed in, so tests drive it with a fake clock.
//!
//! One [`Target`] per node address and port: the agent's `/healthz` for
//! `externalTrafficPolicy: Cluster` VIPs, the Service's health check node port for `Local`
//! ones. A target is probed every `interval`; a probe not answered within `timeout` failed.
//! `unhealthy_threshold` failures in a row take it out of service (Down, or Draining when the
//! last answer was 503: the agent says the node is going away); `healthy_threshold` successes
//! in a row bring it back (hysteresis: one lucky answer does not). A new target starts Up: a
//! director that starts (or restarts under traffic) changes no table until a node fails.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_model::{FrontendKey, TrafficPolicy};

use crate::vips::{NodeTarget, Vip, VipSet};

/// How often and how strictly nodes are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between two probes of one target.
    pub interval: Duration,
    /// A probe not answered within this failed; at most `interval` (one probe in flight).
    pub timeout: Duration,
    /// Failures in a row that take a target out of service.
    pub unhealthy_threshold: u32,
    /// Successes in a row that bring it back.
    pub healthy_threshold: u32,
}

impl Default for HealthConfig {
    /// 500 ms, 500 ms, 3 and 2: a node that stops answering is out after at most
    /// 3 × 500 ms + 500 ms = 2 s (see [`HealthConfig::removal_bound`]).
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(500),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthConfigError {
    /// Interval or timeout of zero.
    #[error("the probe interval and timeout must be above zero")]
    Zero,
    /// Timeout above the interval.
    #[error("the probe timeout ({timeout:?}) must not exceed the interval ({interval:?})")]
    TimeoutAboveInterval { timeout: Duration, interval: Duration },
    /// A threshold of zero.
    #[error("the healthy and unhealthy thresholds must be at least 1")]
    ZeroThreshold,
}

impl HealthConfig {
    /// Checks the settings (the timeout bounds one probe in flight per target).
    pub fn validate(&self) -> Result<(), HealthConfigError> {
        if self.interval.is_zero() || self.timeout.is_zero() {
            return Err(HealthConfigError::Zero);
        }
        if self.timeout > self.interval {
            return Err(HealthConfigError::TimeoutAboveInterval {
                timeout: self.timeout,
                interval: self.interval,
            });
        }
        if self.unhealthy_threshold == 0 || self.healthy_threshold == 0 {
            return Err(HealthConfigError::ZeroThreshold);
        }
        Ok(())
    }

    /// The longest a target that stops answering stays in service: the last good probe was
    /// sent just before it died, then `unhealthy_threshold` probes, `interval` apart, each
    /// waiting `timeout`.
    pub fn removal_bound(&self) -> Duration {
        self.interval * self.unhealthy_threshold + self.timeout
    }
}

/// What is probed: a node's address and a port on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// The Node's name.
    pub node: Arc<str>,
    /// The address the director encapsulates to (the probe's inner and outer destination).
    pub address: IpAddr,
    /// The agent's health port, or a Service's health check node port.
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.node, std::net::SocketAddr::new(self.address, self.port))
    }
}

/// A target's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// In service.
    Up,
    /// Out of service: its probes failed (no answer, refused, an unexpected status).
    Down,
    /// Out of service: it answered 503 (the agent is unhealthy or its node is going away).
    Draining,
}

impl Health {
    /// The spelling in status and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Draining => "draining",
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200.
    Healthy,
    /// HTTP 503: the agent answers but asks not to get traffic.
    Unavailable,
    /// No usable answer (why, for status and logs).
    Failed(String),
}

/// A probe to send now: its target and sequence number (answers to older probes are ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub target: Target,
    pub seq: u64,
}

/// A target that went in or out of service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub target: Target,
    pub from: Health,
    pub to: Health,
    /// The outcome that decided it.
    pub outcome: Outcome,
}

/// What status shows per target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    pub target: Target,
    pub health: Health,
    /// When the target entered its state (`None`: Up since it was first probed).
    pub since: Option<Instant>,
    /// The last outcome.
    pub last: Option<Outcome>,
    /// Successes / failures in a row (one of them is 0).
    pub successes: u32,
    pub failures: u32,
}

#[derive(Debug, Clone)]
struct State {
    health: Health,
    since: Option<Instant>,
    successes: u32,
    failures: u32,
    next_due: Instant,
    /// The probe in flight: its sequence number and when it times out.
    in_flight: Option<(u64, Instant)>,
    last: Option<Outcome>,
}

/// Every target's state (the pure half of health checking).
#[derive(Debug, Clone)]
pub struct Checker {
    config: HealthConfig,
    targets: BTreeMap<Target, State>,
    next_seq: u64,
}

impl Checker {
    /// No targets yet.
    pub fn new(config: HealthConfig) -> Self {
        Checker { config, targets: BTreeMap::new(), next_seq: 1 }
    }

    /// The settings.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Makes `targets` the probed set: a new target starts Up with its first probe due now; a
    /// target no longer wanted is forgotten (an answer to its probe is then ignored).
    pub fn set_targets(&mut self, targets: impl IntoIterator<Item = Target>, now: Instant) {
        let wanted: BTreeSet<Target> = targets.into_iter().collect();
        self.targets.retain(|t, _| wanted.contains(t));
        for target in wanted {
            self.targets.entry(target).or_insert(State {
                health: Health::Up,
                since: None,
                successes: 0,
                failures: 0,
                next_due: now,
                in_flight: None,
                last: None,
            });
        }
    }

    /// Moves time to `now`: probes in flight past their timeout fail (which may take targets
    /// out of service), then the probes due are returned (marked in flight).
    pub fn poll(&mut self, now: Instant) -> (Vec<Probe>, Vec<Transition>) {
        let mut transitions = Vec::new();
        let expired: Vec<Target> = self
            .targets
            .iter()
            .filter(|(_, s)| s.in_flight.is_some_and(|(_, deadline)| deadline <= now))
            .map(|(t, _)| t.clone())
            .collect();
        for target in expired {
            let outcome = Outcome::Failed(format!("no answer within {:?}", self.config.timeout));
            if let Some(t) = self.settle(&target, outcome, now) {
                transitions.push(t);
            }
        }
        let mut probes = Vec::new();
        for (target, state) in &mut self.targets {
            if state.in_flight.is_none() && state.next_due <= now {
                let seq = self.next_seq;
                self.next_seq += 1;
                state.in_flight = Some((seq, now + self.config.timeout));
                // Cadence from the due time, not from `now`: a late poll does not stretch it
                // (but never schedules into the past twice).
                state.next_due = (state.next_due + self.config.interval).max(now);
                probes.push(Probe { target: target.clone(), seq });
            }
        }
        (probes, transitions)
    }

    /// The answer to probe `seq` of `target`; ignored when that probe is no longer in flight
    /// (it timed out, or the target was removed).
    pub fn record(
        &mut self,
        target: &Target,
        seq: u64,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Transition> {
        let state = self.targets.get(target)?;
        if state.in_flight.map(|(s, _)| s) != Some(seq) {
            return None;
        }
        self.settle(target, outcome, now)
    }

    /// Ends the probe in flight of `target` with `outcome`.
    fn settle(&mut self, target: &Target, outcome: Outcome, now: Instant) -> Option<Transition> {
        let config = self.config;
        let state = self.targets.get_mut(target)?;
        state.in_flight = None;
        let from = state.health;
        match &outcome {
            Outcome::Healthy => {
                state.successes = state.successes.saturating_add(1);
                state.failures = 0;
                if from != Health::Up && state.successes >= config.healthy_threshold {
                    state.health = Health::Up;
                }
            }
            Outcome::Unavailable | Outcome::Failed(_) => {
                state.failures = state.failures.saturating_add(1);
                state.successes = 0;
                let to = match outcome {
                    Outcome::Unavailable => Health::Draining,
                    _ => Health::Down,
                };
                // Out of service after enough failures; once out, the latest kind of
                // failure names the state (a draining node that dies is Down).
                if from != Health::Up || state.failures >= config.unhealthy_threshold {
                    state.health = to;
                }
            }
        }
        state.last = Some(outcome.clone());
        let to = state.health;
        if to == from {
            return None;
        }
        state.since = Some(now);
        Some(Transition { target: target.clone(), from, to, outcome })
    }

    /// When [`Checker::poll`] has something to do next (`None`: no targets).
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.targets
            .values()
            .map(|s| match s.in_flight {
                Some((_, deadline)) => deadline,
                None => s.next_due,
            })
            .min()
    }

    /// Whether `target` is in service (an unknown target is: nothing says otherwise).
    pub fn serving(&self, target: &Target) -> bool {
        self.targets.get(target).is_none_or(|s| s.health == Health::Up)
    }

    /// The state of `target`, if probed.
    pub fn health(&self, target: &Target) -> Option<Health> {
        self.targets.get(target).map(|s| s.health)
    }

    /// Nodes whose health is not settled yet: a target never answered or timed out, or one
    /// whose last outcomes point the other way than its state (failing while in service,
    /// answering while out). Sorted, each name once. A director that starts for the first
    /// time announces only once this is empty ([`crate::settle`]), so it does not send flows
    /// to a node the others already took out.
    pub fn unsettled(&self) -> Vec<Arc<str>> {
        let names: BTreeSet<Arc<str>> = self
            .targets
            .iter()
            .filter(|(_, s)| {
                s.last.is_none()
                    || (s.health == Health::Up && s.failures > 0)
                    || (s.health != Health::Up && s.successes > 0)
            })
            .map(|(t, _)| t.node.clone())
            .collect();
        names.into_iter().collect()
    }

    /// Every target's state, sorted by target.
    pub fn status(&self) -> Vec<TargetStatus> {
        self.targets.iter().map(|(target, s)| status_of(target, s)).collect()
    }

    /// One target's state, if probed.
    pub fn status_of(&self, target: &Target) -> Option<TargetStatus> {
        self.targets.get(target).map(|s| status_of(target, s))
    }
}

fn status_of(target: &Target, s: &State) -> TargetStatus {
    TargetStatus {
        target: target.clone(),
        health: s.health,
        since: s.since,
        last: s.last.clone(),
        successes: s.successes,
        failures: s.failures,
    }
}

/// The port probed on a VIP's nodes: the Service's health check node port for
/// `externalTrafficPolicy: Local` (200 while the node has a ready endpoint of it), else the
/// agent's health port (`/healthz`).
pub fn probe_port(vip: &Vip, agent_port: u16) -> u16 {
    match (vip.policy, vip.health_check_node_port) {
        (TrafficPolicy::Local, Some(port)) => port,
        _ => agent_port,
    }
}

/// [`targets`] and, per VIP, the nodes `known` lists (what its table holds: see
/// [`serving_set_with`]).
pub fn targets_with(
    set: &VipSet,
    agent_port: u16,
    known: impl Fn(&FrontendKey) -> Vec<NodeTarget>,
) -> BTreeSet<Target> {
    let mut out = targets(set, agent_port);
    for (key, vip) in &set.vips {
        let port = probe_port(vip, agent_port);
        out.extend(known(key).into_iter().map(|n| Target {
            node: n.name,
            address: n.address,
            port,
        }));
    }
    out
}

/// Every target the VIP set's nodes need probed: the serving nodes and the draining ones (a
/// draining node is a UDP VIP's previous node while it is alive; one that dies must stop being
/// named, or the UDP second chance loses the packets of its old slots until the TTL).
pub fn targets(set: &VipSet, agent_port: u16) -> BTreeSet<Target> {
    set.vips
        .values()
        .flat_map(|vip| {
            let port = probe_port(vip, agent_port);
            vip.nodes.iter().chain(&vip.draining).map(move |n| Target {
                node: n.name.clone(),
                address: n.address,
                port,
            })
        })
        .collect()
}

/// `set` without the nodes out of service; those whose agent says it drains (503) are listed
/// as draining (alive: a UDP VIP's table still names them as previous nodes), and draining
/// nodes whose probes fail are no longer listed (maybe dead: no longer named for UDP). A VIP
/// that would lose every node keeps them all (fails open): when every node of a VIP fails at
/// once, the likelier fault is the director's own probing path, and dropping the VIP's
/// traffic would be worse than trying.
pub fn serving_set(set: &VipSet, checker: &Checker, agent_port: u16) -> VipSet {
    serving_set_with(set, checker, agent_port, |_| Vec::new())
}

/// [`serving_set`], where `known(vip)` lists the nodes the VIP's table holds (serving and
/// previous): one of them that left the objects (deleted, not ready) but is probed and in
/// service or draining is listed as draining — alive, so a UDP VIP still names it as the
/// previous node of its old slots until its probes fail.
pub fn serving_set_with(
    set: &VipSet,
    checker: &Checker,
    agent_port: u16,
    known: impl Fn(&FrontendKey) -> Vec<NodeTarget>,
) -> VipSet {
    let mut out = set.clone();
    for (key, vip) in &mut out.vips {
        let port = probe_port(vip, agent_port);
        let health = |n: &NodeTarget| {
            checker.health(&Target { node: n.name.clone(), address: n.address, port })
        };
        vip.draining.retain(|n| health(n) != Some(Health::Down));
        for node in known(key) {
            let listed = vip.nodes.iter().chain(&vip.draining).any(|n| n.name == node.name);
            if !listed && matches!(health(&node), Some(Health::Up | Health::Draining)) {
                vip.draining.push(node);
            }
        }
        let (serving, out_of_service): (Vec<NodeTarget>, Vec<NodeTarget>) =
            vip.nodes.iter().cloned().partition(|n| health(n).is_none_or(|h| h == Health::Up));
        if !serving.is_empty() {
            vip.nodes = serving;
            vip.draining
                .extend(out_of_service.into_iter().filter(|n| health(n) == Some(Health::Draining)));
        }
    }
    out
}
