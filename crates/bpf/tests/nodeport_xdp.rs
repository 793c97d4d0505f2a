//! The per-packet XDP program (`c/nodeport_xdp.bpf.c`) under BPF_PROG_TEST_RUN (root), on the
//! maps of the TC programs: it translates byte for byte as TC does, a flow it starts continues
//! at TC and the other way round, what it cannot finish passes untouched to TC (which then
//! does it), and its drops are counted under TC's reasons. Each test has a network namespace
//! of its own with routes and permanent neighbours, so route lookups succeed and translated
//! frames come back XDP_REDIRECT (XDP frames enter on loopback there).

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_testing::frames;

use frames::*;
use switchyard_bpf::{abi::*, nodeport_abi::*};
use switchyard_testing::nodeport_fixture::*;

/// Neighbours of the test's namespace.
const NEIGH_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x05];

/// One family's addresses in the test's namespace.
struct Net {
    family: u8,
    node: &'static str,
    client: &'static str,
    local: &'static str,
    remote: &'static str,
    /// A backend whose neighbour is unknown.
    no_neigh: &'static str,
    /// A backend behind a device without XDP.
    plain: &'static str,
    /// A backend behind a 1280-byte MTU.
    small: &'static str,
}

const NETS: [Net; 2] = [
    Net {
        family: AF_INET,
        node: NODE4,
        client: CLIENT4,
        local: "10.99.0.5",
        remote: "10.99.0.6",
        no_neigh: "10.99.0.7",
        plain: "10.97.0.5",
        small: "10.98.0.5",
    },
    Net {
        family: AF_INET6,
        node: NODE6,
        client: CLIENT6,
        local: "fd99::5",
        remote: "fd99::6",
        no_neigh: "fd99::7",
        plain: "fd97::5",
        small: "fd98::5",
    },
];

/// The XDP program and TC on one set of maps, in a namespace where the backends and the
/// clients are routed: `sy-out` (an XDP device) to the backends and, via a gateway, to the
/// clients; `sy-plain` (no XDP) and `sy-small` (an XDP device, MTU 1280) to one backend each.
fn lab(test: &str) -> TcXdp {
    let mut t = TcXdp::new(test, &settings());
    sh("ip link set lo up \
        && for d in out plain small; do ip link add sy-$d type veth peer name sy-$d-peer && ip link set sy-$d-peer up && ip link set sy-$d up; done \
        && ip link set sy-small mtu 1280 \
        && ip addr add 10.99.0.1/24 dev sy-out && ip addr add fd99::1/64 dev sy-out nodad \
        && ip addr add 10.97.0.1/24 dev sy-plain && ip addr add fd97::1/64 dev sy-plain nodad \
        && ip addr add 10.98.0.1/24 dev sy-small && ip addr add fd98::1/64 dev sy-small nodad \
        && for a in 10.99.0.5 10.99.0.6 10.99.0.254 fd99::5 fd99::6 fd99::fe; do ip neigh add $a lladdr 02:00:00:00:99:05 dev sy-out nud permanent; done \
        && ip neigh add 10.97.0.5 lladdr 02:00:00:00:99:05 dev sy-plain nud permanent \
        && ip neigh add fd97::5 lladdr 02:00:00:00:99:05 dev sy-plain nud permanent \
        && ip neigh add 10.98.0.5 lladdr 02:00:00:00:99:05 dev sy-small nud permanent \
        && ip neigh add fd98::5 lladdr 02:00:00:00:99:05 dev sy-small nud permanent \
        && ip route add 192.0.2.0/24 via 10.99.0.254 && ip -6 route add 2001:db8::/64 via fd99::fe \
        && echo 1 > /proc/sys/net/ipv4/conf/all/forwarding \
        && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding");
    for device in ["sy-out", "sy-small"] {
        let ifindex = nix::net::if_::if_nametoindex(device).unwrap();
        t.xdp.set_device(ifindex, [0x02, 0, 0, 0, 0, 0x0e]).unwrap();
    }
    t
}

/// Frontends (TCP and UDP, local and remote backend) of one family; returns
/// [(proto, NodePort, backend, SNAT expected)].
fn services(t: &mut TcXdp, family: u8, local: &str, remote: &str) -> [(u8, u16, String, bool); 4] {
    let base = u32::from(family) * 100;
    let mut out = Vec::new();
    for (i, (proto, backend, flags)) in
        [(TCP, local, BE_LOCAL), (TCP, remote, 0), (UDP, local, BE_LOCAL), (UDP, remote, 0)]
            .into_iter()
            .enumerate()
    {
        let port = NODE_PORT + i as u16;
        let id = base + i as u32;
        t.tc.frontend(id, None, family, port, proto, FE_NODEPORT, &[(id, backend, 8080, flags)]);
        out.push((proto, port, backend.to_owned(), flags == 0));
    }
    out.try_into().unwrap()
}

fn first_packet(proto: u8, client: &str, sport: u16, node: &str, port: u16) -> Spec {
    if proto == TCP {
        Spec::tcp(client, sport, node, port, SYN)
    } else {
        Spec::udp(client, sport, node, port)
    }
}

#[test]
fn xdp_translates_as_tc_does_and_tc_continues_the_flows_it_starts() {
    if !switchyard_lab::require_root(
        "xdp_translates_as_tc_does_and_tc_continues_the_flows_it_starts",
    ) {
        return;
    }
    let mut t = lab("xdp-xlat");
    let mut forwarded = 0;
    for Net { family, node, client, local, remote, .. } in NETS {
        for (i, (proto, port, backend, snat)) in
            services(&mut t, family, local, remote).into_iter().enumerate()
        {
            let what = format!("{family}/{proto} to {backend}");
            let spec = first_packet(proto, client, 51000 + i as u16, node, port);
            let first = spec.frame();
            let (rc, out) = t.run_xdp(&first);
            assert_eq!(rc, XDP_REDIRECT, "{what}: forwarded at XDP");
            forwarded += 1;
            let p = parse(&out); // every checksum valid
            assert_eq!((p.dst, p.dport), (ip(&backend), 8080), "{what}: DNAT");
            if snat {
                assert_eq!(p.src, ip(node), "{what}: SNAT to the node");
                assert!((40_000..=40_999).contains(&p.sport), "{what}: a SNAT port");
            } else {
                assert_eq!((p.src, p.sport), (ip(client), 51000 + i as u16), "{what}: client kept");
            }
            assert_eq!(p.dst_mac, NEIGH_MAC, "{what}: the neighbour's MAC");
            let header = if proto == TCP { 20 } else { 8 };
            assert_eq!(&p.l4[header..], &spec.payload[..], "{what}: payload intact");

            // The same packet at TC (a retransmission XDP handed over): the flow XDP started,
            // translated to the same bytes.
            let (rc, tc_out) = t.tc.run(INGRESS, &first);
            assert_eq!(rc, TC_ACT_REDIRECT, "{what}: TC continues the flow");
            assert_eq!(tc_out, out, "{what}: TC's translation is XDP's, byte for byte");

            if snat {
                // The backend's reply arrives on the device: translated back at XDP, as TC does.
                let mut reply = first_packet(proto, &backend, 8080, node, p.sport);
                reply.tcp_flags = SYN | ACK;
                let (rc, out) = t.run_xdp(&reply.frame());
                assert_eq!(rc, XDP_REDIRECT, "{what}: reply forwarded at XDP");
                forwarded += 1;
                let r = parse(&out);
                assert_eq!((r.src, r.sport), (ip(node), port), "{what}: from the NodePort");
                assert_eq!(
                    (r.dst, r.dport),
                    (ip(client), 51000 + i as u16),
                    "{what}: to the client"
                );
                let (rc, tc_out) = t.tc.run(INGRESS, &reply.frame());
                assert_eq!(
                    (rc, tc_out),
                    (TC_ACT_REDIRECT, out),
                    "{what}: reply as TC translates it"
                );
            }
        }
    }
    assert_eq!(t.tc.count(PacketReason::XdpForwarded), forwarded);
    assert_eq!(
        t.tc.count(PacketReason::Dnat) + t.tc.count(PacketReason::DnatSnat),
        8,
        "decided once each, at XDP"
    );
    assert_eq!(t.tc.count(PacketReason::CtHit), 8, "TC's packets hit XDP's entries");
    assert_eq!(t.tc.count(PacketReason::XdpToTc), 0);
}

#[test]
fn a_flow_started_at_tc_continues_at_xdp() {
    if !switchyard_lab::require_root("a_flow_started_at_tc_continues_at_xdp") {
        return;
    }
    let mut t = lab("xdp-from-tc");
    for Net { family, node, client, local, remote, .. } in NETS {
        for (i, (proto, port, backend, _)) in
            services(&mut t, family, local, remote).into_iter().enumerate()
        {
            let what = format!("{family}/{proto} to {backend}");
            let first = first_packet(proto, client, 52000 + i as u16, node, port).frame();
            let (rc, tc_out) = t.tc.run(INGRESS, &first);
            assert_eq!(rc, TC_ACT_REDIRECT, "{what}: TC decides");
            let mut next = first_packet(proto, client, 52000 + i as u16, node, port);
            next.tcp_flags = ACK;
            let (rc, out) = t.run_xdp(&first);
            assert_eq!((rc, &out), (XDP_REDIRECT, &tc_out), "{what}: XDP continues, same bytes");
            let (rc, out) = t.run_xdp(&next.frame());
            assert_eq!(rc, XDP_REDIRECT);
            assert_eq!(parse(&out).dst, ip(&backend), "{what}: next packet too");
        }
    }
    assert_eq!(t.tc.count(PacketReason::Dnat) + t.tc.count(PacketReason::DnatSnat), 8);
    assert_eq!(t.tc.count(PacketReason::CtHit), 16, "XDP's packets hit TC's entries");
    assert_eq!(t.tc.count(PacketReason::XdpForwarded), 16);
}

/// A TCP SYN whose checksum field holds the folded pseudo-header sum only (CHECKSUM_PARTIAL,
/// as a local socket's frame reaches a veth).
fn partial_checksum_syn(client: &str, node: &str, port: u16) -> Vec<u8> {
    let spec = Spec::tcp(client, 53999, node, port, SYN);
    let mut frame = spec.frame();
    let l4_at = frame.len() - spec.transport().len();
    let acc = match (spec.src, spec.dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            sum16(&s.octets(), sum16(&d.octets(), u32::from(TCP) + 20))
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            sum16(&s.octets(), sum16(&d.octets(), u32::from(TCP) + 20))
        }
        _ => unreachable!(),
    };
    let partial = !fold(acc);
    frame[l4_at + 16..l4_at + 18].copy_from_slice(&partial.to_be_bytes());
    frame
}

#[test]
fn what_xdp_cannot_finish_passes_untouched_and_tc_does_it() {
    if !switchyard_lab::require_root("what_xdp_cannot_finish_passes_untouched_and_tc_does_it") {
        return;
    }
    let mut t = lab("xdp-pass");
    for Net { family, node, client, local, no_neigh, plain, small, .. } in NETS {
        let f = u32::from(family) * 100;
        for (id, port, proto, flags, backend) in [
            (1, NODE_PORT, UDP, 0, Some(local)),
            (2, NODE_PORT, TCP, 0, Some(local)),
            (3, NODE_PORT, SCTP, 0, Some(local)),
            (4, NODE_PORT + 1, TCP, FE_REJECT_EMPTY, None),
            (5, NODE_PORT + 2, TCP, 0, Some(no_neigh)),
            (6, NODE_PORT + 3, TCP, 0, Some(plain)),
            (7, NODE_PORT + 4, TCP, 0, Some(small)),
        ] {
            let backends: Vec<_> =
                backend.map(|b| (f + id, b, 8080, BE_LOCAL)).into_iter().collect();
            t.tc.frontend(f + id, None, family, port, proto, FE_NODEPORT | flags, &backends);
        }

        let mut big_udp = Spec::udp(client, 51000, node, NODE_PORT);
        big_udp.payload = vec![0x33; 3000];
        big_udp.df = false;
        let pieces = fragment(&big_udp.frame(), 1400, 9);
        let syn = Spec::tcp(client, 51000, node, NODE_PORT, SYN).frame();
        let mut short = syn.clone();
        short.truncate(short.len() - 8); // TCP header cut short
        let mut other_mac = syn.clone();
        other_mac[5] ^= 0x40;
        let quoted = without_ethernet(&syn);
        let icmp = if family == AF_INET {
            icmp_error("10.99.0.5", client, 3, 4, 1280, &quoted)
        } else {
            icmp_error("fd99::5", client, 2, 0, 1280, &quoted)
        };
        let mut untouched: Vec<(&str, Vec<u8>)> = vec![
            ("first fragment", pieces[0].clone()),
            ("later fragment", pieces[1].clone()),
            ("ICMP error", icmp),
            ("SCTP", Spec::sctp(client, 51000, node, NODE_PORT, SCTP_INIT).frame()),
            ("802.1Q tag", vlan_tagged(&syn, 7)),
            ("truncated TCP header", short),
            ("another host's MAC", other_mac),
            ("no Service", Spec::tcp(client, 51000, node, 9999, SYN).frame()),
            ("checksum of a local socket (partial)", partial_checksum_syn(client, node, NODE_PORT)),
            (
                "empty Service with reject",
                Spec::tcp(client, 51000, node, NODE_PORT + 1, SYN).frame(),
            ),
        ];
        if family == AF_INET6 {
            let routing = with_ipv6_ext(&syn, &[(IPV6_ROUTING, vec![4, 1, 0, 0, 0, 0])]);
            untouched.push(("routing header with segments left", routing));
        }
        let dnat = t.tc.count(PacketReason::Dnat);
        for (what, frame) in &untouched {
            let (rc, out) = t.run_xdp(frame);
            assert_eq!((rc, &out), (XDP_PASS, frame), "{family}: {what}: passed untouched");
        }
        assert_eq!(t.tc.count(PacketReason::Dnat), dnat, "{family}: none of them started a flow");
        // TC does what XDP passed: the reject answers, the partial-checksum SYN is translated.
        let (rc, out) = t.tc.run(INGRESS, &untouched[9].1);
        assert_eq!(
            (rc, parse(&out).tcp_flags),
            (TC_ACT_REDIRECT, RST | ACK),
            "{family}: TC answers"
        );
        let (rc, _) = t.tc.run(INGRESS, &untouched[8].1);
        assert_eq!(rc, TC_ACT_REDIRECT, "{family}: TC translates the partial-checksum SYN");
        let dnat = t.tc.count(PacketReason::Dnat);

        // Decided at XDP, finished at TC: the neighbour is unknown (TC: redirect_neigh), the
        // route leaves by a device without XDP, the packet is larger than the route's MTU.
        for (what, port) in [("no neighbour", NODE_PORT + 2), ("device without XDP", NODE_PORT + 3)]
        {
            let frame = Spec::tcp(client, 51001, node, port, SYN).frame();
            let to_tc = t.tc.count(PacketReason::XdpToTc);
            let (rc, out) = t.run_xdp(&frame);
            assert_eq!((rc, &out), (XDP_PASS, &frame), "{family}: {what}: handed to TC untouched");
            assert_eq!(t.tc.count(PacketReason::XdpToTc), to_tc + 1);
            let (rc, out) = t.tc.run(INGRESS, &frame);
            assert_eq!(rc, TC_ACT_REDIRECT, "{family}: {what}: TC forwards the flow XDP decided");
            assert_eq!(parse(&out).dport, 8080);
        }
        let syn = Spec::tcp(client, 51002, node, NODE_PORT + 4, SYN).frame();
        assert_eq!(t.run_xdp(&syn).0, XDP_REDIRECT, "{family}: small packets fit the MTU");
        let mut big = Spec::tcp(client, 51002, node, NODE_PORT + 4, ACK);
        big.payload = vec![0x5a; 1400];
        let (rc, out) = t.run_xdp(&big.frame());
        assert_eq!((rc, out), (XDP_PASS, big.frame()), "{family}: too big: to TC");
        let (rc, out) = t.tc.run(INGRESS, &big.frame());
        assert_eq!(rc, TC_ACT_REDIRECT);
        let want = if family == AF_INET { (3, 4, 1280) } else { (2, 0, 1280) };
        assert_eq!(parse(&out).icmp(), want, "{family}: TC answers frag-needed / packet-too-big");
        assert_eq!(t.tc.count(PacketReason::Dnat), dnat + 3, "{family}: decided at XDP");
    }
}

#[test]
fn drops_at_xdp_are_counted_under_tcs_reasons() {
    if !switchyard_lab::require_root("drops_at_xdp_are_counted_under_tcs_reasons") {
        return;
    }
    let mut t = lab("xdp-drop");
    for Net { family, node, client, remote, .. } in NETS {
        let f = u32::from(family) * 100;
        t.tc.frontend(f + 1, None, family, NODE_PORT, TCP, FE_NODEPORT | FE_LOCAL_ONLY, &[]);
        t.tc.frontend(
            f + 2,
            None,
            family,
            NODE_PORT + 1,
            TCP,
            FE_NODEPORT | FE_SOURCE_RANGES,
            &[(f + 2, remote, 8080, 0)],
        );
        t.tc.frontend(
            f + 3,
            None,
            family,
            NODE_PORT + 2,
            TCP,
            FE_NODEPORT,
            &[(f + 3, remote, 8080, 0)],
        );
        for (port, flags, reason) in [
            (NODE_PORT, SYN, PacketReason::DropNoLocalBackend),
            (NODE_PORT + 1, SYN, PacketReason::DropSourceRange),
            (NODE_PORT + 2, ACK, PacketReason::DropNotSyn),
        ] {
            let before = t.tc.count(reason);
            let (rc, _) = t.run_xdp(&Spec::tcp(client, 51000, node, port, flags).frame());
            assert_eq!(rc, XDP_DROP, "{family}: {reason:?}");
            assert_eq!(t.tc.count(reason), before + 1, "{family}: counted as TC counts it");
        }
    }
}

#[test]
fn a_udp_datagram_without_checksum_keeps_none() {
    if !switchyard_lab::require_root("a_udp_datagram_without_checksum_keeps_none") {
        return;
    }
    let mut t = lab("xdp-udp0");
    t.tc.frontend(1, None, AF_INET, NODE_PORT, UDP, FE_NODEPORT, &[(1, "10.99.0.6", 8080, 0)]);
    let spec = Spec::udp(CLIENT4, 51000, NODE4, NODE_PORT);
    let mut frame = spec.frame();
    let at = frame.len() - spec.transport().len() + 6;
    frame[at..at + 2].copy_from_slice(&[0, 0]);
    let (rc, out) = t.run_xdp(&frame);
    assert_eq!(rc, XDP_REDIRECT);
    let p = parse(&out);
    assert_eq!((p.src, p.dst, p.dport), (ip(NODE4), ip("10.99.0.6"), 8080), "DNAT + SNAT");
    assert_eq!(&p.l4[6..8], &[0, 0], "no checksum stays no checksum");
}

/// LoadBalancer IPs and external IPs are exact frontends (an address that is not the node's):
/// XDP serves them with the same lookup as NodePorts, byte for byte as TC, replies included.
#[test]
fn load_balancer_and_external_ips_are_served_at_xdp_as_at_tc() {
    if !switchyard_lab::require_root("load_balancer_and_external_ips_are_served_at_xdp_as_at_tc") {
        return;
    }
    let mut t = lab("xdp-lb");
    let mut id = 40;
    for Net { family, node, client, remote, .. } in NETS {
        // A LoadBalancer ingress IP and an external IP of one Service, TCP and UDP each.
        let addresses: [&str; 2] = if family == AF_INET {
            ["203.0.113.10", "198.51.100.20"]
        } else {
            ["2001:db8:113::10", "2001:db8:100::20"]
        };
        for address in addresses {
            for proto in [TCP, UDP] {
                id += 1;
                t.tc.frontend(id, Some(address), family, 443, proto, 0, &[(id, remote, 8443, 0)]);
                let what = format!("{address}/{proto}");
                let sport = 53000 + id as u16;
                let first = first_packet(proto, client, sport, address, 443).frame();
                let (rc, out) = t.run_xdp(&first);
                assert_eq!(rc, XDP_REDIRECT, "{what}: forwarded at XDP");
                let p = parse(&out);
                assert_eq!((p.dst, p.dport), (ip(remote), 8443), "{what}: DNAT");
                assert_eq!(p.src, ip(node), "{what}: SNAT to the node (remote backend)");
                let (rc, tc_out) = t.tc.run(INGRESS, &first);
                assert_eq!(
                    (rc, &tc_out),
                    (TC_ACT_REDIRECT, &out),
                    "{what}: TC agrees, byte for byte"
                );

                let mut reply = first_packet(proto, remote, 8443, node, p.sport);
                reply.tcp_flags = SYN | ACK;
                let (rc, back) = t.run_xdp(&reply.frame());
                assert_eq!(rc, XDP_REDIRECT, "{what}: reply forwarded at XDP");
                let r = parse(&back);
                assert_eq!(
                    (r.src, r.sport),
                    (ip(address), 443),
                    "{what}: from the service address"
                );
                assert_eq!((r.dst, r.dport), (ip(client), sport), "{what}: to the client");
            }
        }
    }
    assert_eq!(t.tc.count(PacketReason::XdpToTc), 0, "nothing handed over to TC");
}

/// The next hop is kept per CPU for at most 100 ms (lib/route_cache.h), at XDP and at TC: a
/// neighbour whose address changed, a route moved to a device without XDP, or an XDP device
/// removed takes effect once that time has passed.
#[test]
fn a_next_hop_change_takes_effect_within_the_cache_time() {
    if !switchyard_lab::require_root("a_next_hop_change_takes_effect_within_the_cache_time") {
        return;
    }
    /// SY_NP_ROUTE_TTL_NS, with a margin.
    const AFTER_TTL: std::time::Duration = std::time::Duration::from_millis(150);
    let mut t = lab("xdp-route-cache");
    for Net { family, node, client, local, .. } in NETS {
        let f = u32::from(family) * 100;
        t.tc.frontend(
            f + 1,
            None,
            family,
            NODE_PORT,
            UDP,
            FE_NODEPORT,
            &[(f + 1, local, 8080, BE_LOCAL)],
        );
        let frame = Spec::udp(client, 51000, node, NODE_PORT).frame();
        let run = |t: &TcXdp| {
            let (rc, out) = t.run_xdp(&frame);
            (rc, if rc == XDP_REDIRECT { Some(parse(&out).dst_mac) } else { None })
        };
        let run_tc = |t: &TcXdp| {
            let (rc, out) = t.tc.run(INGRESS, &frame);
            (rc, parse(&out).dst_mac)
        };
        assert_eq!(run(&t), (XDP_REDIRECT, Some(NEIGH_MAC)), "{family}: forwarded");
        assert_eq!(run(&t), (XDP_REDIRECT, Some(NEIGH_MAC)), "{family}: from the cache");
        assert_eq!(run_tc(&t), (TC_ACT_REDIRECT, NEIGH_MAC), "{family}: TC forwards");
        assert_eq!(run_tc(&t), (TC_ACT_REDIRECT, NEIGH_MAC), "{family}: TC from its cache");

        // The neighbour's address changes: the next hop follows within the cache time.
        let moved = [0x02, 0, 0, 0, 0x99, 0x06];
        sh(&format!("ip neigh replace {local} lladdr 02:00:00:00:99:06 dev sy-out nud permanent"));
        std::thread::sleep(AFTER_TTL);
        assert_eq!(run(&t), (XDP_REDIRECT, Some(moved)), "{family}: the new neighbour address");
        assert_eq!(run_tc(&t), (TC_ACT_REDIRECT, moved), "{family}: TC: the new address");

        // The route moves to a device without XDP: handed to TC from then on.
        sh(&format!(
            "ip neigh add {local} lladdr 02:00:00:00:99:05 dev sy-plain nud permanent \
             && ip route add {local} dev sy-plain"
        ));
        std::thread::sleep(AFTER_TTL);
        let to_tc = t.tc.count(PacketReason::XdpToTc);
        assert_eq!(run(&t), (XDP_PASS, None), "{family}: to TC");
        assert_eq!(t.tc.count(PacketReason::XdpToTc), to_tc + 1);

        // Back on sy-out, then sy-out stops being an XDP device: to TC as well.
        sh(&format!("ip route del {local} dev sy-plain"));
        std::thread::sleep(AFTER_TTL);
        assert_eq!(run(&t), (XDP_REDIRECT, Some(moved)), "{family}: the route is back");
        let out = nix::net::if_::if_nametoindex("sy-out").unwrap();
        t.xdp.remove_device(out).unwrap();
        std::thread::sleep(AFTER_TTL);
        assert_eq!(run(&t), (XDP_PASS, None), "{family}: sy-out has no XDP program any more");
        t.xdp.set_device(out, [0x02, 0, 0, 0, 0, 0x0e]).unwrap();
    }
}

/// A SYN on a SNATed flow's tuple uses the flow's conntrack entry only while the flow's port
/// still maps back to it. When `sy_nat` lost the port's entry (an LRU map evicts when full)
/// and another flow claimed the port since, the client's SYN again (its retransmission, or a
/// new connection on the same tuple) claims a port of its own, at TC and at XDP alike; before,
/// it kept the lost port and the backend's answers reached the other flow.
#[test]
fn a_syn_on_a_flow_whose_snat_port_went_to_another_flow_claims_a_new_port() {
    if !switchyard_lab::require_root(
        "a_syn_on_a_flow_whose_snat_port_went_to_another_flow_claims_a_new_port",
    ) {
        return;
    }
    let mut t = lab("xdp-lost-port");
    for at_xdp in [false, true] {
        for Net { family, node, client, local, remote, .. } in NETS {
            let what = format!("{} {family}", if at_xdp { "XDP" } else { "TC" });
            let [_, (proto, port, backend, snat), ..] = services(&mut t, family, local, remote);
            assert!(proto == TCP && snat, "the second Service is TCP to a remote backend");
            let run = |t: &TcXdp, frame: &[u8]| {
                let (rc, out) = if at_xdp { t.run_xdp(frame) } else { t.tc.run(INGRESS, frame) };
                assert_eq!(rc, if at_xdp { XDP_REDIRECT } else { TC_ACT_REDIRECT }, "{what}");
                parse(&out)
            };
            let set_range = |t: &mut TcXdp, ports| {
                let mut s = settings();
                s.snat_ports = ports;
                t.tc.pkt.maps_mut().set_settings(&s).unwrap();
            };
            let (a, b) = (53_000, 53_001);
            let syn = |sport| Spec::tcp(client, sport, node, port, SYN).frame();
            let reply_key = |snat_port| CtKey::new(ip(&backend), 8080, ip(node), snat_port, TCP);

            // One SNAT port: flow A takes it; A's SYN again keeps it (a conntrack hit).
            set_range(&mut t, 41_000..=41_000);
            assert_eq!(run(&t, &syn(a)).sport, 41_000, "{what}: A's port");
            let hits = t.tc.count(PacketReason::CtHit);
            assert_eq!(run(&t, &syn(a)).sport, 41_000, "{what}: A's SYN again, same port");
            assert_eq!(t.tc.count(PacketReason::CtHit), hits + 1, "{what}");

            // sy_nat loses A's entry, and flow B claims the port.
            t.tc.pkt.maps_mut().nat.remove(&reply_key(41_000)).unwrap();
            assert_eq!(run(&t, &syn(b)).sport, 41_000, "{what}: B takes the free port");

            // A's SYN again, with a second port in the range: A gets that one.
            set_range(&mut t, 41_000..=41_001);
            assert_eq!(run(&t, &syn(a)).sport, 41_001, "{what}: A claims a port of its own");
            let b_orig = CtKey::new(ip(client), b, ip(node), port, TCP);
            let owner = t.tc.pkt.maps().nat.get(&reply_key(41_000), 0).unwrap();
            assert_eq!(owner.orig, b_orig, "{what}: B keeps its port");

            // The backend's answers reach each client on its own port.
            for (snat_port, client_port) in [(41_000, b), (41_001, a)] {
                let answer = Spec::tcp(&backend, 8080, node, snat_port, SYN | ACK).frame();
                let back = run(&t, &answer);
                assert_eq!(
                    (back.src, back.sport, back.dst, back.dport),
                    (ip(node), port, ip(client), client_port),
                    "{what}: the answer to port {snat_port}"
                );
            }
            for sport in [a, b] {
                let orig = CtKey::new(ip(client), sport, ip(node), port, TCP);
                t.tc.pkt.maps_mut().ct.remove(&orig).unwrap();
            }
            for snat_port in [41_000, 41_001] {
                t.tc.pkt.maps_mut().nat.remove(&reply_key(snat_port)).unwrap();
            }
        }
    }
}
