//! Per-packet cost of the director's XDP program, from BPF_PROG_TEST_RUN's own clock (root).
//!
//! A plain `repeat` cannot measure an encapsulating program by itself: the kernel runs it again
//! on the frame it just grew, so the second run sees the outer header (not a VIP: XDP_PASS) and
//! a few runs later the headroom is gone. Two methods get around it; the output names the one
//! each case used (`method:` line, and `(live)` / `(restore)` in the case names):
//!
//! - **live frames** (`BPF_F_TEST_XDP_LIVE_FRAMES`): frames come from a page pool, the kernel
//!   puts the data pointers back before every run and really sends what the program returns
//!   with `XDP_TX` out of the director's uplink (a veth in the fixture's private network
//!   namespace whose peer takes nothing: the frame is freed at once). The kernel restores the
//!   pointers, not the bytes: the bytes the encapsulation wrote over the client's Ethernet header
//!   stay. With IPIP they are the tail of the outer header, ending in the last two bytes of the
//!   node's address, and the bench's nodes (10.0.8.0 and fd00::86dd) end in 08 00 and 86 dd: the
//!   Ethernet type of the inner packet's family, so every run sees the client's packet again.
//!   The peer is a program that only returns `XDP_TX` on the same frame, sent the same way.
//!   Needs `CAP_SYS_RESOURCE` on some kernels: a Firecracker guest's root (6.18) gets `EPERM`.
//! - **restore** (a plain `repeat`, wherever BPF_PROG_TEST_RUN works): every run enters
//!   `sy_bench_restore` (`c/bench_restore.bpf.c`), which puts the frame back as given (length by
//!   `bpf_xdp_adjust_head`, the 14 bytes of Ethernet header the encapsulation overwrote) and
//!   tail-calls the program under test; the peer is the same restore tail-calling a program that
//!   only returns `XDP_TX`. Nothing is transmitted (a plain run only returns the verdict), so
//!   the peer is cheaper than the live one; the difference to it is still the program's own work.
//!   The last run's output frame is checked against a single run of the director on the frame.
//!   This method also measures GUE (the default encapsulation), which live frames cannot: its
//!   header ends with its flags (0) over the client's Ethernet type.
//!
//! Where live frames work both methods run, and the director's cost over each method's peer is
//! printed side by side; the live method's packet for no VIP (it leaves the frame alone) and the
//! node's TC program run with a plain `repeat` on the program itself. `repeat` is large, so the
//! per-call syscall, copy and timer reads vanish from the figure (single runs, `repeat = 1`,
//! measured mostly those: the 723 ns of docs/director.md).
//!
//! `sudo cargo bench -p switchyard-bpf --bench director` (or `cargo test ... --bench
//! director`: the durations are the kernel's, the Rust profile does not enter them) prints ns
//! per packet per case, the median of ROUNDS rounds, and the ratios.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use std::os::fd::{AsFd as _, AsRawFd as _, RawFd};

use aya::{
    Ebpf, Pod,
    maps::{Array, MapData, ProgramArray},
    programs::{ProgramFd, Xdp},
};
use switchyard_testing::{director_fixture, frames};

use director_fixture::*;
use frames::*;
use switchyard_bpf::{
    Datapath, LoadOptions,
    director::{DirNode, DirReason, ENCAP_GUE, ENCAP_IPIP},
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
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

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

/// What one BPF_PROG_TEST_RUN call reports.
struct Run {
    /// The kernel's mean duration per run, ns.
    ns: f64,
    /// The last run's verdict (0 with live frames).
    retval: u32,
    /// The last run's output frame (plain runs, when asked for).
    out: Vec<u8>,
}

/// Runs `prog` `repeat` times on `frame` (`struct xdp_md` context arriving on `ifindex`, or
/// none). `live`: live frames (XDP only). `out`: the output frame is copied back.
fn try_test_run(
    prog: RawFd,
    frame: &[u8],
    ifindex: Option<u32>,
    repeat: u32,
    live: bool,
    out: bool,
) -> std::io::Result<Run> {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    if let Some(ifindex) = ifindex {
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    }
    let mut buf = vec![0u8; if out { 4096 } else { 0 }];
    let mut attr = TestAttr {
        prog_fd: prog as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..TestAttr::default()
    };
    if out {
        attr.data_out = buf.as_mut_ptr() as u64;
        attr.data_size_out = buf.len() as u32;
    }
    if ifindex.is_some() {
        attr.ctx_size_in = ctx.len() as u32;
        attr.ctx_in = ctx.as_ptr() as u64;
    }
    if live {
        attr.flags = LIVE_FRAMES;
        attr.batch_size = BATCH;
    }
    // SAFETY: BPF_PROG_TEST_RUN with pointers (frame, context, output buffer of
    // data_size_out bytes) that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestAttr,
            size_of::<TestAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(attr.data_size_out as usize);
    Ok(Run { ns: f64::from(attr.duration), retval: attr.retval, out: buf })
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

/// The frame `sy_bench_restore` puts back (`struct sy_bench_frame`).
#[repr(C)]
#[derive(Clone, Copy)]
struct BenchFrame {
    len: u32,
    pad: u32,
    head: [u8; 16],
}

// SAFETY: plain data with no padding (4 + 4 + 16 bytes), any bit pattern valid.
unsafe impl Pod for BenchFrame {}

/// How a case runs (module doc).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Live,
    Restore,
    /// A plain `repeat` on the program itself (it leaves the frame alone).
    Plain,
}

impl Method {
    /// How the output names it.
    fn tag(self) -> &'static str {
        match self {
            Method::Live => "live",
            Method::Restore => "restore",
            Method::Plain => "plain repeat",
        }
    }
}

/// The program a case measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Director,
    /// Returns `XDP_TX` only: the peer.
    Tx,
    /// The node's TC program (a plain repeat, no context).
    NodeTc,
}

struct Case {
    name: String,
    target: Target,
    method: Method,
    frame: Vec<u8>,
    /// Offset of the TCP source port (varied per flow).
    port_at: usize,
    /// The verdict every plain run must return.
    retval: Option<u32>,
    /// A VIP packet: counted as encapsulated, output checked against a single run.
    vip: bool,
    /// The encapsulation configured for the run (`ENCAP_*`).
    encap: u8,
}

/// The programs and the restore wrapper's state.
struct Bench {
    d: Director,
    /// The encapsulation `d` is configured with now.
    encap: u8,
    director: RawFd,
    director_prog: ProgramFd,
    /// The live peer (two instructions, `switchyard_lab::xdp_pass`).
    tx_live: RawFd,
    tc: RawFd,
    up0: u32,
    restore: RawFd,
    restore_tx: ProgramFd,
    frame_map: Array<MapData, BenchFrame>,
    next: ProgramArray<MapData>,
}

impl Bench {
    /// Configures the director with `encap` (the cached route entries stay: they hold no
    /// encapsulation).
    fn configure(&mut self, encap: u8) {
        if self.encap != encap {
            self.d.dp.maps_mut().set_config(&settings(encap)).unwrap();
            self.encap = encap;
        }
    }

    /// One call of `case` on flow `port`: ns per packet. Restore runs return the last output.
    fn run(&mut self, case: &Case, port: u16) -> Run {
        self.configure(case.encap);
        let frame = with_port(&case.frame, case.port_at, port);
        let run = match (case.method, case.target) {
            (Method::Live, Target::Director) => {
                try_test_run(self.director, &frame, Some(self.up0), REPEAT, true, false)
            }
            (Method::Live, Target::Tx) => {
                try_test_run(self.tx_live, &frame, Some(self.up0), REPEAT, true, false)
            }
            (Method::Plain, Target::Director) => {
                try_test_run(self.director, &frame, Some(self.up0), REPEAT, false, false)
            }
            (Method::Plain, Target::NodeTc) => {
                try_test_run(self.tc, &frame, None, REPEAT, false, false)
            }
            (Method::Restore, target @ (Target::Director | Target::Tx)) => {
                let mut head = [0u8; 16];
                head[..14].copy_from_slice(&frame[..14]);
                let len = frame.len() as u32;
                self.frame_map.set(0, BenchFrame { len, pad: 0, head }, 0).unwrap();
                let next =
                    if target == Target::Director { &self.director_prog } else { &self.restore_tx };
                self.next.set(0, next, 0).unwrap();
                try_test_run(self.restore, &frame, Some(self.up0), REPEAT, false, true)
            }
            _ => unreachable!("no such case"),
        }
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN, {}: {e}", case.name));
        if let Some(retval) = case.retval {
            assert_eq!(run.retval, retval, "{}: verdict", case.name);
        }
        run
    }
}

/// Whether BPF_PROG_TEST_RUN takes live frames here (one batch of the peer).
fn live_frames(tx: RawFd, frame: &[u8], up0: u32) -> std::io::Result<()> {
    try_test_run(tx, frame, Some(up0), BATCH, true, false).map(|_| ())
}

fn main() {
    if !switchyard_lab::require_root("bench director") {
        return;
    }
    // The fixture enters a private network namespace with the director's uplink up0.
    let mut d = Director::new("bench-director", ENCAP_IPIP);
    // Nodes whose addresses end in the Ethernet type of their family (live frames, above).
    for (id, ip) in [(6, "10.0.8.0"), (7, "fd00::86dd")] {
        sh(&format!("neigh replace {ip} lladdr 02:00:00:00:00:0a dev up0 nud permanent"));
        d.dp.maps_mut().put_node(id, DirNode::new(ip.parse().unwrap())).unwrap();
    }
    sh("route add 10.0.8.0/32 dev up0");
    d.vip(1, VIP4, 80, TCP, &[6]);
    d.vip(2, VIP6, 80, TCP, &[7]);
    let up0 = ifindex("up0");
    let director_prog = d.dp.program().unwrap().fd().unwrap().try_clone().unwrap();
    let director = director_prog.as_fd().as_raw_fd();
    let tx_only = switchyard_lab::xdp_pass::load_returning(switchyard_lab::xdp_pass::XDP_TX)
        .expect("loading the XDP_TX peer");

    // The restore wrapper and its peer (c/bench_restore.bpf.c).
    #[repr(C, align(8))]
    struct Aligned<B: ?Sized>(B);
    static RESTORE: &Aligned<[u8]> =
        &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/bench_restore.bpf.o")));
    let mut obj = Ebpf::load(&RESTORE.0).expect("loading bench_restore.bpf.o");
    for name in ["sy_bench_restore", "sy_bench_tx"] {
        let prog: &mut Xdp = obj.program_mut(name).unwrap().try_into().unwrap();
        prog.load().unwrap_or_else(|e| panic!("loading {name}: {e}"));
    }
    let prog_fd = |obj: &Ebpf, name: &str| -> ProgramFd {
        let prog: &Xdp = obj.program(name).unwrap().try_into().unwrap();
        prog.fd().unwrap().try_clone().unwrap()
    };
    let restore_prog = prog_fd(&obj, "sy_bench_restore");
    let restore_tx = prog_fd(&obj, "sy_bench_tx");
    let frame_map = Array::try_from(obj.take_map("sy_bench_frame").unwrap()).unwrap();
    let next = ProgramArray::try_from(obj.take_map("sy_bench_next").unwrap()).unwrap();

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

    let live = live_frames(tx_only.as_raw_fd(), &v4, up0);
    let mut methods = Vec::new();
    match &live {
        Ok(()) => {
            println!("method: live frames and restore (both work here: compared below)");
            methods.push(Method::Live);
        }
        Err(e) => println!("method: restore (live frames refused: {e})"),
    }
    methods.push(Method::Restore);

    // Per method: the two VIP cases, the peer, a packet for no VIP; with the restore method
    // also GUE (live frames cannot: GUE's header ends over the client's Ethernet type with
    // its flags, 0); then the node's TC program.
    let mut cases = Vec::new();
    for &m in &methods {
        // With live frames the packet for no VIP runs a plain repeat (it leaves the frame
        // alone); the verdicts of live runs are not reported.
        let (tx, not_vip_method) =
            if m == Method::Live { (None, Method::Plain) } else { (Some(XDP_TX), m) };
        let (d4, d6, p, nv) = (Target::Director, Target::Director, Target::Tx, Target::Director);
        let mut list = vec![
            ("director: TCP/IPv4 to a VIP, IPIP", d4, m, &v4, 34, tx, true, ENCAP_IPIP),
            ("director: TCP/IPv6 to a VIP, IPIP", d6, m, &v6, 54, tx, true, ENCAP_IPIP),
            ("peer: XDP_TX only, same IPv4 frame", p, m, &v4, 34, tx, false, ENCAP_IPIP),
            (
                "director: not a VIP, XDP_PASS",
                nv,
                not_vip_method,
                &not_vip,
                34,
                Some(XDP_PASS),
                false,
                ENCAP_IPIP,
            ),
        ];
        if m == Method::Restore {
            list.extend([
                ("director: TCP/IPv4 to a VIP, GUE", d4, m, &v4, 34, tx, true, ENCAP_GUE),
                ("director: TCP/IPv6 to a VIP, GUE", d6, m, &v6, 54, tx, true, ENCAP_GUE),
            ]);
        }
        for (name, target, method, frame, port_at, retval, vip, encap) in list {
            let name = format!("{name} ({})", method.tag());
            let frame = frame.clone();
            cases.push(Case { name, target, method, frame, port_at, retval, vip, encap });
        }
    }
    cases.push(Case {
        name: "node TC program: not a Service (plain repeat)".to_owned(),
        target: Target::NodeTc,
        method: Method::Plain,
        frame: not_vip.clone(),
        port_at: 34,
        retval: None,
        vip: false,
        encap: ENCAP_IPIP,
    });

    let mut bench = Bench {
        d,
        encap: ENCAP_IPIP,
        director,
        director_prog,
        tx_live: tx_only.as_raw_fd(),
        tc,
        up0,
        restore: restore_prog.as_fd().as_raw_fd(),
        restore_tx,
        frame_map,
        next,
    };
    let port = |i: u16| 1024 + i * 1013;
    // What the last restore run of each flow must leave: the director's output of a single
    // run for a VIP packet (encapsulated), the frame itself otherwise.
    let expected: Vec<Vec<Vec<u8>>> = cases
        .iter()
        .map(|c| {
            bench.configure(c.encap);
            (0..FLOWS)
                .map(|i| {
                    let frame = with_port(&c.frame, c.port_at, port(i));
                    if c.vip { bench.d.run(&frame).1 } else { frame }
                })
                .collect()
        })
        .collect();
    let encapsulated = |bench: &Bench| {
        let counters = bench.d.dp.maps().counters().unwrap();
        (counters[&DirReason::EncapIpip].packets, counters[&DirReason::EncapGue].packets)
    };
    let before = encapsulated(&bench);
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..ROUNDS {
        let mut line = Vec::new();
        for ((c, out), expected) in cases.iter().zip(&mut results).zip(&expected) {
            let mut sum = 0.0;
            for i in 0..FLOWS {
                let run = bench.run(c, port(i));
                if c.method == Method::Restore {
                    assert!(run.out == expected[usize::from(i)], "{}: output of flow {i}", c.name);
                }
                sum += run.ns;
            }
            let mean = sum / f64::from(FLOWS);
            line.push(format!("{mean:.0}"));
            out.push(mean);
        }
        println!("round {round}: {} ns", line.join(" / "));
    }
    let medians: Vec<f64> = results.iter().map(|r| median(r.clone())).collect();
    let tc_ns = medians[cases.len() - 1];
    // Each case against the peer of its method (the plain not-a-VIP case: the live peer).
    let peer_of = |m: Method| {
        let m = if m == Method::Plain { Method::Live } else { m };
        cases
            .iter()
            .zip(&medians)
            .find(|(c, _)| c.target == Target::Tx && c.method == m)
            .map(|(_, &ns)| ns)
    };
    println!(
        "\nper-packet cost, median of {ROUNDS} rounds x {FLOWS} flows x {REPEAT} runs \
         (BPF_PROG_TEST_RUN mean duration):"
    );
    for (c, &m) in cases.iter().zip(&medians) {
        match peer_of(c.method) {
            Some(peer) if c.target != Target::NodeTc => println!(
                "  {:<48} {m:>6.0} ns   x{:.2} of XDP_TX only, {:>+5.0} ns over it, x{:.2} of \
                 the node's TC program",
                c.name,
                m / peer,
                m - peer,
                m / tc_ns
            ),
            _ => println!("  {:<48} {m:>6.0} ns", c.name),
        }
    }
    if live.is_ok() {
        // The two methods side by side: the director's cost over each method's own peer.
        let over = |method: Method, at: usize| {
            let (c, m) = cases
                .iter()
                .zip(&medians)
                .filter(|(c, _)| c.method == method && c.vip && c.encap == ENCAP_IPIP)
                .nth(at)
                .unwrap();
            (c.name.as_str(), m - peer_of(method).unwrap())
        };
        println!("\nlive frames against restore, the director over its method's peer:");
        for at in 0..2 {
            let ((_, l), (name, r)) = (over(Method::Live, at), over(Method::Restore, at));
            println!(
                "  {name:<48} live {l:>+5.0} ns, restore {r:>+5.0} ns (restore / live x{:.2})",
                r / l
            );
        }
    }
    let after = encapsulated(&bench);
    let runs = |encap| {
        let n = cases.iter().filter(|c| c.vip && c.encap == encap).count() as u64;
        u64::from(REPEAT) * u64::from(FLOWS) * n * ROUNDS as u64
    };
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (runs(ENCAP_IPIP), runs(ENCAP_GUE)),
        "every VIP packet was encapsulated (IPIP, GUE): {:?}",
        bench.d.dp.maps().counters().unwrap()
    );
}
