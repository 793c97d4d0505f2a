//! The per-packet programs' test fixture, shared by crates/bpf's tests/nodeport.rs and
//! tests/conntrack.rs: the socket and per-packet datapaths loaded in a bpffs of the test's own,
//! on a thread moved into a fresh network namespace, frontends written directly, and frames run
//! through BPF_PROG_TEST_RUN.

use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use switchyard_bpf::{
    Datapath, LoadOptions,
    abi::*,
    nodeport::{PacketDatapath, PacketMapSizes, PacketSettings},
    nodeport_abi::*,
    nodeport_xdp::XdpDatapath,
};

use crate::BpfDir;
use crate::socket_probe::small_sizes;

pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

pub const INGRESS: &str = "sy_nodeport_ingress";
pub const EGRESS: &str = "sy_nodeport_egress";

pub const NODE4: &str = "10.0.0.1";
pub const NODE6: &str = "fd00::1";
pub const SNAT4: &str = "10.0.0.1";
pub const SNAT6: &str = "fd00::1";
pub const CLIENT4: &str = "192.0.2.7";
pub const CLIENT6: &str = "2001:db8::7";
pub const NODE_PORT: u16 = 30080;

/// Loaded socket + per-packet datapath in a bpffs of the test's own, on a thread in a fresh
/// network namespace.
pub struct Tc {
    pub sock: Datapath,
    pub pkt: PacketDatapath,
    _bpf: BpfDir,
}

impl std::fmt::Debug for Tc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tc").field("bpf_dir", &self._bpf.path()).finish_non_exhaustive()
    }
}

/// Moves the calling thread into a network namespace of its own (each test has its own thread).
pub fn enter_private_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
}

pub fn settings() -> PacketSettings {
    PacketSettings {
        snat_ipv4: Some(SNAT4.parse().unwrap()),
        snat_ipv6: Some(SNAT6.parse().unwrap()),
        snat_ports: 40_000..=40_999,
        ..PacketSettings::default()
    }
}

impl Tc {
    pub fn new(test: &str, settings: &PacketSettings) -> Tc {
        Tc::with_sizes(test, settings, PacketMapSizes::default())
    }

    /// [`Tc::new`] with per-packet map sizes of the test's choosing (a small `sy_ct` fills).
    pub fn with_sizes(test: &str, settings: &PacketSettings, sizes: PacketMapSizes) -> Tc {
        enter_private_netns();
        let bpf = BpfDir::new(test);
        let options = load_options(bpf.path());
        let mut sock = Datapath::load(&options).unwrap();
        let pkt = PacketDatapath::load(&options, sizes, settings).unwrap();
        for node in [NODE4, NODE6] {
            let key = NodeAddrKey::new(node.parse().unwrap());
            sock.maps_mut().node_addrs.insert(key, 0, 0).unwrap();
        }
        Tc { sock, pkt, _bpf: bpf }
    }

    /// The bpffs directory the maps are pinned in.
    pub fn bpf_dir(&self) -> &std::path::Path {
        self._bpf.path()
    }

    /// A frontend with backends (id, address, port, flags); `addr` None = NodePort wildcard.
    #[allow(clippy::too_many_arguments, reason = "one call per frontend reads like a table")]
    pub fn frontend(
        &mut self,
        id: u32,
        addr: Option<&str>,
        family: u8,
        port: u16,
        proto: u8,
        flags: u32,
        backends: &[(u32, &str, u16, u8)],
    ) {
        let maps = self.sock.maps_mut();
        for (slot, &(backend_id, ip, bport, bflags)) in (0u32..).zip(backends) {
            let backend = Backend::new(ip.parse().unwrap(), bport, bflags);
            maps.backends.insert(backend_id, backend, 0).unwrap();
            maps.slots.insert(SlotKey { frontend_id: id, slot }, backend_id, 0).unwrap();
        }
        let key = match addr {
            Some(ip) => FrontendKey::new(ip.parse().unwrap(), port, proto, SCOPE_DEFAULT),
            None => FrontendKey::node_port(family, port, proto, SCOPE_DEFAULT),
        };
        let frontend =
            Frontend { id, flags, backend_count: backends.len() as u32, affinity_timeout_s: 60 };
        maps.frontends.insert(key, frontend, 0).unwrap();
    }

    /// Replaces the slots of frontend `id` (backends must exist).
    pub fn set_slots(&mut self, id: u32, key: FrontendKey, flags: u32, backend_ids: &[u32]) {
        let maps = self.sock.maps_mut();
        for (slot, &b) in (0u32..).zip(backend_ids) {
            maps.slots.insert(SlotKey { frontend_id: id, slot }, b, 0).unwrap();
        }
        let frontend =
            Frontend { id, flags, backend_count: backend_ids.len() as u32, affinity_timeout_s: 60 };
        maps.frontends.insert(key, frontend, 0).unwrap();
    }

    pub fn run(&self, program: &'static str, frame: &[u8]) -> (u32, Vec<u8>) {
        self.try_run(program, frame).unwrap()
    }

    pub fn try_run(
        &self,
        program: &'static str,
        frame: &[u8],
    ) -> Result<(u32, Vec<u8>), aya::programs::ProgramError> {
        self.run_with_context(program, frame, None)
    }

    fn run_with_context(
        &self,
        program: &'static str,
        frame: &[u8],
        ctx: Option<&[u8]>,
    ) -> Result<(u32, Vec<u8>), aya::programs::ProgramError> {
        let prog = self.pkt.program(program).unwrap();
        let mut out = vec![0u8; 2048];
        let result = prog.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: ctx,
            ..TestRunOptions::default()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Runs `frame` as if a device had received it: a `__sk_buff` context with
    /// `ingress_ifindex` 1 (loopback, the device BPF_PROG_TEST_RUN hands the frame to). The
    /// kernel then sets `pkt_type` from the destination MAC against loopback's all-zero
    /// address: [0; 6] (or broadcast) is for this host, any other unicast address another's.
    pub fn run_received(&self, program: &'static str, frame: &[u8]) -> (u32, Vec<u8>) {
        /// `sizeof(struct __sk_buff)` and the offset of `ingress_ifindex` in it (UAPI).
        const SK_BUFF_LEN: usize = 192;
        const INGRESS_IFINDEX: usize = 36;
        let mut ctx = [0u8; SK_BUFF_LEN];
        ctx[INGRESS_IFINDEX..INGRESS_IFINDEX + 4].copy_from_slice(&1u32.to_ne_bytes());
        self.run_with_context(program, frame, Some(&ctx)).unwrap()
    }

    pub fn count(&self, reason: PacketReason) -> u64 {
        self.pkt.maps().counters().unwrap()[&reason].packets
    }

    pub fn shared_count(&self, reason: Reason) -> u64 {
        self.sock.maps().counters().unwrap()[&reason].packets
    }
}

/// Inode of a network namespace file, to make sure a test never configures the host's.
fn netns_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

/// Runs `ip`/`sysctl`-like commands in this thread's private namespace (children inherit it);
/// refuses when the thread is still in the process's (the host's) namespace.
pub fn sh(cmd: &str) {
    assert_ne!(
        netns_inode("/proc/thread-self/ns/net"),
        netns_inode("/proc/self/ns/net"),
        "refusing to configure the host's network namespace"
    );
    let status = std::process::Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(status.success(), "{cmd}: {status}");
}

/// What the fixtures load with: small maps, Maglev tables of 251.
fn load_options(bpf_dir: &std::path::Path) -> LoadOptions {
    let mut options = LoadOptions::new(bpf_dir);
    options.sizes = small_sizes();
    options.maglev_table_size = 251;
    options
}

/// [`Tc`] plus the XDP program on the same maps. BPF_PROG_TEST_RUN hands XDP frames to
/// loopback (ifindex 1): it is declared an XDP device with the test frames' destination MAC.
pub struct TcXdp {
    pub tc: Tc,
    pub xdp: XdpDatapath,
}

impl std::fmt::Debug for TcXdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcXdp").field("tc", &self.tc).finish_non_exhaustive()
    }
}

impl TcXdp {
    pub fn new(test: &str, settings: &PacketSettings) -> TcXdp {
        let tc = Tc::new(test, settings);
        let mut xdp =
            XdpDatapath::load(&load_options(tc.bpf_dir()), PacketMapSizes::default()).unwrap();
        xdp.set_device(1, crate::frames::NODE_MAC).unwrap();
        TcXdp { tc, xdp }
    }

    /// Runs `frame` through the XDP program: (XDP verdict, the frame as it leaves).
    pub fn run_xdp(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.try_run_xdp(frame).unwrap()
    }

    /// [`TcXdp::run_xdp`], with the kernel's refusal as an error instead of a panic.
    pub fn try_run_xdp(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), String> {
        let mut out = vec![0u8; 2048];
        let result = self
            .xdp
            .program()
            .map_err(|e| e.to_string())?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .map_err(|e| e.to_string())?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (family, node, client, local backend, remote backend)
pub const FAMILIES: [(u8, &str, &str, &str, &str); 2] = [
    (AF_INET, NODE4, CLIENT4, "10.244.1.5", "10.244.2.9"),
    (AF_INET6, NODE6, CLIENT6, "fd00:244:1::5", "fd00:244:2::9"),
];

/// DSR (issue 20): a client's packet (`inner`, an IP packet without Ethernet) as the client's
/// node sends it to the backend's node: outer IP `outer_src` -> `outer_dst` (DF, TTL 64), UDP
/// `sport` -> `gue_port` (checksum 0), GUE variant 0 (hlen 2 or 5, flags 0) with the DSR
/// option naming `frontend`:`port`. The outer family is the inner one's; IPv6 flow label 0.
pub fn gue_dsr_frame(
    outer_src: IpAddr,
    outer_dst: IpAddr,
    sport: u16,
    gue_port: u16,
    frontend: IpAddr,
    port: u16,
    inner: &[u8],
) -> Vec<u8> {
    let (family, hlen, proto, addr): (u8, u8, u8, Vec<u8>) = match frontend {
        IpAddr::V4(a) => (AF_INET, GUE_DSR_HLEN4, 4, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, GUE_DSR_HLEN6, 41, a.octets().to_vec()),
    };
    let mut udp = Vec::new();
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&gue_port.to_be_bytes());
    let len = 8 + 4 + 4 + addr.len() + inner.len();
    udp.extend_from_slice(&(len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&[hlen, proto, 0, 0]);
    udp.extend_from_slice(&[GUE_DSR_KIND, family]);
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&addr);
    udp.extend_from_slice(inner);
    let mut f = crate::frames::ip_frame(outer_src, outer_dst, crate::frames::UDP, &udp, true);
    if f[12..14] == [0x08, 0x00] {
        // ip_frame's identification 0x1234: the encapsulation writes 0.
        f[18..20].copy_from_slice(&[0, 0]);
        f[24..26].copy_from_slice(&[0, 0]);
        let c = crate::frames::fold(crate::frames::sum16(&f[14..34], 0));
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    f
}

impl Tc {
    /// The node's decapsulation on the same maps (loaded after the per-packet object, as the
    /// agent does), accepting DSR from `nodes` (and director traffic from `directors`).
    pub fn decap(
        &self,
        directors: &[&str],
        nodes: &[&str],
    ) -> switchyard_bpf::decap::DecapDatapath {
        let directors: std::collections::BTreeSet<IpAddr> =
            directors.iter().map(|a| a.parse().unwrap()).collect();
        let nodes = nodes.iter().map(|a| a.parse().unwrap()).collect();
        let mut dp = switchyard_bpf::decap::DecapDatapath::load(
            self.bpf_dir(),
            &directors,
            switchyard_bpf::director::GUE_PORT_DEFAULT,
        )
        .unwrap();
        dp.maps_mut().set_sources(&directors, &nodes).unwrap();
        dp
    }

    /// Writes remote backend -> node address pairs into `sy_dsr_nodes`.
    pub fn dsr_nodes(&mut self, pairs: &[(&str, &str)]) {
        let map = pairs.iter().map(|(b, n)| (ip(b), ip(n))).collect();
        self.pkt.maps_mut().set_dsr_nodes(&map).unwrap();
    }
}

/// Runs `frame` through the decapsulation: (verdict, the frame as it leaves, `cb[0]` of the
/// `__sk_buff` after it: the mark telling the per-packet path a packet is a director's).
pub fn run_decap(dp: &switchyard_bpf::decap::DecapDatapath, frame: &[u8]) -> (u32, Vec<u8>, u32) {
    /// `sizeof(struct __sk_buff)` and the offset of `cb[0]` in it (UAPI).
    const SK_BUFF_LEN: usize = 192;
    const CB0: usize = 48;
    let mut out = vec![0u8; 4096];
    let mut ctx_out = [0u8; SK_BUFF_LEN];
    let result = dp
        .program()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&[0u8; SK_BUFF_LEN]),
            ctx_out: Some(&mut ctx_out),
            ..TestRunOptions::default()
        })
        .unwrap();
    out.truncate(result.data_size_out as usize);
    let cb0 = u32::from_ne_bytes(ctx_out[CB0..CB0 + 4].try_into().unwrap());
    (result.return_value, out, cb0)
}

/// A TCP connection from `local` (address and port chosen) to `remote`, as a process of the
/// node would open one (`std` cannot bind before connecting).
pub fn tcp_connect_from(
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> std::net::TcpStream {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, socket,
    };
    use std::os::fd::AsRawFd;
    let family = if local.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    bind(fd.as_raw_fd(), &SockaddrStorage::from(local)).unwrap();
    connect(fd.as_raw_fd(), &SockaddrStorage::from(remote)).unwrap();
    std::net::TcpStream::from(fd)
}
