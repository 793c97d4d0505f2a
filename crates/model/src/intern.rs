//! Shares the values that repeat across hundreds of thousands of endpoints (node names, zones,
//! and where an endpoint is: [`crate::parse::Place`]), so parsing a slice allocates nothing for
//! them and backends copy them by reference count.

use std::hash::Hash;
use std::sync::Arc;

use rustc_hash::FxHashSet;

/// A set of shared values (strings by default). Values nothing else refers to any more are
/// dropped from time to time, so node churn does not grow it without bound.
#[derive(Debug)]
pub(crate) struct Interner<T: ?Sized = str> {
    values: FxHashSet<Arc<T>>,
    prune_at: usize,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Self { values: FxHashSet::default(), prune_at: 0 }
    }
}

impl<T: ?Sized> Clone for Interner<T> {
    fn clone(&self) -> Self {
        Self { values: self.values.clone(), prune_at: self.prune_at }
    }
}

const MIN_PRUNE_AT: usize = 1024;

impl<T: ?Sized + Hash + Eq> Interner<T> {
    /// Keeps `shared` as the copy of its value (there is none yet).
    fn insert(&mut self, shared: Arc<T>) -> Arc<T> {
        if self.values.len() >= self.prune_at.max(MIN_PRUNE_AT) {
            self.values.retain(|s| Arc::strong_count(s) > 1);
            self.prune_at = self.values.len() * 2;
        }
        self.values.insert(Arc::clone(&shared));
        shared
    }
}

impl Interner<str> {
    pub(crate) fn intern(&mut self, text: &str) -> Arc<str> {
        match self.values.get(text) {
            Some(shared) => Arc::clone(shared),
            None => self.insert(Arc::from(text)),
        }
    }
}

impl<T: Hash + Eq> Interner<T> {
    /// The shared copy of `value` (`value` itself becomes it when there is none yet).
    pub(crate) fn intern_value(&mut self, value: T) -> Arc<T> {
        match self.values.get(&value) {
            Some(shared) => Arc::clone(shared),
            None => self.insert(Arc::new(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_allocation_and_unused_ones_are_pruned() {
        let mut interner = Interner::default();
        let a = interner.intern("node-a");
        let b = interner.intern("node-a");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*interner.intern("zone-b"), "zone-b");
        drop((a, b));
        for i in 0..MIN_PRUNE_AT {
            drop(interner.intern(&format!("node-{i}")));
        }
        let kept = interner.intern("kept");
        interner.intern("trigger");
        assert!(interner.values.len() < MIN_PRUNE_AT, "unused strings were pruned");
        assert!(interner.values.contains("kept") && Arc::strong_count(&kept) == 2);
    }

    #[test]
    fn equal_values_share_one_allocation() {
        let mut interner: Interner<(u32, Arc<str>)> = Interner::default();
        let a = interner.intern_value((1, Arc::from("a")));
        let b = interner.intern_value((1, Arc::from("a")));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &interner.intern_value((2, Arc::from("a")))));
    }
}
