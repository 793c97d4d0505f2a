//! The Maglev fill loop with weights by cumulative turns (Katran's "MaglevHashV2" scheme).
//!
//! Only `(position, skip)` per backend is kept; a backend's preference list is walked on the fly
//! (`position += skip` modulo M), so memory is O(N + M) and no N × M permutation exists.
//! A bitmap of taken slots (M bits: 8 KiB at M = 65537) keeps the probing in the L1 cache.

use alloc::collections::BinaryHeap;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;

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
    let divisor = contenders.iter().fold(0, |g, c| gcd(g, c.weight)).max(1);
    let weights: Vec<u64> = contenders.iter().map(|c| u64::from(c.weight / divisor)).collect();
    let heaviest = weights.iter().copied().max().unwrap_or(1);
    let total: u64 = weights.iter().sum();

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

    // A round visits all N contenders but hands out only about ΣW / W_max turns. When the
    // heaviest weight dwarfs the average, most visits are idle; a heap of next-turn times then
    // yields the same turns at O(log N) each.
    let mut place = |turn: usize| {
        fill.take_next_free(&mut cursors[turn], contenders[turn].index);
        fill.remaining == 0
    };
    let idle_heavy = heaviest * weights.len() as u64 > SKEW_FOR_HEAP * total;
    if idle_heavy {
        ScheduledTurns::new(&weights, heaviest).find(|&turn| place(turn));
    } else {
        CreditTurns::new(&weights, heaviest).find(|&turn| place(turn));
    }
    fill.slots
}

/// Above this `W_max / mean weight` the heap schedule is cheaper than visiting every round
/// (a heap turn costs ~40 ns at N = 1000, an idle visit ~1.5 ns, and there are about
/// `W_max / mean weight` visits per turn).
const SKEW_FOR_HEAP: u64 = 32;

/// Cumulative turns by visiting every contender in every round: the definition.
struct CreditTurns<'w> {
    weights: &'w [u64],
    credits: Vec<u64>,
    heaviest: u64,
    next: usize,
}

impl<'w> CreditTurns<'w> {
    fn new(weights: &'w [u64], heaviest: u64) -> CreditTurns<'w> {
        CreditTurns { weights, credits: vec![0; weights.len()], heaviest, next: 0 }
    }
}

impl Iterator for CreditTurns<'_> {
    type Item = usize;

    /// The contender whose turn it is (the sequence never ends).
    fn next(&mut self) -> Option<usize> {
        loop {
            let visit = self.next;
            self.next = if visit + 1 == self.weights.len() { 0 } else { visit + 1 };
            let credit = &mut self.credits[visit];
            *credit += self.weights[visit];
            if *credit >= self.heaviest {
                *credit -= self.heaviest;
                return Some(visit);
            }
        }
    }
}

/// The same turns as [`CreditTurns`], computed instead of visited: contender i's t-th turn comes
/// in round `ceil(t * W_max / w_i)` (1-based), when its credit first reaches `t * W_max`; within
/// a round, in contender order. A min-heap on `(round, contender)` yields them in that order.
struct ScheduledTurns<'w> {
    weights: &'w [u64],
    heaviest: u64,
    turns_taken: Vec<u64>,
    queue: BinaryHeap<Reverse<(u64, usize)>>,
}

impl<'w> ScheduledTurns<'w> {
    fn new(weights: &'w [u64], heaviest: u64) -> ScheduledTurns<'w> {
        let queue =
            weights.iter().enumerate().map(|(i, w)| Reverse((heaviest.div_ceil(*w), i))).collect();
        ScheduledTurns { weights, heaviest, turns_taken: vec![0; weights.len()], queue }
    }
}

impl Iterator for ScheduledTurns<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let Reverse((_, turn)) = self.queue.pop()?;
        let taken = &mut self.turns_taken[turn];
        *taken += 1;
        // taken <= M < 2^24 and heaviest < 2^32, so the product fits.
        let next_round = ((*taken + 1) * self.heaviest).div_ceil(self.weights[turn]);
        self.queue.push(Reverse((next_round, turn)));
        Some(turn)
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

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn scheduled_turns_equal_visited_turns(
            weights in prop::collection::vec(1u64..=1000, 1..50),
            skew in 1u64..=100_000,
        ) {
            // One much heavier contender makes the interesting case: long idle stretches.
            let mut weights = weights;
            weights[0] *= skew;
            let heaviest = weights.iter().copied().max().unwrap_or(1);
            let visited: Vec<usize> = CreditTurns::new(&weights, heaviest).take(5000).collect();
            let scheduled: Vec<usize> = ScheduledTurns::new(&weights, heaviest).take(5000).collect();
            prop_assert_eq!(visited, scheduled);
        }
    }
}
