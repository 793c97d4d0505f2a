//! connect() to a frontend (translated by the cgroup program) against connect() straight to the
//! backend, in the same run, same netns and same cgroup (so both pay for the program; the
//! direct case pays only for the frontend lookup miss). Needs root.
//!
//! `cargo bench -p switchyard-bpf --bench connect` prints the mean per connect of each round
//! and the median ratio. Rounds alternate direct/translated to spread noise over both.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use switchyard_bpf::abi::PROTO_TCP;

const ROUNDS: usize = 7;
const CONNECTS: u32 = 3000;

fn ns_per_connect(lines: &[String]) -> u64 {
    let line = lines.iter().find(|l| l.starts_with("bench-tcp")).unwrap();
    assert_eq!(field(line, "failures"), Some("0"), "{line}");
    field(line, "ns_per_connect").unwrap().parse().unwrap()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if !switchyard_lab::require_root("bench connect") {
        return;
    }
    let mut f = Fixture::new("bench");
    // One backend, so both cases connect to the very same listener.
    f.frontend(1, "10.96.0.10", 80, PROTO_TCP, 0, &V4_BACKENDS[..1]);
    let (mut direct, mut translated) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let lines = f.probe(&[
            "tcp-server=127.0.0.2:8080=b1",
            &format!("bench-tcp=127.0.0.2:8080*{CONNECTS}"),
        ]);
        let d = ns_per_connect(&lines);
        let lines = f.probe(&[
            "tcp-server=127.0.0.2:8080=b1",
            &format!("bench-tcp=10.96.0.10:80*{CONNECTS}"),
        ]);
        let t = ns_per_connect(&lines);
        println!("round {round}: direct {d} ns/connect, frontend {t} ns/connect");
        direct.push(d as f64);
        translated.push(t as f64);
    }
    let (d, t) = (median(direct), median(translated));
    println!(
        "connect() over loopback, {CONNECTS} per round, median of {ROUNDS} rounds: \
         direct to backend {d:.0} ns, to frontend {t:.0} ns, ratio {:.3} (+{:.0} ns)",
        t / d,
        t - d
    );
}
