//! The planner's backends: each one once, with its map id and how many frontends use it.
//!
//! Entries sit in a slab and frontends' slots name them by position (4 bytes instead of a copy
//! of the backend); a hash table of positions finds a backend's entry. A `HashMap<B, state>`
//! kept the backend and its state in every bucket, at under half load after growing: 15 MB for
//! 250,000 backends at 10,000 Services × 25 endpoints (issue 20), where this keeps about 10.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::ops::BackendId;

/// Where an entry sits in the table. Stable while the entry lives.
pub(crate) type Pos = u32;

/// A slot holding no known backend.
pub(crate) const NO_POS: Pos = Pos::MAX;

#[derive(Debug, Clone)]
pub(crate) struct Entry<B> {
    pub(crate) backend: B,
    pub(crate) id: BackendId,
    /// Frontends whose slots hold this backend, plus one for a hold.
    pub(crate) refs: u32,
}

#[derive(Clone)]
pub(crate) struct BackendTable<B> {
    entries: Vec<Option<Entry<B>>>,
    /// Positions of removed entries, reused first.
    free: Vec<Pos>,
    index: HashTable<Pos>,
    /// FxHash, as the model's maps: every probe also reads the slab, so the hash must be cheap
    /// (with SipHash the planner took 1.22× as long as with the `HashMap` before).
    hasher: FxBuildHasher,
}

impl<B> std::fmt::Debug for BackendTable<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTable").field("len", &self.len()).finish_non_exhaustive()
    }
}

impl<B> Default for BackendTable<B> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: FxBuildHasher,
        }
    }
}

impl<B> BackendTable<B> {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

impl<B: Hash + Eq> BackendTable<B> {
    pub(crate) fn find(&self, backend: &B) -> Option<Pos> {
        let hash = self.hasher.hash_one(backend);
        let entries = &self.entries;
        self.index.find(hash, |&pos| Self::holds(entries, pos, backend)).copied()
    }

    fn holds(entries: &[Option<Entry<B>>], pos: Pos, backend: &B) -> bool {
        entries[pos as usize].as_ref().is_some_and(|e| e.backend == *backend)
    }

    pub(crate) fn get(&self, backend: &B) -> Option<&Entry<B>> {
        self.find(backend).map(|pos| self.at(pos))
    }

    /// The entry at a live position.
    ///
    /// # Panics
    /// If nothing lives there: a position is only handed out for a live entry and dropped with it.
    pub(crate) fn at(&self, pos: Pos) -> &Entry<B> {
        self.entries[pos as usize].as_ref().expect("a live backend position")
    }

    /// The entry at a position, if one lives there.
    pub(crate) fn get_at(&self, pos: Pos) -> Option<&Entry<B>> {
        self.entries.get(pos as usize)?.as_ref()
    }

    pub(crate) fn at_mut(&mut self, pos: Pos) -> &mut Entry<B> {
        self.entries[pos as usize].as_mut().expect("a live backend position")
    }

    /// Adds a backend that is not in the table; returns its position.
    pub(crate) fn insert(&mut self, backend: B, id: BackendId) -> Pos {
        let hash = self.hasher.hash_one(&backend);
        let entry = Some(Entry { backend, id, refs: 0 });
        let pos = match self.free.pop() {
            Some(pos) => {
                self.entries[pos as usize] = entry;
                pos
            }
            None => {
                // Grown by an eighth rather than doubled: at 250,000 backends a doubling
                // left up to 7 MB unused.
                if self.entries.len() == self.entries.capacity() {
                    self.entries.reserve_exact((self.entries.len() / 8).max(64));
                }
                self.entries.push(entry);
                Pos::try_from(self.entries.len() - 1).expect("fewer than 2^32 backends")
            }
        };
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(hash, pos, |&p| {
            entries[p as usize].as_ref().map_or(0, |e| hasher.hash_one(&e.backend))
        });
        pos
    }

    /// Takes the entry at a position out of the table, if one lives there.
    pub(crate) fn remove(&mut self, pos: Pos) -> Option<Entry<B>> {
        let entry = self.entries.get_mut(pos as usize)?.take()?;
        let hash = self.hasher.hash_one(&entry.backend);
        if let Ok(found) = self.index.find_entry(hash, |&p| p == pos) {
            found.remove();
        }
        self.free.push(pos);
        Some(entry)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Pos, &Entry<B>)> {
        (self.entries.iter().enumerate())
            .filter_map(|(pos, e)| Some((Pos::try_from(pos).ok()?, e.as_ref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_stable_and_reused_after_removal() {
        let mut table = BackendTable::default();
        let a = table.insert("a", BackendId(1));
        let b = table.insert("b", BackendId(2));
        assert_eq!((table.find(&"a"), table.find(&"b")), (Some(a), Some(b)));
        assert_eq!(table.remove(a).map(|e| e.backend), Some("a"));
        assert_eq!(table.remove(a).map(|e| e.backend), None, "already gone");
        assert_eq!(table.find(&"a"), None);
        assert_eq!(table.len(), 1);
        let c = table.insert("c", BackendId(3));
        assert_eq!(c, a, "the freed position is reused");
        assert_eq!(table.at(b).id, BackendId(2));
        assert_eq!(table.get(&"c").map(|e| e.id), Some(BackendId(3)));
        let mut live: Vec<_> = table.iter().map(|(_, e)| e.backend).collect();
        live.sort_unstable();
        assert_eq!(live, ["b", "c"]);
    }

    #[test]
    fn many_backends_survive_the_index_growing() {
        let mut table = BackendTable::default();
        let positions: Vec<Pos> =
            (0..10_000u32).map(|i| table.insert(i, BackendId(i + 1))).collect();
        for (i, pos) in (0..10_000u32).zip(&positions) {
            assert_eq!(table.find(&i), Some(*pos));
        }
        for i in (0..10_000u32).step_by(2) {
            table.remove(positions[i as usize]);
        }
        assert_eq!(table.len(), 5_000);
        assert!((0..10_000u32).all(|i| table.find(&i).is_some() == (i % 2 == 1)));
    }
}
