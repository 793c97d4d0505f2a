//! Traffic that starts inside the cluster, through running agents (root): pods and nodes reach
//! NodePorts, LoadBalancer IPs and external IPs of their own node (socket path) and NodePorts of
//! the other node (per packet there); in-cluster traffic to an externalTrafficPolicy Local
//! Service goes to every endpoint; a pod keeps its source address through a ClusterIP and can
//! reach itself; loopback carries no NodePort by default. See docs/conformance.md.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::net::SocketAddr;

use switchyard_lab::require_root;
use switchyard_testing::e2e::{Cluster, State, at, set, v4};

/// Two nodes (`node1`: a1, a2; `node2`: b1, b2), agents with the per-packet programs on the
/// uplink, so a NodePort of the other node is served there.
fn cluster() -> Cluster {
    Cluster::with_clients(
        &[("node1", &["a1", "a2"]), ("node2", &["b1", "b2"])],
        &[],
        &["--devices", "eth0"],
    )
}

/// The node a lab member (pod or node) runs on.
fn node_of(cluster: &Cluster, member: &str) -> String {
    match cluster.lab.pod(member) {
        Ok(pod) => pod.node.clone(),
        Err(_) => member.to_string(),
    }
}

/// Every target must reach exactly `expected` from `member`, over TCP and UDP (UDP replies
/// come from the target address: `Cluster::backends` checks it).
fn reach(cluster: &Cluster, member: &str, targets: &[SocketAddr], expected: &[&str]) {
    for target in targets {
        for kind in ["tcp", "udp"] {
            // 20 requests over 2 backends miss one with probability 2^-19.
            let seen = cluster.backends(member, kind, *target, 20);
            assert_eq!(seen, set(expected), "{kind} from {member} to {target}");
        }
    }
}

#[test]
fn pods_and_nodes_reach_node_ports_load_balancer_and_external_ips() {
    if !require_root("pods_and_nodes_reach_node_ports_load_balancer_and_external_ips") {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    let (lb, ext_ip) = (["10.96.120.1", "fd00:96::120:1"], ["10.96.121.1", "fd00:96::121:1"]);
    let spec = format!("  externalIPs: [\"{}\", \"{}\"]\n", ext_ip[0], ext_ip[1]);
    let endpoints = [("a1", State::Ready), ("b2", State::Ready)];
    let text = cluster.load_balancer("web", 30120, &spec, &lb, &endpoints);
    cluster.apply_and_wait("web.yaml", &text);

    for member in ["a2", "b1", "node1"] {
        let own = node_of(&cluster, member);
        let other = if own == "node1" { "node2" } else { "node1" };
        for v6 in [false, true] {
            let family = usize::from(v6);
            let targets = [
                at(lb[family].parse().unwrap(), 80),
                at(ext_ip[family].parse().unwrap(), 80),
                // Its own node's NodePort: the socket programs translate the connect.
                at(cluster.node_ip(&own, v6), 30120),
                // The other node's NodePort: untranslated here, per packet there.
                at(cluster.node_ip(other, v6), 30120),
            ];
            reach(&cluster, member, &targets, &["a1", "b2"]);
        }
    }
    // Loopback never carries NodePorts by default (CVE-2020-8558), neither for the node nor
    // for a pod, whose 127.0.0.1 / ::1 are its own (nothing listens there: refused).
    for member in ["node1", "a2"] {
        for loopback in ["127.0.0.1", "::1"] {
            let target = at(loopback.parse().unwrap(), 30120);
            let out = cluster.client(member, "tcp", target, 1);
            assert!(out.summary.backends.is_empty(), "{member} -> {target}: {:?}", out.summary);
            assert!(out.attempts.iter().all(|a| a.error.is_some()), "{:?}", out.attempts);
        }
    }
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn in_cluster_traffic_to_an_external_traffic_policy_local_service_uses_every_endpoint() {
    if !require_root("in_cluster_traffic_to_an_external_traffic_policy_local_service") {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    let (lb, ext_ip) = (["10.96.122.1", "fd00:96::122:1"], ["10.96.123.1", "fd00:96::123:1"]);
    let spec = format!(
        "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32122\n  externalIPs: [\"{}\", \"{}\"]\n",
        ext_ip[0], ext_ip[1]
    );
    // One endpoint per node: a node-local choice would give each client one backend only.
    let endpoints = [("a1", State::Ready), ("b2", State::Ready)];
    let text = cluster.load_balancer("loc", 30122, &spec, &lb, &endpoints);
    cluster.apply_and_wait("loc.yaml", &text);

    // The internal view of the split frontends (dataplane/src/translate.rs) holds every
    // endpoint; only traffic from outside the node is kept on its local endpoints.
    for member in ["a2", "b1", "node2"] {
        let own = node_of(&cluster, member);
        for v6 in [false, true] {
            let family = usize::from(v6);
            let targets = [
                at(lb[family].parse().unwrap(), 80),
                at(ext_ip[family].parse().unwrap(), 80),
                at(cluster.node_ip(&own, v6), 30122),
            ];
            reach(&cluster, member, &targets, &["a1", "b2"]);
        }
    }
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn pods_keep_their_source_address_and_reach_themselves_through_a_cluster_ip() {
    if !require_root("pods_keep_their_source_address_and_reach_themselves_through_a_cluster_ip") {
        return;
    }
    let cluster = Cluster::up();
    let ips = [v4("10.96.124.10"), v4("fd00:96::124:10")];
    let endpoints = [("a1", State::Ready), ("b1", State::Ready)];
    let text = cluster.service("self", &ips, 80, "", &endpoints);
    cluster.apply_until_it_answers("self.yaml", &text, "a1", at(ips[0], 80));

    for ip in ips {
        let pod_ip = cluster.pod_ip("a1", ip.is_ipv6());
        for kind in ["tcp", "udp"] {
            let out = cluster.client("a1", kind, at(ip, 80), 20);
            assert!(out.summary.errors.is_empty(), "{kind} {ip}: {:?}", out.summary);
            // a1 itself answers too (hairpin through its own Service), b1 remotely.
            let answered: Vec<&str> = out.summary.backends.keys().map(String::as_str).collect();
            assert_eq!(answered, ["a1", "b1"], "{kind} {ip}: {:?}", out.summary);
            for attempt in &out.attempts {
                let seen: SocketAddr = attempt.seen_as.as_deref().unwrap().parse().unwrap();
                assert_eq!(seen.ip(), pod_ip, "{kind} {ip}: backend saw {attempt:?}");
            }
        }
    }
    cluster.assert_nothing_left_the_lab();
}
