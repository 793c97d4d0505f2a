//! A two-instruction XDP program (`return XDP_PASS`) for the router's side of every director
//! link: a veth hands XDP_TX'd frames of its peer to the stack only when it runs an XDP program
//! itself (it schedules its NAPI for them only then), as real NICs always do. The same loader
//! makes the benchmarks' peer (`return XDP_TX`: the least any XDP load balancer does).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `BPF_PROG_LOAD`.
const BPF_PROG_LOAD: libc::c_long = 5;
/// `BPF_PROG_TYPE_XDP`.
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `XDP_PASS`.
const XDP_PASS: i32 = 2;
/// `XDP_TX`.
pub const XDP_TX: i32 = 3;

/// One eBPF instruction.
#[repr(C)]
struct Insn {
    code: u8,
    registers: u8,
    offset: i16,
    imm: i32,
}

/// The head of `union bpf_attr` for BPF_PROG_LOAD (the rest stays zero).
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

/// Loads `r0 = XDP_PASS; exit` and returns its descriptor.
pub(crate) fn load() -> io::Result<OwnedFd> {
    load_returning(XDP_PASS)
}

/// Loads `r0 = action; exit` (an XDP program that does nothing but return `action`).
pub fn load_returning(action: i32) -> io::Result<OwnedFd> {
    let insns = [
        // BPF_ALU64 | BPF_MOV | BPF_K, dst r0.
        Insn { code: 0xb7, registers: 0, offset: 0, imm: action },
        // BPF_JMP | BPF_EXIT.
        Insn { code: 0x95, registers: 0, offset: 0, imm: 0 },
    ];
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..8].copy_from_slice(b"sy_const");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        rest: [0; 64],
    };
    // SAFETY: BPF_PROG_LOAD with an attr whose pointers (instructions, license) outlive the
    // call; the kernel reads at most `size_of::<ProgLoad>()` bytes.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoad, size_of::<ProgLoad>())
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf returned a bad descriptor"))?;
    // SAFETY: a fresh descriptor from the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
