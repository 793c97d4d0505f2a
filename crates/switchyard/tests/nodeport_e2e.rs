//! The per-packet half of the node role through the agent (root): `switchyard agent --devices
//! eth0` on every lab node, Services of type NodePort / LoadBalancer with external IPs written
//! as manifests, and clients in external namespaces behind the router (`ext`, `far`) that
//! reach node addresses, LoadBalancer and external IPs routed to the nodes. See docs/e2e.md.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchyard_bpf::nodeport_abi::PacketReason;
use switchyard_lab::require_root;
use switchyard_lab::tools::clients::{self, Attempt};
use switchyard_testing::StopOnDrop;
use switchyard_testing::e2e::{BIN, Cluster, State, agent_refusing, at, set, topology, v4};

const TIMEOUT: Duration = Duration::from_secs(3);
/// A dropped connection attempt is given this long.
const DROPPED: Duration = Duration::from_secs(1);

/// Two nodes (`node1`: a1, a2; `node2`: b1, b2), external clients `ext` and `far`, agents
/// with the per-packet programs on the uplink.
fn cluster() -> Cluster {
    Cluster::with_clients(
        &[("node1", &["a1", "a2"]), ("node2", &["b1", "b2"])],
        &["ext", "far"],
        &["--devices", "eth0"],
    )
}

/// `count` TCP connections from an external client (a thread in its namespace).
fn tcp_from(cluster: &Cluster, client: &str, target: SocketAddr, count: usize) -> Vec<Attempt> {
    cluster.lab.run_in(client, || clients::tcp(target, count, TIMEOUT)).unwrap()
}

/// Like [`tcp_from`] but every attempt must succeed.
fn ok_from(cluster: &Cluster, client: &str, target: SocketAddr, count: usize) -> Vec<Attempt> {
    let attempts = tcp_from(cluster, client, target, count);
    for a in &attempts {
        assert_eq!(a.error, None, "{client} -> {target}: {a:?}");
    }
    attempts
}

fn backends(attempts: &[Attempt]) -> std::collections::BTreeSet<String> {
    attempts.iter().filter_map(|a| a.backend.clone()).collect()
}

fn seen(a: &Attempt) -> SocketAddr {
    a.seen_as.as_deref().unwrap().parse().unwrap()
}

/// One HTTP GET from `client`: status and parsed JSON body.
fn health(cluster: &Cluster, client: &str, target: SocketAddr) -> Option<(u16, serde_json::Value)> {
    let a = cluster.lab.run_in(client, || clients::http(target, "/", 1, TIMEOUT)).unwrap();
    let a = a.into_iter().next()?;
    Some((a.status?, serde_json::from_str(a.body.as_deref()?).ok()?))
}

fn counters(cluster: &Cluster, node: &str) -> BTreeMap<PacketReason, u64> {
    cluster.packet_counters(node)
}

#[test]
fn external_clients_reach_node_ports_load_balancer_and_external_ips_on_every_node() {
    if !require_root(
        "external_clients_reach_node_ports_load_balancer_and_external_ips_on_every_node",
    ) {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    let (lb, ext_ip) = (["10.96.80.1", "fd00:96::80:1"], ["10.96.81.1", "fd00:96::81:1"]);
    let spec = format!("  externalIPs: [\"{}\", \"{}\"]\n", ext_ip[0], ext_ip[1]);
    let endpoints = [("a1", State::Ready), ("b1", State::Ready)];
    cluster
        .apply_and_wait("web.yaml", &cluster.load_balancer("web", 30080, &spec, &lb, &endpoints));
    for ip in lb {
        cluster.route(ip, &["node1", "node2"]);
    }
    for ip in ext_ip {
        cluster.route(ip, &["node2"]);
    }

    // NodePort on every node, both families: local and remote backends both answer; a local
    // backend sees the client, a remote one this node's address and a SNAT port.
    for (node, local) in [("node1", "a1"), ("node2", "b1")] {
        for v6 in [false, true] {
            let (node_ip, client) = (cluster.node_ip(node, v6), cluster.client_ip("ext", v6));
            let attempts = ok_from(&cluster, "ext", at(node_ip, 30080), 24);
            assert_eq!(backends(&attempts), set(&["a1", "b1"]), "{node_ip}:30080");
            for a in &attempts {
                let seen = seen(a);
                if a.backend.as_deref() == Some(local) {
                    assert_eq!(seen.ip(), client, "local backend sees the client: {a:?}");
                } else {
                    assert_eq!(seen.ip(), node_ip, "remote backend sees the node: {a:?}");
                    assert!((1024..=29_999).contains(&seen.port()), "SNAT port: {a:?}");
                }
            }
            // UDP through the NodePort: replies come from the address the client sent to.
            let target = at(node_ip, 30080);
            let udp = cluster.lab.run_in("ext", || clients::udp(target, 10, TIMEOUT)).unwrap();
            for a in &udp {
                assert_eq!(a.error, None, "UDP {target}: {a:?}");
                assert_eq!(a.reply_from.as_deref(), Some(target.to_string().as_str()), "{a:?}");
            }
        }
    }
    // LoadBalancer IPs (ECMP to both nodes) and external IPs (routed to node2).
    for ip in lb.iter().chain(&ext_ip) {
        let target = at(ip.parse().unwrap(), 80);
        let attempts = ok_from(&cluster, "ext", target, 24);
        assert_eq!(backends(&attempts), set(&["a1", "b1"]), "{target}");
    }
    let n1 = counters(&cluster, "node1");
    assert!(n1[&PacketReason::Dnat] > 0 && n1[&PacketReason::DnatSnat] > 0, "{n1:?}");
    assert!(n1[&PacketReason::Revnat] > 0, "{n1:?}");
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address_and_health_check_node_ports_follow() {
    if !require_root(
        "external_traffic_policy_local_keeps_the_client_address_and_health_check_node_ports_follow",
    ) {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    let spec = "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32081\n";
    let lb = ["10.96.90.1"];
    let write = |endpoints: &[(&str, State)]| {
        cluster
            .apply_and_wait("loc.yaml", &cluster.load_balancer("loc", 30081, spec, &lb, endpoints));
    };
    write(&[("a1", State::Ready)]);
    cluster.route("10.96.90.1", &["node1"]);

    for v6 in [false, true] {
        let client = cluster.client_ip("ext", v6);
        let attempts = ok_from(&cluster, "ext", at(cluster.node_ip("node1", v6), 30081), 10);
        assert_eq!(backends(&attempts), set(&["a1"]));
        for a in &attempts {
            assert_eq!(seen(a).ip(), client, "ETP Local preserves the client: {a:?}");
        }
        // node2 has no endpoint of its own: dropped, not refused, not forwarded.
        let target = at(cluster.node_ip("node2", v6), 30081);
        let dropped = cluster.lab.run_in("ext", || clients::tcp(target, 1, DROPPED)).unwrap();
        assert_eq!(dropped[0].error.as_deref(), Some("timed out"), "{target}: {dropped:?}");
    }
    let via_lb = ok_from(&cluster, "ext", at(v4("10.96.90.1"), 80), 5);
    assert!(via_lb.iter().all(|a| seen(a).ip() == cluster.client_ip("ext", false)), "{via_lb:?}");
    assert!(counters(&cluster, "node2")[&PacketReason::DropNoLocalBackend] >= 2);

    // Health check node port on both nodes: 200 where a local endpoint is ready, else 503.
    let hc = |node: &str| at(cluster.node_ip(node, false), 32081);
    let (status, body) = health(&cluster, "ext", hc("node1")).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["localEndpoints"], 1);
    assert_eq!(body["service"], serde_json::json!({"namespace": "e2e", "name": "loc"}));
    assert_eq!(body["serviceProxyHealthy"], true);
    let (status, body) =
        health(&cluster, "ext", at(cluster.node_ip("node2", true), 32081)).unwrap();
    assert_eq!((status, &body["localEndpoints"]), (503, &serde_json::json!(0)), "{body}");

    // Only a terminating local endpoint: 503 while traffic still reaches it.
    write(&[("a1", State::Terminating)]);
    cluster.eventually("node1's health check turns 503", || {
        health(&cluster, "ext", hc("node1"))
            .is_some_and(|(status, body)| status == 503 && body["localEndpoints"] == 0)
    });
    let attempts = ok_from(&cluster, "ext", at(cluster.node_ip("node1", false), 30081), 3);
    assert_eq!(backends(&attempts), set(&["a1"]));
    // An endpoint on node2 turns its health check to 200.
    write(&[("a1", State::Terminating), ("b1", State::Ready)]);
    cluster.eventually("node2's health check turns 200", || {
        health(&cluster, "ext", hc("node2")).is_some_and(|(status, _)| status == 200)
    });
    // Back to externalTrafficPolicy Cluster: the health check node ports close.
    cluster.apply_and_wait(
        "loc.yaml",
        &cluster.load_balancer("loc", 30081, "", &lb, &[("b1", State::Ready)]),
    );
    for node in ["node1", "node2"] {
        let target = hc(node);
        cluster.eventually(&format!("{target} closes"), || {
            let gone = cluster.lab.run_in("ext", || clients::tcp(target, 1, TIMEOUT)).unwrap();
            gone[0].error.as_deref() == Some("connection refused")
        });
    }
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn source_ranges_empty_services_and_a_large_upload_through_a_smaller_mtu() {
    if !require_root("source_ranges_empty_services_and_a_large_upload_through_a_smaller_mtu") {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    let lb = ["10.96.82.1", "fd00:96::82:1"];
    // Only `ext`'s networks may use the LoadBalancer IPs; `far` may not.
    let spec = "  loadBalancerSourceRanges: [\"10.200.1.0/24\", \"fd00:200:0:1::/64\"]\n";
    let fw = cluster.load_balancer("fw", 30082, spec, &lb, &[("b1", State::Ready)]);
    let empty = cluster.load_balancer("empty", 30083, "", &["10.96.83.1"], &[]);
    cluster.apply_and_wait("svc.yaml", &(fw + &empty));
    for ip in ["10.96.82.1", "fd00:96::82:1", "10.96.83.1"] {
        cluster.route(ip, &["node1"]);
    }

    for ip in lb {
        let target = at(ip.parse().unwrap(), 80);
        assert_eq!(backends(&ok_from(&cluster, "ext", target, 3)), set(&["b1"]), "{target}");
        let denied = cluster.lab.run_in("far", || clients::tcp(target, 1, DROPPED)).unwrap();
        assert_eq!(denied[0].error.as_deref(), Some("timed out"), "far -> {target}: {denied:?}");
    }
    // Source ranges are for LoadBalancer IPs only: `far` reaches the NodePort.
    ok_from(&cluster, "far", at(cluster.node_ip("node1", false), 30082), 3);
    assert!(counters(&cluster, "node1")[&PacketReason::DropSourceRange] >= 2);

    // No endpoints anywhere: refused at once (TCP RST, ICMP port unreachable for UDP).
    for target in [
        at(cluster.node_ip("node1", false), 30083),
        at(cluster.node_ip("node2", true), 30083),
        at(v4("10.96.83.1"), 80),
    ] {
        let started = Instant::now();
        let tcp = tcp_from(&cluster, "ext", target, 1);
        let udp = cluster.lab.run_in("ext", || clients::udp_connected(target, 1, TIMEOUT)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "{target}: not at once");
        assert_eq!(tcp[0].error.as_deref(), Some("connection refused"), "{target}: {tcp:?}");
        assert_eq!(udp[0].error.as_deref(), Some("connection refused"), "{target}: {udp:?}");
    }
    let n1 = counters(&cluster, "node1");
    assert!(n1[&PacketReason::RejectRst] >= 2 && n1[&PacketReason::RejectIcmp] >= 2, "{n1:?}");

    // A hop with a smaller MTU between node1 and node2 (router -> node2): 200 kB uploads to the
    // remote backend complete, because the router's frag-needed / packet-too-big about the
    // SNATed packets is translated back to the client (path-MTU discovery through the proxy).
    let router_link = cluster.lab.node("node2").unwrap().router_link.clone();
    cluster.lab.set_mtu("fabric", &router_link, 1280).unwrap();
    let before = counters(&cluster, "node1")[&PacketReason::IcmpRevnat];
    // Without the translated ICMP the upload never completes (no PMTU black-hole probing by
    // default); 30 s leaves room for the router's ICMP rate limit and TCP's backoff on a loaded
    // machine (10 s timed out once in a CI run under two concurrent builds).
    for v6 in [false, true] {
        let target = at(cluster.node_ip("node1", v6), 30082);
        let up = cluster
            .lab
            .run_in("ext", || clients::upload(target, 200_000, Duration::from_secs(30)))
            .unwrap();
        assert_eq!(up.error, None, "upload to {target}: {up:?}");
        assert_eq!(up.backend.as_deref(), Some("b1"));
    }
    let after = counters(&cluster, "node1")[&PacketReason::IcmpRevnat];
    assert!(after >= before + 2, "ICMP errors translated: {before} -> {after}");
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

/// A long-lived connection from `ext`, held until `stop` is set.
fn hold(lab: &switchyard_lab::Lab, target: SocketAddr, stop: &AtomicBool) -> clients::HoldReport {
    lab.run_in("ext", || {
        clients::hold_until(target, Duration::from_millis(20), TIMEOUT, || {
            stop.load(Ordering::SeqCst)
        })
    })
    .unwrap()
}

/// `count` ClusterIP Services on 10.97.0.0/16, one TCP port each, no endpoints.
fn many_services(count: u32) -> String {
    let mut out = String::new();
    for i in 0..count {
        let ip = format!("10.97.{}.{}", i / 200, i % 200 + 1);
        out.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: many-{i}, namespace: default}}\n\
             spec:\n  clusterIP: {ip}\n  clusterIPs: [\"{ip}\"]\n  ports:\n  \
             - {{name: tcp, port: 80, protocol: TCP}}\n---\n"
        ));
    }
    out
}

/// The two Services of the long-lived test: only a remote backend (SNAT path) and only a
/// local one (DNAT).
fn write_hold_services(cluster: &Cluster, remote: &[(&str, State)], local: &[(&str, State)]) {
    let text = cluster.load_balancer("remote", 30084, "", &[], remote)
        + &cluster.load_balancer("local", 30085, "", &[], local);
    cluster.apply_and_wait("svc.yaml", &text);
}

#[test]
fn long_lived_connections_survive_backend_changes_and_an_agent_restart() {
    if !require_root("long_lived_connections_survive_backend_changes_and_an_agent_restart") {
        return;
    }
    let mut cluster = cluster();
    let baseline = cluster.containment_baseline();
    write_hold_services(&cluster, &[("b1", State::Ready)], &[("a1", State::Ready)]);
    let (n1v4, n1v6) = (cluster.node_ip("node1", false), cluster.node_ip("node1", true));
    let targets = [at(n1v4, 30084), at(n1v6, 30084), at(n1v4, 30085)];
    // Warm up (neighbour entries along the path), so each long-lived connection is
    // established right away and is known to start on the original backend.
    for target in targets {
        ok_from(&cluster, "ext", target, 1);
    }

    let stop = AtomicBool::new(false);
    let reports = std::thread::scope(|scope| {
        let lab = &cluster.lab;
        let stop = &stop;
        let holds: Vec<_> =
            targets.iter().map(|t| scope.spawn(move || hold(lab, *t, stop))).collect();
        let _stop_on_panic = StopOnDrop(stop);
        std::thread::sleep(Duration::from_millis(300));
        // More backends; then the original ones terminate: new flows avoid them.
        write_hold_services(
            &cluster,
            &[("b1", State::Ready), ("b2", State::Ready)],
            &[("a1", State::Ready), ("a2", State::Ready)],
        );
        std::thread::sleep(Duration::from_millis(200));
        write_hold_services(
            &cluster,
            &[("b1", State::Terminating), ("b2", State::Ready)],
            &[("a1", State::Terminating), ("a2", State::Ready)],
        );
        assert_eq!(backends(&ok_from(&cluster, "ext", targets[0], 10)), set(&["b2"]));
        assert_eq!(backends(&ok_from(&cluster, "ext", targets[2], 10)), set(&["a2"]));
        std::thread::sleep(Duration::from_millis(200));
        // Restart node1's agent: the pinned programs serve meanwhile; the new agent attaches
        // its TC links before the old ones go.
        let pins = |cluster: &Cluster| -> Vec<String> {
            let dir = cluster.lab.node("node1").unwrap().bpf_dir.join("links");
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("tc-"))
                .collect();
            names.sort();
            names
        };
        let before = pins(&cluster);
        assert_eq!(before.len(), 2, "ingress and egress on eth0: {before:?}");
        let index = cluster.agent_index("node1");
        cluster.agents.remove(index).stop();
        ok_from(&cluster, "ext", targets[0], 3);
        let agent = cluster.start_agent("node1");
        assert!(agent.logged("adopted pinned state"));
        cluster.agents.push(agent);
        let after = pins(&cluster);
        assert_eq!(after.len(), 2, "{after:?}");
        assert!(
            after.iter().all(|p| !before.contains(p)),
            "new generation: {before:?} -> {after:?}"
        );
        assert_eq!(backends(&ok_from(&cluster, "ext", targets[1], 10)), set(&["b2"]));
        // Issue 20: 1,100 more Services outgrow the state maps (sized at twice the state, at
        // least 1,024 frontends): the running agents migrate them and attach a new generation
        // of every program, TC included, under the long-lived connections.
        let node1 = cluster.agent_index("node1");
        assert!(!cluster.agents[node1].logged("state maps sized for the state"));
        cluster.apply_and_wait("many.yaml", &many_services(1100));
        // Loading (verifying) every program again takes seconds in a debug build on a busy
        // machine: a longer wait than the cluster's usual one.
        let grown = switchyard_lab::wait_until(Duration::from_secs(90), || {
            cluster.agents[node1].logged("state maps sized for the state")
                && pins(&cluster).iter().all(|p| !after.contains(p))
        });
        assert!(grown, "node1's agent did not grow its maps and attach a new generation");
        assert_eq!(backends(&ok_from(&cluster, "ext", targets[0], 10)), set(&["b2"]));
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        holds.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    for (report, original) in reports.iter().zip(["b1", "b1", "a1"]) {
        assert!(!report.reset && report.error.is_none(), "connection broke: {report:?}");
        assert_eq!(report.backends, vec![original.to_string()], "{report:?}");
        assert!(report.pings > 20, "{report:?}");
    }

    // `--cleanup` removes the TC programs with everything else.
    let index = cluster.agent_index("node1");
    cluster.agents.remove(index).stop();
    let bpf_dir = cluster.lab.node("node1").unwrap().bpf_dir.clone();
    let mut command = std::process::Command::new(&*BIN);
    command.args(["agent", "--cleanup", "--bpf-dir"]).arg(&bpf_dir);
    let out = cluster.lab.output_in("node1", command).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!bpf_dir.join("links").exists() && !bpf_dir.join("sy_ct").exists());
    let gone = tcp_from(&cluster, "ext", targets[0], 1);
    assert_eq!(gone[0].error.as_deref(), Some("connection refused"), "untranslated: {gone:?}");
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

/// `--nodeport-addresses` (kube-proxy's flag; conformance row 3): agents given their nodes'
/// IPv4 addresses as /32 prefixes open NodePorts there only. The IPv6 node addresses, Node
/// addresses outside the list, do not answer on the NodePort (nothing listens there: refused),
/// neither per packet from outside nor on the socket path from a pod; the IPv4 ones answer both.
#[test]
fn nodeport_addresses_open_node_ports_on_the_listed_addresses_only() {
    if !require_root("nodeport_addresses_open_node_ports_on_the_listed_addresses_only") {
        return;
    }
    let nodes: [(&str, &[&str]); 2] = [("node1", &["a1"]), ("node2", &["b1"])];
    let cluster = Cluster::with_topology(&topology(&nodes, &["ext"], &[]), |lab| {
        let listed: Vec<String> = lab.nodes().iter().map(|n| format!("{}/32", n.ipv4)).collect();
        ["--devices", "eth0", "--nodeport-addresses", &listed.join(",")].map(String::from).to_vec()
    });
    let baseline = cluster.containment_baseline();
    let endpoints = [("a1", State::Ready), ("b1", State::Ready)];
    cluster.apply_and_wait("web.yaml", &cluster.load_balancer("web", 30090, "", &[], &endpoints));
    for node in ["node1", "node2"] {
        let (listed, unlisted) = (cluster.node_ip(node, false), cluster.node_ip(node, true));
        let from_outside = ok_from(&cluster, "ext", at(listed, 30090), 12);
        assert_eq!(backends(&from_outside), set(&["a1", "b1"]), "ext -> {listed}:30090");
        assert_eq!(cluster.backends("a1", "tcp", at(listed, 30090), 12), set(&["a1", "b1"]));

        let refused = tcp_from(&cluster, "ext", at(unlisted, 30090), 4);
        assert!(
            refused.iter().all(|a| a.error.is_some() && a.backend.is_none()),
            "ext -> [{unlisted}]:30090 is not a NodePort address: {refused:?}"
        );
        let from_pod = cluster.client("a1", "tcp", at(unlisted, 30090), 4).summary;
        assert!(
            from_pod.backends.is_empty() && from_pod.errors.values().sum::<usize>() == 4,
            "a1 -> [{unlisted}]:30090 is not a NodePort address: {from_pod:?}"
        );
    }
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn a_nodeport_addresses_value_that_is_no_cidr_is_refused() {
    // No root needed: clap refuses the value before anything runs.
    let out = agent_refusing(&["--nodeport-addresses", "10.0.0.0/8,10.1.0.0/33"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--nodeport-addresses") && stderr.contains("10.1.0.0/33"), "{stderr}");
}

#[test]
fn a_snat_port_range_overlapping_the_node_port_range_is_refused() {
    // No root needed: the ranges are checked before anything is loaded.
    let out = agent_refusing(&["--devices", "eth0", "--snat-port-range", "32000-40000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--snat-port-range 32000-40000 overlaps the NodePort range 30000-32767"),
        "{stderr}"
    );
}

#[test]
fn a_device_that_does_not_exist_is_refused_before_anything_is_loaded() {
    // No root needed: the device is looked up before anything is loaded.
    let out = agent_refusing(&["--devices", "lo,sy-no-such0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("device sy-no-such0: no such network device"), "{stderr}");
    assert!(!std::path::Path::new("/nonexistent").exists());
}

#[test]
fn a_health_check_node_port_in_use_is_retried_and_bound_once_it_is_freed() {
    if !require_root("a_health_check_node_port_in_use_is_retried_and_bound_once_it_is_freed") {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    // Another process on node1 holds the port (a listener in node1's namespace, both families).
    let holder =
        cluster.lab.run_in("node1", || std::net::TcpListener::bind("[::]:32085")).unwrap().unwrap();
    let spec = "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32085\n";
    let text = cluster.load_balancer("held", 30085, spec, &[], &[("a1", State::Ready)]);
    cluster.apply_and_wait("held.yaml", &text);
    let node1 = cluster.agents.iter().find(|a| a.node == "node1").unwrap();
    let logged_failure = || {
        node1.log.lock().unwrap().iter().any(|l| {
            l.contains("health check node port not served")
                && l.contains("32085")
                && l.contains("e2e/held")
        })
    };
    cluster.eventually("node1 logs the port in use, naming the Service", logged_failure);
    // node2 bound it: 503, no local endpoint.
    let (status, _) = health(&cluster, "ext", at(cluster.node_ip("node2", false), 32085)).unwrap();
    assert_eq!(status, 503);

    // Freed, and the Service does not change: the agent's own retry binds it.
    drop(holder);
    let target = at(cluster.node_ip("node1", false), 32085);
    cluster.eventually("node1 serves the freed port", || {
        health(&cluster, "ext", target).is_some_and(|(status, body)| {
            status == 200 && body["service"]["name"] == "held" && body["localEndpoints"] == 1
        })
    });
    // The log line follows the bind, so a request can be served before it is written.
    cluster.eventually("node1 logs that its retry bound the port", || {
        node1.logged("health check node port bound after retrying")
    });
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn large_udp_datagrams_pass_node_ports_in_fragments_both_ways_through_running_agents() {
    if !require_root(
        "large_udp_datagrams_pass_node_ports_in_fragments_both_ways_through_running_agents",
    ) {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    // One Service whose only endpoint is on node1 (a1), one whose only endpoint is on node2
    // (b1): through node1 the first is DNAT only, the second DNAT + SNAT to a remote pod.
    let local = cluster.load_balancer("fraglocal", 30084, "", &[], &[("a1", State::Ready)]);
    let remote = cluster.load_balancer("fragremote", 30085, "", &[], &[("b1", State::Ready)]);
    cluster.apply_and_wait("frag.yaml", &(local + &remote));
    let before = counters(&cluster, "node1");
    // 4,000-byte datagrams over 1,500-byte links: three fragments each way, for both families.
    for v6 in [false, true] {
        let (node_ip, client) = (cluster.node_ip("node1", v6), cluster.client_ip("ext", v6));
        for (port, backend, sees) in [(30084, "a1", client), (30085, "b1", node_ip)] {
            let target = at(node_ip, port);
            let attempts =
                cluster.lab.run_in("ext", || clients::udp_large(target, 4000, 5, TIMEOUT)).unwrap();
            for a in &attempts {
                assert_eq!(
                    a.error,
                    None,
                    "{target}: {a:?}; counters {:?}",
                    counters(&cluster, "node1")
                );
                assert_eq!(a.backend.as_deref(), Some(backend), "{a:?}");
                assert_eq!(seen(a).ip(), sees, "{a:?}");
                assert_eq!(a.reply_from.as_deref(), Some(target.to_string().as_str()), "{a:?}");
            }
        }
    }
    let after = counters(&cluster, "node1");
    let grew = |reason| after[&reason] - before.get(&reason).copied().unwrap_or(0);
    // Later fragments, 2 per datagram: 40 requests at ingress, 20 replies from the remote pod
    // at ingress (reverse DNAT + SNAT), 20 replies from the local pod at egress.
    let translated = grew(PacketReason::FragXlat);
    println!("node1: {translated} later fragments translated like their first");
    assert!(translated >= 80, "later fragments translated: {after:?}");
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn ipv6_packets_with_extension_headers_pass_node_ports_through_running_agents() {
    if !require_root("ipv6_packets_with_extension_headers_pass_node_ports_through_running_agents") {
        return;
    }
    use switchyard_lab::tools::ipv6_ext::{self, ExtHeader};
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    let endpoints = [("a1", State::Ready), ("b1", State::Ready)];
    cluster
        .apply_and_wait("ext.yaml", &cluster.load_balancer("exthdr", 30086, "", &[], &endpoints));
    let before = counters(&cluster, "node1");
    let IpAddr::V6(node_ip) = cluster.node_ip("node1", true) else { panic!("node1 has IPv6") };
    let target = std::net::SocketAddrV6::new(node_ip, 30086, 0, 0);
    // Every packet of these clients (the SYN included) carries the headers: the per-packet
    // path must walk them to the transport header to translate, or the node's own stack gets
    // a segment for a port nothing listens on.
    for headers in [
        vec![ExtHeader::DestinationOptions],
        vec![ExtHeader::HopByHop],
        vec![ExtHeader::HopByHop, ExtHeader::DestinationOptions],
    ] {
        let list = headers.clone();
        let tcp =
            cluster.lab.run_in("ext", move || ipv6_ext::tcp(target, &list, 12, TIMEOUT)).unwrap();
        for a in &tcp {
            assert_eq!(a.error, None, "TCP with {headers:?}: {a:?}");
        }
        assert_eq!(backends(&tcp), set(&["a1", "b1"]), "TCP with {headers:?}");
        let list = headers.clone();
        let udp =
            cluster.lab.run_in("ext", move || ipv6_ext::udp(target, &list, 6, TIMEOUT)).unwrap();
        for a in &udp {
            assert_eq!(a.error, None, "UDP with {headers:?}: {a:?}");
            assert_eq!(a.reply_from.as_deref(), Some(SocketAddr::V6(target).to_string().as_str()));
        }
    }
    let after = counters(&cluster, "node1");
    let grew = |reason| after[&reason] - before.get(&reason).copied().unwrap_or(0);
    assert!(grew(PacketReason::Dnat) > 0 && grew(PacketReason::DnatSnat) > 0, "{after:?}");
    assert_eq!(grew(PacketReason::PassIpv6Ext), 0, "no packet passed untranslated: {after:?}");
    cluster.assert_nothing_left_the_lab_since(&baseline);
}
