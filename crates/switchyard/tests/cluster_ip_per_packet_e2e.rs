//! Cluster IPs per packet through running agents (root): `switchyard agent --devices eth0
//! --pod-devices 'veth*'` on every lab node. Clients the socket hooks cannot see — a thread in a
//! pod's network namespace but outside the node's cgroup (what a VM's guest kernel or a process
//! in another cgroup looks like to the node), and an external client whose router sends the
//! cluster IP to a node — reach cluster IPs, v4 and v6, local and remote backends, with replies
//! from the cluster IP. See docs/datapath.md "ClusterIP per packet".

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use switchyard_bpf::nodeport_abi::PacketReason;
use switchyard_lab::require_root;
use switchyard_lab::tools::clients::{self, Attempt};
use switchyard_testing::e2e::{Cluster, State, agent_refusing, at, set, v4};

const TIMEOUT: Duration = Duration::from_secs(3);

/// New flows node `node` translated per packet so far.
fn new_flows(cluster: &Cluster, node: &str) -> u64 {
    let c = cluster.packet_counters(node);
    c[&PacketReason::Dnat] + c[&PacketReason::DnatSnat]
}

/// `count` TCP connections and UDP exchanges from a thread in `member`'s network namespace
/// (never in a node's cgroup); every one must succeed, UDP replies from `target`.
fn tcp_and_udp(cluster: &Cluster, member: &str, target: SocketAddr) -> Vec<Attempt> {
    let tcp = cluster.lab.run_in(member, || clients::tcp(target, 24, TIMEOUT)).unwrap();
    let udp = cluster.lab.run_in(member, || clients::udp(target, 24, TIMEOUT)).unwrap();
    for a in &udp {
        assert_eq!(a.error, None, "UDP {member} -> {target}: {a:?}");
        assert_eq!(a.reply_from.as_deref(), Some(target.to_string().as_str()), "{a:?}");
    }
    // A TCP handshake completes only if the SYN-ACK comes from the address connected to.
    for a in &tcp {
        assert_eq!(a.error, None, "TCP {member} -> {target}: {a:?}");
    }
    tcp.into_iter().chain(udp).collect()
}

/// The backends that answered `attempts`.
fn answered_by(attempts: &[Attempt]) -> BTreeSet<String> {
    attempts.iter().filter_map(|a| a.backend.clone()).collect()
}

/// The client address the backend saw for `attempt`.
fn seen_as(attempt: &Attempt) -> SocketAddr {
    attempt.seen_as.as_deref().unwrap().parse().unwrap()
}

#[test]
fn clients_the_socket_hooks_cannot_see_reach_cluster_ips_per_packet() {
    if !require_root("clients_the_socket_hooks_cannot_see_reach_cluster_ips_per_packet") {
        return;
    }
    let cluster = Cluster::with_clients(
        &[("node1", &["a1", "a2"]), ("node2", &["b1"])],
        &["ext"],
        &["--devices", "eth0", "--pod-devices", "veth*"],
    );
    for agent in &cluster.agents {
        assert!(agent.logged("pod programs attached"), "{}: no pod interface attached", agent.node);
    }
    let baseline = cluster.containment_baseline();
    let cluster_ips = [v4("10.96.70.10"), v4("fd00:96::70:10")];
    let endpoints = [("a1", State::Ready), ("b1", State::Ready)];
    cluster.apply_and_wait("web.yaml", &cluster.service("web", &cluster_ips, 80, "", &endpoints));

    for (v6, cluster_ip) in [(false, cluster_ips[0]), (true, cluster_ips[1])] {
        let target = at(cluster_ip, 80);
        // A pod's traffic outside the hooked cgroup: translated at the pod interface on node1,
        // to a1 (local: DNAT) and b1 (remote: DNAT, the reply translated back on node1's
        // uplink); the backend sees the pod's own address.
        let before = new_flows(&cluster, "node1");
        let attempts = tcp_and_udp(&cluster, "a2", target);
        assert_eq!(answered_by(&attempts), set(&["a1", "b1"]), "{target}: both backends");
        let pod = cluster.pod_ip("a2", v6);
        for a in &attempts {
            assert_eq!(seen_as(a).ip(), pod, "the pod's address is kept: {a:?}");
        }
        let translated = new_flows(&cluster, "node1") - before;
        assert!(translated >= 25, "{target}: node1 translated {translated} new flows per packet");

        // The same pod's processes in node1's cgroup go through the socket hooks: their packets
        // already carry a backend address, and the pod entry point translates none of them.
        let before = new_flows(&cluster, "node1");
        assert_eq!(cluster.backends("a2", "tcp", target, 12), set(&["a1", "b1"]));
        assert_eq!(cluster.backends("a2", "udp", target, 12), set(&["a1", "b1"]));
        assert_eq!(new_flows(&cluster, "node1"), before, "{target}: translated twice");

        // A cluster IP routed to node1 from outside (a router that learned the Service CIDR):
        // the uplink's program serves it; the remote backend sees node1's address.
        cluster.route(&cluster_ip.to_string(), &["node1"]);
        let node1 = cluster.node_ip("node1", v6);
        let client = cluster.client_ip("ext", v6);
        let attempts = tcp_and_udp(&cluster, "ext", target);
        assert_eq!(answered_by(&attempts), set(&["a1", "b1"]), "ext -> {target}: both backends");
        for a in &attempts {
            let seen = seen_as(a);
            match a.backend.as_deref() {
                Some("a1") => assert_eq!(seen.ip(), client, "local backend sees the client: {a:?}"),
                Some("b1") => {
                    assert_eq!(seen.ip(), node1, "remote backend sees node1: {a:?}");
                    assert!((1024..=29_999).contains(&seen.port()), "SNAT port: {a:?}");
                }
                other => panic!("unexpected backend {other:?}: {a:?}"),
            }
        }
    }
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

/// Without `--devices`, the remote backend's reply enters node1 on an uplink without programs
/// and is translated back at the egress of the pod's interface.
#[test]
fn pod_devices_alone_translate_replies_at_the_pod_interface() {
    if !require_root("pod_devices_alone_translate_replies_at_the_pod_interface") {
        return;
    }
    let cluster = Cluster::with_clients(
        &[("node1", &["a1", "a2"]), ("node2", &["b1"])],
        &[],
        &["--pod-devices", "veth*"],
    );
    let baseline = cluster.containment_baseline();
    let cluster_ips = [v4("10.96.71.10"), v4("fd00:96::71:10")];
    let endpoints = [("a1", State::Ready), ("b1", State::Ready)];
    cluster.apply_and_wait("web.yaml", &cluster.service("web", &cluster_ips, 80, "", &endpoints));
    for (v6, cluster_ip) in [(false, cluster_ips[0]), (true, cluster_ips[1])] {
        let target = at(cluster_ip, 80);
        let before = cluster.packet_counters("node1")[&PacketReason::Revnat];
        let attempts = tcp_and_udp(&cluster, "a2", target);
        assert_eq!(answered_by(&attempts), set(&["a1", "b1"]), "{target}: both backends");
        let pod = cluster.pod_ip("a2", v6);
        for a in &attempts {
            assert_eq!(seen_as(a).ip(), pod, "the pod's address is kept: {a:?}");
        }
        let revnat = cluster.packet_counters("node1")[&PacketReason::Revnat] - before;
        assert!(revnat >= 48, "{target}: {revnat} replies translated back on node1");
    }
    cluster.assert_nothing_left_the_lab_since(&baseline);

    // A pod interface created after the agent started is attached by the next rescan; its pins
    // go once it is deleted. (A veth pair inside node1's namespace: nothing leaves it.)
    let bpf_dir = cluster.lab.node("node1").unwrap().bpf_dir.clone();
    let pinned = || switchyard_bpf::nodeport::attached_pod_devices(&bpf_dir).unwrap();
    assert!(pinned().contains(&"veth1".to_string()), "{:?}", pinned());
    let ip = |args: &[&str]| {
        let mut command = std::process::Command::new("ip");
        command.args(args);
        let out = cluster.lab.output_in("node1", command).unwrap();
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ip(&["link", "add", "veth90", "type", "veth", "peer", "name", "peer90"]);
    cluster.eventually("veth90 attached", || pinned().contains(&"veth90".to_string()));
    assert!(!pinned().contains(&"peer90".to_string()), "peer90 matches no pattern");
    ip(&["link", "del", "veth90"]);
    cluster.eventually("veth90's pins removed", || !pinned().contains(&"veth90".to_string()));
}

#[test]
fn pod_device_patterns_are_names_or_prefixes_and_an_empty_value_means_none() {
    // No root needed: clap checks the patterns before the agent touches anything.
    for bad in ["ve*th", "*", "veth/1*"] {
        let out = agent_refusing(&["--pod-devices", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("--pod-devices") && stderr.contains("pod device pattern"),
            "{stderr}"
        );
    }
    // `--pod-devices=` (an empty ConfigMap value) passes the flags: the agent goes on to its
    // first check (overlapping port ranges, refused before anything is created or loaded).
    let out = agent_refusing(&[
        "--pod-devices=",
        "--devices",
        "eth0",
        "--snat-port-range",
        "32000-40000",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("pod device pattern") && stderr.contains("overlaps"), "{stderr}");
}
