//! 1,000 LoadBalancer IPs × 3 BGP sessions through the node agent, against BIRD on the lab
//! router: the agent on node1 peers with three router addresses (three BGPPeers selecting it);
//! the agent on node2 reads the same manifests but no BGPPeer selects it — the same-run peer
//! whose CPU and memory show what the agent costs without BGP. Prints the time from writing the
//! Services to BIRD holding 3,000 routes (and back to none after deleting them), both agents'
//! CPU time (all threads, /proc/PID/task/*/schedstat) and resident memory growth, and the
//! UPDATE messages each session sent.
//!
//! `cargo bench -p switchyard --bench bgp_scale` (root; `cargo test --bench` runs it unoptimised).

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_lab::tools::bird::{Bird, Neighbor, ROUTER_ASN};
use switchyard_lab::wait_until;
use switchyard_testing::e2e::*;

const SERVICES: usize = 1000;
const NODE_ASN: u32 = 64512;

/// CPU time of every thread of `pid`.
fn cpu(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let nanos: u64 = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// `SERVICES` LoadBalancer Services (no endpoints needed: externalTrafficPolicy Cluster is
/// announced from every node) on 198.18.x.y.
fn services() -> String {
    let mut text = String::new();
    for i in 0..SERVICES {
        let (hi, lo) = (i / 250, i % 250 + 1);
        let _ = write!(
            text,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: lb-{i}, namespace: scale}}\n\
             spec:\n  type: LoadBalancer\n  clusterIP: 10.97.{hi}.{lo}\n  ports:\n\
             \x20 - {{name: tcp, port: 80, protocol: TCP, targetPort: 8080, nodePort: {np}}}\n\
             status: {{loadBalancer: {{ingress: [{{ip: 198.18.{hi}.{lo}}}]}}}}\n",
            np = 30000 + i,
        );
    }
    text
}

fn main() {
    if !switchyard_lab::require_root("bench bgp_scale") {
        return;
    }
    let cluster = Cluster::with(&[("node1", &[]), ("node2", &[])]);
    let node1 = cluster.lab.node("node1").unwrap().clone();
    // Three sessions between the same two addresses, told apart by BIRD's port.
    let router: IpAddr = node1.router_ipv4.into();
    let ports = [179, 1791, 1792];
    let neighbors: Vec<Neighbor> = ports
        .iter()
        .map(|&port| Neighbor { port, ..Neighbor::new(router, node1.ipv4.into(), NODE_ASN) })
        .collect();
    let bird = Bird::start(&cluster.lab, &neighbors, 9).unwrap();
    let mut bgp = String::from(
        "---\napiVersion: switchyard.io/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: all}\nspec: {}\n",
    );
    for port in ports {
        let _ = write!(
            bgp,
            "---\napiVersion: switchyard.io/v1alpha1\nkind: BGPPeer\nmetadata: {{name: r{port}}}\n\
             spec: {{peerAddress: \"{router}\", peerPort: {port}, peerASN: {ROUTER_ASN}, myASN: {NODE_ASN},\n\
             \x20 nodeSelector: {{matchLabels: {{switchyard.io/bgp: \"on\"}}}}}}\n"
        );
    }
    let nodes = cluster.nodes_yaml().replacen(
        "metadata:\n  name: node1\n",
        "metadata:\n  name: node1\n  labels: {switchyard.io/bgp: \"on\"}\n",
        1,
    );
    cluster.apply("nodes.yaml", &nodes);
    cluster.apply("bgp.yaml", &bgp);
    let counted = || bird.birdc(&cluster.lab, &["show", "route", "count"]).unwrap();
    let report = || {
        let mut command = Command::new(&*BIN);
        command.arg("bgp").arg("--api-socket").arg(Agent::api_socket(&cluster.lab, "node1"));
        String::from_utf8(cluster.lab.output_in("node1", command).unwrap().stdout).unwrap()
    };
    let up =
        wait_until(Duration::from_secs(15), || report().matches(": established for").count() == 3);
    assert!(
        up,
        "sessions: {}\n{}",
        report(),
        bird.birdc(&cluster.lab, &["show", "protocols", "all"]).unwrap()
    );
    let pids = [cluster.agents[0].child.id(), cluster.agents[1].child.id()];
    let before: Vec<(Duration, u64)> = pids.iter().map(|&p| (cpu(p), rss_kib(p))).collect();

    let start = Instant::now();
    cluster.apply("scale.yaml", &services());
    let converged = wait_until(Duration::from_secs(60), || {
        counted().contains(&format!("{n} of {n} routes for {SERVICES} networks", n = 3 * SERVICES))
    });
    let announced = start.elapsed();
    assert!(converged, "BIRD did not learn {SERVICES} prefixes from 3 sessions: {}", counted());
    // Both agents have programmed the Services (their maps) by now or shortly; let them settle.
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<(Duration, u64)> = pids.iter().map(|&p| (cpu(p), rss_kib(p))).collect();
    let text = report();
    let updates: Vec<&str> = text.lines().filter(|l| l.contains("updates sent")).collect();

    let start = Instant::now();
    cluster.delete("scale.yaml");
    let gone = wait_until(Duration::from_secs(60), || counted().contains("0 of 0 routes"));
    let withdrawn = start.elapsed();
    assert!(gone, "withdrawals not seen: {}", counted());

    let delta = |i: usize| (after[i].0 - before[i].0, after[i].1 as i64 - before[i].1 as i64);
    let ((cpu_bgp, rss_bgp), (cpu_peer, rss_peer)) = (delta(0), delta(1));
    println!(
        "FIGURE {SERVICES} LB IPs x 3 sessions: Services written -> BIRD holds {} routes: {announced:?}",
        3 * SERVICES
    );
    println!("FIGURE deleted -> BIRD holds none: {withdrawn:?}");
    println!(
        "FIGURE agent CPU for the {SERVICES} Services: node1 (BGP, 3 sessions) {cpu_bgp:?}, \
         node2 (same Services, no BGP) {cpu_peer:?}, ratio {:.2}",
        cpu_bgp.as_secs_f64() / cpu_peer.as_secs_f64()
    );
    println!(
        "FIGURE agent resident memory growth: node1 (BGP) {rss_bgp} KiB, node2 (no BGP) {rss_peer} KiB; \
         now node1 {} KiB, node2 {} KiB",
        after[0].1, after[1].1
    );
    for line in updates {
        println!("FIGURE per session after announcing: {}", line.trim());
    }
}
