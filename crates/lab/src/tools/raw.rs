//! Hand-made packets for tests of what a data path drops or forwards: raw IP payloads (the
//! kernel adds the IP header) such as an ICMP packet-too-big from "a router on the path", or
//! encapsulated packets from an address that is no director.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// IP protocol numbers used here.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Sends `payload` as one IP packet of protocol `protocol` to `destination` from the calling
/// thread's namespace (source address and header by the kernel; ICMPv6 checksum too).
pub fn send(destination: IpAddr, protocol: u8, payload: &[u8]) -> io::Result<()> {
    let family = if destination.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: a raw socket, owned right away.
    let raw =
        unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(protocol)) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let address = socket2_address(SocketAddr::new(destination, 0));
    // SAFETY: the buffer and address outlive the call; lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&address.0 as *const libc::sockaddr_storage).cast(),
            address.1,
        )
    };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn socket2_address(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; zeroed is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match address {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, libc::socklen_t::try_from(len).unwrap_or(libc::socklen_t::MAX))
}

/// Sends `count` TCP segments with `flags` (say a bare ACK) from `source` to `destination`,
/// each from a random source port with random sequence numbers, through one raw socket of the
/// calling thread's namespace (the kernel adds the IPv4 header): the flood an attacker sends to
/// fill a proxy's tables. Returns how many the kernel took (it may refuse a few under load).
pub fn tcp_flood(
    source: std::net::Ipv4Addr,
    destination: std::net::SocketAddrV4,
    flags: u8,
    count: usize,
) -> io::Result<usize> {
    const IPPROTO_TCP: u8 = 6;
    // SAFETY: a raw socket, owned right away.
    let raw = unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(IPPROTO_TCP))
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let address = socket2_address(SocketAddr::V4(destination));
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
        | 1;
    let mut random = move || {
        // xorshift64: enough to spread ports and sequence numbers.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut sent = 0;
    for _ in 0..count {
        let r = random();
        let mut segment = [0u8; 20];
        segment[0..2].copy_from_slice(&((r as u16) | 1024).to_be_bytes());
        segment[2..4].copy_from_slice(&destination.port().to_be_bytes());
        segment[4..8].copy_from_slice(&((r >> 16) as u32).to_be_bytes());
        segment[8..12].copy_from_slice(&((r >> 32) as u32).to_be_bytes());
        segment[12] = 5 << 4;
        segment[13] = flags;
        segment[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
        let mut pseudo = Vec::with_capacity(32);
        pseudo.extend_from_slice(&source.octets());
        pseudo.extend_from_slice(&destination.ip().octets());
        pseudo.extend_from_slice(&[0, IPPROTO_TCP, 0, 20]);
        pseudo.extend_from_slice(&segment);
        let sum = checksum(&pseudo);
        segment[16..18].copy_from_slice(&sum.to_be_bytes());
        // SAFETY: the buffer and address outlive the call; lengths are theirs.
        let rc = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                segment.as_ptr().cast(),
                segment.len(),
                0,
                (&address.0 as *const libc::sockaddr_storage).cast(),
                address.1,
            )
        };
        if rc >= 0 {
            sent += 1;
        }
    }
    Ok(sent)
}

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IP header (no options, checksum filled in for IPv4) of `payload_len` bytes of payload.
pub fn ip_header(source: IpAddr, destination: IpAddr, protocol: u8, payload_len: usize) -> Vec<u8> {
    match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + payload_len).unwrap_or(u16::MAX);
            let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0];
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let sum = checksum(&h);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            h
        }
        _ => {
            let to_v6 = |a: IpAddr| match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let len = u16::try_from(payload_len).unwrap_or(u16::MAX);
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&[protocol, 64]);
            h.extend_from_slice(&to_v6(source).octets());
            h.extend_from_slice(&to_v6(destination).octets());
            h
        }
    }
}

/// A UDP datagram `source` -> `destination` with `payload` (IP header included, UDP
/// checksum 0 for IPv4; IPv6 gets none either: only the parse matters to the receivers here).
pub fn udp_packet(source: SocketAddr, destination: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    let mut udp = Vec::with_capacity(usize::from(len));
    udp.extend_from_slice(&source.port().to_be_bytes());
    udp.extend_from_slice(&destination.port().to_be_bytes());
    udp.extend_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut packet = ip_header(source.ip(), destination.ip(), IPPROTO_UDP, udp.len());
    packet.extend_from_slice(&udp);
    packet
}

/// An ICMP fragmentation-needed (IPv4) / packet-too-big (IPv6) payload announcing `mtu`,
/// quoting `quoted` (an IP packet; IPv4 quotes its header and 8 bytes). Send it with
/// [`send`] and the returned protocol to the quoted packet's source.
pub fn too_big(quoted: &[u8], mtu: u16) -> (u8, Vec<u8>) {
    let v4 = quoted.first().is_some_and(|b| b >> 4 == 4);
    if v4 {
        let quote = &quoted[..quoted.len().min(28)];
        let mut icmp = vec![3, 4, 0, 0, 0, 0];
        icmp.extend_from_slice(&mtu.to_be_bytes());
        icmp.extend_from_slice(quote);
        let sum = checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        (IPPROTO_ICMP, icmp)
    } else {
        // Type 2, code 0, checksum by the kernel, 32-bit MTU.
        let mut icmp = vec![2, 0, 0, 0];
        icmp.extend_from_slice(&u32::from(mtu).to_be_bytes());
        icmp.extend_from_slice(quoted);
        (IPPROTO_ICMPV6, icmp)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_headers_are_right() {
        // RFC 1071's example words.
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
        let packet =
            udp_packet("10.0.0.1:80".parse().unwrap(), "10.0.0.2:5000".parse().unwrap(), b"x");
        assert_eq!(packet.len(), 29);
        assert_eq!(checksum(&packet[..20]), 0, "IPv4 header checksum verifies");
        let (protocol, icmp) = too_big(&packet, 1400);
        assert_eq!((protocol, icmp.len()), (IPPROTO_ICMP, 8 + 28));
        assert_eq!(checksum(&icmp), 0);
        let v6 = udp_packet("[fd00::1]:80".parse().unwrap(), "[fd00::2]:9".parse().unwrap(), b"");
        assert_eq!((v6.len(), v6[6]), (48, IPPROTO_UDP));
        assert_eq!(too_big(&v6, 1400).0, IPPROTO_ICMPV6);
    }
}

/// IP protocol number of SCTP.
pub const IPPROTO_SCTP: u8 = 132;

/// A raw socket that receives a copy of every packet of one IP protocol arriving in the
/// namespace it was opened in: a capture for protocols the kernel has no sockets for (this
/// machine's kernel has no SCTP). Open it (in the receiver's namespace) before the packets are
/// sent; read it from any thread.
#[derive(Debug)]
pub struct Capture {
    socket: OwnedFd,
    v4: bool,
}

impl Capture {
    /// Opens the capture for `protocol` over IPv4 (`v4`) or IPv6 in the calling thread's
    /// namespace.
    pub fn open(v4: bool, protocol: u8) -> io::Result<Capture> {
        let family = if v4 { libc::AF_INET } else { libc::AF_INET6 };
        // SAFETY: a raw socket, owned right away.
        let raw = unsafe {
            libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(protocol))
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        Ok(Capture { socket: unsafe { OwnedFd::from_raw_fd(raw) }, v4 })
    }

    /// The next packet within `timeout`: (source address, the transport header and payload).
    pub fn next(&self, timeout: std::time::Duration) -> io::Result<(IpAddr, Vec<u8>)> {
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros().min(999_999) as i32),
        };
        // SAFETY: setsockopt reads `tv` for its size.
        let rc = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 65_536];
        // SAFETY: sockaddr_storage is plain data; zeroed is valid.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut from_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: the buffer and address outlive the call; lengths are theirs.
        let n = unsafe {
            libc::recvfrom(
                self.socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_storage).cast(),
                &mut from_len,
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        buf.truncate(n);
        if self.v4 {
            // IPv4 raw sockets hand over the IP header too.
            let ihl = usize::from(buf.first().copied().unwrap_or(0x45) & 0xf) * 4;
            let source = IpAddr::from(
                <[u8; 4]>::try_from(buf.get(12..16).unwrap_or(&[0; 4])).unwrap_or([0; 4]),
            );
            Ok((source, buf.get(ihl..).unwrap_or(&[]).to_vec()))
        } else {
            // SAFETY: an AF_INET6 socket fills a sockaddr_in6.
            let sin6 =
                unsafe { &*(&from as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Ok((IpAddr::from(sin6.sin6_addr.s6_addr), buf))
        }
    }
}
