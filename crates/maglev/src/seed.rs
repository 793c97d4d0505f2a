//! The cluster-wide hash key. Every director and node must use the same one, or their tables differ.

use core::fmt;
use core::str::FromStr;

/// The 128-bit SipHash key shared by the whole cluster.
///
/// Written as 32 hexadecimal digits (byte 0 first). `Debug` hides the value: with a secret key,
/// clients cannot predict which backend a flow lands on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Seed([u8; 16]);

impl Seed {
    /// The key used when none is configured: the ASCII bytes of `switchyard:seed0`.
    pub const DEFAULT: Seed = Seed(*b"switchyard:seed0");

    /// A seed from its 16 key bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Seed {
        Seed(bytes)
    }

    /// The 16 key bytes.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// The key as SipHash's two little-endian words `(k0, k1)`.
    #[must_use]
    pub const fn words(&self) -> (u64, u64) {
        let b = &self.0;
        let k0 = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let k1 = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        (k0, k1)
    }
}

impl Default for Seed {
    fn default() -> Seed {
        Seed::DEFAULT
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(..)")
    }
}

/// Lower-case hexadecimal, byte 0 first; parses back with [`FromStr`].
impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why a seed string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    /// Not 32 characters long.
    #[error("a seed is 32 hexadecimal digits (16 bytes), found {found} characters")]
    WrongLength { found: usize },
    /// A character is not a hexadecimal digit.
    #[error("a seed is 32 hexadecimal digits; {character:?} (character {position}) is not one")]
    NotHex { character: char, position: usize },
}

impl FromStr for Seed {
    type Err = SeedError;

    fn from_str(text: &str) -> Result<Seed, SeedError> {
        let mut bytes = [0u8; 16];
        let mut count = 0;
        for (position, digit) in text.chars().enumerate() {
            let value =
                digit.to_digit(16).ok_or(SeedError::NotHex { character: digit, position })?;
            if let Some(byte) = bytes.get_mut(position / 2) {
                // to_digit(16) is below 16, so the cast is lossless.
                *byte = (*byte << 4) | value as u8;
            }
            count = position + 1;
        }
        if count != 32 {
            return Err(SeedError::WrongLength { found: count });
        }
        Ok(Seed(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn display_round_trips_through_from_str() {
        let seed =
            Seed::from_bytes(*b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\xff");
        let text = seed.to_string();
        assert_eq!(text, "000102030405060708090a0b0c0d0eff");
        assert_eq!(text.parse::<Seed>(), Ok(seed));
    }

    #[test]
    fn malformed_seeds_are_refused_with_the_reason() {
        let cases: [(&str, SeedError); 4] = [
            ("abcd", SeedError::WrongLength { found: 4 }),
            (
                "000102030405060708090a0b0c0d0e0g",
                SeedError::NotHex { character: 'g', position: 31 },
            ),
            ("000102030405060708090a0b0c0d0e0f00", SeedError::WrongLength { found: 34 }),
            ("x00102030405060708090a0b0c0d0e0f", SeedError::NotHex { character: 'x', position: 0 }),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Seed>(), Err(expected), "{text}");
        }
    }

    #[test]
    fn debug_does_not_reveal_the_key() {
        assert_eq!(alloc::format!("{:?}", Seed::DEFAULT), "Seed(..)");
    }
}
