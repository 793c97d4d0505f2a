//! SipHash-2-4 (Aumasson & Bernstein, 2012), the one hash every Switchyard table and packet uses.
//!
//! Why SipHash-2-4: it is fully specified down to the byte order (little-endian words, the message
//! length in the top byte of the last word), it has published reference vectors, the Linux kernel
//! carries the same function (`siphash()` in `lib/siphash.c`), and it is about thirty lines of plain
//! 64-bit C, which the BPF verifier accepts without loops over unbounded data. Being a keyed PRF, a
//! cluster-wide secret key also keeps clients from crafting flows that pile onto one backend.
//! Nothing here depends on the platform's endianness or on the Rust version.

use crate::seed::Seed;

/// SipHash-2-4 of `message` under the 128-bit key in `seed`.
///
/// The key's 16 bytes are read as two little-endian `u64` words (`k0` = bytes 0..8, `k1` = bytes
/// 8..16), exactly as the reference implementation does.
#[must_use]
pub fn siphash24(seed: &Seed, message: &[u8]) -> u64 {
    let (k0, k1) = seed.words();
    let mut state = State {
        v0: k0 ^ 0x736f_6d65_7073_6575,
        v1: k1 ^ 0x646f_7261_6e64_6f6d,
        v2: k0 ^ 0x6c79_6765_6e65_7261,
        v3: k1 ^ 0x7465_6462_7974_6573,
    };

    let (words, tail) = message.as_chunks::<8>();
    for word in words {
        state.compress(u64::from_le_bytes(*word));
    }

    // The last word carries the leftover bytes (little-endian) and the length modulo 256 on top.
    let mut last = (message.len() as u64) << 56;
    for (i, byte) in tail.iter().enumerate() {
        last |= u64::from(*byte) << (8 * i);
    }
    state.compress(last);

    state.v2 ^= 0xff;
    for _ in 0..4 {
        state.round();
    }
    state.v0 ^ state.v1 ^ state.v2 ^ state.v3
}

struct State {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl State {
    /// Two SipRounds per message word: the "2" in SipHash-2-4.
    #[inline(always)]
    fn compress(&mut self, word: u64) {
        self.v3 ^= word;
        self.round();
        self.round();
        self.v0 ^= word;
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13);
        self.v1 ^= self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16);
        self.v3 ^= self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21);
        self.v3 ^= self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17);
        self.v1 ^= self.v2;
        self.v2 = self.v2.rotate_left(32);
    }
}
