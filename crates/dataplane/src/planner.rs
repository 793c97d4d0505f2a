//! The planning core: desired frontends in, ordered map operations out. No I/O.
//!
//! The planner remembers what it believes the maps hold (frontend ids, slot contents, tables,
//! backend ids with reference counts) and turns each batch of changed frontends into the
//! minimal list of [`Op`]s that brings the maps there without ever letting a lookup of a live
//! frontend find a slot, table entry or backend that is not there: see [`crate::ops::Phase`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use crate::backend_table::{BackendTable, NO_POS, Pos};
use crate::ids::IdPool;
use crate::ops::{BackendId, FrontendId, FrontendValue, Op, Snapshot};

/// What one frontend should look like: its backends (in the model's order) and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendSpec<B, A> {
    pub backends: Vec<B>,
    pub maglev: bool,
    pub attrs: A,
}

/// Builds a Maglev lookup table for a set of backends.
pub trait TableBuilder<B>: Send + Sync {
    /// `backends` are sorted and distinct; returns, per table entry, an index into `backends`.
    fn build(&self, backends: &[B]) -> Vec<u32>;
}

/// Map capacities the planner must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub frontends: u32,
    pub backends: u32,
    /// Entries in the slots map, summed over all frontends.
    pub slots: u32,
    pub slots_per_frontend: u32,
}

/// Why a frontend could not be planned. The frontend keeps its previous state in the maps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No free frontend id is left.
    #[error("frontend {frontend}: frontend map is full ({capacity} frontends)")]
    FrontendsFull { frontend: String, capacity: u32 },
    /// Not enough free backend ids for the frontend's new backends.
    #[error("frontend {frontend}: needs {needed} new backend ids, {free} are free")]
    BackendsFull { frontend: String, needed: usize, free: u32 },
    /// The slots map has no room for the frontend's backends.
    #[error("frontend {frontend}: slots map is full ({capacity} slots)")]
    SlotsFull { frontend: String, capacity: u32 },
    /// The frontend has more backends than one frontend may have.
    #[error("frontend {frontend}: {count} backends, at most {max} per frontend")]
    TooManyBackends { frontend: String, count: usize, max: u32 },
}

/// The outcome of planning one batch.
#[derive(Debug, Clone)]
pub struct Plan<K, B, A> {
    /// In make-before-break order, grouped by [`crate::ops::Phase`].
    pub ops: Vec<Op<K, B, A>>,
    /// Backends deleted from the maps by this plan (nothing refers to them any more).
    pub released: Vec<B>,
    /// Frontends left as they were.
    pub errors: Vec<PlanError>,
}

impl<K, B, A> Plan<K, B, A> {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What adoption found in the maps besides well-formed frontends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdoptReport {
    pub frontends: usize,
    pub backends: usize,
    /// Slots, tables and reverse translations of no known frontend, duplicate backends: deleted
    /// by the first plan.
    pub orphans: usize,
    /// Frontends whose id was out of range or taken twice; they get a new id (written before the
    /// frontend entry switches to it).
    pub renumbered: usize,
}

#[derive(Debug, Clone)]
struct FrontendState<A> {
    id: FrontendId,
    /// What slots `0..len` hold in the kernel, as positions in the backend table; [`NO_POS`]
    /// for missing or unusable entries.
    slots: Vec<Pos>,
    /// The frontend entry as the kernel holds it, if any.
    written: Option<FrontendValue<A>>,
    table: Option<Arc<[BackendId]>>,
    /// False for adopted tables until they have been compared with a freshly built one.
    table_trusted: bool,
    rev_nat: bool,
}

/// Operations sorted into phases as they are produced.
struct Buckets<K, B, A>([Vec<Op<K, B, A>>; 6]);

impl<K, B, A> Buckets<K, B, A> {
    fn new() -> Self {
        Self(Default::default())
    }

    fn push(&mut self, op: Op<K, B, A>) {
        self.0[op.phase() as usize].push(op);
    }

    fn into_ops(self) -> Vec<Op<K, B, A>> {
        let len = self.0.iter().map(Vec::len).sum();
        let mut ops = Vec::with_capacity(len);
        for bucket in self.0 {
            ops.extend(bucket);
        }
        ops
    }
}

/// Turns desired frontends into map operations. See the module documentation.
pub struct Planner<K, B, A> {
    frontends: HashMap<K, FrontendState<A>>,
    backends: BackendTable<B>,
    frontend_ids: IdPool,
    backend_ids: IdPool,
    limits: Limits,
    /// Slot entries the kernel may hold, counting shrinkage only once it is carried out.
    slots_in_use: u64,
    tables: Arc<dyn TableBuilder<B>>,
    /// Deletions of adopted debris, carried out by the next plan.
    orphan_ops: Vec<Op<K, B, A>>,
    orphan_frontend_ids: Vec<FrontendId>,
    orphan_backend_ids: Vec<BackendId>,
    /// Adopted or released backends nothing referred to; deleted by the next plan unless it
    /// uses them.
    pending_zero: Vec<Pos>,
    /// Backends kept in the maps without a slot ([`Planner::hold`]); each holds one reference.
    held: HashSet<B>,
}

impl<K, B, A> fmt::Debug for Planner<K, B, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Planner")
            .field("frontends", &self.frontends.len())
            .field("backends", &self.backends.len())
            .field("slots_in_use", &self.slots_in_use)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Per-batch bookkeeping that is settled once every frontend is planned.
struct Batch<K, B, A> {
    buckets: Buckets<K, B, A>,
    /// Backends whose count dropped to zero (maybe more than once; some in use again).
    zero_refs: Vec<Pos>,
    released_frontend_ids: Vec<FrontendId>,
    slots_to_free: u64,
    errors: Vec<PlanError>,
}

impl<K, B, A> Planner<K, B, A>
where
    K: Clone + Ord + Hash + fmt::Display,
    B: Clone + Ord + Hash,
    A: Clone + Eq,
{
    /// A planner for empty maps.
    pub fn new(limits: Limits, tables: Arc<dyn TableBuilder<B>>) -> Self {
        Self {
            frontends: HashMap::new(),
            backends: BackendTable::default(),
            frontend_ids: IdPool::new(limits.frontends),
            backend_ids: IdPool::new(limits.backends),
            limits,
            slots_in_use: 0,
            tables,
            orphan_ops: Vec::new(),
            orphan_frontend_ids: Vec::new(),
            orphan_backend_ids: Vec::new(),
            pending_zero: Vec::new(),
            held: HashSet::new(),
        }
    }

    /// The capacities it plans within.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Raises the capacities (the maps were grown; ids and contents are unchanged). Each
    /// capacity only grows.
    pub fn raise_limits(&mut self, limits: Limits) {
        self.frontend_ids.grow(limits.frontends);
        self.backend_ids.grow(limits.backends);
        self.limits = Limits {
            frontends: self.limits.frontends.max(limits.frontends),
            backends: self.limits.backends.max(limits.backends),
            slots: self.limits.slots.max(limits.slots),
            slots_per_frontend: self.limits.slots_per_frontend.max(limits.slots_per_frontend),
        };
    }

    pub fn frontend_count(&self) -> usize {
        self.frontends.len()
    }

    pub fn backend_count(&self) -> usize {
        self.backends.len()
    }

    pub fn frontend_id(&self, key: &K) -> Option<FrontendId> {
        self.frontends.get(key).map(|f| f.id)
    }

    pub fn backend_id(&self, backend: &B) -> Option<BackendId> {
        self.backends.get(backend).map(|e| e.id)
    }

    /// Keeps `backend`'s entry and id in the maps even when no frontend uses it any more:
    /// per-packet conntrack names flows by backend id, and a terminating endpoint's flows must
    /// keep their backend until the endpoint is gone. False when the backend is not in the maps.
    pub fn hold(&mut self, backend: &B) -> bool {
        if self.held.contains(backend) {
            return true;
        }
        match self.backends.find(backend) {
            Some(pos) => {
                self.backends.at_mut(pos).refs += 1;
                self.held.insert(backend.clone());
                true
            }
            None => false,
        }
    }

    /// Ends a hold: the entry goes with the next plan unless a frontend uses it.
    pub fn release(&mut self, backend: &B) {
        if self.held.remove(backend)
            && let Some(pos) = self.backends.find(backend)
        {
            let entry = self.backends.at_mut(pos);
            entry.refs = entry.refs.saturating_sub(1);
            if entry.refs == 0 {
                self.pending_zero.push(pos);
            }
        }
    }

    /// Backends currently held.
    pub fn held(&self) -> impl Iterator<Item = &B> {
        self.held.iter()
    }

    /// Plans a batch of changes: `Some(spec)` creates or updates a frontend, `None` removes it.
    /// When a key appears more than once the last change wins.
    pub fn plan<I>(&mut self, changes: I) -> Plan<K, B, A>
    where
        I: IntoIterator<Item = (K, Option<FrontendSpec<B, A>>)>,
    {
        let changes: BTreeMap<K, Option<FrontendSpec<B, A>>> = changes.into_iter().collect();
        let mut batch = Batch {
            buckets: Buckets::new(),
            zero_refs: Vec::new(),
            released_frontend_ids: Vec::new(),
            slots_to_free: 0,
            errors: Vec::new(),
        };
        for op in self.orphan_ops.drain(..) {
            batch.buckets.push(op);
        }
        batch.zero_refs.append(&mut self.pending_zero);
        for (key, change) in changes {
            match change {
                Some(spec) => {
                    if let Err(err) = self.upsert(&key, spec, &mut batch) {
                        batch.errors.push(err);
                    }
                }
                None => self.remove(&key, &mut batch),
            }
        }
        self.finish(batch)
    }

    /// Plans the whole desired state: every frontend not in `desired` is removed.
    pub fn plan_full<I>(&mut self, desired: I) -> Plan<K, B, A>
    where
        I: IntoIterator<Item = (K, FrontendSpec<B, A>)>,
    {
        let mut changes: BTreeMap<K, Option<FrontendSpec<B, A>>> =
            desired.into_iter().map(|(k, s)| (k, Some(s))).collect();
        for key in self.frontends.keys() {
            if !changes.contains_key(key) {
                changes.insert(key.clone(), None);
            }
        }
        self.plan(changes)
    }

    fn upsert(
        &mut self,
        key: &K,
        spec: FrontendSpec<B, A>,
        batch: &mut Batch<K, B, A>,
    ) -> Result<(), PlanError> {
        let mut seen: HashSet<&B> = HashSet::with_capacity(spec.backends.len());
        let desired: Vec<&B> = spec.backends.iter().filter(|b| seen.insert(*b)).collect();
        drop(seen);
        let n = desired.len();

        // Check every capacity before touching anything, so a refused frontend changes nothing.
        if n > self.limits.slots_per_frontend as usize {
            return Err(PlanError::TooManyBackends {
                frontend: key.to_string(),
                count: n,
                max: self.limits.slots_per_frontend,
            });
        }
        let existing = self.frontends.get(key);
        if existing.is_none() && self.frontend_ids.free() == 0 {
            return Err(PlanError::FrontendsFull {
                frontend: key.to_string(),
                capacity: self.limits.frontends,
            });
        }
        let needed = desired.iter().filter(|b| self.backends.find(b).is_none()).count();
        if needed > self.backend_ids.free() as usize {
            return Err(PlanError::BackendsFull {
                frontend: key.to_string(),
                needed,
                free: self.backend_ids.free(),
            });
        }
        let old_len = existing.map_or(0, |f| f.slots.len());
        let growth = n.saturating_sub(old_len) as u64;
        if self.slots_in_use + growth > u64::from(self.limits.slots) {
            return Err(PlanError::SlotsFull {
                frontend: key.to_string(),
                capacity: self.limits.slots,
            });
        }

        let mut state = match self.frontends.remove(key) {
            Some(state) => state,
            None => {
                let Some(id) = self.frontend_ids.allocate() else {
                    unreachable!("free frontend ids were checked above");
                };
                FrontendState {
                    id: FrontendId(id),
                    slots: Vec::new(),
                    written: None,
                    table: None,
                    table_trusted: false,
                    rev_nat: false,
                }
            }
        };
        let buckets = &mut batch.buckets;
        if !state.rev_nat {
            buckets.push(Op::PutRevNat { id: state.id, frontend: key.clone() });
            state.rev_nat = true;
        }

        // Every desired backend gets an entry (new ones an id and a map write first).
        let desired: Vec<Pos> = desired
            .into_iter()
            .map(|backend| match self.backends.find(backend) {
                Some(pos) => pos,
                None => {
                    let Some(id) = self.backend_ids.allocate() else {
                        unreachable!("free backend ids were checked above");
                    };
                    let id = BackendId(id);
                    buckets.push(Op::PutBackend { id, backend: backend.clone() });
                    self.backends.insert(backend.clone(), id)
                }
            })
            .collect();
        drop(spec.backends);
        let desired_set: HashSet<Pos> = desired.iter().copied().collect();

        // Reference counts: one per frontend that holds a backend in its slots.
        let old_set: HashSet<Pos> = state.slots.iter().copied().filter(|p| *p != NO_POS).collect();
        let set_changed =
            old_set.len() != desired_set.len() || old_set.iter().any(|p| !desired_set.contains(p));
        for &pos in &desired {
            if !old_set.contains(&pos) {
                self.backends.at_mut(pos).refs += 1;
            }
        }
        for &pos in &old_set {
            if desired_set.contains(&pos) {
                continue;
            }
            let entry = self.backends.at_mut(pos);
            entry.refs = entry.refs.saturating_sub(1);
            if entry.refs == 0 {
                batch.zero_refs.push(pos);
            }
        }

        // Slots: a backend that stays keeps its slot if that slot survives; new backends and
        // those displaced from cut-off slots fill the holes. Overwriting a slot in place is safe:
        // a lookup finds the old backend (deleted only at the end) or the new one (written first).
        let mut new_slots: Vec<Pos> = vec![NO_POS; n];
        let mut placed: HashSet<Pos> = HashSet::with_capacity(n);
        for (i, &pos) in state.slots.iter().take(n).enumerate() {
            if pos != NO_POS && desired_set.contains(&pos) && placed.insert(pos) {
                new_slots[i] = pos;
            }
        }
        let mut holes = (0..n).filter(|i| new_slots[*i] == NO_POS).collect::<Vec<_>>().into_iter();
        for &pos in &desired {
            if !placed.contains(&pos)
                && let Some(i) = holes.next()
            {
                new_slots[i] = pos;
            }
        }
        for (i, &pos) in new_slots.iter().enumerate() {
            if pos != NO_POS && state.slots.get(i) != Some(&pos) {
                let id = self.backends.at(pos).id;
                buckets.push(Op::PutSlot { frontend: state.id, slot: i as u32, backend: id });
            }
        }
        for i in n..state.slots.len() {
            buckets.push(Op::DeleteSlot { frontend: state.id, slot: i as u32 });
        }
        self.slots_in_use += growth;
        batch.slots_to_free += old_len.saturating_sub(n) as u64;

        // Maglev table: rebuilt only when the backend set changed (or was never checked).
        if spec.maglev && n > 0 {
            if set_changed || !state.table_trusted || state.table.is_none() {
                let mut sorted = desired;
                sorted.sort_by(|a, b| {
                    self.backends.at(*a).backend.cmp(&self.backends.at(*b).backend)
                });
                let backends: Vec<B> =
                    sorted.iter().map(|pos| self.backends.at(*pos).backend.clone()).collect();
                let table: Arc<[BackendId]> = self
                    .tables
                    .build(&backends)
                    .into_iter()
                    .map(|i| self.backends.at(sorted[(i as usize).min(n - 1)]).id)
                    .collect();
                if state.table.as_deref() != Some(&*table) {
                    buckets.push(Op::PutMaglev { frontend: state.id, table: table.clone() });
                    state.table = Some(table);
                }
                state.table_trusted = true;
            }
        } else if state.table.take().is_some() {
            buckets.push(Op::DeleteMaglev { frontend: state.id });
        }

        state.slots = new_slots;
        let value =
            FrontendValue { id: state.id, count: n as u32, maglev: spec.maglev, attrs: spec.attrs };
        if state.written.as_ref() != Some(&value) {
            buckets.push(Op::PutFrontend { key: key.clone(), value: value.clone() });
            state.written = Some(value);
        }
        self.frontends.insert(key.clone(), state);
        Ok(())
    }

    fn remove(&mut self, key: &K, batch: &mut Batch<K, B, A>) {
        let Some(state) = self.frontends.remove(key) else { return };
        let buckets = &mut batch.buckets;
        if state.written.is_some() {
            buckets.push(Op::DeleteFrontend { key: key.clone() });
        }
        for i in 0..state.slots.len() {
            buckets.push(Op::DeleteSlot { frontend: state.id, slot: i as u32 });
        }
        if state.table.is_some() {
            buckets.push(Op::DeleteMaglev { frontend: state.id });
        }
        if state.rev_nat {
            buckets.push(Op::DeleteRevNat { id: state.id });
        }
        let held: HashSet<Pos> = state.slots.iter().copied().filter(|p| *p != NO_POS).collect();
        for pos in held {
            let entry = self.backends.at_mut(pos);
            entry.refs = entry.refs.saturating_sub(1);
            if entry.refs == 0 {
                batch.zero_refs.push(pos);
            }
        }
        batch.slots_to_free += state.slots.len() as u64;
        batch.released_frontend_ids.push(state.id);
    }

    /// Deletes what nothing refers to any more and frees ids — only now, so no id is reused
    /// within the batch that released it (and no backend position within the batch either).
    fn finish(&mut self, mut batch: Batch<K, B, A>) -> Plan<K, B, A> {
        let mut released = Vec::new();
        for pos in batch.zero_refs {
            let unused = self.backends.get_at(pos).is_some_and(|e| e.refs == 0);
            if unused && let Some(entry) = self.backends.remove(pos) {
                batch.buckets.push(Op::DeleteBackend { id: entry.id });
                self.backend_ids.release(entry.id.0);
                released.push(entry.backend);
            }
        }
        for id in batch.released_frontend_ids.into_iter().chain(self.orphan_frontend_ids.drain(..))
        {
            self.frontend_ids.release(id.0);
        }
        for id in self.orphan_backend_ids.drain(..) {
            self.backend_ids.release(id.0);
        }
        self.slots_in_use = self.slots_in_use.saturating_sub(batch.slots_to_free);
        Plan { ops: batch.buckets.into_ops(), released, errors: batch.errors }
    }

    /// Rebuilds the planner from the maps' contents after a restart. Nothing is written here;
    /// follow with [`Planner::plan_full`] against the first desired state, which keeps every id
    /// that is still wanted and deletes leftovers only after everything new is in place.
    pub fn adopt(
        snapshot: Snapshot<K, B, A>,
        limits: Limits,
        tables: Arc<dyn TableBuilder<B>>,
    ) -> (Self, AdoptReport) {
        let mut planner = Self::new(limits, tables);
        let mut report = AdoptReport::default();

        // Backends: the first id seen for a backend is kept, later duplicates are debris.
        let mut by_id: HashMap<BackendId, Pos> = HashMap::new();
        let mut backends = snapshot.backends;
        backends.sort_by_key(|(id, _)| *id);
        for (id, backend) in backends {
            if !planner.backend_ids.claim(id.0) {
                // Out of range: nothing we could index; delete it if the map holds it.
                planner.orphan_ops.push(Op::DeleteBackend { id });
                report.orphans += 1;
                continue;
            }
            if planner.backends.find(&backend).is_some() {
                planner.orphan_ops.push(Op::DeleteBackend { id });
                planner.orphan_backend_ids.push(id);
                report.orphans += 1;
                continue;
            }
            by_id.insert(id, planner.backends.insert(backend, id));
        }
        report.backends = planner.backends.len();

        // Frontends keep their ids; a frontend whose id is unusable gets a fresh one.
        let mut frontends = snapshot.frontends;
        frontends.sort_by_key(|(_, v)| v.id);
        let mut renumber = Vec::new();
        let mut owner: HashMap<FrontendId, K> = HashMap::new();
        for (key, value) in frontends {
            if planner.frontend_ids.claim(value.id.0) {
                owner.insert(value.id, key.clone());
                planner.frontends.insert(
                    key,
                    FrontendState {
                        id: value.id,
                        slots: vec![NO_POS; value.count as usize],
                        written: Some(value),
                        table: None,
                        table_trusted: false,
                        rev_nat: false,
                    },
                );
            } else {
                renumber.push((key, value));
            }
        }
        for (frontend, slot, backend) in snapshot.slots {
            let state = owner.get(&frontend).and_then(|k| planner.frontends.get(k));
            match state {
                Some(_) if slot < limits.slots_per_frontend => {
                    let resolved = by_id.get(&backend).copied().unwrap_or(NO_POS);
                    let Some(state) =
                        owner.get(&frontend).and_then(|k| planner.frontends.get_mut(k))
                    else {
                        continue;
                    };
                    let i = slot as usize;
                    if state.slots.len() <= i {
                        state.slots.resize(i + 1, NO_POS);
                    }
                    state.slots[i] = resolved;
                }
                _ => {
                    planner.orphan_ops.push(Op::DeleteSlot { frontend, slot });
                    report.orphans += 1;
                    if planner.frontend_ids.claim(frontend.0) {
                        planner.orphan_frontend_ids.push(frontend);
                    }
                }
            }
        }
        for (frontend, table) in snapshot.maglev {
            match owner.get(&frontend).and_then(|k| planner.frontends.get_mut(k)) {
                Some(state) => state.table = Some(table.into()),
                None => {
                    planner.orphan_ops.push(Op::DeleteMaglev { frontend });
                    report.orphans += 1;
                    if planner.frontend_ids.claim(frontend.0) {
                        planner.orphan_frontend_ids.push(frontend);
                    }
                }
            }
        }
        for (id, key) in snapshot.rev_nat {
            match owner.get(&id) {
                Some(owner_key) => {
                    if *owner_key == key
                        && let Some(state) = planner.frontends.get_mut(owner_key)
                    {
                        state.rev_nat = true;
                    }
                }
                None => {
                    planner.orphan_ops.push(Op::DeleteRevNat { id });
                    report.orphans += 1;
                    if planner.frontend_ids.claim(id.0) {
                        planner.orphan_frontend_ids.push(id);
                    }
                }
            }
        }

        // Renumbered frontends: a fresh id, no slots of their own yet; their kernel entry still
        // points at the old id's slots until the first plan switches it over.
        for (key, value) in renumber {
            if planner.frontends.contains_key(&key) {
                continue;
            }
            let Some(id) = planner.frontend_ids.allocate() else { continue };
            report.renumbered += 1;
            planner.frontends.insert(
                key,
                FrontendState {
                    id: FrontendId(id),
                    slots: Vec::new(),
                    written: Some(value),
                    table: None,
                    table_trusted: false,
                    rev_nat: false,
                },
            );
        }

        // Reference counts from what the slots hold; unreferenced backends go in the first plan.
        for state in planner.frontends.values() {
            let held: HashSet<Pos> = state.slots.iter().copied().filter(|p| *p != NO_POS).collect();
            for pos in held {
                planner.backends.at_mut(pos).refs += 1;
            }
            planner.slots_in_use += state.slots.len() as u64;
        }
        planner.pending_zero =
            planner.backends.iter().filter(|(_, e)| e.refs == 0).map(|(pos, _)| pos).collect();
        report.frontends = planner.frontends.len();
        (planner, report)
    }
}
