//! Privileged end-to-end tests of the lab: build, reach, tear down, leave nothing behind.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_lab::tools::clients::{self, Summary};
use switchyard_lab::tools::servers::{self, ServerHandle, ServerKind};
use switchyard_lab::{Cidr, Lab, LabOptions, LabPlan, Topology, require_root};

const PORT: u16 = 7000;
const TIMEOUT: Duration = Duration::from_secs(3);

/// Starts TCP, UDP and HTTP servers named after `member` inside its namespace.
fn serve(lab: &Lab, member: &str) -> Vec<ServerHandle> {
    lab.run_in(member, || {
        [ServerKind::TcpEcho, ServerKind::UdpEcho, ServerKind::Http]
            .into_iter()
            .enumerate()
            .map(|(i, kind)| servers::start(kind, member, PORT + i as u16).unwrap())
            .collect()
    })
    .unwrap()
}

/// From `from`, one TCP, UDP and HTTP request to `to`; asserts that `expected` answered each.
fn assert_reaches(lab: &Lab, from: &str, to: IpAddr, expected: &str) {
    let (tcp, udp, http) = lab
        .run_in(from, || {
            (
                clients::tcp(SocketAddr::new(to, PORT), 1, TIMEOUT),
                clients::udp(SocketAddr::new(to, PORT + 1), 1, TIMEOUT),
                clients::http(SocketAddr::new(to, PORT + 2), "/", 1, TIMEOUT),
            )
        })
        .unwrap();
    for attempt in [&tcp[0], &udp[0], &http[0]] {
        assert_eq!(attempt.backend.as_deref(), Some(expected), "{from} -> {to}: {attempt:?}");
        assert_eq!(attempt.error, None, "{from} -> {to}");
    }
    assert_eq!(
        udp[0].reply_from.as_deref(),
        Some(SocketAddr::new(to, PORT + 1).to_string().as_str())
    );
}

/// What a lab may leave on the host: namespaces, cgroups, mounts, run directory.
fn leftovers(plan: &LabPlan) -> Vec<String> {
    let mut found: Vec<String> = plan
        .all_netns()
        .into_iter()
        .filter(|name| Path::new("/run/netns").join(name).exists())
        .map(|name| format!("netns {name}"))
        .collect();
    for path in [&plan.cgroup, &plan.run_dir] {
        if path.exists() {
            found.push(format!("path {}", path.display()));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    found.extend(
        mounts
            .lines()
            .filter(|line| line.contains(&plan.prefix))
            .map(|line| format!("mount {line}")),
    );
    found
}

#[test]
fn default_topology_reaches_everywhere_and_tears_down_cleanly() {
    if !require_root("default_topology_reaches_everywhere_and_tears_down_cleanly") {
        return;
    }
    let topology = Topology::default();
    let started = Instant::now();
    let lab = Lab::up(&topology).unwrap();
    let build_time = started.elapsed();
    eprintln!(
        "lab build time: {:.0} ms for {} nodes, {} pods, {} clients",
        build_time.as_secs_f64() * 1e3,
        lab.nodes().len(),
        lab.pods().len(),
        lab.clients().len()
    );
    let plan = lab.plan().clone();
    assert_eq!((plan.nodes.len(), plan.pods.len(), plan.clients.len()), (3, 6, 1));

    let mut running = Vec::new();
    for member in plan.pods.iter().map(|p| &p.name).chain(plan.nodes.iter().map(|n| &n.name)) {
        running.extend(serve(&lab, member));
    }

    // Every pod reaches every pod (local and remote), IPv4 and IPv6.
    for from in &plan.pods {
        for to in &plan.pods {
            assert_reaches(&lab, &from.name, to.ipv4.into(), &to.name);
            assert_reaches(&lab, &from.name, to.ipv6.into(), &to.name);
        }
    }
    // The external client reaches every node; every node reaches every pod.
    for node in &plan.nodes {
        assert_reaches(&lab, "client1", node.ipv4.into(), &node.name);
        assert_reaches(&lab, "client1", node.ipv6.into(), &node.name);
        for pod in &plan.pods {
            assert_reaches(&lab, &node.name, pod.ipv4.into(), &pod.name);
            assert_reaches(&lab, &node.name, pod.ipv6.into(), &pod.name);
        }
    }
    // A pod sees the client address of a remote pod unchanged (flat routed network, no NAT).
    let pod1a = lab.pod("pod1a").unwrap().clone();
    let from_pod3b = lab
        .run_in("pod3b", || clients::tcp(SocketAddr::new(pod1a.ipv4.into(), PORT), 1, TIMEOUT))
        .unwrap();
    let seen: SocketAddr = from_pod3b[0].seen_as.as_deref().unwrap().parse().unwrap();
    assert_eq!(seen.ip(), IpAddr::from(lab.pod("pod3b").unwrap().ipv4));

    drop(running);
    lab.down().unwrap();
    assert_eq!(leftovers(&plan), Vec::<String>::new());
}

#[test]
fn spawned_pod_process_runs_in_the_pod_netns_and_the_node_cgroup() {
    if !require_root("spawned_pod_process_runs_in_the_pod_netns_and_the_node_cgroup") {
        return;
    }
    let topology =
        Topology::from_yaml("nodes:\n  - name: n1\n    pods: [p1]\nclients: [c1]\n", "inline")
            .unwrap();
    let lab = Lab::up(&topology).unwrap();
    let cgroup_root = Path::new(switchyard_lab::DEFAULT_CGROUP_ROOT);
    for (member, cgroup) in
        [("p1", &lab.node("n1").unwrap().cgroup), ("n1", &lab.node("n1").unwrap().cgroup)]
    {
        let mut command = Command::new("sh");
        command
            .args(["-c", "stat -L -c %i /proc/self/ns/net; cat /proc/self/cgroup | grep '^0::'"]);
        let output = lab.output_in(member, command).unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let mut lines = stdout.lines();
        let inode: u64 = lines.next().unwrap().trim().parse().unwrap();
        let netns_file = Path::new("/run/netns").join(lab.netns_of(member).unwrap());
        assert_eq!(inode, std::fs::metadata(netns_file).unwrap().ino(), "{member}: wrong netns");
        let expected = format!("0::/{}", cgroup.strip_prefix(cgroup_root).unwrap().display());
        assert_eq!(lines.next().unwrap(), expected, "{member}: wrong cgroup");
    }
    // A long-running process is killed by teardown (its cgroup must go away).
    let mut sleeper = lab
        .spawn_in("p1", {
            let mut c = Command::new("sleep");
            c.arg("1000");
            c
        })
        .unwrap();
    let plan = lab.plan().clone();
    assert!(lab.node("n1").unwrap().bpf_dir.is_dir());
    lab.down().unwrap();
    assert!(!sleeper.wait().unwrap().success());
    assert_eq!(leftovers(&plan), Vec::<String>::new());
}

#[test]
fn unknown_member_is_a_clear_error() {
    if !require_root("unknown_member_is_a_clear_error") {
        return;
    }
    let topology = Topology::from_yaml("nodes:\n  - name: n1\n", "inline").unwrap();
    let lab = Lab::up(&topology).unwrap();
    let err = lab.spawn_in("nope", Command::new("true")).unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains(lab.prefix()), "{err}");
}

#[test]
fn forgotten_lab_is_removed_by_prefix_and_dead_owner_labs_are_swept() {
    if !require_root("forgotten_lab_is_removed_by_prefix_and_dead_owner_labs_are_swept") {
        return;
    }
    let topology = Topology::from_yaml("nodes:\n  - name: n1\n    pods: [p1]\n", "inline").unwrap();
    let options = LabOptions::default();

    // As if the owner was killed: the handle is never dropped.
    let lab = Lab::up(&topology).unwrap();
    let plan = lab.plan().clone();
    std::mem::forget(lab);
    assert!(!leftovers(&plan).is_empty());
    Lab::down_by_prefix(&options, &plan.prefix).unwrap();
    assert_eq!(leftovers(&plan), Vec::<String>::new());

    // A lab whose owner process is gone is swept by the next up.
    let lab = Lab::up(&topology).unwrap();
    let plan = lab.plan().clone();
    std::mem::forget(lab);
    let state_path = plan.run_dir.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    state["owner"]["pid"] = dead.id().into();
    std::fs::write(&state_path, state.to_string()).unwrap();
    let swept = Lab::sweep_stale(&options).unwrap();
    assert!(swept.contains(&plan.prefix), "{swept:?}");
    assert_eq!(leftovers(&plan), Vec::<String>::new());
}

#[test]
fn detached_lab_is_found_again_and_taken_down() {
    if !require_root("detached_lab_is_found_again_and_taken_down") {
        return;
    }
    let topology = Topology::from_yaml("nodes:\n  - name: n1\n    pods: [p1]\n", "inline").unwrap();
    let options = LabOptions::default();
    let plan = Lab::up(&topology).unwrap().keep_running().unwrap();
    // Not swept: a detached lab has no owner.
    assert!(!Lab::sweep_stale(&options).unwrap().contains(&plan.prefix));
    let reopened = Lab::open(&options, &plan.prefix).unwrap();
    assert_eq!(reopened.plan(), &plan);
    drop(reopened);
    assert!(
        Path::new("/run/netns").join(&plan.router_netns).exists(),
        "dropping an opened lab must not tear it down"
    );
    assert!(Lab::list(&options).iter().any(|s| s.plan.prefix == plan.prefix && s.owner.is_none()));
    Lab::down_by_prefix(&options, &plan.prefix).unwrap();
    assert_eq!(leftovers(&plan), Vec::<String>::new());
}

#[test]
fn udp_and_tcp_to_a_closed_port_fail_fast() {
    if !require_root("udp_and_tcp_to_a_closed_port_fail_fast") {
        return;
    }
    let lab = Lab::up(&Topology::default()).unwrap();
    let target = lab.pod("pod2a").unwrap().ipv4;
    let started = Instant::now();
    let attempts = lab
        .run_in("pod1a", || clients::tcp(SocketAddr::new(target.into(), 9), 1, TIMEOUT))
        .unwrap();
    assert_eq!(attempts[0].error.as_deref(), Some("connection refused"));
    assert!(started.elapsed() < TIMEOUT);
    let summary = Summary::of("tcp", SocketAddr::new(target.into(), 9), &attempts);
    assert_eq!(summary.successes(), 0);
}

fn ip(lab: &Lab, member: &str, args: &str) -> String {
    let mut command = Command::new("ip");
    command.args(args.split_whitespace());
    let output = lab.output_in(member, command).unwrap();
    assert!(output.status.success(), "ip {args} in {member}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn router_sends_a_routed_address_to_the_chosen_nodes_with_ecmp() {
    if !require_root("router_sends_a_routed_address_to_the_chosen_nodes_with_ecmp") {
        return;
    }
    let lab = Lab::up(&Topology::default()).unwrap();
    let vip: Cidr = "10.96.0.10/32".parse().unwrap();
    let vip6: Cidr = "fd00:96::10/128".parse().unwrap();
    let mut running = Vec::new();
    for node in ["node1", "node2", "node3"] {
        lab.add_address(node, "lo", vip).unwrap();
        lab.add_address(node, "lo", vip6).unwrap();
        running.extend(serve(&lab, node));
    }
    let connect = |target: IpAddr, count: usize| {
        let attempts = lab
            .run_in("client1", || clients::tcp(SocketAddr::new(target, PORT), count, TIMEOUT))
            .unwrap();
        Summary::of("tcp", SocketAddr::new(target, PORT), &attempts)
    };

    lab.route_to_nodes(vip, &["node2"]).unwrap();
    lab.route_to_nodes(vip6, &["node3"]).unwrap();
    assert_eq!(
        connect(vip.addr, 5).backends.into_iter().collect::<Vec<_>>(),
        vec![("node2".to_string(), 5)]
    );
    assert_eq!(
        connect(vip6.addr, 5).backends.into_iter().collect::<Vec<_>>(),
        vec![("node3".to_string(), 5)]
    );

    // A UDP reply comes from the routed address the request went to, not the node's own.
    for (cidr, node) in [(vip, "node2"), (vip6, "node3")] {
        let target = SocketAddr::new(cidr.addr, PORT + 1);
        let attempts = lab.run_in("client1", || clients::udp(target, 2, TIMEOUT)).unwrap();
        for attempt in attempts {
            assert_eq!(attempt.backend.as_deref(), Some(node), "{attempt:?}");
            assert_eq!(attempt.reply_from, Some(target.to_string()), "{attempt:?}");
        }
    }

    // ECMP over all nodes spreads connections (5-tuple hash): 60 connections reach all three.
    for cidr in [vip, vip6] {
        lab.route_to_nodes(cidr, &["node1", "node2", "node3"]).unwrap();
        let summary = connect(cidr.addr, 60);
        assert_eq!(summary.successes(), 60, "{summary:?}");
        assert_eq!(summary.backends.len(), 3, "{summary:?}");
    }

    // Without a route the router has nowhere to send it: an error, quickly.
    lab.route_to_nodes(vip, &[]).unwrap();
    lab.route_to_nodes(vip, &[]).unwrap();
    let no_routes = |lab: &Lab| lab.ip_counters("fabric").unwrap()["IpExt.InNoRoutes"];
    let before = no_routes(&lab);
    let started = Instant::now();
    assert_eq!(connect(vip.addr, 1).successes(), 0);
    assert!(started.elapsed() < TIMEOUT);
    assert!(no_routes(&lab) > before, "the router should count the unroutable packet");

    let err = lab.route_to_nodes(vip, &["node9"]).unwrap_err().to_string();
    assert!(err.contains("node9"), "{err}");
    let err = lab.add_address("node1", "lo", vip).unwrap_err().to_string();
    assert!(err.contains("10.96.0.10/32") && err.contains("lo"), "{err}");
}

#[test]
fn large_transfer_crosses_a_smaller_mtu_hop_with_path_mtu_discovery() {
    if !require_root("large_transfer_crosses_a_smaller_mtu_hop_with_path_mtu_discovery") {
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    let lab = Lab::up(&Topology::default()).unwrap();
    let node2 = lab.node("node2").unwrap().clone();
    lab.set_mtu("fabric", &node2.router_link, 1280).unwrap();
    assert!(ip(&lab, "fabric", &format!("link show {}", node2.router_link)).contains("mtu 1280"));
    let _running = serve(&lab, "node2");
    for target in [IpAddr::from(node2.ipv4), IpAddr::from(node2.ipv6)] {
        let reply = lab
            .run_in("client1", || {
                let mut stream =
                    std::net::TcpStream::connect_timeout(&SocketAddr::new(target, PORT), TIMEOUT)
                        .unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let payload = "x".repeat(200_000);
                stream.write_all(format!("{payload}\n").as_bytes()).unwrap();
                let mut line = String::new();
                BufReader::new(stream).read_line(&mut line).unwrap();
                line
            })
            .unwrap();
        let reply: switchyard_lab::tools::Reply = serde_json::from_str(&reply).unwrap();
        assert_eq!((reply.backend.as_str(), reply.echo.len()), ("node2", 200_000), "{target}");
    }
    assert!(
        lab.set_mtu("fabric", "nosuchlink", 1280).unwrap_err().to_string().contains("nosuchlink")
    );
}

#[test]
fn lab_has_no_way_out_and_no_device_outside_its_namespaces() {
    if !require_root("lab_has_no_way_out_and_no_device_outside_its_namespaces") {
        return;
    }
    let lab = Lab::up(&Topology::default()).unwrap();
    assert_eq!(lab.missing(), Vec::<String>::new());
    let plan = lab.plan().clone();
    // Both ends of every veth are inside the lab: 2 per node, pod and client.
    let members: Vec<String> = std::iter::once("fabric".to_string())
        .chain(plan.nodes.iter().map(|n| n.name.clone()))
        .chain(plan.pods.iter().map(|p| p.name.clone()))
        .chain(plan.clients.iter().map(|c| c.name.clone()))
        .collect();
    let veths: usize =
        members.iter().map(|m| ip(&lab, m, "-o -d link show type veth").lines().count()).sum();
    assert_eq!(veths, 2 * (plan.nodes.len() + plan.pods.len() + plan.clients.len()));
    // The router knows no route out (route lookups only; nothing is sent).
    for (member, target) in
        [("fabric", "192.0.2.1"), ("fabric", "2001:db8::1"), ("fabric", "8.8.8.8")]
    {
        let mut command = Command::new("ip");
        command.args(["route", "get", target]);
        let output = lab.output_in(member, command).unwrap();
        assert!(!output.status.success(), "{member} has a route to {target}: {output:?}");
    }
    // Killing a piece makes the lab report it missing.
    let pod_netns = switchyard_lab::netns::netns_path(&plan.pods[0].netns);
    assert!(Command::new("umount").arg("-l").arg(&pod_netns).status().unwrap().success());
    std::fs::remove_file(&pod_netns).unwrap();
    assert_eq!(lab.missing(), vec![format!("netns {}", plan.pods[0].netns)]);
}

#[test]
fn clients_report_connected_udp_holds_uploads_http_status_and_latency_pairs() {
    if !require_root("clients_report_connected_udp_holds_uploads_http_status_and_latency_pairs") {
        return;
    }
    use std::io::{Read, Write};
    let lab = Lab::up(&Topology::default()).unwrap();
    let _running = serve(&lab, "pod2a");
    let pod2a = IpAddr::from(lab.pod("pod2a").unwrap().ipv6);
    let echo = SocketAddr::new(pod2a, PORT + 1);
    let closed = SocketAddr::new(pod2a, 9);

    let (connected, held, refused, upload, latency) = lab
        .run_in("pod1a", || {
            (
                clients::udp_connected(echo, 2, TIMEOUT),
                clients::udp_hold(
                    echo,
                    Duration::from_millis(300),
                    Duration::from_millis(50),
                    TIMEOUT,
                ),
                clients::udp_hold(
                    closed,
                    Duration::from_millis(200),
                    Duration::from_millis(50),
                    TIMEOUT,
                ),
                clients::upload(SocketAddr::new(pod2a, PORT), 1 << 20, TIMEOUT),
                clients::connect_latency_pair(
                    SocketAddr::new(pod2a, PORT),
                    SocketAddr::new(lab.pod("pod1b").unwrap().ipv4.into(), PORT),
                    5,
                    TIMEOUT,
                ),
            )
        })
        .unwrap();
    assert!(connected.iter().all(|a| a.backend.as_deref() == Some("pod2a")), "{connected:?}");
    assert_eq!(connected[0].reply_from.as_deref(), Some(echo.to_string().as_str()));
    assert!(held.answers.len() >= 3 && held.answers.iter().all(|b| b == "pod2a"), "{held:?}");
    assert!(held.errors.is_empty(), "{held:?}");
    assert!(refused.answers.is_empty(), "{refused:?}");
    assert!(refused.errors.contains_key("connection refused"), "{refused:?}");
    assert!(refused.reconnects >= 1, "{refused:?}");
    assert_eq!(
        (upload.backend.as_deref(), upload.error.as_deref()),
        (Some("pod2a"), None),
        "{upload:?}"
    );
    // pod1b has no server: the pair reports failures on its side only.
    assert_eq!((latency.0.connections, latency.0.failures), (5, 0));
    assert_eq!((latency.1.connections, latency.1.failures), (0, 5));

    // An HTTP error status is reported with its body, as an error.
    let attempts = lab
        .run_in("pod1a", || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).unwrap();
                let body = "{\"localEndpoints\": 0}";
                let head = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(format!("{head}{body}").as_bytes()).unwrap();
            });
            let attempts = clients::http(addr, "/healthz", 1, TIMEOUT);
            server.join().unwrap();
            attempts
        })
        .unwrap();
    assert_eq!(attempts[0].status, Some(503));
    assert_eq!(attempts[0].error.as_deref(), Some("http status 503"));
    assert_eq!(attempts[0].body.as_deref(), Some("{\"localEndpoints\": 0}"));
    assert_eq!(attempts[0].backend, None);
}

#[test]
fn hold_reports_a_reset_connection_and_a_survivor() {
    if !require_root("hold_reports_a_reset_connection_and_a_survivor") {
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    let lab = Lab::up(&Topology::default()).unwrap();
    let _running = serve(&lab, "pod2a");
    let pod2a = IpAddr::from(lab.pod("pod2a").unwrap().ipv4);
    // A server in pod3a that answers twice, then aborts the connection (RST via linger 0).
    let pod3a = IpAddr::from(lab.pod("pod3a").unwrap().ipv4);
    let listener =
        lab.run_in("pod3a", || std::net::TcpListener::bind((pod3a, 7100)).unwrap()).unwrap();
    let aborter = std::thread::spawn(move || {
        let (stream, peer) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        for _ in 0..2 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let reply = format!(
                "{{\"backend\":\"pod3a\",\"peer\":\"{peer}\",\"echo\":\"{}\"}}\n",
                line.trim()
            );
            writer.write_all(reply.as_bytes()).unwrap();
        }
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: a valid socket and a correctly sized linger struct.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&writer),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    });
    let (survivor, aborted) = lab
        .run_in("client1", || {
            let aborted = clients::hold(
                SocketAddr::new(pod3a, 7100),
                Duration::from_secs(3),
                Duration::from_millis(20),
                TIMEOUT,
            );
            let mut rounds = 0;
            let survivor = clients::hold_until(
                SocketAddr::new(pod2a, PORT),
                Duration::from_millis(20),
                TIMEOUT,
                || {
                    rounds += 1;
                    rounds >= 5
                },
            );
            (survivor, aborted)
        })
        .unwrap();
    aborter.join().unwrap();
    assert_eq!((aborted.pings, aborted.reset), (2, true), "{aborted:?}");
    assert_eq!(aborted.backends, vec!["pod3a"]);
    assert_eq!(
        (survivor.pings, survivor.reset, survivor.error.as_deref()),
        (5, false, None),
        "{survivor:?}"
    );
}

#[test]
fn lab_builds_and_tears_down_from_inside_an_async_runtime() {
    if !require_root("lab_builds_and_tears_down_from_inside_an_async_runtime") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plan = runtime.block_on(async {
        let lab = Lab::up(&Topology::default()).unwrap();
        lab.route_to_nodes("10.96.0.1/32".parse().unwrap(), &["node1"]).unwrap();
        let plan = lab.plan().clone();
        drop(lab);
        plan
    });
    assert_eq!(leftovers(&plan), Vec::<String>::new());
}

#[test]
fn concurrent_labs_do_not_collide() {
    if !require_root("concurrent_labs_do_not_collide") {
        return;
    }
    let topology = Topology::from_yaml(
        "nodes:\n  - name: n1\n    pods: [p1]\n  - name: n2\n    pods: [p2]\n",
        "inline",
    )
    .unwrap();
    let plans: Vec<LabPlan> = std::thread::scope(|scope| {
        let labs: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let lab = Lab::up(&topology).unwrap();
                    let _server = serve(&lab, "p2");
                    // Same addresses in every lab, yet each pod reaches its own lab's p2.
                    assert_reaches(&lab, "p1", lab.pod("p2").unwrap().ipv4.into(), "p2");
                    let plan = lab.plan().clone();
                    lab.down().unwrap();
                    plan
                })
            })
            .collect();
        labs.into_iter().map(|lab| lab.join().unwrap()).collect()
    });
    let prefixes: std::collections::BTreeSet<_> = plans.iter().map(|p| p.prefix.clone()).collect();
    assert_eq!(prefixes.len(), 4);
    for plan in &plans {
        assert_eq!(leftovers(plan), Vec::<String>::new());
    }
}

/// Issue 18 item 8: right after `Lab::up`, a pod's first IPv6 connection through the router is
/// not delayed. The kernel adds a link's link-local address only when linkwatch reports the
/// carrier (batched, up to a second later) and solicits no neighbour from a link without one, so
/// the router held the first SYN-ACK until its next probe a second later and the client
/// retransmitted its SYN (`scripts/syn-loss-lab --fresh`); the lab now adds each link's
/// link-local itself.
#[test]
fn a_first_ipv6_connection_right_after_up_is_not_delayed() {
    if !require_root("a_first_ipv6_connection_right_after_up_is_not_delayed") {
        return;
    }
    for round in 0..3 {
        let lab = Lab::up(&Topology::default()).unwrap();
        // Each link has a usable (nodad, never tentative) link-local before anything is sent:
        // the router's, the node's uplink and veths, the pod's.
        for (member, links) in [
            ("fabric", &["nd1", "nd2", "nd3", "cl1"][..]),
            ("node1", &["eth0", "veth1", "veth2"][..]),
            ("pod1a", &["eth0"][..]),
        ] {
            for link in links {
                let addresses = ip(&lab, member, &format!("-6 -o addr show dev {link} scope link"));
                assert!(
                    addresses.lines().any(|l| l.contains("fe80::") && l.contains("nodad")),
                    "round {round}: {member} {link}: {addresses:?}"
                );
            }
        }
        let _running = serve(&lab, "pod2a");
        let pod2a: IpAddr = lab.pod("pod2a").unwrap().ipv6.into();
        let first =
            lab.run_in("pod1a", || clients::tcp(SocketAddr::new(pod2a, PORT), 1, TIMEOUT)).unwrap();
        assert_eq!(first[0].error, None, "round {round}: {:?}", first[0]);
        let micros = first[0].micros.unwrap();
        assert!(micros < 500_000, "round {round}: first connect took {micros} µs: {:?}", first[0]);
        lab.down().unwrap();
    }
}
