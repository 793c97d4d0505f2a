//! The per-packet programs under BPF_PROG_TEST_RUN with crafted frames (root).
//!
//! Each test runs on a thread moved into a fresh, empty network namespace, so the programs'
//! route lookups find no route (the translated packet goes to the stack: TC_ACT_OK) and never
//! depend on or touch the host's network; answers (RST, ICMP) are redirected back (TC_ACT_REDIRECT).
//! One test adds a route of its own in that namespace to check redirects and frag-needed.
//! The fixture (`Tc`, addresses, settings) is `switchyard_testing::nodeport_fixture`.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_testing::frames;

use frames::*;
use switchyard_bpf::{abi::*, nodeport::PacketSettings, nodeport_abi::*};
use switchyard_testing::nodeport_fixture::*;

#[test]
fn nodeport_to_a_local_backend_is_dnated_and_the_reply_is_translated_back() {
    if !switchyard_lab::require_root(
        "nodeport_to_a_local_backend_is_dnated_and_the_reply_is_translated_back",
    ) {
        return;
    }
    for (family, node, client, local, _) in FAMILIES {
        for proto in [TCP, UDP] {
            let mut tc = Tc::new("dnat-local", &settings());
            tc.frontend(
                1,
                None,
                family,
                NODE_PORT,
                proto,
                FE_NODEPORT,
                &[(7, local, 8080, BE_LOCAL)],
            );
            let spec = if proto == TCP {
                Spec::tcp(client, 51000, node, NODE_PORT, SYN)
            } else {
                Spec::udp(client, 51000, node, NODE_PORT)
            };
            let (rc, out) = tc.run(INGRESS, &spec.frame());
            assert_eq!(rc, TC_ACT_OK, "{family} {proto}: no route in the test netns: to the stack");
            let p = parse(&out);
            assert_eq!((p.src, p.sport), (ip(client), 51000), "client address kept");
            assert_eq!((p.dst, p.dport), (ip(local), 8080), "DNATed to the backend");
            assert_eq!(tc.count(PacketReason::Dnat), 1);

            let orig = CtKey::new(ip(client), 51000, ip(node), NODE_PORT, proto);
            let ct = tc.pkt.maps().conntrack(&orig).unwrap().expect("conntrack entry");
            assert_eq!(ct.backend_id, 7);
            assert_eq!(ct.flags & CT_F_SNAT, 0);
            let want_state = if proto == TCP { CT_SYN_SENT } else { CT_ESTABLISHED };
            assert_eq!(ct.state, want_state);

            // The backend's reply leaves through the device's egress.
            let mut reply = if proto == TCP {
                Spec::tcp(local, 8080, client, 51000, SYN | ACK)
            } else {
                Spec::udp(local, 8080, client, 51000)
            };
            reply.payload = b"reply".to_vec();
            let (rc, out) = tc.run(EGRESS, &reply.frame());
            assert_eq!(rc, TC_ACT_OK);
            let p = parse(&out);
            assert_eq!((p.src, p.sport), (ip(node), NODE_PORT), "reply comes from the NodePort");
            assert_eq!((p.dst, p.dport), (ip(client), 51000));
            assert_eq!(tc.count(PacketReason::Revnat), 1);
            let ct = tc.pkt.maps().conntrack(&orig).unwrap().unwrap();
            assert_eq!(ct.state, CT_ESTABLISHED, "the backend answered");
            assert_ne!(ct.flags & CT_F_REPLY_SEEN, 0);
        }
    }
}

#[test]
fn a_remote_backend_gets_the_node_address_as_source_and_its_reply_is_translated_back() {
    if !switchyard_lab::require_root(
        "a_remote_backend_gets_the_node_address_as_source_and_its_reply_is_translated_back",
    ) {
        return;
    }
    for (family, node, client, _, remote) in FAMILIES {
        let mut tc = Tc::new("snat", &settings());
        tc.frontend(1, None, family, NODE_PORT, TCP, FE_NODEPORT, &[(9, remote, 8080, 0)]);
        let (rc, out) = tc.run(INGRESS, &Spec::tcp(client, 51000, node, NODE_PORT, SYN).frame());
        assert_eq!(rc, TC_ACT_OK);
        let p = parse(&out);
        assert_eq!(p.src, ip(node), "SNAT to the node address");
        assert!((40_000..=40_999).contains(&p.sport), "SNAT port {} from the range", p.sport);
        assert_eq!((p.dst, p.dport), (ip(remote), 8080));
        assert_eq!(tc.count(PacketReason::DnatSnat), 1);

        // The reply arrives on the device from the other node.
        let reply = Spec::tcp(remote, 8080, node, p.sport, SYN | ACK);
        let (rc, out) = tc.run(INGRESS, &reply.frame());
        assert_eq!(rc, TC_ACT_OK);
        let r = parse(&out);
        assert_eq!((r.src, r.sport), (ip(node), NODE_PORT), "reply from the NodePort");
        assert_eq!((r.dst, r.dport), (ip(client), 51000), "to the client's own port");
        assert_eq!(tc.count(PacketReason::Revnat), 1);
    }
}

#[test]
fn local_traffic_policy_keeps_the_client_address_and_drops_without_local_backends() {
    if !switchyard_lab::require_root(
        "local_traffic_policy_keeps_the_client_address_and_drops_without_local_backends",
    ) {
        return;
    }
    let mut tc = Tc::new("etp-local", &settings());
    let flags = FE_NODEPORT | FE_LOCAL_ONLY;
    tc.frontend(1, None, AF_INET, NODE_PORT, TCP, flags, &[(7, "10.244.1.5", 8080, BE_LOCAL)]);
    tc.frontend(2, None, AF_INET, NODE_PORT + 1, TCP, flags | FE_REJECT_EMPTY, &[]);
    let (_, out) = tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, NODE4, NODE_PORT, SYN).frame());
    assert_eq!(parse(&out).src, ip(CLIENT4), "client address preserved");
    let (rc, _) = tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, NODE4, NODE_PORT + 1, SYN).frame());
    assert_eq!(rc, TC_ACT_SHOT, "dropped, not rejected: another node may have endpoints");
    assert_eq!(tc.count(PacketReason::DropNoLocalBackend), 1);
}

#[test]
fn an_existing_flow_keeps_its_backend_when_the_backend_set_changes() {
    if !switchyard_lab::require_root(
        "an_existing_flow_keeps_its_backend_when_the_backend_set_changes",
    ) {
        return;
    }
    let mut tc = Tc::new("ct-keeps", &settings());
    let lb = "198.51.100.10";
    tc.frontend(1, Some(lb), AF_INET, 80, TCP, 0, &[(7, "10.244.1.5", 8080, BE_LOCAL)]);
    let first = Spec::tcp(CLIENT4, 51000, lb, 80, SYN);
    let (_, out) = tc.run(INGRESS, &first.frame());
    assert_eq!(parse(&out).dst, ip("10.244.1.5"));

    // Backend 8 replaces backend 7 in the slots; 7 still exists (terminating).
    tc.sock
        .maps_mut()
        .backends
        .insert(8, Backend::new(ip("10.244.1.6"), 8080, BE_LOCAL), 0)
        .unwrap();
    let key = FrontendKey::new(ip(lb), 80, TCP, SCOPE_DEFAULT);
    tc.set_slots(1, key, 0, &[8]);

    let (_, out) = tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, lb, 80, ACK).frame());
    assert_eq!(parse(&out).dst, ip("10.244.1.5"), "the established flow stays");
    assert_eq!(tc.count(PacketReason::CtHit), 1);
    let (_, out) = tc.run(INGRESS, &Spec::tcp(CLIENT4, 51001, lb, 80, SYN).frame());
    assert_eq!(parse(&out).dst, ip("10.244.1.6"), "a new flow takes the new set");

    // Once backend 7 is deleted, its flow moves on (stale UDP/TCP flows are not blackholed).
    tc.sock.maps_mut().backends.remove(&7).unwrap();
    let (_, out) = tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, lb, 80, ACK).frame());
    assert_eq!(parse(&out).dst, ip("10.244.1.6"));
}

#[test]
fn a_new_syn_on_a_closed_flow_picks_again() {
    if !switchyard_lab::require_root("a_new_syn_on_a_closed_flow_picks_again") {
        return;
    }
    let mut tc = Tc::new("ct-closing", &settings());
    let lb = "198.51.100.10";
    tc.frontend(1, Some(lb), AF_INET, 80, TCP, 0, &[(7, "10.244.1.5", 8080, BE_LOCAL)]);
    tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, lb, 80, SYN).frame());
    let orig = CtKey::new(ip(CLIENT4), 51000, ip(lb), 80, TCP);
    tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, lb, 80, FIN | ACK).frame());
    assert_eq!(tc.pkt.maps().conntrack(&orig).unwrap().unwrap().state, CT_CLOSING);

    tc.sock
        .maps_mut()
        .backends
        .insert(8, Backend::new(ip("10.244.1.6"), 8080, BE_LOCAL), 0)
        .unwrap();
    tc.set_slots(1, FrontendKey::new(ip(lb), 80, TCP, SCOPE_DEFAULT), 0, &[8]);
    let (_, out) = tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, lb, 80, SYN).frame());
    assert_eq!(parse(&out).dst, ip("10.244.1.6"), "port reuse after close is a new flow");
    let ct = tc.pkt.maps().conntrack(&orig).unwrap().unwrap();
    assert_eq!((ct.backend_id, ct.state), (8, CT_SYN_SENT));
}

#[test]
fn snat_ports_do_not_collide_and_exhaustion_is_a_counted_drop() {
    if !switchyard_lab::require_root("snat_ports_do_not_collide_and_exhaustion_is_a_counted_drop") {
        return;
    }
    let mut settings = settings();
    settings.snat_ports = 40_000..=40_001;
    let mut tc = Tc::new("snat-ports", &settings);
    tc.frontend(1, None, AF_INET, NODE_PORT, TCP, FE_NODEPORT, &[(9, "10.244.2.9", 8080, 0)]);
    let mut ports = Vec::new();
    for client_port in [51000, 51001] {
        let (rc, out) =
            tc.run(INGRESS, &Spec::tcp(CLIENT4, client_port, NODE4, NODE_PORT, SYN).frame());
        assert_eq!(rc, TC_ACT_OK);
        ports.push(parse(&out).sport);
    }
    ports.sort();
    assert_eq!(ports, [40_000, 40_001], "two flows, two distinct ports of the range");
    let (rc, _) = tc.run(INGRESS, &Spec::tcp(CLIENT4, 51002, NODE4, NODE_PORT, SYN).frame());
    assert_eq!(rc, TC_ACT_SHOT, "third flow: range exhausted");
    assert_eq!(tc.count(PacketReason::DropSnatExhausted), 1);
}

#[test]
fn a_closed_flows_snat_port_is_reused_only_when_no_other_is_free() {
    if !switchyard_lab::require_root(
        "a_closed_flows_snat_port_is_reused_only_when_no_other_is_free",
    ) {
        return;
    }
    let mut settings = settings();
    settings.snat_ports = 40_000..=40_001;
    settings.timeouts.tcp_closing = 1;
    let mut tc = Tc::new("snat-hold", &settings);
    tc.frontend(1, None, AF_INET, NODE_PORT, TCP, FE_NODEPORT, &[(9, "10.244.2.9", 8080, 0)]);
    let open = |tc: &Tc, client_port| {
        let (rc, out) =
            tc.run(INGRESS, &Spec::tcp(CLIENT4, client_port, NODE4, NODE_PORT, SYN).frame());
        assert_eq!(rc, TC_ACT_OK, "client port {client_port}");
        parse(&out).sport
    };
    let first = open(&tc, 51000);
    tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, NODE4, NODE_PORT, FIN | ACK).frame());
    // Past the closing timeout the flow is gone, but the backend may still hold the
    // connection in TIME_WAIT on (node, first): a new flow gets the other, unused port...
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let second = open(&tc, 51001);
    assert_ne!(second, first, "the closed flow's port is held while another is free");
    // ... and the held one only when nothing else is free, instead of a drop.
    let third = open(&tc, 51002);
    assert_eq!(third, first, "the held port is reused rather than the flow dropped");
    assert_eq!(tc.count(PacketReason::DropSnatExhausted), 0);
    let (rc, _) = tc.run(INGRESS, &Spec::tcp(CLIENT4, 51003, NODE4, NODE_PORT, SYN).frame());
    assert_eq!(rc, TC_ACT_SHOT, "both ports owned by live flows");
    assert_eq!(tc.count(PacketReason::DropSnatExhausted), 1);
}

#[test]
fn a_reset_flows_snat_port_is_reused_after_a_quiet_second_only_when_no_other_is_free() {
    if !switchyard_lab::require_root(
        "a_reset_flows_snat_port_is_reused_after_a_quiet_second_only_when_no_other_is_free",
    ) {
        return;
    }
    let mut settings = settings();
    settings.snat_ports = 40_000..=40_001;
    let mut tc = Tc::new("snat-reset", &settings);
    tc.frontend(1, None, AF_INET, NODE_PORT, TCP, FE_NODEPORT, &[(9, "10.244.2.9", 8080, 0)]);
    let open = |tc: &Tc, client_port| {
        let (rc, out) =
            tc.run(INGRESS, &Spec::tcp(CLIENT4, client_port, NODE4, NODE_PORT, SYN).frame());
        (rc, (rc == TC_ACT_OK).then(|| parse(&out).sport))
    };
    // Two flows take both ports; the first is reset by its client, the second by a stray RST
    // after which its data goes on.
    let (_, reset) = open(&tc, 51000);
    let (_, going_on) = open(&tc, 51001);
    tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, NODE4, NODE_PORT, RST | ACK).frame());
    tc.run(INGRESS, &Spec::tcp(CLIENT4, 51001, NODE4, NODE_PORT, RST).frame());
    tc.run(INGRESS, &Spec::tcp(CLIENT4, 51001, NODE4, NODE_PORT, ACK).frame());
    let orig = CtKey::new(ip(CLIENT4), 51000, ip(NODE4), NODE_PORT, TCP);
    let ct = tc.pkt.maps().conntrack(&orig).unwrap().unwrap();
    assert_eq!((ct.state, ct.flags & CT_F_RESET), (CT_CLOSING, CT_F_RESET));
    // Right after the reset the port is still live (a delayed RST of an earlier connection on
    // the tuple must not give a new flow's port away before its next packet clears the mark).
    let (rc, _) = open(&tc, 51004);
    assert_eq!(rc, TC_ACT_SHOT, "no port is free or held yet");
    assert_eq!(tc.count(PacketReason::DropSnatExhausted), 1);
    std::thread::sleep(std::time::Duration::from_millis(SNAT_RESET_QUIET_MS + 200));
    // Quiet since, well within the 10 s closing timeout: the reset flow's port goes to a new
    // flow rather than the SYN being dropped; the flow whose data went on keeps its own.
    let (rc, third) = open(&tc, 51002);
    assert_eq!(rc, TC_ACT_OK, "the reset flow's port is reused");
    assert_eq!(third, reset);
    assert_ne!(third, going_on);
    assert_eq!(tc.count(PacketReason::DropSnatExhausted), 1);
    // The port now belongs to the new flow: its reply reaches the new client.
    let (_, out) =
        tc.run(INGRESS, &Spec::tcp("10.244.2.9", 8080, NODE4, third.unwrap(), SYN | ACK).frame());
    assert_eq!(parse(&out).dport, 51002);
    let (rc, _) = open(&tc, 51003);
    assert_eq!(rc, TC_ACT_SHOT, "both ports owned by flows that are not reset");
    assert_eq!(tc.count(PacketReason::DropSnatExhausted), 2);
}

/// A conntrack entry another CPU stamped after this one read its clock (the flow's other
/// direction, processed at the same moment) is live, not expired: `now - last_seen` wrapped
/// around, so the client's packet took the new-flow path and was dropped as `drop_not_syn`
/// (0-17 per 8 s point at 10,000 new connections per second, issue 20), and a port claimed by
/// another CPU an instant ago looked free to the next claim.
#[test]
fn an_entry_stamped_by_another_cpu_after_this_one_read_its_clock_is_live() {
    if !switchyard_lab::require_root(
        "an_entry_stamped_by_another_cpu_after_this_one_read_its_clock_is_live",
    ) {
        return;
    }
    let mut settings = settings();
    settings.snat_ports = 40_000..=40_000;
    let mut tc = Tc::new("ct-future", &settings);
    tc.frontend(1, None, AF_INET, NODE_PORT, TCP, FE_NODEPORT, &[(9, "10.244.2.9", 8080, 0)]);
    let (rc, out) = tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, NODE4, NODE_PORT, SYN).frame());
    assert_eq!(rc, TC_ACT_OK);
    let port = parse(&out).sport;
    tc.run(INGRESS, &Spec::tcp("10.244.2.9", 8080, NODE4, port, SYN | ACK).frame());
    // The entry's last packet is stamped later than any clock this program reads now.
    let orig = CtKey::new(ip(CLIENT4), 51000, ip(NODE4), NODE_PORT, TCP);
    let mut entry = tc.pkt.maps().conntrack(&orig).unwrap().unwrap();
    entry.last_seen_ns += 1_000_000_000;
    tc.pkt.maps_mut().ct.insert(orig, entry, 0).unwrap();
    let (rc, out) = tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, NODE4, NODE_PORT, ACK).frame());
    assert_eq!(rc, TC_ACT_OK, "the flow's ACK goes on");
    assert_eq!(parse(&out).sport, port);
    assert_eq!(tc.count(PacketReason::DropNotSyn), 0);
    // Its port is live: a new flow finds none free.
    let (rc, _) = tc.run(INGRESS, &Spec::tcp(CLIENT4, 51001, NODE4, NODE_PORT, SYN).frame());
    assert_eq!(rc, TC_ACT_SHOT, "the only port belongs to a live flow");
    assert_eq!(tc.count(PacketReason::DropSnatExhausted), 1);
}

/// Two CPUs opening flows at the same moment never get the same SNAT port. Each round gives
/// both ports of a two-port range to closed flows whose ports are held (an RST ended them
/// seconds ago, one longer ago than the other), then two threads send a SYN each at once: both
/// probe both ports and prefer the same one, the idlest. Before the claims were serialised
/// (`sy_snat_claims`), both could find it takeable and both overwrite its `sy_nat` entry; in
/// the connection benchmark the second SYN then met the first connection on the backend and
/// the exchange that followed reset it (issue 20).
#[test]
fn flows_opened_at_once_on_two_cpus_never_share_a_snat_port() {
    if !switchyard_lab::require_root("flows_opened_at_once_on_two_cpus_never_share_a_snat_port") {
        return;
    }
    use std::sync::atomic::{AtomicUsize, Ordering};
    const ROUNDS: u16 = 1000;
    let mut settings = settings();
    settings.snat_ports = 40_000..=40_001;
    let mut tc = Tc::new("snat-race", &settings);
    tc.frontend(1, None, AF_INET, NODE_PORT, TCP, FE_NODEPORT, &[(9, "10.244.2.9", 8080, 0)]);
    let now_ns = || {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    };
    let mut shared = 0;
    for round in 0..ROUNDS {
        // Both ports held by reset flows quiet for 3 s and 2 s: 40000 is the idlest.
        for (snat_port, client_port, idle_s) in [(40_000u16, 1_000u16, 3), (40_001, 1_001, 2)] {
            let orig = CtKey::new(ip(CLIENT4), client_port, ip(NODE4), NODE_PORT, TCP);
            let entry = CtEntry {
                nat_saddr: Addr::from_ip(ip(SNAT4)).0,
                nat_daddr: Addr::from_ip(ip("10.244.2.9")).0,
                nat_sport: snat_port.to_be(),
                nat_dport: 8080u16.to_be(),
                backend_id: 9,
                frontend_id: 1,
                state: CT_CLOSING,
                flags: CT_F_SNAT | CT_F_REPLY_SEEN | CT_F_RESET,
                pad: [0; 2],
                last_seen_ns: now_ns() - idle_s * 1_000_000_000,
            };
            let reply = CtKey::new(ip("10.244.2.9"), 8080, ip(SNAT4), snat_port, TCP);
            let maps = tc.pkt.maps_mut();
            maps.ct.insert(orig, entry, 0).unwrap();
            maps.nat.insert(reply, NatEntry { orig }, 0).unwrap();
        }
        let ready = AtomicUsize::new(0);
        let ports: Vec<Option<u16>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..2u16)
                .map(|t| {
                    let (tc, ready) = (&tc, &ready);
                    let syn =
                        Spec::tcp(CLIENT4, 20_000 + 2 * round + t, NODE4, NODE_PORT, SYN).frame();
                    scope.spawn(move || {
                        // Both SYNs leave together (a spin, not a sleep: microseconds count).
                        ready.fetch_add(1, Ordering::SeqCst);
                        while ready.load(Ordering::SeqCst) < 2 {
                            std::hint::spin_loop();
                        }
                        let (rc, out) = tc.run(INGRESS, &syn);
                        (rc == TC_ACT_OK).then(|| parse(&out).sport)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        if let [Some(a), Some(b)] = ports[..]
            && a == b
        {
            shared += 1;
        }
    }
    assert_eq!(shared, 0, "rounds in which both new flows got the same SNAT port");
}

#[test]
fn a_client_reusing_its_port_after_close_keeps_the_snat_port() {
    if !switchyard_lab::require_root("a_client_reusing_its_port_after_close_keeps_the_snat_port") {
        return;
    }
    let mut tc = Tc::new("snat-keep", &settings());
    tc.frontend(1, None, AF_INET, NODE_PORT, TCP, FE_NODEPORT, &[(9, "10.244.2.9", 8080, 0)]);
    let syn = Spec::tcp(CLIENT4, 51000, NODE4, NODE_PORT, SYN).frame();
    let (_, out) = tc.run(INGRESS, &syn);
    let first = parse(&out).sport;
    tc.run(INGRESS, &Spec::tcp(CLIENT4, 51000, NODE4, NODE_PORT, FIN | ACK).frame());
    // The same client tuple again: the backend sees the tuple it may hold in TIME_WAIT, on
    // which the client's sequence numbers and timestamps have grown.
    let (rc, out) = tc.run(INGRESS, &syn);
    assert_eq!(rc, TC_ACT_OK);
    assert_eq!(parse(&out).sport, first, "same backend: same SNAT port");
    assert_eq!(tc.count(PacketReason::DnatSnat), 2, "a new flow all the same");
    let orig = CtKey::new(ip(CLIENT4), 51000, ip(NODE4), NODE_PORT, TCP);
    assert_eq!(tc.pkt.maps().conntrack(&orig).unwrap().unwrap().state, CT_SYN_SENT);
    // The reply of the new flow is translated back to the client.
    let (_, out) = tc.run(INGRESS, &Spec::tcp("10.244.2.9", 8080, NODE4, first, SYN | ACK).frame());
    let r = parse(&out);
    assert_eq!((r.src, r.sport, r.dst, r.dport), (ip(NODE4), NODE_PORT, ip(CLIENT4), 51000));
}

#[test]
fn snat_settings_overlapping_the_node_port_range_are_refused() {
    let cases = [
        (30_000..=32_767, false, "NodePort range itself"),
        (32_000..=33_000, false, "overlaps the top"),
        (29_000..=30_000, false, "overlaps the bottom"),
        (0..=100, false, "port 0"),
        (32_768..=60_999, true, "Linux ephemeral range"),
        (61_000..=65_535, true, "above both"),
        (PacketSettings::default().snat_ports, true, "default"),
        (20_000..=29_999, true, "below"),
    ];
    for (range, ok, what) in cases {
        let settings = PacketSettings { snat_ports: range.clone(), ..PacketSettings::default() };
        assert_eq!(settings.to_config().is_ok(), ok, "{what}: {range:?}");
    }
}

#[test]
fn an_empty_service_with_reject_answers_rst_or_icmp_port_unreachable() {
    if !switchyard_lab::require_root(
        "an_empty_service_with_reject_answers_rst_or_icmp_port_unreachable",
    ) {
        return;
    }
    for (family, node, client, _, _) in FAMILIES {
        let mut tc = Tc::new("reject", &settings());
        tc.frontend(1, None, family, NODE_PORT, TCP, FE_NODEPORT | FE_REJECT_EMPTY, &[]);
        tc.frontend(2, None, family, NODE_PORT, UDP, FE_NODEPORT | FE_REJECT_EMPTY, &[]);
        tc.frontend(3, None, family, NODE_PORT + 1, TCP, FE_NODEPORT, &[]);

        let syn = Spec::tcp(client, 51000, node, NODE_PORT, SYN);
        let (rc, out) = tc.run(INGRESS, &syn.frame());
        assert_eq!(rc, TC_ACT_REDIRECT, "sent back out");
        let p = parse(&out);
        assert_eq!((p.src, p.sport, p.dst, p.dport), (ip(node), NODE_PORT, ip(client), 51000));
        assert_eq!(p.tcp_flags, RST | ACK);
        assert_eq!(p.tcp_ack, syn.seq + 1, "acknowledges the SYN");
        assert_eq!((p.dst_mac, p.src_mac), (CLIENT_MAC, NODE_MAC));
        assert_eq!(tc.count(PacketReason::RejectRst), 1);

        let udp = Spec::udp(client, 51000, node, NODE_PORT);
        let (rc, out) = tc.run(INGRESS, &udp.frame());
        assert_eq!(rc, TC_ACT_REDIRECT);
        let p = parse(&out);
        assert_eq!((p.src, p.dst), (ip(node), ip(client)));
        let want = if family == AF_INET { (ICMP, 3, 3) } else { (ICMPV6, 1, 4) };
        let (kind, code, _) = p.icmp();
        assert_eq!((p.proto, kind, code), want, "port unreachable");
        let q = p.quoted();
        assert_eq!((q.src, q.sport, q.dst, q.dport), (ip(client), 51000, ip(node), NODE_PORT));
        assert_eq!(tc.count(PacketReason::RejectIcmp), 1);

        let (rc, _) = tc.run(INGRESS, &Spec::tcp(client, 51000, node, NODE_PORT + 1, SYN).frame());
        assert_eq!(rc, TC_ACT_SHOT, "no reject flag: dropped");
        assert_eq!(tc.shared_count(Reason::DropNoBackend), 1);
    }
}

#[test]
fn source_ranges_admit_listed_clients_only() {
    if !switchyard_lab::require_root("source_ranges_admit_listed_clients_only") {
        return;
    }
    let mut tc = Tc::new("src-ranges", &settings());
    let lb = "198.51.100.10";
    let lb6 = "2001:db8:100::10";
    tc.frontend(
        5,
        Some(lb),
        AF_INET,
        443,
        TCP,
        FE_SOURCE_RANGES,
        &[(7, "10.244.1.5", 8443, BE_LOCAL)],
    );
    tc.frontend(
        6,
        Some(lb6),
        AF_INET6,
        443,
        TCP,
        FE_SOURCE_RANGES,
        &[(8, "fd00:244:1::5", 8443, BE_LOCAL)],
    );
    let maps = tc.pkt.maps_mut();
    maps.add_source_range(5, SrcRangeKey::new(5, ip("192.0.2.0"), 24).unwrap()).unwrap();
    maps.add_source_range(6, SrcRangeKey::new(6, ip("2001:db8::"), 64).unwrap()).unwrap();
    // A range of another frontend admits nobody here.
    maps.add_source_range(99, SrcRangeKey::new(99, ip("203.0.113.0"), 24).unwrap()).unwrap();

    let cases = [
        ("192.0.2.7", lb, TC_ACT_OK),
        ("192.0.2.255", lb, TC_ACT_OK),
        ("192.0.3.1", lb, TC_ACT_SHOT),
        ("203.0.113.5", lb, TC_ACT_SHOT),
        ("2001:db8::7", lb6, TC_ACT_OK),
        ("2001:db8:1::7", lb6, TC_ACT_SHOT),
    ];
    let mut drops = 0;
    for (client, dst, want) in cases {
        let (rc, _) = tc.run(INGRESS, &Spec::tcp(client, 51000, dst, 443, SYN).frame());
        assert_eq!(rc, want, "{client} -> {dst}");
        drops += u64::from(want == TC_ACT_SHOT);
    }
    assert_eq!(tc.count(PacketReason::DropSourceRange), drops);
}

#[test]
fn source_range_keys_mask_host_bits_and_refuse_long_prefixes() {
    let k = SrcRangeKey::new(3, ip("192.0.2.77"), 24).unwrap();
    assert_eq!(k.prefixlen, 32 + 96 + 24);
    assert_eq!(k.addr.to_ip(AF_INET), ip("192.0.2.0"));
    let k = SrcRangeKey::new(3, ip("2001:db8::ff"), 120).unwrap();
    assert_eq!(k.addr.to_ip(AF_INET6), ip("2001:db8::"));
    assert!(SrcRangeKey::new(3, ip("192.0.2.0"), 33).is_err());
    assert!(SrcRangeKey::new(3, ip("2001:db8::"), 129).is_err());
}

#[test]
fn icmp_frag_needed_about_a_snated_packet_reaches_the_client_translated() {
    if !switchyard_lab::require_root(
        "icmp_frag_needed_about_a_snated_packet_reaches_the_client_translated",
    ) {
        return;
    }
    for (family, node, client, _, remote) in FAMILIES {
        let mut tc = Tc::new("icmp-ptb", &settings());
        tc.frontend(1, None, family, NODE_PORT, TCP, FE_NODEPORT, &[(9, remote, 8080, 0)]);
        // The flow starts with its SYN (a SNATed flow must), then carries data.
        tc.run(INGRESS, &Spec::tcp(client, 51000, node, NODE_PORT, SYN).frame());
        let mut data = Spec::tcp(client, 51000, node, NODE_PORT, ACK);
        data.payload = vec![0xab; 1200];
        let (_, forwarded) = tc.run(INGRESS, &data.frame());
        let fwd = parse(&forwarded);

        // A router between this node and the backend cannot pass 1200 bytes.
        let router = if family == AF_INET { "10.0.5.1" } else { "fd00:5::1" };
        let (kind, code) = if family == AF_INET { (3, 4) } else { (2, 0) };
        let quoted =
            without_ethernet(&forwarded)[..if family == AF_INET { 28 } else { 48 }].to_vec();
        let err = icmp_error(router, node, kind, code, 1000, &quoted);
        let (rc, out) = tc.run(INGRESS, &err);
        assert_eq!(rc, TC_ACT_OK);
        let p = parse(&out);
        assert_eq!((p.src, p.dst), (ip(node), ip(client)), "from the frontend to the client");
        assert_eq!(p.icmp(), (kind, code, 1000), "type, code and MTU unchanged");
        let q = p.quoted();
        assert_eq!(
            (q.src, q.sport, q.dst, q.dport),
            (ip(client), 51000, ip(node), NODE_PORT),
            "the quote is the client's own packet (SNAT port {} undone)",
            fwd.sport
        );
        assert_eq!(tc.count(PacketReason::IcmpRevnat), 1);
    }
}

#[test]
fn icmp_errors_about_replies_and_from_local_backends_are_translated() {
    if !switchyard_lab::require_root(
        "icmp_errors_about_replies_and_from_local_backends_are_translated",
    ) {
        return;
    }
    let mut tc = Tc::new("icmp-both", &settings());
    let lb = "198.51.100.10";
    let backend = "10.244.1.5";
    tc.frontend(1, Some(lb), AF_INET, 53, UDP, 0, &[(7, backend, 5353, BE_LOCAL)]);
    let query = Spec::udp(CLIENT4, 51000, lb, 53);
    let (_, forwarded) = tc.run(INGRESS, &query.frame());

    // The local backend answers port unreachable about the query it got (egress).
    let quoted = without_ethernet(&forwarded)[..28].to_vec();
    let (rc, out) = tc.run(EGRESS, &icmp_error(backend, CLIENT4, 3, 3, 0, &quoted));
    assert_eq!(rc, TC_ACT_OK);
    let p = parse(&out);
    assert_eq!((p.src, p.dst), (ip(lb), ip(CLIENT4)));
    let q = p.quoted();
    assert_eq!((q.src, q.sport, q.dst, q.dport), (ip(CLIENT4), 51000, ip(lb), 53));

    // The client's side reports a reply too big (quoting LB -> client): goes to the backend.
    let reply = Spec::udp(lb, 53, CLIENT4, 51000);
    let quoted = without_ethernet(&reply.frame())[..28].to_vec();
    let (rc, out) = tc.run(INGRESS, &icmp_error("192.0.2.254", lb, 3, 4, 1280, &quoted));
    assert_eq!(rc, TC_ACT_OK);
    let p = parse(&out);
    assert_eq!(p.dst, ip(backend), "sent to the backend");
    assert_eq!(p.src, ip("192.0.2.254"), "no SNAT: the reporting router stays the source");
    let q = p.quoted();
    assert_eq!((q.src, q.sport, q.dst, q.dport), (ip(backend), 5353, ip(CLIENT4), 51000));
    assert_eq!(tc.count(PacketReason::IcmpRevnat), 2);
}

#[test]
fn maglev_frontends_pick_the_backend_of_the_flow_hash() {
    if !switchyard_lab::require_root("maglev_frontends_pick_the_backend_of_the_flow_hash") {
        return;
    }
    let mut tc = Tc::new("maglev", &settings());
    let lb = "198.51.100.10";
    let backends = [(11, "10.244.1.11"), (12, "10.244.1.12"), (13, "10.244.1.13")];
    let b: Vec<_> = backends.iter().map(|&(id, a)| (id, a, 8080u16, BE_LOCAL)).collect();
    tc.frontend(1, Some(lb), AF_INET, 80, TCP, FE_MAGLEV, &b);
    let table: Vec<u32> = (0..251u32).map(|i| [11, 12, 13][(i * 7 % 3) as usize]).collect();
    tc.sock.maps_mut().set_maglev_table(1, &table).unwrap();
    let seed = switchyard_maglev::Seed::DEFAULT;
    for client_port in 50_000..50_040u16 {
        let flow = switchyard_maglev::FlowKey {
            source: ip(CLIENT4),
            destination: ip(lb),
            source_port: client_port,
            destination_port: 80,
            protocol: TCP,
        };
        let want_id = table[(flow.hash(&seed).unwrap() % 251) as usize];
        let want = backends.iter().find(|b| b.0 == want_id).unwrap().1;
        let (_, out) = tc.run(INGRESS, &Spec::tcp(CLIENT4, client_port, lb, 80, SYN).frame());
        assert_eq!(parse(&out).dst, ip(want), "client port {client_port}");
    }
    assert_eq!(tc.shared_count(Reason::TranslatedMaglev), 40);
}

#[test]
fn hairpin_traffic_is_snated_so_the_backend_does_not_answer_itself() {
    if !switchyard_lab::require_root(
        "hairpin_traffic_is_snated_so_the_backend_does_not_answer_itself",
    ) {
        return;
    }
    let mut tc = Tc::new("hairpin", &settings());
    let pod = "10.244.1.5";
    tc.frontend(1, None, AF_INET, NODE_PORT, TCP, FE_NODEPORT, &[(7, pod, 8080, BE_LOCAL)]);
    let (_, out) = tc.run(INGRESS, &Spec::tcp(pod, 51000, NODE4, NODE_PORT, SYN).frame());
    let p = parse(&out);
    assert_eq!((p.src, p.dst), (ip(SNAT4), ip(pod)));
    let orig = CtKey::new(ip(pod), 51000, ip(NODE4), NODE_PORT, TCP);
    let ct = tc.pkt.maps().conntrack(&orig).unwrap().unwrap();
    assert_eq!(ct.flags & (CT_F_SNAT | CT_F_HAIRPIN), CT_F_SNAT | CT_F_HAIRPIN);
}

#[test]
fn malformed_and_foreign_packets_pass_or_drop_with_a_reason() {
    if !switchyard_lab::require_root("malformed_and_foreign_packets_pass_or_drop_with_a_reason") {
        return;
    }
    let mut tc = Tc::new("malformed", &settings());
    tc.frontend(
        1,
        None,
        AF_INET,
        NODE_PORT,
        TCP,
        FE_NODEPORT,
        &[(7, "10.244.1.5", 8080, BE_LOCAL)],
    );
    let good = Spec::tcp(CLIENT4, 51000, NODE4, NODE_PORT, SYN).frame();

    // (The kernel refuses test frames shorter than Ethernet + IP header, so truncation is
    // tested at the transport header.)
    let mut long_ihl = good.clone();
    long_ihl[14] = 0x4f;
    let short_udp = Spec::udp(CLIENT4, 51000, NODE4, NODE_PORT).frame()[..36].to_vec();
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let mut bad_version = good.clone();
    bad_version[14] = 0x35;
    let mut fragment = good.clone();
    fragment[20..22].copy_from_slice(&0x0010u16.to_be_bytes());
    let mut v6_ext = Spec::tcp(CLIENT6, 51000, NODE6, NODE_PORT, SYN).frame();
    v6_ext[20] = 0; // a "hop-by-hop header" (the TCP header) naming an unknown protocol: passed

    let cases: [(&str, Vec<u8>, u32, Option<PacketReason>); 7] = [
        (
            "IPv4 header length beyond the frame",
            long_ihl,
            TC_ACT_OK,
            Some(PacketReason::PassMalformed),
        ),
        ("truncated UDP header", short_udp, TC_ACT_OK, Some(PacketReason::PassMalformed)),
        ("truncated TCP header", good[..40].to_vec(), TC_ACT_OK, Some(PacketReason::PassMalformed)),
        ("ARP", arp, TC_ACT_OK, None),
        ("IP version 3", bad_version, TC_ACT_OK, None),
        ("non-first fragment", fragment, TC_ACT_OK, Some(PacketReason::PassFragment)),
        ("hop-by-hop header, then an unknown protocol", v6_ext, TC_ACT_OK, None),
    ];
    for (what, frame, want, reason) in cases {
        let before = reason.map(|r| tc.count(r));
        let (rc, out) = tc.try_run(INGRESS, &frame).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(rc, want, "{what}");
        assert_eq!(out, frame, "{what}: passed untouched");
        if let (Some(r), Some(b)) = (reason, before) {
            assert_eq!(tc.count(r), b + 1, "{what}: counted as {r:?}");
        }
    }
    assert_eq!(tc.count(PacketReason::Dnat), 0, "nothing was translated");
}

#[test]
fn a_packet_too_big_for_the_route_is_answered_with_frag_needed_and_others_are_redirected() {
    if !switchyard_lab::require_root(
        "a_packet_too_big_for_the_route_is_answered_with_frag_needed_and_others_are_redirected",
    ) {
        return;
    }
    let mut tc = Tc::new("too-big", &settings());
    // In the test's own namespace: a 1280-byte-MTU device towards the backends, neighbours known.
    sh(
        "ip link set lo up && ip link add sy-small type veth peer name sy-small-peer && ip link set sy-small-peer up && ip link set sy-small mtu 1280 up \
        && ip addr add 10.99.0.1/24 dev sy-small && ip addr add fd99::1/64 dev sy-small nodad \
        && ip neigh add 10.99.0.5 lladdr 02:00:00:00:99:05 dev sy-small nud permanent \
        && ip neigh add fd99::5 lladdr 02:00:00:00:99:05 dev sy-small nud permanent \
        && echo 1 > /proc/sys/net/ipv4/conf/all/forwarding \
        && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding",
    );
    for (family, node, client, backend) in
        [(AF_INET, NODE4, CLIENT4, "10.99.0.5"), (AF_INET6, NODE6, CLIENT6, "fd99::5")]
    {
        tc.frontend(
            10 + u32::from(family),
            None,
            family,
            NODE_PORT,
            TCP,
            FE_NODEPORT,
            &[(20 + u32::from(family), backend, 8080, BE_LOCAL)],
        );
        let small = Spec::tcp(client, 51000, node, NODE_PORT, SYN);
        let (rc, out) = tc.run(INGRESS, &small.frame());
        assert_eq!(rc, TC_ACT_REDIRECT, "{family}: redirected along the route");
        let p = parse(&out);
        assert_eq!(p.dst_mac, [0x02, 0, 0, 0, 0x99, 0x05], "neighbour's MAC");
        assert_eq!((p.dst, p.dport), (ip(backend), 8080));

        let mut big = Spec::tcp(client, 51000, node, NODE_PORT, ACK);
        big.payload = vec![0x5a; 1400];
        let (rc, out) = tc.run(INGRESS, &big.frame());
        assert_eq!(rc, TC_ACT_REDIRECT, "{family}: answered back to the client");
        let p = parse(&out);
        assert_eq!((p.src, p.dst), (ip(node), ip(client)), "from the address the client used");
        let want = if family == AF_INET { (3, 4, 1280) } else { (2, 0, 1280) };
        assert_eq!(p.icmp(), want, "frag-needed / packet-too-big with the route MTU");
        let q = p.quoted();
        assert_eq!((q.src, q.sport, q.dst, q.dport), (ip(client), 51000, ip(node), NODE_PORT));
    }
    assert_eq!(tc.count(PacketReason::FragNeeded), 2);
}

#[test]
fn client_ip_affinity_keeps_new_flows_of_one_client_on_one_backend() {
    if !switchyard_lab::require_root(
        "client_ip_affinity_keeps_new_flows_of_one_client_on_one_backend",
    ) {
        return;
    }
    let mut tc = Tc::new("affinity", &settings());
    let lb = "198.51.100.10";
    let backends: Vec<_> = (1..=4u32)
        .map(|i| {
            (
                i,
                ["10.244.1.1", "10.244.1.2", "10.244.1.3", "10.244.1.4"][i as usize - 1],
                8080,
                BE_LOCAL,
            )
        })
        .collect();
    tc.frontend(1, Some(lb), AF_INET, 80, TCP, FE_AFFINITY, &backends);
    for client in ["192.0.2.7", "192.0.2.8", "192.0.2.9"] {
        let mut seen = std::collections::BTreeSet::new();
        for port in 50_000..50_020u16 {
            let (_, out) = tc.run(INGRESS, &Spec::tcp(client, port, lb, 80, SYN).frame());
            seen.insert(parse(&out).dst);
        }
        assert_eq!(seen.len(), 1, "{client}: 20 new flows, one backend: {seen:?}");
    }
    assert_eq!(tc.count(PacketReason::Affinity), 3 * 19, "every flow after the first reused");

    // A choice another CPU stored after this packet read the clock (the client's connections
    // start at once) still holds: before the fix its age wrapped around and it counted as
    // expired, so the flow got a backend of its own.
    let client = "192.0.2.10";
    let (addr, family) = Addr::from_ip(ip(client));
    let key = AffinityKey { client: addr, frontend_id: 1, family, pad: [0; 3] };
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    let now_ns = now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64;
    let ahead = Affinity { backend_id: 3, slot: 2, last_used_ns: now_ns + 1_000_000_000 };
    tc.sock.maps_mut().affinity.insert(key, ahead, 0).unwrap();
    let (_, out) = tc.run(INGRESS, &Spec::tcp(client, 50_000, lb, 80, SYN).frame());
    assert_eq!(parse(&out).dst, ip("10.244.1.3"), "the stored choice");
    assert_eq!(tc.count(PacketReason::Affinity), 3 * 19 + 1);
}
