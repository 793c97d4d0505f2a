//! The lookup table size M, validated once so the builder can rely on it.

use core::fmt;

/// A validated Maglev table size: a prime between [`TableSize::MIN`] and [`TableSize::MAX`].
///
/// Maglev needs a prime M so that every skip in `1..M` walks a full permutation of the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableSize(u32);

/// Why a table size was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableSizeError {
    /// The size is not a prime (Maglev's permutations need one).
    #[error("Maglev table size {size} is not a prime")]
    NotPrime { size: u32 },
    /// The size is below the minimum.
    #[error("Maglev table size {size} is too small (at least {min})")]
    TooSmall { size: u32, min: u32 },
    /// The size is above the maximum.
    #[error("Maglev table size {size} is too large (at most {max})")]
    TooLarge { size: u32, max: u32 },
}

impl TableSize {
    /// Smallest size accepted: below this a table cannot spread even a few backends evenly.
    pub const MIN: u32 = 251;
    /// Largest size accepted (2^24 − 3, the largest prime below 2^24): slot indices then fit in 24
    /// bits and the 32-bit halves used for offset and skip stay practically unbiased modulo M.
    pub const MAX: u32 = 16_777_213;
    /// Default for node-local services.
    pub const NODE_DEFAULT: TableSize = TableSize(16_381);
    /// Default for directors (the Maglev paper's size).
    pub const DIRECTOR_DEFAULT: TableSize = TableSize(65_537);

    /// Validates `size`: it must be a prime within [`MIN`](Self::MIN)..=[`MAX`](Self::MAX).
    pub const fn new(size: u32) -> Result<TableSize, TableSizeError> {
        if size < Self::MIN {
            return Err(TableSizeError::TooSmall { size, min: Self::MIN });
        }
        if size > Self::MAX {
            return Err(TableSizeError::TooLarge { size, max: Self::MAX });
        }
        if !is_prime(size) {
            return Err(TableSizeError::NotPrime { size });
        }
        Ok(TableSize(size))
    }

    /// M as a number.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for TableSize {
    /// The node default, 16381.
    fn default() -> TableSize {
        TableSize::NODE_DEFAULT
    }
}

impl fmt::Display for TableSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Trial division; sizes are at most 2^24, so at most ~2000 odd divisors.
const fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut divisor = 3;
    while divisor * divisor <= n {
        if n.is_multiple_of(divisor) {
            return false;
        }
        divisor += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_accepted_or_refused_with_the_reason() {
        let cases = [
            (251, Ok(251)),
            (16_381, Ok(16_381)),
            (65_537, Ok(65_537)),
            (TableSize::MAX, Ok(TableSize::MAX)),
            (65_536, Err(TableSizeError::NotPrime { size: 65_536 })),
            (65_541, Err(TableSizeError::NotPrime { size: 65_541 })),
            (241, Err(TableSizeError::TooSmall { size: 241, min: 251 })),
            (0, Err(TableSizeError::TooSmall { size: 0, min: 251 })),
            (16_777_259, Err(TableSizeError::TooLarge { size: 16_777_259, max: TableSize::MAX })),
        ];
        for (size, expected) in cases {
            assert_eq!(TableSize::new(size).map(TableSize::get), expected, "size {size}");
        }
    }

    #[test]
    fn primality_agrees_with_a_sieve() {
        const LIMIT: usize = 70_000;
        let mut composite = alloc::vec![false; LIMIT];
        for n in 2..LIMIT {
            if !composite[n] {
                let mut multiple = n * n;
                while multiple < LIMIT {
                    composite[multiple] = true;
                    multiple += n;
                }
            }
            assert_eq!(is_prime(n as u32), !composite[n], "{n}");
        }
    }
}
