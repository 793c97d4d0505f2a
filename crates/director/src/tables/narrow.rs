//! A UDP VIP stops naming a previous node that died (down by the health probes, deleted, not
//! ready) without waiting for its next change: a table of the same slots without it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use switchyard_model::FrontendKey;

use super::{Op, TableEntry, TableKey, Tables, unnamed_for};
use crate::vips::{NodeTarget, Vip};

impl Tables {
    /// A table of `old`'s nodes and slots whose previous nodes leave out `key.unnamed` (shared
    /// if one exists, else queued in `new_tables`): a UDP VIP stops naming a previous node
    /// that died, and no slot changes node. It keeps `old`'s expiry time. `None` when `old` is
    /// gone.
    pub(super) fn acquire_narrowed(
        &mut self,
        key: &TableKey,
        old: &TableKey,
        new_tables: &mut Vec<Op>,
    ) -> Option<u32> {
        if let Some(entry) = self.tables.get_mut(key) {
            entry.refs += 1;
            return Some(entry.id);
        }
        let old = self.tables.get(old)?.clone();
        let gone =
            |id: &u32| old.previous_nodes.get(id).is_some_and(|n| key.unnamed.contains(&n.name));
        let previous: Option<Arc<[u32]>> = old
            .previous
            .as_ref()
            .map(|p| p.iter().map(|id| if gone(id) { 0 } else { *id }).collect());
        let previous_nodes: BTreeMap<u32, NodeTarget> = old
            .previous_nodes
            .iter()
            .filter(|(id, _)| !gone(id))
            .map(|(i, n)| (*i, n.clone()))
            .collect();
        // The same node entries as `old` (all present while it is), less the ones left out.
        let mut held: Vec<(Arc<str>, IpAddr)> = Vec::with_capacity(old.held.len());
        self.hold(key.nodes.iter().chain(previous_nodes.values()), &mut held);
        let id = self.table_ids.take();
        let slots: Arc<[u32]> =
            old.table.slots().iter().map(|&index| old.node_ids[index as usize]).collect();
        let named: Arc<[(u32, NodeTarget)]> =
            old.node_ids.iter().copied().zip(key.nodes.iter().cloned()).collect();
        new_tables.push(Op::PutTable { id, slots, nodes: named, previous: previous.clone() });
        self.tables.insert(
            key.clone(),
            TableEntry {
                id,
                table: old.table,
                node_ids: old.node_ids,
                previous,
                previous_nodes,
                held,
                refs: 1,
                previous_since: old.previous_since,
                previous_list: old.previous_list,
                built: old.built,
            },
        );
        Some(id)
    }
}

/// The key of a table of `old`'s nodes and previous nodes that also leaves out the previous
/// nodes of a UDP VIP that died since `old` was built (no longer serving nor draining: down by
/// the health probes, deleted, not ready); `None` when there are none. Never names again a
/// node it left out.
pub(super) fn narrowed(
    key: &FrontendKey,
    vip: &Vip,
    old: &TableKey,
    entry: &TableEntry,
) -> Option<TableKey> {
    let named: Vec<NodeTarget> = entry.previous_nodes.values().cloned().collect();
    let mut unnamed = old.unnamed.clone();
    for name in unnamed_for(key, vip, &named) {
        if !unnamed.contains(&name) {
            unnamed.push(name);
        }
    }
    if unnamed.len() == old.unnamed.len() {
        return None;
    }
    unnamed.sort();
    Some(TableKey {
        nodes: old.nodes.clone(),
        previous: old.previous.clone(),
        unnamed,
        adopted: old.adopted,
    })
}
