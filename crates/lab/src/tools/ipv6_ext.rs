//! IPv6 clients whose every packet carries extension headers (hop-by-hop options, destination
//! options), set as sticky socket options so the kernel adds them to each packet, the SYN
//! included: real traffic for the per-packet path's extension-header walk.

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};

use super::clients::{Attempt, connect_socket, tcp_exchange, udp_exchange};

/// An extension header a client's packets carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtHeader {
    /// Hop-by-hop options (8 bytes: one PadN option); every router on the way reads it.
    HopByHop,
    /// Destination options (8 bytes: one PadN option; Linux drops more than 7 bytes of padding
    /// in a row, RFC 4942).
    DestinationOptions,
}

impl ExtHeader {
    /// The socket option and the header as `setsockopt` takes it (the kernel fills in the next
    /// header field).
    fn option(self) -> (i32, &'static [u8]) {
        const HOP: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
        const DST: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
        match self {
            ExtHeader::HopByHop => (libc::IPV6_HOPOPTS, &HOP),
            ExtHeader::DestinationOptions => (libc::IPV6_DSTOPTS, &DST),
        }
    }
}

/// Makes every packet `socket` sends carry `headers` (hop-by-hop options need CAP_NET_RAW).
fn set_sticky(socket: BorrowedFd<'_>, headers: &[ExtHeader]) -> io::Result<()> {
    for header in headers {
        let (option, bytes) = header.option();
        let len = libc::socklen_t::try_from(bytes.len()).map_err(io::Error::other)?;
        // SAFETY: `bytes` is valid for `len` bytes for the whole call; the kernel copies it.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IPV6,
                option,
                bytes.as_ptr().cast(),
                len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // Read it back: the kernel adds to each packet what the socket holds.
        let mut held = [0u8; 64];
        let mut held_len = libc::socklen_t::try_from(held.len()).map_err(io::Error::other)?;
        // SAFETY: `held` is valid for `held_len` bytes; the kernel writes at most that many.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IPV6,
                option,
                held.as_mut_ptr().cast(),
                &mut held_len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if usize::try_from(held_len).ok() != Some(bytes.len()) || held[1..bytes.len()] != bytes[1..]
        {
            let error = format!("{header:?} not held by the socket ({held_len} bytes)");
            return Err(io::Error::other(error));
        }
    }
    Ok(())
}

/// `count` TCP connections to an echo server, each with `headers` on every packet, one request
/// each (as [`super::clients::tcp`]).
pub fn tcp(
    target: SocketAddrV6,
    headers: &[ExtHeader],
    count: usize,
    timeout: Duration,
) -> Vec<Attempt> {
    (0..count).map(|i| tcp_once(target, headers, i, timeout)).collect()
}

fn tcp_once(
    target: SocketAddrV6,
    headers: &[ExtHeader],
    sequence: usize,
    timeout: Duration,
) -> Attempt {
    let attempt = Attempt::new("tcp", target.into());
    let result = (|| -> io::Result<Attempt> {
        let fd =
            socket::socket(AddressFamily::Inet6, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
        set_sticky(fd.as_fd(), headers)?;
        tcp_exchange(connect_socket(fd, target.into(), timeout)?, sequence, &attempt)
    })();
    result.unwrap_or_else(|err| attempt.fail(&err))
}

/// `count` UDP requests to an echo server from new sockets, each datagram with `headers`.
pub fn udp(
    target: SocketAddrV6,
    headers: &[ExtHeader],
    count: usize,
    timeout: Duration,
) -> Vec<Attempt> {
    (0..count).map(|i| udp_once(target, headers, i, timeout)).collect()
}

fn udp_once(
    target: SocketAddrV6,
    headers: &[ExtHeader],
    sequence: usize,
    timeout: Duration,
) -> Attempt {
    let attempt = Attempt::new("udp", target.into());
    let result = (|| -> io::Result<Attempt> {
        let socket = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))?;
        set_sticky(socket.as_fd(), headers)?;
        socket.set_read_timeout(Some(timeout))?;
        let request = format!("request {sequence}");
        Ok(udp_exchange(&socket, target.into(), request.as_bytes(), &attempt)?.0)
    })();
    result.unwrap_or_else(|err| attempt.fail(&err))
}
