//! Building lookup tables from a backend set, and comparing two of them.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::backend::{Backend, Permutation};
use crate::populate::{Contender, populate};
use crate::seed::Seed;
use crate::size::TableSize;

/// What every machine in the cluster must agree on to build identical tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaglevConfig {
    pub size: TableSize,
    pub seed: Seed,
}

/// A Maglev lookup table: slot `s` sends flows to `backends()[slots()[s]]`.
///
/// Backends are kept sorted by identity bytes, so the table does not depend on the order the set
/// was given in; drained backends (weight 0) keep an index but own no slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    size: TableSize,
    backends: Vec<Backend>,
    slots: Vec<u32>,
}

/// A freshly built table and what the caller should know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Built {
    pub table: Table,
    pub warnings: Vec<Warning>,
}

/// Conditions worth reporting that do not stop a table from being built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// M < 100 × active backends: shares may differ from the weights by more than 1%.
    SizeBelowHundredPerBackend { size: u32, active_backends: usize },
    /// Some active backends own no slot because their weight is tiny next to the others'.
    BackendsWithoutSlots { count: usize },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::SizeBelowHundredPerBackend { size, active_backends } => write!(
                f,
                "Maglev table size {size} is below 100 x {active_backends} active backends; \
                 shares may deviate from the weights by more than 1%"
            ),
            Warning::BackendsWithoutSlots { count } => write!(
                f,
                "{count} backends with a weight above 0 own no slot (weights too small next to \
                 the others for this table size)"
            ),
        }
    }
}

/// Why a table could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// Every backend has weight 0.
    #[error("no backend with a weight above 0: nothing to fill the table with")]
    NoActiveBackends,
    /// Two backends have the same identity.
    #[error("backend {identity:?} appears more than once")]
    DuplicateBackend { identity: String },
    /// More active backends than slots.
    #[error("{active} active backends do not fit in a table of {size} slots")]
    TooManyBackends { active: usize, size: u32 },
}

/// A copy of `backends` sorted by identity bytes.
///
/// Most identities already differ in their first 8 bytes, so those are compared first as one
/// big-endian number (zero-padded, which keeps the byte order: a shorter identity pads with
/// zeros where a longer one has a byte, equal or greater); only ties compare the whole slices.
fn sorted_by_identity(backends: &[Backend]) -> Vec<Backend> {
    let prefix = |identity: &[u8]| {
        let mut bytes = [0u8; 8];
        let len = identity.len().min(8);
        bytes[..len].copy_from_slice(&identity[..len]);
        u64::from_be_bytes(bytes)
    };
    let mut order: Vec<(u64, usize)> =
        backends.iter().enumerate().map(|(i, b)| (prefix(b.identity()), i)).collect();
    order.sort_unstable_by(|(prefix_a, a), (prefix_b, b)| {
        prefix_a.cmp(prefix_b).then_with(|| backends[*a].identity().cmp(backends[*b].identity()))
    });
    order.into_iter().map(|(_, i)| backends[i].clone()).collect()
}

/// Two tables of different sizes cannot be compared slot by slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot compare Maglev tables of sizes {left} and {right}")]
pub struct SizeMismatch {
    pub left: u32,
    pub right: u32,
}

impl Table {
    /// Builds the table for `backends` (in any order). Identities must be unique; at least one
    /// backend needs a weight above 0.
    pub fn build(config: &MaglevConfig, backends: &[Backend]) -> Result<Built, BuildError> {
        let sorted = sorted_by_identity(backends);
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0].identity() == pair[1].identity())
        {
            return Err(BuildError::DuplicateBackend { identity: pair[0].identity_text().into() });
        }

        let m = config.size.get();
        let contenders: Vec<Contender> = sorted
            .iter()
            .zip(0u32..)
            .filter(|(backend, _)| backend.weight() > 0)
            .map(|(backend, index)| Contender {
                permutation: Permutation::of(&config.seed, config.size, backend.identity()),
                weight: backend.weight(),
                index,
            })
            .collect();
        if contenders.is_empty() {
            return Err(BuildError::NoActiveBackends);
        }
        if contenders.len() > m as usize {
            return Err(BuildError::TooManyBackends { active: contenders.len(), size: m });
        }

        let table = Table { size: config.size, slots: populate(m, &contenders), backends: sorted };

        let mut warnings = Vec::new();
        if u64::from(m) < 100 * contenders.len() as u64 {
            warnings.push(Warning::SizeBelowHundredPerBackend {
                size: m,
                active_backends: contenders.len(),
            });
        }
        // With equal weights the first round gives every contender a slot (there are at least
        // as many slots as contenders), so only unequal weights need the pass over the table.
        let equal_weights = contenders.iter().all(|c| c.weight == contenders[0].weight);
        let starved = if equal_weights {
            0
        } else {
            let counts = table.slot_counts();
            contenders.iter().filter(|c| counts[c.index as usize] == 0).count()
        };
        if starved > 0 {
            warnings.push(Warning::BackendsWithoutSlots { count: starved });
        }
        Ok(Built { table, warnings })
    }

    /// M.
    #[must_use]
    pub fn size(&self) -> TableSize {
        self.size
    }

    /// The backend index (into [`backends`](Self::backends)) of every slot.
    #[must_use]
    pub fn slots(&self) -> &[u32] {
        &self.slots
    }

    /// All backends, drained ones included, sorted by identity.
    #[must_use]
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The backend owning slot `slot`, if the slot exists.
    #[must_use]
    pub fn backend_of_slot(&self, slot: usize) -> Option<&Backend> {
        self.slots.get(slot).and_then(|&index| self.backends.get(index as usize))
    }

    /// The slot a flow with this 64-bit hash uses: `hash mod M`.
    #[must_use]
    pub fn slot_for_hash(&self, hash: u64) -> usize {
        (hash % u64::from(self.size.get())) as usize
    }

    /// How many slots each backend owns, indexed like [`backends`](Self::backends).
    #[must_use]
    pub fn slot_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.backends.len()];
        for &index in &self.slots {
            counts[index as usize] += 1;
        }
        counts
    }

    /// The slots whose backend (by identity) differs between `old` and `new`, in ascending order:
    /// the slots a reconciler has to rewrite, and the share of flows that move.
    pub fn differing_slots(old: &Table, new: &Table) -> Result<Vec<u32>, SizeMismatch> {
        let translate = old.index_translation(new)?;
        Ok((0u32..)
            .zip(old.slots.iter().zip(&new.slots))
            .filter(|(_, (o, n))| translate[**o as usize] != **n)
            .map(|(slot, _)| slot)
            .collect())
    }

    /// The number of slots whose backend (by identity) differs between `old` and `new`.
    pub fn diff_count(old: &Table, new: &Table) -> Result<usize, SizeMismatch> {
        let translate = old.index_translation(new)?;
        Ok(old.slots.iter().zip(&new.slots).filter(|(o, n)| translate[**o as usize] != **n).count())
    }

    /// For each of our backend indices, the index of the same identity in `other`
    /// (`u32::MAX` when `other` does not have it). Both lists are sorted, so one merge pass.
    fn index_translation(&self, other: &Table) -> Result<Vec<u32>, SizeMismatch> {
        if self.size != other.size {
            return Err(SizeMismatch { left: self.size.get(), right: other.size.get() });
        }
        let mut translate = vec![u32::MAX; self.backends.len()];
        let mut theirs = other.backends.iter().zip(0u32..).peekable();
        for (ours, slot) in self.backends.iter().zip(&mut translate) {
            while let Some((backend, _)) = theirs.peek()
                && backend.identity() < ours.identity()
            {
                theirs.next();
            }
            if let Some((backend, index)) = theirs.peek()
                && backend.identity() == ours.identity()
            {
                *slot = *index;
            }
        }
        Ok(translate)
    }
}
