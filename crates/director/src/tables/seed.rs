//! A director that builds a VIP for the first time takes over the previous nodes the other
//! directors published ([`crate::previous`]), and every director publishes its own.

use std::collections::BTreeMap;
use std::time::SystemTime;

use switchyard_model::FrontendKey;

use super::{Op, Plan, TableKey, Tables, unnamed_for};
use crate::previous::{Record, Seed, choose, generation};
use crate::vips::Problem;
use crate::vips::{NodeTarget, VipSet};

impl Tables {
    /// Every director's published record (this one's too), read at `wall`: a VIP this
    /// director builds for the first time whose nodes are those of a generation the records
    /// name ([`crate::previous::choose`]) is first built with that generation's previous node
    /// list, then as it is (as for a drain, [`Tables::update`]), so its table names the
    /// previous nodes the others' do, and they expire when the others' do. Before that, its
    /// previous nodes count as nodes the VIP's table holds ([`Tables::known_nodes`]: probed).
    pub fn set_records(&mut self, records: Vec<Record>, wall: SystemTime, set: &VipSet) {
        self.records = (records, wall);
        self.seeds = set
            .vips
            .iter()
            .filter(|(key, _)| !self.vips.contains_key(key))
            .filter_map(|(key, vip)| Some((*key, self.seed_for(key, &vip.nodes)?)))
            .collect();
    }

    /// The records' seed for VIP `key` with `nodes` (any order).
    pub(super) fn seed_for(&self, key: &FrontendKey, nodes: &[NodeTarget]) -> Option<Seed> {
        let mut nodes = nodes.to_vec();
        nodes.sort();
        let (records, wall) = &self.records;
        choose(records, key, &nodes, *wall, self.config.previous_ttl)
            .filter(|seed| !nodes.is_empty() && seed.previous != nodes)
    }

    /// The seeds that apply to `set`'s VIPs not built yet: (previous list, built).
    pub(super) fn published_seeds(
        &self,
        set: &VipSet,
    ) -> BTreeMap<FrontendKey, (Vec<NodeTarget>, SystemTime)> {
        set.vips
            .iter()
            .filter(|(key, _)| !self.vips.contains_key(key))
            .filter_map(|(key, vip)| {
                let seed = self.seed_for(key, &vip.nodes)?;
                Some((*key, (seed.previous, seed.built)))
            })
            .collect()
    }

    /// VIPs first built without a record ([`Tables::update`]) whose nodes a record now names:
    /// each gets a table of the same nodes (so the same slots: no flow changes node) naming
    /// the record's previous nodes, make-before-break. A VIP whose table changed since (this
    /// director's own history) is left alone.
    pub(super) fn reseed(&mut self, set: &VipSet) -> Plan {
        let mut plan = Plan::default();
        let mut due = Vec::new();
        for (key, first) in std::mem::take(&mut self.unseeded) {
            let Some(vip) = set.vips.get(&key) else { continue };
            if self.vips.get(&key).and_then(|v| v.table.as_ref()) != Some(&first) {
                continue;
            }
            match self.seed_for(&key, &first.nodes) {
                Some(seed) => due.push((key, first, seed, vip)),
                None => {
                    self.unseeded.insert(key, first);
                }
            }
        }
        if due.is_empty() {
            return plan;
        }
        let (mut new_nodes, mut new_tables, mut vip_ops) = (Vec::new(), Vec::new(), Vec::new());
        let mut stamped = BTreeMap::new();
        for (key, old, seed, vip) in due {
            let before = TableKey {
                nodes: seed.previous.clone(),
                previous: None,
                unnamed: Vec::new(),
                adopted: None,
            };
            let table = TableKey {
                unnamed: unnamed_for(&key, vip, &seed.previous),
                nodes: old.nodes.clone(),
                previous: Some(seed.previous.clone()),
                adopted: None,
            };
            let built =
                self.acquire_table(&before, None, &mut new_nodes, &mut new_tables).and_then(|_| {
                    let id =
                        self.acquire_table(&table, Some(&before), &mut new_nodes, &mut new_tables);
                    self.release_table(&before);
                    id
                });
            match built {
                Ok(id) => {
                    let entry = self.vips.get_mut(&key).expect("present: checked above");
                    entry.table = Some(table);
                    vip_ops.push(Op::PutVip { key, id: entry.id, table: id });
                    self.release_table(&old);
                    stamped.insert(key, (seed.previous, seed.built));
                }
                Err(reason) => plan.problems.push(Problem {
                    object: format!("VIP {key}"),
                    reason: format!("taking over a published previous-node record: {reason}"),
                }),
            }
        }
        plan.ops.extend(new_nodes);
        plan.ops.extend(new_tables);
        plan.ops.extend(vip_ops);
        self.remove_unused(&mut plan);
        self.stamp_seeded(&stamped);
        plan
    }

    /// The seeded VIPs' new tables count their previous nodes from the seed's build time.
    pub(super) fn stamp_seeded(
        &mut self,
        published: &BTreeMap<FrontendKey, (Vec<NodeTarget>, SystemTime)>,
    ) {
        for (key, (_, built)) in published {
            self.seeds.remove(key);
            let Some(table) = self.vips.get(key).and_then(|v| v.table.clone()) else { continue };
            if let Some(entry) = self.tables.get_mut(&table)
                && entry.previous.is_some()
                && entry.previous_since.is_none()
            {
                entry.built = Some(*built);
            }
        }
    }

    /// VIPs whose table does not name the previous nodes that the newest record names for
    /// its node list, unless their table was built after that record's generation (its own
    /// history is newer). A director that starts for the first time announces only once
    /// this is empty ([`crate::settle`]): until then it might send a moved flow where the
    /// others do not.
    pub fn disagreeing(&self) -> Vec<FrontendKey> {
        let mut out = Vec::new();
        for (key, vip) in &self.vips {
            let Some(table_key) = &vip.table else { continue };
            let Some(seed) = self.seed_for(key, &table_key.nodes) else { continue };
            let Some(entry) = self.tables.get(table_key) else { continue };
            let names =
                entry.previous.is_some() && entry.previous_list.as_ref() == Some(&seed.previous);
            let newer = entry.previous.is_some() && entry.built.is_some_and(|b| b > seed.built);
            if !names && !newer {
                out.push(*key);
            }
        }
        out
    }

    /// What this director publishes: each table that names previous nodes (and knows their
    /// list) as a generation, with its VIPs; `wall` stands for the build time of a table
    /// [`Tables::expire_previous`] has not seen yet.
    pub fn record(&self, wall: SystemTime) -> Record {
        let mut record = Record::default();
        for (key, vip) in &self.vips {
            let Some(table_key) = &vip.table else { continue };
            let Some(entry) = self.tables.get(table_key) else { continue };
            let (Some(_), Some(previous)) = (&entry.previous, &entry.previous_list) else {
                continue;
            };
            let g = generation(&table_key.nodes, previous, entry.built.unwrap_or(wall));
            record.generations.entry(g).or_default().insert(*key);
        }
        record
    }

    /// Each table that names previous nodes, by id, with its build time (the runtime pins it,
    /// so a restarted director expires them when the others do).
    pub fn built_times(&self) -> BTreeMap<u32, SystemTime> {
        self.tables
            .values()
            .filter(|entry| entry.previous.is_some())
            .filter_map(|entry| Some((entry.id, entry.built?)))
            .collect()
    }
}
