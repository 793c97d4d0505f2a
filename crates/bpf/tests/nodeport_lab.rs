//! The per-packet programs attached to a lab node's uplink (root): real clients outside the
//! cluster reach NodePorts with local and remote backends over IPv4 and IPv6, empty Services
//! refuse, externalTrafficPolicy Local drops without local endpoints, and large uploads pass
//! links with a smaller MTU (ICMP frag-needed / packet-too-big translated back to the client).
//! Also: links are pinned per device and generation, a restart replaces them, detach removes;
//! a flood of TCP segments without SYN does not take the SNAT ports from real clients; 4000-byte
//! UDP datagrams (IP fragments) pass NodePorts both ways; crafted SCTP packets are translated
//! (captured with raw sockets: this kernel has no SCTP sockets).

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use switchyard_bpf::{
    Datapath, LoadOptions,
    abi::*,
    nodeport::{self, PacketDatapath, PacketMapSizes, PacketSettings},
};
use switchyard_lab::{
    Lab, Topology, require_root,
    tools::{
        clients,
        servers::{self, ServerKind},
    },
};

const TIMEOUT: Duration = Duration::from_secs(3);
const ECHO: u16 = 8080;

fn options(bpf_dir: &Path) -> LoadOptions {
    let mut options = LoadOptions::new(bpf_dir);
    options.sizes = switchyard_testing::socket_probe::small_sizes();
    options.maglev_table_size = 251;
    options
}

/// Loads both datapaths in the node's bpffs, programs NodePorts, attaches to the uplink.
/// Frontends (same port numbers for IPv4 and IPv6):
///   30080 TCP -> pod on this node (local), 30081 TCP -> pod on n2 (SNAT),
///   30082 TCP empty + reject, 30083 TCP ETP Local without local endpoint;
///   30080 and 30081 also for UDP and SCTP.
fn program_node(lab: &Lab) {
    program_node_with(lab, nodeport::Timeouts::default());
}

/// [`program_node`] with other conntrack timeouts.
fn program_node_with(lab: &Lab, timeouts: nodeport::Timeouts) {
    let node = lab.node("n1").unwrap().clone();
    let local = lab.pod("p1").unwrap().clone();
    let remote = lab.pod("p2").unwrap().clone();
    lab.run_in("n1", move || {
        let options = options(&node.bpf_dir);
        let mut sock = Datapath::load(&options).unwrap();
        let settings = PacketSettings {
            snat_ipv4: Some(node.ipv4),
            snat_ipv6: Some(node.ipv6),
            timeouts,
            ..PacketSettings::default()
        };
        let mut pkt = PacketDatapath::load(&options, PacketMapSizes::default(), &settings).unwrap();
        let maps = sock.maps_mut();
        for ip in [IpAddr::from(node.ipv4), IpAddr::from(node.ipv6)] {
            maps.node_addrs.insert(NodeAddrKey::new(ip), 0, 0).unwrap();
        }
        let backends: [(u32, IpAddr, u8); 4] = [
            (1, local.ipv4.into(), BE_LOCAL),
            (2, local.ipv6.into(), BE_LOCAL),
            (3, remote.ipv4.into(), 0),
            (4, remote.ipv6.into(), 0),
        ];
        for (id, ip, flags) in backends {
            maps.backends.insert(id, Backend::new(ip, ECHO, flags), 0).unwrap();
        }
        let mut next_id = 1;
        for (family, local_id, remote_id) in [(AF_INET, 1, 3), (AF_INET6, 2, 4)] {
            let frontends: [(u16, u32, &[u32]); 4] = [
                (30080, FE_NODEPORT, &[local_id]),
                (30081, FE_NODEPORT, &[remote_id]),
                (30082, FE_NODEPORT | FE_REJECT_EMPTY, &[]),
                (30083, FE_NODEPORT | FE_LOCAL_ONLY | FE_REJECT_EMPTY, &[]),
            ];
            for (port, flags, ids) in frontends {
                for proto in [PROTO_TCP, PROTO_UDP, PROTO_SCTP] {
                    if proto != PROTO_TCP && port > 30081 {
                        continue;
                    }
                    let id = next_id;
                    next_id += 1;
                    for (slot, &b) in (0u32..).zip(ids) {
                        maps.slots.insert(SlotKey { frontend_id: id, slot }, b, 0).unwrap();
                    }
                    let key = FrontendKey::node_port(family, port, proto, SCOPE_DEFAULT);
                    let backend_count = ids.len() as u32;
                    let fe = Frontend { id, flags, backend_count, affinity_timeout_s: 0 };
                    maps.frontends.insert(key, fe, 0).unwrap();
                }
            }
        }
        pkt.attach(&node.uplink).unwrap();
    })
    .unwrap();
}

fn link_pins(bpf_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(bpf_dir.join("links"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn external_clients_reach_nodeports_through_the_tc_programs() {
    if !require_root("external_clients_reach_nodeports_through_the_tc_programs") {
        return;
    }
    let lab = two_node_lab();
    let _servers: Vec<_> = ["p1", "p2"]
        .into_iter()
        .map(|pod| lab.run_in(pod, || servers::start(ServerKind::TcpEcho, pod, ECHO).unwrap()))
        .collect::<Result<_, _>>()
        .unwrap();
    program_node(&lab);
    let node = lab.node("n1").unwrap().clone();
    let client = lab.client("c1").unwrap().clone();

    let pins = link_pins(&node.bpf_dir);
    assert_eq!(pins.len(), 2, "ingress and egress pinned: {pins:?}");
    assert!(pins.iter().all(|p| p.starts_with(&format!("tc-{}-", node.uplink))), "{pins:?}");

    for (node_ip, client_ip) in [
        (IpAddr::from(node.ipv4), IpAddr::from(client.ipv4)),
        (node.ipv6.into(), client.ipv6.into()),
    ] {
        let at = |port| SocketAddr::new(node_ip, port);
        let (local, remote, empty, etp_local) = lab
            .run_in("c1", || {
                (
                    clients::tcp(at(30080), 3, TIMEOUT),
                    clients::tcp(at(30081), 3, TIMEOUT),
                    clients::tcp(at(30082), 1, TIMEOUT),
                    clients::tcp(at(30083), 1, Duration::from_secs(1)),
                )
            })
            .unwrap();
        for a in &local {
            assert_eq!(a.error, None, "{node_ip}:30080: {a:?}");
            assert_eq!(a.backend.as_deref(), Some("p1"));
            let seen: SocketAddr = a.seen_as.as_deref().unwrap().parse().unwrap();
            assert_eq!(seen.ip(), client_ip, "local backend sees the client address");
        }
        for a in &remote {
            assert_eq!(a.error, None, "{node_ip}:30081: {a:?}");
            assert_eq!(a.backend.as_deref(), Some("p2"));
            let seen: SocketAddr = a.seen_as.as_deref().unwrap().parse().unwrap();
            assert_eq!(seen.ip(), node_ip, "remote backend sees the node (SNAT)");
            assert!((1024..=29_999).contains(&seen.port()), "SNAT port {}", seen.port());
        }
        assert_eq!(empty[0].error.as_deref(), Some("connection refused"), "{empty:?}");
        assert_eq!(etp_local[0].error.as_deref(), Some("timed out"), "dropped: {etp_local:?}");
    }

    // Smaller MTUs on the way to either backend: uploads still complete, IPv4 and IPv6.
    // Remote: n2's kernel sends frag-needed to n1 (the SNAT source), which translates it back.
    lab.set_mtu("n1", &lab.pod("p1").unwrap().node_link, 1280).unwrap();
    lab.set_mtu("n2", &lab.pod("p2").unwrap().node_link, 1280).unwrap();
    for node_ip in [IpAddr::from(node.ipv4), node.ipv6.into()] {
        for port in [30080, 30081] {
            let target = SocketAddr::new(node_ip, port);
            let up = lab
                .run_in("c1", || clients::upload(target, 200_000, Duration::from_secs(10)))
                .unwrap();
            assert_eq!(up.error, None, "upload to {target}: {up:?}");
        }
    }
    let counters = lab
        .run_in("n1", || {
            nodeport::PacketMaps::open_pinned(&node.bpf_dir).unwrap().counters().unwrap()
        })
        .unwrap();
    use switchyard_bpf::nodeport_abi::PacketReason as R;
    // Remote backend: n2's frag-needed / packet-too-big translated at ingress, both families.
    assert!(counters[&R::IcmpRevnat].packets >= 2, "remote path translated: {counters:?}");
    assert!(counters[&R::RejectRst].packets >= 2);
    assert!(counters[&R::DropNoLocalBackend].packets >= 2);

    // A restarted agent attaches a new generation before the old one goes; detach removes all.
    lab.run_in("n1", || {
        let options = options(&node.bpf_dir);
        let _sock = Datapath::load(&options).unwrap();
        let mut pkt =
            PacketDatapath::load(&options, PacketMapSizes::default(), &PacketSettings::default())
                .unwrap();
        pkt.attach(&node.uplink).unwrap();
    })
    .unwrap();
    let after = link_pins(&node.bpf_dir);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.iter().all(|p| !pins.contains(p)),
        "old generation replaced: {pins:?} -> {after:?}"
    );
    let again = lab
        .run_in("c1", || clients::tcp(SocketAddr::new(node.ipv4.into(), 30080), 1, TIMEOUT))
        .unwrap();
    assert_eq!(again[0].error, None, "still served after the restart: {again:?}");

    assert_eq!(nodeport::detach_device(&node.bpf_dir, &node.uplink).unwrap(), 2);
    assert!(link_pins(&node.bpf_dir).is_empty());
    let gone = lab
        .run_in("c1", || {
            clients::tcp(SocketAddr::new(node.ipv4.into(), 30080), 1, Duration::from_secs(1))
        })
        .unwrap();
    assert!(gone[0].error.is_some(), "no translation once detached: {gone:?}");
    drop(lab);
}

/// A one-byte echo server in the current namespace that closes first (TIME_WAIT stays on the
/// server side, as in the latency benchmark). Returns the listener's fd for shutdown.
fn close_first_echo(port: u16) -> (i32, std::thread::JoinHandle<()>) {
    use std::io::{Read as _, Write as _};
    use std::os::fd::AsRawFd as _;
    let listener = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
    let fd = listener.as_raw_fd();
    let thread = std::thread::spawn(move || {
        while let Ok((mut stream, _)) = listener.accept() {
            let mut byte = [0u8; 1];
            if stream.read_exact(&mut byte).is_ok() {
                let _ = stream.write_all(&byte);
            }
        }
    });
    (fd, thread)
}

/// Connect, one byte each way, wait for the server's close. The error, if any.
fn one_exchange(target: SocketAddr) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let run = || -> std::io::Result<()> {
        let mut stream = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(&[1])?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte)?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest)?;
        Ok(())
    };
    run().err().map(|e| e.to_string())
}

/// Many short TCP connections in a row from one client through a NodePort to one remote
/// backend (DNAT + SNAT), the backend closing first: every one succeeds, whatever the SNAT
/// ports of finished flows and the backend's TIME_WAIT sockets on them (the latency
/// benchmark's per-packet path lost 2-4 % of these).
#[test]
fn sequential_short_connections_to_a_remote_backend_all_succeed() {
    if !require_root("sequential_short_connections_to_a_remote_backend_all_succeed") {
        return;
    }
    let lab = two_node_lab();
    let (fd, server) = lab.run_in("p2", || close_first_echo(ECHO)).unwrap();
    // Closed flows give their SNAT port back after 1 s, while the backend keeps its
    // TIME_WAIT sockets on those (node, port) tuples for a minute.
    program_node_with(&lab, nodeport::Timeouts { tcp_closing: 1, ..nodeport::Timeouts::default() });
    let node = lab.node("n1").unwrap().clone();
    let target = SocketAddr::new(node.ipv4.into(), 30081);
    const ROUND: usize = 1000;
    const ROUNDS: usize = 4;
    const CONNECTIONS: usize = ROUND * ROUNDS;
    let mut errors: Vec<(usize, String)> = Vec::new();
    for round in 0..ROUNDS {
        if round > 0 {
            // Past the closing timeout: the previous round's SNAT ports are free again.
            std::thread::sleep(Duration::from_millis(1500));
        }
        let failed: Vec<(usize, String)> = lab
            .run_in("c1", || {
                (0..ROUND)
                    .filter_map(|i| one_exchange(target).map(|e| (round * ROUND + i, e)))
                    .collect()
            })
            .unwrap();
        eprintln!("round {round}: {} failed", failed.len());
        errors.extend(failed);
    }
    let counters = lab
        .run_in("n1", || {
            nodeport::PacketMaps::open_pinned(&node.bpf_dir).unwrap().counters().unwrap()
        })
        .unwrap();
    // SAFETY: shutdown on the listener the server thread owns wakes its accept(); no memory.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
    let _ = server.join();
    drop(lab);
    use switchyard_bpf::nodeport_abi::PacketReason as R;
    assert!(
        errors.is_empty(),
        "{} of {CONNECTIONS} failed, first {:?}; counters {counters:?}",
        errors.len(),
        errors.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(counters[&R::DropSnatExhausted].packets, 0, "{counters:?}");
    assert!(counters[&R::DnatSnat].packets >= CONNECTIONS as u64, "{counters:?}");
}

/// 100,000 TCP segments without SYN (bare ACKs, random source ports, as a flood would come)
/// to a NodePort whose backend is remote: none claims a SNAT port or a conntrack entry (each
/// is a counted `drop_not_syn`), and a real client connects at once afterwards. Without the
/// rule, about 4,500 such ACKs took every SNAT port of the default range for six hours.
#[test]
fn a_flood_without_syn_does_not_lock_out_new_clients() {
    if !require_root("a_flood_without_syn_does_not_lock_out_new_clients") {
        return;
    }
    const FLOOD: usize = 100_000;
    let lab = two_node_lab();
    let _server =
        lab.run_in("p2", || servers::start(ServerKind::TcpEcho, "p2", ECHO).unwrap()).unwrap();
    program_node(&lab);
    let node = lab.node("n1").unwrap().clone();
    let client = lab.client("c1").unwrap().clone();
    let target = std::net::SocketAddrV4::new(node.ipv4, 30081);
    let sent = lab
        .run_in("c1", move || {
            switchyard_lab::tools::raw::tcp_flood(client.ipv4, target, 0x10, FLOOD)
        })
        .unwrap()
        .unwrap();
    assert!(sent >= FLOOD * 99 / 100, "the kernel took only {sent} of {FLOOD}");
    let attempts = lab.run_in("c1", move || clients::tcp(target.into(), 20, TIMEOUT)).unwrap();
    let failed: Vec<_> = attempts.iter().filter(|a| a.error.is_some()).collect();
    let bpf_dir = node.bpf_dir.clone();
    let (counters, flows) = lab
        .run_in("n1", move || {
            let maps = nodeport::PacketMaps::open_pinned(&bpf_dir).unwrap();
            (maps.counters().unwrap(), maps.ct.keys().count())
        })
        .unwrap();
    use switchyard_bpf::nodeport_abi::PacketReason as R;
    assert!(
        failed.is_empty(),
        "{} of 20 connections failed after the flood: {failed:?}",
        failed.len()
    );
    // What reached the node (the router may lose a few under the burst) was dropped by rule.
    let dropped = counters[&R::DropNotSyn].packets;
    assert!(dropped as usize >= sent * 9 / 10, "{dropped} of {sent} dropped as not-SYN");
    assert_eq!(counters[&R::DropSnatExhausted].packets, 0, "{counters:?}");
    assert!(flows <= 20, "{flows} conntrack entries: the flood left some");
}

/// A UDP server (dual-stack) that answers every datagram with the same bytes; its thread
/// returns who sent what size. Returns the socket's fd for shutdown.
fn udp_mirror(port: u16) -> (i32, std::thread::JoinHandle<Vec<(SocketAddr, usize)>>) {
    use std::os::fd::AsRawFd as _;
    let socket = std::net::UdpSocket::bind(("::", port)).unwrap();
    let fd = socket.as_raw_fd();
    let thread = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push((peer, n));
            let _ = socket.send_to(&buf[..n], peer);
        }
        seen
    });
    (fd, thread)
}

/// 4000-byte UDP datagrams (three IP fragments each way at MTU 1500) from an external client
/// through NodePorts to a local and a remote pod, IPv4 and IPv6: every datagram comes back
/// whole, the pod saw the client (local) or the node (remote, SNAT), and the later fragments
/// were translated by following their first (`frag_xlat`), none passed untranslated.
#[test]
fn large_udp_datagrams_in_fragments_pass_nodeports_both_ways() {
    if !require_root("large_udp_datagrams_in_fragments_pass_nodeports_both_ways") {
        return;
    }
    let lab = two_node_lab();
    let servers: Vec<_> =
        ["p1", "p2"].into_iter().map(|pod| lab.run_in(pod, || udp_mirror(ECHO)).unwrap()).collect();
    program_node(&lab);
    let node = lab.node("n1").unwrap().clone();
    let client = lab.client("c1").unwrap().clone();
    const ROUNDS: usize = 5;
    let mut results = Vec::new();
    for (node_ip, client_ip) in [
        (IpAddr::from(node.ipv4), IpAddr::from(client.ipv4)),
        (node.ipv6.into(), client.ipv6.into()),
    ] {
        for port in [30080, 30081] {
            let target = SocketAddr::new(node_ip, port);
            let got = lab
                .run_in("c1", move || {
                    let bind: SocketAddr = SocketAddr::new(client_ip, 0);
                    let socket = std::net::UdpSocket::bind(bind).unwrap();
                    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
                    socket.connect(target).unwrap();
                    (0..ROUNDS)
                        .map(|round| {
                            let data: Vec<u8> =
                                (0..4000).map(|i| ((i * 13 + round * 7) % 251) as u8).collect();
                            socket.send(&data).unwrap();
                            let mut buf = vec![0u8; 8192];
                            match socket.recv(&mut buf) {
                                Ok(n) => (buf[..n] == data[..])
                                    .then_some(())
                                    .ok_or(format!("{n} bytes, not the datagram")),
                                Err(e) => Err(e.to_string()),
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap();
            results.push((target, got));
        }
    }
    let counters = lab
        .run_in("n1", || {
            nodeport::PacketMaps::open_pinned(&node.bpf_dir).unwrap().counters().unwrap()
        })
        .unwrap();
    let mut seen = Vec::new();
    for (fd, thread) in servers {
        // SAFETY: shutdown on the socket the server thread owns wakes its recv; no memory.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
        seen.push(thread.join().unwrap());
    }
    drop(lab);
    use switchyard_bpf::nodeport_abi::PacketReason as R;
    for (target, got) in &results {
        assert!(got.iter().all(Result::is_ok), "{target}: {got:?}; counters {counters:?}");
    }
    let unmap = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let local_peers: Vec<IpAddr> = seen[0].iter().map(|(a, _)| unmap(*a)).collect();
    let remote_peers: Vec<IpAddr> = seen[1].iter().map(|(a, _)| unmap(*a)).collect();
    assert!(seen.iter().flatten().all(|(_, n)| *n == 4000), "whole datagrams: {seen:?}");
    assert_eq!(local_peers.len(), 2 * ROUNDS, "{local_peers:?}");
    assert!(
        local_peers
            .iter()
            .all(|ip| *ip == IpAddr::from(client.ipv4) || *ip == IpAddr::from(client.ipv6)),
        "the local pod sees the client: {local_peers:?}"
    );
    assert!(
        remote_peers
            .iter()
            .all(|ip| *ip == IpAddr::from(node.ipv4) || *ip == IpAddr::from(node.ipv6)),
        "the remote pod sees the node: {remote_peers:?}"
    );
    // Each 4000-byte datagram is 3 fragments: 2 later ones per direction, per datagram.
    let later = counters[&R::FragXlat].packets;
    assert!(
        later >= (4 * ROUNDS * 2 * 2) as u64,
        "{later} later fragments translated: {counters:?}"
    );
    assert_eq!(counters[&R::PassFragment].packets, 0, "{counters:?}");
}

/// Crafted SCTP packets (INIT, then the backend's INIT ACK) from an external client to SCTP
/// NodePorts with a local and a remote pod, IPv4 and IPv6, captured with raw sockets: the pod
/// receives it on the target port with a valid CRC32c, from the client (local) or the node
/// (remote, SNAT); the answer reaches the client from the NodePort, CRC valid. This kernel has
/// no SCTP sockets (EPROTONOSUPPORT), so no association is made; the translation is what is
/// checked.
#[test]
fn crafted_sctp_packets_are_translated_through_nodeports() {
    if !require_root("crafted_sctp_packets_are_translated_through_nodeports") {
        return;
    }
    use switchyard_lab::tools::raw::{self, Capture, IPPROTO_SCTP};
    use switchyard_testing::frames::{self, SCTP_INIT};
    let lab = two_node_lab();
    program_node(&lab);
    let node = lab.node("n1").unwrap().clone();
    let client = lab.client("c1").unwrap().clone();
    let crc_ok =
        |l4: &[u8]| frames::sctp_crc32c(l4) == u32::from_le_bytes(l4[8..12].try_into().unwrap());
    let port = |l4: &[u8], at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    for (v4, node_ip, client_ip) in [
        (true, IpAddr::from(node.ipv4), IpAddr::from(client.ipv4)),
        (false, node.ipv6.into(), client.ipv6.into()),
    ] {
        for (pod, nodeport, sport) in [("p1", 30080u16, 40001u16), ("p2", 30081, 40002)] {
            let in_pod = lab.run_in(pod, move || Capture::open(v4, IPPROTO_SCTP).unwrap()).unwrap();
            let at_client =
                lab.run_in("c1", move || Capture::open(v4, IPPROTO_SCTP).unwrap()).unwrap();
            // The CRC32c does not cover addresses: the packet is built without them.
            let init =
                frames::Spec::sctp("0.0.0.0", sport, "0.0.0.0", nodeport, SCTP_INIT).transport();
            lab.run_in("c1", || raw::send(node_ip, IPPROTO_SCTP, &init).unwrap()).unwrap();
            let (from, got) = in_pod
                .next(TIMEOUT)
                .unwrap_or_else(|e| panic!("{pod} {node_ip}: nothing captured: {e}"));
            assert!(crc_ok(&got), "{pod} {node_ip}: CRC32c valid after translation");
            assert_eq!(port(&got, 2), ECHO, "{pod} {node_ip}: to the target port");
            if pod == "p1" {
                assert_eq!((from, port(&got, 0)), (client_ip, sport), "local pod sees the client");
            } else {
                assert_eq!(from, node_ip, "remote pod sees the node (SNAT)");
                assert!((1024..=29_999).contains(&port(&got, 0)), "SNAT port {}", port(&got, 0));
            }
            // The pod answers (INIT ACK) to whoever it saw, from the target port.
            let answer =
                frames::Spec::sctp("0.0.0.0", ECHO, "0.0.0.0", port(&got, 0), 2).transport();
            lab.run_in(pod, || raw::send(from, IPPROTO_SCTP, &answer).unwrap()).unwrap();
            let (from, got) = at_client
                .next(TIMEOUT)
                .unwrap_or_else(|e| panic!("{pod} {node_ip}: no answer: {e}"));
            assert!(crc_ok(&got), "{pod} {node_ip}: answer's CRC32c valid");
            assert_eq!(
                (from, port(&got, 0), port(&got, 2)),
                (node_ip, nodeport, sport),
                "{pod}: from the NodePort"
            );
        }
    }
    let counters = lab
        .run_in("n1", || {
            nodeport::PacketMaps::open_pinned(&node.bpf_dir).unwrap().counters().unwrap()
        })
        .unwrap();
    drop(lab);
    use switchyard_bpf::nodeport_abi::PacketReason as R;
    assert_eq!(counters[&R::Dnat].packets, 2, "{counters:?}");
    assert_eq!(counters[&R::DnatSnat].packets, 2, "{counters:?}");
    assert_eq!(counters[&R::Revnat].packets, 4, "{counters:?}");
}

/// Two nodes with one pod each and one external client: a local and a remote backend.
fn two_node_lab() -> Lab {
    let topology = Topology::from_yaml(
        "nodes:\n  - name: n1\n    pods: [p1]\n  - name: n2\n    pods: [p2]\nclients: [c1]\n",
        "inline",
    )
    .unwrap();
    Lab::up(&topology).unwrap()
}
