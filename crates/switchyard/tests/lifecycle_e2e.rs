//! Services changing under running agents (root): a port removed or renumbered, a Service
//! deleted (its ClusterIP and NodePorts stop answering) and recreated with a new ClusterIP,
//! the type changed ClusterIP -> NodePort -> LoadBalancer -> ClusterIP -> ExternalName and
//! back, and session affinity switched on and off, on the socket path and per packet.
//! See docs/conformance.md.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::process::Child;
use std::time::Duration;

use switchyard_bpf::{Maps, abi};
use switchyard_lab::require_root;
use switchyard_lab::tools::clients::HoldReport;
use switchyard_testing::e2e::{Cluster, ECHO_PORT, State, at, set, v4};

/// Two nodes (`node1`: a1, a2; `node2`: b1, b2), the external client `ext`, agents with the
/// per-packet programs on the uplink.
fn cluster() -> Cluster {
    Cluster::with_clients(
        &[("node1", &["a1", "a2"]), ("node2", &["b1", "b2"])],
        &["ext"],
        &["--devices", "eth0"],
    )
}

/// A Service port: name (also the EndpointSlice port's), port, protocol, nodePort.
type Port = (&'static str, u16, &'static str, Option<u16>);

/// TCP and UDP on 80 to the echo servers, NodePort `node_port` if given.
fn web_ports(node_port: Option<u16>) -> Vec<Port> {
    vec![("tcp", 80, "TCP", node_port), ("udp", 80, "UDP", node_port)]
}

/// Service `svc` (IPv4) with `spec` lines after `type`, `ports` to [`ECHO_PORT`] and one
/// EndpointSlice naming the same ports.
fn svc(cluster: &Cluster, spec: &str, ports: &[Port], endpoints: &[(&str, State)]) -> String {
    let mut service_ports = String::new();
    let mut slice_ports = String::new();
    for (name, port, protocol, node_port) in ports {
        let node_port = node_port.map(|p| format!(", nodePort: {p}")).unwrap_or_default();
        service_ports += &format!(
            "  - {{name: {name}, port: {port}, protocol: {protocol}, targetPort: {ECHO_PORT}{node_port}}}\n"
        );
        slice_ports += &format!("- {{name: {name}, port: {ECHO_PORT}, protocol: {protocol}}}\n");
    }
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc\n  namespace: e2e\nspec:\n{spec}\
         \x20 ports:\n{service_ports}---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata:\n  name: svc-v4\n  namespace: e2e\n  labels: {{kubernetes.io/service-name: svc}}\n\
         addressType: IPv4\nendpoints:{endpoints}ports:\n{slice_ports}",
        endpoints = if endpoints.is_empty() {
            " []\n".to_string()
        } else {
            format!("\n{}", cluster.endpoint_items(endpoints, false))
        },
    )
}

/// `spec` lines of a Service of `kind` with one ClusterIP.
fn typed(kind: &str, ip: IpAddr) -> String {
    format!("  type: {kind}\n  clusterIP: \"{ip}\"\n  clusterIPs: [\"{ip}\"]\n")
}

/// One TCP connection from `member` to `target` is refused at once (nothing listens there:
/// the node's own stack answers with a RST).
fn refused(cluster: &Cluster, member: &str, target: SocketAddr) {
    let out = cluster.client(member, "tcp", target, 1);
    assert_eq!(out.summary.errors.get("connection refused"), Some(&1), "{member} -> {target}");
}

/// The frontend node1's pinned maps hold for `target`/TCP (socket path lookup).
fn frontend(cluster: &Cluster, target: SocketAddr) -> Option<abi::Frontend> {
    let maps = Maps::open_pinned(&cluster.lab.node("node1").unwrap().bpf_dir).unwrap();
    maps.resolve(target, abi::PROTO_TCP).unwrap().map(|(_, frontend)| frontend)
}

fn end_hold(mut hold: Child) -> HoldReport {
    drop(hold.stdin.take());
    let out = hold.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn removed_ports_and_deleted_services_stop_answering_and_a_recreated_service_moves() {
    if !require_root("removed_ports_and_deleted_services_stop_answering") {
        return;
    }
    let cluster = cluster();
    let mut baseline = cluster.containment_baseline();
    let (ip, node1) = (v4("10.96.130.10"), cluster.node_ip("node1", false));
    let endpoints = [("a2", State::Ready), ("b1", State::Ready)];
    let node_port = typed("NodePort", ip);
    let mut ports = web_ports(Some(30130));
    ports.push(("alt", 81, "TCP", Some(30131)));
    cluster.apply_until_it_answers(
        "svc.yaml",
        &svc(&cluster, &node_port, &ports, &endpoints),
        "a1",
        at(ip, 81),
    );
    assert_eq!(cluster.backends("ext", "tcp", at(node1, 30131), 20), set(&["a2", "b1"]));

    // Port 81 removed: its ClusterIP port and NodePort stop answering, port 80 stays.
    cluster.apply_and_wait(
        "svc.yaml",
        &svc(&cluster, &node_port, &web_ports(Some(30130)), &endpoints),
    );
    cluster.assert_untranslated("a1", at(ip, 81), &mut baseline);
    refused(&cluster, "ext", at(node1, 30131));
    refused(&cluster, "a1", at(node1, 30131));
    assert_eq!(cluster.backends("a1", "udp", at(ip, 80), 20), set(&["a2", "b1"]));

    // The Service port changes 80 -> 8000 (same name, same NodePort).
    let renumbered = [("tcp", 8000, "TCP", Some(30130)), ("udp", 8000, "UDP", Some(30130))];
    cluster.apply_and_wait("svc.yaml", &svc(&cluster, &node_port, &renumbered, &endpoints));
    assert_eq!(cluster.backends("a1", "tcp", at(ip, 8000), 20), set(&["a2", "b1"]));
    cluster.assert_untranslated("a1", at(ip, 80), &mut baseline);

    // Deleted: the ClusterIP and the NodePorts on every node stop answering (released).
    cluster.delete_and_wait("svc.yaml");
    cluster.assert_untranslated("a1", at(ip, 8000), &mut baseline);
    for node in ["node1", "node2"] {
        refused(&cluster, "ext", at(cluster.node_ip(node, false), 30130));
    }
    refused(&cluster, "a1", at(node1, 30130));

    // Recreated under the same name with a new ClusterIP: the new one answers, the old does not.
    let moved = v4("10.96.130.20");
    cluster.apply_until_it_answers(
        "svc.yaml",
        &svc(&cluster, &typed("NodePort", moved), &web_ports(Some(30130)), &endpoints),
        "a1",
        at(moved, 80),
    );
    assert_eq!(cluster.backends("a1", "udp", at(moved, 80), 20), set(&["a2", "b1"]));
    assert_eq!(cluster.backends("ext", "tcp", at(node1, 30130), 20), set(&["a2", "b1"]));
    cluster.assert_untranslated("a1", at(ip, 80), &mut baseline);
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn a_service_changes_type_cluster_ip_node_port_load_balancer_external_name_and_back() {
    if !require_root("a_service_changes_type_cluster_ip_node_port_load_balancer") {
        return;
    }
    let cluster = cluster();
    let mut baseline = cluster.containment_baseline();
    let (ip, lb) = (v4("10.96.140.10"), v4("10.96.141.1"));
    let nodes = [cluster.node_ip("node1", false), cluster.node_ip("node2", false)];
    let endpoints = [("a1", State::Ready), ("b1", State::Ready)];
    let both = set(&["a1", "b1"]);
    let cluster_ip = svc(&cluster, &typed("ClusterIP", ip), &web_ports(None), &endpoints);
    cluster.apply_until_it_answers("svc.yaml", &cluster_ip, "a2", at(ip, 80));
    refused(&cluster, "ext", at(nodes[0], 30140));
    // A long-lived connection to the ClusterIP lives through every type change that keeps it.
    let hold = cluster.spawn_hold("a2", at(ip, 80), 20);

    let node_port = svc(&cluster, &typed("NodePort", ip), &web_ports(Some(30140)), &endpoints);
    cluster.apply_and_wait("svc.yaml", &node_port);
    for node in nodes {
        assert_eq!(cluster.backends("ext", "tcp", at(node, 30140), 20), both, "{node}");
    }
    assert_eq!(cluster.backends("a2", "udp", at(nodes[0], 30140), 20), both);

    let status = format!("status:\n  loadBalancer:\n    ingress: [{{ip: \"{lb}\"}}]\n");
    let load_balancer =
        svc(&cluster, &typed("LoadBalancer", ip), &web_ports(Some(30140)), &endpoints).replacen(
            "---\napiVersion: discovery",
            &format!("{status}---\napiVersion: discovery"),
            1,
        );
    cluster.apply_and_wait("svc.yaml", &load_balancer);
    cluster.route(&lb.to_string(), &["node1"]);
    assert_eq!(cluster.backends("ext", "tcp", at(lb, 80), 20), both);
    assert_eq!(cluster.backends("a2", "tcp", at(lb, 80), 20), both);

    // Back to ClusterIP: NodePorts and the LoadBalancer IP go, the ClusterIP stays.
    cluster.apply_and_wait("svc.yaml", &cluster_ip);
    cluster.route(&lb.to_string(), &[]);
    refused(&cluster, "ext", at(nodes[1], 30140));
    refused(&cluster, "a2", at(nodes[0], 30140));
    assert!(frontend(&cluster, at(lb, 80)).is_none(), "node1 still serves the LoadBalancer IP");
    assert_eq!(cluster.backends("a2", "tcp", at(ip, 80), 20), both);
    // The changes take well under a second: let the connection go on past the last one.
    std::thread::sleep(Duration::from_millis(300));
    let report = end_hold(hold);
    assert!(!report.reset && report.error.is_none(), "connection broke: {report:?}");
    assert!(report.pings > 10, "{report:?}");

    // ExternalName: not proxied, the ClusterIP stops answering; then ClusterIP again.
    let external_name = "  type: ExternalName\n  externalName: web.example.org\n";
    cluster.apply_and_wait("svc.yaml", &svc(&cluster, external_name, &web_ports(None), &[]));
    cluster.assert_untranslated("a2", at(ip, 80), &mut baseline);
    cluster.apply_until_it_answers("svc.yaml", &cluster_ip, "a2", at(ip, 80));
    assert_eq!(cluster.backends("a2", "udp", at(ip, 80), 20), both);
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

/// Backends that answered `count` TCP requests from `member` to `target`.
fn spread(cluster: &Cluster, member: &str, target: SocketAddr, count: usize) -> BTreeSet<String> {
    cluster.backends(member, "tcp", target, count)
}

#[test]
fn session_affinity_switched_on_and_off_takes_effect_per_socket_and_per_packet() {
    if !require_root("session_affinity_switched_on_and_off_takes_effect") {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    let ip = v4("10.96.150.10");
    let node_port = at(cluster.node_ip("node1", false), 30150);
    let all = ["a1", "a2", "b1", "b2"];
    let endpoints: Vec<(&str, State)> = all.iter().map(|p| (*p, State::Ready)).collect();
    let write = |affinity: &str| {
        let spec = typed("NodePort", ip) + affinity;
        cluster
            .apply_and_wait("svc.yaml", &svc(&cluster, &spec, &web_ports(Some(30150)), &endpoints));
    };
    let timeout = || frontend(&cluster, at(ip, 80)).unwrap().affinity_timeout_s;
    // 40 requests over 4 backends all on one would be chance with probability 4^-39.
    let spreads = |what: &str| {
        assert!(spread(&cluster, "a1", at(ip, 80), 40).len() > 1, "{what}: socket path");
        assert!(spread(&cluster, "ext", node_port, 40).len() > 1, "{what}: per packet");
    };
    write("");
    cluster.eventually("the ClusterIP answers", || {
        cluster.client("a1", "tcp", at(ip, 80), 1).summary.errors.is_empty()
    });
    assert_eq!(timeout(), 0);
    spreads("without affinity");

    // On, with the default timeout (10800 s): every request of a client goes to one backend.
    write("  sessionAffinity: ClientIP\n");
    assert_eq!(timeout(), 10_800, "default timeoutSeconds");
    for kind in ["tcp", "udp"] {
        assert_eq!(cluster.backends("a1", kind, at(ip, 80), 30).len(), 1, "{kind}: socket path");
    }
    assert_eq!(spread(&cluster, "ext", node_port, 30).len(), 1, "per packet");

    // A 1 s timeout: per packet, the choice is made afresh once it expires (6 rounds 1.5 s
    // apart all on one backend would be chance with probability 4^-5).
    write(
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 1}}\n",
    );
    assert_eq!(timeout(), 1);
    let mut chosen = BTreeSet::new();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(1500));
        chosen.extend(spread(&cluster, "ext", node_port, 1));
    }
    assert!(chosen.len() > 1, "per-packet affinity never expired: {chosen:?}");

    // More than the API server allows (1-86400 s): the API server would refuse this version,
    // so every agent reports it and keeps the last good one (1 s) rather than guess a value.
    let spec = typed("NodePort", ip)
        + "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 100000}}\n";
    cluster.apply("svc.yaml", &svc(&cluster, &spec, &web_ports(Some(30150)), &endpoints));
    cluster.eventually("every agent reported the refused timeout", || {
        cluster.agents.iter().all(|agent| agent.logged("timeoutSeconds: 100000 is outside 1-86400"))
    });
    assert_eq!(timeout(), 1);

    // Off again: spread at once, on both paths.
    write("");
    assert_eq!(timeout(), 0);
    spreads("affinity switched off");
    cluster.assert_nothing_left_the_lab_since(&baseline);
}
