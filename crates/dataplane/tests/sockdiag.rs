//! Stale-socket sweep in a network namespace of the test's own: connected TCP and UDP sockets to
//! a removed backend are destroyed, others (and sockets the filter keeps) are not.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;

use switchyard_dataplane::sockdiag::{FoundSocket, sweep_current_namespace};

/// Runs `f` on a thread that lives in a fresh network namespace with loopback up.
fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare only changes this thread's namespace; it ends with the scope.
                assert_eq!(
                    unsafe { libc::unshare(libc::CLONE_NEWNET) },
                    0,
                    "unshare(CLONE_NEWNET)"
                );
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
