//! A restarted director takes over the tables it pinned (issue 17 (f)): its own history, so
//! the previous nodes it named before it stopped stay named, and a change made while no
//! process ran gets the pinned tables' choices as its previous nodes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use switchyard_maglev::{Backend, MaglevConfig, Table};
use switchyard_model::FrontendKey;

use super::{NodeEntry, TableEntry, TableKey, Tables, VipEntry};
use crate::vips::{NodeTarget, VipSet};

/// A table an earlier run pinned: a restarted director takes it over as it is when it still
/// serves its VIP, so the previous nodes it names (the second chance of a change this director
/// saw before it stopped) stay named, and a change that happened while no process ran gets
/// the pinned table's choices as its previous nodes, as if the director had run throughout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdoptedTable {
    /// Its nodes: id, and the name and weight `sy_dir_table_nodes` records with the address
    /// of the node entry.
    pub nodes: Vec<(u32, NodeTarget)>,
    /// The node id of every slot.
    pub slots: Vec<u32>,
    /// The previous node id of every slot (0: the same), when it names any.
    pub previous: Option<Vec<u32>>,
    /// When it was built, if pinned: its previous nodes expire TTL after that, not after the
    /// restart.
    pub built: Option<SystemTime>,
}

impl Tables {
    /// Takes over the pinned table of every VIP of `set` this director does not hold yet,
    /// as it is (same id, slots and previous nodes: nothing is written), when its nodes
    /// rebuild exactly its slots (same seed, M, names and weights); the update then starts
    /// from it as from a table this process built. A previous node's name comes from `set`
    /// (by address), else from another pinned table, else it is the address (a node gone:
    /// alive for no UDP VIP).
    pub(super) fn take_over_pinned(&mut self, set: &VipSet) {
        let pinned = std::mem::take(&mut self.adopted.vip_tables);
        let tables = std::mem::take(&mut self.adopted.tables);
        // A pinned VIP without a table is known too: its first table names no previous node.
        let tableless: Vec<(FrontendKey, u32)> = self
            .adopted
            .vips
            .iter()
            .filter(|(key, _)| !pinned.contains_key(key) && !self.vips.contains_key(key))
            .map(|(key, id)| (*key, *id))
            .collect();
        for (key, id) in tableless {
            let Some(vip) = set.vips.get(&key) else { continue };
            self.adopted.vips.remove(&key);
            let entry =
                VipEntry { id, table: None, service: vip.service.clone(), policy: vip.policy };
            self.vips.insert(key, entry);
        }
        let known: BTreeMap<IpAddr, NodeTarget> = set
            .vips
            .values()
            .flat_map(|v| v.nodes.iter().chain(&v.draining))
            .chain(tables.values().flat_map(|t| t.nodes.iter().map(|(_, n)| n)))
            .map(|n| (n.address, n.clone()))
            .collect();
        for (key, table_id) in pinned {
            let Some(vip) = set.vips.get(&key) else { continue };
            if self.vips.contains_key(&key) {
                continue;
            }
            let Some(vip_id) = self.adopted.vips.get(&key).copied() else { continue };
            let shared = self.tables.keys().find(|k| k.adopted == Some(table_id)).cloned();
            let table_key = match shared {
                Some(k) => {
                    if let Some(entry) = self.tables.get_mut(&k) {
                        entry.refs += 1;
                    }
                    k
                }
                None => {
                    let Some(pinned) = tables.get(&table_id) else { continue };
                    let Some((k, mut entry)) = self.pinned_entry(table_id, pinned, &known) else {
                        continue;
                    };
                    entry.previous_list = self.published_list(&key, &k, &entry);
                    self.tables.insert(k.clone(), entry);
                    k
                }
            };
            self.adopted.vips.remove(&key);
            self.vips.insert(
                key,
                VipEntry {
                    id: vip_id,
                    table: Some(table_key),
                    service: vip.service.clone(),
                    policy: vip.policy,
                },
            );
        }
    }

    /// The entry of pinned table `id`, its node entries taken over (their pinned ids); `None`
    /// when its nodes do not rebuild its slots or a node entry is held under another id.
    fn pinned_entry(
        &mut self,
        id: u32,
        pinned: &AdoptedTable,
        known: &BTreeMap<IpAddr, NodeTarget>,
    ) -> Option<(TableKey, TableEntry)> {
        let mut nodes = pinned.nodes.clone();
        nodes.sort_by(|a, b| a.1.cmp(&b.1));
        let backends: Vec<Backend> =
            nodes.iter().map(|(_, n)| Backend::new(n.name.as_bytes(), n.weight)).collect();
        let config = MaglevConfig { size: self.config.table_size, seed: self.config.seed };
        let built = Table::build(&config, &backends).ok()?;
        let node_ids: Vec<u32> = nodes.iter().map(|(id, _)| *id).collect();
        let rebuilt = built.table.slots().iter().map(|&index| node_ids[index as usize]);
        if !rebuilt.eq(pinned.slots.iter().copied()) {
            return None;
        }
        let mut previous_nodes = BTreeMap::new();
        for &node in pinned.previous.iter().flatten().filter(|&&n| n != 0) {
            if previous_nodes.contains_key(&node) {
                continue;
            }
            if let Some((_, serving)) = nodes.iter().find(|(id, _)| *id == node) {
                previous_nodes.insert(node, serving.clone());
                continue;
            }
            let address = *self.adopted.node_addresses.get(&node)?;
            let target = known.get(&address).cloned().unwrap_or_else(|| NodeTarget {
                name: Arc::from(address.to_string()),
                address,
                weight: 0,
            });
            previous_nodes.insert(node, target);
        }
        let all: Vec<(u32, NodeTarget)> = nodes
            .iter()
            .cloned()
            .chain(
                previous_nodes
                    .iter()
                    .filter(|(id, _)| !node_ids.contains(id))
                    .map(|(id, n)| (*id, n.clone())),
            )
            .collect();
        if all.iter().any(|(id, n)| {
            self.nodes.get(&(n.name.clone(), n.address)).is_some_and(|e| e.id != *id)
                || self.nodes.iter().any(|(k, e)| e.id == *id && k != &(n.name.clone(), n.address))
        }) {
            return None;
        }
        let mut held = Vec::with_capacity(all.len());
        for (node_id, n) in &all {
            let node_key = (n.name.clone(), n.address);
            if held.contains(&node_key) {
                continue;
            }
            self.adopted.nodes.retain(|_, pinned_id| pinned_id != node_id);
            self.nodes
                .entry(node_key.clone())
                .or_insert(NodeEntry { id: *node_id, refs: 0 })
                .refs += 1;
            held.push(node_key);
        }
        let key = TableKey {
            nodes: nodes.iter().map(|(_, n)| n.clone()).collect(),
            previous: None,
            unnamed: Vec::new(),
            adopted: Some(id),
        };
        let entry = TableEntry {
            id,
            table: built.table,
            node_ids,
            previous: pinned.previous.as_ref().map(|p| p.iter().copied().collect()),
            previous_nodes,
            held,
            refs: 1,
            previous_since: None,
            previous_list: None,
            built: pinned.built,
        };
        Some((key, entry))
    }

    /// The previous node list of a pinned table (it pins slots, not the list), from the
    /// published records ([`Tables::set_records`]: this director's own among them) when the
    /// chosen one is of the table's nodes and names every node the pins name: then the
    /// restarted director publishes it again.
    fn published_list(
        &self,
        vip: &FrontendKey,
        key: &TableKey,
        entry: &TableEntry,
    ) -> Option<Vec<NodeTarget>> {
        entry.previous.as_ref()?;
        let seed = self.seed_for(vip, &key.nodes)?;
        let names_all = entry
            .previous_nodes
            .values()
            .all(|n| seed.previous.iter().any(|p| p.name == n.name && p.address == n.address));
        names_all.then_some(seed.previous)
    }
}
