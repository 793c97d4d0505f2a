//! UDP replies from the address a request was sent to.
//!
//! A server bound to `[::]` answers from whatever source address the route to the client picks;
//! on a node that also holds a routed address (a LoadBalancer or External IP on `lo`) that is
//! the node's own address, and a client checking the reply's source (as `dig` does) rejects it.
//! With IPV6_RECVPKTINFO the server learns each datagram's destination (IPv4 ones as v4-mapped
//! addresses) and sends the reply from it, as real DNS servers do.

use std::io;
use std::mem::{size_of, size_of_val, zeroed};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

fn check(ret: isize) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

fn socklen<T>() -> libc::socklen_t {
    // Small fixed-size kernel structs; always fits.
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// Asks the kernel to report every datagram's destination address.
pub(crate) fn enable(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVPKTINFO,
            (&on as *const libc::c_int).cast(),
            socklen::<libc::c_int>(),
        )
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// A received datagram's length, sender and destination.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) len: usize,
    pub(crate) peer: SocketAddrV6,
    pub(crate) destination: Option<libc::in6_pktinfo>,
}

/// Control buffer for one in6_pktinfo, aligned for cmsghdr.
#[repr(C, align(8))]
struct Control([u8; 64]);

/// recvmsg on an IPv6 UDP socket, collecting the IPV6_PKTINFO destination.
pub(crate) fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: every pointer handed to recvmsg points into locals that outlive the call, with the
    // lengths given; the cmsg walk uses the libc macros on the msghdr the kernel filled in.
    unsafe {
        let mut peer: libc::sockaddr_in6 = zeroed();
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut control = Control([0; 64]);
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name = (&mut peer as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = socklen::<libc::sockaddr_in6>();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control.0);
        let len = check(libc::recvmsg(socket.as_raw_fd(), &mut msg, 0))?;
        let mut destination = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IPV6 && (*cmsg).cmsg_type == libc::IPV6_PKTINFO {
                destination = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<libc::in6_pktinfo>(),
                ));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        let peer = SocketAddrV6::new(
            Ipv6Addr::from(peer.sin6_addr.s6_addr),
            u16::from_be(peer.sin6_port),
            peer.sin6_flowinfo,
            peer.sin6_scope_id,
        );
        Ok(Received { len, peer, destination })
    }
}

/// Sends `data` to `peer` from `source` (the destination of the request), or from the routed
/// source when the request's destination is unknown.
pub(crate) fn send(
    socket: &UdpSocket,
    data: &[u8],
    peer: SocketAddr,
    source: Option<libc::in6_pktinfo>,
) -> io::Result<usize> {
    let Some(mut source) = source else { return socket.send_to(data, peer) };
    let peer = match peer {
        SocketAddr::V6(v6) => v6,
        SocketAddr::V4(v4) => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
    };
    // Only a link-local source needs its interface; elsewhere the route decides.
    if Ipv6Addr::from(source.ipi6_addr.s6_addr).segments()[0] & 0xffc0 != 0xfe80 {
        source.ipi6_ifindex = 0;
    }
    // SAFETY: as in `recv`; the control buffer holds exactly one cmsg built with the libc macros.
    unsafe {
        let mut name: libc::sockaddr_in6 = zeroed();
        name.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        name.sin6_port = peer.port().to_be();
        name.sin6_addr.s6_addr = peer.ip().octets();
        name.sin6_scope_id = peer.scope_id();
        let mut iov =
            libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() };
        let mut control = Control([0; 64]);
        let space = libc::CMSG_SPACE(socklen::<libc::in6_pktinfo>()) as usize;
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name = (&mut name as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = socklen::<libc::sockaddr_in6>();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
        (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(socklen::<libc::in6_pktinfo>()) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in6_pktinfo>(), source);
        check(libc::sendmsg(socket.as_raw_fd(), &msg, 0))
    }
}
