//! Ethernet frames of ARP and IPv6 neighbour discovery, parsed and built without I/O.
//!
//! Parsing accepts only what RFC 826 and RFC 4861 §7.1.1 allow a host to act on — an Ethernet
//! ARP request for an IPv4 address, or a neighbour solicitation with hop limit 255, code 0, a
//! valid checksum, a unicast target and well-formed options — and refuses everything else with
//! a reason ([`Refused`]), so the runtime can count what it ignored.

use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// An Ethernet (MAC) address.
pub type Mac = [u8; 6];

/// The broadcast MAC.
pub const BROADCAST: Mac = [0xff; 6];

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERNET_HEADER: usize = 14;
const ARP_BODY: usize = 28;
const IPV6_HEADER: usize = 40;
const ICMPV6: u8 = 58;
const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
const OPTION_SOURCE_LINK_ADDRESS: u8 = 1;
const OPTION_TARGET_LINK_ADDRESS: u8 = 2;
/// ICMPv6 header (4), reserved/flags (4), target (16).
const NDP_BODY: usize = 24;

/// Why a frame is not a request this responder acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Error)]
pub enum Refused {
    #[error("shorter than its headers say")]
    Truncated,
    #[error("VLAN-tagged (the responder listens on the untagged interface)")]
    VlanTagged,
    #[error("neither ARP nor IPv6")]
    OtherEthertype,
    #[error("ARP for other than Ethernet and IPv4")]
    ArpNotEthernetIpv4,
    #[error("ARP other than a request")]
    ArpNotRequest,
    #[error("ARP sender hardware address differs from the Ethernet source")]
    ArpSenderMismatch,
    #[error("IPv6 with extension headers or not ICMPv6")]
    NotIcmpv6,
    #[error("ICMPv6 other than a neighbour solicitation")]
    NotNeighborSolicitation,
    #[error("neighbour solicitation with hop limit other than 255 (sent from off-link)")]
    HopLimit,
    #[error("neighbour solicitation with a code other than 0")]
    IcmpCode,
    #[error("ICMPv6 checksum does not match")]
    Checksum,
    #[error("neighbour solicitation for a multicast target")]
    MulticastTarget,
    #[error("neighbour discovery option of length 0 or past the end")]
    BadOption,
    #[error("duplicate address detection probe (unspecified source)")]
    DuplicateAddressDetection,
}

/// A request to answer: who asks (MAC and protocol address) and for which address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// An ARP request for `target`.
    Arp { sender_mac: Mac, sender_ip: Ipv4Addr, target: Ipv4Addr },
    /// A neighbour solicitation for `target`; `reply_mac` is the source link-layer address
    /// option if present, else the Ethernet source.
    Solicitation { reply_mac: Mac, sender_ip: Ipv6Addr, target: Ipv6Addr },
}

impl Request {
    /// The address asked about.
    pub fn target(&self) -> std::net::IpAddr {
        match self {
            Request::Arp { target, .. } => (*target).into(),
            Request::Solicitation { target, .. } => (*target).into(),
        }
    }
}

fn be16(bytes: &[u8], at: usize) -> Result<u16, Refused> {
    bytes.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or(Refused::Truncated)
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], Refused> {
    bytes.get(at..at + N).and_then(|b| b.try_into().ok()).ok_or(Refused::Truncated)
}

/// Parses one received Ethernet frame.
pub fn parse(frame: &[u8]) -> Result<Request, Refused> {
    let source: Mac = array(frame, 6)?;
    match be16(frame, 12)? {
        ETHERTYPE_ARP => parse_arp(&frame[ETHERNET_HEADER..], source),
        ETHERTYPE_IPV6 => parse_solicitation(&frame[ETHERNET_HEADER..], source),
        ETHERTYPE_VLAN => Err(Refused::VlanTagged),
        _ => Err(Refused::OtherEthertype),
    }
}

fn parse_arp(arp: &[u8], ethernet_source: Mac) -> Result<Request, Refused> {
    if arp.len() < ARP_BODY {
        return Err(Refused::Truncated);
    }
    // Hardware Ethernet (1), protocol IPv4, address lengths 6 and 4.
    if be16(arp, 0)? != 1 || be16(arp, 2)? != 0x0800 || arp[4] != 6 || arp[5] != 4 {
        return Err(Refused::ArpNotEthernetIpv4);
    }
    if be16(arp, 6)? != 1 {
        return Err(Refused::ArpNotRequest);
    }
    let sender_mac: Mac = array(arp, 8)?;
    if sender_mac != ethernet_source {
        return Err(Refused::ArpSenderMismatch);
    }
    let sender_ip = Ipv4Addr::from(array::<4>(arp, 14)?);
    let target = Ipv4Addr::from(array::<4>(arp, 24)?);
    Ok(Request::Arp { sender_mac, sender_ip, target })
}

fn parse_solicitation(ip: &[u8], ethernet_source: Mac) -> Result<Request, Refused> {
    if ip.len() < IPV6_HEADER {
        return Err(Refused::Truncated);
    }
    if ip[6] != ICMPV6 {
        return Err(Refused::NotIcmpv6);
    }
    let payload = usize::from(be16(ip, 4)?);
    let icmp = ip.get(IPV6_HEADER..IPV6_HEADER + payload).ok_or(Refused::Truncated)?;
    if icmp.first() != Some(&NEIGHBOR_SOLICITATION) {
        return Err(Refused::NotNeighborSolicitation);
    }
    if ip[7] != 255 {
        return Err(Refused::HopLimit);
    }
    if icmp.len() < NDP_BODY {
        return Err(Refused::Truncated);
    }
    if icmp[1] != 0 {
        return Err(Refused::IcmpCode);
    }
    let source = Ipv6Addr::from(array::<16>(ip, 8)?);
    let destination = Ipv6Addr::from(array::<16>(ip, 24)?);
    if checksum(source, destination, icmp) != 0 {
        return Err(Refused::Checksum);
    }
    let target = Ipv6Addr::from(array::<16>(icmp, 8)?);
    if target.is_multicast() {
        return Err(Refused::MulticastTarget);
    }
    let mut reply_mac = ethernet_source;
    let mut options = &icmp[NDP_BODY..];
    while !options.is_empty() {
        let length = usize::from(*options.get(1).ok_or(Refused::BadOption)?) * 8;
        if length == 0 || length > options.len() {
            return Err(Refused::BadOption);
        }
        if options[0] == OPTION_SOURCE_LINK_ADDRESS && length >= 8 {
            reply_mac = array(options, 2)?;
        }
        options = &options[length..];
    }
    if source.is_unspecified() {
        return Err(Refused::DuplicateAddressDetection);
    }
    Ok(Request::Solicitation { reply_mac, sender_ip: source, target })
}

/// The Internet checksum of the ICMPv6 message `icmp` with its pseudo-header; 0 when `icmp`
/// carries a correct checksum.
pub fn checksum(source: Ipv6Addr, destination: Ipv6Addr, icmp: &[u8]) -> u16 {
    let length = u32::try_from(icmp.len()).unwrap_or(u32::MAX);
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u64::from(word);
        }
    };
    add(&source.octets());
    add(&destination.octets());
    add(&length.to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(destination: Mac, source: Mac, ethertype: u16, capacity: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETHERNET_HEADER + capacity);
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

#[allow(clippy::too_many_arguments)]
fn arp(
    destination: Mac,
    operation: u16,
    sender_mac: Mac,
    sender_ip: Ipv4Addr,
    target_mac: Mac,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut frame = ethernet(destination, sender_mac, ETHERTYPE_ARP, ARP_BODY);
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    frame.extend_from_slice(&operation.to_be_bytes());
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&sender_ip.octets());
    frame.extend_from_slice(&target_mac);
    frame.extend_from_slice(&target_ip.octets());
    frame
}

/// The ARP reply telling `requester` that `address` is at `mac`.
pub fn arp_reply(
    mac: Mac,
    address: Ipv4Addr,
    requester_mac: Mac,
    requester_ip: Ipv4Addr,
) -> Vec<u8> {
    arp(requester_mac, 2, mac, address, requester_mac, requester_ip)
}

/// A gratuitous ARP: a broadcast request for `address` from `address` at `mac`. Neighbours with
/// an entry for `address` replace its MAC (Linux overrides its lock time for it).
pub fn gratuitous_arp(mac: Mac, address: Ipv4Addr) -> Vec<u8> {
    arp(BROADCAST, 1, mac, address, [0; 6], address)
}

/// A neighbour advertisement for `target` at `mac`, from `source` to `destination` (MAC
/// `destination_mac`), solicited or not; always with the override flag (the owner moved).
pub fn neighbor_advertisement(
    mac: Mac,
    source: Ipv6Addr,
    target: Ipv6Addr,
    destination_mac: Mac,
    destination: Ipv6Addr,
    solicited: bool,
) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(NDP_BODY + 8);
    icmp.extend_from_slice(&[NEIGHBOR_ADVERTISEMENT, 0, 0, 0]);
    // Flags: router 0x80, solicited 0x40, override 0x20.
    icmp.extend_from_slice(&[if solicited { 0x60 } else { 0x20 }, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[OPTION_TARGET_LINK_ADDRESS, 1]);
    icmp.extend_from_slice(&mac);
    let sum = checksum(source, destination, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut frame = ethernet(destination_mac, mac, ETHERTYPE_IPV6, IPV6_HEADER + icmp.len());
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&u16::try_from(icmp.len()).unwrap_or(u16::MAX).to_be_bytes());
    frame.extend_from_slice(&[ICMPV6, 255]);
    frame.extend_from_slice(&source.octets());
    frame.extend_from_slice(&destination.octets());
    frame.extend_from_slice(&icmp);
    frame
}

/// The all-nodes multicast address and its MAC, where unsolicited advertisements go.
pub const ALL_NODES: (Ipv6Addr, Mac) =
    (Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), [0x33, 0x33, 0, 0, 0, 1]);

/// An unsolicited neighbour advertisement of `target` at `mac` to all nodes, from `source` (an
/// address of the interface, its link-local one where it has one).
pub fn unsolicited_advertisement(mac: Mac, source: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    neighbor_advertisement(mac, source, target, ALL_NODES.1, ALL_NODES.0, false)
}

/// The MAC of the solicited-node multicast group of `address` (where solicitations for it go):
/// 33:33:ff and the address's last three octets.
pub fn solicited_node_mac(address: Ipv6Addr) -> Mac {
    let o = address.octets();
    [0x33, 0x33, 0xff, o[13], o[14], o[15]]
}

/// A neighbour solicitation for `target` from `source` at `mac` (what a client sends; the tests
/// and the lab use it).
pub fn neighbor_solicitation(mac: Mac, source: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let o = target.octets();
    let destination =
        Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]]);
    let mut icmp = Vec::with_capacity(NDP_BODY + 8);
    icmp.extend_from_slice(&[NEIGHBOR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[OPTION_SOURCE_LINK_ADDRESS, 1]);
    icmp.extend_from_slice(&mac);
    let sum = checksum(source, destination, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut frame =
        ethernet(solicited_node_mac(target), mac, ETHERTYPE_IPV6, IPV6_HEADER + icmp.len());
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&u16::try_from(icmp.len()).unwrap_or(u16::MAX).to_be_bytes());
    frame.extend_from_slice(&[ICMPV6, 255]);
    frame.extend_from_slice(&source.octets());
    frame.extend_from_slice(&destination.octets());
    frame.extend_from_slice(&icmp);
    frame
}

/// An ARP request for `target` from `sender_ip` at `mac` (what a client sends).
pub fn arp_request(mac: Mac, sender_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp(BROADCAST, 1, mac, sender_ip, [0; 6], target)
}

/// What a frame built here says, for tests: an ARP (operation, sender MAC, sender IP, target
/// IP) or a neighbour advertisement (flags, target, target link-layer address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Arp { operation: u16, sender_mac: Mac, sender_ip: Ipv4Addr, target_ip: Ipv4Addr },
    Advertisement { solicited: bool, overrides: bool, target: Ipv6Addr, mac: Mac },
}

/// Reads back a frame this module builds (ARP of either operation, or a neighbour
/// advertisement with a correct checksum).
pub fn read_sent(frame: &[u8]) -> Result<Sent, Refused> {
    match be16(frame, 12)? {
        ETHERTYPE_ARP => {
            let arp = &frame[ETHERNET_HEADER..];
            if arp.len() < ARP_BODY {
                return Err(Refused::Truncated);
            }
            Ok(Sent::Arp {
                operation: be16(arp, 6)?,
                sender_mac: array(arp, 8)?,
                sender_ip: array::<4>(arp, 14)?.into(),
                target_ip: array::<4>(arp, 24)?.into(),
            })
        }
        ETHERTYPE_IPV6 => {
            let ip = &frame[ETHERNET_HEADER..];
            let icmp = ip.get(IPV6_HEADER..).ok_or(Refused::Truncated)?;
            if icmp.first() != Some(&NEIGHBOR_ADVERTISEMENT) || icmp.len() < NDP_BODY + 8 {
                return Err(Refused::NotNeighborSolicitation);
            }
            let source = Ipv6Addr::from(array::<16>(ip, 8)?);
            let destination = Ipv6Addr::from(array::<16>(ip, 24)?);
            if checksum(source, destination, icmp) != 0 {
                return Err(Refused::Checksum);
            }
            Ok(Sent::Advertisement {
                solicited: icmp[4] & 0x40 != 0,
                overrides: icmp[4] & 0x20 != 0,
                target: array::<16>(icmp, 8)?.into(),
                mac: array(icmp, NDP_BODY + 2)?,
            })
        }
        _ => Err(Refused::OtherEthertype),
    }
}
