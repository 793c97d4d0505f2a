//! The free addresses of one pool and family as a set of ranges: taking the lowest free address,
//! a chosen one, or giving one back costs O(log ranges), never a scan of the pool.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address as a number (IPv4 in the low 32 bits), so ranges are plain integer intervals.
pub(crate) fn number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn address(ipv4: bool, number: u128) -> IpAddr {
    if ipv4 {
        // IPv4 sets only ever hold numbers below 2^32.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(number).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(number))
    }
}

/// Free addresses of one family, as disjoint intervals `start -> end` (both included).
#[derive(Debug, Clone)]
pub(crate) struct FreeRanges {
    ipv4: bool,
    /// `avoidBuggyIPs`: IPv4 addresses ending in .0 or .255 are never handed out or counted.
    avoid_buggy: bool,
    free: BTreeMap<u128, u128>,
}

impl FreeRanges {
    /// Every address of `ranges` (pairs of first and last address of one family) is free.
    pub(crate) fn new(ipv4: bool, avoid_buggy: bool, ranges: &[(IpAddr, IpAddr)]) -> Self {
        let mut set = Self { ipv4, avoid_buggy: avoid_buggy && ipv4, free: BTreeMap::new() };
        for (first, last) in ranges {
            set.insert(number(*first), number(*last));
        }
        set
    }

    fn is_buggy(&self, n: u128) -> bool {
        self.avoid_buggy && matches!(n % 256, 0 | 255)
    }

    /// Adds `[start, end]`, merging with neighbours and overlaps.
    fn insert(&mut self, mut start: u128, mut end: u128) {
        if let Some((&s, &e)) = self.free.range(..=start).next_back()
            && e.saturating_add(1) >= start
        {
            start = s;
            end = end.max(e);
            self.free.remove(&s);
        }
        while let Some((&s, &e)) = self.free.range(start..).next() {
            if s > end.saturating_add(1) {
                break;
            }
            end = end.max(e);
            self.free.remove(&s);
        }
        self.free.insert(start, end);
    }

    /// Removes the single free number `n` from the interval `[s, e]` that holds it.
    fn split(&mut self, s: u128, e: u128, n: u128) {
        self.free.remove(&s);
        for (a, b) in [(s, n.wrapping_sub(1)), (n.wrapping_add(1), e)] {
            // Pieces that are empty, or hold only addresses never handed out, are dropped.
            let empty = (n == s && a == s) || (n == e && b == e) || a > b;
            if !empty && (a..=b).take(3).any(|m| !self.is_buggy(m)) {
                self.free.insert(a, b);
            }
        }
    }

    /// Takes the lowest free address.
    pub(crate) fn take_lowest(&mut self) -> Option<IpAddr> {
        let found = self.free.iter().find_map(|(&s, &e)| {
            // Within two steps of any number there is one that is not .0 or .255.
            (s..=e).take(3).find(|&n| !self.is_buggy(n)).map(|n| (s, e, n))
        });
        let (s, e, n) = found?;
        self.split(s, e, n);
        Some(address(self.ipv4, n))
    }

    /// Takes `wanted` if it is free; false otherwise.
    pub(crate) fn take(&mut self, wanted: IpAddr) -> bool {
        let n = number(wanted);
        let Some((&s, &e)) = self.free.range(..=n).next_back() else { return false };
        if n > e || self.is_buggy(n) {
            return false;
        }
        self.split(s, e, n);
        true
    }

    /// Returns `released` to the set (the caller knows it belongs to the pool).
    pub(crate) fn give_back(&mut self, released: IpAddr) {
        let n = number(released);
        if !self.is_buggy(n) {
            self.insert(n, n);
        }
    }

    /// How many addresses are free (saturating).
    pub(crate) fn available(&self) -> u128 {
        self.free.iter().fold(0u128, |sum, (&s, &e)| {
            let len = (e - s).saturating_add(1);
            let buggy = if self.avoid_buggy {
                count_congruent(s, e, 0) + count_congruent(s, e, 255)
            } else {
                0
            };
            sum.saturating_add(len - buggy)
        })
    }
}

/// How many numbers in `[s, e]` are `r` modulo 256.
fn count_congruent(s: u128, e: u128, r: u128) -> u128 {
    let up_to = |x: u128| if x < r { 0 } else { (x - r) / 256 + 1 };
    up_to(e) - if s == 0 { 0 } else { up_to(s - 1) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn hands_out_lowest_first_and_skips_buggy_addresses() {
        let mut set = FreeRanges::new(true, true, &[(ip("10.0.0.254"), ip("10.0.1.2"))]);
        assert_eq!(set.available(), 3);
        assert_eq!(set.take_lowest(), Some(ip("10.0.0.254")));
        assert_eq!(set.take_lowest(), Some(ip("10.0.1.1")));
        assert!(!set.take(ip("10.0.1.0")), "a buggy address is never free");
        assert!(set.take(ip("10.0.1.2")));
        assert_eq!(set.take_lowest(), None);
        assert_eq!(set.available(), 0);
        set.give_back(ip("10.0.1.1"));
        assert_eq!(set.available(), 1);
        assert_eq!(set.take_lowest(), Some(ip("10.0.1.1")));
    }

    #[test]
    fn counts_large_ranges_without_walking_them() {
        let set = FreeRanges::new(true, true, &[(ip("10.0.0.0"), ip("10.255.255.255"))]);
        assert_eq!(set.available(), (1 << 24) - 2 * (1 << 16));
        let v6 = FreeRanges::new(false, true, &[(ip("2001:db8::"), ip("2001:db8::ffff"))]);
        assert_eq!(v6.available(), 1 << 16, "avoidBuggyIPs is about IPv4 only");
    }

    proptest! {
        /// The set behaves like a plain set of numbers: what is taken is free and lowest, what
        /// is given back is free again, and the count matches.
        #[test]
        fn behaves_like_a_set_of_addresses(
            avoid in any::<bool>(),
            ops in prop::collection::vec((0u8..3, 0u32..600), 1..200),
        ) {
            let (first, last) = (ip("10.0.0.100"), ip("10.0.2.99"));
            let mut set = FreeRanges::new(true, avoid, &[(first, last)]);
            let buggy = |n: u32| avoid && matches!(n % 256, 0 | 255);
            let base = u32::from("10.0.0.100".parse::<Ipv4Addr>().unwrap());
            let mut model: BTreeSet<u32> = (base..base + 512).filter(|&n| !buggy(n)).collect();
            for (op, offset) in ops {
                let n = base + offset;
                match op {
                    0 => {
                        let expected = model.pop_first();
                        let got = set.take_lowest();
                        prop_assert_eq!(got, expected.map(|n| IpAddr::V4(Ipv4Addr::from(n))));
                    }
                    1 => {
                        let got = set.take(IpAddr::V4(Ipv4Addr::from(n)));
                        prop_assert_eq!(got, model.remove(&n));
                    }
                    _ => {
                        if offset < 512 && !model.contains(&n) {
                            set.give_back(IpAddr::V4(Ipv4Addr::from(n)));
                            if !buggy(n) {
                                model.insert(n);
                            }
                        }
                    }
                }
                prop_assert_eq!(set.available(), model.len() as u128);
            }
        }
    }
}
