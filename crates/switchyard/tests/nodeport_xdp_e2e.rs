//! The per-packet XDP program through running agents (root): `switchyard agent --devices eth0
//! --xdp native|generic` on both lab nodes, a NodePort Service with a pod on each node, TCP and
//! UDP from an external client to node1 over IPv4 and IPv6. The remote backend's flows are
//! forwarded at XDP both ways (XDP_TX out of the uplink); the local backend's flows are decided
//! at XDP and finished by TC (the pod's veth has no XDP program). See docs/datapath.md
//! "XDP on nodes".

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_bpf::nodeport_abi::PacketReason;
use switchyard_lab::require_root;
use switchyard_lab::tools::clients;
use switchyard_testing::e2e::{Cluster, State, at, set};

const TIMEOUT: Duration = Duration::from_secs(3);

/// node1 (pod a1), node2 (pod b1), client `ext`; agents with `--xdp <mode>`.
fn cluster(mode: &str) -> Cluster {
    let cluster = Cluster::with_clients(
        &[("node1", &["a1"]), ("node2", &["b1"])],
        &["ext"],
        &["--devices", "eth0", "--xdp", mode],
    );
    // Frames from a wire carry complete transport checksums. A local socket's frame on a veth
    // carries only the pseudo-header sum (the kernel completes it on transmission), and the XDP
    // program hands those to TC: the client and the pods send complete ones, as hosts behind
    // a real network would.
    for member in ["ext", "a1", "b1"] {
        cluster
            .lab
            .run_in(member, || switchyard_lab::offload::set_tx_checksum("eth0", false))
            .unwrap()
            .unwrap();
    }
    // A veth delivers what its peer sends with XDP_TX only when it runs an XDP program itself
    // (docs/operations.md "XDP on nodes"): an XDP_PASS program on the router's side.
    for node in ["node1", "node2"] {
        let link = cluster.lab.node(node).unwrap().router_link.clone();
        cluster.lab.set_xdp_pass(switchyard_lab::plan::ROUTER, &link).unwrap();
    }
    cluster
}

fn counters(cluster: &Cluster, node: &str) -> BTreeMap<PacketReason, u64> {
    cluster.packet_counters(node)
}

/// `ip -details link show eth0` in `node`.
fn uplink_details(cluster: &Cluster, node: &str) -> String {
    let out = cluster
        .lab
        .run_in(node, || {
            std::process::Command::new("ip").args(["-details", "link", "show", "eth0"]).output()
        })
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// TCP and UDP, IPv4 and IPv6, from `ext` to node1's NodePort: every exchange answered, by
/// both backends; the local one sees the client, the remote one node1 and a SNAT port.
fn exchanges_through_node1(cluster: &Cluster) {
    for v6 in [false, true] {
        let (node_ip, client) = (cluster.node_ip("node1", v6), cluster.client_ip("ext", v6));
        let target = at(node_ip, 30090);
        let attempts = cluster.lab.run_in("ext", || clients::tcp(target, 24, TIMEOUT)).unwrap();
        for a in &attempts {
            if a.error.is_some() {
                let (n1, n2) = (counters(cluster, "node1"), counters(cluster, "node2"));
                let all: Vec<_> = attempts.iter().map(|a| (&a.backend, &a.error)).collect();
                panic!("TCP {target}: {a:?}; all: {all:?}; node1 {n1:?}; node2 {n2:?}");
            }
            let seen: std::net::SocketAddr = a.seen_as.as_deref().unwrap().parse().unwrap();
            if a.backend.as_deref() == Some("a1") {
                assert_eq!(seen.ip(), client, "local backend sees the client: {a:?}");
            } else {
                assert_eq!(seen.ip(), node_ip, "remote backend sees node1: {a:?}");
                assert!((1024..=29_999).contains(&seen.port()), "SNAT port: {a:?}");
            }
        }
        let backends: std::collections::BTreeSet<String> =
            attempts.iter().filter_map(|a| a.backend.clone()).collect();
        assert_eq!(backends, set(&["a1", "b1"]), "TCP {target}");
        let udp = cluster.lab.run_in("ext", || clients::udp(target, 24, TIMEOUT)).unwrap();
        for a in &udp {
            assert_eq!(a.error, None, "UDP {target}: {a:?}");
            assert_eq!(a.reply_from.as_deref(), Some(target.to_string().as_str()), "{a:?}");
        }
    }
}

fn xdp_serves_node_ports(mode: &str, attached_as: &str) {
    let cluster = cluster(mode);
    let baseline = cluster.containment_baseline();
    let endpoints = [("a1", State::Ready), ("b1", State::Ready)];
    cluster.apply_and_wait("web.yaml", &cluster.load_balancer("web", 30090, "", &[], &endpoints));
    let details = uplink_details(&cluster, "node1");
    let first_line = details.lines().next().unwrap_or_default();
    assert!(first_line.contains(attached_as), "{mode}: node1's eth0 runs XDP: {details}");

    let before = counters(&cluster, "node1");
    exchanges_through_node1(&cluster);
    let after = counters(&cluster, "node1");
    let grew = |r: PacketReason| after[&r] - before[&r];
    // The remote backend's packets both ways were forwarded at XDP; the local backend's flows
    // were decided there and handed to TC (its veth has no XDP program).
    assert!(grew(PacketReason::XdpForwarded) > 0, "{mode}: forwarded at XDP: {after:?}");
    assert!(grew(PacketReason::DnatSnat) > 0 && grew(PacketReason::Dnat) > 0, "{after:?}");
    assert!(grew(PacketReason::Revnat) > 0, "{mode}: replies translated back: {after:?}");
    assert!(grew(PacketReason::XdpToTc) > 0, "{mode}: the local backend's flows via TC: {after:?}");
    let drops: u64 = PacketReason::ALL.iter().filter(|r| r.is_drop()).map(|&r| grew(r)).sum();
    assert_eq!(drops, 0, "{mode}: nothing dropped: {after:?}");
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn node_ports_through_native_xdp_both_families_tcp_and_udp_local_and_remote_backends() {
    if !require_root(
        "node_ports_through_native_xdp_both_families_tcp_and_udp_local_and_remote_backends",
    ) {
        return;
    }
    xdp_serves_node_ports("native", " xdp ");
}

#[test]
fn node_ports_through_generic_xdp() {
    if !require_root("node_ports_through_generic_xdp") {
        return;
    }
    xdp_serves_node_ports("generic", " xdpgeneric ");
}
