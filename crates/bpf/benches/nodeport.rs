//! Per-packet cost of the per-packet programs (TC and XDP), from BPF_PROG_TEST_RUN's own clock
//! (needs root).
//!
//! Each case runs the program on a fresh copy of a crafted frame (repeat = 1: the program
//! rewrites the frame, so repeating on one buffer would measure the translated packet, not the
//! original) and averages the kernel-reported durations over many runs; the kernel's timer
//! reads around a single run are included in every case alike. The peer in the same run is a
//! packet that is no Service's (parse plus the lookups every packet pays).
//!
//! The bench's namespace routes the backends and the clients (a veth with permanent
//! neighbours), so a translated packet is forwarded as on a node: TC redirects it, XDP returns
//! XDP_REDIRECT (the first run of each forwarded case checks the verdict).
//!
//! `cargo bench -p switchyard-bpf --bench nodeport` prints ns per packet per case, the median of
//! ROUNDS rounds, and the ratio to the peer. With `SY_NODEPORT_BENCH_BASE=DIR` (a directory
//! holding another build's `nodeport.bpf.o` and `nodeport_xdp.bpf.o`: `scripts/nodeport-ab`)
//! both builds run on the same maps, alternating run by run, and each case also prints
//! new / base.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use switchyard_testing::frames;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use frames::*;
use switchyard_bpf::{
    Datapath, LoadOptions,
    abi::*,
    nodeport::{PacketDatapath, PacketMapSizes, PacketSettings},
    nodeport_xdp::XdpDatapath,
};
use switchyard_testing::BpfDir;
use switchyard_testing::nodeport_fixture::{TC_ACT_REDIRECT, XDP_PASS, XDP_REDIRECT, sh};
use switchyard_testing::socket_probe::small_sizes;

const ROUNDS: usize = 7;
const RUNS: u32 = 20_000;

/// One build's programs.
struct Build {
    pkt: PacketDatapath,
    xdp: XdpDatapath,
}

#[derive(Clone, Copy)]
enum Prog {
    Ingress,
    Egress,
    Xdp,
}

impl Build {
    fn tc(&self, name: &'static str) -> &SchedClassifier {
        self.pkt.program(name).unwrap()
    }

    /// One run: (kernel-reported ns, verdict).
    fn run(&self, prog: Prog, frame: &[u8], repeat: u32) -> (f64, u32) {
        let mut out = vec![0u8; 2048];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        };
        let r = match prog {
            Prog::Ingress => self.tc("sy_nodeport_ingress").test_run(opts),
            Prog::Egress => self.tc("sy_nodeport_egress").test_run(opts),
            Prog::Xdp => {
                let p: &Xdp = self.xdp.program().unwrap();
                p.test_run(opts)
            }
        }
        .unwrap();
        (r.duration.as_nanos() as f64, r.return_value)
    }
}

fn clear_flows(pkt: &mut PacketDatapath) {
    let maps = pkt.maps_mut();
    let ct: Vec<_> = maps.ct.keys().map(Result::unwrap).collect();
    for k in ct {
        maps.ct.remove(&k).unwrap();
    }
    let nat: Vec<_> = maps.nat.keys().map(Result::unwrap).collect();
    for k in nat {
        maps.nat.remove(&k).unwrap();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !switchyard_lab::require_root("bench nodeport") {
        return;
    }
    // On a thread of its own, moved into a private network namespace: routes of the bench's
    // own, never the host's (sh() refuses to run in the process's namespace).
    std::thread::spawn(bench).join().unwrap();
}

fn bench() {
    switchyard_testing::nodeport_fixture::enter_private_netns();
    // Backends (10.244.0.0/16) and, via a gateway, the clients (192.0.2.0/24) behind sy-out,
    // every neighbour permanent: route lookups succeed and the programs forward.
    sh("ip link set lo up \
        && ip link add sy-out type veth peer name sy-out-peer \
        && ip link set sy-out-peer up && ip link set sy-out up \
        && ip addr add 10.244.0.1/16 dev sy-out \
        && for a in 10.244.1.5 10.244.2.9 10.244.0.254; do ip neigh add $a lladdr 02:00:00:00:99:05 dev sy-out nud permanent; done \
        && ip route add 192.0.2.0/24 via 10.244.0.254 \
        && echo 1 > /proc/sys/net/ipv4/conf/all/forwarding");
    let bpf = BpfDir::new("bench-nodeport");
    let mut options = LoadOptions::new(bpf.path());
    options.sizes = small_sizes();
    options.maglev_table_size = 251;
    let mut sock = Datapath::load(&options).unwrap();
    let settings = PacketSettings {
        snat_ipv4: Some("10.0.0.1".parse().unwrap()),
        snat_ports: 32_768..=60_999,
        ..PacketSettings::default()
    };
    let sizes = PacketMapSizes { ct: 1 << 20, nat: 1 << 20 };
    let load = |tc: Option<&[u8]>, xdp: Option<&[u8]>| {
        let pkt = match tc {
            Some(o) => PacketDatapath::load_object(&options, sizes, &settings, o).unwrap(),
            None => PacketDatapath::load(&options, sizes, &settings).unwrap(),
        };
        let mut xdp = match xdp {
            Some(o) => XdpDatapath::load_object(&options, sizes, o).unwrap(),
            None => XdpDatapath::load(&options, sizes).unwrap(),
        };
        // BPF_PROG_TEST_RUN hands XDP frames to loopback; sy-out is where they leave.
        xdp.set_device(1, NODE_MAC).unwrap();
        let out = nix::net::if_::if_nametoindex("sy-out").unwrap();
        xdp.set_device(out, [0x02, 0, 0, 0, 0, 0x0e]).unwrap();
        Build { pkt, xdp }
    };
    let mut builds = vec![("new", load(None, None))];
    if let Some(dir) = std::env::var_os("SY_NODEPORT_BENCH_BASE") {
        let dir = std::path::PathBuf::from(dir);
        let tc = std::fs::read(dir.join("nodeport.bpf.o")).unwrap();
        let xdp = std::fs::read(dir.join("nodeport_xdp.bpf.o")).unwrap();
        builds.insert(0, ("base", load(Some(&tc), Some(&xdp))));
        println!("base: the objects in {}", dir.display());
    }
    let maps = sock.maps_mut();
    maps.node_addrs.insert(NodeAddrKey::new("10.0.0.1".parse().unwrap()), 0, 0).unwrap();
    let backends = [(1u32, "10.244.1.5", BE_LOCAL), (2, "10.244.2.9", 0)];
    for (id, ip, flags) in backends {
        maps.backends.insert(id, Backend::new(ip.parse().unwrap(), 8080, flags), 0).unwrap();
    }
    // NodePort 30080 -> local backend, 30081 -> remote backend (SNAT).
    for (fid, port, backend) in [(1u32, 30080u16, 1u32), (2, 30081, 2)] {
        maps.slots.insert(SlotKey { frontend_id: fid, slot: 0 }, backend, 0).unwrap();
        let key = FrontendKey::node_port(AF_INET, port, PROTO_TCP, SCOPE_DEFAULT);
        let fe = Frontend { id: fid, flags: FE_NODEPORT, backend_count: 1, affinity_timeout_s: 0 };
        maps.frontends.insert(key, fe, 0).unwrap();
    }

    let client = "192.0.2.7";
    let not_service = Spec::tcp(client, 40000, "198.51.100.99", 443, ACK).frame();
    let established = Spec::tcp(client, 40000, "10.0.0.1", 30080, ACK).frame();
    let established_syn = Spec::tcp(client, 40000, "10.0.0.1", 30080, SYN).frame();
    let reply = Spec::tcp("10.244.1.5", 8080, client, 40000, ACK).frame();
    let snat_established = Spec::tcp(client, 40001, "10.0.0.1", 30081, ACK).frame();
    let snat_syn = Spec::tcp(client, 40001, "10.0.0.1", 30081, SYN).frame();

    let mut next_port = 1024u16;
    let mut fresh = |dport: u16| {
        next_port = if next_port == u16::MAX { 1024 } else { next_port + 1 };
        Spec::tcp("192.0.2.8", next_port, "10.0.0.1", dport, SYN).frame()
    };

    // (case, program, frame, verdict the first run must return)
    let mut cases: Vec<(&str, Prog, Vec<u8>, Option<u32>)> = vec![
        ("TC: not a Service (peer)", Prog::Ingress, not_service.clone(), None),
        (
            "TC: established (ct hit + DNAT)",
            Prog::Ingress,
            established.clone(),
            Some(TC_ACT_REDIRECT),
        ),
        ("TC: reply (egress revnat)", Prog::Egress, reply, None),
        ("XDP: not a Service", Prog::Xdp, not_service, Some(XDP_PASS)),
        ("XDP: established (ct hit + DNAT)", Prog::Xdp, established, Some(XDP_REDIRECT)),
        (
            "XDP: established, SNAT (ct hit)",
            Prog::Xdp,
            snat_established.clone(),
            Some(XDP_REDIRECT),
        ),
        ("TC: established, SNAT (ct hit)", Prog::Ingress, snat_established, Some(TC_ACT_REDIRECT)),
    ];
    let start_flows = |build: &Build| {
        build.run(Prog::Ingress, &established_syn, 1);
        let mut out = vec![0u8; 2048];
        build
            .tc("sy_nodeport_ingress")
            .test_run(TestRunOptions {
                data_in: Some(&snat_syn),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .unwrap();
        let snat_port = u16::from_be_bytes([out[34], out[35]]);
        Spec::tcp("10.244.2.9", 8080, "10.0.0.1", snat_port, ACK).frame()
    };
    // The flows the established cases continue; the SNATed flow's reply (its SNAT port from
    // the translated SYN) is a case too.
    let snat_reply = start_flows(&builds[0].1);
    let reply_cases = [cases.len(), cases.len() + 1];
    cases.push(("XDP: reply, SNAT (nat hit)", Prog::Xdp, snat_reply.clone(), Some(XDP_REDIRECT)));
    cases.push(("TC: reply, SNAT (nat hit)", Prog::Ingress, snat_reply, Some(TC_ACT_REDIRECT)));
    for (name, build) in &builds {
        for (case, prog, frame, verdict) in &cases {
            if let Some(v) = verdict {
                let (_, got) = build.run(*prog, frame, 1);
                assert_eq!(got, *v, "{name}: {case}: verdict");
            }
        }
    }

    let new_flow_cases = ["TC: new flow, local backend", "TC: new flow, remote backend (SNAT)"];
    let names: Vec<&str> = cases.iter().map(|c| c.0).chain(new_flow_cases).collect();
    // results[build][case] = per-round means
    let mut results = vec![vec![Vec::new(); names.len()]; builds.len()];
    for round in 0..ROUNDS {
        let mut sums = vec![vec![0f64; names.len()]; builds.len()];
        // Which build runs first alternates run by run (the second finds caches warmer).
        let n = builds.len();
        let order = move |i: u32| (0..n).map(move |b| (b + i as usize) % n);
        for i in 0..RUNS {
            for (c, (_, prog, frame, _)) in cases.iter().enumerate() {
                for b in order(i) {
                    sums[b][c] += builds[b].1.run(*prog, frame, 1).0;
                }
            }
        }
        // New flows: distinct client ports, so every packet creates conntrack and NAT entries
        // (RUNS per case over all builds: the SNAT range holds 28,232 ports).
        let per_build = RUNS / builds.len() as u32;
        for (i, dport) in [30080u16, 30081].into_iter().enumerate() {
            for j in 0..per_build {
                for b in order(j) {
                    sums[b][cases.len() + i] += builds[b].1.run(Prog::Ingress, &fresh(dport), 1).0;
                }
            }
        }
        // Untimed: forget this round's flows (the established ones start again), so every
        // round allocates SNAT ports from an equally empty range.
        clear_flows(&mut builds[0].1.pkt);
        let snat_reply = start_flows(&builds[0].1);
        for c in reply_cases {
            cases[c].2 = snat_reply.clone();
        }
        for (b, (name, _)) in builds.iter().enumerate() {
            let per: Vec<f64> = sums[b]
                .iter()
                .enumerate()
                .map(|(c, s)| s / f64::from(if c < cases.len() { RUNS } else { per_build }))
                .collect();
            println!(
                "round {round} {name}: {}",
                per.iter().map(|n| format!("{n:.0}")).collect::<Vec<_>>().join(" / ") + " ns"
            );
            for (r, n) in results[b].iter_mut().zip(per) {
                r.push(n);
            }
        }
    }
    println!(
        "\nper-packet cost, median of {ROUNDS} rounds x {RUNS} runs (BPF_PROG_TEST_RUN duration):"
    );
    for (b, (name, _)) in builds.iter().enumerate() {
        let peer = median(results[b][0].clone());
        for (c, case) in names.iter().enumerate() {
            let m = median(results[b][c].clone());
            let mut line =
                format!("  {name:<4} {case:<38} {m:>7.0} ns   x{:.2} of the peer", m / peer);
            if b > 0 {
                let base = median(results[0][c].clone());
                line += &format!("   new/base x{:.3}", m / base);
            }
            println!("{line}");
        }
    }
    for (name, build) in &builds {
        let repeated: Vec<f64> =
            (0..ROUNDS).map(|_| build.run(Prog::Ingress, &cases[0].2, 1_000_000).0).collect();
        println!(
            "  {name:<4} {:<38} {:>7.1} ns   (repeat = 1,000,000 on one buffer: timer overhead spread out)",
            "TC: not a Service, repeated",
            median(repeated)
        );
    }
    let counters = builds[0].1.pkt.maps().counters().unwrap();
    let drops: u64 = counters.iter().filter(|(r, _)| r.is_drop()).map(|(_, c)| c.packets).sum();
    assert_eq!(drops, 0, "no packet was dropped during the benchmark: {counters:?}");
}
