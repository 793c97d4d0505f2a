//! A deliberately naive Maglev, written from the paper and Katran's weighted loop, to check the
//! fast builder against: the hash comes from the standard library's SipHash-2-4 (an independent
//! implementation), every preference is computed with `%`, slots are `Option`s.

#![allow(dead_code, unreachable_pub)]

use switchyard_maglev::{Backend, Seed};

/// SipHash-2-4 through `core::hash::SipHasher`, which implements exactly that function.
#[allow(deprecated)]
pub fn std_siphash24(seed: &Seed, message: &[u8]) -> u64 {
    use std::hash::Hasher;
    let (k0, k1) = seed.words();
    let mut hasher = std::hash::SipHasher::new_with_keys(k0, k1);
    hasher.write(message);
    hasher.finish()
}

/// The identity of the backend owning each slot, computed the slow, obvious way.
pub fn reference_table(seed: &Seed, m: u32, backends: &[Backend]) -> Vec<Vec<u8>> {
    let mut sorted: Vec<&Backend> = backends.iter().collect();
    sorted.sort_by(|a, b| a.identity().cmp(b.identity()));
    let active: Vec<&Backend> = sorted.into_iter().filter(|b| b.weight() > 0).collect();
    let m = u64::from(m);
    let preferences: Vec<(u64, u64)> = active
        .iter()
        .map(|b| {
            let h = std_siphash24(seed, b.identity());
            ((h & 0xffff_ffff) % m, (h >> 32) % (m - 1) + 1)
        })
        .collect();
    let max_weight = active.iter().map(|b| u64::from(b.weight())).max().unwrap_or(1);

    let mut next = vec![0u64; active.len()];
    let mut credit = vec![0u64; active.len()];
    let mut table: Vec<Option<usize>> = vec![None; m as usize];
    let mut filled = 0;
    'fill: loop {
        for i in 0..active.len() {
            credit[i] += u64::from(active[i].weight());
            if credit[i] < max_weight {
                continue;
            }
            credit[i] -= max_weight;
            let (offset, skip) = preferences[i];
            let mut slot = (offset + next[i] * skip) % m;
            while table[slot as usize].is_some() {
                next[i] += 1;
                slot = (offset + next[i] * skip) % m;
            }
            table[slot as usize] = Some(i);
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    table.into_iter().map(|i| active[i.expect("filled")].identity().to_vec()).collect()
}

/// `n` distinct backends `10.<i>.<i>.1:8080`-style, all of weight `weight`.
pub fn backends(n: usize, weight: u32) -> Vec<Backend> {
    (0..n).map(|i| Backend::new(format!("10.{}.{}.1:8080", i / 256, i % 256), weight)).collect()
}
