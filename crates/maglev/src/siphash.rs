//! SipHash (Aumasson & Bernstein, 2012), the one keyed hash every Switchyard table and packet uses.
//!
//! Why SipHash: it is fully specified down to the byte order (little-endian words, the message
//! length in the top byte of the last word), it has published reference vectors, the Linux kernel
//! carries the same function (`siphash()` in `lib/siphash.c`), and it is about thirty lines of plain
//! 64-bit C, which the BPF verifier accepts without loops over unbounded data. Being a keyed PRF, a
//! cluster-wide secret key also keeps clients from crafting flows that pile onto one backend.
//! Nothing here depends on the platform's endianness or on the Rust version.
//!
//! Tables and socket cookies use SipHash-2-4 ([`siphash24`]); the per-packet flow hash uses
//! SipHash-1-3 ([`siphash13`], [`crate::FlowKey::hash`], docs/maglev.md) and is computed through [`SipState`],
//! which can stop after whole words: the director keeps the state after a VIP's words per VIP.

use crate::seed::Seed;

/// SipHash-2-4 of `message` under the 128-bit key in `seed`.
///
/// The key's 16 bytes are read as two little-endian `u64` words (`k0` = bytes 0..8, `k1` = bytes
/// 8..16), exactly as the reference implementation does.
#[must_use]
pub fn siphash24(seed: &Seed, message: &[u8]) -> u64 {
    siphash::<2, 4>(seed, message)
}

/// SipHash-1-3 of `message` under `seed` (the flow hash's function, [`crate::FlowKey::hash`]).
#[must_use]
pub fn siphash13(seed: &Seed, message: &[u8]) -> u64 {
    siphash::<1, 3>(seed, message)
}

/// SipHash-C-D of `message`: C rounds per message word, D to finish.
pub(crate) fn siphash<const C: usize, const D: usize>(seed: &Seed, message: &[u8]) -> u64 {
    let mut state = SipState::new(seed);
    let (words, tail) = message.as_chunks::<8>();
    for word in words {
        state.compress::<C>(u64::from_le_bytes(*word));
    }
    state.finish::<C, D>(last_word(tail, message.len()))
}

/// The last word: the leftover bytes (little-endian) with the length modulo 256 on top.
pub(crate) fn last_word(tail: &[u8], len: usize) -> u64 {
    let mut last = (len as u64) << 56;
    for (i, byte) in tail.iter().enumerate() {
        last |= u64::from(*byte) << (8 * i);
    }
    last
}

/// SipHash's internal state `v0..v3` after a number of whole message words. A state after the
/// first words of a message is a pure function of the key and those words, so a message that
/// always starts with them (a VIP's address, port and protocol) can start from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SipState {
    /// `[v0, v1, v2, v3]`, as in the reference implementation.
    pub v: [u64; 4],
}

impl SipState {
    /// The state before any word: the key mixed with SipHash's constants.
    #[must_use]
    pub const fn new(seed: &Seed) -> Self {
        let (k0, k1) = seed.words();
        SipState {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
        }
    }

    /// Absorbs one full little-endian message word with `C` SipRounds.
    #[inline(always)]
    pub fn compress<const C: usize>(&mut self, word: u64) {
        self.v[3] ^= word;
        for _ in 0..C {
            self.round();
        }
        self.v[0] ^= word;
    }

    /// Absorbs the last word (leftover bytes and the length on top) and finishes with `D`
    /// SipRounds.
    #[must_use]
    #[inline(always)]
    pub fn finish<const C: usize, const D: usize>(mut self, last: u64) -> u64 {
        self.compress::<C>(last);
        self.v[2] ^= 0xff;
        for _ in 0..D {
            self.round();
        }
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }

    #[inline(always)]
    fn round(&mut self) {
        let [mut v0, mut v1, mut v2, mut v3] = self.v;
        v0 = v0.wrapping_add(v1);
        v1 = v1.rotate_left(13);
        v1 ^= v0;
        v0 = v0.rotate_left(32);
        v2 = v2.wrapping_add(v3);
        v3 = v3.rotate_left(16);
        v3 ^= v2;
        v0 = v0.wrapping_add(v3);
        v3 = v3.rotate_left(21);
        v3 ^= v0;
        v2 = v2.wrapping_add(v1);
        v1 = v1.rotate_left(17);
        v1 ^= v2;
        v2 = v2.rotate_left(32);
        self.v = [v0, v1, v2, v3];
    }
}
