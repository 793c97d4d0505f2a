//! Id pools for frontends and backends.
//!
//! Ids index BPF maps, so they are small integers in `1..=capacity` (0 means "none" in the maps).
//! Allocation is next-fit and cyclic rather than lowest-free: an id that was just released is the
//! last one handed out again, so state keyed by an old id that the kernel still holds (affinity
//! entries, per-socket reverse translation) is very unlikely to be read as belonging to a new
//! frontend or backend.

/// A pool of ids `1..=capacity`.
#[derive(Debug, Clone)]
pub(crate) struct IdPool {
    /// One bit per id; bit `id` set means in use. Bit 0 is never used.
    used: Vec<u64>,
    capacity: u32,
    in_use: u32,
    /// Where the next search starts.
    cursor: u32,
}

impl IdPool {
    pub(crate) fn new(capacity: u32) -> Self {
        let words = (capacity as usize + 1).div_ceil(64);
        Self { used: vec![0; words], capacity, in_use: 0, cursor: 1 }
    }

    pub(crate) fn free(&self) -> u32 {
        self.capacity - self.in_use
    }

    fn is_used(&self, id: u32) -> bool {
        self.used[id as usize / 64] & (1 << (id % 64)) != 0
    }

    fn set(&mut self, id: u32, used: bool) {
        let word = &mut self.used[id as usize / 64];
        if used {
            *word |= 1 << (id % 64);
        } else {
            *word &= !(1 << (id % 64));
        }
    }

    /// Hands out the next free id after the last one handed out, wrapping around.
    pub(crate) fn allocate(&mut self) -> Option<u32> {
        if self.free() == 0 {
            return None;
        }
        let id = self
            .find_free(self.cursor, self.capacity)
            .or_else(|| self.find_free(1, self.cursor))?;
        self.set(id, true);
        self.in_use += 1;
        self.cursor = if id == self.capacity { 1 } else { id + 1 };
        Some(id)
    }

    /// First free id in `from..=to`, skipping full 64-bit words.
    fn find_free(&self, from: u32, to: u32) -> Option<u32> {
        let mut id = from.max(1);
        while id <= to {
            let word = self.used[id as usize / 64];
            if word == u64::MAX {
                id = (id / 64 + 1) * 64;
                continue;
            }
            if !self.is_used(id) {
                return Some(id);
            }
            id += 1;
        }
        None
    }

    /// Marks an id found in the kernel as taken. False when it is out of range or already taken.
    pub(crate) fn claim(&mut self, id: u32) -> bool {
        if id == 0 || id > self.capacity || self.is_used(id) {
            return false;
        }
        self.set(id, true);
        self.in_use += 1;
        // Continue after the highest adopted id, so fresh ids do not land on recently freed ones.
        if id >= self.cursor {
            self.cursor = if id == self.capacity { 1 } else { id + 1 };
        }
        true
    }

    /// Raises the capacity (maps grown larger); ids in use stay. A smaller capacity is ignored.
    pub(crate) fn grow(&mut self, capacity: u32) {
        if capacity > self.capacity {
            self.used.resize((capacity as usize + 1).div_ceil(64), 0);
            self.capacity = capacity;
        }
    }

    pub(crate) fn release(&mut self, id: u32) {
        if id != 0 && id <= self.capacity && self.is_used(id) {
            self.set(id, false);
            self.in_use -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_pool_keeps_its_ids_and_hands_out_the_new_ones() {
        let mut pool = IdPool::new(3);
        let taken: Vec<u32> = (0..3).filter_map(|_| pool.allocate()).collect();
        assert_eq!(taken, [1, 2, 3]);
        assert_eq!(pool.allocate(), None);
        pool.grow(130);
        assert_eq!(pool.free(), 127);
        assert!(!pool.claim(2), "id 2 is still in use");
        let more: Vec<u32> = std::iter::from_fn(|| pool.allocate()).collect();
        assert_eq!(more, (4..=130).collect::<Vec<_>>());
        pool.grow(10);
        assert_eq!(pool.free(), 0, "a smaller capacity changes nothing");
    }

    #[test]
    fn released_ids_are_reused_only_after_the_pool_wraps() {
        let mut pool = IdPool::new(4);
        assert_eq!(pool.allocate(), Some(1));
        assert_eq!(pool.allocate(), Some(2));
        pool.release(1);
        assert_eq!(pool.allocate(), Some(3));
        assert_eq!(pool.allocate(), Some(4));
        assert_eq!(pool.allocate(), Some(1));
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn claimed_ids_are_never_handed_out() {
        let mut pool = IdPool::new(200);
        assert!(pool.claim(130));
        assert!(!pool.claim(130));
        assert!(!pool.claim(0));
        assert!(!pool.claim(201));
        let handed: Vec<u32> = std::iter::from_fn(|| pool.allocate()).collect();
        assert_eq!(handed.len(), 199);
        assert!(!handed.contains(&130));
        assert_eq!(handed[0], 131, "allocation continues after the highest adopted id");
    }

    #[test]
    fn allocation_skips_full_words() {
        let mut pool = IdPool::new(1000);
        for _ in 0..700 {
            pool.allocate();
        }
        for id in 1..=700 {
            pool.release(id);
        }
        assert_eq!(pool.allocate(), Some(701));
        assert_eq!(pool.free(), 999);
    }
}
