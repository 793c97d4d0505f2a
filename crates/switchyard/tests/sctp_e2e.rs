//! SCTP through running agents (root): `switchyard agent --devices eth0` on two lab nodes, SCTP
//! Services of type LoadBalancer written as manifests. This kernel has no SCTP sockets
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

/// One INIT from `ext` (source port `sport`, initiate tag `tag`) to `target`; the INIT ACK
/// that came back, with its source address.
fn init_exchange(cluster: &Cluster, target: SocketAddr, sport: u16, tag: u32) -> (IpAddr, Packet) {
    let v4 = target.is_ipv4();
    let capture =
        cluster.lab.run_in("ext", move || Capture::open(v4, IPPROTO_SCTP).unwrap()).unwrap();
    let init = sctp::init(sport, target.port(), tag);
    cluster.lab.run_in("ext", || raw::send(target.ip(), IPPROTO_SCTP, &init).unwrap()).unwrap();
    let (from, l4) = capture
        .next(TIMEOUT)
        .unwrap_or_else(|e| panic!("{target}: no INIT ACK within {TIMEOUT:?}: {e}"));
    (from, Packet::parse(&l4).unwrap_or_else(|| panic!("{target}: not SCTP: {l4:?}")))
}

#[test]
fn crafted_sctp_init_reaches_local_and_remote_pods_through_node_ports_and_load_balancer_ips() {
    if !require_root(
        "crafted_sctp_init_reaches_local_and_remote_pods_through_node_ports_and_load_balancer_ips",
    ) {
        return;
    }
    let cluster = Cluster::with_clients(
        &[("node1", &["a1"]), ("node2", &["b1"])],
        &["ext"],
        &["--devices", "eth0"],
    );
    let baseline = cluster.containment_baseline();
    // From node1, "local" has its pod there (DNAT) and "remote" on node2 (DNAT + SNAT).
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
        for (name, node_port, lb, pod) in services {
            let responder =
                cluster.lab.run_in(pod, move || Responder::start(!v6, 0xb0b0_0000)).unwrap();
            let lb_ip: IpAddr = lb[usize::from(v6)].parse().unwrap();
            for target in [at(node1, node_port), at(lb_ip, 80)] {
                sport += 1;
                let tag = 0x5157_0000 + u32::from(sport);
                let (from, ack) = init_exchange(&cluster, target, sport, tag);
                assert_eq!(from, target.ip(), "{name} {target}: from the address the INIT went to");
                assert_eq!(
                    (ack.sport, ack.dport),
                    (target.port(), sport),
                    "{name} {target}: ports"
                );
                assert_eq!(
                    (ack.chunk, ack.vtag),
                    (CHUNK_INIT_ACK, tag),
                    "{name} {target}: {ack:?}"
                );
                assert_eq!(ack.initiate_tag, 0xb0b0_0000, "{name} {target}: the pod's answer");
                assert!(ack.crc_ok, "{name} {target}: CRC32c valid after the reverse translation");
            }
            // What the pod saw: the client (local pod) or node1 and a SNAT port (remote pod),
            // on the target port, each INIT with a valid CRC32c after the port change.
            let answered = responder.stop();
            assert_eq!(answered.len(), 2, "{name} v6={v6}: {answered:?}");
            for (from, init) in &answered {
                assert_eq!(init.dport, ECHO_PORT, "{name}: to the targetPort");
                assert!(init.crc_ok, "{name}: CRC32c valid at the pod");
                if name == "local" {
                    assert_eq!(*from, client, "local pod sees the client: {init:?}");
                } else {
                    assert_eq!(*from, node1, "remote pod sees node1 (SNAT): {init:?}");
                    assert!((61_000..=65_535).contains(&init.sport), "SNAT port {init:?}");
                }
            }
        }
    }
    let c = cluster.packet_counters("node1");
    let after = (c[&PacketReason::Dnat], c[&PacketReason::DnatSnat], c[&PacketReason::Revnat]);
    // 2 families × 2 addresses per Service; the INIT ACKs translated back.
    assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (4, 4, 8), "{c:?}");
    cluster.assert_nothing_left_the_lab_since(&baseline);
}
