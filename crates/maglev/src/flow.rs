//! The per-packet flow hash: which slot a connection's packets use. The BPF programs compute the
//! same function in C; `switchyard explain` computes it here. The byte layout below is the
//! contract between the two (golden vectors in tests/golden.rs and docs/maglev.md).
//!
//! The VIP's part of the 5-tuple comes first, padded to whole 8-byte words, so that SipHash's
//! state after those words is a function of the key and the VIP alone ([`FlowPrefix`]): the
//! director keeps it per VIP and hashes only the source's words per packet. It is still SipHash
//! of the whole message, so the nodes hash from scratch and get the same value.

use core::net::IpAddr;

use crate::seed::Seed;
use crate::siphash::{SipState, last_word, siphash};

/// SipRounds per message word of the flow hash: SipHash-1-3, the rounds of Rust's std
/// `HashMap` and CPython's string hash (docs/maglev.md says why it suffices here).
pub const FLOW_HASH_C_ROUNDS: usize = 1;
/// SipRounds of the flow hash's finalization.
pub const FLOW_HASH_D_ROUNDS: usize = 3;
/// The flow hash's name, for people (`explain`).
pub const FLOW_HASH_NAME: &str = "SipHash-1-3";

/// Longest message: IPv6, 16 + 2 + 1 + 5 padding + 16 + 2 bytes.
const MAX_LEN: usize = 42;

/// A connection's 5-tuple as seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub source_port: u16,
    pub destination_port: u16,
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub protocol: u8,
}

/// Why a flow key cannot be hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("flow addresses must be of one family, found {source_address} and {destination_address}")]
pub struct MixedFamilies {
    pub source_address: IpAddr,
    pub destination_address: IpAddr,
}

impl FlowKey {
    /// The bytes hashed for this flow, fields in network byte order (as in the packet headers):
    /// destination address (4 bytes for IPv4, 16 for IPv6), destination port (2), protocol (1),
    /// zero bytes up to a whole 8-byte word (1 for IPv4, 5 for IPv6), then source address and
    /// source port (2). 14 bytes for IPv4, 42 for IPv6. Returns the buffer and the length used.
    pub fn to_bytes(&self) -> Result<([u8; MAX_LEN], usize), MixedFamilies> {
        let mut bytes = [0u8; MAX_LEN];
        let (v4, v6);
        let (destination, source): (&[u8], &[u8]) = match (self.source, self.destination) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => {
                v4 = [destination.octets(), source.octets()];
                (&v4[0], &v4[1])
            }
            (IpAddr::V6(source), IpAddr::V6(destination)) => {
                v6 = [destination.octets(), source.octets()];
                (&v6[0], &v6[1])
            }
            (source_address, destination_address) => {
                return Err(MixedFamilies { source_address, destination_address });
            }
        };
        let n = destination.len();
        bytes[..n].copy_from_slice(destination);
        bytes[n..n + 2].copy_from_slice(&self.destination_port.to_be_bytes());
        bytes[n + 2] = self.protocol;
        let start = prefix_len(n);
        bytes[start..start + n].copy_from_slice(source);
        bytes[start + n..start + n + 2].copy_from_slice(&self.source_port.to_be_bytes());
        Ok((bytes, start + n + 2))
    }

    /// The flow hash: SipHash-1-3 of [`to_bytes`](Self::to_bytes) under the cluster seed; the
    /// slot is this modulo M ([`Table::slot_for_hash`](crate::Table::slot_for_hash)).
    pub fn hash(&self, seed: &Seed) -> Result<u64, MixedFamilies> {
        let (bytes, len) = self.to_bytes()?;
        Ok(siphash::<FLOW_HASH_C_ROUNDS, FLOW_HASH_D_ROUNDS>(seed, &bytes[..len]))
    }
}

/// Bytes of the VIP's part (address, port, protocol, padding) for an address of `n` bytes.
const fn prefix_len(n: usize) -> usize {
    (n + 3).div_ceil(8) * 8
}

/// The flow hash's state after the VIP's words (destination address, port, protocol,
/// padding) under a key: what the director keeps per VIP (`struct sy_flow_prefix`), so a
/// packet costs only the source's words and the finalization. Equal to hashing the whole
/// [`FlowKey`] from scratch (property test in tests/golden.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowPrefix {
    /// SipHash's state after the VIP's words.
    pub state: SipState,
    /// The VIP's address is IPv6 (3 words absorbed), else IPv4 (1 word).
    pub ipv6: bool,
}

impl FlowPrefix {
    /// The state for flows to `destination:destination_port` over `protocol`.
    #[must_use]
    pub fn new(seed: &Seed, destination: IpAddr, destination_port: u16, protocol: u8) -> Self {
        let mut state = SipState::new(seed);
        let port = destination_port.to_be_bytes();
        let tail = [port[0], port[1], protocol, 0, 0, 0, 0, 0];
        let ipv6 = match destination {
            IpAddr::V4(a) => {
                let o = a.octets();
                let word = [o[0], o[1], o[2], o[3], port[0], port[1], protocol, 0];
                state.compress::<FLOW_HASH_C_ROUNDS>(u64::from_le_bytes(word));
                false
            }
            IpAddr::V6(a) => {
                let octets = a.octets();
                let (words, _) = octets.as_chunks::<8>();
                for word in words {
                    state.compress::<FLOW_HASH_C_ROUNDS>(u64::from_le_bytes(*word));
                }
                state.compress::<FLOW_HASH_C_ROUNDS>(u64::from_le_bytes(tail));
                true
            }
        };
        FlowPrefix { state, ipv6 }
    }

    /// The flow hash of the flow from `source:source_port` to this prefix's VIP.
    pub fn hash(&self, source: IpAddr, source_port: u16) -> Option<u64> {
        let port = source_port.to_be_bytes();
        let mut state = self.state;
        match (source, self.ipv6) {
            (IpAddr::V4(a), false) => {
                let o = a.octets();
                let rest = [o[0], o[1], o[2], o[3], port[0], port[1]];
                Some(state.finish::<FLOW_HASH_C_ROUNDS, FLOW_HASH_D_ROUNDS>(last_word(&rest, 14)))
            }
            (IpAddr::V6(a), true) => {
                let octets = a.octets();
                let (words, _) = octets.as_chunks::<8>();
                for word in words {
                    state.compress::<FLOW_HASH_C_ROUNDS>(u64::from_le_bytes(*word));
                }
                Some(state.finish::<FLOW_HASH_C_ROUNDS, FLOW_HASH_D_ROUNDS>(last_word(&port, 42)))
            }
            _ => None,
        }
    }
}
