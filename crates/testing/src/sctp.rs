//! SCTP without SCTP sockets (this machine's kernel has none: EPROTONOSUPPORT): an INIT built
//! by hand, a raw-socket responder that answers each INIT with an INIT ACK as a server's stack
//! would (RFC 9260 §5.1: verification tag = the INIT's initiate tag, a state cookie), and a
//! reader that checks what came back. No association is made; what these show is the path and
//! the translation (addresses, ports, CRC32c) of the first two packets of one.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use switchyard_lab::tools::raw::{self, Capture, IPPROTO_SCTP};

use crate::frames::sctp_crc32c;

pub const CHUNK_INIT: u8 = 1;
pub const CHUNK_INIT_ACK: u8 = 2;

/// One SCTP packet as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub sport: u16,
    pub dport: u16,
    pub vtag: u32,
    /// Type of the first chunk.
    pub chunk: u8,
    /// The first chunk's initiate tag (INIT and INIT ACK).
    pub initiate_tag: u32,
    /// The stored CRC32c matches the packet.
    pub crc_ok: bool,
}

impl Packet {
    pub fn parse(l4: &[u8]) -> Option<Packet> {
        let u16_at = |at: usize| Some(u16::from_be_bytes(l4.get(at..at + 2)?.try_into().ok()?));
        let u32_at = |at: usize| Some(u32::from_be_bytes(l4.get(at..at + 4)?.try_into().ok()?));
        let stored = u32::from_le_bytes(l4.get(8..12)?.try_into().ok()?);
        Some(Packet {
            sport: u16_at(0)?,
            dport: u16_at(2)?,
            vtag: u32_at(4)?,
            chunk: *l4.get(12)?,
            initiate_tag: u32_at(16).unwrap_or(0),
            crc_ok: sctp_crc32c(l4) == stored,
        })
    }
}

/// Common header, then `chunk` (type, flags 0, length) with `value`, padded, CRC32c filled in.
/// The CRC does not cover IP addresses, so the packet is the same whatever they are.
fn packet(sport: u16, dport: u16, vtag: u32, chunk: u8, value: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(16 + value.len());
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&vtag.to_be_bytes());
    l4.extend_from_slice(&[0; 4]);
    l4.push(chunk);
    l4.push(0);
    l4.extend_from_slice(&u16::try_from(4 + value.len()).unwrap().to_be_bytes());
    l4.extend_from_slice(value);
    l4.resize(l4.len().next_multiple_of(4), 0);
    let crc = sctp_crc32c(&l4);
    l4[8..12].copy_from_slice(&crc.to_le_bytes());
    l4
}

/// INIT / INIT ACK parameters: initiate tag, a_rwnd, outbound and inbound streams, initial TSN.
fn init_fields(tag: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&tag.to_be_bytes());
    v.extend_from_slice(&65_535u32.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&tag.wrapping_add(1).to_be_bytes());
    v
}

/// An INIT from `sport` to `dport` (verification tag 0, as RFC 9260 requires).
pub fn init(sport: u16, dport: u16, tag: u32) -> Vec<u8> {
    packet(sport, dport, 0, CHUNK_INIT, &init_fields(tag))
}

/// The INIT ACK a server answers `init` with: ports swapped, the INIT's initiate tag as
/// verification tag, a tag of its own and a State Cookie parameter (type 7).
pub fn init_ack(init: &Packet, tag: u32) -> Vec<u8> {
    let mut value = init_fields(tag);
    let cookie = b"switchyard-cookie";
    value.extend_from_slice(&7u16.to_be_bytes());
    value.extend_from_slice(&u16::try_from(4 + cookie.len()).unwrap().to_be_bytes());
    value.extend_from_slice(cookie);
    value.resize(value.len().next_multiple_of(4), 0);
    packet(init.dport, init.sport, init.initiate_tag, CHUNK_INIT_ACK, &value)
}

/// A raw-socket SCTP responder in one namespace: every valid INIT is answered with an INIT ACK
/// to whoever sent it. Stops (and reports what it answered) on [`Responder::stop`].
#[derive(Debug)]
pub struct Responder {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(IpAddr, Packet)>>,
}

impl Responder {
    /// Starts in the calling thread's network namespace (call it inside `Lab::run_in`): the
    /// thread it spawns stays there.
    pub fn start(v4: bool, tag: u32) -> Responder {
        let capture = Capture::open(v4, IPPROTO_SCTP).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut answered = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let Ok((from, l4)) = capture.next(Duration::from_millis(100)) else { continue };
                let Some(packet) = Packet::parse(&l4) else { continue };
                if packet.chunk != CHUNK_INIT || !packet.crc_ok || packet.vtag != 0 {
                    continue;
                }
                raw::send(from, IPPROTO_SCTP, &init_ack(&packet, tag)).unwrap();
                answered.push((from, packet));
            }
            answered
        });
        Responder { stop, thread }
    }

    /// Stops the responder: every INIT it answered, with its sender.
    pub fn stop(self) -> Vec<(IpAddr, Packet)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_ack_answers_the_init_with_its_tag_and_valid_crcs() {
        let init = Packet::parse(&init(40_001, 30_090, 0x1234_5678)).unwrap();
        assert_eq!((init.sport, init.dport, init.vtag, init.chunk), (40_001, 30_090, 0, 1));
        assert_eq!(init.initiate_tag, 0x1234_5678);
        assert!(init.crc_ok);
        let ack = Packet::parse(&init_ack(&init, 0x9abc_def0)).unwrap();
        assert_eq!((ack.sport, ack.dport, ack.vtag), (30_090, 40_001, 0x1234_5678));
        assert_eq!((ack.chunk, ack.initiate_tag, ack.crc_ok), (CHUNK_INIT_ACK, 0x9abc_def0, true));
        let mut broken = super::init(1, 2, 3);
        broken[20] ^= 1;
        assert!(!Packet::parse(&broken).unwrap().crc_ok);
    }
}
