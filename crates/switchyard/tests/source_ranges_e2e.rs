//! loadBalancerSourceRanges for pods (root): the socket path checks the source a pod's socket
//! gets, so a pod outside the ranges reaches no backend through a LoadBalancer IP while a pod
//! inside them does, and the Service's cluster IP stays open to both. A socket bound to its
//! address before connect()/sendto() is refused by the call (ECONNREFUSED), and so is an unbound
//! one once the pod's namespace has shown its source (any TCP connection of the pod, or a
//! connection it accepted); before that, its first packet is dropped. Agents run without
//! `--devices`: only the socket programs decide. See docs/operations.md.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness")]

use switchyard_bpf::{Maps, abi::Reason};
use switchyard_lab::require_root;
use switchyard_testing::e2e::*;

#[test]
fn a_pod_outside_the_source_ranges_reaches_no_backend_through_a_load_balancer_ip() {
    if !require_root("a_pod_outside_the_source_ranges_reaches_no_backend") {
        return;
    }
    let cluster = Cluster::up();
    let baseline = cluster.containment_baseline();
    let lb = [v4("10.96.91.1"), v4("fd00:96::91:1")];
    // Only a1 may use the LoadBalancer IPs; a2 (same node) and b1 (other node) may not.
    let spec = format!(
        "  loadBalancerSourceRanges: [\"{}/32\", \"{}/128\"]\n",
        cluster.pod_ip("a1", false),
        cluster.pod_ip("a1", true)
    );
    let ingress = lb.map(|ip| ip.to_string());
    let ingress: Vec<&str> = ingress.iter().map(String::as_str).collect();
    let text = cluster.load_balancer(
        "fw",
        30091,
        &spec,
        &ingress,
        &[("b1", State::Ready), ("b2", State::Ready)],
    );
    cluster.apply_until_it_answers("fw.yaml", &text, "a1", at(lb[0], 80));

    for ip in lb {
        let target = at(ip, 80);
        for kind in ["tcp", "udp"] {
            let out = cluster.client("a1", kind, target, 3);
            assert!(out.summary.errors.is_empty(), "a1 {kind} {target}: {:?}", out.summary);
        }
        let refused = [("connection refused".to_owned(), 1)].into_iter().collect();
        for pod in ["a2", "b1"] {
            // A connection to the cluster IP (open to everyone) shows the pod's source to the
            // socket programs; from then on its unbound sockets are refused by the call too.
            let cluster_ip =
                at(v4(if ip.is_ipv6() { "fd00:96::101:10" } else { "10.96.101.10" }), 80);
            let out = cluster.client(pod, "tcp", cluster_ip, 1);
            assert!(out.summary.errors.is_empty(), "{pod} -> {cluster_ip}: {:?}", out.summary);
            for (kind, extra) in [("tcp", &[][..]), ("udp", &[][..]), ("udp", &["--connected"][..])]
            {
                let out = cluster.client_with(pod, kind, target, 1, extra);
                assert!(
                    out.summary.backends.is_empty(),
                    "{pod} {kind} {extra:?} {target} must reach no backend: {:?}",
                    out.summary
                );
                assert_eq!(out.summary.errors, refused, "{pod} {kind} {extra:?} unbound {target}");
            }
            // Bound to its own address first: the source is known, the call itself is refused.
            let source = cluster.pod_ip(pod, ip.is_ipv6()).to_string();
            for kind in ["tcp", "udp"] {
                let out = cluster.client_with(pod, kind, target, 1, &["--source", &source]);
                assert_eq!(out.summary.errors, refused, "{pod} {kind} bound {target}");
            }
        }
        // Bound to an address inside the ranges: served.
        let source = cluster.pod_ip("a1", ip.is_ipv6()).to_string();
        for kind in ["tcp", "udp"] {
            let out = cluster.client_with("a1", kind, target, 1, &["--source", &source]);
            assert!(out.summary.errors.is_empty(), "a1 {kind} bound {target}: {:?}", out.summary);
        }
    }
    // Source ranges are for LoadBalancer IPs only: the cluster IP answers everyone.
    let cluster_ip = at(v4("10.96.101.10"), 80);
    for pod in ["a2", "b1"] {
        let out = cluster.client(pod, "tcp", cluster_ip, 3);
        assert!(out.summary.errors.is_empty(), "{pod} -> {cluster_ip}: {:?}", out.summary);
    }
    for node in ["node1", "node2"] {
        let bpf_dir = cluster.lab.node(node).unwrap().bpf_dir.clone();
        let (dropped, rejected) = cluster
            .lab
            .run_in(node, move || {
                let counters = Maps::open_pinned(&bpf_dir).unwrap().counters().unwrap();
                (
                    counters[&Reason::DropSourceRangeSock].packets,
                    counters[&Reason::RejectSourceRange].packets,
                )
            })
            .unwrap();
        // Every call was refused before a packet left: nothing to drop at egress (the first-packet
        // check for a namespace whose source is not known yet is tested in crates/bpf's
        // socket_lb tests).
        assert_eq!(dropped, 0, "{node}: packets dropped for their source");
        // Per family, one pod on each node: TCP, UDP and connected UDP unbound (the learned
        // source), TCP and UDP bound.
        assert_eq!(rejected, 10, "{node}: calls refused for their source");
    }
    cluster.assert_nothing_left_the_lab_since(&baseline);
}
