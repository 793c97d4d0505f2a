//! The reflector: where live frames are refused, the frames the forwarder forwarded come back
//! into the forwarder, multiplied, entirely in XDP on the generator's CPU.
//!
//! A packet socket alone (the seeder) offers 0.55–0.87 million packets/s from one CPU here, less
//! than a forwarder takes, so its figures would measure the sender. The reflector closes the
//! loop instead: an XDP program on the device that receives what the forwarder forwarded (the
//! sink's veth; for the director, which sends back out of its ingress, the generator's veth)
//! writes the generator's frame over the packet (the whole frame, as the live-frames program
//! does; `bpf_xdp_adjust_head` first when the length differs, as for the director's IPIP) and
//! redirects it with `bpf_redirect_map(&devmap, 0, BPF_F_BROADCAST)` over a `DEVMAP` that holds
//! the generator's veth [`REFLECTION`] times: broadcast clones the frame once per entry, so every
//! forwarded frame comes back as [`REFLECTION`] frames, sent with the generator veth's
//! `ndo_xdp_xmit` into the forwarder's receive ring (as live frames were), which overflows. The
//! seeder starts the loop and tops it up; the forwarder's ring then holds frames all the time,
//! and what does not fit is dropped there (the generator veth's `tx_dropped`).
//!
//! A switch in the program's state map starts and stops the loop (when off the program drops
//! everything, so the loop dies out in the drain), and the program counts what it reflected.
//! The program is attached with a BPF link, detached when the [`Reflector`] is dropped.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use super::generator::{Insn, bpf, insn, load_xdp};

/// Copies of each forwarded frame sent back into the forwarder: the offer is this many times
/// what the reflector got back, which overflows the forwarder's ring whenever it forwards.
/// Each copy costs the reflector a page and a copy, freed again when the ring is full:
/// 0.19–0.33 µs of the reflector's CPU per copy at 16 (2026-12-07, a Firecracker guest), against
/// a forwarder's 0.27–0.52 µs (the director) to 2 µs (iptables) a frame; Switchyard XDP was
/// offered 1.9× what it forwarded at 4 copies, 2.4× at 8, 2.6× at 16 (docs/benchmarks.md, 3b).
pub const REFLECTION: u32 = 16;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_DEVMAP: u32 = 14;
/// `BPF_XDP` (enum bpf_attach_type).
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_DRV_MODE`: native XDP (veth has it).
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `BPF_F_BROADCAST`: redirect to every entry of the map, a clone each.
const BPF_F_BROADCAST: i32 = 1 << 3;
/// `BPF_PSEUDO_MAP_FD`: the `ld_imm64`'s immediate is a map descriptor.
const PSEUDO_MAP_FD: u8 = 1;
/// Helpers: `bpf_map_lookup_elem`, `bpf_xdp_adjust_head`, `bpf_redirect_map`.
const MAP_LOOKUP_ELEM: i32 = 1;
const XDP_ADJUST_HEAD: i32 = 44;
const REDIRECT_MAP: i32 = 51;
const XDP_DROP: i32 = 1;

/// The state map's entries (u64 each): the switch, set by user space, and the count of frames
/// reflected, added to by the program alone (apart, so switching never writes over a count).
const SWITCH: u32 = 0;
const COUNT: u32 = 1;

/// The head of `union bpf_attr` for `BPF_MAP_CREATE` (the rest stays zero).
#[repr(C)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    rest: [u8; 64],
}

/// `union bpf_attr` for the element commands.
#[repr(C)]
struct MapElem {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The head of `union bpf_attr` for `BPF_LINK_CREATE`.
#[repr(C)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    rest: [u8; 48],
}

fn fd(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(rc).map_err(|_| io::Error::other("bpf returned a bad descriptor"))?;
    // SAFETY: a fresh descriptor from the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn map_create(map_type: u32, value_size: u32, max_entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreate { map_type, key_size: 4, value_size, max_entries, rest: [0; 64] };
    fd(bpf(BPF_MAP_CREATE, &mut attr)?)
}

fn map_update<V>(map: &OwnedFd, key: u32, value: &V) -> io::Result<()> {
    let mut attr = MapElem {
        map_fd: u32::try_from(map.as_raw_fd()).unwrap_or(u32::MAX),
        pad: 0,
        key: &key as *const u32 as u64,
        value: value as *const V as u64,
        flags: 0,
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

fn map_lookup<V: Default>(map: &OwnedFd, key: u32) -> io::Result<V> {
    let mut value = V::default();
    let mut attr = MapElem {
        map_fd: u32::try_from(map.as_raw_fd()).unwrap_or(u32::MAX),
        pad: 0,
        key: &key as *const u32 as u64,
        value: &mut value as *mut V as u64,
        flags: 0,
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
    Ok(value)
}

/// `ld_imm64 dst, map` (two instructions).
fn load_map(dst: u8, map: i32) -> [Insn; 2] {
    [insn(0x18, dst, PSEUDO_MAP_FD, 0, map), insn(0, 0, 0, 0, 0)]
}

/// `r0 = &state[key]`, or to drop if there is none.
fn lookup(insns: &mut Vec<Insn>, to_drop: &mut Vec<usize>, state: i32, key: u32) {
    let key = i32::try_from(key).unwrap_or(0);
    insns.push(insn(0x62, 10, 0, -4, key)); // *(u32 *)(r10 - 4) = key
    insns.extend(load_map(1, state));
    insns.extend([
        insn(0xbf, 2, 10, 0, 0),              // r2 = r10
        insn(0x07, 2, 0, 0, -4),              // r2 += -4
        insn(0x85, 0, 0, 0, MAP_LOOKUP_ELEM), // r0 = &state[key]
    ]);
    to_drop.push(insns.len());
    insns.push(insn(0x15, 0, 0, 0, 0)); // if r0 == 0 goto drop
}

/// The reflector's instructions: if the switch (`state[SWITCH]`) is on, resize the packet to
/// `frame`'s length, write `frame` over it, count it (`state[COUNT]`) and broadcast it over
/// `devmap`; else drop.
fn program(frame: &[u8], state: i32, devmap: i32) -> Vec<Insn> {
    let len = i32::try_from(frame.len()).unwrap_or(i32::MAX);
    let mut insns = vec![insn(0xbf, 6, 1, 0, 0)]; // r6 = ctx
    // Jumps to the drop at the end, patched below.
    let mut to_drop = Vec::new();
    lookup(&mut insns, &mut to_drop, state, SWITCH);
    insns.push(insn(0x79, 1, 0, 0, 0)); // r1 = *switch
    to_drop.push(insns.len());
    insns.push(insn(0x15, 1, 0, 0, 0)); // if r1 == 0 goto drop
    lookup(&mut insns, &mut to_drop, state, COUNT);
    insns.push(insn(0xbf, 7, 0, 0, 0)); // r7 = &count
    insns.extend([
        insn(0x61, 2, 6, 0, 0),               // r2 = ctx->data
        insn(0x61, 3, 6, 4, 0),               // r3 = ctx->data_end
        insn(0x1f, 3, 2, 0, 0),               // r3 -= r2: the packet's length
        insn(0x07, 3, 0, 0, -len),            // r3 -= len: what to take off the front
        insn(0xbf, 1, 6, 0, 0),               // r1 = ctx
        insn(0xbf, 2, 3, 0, 0),               // r2 = r3
        insn(0x85, 0, 0, 0, XDP_ADJUST_HEAD), // bpf_xdp_adjust_head(ctx, r2)
    ]);
    to_drop.push(insns.len());
    insns.push(insn(0x55, 0, 0, 0, 0)); // if r0 != 0 goto drop
    insns.extend([
        insn(0x61, 2, 6, 0, 0),   // r2 = ctx->data
        insn(0x61, 3, 6, 4, 0),   // r3 = ctx->data_end
        insn(0xbf, 4, 2, 0, 0),   // r4 = r2
        insn(0x07, 4, 0, 0, len), // r4 += len
    ]);
    to_drop.push(insns.len());
    insns.push(insn(0x2d, 4, 3, 0, 0)); // if r4 > r3 goto drop
    insns.extend(super::generator::stores(frame));
    insns.extend([
        insn(0xb7, 1, 0, 0, 1), // r1 = 1
        insn(0xdb, 7, 1, 0, 0), // lock *(u64 *)(r7 + 0) += r1: the count
    ]);
    insns.extend(load_map(1, devmap));
    insns.extend([
        insn(0xb7, 2, 0, 0, 0),               // r2 = 0
        insn(0xb7, 3, 0, 0, BPF_F_BROADCAST), // r3 = BPF_F_BROADCAST
        insn(0x85, 0, 0, 0, REDIRECT_MAP),    // return bpf_redirect_map(devmap, 0, r3)
        insn(0x95, 0, 0, 0, 0),
    ]);
    let drop = insns.len();
    insns.extend([insn(0xb7, 0, 0, 0, XDP_DROP), insn(0x95, 0, 0, 0, 0)]);
    for at in to_drop {
        insns[at].offset = i16::try_from(drop - at - 1).unwrap_or(i16::MAX);
    }
    insns
}

/// A reflector attached to one device; detached (its link closed) on drop.
#[derive(Debug)]
pub struct Reflector {
    state: OwnedFd,
    _devmap: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl Reflector {
    /// Creates the maps and the program that reflects as `frame` into the generator's veth
    /// `gen_ifindex` of namespace `gen_ns` (a devmap resolves its ifindex in the namespace of
    /// the thread that fills it), and attaches it natively to `attach_ifindex` of `attach_ns`,
    /// the device that receives what the forwarder forwarded.
    pub fn attach(
        frame: &[u8],
        gen_ns: &str,
        gen_ifindex: u32,
        attach_ns: &str,
        attach_ifindex: u32,
    ) -> io::Result<Self> {
        let state = map_create(BPF_MAP_TYPE_ARRAY, 8, 2)?;
        let devmap = map_create(BPF_MAP_TYPE_DEVMAP, 4, REFLECTION)?;
        switchyard_lab::netns::run_in(gen_ns, || {
            (0..REFLECTION).try_for_each(|slot| map_update(&devmap, slot, &gen_ifindex))
        })
        .map_err(io::Error::other)??;
        let insns = program(frame, state.as_raw_fd(), devmap.as_raw_fd());
        let prog = load_xdp(&insns, *b"sy_reflect\0\0\0\0\0\0")?;
        let link = switchyard_lab::netns::run_in(attach_ns, || {
            let mut attr = LinkCreate {
                prog_fd: u32::try_from(prog.as_raw_fd()).unwrap_or(u32::MAX),
                target_ifindex: attach_ifindex,
                attach_type: BPF_XDP,
                flags: XDP_FLAGS_DRV_MODE,
                rest: [0; 48],
            };
            fd(bpf(BPF_LINK_CREATE, &mut attr)?)
        })
        .map_err(io::Error::other)??;
        Ok(Self { state, _devmap: devmap, _prog: prog, _link: link })
    }

    /// Starts (`true`) or stops reflecting.
    pub fn switch(&self, on: bool) -> io::Result<()> {
        map_update(&self.state, SWITCH, &u64::from(on))
    }

    /// Frames reflected so far (each sent [`REFLECTION`] times).
    pub fn reflected(&self) -> io::Result<u64> {
        map_lookup::<u64>(&self.state, COUNT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_to_drop_lands_on_the_drop_and_the_frame_is_written_whole() {
        let frame: Vec<u8> = (0u8..60).collect();
        let insns = program(&frame, 7, 8);
        let drop = insns.len() - 2;
        assert_eq!((insns[drop].code, insns[drop].imm), (0xb7, XDP_DROP));
        let jumps: Vec<usize> =
            (0..insns.len()).filter(|&i| matches!(insns[i].code, 0x15 | 0x55 | 0x2d)).collect();
        assert_eq!(jumps.len(), 5);
        for at in jumps {
            let target = at + 1 + usize::try_from(insns[at].offset).expect("forward jump");
            assert_eq!(target, drop, "jump at {at}");
        }
        // The maps: state twice (the switch, the count), the devmap last (redirected to).
        let maps: Vec<i32> = insns.iter().filter(|i| i.code == 0x18).map(|i| i.imm).collect();
        assert_eq!(maps, [7, 7, 8]);
        let keys: Vec<i32> =
            insns.iter().filter(|i| i.code == 0x62 && i.registers == 10).map(|i| i.imm).collect();
        assert_eq!(keys, [SWITCH as i32, COUNT as i32]);
        let stores = insns.iter().filter(|i| i.code == 0x62 && i.registers & 0xf == 2).count();
        assert_eq!(stores, 15);
        // The redirect broadcasts over entry 0.
        let call = insns.iter().position(|i| i.code == 0x85 && i.imm == REDIRECT_MAP);
        let call = call.expect("a redirect");
        assert_eq!(insns[call - 1].imm, BPF_F_BROADCAST);
        assert_eq!(insns[call - 2].imm, 0);
    }

    #[test]
    fn the_head_is_resized_by_the_packets_length_less_the_frames() {
        let insns = program(&[0x5a; 80], 3, 4);
        let sub = insns.iter().position(|i| i.code == 0x1f).expect("length");
        assert_eq!(insns[sub + 1].imm, -80);
        assert_eq!(insns[sub + 4].imm, XDP_ADJUST_HEAD);
    }
}
