//! Shares the strings that repeat across hundreds of thousands of endpoints (node names, zones),
//! so parsing a slice allocates nothing for them and backends copy them by reference count.

use std::sync::Arc;

use rustc_hash::FxHashSet;

/// A set of shared strings. Strings nothing else refers to any more are dropped from time to time,
/// so node churn does not grow it without bound.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interner {
    strings: FxHashSet<Arc<str>>,
    prune_at: usize,
}

const MIN_PRUNE_AT: usize = 1024;

impl Interner {
    pub(crate) fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return Arc::clone(shared);
        }
        if self.strings.len() >= self.prune_at.max(MIN_PRUNE_AT) {
            self.strings.retain(|s| Arc::strong_count(s) > 1);
            self.prune_at = self.strings.len() * 2;
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(Arc::clone(&shared));
        shared
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
        assert!(interner.strings.len() < MIN_PRUNE_AT, "unused strings were pruned");
        assert!(interner.strings.contains("kept") && Arc::strong_count(&kept) == 2);
    }
}
