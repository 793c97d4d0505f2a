//! The per-packet programs under BPF_PROG_TEST_RUN with fragments, IPv6 extension headers,
//! 802.1Q tags and SCTP (root). Same fixture as tests/nodeport.rs: a fresh network namespace
//! per test (route lookups miss: translated packets come back TC_ACT_OK), maps written
//! directly, every checksum of what comes out verified by `frames::parse` (SCTP: CRC32c).

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_testing::frames;

use frames::*;
use switchyard_bpf::{abi::*, nodeport_abi::*};
use switchyard_testing::nodeport_fixture::*;

/// A UDP datagram of `len` payload bytes (a pattern, so a misplaced byte shows).
fn big_udp(src: &str, sport: u16, dst: &str, dport: u16, len: usize) -> Spec {
    let mut spec = Spec::udp(src, sport, dst, dport);
    spec.payload = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    spec.df = false;
    spec
}

/// Runs fragments through `program`, asserting each verdict; returns the frames that came out.
fn run_all(tc: &Tc, program: &'static str, fragments: &[Vec<u8>]) -> Vec<Vec<u8>> {
    fragments
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (rc, out) = tc.run(program, f);
            assert_eq!(rc, TC_ACT_OK, "fragment {i}: translated, to the stack (no route)");
            out
        })
        .collect()
}

#[test]
fn later_fragments_follow_their_first_fragment_both_ways() {
    if !require_root_here("later_fragments_follow_their_first_fragment_both_ways") {
        return;
    }
    for (family, node, client, local, remote) in FAMILIES {
        let mut tc = Tc::new("frag", &settings());
        tc.frontend(1, None, family, NODE_PORT, UDP, FE_NODEPORT, &[(7, local, 8080, BE_LOCAL)]);
        tc.frontend(2, None, family, NODE_PORT + 1, UDP, FE_NODEPORT, &[(9, remote, 8081, 0)]);

        // Local backend: DNAT only. 4000 bytes in 1400-byte fragments: 3 pieces.
        let datagram = big_udp(client, 51000, node, NODE_PORT, 4000);
        let pieces = fragment(&datagram.frame(), 1400, 0x1234);
        assert_eq!(pieces.len(), 3);
        let out = run_all(&tc, INGRESS, &pieces);
        let whole = parse(&reassemble(&out));
        assert_eq!((whole.src, whole.sport), (ip(client), 51000), "{family}: client kept");
        assert_eq!((whole.dst, whole.dport), (ip(local), 8080), "{family}: DNATed, all pieces");
        assert_eq!(&whole.l4[8..], &datagram.payload[..], "payload intact");
        assert_eq!(tc.count(PacketReason::Dnat), 1, "one flow");
        assert_eq!(tc.count(PacketReason::FragXlat), 2, "the later fragments followed");

        // The backend's big reply leaves fragmented through egress: every piece from the NodePort.
        let reply = big_udp(local, 8080, client, 51000, 3000);
        let out = run_all(&tc, EGRESS, &fragment(&reply.frame(), 1400, 0x99));
        let whole = parse(&reassemble(&out));
        assert_eq!((whole.src, whole.sport), (ip(node), NODE_PORT), "{family}: reply translated");
        assert_eq!((whole.dst, whole.dport), (ip(client), 51000));
        assert_eq!(tc.count(PacketReason::FragXlat), 4);

        // Remote backend: DNAT + SNAT; the reply comes back fragmented through ingress.
        let datagram = big_udp(client, 52000, node, NODE_PORT + 1, 4000);
        let out = run_all(&tc, INGRESS, &fragment(&datagram.frame(), 1400, 0x4321));
        let whole = parse(&reassemble(&out));
        assert_eq!(whole.src, ip(node), "{family}: SNAT on every piece");
        assert_eq!((whole.dst, whole.dport), (ip(remote), 8081));
        let snat_port = whole.sport;
        let reply = big_udp(remote, 8081, node, snat_port, 2000);
        let out = run_all(&tc, INGRESS, &fragment(&reply.frame(), 1400, 0x77));
        let whole = parse(&reassemble(&out));
        assert_eq!((whole.src, whole.sport), (ip(node), NODE_PORT + 1));
        assert_eq!((whole.dst, whole.dport), (ip(client), 52000), "{family}: back to the client");
        assert_eq!(tc.count(PacketReason::FragXlat), 4 + 2 + 1);
        assert_eq!(tc.count(PacketReason::PassFragment), 0);
    }
}

#[test]
fn fragments_without_a_translated_first_pass_untouched_and_never_start_a_flow() {
    if !require_root_here(
        "fragments_without_a_translated_first_pass_untouched_and_never_start_a_flow",
    ) {
        return;
    }
    for (family, node, client, local, _) in FAMILIES {
        let mut tc = Tc::new("frag-pass", &settings());
        tc.frontend(1, None, family, NODE_PORT, UDP, FE_NODEPORT, &[(7, local, 8080, BE_LOCAL)]);
        let pieces = fragment(&big_udp(client, 51000, node, NODE_PORT, 3000).frame(), 1400, 5);
        // Out of order: the last piece before the first has nothing to follow.
        let (rc, out) = tc.run(INGRESS, &pieces[2]);
        assert_eq!((rc, &out), (TC_ACT_OK, &pieces[2]), "{family}: passed untouched");
        assert_eq!(tc.count(PacketReason::PassFragment), 1);
        assert_eq!(tc.count(PacketReason::Dnat), 0, "a later fragment never starts a flow");
        // Another datagram's pieces (other id) do not follow this flow's first fragment.
        run_all(&tc, INGRESS, &pieces[..1]);
        let other = fragment(&big_udp(client, 51000, node, NODE_PORT, 3000).frame(), 1400, 6);
        let (_, out) = tc.run(INGRESS, &other[1]);
        assert_eq!(out, other[1], "{family}: other fragment id: untouched");
        assert_eq!(tc.count(PacketReason::PassFragment), 2);
        // Fragments of traffic for no Service: untouched, the first uncounted.
        let foreign = fragment(&big_udp(client, 51000, node, 9999, 3000).frame(), 1400, 7);
        for piece in &foreign {
            let (rc, out) = tc.run(INGRESS, piece);
            assert_eq!((rc, &out), (TC_ACT_OK, piece));
        }
        assert_eq!(tc.count(PacketReason::FragXlat), 0);
    }
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_transport_header() {
    if !require_root_here("ipv6_extension_headers_are_walked_to_the_transport_header") {
        return;
    }
    let mut tc = Tc::new("ipv6-ext", &settings());
    let local = "fd00:244:1::5";
    tc.frontend(1, None, AF_INET6, NODE_PORT, TCP, FE_NODEPORT, &[(7, local, 8080, BE_LOCAL)]);
    let syn = Spec::tcp(CLIENT6, 51000, NODE6, NODE_PORT, SYN).frame();
    let hop = (IPV6_HOPOPTS, vec![1, 4, 0, 0, 0, 0]); // PadN
    let dst = (IPV6_DSTOPTS, vec![1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let done_routing = (IPV6_ROUTING, vec![4, 0, 0, 0, 0, 0]); // segments left 0
    for (what, headers, sport) in [
        ("hop-by-hop", vec![hop.clone()], 51001),
        ("destination options (16 bytes)", vec![dst.clone()], 51002),
        (
            "hop-by-hop, routing done, destination options",
            vec![hop.clone(), done_routing, dst.clone()],
            51003,
        ),
    ] {
        let mut spec = Spec::tcp(CLIENT6, sport, NODE6, NODE_PORT, SYN);
        spec.seq = 7;
        let frame = with_ipv6_ext(&spec.frame(), &headers);
        let (rc, out) = tc.run(INGRESS, &frame);
        assert_eq!(rc, TC_ACT_OK, "{what}");
        let p = parse(&out);
        assert_eq!((p.src, p.sport), (ip(CLIENT6), sport), "{what}");
        assert_eq!((p.dst, p.dport), (ip(local), 8080), "{what}: DNATed past the headers");
        assert_eq!(out.len(), frame.len(), "{what}: headers kept");
    }
    assert_eq!(tc.count(PacketReason::Dnat), 3);

    // A fragment header counts as one: the first fragment behind hop-by-hop options.
    let mut big = big_udp(CLIENT6, 51010, NODE6, NODE_PORT, 100);
    big.proto = UDP;
    tc.frontend(2, None, AF_INET6, NODE_PORT, UDP, FE_NODEPORT, &[(8, local, 8081, BE_LOCAL)]);
    let first = &fragment(&big.frame(), 64, 9)[0];
    let (_, out) = tc.run(INGRESS, first);
    assert_eq!(&out[38..54], &ip_octets(local)[..], "first fragment DNATed");

    // Not ours: a routing header with segments left (the destination is not the final one),
    // and a chain longer than the programs walk.
    let routing = with_ipv6_ext(&syn, &[(IPV6_ROUTING, vec![4, 1, 0, 0, 0, 0])]);
    let long = with_ipv6_ext(&syn, &vec![dst.clone(); 9]);
    for (what, frame) in [("routing, segments left 1", routing), ("9 extension headers", long)] {
        let before = tc.count(PacketReason::PassIpv6Ext);
        let (rc, out) = tc.run(INGRESS, &frame);
        assert_eq!((rc, &out), (TC_ACT_OK, &frame), "{what}: passed untouched");
        assert_eq!(tc.count(PacketReason::PassIpv6Ext), before + 1, "{what}: counted");
    }
    // Eight headers are still walked.
    let eight =
        with_ipv6_ext(&Spec::tcp(CLIENT6, 51020, NODE6, NODE_PORT, SYN).frame(), &vec![dst; 8]);
    let (_, out) = tc.run(INGRESS, &eight);
    assert_eq!(parse(&out).dst, ip(local), "8 headers: translated");
}

#[test]
fn vlan_tagged_frames_pass_untouched_and_counted() {
    if !require_root_here("vlan_tagged_frames_pass_untouched_and_counted") {
        return;
    }
    let mut tc = Tc::new("vlan", &settings());
    tc.frontend(
        1,
        None,
        AF_INET,
        NODE_PORT,
        TCP,
        FE_NODEPORT,
        &[(7, "10.244.1.5", 8080, BE_LOCAL)],
    );
    let tagged = vlan_tagged(&Spec::tcp(CLIENT4, 51000, NODE4, NODE_PORT, SYN).frame(), 100);
    for program in [INGRESS, EGRESS] {
        let (rc, out) = tc.run(program, &tagged);
        assert_eq!((rc, &out), (TC_ACT_OK, &tagged), "{program}: untouched");
    }
    assert_eq!(tc.count(PacketReason::PassVlan), 1, "counted at ingress");
    assert_eq!(tc.count(PacketReason::Dnat), 0);
}

#[test]
fn frames_for_another_hosts_mac_pass_untouched_and_counted() {
    if !require_root_here("frames_for_another_hosts_mac_pass_untouched_and_counted") {
        return;
    }
    let mut tc = Tc::new("otherhost", &settings());
    tc.frontend(
        1,
        None,
        AF_INET,
        NODE_PORT,
        TCP,
        FE_NODEPORT,
        &[(7, "10.244.1.5", 8080, BE_LOCAL)],
    );
    // A switch flooding a SYN for another node's MAC (say the old owner of an L2 address):
    // the destination MAC is no address of the receiving device (loopback's is all zero).
    let flooded = Spec::tcp(CLIENT4, 51000, NODE4, NODE_PORT, SYN).frame();
    assert_ne!(flooded[0..6], [0u8; 6]);
    let (rc, out) = tc.run_received(INGRESS, &flooded);
    assert_eq!((rc, &out), (TC_ACT_OK, &flooded), "untouched");
    assert_eq!(tc.count(PacketReason::PassOtherHost), 1);
    assert_eq!(tc.count(PacketReason::Dnat), 0);
    // The same SYN addressed to the device's own MAC, and to broadcast, is translated.
    for (mac, sport) in [([0u8; 6], 51001), ([0xff; 6], 51002)] {
        let mut own = Spec::tcp(CLIENT4, sport, NODE4, NODE_PORT, SYN).frame();
        own[0..6].copy_from_slice(&mac);
        let (rc, out) = tc.run_received(INGRESS, &own);
        assert_eq!(rc, TC_ACT_OK);
        assert_eq!(parse(&out).dst, ip("10.244.1.5"), "DNATed for {mac:?}");
    }
    assert_eq!(tc.count(PacketReason::Dnat), 2);
    assert_eq!(tc.count(PacketReason::PassOtherHost), 1);
}

#[test]
fn sctp_is_translated_with_a_valid_crc32c_both_ways() {
    if !require_root_here("sctp_is_translated_with_a_valid_crc32c_both_ways") {
        return;
    }
    // The CRC32c of the frames builder is the standard one (RFC 9260 test value).
    let mut crc = !0u32;
    for &b in b"123456789" {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    assert_eq!(!crc, 0xe306_9283);
    for (family, node, client, local, remote) in FAMILIES {
        let mut tc = Tc::new("sctp", &settings());
        tc.frontend(1, None, family, NODE_PORT, SCTP, FE_NODEPORT, &[(7, local, 8080, BE_LOCAL)]);
        tc.frontend(2, None, family, NODE_PORT + 1, SCTP, FE_NODEPORT, &[(9, remote, 8081, 0)]);
        tc.frontend(
            3,
            None,
            family,
            NODE_PORT + 2,
            SCTP,
            FE_NODEPORT,
            &[(10, local, NODE_PORT + 2, BE_LOCAL)],
        );
        tc.frontend(4, None, family, NODE_PORT + 3, SCTP, FE_NODEPORT | FE_REJECT_EMPTY, &[]);

        // Local backend, other port: the CRC is computed again.
        let init = Spec::sctp(client, 51000, node, NODE_PORT, SCTP_INIT);
        let (rc, out) = tc.run(INGRESS, &init.frame());
        assert_eq!(rc, TC_ACT_OK);
        let p = parse(&out); // checks the CRC32c
        assert_eq!(p.proto, SCTP);
        assert_eq!((p.src, p.sport), (ip(client), 51000), "{family}: client kept");
        assert_eq!((p.dst, p.dport), (ip(local), 8080), "{family}: DNATed");
        assert_eq!(tc.count(PacketReason::Dnat), 1);
        let orig = CtKey::new(ip(client), 51000, ip(node), NODE_PORT, SCTP);
        let ct = tc.pkt.maps().conntrack(&orig).unwrap().expect("conntrack entry");
        assert_eq!((ct.backend_id, ct.state), (7, CT_ESTABLISHED));

        let mut ack = Spec::sctp(local, 8080, client, 51000, 2); // INIT ACK
        ack.payload = vec![0xab; 300];
        let (rc, out) = tc.run(EGRESS, &ack.frame());
        assert_eq!(rc, TC_ACT_OK);
        let r = parse(&out);
        assert_eq!((r.src, r.sport), (ip(node), NODE_PORT), "{family}: reply from the NodePort");
        assert_eq!((r.dst, r.dport), (ip(client), 51000));
        assert_eq!(tc.count(PacketReason::Revnat), 1);

        // Same port: only addresses change, which CRC32c does not cover.
        let same = Spec::sctp(client, 51001, node, NODE_PORT + 2, SCTP_DATA).frame();
        let (_, out) = tc.run(INGRESS, &same);
        let p = parse(&out);
        assert_eq!((p.dst, p.dport), (ip(local), NODE_PORT + 2));
        assert_eq!(p.l4[8..12], parse(&same).l4[8..12], "{family}: CRC untouched");

        // Remote backend: SNAT address and port; the reply comes back through ingress.
        let (_, out) =
            tc.run(INGRESS, &Spec::sctp(client, 52000, node, NODE_PORT + 1, SCTP_INIT).frame());
        let p = parse(&out);
        assert_eq!(p.src, ip(node), "{family}: SNAT");
        assert!((40_000..=40_999).contains(&p.sport));
        assert_eq!((p.dst, p.dport), (ip(remote), 8081));
        let (_, out) = tc.run(INGRESS, &Spec::sctp(remote, 8081, node, p.sport, 2).frame());
        let r = parse(&out);
        assert_eq!((r.src, r.sport, r.dst, r.dport), (ip(node), NODE_PORT + 1, ip(client), 52000));

        // ABORT closes the association's entry.
        let (_, out) =
            tc.run(INGRESS, &Spec::sctp(client, 51000, node, NODE_PORT, SCTP_ABORT).frame());
        parse(&out);
        let ct = tc.pkt.maps().conntrack(&orig).unwrap().unwrap();
        assert_eq!(ct.state, CT_CLOSING, "{family}: ABORT seen");

        // No backends with reject: ICMP port unreachable, like UDP.
        let (rc, out) =
            tc.run(INGRESS, &Spec::sctp(client, 53000, node, NODE_PORT + 3, SCTP_INIT).frame());
        assert_eq!(rc, TC_ACT_REDIRECT, "{family}: answered");
        let icmp = parse(&out);
        let want = if family == AF_INET { (3, 3) } else { (1, 4) };
        assert_eq!((icmp.icmp().0, icmp.icmp().1), want, "{family}: port unreachable");
        assert_eq!(tc.count(PacketReason::RejectIcmp), 1);
    }
}

#[test]
fn sctp_in_fragments_is_not_translated_with_a_stale_crc() {
    if !require_root_here("sctp_in_fragments_is_not_translated_with_a_stale_crc") {
        return;
    }
    // A fragmented SCTP packet whose port changes cannot get a new CRC32c from its first
    // fragment: dropped with a reason rather than sent with a wrong checksum.
    let mut tc = Tc::new("sctp-frag", &settings());
    tc.frontend(
        1,
        None,
        AF_INET,
        NODE_PORT,
        SCTP,
        FE_NODEPORT,
        &[(7, "10.244.1.5", 8080, BE_LOCAL)],
    );
    let mut spec = Spec::sctp(CLIENT4, 51000, NODE4, NODE_PORT, SCTP_DATA);
    spec.payload = vec![1; 2000];
    spec.df = false;
    let pieces = fragment(&spec.frame(), 1400, 3);
    let (rc, _) = tc.run(INGRESS, &pieces[0]);
    assert_eq!(rc, TC_ACT_SHOT);
    assert_eq!(tc.count(PacketReason::DropRewrite), 1);
}

fn ip_octets(s: &str) -> Vec<u8> {
    match ip(s) {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn require_root_here(test: &str) -> bool {
    switchyard_lab::require_root(test)
}
