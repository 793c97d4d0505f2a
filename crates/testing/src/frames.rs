//! Crafted Ethernet/IPv4/IPv6/TCP/UDP/ICMP frames for BPF_PROG_TEST_RUN, and a parser that
//! checks every checksum of what the program hands back.

use std::net::IpAddr;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
pub const SCTP: u8 = 132;

/// IPv6 extension header numbers.
pub const IPV6_HOPOPTS: u8 = 0;
pub const IPV6_ROUTING: u8 = 43;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_DSTOPTS: u8 = 60;

/// SCTP chunk types used by the tests.
pub const SCTP_DATA: u8 = 0;
pub const SCTP_INIT: u8 = 1;
pub const SCTP_ABORT: u8 = 6;

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const RST: u8 = 0x04;
pub const FIN: u8 = 0x01;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc1];
pub const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// One's-complement sum of 16-bit big-endian words.
pub fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut acc = sum16(&ip_bytes(src), 0);
    acc = sum16(&ip_bytes(dst), acc);
    acc + u32::from(proto) + len as u32
}

/// A packet to craft.
#[derive(Debug, Clone)]
pub struct Spec {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub seq: u32,
    pub payload: Vec<u8>,
    pub df: bool,
}

impl Spec {
    pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Spec {
        Spec {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
            proto: TCP,
            tcp_flags: flags,
            seq: 1000,
            payload: Vec::new(),
            df: true,
        }
    }

    pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Spec {
        Spec {
            proto: UDP,
            tcp_flags: 0,
            payload: b"hello".to_vec(),
            ..Spec::tcp(src, sport, dst, dport, 0)
        }
    }

    /// An SCTP packet with one chunk of type `chunk` (the payload as its value) and a valid
    /// CRC32c.
    pub fn sctp(src: &str, sport: u16, dst: &str, dport: u16, chunk: u8) -> Spec {
        Spec {
            proto: SCTP,
            tcp_flags: chunk,
            payload: b"sctp chunk data!".to_vec(),
            ..Spec::tcp(src, sport, dst, dport, 0)
        }
    }

    pub fn transport(&self) -> Vec<u8> {
        if self.proto == SCTP {
            return self.sctp_transport();
        }
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&self.dport.to_be_bytes());
        if self.proto == TCP {
            l4.extend_from_slice(&self.seq.to_be_bytes());
            l4.extend_from_slice(&0u32.to_be_bytes());
            l4.push(5 << 4);
            l4.push(self.tcp_flags);
            l4.extend_from_slice(&64240u16.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 0]);
        } else {
            l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        l4.extend_from_slice(&self.payload);
        let mut csum = fold(pseudo_sum(self.src, self.dst, self.proto, l4.len()) + sum16(&l4, 0));
        if self.proto == UDP && csum == 0 {
            // A computed 0 goes on the wire as 0xffff: a zero field means "no checksum" (IPv4)
            // or is invalid (IPv6, RFC 8200 §8.1).
            csum = 0xffff;
        }
        let at = if self.proto == TCP { 16 } else { 6 };
        l4[at..at + 2].copy_from_slice(&csum.to_be_bytes());
        l4
    }

    fn sctp_transport(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&self.dport.to_be_bytes());
        l4.extend_from_slice(&self.seq.to_be_bytes()); // verification tag
        l4.extend_from_slice(&[0, 0, 0, 0]);
        let len = 4 + self.payload.len();
        l4.push(self.tcp_flags);
        l4.push(0);
        l4.extend_from_slice(&(len as u16).to_be_bytes());
        l4.extend_from_slice(&self.payload);
        l4.resize(l4.len().next_multiple_of(4), 0);
        let crc = sctp_crc32c(&l4);
        l4[8..12].copy_from_slice(&crc.to_le_bytes());
        l4
    }

    /// The whole Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let l4 = self.transport();
        ip_frame(self.src, self.dst, self.proto, &l4, self.df)
    }
}

/// Ethernet + IP header around an already-built transport payload.
pub fn ip_frame(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8], df: bool) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&NODE_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0x12, 0x34]);
            ip.extend_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
            ip.extend_from_slice(&[64, proto, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = fold(sum16(&ip, 0));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    f.extend_from_slice(l4);
    f
}

/// An ICMP(v6) error from `from` to `to` quoting `quoted` (an IP packet without Ethernet).
pub fn icmp_error(from: &str, to: &str, kind: u8, code: u8, mtu: u32, quoted: &[u8]) -> Vec<u8> {
    let from: IpAddr = from.parse().unwrap();
    let to: IpAddr = to.parse().unwrap();
    let v4 = from.is_ipv4();
    let mut msg = vec![kind, code, 0, 0];
    if v4 {
        msg.extend_from_slice(&[0, 0]);
        msg.extend_from_slice(&(mtu as u16).to_be_bytes());
    } else {
        msg.extend_from_slice(&mtu.to_be_bytes());
    }
    msg.extend_from_slice(quoted);
    let proto = if v4 { ICMP } else { ICMPV6 };
    let acc = if v4 { 0 } else { pseudo_sum(from, to, ICMPV6, msg.len()) };
    let c = fold(sum16(&msg, acc));
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    ip_frame(from, to, proto, &msg, false)
}

/// CRC32c (Castagnoli) of an SCTP packet with its checksum field taken as zero, as stored
/// (little-endian) in the common header.
pub fn sctp_crc32c(l4: &[u8]) -> u32 {
    let mut crc = !0u32;
    for (i, &b) in l4.iter().enumerate() {
        let b = if (8..12).contains(&i) { 0 } else { b };
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

/// The frame with an 802.1Q tag (VLAN `vid`) after the MAC addresses.
pub fn vlan_tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&0x8100u16.to_be_bytes());
    f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// An IPv6 frame with extension headers inserted between the fixed header and the transport
/// header: each (kind, body) gets its next-header byte and length; bodies are padded to a
/// multiple of 8 bytes with the 2-byte header (routing: `body` starts with type and segments
/// left; fragment: `body` is the 6 bytes after next-header and reserved).
pub fn with_ipv6_ext(frame: &[u8], headers: &[(u8, Vec<u8>)]) -> Vec<u8> {
    assert_eq!(&frame[12..14], &[0x86, 0xdd], "IPv6 frame");
    let mut next = frame[20];
    let mut ext = Vec::new();
    for (kind, body) in headers.iter().rev() {
        let mut h = vec![next];
        if *kind == IPV6_FRAGMENT {
            h.push(0);
            h.extend_from_slice(body);
            assert_eq!(h.len(), 8, "fragment header is 8 bytes");
        } else {
            let total = (2 + body.len()).next_multiple_of(8);
            h.push((total / 8 - 1) as u8);
            h.extend_from_slice(body);
            // PadN option filling the rest (options headers), zero bytes otherwise.
            h.resize(total, 0);
        }
        h.extend_from_slice(&ext);
        ext = h;
        next = *kind;
    }
    let mut f = frame[..54].to_vec();
    f[20] = next;
    let len = u16::from_be_bytes([f[18], f[19]]) as usize + ext.len();
    f[18..20].copy_from_slice(&(len as u16).to_be_bytes());
    f.extend_from_slice(&ext);
    f.extend_from_slice(&frame[54..]);
    f
}

/// Splits an IPv4 or IPv6 frame into fragments carrying at most `size` bytes of payload each
/// (a multiple of 8): IPv4 with MF/offset (identification `id`), IPv6 with a fragment header.
pub fn fragment(frame: &[u8], size: usize, id: u32) -> Vec<Vec<u8>> {
    assert_eq!(size % 8, 0);
    let v4 = frame[12..14] == [0x08, 0x00];
    let hdr = if v4 { 14 + usize::from(frame[14] & 0xf) * 4 } else { 54 };
    let payload = &frame[hdr..];
    let chunks: Vec<&[u8]> = payload.chunks(size).collect();
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let offset = i * size;
            let more = u16::from(i != last);
            let mut f = frame[..hdr].to_vec();
            if v4 {
                f[18..20].copy_from_slice(&(id as u16).to_be_bytes());
                f[20..22].copy_from_slice(&(((offset / 8) as u16) | (more << 13)).to_be_bytes());
                let total = (hdr - 14 + chunk.len()) as u16;
                f[16..18].copy_from_slice(&total.to_be_bytes());
                f[24..26].copy_from_slice(&[0, 0]);
                let c = fold(sum16(&f[14..hdr], 0));
                f[24..26].copy_from_slice(&c.to_be_bytes());
            } else {
                let next = f[20];
                f[20] = IPV6_FRAGMENT;
                f[18..20].copy_from_slice(&((8 + chunk.len()) as u16).to_be_bytes());
                f.extend_from_slice(&[next, 0]);
                f.extend_from_slice(&(((offset / 8) as u16) << 3 | more).to_be_bytes());
                f.extend_from_slice(&id.to_be_bytes());
            }
            f.extend_from_slice(chunk);
            f
        })
        .collect()
}

/// Puts fragments (as `fragment` makes them, in order) back into one frame, so `parse` can
/// check the transport checksum of the whole datagram. Asserts that every fragment has the
/// first one's addresses (and valid IPv4 header checksums).
pub fn reassemble(fragments: &[Vec<u8>]) -> Vec<u8> {
    let first = &fragments[0];
    let v4 = first[12..14] == [0x08, 0x00];
    let mut payload = Vec::new();
    for f in fragments {
        if v4 {
            let ihl = usize::from(f[14] & 0xf) * 4;
            assert_eq!(fold(sum16(&f[14..14 + ihl], 0)), 0, "fragment IPv4 header checksum");
            assert_eq!(&f[26..34], &first[26..34], "fragment addresses");
            let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
            payload.extend_from_slice(&f[14 + ihl..14 + total]);
        } else {
            assert_eq!(&f[22..54], &first[22..54], "fragment addresses");
            assert_eq!(f[20], IPV6_FRAGMENT, "fragment header right after the fixed header");
            let len = usize::from(u16::from_be_bytes([f[18], f[19]]));
            payload.extend_from_slice(&f[62..54 + len]);
        }
    }
    if v4 {
        let ihl = usize::from(first[14] & 0xf) * 4;
        let mut f = first[..14 + ihl].to_vec();
        f[16..18].copy_from_slice(&((ihl + payload.len()) as u16).to_be_bytes());
        f[20..22].copy_from_slice(&[0, 0]);
        f[24..26].copy_from_slice(&[0, 0]);
        let c = fold(sum16(&f[14..14 + ihl], 0));
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&payload);
        f
    } else {
        let mut f = first[..54].to_vec();
        f[20] = first[54];
        f[18..20].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&payload);
        f
    }
}

/// What came out, with every checksum verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    /// The transport header and payload.
    pub l4: Vec<u8>,
}

impl Parsed {
    /// An ICMP error's quoted packet (IP header on), parsed without Ethernet and without
    /// checking the quoted transport checksum (it is truncated).
    pub fn quoted(&self) -> Parsed {
        let mut f = Vec::from([0u8; 12]);
        f.extend_from_slice(&(if self.src.is_ipv4() { 0x0800u16 } else { 0x86dd }).to_be_bytes());
        f.extend_from_slice(&self.l4[8..]);
        parse_inner(&f)
    }

    /// ICMP: (type, code, MTU field).
    pub fn icmp(&self) -> (u8, u8, u32) {
        let mtu = if self.src.is_ipv4() {
            u32::from(u16::from_be_bytes([self.l4[6], self.l4[7]]))
        } else {
            u32::from_be_bytes([self.l4[4], self.l4[5], self.l4[6], self.l4[7]])
        };
        (self.l4[0], self.l4[1], mtu)
    }
}

fn parse_common(f: &[u8], check_l4: bool) -> Parsed {
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, &[u8]) = match ethertype {
        0x0800 => {
            let ihl = usize::from(f[14] & 0xf) * 4;
            let ip = &f[14..14 + ihl];
            assert_eq!(fold(sum16(ip, 0)), 0, "IPv4 header checksum invalid: {ip:02x?}");
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let s: [u8; 4] = ip[12..16].try_into().unwrap();
            let d: [u8; 4] = ip[16..20].try_into().unwrap();
            let end = (14 + total).min(f.len());
            (s.into(), d.into(), ip[9], &f[14 + ihl..end])
        }
        0x86dd => {
            let len = usize::from(u16::from_be_bytes([f[18], f[19]]));
            let s: [u8; 16] = f[22..38].try_into().unwrap();
            let d: [u8; 16] = f[38..54].try_into().unwrap();
            let end = (54 + len).min(f.len());
            // Skip hop-by-hop, routing and destination options headers.
            let (mut next, mut at) = (f[20], 54);
            while matches!(next, IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS) {
                next = f[at];
                at += (usize::from(f[at + 1]) + 1) * 8;
            }
            (s.into(), d.into(), next, &f[at..end])
        }
        other => panic!("not IP: ethertype {other:#x}"),
    };
    if check_l4 && proto == SCTP {
        let stored = u32::from_le_bytes(l4[8..12].try_into().unwrap());
        assert_eq!(sctp_crc32c(l4), stored, "SCTP CRC32c invalid");
    } else if check_l4 {
        let acc = match proto {
            ICMP => 0,
            _ => pseudo_sum(src, dst, proto, l4.len()),
        };
        let skip_zero_udp = proto == UDP && src.is_ipv4() && l4[6] == 0 && l4[7] == 0;
        if !skip_zero_udp {
            assert_eq!(fold(sum16(l4, acc)), 0, "transport checksum (proto {proto}) invalid");
        }
    }
    let (sport, dport) = if proto == TCP || proto == UDP || proto == SCTP {
        (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
    } else {
        (0, 0)
    };
    let tcp = proto == TCP && l4.len() >= 20;
    Parsed {
        dst_mac: f[0..6].try_into().unwrap(),
        src_mac: f[6..12].try_into().unwrap(),
        src,
        dst,
        proto,
        sport,
        dport,
        tcp_flags: if tcp { l4[13] } else { 0 },
        tcp_seq: if tcp { u32::from_be_bytes(l4[4..8].try_into().unwrap()) } else { 0 },
        tcp_ack: if tcp { u32::from_be_bytes(l4[8..12].try_into().unwrap()) } else { 0 },
        l4: l4.to_vec(),
    }
}

/// Parses a frame and asserts the IPv4 header and transport/ICMP checksums are valid.
pub fn parse(f: &[u8]) -> Parsed {
    parse_common(f, true)
}

fn parse_inner(f: &[u8]) -> Parsed {
    parse_common(f, false)
}

/// The IP packet of a frame (Ethernet header removed), e.g. to quote it in an ICMP error.
pub fn without_ethernet(f: &[u8]) -> Vec<u8> {
    f[14..].to_vec()
}
