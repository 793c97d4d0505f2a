//! Issue 17's counts (root): long-lived TCP connections and UDP flows through a VIP while the
//! directors' node set changes. A node joins (it was drained: `switchyard.io/drain`, then the
//! annotation goes) and a node is drained; the Maglev slots that change node send their packets
//! to a node that does not hold the flow, which re-sends them to the previous node (the second
//! chance; a UDP packet the previous node does not hold either comes back as a new flow).
//! Counted: resets and failed round trips (target 0), TCP connections and UDP flows that
//! changed backend (target 0), packets re-sent and returned. And (f): a director joins while a
//! node is drained, and while a node is added; a director restarts, or starts for the first
//! time (from the records the others publish through the fake API server), while a drain is
//! removed, a node is deleted outright, and health brings a node back. docs/director.md has
//! the table.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_bpf::decap::DecapReason;
use switchyard_bpf::director::DirReason;
use switchyard_director::previous::Record;
use switchyard_lab::require_root;
use switchyard_lab::tools::clients;
use switchyard_testing::director_api::SharedApi;
use switchyard_testing::director_lab::{
    self, AGENT_HEALTH_PORT, Director, FlowCounts, decap_counters,
};
use switchyard_testing::e2e::{BIN, Cluster, at, topology};

const TIMEOUT: Duration = Duration::from_secs(3);
const NODES: [&str; 3] = ["node1", "node2", "node3"];
const TCP_FLOWS: usize = 200;
const UDP_FLOWS: usize = 50;
/// One round trip per flow this often.
const INTERVAL: Duration = Duration::from_millis(200);

fn cluster() -> Cluster {
    cluster_with(&["dir1"])
}

/// Three nodes with one pod each, the client `ext`, and `directors`.
fn cluster_with(directors: &[&str]) -> Cluster {
    let nodes: [(&str, &[&str]); 3] = [("node1", &["a1"]), ("node2", &["b1"]), ("node3", &["c1"])];
    Cluster::with_topology(&topology(&nodes, &["ext"], directors), director_lab::agent_args)
}

/// The lab's Node objects with `drained` annotated `switchyard.io/drain: "true"`.
fn nodes_with_drained(cluster: &Cluster, drained: Option<&str>) -> String {
    let text = cluster.nodes_yaml();
    match drained {
        None => text,
        Some(node) => text.replace(
            &format!("  name: {node}\n"),
            &format!("  name: {node}\n  annotations: {{switchyard.io/drain: \"true\"}}\n"),
        ),
    }
}

/// Writes the Node objects and waits until the director programmed the change.
fn set_drained(cluster: &Cluster, director: &Director, drained: Option<&str>) {
    let before = director.programmed();
    cluster.apply("nodes.yaml", &nodes_with_drained(cluster, drained));
    cluster
        .eventually("the director programmed the node change", || director.programmed() > before);
}

/// The nodes' second-chance counter `reason`, summed.
fn second_chance(cluster: &Cluster, reason: DecapReason) -> u64 {
    NODES.iter().map(|n| decap_counters(&cluster.lab, n).get(&reason).copied().unwrap_or(0)).sum()
}

/// Every node's decapsulation counters, by node and reason.
fn all_decap_counters(cluster: &Cluster) -> BTreeMap<(&'static str, DecapReason), u64> {
    NODES
        .iter()
        .flat_map(|n| decap_counters(&cluster.lab, n).into_iter().map(move |(r, c)| ((*n, r), c)))
        .collect()
}

/// What one phase counted.
#[derive(Debug)]
struct Counts {
    flows: FlowCounts,
    resent: u64,
    /// UDP packets the previous node did not hold either and returned (hops 2).
    returned: u64,
    /// UDP packets taken as a new flow after the return.
    new_flows: u64,
    director_second_chance: u64,
    /// Each TCP connection reset or failed: its client address, error, round trips, when
    /// (ms after it connected; the change comes ≈ 1,500 ms in), backends, and where the
    /// director sends its flow after the phase.
    tcp_failures: Vec<String>,
    /// Each UDP flow that changed backend or lost a round trip: its client address, the
    /// backends in order (a run of one as `name×count`), its errors, and where the director
    /// sends it after the phase.
    udp_troubles: Vec<String>,
    /// The phase's decapsulation counters by node and reason (those that moved).
    decap: BTreeMap<(&'static str, DecapReason), u64>,
}

/// Where the flow from client address `local` (empty: none) to `target` goes now: the
/// director's slot, node and previous node, and the nodes whose conntrack holds it.
fn place(
    cluster: &Cluster,
    director: &Director,
    local: &str,
    target: SocketAddr,
    protocol: u8,
) -> String {
    let Ok(local) = local.parse() else {
        return "never connected".to_string();
    };
    let flow = director_lab::flow(local, target, protocol);
    format!(
        "{}; {}",
        director.describe(&cluster.lab, &flow),
        director_lab::conntrack_of(&cluster.lab, &flow)
    )
}

/// Holds TCP_FLOWS connections and UDP_FLOWS connected UDP sockets to `target`, runs `change`
/// once they all answered, keeps them 2 s longer and counts.
fn under_traffic(
    cluster: &Cluster,
    director: &Director,
    target: SocketAddr,
    change: impl FnOnce(),
) -> Counts {
    let resent_before = second_chance(cluster, DecapReason::ScForwarded);
    let returned_before = second_chance(cluster, DecapReason::ScReturned);
    let new_before = second_chance(cluster, DecapReason::ScNewFlow);
    let second_before = director.counters(&cluster.lab)[&DirReason::SecondChance];
    let decap_before = all_decap_counters(cluster);
    let (tcp, udp) = director_lab::hold_flows(
        cluster,
        &[target],
        (TCP_FLOWS, UDP_FLOWS),
        INTERVAL,
        TIMEOUT,
        || {
            change();
            std::thread::sleep(Duration::from_secs(2));
        },
    );
    let tcp_failures = tcp
        .iter()
        .filter(|h| h.reset || h.error.is_some())
        .map(|h| {
            let place = place(cluster, director, &h.local, target, 6);
            let ended = director_lab::unix_ms_text(h.ended_unix_ms);
            format!(
                "{} {:?} after {} round trips, {} ms after connecting (at {ended}), backends \
                 {:?}; {place}",
                h.local, h.error, h.pings, h.held_ms, h.backends
            )
        })
        .collect();
    let udp_troubles = udp
        .iter()
        .filter(|u| director_lab::udp_moved(u) || !u.errors.is_empty())
        .map(|u| {
            let place = place(cluster, director, &u.local, target, 17);
            let mut runs: Vec<(String, usize)> = Vec::new();
            for answer in &u.answers {
                match runs.last_mut() {
                    Some((backend, count)) if backend == answer => *count += 1,
                    _ => runs.push((answer.clone(), 1)),
                }
            }
            let runs: Vec<String> = runs.iter().map(|(b, n)| format!("{b}×{n}")).collect();
            format!("{} answered by {}; errors {:?}; {place}", u.local, runs.join(" "), u.errors)
        })
        .collect();
    Counts {
        flows: FlowCounts::of(&tcp, &udp),
        resent: second_chance(cluster, DecapReason::ScForwarded) - resent_before,
        returned: second_chance(cluster, DecapReason::ScReturned) - returned_before,
        new_flows: second_chance(cluster, DecapReason::ScNewFlow) - new_before,
        director_second_chance: director.counters(&cluster.lab)[&DirReason::SecondChance]
            - second_before,
        tcp_failures,
        udp_troubles,
        decap: all_decap_counters(cluster)
            .into_iter()
            .map(|(key, after)| (key, after - decap_before.get(&key).copied().unwrap_or(0)))
            .filter(|(_, delta)| *delta > 0)
            .collect(),
    }
}

#[test]
fn long_lived_flows_survive_a_node_joining_and_a_node_drained() {
    if !require_root("long_lived_flows_survive_a_node_joining_and_a_node_drained") {
        return;
    }
    let cluster = cluster();
    // The agents decapsulate: their SNAT ports keep the GUE port (6080) out, or a UDP flow
    // SNATed to it loses its answers (docs/datapath.md, SNAT).
    for agent in &cluster.agents {
        assert!(agent.logged("snat_ports=6081-29999"), "SNAT ports hold the GUE port");
    }
    let vip = "10.96.80.1";
    // node3 starts drained: its joining is the first change.
    cluster.apply("nodes.yaml", &nodes_with_drained(&cluster, Some("node3")));
    cluster
        .apply_and_wait("web.yaml", &director_lab::vip_service_v4(&cluster, vip, &["TCP", "UDP"]));
    let director = Director::start(&cluster, "dir1", &[]);
    cluster.lab.route_to_directors(format!("{vip}/32").parse().unwrap(), &["dir1"]).unwrap();
    let target = at(vip.parse().unwrap(), 80);
    let answers = cluster.lab.run_in("ext", || clients::tcp(target, 3, TIMEOUT)).unwrap();
    assert!(answers.iter().all(|a| a.error.is_none()), "the VIP answers: {answers:?}");

    // (d) a node joins.
    let joined =
        under_traffic(&cluster, &director, target, || set_drained(&cluster, &director, None));
    // (c) a node is drained.
    let drained = under_traffic(&cluster, &director, target, || {
        set_drained(&cluster, &director, Some("node2"))
    });

    for (what, counts) in [("node joined", &joined), ("node drained", &drained)] {
        check(what, counts, "one director");
        assert!(counts.director_second_chance > 0, "{what}: {counts:?}");
    }
}

/// Issue 17 (f): a director and a node change at once. dir1 alone carries the VIP; then, all
/// together, node2 is drained, dir2 starts (so it never saw node2 serve) and the router
/// spreads the VIP over both directors. The flows ECMP moves to dir2 whose slot was node2's
/// reach a new node that does not hold them; dir2 must name node2 as their previous node,
/// as dir1 does, or they are reset.
#[test]
fn long_lived_flows_survive_a_director_joining_while_a_node_is_drained() {
    if !require_root("long_lived_flows_survive_a_director_joining_while_a_node_is_drained") {
        return;
    }
    director_joins_during(
        "10.96.80.2",
        "director joins while a node drains",
        |cluster| nodes_with_drained(cluster, None),
        |cluster| nodes_with_drained(cluster, Some("node2")),
    );
}

/// Issue 17 (f) for a node *addition*: dir1 alone carries the VIP while node3 is not ready;
/// then, all together, node3 turns ready (its `Ready` condition True, `lastTransitionTime`
/// now: a node added), dir2 starts (it never saw the cluster without node3) and the router
/// spreads the VIP over both. The flows ECMP moves to dir2 whose slot is now node3's reach
/// node3, which does not hold them; dir2 must name their previous node as dir1 does — it
/// derives it from the transition time (`Vip::joining`) — or they are reset.
#[test]
fn long_lived_flows_survive_a_director_joining_while_a_node_is_added() {
    if !require_root("long_lived_flows_survive_a_director_joining_while_a_node_is_added") {
        return;
    }
    director_joins_during(
        "10.96.80.3",
        "director joins while a node is added",
        |cluster| director_lab::nodes_with_ready(cluster, "node3", false),
        |cluster| director_lab::nodes_with_ready(cluster, "node3", true),
    );
}

/// A lab with two directors and the VIP Service on `vip`, the Node objects `nodes` written,
/// dir1 started and alone carrying the VIP (checked with three connections).
fn two_directors(vip: &str, nodes: &dyn Fn(&Cluster) -> String) -> (Cluster, Director, SocketAddr) {
    let cluster = cluster_with(&["dir1", "dir2"]);
    cluster.apply("nodes.yaml", &nodes(&cluster));
    cluster
        .apply_and_wait("web.yaml", &director_lab::vip_service_v4(&cluster, vip, &["TCP", "UDP"]));
    let dir1 = Director::start(&cluster, "dir1", &[]);
    cluster.lab.route_to_directors(cidr(vip), &["dir1"]).unwrap();
    let target = at(vip.parse().unwrap(), 80);
    let answers = cluster.lab.run_in("ext", || clients::tcp(target, 3, TIMEOUT)).unwrap();
    assert!(answers.iter().all(|a| a.error.is_none()), "the VIP answers: {answers:?}");
    (cluster, dir1, target)
}

fn cidr(vip: &str) -> switchyard_lab::Cidr {
    format!("{vip}/32").parse().unwrap()
}

/// Issue 17 (f), a director joining during a node change: dir1 alone carries `vip` with the
/// Node objects `before`; then, all at once, they become `after`, dir2 starts and the router
/// spreads the VIP over both. Counts, prints `what`, and checks the target (dir2 carried
/// packets, some with a previous node).
fn director_joins_during(
    vip: &str,
    what: &str,
    before: impl Fn(&Cluster) -> String,
    after: impl Fn(&Cluster) -> String,
) {
    let (cluster, dir1, target) = two_directors(vip, &before);
    let mut dir2 = None;
    let counts = under_traffic(&cluster, &dir1, target, || {
        let programmed = dir1.programmed();
        cluster.apply("nodes.yaml", &after(&cluster));
        let started = Director::start(&cluster, "dir2", &[]);
        cluster.lab.route_to_directors(cidr(vip), &["dir1", "dir2"]).unwrap();
        cluster.eventually("dir1 programmed the change", || dir1.programmed() > programmed);
        dir2 = Some(started);
    });
    let dir2 = dir2.unwrap();
    let dir2_carried = dir2.encapsulated(&cluster.lab);
    let dir2_second = dir2.counters(&cluster.lab)[&DirReason::SecondChance];
    check(
        what,
        &counts,
        &format!("dir2 carried {dir2_carried} packets, {dir2_second} of them with a previous node"),
    );
    assert!(dir2_carried > 0, "the router sent nothing through dir2");
    assert!(dir2_second > 0, "dir2 never named a previous node: {counts:?}");
}

/// Prints the COUNT line of a phase and checks the target: no TCP connection reset
/// or moved, no UDP round trip failed or flow moved, enough traffic, and packets re-sent by
/// nodes (the change moved flows).
fn check(what: &str, counts: &Counts, extra: &str) {
    eprintln!("zero-reset lab: {what}: {counts:?}");
    for failure in &counts.tcp_failures {
        eprintln!("zero-reset lab: {what}: failed connection {failure}");
    }
    for trouble in &counts.udp_troubles {
        eprintln!("zero-reset lab: {what}: moved or failed UDP flow {trouble}");
    }
    eprintln!("zero-reset lab: {what}: node decapsulation counters {:?}", counts.decap);
    eprintln!(
        "COUNT {what}: {}, {} packets re-sent by nodes, {} UDP packets returned ({} taken as \
         new flows), {} sent with a previous node by dir1; {extra}",
        counts.flows,
        counts.resent,
        counts.returned,
        counts.new_flows,
        counts.director_second_chance
    );
    assert_eq!(counts.flows.tcp_reset, 0, "{what}: TCP connections reset: {counts:?}");
    assert_eq!(counts.flows.tcp_moved, 0, "{what}: TCP connections changed backend: {counts:?}");
    assert_eq!(counts.flows.udp_failed, 0, "{what}: UDP round trips failed: {counts:?}");
    assert_eq!(counts.flows.udp_moved, 0, "{what}: UDP flows changed backend: {counts:?}");
    assert!(counts.flows.tcp_pings >= TCP_FLOWS * 10, "{what}: too little traffic: {counts:?}");
    assert!(counts.flows.udp_answers >= UDP_FLOWS * 10, "{what}: too little traffic: {counts:?}");
    assert!(counts.resent > 0, "{what}: no packet needed a second chance: {counts:?}");
}

/// The lab's Node objects with `drained` annotated `switchyard.io/drain: "true"` and
/// `deleted` absent (deleted outright).
fn nodes_without(cluster: &Cluster, drained: Option<&str>, deleted: &str) -> String {
    nodes_with_drained(cluster, drained)
        .split_inclusive("---\n")
        .filter(|block| !block.contains(&format!("  name: {deleted}\n")))
        .collect()
}

/// Drops the health probes of `directors` at `node` (TCP to the agents' health port from
/// their addresses, after decapsulation): they see the node down while it serves.
fn block_probes(cluster: &Cluster, node: &str, directors: &[&str]) {
    let sources: Vec<String> =
        directors.iter().map(|d| cluster.lab.director(d).unwrap().ipv4.to_string()).collect();
    nft(cluster, node, "add table inet sy-probes");
    nft(
        cluster,
        node,
        &format!(
            "add chain inet sy-probes input {{ type filter hook input priority 0 ; \
             ip saddr {{ {} }} tcp dport {AGENT_HEALTH_PORT} drop ; }}",
            sources.join(", ")
        ),
    );
}

fn nft(cluster: &Cluster, member: &str, args: &str) {
    let mut command = std::process::Command::new("nft");
    command.args(args.split(' '));
    let out = cluster.lab.output_in(member, command).unwrap();
    assert!(out.status.success(), "nft {args}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Whether `director` logged `node` out of service after line `from` and then programmed.
fn out_of_service(director: &Director, node: &str, from: usize) -> bool {
    let node = format!("node=\"{node}\"");
    director.programmed_after(from, &[&["node health: out of service", &node]]).is_some()
}

/// Kills dir2 (its program keeps forwarding with its pinned maps), runs `change` and waits
/// until dir1 programmed it, starts dir2 again — all under traffic through both directors —
/// then counts and checks `what`: the restarted dir2 must name previous nodes (it took over
/// its pinned tables) and nothing may reset or move.
fn restart_during(
    cluster: &Cluster,
    dir1: &Director,
    dir2: &mut Director,
    target: SocketAddr,
    what: &str,
    change: impl FnOnce(),
) {
    let second = |dir2: &Director| dir2.counters(&cluster.lab)[&DirReason::SecondChance];
    let before = second(dir2);
    let counts = under_traffic(cluster, dir1, target, || {
        dir2.kill();
        let programmed = dir1.programmed();
        change();
        cluster.eventually("dir1 programmed the change", || dir1.programmed() > programmed);
        *dir2 = Director::start(cluster, "dir2", &[]);
    });
    let sent = second(dir2).saturating_sub(before);
    let extra = format!("dir2 (restarted) sent {sent} with a previous node");
    check(what, &counts, &extra);
    assert!(sent > 0, "{what}: the restarted dir2 named no previous node: {counts:?}");
}

/// Issue 17 (f) for the node changes a director that starts cannot read from the objects: a
/// drain annotation removed, a node deleted outright, a node brought back by the health
/// probes. dir1 and dir2 carry the VIP; dir2 restarts during each change (it takes over the
/// tables it pinned, so it names the previous nodes dir1 names). Last, dir2 is removed (its
/// route withdrawn, SIGTERM) while a node drains.
#[test]
fn long_lived_flows_survive_a_director_restarting_while_nodes_change() {
    if !require_root("long_lived_flows_survive_a_director_restarting_while_nodes_change") {
        return;
    }
    let vip = "10.96.80.4";
    let (cluster, dir1, target) = two_directors(vip, &|c| nodes_with_drained(c, Some("node3")));
    let mut dir2 = Director::start(&cluster, "dir2", &[]);
    cluster.lab.route_to_directors(cidr(vip), &["dir1", "dir2"]).unwrap();

    restart_during(
        &cluster,
        &dir1,
        &mut dir2,
        target,
        "dir2 restarts while a drain is removed",
        || {
            cluster.apply("nodes.yaml", &nodes_with_drained(&cluster, None));
        },
    );
    restart_during(
        &cluster,
        &dir1,
        &mut dir2,
        target,
        "dir2 restarts while a node is deleted",
        || {
            cluster.apply("nodes.yaml", &nodes_without(&cluster, None, "node2"));
        },
    );
    // node3 out of both directors' tables by its probes (alive, serving nothing new).
    let marks = [&dir1, &dir2].map(|d| d.log.lock().unwrap().len());
    block_probes(&cluster, "node3", &["dir1", "dir2"]);
    cluster.eventually("both directors took node3 out", || {
        out_of_service(&dir1, "node3", marks[0]) && out_of_service(&dir2, "node3", marks[1])
    });
    restart_during(
        &cluster,
        &dir1,
        &mut dir2,
        target,
        "dir2 restarts while health brings a node back",
        || nft(&cluster, "node3", "delete table inet sy-probes"),
    );

    // (f) with a director removed: the router stops sending to dir2 (its withdraw), dir2 gets
    // SIGTERM, node1 drains, all at once.
    let counts = under_traffic(&cluster, &dir1, target, || {
        let programmed = dir1.programmed();
        cluster.lab.route_to_directors(cidr(vip), &["dir1"]).unwrap();
        dir2.terminate();
        cluster.apply("nodes.yaml", &nodes_without(&cluster, Some("node1"), "node2"));
        cluster.eventually("dir1 programmed the drain", || dir1.programmed() > programmed);
    });
    check("dir2 removed while a node drains", &counts, "dir2 withdrawn and stopped");
}

/// Issue 17: directors decide node health each on its own. dir1's probes to node2 are dropped
/// (node2 serves, dir2's probes are answered): dir1 takes node2 out of its tables — node2
/// becomes the previous node of its slots there — while dir2 keeps it. Counted under traffic
/// through both directors; TCP must neither reset nor move, no UDP round trip may fail. A UDP
/// flow through dir1 in node2's slots moves (dir1 thinks node2 may be dead, and names no
/// possibly dead previous node for UDP): counted, not asserted.
#[test]
fn long_lived_flows_survive_directors_disagreeing_on_a_nodes_health() {
    if !require_root("long_lived_flows_survive_directors_disagreeing_on_a_nodes_health") {
        return;
    }
    let vip = "10.96.80.5";
    let (cluster, dir1, target) = two_directors(vip, &|c| nodes_with_drained(c, None));
    let dir2 = Director::start(&cluster, "dir2", &[]);
    cluster.lab.route_to_directors(cidr(vip), &["dir1", "dir2"]).unwrap();
    let marks = [&dir1, &dir2].map(|d| d.log.lock().unwrap().len());
    let counts = under_traffic(&cluster, &dir1, target, || {
        block_probes(&cluster, "node2", &["dir1"]);
        cluster.eventually("dir1 took node2 out", || out_of_service(&dir1, "node2", marks[0]));
    });
    assert!(!out_of_service(&dir2, "node2", marks[1]), "dir2 took node2 out too");
    let what = "directors disagree on node2's health";
    eprintln!(
        "COUNT {what}: {}, {} packets re-sent by nodes, {} sent with a previous node by dir1",
        counts.flows, counts.resent, counts.director_second_chance
    );
    assert_eq!(counts.flows.tcp_reset, 0, "{what}: TCP connections reset: {counts:?}");
    assert_eq!(counts.flows.tcp_moved, 0, "{what}: TCP connections changed backend: {counts:?}");
    assert_eq!(counts.flows.udp_failed, 0, "{what}: UDP round trips failed: {counts:?}");
    assert!(counts.flows.tcp_pings >= TCP_FLOWS * 10, "{what}: too little traffic: {counts:?}");
    assert!(counts.resent > 0, "{what}: no packet needed a second chance: {counts:?}");
}

/// Removes what a director left pinned, so its next start is a first one.
fn forget_pins(cluster: &Cluster, name: &str) {
    let bpf_dir = cluster.lab.director(name).unwrap().bpf_dir.clone();
    let mut command = std::process::Command::new(&*BIN);
    command.args(["director", "--cleanup", "--bpf-dir"]).arg(bpf_dir);
    let out = cluster.lab.output_in(name, command).unwrap();
    assert!(out.status.success(), "--cleanup: {}", String::from_utf8_lossy(&out.stderr));
}

/// Under traffic through dir1: `change` happens, dir1 programs it and publishes its record,
/// then dir2 starts for the first time (no pins) and the router spreads the VIP over both.
/// dir2 must name previous nodes (from dir1's record) and nothing may reset or move. Then dir2
/// leaves again (route, SIGKILL, pins removed).
#[allow(clippy::too_many_arguments, reason = "one phase of the test, spelled out")]
fn first_start_during(
    cluster: &Cluster,
    shared: &SharedApi,
    dir1: &Director,
    vip: &str,
    target: SocketAddr,
    what: &str,
    change: impl FnOnce(),
) {
    let mut dir2 = None;
    let counts = under_traffic(cluster, dir1, target, || {
        let changed_at = SystemTime::now();
        change();
        // dir2 starts once dir1 published a table built after the change (a director that
        // starts before gets the record late and resets what it carried meanwhile:
        // docs/director.md, Limits). Not merely a new record: dir1 may publish the previous
        // change's table late, after the phase began (seen at load 6: 32 resets).
        cluster.eventually("dir1 published the change's previous nodes", || {
            shared.record("dir1").is_some_and(|r| built_since(&r, changed_at))
        });
        dir2 = Some(shared.start_director(cluster, "dir2", &[]));
        cluster.lab.route_to_directors(cidr(vip), &["dir1", "dir2"]).unwrap();
    });
    let mut dir2 = dir2.unwrap();
    let sent = dir2.counters(&cluster.lab)[&DirReason::SecondChance];
    let carried = dir2.encapsulated(&cluster.lab);
    let extra = format!("dir2 (first start) carried {carried}, {sent} with a previous node");
    cluster.lab.route_to_directors(cidr(vip), &["dir1"]).unwrap();
    dir2.kill();
    forget_pins(cluster, "dir2");
    check(what, &counts, &extra);
    assert!(carried > 0, "{what}: the router sent nothing through dir2");
    assert!(sent > 0, "{what}: the first-time dir2 named no previous node: {counts:?}");
}

/// Whether the previous-node record `text` has a generation built at or after `moment`.
fn built_since(text: &str, moment: SystemTime) -> bool {
    let since_ms = moment.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Record::decode(text)
        .is_ok_and(|r| r.generations.keys().any(|g| u128::from(g.built_ms) >= since_ms))
}

/// Issue 17 (f) for a director that starts for the first time (no pins) during the changes
/// the objects do not show: a drain removed, a node deleted outright, health bringing a node
/// back. Both directors read the fake API server; dir1 runs throughout and publishes its
/// previous-node record on its Node object (`switchyard.io/director-previous`), a fresh dir2
/// takes it over.
#[test]
fn long_lived_flows_survive_a_first_time_director_joining_while_nodes_change() {
    if !require_root("long_lived_flows_survive_a_first_time_director_joining_while_nodes_change") {
        return;
    }
    let vip = "10.96.80.6";
    let cluster = cluster_with(&["dir1", "dir2"]);
    let web = director_lab::vip_service_v4(&cluster, vip, &["TCP", "UDP"]);
    cluster.apply_and_wait("web.yaml", &web);
    let shared = SharedApi::start(&cluster, &["dir1", "dir2"]);
    shared.api.put_yaml(&web);
    shared.api.put_yaml(&director_lab::director_nodes_yaml(&cluster.lab));
    shared.nodes(&cluster, &nodes_with_drained(&cluster, Some("node3")), None);
    let dir1 = shared.start_director(&cluster, "dir1", &[]);
    cluster.lab.route_to_directors(cidr(vip), &["dir1"]).unwrap();
    let target = at(vip.parse().unwrap(), 80);
    let answers = cluster.lab.run_in("ext", || clients::tcp(target, 3, TIMEOUT)).unwrap();
    assert!(answers.iter().all(|a| a.error.is_none()), "the VIP answers: {answers:?}");

    first_start_during(
        &cluster,
        &shared,
        &dir1,
        vip,
        target,
        "first-time dir2 joins while a drain is removed",
        || {
            shared.nodes(&cluster, &nodes_with_drained(&cluster, None), None);
        },
    );
    first_start_during(
        &cluster,
        &shared,
        &dir1,
        vip,
        target,
        "first-time dir2 joins while a node is deleted",
        || shared.nodes(&cluster, &nodes_without(&cluster, None, "node2"), Some("node2")),
    );
    // node3 out of dir1's tables by its probes (alive, serving nothing new); dir2 is not running.
    let mark = dir1.log.lock().unwrap().len();
    block_probes(&cluster, "node3", &["dir1"]);
    cluster.eventually("dir1 took node3 out", || out_of_service(&dir1, "node3", mark));
    first_start_during(
        &cluster,
        &shared,
        &dir1,
        vip,
        target,
        "first-time dir2 joins while health brings a node back",
        || {
            nft(&cluster, "node3", "delete table inet sy-probes");
        },
    );
}
