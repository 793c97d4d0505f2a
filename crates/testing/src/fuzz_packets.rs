//! Fuzzing the per-packet programs (issue 18 item 7) through BPF_PROG_TEST_RUN: frames built to
//! reach the NodePort and frontend paths of both families (TCP, UDP, SCTP, ICMP errors, IPv6
//! extension headers, fragments, VLAN tags), most of them then mutated (bytes flipped, length
//! fields and flags overwritten, truncated, extended with junk), run through
//! `sy_nodeport_xdp`, `sy_nodeport_ingress` and `sy_nodeport_egress` with NodePorts, frontends
//! and SNAT in the maps (one set, as on a node); a third of the frames answer a flow the ingress
//! programs translated earlier (the backend's reply, for the reverse translation). The test's
//! namespace routes the backends and clients through a device declared to run XDP, with
//! permanent neighbours, so the XDP program forwards what it can instead of passing it all on.
//!
//! What must hold: the kernel accepts every run; a frame that came in with valid lengths and
//! checksums and was changed leaves with valid lengths and checksums (IPv4 header, TCP, UDP,
//! ICMP, ICMPv6, SCTP's CRC32c); and every drop has a reason — the `drop_*` counters grow by
//! exactly the number of `TC_ACT_SHOT` and `XDP_DROP` verdicts; and a frame the XDP program
//! passes to TC leaves it untouched (it rewrites only right before `XDP_TX`/`XDP_REDIRECT`, so
//! nothing is translated twice). A generator of our own (as
//! [`crate::fuzz_model`]): it knows the frames' shape, so most inputs get past the parser.
//! The suite runs a short pass (`crates/bpf/tests/fuzz_short.rs`); `cargo run -p
//! switchyard-bpf --example fuzz_packets -- N SEED` runs N frames (docs/datapath.md).

use std::collections::BTreeMap;
use std::net::IpAddr;

use switchyard_bpf::abi::{AF_INET, AF_INET6, PROTO_TCP, PROTO_UDP};

use crate::frames::{self, ICMP, ICMPV6, SCTP, Spec, TCP, UDP, fold, sum16};
use crate::fuzz_model::Rng;
use crate::nodeport_fixture::{
    EGRESS, FAMILIES, INGRESS, NODE_PORT, TC_ACT_SHOT, TcXdp, XDP_DROP, XDP_PASS, settings, sh,
};

/// What a fuzz run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// TC program runs (two per frame: ingress and egress).
    pub runs: u64,
    /// XDP program runs (one per frame, before TC ingress).
    pub xdp_runs: u64,
    /// XDP verdicts and how often.
    pub xdp_verdicts: BTreeMap<u32, u64>,
    /// XDP runs that changed the frame (forwarded it translated).
    pub xdp_changed: u64,
    /// Runs whose input was well formed (valid lengths and checksums).
    pub well_formed_inputs: u64,
    /// Runs that changed the frame (translated, rejected with ICMP, ...).
    pub changed: u64,
    /// Verdicts and how often.
    pub verdicts: BTreeMap<u32, u64>,
    /// Runs BPF_PROG_TEST_RUN refused because the frame's IPv4 / IPv6 header is cut short (the
    /// kernel pulls it before the program runs: such frames cannot be tested this way).
    pub refused_short: u64,
    /// Other runs the kernel refused (BPF_PROG_TEST_RUN failed).
    pub errors: u64,
    /// `drop_*` counters after the run minus before.
    pub drops_counted: u64,
    /// Well-formed inputs that left changed with a bad length or checksum, and frames the XDP
    /// program passed to TC changed.
    pub bad_outputs: u64,
    /// The first failures: input, output, what was wrong (hex).
    pub failures: Vec<String>,
}

impl Report {
    /// `TC_ACT_SHOT` verdicts.
    pub fn shots(&self) -> u64 {
        self.verdicts.get(&TC_ACT_SHOT).copied().unwrap_or(0)
    }

    /// `XDP_DROP` verdicts.
    pub fn xdp_drops(&self) -> u64 {
        self.xdp_verdicts.get(&XDP_DROP).copied().unwrap_or(0)
    }

    /// True when every property held.
    pub fn clean(&self) -> bool {
        self.errors == 0
            && self.bad_outputs == 0
            && self.drops_counted == self.shots() + self.xdp_drops()
    }
}

/// Loads the programs (moving the calling thread into a network namespace of its own), programs
/// the maps and runs `frames` generated frames from `seed` through both programs.
pub fn run(seed: u64, count: u64) -> Report {
    let mut both = TcXdp::new("fuzz-packets", &settings());
    route_through_an_xdp_device(&mut both);
    let TcXdp { tc, xdp: _ } = &mut both;
    for (i, &(family, _node, _client, local, remote)) in (0u32..).zip(FAMILIES.iter()) {
        let backends = [(10 + 2 * i, local, 8080, 0), (11 + 2 * i, remote, 8080, 0)];
        for (j, proto) in (0u32..).zip([PROTO_TCP, PROTO_UDP, SCTP]) {
            tc.frontend(1 + 10 * i + j, None, family, NODE_PORT, proto, 0, &backends);
            tc.frontend(5 + 10 * i + j, Some(frontend(family)), family, 80, proto, 0, &backends);
        }
    }
    let drops = |tc: &crate::nodeport_fixture::Tc| -> u64 {
        tc.pkt.maps().counters().map_or(0, |counters| {
            counters.iter().filter(|(r, _)| r.is_drop()).map(|(_, c)| c.packets).sum()
        })
    };
    let before = drops(tc);
    let mut rng = Rng::new(seed);
    let mut report = Report::default();
    // Translated frames seen, so that replies to them reach the reverse translation.
    let mut flows: Vec<frames::Parsed> = Vec::new();
    for _ in 0..count {
        let generated = match flows.len() {
            0 => generate(&mut rng),
            n if rng.below(3) == 0 => {
                let flow = rng.below(n);
                reply(&mut rng, &flows[flow])
            }
            _ => generate(&mut rng),
        };
        let frame = mutate(&mut rng, generated);
        let well_formed = check(&frame).is_ok();
        xdp_run(&both, &mut report, &frame, well_formed);
        let tc = &both.tc;
        for program in [INGRESS, EGRESS] {
            report.runs += 1;
            report.well_formed_inputs += u64::from(well_formed);
            let Ok((verdict, out)) = tc.try_run(program, &frame) else {
                if ip_header_cut_short(&frame) {
                    report.refused_short += 1;
                } else {
                    report.errors += 1;
                    note(&mut report, &frame, &[], "BPF_PROG_TEST_RUN failed");
                }
                continue;
            };
            *report.verdicts.entry(verdict).or_default() += 1;
            if verdict == TC_ACT_SHOT || out == frame {
                continue;
            }
            report.changed += 1;
            if well_formed && let Err(why) = check(&out) {
                report.bad_outputs += 1;
                note(&mut report, &frame, &out, &format!("{program}: {why}"));
            } else if well_formed && program == INGRESS && unfragmented_ip(&out) {
                let parsed = frames::parse(&out);
                if matches!(parsed.proto, TCP | UDP) {
                    if flows.len() == 64 {
                        flows.swap_remove(rng.below(64));
                    }
                    flows.push(parsed);
                }
            }
        }
    }
    report.drops_counted = drops(&both.tc) - before;
    report
}

/// The XDP program's run of `frame` and its properties: kernel accepts it, a frame passed to
/// TC is untouched, a forwarded well-formed frame leaves with valid lengths and checksums.
fn xdp_run(both: &TcXdp, report: &mut Report, frame: &[u8], well_formed: bool) {
    report.xdp_runs += 1;
    let Ok((verdict, out)) = both.try_run_xdp(frame) else {
        if ip_header_cut_short(frame) {
            report.refused_short += 1;
        } else {
            report.errors += 1;
            note(report, frame, &[], "XDP: BPF_PROG_TEST_RUN failed");
        }
        return;
    };
    *report.xdp_verdicts.entry(verdict).or_default() += 1;
    if verdict == XDP_DROP || out == frame {
        return;
    }
    if verdict == XDP_PASS {
        report.bad_outputs += 1;
        note(report, frame, &out, "XDP: passed to TC changed");
        return;
    }
    report.xdp_changed += 1;
    if well_formed && let Err(why) = check(&out) {
        report.bad_outputs += 1;
        note(report, frame, &out, &format!("XDP: {why}"));
    }
}

/// Backends and clients routed through `sy-out`, a device declared to run the XDP program, with
/// permanent neighbours: the XDP program's route lookups succeed, so it forwards new flows and
/// replies itself (frames enter on loopback under BPF_PROG_TEST_RUN).
fn route_through_an_xdp_device(both: &mut TcXdp) {
    let neighbours = FAMILIES
        .iter()
        .flat_map(|f| [f.3, f.4])
        .chain(["10.244.0.254", "fd00:244::fe"])
        .map(|a| format!("ip neigh add {a} lladdr 02:00:00:00:99:05 dev sy-out nud permanent"))
        .collect::<Vec<_>>()
        .join(" && ");
    sh(&format!(
        "ip link set lo up \
         && ip link add sy-out type veth peer name sy-out-peer \
         && ip link set sy-out-peer up && ip link set sy-out up \
         && ip addr add 10.244.0.1/16 dev sy-out && ip addr add fd00:244::1/32 dev sy-out nodad \
         && {neighbours} \
         && ip route add 192.0.2.0/24 via 10.244.0.254 \
         && ip -6 route add 2001:db8::/64 via fd00:244::fe \
         && echo 1 > /proc/sys/net/ipv4/conf/all/forwarding \
         && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"
    ));
    let ifindex = nix::net::if_::if_nametoindex("sy-out").expect("sy-out's ifindex");
    both.xdp.set_device(ifindex, [0x02, 0, 0, 0, 0, 0x0e]).expect("declaring sy-out an XDP device");
}

fn note(report: &mut Report, input: &[u8], output: &[u8], why: &str) {
    if report.failures.len() < 5 {
        report.failures.push(format!("{why}\n  in:  {input:02x?}\n  out: {output:02x?}"));
    }
}

/// An IPv4 or IPv6 frame that is no fragment and has no extension headers (its transport header
/// follows the fixed header).
fn unfragmented_ip(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x00]) => {
            frame.len() >= 34 && u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff == 0
        }
        Some([0x86, 0xdd]) => frame.len() >= 54 && matches!(frame[20], TCP | UDP),
        _ => false,
    }
}

/// True when the Ethernet type announces IPv4 or IPv6 but the fixed header is not all there.
fn ip_header_cut_short(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x00]) => frame.len() < 14 + 20,
        Some([0x86, 0xdd]) => frame.len() < 14 + 40,
        _ => false,
    }
}

/// The frontend address of `family` (a LoadBalancer IP, say).
fn frontend(family: u8) -> &'static str {
    if family == AF_INET { "10.96.0.10" } else { "fd00:96::10" }
}

/// A frame aimed at what the maps hold, or near it.
fn generate(rng: &mut Rng) -> Vec<u8> {
    let family = if rng.below(2) == 0 { AF_INET } else { AF_INET6 };
    let &(_, node, client, local, remote) =
        FAMILIES.iter().find(|f| f.0 == family).unwrap_or(&FAMILIES[0]);
    let addresses = [node, client, local, remote, frontend(family)];
    let (src, dst) = if rng.below(4) == 0 {
        // A reply from a backend (what egress translates back).
        (addresses[2 + rng.below(2)], addresses[rng.below(2)])
    } else {
        (client, addresses[[0, 0, 4, rng.below(5)][rng.below(4)]])
    };
    let dport = [NODE_PORT, 80, 8080, rng.below(65536) as u16][rng.below(4)];
    let sport = [40_000 + rng.below(1000) as u16, 8080, rng.below(65536) as u16][rng.below(3)];
    let flags =
        [frames::SYN, frames::ACK, frames::RST, frames::FIN | frames::ACK, rng.below(256) as u8];
    let mut spec = match rng.below(7) {
        0..=2 => Spec::tcp(src, sport, dst, dport, flags[rng.below(flags.len())]),
        3..=4 => Spec::udp(src, sport, dst, dport),
        _ => Spec::sctp(
            src,
            sport,
            dst,
            dport,
            [frames::SCTP_INIT, frames::SCTP_DATA, frames::SCTP_ABORT][rng.below(3)],
        ),
    };
    spec.payload.resize(rng.below(1400), 0x5a);
    if spec.proto == SCTP {
        spec.payload.truncate(spec.payload.len() / 4 * 4);
    }
    spec.df = rng.below(2) == 0;
    let frame = spec.frame();
    match rng.below(12) {
        0 => icmp_error(rng, &frame, family),
        1 if family == AF_INET6 => {
            frames::with_ipv6_ext(&frame, &[(frames::IPV6_DSTOPTS, vec![1, 4, 0, 0, 0, 0])])
        }
        2 => frames::vlan_tagged(&frame, rng.below(4095) as u16),
        3 if frame.len() > 200 => {
            let fragments = frames::fragment(&frame, 128, rng.next_u64() as u32);
            fragments[rng.below(fragments.len())].clone()
        }
        _ => frame,
    }
}

/// The backend's answer to a translated frame (what the egress program translates back).
fn reply(rng: &mut Rng, to: &frames::Parsed) -> Vec<u8> {
    let (src, dst) = (to.dst.to_string(), to.src.to_string());
    let spec = if to.proto == TCP {
        let flags =
            [frames::SYN | frames::ACK, frames::ACK, frames::FIN | frames::ACK, frames::RST];
        Spec::tcp(&src, to.dport, &dst, to.sport, flags[rng.below(flags.len())])
    } else {
        Spec::udp(&src, to.dport, &dst, to.sport)
    };
    spec.frame()
}

/// An ICMP error quoting `frame` (a router on the path about a flow).
fn icmp_error(rng: &mut Rng, frame: &[u8], family: u8) -> Vec<u8> {
    let quoted = &frame[14..frame.len().min(14 + 28 + rng.below(40))];
    let (from, to, kind, code) = if family == AF_INET {
        ("192.0.2.1", FAMILIES[0].1, 3, 4)
    } else {
        ("2001:db8::1", FAMILIES[1].1, 2, 0)
    };
    frames::icmp_error(from, to, kind, code, 1400, quoted)
}

/// Leaves 1 in 3 frames as they are; the others get one to three mutations.
fn mutate(rng: &mut Rng, mut frame: Vec<u8>) -> Vec<u8> {
    if rng.below(3) == 0 {
        return frame;
    }
    for _ in 0..1 + rng.below(3) {
        let len = frame.len();
        match rng.below(6) {
            // Any byte.
            0 | 1 => {
                let at = rng.below(len);
                frame[at] = rng.next_u64() as u8;
            }
            // A byte of the headers, where the parser looks.
            2 => {
                let at = rng.below(len.min(80));
                frame[at] ^= 1 << rng.below(8);
            }
            // Truncated (never below an Ethernet header: the kernel refuses those runs).
            3 => frame.truncate(14 + rng.below(len.saturating_sub(14).max(1))),
            // Junk appended.
            4 => frame.extend((0..rng.below(64)).map(|_| rng.next_u64() as u8)),
            // A length or offset field overwritten.
            _ => {
                let at = [16, 17, 18, 19, 20, 21, 14, 38, 39][rng.below(9)].min(len - 1);
                frame[at] = rng.next_u64() as u8;
            }
        }
    }
    frame
}

/// Lengths and checksums of an Ethernet frame carrying IPv4 or IPv6 (other frames pass).
pub fn check(f: &[u8]) -> Result<(), String> {
    let at = |range: std::ops::Range<usize>| f.get(range).ok_or("truncated");
    let ethertype =
        u16::from_be_bytes([f.get(12).copied().unwrap_or(0), f.get(13).copied().unwrap_or(0)]);
    let (src, dst, proto, l4, whole) = match ethertype {
        0x0800 => {
            let ihl = usize::from(at(14..15)?[0] & 0xf) * 4;
            if ihl < 20 {
                return Err(format!("IPv4 header length {ihl}"));
            }
            let ip = at(14..14 + ihl)?;
            if fold(sum16(ip, 0)) != 0 {
                return Err("IPv4 header checksum".into());
            }
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if total != f.len() - 14 {
                return Err(format!("IPv4 total length {total}, frame carries {}", f.len() - 14));
            }
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            let s: [u8; 4] = ip[12..16].try_into().map_err(|_| "address")?;
            let d: [u8; 4] = ip[16..20].try_into().map_err(|_| "address")?;
            (IpAddr::from(s), IpAddr::from(d), ip[9], &f[14 + ihl..], !fragment)
        }
        0x86dd => {
            let fixed = at(14..54)?;
            let len = usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
            if len != f.len() - 54 {
                return Err(format!("IPv6 payload length {len}, frame carries {}", f.len() - 54));
            }
            let s: [u8; 16] = fixed[8..24].try_into().map_err(|_| "address")?;
            let d: [u8; 16] = fixed[24..40].try_into().map_err(|_| "address")?;
            let (mut next, mut offset, mut whole) = (fixed[6], 54, true);
            while matches!(
                next,
                frames::IPV6_HOPOPTS
                    | frames::IPV6_ROUTING
                    | frames::IPV6_DSTOPTS
                    | frames::IPV6_FRAGMENT
            ) {
                let header = at(offset..offset + 8)?;
                if next == frames::IPV6_FRAGMENT {
                    whole = false;
                    next = header[0];
                    offset += 8;
                } else {
                    next = header[0];
                    offset += (usize::from(header[1]) + 1) * 8;
                }
            }
            (IpAddr::from(s), IpAddr::from(d), next, at(offset..f.len())?, whole)
        }
        _ => return Ok(()),
    };
    if !whole {
        return Ok(());
    }
    let ok = match proto {
        TCP | UDP | ICMPV6 => {
            if l4.len() < 8 || (proto == TCP && l4.len() < 20) {
                return Err(format!("transport {proto} of {} bytes", l4.len()));
            }
            if proto == UDP && usize::from(u16::from_be_bytes([l4[4], l4[5]])) != l4.len() {
                return Err("UDP length".into());
            }
            let zero_udp = proto == UDP && l4[6] == 0 && l4[7] == 0;
            if zero_udp && src.is_ipv6() {
                // RFC 8200 §8.1: receivers drop it; the programs leave a zero field alone.
                return Err("IPv6 UDP without a checksum".into());
            }
            zero_udp || fold(sum16(l4, pseudo(src, dst, proto, l4.len()))) == 0
        }
        ICMP => fold(sum16(l4, 0)) == 0,
        SCTP => {
            l4.len() >= 12
                && frames::sctp_crc32c(l4) == u32::from_le_bytes([l4[8], l4[9], l4[10], l4[11]])
        }
        _ => true,
    };
    if ok { Ok(()) } else { Err(format!("checksum of protocol {proto}")) }
}

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let bytes = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    sum16(&bytes(dst), sum16(&bytes(src), 0)) + u32::from(proto) + len as u32
}
