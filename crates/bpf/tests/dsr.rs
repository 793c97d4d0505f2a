//! DSR for NodePort (issue 20) under BPF_PROG_TEST_RUN with crafted frames (root): on the
//! client's node a flow to a backend on another node is DNATed with the client's address kept
//! and put in GUE with the DSR option to that node (MTU: frag-needed with the inner MTU); on
//! the backend's node the decapsulation writes the reverse translation from the option, so the
//! backend's reply leaves as frontend -> client; DSR packets are accepted only from nodes, and
//! malformed ones are dropped and counted. Each test runs in a network namespace of its own.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_bpf::{abi::*, decap::DecapReason, nodeport::PacketSettings, nodeport_abi::*};
use switchyard_testing::{frames::*, nodeport_fixture::*};

const TCX_NEXT: u32 = u32::MAX; // -1
const GUE_PORT: u16 = 6080;
/// The backend's node as the client's node reaches it (a neighbour on `sy-nodes`).
const NODE_B4: &str = "10.99.0.2";
const NODE_B6: &str = "fd99::2";
const NODE_B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x02];

fn dsr_settings() -> PacketSettings {
    PacketSettings { dsr_port: Some(GUE_PORT), ..settings() }
}

/// A device towards the other nodes with `mtu`, node B a known neighbour, forwarding on.
fn nodes_link(mtu: u32) {
    sh(&format!(
        "ip link set lo up && ip link add sy-nodes type veth peer name sy-nodes-peer \
        && ip link set sy-nodes-peer up && ip link set sy-nodes mtu {mtu} up \
        && ip addr add 10.99.0.1/24 dev sy-nodes && ip addr add fd99::1/64 dev sy-nodes nodad \
        && ip neigh add {NODE_B4} lladdr 02:00:00:00:99:02 dev sy-nodes nud permanent \
        && ip neigh add {NODE_B6} lladdr 02:00:00:00:99:02 dev sy-nodes nud permanent \
        && echo 1 > /proc/sys/net/ipv4/conf/all/forwarding \
        && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"
    ));
}

/// The client's node with DSR on: a link to node B with `mtu`, NodePort TCP and UDP frontends
/// of each family whose one backend runs on node B (frontend ids: family, family + 100).
fn client_node(test: &str, mtu: u32) -> Tc {
    let mut tc = Tc::new(test, &dsr_settings());
    nodes_link(mtu);
    for (family, _, _, backend, _) in cases() {
        let f = u32::from(family);
        tc.frontend(f, None, family, NODE_PORT, TCP, FE_NODEPORT, &[(f, backend, 8080, 0)]);
        tc.frontend(f + 100, None, family, NODE_PORT, UDP, FE_NODEPORT, &[(f, backend, 8080, 0)]);
    }
    tc.dsr_nodes(&[(FAMILIES[0].4, NODE_B4), (FAMILIES[1].4, NODE_B6)]);
    tc
}

/// (family, this node, client, remote backend, its node)
fn cases() -> [(u8, &'static str, &'static str, &'static str, &'static str); 2] {
    [
        (AF_INET, NODE4, CLIENT4, FAMILIES[0].4, NODE_B4),
        (AF_INET6, NODE6, CLIENT6, FAMILIES[1].4, NODE_B6),
    ]
}

/// The frame as encapsulated, its IPv6 flow label (from the flow hash) zeroed; and the outer
/// UDP source port.
fn outer_sport_and_masked(frame: &[u8]) -> (u16, Vec<u8>) {
    let mut f = frame.to_vec();
    let udp = if f[12..14] == [0x08, 0x00] { 34 } else { 54 };
    if udp == 54 {
        f[15] &= 0xf0;
        f[16] = 0;
        f[17] = 0;
    }
    (u16::from_be_bytes([f[udp], f[udp + 1]]), f)
}

#[test]
fn a_remote_backends_flow_is_dnated_and_put_in_gue_to_its_node_with_the_client_kept() {
    if !switchyard_lab::require_root(
        "a_remote_backends_flow_is_dnated_and_put_in_gue_to_its_node_with_the_client_kept",
    ) {
        return;
    }
    let tc = client_node("dsr-encap", 1500);
    for (family, node, client, backend, node_b) in cases() {
        for (spec, dnated) in [
            (
                Spec::tcp(client, 51000, node, NODE_PORT, SYN),
                Spec::tcp(client, 51000, backend, 8080, SYN),
            ),
            (
                Spec::tcp(client, 51000, node, NODE_PORT, ACK),
                Spec::tcp(client, 51000, backend, 8080, ACK),
            ),
            (Spec::udp(client, 51000, node, NODE_PORT), Spec::udp(client, 51000, backend, 8080)),
        ] {
            let (rc, out) = tc.run(INGRESS, &spec.frame());
            assert_eq!(rc, TC_ACT_REDIRECT, "{family}: sent along the route to node B");
            assert_eq!(out[0..6], NODE_B_MAC, "to node B's MAC");
            let (sport, masked) = outer_sport_and_masked(&out);
            assert!(sport >= 0xc000, "outer source port from the flow hash: {sport:#x}");
            let want = gue_dsr_frame(
                ip(node),
                ip(node_b),
                sport,
                GUE_PORT,
                ip(node),
                NODE_PORT,
                &without_ethernet(&dnated.frame()),
            );
            assert_eq!(
                masked[12..],
                want[12..],
                "{family} {:?}: outer headers, option, inner",
                spec.proto
            );
            // The inner packet's checksums hold (parse checks them).
            let inner = parse(&dnated.frame());
            assert_eq!((inner.src, inner.dst), (ip(client), ip(backend)));
        }
        let key = CtKey::new(ip(client), 51000, ip(node), NODE_PORT, TCP);
        let e = tc.pkt.maps().conntrack(&key).unwrap().unwrap();
        assert_eq!(e.flags & (CT_F_DSR | CT_F_SNAT), CT_F_DSR, "DSR, not SNAT");
        assert_eq!(e.state, CT_ESTABLISHED, "the client's ACK establishes it (no reply here)");
        assert_eq!(
            (e.nat_saddr.to_ip(family), e.nat_daddr.to_ip(family)),
            (ip(client), ip(backend))
        );
        let reply = CtKey::new(ip(backend), 8080, ip(client), 51000, TCP);
        assert!(
            tc.pkt.maps().nat.get(&reply, 0).is_err(),
            "no reverse entry: replies never come here"
        );
    }
    assert_eq!(tc.count(PacketReason::DnatDsr), 4, "a TCP and a UDP flow per family");
    assert_eq!(tc.count(PacketReason::CtHit), 2, "the ACKs");
    assert_eq!(tc.count(PacketReason::DnatSnat), 0);
}

#[test]
fn without_dsr_or_without_the_backends_node_a_remote_backend_is_snated() {
    if !switchyard_lab::require_root(
        "without_dsr_or_without_the_backends_node_a_remote_backend_is_snated",
    ) {
        return;
    }
    for (dsr, nodes) in [(false, true), (true, false)] {
        let settings = if dsr { dsr_settings() } else { settings() };
        let mut tc = Tc::new("dsr-off", &settings);
        let (family, node, client, backend, node_b) = cases()[0];
        tc.frontend(1, None, family, NODE_PORT, TCP, FE_NODEPORT, &[(1, backend, 8080, 0)]);
        if nodes {
            tc.dsr_nodes(&[(backend, node_b)]);
        }
        let (_, out) = tc.run(INGRESS, &Spec::tcp(client, 51000, node, NODE_PORT, SYN).frame());
        let p = parse(&out);
        assert_eq!((p.src, p.dst, p.dport), (ip(SNAT4), ip(backend), 8080), "dsr {dsr}: SNATed");
        assert_eq!(tc.count(PacketReason::DnatSnat), 1, "dsr {dsr}, node known {nodes}");
        assert_eq!(tc.count(PacketReason::DnatDsr), 0);
    }
}

#[test]
fn a_packet_too_big_once_encapsulated_is_answered_with_the_inner_mtu() {
    if !switchyard_lab::require_root(
        "a_packet_too_big_once_encapsulated_is_answered_with_the_inner_mtu",
    ) {
        return;
    }
    let tc = client_node("dsr-mtu", 1400);
    for (family, node, client, _, _) in cases() {
        let (overhead, ip_header) = if family == AF_INET { (40, 20) } else { (72, 40) };
        // Fits with the outer headers: sent. One byte more: answered.
        let fit = 1400 - overhead - ip_header - 20;
        for (payload, fits) in [(fit, true), (fit + 1, false)] {
            let mut big = Spec::tcp(client, 51000, node, NODE_PORT, ACK);
            big.payload = vec![0x5a; payload];
            let (rc, out) = tc.run(INGRESS, &big.frame());
            assert_eq!(rc, TC_ACT_REDIRECT);
            if fits {
                assert_eq!(out[0..6], NODE_B_MAC, "{family}: encapsulated to node B");
                assert_eq!(out.len(), 14 + 1400, "exactly the route's MTU");
                continue;
            }
            let p = parse(&out);
            assert_eq!((p.src, p.dst), (ip(node), ip(client)), "from the address the client used");
            let want = if family == AF_INET { (3, 4, 1400 - 40) } else { (2, 0, 1400 - 72) };
            assert_eq!(p.icmp(), want, "frag-needed / packet-too-big with the inner MTU");
            let q = p.quoted();
            assert_eq!(
                (q.src, q.dst, q.dport),
                (ip(client), ip(node), NODE_PORT),
                "quoted untranslated"
            );
        }
    }
    assert_eq!(tc.count(PacketReason::FragNeeded), 2);
    // IPv4 without DF: no one to tell, counted.
    let mut nodf = Spec::udp(CLIENT4, 51001, NODE4, NODE_PORT);
    nodf.payload = vec![0x5a; 1400];
    nodf.df = false;
    let (rc, _) = tc.run(INGRESS, &nodf.frame());
    assert_eq!(rc, TC_ACT_SHOT);
    assert_eq!(tc.count(PacketReason::DropDsrTooBig), 1);
}

#[test]
fn the_xdp_program_decides_a_dsr_flow_and_hands_it_to_tc_which_encapsulates() {
    if !switchyard_lab::require_root(
        "the_xdp_program_decides_a_dsr_flow_and_hands_it_to_tc_which_encapsulates",
    ) {
        return;
    }
    let mut t = TcXdp::new("dsr-xdp", &dsr_settings());
    nodes_link(1500);
    let (family, node, client, backend, node_b) = cases()[0];
    t.tc.frontend(1, None, family, NODE_PORT, TCP, FE_NODEPORT, &[(1, backend, 8080, 0)]);
    t.tc.dsr_nodes(&[(backend, node_b)]);
    let frame = Spec::tcp(client, 51000, node, NODE_PORT, SYN).frame();
    let (rc, out) = t.run_xdp(&frame);
    assert_eq!((rc, &out), (XDP_PASS, &frame), "passed untouched");
    assert_eq!(t.tc.count(PacketReason::DnatDsr), 1, "decided at XDP");
    assert_eq!(t.tc.count(PacketReason::XdpToTc), 1);
    let (rc, out) = t.tc.run(INGRESS, &frame);
    assert_eq!(rc, TC_ACT_REDIRECT);
    assert_eq!(parse(&out).dst, ip(node_b), "TC encapsulates from the entry XDP wrote");
    assert_eq!(t.tc.count(PacketReason::CtHit), 1);
    // Later packets too.
    let ack = Spec::tcp(client, 51000, node, NODE_PORT, ACK).frame();
    assert_eq!(t.run_xdp(&ack).0, XDP_PASS);
    assert_eq!(t.tc.count(PacketReason::XdpToTc), 2);
}

/// The client's node (a DSR source of the backend's node).
const A_NODE4: &str = "10.99.0.1";
const A_NODE6: &str = "fd99::1";

#[test]
fn the_backends_node_writes_the_reverse_translation_and_the_reply_leaves_from_the_frontend() {
    if !switchyard_lab::require_root(
        "the_backends_node_writes_the_reverse_translation_and_the_reply_leaves_from_the_frontend",
    ) {
        return;
    }
    let tc = Tc::new("dsr-decap", &dsr_settings());
    let decap = tc.decap(&[], &[A_NODE4, A_NODE6]);
    for (family, node, client, local, _) in FAMILIES {
        let (a_node, frontend) =
            if family == AF_INET { (A_NODE4, "10.0.0.9") } else { (A_NODE6, "fd00::9") };
        for (proto, syn, reply) in [
            (
                TCP,
                Spec::tcp(client, 51000, local, 8080, SYN),
                Spec::tcp(local, 8080, client, 51000, SYN | ACK),
            ),
            (UDP, Spec::udp(client, 51000, local, 8080), Spec::udp(local, 8080, client, 51000)),
        ] {
            let inner = syn.frame();
            let outer = gue_dsr_frame(
                ip(a_node),
                ip(node),
                0xc123,
                GUE_PORT,
                ip(frontend),
                NODE_PORT,
                &without_ethernet(&inner),
            );
            let (rc, out, mark) = run_decap(&decap, &outer);
            assert_eq!(rc, TCX_NEXT, "{family}/{proto}: on to the per-packet path");
            assert_eq!(out, inner, "the client's packet, as the client's node DNATed it");
            assert_eq!(mark, 0, "not marked as a director's VIP packet: for a pod, to the stack");
            let orig = CtKey::new(ip(client), 51000, ip(frontend), NODE_PORT, proto);
            let e = tc.pkt.maps().conntrack(&orig).unwrap().unwrap();
            assert_eq!(e.flags, CT_F_DSR);
            assert_eq!((e.nat_daddr.to_ip(family), u16::from_be(e.nat_dport)), (ip(local), 8080));
            let rkey = CtKey::new(ip(local), 8080, ip(client), 51000, proto);
            assert_eq!(tc.pkt.maps().nat.get(&rkey, 0).unwrap().orig, orig, "reverse entry");
            // The backend's reply leaves this node as frontend -> client.
            let (rc, out) = tc.run(EGRESS, &reply.frame());
            assert_eq!(rc, TC_ACT_OK);
            let p = parse(&out);
            assert_eq!(
                (p.src, p.sport, p.dst, p.dport),
                (ip(frontend), NODE_PORT, ip(client), 51000)
            );
            // The client's next packet refreshes the entries (TCP: an ACK).
            let next =
                if proto == TCP { Spec::tcp(client, 51000, local, 8080, ACK) } else { syn.clone() };
            let outer = gue_dsr_frame(
                ip(a_node),
                ip(node),
                0xc123,
                GUE_PORT,
                ip(frontend),
                NODE_PORT,
                &without_ethernet(&next.frame()),
            );
            assert_eq!(run_decap(&decap, &outer).0, TCX_NEXT);
            let e = tc.pkt.maps().conntrack(&orig).unwrap().unwrap();
            assert_eq!(e.state, CT_ESTABLISHED, "answered by the backend");
        }
    }
    let counts = decap.maps().counters().unwrap();
    assert_eq!(counts[&DecapReason::Dsr].packets, 8, "2 packets x TCP, UDP x 2 families");
    assert_eq!(counts[&DecapReason::Gue].packets, 0, "counted as DSR only");
    assert_eq!(tc.count(PacketReason::Revnat), 4);
}

#[test]
fn dsr_packets_come_only_from_nodes_and_malformed_ones_are_dropped_and_counted() {
    if !switchyard_lab::require_root(
        "dsr_packets_come_only_from_nodes_and_malformed_ones_are_dropped_and_counted",
    ) {
        return;
    }
    let tc = Tc::new("dsr-refuse", &dsr_settings());
    let director = "10.99.0.50";
    let decap = tc.decap(&[director], &[A_NODE4]);
    let (_, node, client, local, _) = FAMILIES[0];
    let inner = without_ethernet(&Spec::tcp(client, 51000, local, 8080, SYN).frame());
    let dsr = |src: &str| {
        gue_dsr_frame(ip(src), ip(node), 0xc123, GUE_PORT, ip("10.0.0.9"), NODE_PORT, &inner)
    };
    let count = |r: DecapReason| decap.maps().counters().unwrap()[&r].packets;

    // Unknown source, a director (no DSR from directors), a node without the option.
    assert_eq!(run_decap(&decap, &dsr("10.99.0.77")).0, TC_ACT_SHOT);
    assert_eq!(count(DecapReason::DropNotDirector), 1, "no accepted source");
    assert_eq!(run_decap(&decap, &dsr(director)).0, TC_ACT_SHOT);
    assert_eq!(count(DecapReason::DropNotNode), 1, "a director sends no DSR");
    let mut plain = Vec::new();
    plain.extend_from_slice(&[0x30, 0x39]); // source port
    plain.extend_from_slice(&GUE_PORT.to_be_bytes());
    plain.extend_from_slice(&((8 + 4 + inner.len()) as u16).to_be_bytes());
    plain.extend_from_slice(&[0, 0, 0, 4, 0, 0]);
    plain.extend_from_slice(&inner);
    assert_eq!(
        run_decap(&decap, &ip_frame(ip(A_NODE4), ip(node), UDP, &plain, true)).0,
        TC_ACT_SHOT
    );
    assert_eq!(count(DecapReason::DropNotDirector), 2, "a node sends only DSR");

    // From a node, malformed: the option's family is not the inner one's; hlen too long;
    // the inner packet has no ports (ICMP).
    let good = dsr(A_NODE4);
    let opt = 14 + 20 + 8 + 4;
    let mut family = good.clone();
    family[opt + 1] = AF_INET6;
    let mut long = good[..opt].to_vec();
    long[opt - 4] = 3; // hlen 3: one more word
    long.extend_from_slice(&good[opt..opt + 8]);
    long.extend_from_slice(&[0; 4]);
    long.extend_from_slice(&good[opt + 8..]);
    let l = long.len() - 14;
    long[16..18].copy_from_slice(&(l as u16).to_be_bytes());
    long[38..40].copy_from_slice(&((l - 20) as u16).to_be_bytes());
    long[24..26].copy_from_slice(&[0, 0]);
    let c = fold(sum16(&long[14..34], 0));
    long[24..26].copy_from_slice(&c.to_be_bytes());
    let icmp_inner = without_ethernet(&ip_frame(
        ip(client),
        ip(local),
        ICMP,
        &[8, 0, 0xf7, 0xff, 0, 0, 0, 0],
        true,
    ));
    let icmp = gue_dsr_frame(
        ip(A_NODE4),
        ip(node),
        0xc123,
        GUE_PORT,
        ip("10.0.0.9"),
        NODE_PORT,
        &icmp_inner,
    );
    for (what, frame) in [("family", family), ("hlen", long), ("no ports", icmp)] {
        assert_eq!(run_decap(&decap, &frame).0, TC_ACT_SHOT, "{what}");
    }
    assert_eq!(count(DecapReason::DropDsrMalformed), 3);
    assert_eq!(tc.pkt.maps().nat.keys().count(), 0, "nothing written for refused packets");
    // The well-formed one passes, unmarked; the director's plain GUE passes marked (the
    // per-packet path drops what it does not translate of that: a VIP it does not serve).
    let (rc, _, mark) = run_decap(&decap, &good);
    assert_eq!((rc, mark), (TCX_NEXT, 0));
    assert_eq!(count(DecapReason::Dsr), 1);
    let from_director = ip_frame(ip(director), ip(node), UDP, &plain, true);
    let (rc, _, mark) = run_decap(&decap, &from_director);
    assert_eq!((rc, mark), (TCX_NEXT, 0x5359_4443), "SY_DECAP_CB_MARK");
}
