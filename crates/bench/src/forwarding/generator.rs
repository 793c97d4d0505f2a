//! The traffic generator: `BPF_PROG_TEST_RUN` with live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`).
//!
//! A socket sender cannot outrun a forwarder here: its own system calls cost more than the
//! forwarding (the old item 3 topped out near 100,000 packets/s for every forwarder), and
//! trafgen's packet socket stops with `EAGAIN` as soon as the receiving veth queues frames for
//! another CPU (its send buffer fills and it cannot raise `net.core.wmem_default` inside a
//! namespace). Live frames have neither limit: the kernel runs an XDP program of ours on a
//! frame from a page pool and really transmits what it returns with `XDP_TX` out of the device
//! named as the context's ingress device, the generator's veth, whose `ndo_xdp_xmit` puts the
//! frame straight into the forwarder's receive ring, or drops it when the ring is full. The
//! generator never waits for the forwarder.
//!
//! The kernel puts the frame's pointers back before each run, not its bytes, and a forwarder
//! writes into the page it received (NAT, TTL) before the page comes back to the pool. So the
//! program writes the whole frame each time (one store per 4 bytes, the frame as immediates)
//! before returning `XDP_TX`.
//!
//! Some kernels refuse live frames (`EPERM`: seen on a Firecracker guest's 6.18 kernel, whose
//! root lacks `CAP_SYS_RESOURCE`). A packet socket alone (`AF_PACKET` with
//! `PACKET_QDISC_BYPASS`, `sendmmsg` of 64 frames a call) offers only 0.55–0.87 million
//! frames/s from one CPU there, less than a forwarder takes, so the benchmark then uses the
//! [`super::reflector`] seeded by that socket; every sample names its method ([`Method`]).

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// `BPF_PROG_LOAD`.
const BPF_PROG_LOAD: libc::c_long = 5;
/// `BPF_PROG_TEST_RUN`.
const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// `BPF_PROG_TYPE_XDP`.
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`.
const LIVE_FRAMES: u32 = 1 << 1;
/// Frames per batch (the kernel's default, NAPI's budget).
const BATCH: u32 = 64;
/// `XDP_TX`, `XDP_ABORTED`.
const XDP_TX: i32 = 3;
const XDP_ABORTED: i32 = 0;

/// One eBPF instruction.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Insn {
    pub(super) code: u8,
    pub(super) registers: u8,
    pub(super) offset: i16,
    pub(super) imm: i32,
}

pub(super) const fn insn(code: u8, dst: u8, src: u8, offset: i16, imm: i32) -> Insn {
    Insn { code, registers: (src << 4) | dst, offset, imm }
}

/// The head of `union bpf_attr` for `BPF_PROG_LOAD` (the rest stays zero).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    rest: [u8; 64],
}

/// The `test` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// Stores that write `frame` at `r2` (the packet's start): one per 4 bytes, the rest by byte.
pub(super) fn stores(frame: &[u8]) -> Vec<Insn> {
    let mut stores = Vec::new();
    let mut chunks = frame.chunks_exact(4);
    let mut offset: i16 = 0;
    for chunk in chunks.by_ref() {
        let imm = i32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        // BPF_ST | BPF_MEM | BPF_W: *(u32 *)(r2 + offset) = imm.
        stores.push(insn(0x62, 2, 0, offset, imm));
        offset += 4;
    }
    for &byte in chunks.remainder() {
        // BPF_ST | BPF_MEM | BPF_B.
        stores.push(insn(0x72, 2, 0, offset, i32::from(byte)));
        offset += 1;
    }
    stores
}

/// The instructions that write `frame` over the packet and return `XDP_TX` (`XDP_ABORTED` if
/// the packet is shorter than the frame, which the kernel never hands it).
fn program(frame: &[u8]) -> Vec<Insn> {
    let len = i32::try_from(frame.len()).unwrap_or(i32::MAX);
    let stores = stores(frame);
    let skip = i16::try_from(stores.len() + 2).unwrap_or(i16::MAX);
    let mut insns = vec![
        insn(0x61, 2, 1, 0, 0),    // r2 = ctx->data
        insn(0x61, 3, 1, 4, 0),    // r3 = ctx->data_end
        insn(0xbf, 4, 2, 0, 0),    // r4 = r2
        insn(0x07, 4, 0, 0, len),  // r4 += len
        insn(0x2d, 4, 3, skip, 0), // if r4 > r3 goto abort
    ];
    insns.extend(stores);
    insns.extend([
        insn(0xb7, 0, 0, 0, XDP_TX), // r0 = XDP_TX
        insn(0x95, 0, 0, 0, 0),      // exit
        insn(0xb7, 0, 0, 0, XDP_ABORTED),
        insn(0x95, 0, 0, 0, 0),
    ]);
    insns
}

/// The `bpf()` system call with one of the `union bpf_attr` heads of this module or
/// [`super::reflector`]; its return value (a descriptor, or 0), or the errno.
pub(super) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a `union bpf_attr` head whose pointers (if any) the caller keeps alive
    // for the call; the kernel reads and writes at most `size_of::<T>()` bytes of it.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// Loads `insns` as an XDP program named `name`; if the kernel refuses it, loads it again with
/// the verifier's log and returns the log's end in the error.
pub(super) fn load_xdp(insns: &[Insn], name: [u8; 16]) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 1 << 16];
    let mut load = |log_level: u32| {
        let mut attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level,
            log_size: if log_level > 0 { u32::try_from(log.len()).unwrap_or(0) } else { 0 },
            log_buf: if log_level > 0 { log.as_mut_ptr() as u64 } else { 0 },
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            rest: [0; 64],
        };
        // The attr's pointers (instructions, license, log) outlive the call; the kernel
        // writes at most `log_size` bytes of log.
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    let fd = match load(0) {
        Ok(fd) => fd,
        Err(error) => {
            let _ = load(1);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0');
            let tail: String = text.lines().rev().take(8).collect::<Vec<_>>().join(" | ");
            return Err(io::Error::new(error.kind(), format!("{error}; verifier: {tail}")));
        }
    };
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf returned a bad descriptor"))?;
    // SAFETY: a fresh descriptor from the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A loaded generator program for one frame.
#[derive(Debug)]
pub struct Generator {
    prog: OwnedFd,
    frame: Vec<u8>,
}

impl Generator {
    /// Loads the program that sends `frame`.
    pub fn load(frame: &[u8]) -> io::Result<Self> {
        let mut name = [0u8; 16];
        name[..8].copy_from_slice(b"sy_trgen");
        let prog = load_xdp(&program(frame), name)?;
        Ok(Self { prog, frame: frame.to_vec() })
    }

    /// The frame the program sends.
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// Transmits the frame `repeat` times out of `ifindex`, a device in the calling thread's
    /// network namespace. Frames the device could not take (the peer's ring full) are dropped
    /// by the kernel and still count as offered.
    pub fn send(&self, ifindex: u32, repeat: u32) -> io::Result<()> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress.
        let mut ctx = [0u32; 6];
        ctx[1] = u32::try_from(self.frame.len()).unwrap_or(u32::MAX);
        ctx[3] = ifindex;
        let mut attr = TestRun {
            prog_fd: u32::try_from(self.prog.as_raw_fd()).unwrap_or(u32::MAX),
            data_size_in: ctx[1],
            data_in: self.frame.as_ptr() as u64,
            repeat,
            ctx_size_in: u32::try_from(size_of_val(&ctx)).unwrap_or(0),
            ctx_in: ctx.as_ptr() as u64,
            flags: LIVE_FRAMES,
            batch_size: BATCH,
            ..TestRun::default()
        };
        // The attr's pointers (frame, context) outlive the call; no output buffers.
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        if attr.retval != 0 {
            return Err(io::Error::other(format!("test run returned {}", attr.retval)));
        }
        Ok(())
    }
}

/// How a sample's frames were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `BPF_PROG_TEST_RUN` with live frames.
    LiveFrames,
    /// A packet socket (`AF_PACKET`, qdisc bypassed), where live frames are refused.
    PacketSocket,
    /// Where live frames are refused: a packet socket seeds a loop in which an XDP reflector
    /// sends every forwarded frame back into the forwarder [`super::reflector::REFLECTION`]
    /// times ([`super::reflector`]).
    Reflector,
}

impl Method {
    pub fn label(self) -> &'static str {
        match self {
            Method::LiveFrames => "live frames",
            Method::PacketSocket => "packet socket",
            Method::Reflector => "XDP reflector seeded by a packet socket",
        }
    }

    /// Whether what it offers follows what the forwarder forwards (a loop), rather than being
    /// the sender's own rate.
    pub fn closed_loop(self) -> bool {
        self == Method::Reflector
    }
}

/// Sends the generator's frame out of one device, by the fastest method the kernel allows.
#[derive(Debug)]
pub enum Sender<'a> {
    Live { generator: &'a Generator, ifindex: u32 },
    Packet { socket: OwnedFd, frame: &'a [u8] },
}

/// `PACKET_QDISC_BYPASS` (linux/if_packet.h): the socket hands frames to the driver directly.
const PACKET_QDISC_BYPASS: libc::c_int = 20;

impl Generator {
    /// Whether the kernel runs live frames out of `ifindex`, a device in the calling thread's
    /// network namespace (one frame is sent to find out): `Ok(false)` when it refuses them
    /// with `EPERM`.
    pub fn live(&self, ifindex: u32) -> io::Result<bool> {
        match self.send(ifindex, 1) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A sender out of `ifindex`, a device in the calling thread's network namespace: live frames
    /// when the kernel runs them, else a packet socket.
    pub fn sender(&self, ifindex: u32) -> io::Result<Sender<'_>> {
        if self.live(ifindex)? {
            Ok(Sender::Live { generator: self, ifindex })
        } else {
            self.packet_sender(ifindex)
        }
    }

    /// A packet socket sender out of `ifindex` (the seeder of a reflector).
    pub fn packet_sender(&self, ifindex: u32) -> io::Result<Sender<'_>> {
        Ok(Sender::Packet { socket: packet_socket(ifindex)?, frame: &self.frame })
    }
}

impl Sender<'_> {
    pub fn method(&self) -> Method {
        match self {
            Sender::Live { .. } => Method::LiveFrames,
            Sender::Packet { .. } => Method::PacketSocket,
        }
    }

    /// Sends up to `count` frames; returns how many the kernel took (a packet socket whose
    /// buffer is full takes fewer: those were not offered).
    pub fn send(&self, count: u32) -> io::Result<u32> {
        match self {
            Sender::Live { generator, ifindex } => generator.send(*ifindex, count).map(|()| count),
            Sender::Packet { socket, frame } => send_packets(socket, frame, count),
        }
    }
}

/// Send buffer of the packet socket: a frame's buffer is charged to the socket until the sink
/// frees it, so the default (about 200 KiB, a few hundred frames) would stall the sender behind
/// every frame in flight.
const SEND_BUFFER: libc::c_int = 64 << 20;

/// A raw packet socket bound to `ifindex`, bypassing the qdisc, blocking (a full buffer waits
/// for frames in flight to be freed).
fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from the kernel, owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `one` (an int) only.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setsockopt reads `SEND_BUFFER` (an int) only. FORCE: above wmem_max (root).
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (&SEND_BUFFER as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain data; bind reads it.
    let rc = unsafe {
        let mut address: libc::sockaddr_ll = std::mem::zeroed();
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// `count` copies of `frame` through `socket`, [`BATCH`] per `sendmmsg`.
fn send_packets(socket: &OwnedFd, frame: &[u8], count: u32) -> io::Result<u32> {
    let mut iov =
        libc::iovec { iov_base: frame.as_ptr() as *mut libc::c_void, iov_len: frame.len() };
    // SAFETY: msghdr is plain data; every message points at the one iovec, which points at
    // `frame`; the kernel only reads them.
    let mut messages: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| unsafe {
            let mut message: libc::mmsghdr = std::mem::zeroed();
            message.msg_hdr.msg_iov = &mut iov;
            message.msg_hdr.msg_iovlen = 1;
            message
        })
        .collect();
    let mut sent = 0;
    while sent < count {
        let batch = (count - sent).min(BATCH);
        // SAFETY: `messages` holds at least `batch` initialised headers that outlive the call.
        let rc = unsafe { libc::sendmmsg(socket.as_raw_fd(), messages.as_mut_ptr(), batch, 0) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                // The veth dropped the frame at the forwarder's full ring: offered, as a live
                // frame the ring cannot take is.
                Some(libc::ENOBUFS) => {
                    sent += 1;
                    continue;
                }
                _ => return Err(error),
            }
        }
        sent += rc.unsigned_abs();
        if rc.unsigned_abs() < batch {
            break;
        }
    }
    Ok(sent)
}

/// The internet checksum of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 60-byte Ethernet frame (64 on the wire with the FCS) of one UDP/IPv4 packet with an
/// 18-byte payload, IP checksum set, UDP checksum 0 (none, allowed for IPv4).
pub fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
) -> Vec<u8> {
    const PAYLOAD: usize = 18;
    let mut frame = Vec::with_capacity(60);
    frame.extend(dst_mac);
    frame.extend(src_mac);
    frame.extend(0x0800u16.to_be_bytes());
    let total = u16::try_from(20 + 8 + PAYLOAD).unwrap_or(u16::MAX);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    frame.extend(ip);
    frame.extend(src.port().to_be_bytes());
    frame.extend(dst.port().to_be_bytes());
    frame.extend(u16::try_from(8 + PAYLOAD).unwrap_or(0).to_be_bytes());
    frame.extend([0, 0]);
    frame.extend([0x5a; PAYLOAD]);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn the_frame_is_60_bytes_with_a_valid_ip_checksum() {
        let frame = udp_frame(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            SocketAddrV4::new(Ipv4Addr::new(10, 250, 0, 2), 40000),
            SocketAddrV4::new(Ipv4Addr::new(10, 250, 0, 1), 32000),
        );
        assert_eq!(frame.len(), 60);
        assert_eq!(checksum(&frame[14..34]), 0, "a header with its checksum sums to 0xffff");
        assert_eq!(&frame[36..38], &32000u16.to_be_bytes());
    }

    #[test]
    fn the_program_stores_every_byte_of_the_frame_and_skips_them_when_too_short() {
        let frame: Vec<u8> = (0u8..61).collect();
        let insns = program(&frame);
        // 15 word stores, 1 byte store.
        let stores: Vec<&Insn> = insns.iter().filter(|i| matches!(i.code, 0x62 | 0x72)).collect();
        assert_eq!(stores.len(), 16);
        let mut written = vec![None; frame.len()];
        for store in &stores {
            let at = usize::try_from(store.offset).expect("offset");
            let bytes = store.imm.to_ne_bytes();
            let width = if store.code == 0x62 { 4 } else { 1 };
            for (i, slot) in written[at..at + width].iter_mut().enumerate() {
                *slot = Some(bytes[i]);
            }
        }
        let written: Vec<u8> = written.into_iter().map(|b| b.expect("every byte")).collect();
        assert_eq!(written, frame);
        // The bounds check jumps over the stores and the XDP_TX return to the abort.
        let check = &insns[4];
        let target = 5 + usize::try_from(check.offset).expect("offset");
        assert_eq!(insns[target].imm, XDP_ABORTED);
        assert_eq!(insns[target - 2].imm, XDP_TX);
    }
}
