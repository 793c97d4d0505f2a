//! A small ordered set as a sorted vector, for the indexes that map an address or a Service to
//! the one key (rarely a few) that has it. A `BTreeSet` allocates a node with room for eleven
//! keys even for one: over 500 bytes for one `ObjectKey`, per cluster IP and per Service at
//! 10,000 Services (issue 20).

use std::borrow::Borrow;

/// Sorted, without duplicates. Grows one slot at a time while small, so a set of one key holds
/// one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeySet<T>(Vec<T>);

impl<T> Default for KeySet<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

/// Up to this many keys a set grows by exactly one slot; beyond it, by doubling.
const EXACT_UP_TO: usize = 8;

impl<T: Ord> KeySet<T> {
    /// Adds `key`; false if it was there.
    pub(crate) fn insert(&mut self, key: T) -> bool {
        match self.0.binary_search(&key) {
            Ok(_) => false,
            Err(at) => {
                if self.0.len() == self.0.capacity() && self.0.len() < EXACT_UP_TO {
                    self.0.reserve_exact(1);
                }
                self.0.insert(at, key);
                true
            }
        }
    }

    /// Removes `key`; false if it was not there.
    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        match self.0.binary_search_by(|k| k.borrow().cmp(key)) {
            Ok(at) => {
                self.0.remove(at);
                if self.0.len() * 4 <= self.0.capacity() {
                    self.0.shrink_to_fit();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Takes out the smallest key.
    pub(crate) fn pop_first(&mut self) -> Option<T> {
        if self.0.is_empty() {
            return None;
        }
        let first = self.0.remove(0);
        if self.0.len() * 4 <= self.0.capacity() {
            self.0.shrink_to_fit();
        }
        Some(first)
    }

    /// The smallest key.
    pub(crate) fn first(&self) -> Option<&T> {
        self.0.first()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys in order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<'a, T> IntoIterator for &'a KeySet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: Ord> FromIterator<T> for KeySet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(keys: I) -> Self {
        let mut keys: Vec<T> = keys.into_iter().collect();
        keys.sort();
        keys.dedup();
        keys.shrink_to_fit();
        Self(keys)
    }
}

impl<T: Ord> Extend<T> for KeySet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, keys: I) {
        for key in keys {
            self.insert(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_sorted_and_unique_and_a_single_key_takes_one_slot() {
        let mut set = KeySet::default();
        assert!(set.insert(3) && set.insert(1) && !set.insert(3) && set.insert(2));
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(set.first(), Some(&1));
        assert!(set.remove(&2) && !set.remove(&2));
        assert_eq!(set.pop_first(), Some(1));
        set.insert(1);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [1, 3]);
        let mut one = KeySet::default();
        one.insert(String::from("a"));
        assert_eq!(one.0.capacity(), 1);
        let collected: KeySet<i32> = [5, 1, 5, 3].into_iter().collect();
        assert_eq!(collected.iter().copied().collect::<Vec<_>>(), [1, 3, 5]);
    }
}
