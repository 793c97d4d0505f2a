//! The second chance (issue 17) under BPF_PROG_TEST_RUN with crafted frames (root): the
//! director carries the slot's previous node in GUE private data (TCP and UDP, only where the
//! slot changed node); a node keeps what it holds (conntrack entry, local socket), TCP SYNs and
//! TCP packets re-sent once already, and re-sends anything else to the previous node, which
//! returns a UDP packet it does not hold either (a new flow of the chosen node); bad options
//! are dropped or ignored, counted.
//!
//! Each test runs on a thread moved into a fresh network namespace (the director fixture's:
//! `up0` with permanent neighbours for 10.0.0.1-3 and fd00::1).

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::{collections::BTreeSet, net::IpAddr};

use switchyard_bpf::{decap::DecapReason, director::*};
use switchyard_maglev::{FlowKey, Seed};
use switchyard_testing::{director_fixture::*, frames::*};

const XDP_TX: u32 = 3;
const TCX_NEXT: u32 = u32::MAX; // -1
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const AF_INET: u8 = 2;

/// The GUE payload of an encapsulated frame: (hlen, private data, inner packet).
fn gue_parts(frame: &[u8]) -> (u8, Vec<u8>, Vec<u8>) {
    let l4 = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => {
            let ip = &frame[14..34];
            assert_eq!(fold(sum16(ip, 0)), 0, "outer IPv4 header checksum");
            assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), frame.len() - 14);
            34
        }
        0x86dd => {
            assert_eq!(usize::from(u16::from_be_bytes([frame[18], frame[19]])), frame.len() - 54);
            54
        }
        other => panic!("outer ethertype {other:#x}"),
    };
    let udp = &frame[l4..l4 + 8];
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), GUE_PORT_DEFAULT);
    assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), frame.len() - l4, "UDP length");
    assert_eq!(&udp[6..8], &[0, 0], "UDP checksum 0");
    let gue = &frame[l4 + 8..];
    assert_eq!(gue[0] >> 5, 0, "GUE variant 0, data");
    assert_eq!(&gue[2..4], &[0, 0], "GUE flags 0: the optional words are private data");
    let hlen = gue[0] & 0x1f;
    let end = 4 + 4 * usize::from(hlen);
    (hlen, gue[4..end].to_vec(), gue[end..].to_vec())
}

fn outer_dst(frame: &[u8]) -> IpAddr {
    if frame[12..14] == [0x08, 0x00] {
        IpAddr::from(<[u8; 4]>::try_from(&frame[30..34]).unwrap())
    } else {
        IpAddr::from(<[u8; 16]>::try_from(&frame[38..54]).unwrap())
    }
}

#[test]
fn the_director_names_the_previous_node_of_moved_tcp_and_udp_slots_only() {
    let mut d = Director::new("sc-dir", ENCAP_GUE);
    sh("neigh replace fd00::2 lladdr 02:00:00:00:00:0a dev up0 nud permanent");
    d.dp.maps_mut().put_node(6, DirNode::new("fd00::2".parse().unwrap())).unwrap();
    // Tables 1 (TCP), 2 (UDP) over nodes 1-3 and 3 (TCP, IPv6) over nodes 5, 6. Previous
    // nodes: node 2 where node 1 or 3 is now (as if node 2 had held every slot), node 5 in
    // table 3, and in one slot of table 1 an IPv6 node (another family: not sent).
    let t4 = d.vip(1, VIP4, 80, TCP, &[1, 2, 3]);
    let tu = d.vip(2, VIP4, 53, UDP, &[1, 2, 3]);
    let t6 = d.vip(3, VIP6, 80, TCP, &[5, 6]);
    let node_of = |t: &switchyard_maglev::Table, slot: usize| -> u32 {
        t.backend_of_slot(slot).unwrap().identity_text()[1..].parse().unwrap()
    };
    let mut prev4: Vec<u32> =
        (0..M as usize).map(|s| if node_of(&t4, s) == 2 { 0 } else { 2 }).collect();
    let mixed_slot = (0..M as usize).find(|&s| prev4[s] == 2).unwrap();
    prev4[mixed_slot] = 5;
    let prev6: Vec<u32> =
        (0..M as usize).map(|s| if node_of(&t6, s) == 5 { 0 } else { 5 }).collect();
    let maps = d.dp.maps_mut();
    maps.put_prev_table(1, &prev4).unwrap();
    maps.put_prev_table(2, &prev4).unwrap();
    maps.put_prev_table(3, &prev6).unwrap();

    let mut with_option = 0;
    let mut kinds = BTreeSet::new();
    for sport in 40_000..40_200u16 {
        let f = FlowKey {
            source: CLIENT4.parse().unwrap(),
            destination: VIP4.parse().unwrap(),
            source_port: sport,
            destination_port: 80,
            protocol: TCP,
        };
        let slot = t4.slot_for_hash(f.hash(&Seed::DEFAULT).unwrap());
        let frame = Spec::tcp(CLIENT4, sport, VIP4, 80, ACK).frame();
        let (rc, out) = d.run(&frame);
        assert_eq!(rc, XDP_TX);
        let (hlen, option, inner) = gue_parts(&out);
        assert_eq!(inner, without_ethernet(&frame), "inner packet untouched");
        assert_eq!(d.dp.maps().prev_node(1, slot as u32).unwrap(), prev4[slot], "Rust mirror");
        if prev4[slot] == 2 {
            assert_eq!(hlen, GUE_PREV_HLEN4, "slot {slot}");
            assert_eq!(option, prev_option("10.0.0.2".parse().unwrap(), 0));
            with_option += 1;
            kinds.insert("moved");
        } else {
            // Same node (0) or a previous node of another family (5): nothing sent.
            assert_eq!((hlen, option.len()), (0, 0), "slot {slot} (previous {})", prev4[slot]);
            kinds.insert(if prev4[slot] == 0 { "kept" } else { "other family" });
        }
        // UDP to the same previous nodes: the same rule (a node that holds no UDP flow asks
        // the previous node, which returns what it does not hold either).
        let u = FlowKey { destination_port: 53, protocol: UDP, ..f };
        let uslot = tu.slot_for_hash(u.hash(&Seed::DEFAULT).unwrap());
        let frame = Spec::udp(CLIENT4, sport, VIP4, 53).frame();
        let (rc, out) = d.run(&frame);
        assert_eq!(rc, XDP_TX);
        let (hlen, option, inner) = gue_parts(&out);
        assert_eq!(inner, without_ethernet(&frame), "inner packet untouched");
        assert_eq!(d.dp.maps().prev_node(2, uslot as u32).unwrap(), prev4[uslot], "Rust mirror");
        if prev4[uslot] == 2 {
            assert_eq!(
                (hlen, option),
                (GUE_PREV_HLEN4, prev_option("10.0.0.2".parse().unwrap(), 0))
            );
            with_option += 1;
            kinds.insert("udp moved");
        } else {
            assert_eq!((hlen, option.len()), (0, 0), "UDP slot {uslot}");
            kinds.insert(if prev4[uslot] == 0 { "udp kept" } else { "udp other family" });
        }
    }
    // The mixed-family slot is one of 251: make sure it was hit too.
    let sport = (1..u16::MAX)
        .find(|&p| {
            let f = FlowKey {
                source: CLIENT4.parse().unwrap(),
                destination: VIP4.parse().unwrap(),
                source_port: p,
                destination_port: 80,
                protocol: TCP,
            };
            t4.slot_for_hash(f.hash(&Seed::DEFAULT).unwrap()) == mixed_slot
        })
        .unwrap();
    let (_, out) = d.run(&Spec::tcp(CLIENT4, sport, VIP4, 80, ACK).frame());
    assert_eq!(gue_parts(&out).0, 0, "a previous node of another family is not sent");
    for kind in ["moved", "kept", "udp moved", "udp kept"] {
        assert!(kinds.contains(kind), "{kind}: {kinds:?}");
    }
    assert_eq!(d.count(DirReason::SecondChance), with_option);

    let mut seen6 = 0;
    for sport in 40_000..40_064u16 {
        let frame = Spec::tcp(CLIENT6, sport, VIP6, 80, ACK).frame();
        let (rc, out) = d.run(&frame);
        assert_eq!(rc, XDP_TX);
        let (hlen, option, inner) = gue_parts(&out);
        assert_eq!(inner, without_ethernet(&frame));
        if outer_dst(&out) == "fd00::2".parse::<IpAddr>().unwrap() {
            assert_eq!(hlen, GUE_PREV_HLEN6);
            assert_eq!(option, prev_option("fd00::1".parse().unwrap(), 0));
            seen6 += 1;
        } else {
            assert_eq!(hlen, 0);
        }
    }
    assert!(seen6 > 0);
    assert_eq!(d.count(DirReason::SecondChance), with_option + seen6);

    // FOU has no room for it: no previous node, plain FOU.
    d.dp.maps_mut().set_config(&settings(ENCAP_FOU)).unwrap();
    let (_, out) = d.run(&Spec::tcp(CLIENT4, 40_001, VIP4, 80, ACK).frame());
    assert_eq!(out[34 + 8] >> 4, 4, "FOU: the inner IPv4 header right after UDP");
}

const THIS_NODE: &str = "10.0.0.3";

fn inner_tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    without_ethernet(&Spec::tcp(src, sport, dst, dport, flags).frame())
}

#[test]
fn a_node_keeps_what_it_holds_and_re_sends_the_rest_once() {
    let node = DecapNode::new("sc-node");
    let prev: IpAddr = "10.0.0.2".parse().unwrap();
    let opt = prev_option(prev, 0);

    // Held here (conntrack entry of the per-packet path): decapsulated as usual.
    node.hold(CLIENT4, 40_000, VIP4, 80);
    let inner = inner_tcp(CLIENT4, 40_000, VIP4, 80, ACK);
    let (rc, out) = node.run(&gue(DIRECTOR4, THIS_NODE, &opt, &inner));
    assert_eq!(rc, TCX_NEXT, "held here: on to the per-packet path");
    assert_eq!(&out[14..], &inner[..]);
    assert_eq!(node.count(DecapReason::ScKept), 1);

    // A SYN starts a flow: kept, whoever held the slot before.
    let syn = inner_tcp(CLIENT4, 40_001, VIP4, 80, SYN);
    let (rc, out) = node.run(&gue(DIRECTOR4, THIS_NODE, &opt, &syn));
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &syn[..]));
    assert_eq!(node.count(DecapReason::ScKept), 2);

    // Not held here: re-sent to the previous node, addresses swapped (outer destination: the
    // previous node; the option: this node, so a UDP packet could come back), hops 1,
    // everything else as the director sent it.
    let ack = inner_tcp(CLIENT4, 40_002, VIP4, 80, ACK);
    let frame = gue(DIRECTOR4, THIS_NODE, &opt, &ack);
    let (rc, out) = node.run(&frame);
    assert_eq!(rc, TC_ACT_REDIRECT, "re-sent");
    assert_eq!(out.len(), frame.len());
    assert_eq!(&out[..6], &NEIGH_MAC, "to the previous node's neighbour entry");
    assert_eq!(outer_dst(&out), prev);
    assert_eq!(&out[26..30], &[10, 0, 0, 100], "outer source: still the director");
    let (hlen, option, rest) = gue_parts(&out);
    let this: IpAddr = THIS_NODE.parse().unwrap();
    assert_eq!((hlen, option), (GUE_PREV_HLEN4, prev_option(this, 1)));
    assert_eq!(rest, ack);
    assert_eq!(node.count(DecapReason::ScForwarded), 1);

    // TCP re-sent once already (hops 1): kept even though not held (never bounced twice).
    let (rc, out) = node.run(&gue(DIRECTOR4, THIS_NODE, &prev_option(prev, 1), &ack));
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &ack[..]));
    assert_eq!(node.count(DecapReason::ScKept), 3);

    // No previous node: plain GUE, decapsulated, no second-chance counter moves.
    let (rc, out) = node.run(&gue(DIRECTOR4, THIS_NODE, &[], &ack));
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &ack[..]));
    assert_eq!(node.count(DecapReason::ScKept), 3);
    assert_eq!(node.count(DecapReason::ScForwarded), 1);

    // Someone else's private data (another kind): skipped like any optional field.
    let foreign = [0x11, 0, AF_INET, 0, 10, 0, 0, 2];
    let (rc, out) = node.run(&gue(DIRECTOR4, THIS_NODE, &foreign, &ack));
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &ack[..]));

    assert_eq!(node.count(DecapReason::ScForwarded), 1);
    assert_eq!(node.count(DecapReason::Gue), 5, "every kept packet was decapsulated");
    assert_eq!(node.count(DecapReason::ScReturned) + node.count(DecapReason::ScNewFlow), 0);
}

/// A flow whose last packet, stored by another CPU, is after this packet's clock read (two
/// packets of the flow at once) is held here: kept. Before the fix its age wrapped around, the
/// entry counted as expired and the packet went to the previous node, which reset it.
#[test]
fn a_flow_whose_last_packet_is_ahead_of_the_packets_clock_is_held() {
    let node = DecapNode::new("sc-ahead");
    let opt = prev_option("10.0.0.2".parse().unwrap(), 0);
    for (proto, sport) in [(TCP, 40_010), (UDP, 40_011)] {
        node.hold_ahead(CLIENT4, sport, VIP4, 80, proto, 1_000_000_000);
        let inner = match proto {
            TCP => inner_tcp(CLIENT4, sport, VIP4, 80, ACK),
            _ => inner_udp(CLIENT4, sport, VIP4, 80),
        };
        let (rc, out) = node.run(&gue(DIRECTOR4, THIS_NODE, &opt, &inner));
        assert_eq!((rc, &out[14..]), (TCX_NEXT, &inner[..]), "proto {proto}: kept here");
    }
    assert_eq!(node.count(DecapReason::ScKept), 2);
    assert_eq!(node.count(DecapReason::ScForwarded), 0);
}

fn inner_udp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    without_ethernet(&Spec::udp(src, sport, dst, dport).frame())
}

/// UDP has no flow start: the chosen node (10.0.0.3) keeps a flow it holds and asks the
/// previous node (10.0.0.2) about any other; the previous node keeps a flow it holds and
/// returns any other, which the chosen node then takes as a new flow. Both nodes run the same
/// program here (one conntrack map: "held on the previous node" is an entry added between the
/// two hops).
#[test]
fn a_udp_flow_goes_to_the_previous_node_and_back_when_nobody_holds_it() {
    let node = DecapNode::new("sc-udp");
    let this: IpAddr = THIS_NODE.parse().unwrap();
    let prev: IpAddr = "10.0.0.2".parse().unwrap();
    let opt = prev_option(prev, 0);

    // Held by the chosen node: kept, decapsulated.
    node.hold_proto(CLIENT4, 5_000, VIP4, 53, UDP);
    let held = inner_udp(CLIENT4, 5_000, VIP4, 53);
    let (rc, out) = node.run(&gue(DIRECTOR4, THIS_NODE, &opt, &held));
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &held[..]), "held here");
    assert_eq!(node.count(DecapReason::ScKept), 1);

    // A flow the previous node holds (it moved): re-sent there (hops 1, the option names this
    // node), and kept there.
    let moved = inner_udp(CLIENT4, 5_001, VIP4, 53);
    let frame = gue(DIRECTOR4, THIS_NODE, &opt, &moved);
    let (rc, hop1) = node.run(&frame);
    assert_eq!(rc, TC_ACT_REDIRECT, "not held here: asked the previous node");
    assert_eq!((hop1.len(), outer_dst(&hop1)), (frame.len(), prev));
    assert_eq!(&hop1[26..30], &[10, 0, 0, 100], "outer source: still the director");
    assert_eq!(gue_parts(&hop1), (GUE_PREV_HLEN4, prev_option(this, 1), moved.clone()));
    assert_eq!(node.count(DecapReason::ScForwarded), 1);
    node.hold_proto(CLIENT4, 5_001, VIP4, 53, UDP); // the previous node's entry
    let (rc, out) = node.run(&hop1);
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &moved[..]), "held on the previous node: kept");
    assert_eq!(node.count(DecapReason::ScKept), 2);

    // A new flow (nobody holds it): chosen node -> previous node -> back, hops 2, then kept
    // as a new flow; never sent a third time.
    let new = inner_udp(CLIENT4, 5_002, VIP4, 53);
    let (rc, hop1) = node.run(&gue(DIRECTOR4, THIS_NODE, &opt, &new));
    assert_eq!((rc, outer_dst(&hop1)), (TC_ACT_REDIRECT, prev));
    let (rc, hop2) = node.run(&hop1);
    assert_eq!(rc, TC_ACT_REDIRECT, "not held on the previous node: returned");
    assert_eq!(&hop2[..6], &NEIGH_MAC);
    assert_eq!(outer_dst(&hop2), this, "back to the node the director chose");
    assert_eq!(&hop2[26..30], &[10, 0, 0, 100], "outer source: still the director");
    assert_eq!(gue_parts(&hop2), (GUE_PREV_HLEN4, prev_option(prev, 2), new.clone()));
    assert_eq!(node.count(DecapReason::ScReturned), 1);
    let (rc, out) = node.run(&hop2);
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &new[..]), "returned: a new flow here");
    assert_eq!(node.count(DecapReason::ScNewFlow), 1);
    assert_eq!(node.count(DecapReason::ScForwarded), 2);
    assert_eq!(node.count(DecapReason::ScKept), 2);

    // TCP with hops 2 (no node sends that): kept, counted as kept, not as a new UDP flow.
    let ack = inner_tcp(CLIENT4, 40_000, VIP4, 80, ACK);
    let (rc, _) = node.run(&gue(DIRECTOR4, THIS_NODE, &prev_option(prev, 2), &ack));
    assert_eq!(rc, TCX_NEXT);
    assert_eq!((node.count(DecapReason::ScKept), node.count(DecapReason::ScNewFlow)), (3, 1));

    // No route back: kept on the previous node (it cannot do better), counted.
    let nowhere = prev_option("192.0.2.99".parse().unwrap(), 1);
    let stray = inner_udp(CLIENT4, 5_003, VIP4, 53);
    let (rc, out) = node.run(&gue(DIRECTOR4, THIS_NODE, &nowhere, &stray));
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &stray[..]));
    assert_eq!(node.count(DecapReason::ScNoRoute), 1);
    assert_eq!(node.count(DecapReason::ScReturned), 1);
}

/// The same over IPv6 outer headers (chosen node fd00::1, previous node fd00::2), and a local
/// UDP socket: a connected one holds its flow, an unconnected one (it receives every client)
/// does not.
#[test]
fn udp_over_ipv6_and_local_udp_sockets() {
    let node = DecapNode::new("sc-udp6");
    sh("neigh replace fd00::2 lladdr 02:00:00:00:00:0a dev up0 nud permanent");
    let this: IpAddr = "fd00::1".parse().unwrap();
    let prev: IpAddr = "fd00::2".parse().unwrap();
    let new = inner_udp(CLIENT6, 5_000, VIP6, 53);
    let (rc, hop1) = node.run(&gue(DIRECTOR6, "fd00::1", &prev_option(prev, 0), &new));
    assert_eq!((rc, outer_dst(&hop1)), (TC_ACT_REDIRECT, prev));
    assert_eq!(gue_parts(&hop1), (GUE_PREV_HLEN6, prev_option(this, 1), new.clone()));
    let (rc, hop2) = node.run(&hop1);
    assert_eq!((rc, outer_dst(&hop2)), (TC_ACT_REDIRECT, this));
    assert_eq!(gue_parts(&hop2), (GUE_PREV_HLEN6, prev_option(prev, 2), new.clone()));
    let (rc, out) = node.run(&hop2);
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &new[..]));
    assert_eq!(
        [DecapReason::ScForwarded, DecapReason::ScReturned, DecapReason::ScNewFlow]
            .map(|r| node.count(r)),
        [1, 1, 1]
    );

    // Sockets, IPv4 inner (the option keeps the outer family).
    let opt = prev_option(prev, 0);
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    server.connect(client.local_addr().unwrap()).unwrap();
    let (sport, dport) = (client.local_addr().unwrap().port(), server.local_addr().unwrap().port());
    let held = inner_udp("127.0.0.1", sport, "127.0.0.1", dport);
    let (rc, out) = node.run(&gue(DIRECTOR6, "fd00::1", &opt, &held));
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &held[..]), "the connected socket holds it");
    let open = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let oport = open.local_addr().unwrap().port();
    let stray = inner_udp("127.0.0.1", sport, "127.0.0.1", oport);
    let (rc, _) = node.run(&gue(DIRECTOR6, "fd00::1", &opt, &stray));
    assert_eq!(rc, TC_ACT_REDIRECT, "an unconnected socket holds no flow");
    assert_eq!(node.count(DecapReason::ScKept), 1);
    assert_eq!(node.count(DecapReason::ScForwarded), 2);
}

#[test]
fn a_local_socket_holds_its_flow_and_a_listener_does_not() {
    let node = DecapNode::new("sc-sock");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_server, _) = listener.accept().unwrap();
    let cport = client.local_addr().unwrap().port();
    let opt = prev_option("10.0.0.2".parse().unwrap(), 0);

    let held = inner_tcp("127.0.0.1", cport, "127.0.0.1", port, ACK);
    let (rc, out) = node.run(&gue(DIRECTOR4, THIS_NODE, &opt, &held));
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &held[..]), "the established socket holds it");

    // Only the listener matches this one: it would answer with a reset, so it is re-sent.
    let stray = inner_tcp("127.0.0.1", cport.wrapping_add(1).max(1024), "127.0.0.1", port, ACK);
    let (rc, _) = node.run(&gue(DIRECTOR4, THIS_NODE, &opt, &stray));
    assert_eq!(rc, TC_ACT_REDIRECT);
    assert_eq!(node.count(DecapReason::ScKept), 1);
    assert_eq!(node.count(DecapReason::ScForwarded), 1);
}

#[test]
fn ipv6_no_route_and_bad_options() {
    let node = DecapNode::new("sc-bad");
    // IPv6 outer: the previous node fd00::1 (a neighbour of up0).
    let prev6: IpAddr = "fd00::1".parse().unwrap();
    let ack6 = inner_tcp(CLIENT6, 40_000, VIP6, 80, ACK);
    let frame = gue(DIRECTOR6, "fd00::3", &prev_option(prev6, 0), &ack6);
    let (rc, out) = node.run(&frame);
    assert_eq!(rc, TC_ACT_REDIRECT);
    assert_eq!(outer_dst(&out), prev6);
    let (hlen, option, rest) = gue_parts(&out);
    let this6: IpAddr = "fd00::3".parse().unwrap();
    assert_eq!((hlen, option, rest), (GUE_PREV_HLEN6, prev_option(this6, 1), ack6.clone()));
    // IPv4 inside IPv6 works the same (the option has the outer family).
    let ack4 = inner_tcp(CLIENT4, 40_000, VIP4, 80, ACK);
    let (rc, _) = node.run(&gue(DIRECTOR6, "fd00::3", &prev_option(prev6, 0), &ack4));
    assert_eq!(rc, TC_ACT_REDIRECT);
    assert_eq!(node.count(DecapReason::ScForwarded), 2);

    // No route to the previous node: kept here (the node cannot do better), counted.
    let nowhere = prev_option("192.0.2.99".parse().unwrap(), 0);
    let (rc, out) = node.run(&gue(DIRECTOR4, THIS_NODE, &nowhere, &ack4));
    assert_eq!((rc, &out[14..]), (TCX_NEXT, &ack4[..]));
    assert_eq!(node.count(DecapReason::ScNoRoute), 1);

    // A previous node of the other family than the outer header: kept, not re-sent.
    let (rc, _) = node.run(&gue(DIRECTOR4, THIS_NODE, &prev_option(prev6, 0), &ack4));
    assert_eq!(rc, TCX_NEXT);
    // hlen longer than the frame (the option truncated): dropped as malformed.
    let mut truncated =
        gue(DIRECTOR4, THIS_NODE, &prev_option("10.0.0.2".parse().unwrap(), 0), &ack4);
    let gue_off = 14 + 20 + 8;
    truncated[gue_off] = GUE_PREV_HLEN6; // says 20 bytes of options
    truncated.truncate(gue_off + 4 + 12); // holds 12, and no inner packet after them
    assert_eq!(node.run(&truncated).0, TC_ACT_SHOT);
    // The option's length does not match its family (hlen 5 for an IPv4 address): kept, the
    // address is not trusted.
    let mut odd = prev_option("10.0.0.2".parse().unwrap(), 0);
    odd.extend_from_slice(&[0; 12]);
    let (rc, _) = node.run(&gue(DIRECTOR4, THIS_NODE, &odd, &ack4));
    assert_eq!(rc, TCX_NEXT);
    assert_eq!(node.count(DecapReason::DropMalformed), 1);
    assert_eq!(node.count(DecapReason::ScForwarded), 2);
    assert_eq!(node.count(DecapReason::ScKept), 2);
}
