//! Per-packet cost of the director's XDP program, from BPF_PROG_TEST_RUN's own clock (root).
//!
//! A plain `repeat` cannot measure an encapsulating program: the kernel runs it again on the
//! frame it just grew, so the second run sees the outer header (not a VIP: XDP_PASS) and a few
//! runs later the headroom is gone. So the encapsulating cases run with live frames
//! (`BPF_F_TEST_XDP_LIVE_FRAMES`): frames come from a page pool, the kernel puts the data
//! pointers back before every run and really sends what the program returns with `XDP_TX` out
//! of the director's uplink (a veth in the fixture's private network namespace whose peer takes
//! nothing: the frame is freed at once). `repeat` can then be large and the per-call syscall,
//! copy and timer reads vanish from the figure. The kernel restores the pointers, not the bytes:
//! the bytes the encapsulation wrote over the client's Ethernet header stay. With IPIP they are
//! the tail of the outer header, ending in the last two bytes of the node's address, and the
//! bench's nodes (10.0.8.0 and fd00::86dd) end in 08 00 and 86 dd: the Ethernet type of the
//! inner packet's family, so every run sees the client's packet again (the MACs, which the
//! program does not read, are left scrambled). GUE writes 12 more header bytes than IPIP and
//! does the same lookups.
//!
//! The peer, measured the same way in the same run, is a program that only returns `XDP_TX` on
//! the same frame: the difference is what the director's own work costs. Cases that leave the
//! frame alone (a packet for no VIP; the node's TC program) run with a plain `repeat`.
//!
//! `sudo cargo bench -p switchyard-bpf --bench director` (or `cargo test ... --bench
//! director`: the durations are the kernel's, the Rust profile does not enter them) prints ns
//! per packet per case, the median of ROUNDS rounds, and the ratios.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use std::os::fd::{AsFd as _, AsRawFd as _, RawFd};

use switchyard_testing::{director_fixture, frames};

use director_fixture::*;
use frames::*;
use switchyard_bpf::{
    Datapath, LoadOptions,
    director::{DirNode, DirReason, ENCAP_IPIP},
    nodeport::{PacketDatapath, PacketMapSizes, PacketSettings},
};

const ROUNDS: usize = 5;
/// Flows per round (source ports), each run `REPEAT` times.
const FLOWS: u16 = 32;
const REPEAT: u32 = 20_000;
/// Frames per batch in live-frames mode (the kernel's default is 64, NAPI's budget).
const BATCH: u32 = 64;

/// `BPF_PROG_TEST_RUN`.
const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`.
const LIVE_FRAMES: u32 = 1 << 1;

/// The `test` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// Runs `prog` `repeat` times on `frame` (`struct xdp_md` context arriving on `ifindex`, or
/// none) and returns the kernel's mean duration in ns. `live`: live frames (XDP only).
fn test_run(prog: RawFd, frame: &[u8], ifindex: Option<u32>, repeat: u32, live: bool) -> f64 {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    if let Some(ifindex) = ifindex {
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    }
    let mut attr = TestAttr {
        prog_fd: prog as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..TestAttr::default()
    };
    if ifindex.is_some() {
        attr.ctx_size_in = ctx.len() as u32;
        attr.ctx_in = ctx.as_ptr() as u64;
    }
    if live {
        attr.flags = LIVE_FRAMES;
        attr.batch_size = BATCH;
    }
    // SAFETY: BPF_PROG_TEST_RUN with pointers (frame, context) that outlive the call; no
    // output buffers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestAttr,
            size_of::<TestAttr>(),
        )
    };
    assert_eq!(rc, 0, "BPF_PROG_TEST_RUN: {}", std::io::Error::last_os_error());
    f64::from(attr.duration)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn with_port(frame: &[u8], offset: usize, port: u16) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[offset..offset + 2].copy_from_slice(&port.to_be_bytes());
    f
}

fn main() {
    if !switchyard_lab::require_root("bench director") {
        return;
    }
    // The fixture enters a private network namespace with the director's uplink up0.
    let mut d = Director::new("bench-director", ENCAP_IPIP);
    // Nodes whose addresses end in the Ethernet type of their family (see above).
    for (id, ip) in [(6, "10.0.8.0"), (7, "fd00::86dd")] {
        sh(&format!("neigh replace {ip} lladdr 02:00:00:00:00:0a dev up0 nud permanent"));
        d.dp.maps_mut().put_node(id, DirNode::new(ip.parse().unwrap())).unwrap();
    }
    sh("route add 10.0.8.0/32 dev up0");
    d.vip(1, VIP4, 80, TCP, &[6]);
    d.vip(2, VIP6, 80, TCP, &[7]);
    let up0 = ifindex("up0");
    let director = d.dp.program().unwrap().fd().unwrap().as_fd().as_raw_fd();
    let tx_only = switchyard_lab::xdp_pass::load_returning(switchyard_lab::xdp_pass::XDP_TX)
        .expect("loading the XDP_TX peer");

    // The node's per-packet program in its own bpffs, for the TC peer.
    let bpf = switchyard_testing::BpfDir::new("bench-director-tc");
    let mut options = LoadOptions::new(bpf.path());
    options.sizes = switchyard_testing::socket_probe::small_sizes();
    options.maglev_table_size = 251;
    let _sock = Datapath::load(&options).unwrap();
    let pkt = PacketDatapath::load(&options, PacketMapSizes::default(), &PacketSettings::default())
        .unwrap();
    let tc = pkt.program("sy_nodeport_ingress").unwrap().fd().unwrap().as_fd().as_raw_fd();

    let v4 = Spec::tcp(CLIENT4, 40_000, VIP4, 80, ACK).frame();
    let v6 = Spec::tcp(CLIENT6, 40_000, VIP6, 80, ACK).frame();
    let not_vip = Spec::tcp(CLIENT4, 40_000, "198.51.100.99", 443, ACK).frame();
    type Case = (&'static str, Box<dyn Fn(u16) -> f64>);
    let tx = tx_only.as_raw_fd();
    let (v4a, v6a, v4b, nv, nv2) = (v4.clone(), v6.clone(), v4.clone(), not_vip.clone(), not_vip);
    let cases: Vec<Case> = vec![
        (
            "director: TCP/IPv4 to a VIP, IPIP (live)",
            Box::new(move |p| test_run(director, &with_port(&v4a, 34, p), Some(up0), REPEAT, true)),
        ),
        (
            "director: TCP/IPv6 to a VIP, IPIP (live)",
            Box::new(move |p| test_run(director, &with_port(&v6a, 54, p), Some(up0), REPEAT, true)),
        ),
        (
            "peer: XDP_TX only, same IPv4 frame (live)",
            Box::new(move |p| test_run(tx, &with_port(&v4b, 34, p), Some(up0), REPEAT, true)),
        ),
        (
            "director: not a VIP, XDP_PASS (repeat)",
            Box::new(move |p| test_run(director, &with_port(&nv, 34, p), Some(up0), REPEAT, false)),
        ),
        (
            "node TC program: not a Service (repeat)",
            Box::new(move |p| test_run(tc, &with_port(&nv2, 34, p), None, REPEAT, false)),
        ),
    ];
    let before = d.dp.maps().counters().unwrap()[&DirReason::EncapIpip].packets;
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..ROUNDS {
        let mut line = Vec::new();
        for ((_, run), out) in cases.iter().zip(&mut results) {
            let sum: f64 = (0..FLOWS).map(|i| run(1024 + i * 1013)).sum();
            let mean = sum / f64::from(FLOWS);
            line.push(format!("{mean:.0}"));
            out.push(mean);
        }
        println!("round {round}: {} ns", line.join(" / "));
    }
    let peer = median(results[2].clone());
    let tc_ns = median(results[4].clone());
    println!(
        "\nper-packet cost, median of {ROUNDS} rounds x {FLOWS} flows x {REPEAT} runs \
         (BPF_PROG_TEST_RUN mean duration):"
    );
    for ((case, _), r) in cases.iter().zip(&results) {
        let m = median(r.clone());
        println!(
            "  {case:<44} {m:>6.0} ns   x{:.2} of XDP_TX only, {:>+5.0} ns over it, x{:.2} of \
             the node's TC program",
            m / peer,
            m - peer,
            m / tc_ns
        );
    }
    let sent = d.dp.maps().counters().unwrap()[&DirReason::EncapIpip].packets - before;
    let expected = u64::from(REPEAT) * u64::from(FLOWS) * 2 * ROUNDS as u64;
    assert_eq!(
        sent,
        expected,
        "every VIP packet was encapsulated: {:?}",
        d.dp.maps().counters().unwrap()
    );
}
