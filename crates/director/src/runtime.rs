//! The director's runtime: loads the XDP program, writes every table update into its maps in the
//! order [`Tables::update`] gives, and attaches the program once the first complete state is
//! programmed. Objects come in as model [`Change`]s from any source.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchyard_bpf::abi::FrontendKey as MapKey;
use switchyard_bpf::director::{
    DirMapSizes, DirMaps, DirNode, DirSettings, DirVip, DirectorDatapath, XdpMode, names,
};
use switchyard_bpf::director_probe::{self as bpf_probe, HealthEntry, HealthKey, HealthMap};
use switchyard_model::{Change, ClusterState, Protocol};
use tracing::{info, warn};

use crate::announce::Announcer;
use crate::config::{DirectorConfig, Encap};
use crate::health::{self, Checker, Health, HealthConfig, Outcome, Probe, Target, Transition};
use crate::previous::{PREVIOUS_ANNOTATION, Record};
use crate::settle::{self, Facts, Settle, SettleConfig, Verdict};
use crate::tables::{Adopted, AdoptedTable, Op, Plan, Tables};
use crate::vips::{NodeTarget, VipSet, vip_set_at};

/// Where and how the director runs.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// bpffs directory of the director's own maps and links.
    pub bpf_dir: PathBuf,
    /// Mount a bpffs at `bpf_dir` if none is there.
    pub mount_bpffs: bool,
    /// Uplinks the XDP program is attached to.
    pub devices: Vec<String>,
    /// Native or generic XDP.
    pub mode: XdpMode,
    /// Outer source addresses (one per family).
    pub source4: Option<std::net::Ipv4Addr>,
    /// Outer IPv6 source.
    pub source6: Option<std::net::Ipv6Addr>,
    /// Encapsulation.
    pub encap: Encap,
    /// GUE / FOU destination port.
    pub gue_port: u16,
    /// Map capacities.
    pub sizes: DirMapSizes,
}

/// Why the runtime stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Loading, attaching or writing the director's maps failed.
    #[error("director data path")]
    Bpf(#[source] switchyard_bpf::Error),
}

impl From<switchyard_bpf::Error> for RuntimeError {
    fn from(e: switchyard_bpf::Error) -> Self {
        RuntimeError::Bpf(e)
    }
}

/// A running director.
#[derive(Debug)]
pub struct Runtime {
    options: RuntimeOptions,
    tables: Tables,
    datapath: DirectorDatapath,
    state: ClusterState,
    attached: bool,
    /// The state of an earlier run was adopted (the data path kept forwarding).
    adopted: bool,
    /// BGP sessions announcing the VIPs (`None`: the routers are configured otherwise).
    announcer: Option<Announcer>,
    /// The VIPs as the objects say, before health takes nodes out.
    set: VipSet,
    /// Node health checking (`None`: every node the objects name serves).
    health: Option<HealthChecking>,
    /// A node went in or out of service since the tables were last programmed.
    health_changed: bool,
    /// The build time pinned for each table that names previous nodes.
    pinned_built: BTreeMap<u32, SystemTime>,
    /// When the VIPs may be announced (a first start waits until its tables are settled).
    settle: Settle,
    /// The last reason to wait that was logged.
    waiting: Option<String>,
}

/// The node id of a table's `sy_dir_table_nodes` entry that holds its build time (no node has
/// id 0), and the name it carries before the Unix milliseconds.
const BUILT_NODE_ID: u32 = 0;
const BUILT_PREFIX: &str = "switchyard:built-ms=";

/// The health checker and where its findings go.
#[derive(Debug)]
struct HealthChecking {
    checker: Checker,
    /// The agents' health port (`/healthz`), probed for `Cluster` VIPs.
    agent_port: u16,
    /// `sy_dir_health`, for `switchyard status`.
    map: HealthMap,
}

fn map_key(key: &switchyard_model::FrontendKey) -> MapKey {
    let proto = match key.protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    };
    MapKey::new(key.ip, key.port, proto, 0)
}

/// Writes `ops` in order.
pub fn execute(maps: &mut DirMaps, ops: &[Op]) -> Result<(), switchyard_bpf::Error> {
    for op in ops {
        match op {
            Op::ZeroVipCounters { id } => maps.zero_vip_counters(*id)?,
            Op::ZeroNodeCounters { id } => maps.zero_node_counters(*id)?,
            Op::PutNode { id, address } => maps.put_node(*id, DirNode::new(*address))?,
            Op::PutTable { id, slots, nodes, previous } => {
                // The previous nodes first: the program finds them as soon as it finds the
                // table (and a leftover of an earlier run under this id is replaced).
                match previous {
                    Some(previous) => maps.put_prev_table(*id, previous)?,
                    None => maps.delete_prev_table(*id)?,
                }
                maps.put_table(*id, slots)?;
                // Names are for people: a full names map must not stop the data plane.
                let named = nodes.iter().map(|(n, t)| (*n, &*t.name, t.weight));
                if let Err(err) = maps.put_table_nodes(*id, named) {
                    warn!(table = id, %err, "node names of a table not recorded");
                }
            }
            Op::PutVip { key, id, table } => {
                maps.put_vip(map_key(key), DirVip { id: *id, table_id: *table })?;
            }
            Op::DeleteVip { key } => maps.delete_vip(&map_key(key))?,
            Op::DeleteTable { id } => maps.delete_table(*id)?,
            Op::DeleteNode { id } => maps.delete_node(*id)?,
        }
    }
    Ok(())
}

/// The model's key of a VIP map key (`None`: a protocol the director never writes).
fn model_key(key: &MapKey) -> Option<switchyard_model::FrontendKey> {
    let protocol = match key.proto {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        _ => return None,
    };
    Some(switchyard_model::FrontendKey::new(key.addr.to_ip(key.family), key.port(), protocol))
}

/// Reads the ids an earlier run left in the pinned maps.
pub fn adopt(maps: &DirMaps) -> Result<Adopted, switchyard_bpf::Error> {
    use switchyard_bpf::Error;
    let mut adopted = Adopted::default();
    for (key, vip) in maps.vip_entries()? {
        adopted.vip_ids.insert(vip.id);
        if let Some(key) = model_key(&key) {
            adopted.vips.insert(key, vip.id);
            if vip.table_id != 0 {
                adopted.vip_tables.insert(key, vip.table_id);
            }
        }
    }
    adopted.table_ids.extend(maps.table_ids()?);
    for (id, node) in maps.node_entries()? {
        adopted.node_ids.insert(id);
        adopted.node_addresses.insert(id, node.ip());
        adopted.nodes.entry(node.ip()).or_insert(id);
    }
    // The tables themselves (what `Tables::update` takes over as they are): each one's nodes
    // with their names and weights, its slots and its previous nodes.
    let mut named: BTreeMap<u32, Vec<(u32, NodeTarget)>> = BTreeMap::new();
    let mut built: BTreeMap<u32, SystemTime> = BTreeMap::new();
    for entry in maps.table_nodes.iter() {
        let (key, node) =
            entry.map_err(|source| Error::Map { name: names::TABLE_NODES, source })?;
        if key.node_id == BUILT_NODE_ID {
            let ms = node.name().strip_prefix(BUILT_PREFIX).and_then(|t| t.parse::<u64>().ok());
            if let Some(ms) = ms {
                built.insert(key.table_id, UNIX_EPOCH + Duration::from_millis(ms));
            }
        } else if let Some(&address) = adopted.node_addresses.get(&key.node_id) {
            let target = NodeTarget { name: Arc::from(node.name()), address, weight: node.weight };
            named.entry(key.table_id).or_default().push((key.node_id, target));
        }
    }
    let wanted: BTreeSet<u32> = adopted.vip_tables.values().copied().collect();
    for id in wanted.into_iter().filter(|id| adopted.table_ids.contains(id)) {
        let (Some(nodes), Some(slots)) = (named.remove(&id), maps.table_slots(id)?) else {
            continue;
        };
        let previous = maps.prev_slots(id)?;
        let built = built.get(&id).copied();
        adopted.tables.insert(id, AdoptedTable { nodes, slots, previous, built });
    }
    Ok(adopted)
}

impl Runtime {
    /// Loads the program and its maps (nothing attached yet).
    pub fn load(config: DirectorConfig, options: RuntimeOptions) -> Result<Self, RuntimeError> {
        let settings = DirSettings {
            source4: options.source4,
            source6: options.source6,
            seed: config.seed,
            table_size: config.table_size.get(),
            gue_port: options.gue_port,
            encap: match options.encap {
                Encap::Gue => switchyard_bpf::director::ENCAP_GUE,
                Encap::Fou => switchyard_bpf::director::ENCAP_FOU,
                Encap::Ipip => switchyard_bpf::director::ENCAP_IPIP,
            },
        };
        let datapath = DirectorDatapath::load(
            &options.bpf_dir,
            options.mount_bpffs,
            options.sizes,
            &settings,
        )?;
        let adopted = adopt(datapath.maps())?;
        if !adopted.vips.is_empty() {
            info!(
                vips = adopted.vips.len(),
                tables = adopted.table_ids.len(),
                nodes = adopted.nodes.len(),
                "adopting the pinned state of an earlier run"
            );
        }
        // Pins of an older layout were recreated empty: the program an earlier run attached
        // still forwards (with its own maps) until this one replaces it.
        let was_running = !adopted.vips.is_empty() || datapath.recreated_pins();
        Ok(Runtime {
            options,
            tables: Tables::adopting(config, adopted),
            datapath,
            state: ClusterState::default(),
            attached: false,
            adopted: was_running,
            announcer: None,
            set: VipSet::default(),
            health: None,
            health_changed: false,
            pinned_built: BTreeMap::new(),
            settle: Settle::new(SettleConfig::default(), was_running),
            waiting: None,
        })
    }

    /// Checks node health: nodes whose probes fail leave the tables (see [`crate::health`]).
    /// `agent_port`: the agents' health port, probed for `Cluster` VIPs; `probe_through`:
    /// attach the program that encapsulates the probes on every uplink (else they go out
    /// bare). Call before the first [`Runtime::apply`].
    pub fn check_health(
        &mut self,
        config: HealthConfig,
        agent_port: u16,
        probe_through: bool,
    ) -> Result<(), RuntimeError> {
        if probe_through {
            for device in &self.options.devices {
                self.datapath.attach_probe(device)?;
            }
        }
        let mut map = HealthMap::open_pinned(&self.options.bpf_dir)?;
        map.retain(&BTreeSet::new())?;
        self.health = Some(HealthChecking { checker: Checker::new(config), agent_port, map });
        Ok(())
    }

    /// Announces the VIPs over BGP as the director whose Node object is `node_name` (its
    /// labels select the BGPPeers, its addresses are the next hops); a first start waits as
    /// `settle` says before it announces anything ([`crate::settle`]). Call before the first
    /// [`Runtime::apply`], inside a tokio runtime.
    pub fn announce_as(&mut self, node_name: &str, settle: SettleConfig) {
        self.settle = Settle::new(settle, self.adopted);
        let mut announcer = Announcer::new(node_name, self.adopted);
        if !self.adopted {
            announcer.hold(Some("no complete reading yet".to_owned()));
        }
        self.announcer = Some(announcer);
    }

    /// Whether the VIPs may be announced (always true for a restarted director).
    pub fn settled(&self) -> bool {
        self.settle.is_open()
    }

    /// When [`Runtime::settle_check`] is due without news (`None`: announcing already).
    pub fn settle_next_check(&self) -> Option<Instant> {
        self.announcer.as_ref()?;
        self.settle.next_check(Instant::now())
    }

    /// Decides whether the VIPs may be announced now, and lets the announcer know; logs each
    /// new reason to wait ("waiting to announce: …") and the moment it announces.
    pub fn settle_check(&mut self, now: Instant) {
        let Some(announcer) = &mut self.announcer else { return };
        if self.settle.is_open() && !announcer.held() {
            return;
        }
        if !self.attached {
            return;
        }
        let facts = Facts {
            disagreeing: self.tables.disagreeing(),
            unsettled: self.health.as_ref().map_or_else(Vec::new, |h| h.checker.unsettled()),
        };
        match self.settle.check(now, &facts) {
            Verdict::Waiting(waits) => {
                // The window's countdown alone is not news.
                let reasons: Vec<_> =
                    waits.iter().filter(|w| !matches!(w, settle::Wait::Window(_))).collect();
                let key = format!("{reasons:?}");
                if self.waiting.as_ref() != Some(&key) {
                    info!(why = %settle::describe(&waits), "waiting to announce");
                    self.waiting = Some(key);
                }
                announcer.hold(Some(settle::describe(&waits)));
            }
            Verdict::GaveUp(waits) => {
                warn!(
                    why = %settle::describe(&waits),
                    "announcing the VIPs: waited the longest allowed though these still hold"
                );
                announcer.hold(None);
            }
            Verdict::Open => {
                info!("tables settled: announcing the VIPs");
                announcer.hold(None);
            }
        }
    }

    /// The BGP sessions, if the director announces.
    pub fn announcer(&self) -> Option<&Announcer> {
        self.announcer.as_ref()
    }

    /// Withdraws every VIP from the routers (graceful shutdown); the data path keeps forwarding
    /// and later updates are still programmed. False when the director does not announce.
    pub fn withdraw_all(&mut self) -> bool {
        match &mut self.announcer {
            Some(announcer) => {
                announcer.withdraw_all();
                true
            }
            None => false,
        }
    }

    /// Ends the BGP sessions with Cease (after [`Runtime::withdraw_all`] and the grace period).
    pub async fn stop_announcing(&mut self) {
        if let Some(announcer) = self.announcer.take() {
            announcer.stop().await;
        }
    }

    /// Applies a batch of changes: recomputes the VIPs, writes the difference, and after the
    /// first batch removes what an earlier run left in the maps and attaches the program.
    pub fn apply(&mut self, changes: Vec<Change>) -> Result<Plan, RuntimeError> {
        for change in changes {
            if let Some(announcer) = &mut self.announcer {
                announcer.observe(&change);
            }
            self.state.apply(change);
        }
        // The joining window is the previous-node TTL (how long directors that saw a node join
        // keep naming previous nodes).
        self.set = vip_set_at(&self.state, SystemTime::now(), self.tables.config().previous_ttl);
        let records = self.records();
        self.tables.set_records(records, SystemTime::now(), &self.set);
        self.health_changed = false;
        if let Some(h) = &mut self.health {
            // The nodes the tables hold too: one that left the objects stays probed.
            let tables = &self.tables;
            let targets = health::targets_with(&self.set, h.agent_port, |k| tables.known_nodes(k));
            let keys = targets.iter().map(|t| HealthKey::new(t.address, t.port)).collect();
            h.checker.set_targets(targets.iter().cloned(), Instant::now());
            h.map.retain(&keys)?;
            for target in &targets {
                publish(h, target, Instant::now())?;
            }
        }
        self.program()
    }

    /// Programs the VIP set without the nodes out of service.
    fn program(&mut self) -> Result<Plan, RuntimeError> {
        let set = match &self.health {
            Some(h) => {
                let tables = &self.tables;
                health::serving_set_with(&self.set, &h.checker, h.agent_port, |k| {
                    tables.known_nodes(k)
                })
            }
            None => self.set.clone(),
        };
        let mut plan = self.tables.update(&set);
        // Starts the expiry time of the tables just built (their previous nodes).
        let expired = self.tables.expire_previous(Instant::now());
        plan.ops.extend(expired.ops);
        plan.problems.extend(expired.problems);
        for problem in &plan.problems {
            warn!(%problem, "director input");
        }
        execute(self.datapath.maps_mut(), &plan.ops)?;
        self.pin_built(&plan.ops);
        if !self.attached {
            self.remove_leftovers()?;
            for device in &self.options.devices {
                self.datapath.attach(device, self.options.mode)?;
            }
            self.attached = true;
        }
        // Announced only once programmed and attached: a router sends traffic at once.
        if let Some(announcer) = &mut self.announcer {
            announcer.sync(&set);
        }
        self.settle_check(Instant::now());
        info!(
            vips = self.tables.vips().count(),
            ops = plan.ops.len(),
            moved = ?plan.moved_slots,
            "director tables programmed"
        );
        Ok(plan)
    }

    /// Tables whose previous nodes are due at `now` get tables without them
    /// (`--previous-node-ttl-seconds`).
    pub fn expire_previous(&mut self, now: Instant) -> Result<Plan, RuntimeError> {
        let plan = self.tables.expire_previous(now);
        for problem in &plan.problems {
            warn!(%problem, "director input");
        }
        execute(self.datapath.maps_mut(), &plan.ops)?;
        self.pin_built(&plan.ops);
        if !plan.ops.is_empty() {
            info!(ops = plan.ops.len(), "previous nodes expired");
        }
        Ok(plan)
    }

    /// When [`Runtime::expire_previous`] has work next.
    pub fn previous_next_expiry(&self) -> Option<Instant> {
        self.tables.next_previous_expiry()
    }

    /// Probes due at `now` (to send); probes past their timeout fail, and a node that leaves
    /// service is taken out of the tables here.
    pub fn health_poll(&mut self, now: Instant) -> Result<Vec<Probe>, RuntimeError> {
        let Some(h) = &mut self.health else { return Ok(Vec::new()) };
        let (probes, transitions) = h.checker.poll(now);
        let settled: Vec<Target> = transitions.iter().map(|t| t.target.clone()).collect();
        for target in &settled {
            publish(h, target, now)?;
        }
        self.transitions(&transitions);
        self.health_flush()?;
        if !self.settle.is_open() {
            self.settle_check(now);
        }
        Ok(probes)
    }

    /// The outcome of a probe [`Runtime::health_poll`] handed out. A node that goes in or out
    /// of service reaches the tables at the next [`Runtime::health_flush`] (record every
    /// outcome at hand first: one rebuild for all of them).
    pub fn health_record(
        &mut self,
        probe: &Probe,
        outcome: Outcome,
        now: Instant,
    ) -> Result<(), RuntimeError> {
        let Some(h) = &mut self.health else { return Ok(()) };
        let transition = h.checker.record(&probe.target, probe.seq, outcome, now);
        publish(h, &probe.target, now)?;
        self.transitions(transition.as_slice());
        if !self.settle.is_open() {
            self.settle_check(now);
        }
        Ok(())
    }

    /// Programs the tables if a node went in or out of service since they were last.
    pub fn health_flush(&mut self) -> Result<(), RuntimeError> {
        if self.health_changed && self.attached {
            self.health_changed = false;
            self.program()?;
        }
        Ok(())
    }

    /// When [`Runtime::health_poll`] has work next (`None`: no health checking or no target).
    pub fn health_next_wakeup(&self) -> Option<Instant> {
        self.health.as_ref().and_then(|h| h.checker.next_wakeup())
    }

    /// The health checker, if nodes are checked.
    pub fn health(&self) -> Option<&Checker> {
        self.health.as_ref().map(|h| &h.checker)
    }

    /// Logs transitions and notes that the tables need programming.
    fn transitions(&mut self, transitions: &[Transition]) {
        for t in transitions {
            let outcome = match &t.outcome {
                Outcome::Healthy => "200".to_owned(),
                Outcome::Unavailable => "503".to_owned(),
                Outcome::Failed(why) => why.clone(),
            };
            let (node, address, port) = (&*t.target.node, t.target.address, t.target.port);
            if t.to == Health::Up {
                info!(node, %address, port, from = t.from.as_str(), %outcome, "node health: back in service");
            } else {
                warn!(node, %address, port, to = t.to.as_str(), %outcome, "node health: out of service");
            }
        }
        self.health_changed |= !transitions.is_empty();
    }

    /// Entries of an earlier run that the tables do not hold (VIPs first, then tables, nodes).
    fn remove_leftovers(&mut self) -> Result<(), switchyard_bpf::Error> {
        let live: HashSet<MapKey> = self.tables.vips().map(|(k, _, _)| map_key(k)).collect();
        let (_, tables, nodes) = self.tables.live_ids();
        let maps = self.datapath.maps_mut();
        let vips: Vec<MapKey> = maps.vip_entries()?.into_iter().map(|(k, _)| k).collect();
        for key in vips.into_iter().filter(|k| !live.contains(k)) {
            maps.delete_vip(&key)?;
        }
        for id in maps.table_ids()?.into_iter().filter(|id| !tables.contains(id)) {
            maps.delete_table(id)?;
        }
        // Previous nodes written just before a table that never was (an earlier run ended).
        for id in maps.prev_table_ids()?.into_iter().filter(|id| !tables.contains(id)) {
            maps.delete_prev_table(id)?;
        }
        for id in maps.node_entries()?.into_keys().filter(|id| !nodes.contains(id)) {
            maps.delete_node(id)?;
        }
        self.tables.leftovers_removed();
        Ok(())
    }

    /// Every director's previous-node record on the Node objects (this one's too); one that
    /// cannot be read is logged by the Node's name and left out.
    fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for (key, node) in &self.state.nodes {
            let text = node.metadata.annotations.as_ref().and_then(|a| a.get(PREVIOUS_ANNOTATION));
            let Some(text) = text else { continue };
            match Record::decode(text) {
                Ok(record) => out.push(record),
                Err(err) => {
                    warn!(node = %key, %err, "director input: previous-node record ignored")
                }
            }
        }
        out
    }

    /// What this director publishes on its Node object ([`PREVIOUS_ANNOTATION`]): the
    /// previous nodes its tables name ([`crate::previous`]).
    pub fn record(&self) -> Record {
        self.tables.record(SystemTime::now())
    }

    /// Pins the build time of each table that names previous nodes (with its node names, as a
    /// `sy_dir_table_nodes` entry of node id 0), so a restarted director expires them when
    /// the other directors do.
    fn pin_built(&mut self, ops: &[Op]) {
        // A table written anew (an id reused) lost its entry with the old one.
        for op in ops {
            if let Op::PutTable { id, .. } = op {
                self.pinned_built.remove(id);
            }
        }
        let built = self.tables.built_times();
        for (&id, &at) in &built {
            if self.pinned_built.get(&id) == Some(&at) {
                continue;
            }
            let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            let name = format!("{BUILT_PREFIX}{ms}");
            // As the names: bookkeeping must not stop the data plane.
            if let Err(err) =
                self.datapath.maps_mut().put_table_nodes(id, [(BUILT_NODE_ID, name.as_str(), 0)])
            {
                warn!(table = id, %err, "build time of a table not pinned");
            }
        }
        self.pinned_built = built;
    }

    /// The tables (for `explain` and tests).
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The data path (counters, tests).
    pub fn datapath(&self) -> &DirectorDatapath {
        &self.datapath
    }
}

/// Writes `target`'s state into `sy_dir_health`.
fn publish(h: &mut HealthChecking, target: &Target, now: Instant) -> Result<(), RuntimeError> {
    let Some(status) = h.checker.status_of(target) else { return Ok(()) };
    let unix_ms = |at: Instant| {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let ago = now.saturating_duration_since(at).as_millis();
        u64::try_from(now_ms.saturating_sub(ago)).unwrap_or(u64::MAX)
    };
    let entry = HealthEntry {
        state: match status.health {
            Health::Up => bpf_probe::HEALTH_UP,
            Health::Down => bpf_probe::HEALTH_DOWN,
            Health::Draining => bpf_probe::HEALTH_DRAINING,
        },
        failures: status.failures,
        successes: status.successes,
        last: match status.last {
            None => 0,
            Some(Outcome::Healthy) => 1,
            Some(Outcome::Unavailable) => 2,
            Some(Outcome::Failed(_)) => 3,
        },
        since_ms: status.since.map_or(0, unix_ms),
        name: [0; switchyard_bpf::director::NODE_NAME_LEN],
        pad: 0,
    };
    h.map.put(HealthKey::new(target.address, target.port), entry, &target.node)?;
    Ok(())
}
