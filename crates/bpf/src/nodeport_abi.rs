//! `#[repr(C)]` mirrors of the per-packet section of `include/switchyard.h` (issue 6): the
//! conntrack and NAT maps, loadBalancerSourceRanges, per-packet settings and drop reasons of
//! `c/nodeport.bpf.c`. `tests/layout_nodeport.rs` checks them against the C compiler.

use std::net::IpAddr;

use crate::abi::{AF_INET, Addr};

/// Conntrack state: TCP SYN seen, no answer yet.
pub const CT_SYN_SENT: u8 = 1;
/// Conntrack state: TCP answered by the backend; UDP and others once any packet passed.
pub const CT_ESTABLISHED: u8 = 2;
/// Conntrack state: TCP FIN or RST seen.
pub const CT_CLOSING: u8 = 3;

/// Conntrack flag: source rewritten to the node's SNAT address.
pub const CT_F_SNAT: u8 = 1 << 0;
/// Conntrack flag: a reply has passed.
pub const CT_F_REPLY_SEEN: u8 = 1 << 1;
/// Conntrack flag: the client is the backend (SNAT forced).
pub const CT_F_HAIRPIN: u8 = 1 << 2;
/// Conntrack flag: a DSR flow (the client's node: encapsulated to the backend's node; the
/// backend's node: written by the decapsulation from the DSR option).
pub const CT_F_DSR: u8 = 1 << 3;
/// Conntrack flag: TCP, the last packet seen was an RST (its SNAT port is held, not live).
pub const CT_F_RESET: u8 = 1 << 4;
/// `SY_SNAT_RESET_QUIET_MS`: a flow an RST ended holds its SNAT port (rather than keeping it
/// live) once quiet this long.
pub const SNAT_RESET_QUIET_MS: u64 = 1000;

/// `sy_pkt_config.flags`: NodePort traffic to remote backends by DSR (GUE to the backend's
/// node) instead of SNAT.
pub const PKT_F_DSR: u32 = 1 << 0;
/// `struct sy_gue_dsr.kind`.
pub const GUE_DSR_KIND: u8 = 0x44;
/// GUE hlen (32-bit words) of the DSR option with an IPv4 frontend.
pub const GUE_DSR_HLEN4: u8 = 2;
/// GUE hlen (32-bit words) of the DSR option with an IPv6 frontend.
pub const GUE_DSR_HLEN6: u8 = 5;
/// `SY_DEFAULT_DSR_NODES`: max_entries of `sy_dsr_nodes` in the object (the loader sizes it
/// like `sy_backends`).
pub const DEFAULT_DSR_NODES: u32 = 262_144;

/// Random SNAT ports tried per new flow before the drop `DropSnatExhausted`.
pub const SNAT_PROBES: u32 = 32;
/// `SY_SNAT_CLAIMS`: max_entries of `sy_snat_claims` (one claim word per SNAT port claimed
/// lately; a fixed size, not configured).
pub const SNAT_CLAIMS: u32 = 16_384;

/// Seconds after its last packet during which a closed TCP flow's SNAT port goes to a new flow
/// only if no probed port is free (the backend may hold the connection in TIME_WAIT).
pub const SNAT_TCP_HOLD_S: u32 = 120;
/// `SY_XDP_DEVS_MAX`: devices the XDP program can be attached to (and redirect between).
pub const XDP_DEVS_MAX: u32 = 64;
/// `SY_NP_ROUTE_TTL_MS`: how long the XDP program reuses a next hop on a CPU, so how long a
/// device removed from `sy_xdp_devs` may still receive redirected frames.
pub const NP_ROUTE_TTL_MS: u64 = 100;

/// Counter indexes of the per-packet path (`enum sy_pkt_reason`, 32..63 of `sy_counters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum PacketReason {
    /// New flow DNATed, client address kept.
    Dnat = 32,
    /// New flow DNATed and SNATed to the node address.
    DnatSnat = 33,
    /// Packet of a known flow translated with its conntrack entry.
    CtHit = 34,
    /// Reply translated back to the frontend.
    Revnat = 35,
    /// ICMP error about a translated flow rewritten.
    IcmpRevnat = 36,
    /// No backends: answered with TCP RST.
    RejectRst = 37,
    /// No backends: answered with ICMP port unreachable.
    RejectIcmp = 38,
    /// Traffic policy Local without local backend: dropped.
    DropNoLocalBackend = 39,
    /// Client outside loadBalancerSourceRanges: dropped.
    DropSourceRange = 40,
    /// No free SNAT port: dropped.
    DropSnatExhausted = 41,
    /// No SNAT address for the family: dropped.
    DropSnatNoAddr = 42,
    /// Truncated transport header: passed to the stack.
    PassMalformed = 43,
    /// Non-first fragment: passed to the stack.
    PassFragment = 44,
    /// Conntrack or NAT entry could not be written: dropped.
    DropCtUpdate = 45,
    /// A rewrite helper failed: dropped.
    DropRewrite = 46,
    /// Too big for the route: ICMP frag-needed / packet-too-big sent to the client.
    FragNeeded = 47,
    /// An answer (RST, ICMP) could not be built: dropped.
    DropNoAnswer = 48,
    /// Translated to the ClientIP-affinity backend.
    Affinity = 49,
    /// Decapsulated, but for no frontend or flow here: dropped (it would loop to the
    /// directors).
    DropDecapUnhandled = 50,
    /// A TCP flow starting without SYN that would need a SNAT port: dropped.
    DropNotSyn = 51,
    /// A later IP fragment translated like its first fragment.
    FragXlat = 52,
    /// An 802.1Q / 802.1ad tagged frame: passed (list the VLAN device in `--devices`).
    PassVlan = 53,
    /// IPv6 routing header with segments left, or too many extension headers: passed.
    PassIpv6Ext = 54,
    /// A frame for another host's MAC address (a flooded unicast frame, a promiscuous
    /// device): passed untouched, the host it was meant for translates it.
    PassOtherHost = 55,
    /// New flow DNATed to a backend on another node and encapsulated to it (DSR).
    DnatDsr = 56,
    /// DSR flow whose backend's node is no longer known: dropped.
    DropDsrNoNode = 57,
    /// DSR: the outer headers could not be added: dropped.
    DropDsrEncap = 58,
    /// DSR: IPv4 without DF too big once encapsulated: dropped.
    DropDsrTooBig = 59,
    /// XDP: a packet of a tracked or new flow handed to TC untranslated (its route needs the
    /// stack, it leaves by a device without XDP, or its checksum is a pseudo-header sum).
    XdpToTc = 61,
    /// XDP: translated and sent at XDP (besides its translation reason).
    XdpForwarded = 62,
    /// A flow got a new `sy_ct` entry (none, not even an expired one, was there): with the
    /// entries present this gives the LRU's evictions.
    CtCreated = 63,
}

impl PacketReason {
    /// Every per-packet reason, in counter-index order.
    pub const ALL: [PacketReason; 31] = [
        PacketReason::Dnat,
        PacketReason::DnatSnat,
        PacketReason::CtHit,
        PacketReason::Revnat,
        PacketReason::IcmpRevnat,
        PacketReason::RejectRst,
        PacketReason::RejectIcmp,
        PacketReason::DropNoLocalBackend,
        PacketReason::DropSourceRange,
        PacketReason::DropSnatExhausted,
        PacketReason::DropSnatNoAddr,
        PacketReason::PassMalformed,
        PacketReason::PassFragment,
        PacketReason::DropCtUpdate,
        PacketReason::DropRewrite,
        PacketReason::FragNeeded,
        PacketReason::DropNoAnswer,
        PacketReason::Affinity,
        PacketReason::DropDecapUnhandled,
        PacketReason::DropNotSyn,
        PacketReason::FragXlat,
        PacketReason::PassVlan,
        PacketReason::PassIpv6Ext,
        PacketReason::PassOtherHost,
        PacketReason::DnatDsr,
        PacketReason::DropDsrNoNode,
        PacketReason::DropDsrEncap,
        PacketReason::DropDsrTooBig,
        PacketReason::XdpToTc,
        PacketReason::XdpForwarded,
        PacketReason::CtCreated,
    ];

    /// Stable snake_case name for metrics and `explain` (C: `SY_REASON_PKT_<NAME>`).
    pub fn name(self) -> &'static str {
        match self {
            PacketReason::Dnat => "dnat",
            PacketReason::DnatSnat => "dnat_snat",
            PacketReason::CtHit => "ct_hit",
            PacketReason::Revnat => "revnat",
            PacketReason::IcmpRevnat => "icmp_revnat",
            PacketReason::RejectRst => "reject_rst",
            PacketReason::RejectIcmp => "reject_icmp",
            PacketReason::DropNoLocalBackend => "drop_no_local_backend",
            PacketReason::DropSourceRange => "drop_source_range",
            PacketReason::DropSnatExhausted => "drop_snat_exhausted",
            PacketReason::DropSnatNoAddr => "drop_snat_no_addr",
            PacketReason::PassMalformed => "pass_malformed",
            PacketReason::PassFragment => "pass_fragment",
            PacketReason::DropCtUpdate => "drop_ct_update",
            PacketReason::DropRewrite => "drop_rewrite",
            PacketReason::FragNeeded => "frag_needed",
            PacketReason::DropNoAnswer => "drop_no_answer",
            PacketReason::Affinity => "affinity",
            PacketReason::DropDecapUnhandled => "drop_decap_unhandled",
            PacketReason::DropNotSyn => "drop_not_syn",
            PacketReason::FragXlat => "frag_xlat",
            PacketReason::PassVlan => "pass_vlan",
            PacketReason::PassIpv6Ext => "pass_ipv6_ext",
            PacketReason::PassOtherHost => "pass_otherhost",
            PacketReason::DnatDsr => "dnat_dsr",
            PacketReason::DropDsrNoNode => "drop_dsr_no_node",
            PacketReason::DropDsrEncap => "drop_dsr_encap",
            PacketReason::DropDsrTooBig => "drop_dsr_too_big",
            PacketReason::XdpToTc => "xdp_to_tc",
            PacketReason::XdpForwarded => "xdp_forwarded",
            PacketReason::CtCreated => "ct_created",
        }
    }

    /// Whether the packet was dropped (as opposed to translated, answered or passed).
    pub fn is_drop(self) -> bool {
        self.name().starts_with("drop_")
    }
}

/// `struct sy_ct_key`: a 5-tuple as on the wire (also the `sy_nat` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct CtKey {
    /// Source address.
    pub saddr: Addr,
    /// Destination address.
    pub daddr: Addr,
    /// Source port, network byte order.
    pub sport: u16,
    /// Destination port, network byte order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Zero.
    pub pad: [u8; 2],
}

impl CtKey {
    /// The tuple `source:sport -> destination:dport` (host byte order ports). Both addresses
    /// must be of one family; the family of `source` is used.
    pub fn new(source: IpAddr, sport: u16, destination: IpAddr, dport: u16, proto: u8) -> Self {
        let (saddr, family) = Addr::from_ip(source);
        let (daddr, _) = Addr::from_ip(destination);
        CtKey {
            saddr,
            daddr,
            sport: sport.to_be(),
            dport: dport.to_be(),
            proto,
            family,
            pad: [0; 2],
        }
    }

    /// Source address as an [`IpAddr`].
    pub fn source(&self) -> IpAddr {
        self.saddr.to_ip(self.family)
    }

    /// Destination address as an [`IpAddr`].
    pub fn destination(&self) -> IpAddr {
        self.daddr.to_ip(self.family)
    }
}

/// `struct sy_ct_entry`, keyed by the client's original tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct CtEntry {
    /// Source after translation: the client, or the node's SNAT address.
    pub nat_saddr: Addr,
    /// Backend address.
    pub nat_daddr: Addr,
    /// Client port or SNAT port, network byte order.
    pub nat_sport: u16,
    /// Backend port, network byte order.
    pub nat_dport: u16,
    /// Backend id chosen for the flow.
    pub backend_id: u32,
    /// Frontend id of the flow.
    pub frontend_id: u32,
    /// `CT_*` state.
    pub state: u8,
    /// `CT_F_*` flags.
    pub flags: u8,
    /// Zero.
    pub pad: [u8; 2],
    /// `bpf_ktime_get_ns()` of the last packet (CLOCK_MONOTONIC).
    pub last_seen_ns: u64,
}

impl CtEntry {
    /// Seconds this entry stays usable after its last packet, as `ct_timeout_ns()` in
    /// `c/lib/conntrack.h` decides it (zero settings fall back to the defaults; until the
    /// backend answers, never more than the unreplied timeout).
    pub fn timeout_s(&self, proto: u8, cfg: &PktConfig) -> u32 {
        let defaults = crate::nodeport::Timeouts::default();
        let or = |set: u32, default: u32| if set != 0 { set } else { default };
        let state = match proto {
            crate::abi::PROTO_TCP | crate::abi::PROTO_SCTP => match self.state {
                CT_SYN_SENT => or(cfg.timeout_tcp_syn_s, defaults.tcp_syn),
                CT_CLOSING => or(cfg.timeout_tcp_closing_s, defaults.tcp_closing),
                _ => or(cfg.timeout_tcp_established_s, defaults.tcp_established),
            },
            crate::abi::PROTO_UDP => or(cfg.timeout_udp_s, defaults.udp),
            _ => or(cfg.timeout_other_s, defaults.other),
        };
        if self.flags & CT_F_REPLY_SEEN == 0 {
            state.min(or(cfg.timeout_unreplied_s, defaults.unreplied))
        } else {
            state
        }
    }

    /// Whether the programs would still use the entry at `now_ns` (CLOCK_MONOTONIC).
    pub fn expired(&self, proto: u8, cfg: &PktConfig, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.last_seen_ns)
            > u64::from(self.timeout_s(proto, cfg)) * 1_000_000_000
    }
}

/// Name of a `CT_*` state.
pub fn ct_state_name(state: u8) -> &'static str {
    match state {
        CT_SYN_SENT => "syn-sent",
        CT_ESTABLISHED => "established",
        CT_CLOSING => "closing",
        _ => "unknown",
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns()`, to age map entries.
pub fn monotonic_now_ns() -> u64 {
    let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) else { return 0 };
    u64::try_from(now.tv_sec()).unwrap_or(0) * 1_000_000_000
        + u64::try_from(now.tv_nsec()).unwrap_or(0)
}

/// `struct sy_nat_entry`, keyed by the reply tuple (backend -> client or node:port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct NatEntry {
    /// The client's original tuple (its `sy_ct` key).
    pub orig: CtKey,
}

/// `struct sy_src_range_key`: one loadBalancerSourceRanges prefix of a frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct SrcRangeKey {
    /// 32 (frontend id) + prefix bits, IPv4 counted as IPv4-mapped (+96).
    pub prefixlen: u32,
    /// Frontend id (always fully matched).
    pub frontend_id: u32,
    /// The prefix address (host bits zero).
    pub addr: Addr,
}

impl SrcRangeKey {
    /// The trie key for `frontend_id` and `ip/len`. `len` is checked against the family.
    pub fn new(frontend_id: u32, ip: IpAddr, len: u8) -> Result<Self, crate::Error> {
        let (addr, family) = Addr::from_ip(ip);
        let max = if family == AF_INET { 32 } else { 128 };
        if len > max {
            return Err(crate::Error::InvalidArgument(format!(
                "source range {ip}/{len} of frontend {frontend_id}: prefix longer than {max} bits"
            )));
        }
        let bits = u32::from(len) + if family == AF_INET { 96 } else { 0 };
        let mut masked = addr.0;
        for (i, byte) in masked.iter_mut().enumerate() {
            let first_bit = i as u32 * 8;
            if first_bit >= bits {
                *byte = 0;
            } else if first_bit + 8 > bits {
                *byte &= 0xffu8 << (8 - (bits - first_bit));
            }
        }
        Ok(SrcRangeKey { prefixlen: 32 + bits, frontend_id, addr: Addr(masked) })
    }

    /// The key as aya's LPM trie API wants it (prefix length apart from the data).
    pub fn to_trie_key(&self) -> aya::maps::lpm_trie::Key<SrcRangeData> {
        aya::maps::lpm_trie::Key::new(
            self.prefixlen,
            SrcRangeData { frontend_id: self.frontend_id, addr: self.addr },
        )
    }
}

/// The data part of [`SrcRangeKey`] (everything after `prefixlen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct SrcRangeData {
    /// Frontend id.
    pub frontend_id: u32,
    /// Prefix address.
    pub addr: Addr,
}

/// `struct sy_pkt_config`, the single entry of `sy_pkt_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct PktConfig {
    /// IPv4-mapped SNAT source, all-zero for none.
    pub snat_addr4: Addr,
    /// IPv6 SNAT source, all-zero for none.
    pub snat_addr6: Addr,
    /// First SNAT source port (host order).
    pub snat_port_min: u16,
    /// Last SNAT source port (host order, inclusive).
    pub snat_port_max: u16,
    /// `PKT_F_*`.
    pub flags: u32,
    /// TCP before the backend answered, seconds.
    pub timeout_tcp_syn_s: u32,
    /// TCP established, seconds.
    pub timeout_tcp_established_s: u32,
    /// TCP after FIN/RST, seconds.
    pub timeout_tcp_closing_s: u32,
    /// UDP, seconds since the last packet.
    pub timeout_udp_s: u32,
    /// Other protocols, seconds.
    pub timeout_other_s: u32,
    /// Any flow until the backend's first reply, seconds (caps the others).
    pub timeout_unreplied_s: u32,
    /// `PKT_F_DSR`: the GUE destination port, network order.
    pub dsr_port: u16,
    /// Zero.
    pub pad: u16,
}

/// `struct sy_xdp_dev`: a device the XDP program runs on (`sy_xdp_devs`, keyed by ifindex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct XdpDev {
    /// The device's MAC address: frames for another pass to TC.
    pub mac: [u8; 6],
    /// Zero.
    pub flags: u16,
}

/// `struct sy_gue_dsr`: DSR's GUE private data, the frontend the client addressed (its address
/// follows: 4 or 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct GueDsr {
    /// `GUE_DSR_KIND`.
    pub kind: u8,
    /// The inner packet's family.
    pub family: u8,
    /// The frontend's port, network order.
    pub port: u16,
}

// SAFETY: #[repr(C)], integers and byte arrays only, no implicit padding (tests/layout_nodeport.rs
// checks each size equals the sum of its fields): every bit pattern is valid.
unsafe impl aya::Pod for CtKey {}
unsafe impl aya::Pod for CtEntry {}
unsafe impl aya::Pod for NatEntry {}
unsafe impl aya::Pod for SrcRangeKey {}
unsafe impl aya::Pod for SrcRangeData {}
unsafe impl aya::Pod for PktConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for XdpDev {}
