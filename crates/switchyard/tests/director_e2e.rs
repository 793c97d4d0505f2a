//! The director role end to end (root): two directors (`switchyard director`, native XDP) behind
//! the lab's router, which spreads VIP traffic over them with a static multipath route; three
//! nodes with agents that decapsulate only the directors' packets; an external client. Every
//! check is a count (docs/director.md has the table).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_bpf::decap::DecapReason;
use switchyard_bpf::director::DirReason;
use switchyard_bpf::nodeport_abi::PacketReason;
use switchyard_lab::require_root;
use switchyard_lab::tools::clients;
use switchyard_lab::tools::raw;
use switchyard_testing::StopOnDrop;
use switchyard_testing::director_lab::{
    self, Director, carrier, decap_counters, decapsulated, flow, local, route_vips, spread,
    vip_service,
};
use switchyard_testing::e2e::{BIN, Cluster, ECHO_PORT, State, at, set, topology};

/// `switchyard director` without node health probes.
const NO_PROBES: &[&str] = &["--health-probe", "off"];
const TIMEOUT: Duration = Duration::from_secs(3);
const UDP: u8 = 17;
const NODES: [&str; 3] = ["node1", "node2", "node3"];
/// The GUE port doubles as a NodePort: the node's per-packet path must never see (and
/// translate) the outer header of the directors' packets.
const GUE_PORT: u16 = 6080;

/// Three nodes with one pod each, client `ext`, directors `dir1` and `dir2`; agents accept the
/// directors' packets and serve NodePorts from 6000 (so the GUE port is a NodePort too).
fn cluster() -> Cluster {
    let nodes: [(&str, &[&str]); 3] = [("node1", &["a1"]), ("node2", &["b1"]), ("node3", &["c1"])];
    Cluster::with_topology(&topology(&nodes, &["ext"], &["dir1", "dir2"]), |lab| {
        let mut args = director_lab::agent_args(lab);
        args.extend(["--node-port-range".to_string(), "6000-32767".to_string()]);
        args
    })
}

/// A NodePort Service on the GUE port (TCP and UDP), to a pod.
fn gue_port_service(cluster: &Cluster) -> String {
    cluster
        .service("trap", &["10.96.7.200".parse().unwrap()], 80, "", &[("a1", State::Ready)])
        .replace("type: ClusterIP", "type: NodePort")
        .replace(
            &format!("targetPort: {ECHO_PORT}}}"),
            &format!("targetPort: {ECHO_PORT}, nodePort: {GUE_PORT}}}"),
        )
}

fn client_ip(cluster: &Cluster, v6: bool) -> IpAddr {
    cluster.client_ip("ext", v6)
}

/// Per-packet counters of a node's agent.
fn node_counters(cluster: &Cluster, node: &str) -> BTreeMap<PacketReason, u64> {
    let bpf_dir = cluster.lab.node(node).unwrap().bpf_dir.clone();
    switchyard_bpf::nodeport::PacketMaps::open_pinned(&bpf_dir)
        .unwrap()
        .counters()
        .unwrap()
        .into_iter()
        .map(|(reason, c)| (reason, c.packets))
        .collect()
}

/// Packets dropped by the directors' XDP programs and the nodes' decapsulation and per-packet
/// programs (every `drop_*` counter).
fn program_drops(cluster: &Cluster) -> u64 {
    let mut sum = 0;
    for director in ["dir1", "dir2"] {
        let maps = switchyard_bpf::director::DirMaps::open_pinned(
            &cluster.lab.director(director).unwrap().bpf_dir,
        )
        .unwrap();
        sum += maps
            .counters()
            .unwrap()
            .iter()
            .filter(|(r, _)| r.name().starts_with("drop"))
            .map(|(_, c)| c.packets)
            .sum::<u64>();
    }
    for node in NODES {
        sum += decap_counters(&cluster.lab, node)
            .iter()
            .filter(|(r, _)| r.name().starts_with("drop"))
            .map(|(_, n)| n)
            .sum::<u64>();
        sum += node_counters(cluster, node)
            .iter()
            .filter(|(r, _)| r.name().starts_with("drop"))
            .map(|(_, n)| n)
            .sum::<u64>();
    }
    sum
}

/// Packets dropped because a CPU's input backlog was full (`/proc/net/softnet_stat`, second
/// column, summed over CPUs; host-wide: veths without NAPI queue received packets there).
fn backlog_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|hex| u64::from_str_radix(hex, 16).unwrap())
        .sum()
}

/// Dropped packets on every link of the directors, the router and the nodes.
fn link_drops(cluster: &Cluster) -> u64 {
    let members = ["dir1", "dir2", "fabric", "node1", "node2", "node3"];
    members
        .iter()
        .flat_map(|m| cluster.lab.link_stats(m).unwrap().into_values())
        .map(|s| s.rx_dropped + s.tx_dropped)
        .sum()
}

/// Runs `switchyard ARGS` (on the host: the maps are read from the lab's bpffs) and parses its
/// JSON output.
fn cli_json(args: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new(&*BIN).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "switchyard {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn rx_packets(cluster: &Cluster, member: &str) -> u64 {
    cluster.lab.link_stats(member).unwrap()["eth0"].rx_packets
}

#[test]
fn vips_spread_as_maglev_says_replies_bypass_directors_and_flows_survive_a_director_switch() {
    if !require_root(
        "vips_spread_as_maglev_says_replies_bypass_directors_and_flows_survive_a_director_switch",
    ) {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    let web = ["10.96.70.1", "fd00:96::70:1"];
    let loc = ["10.96.71.1", "fd00:96::71:1"];
    let all: Vec<(&str, State)> = ["a1", "b1", "c1"].map(|p| (p, State::Ready)).to_vec();
    let local_spec = "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32071\n";
    let manifests = vip_service(&cluster, "web", "", web, &all)
        + &vip_service(
            &cluster,
            "loc",
            local_spec,
            loc,
            &[("a1", State::Ready), ("c1", State::Ready)],
        )
        + &gue_port_service(&cluster);
    cluster.apply_and_wait("vips.yaml", &manifests);
    // Health probes off: this test counts every packet the directors receive (the answers to
    // probes would be counted as replies through a director); director_health_e2e covers them.
    let mut directors = [
        Director::start(&cluster, "dir1", NO_PROBES),
        Director::start(&cluster, "dir2", NO_PROBES),
    ];
    route_vips(&cluster, web, &["dir1", "dir2"]);
    route_vips(&cluster, loc, &["dir1", "dir2"]);

    // 1. Spread: 40 TCP + 40 UDP flows per family, each on the node Maglev names; all three
    //    nodes carry some. Replies: the directors receive only what they encapsulate.
    let rx_before: u64 = ["dir1", "dir2"].iter().map(|d| rx_packets(&cluster, d)).sum();
    let encap_before: u64 = directors.iter().map(|d| d.encapsulated(&cluster.lab)).sum();
    let client_rx_before = rx_packets(&cluster, "ext");
    for vip in web {
        let per_node = spread(&cluster, &directors, at(vip.parse().unwrap(), 80), 40);
        eprintln!("director lab: {vip} flows per node {per_node:?}");
        assert_eq!(per_node.keys().cloned().collect::<BTreeSet<_>>(), set(&NODES), "{vip}");
    }
    let received: u64 =
        ["dir1", "dir2"].iter().map(|d| rx_packets(&cluster, d)).sum::<u64>() - rx_before;
    let encapsulated: u64 =
        directors.iter().map(|d| d.encapsulated(&cluster.lab)).sum::<u64>() - encap_before;
    let client_received = rx_packets(&cluster, "ext") - client_rx_before;
    eprintln!(
        "director lab: directors received {received}, encapsulated {encapsulated}; client received {client_received}"
    );
    assert!(encapsulated >= 160, "every flow passed a director: {encapsulated}");
    // A few ARP / neighbour packets may reach a director; no reply does (the client received
    // at least one reply packet per flow).
    assert!(
        received <= encapsulated + 20,
        "directors received {received}, encapsulated {encapsulated}"
    );
    assert!(client_received >= 160, "client received {client_received}");
    for director in &directors {
        let counters = director.counters(&cluster.lab);
        let dropped: u64 =
            counters.iter().filter(|(r, _)| r.name().starts_with("drop")).map(|(_, n)| n).sum();
        assert_eq!(dropped, 0, "{} dropped: {counters:?}", director.name);
        assert!(counters[&DirReason::EncapGue] > 0, "{}: {counters:?}", director.name);
    }

    // `switchyard explain` on a director names the node a flow goes to and why; `status` shows
    // every VIP with its table's shares (summing to M) and the packets sent.
    // `switchyard monitor` runs on both directors during the connection (below: its events).
    let monitors = ["dir1", "dir2"].map(|d| {
        let dir = cluster.lab.director(d).unwrap().bpf_dir.clone();
        let child = std::process::Command::new(&*BIN)
            .args(["monitor", "--bpf-dir", &dir.display().to_string()])
            .args(["--duration-ms", "6000", "-o", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (child, dir)
    });
    for (_, dir) in &monitors {
        let on = || switchyard_bpf::monitor::read_settings(dir).is_ok_and(|m| m.enabled != 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !on() {
            assert!(std::time::Instant::now() < deadline, "monitor never switched on in {dir:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let target = at(web[0].parse().unwrap(), 80);
    let attempt = cluster.lab.run_in("ext", || clients::tcp(target, 1, TIMEOUT)).unwrap().remove(0);
    let client = client_ip(&cluster, false);
    let carried = carrier(&cluster, &attempt, client);
    let source = local(&attempt, client).to_string();
    let explained = cli_json(&[
        "explain",
        &source,
        &format!("{target}/tcp"),
        "--node",
        "dir2",
        "--lab",
        cluster.lab.prefix(),
        "-o",
        "json",
    ]);
    let node_ip: IpAddr = explained["node"]["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        director_lab::node_named(&cluster.lab, node_ip).as_deref(),
        Some(carried.as_str()),
        "{explained}"
    );
    assert_eq!(explained["settings"]["tableSize"], 65537, "{explained}");
    assert_eq!(explained["node"]["name"].as_str(), Some(carried.as_str()), "{explained}");
    assert_eq!(explained["node"]["weight"], 1, "{explained}");
    assert!(explained["decision"].as_str().unwrap().contains(&carried), "{explained}");
    // The monitor's events of that connection: each names the VIP, the flow, explain's slot and
    // the node that carried it.
    let mut events = Vec::new();
    for (child, _) in monitors {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "monitor: {}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            if event["client"].as_str() == Some(source.as_str()) {
                events.push(event);
            }
        }
    }
    assert!(events.len() >= 3, "SYN, ACK, data: {events:?}");
    for event in &events {
        assert_eq!(event["path"], "director", "{event}");
        assert_eq!(event["reason"], "encap_gue", "{event}");
        assert_eq!(event["vip"].as_str(), Some(target.to_string().as_str()), "{event}");
        assert_eq!(event["slot"], explained["slot"], "{event}");
        assert_eq!(event["node"].as_str(), Some(carried.as_str()), "{event}");
        assert_eq!(event["nodeAddress"].as_str(), Some(node_ip.to_string().as_str()), "{event}");
    }
    eprintln!("director lab: monitor showed {} events of the explained connection", events.len());

    // Metrics on each director's local API: packets per VIP and per node (by Node name), and
    // the program's decisions and drops by reason; they add up to what was encapsulated.
    let mut per_node: BTreeMap<String, u64> = BTreeMap::new();
    for director in &directors {
        let text = director.get(&cluster, "/metrics");
        let mut vip_packets = 0;
        for line in text.lines() {
            let value = || line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
            if line.starts_with("switchyard_director_vip_packets_total{") {
                vip_packets += value();
            }
            if let Some(rest) = line.strip_prefix("switchyard_director_node_packets_total{") {
                let name = rest.split("node=\"").nth(1).unwrap().split('"').next().unwrap();
                *per_node.entry(name.to_owned()).or_default() += value();
            }
        }
        let encapsulated = director.encapsulated(&cluster.lab);
        assert!(vip_packets > 0 && vip_packets <= encapsulated, "{}: {text}", director.name);
        assert!(
            text.contains("switchyard_datapath_drops_total{reason=\"drop_no_route\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_datapath_decisions_total{reason=\"encap_gue\"}"),
            "{text}"
        );
    }
    assert_eq!(per_node.keys().cloned().collect::<BTreeSet<_>>(), set(&NODES), "{per_node:?}");
    assert!(per_node.values().all(|&p| p > 0), "{per_node:?}");
    assert!(explained["slot"].as_u64().unwrap() < 65537, "{explained}");
    let bpf_dir = cluster.lab.director("dir1").unwrap().bpf_dir.display().to_string();
    let status = cli_json(&["status", "--bpf-dir", &bpf_dir, "-o", "json"]);
    let vips = status["director"]["vips"].as_array().unwrap();
    assert_eq!(vips.len(), 8, "2 Services x 2 families x TCP/UDP: {status}");
    for vip in vips {
        let slots: u64 =
            vip["shares"].as_array().unwrap().iter().map(|s| s["slots"].as_u64().unwrap()).sum();
        assert_eq!(slots, 65537, "{vip}");
    }
    assert!(
        status["director"]["reasons"]["encap_gue"]["packets"].as_u64().unwrap() > 0,
        "{status}"
    );

    // 2. externalTrafficPolicy Local: only node1 and node3 (ready endpoints) get flows, and
    //    the backends see the client.
    for vip in loc {
        let target = at(vip.parse().unwrap(), 80);
        let per_node = spread(&cluster, &directors, target, 30);
        assert_eq!(
            per_node.keys().cloned().collect::<BTreeSet<_>>(),
            set(&["node1", "node3"]),
            "{vip}"
        );
    }

    // 3. A connection whose packets switch directors mid-stream: first only dir1, then only
    //    dir2, then both; it keeps its backend and is never reset.
    route_vips(&cluster, web, &["dir1"]);
    let stop = AtomicBool::new(false);
    let target = at(web[0].parse().unwrap(), 80);
    let report = std::thread::scope(|scope| {
        let hold = scope.spawn(|| {
            cluster.lab.run_in("ext", || {
                clients::hold_until(target, Duration::from_millis(10), TIMEOUT, || {
                    stop.load(Ordering::SeqCst)
                })
            })
        });
        let grow = |director: &Director, by: u64| {
            let start = director.encapsulated(&cluster.lab);
            cluster.eventually(&format!("{} carries the connection", director.name), || {
                director.encapsulated(&cluster.lab) >= start + by
            });
        };
        let _stop = StopOnDrop(&stop);
        grow(&directors[0], 20);
        route_vips(&cluster, web, &["dir2"]);
        grow(&directors[1], 20);
        route_vips(&cluster, web, &["dir1", "dir2"]);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        hold.join().unwrap().unwrap()
    });
    eprintln!("director lab: switched connection {report:?}");
    assert!(!report.reset && report.error.is_none(), "{report:?}");
    assert_eq!(report.backends.len(), 1, "the connection moved: {report:?}");
    assert!(report.pings >= 20, "{report:?}");

    // 3b. dir1 is killed and started again while it alone carries the VIP, a connection is
    //     held through it and new connections keep coming: the pinned program carries on while
    //     no process runs, the new process adopts the pinned maps and replaces the program
    //     behind the pinned link in one step. Not one connection fails or moves.
    route_vips(&cluster, web, &["dir1"]);
    let stop = AtomicBool::new(false);
    let (held, fresh) = std::thread::scope(|scope| {
        let hold = scope.spawn(|| {
            cluster.lab.run_in("ext", || {
                clients::hold_until(target, Duration::from_millis(10), TIMEOUT, || {
                    stop.load(Ordering::SeqCst)
                })
            })
        });
        let connect = scope.spawn(|| {
            let mut attempts = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                attempts.extend(
                    cluster.lab.run_in("ext", || clients::tcp(target, 5, TIMEOUT)).unwrap(),
                );
            }
            attempts
        });
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(300));
        let old = &mut directors[0];
        old.child.kill().unwrap();
        old.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(300)); // no director process at all
        directors[0] = Director::start(&cluster, "dir1", NO_PROBES);
        let start = directors[0].encapsulated(&cluster.lab);
        cluster.eventually("the restarted dir1 carries the connections", || {
            directors[0].encapsulated(&cluster.lab) >= start + 50
        });
        stop.store(true, Ordering::SeqCst);
        (hold.join().unwrap().unwrap(), connect.join().unwrap())
    });
    let failed: Vec<_> = fresh.iter().filter(|a| a.error.is_some()).collect();
    eprintln!(
        "director lab: dir1 restarted under traffic: held connection {held:?}; {} new connections, {} failed",
        fresh.len(),
        failed.len()
    );
    assert!(!held.reset && held.error.is_none(), "{held:?}");
    assert_eq!(held.backends.len(), 1, "the held connection moved: {held:?}");
    assert!(fresh.len() >= 10, "connections during the restart: {}", fresh.len());
    assert!(failed.is_empty(), "connections failed during the restart: {failed:?}");
    assert!(
        directors[0].log.lock().unwrap().iter().any(|l| l.contains("took_over=true")),
        "the new process took over the pinned link: {:#?}",
        directors[0].log
    );
    route_vips(&cluster, web, &["dir1", "dir2"]);

    // 4. A packet-too-big from a router on the client's path, about a VIP flow, reaches the
    //    node that holds the flow (hashed on the quoted flow) whichever director gets it.
    std::thread::sleep(Duration::from_millis(300)); // the held connection's last packets
    for (vip, v6) in [(web[0], false), (web[1], true)] {
        let vip: IpAddr = vip.parse().unwrap();
        let client = client_ip(&cluster, v6);
        let reply = SocketAddr::new(vip, 80);
        let client_end = SocketAddr::new(client, 40_000 + u16::from(v6));
        let owner = directors[0].node_for(&cluster.lab, &flow(client_end, reply, UDP)).unwrap();
        let before: BTreeMap<&str, u64> =
            NODES.iter().map(|n| (*n, decapsulated(&cluster.lab, n))).collect();
        let icmp_before: u64 =
            directors.iter().map(|d| d.counters(&cluster.lab)[&DirReason::IcmpToNode]).sum();
        let (protocol, payload) = raw::too_big(&raw::udp_packet(reply, client_end, b"reply"), 1400);
        cluster.lab.run_in("ext", || raw::send(vip, protocol, &payload)).unwrap().unwrap();
        cluster
            .eventually(&format!("the packet-too-big about {client_end} reaches {owner}"), || {
                decapsulated(&cluster.lab, &owner) > before[owner.as_str()]
            });
        for node in NODES.iter().filter(|n| **n != owner) {
            assert_eq!(decapsulated(&cluster.lab, node), before[node], "{node} got it");
        }
        // Exactly once: the node drops it (no flow of its own), never routes it back out to the
        // directors (that loop would count here up to the TTL).
        std::thread::sleep(Duration::from_millis(100));
        let icmp: u64 =
            directors.iter().map(|d| d.counters(&cluster.lab)[&DirReason::IcmpToNode]).sum();
        assert_eq!(icmp, icmp_before + 1, "ICMP errors encapsulated to nodes");
        let unhandled = node_counters(&cluster, &owner)[&PacketReason::DropDecapUnhandled];
        assert!(unhandled >= 1, "{owner} dropped the decapsulated ICMP error it had no flow for");
    }

    // 5. Encapsulated packets and garbage from an address that is no director: dropped and
    //    counted by the node, never decapsulated. (The GUE port is also a NodePort here: every
    //    VIP flow above arrived all the same, so the per-packet path never saw, let alone
    //    translated, an outer header.)
    let node1 = cluster.lab.node("node1").unwrap().clone();
    let before = decap_counters(&cluster.lab, "node1");
    let ext4 = client_ip(&cluster, false);
    let inner =
        raw::udp_packet(SocketAddr::new(ext4, 5000), at(web[0].parse().unwrap(), 80), b"hi");
    let gue: Vec<u8> =
        [0u8, raw::IPPROTO_IPIP, 0, 0].into_iter().chain(inner.iter().copied()).collect();
    cluster
        .lab
        .run_in("ext", || {
            let sock4 = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            sock4.send_to(&gue, (node1.ipv4, GUE_PORT)).unwrap();
            sock4.send_to(b"garbage, not GUE", (node1.ipv4, GUE_PORT)).unwrap();
            let sock6 = std::net::UdpSocket::bind("[::]:0").unwrap();
            sock6.send_to(&gue, (node1.ipv6, GUE_PORT)).unwrap();
            raw::send(node1.ipv4.into(), raw::IPPROTO_IPIP, &inner).unwrap();
        })
        .unwrap();
    cluster.eventually("node1 drops the four foreign packets", || {
        decap_counters(&cluster.lab, "node1")[&DecapReason::DropNotDirector]
            >= before[&DecapReason::DropNotDirector] + 4
    });
    let after = decap_counters(&cluster.lab, "node1");
    for reason in [DecapReason::Gue, DecapReason::Fou, DecapReason::Ipip] {
        assert_eq!(after[&reason], before[&reason], "{reason:?} from a non-director");
    }
    // An operator sees them too: `switchyard status` on the node lists the decapsulation
    // counters beside the node's own (and `/metrics` has them as drop reasons).
    let status = std::process::Command::new(&*BIN)
        .args(["status", "--bpf-dir"])
        .arg(&node1.bpf_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}{}", String::from_utf8_lossy(&status.stderr));
    let shown = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{name}: ")))
            .and_then(|rest| rest.split(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        shown("drop_not_director"),
        after[&DecapReason::DropNotDirector],
        "status shows the node's decapsulation drops: {text}"
    );
    assert!(shown("decap_gue") + shown("decap_ipip") > 0, "{text}");

    cluster.assert_nothing_left_the_lab_since(&baseline);
}

#[test]
fn large_transfers_through_a_smaller_mtu_and_uploads_with_gro_on_lose_nothing() {
    if !require_root("large_transfers_through_a_smaller_mtu_and_uploads_with_gro_on_lose_nothing") {
        return;
    }
    let cluster = cluster();
    let baseline = cluster.containment_baseline();
    let vips = ["10.96.72.1", "fd00:96::72:1"];
    let all: Vec<(&str, State)> = ["a1", "b1", "c1"].map(|p| (p, State::Ready)).to_vec();
    let spec = "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32072\n";
    cluster.apply_and_wait("big.yaml", &vip_service(&cluster, "big", spec, vips, &all));
    // IPIP: the kernel's GRO merges IPIP (and IPv6-in-IPv6) packets, so the nodes' TC
    // decapsulation gets GRO-merged packets (the seed's GUE bug was exactly there).
    let directors = [
        Director::start(&cluster, "dir1", &["--encap", "ipip"]),
        Director::start(&cluster, "dir2", &["--encap", "ipip"]),
    ];
    route_vips(&cluster, vips, &["dir1", "dir2"]);

    // 1. A smaller MTU (1400) on the links of every node; the directors know it as
    //    a locked route MTU. 1 MB uploads (echoed back) complete, v4 and v6: the directors
    //    answer frag-needed / packet-too-big with the inner MTU.
    for node in cluster.lab.nodes().to_vec() {
        cluster.lab.set_mtu("fabric", &node.router_link, 1400).unwrap();
        cluster.lab.set_mtu(&node.name, &node.uplink, 1400).unwrap();
    }
    for director in ["dir1", "dir2"] {
        for nodes in ["10.100.0.0/16", "fd00:100::/32"] {
            cluster.lab.route_with_mtu(director, nodes.parse().unwrap(), 1400).unwrap();
        }
    }
    let frag_before: u64 =
        directors.iter().map(|d| d.counters(&cluster.lab)[&DirReason::FragNeeded]).sum();
    for vip in vips {
        let target = at(vip.parse().unwrap(), 80);
        let up = cluster
            .lab
            .run_in("ext", || clients::upload(target, 1_000_000, Duration::from_secs(30)))
            .unwrap();
        if up.error.is_some() {
            let nodes: Vec<_> = NODES
                .iter()
                .map(|n| (n, node_counters(&cluster, n), decap_counters(&cluster.lab, n)))
                .collect();
            let dirs: Vec<_> = directors.iter().map(|d| d.counters(&cluster.lab)).collect();
            panic!(
                "1 MB upload to {target}: {up:?}\ndirectors {dirs:?}\nnodes {nodes:?}\nclient {:?}",
                cluster
                    .lab
                    .ip_counters("ext")
                    .unwrap()
                    .into_iter()
                    .filter(|(k, v)| *v > 0 && (k.starts_with("Icmp6") || k.starts_with("Tcp")))
                    .collect::<Vec<_>>()
            );
        }
    }
    let frag: u64 =
        directors.iter().map(|d| d.counters(&cluster.lab)[&DirReason::FragNeeded]).sum();
    assert!(frag >= frag_before + 2, "frag-needed answered per family: {frag_before} -> {frag}");

    // 2. GRO merging at every node's uplink (GRO on, NAPI batching, the router's side handing
    //    packets to the node's NAPI): 10 MB uploads, v4 and v6, echoed intact, with no drop
    //    anywhere on the way, and the nodes' TC decapsulation provably received GRO-merged
    //    packets (fewer skbs than the directors sent segments; `decap_gro_merged`: gso_segs > 1).
    for node in NODES {
        director_lab::merge_at_node(&cluster.lab, node);
    }
    let merged = |c: &Cluster| -> u64 {
        NODES.iter().map(|n| decap_counters(&c.lab, n)[&DecapReason::GroMerged]).sum()
    };
    // (retransmitted segments, of them proven spurious by the receiver's D-SACK, segments sent)
    let retrans = |c: &Cluster| {
        let counters = c.lab.ip_counters("ext").unwrap();
        let get = |k: &str| counters.get(k).copied().unwrap_or(0);
        (get("Tcp.RetransSegs"), get("TcpExt.TCPDSACKRecvSegs"), get("Tcp.OutSegs"))
    };
    let retrans_before = retrans(&cluster);
    let program_drops_before = program_drops(&cluster);
    let encap_before: u64 = directors.iter().map(|d| d.encapsulated(&cluster.lab)).sum();
    let decap_before: u64 = NODES.iter().map(|n| decapsulated(&cluster.lab, n)).sum();
    let drops_before = link_drops(&cluster);
    let backlog_before = backlog_drops();
    let frag_before: u64 =
        directors.iter().map(|d| d.counters(&cluster.lab)[&DirReason::FragNeeded]).sum();
    for vip in vips {
        let target = at(vip.parse().unwrap(), 80);
        let merged_before = merged(&cluster);
        let segments_before: u64 = directors.iter().map(|d| d.encapsulated(&cluster.lab)).sum();
        let skbs_before: u64 = NODES.iter().map(|n| decapsulated(&cluster.lab, n)).sum();
        let up = cluster
            .lab
            .run_in("ext", || clients::upload(target, 10_000_000, Duration::from_secs(60)))
            .unwrap();
        assert_eq!(up.error, None, "10 MB upload to {target}: {up:?}");
        let merged = merged(&cluster) - merged_before;
        let segments =
            directors.iter().map(|d| d.encapsulated(&cluster.lab)).sum::<u64>() - segments_before;
        let skbs = NODES.iter().map(|n| decapsulated(&cluster.lab, n)).sum::<u64>() - skbs_before;
        eprintln!(
            "director lab: 10 MB upload to {target} in {} ms: {segments} segments encapsulated, \
             {skbs} skbs decapsulated, {merged} of them GRO-merged",
            up.micros.unwrap_or(0) / 1000
        );
        assert!(merged > 0, "{target}: no GRO-merged packet reached the decapsulation");
        assert!(skbs < segments, "{target}: {skbs} skbs for {segments} segments: nothing merged");
    }
    let encapsulated: u64 =
        directors.iter().map(|d| d.encapsulated(&cluster.lab)).sum::<u64>() - encap_before;
    let decapsulated_skbs: u64 =
        NODES.iter().map(|n| decapsulated(&cluster.lab, n)).sum::<u64>() - decap_before;
    let retrans_after = retrans(&cluster);
    let retransmitted = retrans_after.0 - retrans_before.0;
    let spurious = retrans_after.1 - retrans_before.1;
    let sent = retrans_after.2 - retrans_before.2;
    let program_dropped = program_drops(&cluster) - program_drops_before;
    let backlog = backlog_drops() - backlog_before;
    let dropped = link_drops(&cluster) - drops_before;
    let frag_needed: u64 =
        directors.iter().map(|d| d.counters(&cluster.lab)[&DirReason::FragNeeded]).sum::<u64>()
            - frag_before;
    eprintln!(
        "director lab: 2 x 10 MB: {encapsulated} packets encapsulated, {decapsulated_skbs} \
         decapsulated (skbs after GRO: fewer means merged), {sent} segments sent, {retransmitted} retransmitted \
         ({spurious} proven spurious by D-SACK), {dropped} dropped on links, {program_dropped} \
         dropped by programs, {backlog} dropped by full input backlogs (host-wide), \
         {frag_needed} frag-needed answered"
    );
    // Nothing is lost: no link, director, decapsulation or per-packet drop on the way. The
    // client's retransmissions are counted and reported (with the host's input-backlog drops,
    // where veths without NAPI queue packets on a loaded machine); at most 1 in 100 segments.
    assert_eq!(dropped, 0, "packets dropped on the links of directors, router or nodes");
    assert_eq!(program_dropped, 0, "packets dropped by the directors' or nodes' programs");
    assert!(retransmitted * 100 <= sent, "{retransmitted} of {sent} segments retransmitted");
    for node in NODES {
        let counters = decap_counters(&cluster.lab, node);
        for reason in
            [DecapReason::DropMalformed, DecapReason::DropAdjust, DecapReason::DropNotDirector]
        {
            assert_eq!(counters[&reason], 0, "{node} {reason:?}");
        }
    }
    for director in &directors {
        let counters = director.counters(&cluster.lab);
        let dropped: u64 =
            counters.iter().filter(|(r, _)| r.name().starts_with("drop")).map(|(_, n)| n).sum();
        assert_eq!(dropped, 0, "{} dropped: {counters:?}", director.name);
    }
    cluster.assert_nothing_left_the_lab_since(&baseline);
}
