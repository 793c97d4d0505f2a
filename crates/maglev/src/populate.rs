//! The Maglev fill loop with weights by cumulative turns (Katran's "MaglevHashV2" scheme).
//!
//! Only `(position, skip)` per backend is kept; a backend's preference list is walked on the fly
//! (`position += skip` modulo M), so memory is O(N + M) and no N × M permutation exists.
//! A bitmap of taken slots (M bits: 8 KiB at M = 65537) keeps the probing in the L1 cache.

use alloc::vec;
use alloc::vec::Vec;

use crate::backend::Permutation;

/// A backend taking part in the fill: its permutation, weight (> 0) and index in the table's
/// backend list (what its slots will hold).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Contender {
    pub(crate) permutation: Permutation,
    pub(crate) weight: u32,
    pub(crate) index: u32,
}

/// Fills `m` slots from `contenders` (non-empty, in identity order, all weights > 0).
///
/// Rounds visit the contenders in order; each visit adds the contender's weight to its credit,
/// and when the credit reaches the largest weight the contender spends that much and takes its
/// next free preference. The heaviest backends take a turn every round, a backend of half that
/// weight every second round, and so on. With equal weights this is exactly the paper's loop.
pub(crate) fn populate(m: u32, contenders: &[Contender]) -> Vec<u32> {
    let mut fill = Fill::new(m);
    let mut cursors: Vec<Cursor> = contenders
        .iter()
        .map(|c| Cursor { position: c.permutation.offset, skip: c.permutation.skip })
        .collect();

    // Dividing every weight by their gcd gives the same sequence of turns with fewer idle rounds.
    let divisor = contenders.iter().fold(0, |g, c| gcd(g, c.weight));
    let weights: Vec<u64> =
        contenders.iter().map(|c| u64::from(c.weight / divisor.max(1))).collect();
    let heaviest = weights.iter().copied().max().unwrap_or(1);

    if heaviest == 1 {
        // Equal weights: everyone takes a turn every round.
        loop {
            for (cursor, contender) in cursors.iter_mut().zip(contenders) {
                fill.take_next_free(cursor, contender.index);
                if fill.remaining == 0 {
                    return fill.slots;
                }
            }
        }
    }

    let mut credits = vec![0u64; contenders.len()];
    loop {
        for (((cursor, contender), credit), weight) in
            cursors.iter_mut().zip(contenders).zip(&mut credits).zip(&weights)
        {
            *credit += weight;
            if *credit >= heaviest {
                *credit -= heaviest;
                fill.take_next_free(cursor, contender.index);
                if fill.remaining == 0 {
                    return fill.slots;
                }
            }
        }
    }
}

/// Where a backend is in its preference list.
struct Cursor {
    position: u32,
    skip: u32,
}

struct Fill {
    m: u32,
    slots: Vec<u32>,
    taken: Vec<u64>,
    remaining: u32,
}

impl Fill {
    fn new(m: u32) -> Fill {
        Fill {
            m,
            slots: vec![0; m as usize],
            taken: vec![0; (m as usize).div_ceil(64)],
            remaining: m,
        }
    }

    /// Walks the cursor to its next free slot, gives it to `owner`, and steps past it.
    /// Only called while a slot is free, so the walk ends within M steps.
    #[inline(always)]
    fn take_next_free(&mut self, cursor: &mut Cursor, owner: u32) {
        let mut position = cursor.position;
        loop {
            // position and skip are below M <= 2^24, so the sum cannot overflow.
            let mut next = position + cursor.skip;
            if next >= self.m {
                next -= self.m;
            }
            let word = &mut self.taken[(position / 64) as usize];
            let bit = 1u64 << (position % 64);
            if *word & bit == 0 {
                *word |= bit;
                self.slots[position as usize] = owner;
                self.remaining -= 1;
                cursor.position = next;
                return;
            }
            position = next;
        }
    }
}

const fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
