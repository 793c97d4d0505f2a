//! TCP connect() to a ClusterIP against connect() straight to the pod behind it, end to end in
//! the lab: `switchyard agent` on every node, the client in a pod on node1, the only endpoint a
//! pod on node2 (a real handshake across the router). Both targets are measured alternately in
//! the same client run (`switchyard lab client latency --peer`), so drift and load hit both.
//!
//! `cargo bench -p switchyard --bench clusterip_connect` (root) prints each round and the
//! medians. crates/bpf's `connect` bench isolates the program's cost (UDP connect, no packet).

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use std::process::Command;

use switchyard_lab::tools::clients::LatencyReport;
use switchyard_testing::e2e::*;

const ROUNDS: usize = 7;
const CONNECTS: usize = 400;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if !switchyard_lab::require_root("bench clusterip_connect") {
        return;
    }
    let cluster = Cluster::up();
    let ip = v4("10.96.9.10");
    cluster.apply_and_wait(
        "svc.yaml",
        &cluster.service("svc", &[ip], 80, "", &[("b1", State::Ready)]),
    );
    let clusterip = at(ip, 80);
    let pod = at(cluster.pod_ip("b1", false), ECHO_PORT);
    cluster.eventually("the Service answers", || {
        cluster.client("a1", "tcp", clusterip, 1).summary.errors.is_empty()
    });

    let (mut to_service, mut to_pod) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut command = Command::new(&*BIN);
        command.args(["lab", "client", "latency", "--target", &clusterip.to_string()]).args([
            "--peer",
            &pod.to_string(),
            "--count",
            &CONNECTS.to_string(),
        ]);
        let output = cluster.lab.output_in("a1", command).unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let reports: Vec<LatencyReport> = text
            .lines()
            .filter(|l| !l.contains("latency-ratio"))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let [service, direct] = [&reports[0], &reports[1]];
        assert_eq!((service.failures, direct.failures), (0, 0), "{text}");
        println!(
            "round {round}: ClusterIP p50 {} us mean {:.1} us | pod p50 {} us mean {:.1} us",
            service.p50_us, service.mean_us, direct.p50_us, direct.mean_us
        );
        to_service.push(service.p50_us as f64);
        to_pod.push(direct.p50_us as f64);
    }
    let (s, d) = (median(to_service), median(to_pod));
    println!(
        "TCP connect(), {CONNECTS} per target per round, median of {ROUNDS} rounds: \
         to the pod {d:.0} us, to the ClusterIP {s:.0} us (p50), ratio {:.3} \
         (means are dominated by the odd 1 s SYN retransmit on a loaded machine)",
        s / d
    );
}
