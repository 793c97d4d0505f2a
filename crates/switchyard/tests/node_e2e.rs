//! End-to-end tests of the node role in the lab: one `switchyard agent` per node (inside the
//! node's netns, attached to the node's cgroup, pinning under the node's bpffs), fed from a
//! manifest directory the test writes, with the built-in echo servers in pods and real clients
//! (`switchyard lab client`, `dig`) in pods and on nodes. Each test builds its own lab (random
//! prefix), so tests are independent and may run concurrently. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness")]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchyard_bpf::{Maps, abi};
use switchyard_lab::tools::clients::{HoldReport, UdpHoldReport};
use switchyard_lab::{require_root, wait_until};
use switchyard_testing::StopOnDrop;
use switchyard_testing::e2e::*;

#[test]
fn pods_and_nodes_reach_dual_stack_cluster_ips_over_tcp_and_udp_and_every_backend_answers() {
    if !require_root("pods_and_nodes_reach_dual_stack_cluster_ips_over_tcp_and_udp") {
        return;
    }
    let cluster = Cluster::up();
    let ips = [v4("10.96.1.10"), v4("fd00:96::1:10")];
    let all = ["a1", "a2", "b1", "b2"];
    let endpoints: Vec<(&str, State)> = all.iter().map(|p| (*p, State::Ready)).collect();
    cluster.apply_until_it_answers(
        "web.yaml",
        &cluster.service("web", &ips, 80, "", &endpoints),
        "a1",
        at(ips[0], 80),
    );

    // From a pod on each node and from each node itself; 40 requests over 4 backends miss one
    // with probability 4 * (3/4)^40 < 1e-4.
    for member in ["a1", "b2", "node1", "node2"] {
        for ip in ips {
            for kind in ["tcp", "udp"] {
                let seen = cluster.backends(member, kind, at(ip, 80), 40);
                assert_eq!(seen, set(&all), "{kind} from {member} to {ip}");
            }
            let connected = cluster.client_with(member, "udp", at(ip, 80), 10, &["--connected"]);
            assert!(connected.summary.errors.is_empty(), "{member} {ip}: {:?}", connected.summary);
        }
    }
    cluster.assert_nothing_left_the_lab();
}

#[test]
fn dnsmasq_behind_a_cluster_ip_answers_dig_over_udp_and_tcp() {
    if !require_root("dnsmasq_behind_a_cluster_ip_answers_dig_over_udp_and_tcp") {
        return;
    }
    let cluster = Cluster::up();
    let dns_pod = "b1";
    let (pod4, pod6) = (cluster.pod_ip(dns_pod, false), cluster.pod_ip(dns_pod, true));
    let mut dnsmasq = Command::new("dnsmasq");
    dnsmasq.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--pid-file",
        "--user=root",
        "--port=53",
        "--log-facility=-",
        &format!("--listen-address={pod4},{pod6}"),
        "--address=/web.e2e.test/10.1.2.3",
        "--address=/web.e2e.test/fd00::1:2:3",
    ]);
    dnsmasq.stdout(Stdio::null()).stderr(Stdio::null());
    let mut dnsmasq = cluster.lab.spawn_in(dns_pod, dnsmasq).unwrap();
    let ips = [v4("10.96.0.10"), v4("fd00:96::a")];
    let endpoints = [(dns_pod, State::Ready)];
    cluster.apply_and_wait("dns.yaml", &cluster.service_to("dns", &ips, 53, 53, "", &endpoints));

    let dig = |server: IpAddr, record: &str, tcp: bool| {
        let mut command = Command::new("dig");
        command.args(["+time=1", "+tries=1", &format!("@{server}"), "web.e2e.test", record]);
        if tcp {
            command.arg("+tcp");
        }
        let out = cluster.lab.output_in("a1", command).unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let answer = |text: &str| -> Option<String> {
        text.lines()
            .find(|l| l.starts_with("web.e2e.test."))
            .and_then(|l| l.split_whitespace().last().map(ToString::to_string))
    };
    // Wait for an answer on every ClusterIP (each family) before the strict checks: on a loaded
    // machine the first query to a freshly started dnsmasq can outlast dig's one-second timeout.
    for server in ips {
        cluster.eventually("dnsmasq answers through the ClusterIP", || {
            answer(&dig(server, "A", false)).is_some()
        });
    }
    for server in ips {
        for tcp in [false, true] {
            for (record, expected) in [("A", "10.1.2.3"), ("AAAA", "fd00::1:2:3")] {
                let text = dig(server, record, tcp);
                // dig drops a UDP reply whose source is not the server it asked: an answer at
                // all means recvmsg translated the pod address back to the ClusterIP.
                assert!(!text.contains("unexpected source"), "{text}");
                assert_eq!(
                    answer(&text).as_deref(),
                    Some(expected),
                    "{server} {record} tcp={tcp}: {text}"
                );
                assert!(text.contains(&format!("SERVER: {server}#53")), "{text}");
            }
        }
    }
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    cluster.assert_nothing_left_the_lab();
}

#[test]
fn session_affinity_client_ip_holds_within_the_timeout_and_expires_after_it() {
    if !require_root("session_affinity_client_ip_holds_within_the_timeout_and_expires_after_it") {
        return;
    }
    let cluster = Cluster::up();
    let ip = v4("10.96.2.10");
    let all = ["a1", "a2", "b1", "b2"];
    let endpoints: Vec<(&str, State)> = all.iter().map(|p| (*p, State::Ready)).collect();
    let affinity =
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 1}}\n";
    cluster.apply_until_it_answers(
        "sticky.yaml",
        &cluster.service("sticky", &[ip], 80, affinity, &endpoints),
        "a1",
        at(ip, 80),
    );

    // Within the timeout (each connection refreshes it): one backend for all 30 connections.
    for kind in ["tcp", "udp"] {
        let seen = cluster.backends("a1", kind, at(ip, 80), 30);
        assert_eq!(seen.len(), 1, "{kind}: affinity did not hold: {seen:?}");
    }
    // After the timeout the choice is made afresh: over 6 rounds 1.5 s apart, a backend that
    // stayed would be chance with probability (1/4)^5 < 0.1%.
    let mut chosen = BTreeSet::new();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(1500));
        chosen.extend(cluster.backends("a1", "tcp", at(ip, 80), 1));
    }
    assert!(chosen.len() > 1, "affinity never expired: {chosen:?}");
    cluster.assert_nothing_left_the_lab();
}

#[test]
fn internal_traffic_policy_local_uses_only_endpoints_on_the_clients_node() {
    if !require_root("internal_traffic_policy_local_uses_only_endpoints_on_the_clients_node") {
        return;
    }
    let cluster = Cluster::up();
    let ip = v4("10.96.3.10");
    let endpoints: Vec<(&str, State)> =
        ["a1", "a2", "b1", "b2"].iter().map(|p| (*p, State::Ready)).collect();
    let local = "  internalTrafficPolicy: Local\n";
    cluster.apply_until_it_answers(
        "local.yaml",
        &cluster.service("local", &[ip], 80, local, &endpoints),
        "a1",
        at(ip, 80),
    );
    for (member, expected) in [("a1", ["a1", "a2"]), ("node1", ["a1", "a2"]), ("b1", ["b1", "b2"])]
    {
        for kind in ["tcp", "udp"] {
            assert_eq!(
                cluster.backends(member, kind, at(ip, 80), 30),
                set(&expected),
                "{kind} from {member}"
            );
        }
    }
    cluster.assert_nothing_left_the_lab();
}

/// `internalTrafficPolicy: Local` on a node without a local endpoint (conformance row 32):
/// kube-proxy drops; the socket path refuses the connect at once instead (docs/datapath.md,
/// "No local endpoint"). Pods and the node on node1 get `connection refused` for TCP and
/// UDP alike, no packet leaves the lab, and node2's pods still reach their own endpoints.
#[test]
fn internal_traffic_policy_local_without_a_local_endpoint_is_refused_on_the_socket_path() {
    if !require_root("internal_traffic_policy_local_without_a_local_endpoint_is_refused") {
        return;
    }
    let cluster = Cluster::up();
    let ip = v4("10.96.3.20");
    let local = "  internalTrafficPolicy: Local\n";
    let endpoints = [("b1", State::Ready), ("b2", State::Ready)];
    let text = cluster.service("remote-only", &[ip], 80, local, &endpoints);
    cluster.apply_until_it_answers("remote-only.yaml", &text, "b1", at(ip, 80));
    assert_eq!(cluster.backends("b2", "tcp", at(ip, 80), 20), set(&["b1", "b2"]));
    for member in ["a1", "node1"] {
        let started = Instant::now();
        let tcp = cluster.client(member, "tcp", at(ip, 80), 5);
        let took = started.elapsed();
        assert_eq!(tcp.summary.errors.get("connection refused"), Some(&5), "{member}: {tcp:?}");
        // The client waits 3 s per attempt: five refusals in less than one wait came at once.
        assert!(took < Duration::from_secs(3), "refused after {took:?}, not at once");
        let udp = cluster.client(member, "udp", at(ip, 80), 3);
        assert_eq!(udp.summary.errors.get("connection refused"), Some(&3), "{member}: {udp:?}");
    }
    cluster.assert_nothing_left_the_lab();
}

#[test]
fn terminating_endpoints_are_used_only_when_no_ready_endpoint_is_left() {
    if !require_root("terminating_endpoints_are_used_only_when_no_ready_endpoint_is_left") {
        return;
    }
    let cluster = Cluster::up();
    let ip = v4("10.96.4.10");
    let target = at(ip, 80);
    cluster.apply_until_it_answers(
        "drain.yaml",
        &cluster.service(
            "drain",
            &[ip],
            80,
            "",
            &[("a1", State::Ready), ("b1", State::Terminating)],
        ),
        "a2",
        target,
    );
    assert_eq!(cluster.backends("a2", "tcp", target, 20), set(&["a1"]));

    // The last ready endpoint goes away: fall back to the serving, terminating one.
    cluster.apply(
        "drain.yaml",
        &cluster.service(
            "drain",
            &[ip],
            80,
            "",
            &[("b1", State::Terminating), ("b2", State::Terminating)],
        ),
    );
    cluster.eventually("traffic falls back to terminating endpoints", || {
        cluster.client("a2", "tcp", target, 10).summary.backends.keys().all(|b| b.starts_with('b'))
    });
    for kind in ["tcp", "udp"] {
        assert_eq!(cluster.backends("a2", kind, target, 30), set(&["b1", "b2"]), "{kind}");
    }
    cluster.assert_nothing_left_the_lab();
}

#[test]
fn a_service_without_endpoints_refuses_connections_at_once() {
    if !require_root("a_service_without_endpoints_refuses_connections_at_once") {
        return;
    }
    let cluster = Cluster::up();
    let ips = [v4("10.96.5.10"), v4("fd00:96::5:10")];
    cluster.apply_and_wait("empty.yaml", &cluster.service("empty", &ips, 80, "", &[]));
    for member in ["a2", "node1"] {
        for ip in ips {
            for kind in ["tcp", "udp"] {
                let started = Instant::now();
                // 3 attempts with a 1 s timeout each: a timeout would take 3 s.
                let out = cluster.client(member, kind, at(ip, 80), 3);
                let took = started.elapsed();
                assert_eq!(
                    out.summary.errors.get("connection refused"),
                    Some(&3),
                    "{kind} from {member} to {ip}: {:?}",
                    out.summary
                );
                assert!(took < Duration::from_millis(900), "{kind} {ip}: refusal took {took:?}");
            }
        }
    }
    cluster.assert_nothing_left_the_lab();
}

#[test]
fn service_and_endpoint_changes_apply_while_traffic_flows() {
    if !require_root("service_and_endpoint_changes_apply_while_traffic_flows") {
        return;
    }
    let cluster = Cluster::up();
    let ip = v4("10.96.6.10");
    let target = at(ip, 80);
    cluster.apply_until_it_answers(
        "svc.yaml",
        &cluster.service("svc", &[ip], 80, "", &[("a2", State::Ready)]),
        "a1",
        target,
    );

    // A long-lived connection to a2 that must survive every change below that keeps a2.
    let mut hold = cluster.spawn_hold("a1", target, 50);
    // Let it connect while a2 is the only endpoint.
    std::thread::sleep(Duration::from_millis(500));

    // Scale out: new endpoints get traffic.
    cluster.apply(
        "svc.yaml",
        &cluster.service(
            "svc",
            &[ip],
            80,
            "",
            &[("a2", State::Ready), ("b1", State::Ready), ("b2", State::Ready)],
        ),
    );
    cluster.eventually("new endpoints get traffic", || {
        cluster.client("a1", "tcp", target, 30).summary.backends.len() == 3
    });
    // A second port appears on the same Service (spec change).
    let two_ports = cluster
        .service("svc", &[ip], 80, "", &[("a2", State::Ready), ("b1", State::Ready)])
        .replace(
            "  - {name: udp, port: 80, protocol: UDP, targetPort: 8080}\n",
            "  - {name: udp, port: 80, protocol: UDP, targetPort: 8080}\n  - {name: alt, port: 81, protocol: TCP, targetPort: 8080}\n",
        )
        .replace("ports:\n- {name: tcp", "ports:\n- {name: alt, port: 8080, protocol: TCP}\n- {name: tcp");
    cluster.apply_until_it_answers("svc.yaml", &two_ports, "a1", at(ip, 81));
    cluster.eventually("b2 is gone from port 80", || {
        cluster.client("a1", "tcp", target, 20).summary.backends.keys().all(|b| b != "b2")
    });
    assert_eq!(cluster.backends("a1", "tcp", at(ip, 81), 20), set(&["a2", "b1"]));

    // The ClusterIP changes (Service recreated): the old address refuses, the new one answers.
    let moved = v4("10.96.6.20");
    cluster.apply_until_it_answers(
        "svc.yaml",
        &cluster.service("svc", &[moved], 80, "", &[("a2", State::Ready)]),
        "a1",
        at(moved, 80),
    );
    // Every change kept a2, so the connection to it lived through all of them.
    drop(hold.stdin.take());
    let out = hold.wait_with_output().unwrap();
    let report: HoldReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!report.reset && report.error.is_none(), "long-lived connection broke: {report:?}");
    assert_eq!(report.backends, vec!["a2".to_string()], "{report:?}");
    assert!(report.pings > 10, "{report:?}");

    // Service deleted (its sockets to a2 would now be torn down): nothing answers on its address any more (the frontends are gone).
    cluster.delete("svc.yaml");
    cluster.eventually("the deleted Service is gone from node1's maps", || {
        cluster.agents[cluster.agent_index("node1")]
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("frontends=0"))
    });

    cluster.assert_nothing_left_the_lab();
}

#[test]
fn agent_restart_keeps_services_and_a_long_lived_connection() {
    if !require_root("agent_restart_keeps_services_and_a_long_lived_connection") {
        return;
    }
    let mut cluster = Cluster::up();
    let ips = [v4("10.96.7.10"), v4("fd00:96::7:10")];
    let endpoints = [("a2", State::Ready), ("b1", State::Ready), ("b2", State::Ready)];
    cluster.apply_until_it_answers(
        "svc.yaml",
        &cluster.service("svc", &ips, 80, "", &endpoints),
        "a1",
        at(ips[0], 80),
    );

    let mut holds = Vec::new();
    for ip in ips {
        holds.push(cluster.spawn_hold("a1", at(ip, 80), 20));
    }
    std::thread::sleep(Duration::from_millis(200));

    // Stop the agent: programs and maps stay pinned, Services keep working without it.
    let index = cluster.agent_index("node1");
    cluster.agents.remove(index).stop();
    for ip in ips {
        assert_eq!(cluster.backends("a1", "tcp", at(ip, 80), 20).len(), 3, "{ip} without an agent");
    }
    // A new agent adopts the pinned state; Services answer throughout (probed while it starts).
    let stop = std::sync::atomic::AtomicBool::new(false);
    let failures = std::thread::scope(|scope| {
        let prober = scope.spawn(|| {
            let mut failures = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = cluster.client("a1", "udp", at(ips[0], 80), 5);
                if !out.summary.errors.is_empty() {
                    failures.push(out.summary);
                }
            }
            failures
        });
        let _stop = StopOnDrop(&stop);
        let agent = Agent::start(&cluster.lab, &cluster.manifests, "node1");
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (agent, prober.join().unwrap())
    });
    let (agent, failures) = failures;
    assert!(agent.logged("adopted pinned state"));
    cluster.agents.push(agent);
    assert!(failures.is_empty(), "Service failed during the restart: {failures:?}");

    for mut hold in holds {
        drop(hold.stdin.take());
        let out = hold.wait_with_output().unwrap();
        let report: HoldReport = serde_json::from_slice(&out.stdout).unwrap();
        assert!(!report.reset && report.error.is_none(), "connection broke: {report:?}");
        assert_eq!(report.backends.len(), 1, "{report:?}");
        assert!(report.pings > 10, "{report:?}");
    }

    // The restarted agent still follows changes.
    cluster.apply_and_wait(
        "svc.yaml",
        &cluster.service("svc", &ips, 80, "", &[("a2", State::Ready), ("b1", State::Ready)]),
    );
    cluster.eventually("the restarted agent applies a change", || {
        !cluster.client("a1", "tcp", at(ips[0], 80), 20).summary.backends.contains_key("b2")
    });

    cluster.assert_nothing_left_the_lab();
}

#[test]
fn flows_to_a_removed_backend_are_torn_down_and_terminating_ones_are_kept() {
    if !require_root("flows_to_a_removed_backend_are_torn_down_and_terminating_ones_are_kept") {
        return;
    }
    let cluster = Cluster::up();
    let ip = v4("10.96.8.10");
    let target = at(ip, 80);
    cluster.apply_until_it_answers(
        "svc.yaml",
        &cluster.service("svc", &[ip], 80, "", &[("b1", State::Ready)]),
        "a1",
        target,
    );

    let mut tcp = cluster.spawn_hold("a1", target, 20);
    let mut udp = Command::new(&*BIN);
    udp.args(["lab", "client", "udp-hold", "--target", &target.to_string()])
        .args(["--duration-ms", "4000", "--interval-ms", "20", "--timeout-ms", "300"])
        .stdout(Stdio::piped());
    let udp = cluster.lab.spawn_in("a1", udp).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // b1 starts terminating, b2 takes new traffic: existing flows to b1 stay.
    cluster.apply_and_wait(
        "svc.yaml",
        &cluster.service("svc", &[ip], 80, "", &[("b1", State::Terminating), ("b2", State::Ready)]),
    );
    cluster.eventually("new connections go to b2", || {
        cluster.client("a2", "tcp", target, 10).summary.backends.keys().all(|b| b == "b2")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(matches!(tcp.try_wait(), Ok(None)), "the TCP connection to terminating b1 ended");

    // b1 is removed: flows to it are torn down at once.
    // (No map changes: b1 left the slots when it started terminating; only the sweep runs.)
    cluster.apply("svc.yaml", &cluster.service("svc", &[ip], 80, "", &[("b2", State::Ready)]));
    let tcp_ended = wait_until(Duration::from_secs(3), || matches!(tcp.try_wait(), Ok(Some(_))));
    drop(tcp.stdin.take());
    let out = tcp.wait_with_output().unwrap();
    let report: HoldReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(tcp_ended, "TCP connection to removed b1 survived: {report:?}");
    assert_eq!(report.backends, vec!["b1".to_string()], "{report:?}");
    assert!(report.reset, "{report:?}");

    let out = udp.wait_with_output().unwrap();
    let report: UdpHoldReport = serde_json::from_slice(&out.stdout).unwrap();
    let first_b2 = report.answers.iter().position(|b| b == "b2").expect("UDP never moved to b2");
    assert!(report.answers[..first_b2].iter().all(|b| b == "b1"), "{report:?}");
    assert!(report.answers[first_b2..].iter().all(|b| b == "b2"), "{report:?}");
    assert!(report.reconnects >= 1, "the connected UDP socket was not torn down: {report:?}");
    // Torn down, not timed out: at most a couple of lost round trips.
    assert!(report.errors.get("timed out").copied().unwrap_or(0) <= 2, "{report:?}");

    // A ready backend removed outright (no terminating phase): b2's flows end at once too.
    let mut tcp = cluster.spawn_hold("a1", target, 20);
    std::thread::sleep(Duration::from_millis(300));
    cluster.apply_and_wait(
        "svc.yaml",
        &cluster.service("svc", &[ip], 80, "", &[("a2", State::Ready)]),
    );
    let tcp_ended = wait_until(Duration::from_secs(3), || matches!(tcp.try_wait(), Ok(Some(_))));
    drop(tcp.stdin.take());
    let out = tcp.wait_with_output().unwrap();
    let report: HoldReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(tcp_ended, "TCP connection to removed b2 survived: {report:?}");
    assert_eq!(report.backends, vec!["b2".to_string()], "{report:?}");
    assert!(report.reset, "{report:?}");
    cluster.assert_nothing_left_the_lab();
}

#[test]
fn maglev_service_spreads_over_every_backend_and_keeps_flows_when_one_backend_goes() {
    if !require_root("maglev_service_spreads_over_every_backend_and_keeps_flows") {
        return;
    }
    let cluster = Cluster::up();
    let ip = v4("10.96.9.10");
    let target = at(ip, 80);
    let maglev = |pods: &[&str]| {
        let endpoints: Vec<(&str, State)> = pods.iter().map(|p| (*p, State::Ready)).collect();
        // The first `namespace: e2e` line is the Service's metadata.
        cluster.service("mg", &[ip], 80, "", &endpoints).replacen(
            "  namespace: e2e\n",
            "  namespace: e2e\n  annotations: {switchyard.io/lb-algorithm: maglev}\n",
            1,
        )
    };
    let all = ["a1", "a2", "b1", "b2"];
    cluster.apply_and_wait("mg.yaml", &maglev(&all));
    cluster.eventually("mg answers", || {
        cluster.client("a1", "tcp", target, 1).summary.errors.is_empty()
    });

    // Every node programmed a Maglev table over the four backends.
    let table_backends = |node: &str| {
        let maps = Maps::open_pinned(&cluster.lab.node(node).unwrap().bpf_dir).unwrap();
        let (_, frontend) = maps.resolve(target, abi::PROTO_TCP).unwrap().expect("no frontend");
        assert_ne!(frontend.flags & abi::FE_MAGLEV, 0, "{node}: frontend without Maglev");
        let table = maps.maglev_table(frontend.id).unwrap().expect("no Maglev table");
        table.into_iter().collect::<BTreeSet<u32>>().len()
    };
    for node in ["node1", "node2"] {
        assert_eq!(table_backends(node), 4, "{node}");
    }

    // Every backend gets traffic: new connections hash their own 5-tuple (fresh source ports)
    // into the table. 40 requests over 4 backends miss one with probability < 1e-4.
    for member in ["a1", "b2", "node1"] {
        for kind in ["tcp", "udp"] {
            assert_eq!(
                cluster.backends(member, kind, target, 40),
                set(&all),
                "{kind} from {member}"
            );
        }
    }

    // Long-lived connections, then b2 goes: those on the other backends keep their backend
    // and stay up; new connections spread over the remaining three.
    let holds: Vec<_> = (0..12)
        .map(|_| {
            let mut hold = Command::new(&*BIN);
            hold.args(["lab", "client", "hold", "--target", &target.to_string()])
                .args(["--until-stdin-closes", "--interval-ms", "20"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            cluster.lab.spawn_in("a1", hold).unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let remaining = ["a1", "a2", "b1"];
    cluster.apply_and_wait("mg.yaml", &maglev(&remaining));
    cluster.eventually("new connections avoid b2", || {
        !cluster.client("a2", "tcp", target, 20).summary.backends.contains_key("b2")
    });
    for node in ["node1", "node2"] {
        assert_eq!(table_backends(node), 3, "{node}");
    }
    for member in ["a1", "node2"] {
        assert_eq!(cluster.backends(member, "tcp", target, 40), set(&remaining), "from {member}");
    }
    std::thread::sleep(Duration::from_millis(300));

    let mut kept = 0;
    for mut hold in holds {
        drop(hold.stdin.take());
        let out = hold.wait_with_output().unwrap();
        let report: HoldReport = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report.backends.len(), 1, "a connection changed backend: {report:?}");
        if report.backends[0] == "b2" {
            // Removed outright: torn down (see flows_to_a_removed_backend_are_torn_down...).
            assert!(report.reset, "{report:?}");
        } else {
            assert!(!report.reset && report.error.is_none(), "connection broke: {report:?}");
            kept += 1;
        }
    }
    // 12 connections all on b2 would be chance with probability (1/4)^12.
    assert!(kept > 0, "no connection landed on a remaining backend");
    cluster.assert_nothing_left_the_lab();
}
