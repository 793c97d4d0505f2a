//! The programs' decisions written once in Rust, for `switchyard explain`: each function mirrors
//! one C function (named in its doc comment) and reads the maps through [`MapView`] and
//! [`PacketMapView`], implemented for the pinned maps. `tests/mirror.rs` runs the real
//! per-packet program (BPF_PROG_TEST_RUN) on generated frontends and packets and checks that
//! it decides as [`decide_packet`] says, so the two cannot drift apart unnoticed.
//!
//! Only what can be known from the maps is decided here: `bpf_get_prandom_u32()` picks (random
//! slots, SNAT ports) are inputs or left open.

use std::net::{IpAddr, SocketAddr};

use aya::maps::MapError;
use switchyard_maglev::{FlowKey, Seed};

use crate::{
    Error, Maps,
    abi::{
        AF_INET, Addr, Affinity, AffinityKey, Backend, Config, FE_AFFINITY, FE_LOCAL_ONLY,
        FE_MAGLEV, FE_NODEPORT, FE_REJECT_EMPTY, FE_SOURCE_RANGES, FE_SPLIT_SCOPE, Frontend,
        FrontendKey, NodeAddrKey, PROTO_TCP, Reason, SCOPE_DEFAULT, SCOPE_INTERNAL, SLOT_NONE,
        SlotKey,
    },
    maps::names,
    nodeport::{self, PacketMaps},
    nodeport_abi::{CT_CLOSING, CtEntry, CtKey, NatEntry, PacketReason, PktConfig, SrcRangeKey},
};

/// TCP flag bits as the programs test them (`TCP_SYN`, `TCP_ACK`, `TCP_RST` in `lib/parse.h`).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// Read-only lookups in the shared maps (`lib/maps.h`), as the programs make them.
pub trait MapView {
    /// `sy_frontends[key]`.
    fn frontend(&self, key: &FrontendKey) -> Result<Option<Frontend>, Error>;
    /// `sy_slots[{frontend_id, slot}]`.
    fn slot(&self, frontend_id: u32, slot: u32) -> Result<Option<u32>, Error>;
    /// `sy_backends[id]`.
    fn backend(&self, id: u32) -> Result<Option<Backend>, Error>;
    /// Whether `sy_node_addrs` holds `key`.
    fn is_node_addr(&self, key: &NodeAddrKey) -> Result<bool, Error>;
    /// `sy_maglev[frontend_id][index]`; `None` when the table or the index is missing.
    fn maglev_entry(&self, frontend_id: u32, index: u32) -> Result<Option<u32>, Error>;
    /// `sy_config[0]`.
    fn config(&self) -> Result<Option<Config>, Error>;
    /// `sy_affinity[key]`.
    fn affinity(&self, key: &AffinityKey) -> Result<Option<Affinity>, Error>;
}

/// Read-only lookups in the per-packet maps (`lib/nodeport_maps.h`).
pub trait PacketMapView {
    /// `sy_pkt_config[0]`.
    fn settings(&self) -> Result<Option<PktConfig>, Error>;
    /// Whether `sy_src_ranges` holds a prefix of `client` for `frontend_id`.
    fn source_in_ranges(&self, frontend_id: u32, client: IpAddr) -> Result<bool, Error>;
    /// `sy_ct[tuple]`.
    fn conntrack(&self, tuple: &CtKey) -> Result<Option<CtEntry>, Error>;
    /// `sy_nat[tuple]`.
    fn nat(&self, tuple: &CtKey) -> Result<Option<NatEntry>, Error>;
}

/// No per-packet maps pinned: nothing tracked, no settings, no source range allowed.
impl<T: PacketMapView> PacketMapView for Option<&T> {
    fn settings(&self) -> Result<Option<PktConfig>, Error> {
        self.map_or(Ok(None), |p| p.settings())
    }
    fn source_in_ranges(&self, frontend_id: u32, client: IpAddr) -> Result<bool, Error> {
        self.map_or(Ok(false), |p| p.source_in_ranges(frontend_id, client))
    }
    fn conntrack(&self, tuple: &CtKey) -> Result<Option<CtEntry>, Error> {
        self.map_or(Ok(None), |p| p.conntrack(tuple))
    }
    fn nat(&self, tuple: &CtKey) -> Result<Option<NatEntry>, Error> {
        self.map_or(Ok(None), |p| p.nat(tuple))
    }
}

/// `Ok(None)` for a missing key, the error otherwise.
fn found<T>(name: &'static str, result: Result<T, MapError>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(Error::Map { name, source }),
    }
}

impl MapView for Maps {
    fn frontend(&self, key: &FrontendKey) -> Result<Option<Frontend>, Error> {
        found(names::FRONTENDS, self.frontends.get(key, 0))
    }
    fn slot(&self, frontend_id: u32, slot: u32) -> Result<Option<u32>, Error> {
        found(names::SLOTS, self.slots.get(&SlotKey { frontend_id, slot }, 0))
    }
    fn backend(&self, id: u32) -> Result<Option<Backend>, Error> {
        found(names::BACKENDS, self.backends.get(&id, 0))
    }
    fn is_node_addr(&self, key: &NodeAddrKey) -> Result<bool, Error> {
        Ok(found(names::NODE_ADDRS, self.node_addrs.get(key, 0))?.is_some())
    }
    fn maglev_entry(&self, frontend_id: u32, index: u32) -> Result<Option<u32>, Error> {
        let Some(table) = found(names::MAGLEV, self.maglev.get(&frontend_id, 0))? else {
            return Ok(None);
        };
        match table.get(&index, 0) {
            Ok(id) => Ok(Some(id)),
            Err(MapError::OutOfBounds { .. } | MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(Error::Map { name: names::MAGLEV, source }),
        }
    }
    fn config(&self) -> Result<Option<Config>, Error> {
        found(names::CONFIG, self.config.get(&0, 0))
    }
    fn affinity(&self, key: &AffinityKey) -> Result<Option<Affinity>, Error> {
        found(names::AFFINITY, self.affinity.get(key, 0))
    }
}

impl PacketMapView for PacketMaps {
    fn settings(&self) -> Result<Option<PktConfig>, Error> {
        found(nodeport::names::PKT_CONFIG, self.config.get(&0, 0))
    }
    fn source_in_ranges(&self, frontend_id: u32, client: IpAddr) -> Result<bool, Error> {
        let full = if client.is_ipv4() { 32 } else { 128 };
        let key = SrcRangeKey::new(frontend_id, client, full)?.to_trie_key();
        Ok(found(nodeport::names::SRC_RANGES, self.src_ranges.get(&key, 0))?.is_some())
    }
    fn conntrack(&self, tuple: &CtKey) -> Result<Option<CtEntry>, Error> {
        found(nodeport::names::CT, self.ct.get(tuple, 0))
    }
    fn nat(&self, tuple: &CtKey) -> Result<Option<NatEntry>, Error> {
        found(nodeport::names::NAT, self.nat.get(tuple, 0))
    }
}

/// Is `ip` an address of this node (`sy_node_addrs`)? Loopback counts only where allowed as
/// well (the socket path, in the node's own network namespace): C `addr_is_node_local()` in
/// `lib/lb.h`.
pub fn addr_is_node_local(
    maps: &impl MapView,
    ip: IpAddr,
    allow_loopback: bool,
) -> Result<bool, Error> {
    let (addr, family) = Addr::from_ip(ip);
    if addr.to_ip(family).is_loopback() && !allow_loopback {
        return Ok(false);
    }
    maps.is_node_addr(&NodeAddrKey::new(ip))
}

/// The frontend for a destination: the exact entry, else the NodePort wildcard when the
/// destination is a node address; the socket path (`from_inside`) prefers the internal scope of
/// a split frontend and counts loopback as a node address, as it does for a socket in the node's
/// own network namespace (a pod's loopback is never one: C `in_node_netns()` in `sock.bpf.c`):
/// C `lookup_frontend()` in `lib/lb.h`.
pub fn lookup_frontend(
    maps: &impl MapView,
    destination: SocketAddr,
    proto: u8,
    from_inside: bool,
) -> Result<Option<(FrontendKey, Frontend)>, Error> {
    let mut key = FrontendKey::new(destination.ip(), destination.port(), proto, SCOPE_DEFAULT);
    let frontend = match maps.frontend(&key)? {
        Some(frontend) => frontend,
        None => {
            if !addr_is_node_local(maps, destination.ip(), from_inside)? {
                return Ok(None);
            }
            key = FrontendKey::node_port(key.family, destination.port(), proto, SCOPE_DEFAULT);
            match maps.frontend(&key)? {
                Some(frontend) if frontend.flags & FE_NODEPORT != 0 => frontend,
                _ => return Ok(None),
            }
        }
    };
    if from_inside && frontend.flags & FE_SPLIT_SCOPE != 0 {
        let internal = FrontendKey { scope: SCOPE_INTERNAL, ..key };
        if let Some(found) = maps.frontend(&internal)? {
            return Ok(Some((internal, found)));
        }
    }
    Ok(Some((key, frontend)))
}

/// A backend choice: which backend, through which slot ([`SLOT_NONE`] for Maglev), counted
/// under which reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Backend id.
    pub backend_id: u32,
    /// Slot it was found in, or [`SLOT_NONE`].
    pub slot: u32,
    /// Counter of the pick.
    pub reason: Counter,
}

/// Is a remembered choice still one of the frontend's current backends? C
/// `choice_still_valid()` in `lib/lb.h`.
pub fn choice_still_valid(
    maps: &impl MapView,
    fe: &Frontend,
    backend_id: u32,
    slot: u32,
) -> Result<bool, Error> {
    if slot == SLOT_NONE {
        return Ok(fe.flags & FE_MAGLEV != 0);
    }
    if slot >= fe.backend_count {
        return Ok(false);
    }
    Ok(maps.slot(fe.id, slot)? == Some(backend_id))
}

/// Whether a remembered choice used at `last_used_ns` is still within the frontend's affinity
/// timeout at `now_ns`: the time test of C `affinity_lookup()` (nodeport.bpf.c) and of the
/// socket path's affinity step (`translate()` in sock.bpf.c).
pub fn affinity_live(fe: &Frontend, last_used_ns: u64, now_ns: u64) -> bool {
    now_ns.wrapping_sub(last_used_ns) <= u64::from(fe.affinity_timeout_s) * 1_000_000_000
}

/// The per-packet path's ClientIP affinity: a live, still valid entry keyed by the client
/// address. C `affinity_lookup()` in nodeport.bpf.c.
pub fn affinity_lookup(
    maps: &impl MapView,
    fe: &Frontend,
    client: IpAddr,
    now_ns: u64,
) -> Result<Option<Pick>, Error> {
    let (addr, family) = Addr::from_ip(client);
    let key = AffinityKey { client: addr, frontend_id: fe.id, family, pad: [0; 3] };
    let Some(a) = maps.affinity(&key)? else { return Ok(None) };
    if affinity_live(fe, a.last_used_ns, now_ns)
        && choice_still_valid(maps, fe, a.backend_id, a.slot)?
    {
        return Ok(Some(Pick {
            backend_id: a.backend_id,
            slot: a.slot,
            reason: Counter::Packet(PacketReason::Affinity),
        }));
    }
    Ok(None)
}

/// The cluster seed the loader wrote into `sy_config` (`hash_k0`, `hash_k1` little-endian).
pub fn seed(cfg: &Config) -> Seed {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&cfg.hash_k0.to_le_bytes());
    bytes[8..].copy_from_slice(&cfg.hash_k1.to_le_bytes());
    Seed::from_bytes(bytes)
}

/// The flow hash of the 5-tuple (crates/maglev `FlowKey::hash`, VIP's part first): C
/// `sy_flow_hash()` in `lib/siphash.h`.
pub fn flow_hash(cfg: &Config, tuple: &CtKey) -> u64 {
    let key = FlowKey {
        source: tuple.source(),
        destination: tuple.destination(),
        source_port: u16::from_be(tuple.sport),
        destination_port: u16::from_be(tuple.dport),
        protocol: tuple.proto,
    };
    // Both addresses come from one `family`, so the families cannot differ.
    key.hash(&seed(cfg)).unwrap_or_default()
}

/// SipHash-2-4 of the socket cookie as 8 little-endian bytes: C `sy_sock_hash()` in
/// `lib/siphash.h`.
pub fn sock_hash(cfg: &Config, cookie: u64) -> u64 {
    switchyard_maglev::siphash24(&seed(cfg), &cookie.to_le_bytes())
}

/// The Maglev table index of a hash: `hash % M` (C `pick_maglev()`); 0 when M is 0.
pub fn maglev_index(hash: u64, table_size: u32) -> u32 {
    if table_size == 0 { 0 } else { (hash % u64::from(table_size)) as u32 }
}

/// The backend at `hash % M` of the frontend's Maglev table, or the reason it fails: C
/// `pick_maglev()` in `lib/lb.h`.
pub fn pick_maglev(
    maps: &impl MapView,
    fe: &Frontend,
    cfg: &Config,
    hash: u64,
) -> Result<Result<Pick, Counter>, Error> {
    let missing = Counter::Shared(Reason::ErrMaglevMissing);
    if cfg.maglev_table_size == 0 {
        return Ok(Err(missing));
    }
    let index = maglev_index(hash, cfg.maglev_table_size);
    Ok(match maps.maglev_entry(fe.id, index)? {
        Some(id) if id != 0 => Ok(Pick {
            backend_id: id,
            slot: SLOT_NONE,
            reason: Counter::Shared(Reason::TranslatedMaglev),
        }),
        _ => Err(missing),
    })
}

/// The backend in slot `random % backend_count`, where `random` is what
/// `bpf_get_prandom_u32()` returned: C `pick_random()` in `lib/lb.h`.
pub fn pick_random(
    maps: &impl MapView,
    fe: &Frontend,
    random: u32,
) -> Result<Result<Pick, Counter>, Error> {
    if fe.backend_count == 0 {
        return Ok(Err(Counter::Shared(Reason::DropNoBackend)));
    }
    let slot = random % fe.backend_count;
    Ok(match maps.slot(fe.id, slot)? {
        Some(backend_id) => {
            Ok(Pick { backend_id, slot, reason: Counter::Shared(Reason::TranslatedRandom) })
        }
        None => Err(Counter::Shared(Reason::ErrSlotMissing)),
    })
}

/// Why a conntrack entry cannot be used for a packet with `tcp_flags`, or `None` when it can:
/// expired, a new SYN on a closing TCP flow, or its backend gone or changed. C `ct_usable()` in
/// `lib/conntrack.h` (timeouts: [`CtEntry::timeout_s`], C `ct_timeout_ns()`).
pub fn ct_unusable(
    maps: &impl MapView,
    entry: &CtEntry,
    proto: u8,
    tcp_flags: u8,
    cfg: &PktConfig,
    now_ns: u64,
) -> Result<Option<String>, Error> {
    if entry.expired(proto, cfg, now_ns) {
        return Ok(Some("expired".to_owned()));
    }
    let syn_only = tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
    if proto == PROTO_TCP && entry.state == CT_CLOSING && syn_only {
        return Ok(Some("a new SYN on a closed flow starts a new one".to_owned()));
    }
    let same = maps
        .backend(entry.backend_id)?
        .is_some_and(|b| b.addr == entry.nat_daddr && b.port == entry.nat_dport);
    if !same {
        return Ok(Some(format!(
            "backend id {} is gone or has another address now",
            entry.backend_id
        )));
    }
    Ok(None)
}

/// Counter index a decision is counted under (`sy_counters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    /// A reason shared with the socket path (`enum sy_reason`).
    Shared(Reason),
    /// A per-packet reason (`enum sy_pkt_reason`).
    Packet(PacketReason),
}

impl Counter {
    /// Index in `sy_counters`.
    pub fn index(self) -> u32 {
        match self {
            Counter::Shared(r) => r as u32,
            Counter::Packet(r) => r as u32,
        }
    }

    /// Stable snake_case name (metrics, `explain`, `monitor`).
    pub fn name(self) -> &'static str {
        match self {
            Counter::Shared(r) => r.name(),
            Counter::Packet(r) => r.name(),
        }
    }
}

/// Where the source of a translated flow comes from: the SNAT decision of C
/// `handle_new_flow()` (nodeport.bpf.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client address is kept: a local backend, or traffic policy Local.
    Kept,
    /// Rewritten to the node's SNAT address (and a port claimed at the first packet).
    Snat {
        /// The node's SNAT address for the family.
        addr: IpAddr,
        /// The client is the backend (hairpin): SNAT forced.
        hairpin: bool,
    },
}

/// What the per-packet ingress program does with a packet: [`decide_packet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketDecision {
    /// Not a frontend, or not for us: passed to the stack untouched (`TC_ACT_OK`).
    Pass,
    /// The reply of a translated flow (`sy_nat` hit): rewritten from the frontend to the client.
    Reply {
        /// The original tuple (client -> frontend).
        orig: CtKey,
    },
    /// A tracked flow (`sy_ct` hit, usable): translated as its entry says.
    Tracked {
        /// The entry.
        entry: CtEntry,
    },
    /// Dropped (`TC_ACT_SHOT`), counted under `reason`.
    Drop {
        /// Frontend id, 0 where the program does not know it.
        frontend_id: u32,
        /// Counter.
        reason: Counter,
    },
    /// No backends and `FE_REJECT_EMPTY`: answered (RST for TCP, ICMP port unreachable).
    Reject {
        /// Frontend id.
        frontend_id: u32,
        /// `RejectRst` or `RejectIcmp`.
        reason: PacketReason,
    },
    /// A new flow translated to a backend.
    Translate {
        /// Frontend id.
        frontend_id: u32,
        /// The pick.
        pick: Pick,
        /// The backend entry.
        backend: Backend,
        /// The source after translation.
        source: Source,
    },
    /// A new flow to a random slot: `bpf_get_prandom_u32()` decides among `backend_count`.
    Random {
        /// Frontend id.
        frontend_id: u32,
        /// Number of slots.
        backend_count: u32,
    },
}

/// A packet as the ingress program parses it (`struct pkt` in `lib/parse.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// The packet's tuple.
    pub tuple: CtKey,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
}

impl Packet {
    /// The packet `source:sport -> destination/proto`.
    pub fn new(
        source: IpAddr,
        sport: u16,
        destination: SocketAddr,
        proto: u8,
        tcp_flags: u8,
    ) -> Packet {
        let tuple = CtKey::new(source, sport, destination.ip(), destination.port(), proto);
        Packet { tuple, tcp_flags }
    }

    fn destination(&self) -> SocketAddr {
        SocketAddr::new(self.tuple.destination(), u16::from_be(self.tuple.dport))
    }
}

/// What `sy_nodeport_ingress` does with a parsed TCP/UDP packet at `now_ns` (steps 2-4 of
/// nodeport.bpf.c: reply, tracked flow, new flow). `random` is the value
/// `bpf_get_prandom_u32()` returns for a random slot pick; `None` leaves that pick open
/// ([`PacketDecision::Random`]).
pub fn decide_packet(
    maps: &impl MapView,
    packet_maps: &impl PacketMapView,
    packet: &Packet,
    now_ns: u64,
    random: Option<u32>,
) -> Result<PacketDecision, Error> {
    if let Some(nat) = packet_maps.nat(&packet.tuple)? {
        return Ok(PacketDecision::Reply { orig: nat.orig });
    }
    let settings = packet_maps.settings()?;
    if let Some(entry) = packet_maps.conntrack(&packet.tuple)? {
        let cfg = settings.unwrap_or_default();
        let unusable =
            ct_unusable(maps, &entry, packet.tuple.proto, packet.tcp_flags, &cfg, now_ns)?;
        if unusable.is_none() {
            return Ok(PacketDecision::Tracked { entry });
        }
    }
    new_flow(maps, packet_maps, settings.as_ref(), packet, now_ns, random)
}

/// A packet for a frontend without usable conntrack: frontend, source ranges, empty frontend,
/// pick (affinity, Maglev, random), backend check, SNAT decision. C `handle_new_flow()` in
/// nodeport.bpf.c (the SNAT port claim itself is random and not mirrored).
pub fn new_flow(
    maps: &impl MapView,
    packet_maps: &impl PacketMapView,
    settings: Option<&PktConfig>,
    packet: &Packet,
    now_ns: u64,
    random: Option<u32>,
) -> Result<PacketDecision, Error> {
    let t = &packet.tuple;
    let Some((_, fe)) = lookup_frontend(maps, packet.destination(), t.proto, false)? else {
        return Ok(PacketDecision::Pass);
    };
    let drop = |reason| Ok(PacketDecision::Drop { frontend_id: 0, reason });
    if fe.flags & FE_SOURCE_RANGES != 0 && !packet_maps.source_in_ranges(fe.id, t.source())? {
        return drop(Counter::Packet(PacketReason::DropSourceRange));
    }
    if fe.backend_count == 0 {
        if fe.flags & FE_LOCAL_ONLY != 0 {
            return drop(Counter::Packet(PacketReason::DropNoLocalBackend));
        }
        if fe.flags & FE_REJECT_EMPTY == 0
            || (t.proto == PROTO_TCP && packet.tcp_flags & tcp_flags::RST != 0)
        {
            return drop(Counter::Shared(Reason::DropNoBackend));
        }
        let reason =
            if t.proto == PROTO_TCP { PacketReason::RejectRst } else { PacketReason::RejectIcmp };
        return Ok(PacketDecision::Reject { frontend_id: fe.id, reason });
    }

    let mut pick = None;
    if fe.flags & FE_AFFINITY != 0 {
        pick = affinity_lookup(maps, &fe, t.source(), now_ns)?;
    }
    let pick = match pick {
        Some(pick) => pick,
        None => {
            let picked = if fe.flags & FE_MAGLEV != 0 {
                match maps.config()? {
                    Some(cfg) => pick_maglev(maps, &fe, &cfg, flow_hash(&cfg, t))?,
                    None => Err(Counter::Shared(Reason::ErrMaglevMissing)),
                }
            } else {
                let Some(random) = random else {
                    return Ok(PacketDecision::Random {
                        frontend_id: fe.id,
                        backend_count: fe.backend_count,
                    });
                };
                pick_random(maps, &fe, random)?
            };
            match picked {
                Ok(pick) => pick,
                Err(reason) => return drop(reason),
            }
        }
    };
    let backend = match maps.backend(pick.backend_id)? {
        Some(b) if b.family == t.family => b,
        _ => return drop(Counter::Shared(Reason::ErrBackendMissing)),
    };
    // As in C: a non-SYN that would need SNAT is dropped before the SNAT address is looked at.
    let syn_only = packet.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
    if needs_snat(&fe, &backend, t) && t.proto == PROTO_TCP && !syn_only {
        return drop(Counter::Packet(PacketReason::DropNotSyn));
    }
    let source = match snat_source(&fe, &backend, t, settings) {
        Ok(source) => source,
        Err(reason) => return drop(reason),
    };
    Ok(PacketDecision::Translate { frontend_id: fe.id, pick, backend, source })
}

/// Whether a new flow to `backend` is SNATed: a remote backend unless traffic policy Local, and
/// a client that is its own backend (hairpin) always. Part of C `handle_new_flow()`.
fn needs_snat(fe: &Frontend, backend: &Backend, tuple: &CtKey) -> bool {
    backend.addr == tuple.saddr
        || (fe.flags & FE_LOCAL_ONLY == 0 && backend.flags & crate::abi::BE_LOCAL == 0)
}

/// The SNAT decision for a new flow to `backend`: a remote backend gets the node's address
/// unless traffic policy Local; a client that is its own backend (hairpin) always does. Fails
/// with `DropSnatNoAddr` when SNAT is needed and no address is set for the family. Part of C
/// `handle_new_flow()`.
pub fn snat_source(
    fe: &Frontend,
    backend: &Backend,
    tuple: &CtKey,
    settings: Option<&PktConfig>,
) -> Result<Source, Counter> {
    if !needs_snat(fe, backend, tuple) {
        return Ok(Source::Kept);
    }
    let hairpin = backend.addr == tuple.saddr;
    let no_addr = Counter::Packet(PacketReason::DropSnatNoAddr);
    let cfg = settings.ok_or(no_addr)?;
    let addr = if tuple.family == AF_INET { cfg.snat_addr4 } else { cfg.snat_addr6 };
    if addr == Addr::UNSPECIFIED {
        return Err(no_addr);
    }
    Ok(Source::Snat { addr: addr.to_ip(tuple.family), hairpin })
}
