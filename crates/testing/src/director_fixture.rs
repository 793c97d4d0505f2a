//! The director's test fixture, shared by tests/director.rs and benches/director.rs: a
//! private network namespace with the director's uplink `up0` (veth to `up1`), permanent
//! neighbours for the nodes and one route with a small MTU; the program loaded in a bpffs of
//! the test's own; VIPs over Maglev tables; runs as if frames arrived on `up0`. Also a node's
//! decapsulation program in the same namespace and GUE frames with the second chance's private
//! data (tests/second_chance.rs, benches/second_chance.rs).

use std::{collections::BTreeSet, net::IpAddr, process::Command};

use aya::{
    maps::{HashMap, Map, MapData},
    programs::{TestRun, TestRunOptions},
};
use switchyard_bpf::{
    abi::FrontendKey,
    decap::{DecapDatapath, DecapReason},
    director::*,
    nodeport_abi::{CT_ESTABLISHED, CT_F_REPLY_SEEN, CtEntry, CtKey},
};
use switchyard_maglev::{Seed, Table};

use crate::BpfDir;
use crate::frames::{TCP, UDP, ip_frame};

pub const M: u32 = 251;
pub const VIP4: &str = "192.0.2.10";
pub const VIP6: &str = "2001:db8::10";
pub const CLIENT4: &str = "198.51.100.7";
pub const CLIENT6: &str = "2001:db8:ff::7";
pub const DIRECTOR4: &str = "10.0.0.100";
pub const DIRECTOR6: &str = "fd00::100";
/// Node ids 1..=3 in 10.0.0.0/24 and fd00::/64; node 4 sits behind a route with MTU 1300.
pub const NODES: [(u32, &str); 5] =
    [(1, "10.0.0.1"), (2, "10.0.0.2"), (3, "10.0.0.3"), (4, "10.0.1.1"), (5, "fd00::1")];
pub const NEIGH_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

pub fn ifindex(name: &str) -> u32 {
    nix::net::if_::if_nametoindex(name).unwrap_or(0)
}

pub fn sh(args: &str) {
    let status = Command::new("ip").args(args.split_whitespace()).status().unwrap();
    assert!(status.success(), "ip {args}: {status}");
}

/// A private network namespace for this thread with the director's uplink.
pub fn enter_lab() {
    crate::nodeport_fixture::enter_private_netns();
    sh("link set lo up");
    sh("link add up0 type veth peer name up1");
    sh("link set up0 up");
    sh("link set up1 up");
    enable_forwarding("up0").unwrap();
    sh("addr add 10.0.0.100/24 dev up0");
    sh("addr add fd00::100/64 dev up0 nodad");
    // Locked: bpf_fib_lookup honours a route MTU only when locked (or ip_forward_use_pmtu).
    sh("route add 10.0.1.0/24 dev up0 mtu lock 1300");
    for (_, ip) in NODES {
        sh(&format!("neigh replace {ip} lladdr 02:00:00:00:00:0a dev up0 nud permanent"));
    }
}

pub struct Director {
    pub dp: DirectorDatapath,
    _bpf: BpfDir,
}

impl std::fmt::Debug for Director {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Director").finish_non_exhaustive()
    }
}

pub fn settings(encap: u8) -> DirSettings {
    DirSettings {
        source4: Some(DIRECTOR4.parse().unwrap()),
        source6: Some(DIRECTOR6.parse().unwrap()),
        seed: Seed::DEFAULT,
        table_size: M,
        gue_port: GUE_PORT_DEFAULT,
        encap,
    }
}

impl Director {
    pub fn new(test: &str, encap: u8) -> Director {
        Self::with_settings(test, &settings(encap))
    }

    pub fn with_settings(test: &str, settings: &DirSettings) -> Director {
        enter_lab();
        let bpf = BpfDir::new(test);
        let mut dp =
            DirectorDatapath::load(bpf.path(), false, DirMapSizes::default(), settings).unwrap();
        let maps = dp.maps_mut();
        for (id, ip) in NODES {
            maps.put_node(id, DirNode::new(ip.parse().unwrap())).unwrap();
        }
        Director { dp, _bpf: bpf }
    }

    /// VIP `vip:port/proto` with id `id` over a Maglev table of `nodes` (ids, equal weights).
    pub fn vip(&mut self, id: u32, vip: &str, port: u16, proto: u8, nodes: &[u32]) -> Table {
        let backends: Vec<_> =
            nodes.iter().map(|n| switchyard_maglev::Backend::new(format!("n{n}"), 1)).collect();
        let config = switchyard_maglev::MaglevConfig {
            size: switchyard_maglev::TableSize::new(M).unwrap(),
            seed: Seed::DEFAULT,
        };
        let built = Table::build(&config, &backends).unwrap();
        // Backends sort by identity: n1 < n2 < ...; ids in the same order.
        let mut sorted = nodes.to_vec();
        sorted.sort_by_key(|n| format!("n{n}"));
        let slots: Vec<u32> = built.table.slots().iter().map(|&i| sorted[i as usize]).collect();
        let maps = self.dp.maps_mut();
        maps.put_table(id, &slots).unwrap();
        let key = FrontendKey::new(vip.parse().unwrap(), port, proto, 0);
        maps.put_vip(key, DirVip { id, table_id: id }).unwrap();
        built.table
    }

    /// The bpffs directory the maps are pinned in.
    pub fn bpf_dir(&self) -> &std::path::Path {
        self._bpf.path()
    }

    /// Runs the program on `frame` as if it arrived on `up0` (struct xdp_md as context).
    pub fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let (rc, out, _) = self.run_timed(frame);
        (rc, out)
    }

    /// [`Self::run`] and the kernel-reported duration of the run in nanoseconds.
    pub fn run_timed(&self, frame: &[u8]) -> (u32, Vec<u8>, f64) {
        let mut out = vec![0u8; 4096];
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex("up0").to_ne_bytes());
        let result = self
            .dp
            .program()
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .unwrap();
        out.truncate(result.data_size_out as usize);
        (result.return_value, out, result.duration.as_nanos() as f64)
    }

    pub fn count(&self, reason: DirReason) -> u64 {
        self.dp.maps().counters().unwrap()[&reason].packets
    }
}

/// The private data naming `prev` (hops as given).
pub fn prev_option(prev: IpAddr, hops: u8) -> Vec<u8> {
    match prev {
        IpAddr::V4(a) => [&[GUE_PREV_KIND, hops, 2, 0][..], &a.octets()].concat(),
        IpAddr::V6(a) => [&[GUE_PREV_KIND, hops, 10, 0][..], &a.octets()].concat(),
    }
}

/// `inner` (an IP packet) in GUE from `from` to `to` with private data `option`.
pub fn gue(from: &str, to: &str, option: &[u8], inner: &[u8]) -> Vec<u8> {
    assert_eq!(option.len() % 4, 0);
    let mut udp = Vec::new();
    udp.extend_from_slice(&0xc123u16.to_be_bytes());
    udp.extend_from_slice(&GUE_PORT_DEFAULT.to_be_bytes());
    udp.extend_from_slice(&((8 + 4 + option.len() + inner.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    let proto = if inner[0] >> 4 == 4 { 4 } else { 41 };
    udp.extend_from_slice(&[(option.len() / 4) as u8, proto, 0, 0]);
    udp.extend_from_slice(option);
    udp.extend_from_slice(inner);
    ip_frame(from.parse().unwrap(), to.parse().unwrap(), UDP, &udp, true)
}

/// A node's decapsulation program in the fixture's namespace (the second chance's tests and
/// bench): frames arrive on `up0`, whose neighbours are the nodes'.
pub struct DecapNode {
    pub dp: DecapDatapath,
    bpf: BpfDir,
}

impl std::fmt::Debug for DecapNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecapNode").finish_non_exhaustive()
    }
}

impl DecapNode {
    pub fn new(test: &str) -> DecapNode {
        enter_lab();
        let bpf = BpfDir::new(test);
        let directors = BTreeSet::from([DIRECTOR4.parse().unwrap(), DIRECTOR6.parse().unwrap()]);
        let dp = DecapDatapath::load(bpf.path(), &directors, GUE_PORT_DEFAULT).unwrap();
        DecapNode { dp, bpf }
    }

    /// Runs the program on `frame` as if it arrived on `up0`.
    pub fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let (rc, out, _) = self.run_timed(frame);
        (rc, out)
    }

    /// [`Self::run`] and the kernel-reported duration of the run in nanoseconds.
    pub fn run_timed(&self, frame: &[u8]) -> (u32, Vec<u8>, f64) {
        let mut out = vec![0u8; 4096];
        // struct __sk_buff up to `ifindex` (offset 40): the device the packet arrives on.
        let mut ctx = [0u8; 44];
        ctx[40..44].copy_from_slice(&ifindex("up0").to_ne_bytes());
        let result = self
            .dp
            .program()
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .unwrap();
        out.truncate(result.data_size_out as usize);
        (result.return_value, out, result.duration.as_nanos() as f64)
    }

    pub fn count(&self, reason: DecapReason) -> u64 {
        self.dp.maps().counters().unwrap()[&reason].packets
    }

    /// Adds a live conntrack entry for the TCP flow, as the per-packet path does.
    pub fn hold(&self, src: &str, sport: u16, dst: &str, dport: u16) {
        self.hold_proto(src, sport, dst, dport, TCP);
    }

    /// [`Self::hold`] for a flow of protocol `proto` (TCP, UDP).
    pub fn hold_proto(&self, src: &str, sport: u16, dst: &str, dport: u16, proto: u8) {
        self.hold_ahead(src, sport, dst, dport, proto, 0);
    }

    /// [`Self::hold_proto`] with the flow's last packet `ahead_ns` after now, as a packet of
    /// the flow on another CPU can store it between this packet's clock read and its lookup.
    pub fn hold_ahead(
        &self,
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        proto: u8,
        ahead_ns: u64,
    ) {
        let data = MapData::from_pin(self.bpf.path().join("sy_ct")).unwrap();
        let mut ct: HashMap<_, CtKey, CtEntry> = HashMap::try_from(Map::LruHashMap(data)).unwrap();
        // CLOCK_MONOTONIC is bpf_ktime_get_ns's clock.
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        let entry = CtEntry {
            state: CT_ESTABLISHED,
            flags: CT_F_REPLY_SEEN,
            last_seen_ns: now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64 + ahead_ns,
            ..CtEntry::default()
        };
        let key = CtKey::new(src.parse().unwrap(), sport, dst.parse().unwrap(), dport, proto);
        ct.insert(key, entry, 0).unwrap();
    }
}
