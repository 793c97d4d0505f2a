//! L2 mode end to end (issue 17, root): three nodes running the agent and an external client
//! share one Ethernet segment (a bridge in the lab's router namespace, links `l2`); an
//! L2Advertisement makes one node answer ARP for a LoadBalancer IP on that segment. The client
//! reaches the Service through the owner; then the owner dies (agent SIGKILLed, its `l2` link
//! down) and its Node turns Ready False in the manifests — the failover trigger. Measured: from
//! that write to the client's first answer through the new owner (plan, gratuitous ARP, the
//! client's neighbour cache moving, the connection).

#![allow(clippy::unwrap_used, reason = "test harness")]

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_lab::tools::clients;
use switchyard_lab::{Lab, require_root, wait_until};
use switchyard_testing::e2e::*;

const VIP: &str = "10.250.0.200";
const VIP6: &str = "fd00:250::200";
const CLIENT: &str = "ext";
const NODES: [(&str, &str); 3] = [("node1", "a1"), ("node2", "b1"), ("node3", "c1")];

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The segment: bridge `l2br` in the router namespace, a veth `l2` into every node
/// (10.250.0.1N/24) and into the client (10.250.0.100/24). Removed with the lab's namespaces.
fn build_segment(lab: &Lab) {
    let fabric = lab.netns_of("fabric").unwrap();
    ip(&["-n", &fabric, "link", "add", "l2br", "type", "bridge"]);
    ip(&["-n", &fabric, "link", "set", "l2br", "up"]);
    let members: Vec<(String, String)> = NODES
        .iter()
        .enumerate()
        .map(|(i, (node, _))| ((*node).to_owned(), format!("{}", 11 + i)))
        .chain([(CLIENT.to_owned(), "100".to_owned())])
        .collect();
    for (i, (member, host)) in members.iter().enumerate() {
        let netns = lab.netns_of(member).unwrap();
        let port = format!("l2p{i}");
        ip(&[
            "link", "add", &port, "netns", &fabric, "type", "veth", "peer", "name", "l2", "netns",
            &netns,
        ]);
        ip(&["-n", &fabric, "link", "set", &port, "master", "l2br", "up"]);
        ip(&["-n", &netns, "addr", "add", &format!("10.250.0.{host}/24"), "dev", "l2"]);
        ip(&["-n", &netns, "addr", "add", &format!("fd00:250::{host}/64"), "dev", "l2", "nodad"]);
        ip(&["-n", &netns, "link", "set", "l2", "up"]);
    }
}

/// `switchyard l2 -o json` of the agent on `node`.
fn l2_report(cluster: &Cluster, node: &str) -> Value {
    let socket = Agent::api_socket(&cluster.lab, node);
    let out = Command::new(&*BIN)
        .arg("l2")
        .arg("--api-socket")
        .arg(socket)
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The owner of `vip` as the agent on `node` sees it.
fn owner_seen_by(cluster: &Cluster, node: &str, vip: &str) -> Option<String> {
    let report = l2_report(cluster, node);
    report["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["address"] == vip)
        .and_then(|a| a["owner"].as_str().map(str::to_owned))
}

fn pod_of(node: &str) -> &'static str {
    NODES.iter().find(|(n, _)| *n == node).unwrap().1
}

/// One request from the client to `vip`:80: the pod that answered, or the error.
fn try_ask(cluster: &Cluster, vip: &str, timeout: Duration) -> Result<String, String> {
    let target = at(vip.parse::<IpAddr>().unwrap(), 80);
    let attempt =
        cluster.lab.run_in(CLIENT, || clients::tcp(target, 1, timeout)).unwrap().remove(0);
    attempt.backend.ok_or_else(|| attempt.error.unwrap_or_default())
}

fn ask(cluster: &Cluster, vip: &str, timeout: Duration) -> Option<String> {
    try_ask(cluster, vip, timeout).ok()
}

/// The client's neighbour entry for VIP on `l2` (`ip neigh` text).
fn client_neighbour(cluster: &Cluster) -> String {
    let netns = cluster.lab.netns_of(CLIENT).unwrap();
    let out = Command::new("ip").args(["-n", &netns, "neigh", "show", VIP, "dev", "l2"]).output();
    String::from_utf8_lossy(&out.unwrap().stdout).trim().to_owned()
}

/// The MAC of `l2` in `member`.
fn l2_mac(cluster: &Cluster, member: &str) -> String {
    let netns = cluster.lab.netns_of(member).unwrap();
    let out = Command::new("ip").args(["-n", &netns, "-o", "link", "show", "l2"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    words[words.iter().position(|w| *w == "link/ether").unwrap() + 1].to_owned()
}

/// Nodes with `not_ready` carrying a Ready=False condition.
fn nodes_yaml(cluster: &Cluster, not_ready: Option<&str>) -> String {
    let mut text = String::new();
    for node in cluster.lab.nodes() {
        let ready = if not_ready == Some(node.name.as_str()) { "False" } else { "True" };
        text += &format!(
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {}\nspec:\n  podCIDRs: [\"{}\", \"{}\"]\n\
             status:\n  conditions:\n  - {{type: Ready, status: \"{ready}\"}}\n  addresses:\n\
             \x20 - {{type: InternalIP, address: \"{}\"}}\n  - {{type: InternalIP, address: \"{}\"}}\n",
            node.name, node.pod_cidr_v4, node.pod_cidr_v6, node.ipv4, node.ipv6
        );
    }
    text
}

#[test]
fn the_owner_answers_and_a_dead_owner_fails_over_with_gratuitous_arp() {
    if !require_root("the_owner_answers_and_a_dead_owner_fails_over_with_gratuitous_arp") {
        return;
    }
    let nodes: Vec<(&str, &[&str])> =
        NODES.iter().map(|(n, p)| (*n, std::slice::from_ref(p))).collect();
    let mut cluster = Cluster::with_topology(&topology(&nodes, &[CLIENT], &[]), |lab| {
        build_segment(lab);
        vec!["--devices".to_owned(), "eth0,l2".to_owned()]
    });
    // Conditions change no map: nothing to wait for (the Service below is applied after it).
    cluster.apply("nodes.yaml", &nodes_yaml(&cluster, None));
    let endpoints: Vec<(&str, State)> = NODES.iter().map(|(_, p)| (*p, State::Ready)).collect();
    let local = "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32091\n";
    let service = cluster.load_balancer("web", 30091, local, &[VIP, VIP6], &endpoints);
    cluster.apply_and_wait("web.yaml", &service);
    cluster.apply(
        "l2.yaml",
        "---\napiVersion: switchyard.io/v1alpha1\nkind: L2Advertisement\nmetadata:\n  name: segment\n\
         spec:\n  interfaces: [l2]\n",
    );

    // Every agent names the same owner.
    let mut owner = None;
    cluster.eventually("every agent names one owner of the VIP", || {
        let seen: Vec<Option<String>> =
            NODES.iter().map(|(n, _)| owner_seen_by(&cluster, n, VIP)).collect();
        owner = seen[0].clone();
        owner.is_some() && seen.iter().all(|s| *s == owner)
    });
    let owner = owner.unwrap();
    let report = l2_report(&cluster, &owner);
    assert_eq!(report["interfaces"][0]["name"], "l2", "{report:#}");
    for (node, _) in NODES.iter().filter(|(n, _)| *n != owner) {
        let other = l2_report(&cluster, node);
        assert!(
            other["interfaces"].as_array().unwrap().is_empty(),
            "{node} answers too: {other:#}"
        );
    }

    // The client reaches the Service through the owner (Local policy: its own pod answers).
    let mut answered = None;
    cluster.eventually("the client reaches the VIP", || {
        answered = ask(&cluster, VIP, Duration::from_millis(500));
        answered.is_some()
    });
    assert_eq!(answered.as_deref(), Some(pod_of(&owner)), "through the owner {owner}");
    // IPv6 through NDP: its owner (chosen for that address, maybe another node) answers.
    let mut owner6 = None;
    cluster.eventually("every agent names one owner of the IPv6 VIP", || {
        let seen: Vec<Option<String>> =
            NODES.iter().map(|(n, _)| owner_seen_by(&cluster, n, VIP6)).collect();
        owner6 = seen[0].clone();
        owner6.is_some() && seen.iter().all(|s| *s == owner6)
    });
    let owner6 = owner6.unwrap();
    let mut answered6 = None;
    cluster.eventually("the client reaches the IPv6 VIP", || {
        answered6 = ask(&cluster, VIP6, Duration::from_millis(500));
        answered6.is_some()
    });
    assert_eq!(answered6.as_deref(), Some(pod_of(&owner6)), "through the IPv6 owner {owner6}");
    let before = client_neighbour(&cluster);
    assert!(before.contains(&l2_mac(&cluster, &owner)), "client resolves VIP to {owner}: {before}");
    // The responders count on each owner's /metrics: answers per family, the announcement made
    // on gaining the address, the addresses owned.
    for (node, family) in [(&owner, "ipv4"), (&owner6, "ipv6")] {
        let text = Agent::metrics(&cluster.lab, node);
        let sample = |name: &str| Agent::metric(&text, name).unwrap_or(0.0);
        let answers =
            format!("switchyard_l2_answers_total{{interface=\"l2\",family=\"{family}\"}}");
        let owned =
            format!("switchyard_l2_addresses_owned{{interface=\"l2\",family=\"{family}\"}}");
        let announced = "switchyard_l2_announcements_total{interface=\"l2\"}";
        let l2_lines = || text.lines().filter(|l| l.contains("l2_")).collect::<Vec<_>>().join("\n");
        assert!(sample(&answers) >= 1.0, "{node}: {answers}: {}", l2_lines());
        assert!(sample(&owned) >= 1.0, "{node}: {owned}: {}", l2_lines());
        assert!(sample(announced) >= 1.0, "{node}: {announced}: {}", l2_lines());
    }

    // The owner dies: its agent is killed, its link to the segment goes down.
    let index = cluster.agent_index(&owner);
    let mut dead = cluster.agents.remove(index);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let owner_netns = cluster.lab.netns_of(&owner).unwrap();
    ip(&["-n", &owner_netns, "link", "set", "l2", "down"]);
    assert_eq!(
        ask(&cluster, VIP, Duration::from_millis(300)),
        None,
        "the dead owner still answers"
    );

    // The trigger: its Node turns Ready False. Then ask until the new owner answers.
    let trigger = Instant::now();
    cluster.apply("nodes.yaml", &nodes_yaml(&cluster, Some(&owner)));
    let mut first = None;
    let mut failures = Vec::new();
    let reached = wait_until(Duration::from_secs(20), || {
        match try_ask(&cluster, VIP, Duration::from_millis(20)) {
            Ok(pod) => first = Some(pod),
            Err(error) => failures.push((trigger.elapsed(), error)),
        }
        first.is_some()
    });
    let failover = trigger.elapsed();
    eprintln!("client neighbour entry before: {before}; after: {}", client_neighbour(&cluster));
    eprintln!("failed attempts after the trigger: {failures:?}");
    assert!(reached, "no answer through a new owner within 20 s");
    // While the bridge floods frames for the dead owner's MAC, the other nodes must leave them
    // alone (PACKET_OTHERHOST): two nodes translating one SYN answer it twice (a reset).
    let resets: Vec<_> = failures.iter().filter(|(_, e)| e.contains("reset")).collect();
    assert!(resets.is_empty(), "flooded frames answered by a node they were not for: {resets:?}");
    let survivors: Vec<&str> = NODES.iter().map(|(n, _)| *n).filter(|n| *n != owner).collect();
    let new_owner = owner_seen_by(&cluster, survivors[0], VIP).unwrap();
    assert_ne!(new_owner, owner);
    assert_eq!(owner_seen_by(&cluster, survivors[1], VIP).as_deref(), Some(new_owner.as_str()));
    assert_eq!(first.as_deref(), Some(pod_of(&new_owner)), "through the new owner {new_owner}");
    let report = l2_report(&cluster, &new_owner);
    assert!(
        report["interfaces"][0]["counters"]["announcements"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
    let after = client_neighbour(&cluster);
    assert!(after.contains(&l2_mac(&cluster, &new_owner)), "client moved to {new_owner}: {after}");
    eprintln!(
        "L2 failover: {} ms from the Node update to the first answer through {new_owner} \
         ({} failed attempts of ≤ 20 ms before it)",
        failover.as_millis(),
        failures.len()
    );
    assert!(failover < Duration::from_secs(5), "failover took {failover:?}");

    // IPv6: moved only if its owner was the dead node, else still answered by its owner.
    let mut first6 = None;
    let reached6 = wait_until(Duration::from_secs(20), || {
        first6 = ask(&cluster, VIP6, Duration::from_millis(100));
        first6.is_some()
    });
    let failover6 = trigger.elapsed();
    assert!(reached6, "the IPv6 VIP is not answered after the failover");
    let new_owner6 = owner_seen_by(&cluster, survivors[0], VIP6).unwrap();
    if owner6 == owner {
        assert_ne!(new_owner6, owner6);
        eprintln!("L2 failover (IPv6, NDP): ≤ {} ms, through {new_owner6}", failover6.as_millis());
    } else {
        assert_eq!(new_owner6, owner6, "the IPv6 VIP moved though its owner lives");
    }
    assert_eq!(first6.as_deref(), Some(pod_of(&new_owner6)), "IPv6 through {new_owner6}");
}
