//! DSR for NodePort (issue 20) through the agent (root): `switchyard agent --devices eth0
//! --nodeport-mode dsr` on two lab nodes, a Service whose only backend (`b1`) runs on node2,
//! and an external client (`ext`, behind the router) that connects to node1's NodePort and a
//! LoadBalancer IP routed to node1. node1 encapsulates to node2, node2 decapsulates (its
//! accepted sources come from the Node objects), the backend sees the client's own address,
//! and the reply leaves node2 straight to the client with the frontend as its source: node1
//! sends nothing but the encapsulated client packets. Both families, TCP and UDP, and a 1 MB
//! upload over a path to node2 with a smaller MTU (frag-needed with the inner MTU).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_bpf::{decap::DecapReason, nodeport_abi::PacketReason};
use switchyard_lab::require_root;
use switchyard_lab::tools::clients::{self, Attempt};
use switchyard_testing::director_lab::decap_counters;
use switchyard_testing::e2e::{Cluster, State, at};

const TIMEOUT: Duration = Duration::from_secs(3);

fn cluster() -> Cluster {
    Cluster::with_clients(
        &[("node1", &["a1"]), ("node2", &["b1"])],
        &["ext"],
        &["--devices", "eth0", "--nodeport-mode", "dsr"],
    )
}

fn ok_from(cluster: &Cluster, target: SocketAddr, count: usize) -> Vec<Attempt> {
    let attempts = cluster.lab.run_in("ext", || clients::tcp(target, count, TIMEOUT)).unwrap();
    for a in &attempts {
        assert_eq!(a.error, None, "ext -> {target}: {a:?}");
    }
    attempts
}

/// Packets node `node` sent and received on its uplink (`eth0`).
fn uplink(cluster: &Cluster, node: &str) -> (u64, u64) {
    let stats = cluster.lab.link_stats(node).unwrap();
    let s = &stats[&cluster.lab.node(node).unwrap().uplink];
    (s.tx_packets, s.rx_packets)
}

/// Packets the uplink of `node` was handed but dropped (a veth drops when its peer's queue is
/// full, as on a loaded machine; TCP then sends the packet again, encapsulated again).
fn uplink_dropped(cluster: &Cluster, node: &str) -> u64 {
    let stats = cluster.lab.link_stats(node).unwrap();
    stats[&cluster.lab.node(node).unwrap().uplink].tx_dropped
}

/// Packets node `node`'s stack routed on (IPv4 and IPv6); what the programs redirect is not
/// counted there.
fn forwarded(cluster: &Cluster, node: &str) -> u64 {
    let counters = cluster.lab.ip_counters(node).unwrap();
    counters["Ip.ForwDatagrams"] + counters["Ip6.OutForwDatagrams"]
}

#[test]
fn dsr_keeps_the_client_address_and_the_remote_backend_answers_the_client_directly() {
    if !require_root(
        "dsr_keeps_the_client_address_and_the_remote_backend_answers_the_client_directly",
    ) {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    let lb = ["10.96.84.1", "fd00:96::84:1"];
    cluster.apply_and_wait(
        "web.yaml",
        &cluster.load_balancer("web", 30090, "", &lb, &[("b1", State::Ready)]),
    );
    for ip in lb {
        cluster.route(ip, &["node1"]);
    }
    // Warm-up: neighbours along the path, so the counted part below is only the flows.
    for v6 in [false, true] {
        ok_from(&cluster, at(cluster.node_ip("node1", v6), 30090), 1);
    }

    let n1_before = cluster.packet_counters("node1");
    let n2_before = cluster.packet_counters("node2");
    let (n1_tx, n1_rx) = uplink(&cluster, "node1");
    let n1_dropped = uplink_dropped(&cluster, "node1");
    let n1_forwarded = forwarded(&cluster, "node1");
    let mut replies = 0;
    for v6 in [false, true] {
        let client = cluster.client_ip("ext", v6);
        for target in
            [at(cluster.node_ip("node1", v6), 30090), at(lb[usize::from(v6)].parse().unwrap(), 80)]
        {
            let attempts = ok_from(&cluster, target, 10);
            for a in &attempts {
                assert_eq!(a.backend.as_deref(), Some("b1"));
                let seen: SocketAddr = a.seen_as.as_deref().unwrap().parse().unwrap();
                assert_eq!(seen.ip(), client, "the backend on node2 sees the client: {a:?}");
            }
            // UDP: the reply comes from the address and port the client sent to.
            let udp = cluster.lab.run_in("ext", || clients::udp(target, 10, TIMEOUT)).unwrap();
            for a in &udp {
                assert_eq!(a.error, None, "UDP {target}: {a:?}");
                assert_eq!(a.reply_from.as_deref(), Some(target.to_string().as_str()), "{a:?}");
                let seen: SocketAddr = a.seen_as.as_deref().unwrap().parse().unwrap();
                assert_eq!(seen.ip(), client, "{a:?}");
            }
            replies += 10 * 2 + 10; // at least SYN-ACK and the echo per connection; one per datagram
        }
    }
    // Once the last packets (closing handshakes) are through: node1's counters and its uplink's
    // read alike twice in a row, 300 ms apart.
    let mut last = None;
    let (n1, (tx, rx), forwarded) = loop {
        let now = (
            cluster.packet_counters("node1"),
            uplink(&cluster, "node1"),
            forwarded(&cluster, "node1"),
        );
        if last.as_ref() == Some(&now) {
            break now;
        }
        last = Some(now);
        std::thread::sleep(Duration::from_millis(300));
    };
    let n2 = cluster.packet_counters("node2");
    let grew = |after: &std::collections::BTreeMap<PacketReason, u64>,
                before: &std::collections::BTreeMap<PacketReason, u64>,
                r: PacketReason| after[&r] - before[&r];
    let encapsulated =
        grew(&n1, &n1_before, PacketReason::DnatDsr) + grew(&n1, &n1_before, PacketReason::CtHit);
    // 40 TCP connections and 40 UDP datagrams from new sockets: a new flow each, unless the
    // client reused a source port whose entry is still live (it then continues as `ct_hit`).
    let new_flows = grew(&n1, &n1_before, PacketReason::DnatDsr);
    assert!((70..=80).contains(&new_flows), "DSR flows: {new_flows}");
    assert_eq!(grew(&n1, &n1_before, PacketReason::DnatSnat), 0, "nothing SNATed");
    assert_eq!(grew(&n1, &n1_before, PacketReason::Revnat), 0, "no reply passed node1");
    let (tx, rx) = (tx - n1_tx, rx - n1_rx);
    assert_eq!(forwarded - n1_forwarded, 0, "node1's stack routed no packet (no reply passed)");
    // node1 sent the encapsulated client packets and next to nothing else (neighbour
    // discovery): a reply through node1 would add one packet per reply.
    let dropped = uplink_dropped(&cluster, "node1") - n1_dropped;
    assert!(
        tx + dropped >= encapsulated && tx <= encapsulated + 10,
        "node1 sent {tx} (and dropped {dropped}), encapsulated {encapsulated}, received {rx}"
    );
    assert!(grew(&n2, &n2_before, PacketReason::Revnat) >= replies, "node2 answered: {n2:?}");
    let decap = decap_counters(&cluster.lab, "node2");
    assert!(decap[&DecapReason::Dsr] >= encapsulated, "{decap:?}");
    assert_eq!(decap[&DecapReason::DropNotNode] + decap[&DecapReason::DropNotDirector], 0);
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn a_one_megabyte_upload_through_dsr_over_a_smaller_mtu_path_completes() {
    if !require_root("a_one_megabyte_upload_through_dsr_over_a_smaller_mtu_path_completes") {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    cluster.apply_and_wait(
        "web.yaml",
        &cluster.load_balancer("web", 30091, "", &[], &[("b1", State::Ready)]),
    );
    // node1's path to node2 has a 1400-byte MTU: with the outer headers, a full-size client
    // segment does not fit; node1 answers frag-needed / packet-too-big with the inner MTU
    // (1360 for IPv4, 1328 for IPv6; a 1280-byte path would leave IPv6 1208, below its
    // minimum MTU, which clients ignore).
    for v6 in [false, true] {
        let node2 = cluster.node_ip("node2", v6);
        let len = if v6 { 128 } else { 32 };
        cluster
            .lab
            .route_with_mtu("node1", format!("{node2}/{len}").parse().unwrap(), 1400)
            .unwrap();
    }
    let before = cluster.packet_counters("node1")[&PacketReason::FragNeeded];
    for v6 in [false, true] {
        let target = at(cluster.node_ip("node1", v6), 30091);
        let up = cluster
            .lab
            .run_in("ext", || clients::upload(target, 1_000_000, Duration::from_secs(30)))
            .unwrap();
        assert_eq!(up.error, None, "upload to {target}: {up:?}");
        assert_eq!(up.backend.as_deref(), Some("b1"));
        assert_eq!(
            up.seen_as.as_deref().unwrap().parse::<SocketAddr>().unwrap().ip(),
            cluster.client_ip("ext", v6)
        );
    }
    let n1 = cluster.packet_counters("node1");
    assert!(n1[&PacketReason::FragNeeded] > before, "the client was told the inner MTU: {n1:?}");
    assert_eq!(n1[&PacketReason::DropDsrTooBig], 0);
    cluster.assert_nothing_left_the_lab_since(&baseline);
}
