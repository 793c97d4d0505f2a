//! Stale-socket sweep in a network namespace of the test's own: connected TCP and UDP sockets to
//! a removed backend are destroyed, others (and sockets the filter keeps) are not; the dump reads
//! cookies and addresses as the kernel has them.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;

use switchyard_dataplane::sockdiag::{FoundSocket, sockets_from, sweep_current_namespace};

/// Runs `f` on a thread that lives in a fresh network namespace with loopback up.
fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // Only this thread changes namespace; it ends with the scope.
                switchyard_testing::nodeport_fixture::enter_private_netns();
                let status = Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
                assert!(status.success(), "ip link set lo up");
                f()
            })
            .join()
            .unwrap()
    })
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn sockets_connected_to_a_removed_backend_are_destroyed_and_others_kept() {
    if !switchyard_lab::require_root("sockets_connected_to_a_removed_backend_are_destroyed") {
        return;
    }
    in_new_netns(|| {
        let removed = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let staying = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let removed_port = removed.local_addr().unwrap().port();
        let mut doomed = TcpStream::connect(removed.local_addr().unwrap()).unwrap();
        let mut alive = TcpStream::connect(staying.local_addr().unwrap()).unwrap();
        let (_doomed_peer, _) = removed.accept().unwrap();
        let (_alive_peer, _) = staying.accept().unwrap();
        let udp = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let udp_server = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        udp.connect(udp_server.local_addr().unwrap()).unwrap();
        let udp_port = udp_server.local_addr().unwrap().port();

        let targets: HashSet<(IpAddr, u16)> =
            [(LOOPBACK, removed_port), (LOOPBACK, udp_port)].into_iter().collect();
        let report = sweep_current_namespace(&targets, &|_: &FoundSocket| false);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.destroyed, 2, "the TCP client and the connected UDP socket");

        let mut buf = [0u8; 1];
        let err = doomed.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
        alive.set_nonblocking(true).unwrap();
        assert_eq!(alive.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
        let udp_error = udp.send(b"x").unwrap_err();
        assert!(
            udp_error.kind() == ErrorKind::ConnectionAborted
                || udp_error.raw_os_error() == Some(libc::EDESTADDRREQ),
            "connected UDP socket still usable after destroy: {udp_error:?}"
        );
    });
}

#[test]
fn sockets_the_filter_claims_are_left_alone() {
    if !switchyard_lab::require_root("sockets_the_filter_claims_are_left_alone") {
        return;
    }
    in_new_netns(|| {
        let server = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let mut client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let (_peer, _) = server.accept().unwrap();
        let targets: HashSet<(IpAddr, u16)> =
            [(LOOPBACK, server.local_addr().unwrap().port())].into_iter().collect();
        let report = sweep_current_namespace(&targets, &|s: &FoundSocket| s.cookie != 0);
        assert_eq!((report.destroyed, report.kept), (0, 1));
        client.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    });
}

/// The dump's fields as the kernel has them: each socket's cookie is its `SO_COOKIE` (the key of
/// `sy_sock_revnat`), IPv6 sockets are found, an IPv4-mapped peer reads as IPv4, and an IPv6
/// socket to a removed backend is destroyed too.
#[test]
fn dumps_report_real_cookies_ipv6_and_mapped_addresses() {
    if !switchyard_lab::require_root("dumps_report_real_cookies_ipv6_and_mapped_addresses") {
        return;
    }
    in_new_netns(|| {
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let server6 = TcpListener::bind((v6, 0)).unwrap();
        let client6 = TcpStream::connect(server6.local_addr().unwrap()).unwrap();
        let (_peer6, _) = server6.accept().unwrap();
        // A dual-stack socket talking IPv4: the kernel reports ::ffff:127.0.0.1.
        let server4 = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let mapped =
            socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        mapped.set_only_v6(false).unwrap();
        let port4 = server4.local_addr().unwrap().port();
        let mapped_to = SocketAddr::new(IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()), port4);
        mapped.connect(&mapped_to.into()).unwrap();
        let (_peer4, _) = server4.accept().unwrap();

        let found6 = sockets_from(v6, Some(client6.local_addr().unwrap().port()), 6).unwrap();
        assert_eq!(found6.len(), 1, "{found6:?}");
        assert_eq!(found6[0].cookie, socket2::SockRef::from(&client6).cookie().unwrap());
        assert_eq!(found6[0].destination, (v6, server6.local_addr().unwrap().port()));

        let mapped_port = mapped.local_addr().unwrap().as_socket().unwrap().port();
        let found4 = sockets_from(LOOPBACK, Some(mapped_port), 6).unwrap();
        assert_eq!(found4.len(), 1, "{found4:?}");
        assert_eq!(found4[0].cookie, mapped.cookie().unwrap());
        assert_eq!(found4[0].source, (LOOPBACK, mapped_port));
        assert_eq!(found4[0].destination, (LOOPBACK, port4));

        let targets: HashSet<(IpAddr, u16)> =
            [(v6, server6.local_addr().unwrap().port())].into_iter().collect();
        let report = sweep_current_namespace(&targets, &|_: &FoundSocket| false);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.destroyed, 1, "the IPv6 client");
        let mut buf = [0u8; 1];
        assert_eq!((&client6).read(&mut buf).unwrap_err().kind(), ErrorKind::ConnectionAborted);
    });
}
