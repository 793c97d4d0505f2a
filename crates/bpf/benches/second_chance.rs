//! What the second chance costs a node per packet, from BPF_PROG_TEST_RUN's own clock (root).
//!
//! The decapsulation program strips the outer headers in place, so a plain `repeat` would run
//! it again on the inner packet (not encapsulated: a different, cheaper path). Every case is
//! therefore one run per call (`repeat = 1`): each figure includes the same per-call timer
//! reads, and the differences between cases are the program's. The peers are the plain
//! decapsulation path in the same run: GUE without private data, the same TCP (UDP) packet.
//!
//! `sudo cargo bench -p switchyard-bpf --bench second_chance` (or `cargo test ... --bench
//! second_chance`: the durations are the kernel's, the Rust profile does not enter them)
//! prints ns per packet per case (median of ROUNDS rounds of RUNS calls each) and the
//! difference to the peer.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use switchyard_bpf::decap::DecapReason;
use switchyard_testing::{director_fixture::*, frames::*};

const ROUNDS: usize = 7;
const RUNS: u32 = 20_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !switchyard_lab::require_root("bench second_chance") {
        return;
    }
    let node = DecapNode::new("bench-second-chance");
    let this = "10.0.0.3";
    let prev = prev_option("10.0.0.2".parse().unwrap(), 0);
    let inner = |sport: u16, flags: u8| {
        without_ethernet(&Spec::tcp(CLIENT4, sport, VIP4, 80, flags).frame())
    };
    let udp = |sport: u16| without_ethernet(&Spec::udp(CLIENT4, sport, VIP4, 53).frame());
    let on_prev = prev_option(this.parse().unwrap(), 1);
    let returned = prev_option("10.0.0.2".parse().unwrap(), 2);
    node.hold(CLIENT4, 40_000, VIP4, 80);
    node.hold_proto(CLIENT4, 5_000, VIP4, 53, UDP);
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "peer: GUE, no previous node (plain decap)",
            gue(DIRECTOR4, this, &[], &inner(40_000, ACK)),
            u32::MAX,
        ),
        (
            "previous node, flow held (conntrack hit)",
            gue(DIRECTOR4, this, &prev, &inner(40_000, ACK)),
            u32::MAX,
        ),
        ("previous node, SYN (kept)", gue(DIRECTOR4, this, &prev, &inner(40_001, SYN)), u32::MAX),
        ("previous node, not held (re-sent)", gue(DIRECTOR4, this, &prev, &inner(40_002, ACK)), 7),
        (
            "peer: GUE, UDP, no previous node (plain decap)",
            gue(DIRECTOR4, this, &[], &udp(5_000)),
            u32::MAX,
        ),
        (
            "UDP, previous node, flow held (conntrack hit)",
            gue(DIRECTOR4, this, &prev, &udp(5_000)),
            u32::MAX,
        ),
        (
            "UDP, not held: re-sent to the previous node",
            gue(DIRECTOR4, this, &prev, &udp(5_001)),
            7,
        ),
        (
            "UDP on the previous node, not held: returned",
            gue(DIRECTOR4, this, &on_prev, &udp(5_001)),
            7,
        ),
        (
            "UDP returned (hops 2): a new flow, kept",
            gue(DIRECTOR4, this, &returned, &udp(5_001)),
            u32::MAX,
        ),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..ROUNDS {
        let mut line = Vec::new();
        for ((name, frame, expect), out) in cases.iter().zip(&mut results) {
            let mut sum = 0.0;
            for _ in 0..RUNS {
                let (rc, _, ns) = node.run_timed(frame);
                assert_eq!(rc, *expect, "{name}");
                sum += ns;
            }
            let mean = sum / f64::from(RUNS);
            line.push(format!("{mean:.0}"));
            out.push(mean);
        }
        println!("round {round}: {} ns", line.join(" / "));
    }
    let peer = median(results[0].clone());
    let udp_peer = median(results[4].clone());
    println!(
        "\nnode decapsulation per packet, median of {ROUNDS} rounds x {RUNS} calls \
         (BPF_PROG_TEST_RUN, repeat 1):"
    );
    for (i, ((case, _, _), r)) in cases.iter().zip(&results).enumerate() {
        let m = median(r.clone());
        let (p, of) = if i < 4 { (peer, "TCP") } else { (udp_peer, "UDP") };
        println!(
            "  {case:<48} {m:>6.0} ns   x{:.2} of plain {of} decap, {:>+5.0} ns over it",
            m / p,
            m - p
        );
    }
    let counters = node.dp.maps().counters().unwrap();
    let per_case = u64::from(RUNS) * ROUNDS as u64;
    assert_eq!(counters[&DecapReason::ScKept].packets, 3 * per_case, "{counters:?}");
    assert_eq!(counters[&DecapReason::ScForwarded].packets, 2 * per_case, "{counters:?}");
    assert_eq!(counters[&DecapReason::ScReturned].packets, per_case, "{counters:?}");
    assert_eq!(counters[&DecapReason::ScNewFlow].packets, per_case, "{counters:?}");
}
