//! Tearing down sockets to removed backends (`SOCK_DESTROY` over `NETLINK_SOCK_DIAG`).
//!
//! Socket-level load balancing rewrites the destination once, at connect()/sendmsg() time: a
//! connected socket then talks to the backend directly, and keeps doing so after the backend is
//! gone — TCP until a timeout, connected UDP forever (Cilium #12859). So when a backend is
//! removed (not merely terminating), the agent dumps TCP and UDP sockets in every network
//! namespace its cgroup's processes live in and destroys those connected to that backend.
//!
//! Only sockets the programs translated are touched: a socket qualifies when `sy_sock_revnat`
//! holds its cookie with that backend, so a client that dialled the pod IP directly keeps its
//! connection. `SOCK_DESTROY` needs `CONFIG_INET_DIAG_DESTROY` (set on this kernel); without it
//! the kernel answers EOPNOTSUPP and we log once and carry on — the documented fallback is that
//! TCP connections then end by the peer's reset or keepalive, and connected UDP clients must
//! reconnect (most resolvers open a new socket per query).

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `linux/sock_diag.h`, `linux/inet_diag.h`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// TCP states worth destroying: everything but LISTEN (10) and CLOSE (7).
const TCP_STATES: u32 = !((1 << 10) | (1 << 7)) & 0xfff;
/// UDP sockets show as ESTABLISHED (1) once connected.
const UDP_CONNECTED: u32 = 1 << 1;

/// One socket found connected to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundSocket {
    pub protocol: u8,
    pub cookie: u64,
    pub destination: (IpAddr, u16),
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub namespaces: usize,
    pub destroyed: usize,
    /// Sockets connected to a target that the filter kept (not translated by us).
    pub kept: usize,
    pub errors: Vec<String>,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct InetDiagSockId {
    sport: u16,
    dport: u16,
    src: [u8; 16],
    dst: [u8; 16],
    interface: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: InetDiagSockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

#[repr(C)]
struct Request {
    header: NlMsgHdr,
    body: InetDiagReqV2,
}

fn netlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send(fd: &OwnedFd, request: &Request) -> io::Result<()> {
    let len = size_of::<Request>();
    // SAFETY: request is a repr(C) struct of `len` bytes that outlives the call.
    let sent = unsafe { libc::send(fd.as_raw_fd(), (request as *const Request).cast(), len, 0) };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn recv(fd: &OwnedFd, buffer: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buffer is writable for its whole length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

fn read_struct<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: bytes holds at least size_of::<T>() bytes; read_unaligned copes with alignment and
    // T is a plain-old-data repr(C) struct for which every bit pattern is valid.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn address(family: u8, bytes: [u8; 16]) -> IpAddr {
    if i32::from(family) == libc::AF_INET {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        let v6 = Ipv6Addr::from(bytes);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

/// Dumps the sockets of one family and protocol in the states `states` (bit per state) in the
/// calling thread's network namespace, handing each to `each`.
fn dump(
    family: u8,
    protocol: u8,
    states: u32,
    each: &mut dyn FnMut(&InetDiagMsg),
) -> io::Result<()> {
    let dump = netlink_socket()?;
    let request = Request {
        header: NlMsgHdr {
            len: size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
            seq: 1,
            pid: 0,
        },
        body: InetDiagReqV2 { family, protocol, states, ..InetDiagReqV2::default() },
    };
    send(&dump, &request)?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = recv(&dump, &mut buffer)?;
        let mut rest = &buffer[..n];
        while let Some(header) = read_struct::<NlMsgHdr>(rest) {
            let len = (header.len as usize).min(rest.len());
            if len < size_of::<NlMsgHdr>() {
                return Ok(());
            }
            match header.kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = read_struct::<i32>(&rest[size_of::<NlMsgHdr>()..]).unwrap_or(0);
                    return Err(io::Error::from_raw_os_error(-code));
                }
                _ => {
                    if let Some(msg) = read_struct::<InetDiagMsg>(&rest[size_of::<NlMsgHdr>()..len])
                    {
                        each(&msg);
                    }
                }
            }
            rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        }
    }
}

fn cookie_of(msg: &InetDiagMsg) -> u64 {
    u64::from(msg.id.cookie[0]) | (u64::from(msg.id.cookie[1]) << 32)
}

/// A connected socket of the calling thread's network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSocket {
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u8,
    /// Socket cookie (the key of `sy_sock_revnat`, what the socket path's Maglev hashes).
    pub cookie: u64,
    /// Local address and port.
    pub source: (IpAddr, u16),
    /// Peer: for a translated socket, the backend.
    pub destination: (IpAddr, u16),
}

/// TCP (not listening) or connected UDP sockets of `protocol` in the calling thread's network
/// namespace whose local address is `source` (and port, when given): for `switchyard explain`,
/// which looks up their cookies in `sy_sock_revnat`.
pub fn sockets_from(
    source: IpAddr,
    source_port: Option<u16>,
    protocol: u8,
) -> io::Result<Vec<LocalSocket>> {
    let states = if i32::from(protocol) == libc::IPPROTO_TCP { TCP_STATES } else { UDP_CONNECTED };
    let mut found = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        dump(family, protocol, states, &mut |msg| {
            let local = (address(msg.family, msg.id.src), u16::from_be(msg.id.sport));
            if local.0 == source && source_port.is_none_or(|p| p == local.1) {
                found.push(LocalSocket {
                    protocol,
                    cookie: cookie_of(msg),
                    source: local,
                    destination: (address(msg.family, msg.id.dst), u16::from_be(msg.id.dport)),
                });
            }
        })?;
    }
    Ok(found)
}

/// Dumps the sockets of one family and protocol in the calling thread's network namespace and
/// destroys those whose destination is in `targets` and that `keep` does not claim.
fn sweep_one(
    family: u8,
    protocol: u8,
    targets: &HashSet<(IpAddr, u16)>,
    keep: &dyn Fn(&FoundSocket) -> bool,
    report: &mut SweepReport,
) -> io::Result<()> {
    let states = if i32::from(protocol) == libc::IPPROTO_TCP { TCP_STATES } else { UDP_CONNECTED };
    let mut victims = Vec::new();
    dump(family, protocol, states, &mut |msg| {
        let destination = (address(msg.family, msg.id.dst), u16::from_be(msg.id.dport));
        if targets.contains(&destination) {
            let found = FoundSocket { protocol, cookie: cookie_of(msg), destination };
            if keep(&found) {
                report.kept += 1;
            } else {
                victims.push(*msg);
            }
        }
    })?;
    let mut buffer = vec![0u8; 64 * 1024];
    let destroy = netlink_socket()?;
    for msg in victims {
        let request = Request {
            header: NlMsgHdr {
                len: size_of::<Request>() as u32,
                kind: SOCK_DESTROY,
                flags: (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
                seq: 2,
                pid: 0,
            },
            body: InetDiagReqV2 {
                family: msg.family,
                protocol,
                ext: 0,
                pad: 0,
                states: u32::MAX,
                id: msg.id,
            },
        };
        send(&destroy, &request)?;
        let n = recv(&destroy, &mut buffer)?;
        let code = if n >= size_of::<NlMsgHdr>() + 4 {
            read_struct::<i32>(&buffer[size_of::<NlMsgHdr>()..n]).unwrap_or(0)
        } else {
            0
        };
        match code {
            0 => report.destroyed += 1,
            // Closed in the meantime.
            c if -c == libc::ENOENT => {}
            c => return Err(io::Error::from_raw_os_error(-c)),
        }
    }
    Ok(())
}

/// Destroys, in the calling thread's network namespace, TCP and connected UDP sockets (IPv4
/// and IPv6) whose destination is in `targets`, except those `keep` claims.
pub fn sweep_current_namespace(
    targets: &HashSet<(IpAddr, u16)>,
    keep: &dyn Fn(&FoundSocket) -> bool,
) -> SweepReport {
    let mut report = SweepReport { namespaces: 1, ..SweepReport::default() };
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        for protocol in [libc::IPPROTO_TCP as u8, libc::IPPROTO_UDP as u8] {
            if let Err(err) = sweep_one(family, protocol, targets, keep, &mut report) {
                report.errors.push(format!("family {family} protocol {protocol}: {err}"));
            }
        }
    }
    report
}

/// Process ids in `cgroup` and every cgroup below it.
fn cgroup_pids(cgroup: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut stack = vec![cgroup.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = fs::read_dir(&dir) {
            stack.extend(entries.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
        }
    }
    pids
}

/// One `/proc/PID/ns/net` path per distinct network namespace of the cgroup's processes.
pub fn cgroup_namespaces(cgroup: &Path) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut paths = Vec::new();
    for pid in cgroup_pids(cgroup) {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        if let Ok(meta) = fs::metadata(&path)
            && seen.insert((meta.dev(), meta.ino()))
        {
            paths.push(path);
        }
    }
    paths
}

/// Sweeps every network namespace the processes of `cgroup` live in, each from a short-lived
/// thread that enters the namespace (setns affects only the calling thread).
pub fn sweep_cgroup(
    cgroup: &Path,
    targets: &HashSet<(IpAddr, u16)>,
    keep: &(dyn Fn(&FoundSocket) -> bool + Sync),
) -> SweepReport {
    let mut total = SweepReport::default();
    if targets.is_empty() {
        return total;
    }
    for namespace in cgroup_namespaces(cgroup) {
        let result = std::thread::scope(|scope| {
            scope
                .spawn(|| -> io::Result<SweepReport> {
                    let file = fs::File::open(&namespace)?;
                    // SAFETY: setns on a namespace file descriptor we hold; only this thread
                    // changes namespace, and it ends right after the sweep.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(sweep_current_namespace(targets, keep))
                })
                .join()
        });
        match result {
            Ok(Ok(report)) => {
                total.namespaces += 1;
                total.destroyed += report.destroyed;
                total.kept += report.kept;
                total.errors.extend(
                    report.errors.into_iter().map(|e| format!("{}: {e}", namespace.display())),
                );
            }
            Ok(Err(err)) => total.errors.push(format!("{}: {err}", namespace.display())),
            Err(_) => total.errors.push(format!("{}: sweep thread panicked", namespace.display())),
        }
    }
    total
}
