//! Structure-aware fuzzing of the decoder and the session on stable Rust: valid messages are
//! mutated (bit flips, length fields set to edge values, truncation, insertion, splicing) and
//! mixed with random bytes behind a valid marker. Every input is decoded under both AS-number
//! widths and fed to an established session; a panic is recorded, never hidden. The test suite
//! runs a short pass; `cargo run --release -p switchyard-bgp --example fuzz_decoder -- N` runs N.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::prefix::{Family, Prefix};
use crate::session::{Event, Session, SessionConfig, State};
use crate::wire::RouteRefresh;
use crate::wire::{
    AsSegment, Attribute, Capability, Codec, GracefulRestartCap, LargeCommunity, Message, MpReach,
    Notification, Open, Origin, Update,
};

/// What a fuzz run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Inputs tried.
    pub inputs: u64,
    /// Inputs that decoded to a message.
    pub decoded: u64,
    /// Inputs that need more bytes.
    pub incomplete: u64,
    /// Inputs rejected, by the (code, subcode) of the NOTIFICATION they call for.
    pub rejected: BTreeMap<(u8, u8), u64>,
    /// Inputs after which the established session sent a NOTIFICATION and went down.
    pub session_resets: u64,
    /// Inputs that panicked (decoder or session), at most the first 10 kept as hex.
    pub panics: u64,
    /// The first panicking inputs.
    pub panic_inputs: Vec<String>,
    /// Decoded messages whose re-encoding did not decode to the same message.
    pub roundtrip_mismatches: u64,
}

/// A small xorshift generator: reproducible runs from a seed, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (zero is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Valid messages covering every type, capability and attribute the codec knows.
pub fn corpus() -> Vec<Vec<u8>> {
    let v4: Prefix = Prefix::host(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let v6: Prefix = Prefix::host(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)));
    let open = Open {
        my_as: 64512,
        hold_time: 90,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![
            Capability::multiprotocol(Family::Ipv4Unicast),
            Capability::multiprotocol(Family::Ipv6Unicast),
            Capability::RouteRefresh,
            Capability::GracefulRestart(GracefulRestartCap {
                restarting: true,
                notification: false,
                restart_time: 120,
                families: vec![(1, 1, true), (2, 1, false)],
            }),
            Capability::FourOctetAs(4_200_000_000),
            Capability::Other { code: 70, value: vec![1, 2, 3] },
        ],
    };
    let attrs = vec![
        Attribute::Origin(Origin::Igp),
        Attribute::AsPath(vec![AsSegment { sequence: true, asns: vec![64512, 65000] }]),
        Attribute::NextHop(Ipv4Addr::new(10, 0, 0, 2)),
        Attribute::Med(5),
        Attribute::LocalPref(100),
        Attribute::Communities(vec![0xfde8_0001]),
        Attribute::LargeCommunities(vec![LargeCommunity { global: 64512, local1: 1, local2: 2 }]),
    ];
    let mut v6_attrs = attrs[..2].to_vec();
    v6_attrs.push(Attribute::MpReach(MpReach {
        family: Family::Ipv6Unicast,
        next_hops: vec![IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2))],
        nlri: vec![v6],
    }));
    let messages = [
        Message::Open(open),
        Message::Keepalive,
        Message::Notification(Notification::with_data(6, 2, b"bye".to_vec())),
        Message::RouteRefresh(RouteRefresh { afi: 2, subtype: 0, safi: 1 }),
        Message::Update(Update { withdrawn: vec![v4], attributes: attrs, nlri: vec![v4] }),
        Message::Update(Update { attributes: v6_attrs, ..Update::default() }),
        Message::Update(Update {
            attributes: vec![Attribute::MpUnreach(Family::Ipv6Unicast, vec![v6])],
            ..Update::default()
        }),
        Message::Update(Update::end_of_rib(Family::Ipv4Unicast)),
    ];
    messages
        .iter()
        .flat_map(|m| {
            [false, true].map(|four| {
                let mut out = Vec::new();
                m.encode(Codec { four_octet_as: four }, &mut out);
                out
            })
        })
        .collect()
}

const EDGE_BYTES: [u8; 8] = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 19];
const EDGE_U16: [u16; 8] = [0, 1, 18, 19, 23, 29, 4096, 0xffff];

/// One mutated input.
pub fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut input = corpus[rng.below(corpus.len())].clone();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = input.len().max(1);
        match rng.below(8) {
            0 => {
                let at = rng.below(len);
                if let Some(b) = input.get_mut(at) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => {
                let at = rng.below(len);
                if let Some(b) = input.get_mut(at) {
                    *b = EDGE_BYTES[rng.below(EDGE_BYTES.len())];
                }
            }
            2 => {
                // A length field (message, withdrawn, attributes) or any aligned pair.
                let at =
                    if rng.below(2) == 0 { [16, 19, 21, 23][rng.below(4)] } else { rng.below(len) };
                let value = EDGE_U16[rng.below(EDGE_U16.len())].to_be_bytes();
                if at + 2 <= input.len() {
                    input[at..at + 2].copy_from_slice(&value);
                }
            }
            3 => input.truncate(rng.below(len)),
            4 => {
                let at = rng.below(len);
                let extra: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next_u64() as u8).collect();
                input.splice(at.min(input.len())..at.min(input.len()), extra);
            }
            5 => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(other.len());
                input.truncate(rng.below(len));
                input.extend_from_slice(&other[cut..]);
            }
            6 => {
                // Random body behind a valid header of a random type and consistent length.
                let body_len = rng.below(200);
                let mut m = vec![0xff; 16];
                m.extend_from_slice(&((19 + body_len) as u16).to_be_bytes());
                m.push(1 + rng.below(6) as u8);
                m.extend((0..body_len).map(|_| rng.next_u64() as u8));
                input = m;
            }
            _ => {
                // Fix the message length to the bytes present, so the body parser is reached.
                let n = input.len() as u16;
                if input.len() >= 18 {
                    input[16..18].copy_from_slice(&n.to_be_bytes());
                }
            }
        }
    }
    input
}

/// An established session (IPv4 and IPv6, four-octet AS) to feed inputs to.
pub fn established_session(now: Instant) -> Session {
    let mut config = SessionConfig::new(64512, 64513, Ipv4Addr::new(10, 0, 0, 1));
    config.next_hop_v4 = Some(Ipv4Addr::new(10, 0, 0, 1));
    config.next_hop_v6 = Some(Ipv6Addr::LOCALHOST);
    let Ok(mut session) = Session::new(config) else { unreachable!("valid fuzz configuration") };
    session.start(now);
    session.connection_up(now);
    let peer = Open {
        my_as: 64513,
        hold_time: 90,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: vec![
            Capability::multiprotocol(Family::Ipv4Unicast),
            Capability::multiprotocol(Family::Ipv6Unicast),
            Capability::FourOctetAs(64513),
        ],
    };
    let mut bytes = Vec::new();
    Message::Open(peer).encode(Codec::default(), &mut bytes);
    Message::Keepalive.encode(Codec::default(), &mut bytes);
    session.receive(&bytes, now);
    while session.poll_event().is_some() {}
    session.poll_transmit();
    session
}

fn check_one(input: &[u8], session: &Session, now: Instant, report: &mut Report) {
    for four_octet_as in [false, true] {
        let codec = Codec { four_octet_as };
        match Message::decode(input, codec) {
            Ok(Some((message, _))) => {
                report.decoded += 1;
                let mut again = Vec::new();
                message.encode(codec, &mut again);
                if !matches!(Message::decode(&again, codec), Ok(Some((m, _))) if m == message) {
                    report.roundtrip_mismatches += 1;
                }
            }
            Ok(None) => report.incomplete += 1,
            Err(e) => {
                *report
                    .rejected
                    .entry((e.notification.code, e.notification.subcode))
                    .or_default() += 1;
            }
        }
    }
    let mut session = session.clone();
    session.receive(input, now);
    if session.state() != State::Established {
        let mut down = false;
        while let Some(event) = session.poll_event() {
            down |= matches!(event, Event::Down(_));
        }
        if down {
            report.session_resets += 1;
        }
    }
}

/// Runs `inputs` fuzz inputs from `seed`.
pub fn run(seed: u64, inputs: u64) -> Report {
    let corpus = corpus();
    let mut rng = Rng::new(seed);
    let now = Instant::now();
    let session = established_session(now);
    let mut report = Report::default();
    for _ in 0..inputs {
        let input = mutate(&mut rng, &corpus);
        report.inputs += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut one = Report::default();
            check_one(&input, &session, now + Duration::from_millis(1), &mut one);
            one
        }));
        match outcome {
            Ok(one) => {
                report.decoded += one.decoded;
                report.incomplete += one.incomplete;
                report.session_resets += one.session_resets;
                report.roundtrip_mismatches += one.roundtrip_mismatches;
                for (k, v) in one.rejected {
                    *report.rejected.entry(k).or_default() += v;
                }
            }
            Err(_) => {
                report.panics += 1;
                if report.panic_inputs.len() < 10 {
                    report.panic_inputs.push(input.iter().map(|b| format!("{b:02x}")).collect());
                }
            }
        }
    }
    report
}
