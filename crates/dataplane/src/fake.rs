//! An in-memory kernel: the maps as ordered maps, strict about misuse, with the consistency
//! check the make-before-break order promises after every single operation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::ops::{BackendId, FrontendId, FrontendValue, MapOps, Op, Snapshot};

/// A misuse of the maps that the real kernel would accept silently but that is a planner bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fake kernel refused {op}: {reason}")]
pub struct FakeError {
    pub op: String,
    pub reason: String,
}

/// The five maps, in memory.
#[derive(Debug, Clone)]
pub struct FakeKernel<K, B, A> {
    pub frontends: BTreeMap<K, FrontendValue<A>>,
    pub slots: BTreeMap<(FrontendId, u32), BackendId>,
    pub backends: BTreeMap<BackendId, B>,
    pub maglev: BTreeMap<FrontendId, Arc<[BackendId]>>,
    pub rev_nat: BTreeMap<FrontendId, K>,
    /// Called after every single operation; an error stops `apply`.
    pub check_each_op: bool,
}

impl<K, B, A> Default for FakeKernel<K, B, A> {
    fn default() -> Self {
        Self {
            frontends: BTreeMap::new(),
            slots: BTreeMap::new(),
            backends: BTreeMap::new(),
            maglev: BTreeMap::new(),
            rev_nat: BTreeMap::new(),
            check_each_op: false,
        }
    }
}

/// What one frontend resolves to through the maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<B, A> {
    pub backends: BTreeSet<B>,
    pub slot_count: usize,
    pub maglev: Option<Vec<B>>,
    pub attrs: A,
}

impl<K, B, A> FakeKernel<K, B, A>
where
    K: Clone + Ord + fmt::Debug,
    B: Clone + Ord + fmt::Debug,
    A: Clone + Eq + fmt::Debug,
{
    pub fn apply_one(&mut self, op: &Op<K, B, A>) -> Result<(), FakeError> {
        let refuse = |reason: &str| FakeError { op: format!("{op:?}"), reason: reason.to_owned() };
        match op {
            Op::PutBackend { id, backend } => {
                if let Some(old) = self.backends.get(id)
                    && old != backend
                {
                    return Err(refuse("backend id reused while its old backend is in the map"));
                }
                self.backends.insert(*id, backend.clone());
            }
            Op::PutRevNat { id, frontend } => {
                self.rev_nat.insert(*id, frontend.clone());
            }
            Op::PutSlot { frontend, slot, backend } => {
                self.slots.insert((*frontend, *slot), *backend);
            }
            Op::PutMaglev { frontend, table } => {
                self.maglev.insert(*frontend, table.clone());
            }
            Op::PutFrontend { key, value } => {
                self.frontends.insert(key.clone(), value.clone());
            }
            Op::DeleteFrontend { key } => {
                self.frontends.remove(key).ok_or_else(|| refuse("no such frontend"))?;
            }
            Op::DeleteSlot { frontend, slot } => {
                self.slots.remove(&(*frontend, *slot));
            }
            Op::DeleteMaglev { frontend } => {
                self.maglev.remove(frontend).ok_or_else(|| refuse("no such table"))?;
            }
            Op::DeleteRevNat { id } => {
                self.rev_nat.remove(id).ok_or_else(|| refuse("no such reverse translation"))?;
            }
            Op::DeleteBackend { id } => {
                self.backends.remove(id).ok_or_else(|| refuse("no such backend"))?;
            }
        }
        if self.check_each_op {
            self.check_lookups().map_err(|reason| FakeError { op: format!("{op:?}"), reason })?;
        }
        Ok(())
    }

    /// What the datapath relies on: every frontend a lookup can find has its reverse
    /// translation, all its slots, and (for Maglev) a table, all pointing at existing backends.
    pub fn check_lookups(&self) -> Result<(), String> {
        for (key, value) in &self.frontends {
            if self.rev_nat.get(&value.id) != Some(key) {
                return Err(format!(
                    "frontend {key:?} (id {}) has no reverse translation",
                    value.id.0
                ));
            }
            for slot in 0..value.count {
                let Some(backend) = self.slots.get(&(value.id, slot)) else {
                    return Err(format!("frontend {key:?} slot {slot} of {} missing", value.count));
                };
                if !self.backends.contains_key(backend) {
                    return Err(format!(
                        "frontend {key:?} slot {slot}: backend {} missing",
                        backend.0
                    ));
                }
            }
            if value.maglev && value.count > 0 {
                let Some(table) = self.maglev.get(&value.id) else {
                    return Err(format!("frontend {key:?} is Maglev but has no table"));
                };
                if let Some(missing) = table.iter().find(|b| !self.backends.contains_key(b)) {
                    return Err(format!("frontend {key:?} table: backend {} missing", missing.0));
                }
            }
        }
        Ok(())
    }

    /// After a complete plan: nothing is left that no frontend reaches.
    pub fn check_no_debris(&self) -> Result<(), String> {
        let live: BTreeMap<FrontendId, u32> =
            self.frontends.values().map(|v| (v.id, v.count)).collect();
        if live.len() != self.frontends.len() {
            return Err("two frontends share an id".into());
        }
        for (frontend, slot) in self.slots.keys() {
            if live.get(frontend).is_none_or(|count| slot >= count) {
                return Err(format!("slot {} of frontend id {} is unreachable", slot, frontend.0));
            }
        }
        for id in self.maglev.keys() {
            if !live.contains_key(id) {
                return Err(format!("table of frontend id {} is unreachable", id.0));
            }
        }
        for id in self.rev_nat.keys() {
            if !live.contains_key(id) {
                return Err(format!("reverse translation of frontend id {} is unreachable", id.0));
            }
        }
        let referenced: BTreeSet<BackendId> = self
            .slots
            .values()
            .chain(self.maglev.values().flat_map(|t| t.iter()))
            .copied()
            .collect();
        for id in self.backends.keys() {
            if !referenced.contains(id) {
                return Err(format!("backend {} is unreferenced", id.0));
            }
        }
        let distinct: BTreeSet<&B> = self.backends.values().collect();
        if distinct.len() != self.backends.len() {
            return Err("one backend stored under two ids".into());
        }
        Ok(())
    }

    /// Every frontend as a lookup sees it.
    pub fn resolve(&self) -> BTreeMap<K, Resolved<B, A>> {
        self.frontends
            .iter()
            .map(|(key, value)| {
                let backends = (0..value.count)
                    .filter_map(|s| self.slots.get(&(value.id, s)))
                    .filter_map(|id| self.backends.get(id).cloned())
                    .collect();
                let maglev = self
                    .maglev
                    .get(&value.id)
                    .map(|t| t.iter().filter_map(|id| self.backends.get(id).cloned()).collect());
                let resolved = Resolved {
                    backends,
                    slot_count: value.count as usize,
                    maglev,
                    attrs: value.attrs.clone(),
                };
                (key.clone(), resolved)
            })
            .collect()
    }

    pub fn snapshot(&self) -> Snapshot<K, B, A> {
        Snapshot {
            frontends: self.frontends.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            slots: self.slots.iter().map(|((f, s), b)| (*f, *s, *b)).collect(),
            backends: self.backends.iter().map(|(id, b)| (*id, b.clone())).collect(),
            maglev: self.maglev.iter().map(|(f, t)| (*f, t.to_vec())).collect(),
            rev_nat: self.rev_nat.iter().map(|(f, k)| (*f, k.clone())).collect(),
        }
    }
}

impl<K, B, A> MapOps<K, B, A> for FakeKernel<K, B, A>
where
    K: Clone + Ord + fmt::Debug,
    B: Clone + Ord + fmt::Debug,
    A: Clone + Eq + fmt::Debug,
{
    type Error = FakeError;

    fn apply(&mut self, ops: &[Op<K, B, A>]) -> Result<(), FakeError> {
        ops.iter().try_for_each(|op| self.apply_one(op))
    }
}
