//! SCTP through running agents (root): `switchyard agent --devices eth0 --pod-devices 'veth*'`
//! on two lab nodes, SCTP Services of type LoadBalancer written as manifests. This kernel has no SCTP sockets
//! (EPROTONOSUPPORT), so both ends are raw sockets of ours: the external client sends a crafted
//! INIT, a responder in the pod's namespace answers every INIT with an INIT ACK
//! (`switchyard_testing::sctp`). No association is made and the socket path cannot run; the
//! per-packet path (translation, SNAT, CRC32c) is what is checked. See docs/conformance.md row 16.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use switchyard_bpf::nodeport_abi::PacketReason;
use switchyard_lab::require_root;
use switchyard_lab::tools::raw::{self, Capture, IPPROTO_SCTP};
use switchyard_testing::e2e::{Cluster, ECHO_PORT, State, at};
use switchyard_testing::sctp::{self, CHUNK_INIT_ACK, Packet, Responder};

const TIMEOUT: Duration = Duration::from_secs(3);

/// A dual-stack LoadBalancer Service with one SCTP port (80 → [`ECHO_PORT`], NodePort
/// `node_port`), its LoadBalancer IPs and one endpoint, `pod`.
fn sctp_service(cluster: &Cluster, name: &str, node_port: u16, lb: [&str; 2], pod: &str) -> String {
    let last = node_port % 100;
    let mut text = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: e2e\n\
         spec:\n  type: LoadBalancer\n  clusterIP: \"10.96.{last}.10\"\n  clusterIPs: [\"10.96.{last}.10\", \"fd00:96::{last}:10\"]\n\
         \x20 ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: RequireDualStack\n  ports:\n\
         \x20 - {{name: sctp, port: 80, protocol: SCTP, targetPort: {ECHO_PORT}, nodePort: {node_port}}}\n\
         status:\n  loadBalancer:\n    ingress: [{{ip: \"{}\"}}, {{ip: \"{}\"}}]\n",
        lb[0], lb[1]
    );
    for v6 in [false, true] {
        let family = if v6 { "IPv6" } else { "IPv4" };
        text += &format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{fam}\n  namespace: e2e\n\
             \x20 labels: {{kubernetes.io/service-name: {name}}}\naddressType: {family}\nendpoints:\n{items}\
             ports:\n- {{name: sctp, port: {ECHO_PORT}, protocol: SCTP}}\n",
            fam = if v6 { "v6" } else { "v4" },
            items = cluster.endpoint_items(&[(pod, State::Ready)], v6),
        );
    }
    text
}

/// One INIT from `member` (source port `sport`, initiate tag `tag`) to `target`; the INIT ACK
/// that came back, with its source address.
fn init_exchange(
    cluster: &Cluster,
    member: &str,
    target: SocketAddr,
    sport: u16,
    tag: u32,
) -> (IpAddr, Packet) {
    let v4 = target.is_ipv4();
    let capture =
        cluster.lab.run_in(member, move || Capture::open(v4, IPPROTO_SCTP).unwrap()).unwrap();
    let init = sctp::init(sport, target.port(), tag);
    cluster.lab.run_in(member, || raw::send(target.ip(), IPPROTO_SCTP, &init).unwrap()).unwrap();
    let (from, l4) = capture
        .next(TIMEOUT)
        .unwrap_or_else(|e| panic!("{member} -> {target}: no INIT ACK within {TIMEOUT:?}: {e}"));
    (from, Packet::parse(&l4).unwrap_or_else(|| panic!("{target}: not SCTP: {l4:?}")))
}

/// External client `ext` to NodePorts and LoadBalancer IPs (the devices' program), and pod `a2`
/// to the ClusterIPs (`--pod-devices`: its raw socket is outside every socket hook, as an SCTP
/// socket would be here), each to a Service whose pod is on node1 and one whose pod is on node2.
#[test]
fn crafted_sctp_init_reaches_local_and_remote_pods_through_node_ports_and_load_balancer_ips() {
    if !require_root(
        "crafted_sctp_init_reaches_local_and_remote_pods_through_node_ports_and_load_balancer_ips",
    ) {
        return;
    }
    let cluster = Cluster::with_clients(
        &[("node1", &["a1", "a2"]), ("node2", &["b1"])],
        &["ext"],
        &["--devices", "eth0", "--pod-devices", "veth*"],
    );
    let baseline = cluster.containment_baseline();
    // From node1, "local" has its pod there (DNAT) and "remote" on node2 (DNAT + SNAT for
    // clients from outside; a pod keeps its address).
    let services = [
        ("local", 30091u16, ["10.96.91.1", "fd00:96::91:1"], "a1"),
        ("remote", 30092, ["10.96.92.1", "fd00:96::92:1"], "b1"),
    ];
    for (name, node_port, lb, pod) in services {
        cluster.apply_and_wait(
            &format!("{name}.yaml"),
            &sctp_service(&cluster, name, node_port, lb, pod),
        );
        for ip in lb {
            cluster.route(ip, &["node1"]);
        }
    }
    let before = {
        let c = cluster.packet_counters("node1");
        (c[&PacketReason::Dnat], c[&PacketReason::DnatSnat], c[&PacketReason::Revnat])
    };
    let mut sport = 40_000;
    for v6 in [false, true] {
        let (node1, client) = (cluster.node_ip("node1", v6), cluster.client_ip("ext", v6));
        let a2 = cluster.pod_ip("a2", v6);
        for (name, node_port, lb, pod) in services {
            let responder =
                cluster.lab.run_in(pod, move || Responder::start(!v6, 0xb0b0_0000)).unwrap();
            let lb_ip: IpAddr = lb[usize::from(v6)].parse().unwrap();
            let cluster_ip: IpAddr = if v6 {
                format!("fd00:96::{}:10", node_port % 100).parse().unwrap()
            } else {
                format!("10.96.{}.10", node_port % 100).parse().unwrap()
            };
            let exchanges =
                [("ext", at(node1, node_port)), ("ext", at(lb_ip, 80)), ("a2", at(cluster_ip, 80))];
            for (member, target) in exchanges {
                sport += 1;
                let tag = 0x5157_0000 + u32::from(sport);
                let (from, ack) = init_exchange(&cluster, member, target, sport, tag);
                let what = format!("{name}: {member} -> {target}");
                assert_eq!(from, target.ip(), "{what}: from the address the INIT went to");
                assert_eq!((ack.sport, ack.dport), (target.port(), sport), "{what}: ports");
                assert_eq!((ack.chunk, ack.vtag), (CHUNK_INIT_ACK, tag), "{what}: {ack:?}");
                assert_eq!(ack.initiate_tag, 0xb0b0_0000, "{what}: the pod's answer");
                assert!(ack.crc_ok, "{what}: CRC32c valid after the reverse translation");
            }
            // What the pod saw: the external client (local pod) or node1 and a SNAT port
            // (remote pod), and a2 with its own port in both cases; always on the target port,
            // each INIT with a valid CRC32c after the port change.
            let answered = responder.stop();
            assert_eq!(answered.len(), 3, "{name} v6={v6}: {answered:?}");
            for (from, init) in &answered {
                assert_eq!(init.dport, ECHO_PORT, "{name}: to the targetPort");
                assert!(init.crc_ok, "{name}: CRC32c valid at the pod");
                if *from == a2 {
                    assert!((40_000..41_000).contains(&init.sport), "a2's own port: {init:?}");
                } else if name == "local" {
                    assert_eq!(*from, client, "local pod sees the client: {init:?}");
                } else {
                    assert_eq!(*from, node1, "remote pod sees node1 (SNAT): {init:?}");
                    assert!((1024..=29_999).contains(&init.sport), "SNAT port {init:?}");
                }
            }
            assert!(
                answered.iter().any(|(from, _)| *from == a2),
                "{name}: a2's INIT: {answered:?}"
            );
        }
    }
    let c = cluster.packet_counters("node1");
    let after = (c[&PacketReason::Dnat], c[&PacketReason::DnatSnat], c[&PacketReason::Revnat]);
    // Per family: ext's two new flows per Service (DNAT local, DNAT+SNAT remote) and a2's one
    // (DNAT); every INIT ACK translated back once.
    assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (8, 4, 12), "{c:?}");
    cluster.assert_nothing_left_the_lab_since(&baseline);
}
