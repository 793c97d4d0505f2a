//! The Maglev fill loop with weights by cumulative turns (Katran's "MaglevHashV2" scheme).
//!
//! Only `(position, skip)` per backend is kept; a backend's preference list is walked on the fly
//! (`position += skip` modulo M), so memory is O(N + M) and no N × M permutation exists.
//! A bitmap of taken slots (M bits: 8 KiB at M = 65537) keeps the probing in the L1 cache.
//!
//! The last slots are found without probing (see [`Fill::take_next_free`]): the k-th slot costs
//! M / (M − k) probes on average, so the final √M slots alone would cost about M · ln √M probes,
//! half of all probes at M = 65537.

use alloc::collections::BinaryHeap;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::hint::select_unpredictable;

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
        .map(|c| Cursor {
            position: c.permutation.offset,
            skip: c.permutation.skip,
            inverse: 0,
            owner: c.index,
        })
        .collect();

    // Dividing every weight by their gcd gives the same sequence of turns with fewer idle rounds.
    let divisor = contenders.iter().fold(0, |g, c| gcd(g, c.weight)).max(1);
    let weights: Vec<u64> = contenders.iter().map(|c| u64::from(c.weight / divisor)).collect();
    let heaviest = weights.iter().copied().max().unwrap_or(1);
    let total: u64 = weights.iter().sum();

    if heaviest == 1 {
        // Equal weights: everyone takes a turn every round.
        fill.round_robin(&mut cursors);
        return fill.slots;
    }

    // A round visits all N contenders but hands out only about ΣW / W_max turns. When the
    // heaviest weight dwarfs the average, most visits are idle; a heap of next-turn times then
    // yields the same turns at O(log N) each.
    let mut place = |turn: usize| {
        fill.take_next_free(&mut cursors[turn]);
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
    /// `skip⁻¹ mod M`, computed when the cursor first takes a slot in the endgame (0: not yet).
    inverse: u32,
    /// What its slots hold (the contender's index), kept here so a turn reads one array.
    owner: u32,
}

/// Arithmetic modulo M (prime, < 2^24) for the endgame.
struct Modulus {
    m: u32,
    /// `⌊2^64 / M⌋` and `2^64 mod M`.
    quotient: u64,
    remainder: u64,
}

impl Modulus {
    fn new(m: u32) -> Modulus {
        let wide = u64::from(m);
        // M is odd, so it does not divide 2^64: ⌊(2^64 − 1) / M⌋ = ⌊2^64 / M⌋.
        let quotient = u64::MAX / wide;
        Modulus { m, quotient, remainder: (u64::MAX - quotient * wide) + 1 }
    }

    /// `⌈w · 2^64 / M⌉` for 0 < w < M (see [`Fill::take_in_endgame`] for its use).
    fn scale(&self, w: u32) -> u64 {
        // w · 2^64 = w · quotient · M + w · remainder, with w · quotient < 2^64 and
        // w · remainder < M² < 2^48; M (prime, above w) does not divide it, so the ceiling is
        // the floor plus one.
        let w = u64::from(w);
        w * self.quotient + w * self.remainder / u64::from(self.m) + 1
    }

    /// `a⁻¹ mod M` for 0 < a < M, M prime (extended Euclid).
    fn inverse(&self, a: u32) -> u32 {
        let (mut r0, mut r1) = (i64::from(self.m), i64::from(a));
        let (mut t0, mut t1) = (0i64, 1i64);
        while r1 != 0 {
            let q = r0 / r1;
            (r0, r1) = (r1, r0 - q * r1);
            (t0, t1) = (t1, t0 - q * t1);
        }
        t0.rem_euclid(i64::from(self.m)) as u32
    }
}

struct Fill {
    m: u32,
    slots: Vec<u32>,
    taken: Vec<u64>,
    remaining: u32,
    /// Below this many free slots the fill switches to the endgame.
    endgame_at: u32,
    /// The free slots, once in the endgame.
    free: Vec<u32>,
    modulus: Modulus,
}

impl Fill {
    fn new(m: u32) -> Fill {
        Fill {
            m,
            slots: vec![0; m as usize],
            taken: vec![0; (m as usize).div_ceil(64)],
            remaining: m,
            endgame_at: endgame_threshold(m),
            free: Vec::new(),
            modulus: Modulus::new(m),
        }
    }

    /// Gives the cursor its next free slot and steps past it.
    ///
    /// In the endgame (at most about √M slots free) the walk is not taken step by step: the next
    /// free slot along the cursor's list is the free slot the fewest steps away, and the steps to
    /// a slot are `(slot − position) · skip⁻¹ mod M`, so one pass over the free slots finds the
    /// same slot the walk would (expected M / free probes) in `free` multiplications.
    ///
    /// The weighted schedules walk one preference per branch: choosing a block size per turn
    /// (see [`walk_each`]) made them slower, inlined in their loops or not.
    #[inline(always)]
    fn take_next_free(&mut self, cursor: &mut Cursor) {
        if self.remaining <= self.endgame_at {
            self.take_in_endgame(cursor);
        } else {
            walk::<1>(&mut self.taken, &mut self.slots, self.m, cursor);
            self.remaining -= 1;
        }
    }

    /// Equal weights: turns in cursor order, round after round. The walking turns run as plain
    /// loops over the cursors with nothing else to check per turn, so the table, the bitmap and
    /// the cursor stay in registers (one loop testing for the endgame in every turn kept them on
    /// the stack).
    #[inline(never)]
    fn round_robin(&mut self, cursors: &mut [Cursor]) {
        let walking = self.remaining.saturating_sub(self.endgame_at);
        let (rounds, rest) = (walking as usize / cursors.len(), walking as usize % cursors.len());
        let (taken, slots, m) = (&mut self.taken[..], &mut self.slots[..], self.m);
        for _ in 0..rounds {
            walk_each(taken, slots, m, self.remaining, cursors);
            self.remaining -= cursors.len() as u32;
        }
        walk_each(taken, slots, m, self.remaining, &mut cursors[..rest]);
        self.remaining -= rest as u32;
        let mut next = rest;
        while self.remaining > 0 {
            self.take_next_free(&mut cursors[next]);
            next = if next + 1 == cursors.len() { 0 } else { next + 1 };
        }
    }

    #[inline(never)]
    fn take_in_endgame(&mut self, cursor: &mut Cursor) {
        if self.free.is_empty() {
            self.free = free_slots(&self.taken, self.m);
        }
        if cursor.inverse == 0 {
            cursor.inverse = self.modulus.inverse(cursor.skip);
        }
        let nearest = nearest_free(&self.free, cursor, &self.modulus);
        let slot = self.free.swap_remove(nearest);
        self.taken[(slot / 64) as usize] |= 1u64 << (slot % 64);
        self.slots[slot as usize] = cursor.owner;
        self.remaining -= 1;
        let next = slot + cursor.skip;
        cursor.position = if next >= self.m { next - self.m } else { next };
    }
}

/// The index in `free` of the slot `cursor`'s walk would reach first.
///
/// Along the cursor's list, slot s lies `j = (s − position) · skip⁻¹ mod M` steps ahead. With
/// `scale = ⌈skip⁻¹ · 2^64 / M⌉ = skip⁻¹ · 2^64 / M + e` (0 < e < 1) and
/// `x = s + M − position` (0 < x < 2M ≤ 2^25), `x · scale` is `j · 2^64 / M + x · e` plus a
/// multiple of 2^64. Modulo 2^64 it therefore lies less than 2^25 above `j · 2^64 / M`, and
/// consecutive j are `2^64 / M ≥ 2^40` apart: the wrapping product orders the slots exactly as
/// the walk reaches them, for one multiplication per slot (a reduction modulo M took three).
#[inline(always)]
fn nearest_free(free: &[u32], cursor: &Cursor, modulus: &Modulus) -> usize {
    let scale = modulus.scale(cursor.inverse);
    let offset = u64::from(modulus.m - cursor.position).wrapping_mul(scale);
    let mut nearest = (u64::MAX, 0);
    for (index, &slot) in free.iter().enumerate() {
        let key = u64::from(slot).wrapping_mul(scale).wrapping_add(offset);
        if key < nearest.0 {
            nearest = (key, index);
        }
    }
    nearest.1
}

/// The slots below `m` whose bit in `taken` is clear, in increasing order.
fn free_slots(taken: &[u64], m: u32) -> Vec<u32> {
    let mut free = Vec::new();
    for (base, word) in (0u32..).step_by(64).zip(taken) {
        let mut clear = !word;
        while clear != 0 {
            let slot = base + clear.trailing_zeros();
            if slot < m {
                free.push(slot);
            }
            clear &= clear - 1;
        }
    }
    free
}

/// Where the endgame starts: a probe costs about as much as one candidate of the endgame's pass,
/// and the walk needs M / free probes against the pass's `free` candidates, so they break even
/// near free = √M.
fn endgame_threshold(m: u32) -> u32 {
    (f64::from(m).sqrt() * ENDGAME_FACTOR) as u32
}

const ENDGAME_FACTOR: f64 = 1.0;

/// Gives each of `cursors` in turn its next free slot by walking (`remaining` slots are free
/// before the first turn, more than in the endgame).
///
/// Before its first branch a turn tests as many preferences as [`block_size`] says: a branch
/// on one preference is taken at random when about half the slots are free and then costs a
/// misprediction in every other turn, while a branch on "all of the first k are taken" is
/// mostly not taken while k is below about one over the free share. The block size depends
/// only on that share, so it is chosen once for the whole batch.
#[inline(always)]
fn walk_each(taken: &mut [u64], slots: &mut [u32], m: u32, remaining: u32, cursors: &mut [Cursor]) {
    match block_size(remaining, m) {
        1 => cursors.iter_mut().for_each(|c| walk::<1>(taken, slots, m, c)),
        2 => cursors.iter_mut().for_each(|c| walk::<2>(taken, slots, m, c)),
        3 => cursors.iter_mut().for_each(|c| walk::<3>(taken, slots, m, c)),
        4 => cursors.iter_mut().for_each(|c| walk::<4>(taken, slots, m, c)),
        _ => cursors.iter_mut().for_each(|c| walk::<6>(taken, slots, m, c)),
    }
}

/// How many preferences a turn tests with its first branch, by the share of free slots
/// (measured at M = 65537, N = 10 and 1000, see docs/maglev.md). Once fewer than 3/16 of the
/// slots are free the walks are long and one exit misprediction per turn is paid anyway.
fn block_size(remaining: u32, m: u32) -> usize {
    const BY_SIXTEENTHS_FREE: [usize; 17] = [1, 1, 1, 6, 4, 4, 3, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1];
    BY_SIXTEENTHS_FREE[(u64::from(remaining) * 16 / u64::from(m)) as usize]
}

/// Walks `cursor` to its next free slot, gives it to the cursor's owner, and steps past it.
/// Only called while a slot is free, so the walk ends within M steps.
#[inline(always)]
fn walk<const BLOCK: usize>(taken: &mut [u64], slots: &mut [u32], m: u32, cursor: &mut Cursor) {
    let (first, skip) = (cursor.position, cursor.skip);
    let (slot, next) = if BLOCK == 1 {
        if is_free(taken, first) {
            (first, add_mod(first, skip, m))
        } else {
            chase(taken, m, skip, first)
        }
    } else {
        first_free_from_block::<BLOCK>(taken, m, skip, first)
    };
    // `rotate_left` rather than `1 << (slot % 64)`: with the same expression as the test the
    // compiler computed the mask in every probe of the loop.
    taken[(slot / 64) as usize] |= 1u64.rotate_left(slot);
    slots[slot as usize] = cursor.owner;
    cursor.position = next;
}

/// The first free slot along a list from `position` on, and the preference after it, testing
/// the first `BLOCK` (2 to 6) preferences with one branch: their taken bits are and-ed as
/// integers (combined as booleans, the compiler split them into a branch each again) and the
/// first free one is chosen with conditional moves. If all are taken, [`chase`] goes on.
#[inline(always)]
fn first_free_from_block<const BLOCK: usize>(
    taken: &[u64],
    m: u32,
    skip: u32,
    position: u32,
) -> (u32, u32) {
    let mut preferences = [position; 7];
    for k in 1..=BLOCK {
        preferences[k] = add_mod(preferences[k - 1], skip, m);
    }
    let mut bits = [0u64; 6];
    let mut all_taken = 1u64;
    for k in 0..BLOCK {
        let slot = preferences[k];
        bits[k] = taken[(slot / 64) as usize] >> (slot % 64);
        all_taken &= bits[k];
    }
    if all_taken & 1 != 0 {
        return chase(taken, m, skip, preferences[BLOCK - 1]);
    }
    let mut found = (preferences[BLOCK - 1], preferences[BLOCK]);
    for k in (0..BLOCK - 1).rev() {
        let free = bits[k] & 1 == 0;
        found = (
            select_unpredictable(free, preferences[k], found.0),
            select_unpredictable(free, preferences[k + 1], found.1),
        );
    }
    found
}

/// The first free slot along a list after `position` (taken), and the preference after it.
///
/// The even and the odd preferences are walked as two chains, each stepping `2 · skip`: a step
/// `position + skip mod M` is a compare, a conditional move and an add (the compiler folds the
/// two candidate sums into one add after the move), three cycles on the loop-carried path,
/// which two chains share. Unrolled four ways it measured slower.
#[inline(always)]
fn chase(taken: &[u64], m: u32, skip: u32, position: u32) -> (u32, u32) {
    let double = add_mod(skip, skip, m);
    let mut even = add_mod(position, skip, m);
    let mut odd = add_mod(position, double, m);
    loop {
        let even_next = add_mod(even, double, m);
        if is_free(taken, even) {
            return (even, odd);
        }
        let odd_next = add_mod(odd, double, m);
        if is_free(taken, odd) {
            return (odd, even_next);
        }
        (even, odd) = (even_next, odd_next);
    }
}

#[inline(always)]
fn is_free(taken: &[u64], slot: u32) -> bool {
    (taken[(slot / 64) as usize] >> (slot % 64)) & 1 == 0
}

/// `(a + b) mod m` for a, b < m < 2^31, with a conditional move (a branch would go either way
/// at random).
#[inline(always)]
fn add_mod(a: u32, b: u32, m: u32) -> u32 {
    let down = a.wrapping_sub(m - b);
    select_unpredictable((down as i32) < 0, a + b, down)
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
    use alloc::collections::BTreeSet;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn scale_and_inverse_agree_with_plain_arithmetic(
            m in prop::sample::select(vec![251u32, 16_381, 65_537, 1_000_003, 16_777_213]),
            a in 1u32..16_777_213,
        ) {
            let modulus = Modulus::new(m);
            let a = a % m;
            prop_assume!(a != 0);
            let inverse = modulus.inverse(a);
            prop_assert!(inverse < m);
            prop_assert_eq!(u64::from(a) * u64::from(inverse) % u64::from(m), 1);
            let exact = (u128::from(a) << 64).div_ceil(u128::from(m));
            prop_assert_eq!(u128::from(modulus.scale(a)), exact);
        }

        #[test]
        fn the_nearest_free_slot_is_the_one_with_the_fewest_steps(
            m in prop::sample::select(vec![251u32, 16_381, 65_537, 1_000_003, 16_777_213]),
            position in 0u32..16_777_213,
            skip in 1u32..16_777_213,
            free in prop::collection::btree_set(0u32..16_777_213, 1..300),
        ) {
            let (position, skip) = (position % m, skip % (m - 1) + 1);
            let free: Vec<u32> = free.into_iter().map(|s| s % m).collect::<BTreeSet<_>>()
                .into_iter().collect();
            let modulus = Modulus::new(m);
            let inverse = modulus.inverse(skip);
            let cursor = Cursor { position, skip, inverse, owner: 0 };
            let m64 = u64::from(m);
            let steps = |slot: u32| {
                (u64::from(slot) + m64 - u64::from(position)) * u64::from(inverse) % m64
            };
            let fewest = (0..free.len()).min_by_key(|&i| steps(free[i]));
            prop_assert_eq!(Some(nearest_free(&free, &cursor, &modulus)), fewest);
        }

        #[test]
        fn walks_with_every_block_size_take_the_first_free_preference(
            m in prop::sample::select(vec![251u32, 257, 1021, 4099]),
            position in 0u32..4099,
            skip in 0u32..4099,
            taken_per_cent in 0u8..=100,
            draws in prop::collection::vec(0u8..100, 4099),
            free_one in 0u32..4099,
        ) {
            let (position, skip, free_one) = (position % m, skip % (m - 1) + 1, free_one % m);
            let mut taken = vec![0u64; (m as usize).div_ceil(64)];
            for slot in (0..m).filter(|&s| s != free_one && draws[s as usize] < taken_per_cent) {
                taken[(slot / 64) as usize] |= 1 << (slot % 64);
            }
            let preference = |j: u32| ((u64::from(position) + u64::from(j) * u64::from(skip))
                % u64::from(m)) as u32;
            let free = |slot: u32| taken[(slot / 64) as usize] & (1 << (slot % 64)) == 0;
            let j = (0..m).find(|&j| free(preference(j))).expect("one slot is free");
            let expected_slot = preference(j);
            let mut expected_taken = taken.clone();
            expected_taken[(expected_slot / 64) as usize] |= 1 << (expected_slot % 64);

            for block in [1, 2, 3, 4, 6] {
                let mut walked = taken.clone();
                let mut slots = vec![u32::MAX; m as usize];
                let mut cursor = Cursor { position, skip, inverse: 0, owner: 7 };
                let cursors = core::slice::from_mut(&mut cursor);
                match block {
                    1 => cursors.iter_mut().for_each(|c| walk::<1>(&mut walked, &mut slots, m, c)),
                    2 => cursors.iter_mut().for_each(|c| walk::<2>(&mut walked, &mut slots, m, c)),
                    3 => cursors.iter_mut().for_each(|c| walk::<3>(&mut walked, &mut slots, m, c)),
                    4 => cursors.iter_mut().for_each(|c| walk::<4>(&mut walked, &mut slots, m, c)),
                    _ => cursors.iter_mut().for_each(|c| walk::<6>(&mut walked, &mut slots, m, c)),
                }
                prop_assert_eq!(cursor.position, preference(j + 1), "block {}", block);
                prop_assert_eq!(&walked, &expected_taken, "block {}", block);
                let owned: Vec<usize> = (0..m as usize).filter(|&s| slots[s] == 7).collect();
                prop_assert_eq!(owned, vec![expected_slot as usize], "block {}", block);
            }
        }

        #[test]
        fn the_endgame_takes_the_slot_the_walk_would(
            m in prop::sample::select(vec![251u32, 257, 1021, 4099]),
            skips in prop::collection::vec((0u32..u32::MAX, 0u32..u32::MAX), 1..20),
        ) {
            // Fill most of the table by walking, then finish one fill by walking and a copy of
            // it in the endgame: every slot must go to the same owner.
            let cursors = || -> Vec<Cursor> {
                (0u32..).zip(&skips).map(|(owner, &(offset, skip))| Cursor {
                    position: offset % m,
                    skip: skip % (m - 1) + 1,
                    inverse: 0,
                    owner,
                }).collect()
            };
            let mut walked = Fill::new(m);
            walked.endgame_at = 0;
            let mut jumped = Fill::new(m);
            jumped.endgame_at = m / 2;
            for fill in [&mut walked, &mut jumped] {
                let mut cursors = cursors();
                'fill: loop {
                    for cursor in &mut cursors {
                        fill.take_next_free(cursor);
                        if fill.remaining == 0 {
                            break 'fill;
                        }
                    }
                }
            }
            prop_assert_eq!(walked.slots, jumped.slots);
        }

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
