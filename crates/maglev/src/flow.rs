//! The per-packet flow hash: which slot a connection's packets use. The BPF programs compute the
//! same function in C; `switchyard explain` computes it here. The byte layout below is the
//! contract between the two (golden vectors in tests/golden.rs and docs/maglev.md).

use core::net::IpAddr;

use crate::seed::Seed;
use crate::siphash::siphash24;

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
    /// The bytes hashed for this flow, all in network byte order (as in the packet headers):
    /// source address, destination address (4 bytes each for IPv4, 16 for IPv6), source port
    /// (2), destination port (2), protocol (1). 13 bytes for IPv4, 37 for IPv6.
    /// Returns the buffer and the number of bytes used.
    pub fn to_bytes(&self) -> Result<([u8; 37], usize), MixedFamilies> {
        let mut bytes = [0u8; 37];
        let address_len = match (self.source, self.destination) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => {
                bytes[..4].copy_from_slice(&source.octets());
                bytes[4..8].copy_from_slice(&destination.octets());
                4
            }
            (IpAddr::V6(source), IpAddr::V6(destination)) => {
                bytes[..16].copy_from_slice(&source.octets());
                bytes[16..32].copy_from_slice(&destination.octets());
                16
            }
            (source_address, destination_address) => {
                return Err(MixedFamilies { source_address, destination_address });
            }
        };
        let ports = 2 * address_len;
        bytes[ports..ports + 2].copy_from_slice(&self.source_port.to_be_bytes());
        bytes[ports + 2..ports + 4].copy_from_slice(&self.destination_port.to_be_bytes());
        bytes[ports + 4] = self.protocol;
        Ok((bytes, ports + 5))
    }

    /// SipHash-2-4 of [`to_bytes`](Self::to_bytes) under the cluster seed; the slot is this
    /// modulo M ([`Table::slot_for_hash`](crate::Table::slot_for_hash)).
    pub fn hash(&self, seed: &Seed) -> Result<u64, MixedFamilies> {
        let (bytes, len) = self.to_bytes()?;
        Ok(siphash24(seed, &bytes[..len]))
    }
}
