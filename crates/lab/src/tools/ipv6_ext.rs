//! IPv6 clients whose every packet carries extension headers (hop-by-hop options, destination
//! options), set as sticky socket options so the kernel adds them to each packet, the SYN
//! included: real traffic for the per-packet path's extension-header walk.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};

use super::clients::{Attempt, parse_reply};
use super::servers::canonical;

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
        // A blocking connect() gives up after the send timeout.
        let limit = nix::sys::time::TimeVal::new(
            i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            i64::from(timeout.subsec_micros()),
        );
        socket::setsockopt(&fd, sockopt::SendTimeout, &limit)?;
        let started = Instant::now();
        socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(SocketAddr::V6(target))).map_err(
            |errno| {
                if errno == nix::errno::Errno::EINPROGRESS {
                    io::Error::from(io::ErrorKind::TimedOut)
                } else {
                    io::Error::from(errno)
                }
            },
        )?;
        let mut attempt = attempt.clone();
        attempt.micros = Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        let mut stream = TcpStream::from(fd);
        stream.set_read_timeout(Some(timeout))?;
        attempt.local = Some(canonical(stream.local_addr()?).to_string());
        stream.write_all(format!("request {sequence}\n").as_bytes())?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        if line.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed without a reply"));
        }
        let reply = parse_reply(&line)?;
        attempt.backend = Some(reply.backend);
        attempt.seen_as = Some(reply.peer);
        Ok(attempt)
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
        let started = Instant::now();
        socket.send_to(format!("request {sequence}").as_bytes(), target)?;
        let mut buf = vec![0u8; 65536];
        let (len, from) = socket.recv_from(&mut buf)?;
        let mut attempt = attempt.clone();
        attempt.micros = Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        attempt.local = Some(socket.local_addr()?.to_string());
        attempt.reply_from = Some(canonical(from).to_string());
        let reply = parse_reply(&String::from_utf8_lossy(&buf[..len]))?;
        attempt.backend = Some(reply.backend);
        attempt.seen_as = Some(reply.peer);
        Ok(attempt)
    })();
    result.unwrap_or_else(|err| attempt.fail(&err))
}
