//! UDP packets per second through a NodePort against the kernel forwarding the same traffic
//! to the same pod without Switchyard, in the lab, alternating in one run: an external client
//! (`ext`) sends 64-byte datagrams on one flow for a second, a counting receiver in the pod
//! reports what arrived.
//!
//! - local: `node1:NodePort` -> pod a1 on node1 (DNAT at TC) against `a1` directly (the
//!   router routes the pod CIDR to node1): the same hops, so the difference is the programs.
//! - remote: `node1:NodePort` -> pod b1 on node2 (DNAT + SNAT, redirected back out of node1's
//!   uplink) against `b1` directly (router -> node2): the NodePort path crosses node1 and the
//!   router once more, as any NodePort to a remote pod does.
//!
//! `cargo test -p switchyard --bench nodeport_forward` (root; test profile, like
//! clusterip_connect) prints each round and the medians; `cargo bench` runs it optimised.

#![allow(clippy::unwrap_used, reason = "benchmark harness")]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchyard_testing::e2e::*;

const ROUNDS: usize = 5;
const SEND_FOR: Duration = Duration::from_secs(1);
const SINK_PORT: u16 = 9000;

/// A NodePort Service (UDP) to one pod's SINK_PORT.
fn service(cluster: &Cluster, name: &str, node_port: u16, pod: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: bench}}\n\
         spec:\n  type: NodePort\n  clusterIP: 10.96.77.{last}\n  clusterIPs: [10.96.77.{last}]\n\
         \x20 ports: [{{name: udp, port: 80, protocol: UDP, targetPort: {SINK_PORT}, nodePort: {node_port}}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}, namespace: bench, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nendpoints:\n- {{addresses: [\"{ip}\"], conditions: {{ready: true}}, nodeName: {node}}}\n\
         ports: [{{name: udp, port: {SINK_PORT}, protocol: UDP}}]\n",
        last = node_port % 100,
        ip = cluster.pod_ip(pod, false),
        node = cluster.lab.pod(pod).unwrap().node,
    )
}

/// Datagrams sent from `ext` to `target` and received in `pod`, per second.
fn measure(cluster: &Cluster, pod: &str, target: SocketAddr) -> (f64, f64) {
    let stop = &AtomicBool::new(false);
    let lab = &cluster.lab;
    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = scope.spawn(move || {
            lab.run_in(pod, || {
                let socket = UdpSocket::bind(("0.0.0.0", SINK_PORT)).unwrap();
                socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 2048];
                let mut received = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    if socket.recv(&mut buf).is_ok() {
                        received += 1;
                    }
                }
                received
            })
            .unwrap()
        });
        ready_rx.recv().unwrap();
        let sent = lab
            .run_in("ext", || {
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                socket.connect(target).unwrap();
                let payload = [0x5au8; 64];
                let started = Instant::now();
                let mut sent = 0u64;
                while started.elapsed() < SEND_FOR {
                    for _ in 0..64 {
                        if socket.send(&payload).is_ok() {
                            sent += 1;
                        }
                    }
                }
                sent as f64 / started.elapsed().as_secs_f64()
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::SeqCst);
        let received = sink.join().unwrap();
        (sent, received as f64 / SEND_FOR.as_secs_f64())
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if !switchyard_lab::require_root("bench nodeport_forward") {
        return;
    }
    let cluster = Cluster::with_clients(
        &[("node1", &["a1"]), ("node2", &["b1"])],
        &["ext"],
        &["--devices", "eth0"],
    );
    let text = service(&cluster, "local", 30090, "a1") + &service(&cluster, "remote", 30091, "b1");
    let baseline = cluster.containment_baseline();
    cluster.apply_and_wait("svc.yaml", &text);
    let node1 = cluster.lab.node("node1").unwrap().ipv4;
    let cases = [
        ("local  NodePort", "a1", at(node1.into(), 30090)),
        ("local  direct  ", "a1", at(cluster.pod_ip("a1", false), SINK_PORT)),
        ("remote NodePort", "b1", at(node1.into(), 30091)),
        ("remote direct  ", "b1", at(cluster.pod_ip("b1", false), SINK_PORT)),
    ];
    let mut delivered: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..ROUNDS {
        for (i, (name, pod, target)) in cases.iter().enumerate() {
            let (sent, received) = measure(&cluster, pod, *target);
            println!(
                "round {round} {name} {target:>22}: sent {sent:>9.0}/s delivered {received:>9.0}/s"
            );
            delivered[i].push(received);
        }
    }
    let m: Vec<f64> = delivered.into_iter().map(median).collect();
    println!(
        "median delivered: local NodePort {:.0}/s, direct {:.0}/s, ratio {:.2}",
        m[0],
        m[1],
        m[0] / m[1]
    );
    println!(
        "median delivered: remote NodePort {:.0}/s, direct {:.0}/s, ratio {:.2}",
        m[2],
        m[3],
        m[2] / m[3]
    );
    cluster.assert_nothing_left_the_lab_since(&baseline);
}
