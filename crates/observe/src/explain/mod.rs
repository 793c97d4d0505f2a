//! `switchyard explain`: what the data plane does with one flow, decided from the pinned maps by
//! `switchyard_bpf::mirror` (the programs' lookups written once in Rust, checked against the
//! per-packet program by a BPF_PROG_TEST_RUN property test); this module puts the decision into
//! words. Read-only: nothing is written to any map.
//!
//! What can and cannot be predicted is part of the answer: a random pick is made per connection
//! by `bpf_get_prandom_u32()`; the socket path's Maglev hash is over the socket cookie, which
//! does not exist before the socket does. The per-packet path's Maglev choice is a function of
//! the 5-tuple and the table, so it is named exactly; an existing per-packet flow is named from
//! its conntrack entry.

mod sockets;
mod words;

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use switchyard_bpf::Maps;
use switchyard_bpf::abi::{self, Addr, Frontend, FrontendKey};
use switchyard_bpf::mirror::{self, Counter, MapView, Packet, PacketDecision, PacketMapView};
use switchyard_bpf::nodeport::PacketMaps;
use switchyard_bpf::nodeport_abi::{self, CT_F_HAIRPIN, CT_F_SNAT, CtKey, PacketReason};

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
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// Slot index.
    pub slot: u32,
    /// The backend in that slot.
    pub backend: ProgrammedBackend,
}

/// The Maglev computation for this flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaglevPick {
    /// What was hashed (`5-tuple` on the per-packet path).
    pub hashed: String,
    /// The hash (hex): the flow hash (`FlowKey::hash`) or the cookie's SipHash-2-4.
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
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
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

/// A backend as `explain` shows it, `None` when the id is not in `sy_backends`.
fn backend_view(maps: &Maps, id: u32) -> Result<Option<ProgrammedBackend>, Error> {
    Ok(maps.backend(id)?.map(|b| ProgrammedBackend {
        id,
        ip: b.addr.to_ip(b.family),
        port: b.port(),
        flags: backend_flag_names(b.flags),
    }))
}

/// The usable backends of a frontend in slot order (missing slots skipped).
fn candidates(maps: &Maps, fe: &Frontend) -> Result<Vec<Candidate>, Error> {
    let mut out = Vec::new();
    for slot in 0..fe.backend_count {
        let Some(id) = maps.slot(fe.id, slot)? else { continue };
        if let Some(backend) = backend_view(maps, id)? {
            out.push(Candidate { slot, backend });
        }
    }
    Ok(out)
}

/// The Maglev computation for `hash`, as `pick_maglev()` makes it (`mirror::maglev_index`).
fn maglev_view(maps: &Maps, fe: &Frontend, hash: u64, hashed: String) -> Result<MaglevPick, Error> {
    let size = MapView::config(maps)?.map_or(0, |c| c.maglev_table_size);
    let slot = mirror::maglev_index(hash, size);
    let backend = match maps.maglev_entry(fe.id, slot)? {
        Some(id) if id != 0 => backend_view(maps, id)?,
        _ => None,
    };
    Ok(MaglevPick { hashed, hash: format!("{hash:#018x}"), table_size: size, slot, backend })
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
    let now = nodeport_abi::monotonic_now_ns();
    let settings = packet.settings()?;
    // The packet the per-packet program would parse (source port 0 when not given).
    let probe = Packet::new(
        flow.source,
        flow.source_port.unwrap_or(0),
        flow.destination,
        flow.protocol,
        mirror::tcp_flags::ACK,
    );

    // Per-packet path, steps 2-3 of the ingress program: a reply of a translated flow, then an
    // existing flow.
    if let (Path::Packet, Some(sp)) = (path, flow.source_port) {
        if let Some(nat) = packet.nat(&probe.tuple)? {
            words::reply(&mut out, &nat.orig);
            return Ok(out);
        }
        if let Some(e) = packet.conntrack(&probe.tuple)? {
            out.conntrack = Some(conntrack_view(maps, &e, flow, sp, settings.as_ref(), now)?);
        }
    }

    let from_inside = path == Path::Socket;
    let Some((key, fe)) =
        mirror::lookup_frontend(maps, flow.destination, flow.protocol, from_inside)?
    else {
        out.no_match = Some(words::why_no_match(maps, flow, from_inside)?);
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
    out.policy = words::policy(&fe, path);
    out.candidates = candidates(maps, &fe)?;

    if path == Path::Socket {
        sockets::explain_socket_path(maps, &fe, sockets, &mut out)?;
        return Ok(out);
    }

    if let Some(sp) = flow.source_port
        && fe.flags & abi::FE_MAGLEV != 0
        && let Some(cfg) = MapView::config(maps)?
    {
        let hashed = format!(
            "5-tuple {}:{sp} -> {} proto {} ({} bytes)",
            flow.source,
            flow.destination,
            flow.protocol,
            if flow.source.is_ipv4() { 13 } else { 37 }
        );
        out.maglev = Some(maglev_view(maps, &fe, mirror::flow_hash(&cfg, &probe.tuple), hashed)?);
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

    let decision = mirror::new_flow(maps, &packet, settings.as_ref(), &probe, now, None)?;
    let maglev_pick = |c: Counter| {
        c == Counter::Shared(abi::Reason::TranslatedMaglev)
            || c == Counter::Shared(abi::Reason::ErrMaglevMissing)
    };
    let needs_port = flow.source_port.is_none()
        && match &decision {
            PacketDecision::Translate { pick, .. } => maglev_pick(pick.reason),
            PacketDecision::Drop { reason, .. } => maglev_pick(*reason),
            _ => false,
        };
    if needs_port {
        out.decision = Decision {
            method: "maglev",
            backend: None,
            detail: "Maglev over the 5-tuple: give the source port (SRC as ADDR:PORT) to name the \
                     backend"
                .into(),
        };
        out.translation.push(words::unknown_backend_translation(&fe, flow));
        return Ok(out);
    }
    match decision {
        PacketDecision::Pass => {}
        PacketDecision::Reply { orig } => words::reply(&mut out, &orig),
        PacketDecision::Tracked { entry } => {
            out.decision = Decision {
                method: "conntrack",
                backend: backend_view(maps, entry.backend_id)?,
                detail: format!("existing flow keeps backend id {}", entry.backend_id),
            };
        }
        PacketDecision::Drop { reason, .. } => {
            out.decision = Decision {
                method: "dropped",
                backend: None,
                detail: words::drop_detail(reason, out.maglev.as_ref()),
            };
        }
        PacketDecision::Reject { reason, .. } => {
            let detail = words::reject_detail(reason);
            out.decision = Decision { method: "rejected", backend: None, detail };
        }
        PacketDecision::Translate { pick, backend, source, .. } => {
            let backend_addr = SocketAddr::new(backend.addr.to_ip(backend.family), backend.port());
            let view = backend_view(maps, pick.backend_id)?;
            out.decision = if pick.reason == Counter::Packet(PacketReason::Affinity) {
                Decision {
                    method: "affinity",
                    backend: view,
                    detail: format!(
                        "ClientIP affinity entry of {} is live: every new flow of this client uses it",
                        flow.source
                    ),
                }
            } else {
                let detail = match &out.maglev {
                    Some(m) => format!(
                        "Maglev slot {} of {} (hash {} of the {}); the same for every packet and \
                         every node with this table",
                        m.slot, m.table_size, m.hash, m.hashed
                    ),
                    None => format!("backend id {} ({})", pick.backend_id, pick.reason.name()),
                };
                Decision { method: "maglev", backend: view, detail }
            };
            out.translation
                .push(format!("DNAT destination {} -> {backend_addr}", flow.destination));
            out.translation.push(words::source_translation(&source, flow, settings.as_ref()));
        }
        PacketDecision::Random { backend_count, .. } => {
            out.decision = Decision {
                method: "random",
                backend: None,
                detail: format!(
                    "one of {backend_count} slots chosen per connection by bpf_get_prandom_u32 \
                     (each 1/{backend_count})"
                ),
            };
            out.translation.push(words::unknown_backend_translation(&fe, flow));
        }
    }
    Ok(out)
}

/// The conntrack entry of the flow as `explain` shows it; usable as `ct_usable()` decides for a
/// packet of the flow (not a new SYN).
fn conntrack_view(
    maps: &Maps,
    e: &nodeport_abi::CtEntry,
    flow: &Flow,
    sport: u16,
    settings: Option<&nodeport_abi::PktConfig>,
    now: u64,
) -> Result<Conntrack, Error> {
    let cfg = settings.copied().unwrap_or_default();
    let tuple = CtKey::new(
        flow.source,
        sport,
        flow.destination.ip(),
        flow.destination.port(),
        flow.protocol,
    );
    let unusable_because =
        mirror::ct_unusable(maps, e, flow.protocol, mirror::tcp_flags::ACK, &cfg, now)?;
    Ok(Conntrack {
        backend_id: e.backend_id,
        backend: SocketAddr::new(e.nat_daddr.to_ip(tuple.family), u16::from_be(e.nat_dport)),
        nat_source: SocketAddr::new(e.nat_saddr.to_ip(tuple.family), u16::from_be(e.nat_sport)),
        snat: e.flags & CT_F_SNAT != 0,
        hairpin: e.flags & CT_F_HAIRPIN != 0,
        state: nodeport_abi::ct_state_name(e.state),
        idle_s: now.saturating_sub(e.last_seen_ns) as f64 / 1e9,
        timeout_s: e.timeout_s(flow.protocol, &cfg),
        usable: unusable_because.is_none(),
        unusable_because,
    })
}
