//! The SNAT claim skips ports a socket of the node holds (`sy_snat_port_has_socket` in
//! c/lib/snat.h), at TC and at XDP (root). Each test runs in a network namespace of its own
//! (the fixture's), where its sockets live too: BPF_PROG_TEST_RUN runs the programs on that
//! namespace's loopback, so the programs' socket lookups see exactly the test's sockets. The
//! range is forced to two ports, P = 40000 held by a socket and 40001: without the skip the
//! two flows of each case would take both.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::net::{SocketAddr, TcpListener, UdpSocket};

use switchyard_testing::frames;

use frames::*;
use switchyard_bpf::{abi::*, nodeport::PacketSettings, nodeport_abi::*};
use switchyard_testing::nodeport_fixture::*;

/// The port a socket holds, and the one left to SNAT.
const HELD: u16 = 40_000;
const FREE: u16 = 40_001;

fn two_ports() -> PacketSettings {
    PacketSettings { snat_ports: HELD..=FREE, ..settings() }
}

/// The wildcard address of a family, port `port`.
fn any(family: u8, port: u16) -> SocketAddr {
    let unspecified = if family == AF_INET { "0.0.0.0" } else { "::" };
    SocketAddr::new(unspecified.parse().unwrap(), port)
}

fn first_packet(proto: u8, client: &str, sport: u16, node: &str) -> Vec<u8> {
    if proto == TCP {
        Spec::tcp(client, sport, node, NODE_PORT, SYN).frame()
    } else {
        Spec::udp(client, sport, node, NODE_PORT).frame()
    }
}

/// What a socket of the node holding HELD looks like, per protocol: a TCP listener or a bound
/// UDP socket on the wildcard address (held until dropped).
enum Holder {
    Tcp(#[allow(dead_code, reason = "held for its port")] TcpListener),
    Udp(#[allow(dead_code, reason = "held for its port")] UdpSocket),
}

fn hold(family: u8, proto: u8) -> Holder {
    if proto == TCP {
        Holder::Tcp(TcpListener::bind(any(family, HELD)).unwrap())
    } else {
        Holder::Udp(UdpSocket::bind(any(family, HELD)).unwrap())
    }
}

#[test]
fn a_port_a_local_socket_listens_on_is_never_claimed_at_tc() {
    if !switchyard_lab::require_root("a_port_a_local_socket_listens_on_is_never_claimed_at_tc") {
        return;
    }
    for (family, node, client, _, remote) in FAMILIES {
        for proto in [TCP, UDP] {
            let case = format!("{family} {proto}");
            let mut tc = Tc::new("snat-sockets", &two_ports());
            tc.frontend(1, None, family, NODE_PORT, proto, FE_NODEPORT, &[(9, remote, 8080, 0)]);
            let holder = hold(family, proto);
            let (rc, out) = tc.run(INGRESS, &first_packet(proto, client, 51000, node));
            assert_eq!(rc, TC_ACT_OK, "{case}");
            assert_eq!(parse(&out).sport, FREE, "{case}: the socket's port is skipped");
            let (rc, _) = tc.run(INGRESS, &first_packet(proto, client, 51001, node));
            assert_eq!(rc, TC_ACT_SHOT, "{case}: {HELD} is the socket's, {FREE} taken");
            assert_eq!(tc.count(PacketReason::DropSnatExhausted), 1, "{case}");
            // Once the socket is gone its port is SNAT's again.
            drop(holder);
            let (rc, out) = tc.run(INGRESS, &first_packet(proto, client, 51002, node));
            assert_eq!(rc, TC_ACT_OK, "{case}");
            assert_eq!(parse(&out).sport, HELD, "{case}: the port is free after close");
        }
    }
}

/// The node's own connection from (node, HELD) to the backend itself, open and then in
/// TIME_WAIT (which `bpf_sk_lookup_tcp` would not see): the backend's replies on that tuple are
/// the connection's, so no flow may get HELD, and no listener is involved.
#[test]
fn the_port_of_the_nodes_own_connection_to_the_backend_is_never_claimed_even_in_time_wait() {
    if !switchyard_lab::require_root(
        "the_port_of_the_nodes_own_connection_to_the_backend_is_never_claimed_even_in_time_wait",
    ) {
        return;
    }
    for (family, node, client, _, remote) in FAMILIES {
        let mut tc = Tc::new("snat-own-conn", &two_ports());
        tc.frontend(1, None, family, NODE_PORT, TCP, FE_NODEPORT, &[(9, remote, 8080, 0)]);
        // Both ends on loopback in the test's namespace: the node's address and the backend's.
        // IPv6 ones `nodad`: a new address is tentative until the kernel's address worker runs
        // (late on a loaded machine), and bind() refuses a tentative address.
        let (plen, flags) = if family == AF_INET { (32, "") } else { (128, " nodad") };
        sh(&format!(
            "ip link set lo up && ip addr add {node}/{plen} dev lo{flags} \
             && ip addr add {remote}/{plen} dev lo{flags}"
        ));
        let backend = SocketAddr::new(ip(remote), 8080);
        let listener = TcpListener::bind(backend).unwrap();
        let conn = tcp_connect_from(SocketAddr::new(ip(node), HELD), backend);
        let (accepted, _) = listener.accept().unwrap();
        drop(listener);
        only_free_is_claimed(&tc, family, client, node, 51000, 1, "established");
        // The node closes first: its side stays in TIME_WAIT on the tuple.
        drop(conn);
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut &accepted, &mut rest).unwrap();
        drop(accepted);
        wait_for_time_wait(HELD);
        let orig = CtKey::new(ip(client), 51000, ip(node), NODE_PORT, TCP);
        tc.pkt.maps_mut().ct.remove(&orig).unwrap();
        let freed = CtKey::new(ip(remote), 8080, ip(node), FREE, TCP);
        tc.pkt.maps_mut().nat.remove(&freed).unwrap();
        only_free_is_claimed(&tc, family, client, node, 52000, 2, "TIME_WAIT");
    }
}

/// A first flow (client port `sport`) gets FREE, a second is dropped: HELD is not taken.
fn only_free_is_claimed(
    tc: &Tc,
    family: u8,
    client: &str,
    node: &str,
    sport: u16,
    drops: u64,
    what: &str,
) {
    let (rc, out) = tc.run(INGRESS, &first_packet(TCP, client, sport, node));
    assert_eq!(rc, TC_ACT_OK, "{family} {what}");
    assert_eq!(parse(&out).sport, FREE, "{family} {what}");
    let (rc, _) = tc.run(INGRESS, &first_packet(TCP, client, sport + 1, node));
    assert_eq!(rc, TC_ACT_SHOT, "{family} {what}: the connection's port {HELD} was taken");
    assert_eq!(tc.count(PacketReason::DropSnatExhausted), drops, "{family} {what}");
}

/// Waits until a TCP socket on local port `port` is in TIME_WAIT in this thread's namespace.
fn wait_for_time_wait(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let out = std::process::Command::new("ss")
            .args(["-Htan", "state", "time-wait", &format!("sport = :{port}")])
            .output()
            .unwrap();
        if !out.stdout.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no TIME_WAIT socket on port {port}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_port_a_local_socket_listens_on_is_never_claimed_at_xdp() {
    if !switchyard_lab::require_root("a_port_a_local_socket_listens_on_is_never_claimed_at_xdp") {
        return;
    }
    for (family, node, client, _, remote) in FAMILIES {
        for proto in [TCP, UDP] {
            let case = format!("{family} {proto}");
            let mut t = TcXdp::new("snat-sockets-xdp", &two_ports());
            t.tc.frontend(1, None, family, NODE_PORT, proto, FE_NODEPORT, &[(9, remote, 8080, 0)]);
            let _holder = hold(family, proto);
            // No route to the backend here: XDP decides the flow (conntrack entry and port)
            // and passes the frame on; the entry shows the port it claimed.
            let (rc, _) = t.run_xdp(&first_packet(proto, client, 51000, node));
            assert_ne!(rc, XDP_DROP, "{case}");
            let orig = CtKey::new(ip(client), 51000, ip(node), NODE_PORT, proto);
            let entry = t.tc.pkt.maps().conntrack(&orig).unwrap().expect("conntrack entry");
            assert_eq!(u16::from_be(entry.nat_sport), FREE, "{case}: the socket's port is skipped");
            let (rc, _) = t.run_xdp(&first_packet(proto, client, 51001, node));
            assert_eq!(rc, XDP_DROP, "{case}: {HELD} is the socket's, {FREE} taken");
            assert_eq!(t.tc.count(PacketReason::DropSnatExhausted), 1, "{case}");
        }
    }
}
