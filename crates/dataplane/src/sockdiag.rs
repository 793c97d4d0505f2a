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
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::{SockDiagDestroy, SockDiagMessage};
use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};

/// TCP states worth destroying: everything but LISTEN and CLOSE.
fn tcp_states() -> StateFlags {
    StateFlags::all().difference(StateFlags::LISTEN | StateFlags::CLOSE)
}

/// The states dumped for `protocol`: UDP sockets show as ESTABLISHED once connected.
fn states_for(protocol: u8) -> StateFlags {
    if protocol == IPPROTO_TCP { tcp_states() } else { StateFlags::ESTABLISHED }
}

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

/// Serializes `message` with `flags` and sends it to the kernel.
fn send<T: NetlinkSerializable>(socket: &Socket, flags: u16, message: T) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    packet.finalize();
    let mut buffer = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buffer);
    socket.send(&buffer, 0)?;
    Ok(())
}

/// What one received netlink message means to a dump or a destroy.
enum Received<T> {
    Message(T),
    Done,
    Error(i32),
    /// Noop, overrun or a message we cannot parse: skipped.
    Other,
}

/// Walks the netlink messages in `bytes`, handing each to `each` until it returns `false`.
fn for_each_message<T: NetlinkDeserializable>(
    bytes: &[u8],
    each: &mut dyn FnMut(Received<T>) -> bool,
) {
    let mut rest = bytes;
    while let Ok(buffer) = NetlinkBuffer::new_checked(rest) {
        // Checked: at least a header long, and no longer than what is left.
        let len = buffer.length() as usize;
        let received = match NetlinkMessage::<T>::deserialize(&rest[..len]) {
            Ok(message) => match message.payload {
                NetlinkPayload::InnerMessage(inner) => Received::Message(inner),
                NetlinkPayload::Done(_) => Received::Done,
                NetlinkPayload::Error(error) => Received::Error(error.raw_code()),
                _ => Received::Other,
            },
            Err(_) => Received::Other,
        };
        if !each(received) {
            return;
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
}

/// The address as the socket sees it: an IPv4-mapped IPv6 address is its IPv4 address.
fn address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Dumps the sockets of one family and protocol in the states `states` in the calling thread's
/// network namespace, handing each socket's id to `each`.
fn dump(
    family: u8,
    protocol: u8,
    states: StateFlags,
    each: &mut dyn FnMut(&SocketId),
) -> io::Result<()> {
    let socket = Socket::new(NETLINK_SOCK_DIAG)?;
    let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    let request =
        InetRequest { family, protocol, extensions: ExtensionFlags::empty(), states, socket_id };
    send(&socket, NLM_F_REQUEST | NLM_F_DUMP, SockDiagMessage::InetRequest(request))?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut &mut buffer[..], 0)?;
        let mut outcome = None;
        for_each_message::<SockDiagMessage>(&buffer[..n.min(buffer.len())], &mut |received| {
            match received {
                Received::Message(SockDiagMessage::InetResponse(response)) => {
                    each(&response.header.socket_id);
                }
                Received::Message(_) | Received::Other => {}
                Received::Done => outcome = Some(Ok(())),
                Received::Error(code) => {
                    outcome = Some(Err(io::Error::from_raw_os_error(-code)));
                }
            }
            outcome.is_none()
        });
        if let Some(outcome) = outcome {
            return outcome;
        }
    }
}

/// The socket cookie, as the kernel splits it into two native-endian 32-bit words.
fn cookie_of(id: &SocketId) -> u64 {
    let [a, b, c, d, e, f, g, h] = id.cookie;
    u64::from(u32::from_ne_bytes([a, b, c, d]))
        | (u64::from(u32::from_ne_bytes([e, f, g, h])) << 32)
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
    let mut found = Vec::new();
    for family in [AF_INET, AF_INET6] {
        dump(family, protocol, states_for(protocol), &mut |id| {
            let local = (address(id.source_address), id.source_port);
            if local.0 == source && source_port.is_none_or(|p| p == local.1) {
                found.push(LocalSocket {
                    protocol,
                    cookie: cookie_of(id),
                    source: local,
                    destination: (address(id.destination_address), id.destination_port),
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
    let mut victims = Vec::new();
    dump(family, protocol, states_for(protocol), &mut |id| {
        let destination = (address(id.destination_address), id.destination_port);
        if targets.contains(&destination) {
            let found = FoundSocket { protocol, cookie: cookie_of(id), destination };
            if keep(&found) {
                report.kept += 1;
            } else {
                victims.push(id.clone());
            }
        }
    })?;
    let mut buffer = vec![0u8; 64 * 1024];
    let destroy = Socket::new(NETLINK_SOCK_DIAG)?;
    for socket_id in victims {
        // The id as dumped (addresses, ports, interface, cookie) names exactly that socket.
        let request = InetRequest {
            family,
            protocol,
            extensions: ExtensionFlags::empty(),
            // Every state: the id alone picks the socket.
            states: StateFlags::from_bits_retain(u32::MAX),
            socket_id,
        };
        let message = SockDiagDestroy::new(SockDiagMessage::InetRequest(request));
        send(&destroy, NLM_F_REQUEST | NLM_F_ACK, message)?;
        let n = destroy.recv(&mut &mut buffer[..], 0)?;
        let mut code = 0;
        for_each_message::<SockDiagMessage>(&buffer[..n.min(buffer.len())], &mut |received| {
            if let Received::Error(c) = received {
                code = c;
            }
            false
        });
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
    for family in [AF_INET, AF_INET6] {
        for protocol in [IPPROTO_TCP, IPPROTO_UDP] {
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

/// The namespaces of `cgroup`'s processes, and one line per namespace link that exists but
/// cannot be read (without `CAP_SYS_PTRACE`, or without the host's PID namespace, a pod's
/// `/proc/PID/ns/net` is not readable: the sweep would see nothing and say nothing). A process
/// that exited meanwhile is no error.
fn namespaces_of(cgroup: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let mut seen = BTreeSet::new();
    let (mut paths, mut unreadable) = (Vec::new(), Vec::new());
    for pid in cgroup_pids(cgroup) {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        match fs::metadata(&path) {
            Ok(meta) => {
                if seen.insert((meta.dev(), meta.ino())) {
                    paths.push(path);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => unreadable.push(format!(
                "{}: {err} (the sweep needs CAP_SYS_PTRACE and the host's PID namespace)",
                path.display()
            )),
        }
    }
    (paths, unreadable)
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
    let (namespaces, unreadable) = namespaces_of(cgroup);
    total.errors.extend(unreadable);
    for namespace in namespaces {
        let result = std::thread::scope(|scope| {
            scope
                .spawn(|| -> io::Result<SweepReport> {
                    let file = fs::File::open(&namespace)?;
                    // Only this thread changes namespace, and it ends right after the sweep.
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
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
