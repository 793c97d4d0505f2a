//! Backends as the table sees them: a stable identity, a weight, and the permutation derived from
//! the identity.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::seed::Seed;
use crate::siphash::siphash24;
use crate::size::TableSize;

/// One backend: the bytes that identify it everywhere, and its weight (0 = drain: it keeps its
/// index in the table's backend list but receives no slots).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    identity: Vec<u8>,
    weight: u32,
}

impl Backend {
    /// A backend identified by exactly these bytes.
    ///
    /// Every machine must spell an identity the same way; use [`Backend::from_socket_addr`] or
    /// [`canonical_identity`] for addresses.
    pub fn new(identity: impl Into<Vec<u8>>, weight: u32) -> Backend {
        Backend { identity: identity.into(), weight }
    }

    /// A backend identified by the canonical text of `addr` (see [`canonical_socket_addr`]).
    #[must_use]
    pub fn from_socket_addr(addr: SocketAddr, weight: u32) -> Backend {
        Backend::new(canonical_socket_addr(addr), weight)
    }

    /// The identity bytes, hashed as they are.
    #[must_use]
    pub fn identity(&self) -> &[u8] {
        &self.identity
    }

    /// The identity for people (invalid UTF-8 replaced).
    #[must_use]
    pub fn identity_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.identity)
    }

    /// The weight; 0 drains the backend.
    #[must_use]
    pub fn weight(&self) -> u32 {
        self.weight
    }
}

/// Where a backend's preference list starts and how it steps through the slots.
///
/// Slot `j` of the backend's preference list is `(offset + j * skip) mod M`; with M prime and
/// `1 <= skip < M` the list visits every slot exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permutation {
    pub offset: u32,
    pub skip: u32,
}

impl Permutation {
    /// Derives the permutation from one SipHash-2-4 of the identity bytes:
    /// `h = siphash24(seed, identity)`, `offset = (h mod 2^32) mod M`,
    /// `skip = (h div 2^32) mod (M − 1) + 1`.
    #[must_use]
    pub fn of(seed: &Seed, size: TableSize, identity: &[u8]) -> Permutation {
        let hash = siphash24(seed, identity);
        let m = size.get();
        let low = hash as u32; // truncation intended: the low half of the hash
        let high = (hash >> 32) as u32;
        Permutation { offset: low % m, skip: high % (m - 1) + 1 }
    }
}

/// The canonical identity for `text`: socket addresses (`10.0.0.1:8080`, `[2001:db8::1]:80`) are
/// rewritten in the one spelling [`canonical_socket_addr`] produces; anything else is kept as is.
#[must_use]
pub fn canonical_identity(text: &str) -> Cow<'_, str> {
    match text.parse::<SocketAddr>() {
        Ok(addr) => Cow::Owned(canonical_socket_addr(addr)),
        Err(_) => Cow::Borrowed(text),
    }
}

/// `a.b.c.d:port` for IPv4; `[groups]:port` for IPv6 with RFC 5952 group rules (lower-case hex,
/// no leading zeros, the first longest run of two or more zero groups written `::`) but never the
/// dotted IPv4 tail. Written out here rather than taken from `Display`, so that no Rust release
/// can change a backend's identity. Scope and flow label are not part of the identity.
#[must_use]
pub fn canonical_socket_addr(addr: SocketAddr) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = match addr.ip() {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            write!(text, "{a}.{b}.{c}.{d}:{}", addr.port())
        }
        IpAddr::V6(ip) => {
            text.push('[');
            write_ipv6_groups(&mut text, ip);
            write!(text, "]:{}", addr.port())
        }
    };
    text
}

fn write_ipv6_groups(text: &mut String, ip: Ipv6Addr) {
    let groups = ip.segments();
    // The first longest run of at least two zero groups.
    let (mut best_start, mut best_len) = (0, 0);
    let mut run_start = 0;
    for (i, group) in groups.iter().enumerate() {
        if *group != 0 {
            run_start = i + 1;
        } else if i + 1 - run_start > best_len {
            (best_start, best_len) = (run_start, i + 1 - run_start);
        }
    }
    let mut i = 0;
    while i < groups.len() {
        if best_len >= 2 && i == best_start {
            text.push_str("::");
            i += best_len;
            continue;
        }
        if i > 0 && !text.ends_with(':') {
            text.push(':');
        }
        let _ = write!(text, "{:x}", groups[i]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_have_one_spelling() {
        let cases = [
            ("10.0.0.1:8080", "10.0.0.1:8080"),
            ("[2001:db8::1]:80", "[2001:db8::1]:80"),
            ("[2001:0DB8:0000:0000:0000:0000:0000:0001]:80", "[2001:db8::1]:80"),
            ("[::]:1", "[::]:1"),
            ("[::1]:1", "[::1]:1"),
            ("[1::]:1", "[1::]:1"),
            ("[1:0:0:2:0:0:0:3]:9", "[1:0:0:2::3]:9"),
            ("[1:0:0:2:0:0:3:4]:9", "[1::2:0:0:3:4]:9"),
            ("[1:0:2:3:4:5:6:7]:9", "[1:0:2:3:4:5:6:7]:9"),
            ("[::ffff:10.0.0.1]:80", "[::ffff:a00:1]:80"),
            ("[fe80::1%2]:80", "[fe80::1]:80"),
            ("web-0.default", "web-0.default"),
            ("10.0.0.1", "10.0.0.1"),
        ];
        for (input, expected) in cases {
            assert_eq!(canonical_identity(input), expected, "{input}");
        }
    }

    #[test]
    fn canonical_ipv6_text_parses_back_to_the_same_address() {
        let addresses = ["[1:0:0:2:0:0:0:3]:9", "[0:0:1::]:7", "[2001:db8:0:1:1:1:1:1]:443"];
        for input in addresses {
            let addr: SocketAddr = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            let canonical = canonical_socket_addr(addr);
            assert_eq!(canonical.parse::<SocketAddr>().ok(), Some(addr), "{input} -> {canonical}");
        }
    }
}
