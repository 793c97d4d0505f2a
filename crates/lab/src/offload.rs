//! Link offload settings through the ethtool ioctl (no `ethtool` binary needed).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `ETHTOOL_SGRO`: set generic receive offload.
const ETHTOOL_SGRO: u32 = 0x0000_002c;
/// `ETHTOOL_STXCSUM`: set transmit checksum offload.
const ETHTOOL_STXCSUM: u32 = 0x0000_0017;
/// `ETHTOOL_STSO`: set TCP segmentation offload (all TSO features).
const ETHTOOL_STSO: u32 = 0x0000_001f;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Turns GRO on or off on `link` in the calling thread's network namespace.
pub fn set_gro(link: &str, on: bool) -> io::Result<()> {
    set(link, ETHTOOL_SGRO, on)
}

/// Turns transmit checksum offload on or off on `link` in the calling thread's namespace.
pub fn set_tx_checksum(link: &str, on: bool) -> io::Result<()> {
    set(link, ETHTOOL_STXCSUM, on)
}

/// Turns TSO on or off on `link` in the calling thread's namespace. A veth hands a packet to
/// its peer's NAPI (GRO, XDP, threaded NAPI) only when the sending side has TSO off or the packet
/// comes from a local socket; forwarded packets otherwise go through the backlog of the CPU
/// that sends them.
pub fn set_tso(link: &str, on: bool) -> io::Result<()> {
    set(link, ETHTOOL_STSO, on)
}

/// One `ETHTOOL_S*` boolean setting.
fn set(link: &str, command: u32, on: bool) -> io::Result<()> {
    let name = link.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad link name {link:?}")));
    }
    // SAFETY: a plain datagram socket, owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut value = EthtoolValue { cmd: command, data: u32::from(on) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name) {
        *slot = *byte as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at an ethtool_value that outlives
    // the call.
    let ret = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &mut request) };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
