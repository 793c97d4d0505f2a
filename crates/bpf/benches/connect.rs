//! connect() to a frontend (translated by the cgroup program) against connect() straight to the
//! backend, in the same run, same netns and same cgroup (so both pay for running the program;
//! the direct case only for a frontend lookup miss). Needs root.
//!
//! UDP connect() is measured because it sends no packet: the figure is the syscall path plus
//! the program (lookup, random pick, reverse-translation write), without a handshake whose
//! timing depends on how fast a server thread accepts (on a loaded machine, TCP rounds were
//! dominated by 1 s SYN retransmits and said nothing about the program).
//!
//! `cargo bench -p switchyard-bpf --bench connect` prints each round and the median ratio.
//! Rounds alternate direct/translated to spread noise over both.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use switchyard_testing::socket_probe::*;

/// The probe binary of this crate.
const PROBE: &str = env!("CARGO_BIN_EXE_sy-sockprobe");
use switchyard_bpf::abi::PROTO_UDP;

const ROUNDS: usize = 9;
const UDP_CONNECTS: u32 = 20_000;

fn ns_per_connect(lines: &[String]) -> u64 {
    let line = lines.iter().find(|l| l.starts_with("bench-")).unwrap();
    assert_eq!(field(line, "failures"), Some("0"), "{line}");
    field(line, "ns_per_connect").unwrap().parse().unwrap()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Alternating rounds of `direct` and `frontend` ops; returns the medians (ns per connect).
fn compare(f: &Fixture, what: &str, setup: &[&str], direct: &str, frontend: &str) -> (f64, f64) {
    let (mut ds, mut ts) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let run = |op: &str| {
            let mut ops = setup.to_vec();
            ops.push(op);
            ns_per_connect(&f.probe(&ops))
        };
        let (d, t) = (run(direct), run(frontend));
        println!("{what} round {round}: direct {d} ns, frontend {t} ns");
        ds.push(d as f64);
        ts.push(t as f64);
    }
    let (d, t) = (median(ds), median(ts));
    println!(
        "{what}, median of {ROUNDS} rounds: direct to backend {d:.0} ns, to frontend {t:.0} ns, \
         ratio {:.3} ({:+.0} ns)",
        t / d,
        t - d
    );
    (d, t)
}

fn main() {
    if !switchyard_lab::require_root("bench connect") {
        return;
    }
    let mut f = Fixture::new("bench", PROBE);
    // One backend, so both cases reach the very same address.
    f.frontend(2, "10.96.0.10", 53, PROTO_UDP, 0, &V4_BACKENDS[..1]);
    compare(
        &f,
        &format!("UDP socket+connect ({UDP_CONNECTS} per round, no packets)"),
        &[],
        &format!("bench-udp-connect=127.0.0.2:8080*{UDP_CONNECTS}"),
        &format!("bench-udp-connect=10.96.0.10:53*{UDP_CONNECTS}"),
    );
}
