//! `switchyard explain`: what the data plane does with one flow, decided from the pinned maps in
//! the order the programs decide it (`c/sock.bpf.c`, `c/nodeport.bpf.c`, `c/lib/lb.h`), with the
//! same SipHash over the same bytes. Read-only: nothing is written to any map.
//!
//! What can and cannot be predicted is part of the answer: a random pick is made per connection
//! by `bpf_get_prandom_u32()`; the socket path's Maglev hash is over the socket cookie, which
//! does not exist before the socket does. The per-packet path's Maglev choice is a function of
//! the 5-tuple and the table, so it is named exactly; an existing per-packet flow is named from
//! its conntrack entry.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use switchyard_bpf::abi::{self, Addr, AffinityKey, Frontend, FrontendKey, SlotKey};
use switchyard_bpf::pkt::{self, CT_F_HAIRPIN, CT_F_SNAT, CtKey, PktConfig, SrcRangeKey};
use switchyard_bpf::tc::PacketMaps;
use switchyard_bpf::{Maps, maps::names};
use switchyard_maglev::{FlowKey, Seed};

use crate::Error;
use crate::kernel::{ProgrammedBackend, backend_flag_names, frontend_flag_names, protocol_name};

/// Which program sees the flow first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// The cgroup socket programs: the client runs on this node (pod or host process).
    Socket,
    /// The TC programs: the packet arrives on one of the node's devices from outside.
    Packet,
}

/// The flow to explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Client address.
    pub source: IpAddr,
    /// Client port, when known (the per-packet Maglev hash and conntrack need it).
    pub source_port: Option<u16>,
    /// Destination as the client addresses it.
    pub destination: SocketAddr,
    /// `IPPROTO_*`.
    pub protocol: u8,
}

/// The frontend entry that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedFrontend {
    /// Frontend id.
    pub id: u32,
    /// Address of the entry; `None` for the NodePort wildcard.
    pub ip: Option<IpAddr>,
    /// Port.
    pub port: u16,
    /// Protocol name.
    pub protocol: String,
    /// `default` or `internal`.
    pub scope: &'static str,
    /// `FE_*` flag names.
    pub flags: Vec<&'static str>,
    /// sessionAffinity timeout (seconds), when affinity is on.
    pub affinity_timeout_s: u32,
    /// How the entry was found.
    pub matched_by: &'static str,
    /// `NAMESPACE/NAME` of the Service, when the caller knows it (the maps hold no names).
    pub service: Option<String>,
}

/// One usable backend of the frontend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Slot index.
    pub slot: u32,
    /// The backend in that slot.
    pub backend: ProgrammedBackend,
}

/// The Maglev computation for this flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaglevPick {
    /// What was hashed (`5-tuple` on the per-packet path).
    pub hashed: String,
    /// SipHash-2-4 value (hex).
    pub hash: String,
    /// Table size M.
    pub table_size: u32,
    /// `hash % M`.
    pub slot: u32,
    /// Backend the table names at that slot.
    pub backend: Option<ProgrammedBackend>,
}

/// A conntrack entry of the per-packet path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conntrack {
    /// Backend id the flow was given.
    pub backend_id: u32,
    /// Backend address as stored in the entry.
    pub backend: SocketAddr,
    /// Source after translation (the client, or the node's SNAT address and port).
    pub nat_source: SocketAddr,
    /// Whether the source is translated.
    pub snat: bool,
    /// Hairpin flow (the client is the backend).
    pub hairpin: bool,
    /// TCP state name.
    pub state: &'static str,
    /// Seconds since the last packet.
    pub idle_s: f64,
    /// Seconds the entry stays usable after its last packet.
    pub timeout_s: u32,
    /// Whether the programs would still use it (not expired, backend unchanged).
    pub usable: bool,
    /// Why not, when not usable.
    pub unusable_because: Option<String>,
}

/// A connected socket of the client, as `sock_diag` reports it (the caller runs in the
/// client's network namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedSocket {
    /// Socket cookie.
    pub cookie: u64,
    /// Local address.
    pub source: SocketAddr,
    /// Peer (the backend, when translated).
    pub peer: SocketAddr,
}

/// One of the client's sockets that the socket programs translated for this frontend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TranslatedSocket {
    /// Socket cookie.
    pub cookie: u64,
    /// Local address.
    pub source: SocketAddr,
    /// The backend the kernel connected it to.
    pub backend: SocketAddr,
    /// Maglev frontends: the slot and backend SipHash-2-4 of this cookie names.
    pub maglev: Option<MaglevPick>,
}

/// The choice, and how it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `not-a-service`, `dropped`, `refused`, `rejected`, `conntrack`, `affinity`, `maglev`,
    /// `maglev-per-socket`, `random`, `reverse-nat`, `existing-socket`.
    pub method: &'static str,
    /// The backend, when the choice is determined.
    pub backend: Option<ProgrammedBackend>,
    /// Explanation in words.
    pub detail: String,
}

/// Everything `explain` found.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The flow as given.
    pub flow: String,
    /// Program path.
    pub path: Path,
    /// Why this path was assumed.
    pub path_reason: String,
    /// The frontend entry, if one matched.
    pub frontend: Option<MatchedFrontend>,
    /// Why no frontend matched.
    pub no_match: Option<String>,
    /// What the frontend's flags mean for this flow, in words.
    pub policy: Vec<String>,
    /// Usable backends in slot order.
    pub candidates: Vec<Candidate>,
    /// Conntrack entry for the tuple (per-packet path, source port given).
    pub conntrack: Option<Conntrack>,
    /// The Maglev computation (per-packet path, source port given, Maglev frontend).
    pub maglev: Option<MaglevPick>,
    /// Existing sockets translated to each backend (socket path: `sy_sock_revnat`).
    pub existing_sockets: Vec<(SocketAddr, u64)>,
    /// The client's own sockets translated for this frontend (socket path, from `sock_diag`).
    pub sockets: Vec<TranslatedSocket>,
    /// The choice.
    pub decision: Decision,
    /// The rewrite, in words (DNAT, SNAT).
    pub translation: Vec<String>,
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> Error {
    move |source| Error::Bpf(switchyard_bpf::Error::Map { name, source })
}

/// The slot `hash % M` picks, as the programs compute it, and the backend frontend `id`'s Maglev
/// table names there (none when the table or the entry is missing).
fn maglev_slot(
    maps: &Maps,
    id: u32,
    hash: u64,
    size: u32,
) -> Result<(u32, Option<ProgrammedBackend>), Error> {
    let slot = if size == 0 { 0 } else { (hash % u64::from(size)) as u32 };
    let backend = match maps.maglev_table(id)? {
        Some(table) => match table.get(slot as usize) {
            Some(&backend) if backend != 0 => backend_view(maps, backend)?,
            _ => None,
        },
        None => None,
    };
    Ok((slot, backend))
}

fn backend_view(maps: &Maps, id: u32) -> Result<Option<ProgrammedBackend>, Error> {
    match maps.backends.get(&id, 0) {
        Ok(b) => Ok(Some(ProgrammedBackend {
            id,
            ip: b.addr.to_ip(b.family),
            port: b.port(),
            flags: backend_flag_names(b.flags),
        })),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(map_err(names::BACKENDS)(source)),
    }
}

fn candidates(maps: &Maps, fe: &Frontend) -> Result<Vec<Candidate>, Error> {
    let mut out = Vec::new();
    for slot in 0..fe.backend_count {
        let id = match maps.slots.get(&SlotKey { frontend_id: fe.id, slot }, 0) {
            Ok(id) => id,
            Err(aya::maps::MapError::KeyNotFound) => continue,
            Err(source) => return Err(map_err(names::SLOTS)(source)),
        };
        if let Some(backend) = backend_view(maps, id)? {
            out.push(Candidate { slot, backend });
        }
    }
    Ok(out)
}

/// The seed the loader wrote into `sy_config` (the kernel's hash key).
fn kernel_seed(maps: &Maps) -> Result<(Seed, u32), Error> {
    let cfg = maps.config()?;
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&cfg.hash_k0.to_le_bytes());
    bytes[8..].copy_from_slice(&cfg.hash_k1.to_le_bytes());
    Ok((Seed::from_bytes(bytes), cfg.maglev_table_size))
}

/// The per-packet Maglev choice for a 5-tuple: `sy_siphash24(FlowKey::to_bytes) % M`.
fn maglev_pick(maps: &Maps, fe: &Frontend, flow: &Flow, sport: u16) -> Result<MaglevPick, Error> {
    let (seed, size) = kernel_seed(maps)?;
    let key = FlowKey {
        source: flow.source,
        destination: flow.destination.ip(),
        source_port: sport,
        destination_port: flow.destination.port(),
        protocol: flow.protocol,
    };
    let hash = key.hash(&seed).map_err(|e| {
        Error::Bpf(switchyard_bpf::Error::InvalidArgument(format!("flow {flow:?}: {e}")))
    })?;
    let (slot, backend) = maglev_slot(maps, fe.id, hash, size)?;
    Ok(MaglevPick {
        hashed: format!(
            "5-tuple {}:{sport} -> {} proto {} ({} bytes)",
            flow.source,
            flow.destination,
            flow.protocol,
            if flow.source.is_ipv4() { 13 } else { 37 }
        ),
        hash: format!("{hash:#018x}"),
        table_size: size,
        slot,
        backend,
    })
}

fn matched_frontend(key: &FrontendKey, fe: &Frontend, matched_by: &'static str) -> MatchedFrontend {
    MatchedFrontend {
        id: fe.id,
        ip: (key.addr != Addr::UNSPECIFIED).then(|| key.addr.to_ip(key.family)),
        port: key.port(),
        protocol: protocol_name(key.proto),
        scope: if key.scope == abi::SCOPE_INTERNAL { "internal" } else { "default" },
        flags: frontend_flag_names(fe.flags),
        affinity_timeout_s: fe.affinity_timeout_s,
        matched_by,
        service: None,
    }
}

fn policy_words(fe: &Frontend, path: Path) -> Vec<String> {
    let mut out = Vec::new();
    let f = fe.flags;
    if f & abi::FE_LOCAL_ONLY != 0 {
        out.push("traffic policy Local: the slots hold node-local endpoints only".into());
    }
    if f & abi::FE_TERMINATING_FALLBACK != 0 {
        out.push("no ready endpoint: the slots hold serving, terminating endpoints".into());
    }
    if f & abi::FE_AFFINITY != 0 {
        out.push(format!(
            "sessionAffinity ClientIP, {} s, keyed by {}",
            fe.affinity_timeout_s,
            if path == Path::Socket { "the client's network namespace" } else { "client address" }
        ));
    }
    if f & abi::FE_MAGLEV != 0 {
        out.push(match path {
            Path::Socket => "Maglev: table slot SipHash-2-4(socket cookie) % M".into(),
            Path::Packet => "Maglev: table slot SipHash-2-4(5-tuple) % M".into(),
        });
    } else {
        out.push("random slot per connection (bpf_get_prandom_u32)".into());
    }
    if f & abi::FE_SOURCE_RANGES != 0 {
        out.push("loadBalancerSourceRanges checked (per-packet path)".into());
    }
    if f & abi::FE_REJECT_EMPTY != 0 {
        out.push("without backends: reject (TCP RST / ICMP port unreachable)".into());
    }
    out
}

/// Explains `flow` as `path` would treat it. `packet` is needed for the per-packet path
/// (conntrack, settings, source ranges); `sockets` are the client's connected sockets (socket
/// path), whose cookies name the translations already made.
pub fn explain(
    maps: &Maps,
    packet: Option<&PacketMaps>,
    flow: &Flow,
    path: Path,
    path_reason: String,
    sockets: &[ObservedSocket],
) -> Result<Explanation, Error> {
    let sport = flow.source_port.map_or_else(String::new, |p| format!(":{p}"));
    let mut out = Explanation {
        flow: format!(
            "{}{sport} -> {}/{}",
            flow.source,
            flow.destination,
            protocol_name(flow.protocol)
        ),
        path,
        path_reason,
        frontend: None,
        no_match: None,
        policy: Vec::new(),
        candidates: Vec::new(),
        conntrack: None,
        maglev: None,
        existing_sockets: Vec::new(),
        sockets: Vec::new(),
        decision: Decision { method: "not-a-service", backend: None, detail: String::new() },
        translation: Vec::new(),
    };
    let now = pkt::monotonic_now_ns();
    let pkt_cfg = match packet {
        Some(p) => Some(p.settings()?),
        None => None,
    };

    // Per-packet path, steps 3-4 of the ingress program: a reply of a translated flow, then an
    // existing flow.
    if let (Path::Packet, Some(pm), Some(sp)) = (path, packet, flow.source_port) {
        let tuple = CtKey::new(
            flow.source,
            sp,
            flow.destination.ip(),
            flow.destination.port(),
            flow.protocol,
        );
        if let Ok(nat) = pm.nat.get(&tuple, 0) {
            let orig = nat.orig;
            out.decision = Decision {
                method: "reverse-nat",
                backend: None,
                detail: format!(
                    "this tuple is the reply of a translated flow (sy_nat): {}:{} -> {}:{}",
                    orig.source(),
                    u16::from_be(orig.sport),
                    orig.destination(),
                    u16::from_be(orig.dport)
                ),
            };
            out.translation.push(format!(
                "source rewritten to the frontend {}:{}, destination to the client {}:{}",
                orig.destination(),
                u16::from_be(orig.dport),
                orig.source(),
                u16::from_be(orig.sport)
            ));
            return Ok(out);
        }
        if let Some(e) = pm.conntrack(&tuple)? {
            let cfg = pkt_cfg.unwrap_or_default();
            let stored =
                SocketAddr::new(e.nat_daddr.to_ip(tuple.family), u16::from_be(e.nat_dport));
            let current = backend_view(maps, e.backend_id)?;
            let unusable_because = if e.expired(flow.protocol, &cfg, now) {
                Some("expired".to_owned())
            } else if current.as_ref().is_none_or(|b| SocketAddr::new(b.ip, b.port) != stored) {
                Some(format!("backend id {} is gone or has another address now", e.backend_id))
            } else {
                None
            };
            out.conntrack = Some(Conntrack {
                backend_id: e.backend_id,
                backend: stored,
                nat_source: SocketAddr::new(
                    e.nat_saddr.to_ip(tuple.family),
                    u16::from_be(e.nat_sport),
                ),
                snat: e.flags & CT_F_SNAT != 0,
                hairpin: e.flags & CT_F_HAIRPIN != 0,
                state: pkt::ct_state_name(e.state),
                idle_s: now.saturating_sub(e.last_seen_ns) as f64 / 1e9,
                timeout_s: e.timeout_s(flow.protocol, &cfg),
                usable: unusable_because.is_none(),
                unusable_because,
            });
        }
    }

    let from_inside = path == Path::Socket;
    let Some((key, fe)) = maps.resolve_on_path(flow.destination, flow.protocol, from_inside)?
    else {
        out.no_match = Some(why_no_match(maps, flow, from_inside)?);
        out.decision.detail = "not a frontend: the packet or connect() is left alone".into();
        return Ok(out);
    };
    let matched_by = if key.addr == Addr::UNSPECIFIED {
        "NodePort wildcard (the destination is a node address)"
    } else if key.scope == abi::SCOPE_INTERNAL {
        "exact entry, internal scope (split traffic policies, socket path)"
    } else {
        "exact entry"
    };
    out.frontend = Some(matched_frontend(&key, &fe, matched_by));
    out.policy = policy_words(&fe, path);
    out.candidates = candidates(maps, &fe)?;

    if let (Path::Packet, Some(sp)) = (path, flow.source_port)
        && fe.flags & abi::FE_MAGLEV != 0
    {
        out.maglev = Some(maglev_pick(maps, &fe, flow, sp)?);
    }
    if path == Path::Socket {
        out.existing_sockets = existing_sockets(maps, fe.id)?;
        out.sockets = translated_sockets(maps, &fe, sockets)?;
    }

    // An existing, usable conntrack entry wins over everything below.
    if let Some(ct) = out.conntrack.as_ref().filter(|c| c.usable) {
        out.decision = Decision {
            method: "conntrack",
            backend: backend_view(maps, ct.backend_id)?,
            detail: format!(
                "existing flow ({}, idle {:.1} s of {} s): keeps backend id {} whatever the slots say now",
                ct.state, ct.idle_s, ct.timeout_s, ct.backend_id
            ),
        };
        out.translation.push(format!("DNAT destination {} -> {}", flow.destination, ct.backend));
        if ct.snat {
            out.translation.push(format!("SNAT source {} -> {}", flow.source, ct.nat_source));
        } else {
            out.translation.push("source kept (the backend sees the client)".into());
        }
        return Ok(out);
    }

    if path == Path::Packet && fe.flags & abi::FE_SOURCE_RANGES != 0 {
        let allowed = match packet {
            Some(pm) => source_allowed(pm, fe.id, flow.source)?,
            None => false,
        };
        if !allowed {
            out.decision = Decision {
                method: "dropped",
                backend: None,
                detail: "source outside loadBalancerSourceRanges: dropped (pkt_drop_source_range)"
                    .into(),
            };
            return Ok(out);
        }
    }

    if fe.backend_count == 0 {
        out.decision = empty_decision(&fe, path, flow.protocol);
        return Ok(out);
    }

    // Affinity (per-packet path: keyed by the client address; socket path: by netns cookie).
    if fe.flags & abi::FE_AFFINITY != 0 {
        if path == Path::Packet {
            if let Some(backend) = affinity_pick(maps, &fe, flow.source, now)? {
                let snat = snat_words(pkt_cfg.as_ref(), &fe, &backend, flow);
                out.translation.push(format!(
                    "DNAT destination {} -> {}",
                    flow.destination,
                    SocketAddr::new(backend.ip, backend.port)
                ));
                out.translation.push(snat);
                out.decision = Decision {
                    method: "affinity",
                    backend: Some(backend),
                    detail: format!(
                        "ClientIP affinity entry of {} is live: every new flow of this client uses it",
                        flow.source
                    ),
                };
                return Ok(out);
            }
        } else {
            out.policy.push(
                "affinity entries are keyed by the client's network namespace cookie, which an \
                 address does not name: a live entry for that namespace wins over the pick below"
                    .into(),
            );
        }
    }

    let chosen = if fe.flags & abi::FE_MAGLEV != 0 {
        match (path, &out.maglev) {
            (Path::Packet, Some(m)) => {
                let Some(backend) = m.backend.clone() else {
                    out.decision = Decision {
                        method: "dropped",
                        backend: None,
                        detail: format!(
                            "Maglev table missing or slot {} empty: dropped (err_maglev_missing)",
                            m.slot
                        ),
                    };
                    return Ok(out);
                };
                out.decision = Decision {
                    method: "maglev",
                    backend: Some(backend.clone()),
                    detail: format!(
                        "Maglev slot {} of {} (hash {} of the {}); the same for every packet and \
                         every node with this table",
                        m.slot, m.table_size, m.hash, m.hashed
                    ),
                };
                Some(backend)
            }
            (Path::Packet, None) => {
                out.decision = Decision {
                    method: "maglev",
                    backend: None,
                    detail: "Maglev over the 5-tuple: give the source port (SRC as ADDR:PORT) to \
                             name the backend"
                        .into(),
                };
                None
            }
            (Path::Socket, _) => {
                out.decision = Decision {
                    method: "maglev-per-socket",
                    backend: None,
                    detail: "Maglev over the socket cookie: decided when the socket connects or \
                             first sends; `sockets` shows this client's translated sockets with \
                             their slots, existing_sockets the choices made so far"
                        .into(),
                };
                None
            }
        }
    } else {
        out.decision = Decision {
            method: "random",
            backend: None,
            detail: format!(
                "one of {} slots chosen per connection by bpf_get_prandom_u32 (each 1/{})",
                fe.backend_count, fe.backend_count
            ),
        };
        None
    };

    // The client's own translated sockets are facts, not predictions: with one socket (SRC
    // with its port) it names the backend.
    if let [only] = out.sockets.as_slice() {
        let backend = out
            .candidates
            .iter()
            .map(|c| &c.backend)
            .find(|b| SocketAddr::new(b.ip, b.port) == only.backend);
        out.decision = Decision {
            method: "existing-socket",
            backend: backend.cloned(),
            detail: format!(
                "socket cookie {} was connected to {} by the socket programs (sy_sock_revnat)",
                only.cookie, only.backend
            ),
        };
    }
    match path {
        Path::Socket => out.translation.push(
            "connect()/sendmsg() destination rewritten to the backend (no packet NAT); replies \
             and getpeername() show the frontend"
                .into(),
        ),
        Path::Packet => match chosen {
            Some(backend) => {
                out.translation.push(format!(
                    "DNAT destination {} -> {}",
                    flow.destination,
                    SocketAddr::new(backend.ip, backend.port)
                ));
                out.translation.push(snat_words(pkt_cfg.as_ref(), &fe, &backend, flow));
            }
            None => out.translation.push(format!(
                "DNAT destination {} -> the chosen backend; {}",
                flow.destination,
                if fe.flags & abi::FE_LOCAL_ONLY != 0 {
                    "source kept (traffic policy Local)"
                } else {
                    "SNAT to the node unless the backend is local"
                }
            )),
        },
    }
    Ok(out)
}

fn why_no_match(maps: &Maps, flow: &Flow, from_inside: bool) -> Result<String, Error> {
    let ip = flow.destination.ip();
    let port = flow.destination.port();
    let proto = flow.protocol;
    let mut other_protocol = None;
    let mut same_address = Vec::new();
    for entry in maps.frontends.iter() {
        let (key, _) = entry.map_err(map_err(names::FRONTENDS))?;
        let key_ip = key.addr.to_ip(key.family);
        if key.addr != Addr::UNSPECIFIED && key_ip == ip {
            if key.port() == port && key.proto != proto {
                other_protocol = Some(protocol_name(key.proto));
            }
            same_address.push(format!("{}/{}", key.port(), protocol_name(key.proto)));
        }
    }
    if let Some(other) = other_protocol {
        return Ok(format!("{ip}:{port} is a frontend for {other}, not {}", protocol_name(proto)));
    }
    if !same_address.is_empty() {
        same_address.sort();
        same_address.dedup();
        return Ok(format!(
            "{ip} is a frontend address, but not port {port}/{}; its ports: {}",
            protocol_name(proto),
            same_address.join(", ")
        ));
    }
    if ip.is_loopback() && !from_inside {
        return Ok("loopback destinations are never NodePort traffic on the per-packet path".into());
    }
    let node_key = abi::NodeAddrKey::new(ip);
    let is_node = ip.is_loopback() || maps.node_addrs.get(&node_key, 0).is_ok();
    if is_node {
        return Ok(format!(
            "{ip} is a node address but no NodePort {port}/{} is programmed",
            protocol_name(proto)
        ));
    }
    Ok(format!("no frontend has address {ip}, and it is not one of this node's addresses"))
}

fn existing_sockets(maps: &Maps, frontend_id: u32) -> Result<Vec<(SocketAddr, u64)>, Error> {
    let mut counts = std::collections::BTreeMap::<SocketAddr, u64>::new();
    for entry in maps.sock_revnat.iter() {
        let (key, value) = entry.map_err(map_err(names::SOCK_REVNAT))?;
        if value.frontend_id == frontend_id {
            let addr = SocketAddr::new(key.addr.to_ip(key.family), u16::from_be(key.port));
            *counts.entry(addr).or_default() += 1;
        }
    }
    Ok(counts.into_iter().collect())
}

/// The client's sockets that `sy_sock_revnat` says were translated for this frontend, with the
/// Maglev slot of each cookie (`sy_sock_hash()`: SipHash-2-4 of the cookie, 8 bytes LE).
fn translated_sockets(
    maps: &Maps,
    fe: &Frontend,
    sockets: &[ObservedSocket],
) -> Result<Vec<TranslatedSocket>, Error> {
    let mut out = Vec::new();
    for s in sockets {
        let (addr, family) = Addr::from_ip(s.peer.ip());
        let key = abi::SockRevnatKey {
            cookie: s.cookie,
            addr,
            port: s.peer.port().to_be(),
            family,
            pad: [0; 5],
        };
        let revnat = match maps.sock_revnat.get(&key, 0) {
            Ok(v) => v,
            Err(aya::maps::MapError::KeyNotFound) => continue,
            Err(source) => return Err(map_err(names::SOCK_REVNAT)(source)),
        };
        if revnat.frontend_id != fe.id {
            continue;
        }
        let maglev = if fe.flags & abi::FE_MAGLEV != 0 {
            let (seed, size) = kernel_seed(maps)?;
            let hash = switchyard_maglev::siphash24(&seed, &s.cookie.to_le_bytes());
            let (slot, backend) = maglev_slot(maps, fe.id, hash, size)?;
            Some(MaglevPick {
                hashed: format!("socket cookie {} (8 bytes little-endian)", s.cookie),
                hash: format!("{hash:#018x}"),
                table_size: size,
                slot,
                backend,
            })
        } else {
            None
        };
        out.push(TranslatedSocket { cookie: s.cookie, source: s.source, backend: s.peer, maglev });
    }
    Ok(out)
}

fn source_allowed(pm: &PacketMaps, frontend_id: u32, source: IpAddr) -> Result<bool, Error> {
    let full = if source.is_ipv4() { 32 } else { 128 };
    let key = SrcRangeKey::new(frontend_id, source, full)?.to_trie_key();
    match pm.src_ranges.get(&key, 0) {
        Ok(_) => Ok(true),
        Err(aya::maps::MapError::KeyNotFound) => Ok(false),
        Err(source) => Err(map_err(switchyard_bpf::tc::names::SRC_RANGES)(source)),
    }
}

fn affinity_pick(
    maps: &Maps,
    fe: &Frontend,
    client: IpAddr,
    now: u64,
) -> Result<Option<ProgrammedBackend>, Error> {
    let (addr, family) = Addr::from_ip(client);
    let key = AffinityKey { client: addr, frontend_id: fe.id, family, pad: [0; 3] };
    let a = match maps.affinity.get(&key, 0) {
        Ok(a) => a,
        Err(aya::maps::MapError::KeyNotFound) => return Ok(None),
        Err(source) => return Err(map_err(names::AFFINITY)(source)),
    };
    let live =
        now.saturating_sub(a.last_used_ns) <= u64::from(fe.affinity_timeout_s) * 1_000_000_000;
    let valid = if a.slot == abi::SLOT_NONE {
        fe.flags & abi::FE_MAGLEV != 0
    } else {
        a.slot < fe.backend_count
            && maps.slots.get(&SlotKey { frontend_id: fe.id, slot: a.slot }, 0).ok()
                == Some(a.backend_id)
    };
    if live && valid { backend_view(maps, a.backend_id) } else { Ok(None) }
}

fn empty_decision(fe: &Frontend, path: Path, proto: u8) -> Decision {
    let (method, detail) = match path {
        Path::Socket => (
            "refused",
            "no backends: connect()/sendmsg() fails at once with ECONNREFUSED (reject_no_backend)"
                .to_owned(),
        ),
        Path::Packet if fe.flags & abi::FE_LOCAL_ONLY != 0 => (
            "dropped",
            "no local backend (traffic policy Local): dropped, another node may have endpoints \
             (pkt_drop_no_local_backend)"
                .to_owned(),
        ),
        Path::Packet if fe.flags & abi::FE_REJECT_EMPTY != 0 => (
            "rejected",
            if proto == abi::PROTO_TCP {
                "no backends: answered with TCP RST (pkt_reject_rst)".to_owned()
            } else {
                "no backends: answered with ICMP port unreachable (pkt_reject_icmp)".to_owned()
            },
        ),
        Path::Packet => ("dropped", "no backends: dropped (drop_no_backend)".to_owned()),
    };
    Decision { method, backend: None, detail }
}

/// The SNAT decision of `handle_new_flow()` for a chosen backend.
fn snat_words(
    cfg: Option<&PktConfig>,
    fe: &Frontend,
    backend: &ProgrammedBackend,
    flow: &Flow,
) -> String {
    let hairpin = backend.ip == flow.source;
    let local = backend.flags.contains(&"local");
    if !hairpin && (fe.flags & abi::FE_LOCAL_ONLY != 0 || local) {
        return "source kept (the backend sees the client)".into();
    }
    let why = if hairpin { "hairpin: the client is the backend" } else { "remote backend" };
    let Some(cfg) = cfg else {
        return format!("SNAT ({why}): no per-packet settings pinned");
    };
    let addr = if flow.source.is_ipv4() { cfg.snat_addr4 } else { cfg.snat_addr6 };
    if addr == Addr::UNSPECIFIED {
        return format!(
            "SNAT needed ({why}) but no SNAT address for the family: dropped (pkt_drop_snat_no_addr)"
        );
    }
    let family = if flow.source.is_ipv4() { abi::AF_INET } else { abi::AF_INET6 };
    format!(
        "SNAT ({why}) source {} -> {}:<a free port of {}-{}, claimed at the first packet>",
        flow.source,
        addr.to_ip(family),
        cfg.snat_port_min,
        cfg.snat_port_max
    )
}
