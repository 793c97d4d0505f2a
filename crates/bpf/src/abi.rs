//! `#[repr(C)]` mirrors of the structs and constants in `include/switchyard.h`.
//!
//! The header is the one definition; these mirrors exist so Rust can read and write the maps.
//! `tests/layout.rs` compares every size, alignment, offset and constant here with the values
//! the C compiler reports for the header, so a change on one side only fails the build's tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Address family of an IPv4 address (Linux `AF_INET`).
pub const AF_INET: u8 = 2;
/// Address family of an IPv6 address (Linux `AF_INET6`).
pub const AF_INET6: u8 = 10;
/// Affinity keys only: the "address" is a network-namespace cookie.
pub const AF_NETNS_COOKIE: u8 = 255;

/// Frontend entry used by every path.
pub const SCOPE_DEFAULT: u8 = 0;
/// Second frontend entry for traffic from inside the cluster (see [`FE_SPLIT_SCOPE`]).
pub const SCOPE_INTERNAL: u8 = 1;

/// sessionAffinity ClientIP.
pub const FE_AFFINITY: u32 = 1 << 0;
/// Select through the frontend's Maglev table.
pub const FE_MAGLEV: u32 = 1 << 1;
/// Per-packet path: reject (RST / ICMP) instead of dropping when empty.
pub const FE_REJECT_EMPTY: u32 = 1 << 2;
/// The backends were narrowed to node-local endpoints (traffic policy Local).
pub const FE_LOCAL_ONLY: u32 = 1 << 3;
/// The slots hold terminating endpoints because no ready one exists.
pub const FE_TERMINATING_FALLBACK: u32 = 1 << 4;
/// A [`SCOPE_INTERNAL`] entry exists for the same address, port and protocol.
pub const FE_SPLIT_SCOPE: u32 = 1 << 5;
/// NodePort wildcard: all-zero key address matching any node-local address.
pub const FE_NODEPORT: u32 = 1 << 6;
/// Per-packet path: check loadBalancerSourceRanges (reserved).
pub const FE_SOURCE_RANGES: u32 = 1 << 7;

/// Backend is terminating.
pub const BE_TERMINATING: u8 = 1 << 0;
/// Backend runs on this node.
pub const BE_LOCAL: u8 = 1 << 1;
/// Backend is reached through a tunnel (reserved).
pub const BE_ENCAP: u8 = 1 << 2;

/// [`Affinity::slot`] of a choice not made through a slot (Maglev).
pub const SLOT_NONE: u32 = u32::MAX;
/// Default Maglev table size M (prime).
pub const MAGLEV_DEFAULT_TABLE_SIZE: u32 = 16381;

/// `IPPROTO_TCP`.
pub const PROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const PROTO_UDP: u8 = 17;
/// `IPPROTO_SCTP`.
pub const PROTO_SCTP: u8 = 132;

/// Decisions and drop reasons: the index into the `sy_counters` map (`enum sy_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Reason {
    /// Not a frontend: left alone (not counted).
    NotService = 0,
    /// Translated to a random slot.
    TranslatedRandom = 1,
    /// Translated through the Maglev table.
    TranslatedMaglev = 2,
    /// Translated to the ClientIP-affinity backend.
    TranslatedAffinity = 3,
    /// Unconnected UDP kept its socket's previous backend.
    TranslatedSticky = 4,
    /// No backends: the call failed with ECONNREFUSED.
    RejectNoBackend = 5,
    /// No backends, no reject flag (per-packet path): dropped.
    DropNoBackend = 6,
    /// A slot below `backend_count` was missing.
    ErrSlotMissing = 7,
    /// A slot or Maglev entry named a backend that does not exist.
    ErrBackendMissing = 8,
    /// A Maglev frontend had no table.
    ErrMaglevMissing = 9,
    /// The reverse-translation entry could not be written.
    ErrRevnatUpdate = 10,
    /// recvmsg source rewritten to the frontend.
    RevnatRecvmsg = 11,
    /// getpeername peer rewritten to the frontend.
    RevnatGetpeername = 12,
    /// A connected, translated socket closed; its reverse entry was removed.
    SockReleased = 13,
    /// loadBalancerSourceRanges: a translated socket's packet from a source outside them was
    /// dropped (`cgroup_skb/egress`).
    DropSourceRangeSock = 14,
    /// loadBalancerSourceRanges: a socket whose source was known at connect()/sendmsg() (bound,
    /// or chosen for the datagram) is outside them: the call failed with ECONNREFUSED.
    RejectSourceRange = 15,
}

impl Reason {
    /// Every reason, in counter-index order.
    pub const ALL: [Reason; 16] = [
        Reason::NotService,
        Reason::TranslatedRandom,
        Reason::TranslatedMaglev,
        Reason::TranslatedAffinity,
        Reason::TranslatedSticky,
        Reason::RejectNoBackend,
        Reason::DropNoBackend,
        Reason::ErrSlotMissing,
        Reason::ErrBackendMissing,
        Reason::ErrMaglevMissing,
        Reason::ErrRevnatUpdate,
        Reason::RevnatRecvmsg,
        Reason::RevnatGetpeername,
        Reason::SockReleased,
        Reason::DropSourceRangeSock,
        Reason::RejectSourceRange,
    ];
    /// Number of counter slots (`SY_REASON_MAX`): reasons up to here may be added in C.
    pub const MAX: u32 = 64;

    /// Stable snake_case name for metrics and `explain`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::NotService => "not_service",
            Reason::TranslatedRandom => "translated_random",
            Reason::TranslatedMaglev => "translated_maglev",
            Reason::TranslatedAffinity => "translated_affinity",
            Reason::TranslatedSticky => "translated_sticky",
            Reason::RejectNoBackend => "reject_no_backend",
            Reason::DropNoBackend => "drop_no_backend",
            Reason::ErrSlotMissing => "err_slot_missing",
            Reason::ErrBackendMissing => "err_backend_missing",
            Reason::ErrMaglevMissing => "err_maglev_missing",
            Reason::ErrRevnatUpdate => "err_revnat_update",
            Reason::RevnatRecvmsg => "revnat_recvmsg",
            Reason::RevnatGetpeername => "revnat_getpeername",
            Reason::SockReleased => "sock_released",
            Reason::DropSourceRangeSock => "drop_source_range_sock",
            Reason::RejectSourceRange => "reject_source_range",
        }
    }
}

/// `struct sy_addr`: IPv6, or IPv4 mapped into IPv6 (`::ffff:a.b.c.d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(C, align(4))]
pub struct Addr(pub [u8; 16]);

impl Addr {
    /// The all-zero address of NodePort wildcard keys.
    pub const UNSPECIFIED: Addr = Addr([0; 16]);

    /// The address and its `AF_*` family as stored in the maps.
    pub fn from_ip(ip: IpAddr) -> (Addr, u8) {
        match ip {
            IpAddr::V4(v4) => (Addr(v4.to_ipv6_mapped().octets()), AF_INET),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (Addr(v4.to_ipv6_mapped().octets()), AF_INET),
                None => (Addr(v6.octets()), AF_INET6),
            },
        }
    }

    /// The address as an [`IpAddr`]: IPv4 when `family` is [`AF_INET`].
    pub fn to_ip(self, family: u8) -> IpAddr {
        let v6 = Ipv6Addr::from(self.0);
        if family == AF_INET {
            let [.., a, b, c, d] = self.0;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        } else {
            IpAddr::V6(v6)
        }
    }
}

/// `struct sy_frontend_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct FrontendKey {
    /// Frontend address; all-zero for a NodePort wildcard.
    pub addr: Addr,
    /// Port in network byte order.
    pub port: u16,
    /// `PROTO_*`.
    pub proto: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// `SCOPE_*`.
    pub scope: u8,
    /// Zero.
    pub pad: [u8; 3],
}

impl FrontendKey {
    /// Key for `ip:port` (host byte order port) over `proto` in `scope`.
    pub fn new(ip: IpAddr, port: u16, proto: u8, scope: u8) -> Self {
        let (addr, family) = Addr::from_ip(ip);
        FrontendKey { addr, port: port.to_be(), proto, family, scope, pad: [0; 3] }
    }

    /// NodePort wildcard key: `port` on any node-local address of `family`.
    pub fn node_port(family: u8, port: u16, proto: u8, scope: u8) -> Self {
        FrontendKey {
            addr: Addr::UNSPECIFIED,
            port: port.to_be(),
            proto,
            family,
            scope,
            pad: [0; 3],
        }
    }

    /// The port in host byte order.
    pub fn port(&self) -> u16 {
        u16::from_be(self.port)
    }
}

/// `struct sy_frontend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Frontend {
    /// Nonzero, unique per entry.
    pub id: u32,
    /// `FE_*`.
    pub flags: u32,
    /// Usable slots are `0..backend_count`.
    pub backend_count: u32,
    /// ClientIP affinity timeout in seconds.
    pub affinity_timeout_s: u32,
}

/// `struct sy_slot_key`; the value is a backend id (`u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct SlotKey {
    /// Frontend id.
    pub frontend_id: u32,
    /// Slot, `0..backend_count`.
    pub slot: u32,
}

/// `struct sy_backend`, keyed by a nonzero `u32` backend id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Backend {
    /// Backend address.
    pub addr: Addr,
    /// Port in network byte order.
    pub port: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// `BE_*`.
    pub flags: u8,
    /// Tunnel endpoint id for `BE_ENCAP` (reserved), else 0.
    pub tunnel_id: u32,
}

impl Backend {
    /// Backend at `ip:port` (host byte order port).
    pub fn new(ip: IpAddr, port: u16, flags: u8) -> Self {
        let (addr, family) = Addr::from_ip(ip);
        Backend { addr, port: port.to_be(), family, flags, tunnel_id: 0 }
    }

    /// The port in host byte order.
    pub fn port(&self) -> u16 {
        u16::from_be(self.port)
    }
}

/// `struct sy_sock_revnat_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct SockRevnatKey {
    /// Socket cookie.
    pub cookie: u64,
    /// Backend address.
    pub addr: Addr,
    /// Backend port, network byte order.
    pub port: u16,
    /// Family.
    pub family: u8,
    /// Zero.
    pub pad: [u8; 5],
}

/// `struct sy_sock_revnat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct SockRevnat {
    /// Frontend address.
    pub addr: Addr,
    /// Frontend port, network byte order.
    pub port: u16,
    /// Family.
    pub family: u8,
    /// Zero.
    pub pad: u8,
    /// Frontend id.
    pub frontend_id: u32,
}

/// `struct sy_affinity_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct AffinityKey {
    /// Client address, or netns cookie in bytes 0..8.
    pub client: Addr,
    /// Frontend id.
    pub frontend_id: u32,
    /// `AF_INET`, `AF_INET6` or `AF_NETNS_COOKIE`.
    pub family: u8,
    /// Zero.
    pub pad: [u8; 3],
}

/// `struct sy_affinity`: a remembered choice (affinity and sticky maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Affinity {
    /// Backend id.
    pub backend_id: u32,
    /// Slot it was found in, or [`SLOT_NONE`].
    pub slot: u32,
    /// `bpf_ktime_get_ns()` of the last use (CLOCK_MONOTONIC).
    pub last_used_ns: u64,
}

/// `struct sy_sock_sticky_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct SockStickyKey {
    /// Socket cookie.
    pub cookie: u64,
    /// Frontend id.
    pub frontend_id: u32,
    /// Zero.
    pub pad: u32,
}

/// `struct sy_node_addr_key`; the value is `u32` flags (zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(C)]
pub struct NodeAddrKey {
    /// A node address.
    pub addr: Addr,
    /// Family.
    pub family: u8,
    /// Zero.
    pub pad: [u8; 3],
}

impl NodeAddrKey {
    /// Key for a node address.
    pub fn new(ip: IpAddr) -> Self {
        let (addr, family) = Addr::from_ip(ip);
        NodeAddrKey { addr, family, pad: [0; 3] }
    }
}

/// `struct sy_counter` (per CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Counter {
    /// Calls (socket path) or packets.
    pub packets: u64,
    /// Bytes (per-packet path).
    pub bytes: u64,
}

/// `struct sy_fe_counter` (per CPU), keyed by frontend id: per-Service traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct FrontendCounter {
    /// Socket path: new flows (connect, first sendmsg of a socket to the frontend).
    pub connections: u64,
    /// Per-packet path: packets.
    pub packets: u64,
    /// Per-packet path: bytes.
    pub bytes: u64,
}

impl FrontendCounter {
    /// Field-wise sum (for adding up the per-CPU values).
    pub fn plus(self, other: FrontendCounter) -> FrontendCounter {
        FrontendCounter {
            connections: self.connections.wrapping_add(other.connections),
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

/// `struct sy_config`, the single entry of `sy_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Config {
    /// Maglev table size M.
    pub maglev_table_size: u32,
    /// `SY_CFG_*` (zero).
    pub flags: u32,
    /// SipHash key, seed bytes 0..8 read little-endian.
    pub hash_k0: u64,
    /// SipHash key, seed bytes 8..16 read little-endian.
    pub hash_k1: u64,
    /// The network namespace whose loopback reaches NodePorts on the socket path (the
    /// node's, where the agent runs; 0: none): a pod's 127.0.0.1 stays its own.
    pub node_netns_cookie: u64,
}

impl Config {
    /// The SipHash key words of a 16-byte seed (as `switchyard_maglev::Seed::words`).
    pub fn seed_words(seed: [u8; 16]) -> (u64, u64) {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p] = seed;
        (u64::from_le_bytes([a, b, c, d, e, f, g, h]), u64::from_le_bytes([i, j, k, l, m, n, o, p]))
    }
}

/// `SY_PATH_SOCK`: an event of the cgroup socket programs.
pub const PATH_SOCK: u8 = 0;
/// `SY_PATH_PKT`: an event of the TC per-packet programs.
pub const PATH_PKT: u8 = 1;
/// `SY_PATH_DIR`: an event of the director's XDP program ([`Event`] fields then mean: reason
/// an `enum sy_dir_reason`, frontend id the VIP id, backend id the node id, cookie the slot).
pub const PATH_DIR: u8 = 2;
/// `SY_EVENT_NO_SLOT`: a director event's cookie before the flow's slot was known.
pub const EVENT_NO_SLOT: u64 = u64::MAX;
/// `SY_DEFAULT_EVENTS_BYTES`: size of the `sy_events` ring buffer.
pub const DEFAULT_EVENTS_BYTES: u32 = 262_144;

/// `struct sy_monitor_config`, the single entry of `sy_monitor` (written by `switchyard
/// monitor`; all zero, the default, means off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct MonitorConfig {
    /// Nonzero: the programs write events.
    pub enabled: u32,
    /// Decisions: 1 in N (0 and 1: all).
    pub sample_every: u32,
    /// Drops and rejects: 1 in N (0 and 1: all).
    pub drop_sample_every: u32,
    /// Zero.
    pub pad: u32,
}

/// `struct sy_event`: one record of the `sy_events` ring buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Socket path: the socket cookie; per-packet path: 0; director: the Maglev slot (or
    /// [`EVENT_NO_SLOT`]).
    pub cookie: u64,
    /// `enum sy_reason` (socket or per-packet reason); director: `enum sy_dir_reason`.
    pub reason: u32,
    /// Frontend id, 0 where the program did not know it (per-packet drops).
    pub frontend_id: u32,
    /// Backend id, 0 for none.
    pub backend_id: u32,
    /// Per-packet path: `skb->len`.
    pub len: u32,
    /// Per-packet path: client address; socket path: zero.
    pub saddr: Addr,
    /// Destination as the client addressed it.
    pub daddr: Addr,
    /// Source port, network byte order.
    pub sport: u16,
    /// Destination port, network byte order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Family of both addresses.
    pub family: u8,
    /// [`PATH_SOCK`], [`PATH_PKT`] or [`PATH_DIR`].
    pub path: u8,
    /// Zero.
    pub pad: u8,
}

impl Event {
    /// Parses one ring-buffer record (`None` when it is too short).
    pub fn from_bytes(bytes: &[u8]) -> Option<Event> {
        if bytes.len() < size_of::<Event>() {
            return None;
        }
        // SAFETY: bytes holds at least size_of::<Event>() bytes; read_unaligned copes with any
        // alignment, and Event is plain old data (every bit pattern is valid).
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
    }
}

// SAFETY: every type below is #[repr(C)], made only of integers and byte arrays, and has no
// implicit padding (tests/layout.rs checks the sizes equal the sum the header spells out),
// so every bit pattern is valid and no uninitialised byte is ever exposed.
unsafe impl aya::Pod for Addr {}
unsafe impl aya::Pod for FrontendKey {}
unsafe impl aya::Pod for Frontend {}
unsafe impl aya::Pod for SlotKey {}
unsafe impl aya::Pod for Backend {}
unsafe impl aya::Pod for SockRevnatKey {}
unsafe impl aya::Pod for SockRevnat {}
unsafe impl aya::Pod for AffinityKey {}
unsafe impl aya::Pod for Affinity {}
unsafe impl aya::Pod for SockStickyKey {}
unsafe impl aya::Pod for NodeAddrKey {}
unsafe impl aya::Pod for Counter {}
unsafe impl aya::Pod for MonitorConfig {}
unsafe impl aya::Pod for FrontendCounter {}
unsafe impl aya::Pod for Config {}
