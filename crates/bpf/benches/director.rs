//! Per-packet cost of the director's XDP program, from BPF_PROG_TEST_RUN's own clock (root).
//!
//! Every case runs the program once per fresh copy of a crafted frame (repeat = 1: the program
//! grows the frame, so a repeated run on one buffer would measure a different packet) and
//! averages the kernel-reported durations; the timer reads around a single run are in every
//! case alike. Peers in the same run: the same program on a packet for no VIP (parse and one
//! lookup), and the node's TC per-packet program (`sy_nodeport_ingress`) on a packet that is no
//! Service's, both measured the same way.
//!
//! `sudo cargo bench -p switchyard-bpf --bench director` prints ns per packet per case, the
//! median of ROUNDS rounds, and ratios to the peers.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use switchyard_testing::{director_fixture, frames};

use aya::programs::{TestRun, TestRunOptions};
use director_fixture::*;
use frames::*;
use switchyard_bpf::{
    Datapath, LoadOptions,
    director::{DirReason, ENCAP_GUE},
    nodeport::{PacketDatapath, PacketMapSizes, PacketSettings},
};

const ROUNDS: usize = 7;
const RUNS: u32 = 20_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !switchyard_lab::require_root("bench director") {
        return;
    }
    // The fixture enters a private network namespace with the director's uplink.
    let mut d = Director::new("bench-director", ENCAP_GUE);
    d.vip(1, VIP4, 80, TCP, &[1, 2, 3]);
    d.vip(2, VIP6, 80, TCP, &[5]);

    // The node's per-packet program in its own bpffs, for the TC peer.
    let bpf = switchyard_testing::BpfDir::new("bench-director-tc");
    let mut options = LoadOptions::new(bpf.path());
    options.sizes = switchyard_testing::socket_probe::small_sizes();
    options.maglev_table_size = 251;
    let _sock = Datapath::load(&options).unwrap();
    let pkt = PacketDatapath::load(&options, PacketMapSizes::default(), &PacketSettings::default())
        .unwrap();
    let tc_ns = |frame: &[u8]| {
        let mut out = vec![0u8; 2048];
        let r = pkt
            .program("sy_nodeport_ingress")
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .unwrap();
        r.duration.as_nanos() as f64
    };

    let v4 = Spec::tcp(CLIENT4, 40_000, VIP4, 80, ACK).frame();
    let v6 = Spec::tcp(CLIENT6, 40_000, VIP6, 80, ACK).frame();
    let not_vip = Spec::tcp(CLIENT4, 40_000, "198.51.100.99", 443, ACK).frame();
    let cases = [
        "director: TCP/IPv4 to a VIP, GUE",
        "director: TCP/IPv6 to a VIP, GUE",
        "director: not a VIP (XDP_PASS)",
        "node TC program: not a Service",
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..ROUNDS {
        let mut sums = [0f64; 4];
        for i in 0..RUNS {
            // Vary the source port so the flows spread over the table.
            let port = 1024 + (i % 60_000) as u16;
            let mut a = v4.clone();
            a[34..36].copy_from_slice(&port.to_be_bytes());
            let mut b = v6.clone();
            b[54..56].copy_from_slice(&port.to_be_bytes());
            sums[0] += d.run_timed(&a).2;
            sums[1] += d.run_timed(&b).2;
            sums[2] += d.run_timed(&not_vip).2;
            sums[3] += tc_ns(&not_vip);
        }
        let per: Vec<f64> = sums.iter().map(|s| s / f64::from(RUNS)).collect();
        println!(
            "round {round}: {}",
            per.iter().map(|n| format!("{n:.0}")).collect::<Vec<_>>().join(" / ") + " ns"
        );
        for (r, n) in results.iter_mut().zip(per) {
            r.push(n);
        }
    }
    let pass = median(results[2].clone());
    let tc = median(results[3].clone());
    println!(
        "\nper-packet cost, median of {ROUNDS} rounds x {RUNS} runs (BPF_PROG_TEST_RUN duration):"
    );
    for (case, r) in cases.iter().zip(&results) {
        let m = median(r.clone());
        println!(
            "  {case:<38} {m:>6.0} ns   x{:.2} of not-a-VIP, x{:.2} of the node's TC program",
            m / pass,
            m / tc
        );
    }
    let counters = d.dp.maps().counters().unwrap();
    let sent = counters[&DirReason::EncapGue].packets;
    let expected = u64::from(RUNS) * 2 * ROUNDS as u64;
    assert_eq!(sent, expected, "every VIP packet was encapsulated: {counters:?}");
}
