//! A strict fake of the director's maps for the table tests: every operation is checked
//! against what the program needs (make-before-break), and lookups answer as the program would.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use switchyard_director::{Adopted, AdoptedTable, NodeTarget, Op};
use switchyard_model::FrontendKey;

/// The maps as the program sees them; every operation is checked against what it needs.
/// Counters are arrays indexed by id (as in the program): they keep their values when an id is
/// freed, so a new holder must have them zeroed first.
#[derive(Default, Debug)]
pub struct FakeMaps {
    pub nodes: BTreeMap<u32, IpAddr>,
    pub tables: BTreeMap<u32, Arc<[u32]>>,
    pub previous: BTreeMap<u32, Arc<[u32]>>,
    pub vips: BTreeMap<FrontendKey, (u32, u32)>,
    pub vip_counters: BTreeMap<u32, u64>,
    pub node_counters: BTreeMap<u32, u64>,
    /// The most entries each map held at once: (VIPs, tables, nodes).
    pub peak: (usize, usize, usize),
    /// Each table's nodes (id, name and weight), as `sy_dir_table_nodes` records them.
    pub table_nodes: BTreeMap<u32, Vec<(u32, NodeTarget)>>,
}

impl FakeMaps {
    pub fn apply(&mut self, op: &Op) {
        self.apply_op(op);
        self.peak.0 = self.peak.0.max(self.vips.len());
        self.peak.1 = self.peak.1.max(self.tables.len());
        self.peak.2 = self.peak.2.max(self.nodes.len());
    }

    /// Every VIP and node in use carries traffic (each id's counter goes up).
    pub fn traffic(&mut self) {
        for (id, _) in self.vips.values() {
            *self.vip_counters.entry(*id).or_default() += 1;
        }
        for id in self.nodes.keys() {
            *self.node_counters.entry(*id).or_default() += 1;
        }
    }

    fn apply_op(&mut self, op: &Op) {
        match op {
            Op::ZeroVipCounters { id } => {
                assert!(!self.vips.values().any(|v| v.0 == *id), "VIP id {id} zeroed while live");
                self.vip_counters.remove(id);
            }
            Op::ZeroNodeCounters { id } => {
                assert!(!self.nodes.contains_key(id), "node id {id} zeroed while live");
                self.node_counters.remove(id);
            }
            // A restarted director writes a node it took over again, unchanged (its counters
            // continue).
            Op::PutNode { id, address } if self.nodes.get(id) == Some(address) => {}
            Op::PutNode { id, address } => {
                assert_eq!(
                    self.node_counters.get(id),
                    None,
                    "node {id}: counters of a former node"
                );
                assert!(self.nodes.insert(*id, *address).is_none(), "node {id} reused while live");
            }
            Op::PutTable { id, slots, nodes, previous } => {
                for node in previous.iter().flat_map(|p| p.iter()).filter(|&&n| n != 0) {
                    assert!(self.nodes.contains_key(node), "table {id}: missing previous {node}");
                }
                if let Some(previous) = previous {
                    assert_eq!(previous.len(), slots.len());
                    self.previous.insert(*id, previous.clone());
                }
                for (node, _) in nodes.iter() {
                    assert!(self.nodes.contains_key(node), "table {id} names missing node {node}");
                }
                for node in slots.iter() {
                    assert!(self.nodes.contains_key(node), "table {id} names missing node {node}");
                }
                assert!(
                    self.tables.insert(*id, slots.clone()).is_none(),
                    "table {id} rewritten in place"
                );
                self.table_nodes.insert(*id, nodes.to_vec());
            }
            Op::PutVip { key, id, table } => {
                assert!(
                    *table == 0 || self.tables.contains_key(table),
                    "VIP {key} -> missing table {table}"
                );
                match self.vips.get(key) {
                    Some((old, _)) => assert_eq!(old, id, "VIP {key} re-pointed with another id"),
                    None => {
                        assert!(
                            !self.vips.values().any(|v| v.0 == *id),
                            "VIP id {id} reused while live"
                        );
                        assert_eq!(
                            self.vip_counters.get(id),
                            None,
                            "VIP {key}: counters of a former VIP"
                        );
                    }
                }
                self.vips.insert(*key, (*id, *table));
            }
            Op::DeleteVip { key } => {
                assert!(self.vips.remove(key).is_some(), "deleting absent VIP {key}");
            }
            Op::DeleteTable { id } => {
                assert!(
                    !self.vips.values().any(|(_, t)| t == id),
                    "table {id} deleted while in use"
                );
                assert!(self.tables.remove(id).is_some());
                self.previous.remove(id);
                self.table_nodes.remove(id);
            }
            Op::DeleteNode { id } => {
                assert!(
                    !self.tables.values().chain(self.previous.values()).any(|s| s.contains(id)),
                    "node {id} deleted while in use (as a node or a previous node)"
                );
                assert!(self.nodes.remove(id).is_some());
            }
        }
    }

    /// What the program would do with a flow hash.
    pub fn lookup(&self, key: &FrontendKey, hash: u64) -> Option<IpAddr> {
        let (_, table) = self.vips.get(key)?;
        let slots = self.tables.get(table)?;
        let node = slots[(hash % slots.len() as u64) as usize];
        self.nodes.get(&node).copied()
    }

    /// The previous node the program would send along (the second chance).
    pub fn lookup_previous(&self, key: &FrontendKey, hash: u64) -> Option<IpAddr> {
        let (_, table) = self.vips.get(key)?;
        let previous = self.previous.get(table)?;
        let node = previous[(hash % previous.len() as u64) as usize];
        if node == 0 {
            return None;
        }
        Some(*self.nodes.get(&node).expect("a previous node is in the maps"))
    }
}

impl FakeMaps {
    /// What a restarted director reads back from these maps (`runtime::adopt`).
    pub fn adopted(&self) -> Adopted {
        Adopted {
            vips: self.vips.iter().map(|(k, (id, _))| (*k, *id)).collect(),
            nodes: self.nodes.iter().map(|(id, address)| (*address, *id)).collect(),
            vip_ids: self.vips.values().map(|(id, _)| *id).collect(),
            table_ids: self.tables.keys().copied().collect(),
            node_ids: self.nodes.keys().copied().collect(),
            node_addresses: self.nodes.clone(),
            vip_tables: self
                .vips
                .iter()
                .filter(|(_, (_, table))| *table != 0)
                .map(|(k, (_, table))| (*k, *table))
                .collect(),
            tables: self
                .tables
                .iter()
                .map(|(id, slots)| {
                    let nodes = self.table_nodes[id]
                        .iter()
                        .map(|(n, t)| (*n, NodeTarget { address: self.nodes[n], ..t.clone() }))
                        .collect();
                    let previous = self.previous.get(id).map(|p| p.to_vec());
                    (*id, AdoptedTable { nodes, slots: slots.to_vec(), previous, built: None })
                })
                .collect(),
        }
    }

    /// Removes what a restarted director did not take over (`Runtime::remove_leftovers`):
    /// VIPs not in `live`, then tables and nodes nothing names.
    pub fn remove_leftovers(&mut self, live: &[FrontendKey]) {
        self.vips.retain(|k, _| live.contains(k));
        let used: Vec<u32> = self.vips.values().map(|(_, t)| *t).collect();
        self.tables.retain(|id, _| used.contains(id));
        self.previous.retain(|id, _| used.contains(id));
        self.table_nodes.retain(|id, _| used.contains(id));
        let named: Vec<u32> =
            self.tables.values().chain(self.previous.values()).flat_map(|s| s.to_vec()).collect();
        self.nodes.retain(|id, _| named.contains(id));
    }
}
