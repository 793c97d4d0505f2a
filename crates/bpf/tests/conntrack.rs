//! Conntrack under attack, with BPF_PROG_TEST_RUN (root): a TCP flow that starts without a SYN
//! never claims a SNAT port, a flow nobody answers expires after the unreplied timeout, and a
//! packet whose clock read precedes its flow's last packet (two CPUs at once) keeps the flow.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_bpf::abi::*;
use switchyard_bpf::nodeport::Timeouts;
use switchyard_bpf::nodeport_abi::*;
use switchyard_testing::frames::*;
use switchyard_testing::nodeport_fixture::*;

#[test]
fn a_flow_starting_without_syn_claims_no_snat_port_and_is_dropped() {
    if !switchyard_lab::require_root(
        "a_flow_starting_without_syn_claims_no_snat_port_and_is_dropped",
    ) {
        return;
    }
    for (family, node, client, local, remote) in FAMILIES {
        let mut settings = settings();
        settings.snat_ports = 40_000..=40_001;
        let mut tc = Tc::new("not-syn", &settings);
        tc.frontend(1, None, family, NODE_PORT, TCP, FE_NODEPORT, &[(9, remote, 8080, 0)]);
        let local_port = NODE_PORT + 1;
        let flags = FE_NODEPORT | FE_LOCAL_ONLY;
        tc.frontend(2, None, family, local_port, TCP, flags, &[(7, local, 8080, BE_LOCAL)]);

        // A flood of ACKs, RSTs and SYN-ACKs with varied source ports: all dropped, no entry.
        for (i, first) in [ACK, ACK | FIN, RST, SYN | ACK, ACK].into_iter().enumerate() {
            let sport = 50_000 + i as u16;
            let (rc, _) =
                tc.run(INGRESS, &Spec::tcp(client, sport, node, NODE_PORT, first).frame());
            assert_eq!(rc, TC_ACT_SHOT, "{family} flags {first:#x}");
            let orig = CtKey::new(ip(client), sport, ip(node), NODE_PORT, TCP);
            assert!(tc.pkt.maps().conntrack(&orig).unwrap().is_none(), "no entry for {first:#x}");
        }
        assert_eq!(tc.count(PacketReason::DropNotSyn), 5);

        // Both SNAT ports are still free: two real clients connect.
        for sport in [51_000, 51_001] {
            let (rc, out) =
                tc.run(INGRESS, &Spec::tcp(client, sport, node, NODE_PORT, SYN).frame());
            assert_eq!(rc, TC_ACT_OK, "{family}: a SYN after the flood");
            assert!((40_000..=40_001).contains(&parse(&out).sport));
        }
        assert_eq!(tc.count(PacketReason::DropSnatExhausted), 0);

        // Without SNAT (traffic policy Local) a flow moved here mid-stream goes on: the backend
        // sees the client's own tuple.
        let (rc, out) = tc.run(INGRESS, &Spec::tcp(client, 52_000, node, local_port, ACK).frame());
        assert_eq!(rc, TC_ACT_OK);
        assert_eq!((parse(&out).src, parse(&out).dst), (ip(client), ip(local)));
    }
}

#[test]
fn a_flow_nobody_answers_expires_after_the_unreplied_timeout() {
    if !switchyard_lab::require_root("a_flow_nobody_answers_expires_after_the_unreplied_timeout") {
        return;
    }
    let timeouts = Timeouts::default();
    let config = PktConfig { timeout_unreplied_s: 0, ..settings().to_config().unwrap() };
    let mut entry = CtEntry { state: CT_ESTABLISHED, last_seen_ns: 0, ..CtEntry::default() };
    // UDP: 60 s once answered, the unreplied 30 s until then; TCP established likewise.
    for (proto, answered) in [(UDP, timeouts.udp), (TCP, timeouts.tcp_established)] {
        entry.flags = 0;
        assert_eq!(entry.timeout_s(proto, &config), timeouts.unreplied, "proto {proto}");
        entry.flags = CT_F_REPLY_SEEN;
        assert_eq!(entry.timeout_s(proto, &config), answered, "proto {proto}");
    }

    // The programs agree: an unanswered flow whose last packet is older than the unreplied
    // timeout (but younger than the state's) starts over; an answered one does not.
    let mut tc = Tc::new("unreplied", &settings());
    let (node, client, remote) = (NODE4, CLIENT4, "10.244.2.9");
    tc.frontend(1, None, AF_INET, NODE_PORT, UDP, FE_NODEPORT, &[(9, remote, 8080, 0)]);
    let orig = CtKey::new(ip(client), 51_000, ip(node), NODE_PORT, UDP);
    let request = Spec::udp(client, 51_000, node, NODE_PORT).frame();
    for answered in [false, true] {
        tc.run(INGRESS, &request);
        let mut entry = tc.pkt.maps().conntrack(&orig).unwrap().unwrap();
        let age = u64::from(timeouts.unreplied + 5) * 1_000_000_000;
        entry.last_seen_ns = entry.last_seen_ns.saturating_sub(age);
        if answered {
            entry.flags |= CT_F_REPLY_SEEN;
        }
        tc.pkt.maps_mut().ct.insert(orig, entry, 0).unwrap();
        let new_before = tc.count(PacketReason::DnatSnat);
        tc.run(INGRESS, &request);
        let started_over = tc.count(PacketReason::DnatSnat) > new_before;
        assert_eq!(started_over, !answered, "answered: {answered}");
        tc.pkt.maps_mut().ct.remove(&orig).unwrap();
    }
}

/// Two packets of one flow on two CPUs at once (a client's handshake ACK and its first data,
/// say): each reads the clock, then the entry; the later one can write `last_seen_ns` between
/// the other's two reads, so that one sees its flow's last packet *after* its own "now". An
/// entry seen so is fresh, not expired: before the fix `now - last_seen_ns` wrapped around, the
/// entry counted as expired and the packet was taken for a new flow — here, as in the director
/// lab (issue 17, the reset at a flow's first round trip), sent to a local backend that resets
/// it, while the flow's reverse entry went too. Simulated by an entry whose last packet is 1 s
/// ahead of the program's clock.
#[test]
fn a_flow_whose_last_packet_is_ahead_of_the_packets_clock_keeps_its_backend() {
    if !switchyard_lab::require_root(
        "a_flow_whose_last_packet_is_ahead_of_the_packets_clock_keeps_its_backend",
    ) {
        return;
    }
    for (family, node, client, local, remote) in FAMILIES {
        for proto in [TCP, UDP] {
            let mut tc = Tc::new("clock-ahead", &settings());
            tc.frontend(1, None, family, NODE_PORT, proto, FE_NODEPORT, &[(9, remote, 8080, 0)]);
            let spec = |flags| match proto {
                TCP => Spec::tcp(client, 50_000, node, NODE_PORT, flags),
                _ => Spec::udp(client, 50_000, node, NODE_PORT),
            };
            let (rc, out) = tc.run(INGRESS, &spec(SYN).frame());
            assert_eq!(rc, TC_ACT_OK, "{family}/{proto}: the first packet");
            let first = parse(&out);
            assert_eq!((first.src, first.dst), (ip(node), ip(remote)), "{family}/{proto}");

            // From now on a new flow would go to the local backend only.
            let local_backend = Backend::new(ip(local), 8080, BE_LOCAL);
            tc.sock.maps_mut().backends.insert(7, local_backend, 0).unwrap();
            let key = FrontendKey::node_port(family, NODE_PORT, proto, SCOPE_DEFAULT);
            tc.set_slots(1, key, FE_NODEPORT, &[7]);

            // The other CPU's packet, 1 s ahead of this one's clock read.
            let orig = CtKey::new(ip(client), 50_000, ip(node), NODE_PORT, proto);
            let mut entry = tc.pkt.maps().conntrack(&orig).unwrap().unwrap();
            entry.last_seen_ns += 1_000_000_000;
            tc.pkt.maps_mut().ct.insert(orig, entry, 0).unwrap();

            let hits = tc.count(PacketReason::CtHit);
            let (rc, out) = tc.run(INGRESS, &spec(ACK).frame());
            assert_eq!(rc, TC_ACT_OK, "{family}/{proto}: the next packet");
            let next = parse(&out);
            assert_eq!(
                (next.src, next.sport, next.dst),
                (first.src, first.sport, first.dst),
                "{family}/{proto}: the next packet keeps the flow's backend and SNAT port"
            );
            assert_eq!(tc.count(PacketReason::CtHit), hits + 1, "{family}/{proto}");

            // The backend's answer still finds its way back to the client.
            let answer = match proto {
                TCP => Spec::tcp(remote, 8080, node, first.sport, SYN | ACK),
                _ => Spec::udp(remote, 8080, node, first.sport),
            };
            let (rc, out) = tc.run(INGRESS, &answer.frame());
            assert_eq!(rc, TC_ACT_OK, "{family}/{proto}: the answer");
            let back = parse(&out);
            assert_eq!(
                (back.src, back.sport, back.dst, back.dport),
                (ip(node), NODE_PORT, ip(client), 50_000),
                "{family}/{proto}: the answer translated back"
            );
        }
    }
}
