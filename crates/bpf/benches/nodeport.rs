//! Per-packet cost of the TC programs, from BPF_PROG_TEST_RUN's own clock (needs root).
//!
//! Each case runs the program on a fresh copy of a crafted frame (repeat = 1: the program
//! rewrites the frame, so repeating on one buffer would measure the translated packet, not the
//! original) and averages the kernel-reported durations over many runs; the kernel's timer
//! reads around a single run are included in every case alike. The peer in the same run is a
//! packet that is no Service's (parse plus the three lookups every packet pays).
//!
//! `cargo bench -p switchyard-bpf --bench nodeport` prints ns per packet per case, the median of
//! ROUNDS rounds, and the ratio to the peer.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use switchyard_testing::frames;

use aya::programs::{TestRun, TestRunOptions};
use frames::*;
use switchyard_bpf::{
    Datapath, LoadOptions,
    abi::*,
    nodeport::{PacketDatapath, PacketMapSizes, PacketSettings},
};
use switchyard_testing::BpfDir;
use switchyard_testing::socket_probe::small_sizes;

const ROUNDS: usize = 7;
const RUNS: u32 = 20_000;

fn run_ns(pkt: &PacketDatapath, program: &'static str, frame: &[u8]) -> f64 {
    let prog = pkt.program(program).unwrap();
    let mut out = vec![0u8; 2048];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .unwrap();
    r.duration.as_nanos() as f64
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

/// The kernel's own average over `repeat` runs on one buffer, for a packet the program leaves
/// unchanged: the timer overhead of single runs is spread over the repeats.
fn repeat_ns(pkt: &PacketDatapath, program: &'static str, frame: &[u8], repeat: u32) -> f64 {
    let prog = pkt.program(program).unwrap();
    let mut out = vec![0u8; 2048];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        })
        .unwrap();
    r.duration.as_nanos() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !switchyard_lab::require_root("bench nodeport") {
        return;
    }
    // A private network namespace: route lookups find nothing and never touch the host's.
    switchyard_testing::nodeport_fixture::enter_private_netns();
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
    let mut pkt = PacketDatapath::load(&options, sizes, &settings).unwrap();
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

    let mut next_port = 1024u16;
    let mut fresh = |dport: u16| {
        next_port = if next_port == u16::MAX { 1024 } else { next_port + 1 };
        Spec::tcp("192.0.2.8", next_port, "10.0.0.1", dport, SYN).frame()
    };

    let cases = [
        "not a Service (peer)",
        "established flow (ct hit + DNAT)",
        "reply (egress revnat)",
        "new flow, local backend",
        "new flow, remote backend (SNAT)",
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..ROUNDS {
        let mut sums = [0f64; 5];
        run_ns(&pkt, "sy_nodeport_ingress", &established_syn);
        for _ in 0..RUNS {
            sums[0] += run_ns(&pkt, "sy_nodeport_ingress", &not_service);
            sums[1] += run_ns(&pkt, "sy_nodeport_ingress", &established);
            sums[2] += run_ns(&pkt, "sy_nodeport_egress", &reply);
        }
        // New flows: distinct client ports, so every packet creates conntrack and NAT entries.
        let frames_local: Vec<_> = (0..RUNS).map(|_| fresh(30080)).collect();
        let frames_snat: Vec<_> = (0..RUNS).map(|_| fresh(30081)).collect();
        for f in &frames_local {
            sums[3] += run_ns(&pkt, "sy_nodeport_ingress", f);
        }
        for f in &frames_snat {
            sums[4] += run_ns(&pkt, "sy_nodeport_ingress", f);
        }
        let per: Vec<f64> = sums.iter().map(|s| s / f64::from(RUNS)).collect();
        // Untimed: forget this round's flows, so every round allocates SNAT ports from an
        // equally empty range (a full range is measured by the exhaustion test, not here).
        clear_flows(&mut pkt);
        println!(
            "round {round}: {}",
            per.iter().map(|n| format!("{n:.0}")).collect::<Vec<_>>().join(" / ") + " ns"
        );
        for (r, n) in results.iter_mut().zip(per) {
            r.push(n);
        }
    }
    let peer = median(results[0].clone());
    println!(
        "\nper-packet cost, median of {ROUNDS} rounds x {RUNS} runs (BPF_PROG_TEST_RUN duration):"
    );
    for (case, r) in cases.iter().zip(&results) {
        let m = median(r.clone());
        println!("  {case:<36} {m:>7.0} ns   x{:.2} of the peer", m / peer);
    }
    let repeated: Vec<f64> = (0..ROUNDS)
        .map(|_| repeat_ns(&pkt, "sy_nodeport_ingress", &not_service, 1_000_000))
        .collect();
    println!(
        "  {:<36} {:>7.1} ns   (repeat = 1,000,000 on one buffer: timer overhead spread out)",
        "not a Service, repeated",
        median(repeated)
    );
    let counters = pkt.maps().counters().unwrap();
    let drops: u64 = counters.iter().filter(|(r, _)| r.is_drop()).map(|(_, c)| c.packets).sum();
    assert_eq!(drops, 0, "no packet was dropped during the benchmark: {counters:?}");
}
