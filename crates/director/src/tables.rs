//! The director's tables, kept in step with the VIP set: stable ids for VIPs, nodes and Maglev
//! tables, and for every update an ordered list of map operations that never lets a lookup
//! find a dangling id (make-before-break).
//!
//! A changed node set never edits a live table: it gets a new table id, filled completely, and
//! the VIP is re-pointed in one map update (the swap is atomic); the old table and nodes no
//! table names any more are removed last. VIPs with the same nodes and weights share a table.
//!
//! The second chance: a table built because a VIP's nodes changed also records, per slot, the
//! node the VIP's previous table had there (where it differs). The program sends it along with
//! TCP packets; a node that does not hold the flow re-sends the packet there. A node named only
//! as someone's previous node keeps its entry until no table names it. Previous nodes expire:
//! [`Tables::expire_previous`] gives a VIP whose table has named them for
//! [`DirectorConfig::previous_ttl`] a table of the same nodes without them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use switchyard_maglev::{Backend, MaglevConfig, Table};
use switchyard_model::{FrontendKey, ObjectKey, Protocol, TrafficPolicy};

use crate::config::DirectorConfig;
use crate::vips::{NodeTarget, Problem, Vip, VipSet};

mod narrow;
mod restart;
mod seed;

use narrow::narrowed;
pub use restart::AdoptedTable;

/// One map operation, in the order [`Plan::ops`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Zero the counters of VIP id `id`, which a new VIP takes (before its [`Op::PutVip`]).
    ZeroVipCounters { id: u32 },
    /// Zero the counters of node id `id`, which a new node takes (before its [`Op::PutNode`]).
    ZeroNodeCounters { id: u32 },
    /// Create the node entry `id` (before any table names it).
    PutNode { id: u32, address: IpAddr },
    /// Create table `id`: slot `s` sends to node `slots[s]` (before any VIP names it);
    /// `nodes`: each node's id and target (name and weight, for explain and metrics);
    /// `previous`: per slot the node the VIP's previous table had there, 0 where it is the
    /// same (the second chance), written before the table.
    PutTable {
        id: u32,
        slots: Arc<[u32]>,
        nodes: Arc<[(u32, NodeTarget)]>,
        previous: Option<Arc<[u32]>>,
    },
    /// Create or re-point a VIP; `table` 0 means no node may serve it (dropped, counted).
    PutVip { key: FrontendKey, id: u32, table: u32 },
    /// Remove a VIP.
    DeleteVip { key: FrontendKey },
    /// Remove a table no VIP names any more.
    DeleteTable { id: u32 },
    /// Remove a node no table names any more.
    DeleteNode { id: u32 },
}

/// What one update changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The operations, in an order that is safe to apply one by one.
    pub ops: Vec<Op>,
    /// VIP → slots whose node changed (of M), for VIPs that existed before.
    pub moved_slots: BTreeMap<FrontendKey, usize>,
    /// Problems: the VIP set's and tables that could not be built.
    pub problems: Vec<Problem>,
}

/// A table's identity: its node list (sorted by name, with addresses and weights) and the
/// node list of the table it replaced (whose choices are the slots' previous nodes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TableKey {
    nodes: Vec<NodeTarget>,
    previous: Option<Vec<NodeTarget>>,
    /// Previous nodes left out (slot's previous node 0): for a UDP VIP the ones not known to
    /// be alive ([`unnamed_for`]); empty for TCP.
    unnamed: Vec<Arc<str>>,
    /// A table an earlier run pinned, taken over as it is (by its id): its previous nodes are
    /// known per slot, not as the list of a table.
    adopted: Option<u32>,
}

#[derive(Debug, Clone)]
struct TableEntry {
    id: u32,
    table: Table,
    /// Node id of every backend index of `table`.
    node_ids: Vec<u32>,
    /// Per slot the previous node's id, 0 where it is the same node.
    previous: Option<Arc<[u32]>>,
    /// The previous nodes by id.
    previous_nodes: BTreeMap<u32, NodeTarget>,
    /// Every node entry this table holds a reference on (its own and its previous nodes).
    held: Vec<(Arc<str>, IpAddr)>,
    refs: u32,
    /// When [`Tables::expire_previous`] first saw this table name previous nodes.
    previous_since: Option<Instant>,
    /// The node list whose choices are the previous nodes (what the director publishes:
    /// [`crate::previous`]); `None` for a pinned table whose list is not known.
    previous_list: Option<Vec<NodeTarget>>,
    /// `previous_since` on the wall clock (published, and pinned for a restart).
    built: Option<SystemTime>,
}

#[derive(Debug, Clone)]
struct VipEntry {
    id: u32,
    table: Option<TableKey>,
    service: ObjectKey,
    policy: TrafficPolicy,
}

#[derive(Debug, Clone, Copy)]
struct NodeEntry {
    id: u32,
    refs: u32,
}

/// Where a flow goes and why (what `switchyard explain` prints on a director).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The VIP's id (per-VIP counters).
    pub vip_id: u32,
    /// The Service the VIP belongs to.
    pub service: ObjectKey,
    /// Its external traffic policy.
    pub policy: TrafficPolicy,
    /// The table in use.
    pub table_id: u32,
    /// `hash mod M`.
    pub slot: u32,
    /// M.
    pub table_size: u32,
    /// The node owning the slot.
    pub node: NodeTarget,
    /// The node's id in the maps.
    pub node_id: u32,
    /// The second chance: the node the VIP's previous table had in this slot and its id, when
    /// it is another node.
    pub previous: Option<(u32, NodeTarget)>,
    /// Nodes in the table.
    pub nodes: usize,
}

/// What an earlier run of the director left in its pinned maps (read at start, before the
/// first update): a restarted director keeps the VIP and node ids (so counters continue) and
/// gives new tables ids that no pinned table has (the old program keeps reading complete
/// tables until each VIP is re-pointed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Pinned VIPs and their ids.
    pub vips: BTreeMap<FrontendKey, u32>,
    /// Pinned node entries: address and id.
    pub nodes: BTreeMap<IpAddr, u32>,
    /// Every pinned id: VIPs, tables, nodes (no new entry may take one).
    pub vip_ids: BTreeSet<u32>,
    /// Pinned table ids.
    pub table_ids: BTreeSet<u32>,
    /// Pinned node ids.
    pub node_ids: BTreeSet<u32>,
    /// Pinned node entries by id (their addresses).
    pub node_addresses: BTreeMap<u32, IpAddr>,
    /// Each pinned VIP's table id (absent: it pointed at none).
    pub vip_tables: BTreeMap<FrontendKey, u32>,
    /// The pinned tables, as read back.
    pub tables: BTreeMap<u32, AdoptedTable>,
}

/// Small ids: the program indexes arrays with VIP and node ids (issue 16), so a new entry
/// takes the smallest free id. Every step of an update releases ids only after its last take
/// (gone VIPs after the set's, unused tables and nodes at the end) and lists their deletes
/// after every put, so a reused id is written only after its old holder was removed
/// (make-before-break; the property test checks it op by op). An id never exceeds the most
/// entries its map held at once, so arrays of the maps' capacities suffice.
#[derive(Debug, Clone, Default)]
struct Ids {
    /// Ids in use (or pinned by an earlier run).
    used: BTreeSet<u32>,
}

impl Ids {
    /// The smallest id (from 1) not in use.
    fn take(&mut self) -> u32 {
        let mut id = 1;
        for &used in self.used.range(1..) {
            if used != id {
                break;
            }
            id += 1;
        }
        self.used.insert(id);
        id
    }

    fn release(&mut self, id: u32) {
        self.used.remove(&id);
    }
}

/// The director's tables: the pure half of the role.
#[derive(Debug, Clone)]
pub struct Tables {
    config: DirectorConfig,
    vips: BTreeMap<FrontendKey, VipEntry>,
    tables: BTreeMap<TableKey, TableEntry>,
    nodes: BTreeMap<(Arc<str>, IpAddr), NodeEntry>,
    vip_ids: Ids,
    table_ids: Ids,
    node_ids: Ids,
    /// Ids of the pinned state this run adopts (consumed as entries take them).
    adopted: Adopted,
    /// Every director's published record and when they were read ([`Tables::set_records`]).
    records: (Vec<crate::previous::Record>, SystemTime),
    /// What they say of the VIPs not built yet, for their nodes in the objects.
    seeds: BTreeMap<FrontendKey, crate::previous::Seed>,
    /// VIPs whose first table no record seeded, with that table: a record for its nodes that
    /// arrives later seeds it then ([`Tables::update`]).
    unseeded: BTreeMap<FrontendKey, TableKey>,
}

impl Tables {
    /// Empty tables (what a fresh map set holds).
    pub fn new(config: DirectorConfig) -> Self {
        Tables {
            config,
            vips: BTreeMap::new(),
            tables: BTreeMap::new(),
            nodes: BTreeMap::new(),
            vip_ids: Ids::default(),
            table_ids: Ids::default(),
            node_ids: Ids::default(),
            adopted: Adopted::default(),
            records: (Vec::new(), SystemTime::UNIX_EPOCH),
            seeds: BTreeMap::new(),
            unseeded: BTreeMap::new(),
        }
    }

    /// Empty tables that take over what an earlier run pinned: a VIP or node already in the
    /// maps keeps its id (its counters continue), and no new entry takes a pinned id, so no
    /// operation rewrites a table or node entry the running program may be reading. Once the
    /// pinned leftovers are removed, [`Tables::leftovers_removed`] frees their ids.
    pub fn adopting(config: DirectorConfig, adopted: Adopted) -> Self {
        let ids = |pinned: &BTreeSet<u32>| Ids { used: pinned.clone() };
        Tables {
            vip_ids: ids(&adopted.vip_ids),
            table_ids: ids(&adopted.table_ids),
            node_ids: ids(&adopted.node_ids),
            adopted,
            ..Tables::new(config)
        }
    }

    /// The pinned entries of an earlier run that no VIP, table or node took over are gone from
    /// the maps: their ids are free.
    pub fn leftovers_removed(&mut self) {
        let (vips, tables, nodes) = self.live_ids();
        let adopted = std::mem::take(&mut self.adopted);
        for (pinned, live, ids) in [
            (adopted.vip_ids, vips, &mut self.vip_ids),
            (adopted.table_ids, tables, &mut self.table_ids),
            (adopted.node_ids, nodes, &mut self.node_ids),
        ] {
            for id in pinned.difference(&live) {
                ids.release(*id);
            }
        }
    }

    /// The configuration the tables are built with.
    pub fn config(&self) -> &DirectorConfig {
        &self.config
    }

    /// Moves the tables to `set` and returns the operations that do the same to the maps.
    ///
    /// A VIP this director builds for the first time while some of its nodes drain
    /// ([`crate::Vip::draining`]) or join ([`crate::Vip::joining`]) is first built as it was
    /// before — with the draining nodes, without the joining ones — then as it is: its table
    /// names previous nodes exactly as on a director that saw the change happen, so a director
    /// that starts (or restarts) during a drain or a node addition keeps the moved flows on
    /// their nodes through the second chance too (issue 17 (f)). The two steps' operations
    /// are one list, each step make-before-break.
    ///
    /// A VIP first built without a published record gets one later, when a record for its
    /// nodes arrives ([`Tables::set_records`]; the others published after this director
    /// started): a table of the same slots that names the record's previous nodes.
    pub fn update(&mut self, set: &VipSet) -> Plan {
        let fresh: Vec<FrontendKey> = set
            .vips
            .keys()
            .filter(|k| !self.vips.contains_key(k) && !self.adopted.vips.contains_key(k))
            .copied()
            .collect();
        let (mut plan, published) = self.update_seeded(set);
        for key in fresh.iter().filter(|k| !published.contains_key(k)) {
            if let Some(table) = self.vips.get(key).and_then(|v| v.table.clone()) {
                self.unseeded.insert(*key, table);
            }
        }
        let late = self.reseed(set);
        plan.ops.extend(late.ops);
        plan.problems.extend(late.problems);
        plan
    }

    /// [`Tables::update`] but the late records: also the seeds it took.
    fn update_seeded(
        &mut self,
        set: &VipSet,
    ) -> (Plan, BTreeMap<FrontendKey, (Vec<NodeTarget>, SystemTime)>) {
        if !self.adopted.vips.is_empty() {
            self.take_over_pinned(set);
        }
        // The other directors' records first: they know changes the objects do not show.
        let published = self.published_seeds(set);
        let fresh_changing = !published.is_empty()
            || set.vips.iter().any(|(key, vip)| {
                !self.vips.contains_key(key)
                    && (!vip.draining.is_empty() || !vip.joining.is_empty())
            });
        if !fresh_changing {
            return (self.update_once(set), published);
        }
        let mut before = set.clone();
        let mut seeded = false;
        for (key, vip) in &mut before.vips {
            if let Some((previous, _)) = published.get(key) {
                vip.nodes = previous.clone();
                seeded = true;
                continue;
            }
            if self.vips.contains_key(key) || (vip.draining.is_empty() && vip.joining.is_empty()) {
                continue;
            }
            let mut nodes: Vec<NodeTarget> = vip
                .nodes
                .iter()
                .filter(|n| !vip.joining.iter().any(|j| j.name == n.name))
                .cloned()
                .collect();
            nodes.extend(vip.draining.iter().cloned());
            nodes.sort();
            nodes.dedup_by(|a, b| a.name == b.name);
            // Every node joined: there was nothing before (and no flow to keep).
            if !nodes.is_empty() {
                vip.nodes = nodes;
                seeded = true;
            }
        }
        if !seeded {
            return (self.update_once(set), published);
        }
        let first = self.update_once(&before);
        let mut plan = self.update_once(set);
        self.stamp_seeded(&published);
        let mut ops = first.ops;
        ops.append(&mut plan.ops);
        plan.ops = ops;
        for (key, moved) in first.moved_slots {
            plan.moved_slots.entry(key).or_insert(moved);
        }
        for problem in first.problems {
            if !plan.problems.contains(&problem) {
                plan.problems.push(problem);
            }
        }
        (plan, published)
    }

    /// One step of [`Tables::update`].
    fn update_once(&mut self, set: &VipSet) -> Plan {
        let mut plan = Plan { problems: set.problems.clone(), ..Plan::default() };
        let mut new_nodes = Vec::new();
        let mut new_tables = Vec::new();
        let mut vip_ops = Vec::new();

        for (key, vip) in &set.vips {
            // Sorted by name, like the Maglev table's backends (its indices are ours).
            let wanted = (!vip.nodes.is_empty()).then(|| {
                let mut nodes = vip.nodes.clone();
                nodes.sort();
                nodes
            });
            let old = self.vips.get(key).cloned();
            if let Some(old) = &old
                && old.table.as_ref().map(|t| &t.nodes) == wanted.as_ref()
            {
                if old.service != vip.service || old.policy != vip.policy {
                    let entry = self.vips.get_mut(key).expect("present: looked up above");
                    entry.service = vip.service.clone();
                    entry.policy = vip.policy;
                }
                // Same nodes, but a previous node a UDP VIP names may have died since.
                if let Some(old_key) = &old.table
                    && let Some(entry) = self.tables.get(old_key)
                    && let Some(narrow) = narrowed(key, vip, old_key, entry)
                    && let Some(table) = self.acquire_narrowed(&narrow, old_key, &mut new_tables)
                {
                    let entry = self.vips.get_mut(key).expect("present: looked up above");
                    entry.table = Some(narrow);
                    vip_ops.push(Op::PutVip { key: *key, id: old.id, table });
                    self.release_table(old_key);
                }
                continue;
            }
            let table = match wanted {
                Some(nodes) => {
                    let previous = old.as_ref().and_then(|o| o.table.as_ref());
                    let table_key = TableKey {
                        unnamed: previous
                            .map_or_else(Vec::new, |p| unnamed_for(key, vip, &p.nodes)),
                        nodes,
                        previous: previous.map(|t| t.nodes.clone()),
                        adopted: None,
                    };
                    let previous = old.as_ref().and_then(|o| o.table.clone());
                    match self.acquire_table(
                        &table_key,
                        previous.as_ref(),
                        &mut new_nodes,
                        &mut new_tables,
                    ) {
                        Ok(id) => Some((table_key, id)),
                        Err(reason) => {
                            plan.problems.push(Problem {
                                object: format!("Service {}", vip.service),
                                reason: format!("VIP {key}: {reason}; no node serves it"),
                            });
                            None
                        }
                    }
                }
                None => None,
            };
            if let (Some(old_key), Some((new_key, _))) =
                (old.as_ref().and_then(|o| o.table.as_ref()), table.as_ref())
                && let (Some(before), Some(after)) =
                    (self.tables.get(old_key), self.tables.get(new_key))
                && let Ok(count) = Table::diff_count(&before.table, &after.table)
            {
                plan.moved_slots.insert(*key, count);
            }
            let id = match old {
                Some(entry) => entry.id,
                None => match self.adopted.vips.remove(key) {
                    Some(id) => id,
                    None => {
                        let id = self.vip_ids.take();
                        vip_ops.push(Op::ZeroVipCounters { id });
                        id
                    }
                },
            };
            let previous = self.vips.insert(
                *key,
                VipEntry {
                    id,
                    table: table.as_ref().map(|(k, _)| k.clone()),
                    service: vip.service.clone(),
                    policy: vip.policy,
                },
            );
            vip_ops.push(Op::PutVip { key: *key, id, table: table.map_or(0, |(_, id)| id) });
            if let Some(old_table) = previous.and_then(|p| p.table) {
                self.release_table(&old_table);
            }
        }
        let gone: Vec<FrontendKey> =
            self.vips.keys().filter(|k| !set.vips.contains_key(k)).copied().collect();
        for key in gone {
            if let Some(entry) = self.vips.remove(&key) {
                vip_ops.push(Op::DeleteVip { key });
                self.vip_ids.release(entry.id);
                if let Some(table) = entry.table {
                    self.release_table(&table);
                }
            }
        }

        plan.ops.extend(new_nodes);
        plan.ops.extend(new_tables);
        plan.ops.extend(vip_ops);
        self.remove_unused(&mut plan);
        plan
    }

    /// Gives every VIP whose table has named previous nodes for the configured time
    /// ([`DirectorConfig::previous_ttl`]) a table of the same nodes without them (a new table,
    /// make-before-break; no flow changes node), and removes the previous nodes no table names
    /// any more, so a node long gone (whose address may be reused) stops getting the second
    /// chance's packets. A table's time starts at the first call that sees it: the caller
    /// calls this after every [`Tables::update`] and at [`Tables::next_previous_expiry`].
    pub fn expire_previous(&mut self, now: Instant) -> Plan {
        self.expire_previous_at(now, SystemTime::now())
    }

    /// [`Tables::expire_previous`], `wall` being `now` on the wall clock (a table's build
    /// time, published and pinned).
    pub fn expire_previous_at(&mut self, now: Instant, wall: SystemTime) -> Plan {
        let mut plan = Plan::default();
        for entry in self.tables.values_mut() {
            if entry.previous.is_some() && entry.refs > 0 && entry.previous_since.is_none() {
                // Built elsewhere or earlier (a published record, a pin): its time counts.
                let age = entry
                    .built
                    .map_or(Duration::ZERO, |b| wall.duration_since(b).unwrap_or_default());
                entry.previous_since = Some(now.checked_sub(age).unwrap_or(now));
                entry.built.get_or_insert(wall);
            }
        }
        let Some(ttl) = self.config.previous_ttl else { return plan };
        let mut due = BTreeSet::new();
        for (key, entry) in &mut self.tables {
            if entry.previous.is_some() && entry.refs > 0 {
                let since = *entry.previous_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= ttl {
                    due.insert(key.clone());
                }
            }
        }
        if due.is_empty() {
            return plan;
        }
        let vips: Vec<(FrontendKey, TableKey)> = self
            .vips
            .iter()
            .filter_map(|(key, vip)| Some((*key, vip.table.clone().filter(|t| due.contains(t))?)))
            .collect();
        let (mut new_nodes, mut new_tables, mut vip_ops) = (Vec::new(), Vec::new(), Vec::new());
        for (key, old) in vips {
            let fresh = TableKey {
                nodes: old.nodes.clone(),
                previous: None,
                unnamed: Vec::new(),
                adopted: None,
            };
            match self.acquire_table(&fresh, None, &mut new_nodes, &mut new_tables) {
                Ok(table) => {
                    let vip = self.vips.get_mut(&key).expect("present: listed above");
                    vip.table = Some(fresh);
                    vip_ops.push(Op::PutVip { key, id: vip.id, table });
                    self.release_table(&old);
                }
                // Its nodes built a table before; keep the one in use.
                Err(reason) => plan.problems.push(Problem {
                    object: format!("VIP {key}"),
                    reason: format!("expiring its previous nodes: {reason}"),
                }),
            }
        }
        plan.ops.extend(new_nodes);
        plan.ops.extend(new_tables);
        plan.ops.extend(vip_ops);
        self.remove_unused(&mut plan);
        plan
    }

    /// When the earliest table's previous nodes are due to expire (`None`: no table names any
    /// that [`Tables::expire_previous`] has seen, or they never expire).
    pub fn next_previous_expiry(&self) -> Option<Instant> {
        let ttl = self.config.previous_ttl?;
        self.tables
            .iter()
            .filter(|(_, entry)| entry.previous.is_some() && entry.refs > 0)
            .filter_map(|(_, entry)| entry.previous_since)
            .map(|since| since + ttl)
            .min()
    }

    /// Removes the tables no VIP uses and the nodes no table names (last in `plan`).
    fn remove_unused(&mut self, plan: &mut Plan) {
        let dead_tables: Vec<TableKey> =
            self.tables.iter().filter(|(_, t)| t.refs == 0).map(|(k, _)| k.clone()).collect();
        for key in dead_tables {
            if let Some(entry) = self.tables.remove(&key) {
                plan.ops.push(Op::DeleteTable { id: entry.id });
                self.table_ids.release(entry.id);
                for held in &entry.held {
                    if let Some(n) = self.nodes.get_mut(held) {
                        n.refs -= 1;
                    }
                }
            }
        }
        let dead_nodes: Vec<(Arc<str>, IpAddr)> =
            self.nodes.iter().filter(|(_, n)| n.refs == 0).map(|(k, _)| k.clone()).collect();
        for key in dead_nodes {
            if let Some(entry) = self.nodes.remove(&key) {
                plan.ops.push(Op::DeleteNode { id: entry.id });
                self.node_ids.release(entry.id);
            }
        }
    }

    /// A table for `key`, shared if one exists, else built (its ops queued); `previous`: the
    /// table the VIP used until now (still present), whose choices become the previous nodes.
    fn acquire_table(
        &mut self,
        key: &TableKey,
        previous: Option<&TableKey>,
        new_nodes: &mut Vec<Op>,
        new_tables: &mut Vec<Op>,
    ) -> Result<u32, String> {
        if let Some(entry) = self.tables.get_mut(key) {
            entry.refs += 1;
            return Ok(entry.id);
        }
        let nodes = &key.nodes;
        let backends: Vec<Backend> =
            nodes.iter().map(|n| Backend::new(n.name.as_bytes(), n.weight)).collect();
        let config = MaglevConfig { size: self.config.table_size, seed: self.config.seed };
        let built = Table::build(&config, &backends).map_err(|e| e.to_string())?;
        // Backends come back sorted by identity (the name); `nodes` are sorted by name too.
        let mut node_ids = Vec::with_capacity(nodes.len());
        let mut held = Vec::with_capacity(nodes.len());
        for node in nodes {
            let key = (node.name.clone(), node.address);
            held.push(key.clone());
            let entry = match self.nodes.get_mut(&key) {
                Some(entry) => entry,
                None => {
                    // A pinned entry of this address is the same target: keep its id (the
                    // write below leaves it as it is, counters included).
                    let id = match self.adopted.nodes.remove(&node.address) {
                        Some(id) => id,
                        None => {
                            let id = self.node_ids.take();
                            new_nodes.push(Op::ZeroNodeCounters { id });
                            id
                        }
                    };
                    new_nodes.push(Op::PutNode { id, address: node.address });
                    self.nodes.entry(key).or_insert(NodeEntry { id, refs: 0 })
                }
            };
            entry.refs += 1;
            node_ids.push(entry.id);
        }
        let slots: Arc<[u32]> =
            built.table.slots().iter().map(|&index| node_ids[index as usize]).collect();
        let (previous, previous_nodes) = match previous.and_then(|k| Some((k, self.tables.get(k)?)))
        {
            Some((old_key, old)) => {
                let mut named = BTreeMap::new();
                let prev: Arc<[u32]> = old
                    .table
                    .slots()
                    .iter()
                    .zip(slots.iter())
                    .map(|(&index, &now)| {
                        let index = index as usize;
                        let was = old.node_ids[index];
                        let was = if key.unnamed.contains(&old_key.nodes[index].name) {
                            now
                        } else {
                            was
                        };
                        if was != now {
                            named.insert(was, old_key.nodes[index].clone());
                        }
                        if was == now { 0 } else { was }
                    })
                    .collect();
                (Some(prev), named)
            }
            None => (None, BTreeMap::new()),
        };
        let previous_list = previous.is_some().then(|| key.previous.clone()).flatten();
        // The previous nodes stay in the maps while this table names them.
        self.hold(previous_nodes.values(), &mut held);
        let id = self.table_ids.take();
        let named: Arc<[(u32, NodeTarget)]> =
            node_ids.iter().copied().zip(nodes.iter().cloned()).collect();
        new_tables.push(Op::PutTable { id, slots, nodes: named, previous: previous.clone() });
        self.tables.insert(
            key.clone(),
            TableEntry {
                id,
                table: built.table,
                node_ids,
                previous,
                previous_nodes,
                held,
                refs: 1,
                previous_since: None,
                previous_list,
                built: None,
            },
        );
        Ok(id)
    }

    /// Takes a reference on the entry of each of `nodes` present and not in `held` yet.
    fn hold<'a>(
        &mut self,
        nodes: impl IntoIterator<Item = &'a NodeTarget>,
        held: &mut Vec<(Arc<str>, IpAddr)>,
    ) {
        for node in nodes {
            let node_key = (node.name.clone(), node.address);
            if !held.contains(&node_key)
                && let Some(entry) = self.nodes.get_mut(&node_key)
            {
                entry.refs += 1;
                held.push(node_key);
            }
        }
    }

    fn release_table(&mut self, key: &TableKey) {
        if let Some(entry) = self.tables.get_mut(key) {
            entry.refs = entry.refs.saturating_sub(1);
        }
    }

    /// Every VIP with its id and table id (0: no nodes).
    pub fn vips(&self) -> impl Iterator<Item = (&FrontendKey, u32, u32)> {
        self.vips.iter().map(|(key, entry)| {
            let table = entry.table.as_ref().and_then(|t| self.tables.get(t)).map_or(0, |t| t.id);
            (key, entry.id, table)
        })
    }

    /// The nodes of a VIP's table (empty when none serves it).
    pub fn nodes_of(&self, key: &FrontendKey) -> &[NodeTarget] {
        self.vips.get(key).and_then(|v| v.table.as_ref()).map_or(&[], |t| t.nodes.as_slice())
    }

    /// The nodes VIP `key`'s table serves with and names as previous nodes (health checks
    /// keep probing them: one that left the objects but answers is still alive).
    pub fn known_nodes(&self, key: &FrontendKey) -> Vec<NodeTarget> {
        let Some(table) = self.vips.get(key).and_then(|v| v.table.as_ref()) else {
            // Before the first update of a restart: the table it pinned (taken over then);
            // before the first build: the previous nodes the others' records name.
            let pinned =
                self.adopted.vip_tables.get(key).and_then(|id| self.adopted.tables.get(id));
            let mut out: Vec<NodeTarget> =
                pinned.map_or_else(Vec::new, |t| t.nodes.iter().map(|(_, n)| n.clone()).collect());
            out.extend(self.seeds.get(key).into_iter().flat_map(|s| s.previous.clone()));
            return out;
        };
        let mut out = table.nodes.clone();
        if let Some(entry) = self.tables.get(table) {
            out.extend(entry.previous_nodes.values().cloned());
        }
        out
    }

    /// Which node a flow with this hash to VIP `key` goes to, and why. `None` when `key` is no
    /// VIP or no node serves it.
    pub fn choose(&self, key: &FrontendKey, hash: u64) -> Option<Choice> {
        let vip = self.vips.get(key)?;
        let table_key = vip.table.as_ref()?;
        let nodes = &table_key.nodes;
        let entry = self.tables.get(table_key)?;
        let slot = entry.table.slot_for_hash(hash);
        let index = *entry.table.slots().get(slot)? as usize;
        let previous = entry
            .previous
            .as_ref()
            .and_then(|p| p.get(slot).copied())
            .filter(|&id| id != 0)
            .and_then(|id| Some((id, entry.previous_nodes.get(&id)?.clone())));
        Some(Choice {
            vip_id: vip.id,
            service: vip.service.clone(),
            policy: vip.policy,
            table_id: entry.id,
            slot: slot as u32,
            table_size: self.config.table_size.get(),
            node: nodes.get(index)?.clone(),
            node_id: *entry.node_ids.get(index)?,
            previous,
            nodes: nodes.len(),
        })
    }

    /// Ids currently in use: (VIPs, tables, nodes). For invariant checks.
    pub fn live_ids(&self) -> (BTreeSet<u32>, BTreeSet<u32>, BTreeSet<u32>) {
        (
            self.vips.values().map(|v| v.id).collect(),
            self.tables.values().map(|t| t.id).collect(),
            self.nodes.values().map(|n| n.id).collect(),
        )
    }
}

/// The previous nodes a UDP VIP's table leaves out: those of `previous` that are neither
/// serving nor draining now (deleted, not ready, or down by the health probes: maybe dead).
/// A node that does not hold a UDP packet sends it to the previous node, which returns what
/// it does not hold; a dead previous node would return nothing, and every new UDP flow of its
/// slots would be lost until the previous nodes expire. A TCP VIP names them all (a SYN never
/// goes there, and a dead node's TCP flows are lost either way).
fn unnamed_for(key: &FrontendKey, vip: &Vip, previous: &[NodeTarget]) -> Vec<Arc<str>> {
    if key.protocol != Protocol::Udp {
        return Vec::new();
    }
    let alive = |name: &Arc<str>| vip.nodes.iter().chain(&vip.draining).any(|n| &n.name == name);
    let mut out: Vec<Arc<str>> =
        previous.iter().map(|n| n.name.clone()).filter(|name| !alive(name)).collect();
    out.sort();
    out.dedup();
    out
}
