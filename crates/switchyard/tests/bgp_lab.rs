//! The node agent's BGP speaker against BIRD 2 on the lab router (root): BGPPeer and
//! BGPAdvertisement manifests start the sessions, the router learns LoadBalancer IPs as ECMP
//! routes, the external client reaches them through the router, ETP Local routes follow the
//! endpoints, unrelated Service changes send no UPDATE, graceful restart keeps routes across agent
//! restarts with no failed connection, and the hold timer withdraws a hung agent. The same
//! against GoBGP, and a peer that sends garbage gets a NOTIFICATION while the agent's other
//! session and routes stay. TCP MD5 passwords from Secrets (right, wrong, missing), and
//! coexistence with a routing daemon on the node that owns port 179. See docs/bgp.md.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchyard_lab::tools::bird::{Bird, BirdOptions, Neighbor, ROUTER_ASN, router_next_hops};
use switchyard_lab::tools::clients;
use switchyard_lab::tools::gobgp::GoBgp;
use switchyard_lab::{require_root, wait_until};
use switchyard_testing::StopOnDrop;
use switchyard_testing::e2e::{Agent, BIN, Cluster, State, at};

const NODE_ASN: u32 = 64512;
/// The router's hold time: short, so a hung agent is noticed within seconds.
const HOLD_SECONDS: u16 = 3;
const WEB: &str = "192.0.2.10";
const WEB6: &str = "2001:db8:2::10";
const LOCAL: &str = "192.0.2.11";

/// Nodes labelled with their hostname, so each node's BGPPeer selects it alone.
fn labelled_nodes(cluster: &Cluster) -> String {
    let mut text = cluster.nodes_yaml();
    for node in cluster.lab.nodes() {
        let name = &node.name;
        text = text.replace(
            &format!("metadata:\n  name: {name}\n"),
            &format!("metadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}}}\n"),
        );
    }
    text
}

/// One BGPPeer per node (its router address on the node's link), and one advertisement of
/// everything. `graceful` lists the nodes whose peer has graceful restart.
fn bgp_objects(cluster: &Cluster, graceful: &[&str]) -> String {
    let mut text = String::from(
        "---\napiVersion: switchyard.io/v1alpha1\nkind: BGPAdvertisement\nmetadata:\n  name: all\nspec: {}\n",
    );
    for node in cluster.lab.nodes() {
        text += &format!(
            "---\napiVersion: switchyard.io/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: tor-{name}\n\
             spec:\n  peerAddress: \"{router}\"\n  peerASN: {ROUTER_ASN}\n  myASN: {NODE_ASN}\n\
             \x20 holdTime: 9s\n  gracefulRestart: {gr}\n\
             \x20 nodeSelector: {{matchLabels: {{kubernetes.io/hostname: {name}}}}}\n",
            name = node.name,
            router = node.router_ipv4,
            gr = graceful.contains(&node.name.as_str()),
        );
    }
    text
}

fn node_ips(cluster: &Cluster, nodes: &[&str], v6: bool) -> BTreeSet<IpAddr> {
    nodes
        .iter()
        .map(|n| {
            let info = cluster.lab.node(n).unwrap();
            if v6 { IpAddr::V6(info.ipv6) } else { IpAddr::V4(info.ipv4) }
        })
        .collect()
}

fn hops(cluster: &Cluster, address: &str) -> BTreeSet<IpAddr> {
    router_next_hops(&cluster.lab, address).unwrap()
}

/// Waits until the router routes `address` to `nodes`; how long that took.
fn routed_to(cluster: &Cluster, bird: &Bird, address: &str, nodes: &[&str]) -> Duration {
    let want = node_ips(cluster, nodes, address.contains(':'));
    let start = Instant::now();
    let ok = wait_until(Duration::from_secs(20), || hops(cluster, address) == want);
    assert!(
        ok,
        "router routes {address} via {:?}, want {want:?}\n{}",
        hops(cluster, address),
        bird.birdc(&cluster.lab, &["show", "route", "all"]).unwrap()
    );
    start.elapsed()
}

/// `switchyard bgp` against the agent of `node`.
fn bgp_report(cluster: &Cluster, node: &str) -> String {
    let mut command = Command::new(&*BIN);
    command.arg("bgp").arg("--api-socket").arg(Agent::api_socket(&cluster.lab, node));
    let out = cluster.lab.output_in(node, command).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn services(cluster: &Cluster, local_on: &str) -> String {
    cluster.load_balancer(
        "web",
        30080,
        "",
        &[WEB, WEB6],
        &[("a1", State::Ready), ("b1", State::Ready)],
    ) + &cluster.load_balancer(
        "local",
        30081,
        "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32081\n",
        &[LOCAL],
        &[(local_on, State::Ready)],
    )
}

/// `count` ClusterIP Services with nothing to announce; `generation` changes every one.
fn unrelated(cluster: &Cluster, count: usize, generation: u16) -> String {
    (0..count)
        .map(|i| {
            let ip: IpAddr = format!("10.97.{}.{}", i / 250, i % 250 + 1).parse().unwrap();
            cluster.service(&format!("other-{i}"), &[ip], 1000 + generation, "", &[])
        })
        .collect()
}

#[test]
fn bird_learns_lb_ips_from_the_agents_and_keeps_them_across_a_graceful_restart() {
    if !require_root("bird_learns_lb_ips_from_the_agents_and_keeps_them_across_a_graceful_restart")
    {
        return;
    }
    let mut cluster = Cluster::with_clients(
        &[("node1", &["a1"]), ("node2", &["b1"])],
        &["ext"],
        &["--devices", "eth0"],
    );
    let baseline = cluster.containment_baseline();
    let bird = Bird::for_nodes(&cluster.lab, NODE_ASN, HOLD_SECONDS).unwrap();
    cluster.apply("nodes.yaml", &labelled_nodes(&cluster));
    cluster.apply_and_wait("svc.yaml", &services(&cluster, "a1"));
    cluster.apply("bgp.yaml", &bgp_objects(&cluster, &["node1", "node2"]));

    // Sessions from both agents; the Cluster-policy address through both, ETP Local through
    // the node with the endpoint.
    routed_to(&cluster, &bird, WEB, &["node1", "node2"]);
    routed_to(&cluster, &bird, WEB6, &["node1", "node2"]);
    routed_to(&cluster, &bird, LOCAL, &["node1"]);
    let web = at(WEB.parse().unwrap(), 80);
    let answered = cluster.backends("ext", "tcp", web, 10);
    assert!(!answered.is_empty(), "the external client reaches {web} through the router's route");
    let report = bgp_report(&cluster, "node2");
    assert!(report.contains("peer tor-node2") && report.contains(": established for"), "{report}");
    assert!(report.contains("graceful-restart 120s"), "{report}");
    assert!(
        report.contains(&format!("{WEB:<20} announced as {WEB}/32 (BGPAdvertisement all)")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "{LOCAL:<20} withheld: externalTrafficPolicy Local and no ready local endpoint"
        )),
        "{report}"
    );

    // ETP Local follows the endpoint: endpoint change -> router table.
    let start = Instant::now();
    cluster.apply("svc.yaml", &services(&cluster, "b1"));
    let moved = wait_until(Duration::from_secs(10), || {
        hops(&cluster, LOCAL) == node_ips(&cluster, &["node2"], false)
    });
    let took = start.elapsed();
    assert!(moved, "{LOCAL} did not move to node2: {:?}", hops(&cluster, LOCAL));
    println!("FIGURE endpoint change (manifest write) -> router kernel table: {took:?}");

    // 1,000 unrelated Service changes, twice, and a change to an announced Service that does
    // not change what is announced: no UPDATE reaches the router. The first 2,000 frontends
    // outgrow the agents' 1,024-entry frontend map: each migrates its maps and reloads every
    // program (seconds of verifier time) while its BGP session must stay up (hold time 3 s).
    let updates = bird.updates_received(&cluster.lab).unwrap();
    assert!(updates >= 4, "BIRD counted the announcements so far: {updates}");
    let grown = "state maps sized for the state";
    cluster.apply("unrelated.yaml", &unrelated(&cluster, 1000, 0));
    cluster.eventually_within("every agent grew its maps", Duration::from_secs(60), || {
        cluster.agents.iter().all(|agent| agent.logged(grown))
    });
    // (The growth may still be reloading programs: this update waits behind it.)
    cluster.apply_and_wait_within(
        "unrelated.yaml",
        &unrelated(&cluster, 1000, 1),
        Duration::from_secs(60),
    );
    let relabelled = services(&cluster, "b1").replacen(
        "  name: web\n",
        "  name: web\n  labels: {tier: front}\n",
        1,
    );
    // (A label changes no map entry, so there is no "update applied" to wait for.)
    cluster.apply("svc.yaml", &relabelled);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        bird.updates_received(&cluster.lab).unwrap(),
        updates,
        "UPDATEs for unrelated changes (fewer than before: BIRD reset the session)"
    );

    // Graceful restart: crash and restart each agent while the client connects every 20 ms.
    let stop = AtomicBool::new(false);
    let (attempts, always_both) = std::thread::scope(|scope| {
        let lab = &cluster.lab;
        let stop = &stop;
        let client = scope.spawn(move || {
            lab.run_in("ext", || {
                let mut attempts = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    attempts.extend(clients::tcp(web, 1, Duration::from_secs(2)));
                    std::thread::sleep(Duration::from_millis(20));
                }
                attempts
            })
            .unwrap()
        });
        let both = node_ips(&cluster, &["node1", "node2"], false);
        let watcher = scope.spawn(move || {
            let mut always = true;
            while !stop.load(Ordering::SeqCst) {
                always &= router_next_hops(lab, WEB).unwrap() == both;
                std::thread::sleep(Duration::from_millis(10));
            }
            always
        });
        let _stop = StopOnDrop(stop);
        for node in ["node1", "node2"] {
            let index = cluster.agent_index(node);
            let mut agent = cluster.agents.remove(index);
            agent.child.kill().unwrap();
            agent.child.wait().unwrap();
            let agent = cluster.start_agent(node);
            cluster.eventually(&format!("{node} re-established"), || {
                bgp_report(&cluster, node).contains(": established for")
            });
            cluster.agents.push(agent);
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        (client.join().unwrap(), watcher.join().unwrap())
    });
    let failed: Vec<_> = attempts.iter().filter(|a| a.error.is_some()).collect();
    println!(
        "FIGURE graceful restart of both agents: {} connections, {} failed",
        attempts.len(),
        failed.len()
    );
    assert!(attempts.len() > 20, "{attempts:?}");
    assert!(failed.is_empty(), "connections failed during the restarts: {failed:?}");
    assert!(always_both, "the route lost a next hop during a graceful restart");

    // Without graceful restart the hold timer withdraws a hung agent.
    cluster.apply("bgp.yaml", &bgp_objects(&cluster, &["node1"]));
    cluster.eventually("node2's session restarted without graceful restart", || {
        let report = bgp_report(&cluster, "node2");
        report.contains(": established for") && !report.contains("graceful-restart")
    });
    routed_to(&cluster, &bird, WEB, &["node1", "node2"]);
    let pid = cluster.agents[cluster.agent_index("node2")].child.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let withdrawn = routed_to(&cluster, &bird, WEB, &["node1"]);
    println!(
        "FIGURE hung agent (SIGSTOP) -> route withdrawn by the hold timer ({HOLD_SECONDS} s): {withdrawn:?}"
    );
    assert!(
        withdrawn >= Duration::from_secs(1),
        "withdrawn by the hold timer, not at once: {withdrawn:?}"
    );
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

/// GoBGP's next hops of `prefix` equal to the addresses of `nodes`.
fn gobgp_routes_to(cluster: &Cluster, gobgp: &GoBgp, prefix: &str, nodes: &[&str]) {
    let mut want: Vec<String> =
        node_ips(cluster, nodes, prefix.contains(':')).iter().map(ToString::to_string).collect();
    want.sort();
    let ok = wait_until(Duration::from_secs(20), || {
        gobgp.next_hops(&cluster.lab, prefix).unwrap() == want
    });
    assert!(
        ok,
        "GoBGP has {prefix} via {:?}, want {want:?}",
        gobgp.next_hops(&cluster.lab, prefix)
    );
}

#[test]
fn gobgp_learns_lb_ips_from_the_agents_and_a_peer_sending_garbage_disturbs_nothing_else() {
    if !require_root(
        "gobgp_learns_lb_ips_from_the_agents_and_a_peer_sending_garbage_disturbs_nothing_else",
    ) {
        return;
    }
    let cluster = Cluster::with(&[("node1", &["a1"]), ("node2", &["b1"])]);
    let gobgp = GoBgp::for_nodes(&cluster.lab, NODE_ASN).unwrap();
    cluster.apply("nodes.yaml", &labelled_nodes(&cluster));
    cluster.apply_and_wait("svc.yaml", &services(&cluster, "a1"));
    cluster.apply("bgp.yaml", &bgp_objects(&cluster, &["node1", "node2"]));
    gobgp_routes_to(&cluster, &gobgp, &format!("{WEB}/32"), &["node1", "node2"]);
    gobgp_routes_to(&cluster, &gobgp, &format!("{WEB6}/128"), &["node1", "node2"]);
    gobgp_routes_to(&cluster, &gobgp, &format!("{LOCAL}/32"), &["node1"]);
    cluster.apply("svc.yaml", &services(&cluster, "b1"));
    gobgp_routes_to(&cluster, &gobgp, &format!("{LOCAL}/32"), &["node2"]);

    // A "router" on port 1790 that answers with garbage: it gets NOTIFICATION 1/1 (connection
    // not synchronized) and the session resets; the agent's other session and routes stay.
    let info = cluster.lab.node("node1").unwrap().clone();
    let fake = std::net::SocketAddr::new(info.router_ipv4.into(), 1790);
    let listener =
        cluster.lab.run_in("fabric", move || std::net::TcpListener::bind(fake)).unwrap().unwrap();
    let garbage = format!(
        "---\napiVersion: switchyard.io/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: garbage\n\
         spec:\n  peerAddress: \"{}\"\n  peerPort: 1790\n  peerASN: {ROUTER_ASN}\n  myASN: {NODE_ASN}\n\
         \x20 nodeSelector: {{matchLabels: {{kubernetes.io/hostname: node1}}}}\n",
        info.router_ipv4
    );
    cluster.apply("garbage.yaml", &garbage);
    let (mut connection, _) = listener.accept().unwrap();
    connection.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(&mut connection, &[0x42; 40]).unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut connection, &mut answer);
    let notification = answer.windows(21).find(|w| w[..16] == [0xff; 16] && w[18] == 3);
    let notification = notification.expect("a NOTIFICATION came back");
    assert_eq!((notification[19], notification[20]), (1, 1), "header error, not synchronized");
    cluster.eventually("the garbage peer's reset is reported", || {
        let report = bgp_report(&cluster, "node1");
        report.contains("last down: sent NOTIFICATION") && report.contains("(1/1)")
    });
    let report = bgp_report(&cluster, "node1");
    let router = report.split("\npeer ").find(|b| b.starts_with("tor-node1")).unwrap();
    assert!(router.contains(": established for"), "{report}");
    assert!(router.contains("flaps: 0"), "the router's session never went down: {report}");
    gobgp_routes_to(&cluster, &gobgp, &format!("{WEB}/32"), &["node1", "node2"]);
    // The session is tried again by itself after the connect-retry time.
    let (_again, _) = listener.accept().unwrap();
}

/// The AS of the routing daemon already on node1 (BIRD in node1's namespace).
const NODE_DAEMON_ASN: u32 = 64600;

/// Listening TCP sockets on port 179 in `namespace`, as `ss -ltnp` prints them.
fn listeners_on_179(cluster: &Cluster, namespace: &str) -> Vec<String> {
    let mut command = Command::new("ss");
    command.args(["-Hltnp", "sport = :179"]);
    let out = cluster.lab.output_in(namespace, command).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// One block of `switchyard bgp`: the session with `peer` (or its "no session" line).
fn peer_block(report: &str, peer: &str) -> String {
    let start = format!("peer {peer} ");
    let start_colon = format!("peer {peer}:");
    report
        .split_inclusive('\n')
        .skip_while(|line| !line.starts_with(&start) && !line.starts_with(&start_colon))
        .enumerate()
        .take_while(|(i, line)| *i == 0 || line.starts_with("  "))
        .map(|(_, line)| line)
        .collect()
}

#[test]
fn md5_passwords_from_secrets_and_a_routing_daemon_on_the_node_owning_port_179() {
    if !require_root("md5_passwords_from_secrets_and_a_routing_daemon_on_the_node_owning_port_179")
    {
        return;
    }
    let cluster = Cluster::with(&[("node1", &["a1"])]);
    let node = cluster.lab.node("node1").unwrap().clone();
    let (router, address): (IpAddr, IpAddr) = (node.router_ipv4.into(), node.ipv4.into());
    // The router: a session with the password on port 179, and one on port 1791 the agent's
    // Secret gives another password for.
    let neighbor = |port| Neighbor {
        port,
        password: Some("s3cret".to_owned()),
        ..Neighbor::new(router, address, NODE_ASN)
    };
    let bird = Bird::start(&cluster.lab, &[neighbor(179), neighbor(1791)], 9).unwrap();
    // A routing daemon already on the node, owning port 179 there (Bloomberg's BIRD): the
    // agent peers with it over loopback instead of with the switch.
    let on_node = BirdOptions {
        namespace: "node1".to_owned(),
        router_id: Ipv4Addr::new(10, 200, 0, 1),
        asn: NODE_DAEMON_ASN,
        hold_seconds: 9,
        kernel: false,
    };
    let loopback =
        Neighbor { multihop: true, ..Neighbor::new(Ipv4Addr::LOCALHOST.into(), address, NODE_ASN) };
    let daemon = Bird::start_with(&cluster.lab, &on_node, &[loopback]).unwrap();
    cluster.eventually("the node's BIRD listens on port 179", || {
        !listeners_on_179(&cluster, "node1").is_empty()
    });

    let peer = |name: &str, address: &str, extra: &str| {
        format!(
            "---\napiVersion: switchyard.io/v1alpha1\nkind: BGPPeer\nmetadata: {{name: {name}}}\n\
             spec:\n  peerAddress: \"{address}\"\n  myASN: {NODE_ASN}\n{extra}"
        )
    };
    let secret = |wrong: &str| {
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: switchyard-bgp, namespace: kube-system}}\n\
             stringData: {{tor: s3cret, tor-wrong: {wrong}}}\n"
        )
    };
    let objects = [
        "---\napiVersion: switchyard.io/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: all}\nspec: {}\n"
            .to_owned(),
        peer("tor", &node.router_ipv4.to_string(), &format!(
            "  peerASN: {ROUTER_ASN}\n  passwordSecret: {{name: switchyard-bgp, key: tor}}\n"
        )),
        peer("tor-wrong", &node.router_ipv4.to_string(), &format!(
            "  peerASN: {ROUTER_ASN}\n  peerPort: 1791\n  passwordSecret: {{name: switchyard-bgp, key: tor-wrong}}\n"
        )),
        peer("tor-missing", &node.router_ipv4.to_string(), &format!(
            "  peerASN: {ROUTER_ASN}\n  passwordSecret: {{name: missing, namespace: default}}\n"
        )),
        peer("node-bird", "127.0.0.1", &format!("  peerASN: {NODE_DAEMON_ASN}\n  ebgpMultiHop: true\n")),
    ]
    .concat();
    cluster.apply("secret.yaml", &secret("n0pe"));
    cluster.apply("bgp.yaml", &objects);
    cluster.apply_and_wait(
        "svc.yaml",
        &cluster.load_balancer("web", 30080, "", &[WEB], &[("a1", State::Ready)]),
    );

    // The right password: established, and the router routes the address to the node.
    routed_to(&cluster, &bird, WEB, &["node1"]);
    // The routing daemon on the node learned it too, over loopback.
    cluster.eventually("the node's BIRD learned the address", || {
        daemon
            .birdc(&cluster.lab, &["show", "route", "for", WEB])
            .unwrap()
            .contains(&format!("{WEB}/32"))
    });
    let report = bgp_report(&cluster, "node1");
    assert!(peer_block(&report, "tor").contains(": established for"), "{report}");
    assert!(peer_block(&report, "node-bird").contains(": established for"), "{report}");
    assert!(
        report.contains(
            "peer tor-missing: no session: spec.passwordSecret: Secret default/missing not found"
        ),
        "{report}"
    );
    // Active only: the agent has no listener on port 179, so the node's BIRD owns it alone.
    let listeners = listeners_on_179(&cluster, "node1");
    let bird_pid = format!("pid={},", daemon.pid());
    assert!(listeners.iter().all(|l| l.contains(&bird_pid)), "{listeners:?}");
    let agent_pid = format!("pid={},", cluster.agents[0].child.id());
    assert!(listeners.iter().all(|l| !l.contains(&agent_pid)), "{listeners:?}");

    // The wrong password: BIRD drops the unsigned-for-it SYNs, so the session never comes up,
    // and `switchyard bgp` says why.
    cluster.eventually("the wrong password's failure is reported", || {
        let block = peer_block(&bgp_report(&cluster, "node1"), "tor-wrong");
        block.contains("last connection attempt: no answer") && block.contains("TCP MD5")
    });
    let block = peer_block(&bgp_report(&cluster, "node1"), "tor-wrong");
    assert!(!block.contains("established"), "{block}");
    println!("the wrong password, as `switchyard bgp` shows it:\n{block}");

    // The Secret is corrected: the session restarts with the new key and establishes.
    cluster.apply("secret.yaml", &secret("s3cret"));
    cluster.eventually("tor-wrong established with the corrected Secret", || {
        peer_block(&bgp_report(&cluster, "node1"), "tor-wrong").contains(": established for")
    });
    let protocols = bird.birdc(&cluster.lab, &["show", "protocols"]).unwrap();
    assert_eq!(protocols.matches("Established").count(), 2, "{protocols}");
}
