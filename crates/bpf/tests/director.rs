//! The director's XDP program and the nodes' decapsulation under BPF_PROG_TEST_RUN with crafted
//! frames (root): encapsulation formats, the node Maglev picks (the Rust mirror agrees), too-big
//! answers, ICMP errors following their flow, truncated and malformed frames, and on the node
//! side: only directors are decapsulated, the per-packet path sees only the inner packet.
//!
//! Each test runs on a thread moved into a fresh network namespace with a veth pair `up0`/`up1`
//! (the director's uplink, where test frames arrive), permanent neighbours for the nodes and
//! one route with a small MTU.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_testing::{director_fixture, frames};

use std::{collections::BTreeSet, net::IpAddr};

use aya::programs::{TestRun, TestRunOptions};
use director_fixture::*;
use frames::*;
use switchyard_bpf::{
    abi::FrontendKey,
    decap::{DecapDatapath, DecapReason},
    director::*,
};
use switchyard_maglev::{FlowKey, Seed};
use switchyard_testing::BpfDir;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const TCX_NEXT: u32 = u32::MAX; // -1
const TC_ACT_SHOT: u32 = 2;

fn flow(src: &str, sport: u16, dst: &str, dport: u16, protocol: u8) -> FlowKey {
    FlowKey {
        source: src.parse().unwrap(),
        destination: dst.parse().unwrap(),
        source_port: sport,
        destination_port: dport,
        protocol,
    }
}

/// The outer headers of an encapsulated frame, checked.
#[derive(Debug)]
struct Outer {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    /// The GUE header, if any.
    gue: Option<[u8; 4]>,
    inner: Vec<u8>,
}

fn outer(frame: &[u8]) -> Outer {
    outer_to(frame, &NEIGH_MAC)
}

/// [`outer`] of a frame whose next hop has the MAC address `mac`.
fn outer_to(frame: &[u8], mac: &[u8; 6]) -> Outer {
    assert_eq!(&frame[..6], mac, "destination MAC: the node's neighbour entry");
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (src, dst, proto, l4) = match ethertype {
        0x0800 => {
            let ip = &frame[14..34];
            assert_eq!(ip[0], 0x45);
            assert_eq!(fold(sum16(ip, 0)), 0, "outer IPv4 header checksum");
            assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), frame.len() - 14);
            assert_eq!(ip[6] & 0x40, 0x40, "outer DF");
            let s: [u8; 4] = ip[12..16].try_into().unwrap();
            let d: [u8; 4] = ip[16..20].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d), ip[9], 34)
        }
        0x86dd => {
            let ip = &frame[14..54];
            assert_eq!(ip[0] >> 4, 6);
            assert_eq!(usize::from(u16::from_be_bytes([ip[4], ip[5]])), frame.len() - 54);
            let s: [u8; 16] = ip[8..24].try_into().unwrap();
            let d: [u8; 16] = ip[24..40].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d), ip[6], 54)
        }
        other => panic!("outer ethertype {other:#x}"),
    };
    if proto != UDP {
        return Outer {
            src,
            dst,
            proto,
            sport: 0,
            dport: 0,
            gue: None,
            inner: frame[l4..].to_vec(),
        };
    }
    let udp = &frame[l4..l4 + 8];
    assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), frame.len() - l4, "UDP length");
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let payload = &frame[l4 + 8..];
    let (gue, inner) = if payload[0] >> 6 == 0 {
        (Some(payload[..4].try_into().unwrap()), payload[4..].to_vec())
    } else {
        (None, payload.to_vec())
    };
    Outer { src, dst, proto, sport, dport, gue, inner }
}

fn node_ip(id: u32) -> IpAddr {
    NODES.iter().find(|(n, _)| *n == id).unwrap().1.parse().unwrap()
}

#[test]
fn gue_sends_each_flow_to_the_node_maglev_picks() {
    let mut d = Director::new("dir-gue", ENCAP_GUE);
    let table = d.vip(1, VIP4, 80, TCP, &[1, 2, 3]);
    let mut seen = BTreeSet::new();
    for sport in 40_000..40_064u16 {
        let frame = Spec::tcp(CLIENT4, sport, VIP4, 80, SYN).frame();
        let (rc, out) = d.run(&frame);
        assert_eq!(rc, XDP_TX, "back out of up0, towards the node");
        let o = outer(&out);
        let f = flow(CLIENT4, sport, VIP4, 80, TCP);
        let hash = f.hash(&Seed::DEFAULT).unwrap();
        let backend = table.backend_of_slot(table.slot_for_hash(hash)).unwrap();
        let expected: u32 = backend.identity_text()[1..].parse().unwrap();
        assert_eq!(o.dst, node_ip(expected), "the table's node for sport {sport}");
        assert_eq!(o.src, DIRECTOR4.parse::<IpAddr>().unwrap());
        assert_eq!((o.proto, o.dport), (UDP, GUE_PORT_DEFAULT));
        assert_eq!(o.sport, 0xc000 | ((hash >> 32) as u16 & 0x3fff), "source port from the hash");
        assert_eq!(o.gue, Some([0, 4, 0, 0]), "GUE variant 0, inner IPv4");
        assert_eq!(o.inner, without_ethernet(&frame), "inner packet untouched");
        let lookup = d.dp.maps().lookup(&f).unwrap().unwrap();
        assert_eq!(lookup.node.unwrap().1.ip(), o.dst, "the Rust mirror agrees");
        seen.insert(o.dst);
    }
    assert_eq!(seen.len(), 3, "64 flows spread over all three nodes");
    assert_eq!(d.count(DirReason::EncapGue), 64);
    assert_eq!(d.dp.maps().vip_counter(1).unwrap().packets, 64);
}

#[test]
fn fou_and_ipip_carry_the_inner_packet_directly() {
    for (encap, proto) in [(ENCAP_FOU, UDP), (ENCAP_IPIP, 4)] {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut d = Director::new("dir-fou", encap);
            d.vip(1, VIP4, 53, UDP, &[2]);
            let frame = Spec::udp(CLIENT4, 5353, VIP4, 53).frame();
            let (rc, out) = d.run(&frame);
            tx.send((rc, outer(&out), without_ethernet(&frame))).unwrap();
        });
        let (rc, o, inner) = rx.recv().unwrap();
        assert_eq!(rc, XDP_TX);
        assert_eq!(o.proto, proto);
        assert_eq!(o.dst, node_ip(2));
        assert!(o.gue.is_none(), "no GUE header for FOU / IPIP");
        assert_eq!(o.inner, inner);
    }
}

#[test]
fn ipv6_vips_go_in_ipv6_and_ipv4_vips_to_ipv6_nodes_too() {
    let mut d = Director::new("dir-v6", ENCAP_GUE);
    d.vip(1, VIP6, 443, TCP, &[5]);
    d.vip(2, VIP4, 443, TCP, &[5]);
    let v6 = Spec::tcp(CLIENT6, 40_000, VIP6, 443, SYN).frame();
    let (rc, out) = d.run(&v6);
    assert_eq!(rc, XDP_TX);
    let o = outer(&out);
    assert_eq!((o.src, o.dst), (DIRECTOR6.parse().unwrap(), node_ip(5)));
    assert_eq!(o.gue, Some([0, 41, 0, 0]), "inner IPv6");
    assert_eq!(o.inner, without_ethernet(&v6));
    let v4 = Spec::tcp(CLIENT4, 40_000, VIP4, 443, SYN).frame();
    let (rc, out) = d.run(&v4);
    assert_eq!(rc, XDP_TX);
    let o = outer(&out);
    assert_eq!(o.dst, node_ip(5), "IPv4-in-IPv6");
    assert_eq!(o.gue, Some([0, 4, 0, 0]));
    assert_eq!(o.inner, without_ethernet(&v4));
}

#[test]
fn other_traffic_passes_untouched() {
    let mut d = Director::new("dir-pass", ENCAP_GUE);
    d.vip(1, VIP4, 80, TCP, &[1]);
    for frame in [
        Spec::tcp(CLIENT4, 40_000, VIP4, 81, SYN).frame(),
        Spec::udp(CLIENT4, 40_000, VIP4, 80).frame(),
        Spec::tcp(CLIENT4, 40_000, "192.0.2.11", 80, SYN).frame(),
        vec![0u8; 14],
    ] {
        assert_eq!(d.run(&frame), (XDP_PASS, frame.clone()));
    }
}

#[test]
fn truncated_and_fragmented_packets_are_counted_and_passed() {
    let mut d = Director::new("dir-malformed", ENCAP_GUE);
    d.vip(1, VIP4, 80, TCP, &[1]);
    let full = Spec::tcp(CLIENT4, 40_000, VIP4, 80, SYN).frame();
    let truncated = full[..14 + 20 + 2].to_vec();
    assert_eq!(d.run(&truncated).0, XDP_PASS);
    assert_eq!(d.count(DirReason::PassMalformed), 1);
    let mut fragment = full.clone();
    fragment[14 + 6] = 0x20; // MF
    assert_eq!(d.run(&fragment).0, XDP_PASS);
    assert_eq!(d.count(DirReason::PassFragment), 1);
    let mut bad_ihl = full;
    bad_ihl[14] = 0x44;
    assert_eq!(d.run(&bad_ihl).0, XDP_PASS, "IHL below 5 is not an IP packet we parse");
    assert_eq!(d.count(DirReason::EncapGue), 0);
}

#[test]
fn a_vip_without_nodes_or_source_drops_and_counts() {
    let mut d =
        Director::with_settings("dir-drops", &DirSettings { source6: None, ..settings(ENCAP_GUE) });
    let key = FrontendKey::new(VIP4.parse().unwrap(), 80, TCP, 0);
    d.dp.maps_mut().put_vip(key, DirVip { id: 1, table_id: 0 }).unwrap();
    assert_eq!(d.run(&Spec::tcp(CLIENT4, 1, VIP4, 80, SYN).frame()).0, XDP_DROP);
    assert_eq!(d.count(DirReason::DropNoNode), 1);
    d.vip(2, VIP6, 80, TCP, &[5]);
    assert_eq!(d.run(&Spec::tcp(CLIENT6, 1, VIP6, 80, SYN).frame()).0, XDP_DROP);
    assert_eq!(d.count(DirReason::DropNoSource), 1, "no IPv6 director address configured");
}

/// Node entries are an array indexed by id: an unused id reads as all zero (family 0) and one
/// beyond the array finds nothing; both are a missing node, dropped and counted, never sent.
/// The same for tables (an array of maps).
#[test]
fn unused_or_removed_node_and_table_ids_drop_and_count() {
    let mut d = Director::new("dir-node-missing", ENCAP_GUE);
    d.vip(1, VIP4, 80, TCP, &[7]);
    d.dp.maps_mut().delete_node(1).unwrap();
    d.vip(2, VIP4, 81, TCP, &[1]);
    let beyond = d.dp.maps().nodes.len() + 10;
    d.dp.maps_mut().put_table(3, &vec![beyond; M as usize]).unwrap();
    let key = FrontendKey::new(VIP4.parse().unwrap(), 82, TCP, 0);
    d.dp.maps_mut().put_vip(key, DirVip { id: 3, table_id: 3 }).unwrap();
    for (n, port) in [80u16, 81, 82].into_iter().enumerate() {
        let (rc, _) = d.run(&Spec::tcp(CLIENT4, 40_000, VIP4, port, SYN).frame());
        assert_eq!(rc, XDP_DROP, "port {port}");
        assert_eq!(d.count(DirReason::DropNodeMissing), n as u64 + 1);
        let lookup = d.dp.maps().lookup(&flow(CLIENT4, 40_000, VIP4, port, TCP)).unwrap().unwrap();
        assert_eq!(lookup.node, None, "the Rust mirror finds no node either");
    }
    assert_eq!(d.count(DirReason::EncapGue), 0);
    for id in [1, 2, 3] {
        assert_eq!(d.dp.maps().vip_counter(id).unwrap().packets, 0, "VIP {id} sent nothing");
    }
    // Tables are an array of maps indexed by id: a cleared slot and an id beyond the array
    // find no table.
    d.dp.maps_mut().delete_table(2).unwrap();
    assert_eq!(d.dp.maps().table_ids().unwrap(), [1, 3], "slot 2 cleared");
    let key = FrontendKey::new(VIP4.parse().unwrap(), 83, TCP, 0);
    let beyond = d.dp.maps().tables.len() + 1;
    d.dp.maps_mut().put_vip(key, DirVip { id: 4, table_id: beyond }).unwrap();
    for (n, port) in [81u16, 83].into_iter().enumerate() {
        let (rc, _) = d.run(&Spec::tcp(CLIENT4, 40_000, VIP4, port, SYN).frame());
        assert_eq!(rc, XDP_DROP, "port {port}");
        assert_eq!(d.count(DirReason::DropTableMissing), n as u64 + 1);
        let lookup = d.dp.maps().lookup(&flow(CLIENT4, 40_000, VIP4, port, TCP)).unwrap().unwrap();
        assert_eq!((lookup.slot, lookup.node), (None, None), "the Rust mirror finds no table");
    }
}

/// The next hop and the outer header template are cached per CPU for 100 ms (c/lib/encap.h):
/// a new director address or encapsulation applies at once (the address is part of the
/// cache's tag; lengths, protocol and IPv4 checksum are written per packet), a neighbour's new
/// MAC address once the entry has expired.
#[test]
fn the_cached_outer_header_follows_config_and_neighbour_changes() {
    fn send(d: &Director, frame: &[u8], mac: &[u8; 6]) -> Outer {
        let (rc, out) = d.run(frame);
        assert_eq!(rc, XDP_TX);
        let o = outer_to(&out, mac);
        assert_eq!(o.inner, frame[14..], "the inner packet untouched");
        o
    }
    let mut d = Director::new("dir-route-cache", ENCAP_GUE);
    d.vip(1, VIP4, 80, TCP, &[1]);
    d.vip(2, VIP6, 80, TCP, &[5]);
    let v4 = Spec::tcp(CLIENT4, 40_000, VIP4, 80, ACK).frame();
    let v6 = Spec::tcp(CLIENT6, 40_000, VIP6, 80, ACK).frame();
    for (frame, src, dst) in [(&v4, DIRECTOR4, "10.0.0.1"), (&v6, DIRECTOR6, "fd00::1")] {
        let o = send(&d, frame, &NEIGH_MAC);
        assert_eq!((o.src, o.dst, o.proto), (src.parse().unwrap(), dst.parse().unwrap(), UDP));
        assert!(o.gue.is_some());
    }
    let moved = DirSettings {
        source4: Some("10.0.0.101".parse().unwrap()),
        source6: Some("fd00::101".parse().unwrap()),
        ..settings(ENCAP_IPIP)
    };
    d.dp.maps_mut().set_config(&moved).unwrap();
    for (frame, src, proto) in [(&v4, "10.0.0.101", 4), (&v6, "fd00::101", 41)] {
        let o = send(&d, frame, &NEIGH_MAC);
        assert_eq!((o.src, o.proto), (src.parse().unwrap(), proto), "at once, IPIP");
    }
    let new_mac = [0x02, 0, 0, 0, 0, 0x0b];
    for ip in ["10.0.0.1", "fd00::1"] {
        sh(&format!("neigh replace {ip} lladdr 02:00:00:00:00:0b dev up0 nud permanent"));
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    for (frame, dst) in [(&v4, "10.0.0.1"), (&v6, "fd00::1")] {
        let o = send(&d, frame, &new_mac);
        assert_eq!(o.dst, dst.parse::<IpAddr>().unwrap());
    }
    assert_eq!(d.count(DirReason::EncapIpip), 4);
    assert_eq!(d.count(DirReason::EncapGue), 2);
}

#[test]
fn too_big_once_encapsulated_answers_with_the_inner_mtu() {
    let mut d = Director::new("dir-mtu", ENCAP_GUE);
    d.vip(1, VIP4, 80, TCP, &[4]); // node 4: route MTU 1300
    let mut spec = Spec::tcp(CLIENT4, 40_000, VIP4, 80, ACK);
    spec.payload = vec![7; 1300 - 40];
    let frame = spec.frame();
    let (rc, out) = d.run(&frame);
    assert_eq!(rc, XDP_TX, "answered back out where it came from");
    let p = parse(&out);
    assert_eq!(p.icmp(), (3, 4, 1300 - 32), "frag-needed, MTU 1300 minus 20+8+4");
    assert_eq!((p.src, p.dst), (VIP4.parse().unwrap(), CLIENT4.parse().unwrap()));
    assert_eq!(p.quoted().sport, 40_000);
    assert_eq!(d.count(DirReason::FragNeeded), 1);
    // One byte less than the limit fits.
    let mut fits = Spec::tcp(CLIENT4, 40_000, VIP4, 80, ACK);
    fits.payload = vec![7; 1300 - 32 - 40];
    assert_eq!(d.run(&fits.frame()).0, XDP_TX);
}

#[test]
fn icmp_errors_about_a_vip_flow_follow_the_flow() {
    let mut d = Director::new("dir-icmp", ENCAP_GUE);
    d.vip(1, VIP4, 80, TCP, &[1, 2, 3]);
    for sport in 40_000..40_016u16 {
        let data = Spec::tcp(CLIENT4, sport, VIP4, 80, ACK).frame();
        let node = outer(&d.run(&data).1).dst;
        // A router on the client's path says the VIP's reply was too big.
        let reply = without_ethernet(&Spec::tcp(VIP4, 80, CLIENT4, sport, ACK).frame());
        let error = icmp_error("203.0.113.1", VIP4, 3, 4, 1400, &reply);
        let (rc, out) = d.run(&error);
        assert_eq!(rc, XDP_TX);
        let o = outer(&out);
        assert_eq!(o.dst, node, "the error goes to the node of flow {sport}");
        assert_eq!(o.inner, without_ethernet(&error));
    }
    assert_eq!(d.count(DirReason::IcmpToNode), 16);
}

/// The node side: the decapsulation program on its own and in front of the per-packet path.
mod decap {
    use super::*;

    const GUE_NODE: &str = "10.0.0.1";

    fn decap(test: &str) -> (DecapDatapath, BpfDir) {
        switchyard_testing::nodeport_fixture::enter_private_netns();
        let bpf = BpfDir::new(test);
        let directors = BTreeSet::from([DIRECTOR4.parse().unwrap(), DIRECTOR6.parse().unwrap()]);
        let dp = DecapDatapath::load(bpf.path(), &directors, GUE_PORT_DEFAULT).unwrap();
        (dp, bpf)
    }

    fn run(dp: &DecapDatapath, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; 4096];
        let result = dp
            .program()
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .unwrap();
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    /// [`run`] with `skb_shinfo->gso_segs` set as GRO leaves it on a merged packet (struct
    /// __sk_buff up to `gso_segs`, offset 164; the test run takes no gso_size without a GSO
    /// type, so the segment size stays 0).
    fn run_gso_segs(dp: &DecapDatapath, frame: &[u8], gso_segs: u32) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; 4096];
        let mut ctx = [0u8; 168];
        ctx[164..168].copy_from_slice(&gso_segs.to_ne_bytes());
        let result = dp
            .program()
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .unwrap();
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    #[test]
    fn gro_merged_packets_are_counted_as_such() {
        let (dp, _bpf) = decap("decap-gro");
        let inner = without_ethernet(&Spec::tcp(CLIENT4, 40_000, VIP4, 80, ACK).frame());
        let frame = wrapped(DIRECTOR4, GUE_NODE, ENCAP_IPIP, &inner);
        for segs in [0, 1, 4] {
            let (rc, out) = run_gso_segs(&dp, &frame, segs);
            assert_eq!((rc, &out[14..]), (TCX_NEXT, &inner[..]), "gso_segs {segs}");
        }
        let counters = dp.maps().counters().unwrap();
        assert_eq!(counters[&DecapReason::Ipip].packets, 3);
        assert_eq!(counters[&DecapReason::GroMerged].packets, 1, "only gso_segs 4 is merged");
    }

    /// `inner` (an IP packet) wrapped like the director does, from `from`.
    fn wrapped(from: &str, to: &str, encap: u8, inner: &[u8]) -> Vec<u8> {
        let inner_v4 = inner[0] >> 4 == 4;
        let mut payload = Vec::new();
        let proto = match encap {
            ENCAP_IPIP => {
                payload.extend_from_slice(inner);
                if inner_v4 { 4 } else { 41 }
            }
            _ => {
                let mut udp = Vec::new();
                udp.extend_from_slice(&0xc123u16.to_be_bytes());
                udp.extend_from_slice(&GUE_PORT_DEFAULT.to_be_bytes());
                let gue_len = if encap == ENCAP_GUE { 4 } else { 0 };
                udp.extend_from_slice(&((8 + gue_len + inner.len()) as u16).to_be_bytes());
                udp.extend_from_slice(&[0, 0]);
                if encap == ENCAP_GUE {
                    udp.extend_from_slice(&[0, if inner_v4 { 4 } else { 41 }, 0, 0]);
                }
                udp.extend_from_slice(inner);
                payload = udp;
                UDP
            }
        };
        ip_frame(from.parse().unwrap(), to.parse().unwrap(), proto, &payload, true)
    }

    #[test]
    fn every_encapsulation_from_a_director_is_stripped() {
        let (dp, _bpf) = decap("decap-ok");
        let inner4 = without_ethernet(&Spec::tcp(CLIENT4, 40_000, VIP4, 80, SYN).frame());
        let inner6 = without_ethernet(&Spec::tcp(CLIENT6, 40_000, VIP6, 80, SYN).frame());
        for (encap, reason) in [
            (ENCAP_GUE, DecapReason::Gue),
            (ENCAP_FOU, DecapReason::Fou),
            (ENCAP_IPIP, DecapReason::Ipip),
        ] {
            for (from, to) in [(DIRECTOR4, GUE_NODE), (DIRECTOR6, "fd00::1")] {
                for inner in [&inner4, &inner6] {
                    let before = dp.maps().counters().unwrap()[&reason].packets;
                    let (rc, out) = run(&dp, &wrapped(from, to, encap, inner));
                    assert_eq!(rc, TCX_NEXT, "on to the per-packet path");
                    assert_eq!(&out[14..], &inner[..], "{encap} from {from}: the inner packet");
                    let ethertype = if inner[0] >> 4 == 4 { 0x0800u16 } else { 0x86dd };
                    assert_eq!(
                        &out[12..14],
                        &ethertype.to_be_bytes(),
                        "Ethernet type of the inner"
                    );
                    assert_eq!(dp.maps().counters().unwrap()[&reason].packets, before + 1);
                }
            }
        }
    }

    #[test]
    fn gue_optional_fields_are_skipped() {
        let (dp, _bpf) = decap("decap-hlen");
        let inner = without_ethernet(&Spec::udp(CLIENT4, 1, VIP4, 53).frame());
        let mut frame = wrapped(DIRECTOR4, GUE_NODE, ENCAP_GUE, &inner);
        // hlen 1: one 32-bit word of optional fields after the GUE header.
        let gue = 14 + 20 + 8;
        frame[gue] = 1;
        frame.splice(gue + 4..gue + 4, [0xaa, 0xbb, 0xcc, 0xdd]);
        let (rc, out) = run(&dp, &frame);
        assert_eq!(rc, TCX_NEXT);
        assert_eq!(&out[14..], &inner[..]);
    }

    #[test]
    fn encapsulated_packets_from_others_are_dropped_and_counted() {
        let (dp, _bpf) = decap("decap-others");
        let inner = without_ethernet(&Spec::tcp(CLIENT4, 40_000, VIP4, 80, SYN).frame());
        for encap in [ENCAP_GUE, ENCAP_FOU, ENCAP_IPIP] {
            let (rc, _) = run(&dp, &wrapped("10.9.9.9", GUE_NODE, encap, &inner));
            assert_eq!(rc, TC_ACT_SHOT);
        }
        assert_eq!(dp.maps().counters().unwrap()[&DecapReason::DropNotDirector].packets, 3);
    }

    #[test]
    fn garbage_from_a_director_is_dropped_and_counted() {
        let (dp, _bpf) = decap("decap-garbage");
        let inner = without_ethernet(&Spec::tcp(CLIENT4, 40_000, VIP4, 80, SYN).frame());
        let gue = 14 + 20 + 8;
        let mut control = wrapped(DIRECTOR4, GUE_NODE, ENCAP_GUE, &inner);
        control[gue] = 0x20; // C bit: a control message
        let mut wrong_version = wrapped(DIRECTOR4, GUE_NODE, ENCAP_GUE, &inner);
        wrong_version[gue + 4] = 0x65; // says IPv4, holds "6"
        let truncated = wrapped(DIRECTOR4, GUE_NODE, ENCAP_GUE, &inner)[..gue + 2].to_vec();
        for frame in [control, wrong_version, truncated] {
            assert_eq!(run(&dp, &frame).0, TC_ACT_SHOT);
        }
        assert_eq!(dp.maps().counters().unwrap()[&DecapReason::DropMalformed].packets, 3);
    }

    #[test]
    fn other_traffic_goes_on_untouched() {
        let (dp, _bpf) = decap("decap-pass");
        for frame in [
            Spec::tcp(CLIENT4, 40_000, VIP4, 80, SYN).frame(),
            Spec::udp(DIRECTOR4, 1, GUE_NODE, 6081).frame(),
            vec![0u8; 14],
        ] {
            assert_eq!(run(&dp, &frame), (TCX_NEXT, frame.clone()));
        }
    }

    /// Decapsulation runs first, so the per-packet path (NodePort, SNAT, conntrack) never sees
    /// an outer header: here a NodePort on the GUE port itself would otherwise have translated
    /// the tunnel packet (shown by running the per-packet program on it alone).
    #[test]
    fn the_per_packet_path_never_translates_outer_headers() {
        use switchyard_bpf::{
            Datapath, LoadOptions,
            abi::{BE_LOCAL, Backend, FE_NODEPORT, Frontend, NodeAddrKey, SlotKey},
            nodeport::{PacketDatapath, PacketMapSizes, PacketSettings},
        };
        let (dp, bpf) = decap("decap-chain");
        let mut options = LoadOptions::new(bpf.path());
        options.sizes = switchyard_testing::socket_probe::small_sizes();
        options.maglev_table_size = 251;
        let mut sock = Datapath::load(&options).unwrap();
        let pkt =
            PacketDatapath::load(&options, PacketMapSizes::default(), &PacketSettings::default())
                .unwrap();
        let maps = sock.maps_mut();
        maps.node_addrs.insert(NodeAddrKey::new(GUE_NODE.parse().unwrap()), 0, 0).unwrap();
        // Backend 1: the pod behind the VIP; backend 2: behind a NodePort on UDP 6080.
        maps.backends
            .insert(1, Backend::new("10.1.0.5".parse().unwrap(), 8080, BE_LOCAL), 0)
            .unwrap();
        maps.backends
            .insert(2, Backend::new("10.1.0.9".parse().unwrap(), 9999, BE_LOCAL), 0)
            .unwrap();
        for (id, key, flags, backend) in [
            (1, FrontendKey::new(VIP4.parse().unwrap(), 80, TCP, 0), 0, 1),
            (2, FrontendKey::node_port(2, GUE_PORT_DEFAULT, UDP, 0), FE_NODEPORT, 2),
        ] {
            maps.slots.insert(SlotKey { frontend_id: id, slot: 0 }, backend, 0).unwrap();
            let fe = Frontend { id, flags, backend_count: 1, affinity_timeout_s: 0 };
            maps.frontends.insert(key, fe, 0).unwrap();
        }
        let run_pkt = |frame: &[u8]| {
            let mut out = vec![0u8; 4096];
            let r = pkt
                .program("sy_nodeport_ingress")
                .unwrap()
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    data_out: Some(&mut out),
                    ..TestRunOptions::default()
                })
                .unwrap();
            out.truncate(r.data_size_out as usize);
            out
        };
        let inner = without_ethernet(&Spec::tcp(CLIENT4, 40_000, VIP4, 80, SYN).frame());
        let tunnel = wrapped(DIRECTOR4, GUE_NODE, ENCAP_GUE, &inner);

        let alone = parse(&run_pkt(&tunnel));
        assert_eq!((alone.dst, alone.dport), ("10.1.0.9".parse().unwrap(), 9999), "the hazard");

        let (rc, decapsulated) = run(&dp, &tunnel);
        assert_eq!(rc, TCX_NEXT);
        let p = parse(&run_pkt(&decapsulated));
        assert_eq!(p.proto, TCP, "the inner TCP packet, no UDP outer left");
        assert_eq!((p.dst, p.dport), ("10.1.0.5".parse().unwrap(), 8080), "VIP translated");
        assert_eq!((p.src, p.sport), (CLIENT4.parse().unwrap(), 40_000), "client kept (DSR)");
    }
}

/// The flow hash's state the program keeps per VIP (`struct sy_flow_prefix`) follows the
/// seed: `set_config` with a new seed rewrites every VIP's prefix, and a prefix left from
/// another seed (config written behind `DirMaps`'s back) is not used: the program hashes from
/// scratch and still picks the node `explain`'s mirror picks, until the prefixes are refreshed.
/// Checked through the hash bits the outer headers carry (GUE source port: bits 32..46;
/// IPv6 flow label: bits 40..60) and, for IPv4, the node over three.
#[test]
fn the_vips_flow_hash_prefix_follows_the_seed() {
    fn check(d: &Director, seed: &Seed, what: &str) {
        for sport in 40_000..40_032u16 {
            for (client, vip) in [(CLIENT4, VIP4), (CLIENT6, VIP6)] {
                let frame = Spec::tcp(client, sport, vip, 80, ACK).frame();
                let (rc, out) = d.run(&frame);
                assert_eq!(rc, XDP_TX, "{what}");
                let o = outer(&out);
                let f = flow(client, sport, vip, 80, TCP);
                let hash = f.hash(seed).unwrap();
                assert_eq!(o.sport, 0xc000 | ((hash >> 32) as u16 & 0x3fff), "{what}: {f:?}");
                let lookup = d.dp.maps().lookup(&f).unwrap().unwrap();
                assert_eq!(lookup.hash, hash, "{what}: the mirror hashes under the config's seed");
                assert_eq!(lookup.node.unwrap().1.ip(), o.dst, "{what}: the mirror agrees");
                if o.dst.is_ipv6() {
                    let label = u32::from_be_bytes([0, out[15] & 0xf, out[16], out[17]]);
                    assert_eq!(label, (hash >> 40) as u32 & 0xfffff, "{what}: {f:?}");
                }
            }
        }
    }
    fn prefixes_made_under(d: &Director, seed: &Seed) -> usize {
        let entries = d.dp.maps().vip_map_entries().unwrap();
        assert_eq!(entries.len(), 2);
        for (key, entry) in &entries {
            if entry.hash == FlowPrefixEntry::new(seed, key) {
                continue;
            }
            return 0;
        }
        entries.len()
    }
    let mut d = Director::new("dir-prefix-seed", ENCAP_GUE);
    d.vip(1, VIP4, 80, TCP, &[1, 2, 3]);
    d.vip(2, VIP6, 80, TCP, &[5]);
    assert_eq!(prefixes_made_under(&d, &Seed::DEFAULT), 2);
    check(&d, &Seed::DEFAULT, "default seed");

    let second = Seed::from_bytes(*b"another seed 123");
    d.dp.maps_mut().set_config(&DirSettings { seed: second, ..settings(ENCAP_GUE) }).unwrap();
    assert_eq!(prefixes_made_under(&d, &second), 2, "set_config rewrote both prefixes");
    check(&d, &second, "a seed set through set_config");

    // Behind DirMaps's back: the config has a third seed, the VIPs still the second's prefix.
    let third = Seed::from_bytes(*b"a third seed 456");
    let config = DirConfig {
        vip_slot_shift: d.dp.maps().vip_slot_shift(),
        ..DirSettings { seed: third, ..settings(ENCAP_GUE) }.to_config()
    };
    d.dp.maps_mut().config.set(0, config, 0).unwrap();
    assert_eq!(prefixes_made_under(&d, &second), 2, "the prefixes are stale");
    check(&d, &third, "stale prefixes (hashed from scratch)");
    assert_eq!(d.dp.maps_mut().refresh_flow_prefixes().unwrap(), 2);
    assert_eq!(prefixes_made_under(&d, &third), 2, "refreshed");
    assert_eq!(d.dp.maps_mut().refresh_flow_prefixes().unwrap(), 0, "nothing left to refresh");
    check(&d, &third, "refreshed prefixes");
    assert_eq!(d.count(DirReason::EncapGue), 4 * 64);
}
