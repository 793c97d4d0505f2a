//! Socket options a BGP session needs before it connects or listens: TCP MD5 signatures
//! (RFC 2385, `TCP_MD5SIG`) and the TTL / hop limit (1 for directly connected eBGP, more for
//! multihop).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};

use socket2::{SockAddr, SockRef};
use tokio::net::{TcpSocket, TcpStream};

/// Longest key the kernel takes.
pub const MD5_MAX_KEY_LEN: usize = 80;

/// The kernel's `struct tcp_md5sig` (include/uapi/linux/tcp.h); libc does not define it.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

/// Sets (or, with an empty key, removes) the TCP MD5 key for segments to and from `peer`.
pub fn set_md5_key(socket: &impl AsFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 key longer than 80 bytes",
        ));
    }
    let address = SockAddr::from(SocketAddr::new(peer, 0));
    // SAFETY: an all-zero tcp_md5sig is valid (plain integers and byte arrays).
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let len = (address.len() as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: `address` holds `len` initialised bytes of a sockaddr; `sig.addr` is larger.
    unsafe {
        std::ptr::copy_nonoverlapping(
            address.as_ptr().cast::<u8>(),
            std::ptr::addr_of_mut!(sig.addr).cast::<u8>(),
            len,
        );
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: the descriptor is a TCP socket borrowed for the call; `sig` outlives it and its
    // size is passed.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            std::ptr::addr_of!(sig).cast(),
            size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// How to open a session's connection. Its `Debug` shows the key's length, never the key.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// Source address to bind (the node's address of the peer's family).
    pub local_address: Option<IpAddr>,
    /// TCP MD5 key.
    pub md5_key: Option<Vec<u8>>,
    /// TTL / hop limit of our segments.
    pub ttl: Option<u32>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("local_address", &self.local_address)
            .field("md5_key", &self.md5_key.as_ref().map(|k| format!("{} bytes", k.len())))
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Connects to `peer` with the options set before the SYN leaves.
pub async fn connect(peer: SocketAddr, options: &ConnectOptions) -> io::Result<TcpStream> {
    let socket = if peer.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(key) = &options.md5_key {
        set_md5_key(&socket, peer.ip(), key)?;
    }
    if let Some(ttl) = options.ttl {
        set_ttl(&socket, peer.ip(), ttl)?;
    }
    if let Some(local) = options.local_address {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    let stream = socket.connect(peer).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sets the TTL (IPv4) or unicast hop limit (IPv6) of a socket talking to `peer`.
pub fn set_ttl(socket: &impl AsFd, peer: IpAddr, ttl: u32) -> io::Result<()> {
    let socket = SockRef::from(socket);
    match peer {
        IpAddr::V4(_) => socket.set_ttl_v4(ttl),
        IpAddr::V6(_) => socket.set_unicast_hops_v6(ttl),
    }
}
