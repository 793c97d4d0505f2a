//! The node role without I/O (as quinn-proto is QUIC without sockets): changes and kernel
//! feedback in, [`Effect`]s out, in the order the runtime must carry them out.
//!
//! The order is the node role's correctness:
//! - per update: node addresses, health check node ports, source ranges of frontends keeping
//!   their id, then the map operations (make-before-break, [`switchyard_dataplane::ops::Phase`]),
//!   then the source ranges of new frontends and the removal of stale ones;
//! - the programs are attached only after the first complete reconciliation;
//! - terminating endpoints keep their backend entries (their per-packet flows go on) and their
//!   sockets; a backend's sockets are swept only after the maps no longer lead to it, and only
//!   once its endpoint is gone for good;
//! - a failed write makes the core ask for the maps back and reconcile everything against them;
//! - announcements to routers are decided again only once the maps hold what changed.

mod effect;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use switchyard_dataplane::kernel::KernelSnapshot;
use switchyard_dataplane::packet_settings::resolve;
use switchyard_dataplane::planner::{AdoptReport, Limits, PlanError, Planner, TableBuilder};
use switchyard_dataplane::reconciler::{KernelPlanner, hold_endpoints, uses_address};
use switchyard_dataplane::translate::{self, MapBackend};
use switchyard_model::{
    Change, DesiredState, Frontend, FrontendKey, HealthCheckIndex, NodeModel, ProxyConfig,
    StateDiff,
};

pub use effect::{Effect, Endpoint};

/// An update of at least this many changes is a bulk load: the model's maps are rebuilt in
/// one pass afterwards ([`NodeModel::compact`]), as after the first reading.
const COMPACT_AFTER_CHANGES: usize = 1000;

/// What the core is told once.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// This node and the cluster settings the model needs.
    pub proxy: ProxyConfig,
    /// Capacities of the maps.
    pub limits: Limits,
    /// Whether per-packet programs run (`devices`): only then are node addresses effects
    /// (source ranges are: the socket programs check them too).
    pub per_packet: bool,
    /// DSR for NodePort to remote backends (`--nodeport-mode dsr`): [`Effect::DsrNodes`].
    pub dsr: bool,
    /// Destroy sockets connected to removed backends.
    pub destroy_stale_sockets: bool,
}

/// A plan handed out as [`Effect::Program`] and not yet answered.
#[derive(Debug)]
struct InFlight {
    /// The model differences it carries out; `None` for a full reconciliation.
    diffs: Option<Vec<StateDiff>>,
    ops: usize,
    released: Vec<MapBackend>,
    errors: Vec<PlanError>,
    /// A reconciliation after a read-back: a second failure is not retried at once.
    after_read_back: bool,
}

/// The node role's decisions. See the module documentation for the order of effects.
pub struct NodeCore {
    config: CoreConfig,
    model: NodeModel,
    planner: KernelPlanner,
    tables: Arc<dyn TableBuilder<MapBackend>>,
    /// Endpoints whose backend entries are held while no frontend uses them.
    holds: HashSet<Endpoint>,
    /// Backends released while terminating: their sockets were kept, and are swept once the
    /// endpoint is gone for good (no longer terminating, not used again).
    draining: HashSet<Endpoint>,
    health_checks: HealthCheckIndex,
    /// Node addresses last handed out.
    node_addresses: Option<Effect>,
    /// DSR destinations and sources last handed out.
    dsr_nodes: Option<Effect>,
    in_flight: Option<InFlight>,
    attached: bool,
    /// What changed since the last [`Effect::Announcements`].
    announce: PendingAnnouncements,
}

/// Changes the next [`Effect::Announcements`] reports.
#[derive(Debug, Default)]
struct PendingAnnouncements {
    /// Objects changed (or the maps were reconciled) since the last one.
    pending: bool,
    /// Differences of the desired state whose maps were written.
    changed: Vec<StateDiff>,
    /// Some differences are not listed (a full reconciliation, a failed write).
    full: bool,
}

impl std::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCore")
            .field("node", &self.config.proxy.node_name)
            .field("frontends", &self.planner.frontend_count())
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

impl NodeCore {
    /// Takes over what the pinned maps hold (empty on a first start). Nothing is written until
    /// [`NodeCore::start`].
    pub fn adopt(
        config: CoreConfig,
        snapshot: KernelSnapshot,
        tables: Arc<dyn TableBuilder<MapBackend>>,
    ) -> (Self, AdoptReport) {
        let (planner, report) = Planner::adopt(snapshot, config.limits, Arc::clone(&tables));
        let core = Self {
            model: NodeModel::new(config.proxy.clone()),
            config,
            planner,
            tables,
            holds: HashSet::new(),
            draining: HashSet::new(),
            health_checks: HealthCheckIndex::default(),
            node_addresses: None,
            dsr_nodes: None,
            in_flight: None,
            attached: false,
            announce: PendingAnnouncements { pending: true, changed: Vec::new(), full: true },
        };
        (core, report)
    }

    /// The model as it stands (desired state, node addresses, terminating endpoints).
    pub fn model(&self) -> &NodeModel {
        &self.model
    }

    /// What the core believes the maps hold.
    pub fn planner(&self) -> &KernelPlanner {
        &self.planner
    }

    /// Health check node ports and their answers.
    pub fn health_checks(&self) -> &HealthCheckIndex {
        &self.health_checks
    }

    /// The source's first complete reading: everything it holds against what was adopted.
    /// Adopted frontends keep their ids and stay in place while their slots are brought up to
    /// date; the programs are attached once this is programmed.
    pub fn start(&mut self, changes: Vec<Change>) -> Vec<Effect> {
        self.absorb_first(changes);
        self.begin()
    }

    /// The first reading into the model alone, nothing planned: the runtime sizes the maps
    /// from [`NodeCore::model`], then calls [`NodeCore::begin`].
    pub fn absorb_first(&mut self, changes: Vec<Change>) {
        for change in changes {
            self.model.apply(change);
        }
        self.model.compact();
    }

    /// The maps were loaded again at these (larger) capacities with every entry copied: plan
    /// within them from now on. Ids and contents are unchanged.
    pub fn resized(&mut self, limits: Limits) {
        self.planner.raise_limits(limits);
        self.config.limits = self.planner.limits();
    }

    /// Plans the first reading [`NodeCore::absorb_first`] took in (see [`NodeCore::start`]).
    pub fn begin(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.node_addresses_effect(&mut effects);
        self.dsr_nodes_effect(&mut effects);
        self.hold_terminating();
        self.plan_full(&mut effects, false);
        effects
    }

    /// A later update of the source.
    pub fn update(&mut self, changes: Vec<Change>) -> Vec<Effect> {
        self.announce.pending |= !changes.is_empty();
        let bulk = changes.len() >= COMPACT_AFTER_CHANGES;
        let mut diffs: Vec<StateDiff> = Vec::with_capacity(changes.len());
        for change in changes {
            let diff = self.model.apply(change);
            if !diff.is_empty() {
                diffs.push(diff);
            }
        }
        if bulk {
            self.model.compact();
        }
        let mut effects = Vec::new();
        self.node_addresses_effect(&mut effects);
        self.dsr_nodes_effect(&mut effects);
        if self.attached {
            // One effect per port, in its final state: a batch that touches a port twice (a
            // Service and its slice) must not bind, or retry binding, it twice.
            let mut checks = BTreeMap::new();
            for diff in &diffs {
                checks.extend(self.health_checks.apply(diff));
            }
            for (port, check) in checks {
                effects.push(Effect::HealthCheck { port, check });
            }
        }
        let holds_ended = self.hold_terminating();
        if diffs.is_empty() && holds_ended {
            // No frontend changed, but an endpoint that was terminating is gone: an empty plan
            // deletes its held backend entries.
            diffs.push(StateDiff::default());
        }
        if diffs.is_empty() {
            // No map change, but a draining endpoint may have left its slice for good.
            let finished = self.finished_draining();
            self.sweep_effect(&mut effects, finished);
            self.announcements_effect(&mut effects);
            return effects;
        }
        let frontends = resolve(&self.planner, diff_changes(&diffs));
        effects.push(Effect::SourceRanges { before: true, full: false, frontends });
        let plan = self.planner.plan(diffs.iter().flat_map(translate::changes));
        effects.push(Effect::Program { ops: plan.ops.clone(), full: false });
        self.in_flight = Some(InFlight {
            ops: plan.ops.len(),
            diffs: Some(diffs),
            released: plan.released,
            errors: plan.errors,
            after_read_back: false,
        });
        effects
    }

    /// Whether the last [`Effect::Program`] was written. A failure carries nothing: the runtime
    /// logs why; the core only needs to know that the maps may differ from its view.
    pub fn programmed(&mut self, written: bool) -> Vec<Effect> {
        let Some(in_flight) = self.in_flight.take() else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        if !written {
            // The differences in flight are lost to the announcements: they decide on all.
            self.announce.full = true;
            let reading_back = !in_flight.after_read_back;
            effects.push(Effect::SyncFailed { reading_back });
            if reading_back {
                effects.push(Effect::ReadBack);
            }
            return effects;
        }
        let full = in_flight.diffs.is_none();
        let frontends = match &in_flight.diffs {
            Some(diffs) => resolve(&self.planner, diff_changes(diffs)),
            None => resolve(&self.planner, all_frontends(self.model.desired())),
        };
        effects.push(Effect::SourceRanges { before: false, full, frontends });
        effects.push(Effect::Synced {
            full,
            ops: in_flight.ops,
            released: in_flight.released.len(),
            errors: in_flight.errors,
        });
        match in_flight.diffs {
            Some(diffs) => self.announce.changed.extend(diffs),
            None => self.announce.full = true,
        }
        if !self.attached {
            self.attached = true;
            effects.push(Effect::Attach);
            self.health_checks = HealthCheckIndex::new(self.model.desired());
            for (port, check) in self.health_checks.checks() {
                effects.push(Effect::HealthCheck { port, check: Some(check) });
            }
            self.announcements_effect(&mut effects);
            return effects;
        }
        let mut targets = self.finished_draining();
        for backend in &in_flight.released {
            let target = (backend.ip, backend.port);
            if self.uses_address(target) {
                continue;
            }
            if self.model.is_terminating(backend.ip) {
                self.draining.insert(target);
            } else {
                targets.insert(target);
            }
        }
        self.sweep_effect(&mut effects, targets);
        self.announcements_effect(&mut effects);
        effects
    }

    /// Plans every frontend again (after the maps grew: what was refused fits now).
    pub fn replan_full(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.in_flight.is_none() {
            self.plan_full(&mut effects, false);
        }
        effects
    }

    /// The maps as read back after [`Effect::ReadBack`]: the core adopts them and reconciles
    /// everything against them.
    pub fn read_back(&mut self, snapshot: KernelSnapshot) -> Vec<Effect> {
        let (planner, _) = Planner::adopt(snapshot, self.config.limits, Arc::clone(&self.tables));
        self.planner = planner;
        let holds = std::mem::take(&mut self.holds);
        self.hold(&holds);
        let mut effects = Vec::new();
        self.plan_full(&mut effects, true);
        effects
    }

    fn plan_full(&mut self, effects: &mut Vec<Effect>, after_read_back: bool) {
        let frontends = resolve(&self.planner, all_frontends(self.model.desired()));
        effects.push(Effect::SourceRanges { before: true, full: false, frontends });
        let plan = self.planner.plan_full(translate::desired(self.model.desired()));
        effects.push(Effect::Program { ops: plan.ops.clone(), full: true });
        self.in_flight = Some(InFlight {
            diffs: None,
            ops: plan.ops.len(),
            released: plan.released,
            errors: plan.errors,
            after_read_back,
        });
    }

    fn node_addresses_effect(&mut self, effects: &mut Vec<Effect>) {
        if !self.config.per_packet {
            return;
        }
        let now = Effect::NodeAddresses {
            node_port_addresses: self.model.node_port_addresses().to_vec(),
            primary: self.model.primary_addresses(),
        };
        if self.node_addresses.as_ref() != Some(&now) {
            self.node_addresses = Some(now.clone());
            effects.push(now);
        }
    }

    /// With DSR: the other nodes' primary addresses (accepted DSR sources) and, for every
    /// backend on another node whose Node is known, that node's address of the backend's
    /// family. Recomputed from the whole desired state on every change (DSR only).
    fn dsr_nodes_effect(&mut self, effects: &mut Vec<Effect>) {
        if !self.config.per_packet || !self.config.dsr {
            return;
        }
        let mut sources = BTreeSet::new();
        let mut of_node = HashMap::new();
        for (name, primary) in self.model.other_node_primaries() {
            sources.extend(primary.ipv4.map(IpAddr::from));
            sources.extend(primary.ipv6.map(IpAddr::from));
            of_node.insert(name, primary);
        }
        let mut backends = BTreeMap::new();
        for frontend in self.model.desired().frontends.values() {
            // Only `backends`: an `externalTrafficPolicy: Local` frontend's in-cluster list
            // serves pods, which are never DSR's clients.
            for backend in frontend.backends.iter().filter(|b| !b.is_local) {
                let Some(primary) = backend.node_name().and_then(|n| of_node.get(n)) else {
                    continue;
                };
                let node = match backend.ip {
                    IpAddr::V4(_) => primary.ipv4.map(IpAddr::from),
                    IpAddr::V6(_) => primary.ipv6.map(IpAddr::from),
                };
                if let Some(node) = node {
                    backends.insert(backend.ip, node);
                }
            }
        }
        let now = Effect::DsrNodes { sources, backends };
        if self.dsr_nodes.as_ref() != Some(&now) {
            self.dsr_nodes = Some(now.clone());
            effects.push(now);
        }
    }

    fn announcements_effect(&mut self, effects: &mut Vec<Effect>) {
        if std::mem::take(&mut self.announce.pending) {
            let PendingAnnouncements { changed, full, .. } = std::mem::take(&mut self.announce);
            let changed = if full { Vec::new() } else { changed };
            effects.push(Effect::Announcements { changed, full });
        }
    }

    fn sweep_effect(&self, effects: &mut Vec<Effect>, targets: HashSet<Endpoint>) {
        if self.config.destroy_stale_sockets && !targets.is_empty() {
            effects.push(Effect::SweepSockets(targets.into_iter().collect()));
        }
    }

    /// Holds the backend entries of the endpoints the model marks terminating; true when a
    /// hold ended (the next plan, even an empty one, deletes those entries).
    fn hold_terminating(&mut self) -> bool {
        let endpoints = self.model.terminating_endpoints();
        self.hold(&endpoints)
    }

    /// Keeps the backend entries of exactly these endpoints while no frontend uses them.
    fn hold(&mut self, endpoints: &HashSet<Endpoint>) -> bool {
        self.holds.clone_from(endpoints);
        hold_endpoints(&mut self.planner, endpoints)
    }

    fn uses_address(&self, (ip, port): Endpoint) -> bool {
        uses_address(&self.planner, ip, port)
    }

    /// Draining backends whose endpoint is no longer terminating: gone (their sockets are swept)
    /// or back in use (forgotten).
    fn finished_draining(&mut self) -> HashSet<Endpoint> {
        let mut finished = HashSet::new();
        let draining = std::mem::take(&mut self.draining);
        for endpoint in draining {
            if self.uses_address(endpoint) {
                continue;
            }
            if self.model.is_terminating(endpoint.0) {
                self.draining.insert(endpoint);
            } else {
                finished.insert(endpoint);
            }
        }
        finished
    }
}

/// Every frontend of `desired` as a change.
fn all_frontends(desired: &DesiredState) -> impl Iterator<Item = (FrontendKey, Option<&Frontend>)> {
    desired.frontends.iter().map(|(k, f)| (*k, Some(f)))
}

/// The changes of `diffs`, in order (a later one wins).
fn diff_changes(diffs: &[StateDiff]) -> impl Iterator<Item = (FrontendKey, Option<&Frontend>)> {
    diffs.iter().flat_map(|diff| {
        diff.upserted
            .iter()
            .map(|(k, f)| (*k, Some(f)))
            .chain(diff.removed.iter().map(|k| (*k, None)))
    })
}
