//! Per-packet cost of DSR (issue 20) against SNAT, from BPF_PROG_TEST_RUN's own clock (root),
//! in one run on one datapath: `--nodeport-mode dsr` with two remote backends, one whose node
//! is known (its flows are encapsulated) and one whose node is not (its flows are SNATed), so
//! both paths run the same program with the same maps; a route with a known neighbour towards
//! both, so both end in a redirect. On the backend's node: the decapsulation of a DSR packet
//! (conntrack refreshed) against a director's plain GUE packet.
//!
//! `cargo bench -p switchyard-bpf --bench dsr` prints ns per packet per case, the median of
//! ROUNDS rounds of RUNS runs each (repeat = 1: the programs rewrite the frame), and ratios.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use aya::programs::{TestRun, TestRunOptions};
use switchyard_bpf::{abi::*, decap::DecapDatapath, nodeport::PacketSettings};
use switchyard_testing::{frames::*, nodeport_fixture::*};

const ROUNDS: usize = 7;
const RUNS: u32 = 20_000;

/// One BPF_PROG_TEST_RUN of a TC program on a fresh copy of `frame`: its duration.
fn run_ns(program: &aya::programs::SchedClassifier, frame: &[u8]) -> f64 {
    let mut out = vec![0u8; 2048];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .unwrap();
    result.duration.as_nanos() as f64
}

fn run_tc(tc: &Tc, frame: &[u8]) -> f64 {
    run_ns(tc.pkt.program(INGRESS).unwrap(), frame)
}

fn run_decap_ns(dp: &DecapDatapath, frame: &[u8]) -> f64 {
    run_ns(dp.program().unwrap(), frame)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !switchyard_lab::require_root("bench dsr") {
        return;
    }
    // On a thread of its own: the fixture moves it into a private network namespace (and
    // refuses to configure the process's, the host's).
    std::thread::spawn(bench).join().unwrap();
}

fn bench() {
    let settings =
        PacketSettings { dsr_port: Some(6080), snat_ports: 32_768..=60_999, ..settings() };
    let mut tc = Tc::new("bench-dsr", &settings);
    sh("ip link set lo up && ip link add sy-nodes type veth peer name sy-nodes-peer \
        && ip link set sy-nodes-peer up && ip link set sy-nodes up \
        && ip addr add 10.99.0.1/24 dev sy-nodes \
        && ip route add 10.244.0.0/16 via 10.99.0.2 \
        && ip neigh add 10.99.0.2 lladdr 02:00:00:00:99:02 dev sy-nodes nud permanent \
        && echo 1 > /proc/sys/net/ipv4/conf/all/forwarding");
    // NodePort 30081 -> a backend whose node is known (DSR); 30082 -> one whose node is not
    // (SNAT). Both reached through 10.99.0.2.
    tc.frontend(1, None, AF_INET, 30081, TCP, FE_NODEPORT, &[(1, "10.244.2.9", 8080, 0)]);
    tc.frontend(2, None, AF_INET, 30082, TCP, FE_NODEPORT, &[(2, "10.244.3.9", 8080, 0)]);
    tc.dsr_nodes(&[("10.244.2.9", "10.99.0.2")]);
    let client = "192.0.2.7";
    let not_service = Spec::tcp(client, 40000, "198.51.100.99", 443, ACK).frame();
    let dsr = Spec::tcp(client, 40000, NODE4, 30081, ACK).frame();
    let snat = Spec::tcp(client, 40000, NODE4, 30082, ACK).frame();
    // The backend's node: its decapsulation on the same maps (another flow's entries).
    let decap = tc.decap(&["10.99.0.50"], &["10.99.0.1"]);
    let inner = without_ethernet(&Spec::tcp(client, 40001, "10.244.1.5", 8080, ACK).frame());
    let dsr_in =
        gue_dsr_frame(ip("10.99.0.1"), ip(NODE4), 0xc123, 6080, ip("10.0.0.9"), 30081, &inner);
    let mut plain = vec![0xc1, 0x23];
    plain.extend_from_slice(&6080u16.to_be_bytes());
    plain.extend_from_slice(&((8 + 4 + inner.len()) as u16).to_be_bytes());
    plain.extend_from_slice(&[0, 0, 0, 4, 0, 0]);
    plain.extend_from_slice(&inner);
    let director_in = ip_frame(ip("10.99.0.50"), ip(NODE4), UDP, &plain, true);
    // The established flows' entries (again after every round's clearing, untimed).
    let (dsr_syn, snat_syn) = (
        Spec::tcp(client, 40000, NODE4, 30081, SYN).frame(),
        Spec::tcp(client, 40000, NODE4, 30082, SYN).frame(),
    );
    let prime = |tc: &Tc| {
        for f in [&dsr_syn, &snat_syn] {
            run_tc(tc, f);
        }
        run_decap_ns(&decap, &dsr_in);
    };
    prime(&tc);

    let cases = [
        "not a Service (peer)",
        "established, SNAT (ct hit)",
        "established, DSR (ct hit + GUE)",
        "new flow, SNAT",
        "new flow, DSR",
        "decap: director GUE",
        "decap: DSR (conntrack refreshed)",
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut port = 1024u16;
    for round in 0..ROUNDS {
        let mut sums = [0f64; 7];
        for _ in 0..RUNS {
            sums[0] += run_tc(&tc, &not_service);
            sums[1] += run_tc(&tc, &snat);
            sums[2] += run_tc(&tc, &dsr);
            port = if port == u16::MAX { 1024 } else { port + 1 };
            sums[3] += run_tc(&tc, &Spec::tcp("192.0.2.8", port, NODE4, 30082, SYN).frame());
            sums[4] += run_tc(&tc, &Spec::tcp("192.0.2.9", port, NODE4, 30081, SYN).frame());
            sums[5] += run_decap_ns(&decap, &director_in);
            sums[6] += run_decap_ns(&decap, &dsr_in);
        }
        let per: Vec<f64> = sums.iter().map(|s| s / f64::from(RUNS)).collect();
        println!(
            "round {round}: {}",
            per.iter().map(|n| format!("{n:.0}")).collect::<Vec<_>>().join(" / ") + " ns"
        );
        for (r, n) in results.iter_mut().zip(per) {
            r.push(n);
        }
        // Untimed: forget this round's flows, so every round claims SNAT ports from an equally
        // empty range.
        let maps = tc.pkt.maps_mut();
        let ct: Vec<_> = maps.ct.keys().map(Result::unwrap).collect();
        for k in ct {
            maps.ct.remove(&k).unwrap();
        }
        let nat: Vec<_> = maps.nat.keys().map(Result::unwrap).collect();
        for k in nat {
            maps.nat.remove(&k).unwrap();
        }
        prime(&tc);
    }
    let m: Vec<f64> = results.iter().map(|r| median(r.clone())).collect();
    println!(
        "\nper-packet cost, median of {ROUNDS} rounds x {RUNS} runs (BPF_PROG_TEST_RUN duration):"
    );
    for (case, n) in cases.iter().zip(&m) {
        println!("  {case:<36} {n:>7.0} ns   x{:.2} of the peer", n / m[0]);
    }
    println!(
        "  DSR / SNAT, established: x{:.2}; new flow: x{:.2}; decap DSR / director: x{:.2}",
        m[2] / m[1],
        m[4] / m[3],
        m[6] / m[5]
    );
    let counters = tc.pkt.maps().counters().unwrap();
    let drops: u64 = counters.iter().filter(|(r, _)| r.is_drop()).map(|(_, c)| c.packets).sum();
    assert_eq!(drops, 0, "no packet was dropped: {counters:?}");
    assert!(counters[&switchyard_bpf::nodeport_abi::PacketReason::DnatDsr].packets > 0);
}
