//! AF_PACKET sockets bound to one interface: the ARP one sees ARP requests, the NDP one IPv6
//! neighbour solicitations (a classic BPF filter in the kernel keeps all other IPv6 traffic
//! out, so a busy interface costs the agent nothing).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::frame::Mac;

/// `ETH_P_ARP`.
pub const ETH_P_ARP: u16 = 0x0806;
/// `ETH_P_IPV6`.
pub const ETH_P_IPV6: u16 = 0x86dd;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

// Classic BPF opcodes.
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;

/// ARP requests only (operation 1 at offset 20).
const ARP_REQUESTS: [libc::sock_filter; 4] = [
    insn(LD_H_ABS, 0, 0, 20),
    insn(JEQ_K, 0, 1, 1),
    insn(RET_K, 0, 0, 0xffff),
    insn(RET_K, 0, 0, 0),
];

/// IPv6 whose next header is ICMPv6 (58, offset 20) of type neighbour solicitation (135,
/// offset 54). Solicitations with extension headers are not seen (RFC 4861 senders use none).
const SOLICITATIONS: [libc::sock_filter; 8] = [
    insn(LD_H_ABS, 0, 0, 12),
    insn(JEQ_K, 0, 5, 0x86dd),
    insn(LD_B_ABS, 0, 0, 20),
    insn(JEQ_K, 0, 3, 58),
    insn(LD_B_ABS, 0, 0, 54),
    insn(JEQ_K, 0, 1, 135),
    insn(RET_K, 0, 0, 0xffff),
    insn(RET_K, 0, 0, 0),
];

/// A non-blocking AF_PACKET socket bound to one interface and one ethertype.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    protocol: u16,
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(result) }
}

fn link_address(ifindex: i32, protocol: u16, destination: Option<Mac>) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol.to_be();
    address.sll_ifindex = ifindex;
    if let Some(mac) = destination {
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(&mac);
    }
    address
}

impl PacketSocket {
    /// The ARP socket of interface `ifindex`.
    pub fn arp(ifindex: u32) -> io::Result<PacketSocket> {
        PacketSocket::open(ifindex, ETH_P_ARP, &ARP_REQUESTS)
    }

    /// The neighbour-solicitation socket of interface `ifindex`.
    pub fn ndp(ifindex: u32) -> io::Result<PacketSocket> {
        PacketSocket::open(ifindex, ETH_P_IPV6, &SOLICITATIONS)
    }

    fn open(ifindex: u32, protocol: u16, filter: &[libc::sock_filter]) -> io::Result<PacketSocket> {
        let ifindex = i32::try_from(ifindex).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(protocol.to_be()),
            )
        })?;
        // SAFETY: `raw` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let program = libc::sock_fprog {
            len: u16::try_from(filter.len()).map_err(|_| io::ErrorKind::InvalidInput)?,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: `program` points at `filter`, alive for the call; the kernel copies it.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&raw const program).cast(),
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })?;
        let address = link_address(ifindex, protocol, None);
        // SAFETY: `address` is a valid sockaddr_ll of the length given.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket { fd, ifindex, protocol })
    }

    /// Receives one frame into `buffer`: its whole length (more than `buffer` holds when it was
    /// cut short), or `None` for a frame this host sent. `WouldBlock` when none waits.
    pub fn receive(&self, buffer: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: see `link_address`.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut length = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buffer` and `from` are valid for writes of the lengths given.
        let received = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_TRUNC,
                (&raw mut from).cast(),
                &raw mut length,
            )
        };
        let received = usize::try_from(received).map_err(|_| io::Error::last_os_error())?;
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            return Ok(None);
        }
        Ok(Some(received))
    }

    /// Sends one complete Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let destination: Mac =
            frame.get(..6).and_then(|d| d.try_into().ok()).ok_or(io::ErrorKind::InvalidInput)?;
        let address = link_address(self.ifindex, self.protocol, Some(destination));
        // SAFETY: `frame` and `address` are valid for reads of the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        let sent = usize::try_from(sent).map_err(|_| io::Error::last_os_error())?;
        if sent == frame.len() { Ok(()) } else { Err(io::ErrorKind::WriteZero.into()) }
    }

    /// Joins (`join`) or leaves the multicast group `mac` on the interface, so that a NIC that
    /// filters multicast passes solicitations for an owned address (the kernel counts joins).
    pub fn membership(&self, mac: Mac, join: bool) -> io::Result<()> {
        // SAFETY: packet_mreq is plain old data; all-zero is a valid value.
        let mut request: libc::packet_mreq = unsafe { std::mem::zeroed() };
        request.mr_ifindex = self.ifindex;
        request.mr_type = libc::PACKET_MR_MULTICAST as u16;
        request.mr_alen = 6;
        request.mr_address[..6].copy_from_slice(&mac);
        let option = if join { libc::PACKET_ADD_MEMBERSHIP } else { libc::PACKET_DROP_MEMBERSHIP };
        // SAFETY: `request` is a valid packet_mreq of the length given.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                option,
                (&raw const request).cast(),
                size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
