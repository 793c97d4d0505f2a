//! `switchyard_bpf::mirror` (what `switchyard explain` decides with) against the real
//! per-packet program: generated frontends, backends, Maglev tables, affinity entries, source
//! ranges, SNAT settings and packets go into the maps; `sy_nodeport_ingress` runs under
//! BPF_PROG_TEST_RUN and what it did (verdict, counters, conntrack entry, rewritten frame) must
//! be what `mirror::decide_packet` said before it ran. Root: the program is loaded into a
//! bpffs of the test's own, on a thread in a fresh network namespace (no route: translated
//! packets go to the stack, TC_ACT_OK).

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_testing::frames;

use std::{
    cell::RefCell,
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use aya::programs::{TestRun, TestRunOptions};
use proptest::{prelude::*, test_runner::TestRunner};
use switchyard_bpf::{
    Datapath, LoadOptions,
    abi::*,
    mirror::{self, Counter, Packet, PacketDecision, Source},
    nodeport::{PacketDatapath, PacketMapSizes, PacketSettings},
    nodeport_abi::{CT_F_HAIRPIN, CT_F_SNAT, CtKey, PacketReason, SrcRangeKey, monotonic_now_ns},
};
use switchyard_testing::{BpfDir, socket_probe::small_sizes};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const MAGLEV_M: u32 = 251;

/// Addresses of one family: frontends, node, clients, backends (the last client is a backend's
/// address: hairpin), plus loopback and an address nobody owns.
struct Pool {
    frontends: [IpAddr; 2],
    node: IpAddr,
    clients: [IpAddr; 3],
    backends: [IpAddr; 3],
    loopback: IpAddr,
    nowhere: IpAddr,
    /// The node's SNAT address.
    snat: IpAddr,
}

fn address_pool(v6: bool) -> Pool {
    let p = |s: &str| s.parse::<IpAddr>().unwrap();
    if v6 {
        Pool {
            frontends: [p("fd00:96::10"), p("fd00:96::11")],
            node: p("fd00::1"),
            clients: [p("2001:db8::7"), p("2001:db8::8"), p("fd00:10::2")],
            backends: [p("fd00:10::1"), p("fd00:10::2"), p("fd00:10::3")],
            loopback: p("::1"),
            nowhere: p("2001:db8::99"),
            snat: p("fd00::1"),
        }
    } else {
        Pool {
            frontends: [p("10.96.0.10"), p("10.96.0.11")],
            node: p("10.0.0.1"),
            clients: [p("192.0.2.7"), p("192.0.2.8"), p("10.244.1.2")],
            backends: [p("10.244.1.1"), p("10.244.1.2"), p("10.244.1.3")],
            loopback: p("127.0.0.1"),
            nowhere: p("198.51.100.9"),
            snat: p("10.0.0.1"),
        }
    }
}

const PORTS: [u16; 2] = [80, 30080];
const PROTOS: [u8; 2] = [PROTO_TCP, PROTO_UDP];

/// A backend: index into the pool's backends, port, `BE_*` flags; `wrong_family` stores it
/// under the other family (the program refuses it).
#[derive(Debug, Clone)]
struct GenBackend {
    addr: usize,
    port: u16,
    flags: u8,
    wrong_family: bool,
}

/// A frontend: `addr` None is the NodePort wildcard.
#[derive(Debug, Clone)]
struct GenFrontend {
    addr: Option<usize>,
    port: usize,
    proto: usize,
    flags: u32,
    /// Backend ids (1-based into the case's backends; may name a missing one) per slot.
    slots: Vec<u32>,
    /// Extra slots counted in backend_count but not written.
    missing_slots: u32,
    /// Maglev table entries drawn from these ids (0 = empty entry); None = no table.
    maglev: Option<Vec<u32>>,
    /// Affinity entries: (client index, backend id, slot or SLOT_NONE, age in seconds).
    affinity: Vec<(usize, u32, u32, u64)>,
    /// Clients (index) allowed by loadBalancerSourceRanges.
    allowed: Vec<usize>,
}

#[derive(Debug, Clone)]
struct GenPacket {
    /// Aim at this frontend (index modulo the count): its address (the node's for a
    /// wildcard), port and protocol; `None`: `dst`, `port` and `proto` below.
    target: Option<usize>,
    client: usize,
    sport: u16,
    /// 0..2 a frontend address, 2 node, 3 loopback, 4 nowhere.
    dst: usize,
    port: usize,
    proto: usize,
    tcp_flags: u8,
}

#[derive(Debug, Clone)]
struct World {
    v6: bool,
    snat: bool,
    backends: Vec<GenBackend>,
    frontends: Vec<GenFrontend>,
    packets: Vec<GenPacket>,
}

fn flags() -> impl Strategy<Value = u32> {
    let bits = [FE_AFFINITY, FE_MAGLEV, FE_REJECT_EMPTY, FE_LOCAL_ONLY, FE_SOURCE_RANGES];
    (proptest::collection::vec(any::<bool>(), bits.len()), any::<bool>()).prop_map(
        move |(on, nodeport)| {
            let mut f = bits.iter().zip(on).filter(|(_, on)| *on).fold(0, |f, (b, _)| f | b);
            if nodeport {
                f |= FE_NODEPORT;
            }
            f
        },
    )
}

fn world() -> impl Strategy<Value = World> {
    let backend =
        (0..3usize, prop_oneof![Just(8080u16), Just(9090)], 0..4u8, prop::bool::weighted(0.1))
            .prop_map(|(addr, port, flags, wrong_family)| GenBackend {
                addr,
                port,
                flags: flags & (BE_LOCAL | BE_TERMINATING),
                wrong_family,
            });
    let frontend = (
        prop::option::weighted(0.7, 0..2usize),
        0..2usize,
        0..2usize,
        flags(),
        proptest::collection::vec(1..6u32, 0..4),
        prop::sample::select(vec![0u32, 0, 0, 1]),
        prop::option::of(proptest::collection::vec(0..6u32, 1..4)),
        proptest::collection::vec(
            (
                0..3usize,
                1..6u32,
                prop::sample::select(vec![0u32, 1, 2, SLOT_NONE]),
                prop::sample::select(vec![1u64, 3600]),
            ),
            0..3,
        ),
        proptest::collection::vec(0..3usize, 0..3),
    )
        .prop_map(
            |(addr, port, proto, flags, slots, missing_slots, maglev, affinity, allowed)| {
                GenFrontend {
                    addr,
                    port,
                    proto,
                    flags,
                    slots,
                    missing_slots,
                    maglev,
                    affinity,
                    allowed,
                }
            },
        );
    let packet = (
        prop::option::weighted(0.8, 0..4usize),
        0..3usize,
        prop::sample::select(vec![40000u16, 40001]),
        0..5usize,
        0..2usize,
        0..2usize,
        prop::sample::select(vec![0x02u8, 0x10, 0x12, 0x04, 0x11]),
    )
        .prop_map(|(target, client, sport, dst, port, proto, tcp_flags)| GenPacket {
            target,
            client,
            sport,
            dst,
            port,
            proto,
            tcp_flags,
        });
    (
        any::<bool>(),
        prop::bool::weighted(0.85),
        proptest::collection::vec(backend, 4..=4),
        proptest::collection::vec(frontend, 1..5),
        proptest::collection::vec(packet, 2..8),
    )
        .prop_map(|(v6, snat, backends, frontends, packets)| World {
            v6,
            snat,
            backends,
            frontends,
            packets,
        })
}

/// What the program did with one packet, in the mirror's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Pass,
    Drop(Counter),
    Reject(PacketReason),
    Tracked {
        backend_id: u32,
    },
    Reply,
    Translate {
        frontend_id: u32,
        backend_id: u32,
        pick: Counter,
        source: Option<(IpAddr, bool)>,
        dst: SocketAddr,
    },
}

/// The outcome the mirror's decision stands for.
fn expected(decision: &PacketDecision) -> Outcome {
    match decision {
        PacketDecision::Pass => Outcome::Pass,
        PacketDecision::Reply { .. } => Outcome::Reply,
        PacketDecision::Tracked { entry } => Outcome::Tracked { backend_id: entry.backend_id },
        PacketDecision::Drop { reason, .. } => Outcome::Drop(*reason),
        PacketDecision::Reject { reason, .. } => Outcome::Reject(*reason),
        PacketDecision::Translate { frontend_id, pick, backend, source } => Outcome::Translate {
            frontend_id: *frontend_id,
            backend_id: pick.backend_id,
            pick: pick.reason,
            source: match source {
                Source::Kept => None,
                Source::Snat { addr, hairpin } => Some((*addr, *hairpin)),
            },
            dst: SocketAddr::new(backend.addr.to_ip(backend.family), backend.port()),
        },
        PacketDecision::Random { .. } => unreachable!("decided with a random value"),
    }
}

struct Node {
    sock: Datapath,
    pkt: PacketDatapath,
    _bpf: BpfDir,
}

impl Node {
    fn counters(&self) -> BTreeMap<Counter, u64> {
        let mut out: BTreeMap<Counter, u64> = BTreeMap::new();
        for (r, c) in self.sock.maps().counters().unwrap() {
            out.insert(Counter::Shared(r), c.packets);
        }
        for (r, c) in self.pkt.maps().counters().unwrap() {
            out.insert(Counter::Packet(r), c.packets);
        }
        out
    }

    /// Empties every map a case writes or the program fills.
    fn clear(&mut self) {
        let m = self.sock.maps_mut();
        for k in m.frontends.keys().collect::<Result<Vec<_>, _>>().unwrap() {
            m.frontends.remove(&k).unwrap();
        }
        for k in m.slots.keys().collect::<Result<Vec<_>, _>>().unwrap() {
            m.slots.remove(&k).unwrap();
        }
        for k in m.backends.keys().collect::<Result<Vec<_>, _>>().unwrap() {
            m.backends.remove(&k).unwrap();
        }
        for k in m.maglev.keys().collect::<Result<Vec<_>, _>>().unwrap() {
            m.maglev.remove(&k).unwrap();
        }
        for k in m.affinity.keys().collect::<Result<Vec<_>, _>>().unwrap() {
            m.affinity.remove(&k).unwrap();
        }
        for k in m.node_addrs.keys().collect::<Result<Vec<_>, _>>().unwrap() {
            m.node_addrs.remove(&k).unwrap();
        }
        let p = self.pkt.maps_mut();
        for k in p.ct.keys().collect::<Result<Vec<_>, _>>().unwrap() {
            p.ct.remove(&k).unwrap();
        }
        for k in p.nat.keys().collect::<Result<Vec<_>, _>>().unwrap() {
            p.nat.remove(&k).unwrap();
        }
        for k in p.src_ranges.keys().collect::<Result<Vec<_>, _>>().unwrap() {
            p.src_ranges.remove(&k).unwrap();
        }
    }

    fn program(&mut self, w: &World, pool: &Pool) {
        let now = monotonic_now_ns();
        let settings = PacketSettings {
            snat_ipv4: match pool.snat {
                IpAddr::V4(a) if w.snat => Some(a),
                _ => None,
            },
            snat_ipv6: match pool.snat {
                IpAddr::V6(a) if w.snat => Some(a),
                _ => None,
            },
            snat_ports: 40_000..=40_999,
            ..PacketSettings::default()
        };
        self.pkt.maps_mut().set_settings(&settings).unwrap();
        let other = address_pool(!w.v6);
        let m = self.sock.maps_mut();
        m.node_addrs.insert(NodeAddrKey::new(pool.node), 0, 0).unwrap();
        for (id, b) in (1u32..).zip(&w.backends) {
            let ip = if b.wrong_family { other.backends[b.addr] } else { pool.backends[b.addr] };
            m.backends.insert(id, Backend::new(ip, b.port, b.flags), 0).unwrap();
        }
        for (id, f) in (1u32..).zip(&w.frontends) {
            for (slot, &b) in (0u32..).zip(&f.slots) {
                m.slots.insert(SlotKey { frontend_id: id, slot }, b, 0).unwrap();
            }
            if let Some(entries) = &f.maglev {
                let table: Vec<u32> =
                    (0..MAGLEV_M as usize).map(|i| entries[i % entries.len()]).collect();
                // Zero entries are refused by set_maglev_table: write those tables by hand.
                if table.contains(&0) {
                    let mut inner =
                        switchyard_bpf::maps::MaglevTable::create(MAGLEV_M, 1 << 12).unwrap();
                    for (i, b) in (0u32..).zip(&table) {
                        inner.set(i, b, 0).unwrap();
                    }
                    m.maglev.insert(id, &inner, 0).unwrap();
                } else {
                    m.set_maglev_table(id, &table).unwrap();
                }
            }
            for &(client, backend_id, slot, age_s) in &f.affinity {
                let (addr, family) = Addr::from_ip(pool.clients[client]);
                let key = AffinityKey { client: addr, frontend_id: id, family, pad: [0; 3] };
                let value = Affinity {
                    backend_id,
                    slot,
                    last_used_ns: now.saturating_sub(age_s * 1_000_000_000),
                };
                m.affinity.insert(key, value, 0).unwrap();
            }
            let port = PORTS[f.port];
            let proto = PROTOS[f.proto];
            let key = match f.addr {
                Some(a) => FrontendKey::new(pool.frontends[a], port, proto, SCOPE_DEFAULT),
                None => FrontendKey::node_port(
                    if w.v6 { AF_INET6 } else { AF_INET },
                    port,
                    proto,
                    SCOPE_DEFAULT,
                ),
            };
            let backend_count = f.slots.len() as u32 + f.missing_slots;
            let fe = Frontend { id, flags: f.flags, backend_count, affinity_timeout_s: 60 };
            // Later frontends with the same key replace earlier ones, as in the maps.
            m.frontends.insert(key, fe, 0).unwrap();
        }
        for (id, f) in (1u32..).zip(&w.frontends) {
            for &c in &f.allowed {
                let range =
                    SrcRangeKey::new(id, pool.clients[c], if w.v6 { 128 } else { 32 }).unwrap();
                self.pkt.maps_mut().add_source_range(id, range).unwrap();
            }
        }
    }

    fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog = self.pkt.program("sy_nodeport_ingress").unwrap();
        let mut out = vec![0u8; 2048];
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .unwrap();
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    /// Runs `spec` and reads what the program did.
    fn observe(&self, spec: &frames::Spec, tuple: &CtKey) -> Outcome {
        let before = self.counters();
        let (rc, out) = self.run(&spec.frame());
        let after = self.counters();
        let changed: Vec<Counter> =
            after.iter().filter(|(k, v)| before.get(k) != Some(v)).map(|(k, _)| *k).collect();
        let has = |c: Counter| changed.contains(&c);
        match rc {
            TC_ACT_SHOT => {
                assert_eq!(changed.len(), 1, "a drop counts one reason: {changed:?}");
                Outcome::Drop(changed[0])
            }
            TC_ACT_REDIRECT if has(Counter::Packet(PacketReason::RejectRst)) => {
                Outcome::Reject(PacketReason::RejectRst)
            }
            TC_ACT_REDIRECT if has(Counter::Packet(PacketReason::RejectIcmp)) => {
                Outcome::Reject(PacketReason::RejectIcmp)
            }
            TC_ACT_OK if changed.is_empty() => Outcome::Pass,
            TC_ACT_OK if has(Counter::Packet(PacketReason::Revnat)) => Outcome::Reply,
            TC_ACT_OK if has(Counter::Packet(PacketReason::CtHit)) => {
                let e = self.pkt.maps().conntrack(tuple).unwrap().unwrap();
                Outcome::Tracked { backend_id: e.backend_id }
            }
            TC_ACT_OK => {
                let e =
                    self.pkt.maps().conntrack(tuple).unwrap().expect("a new flow has conntrack");
                let snat = e.flags & CT_F_SNAT != 0;
                let dnat = if snat { PacketReason::DnatSnat } else { PacketReason::Dnat };
                assert!(has(Counter::Packet(dnat)), "{dnat:?} counted: {changed:?}");
                let pick = changed
                    .iter()
                    .copied()
                    .find(|c| {
                        *c != Counter::Packet(dnat)
                            && *c != Counter::Packet(PacketReason::CtCreated)
                    })
                    .expect("the pick is counted");
                let parsed = frames::parse(&out);
                let family = tuple.family;
                if snat {
                    assert_eq!(
                        parsed.src,
                        e.nat_saddr.to_ip(family),
                        "frame source is the SNAT address"
                    );
                } else {
                    assert_eq!(parsed.src, tuple.source(), "frame source kept");
                }
                Outcome::Translate {
                    frontend_id: e.frontend_id,
                    backend_id: e.backend_id,
                    pick,
                    source: snat.then(|| (e.nat_saddr.to_ip(family), e.flags & CT_F_HAIRPIN != 0)),
                    dst: SocketAddr::new(parsed.dst, parsed.dport),
                }
            }
            other => panic!("unexpected verdict {other}, counters {changed:?}"),
        }
    }
}

#[test]
fn explains_mirror_decides_every_generated_packet_as_the_program_does() {
    if !switchyard_lab::require_root(
        "explains_mirror_decides_every_generated_packet_as_the_program_does",
    ) {
        return;
    }
    switchyard_testing::nodeport_fixture::enter_private_netns();
    let bpf = BpfDir::new("mirror");
    let mut options = LoadOptions::new(bpf.path());
    options.sizes = small_sizes();
    options.maglev_table_size = MAGLEV_M;
    let sock = Datapath::load(&options).unwrap();
    let pkt = PacketDatapath::load(&options, PacketMapSizes::default(), &PacketSettings::default())
        .unwrap();
    let node = RefCell::new(Node { sock, pkt, _bpf: bpf });

    let config = proptest::test_runner::Config {
        cases: 128,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    };
    let mut runner = TestRunner::new(config);
    let seen: RefCell<BTreeMap<String, usize>> = RefCell::new(BTreeMap::new());
    runner
        .run(&world(), |w| {
            let pool = address_pool(w.v6);
            let mut node = node.borrow_mut();
            node.clear();
            node.program(&w, &pool);
            for p in &w.packets {
                let client = pool.clients[p.client];
                let (dst_ip, port, proto) = match p.target {
                    Some(i) => {
                        let f = &w.frontends[i % w.frontends.len()];
                        let ip = f.addr.map_or(pool.node, |a| pool.frontends[a]);
                        (ip, PORTS[f.port], PROTOS[f.proto])
                    }
                    None => {
                        let ip = match p.dst {
                            0 | 1 => pool.frontends[p.dst],
                            2 => pool.node,
                            3 => pool.loopback,
                            _ => pool.nowhere,
                        };
                        (ip, PORTS[p.port], PROTOS[p.proto])
                    }
                };
                let destination = SocketAddr::new(dst_ip, port);
                let flags = if proto == PROTO_TCP { p.tcp_flags } else { 0 };
                let packet = Packet::new(client, p.sport, destination, proto, flags);
                let now = monotonic_now_ns();
                let maps = node.sock.maps();
                let packet_maps = node.pkt.maps();
                let decision =
                    mirror::decide_packet(maps, packet_maps, &packet, now, None).unwrap();
                let possible: Vec<Outcome> = match decision {
                    PacketDecision::Random { backend_count, .. } => (0..backend_count)
                        .map(|r| {
                            expected(
                                &mirror::decide_packet(maps, packet_maps, &packet, now, Some(r))
                                    .unwrap(),
                            )
                        })
                        .collect(),
                    ref d => vec![expected(d)],
                };
                let spec = frames::Spec {
                    src: client,
                    dst: dst_ip,
                    sport: p.sport,
                    dport: port,
                    proto,
                    tcp_flags: flags,
                    seq: 1000,
                    payload: b"x".to_vec(),
                    df: false,
                };
                let observed = node.observe(&spec, &packet.tuple);
                prop_assert!(
                    possible.contains(&observed),
                    "packet {packet:?}: the program did {observed:?}, the mirror said {possible:?}"
                );
                let kind = format!("{observed:?}");
                let kind = kind.split([' ', '(', '{']).next().unwrap_or_default().to_owned();
                *seen.borrow_mut().entry(kind).or_default() += 1;
            }
            Ok(())
        })
        .unwrap();
    // The generator must reach every kind of decision, or the comparison proves little.
    let seen = seen.into_inner();
    for kind in ["Pass", "Drop", "Reject", "Tracked", "Translate"] {
        assert!(seen.get(kind).copied().unwrap_or(0) > 0, "no {kind} outcome generated: {seen:?}");
    }
    eprintln!("outcomes compared: {seen:?}");
}
