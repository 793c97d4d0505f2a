//! BFD on the wire (RFC 5881, single hop): [`BfdListener`] receives the control packets of every
//! session of the process on UDP port 3784 and hands each to the session of its source address;
//! a [`BfdPeer`] task drives one [`BfdSession`] and sends from a socket of its own.
//!
//! RFC 5881 §5 (the generalized TTL security mechanism, RFC 5082): packets are sent with TTL /
//! hop limit 255 and only packets that arrive with 255 are accepted, so nothing a router
//! forwarded can reach a session. The receiving sockets ask for each packet's TTL
//! (`IP_RECVTTL` / `IPV6_RECVHOPLIMIT`; the kernel's `IP_MINTTL` filters TCP only). Source
//! ports are taken from 49152-65535 (§4).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::sleep_until;
use crate::bfd::{
    BfdConfig, BfdConfigError, BfdEvent, BfdSession, BfdState, CONTROL_PORT, Diagnostic, PACKET_LEN,
};

/// The TTL / hop limit single-hop BFD sends and requires.
const SECURITY_TTL: u32 = 255;
/// Source ports of control packets (RFC 5881 §4).
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Errors of the BFD runtime.
#[derive(Debug, thiserror::Error)]
pub enum BfdRuntimeError {
    /// Neither an IPv4 nor an IPv6 socket could listen on port 3784.
    #[error("listening for BFD control packets on UDP port 3784 (IPv4: {v4}; IPv6: {v6})")]
    Listen {
        /// Why the IPv4 socket failed.
        v4: io::Error,
        /// Why the IPv6 socket failed.
        v6: io::Error,
    },
    /// The session's settings are unusable.
    #[error("BFD session with {peer}")]
    Config {
        /// Peer address.
        peer: IpAddr,
        /// What is wrong.
        #[source]
        source: BfdConfigError,
    },
    /// No source port of 49152-65535 could be bound, or the socket could not be set up.
    #[error("BFD sending socket to {peer}")]
    Send {
        /// Peer address.
        peer: IpAddr,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

type Sessions = Arc<Mutex<HashMap<IpAddr, mpsc::Sender<Vec<u8>>>>>;

/// The receiving side shared by every session: one socket per address family on port 3784.
#[derive(Debug)]
pub struct BfdListener {
    sessions: Sessions,
    local: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl BfdListener {
    /// Listens on port 3784 of every address of both families (one family is enough: a host
    /// without IPv6 still runs IPv4 sessions).
    pub fn bind() -> Result<BfdListener, BfdRuntimeError> {
        BfdListener::bind_port(CONTROL_PORT)
    }

    /// As [`BfdListener::bind`] on another port (tests run several speakers on one host).
    pub fn bind_port(port: u16) -> Result<BfdListener, BfdRuntimeError> {
        let v4 = receiving_socket(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port));
        let v6 = receiving_socket(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port));
        let sockets = match (v4, v6) {
            (Err(v4), Err(v6)) => return Err(BfdRuntimeError::Listen { v4, v6 }),
            (Ok(v4), Ok(v6)) => vec![v4, v6],
            (Ok(socket), Err(error)) | (Err(error), Ok(socket)) => {
                tracing::info!(%error, "BFD: one address family cannot listen");
                vec![socket]
            }
        };
        Ok(BfdListener::on(sockets))
    }

    /// One socket on `address` only (port 0 picks a free one: see [`BfdListener::local_addrs`]).
    pub fn bind_to(address: SocketAddr) -> io::Result<BfdListener> {
        Ok(BfdListener::on(vec![receiving_socket(address)?]))
    }

    fn on(sockets: Vec<UdpSocket>) -> BfdListener {
        let sessions: Sessions = Arc::default();
        let local = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        let tasks =
            sockets.into_iter().map(|s| tokio::spawn(receive_loop(s, sessions.clone()))).collect();
        BfdListener { sessions, local, tasks }
    }

    /// The addresses listened on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }
}

impl Drop for BfdListener {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A UDP socket on `address` that reports each packet's TTL / hop limit.
fn receiving_socket(address: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(address), Type::DGRAM, Some(Protocol::UDP))?;
    let (level, option) = if address.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_RECVTTL)
    } else {
        socket.set_only_v6(true)?;
        (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT)
    };
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a c_int option value and its size.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            std::ptr::addr_of!(on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(StdUdpSocket::from(socket))
}

/// One datagram: its length, source and the TTL / hop limit it arrived with.
fn receive_with_ttl(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<u32>)> {
    // SAFETY: all-zero sockaddr_storage and msghdr are valid values.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u64; 8];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::addr_of_mut!(storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: every pointer in `msg` points at a live buffer of the length given beside it.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    // SAFETY: the kernel filled `control` up to msg_controllen; the CMSG_* macros walk it
    // within those bounds, and the TTL / hop limit payload is one c_int.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            let (level, kind) = ((*header).cmsg_level, (*header).cmsg_type);
            if (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT)
            {
                let value = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<libc::c_int>());
                ttl = u32::try_from(value).ok();
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    let address = match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a sockaddr_in.
            let v4 = unsafe { *std::ptr::addr_of!(storage).cast::<libc::sockaddr_in>() };
            SocketAddr::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)).into(),
                u16::from_be(v4.sin_port),
            )
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the kernel wrote a sockaddr_in6.
            let v6 = unsafe { *std::ptr::addr_of!(storage).cast::<libc::sockaddr_in6>() };
            SocketAddr::new(Ipv6Addr::from(v6.sin6_addr.s6_addr).into(), u16::from_be(v6.sin6_port))
        }
        _ => return Err(io::Error::other("not an IP source")),
    };
    Ok((n as usize, address, ttl))
}

async fn receive_loop(socket: UdpSocket, sessions: Sessions) {
    let mut buf = [0u8; 512];
    loop {
        let received =
            socket.async_io(Interest::READABLE, || receive_with_ttl(&socket, &mut buf)).await;
        let Ok((n, from, ttl)) = received else { continue };
        let from = match from.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if ttl != Some(SECURITY_TTL) {
            tracing::debug!(%from, ?ttl, "BFD packet without TTL 255 dropped (RFC 5881 §5)");
            continue;
        }
        let session = sessions.lock().unwrap_or_else(PoisonError::into_inner).get(&from).cloned();
        match session {
            // A full queue means the session task is behind: dropping a packet is what the
            // network could have done too.
            Some(tx) => {
                let _ = tx.try_send(buf[..n].to_vec());
            }
            None => tracing::debug!(%from, "BFD packet from an address without a session"),
        }
    }
}

/// What `switchyard bgp` and the metrics show of a BFD session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdStatus {
    /// Session state.
    pub state: BfdState,
    /// Why the session last went down.
    pub diagnostic: Diagnostic,
    /// Control packets sent.
    pub sent: u64,
    /// Control packets received and accepted.
    pub received: u64,
    /// Times the session went from Up to Down.
    pub failures: u64,
}

/// A running BFD session.
#[derive(Debug)]
pub struct BfdPeer {
    peer: IpAddr,
    sessions: Sessions,
    stop: mpsc::UnboundedSender<()>,
    status: watch::Receiver<BfdStatus>,
    task: JoinHandle<()>,
}

impl BfdPeer {
    /// Starts a session with `peer` from `local` (the unspecified address of the family when
    /// `None`); its packets arrive through `listener`.
    pub fn spawn(
        listener: &BfdListener,
        local: Option<IpAddr>,
        peer: IpAddr,
        config: BfdConfig,
    ) -> Result<BfdPeer, BfdRuntimeError> {
        BfdPeer::spawn_to(listener, local, SocketAddr::new(peer, CONTROL_PORT), config)
    }

    /// As [`BfdPeer::spawn`] to another port than 3784 (tests).
    pub fn spawn_to(
        listener: &BfdListener,
        local: Option<IpAddr>,
        peer: SocketAddr,
        config: BfdConfig,
    ) -> Result<BfdPeer, BfdRuntimeError> {
        let now = Instant::now();
        let seed = u64::from(config.local_discriminator).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let session = BfdSession::new(config, now, seed)
            .map_err(|source| BfdRuntimeError::Config { peer: peer.ip(), source })?;
        let socket = sending_socket(local, peer)
            .map_err(|source| BfdRuntimeError::Send { peer: peer.ip(), source })?;
        let (incoming_tx, incoming) = mpsc::channel(64);
        listener
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer.ip(), incoming_tx);
        let (status_tx, status) = watch::channel(snapshot(&session, 0));
        let (stop, stop_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(peer, session, socket, incoming, stop_rx, status_tx));
        Ok(BfdPeer { peer: peer.ip(), sessions: listener.sessions.clone(), stop, status, task })
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<BfdStatus> {
        self.status.clone()
    }

    /// Takes the session AdminDown (the peer does not count it as a failure), tells the peer,
    /// and ends the task.
    pub async fn stop(mut self) {
        let _ = self.stop.send(());
        let _ = (&mut self.task).await;
    }
}

/// Dropped without [`BfdPeer::stop`], the session ends silently, as if the process died: the
/// peer detects it by the detection time.
impl Drop for BfdPeer {
    fn drop(&mut self) {
        self.task.abort();
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.peer);
    }
}

/// A socket connected to the peer's control port, from a port of 49152-65535, TTL 255.
fn sending_socket(local: Option<IpAddr>, peer: SocketAddr) -> io::Result<UdpSocket> {
    let local = local.unwrap_or(match peer {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    });
    // Start at a port that depends on the peer, so sessions do not all race for 49152.
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let start = u32::from(peer.port()).wrapping_add(match peer.ip() {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => v6.to_bits() as u32,
    }) % span;
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for offset in 0..span {
        let port = *SOURCE_PORTS.start() as u32 + (start + offset) % span;
        let Ok(port) = u16::try_from(port) else { continue };
        match StdUdpSocket::bind(SocketAddr::new(local, port)) {
            Ok(socket) => {
                if peer.is_ipv4() {
                    socket.set_ttl(SECURITY_TTL)?;
                } else {
                    socket2::SockRef::from(&socket).set_unicast_hops_v6(SECURITY_TTL)?;
                }
                socket.connect(peer)?;
                socket.set_nonblocking(true)?;
                return UdpSocket::from_std(socket);
            }
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last = error,
            Err(error) => return Err(error),
        }
    }
    Err(last)
}

fn snapshot(session: &BfdSession, failures: u64) -> BfdStatus {
    let (sent, received) = session.counters();
    BfdStatus { state: session.state(), diagnostic: session.diagnostic(), sent, received, failures }
}

async fn run(
    peer: SocketAddr,
    mut session: BfdSession,
    socket: UdpSocket,
    mut incoming: mpsc::Receiver<Vec<u8>>,
    mut stop: mpsc::UnboundedReceiver<()>,
    status: watch::Sender<BfdStatus>,
) {
    let mut failures = 0;
    let mut stopping = false;
    loop {
        let now = Instant::now();
        while let Some(BfdEvent::StateChanged { from, to, diagnostic }) = session.poll_event() {
            // A peer's AdminDown is an orderly goodbye, not a failure.
            if from == BfdState::Up
                && to == BfdState::Down
                && session.remote_state() != BfdState::AdminDown
            {
                failures += 1;
                tracing::warn!(%peer, ?diagnostic, "BFD session down");
            } else {
                tracing::info!(%peer, from = from.name(), to = to.name(), "BFD session state");
            }
        }
        while let Some(packet) = session.poll_transmit(now) {
            send(&socket, &packet).await;
        }
        status.send_replace(snapshot(&session, failures));
        if stopping {
            return;
        }
        let sleep = sleep_until(session.poll_timeout());
        tokio::select! {
            _ = stop.recv() => {
                session.admin_down(Instant::now());
                stopping = true;
            }
            Some(bytes) = incoming.recv() => {
                if let Err(error) = session.receive(&bytes, Instant::now()) {
                    tracing::debug!(%peer, %error, "BFD packet not used");
                }
            }
            () = sleep => session.handle_timeout(Instant::now()),
        }
    }
}

/// Sends one control packet; a failure (no route yet, say) is what a lost packet is to BFD.
async fn send(socket: &UdpSocket, packet: &[u8; PACKET_LEN]) {
    if let Err(error) = socket.send(packet).await {
        tracing::debug!(%error, "BFD control packet not sent");
    }
}
