//! Issue 17's node health (root): the director probes every node's `/healthz` through its own
//! encapsulation, so a node whose decapsulation refuses the director is seen as down while its
//! agent answers directly, and (e) a node that dies under 200 TCP + 50 UDP long-lived flows
//! leaves the director's tables within the health bound; only its own flows fail. Counted and
//! timed; docs/director.md has the table.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use switchyard_bpf::decap::DecapMaps;
use switchyard_bpf::director::DirReason;
use switchyard_bpf::director_probe::{HEALTH_DOWN, HEALTH_DRAINING, HEALTH_UP, HealthMap};
use switchyard_lab::tools::clients::{self, HoldReport, UdpHoldReport};
use switchyard_lab::{require_root, wait_until};
use switchyard_testing::StopOnDrop;
use switchyard_testing::director_lab::{self, AGENT_HEALTH_PORT, Director, decapsulated};
use switchyard_testing::e2e::{BIN, Cluster, State, at, topology};

const TIMEOUT: Duration = Duration::from_secs(3);
const TCP_FLOWS: usize = 200;
const UDP_FLOWS: usize = 50;
/// One round trip per flow this often.
const INTERVAL: Duration = Duration::from_millis(200);
/// The `Cluster` VIP (probed on the agents' `/healthz`).
const VIP: &str = "10.96.81.1";
/// The `Local` VIP (probed on its health check node port): every node serves it with its own
/// pod only, so a flow's backend names its node and (e) can tell the dead node's flows.
const LOCAL_VIP: &str = "10.96.81.2";
const VIP6: &str = "fd00:96::81:1";
const LOCAL_VIP6: &str = "fd00:96::81:2";
/// Probed targets: three nodes, two families, two ports.
const TARGETS: usize = 12;
const HCNP: u16 = 32081;
/// The target for a failed node to leave the tables.
const REMOVAL_TARGET: Duration = Duration::from_secs(3);

fn cluster() -> Cluster {
    let nodes: [(&str, &[&str]); 3] = [("node1", &["a1"]), ("node2", &["b1"]), ("node3", &["c1"])];
    Cluster::with_topology(&topology(&nodes, &["ext"], &["dir1"]), director_lab::agent_args)
}

/// The VIP Services (TCP and UDP on port 80), dual-stack: `web` (`externalTrafficPolicy:
/// Cluster`) on [`VIP`] and [`VIP6`], `web-local` (`Local`, health check node port [`HCNP`])
/// on [`LOCAL_VIP`] and [`LOCAL_VIP6`]; a pod on every node. The directors probe each node's
/// IPv4 and IPv6 address on both ports: 12 targets.
fn vip_services(cluster: &Cluster) -> String {
    let all: Vec<(&str, State)> = ["a1", "b1", "c1"].map(|p| (p, State::Ready)).to_vec();
    let local = format!("  externalTrafficPolicy: Local\n  healthCheckNodePort: {HCNP}\n");
    director_lab::vip_service(cluster, "web", "", [VIP, VIP6], &all)
        + &director_lab::vip_service(cluster, "web-local", &local, [LOCAL_VIP, LOCAL_VIP6], &all)
}

/// The director's health map: (node, port, state) of every target.
fn health(cluster: &Cluster) -> Vec<(String, u16, u32)> {
    let dir = &cluster.lab.director("dir1").unwrap().bpf_dir;
    let map = HealthMap::open_pinned(dir).unwrap();
    map.entries().unwrap().iter().map(|(k, e)| (e.name(), k.port, e.state)).collect()
}

/// The states of `node`'s targets (agent port and health check node port).
fn states_of(cluster: &Cluster, node: &str) -> Vec<u32> {
    health(cluster).into_iter().filter(|(n, _, _)| n == node).map(|(_, _, s)| s).collect()
}

/// The nodes the director's table for `vip` names (its maps, as the program reads them).
fn table_nodes_of(director: &Director, cluster: &Cluster, vip: &str) -> BTreeSet<String> {
    let maps = director.maps(&cluster.lab);
    let dir = &cluster.lab.director("dir1").unwrap().bpf_dir;
    let status = switchyard_observe::director::read_status(&maps, dir).unwrap();
    status
        .vips
        .iter()
        .filter(|v| v.address.to_string() == vip && v.protocol == "tcp")
        .flat_map(|v| v.shares.iter().filter_map(|s| s.name.clone()))
        .collect()
}

/// Every VIP's table.
fn table_nodes(director: &Director, cluster: &Cluster) -> [BTreeSet<String>; 4] {
    [VIP, LOCAL_VIP, VIP6, LOCAL_VIP6].map(|vip| table_nodes_of(director, cluster, vip))
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

/// `GET /healthz` straight to `node`'s `port` from the director's namespace (no mark: not
/// encapsulated): the status line's code.
fn direct_healthz(cluster: &Cluster, node: &str, port: u16) -> u16 {
    let address = SocketAddr::new(cluster.node_ip(node, false), port);
    cluster
        .lab
        .run_in("dir1", move || {
            let mut s = TcpStream::connect_timeout(&address, TIMEOUT).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut head = [0u8; 12];
            s.read_exact(&mut head).unwrap();
            std::str::from_utf8(&head[9..12]).unwrap().parse::<u16>().unwrap()
        })
        .unwrap()
}

/// Whether, after line `from` of its log, the director logged `node`'s target on `port` out
/// of service and then programmed its tables.
fn removed(director: &Director, node: &str, port: u16, from: usize) -> bool {
    let log = director.log.lock().unwrap();
    let wanted = format!("port={port} ");
    let Some(out) = log.iter().skip(from).position(|l| {
        l.contains("node health: out of service")
            && l.contains(&format!("node=\"{node}\""))
            && l.contains(&wanted)
    }) else {
        return false;
    };
    log.iter().skip(from + out).any(|l| l.contains("director tables programmed"))
}

#[test]
fn probes_go_through_the_encapsulation_and_a_dead_node_leaves_within_the_bound() {
    if !require_root("probes_go_through_the_encapsulation_and_a_dead_node_leaves_within_the_bound")
    {
        return;
    }
    let mut cluster = cluster();
    cluster.apply_and_wait("web.yaml", &vip_services(&cluster));
    let director = Director::start(&cluster, "dir1", &[]);
    for vip in [VIP, LOCAL_VIP, VIP6, LOCAL_VIP6] {
        let len = if vip.contains(':') { 128 } else { 32 };
        cluster.lab.route_to_directors(format!("{vip}/{len}").parse().unwrap(), &["dir1"]).unwrap();
    }
    let target = at(VIP.parse().unwrap(), 80);
    let local_target = at(LOCAL_VIP.parse().unwrap(), 80);
    let v6 = [at(VIP6.parse().unwrap(), 80), at(LOCAL_VIP6.parse().unwrap(), 80)];
    for t in [target, local_target, v6[0], v6[1]] {
        let answers = cluster.lab.run_in("ext", move || clients::tcp(t, 3, TIMEOUT)).unwrap();
        assert!(answers.iter().all(|a| a.error.is_none()), "the VIP answers: {answers:?}");
    }

    // Every node is probed on both families and ports and up; the probes went out
    // encapsulated and were decapsulated.
    cluster.eventually("three nodes probed on two families and two ports, all up", || {
        let h = health(&cluster);
        h.len() == TARGETS && h.iter().all(|(_, _, s)| *s == HEALTH_UP)
    });
    let probes = director.counters(&cluster.lab)[&DirReason::ProbeEncap];
    assert!(probes > 0, "no probe was encapsulated");
    let decap_before = decapsulated(&cluster.lab, "node2");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        decapsulated(&cluster.lab, "node2") > decap_before,
        "node2 decapsulated nothing while only probes flowed"
    );

    // node2 refuses the director's packets (its decapsulation no longer lists it), while its
    // agent still answers directly: the node is down for the director.
    let node2_dir = cluster.lab.node("node2").unwrap().bpf_dir.clone();
    let mut decap = DecapMaps::open_pinned(&node2_dir).unwrap();
    let directors: BTreeSet<IpAddr> =
        decap.directors.keys().map(Result::unwrap).map(|k| k.addr.to_ip(k.family)).collect();
    let log_mark = director.log.lock().unwrap().len();
    let broken = Instant::now();
    decap.set_directors(&BTreeSet::new()).unwrap();
    let out = wait_until(Duration::from_secs(10), || {
        removed(&director, "node2", AGENT_HEALTH_PORT, log_mark)
            && removed(&director, "node2", HCNP, log_mark)
    });
    let decap_removal = broken.elapsed();
    assert!(out, "node2 still in service: {:?}", health(&cluster));
    assert_eq!(states_of(&cluster, "node2"), [HEALTH_DOWN; 4]);
    for port in [AGENT_HEALTH_PORT, HCNP] {
        assert_eq!(direct_healthz(&cluster, "node2", port), 200, "the agent itself is fine");
    }
    assert_status_shows_node2_down(&cluster);
    let both = names(&["node1", "node3"]);
    assert_eq!(table_nodes(&director, &cluster), [both.clone(), both.clone(), both.clone(), both]);
    // Under Local, node1 and node3 serve with their own pods: never b1.
    let answers = cluster.lab.run_in("ext", || clients::tcp(local_target, 30, TIMEOUT)).unwrap();
    assert!(answers.iter().all(|a| a.error.is_none()), "{answers:?}");
    assert!(answers.iter().all(|a| a.backend.as_deref() != Some("b1")), "{answers:?}");
    // Repaired: back after the healthy threshold.
    let repaired = Instant::now();
    decap.set_directors(&directors).unwrap();
    cluster.eventually("node2 back in service", || states_of(&cluster, "node2") == [HEALTH_UP; 4]);
    let all = names(&["node1", "node2", "node3"]);
    cluster.eventually("node2 back in the tables", || {
        table_nodes(&director, &cluster).iter().all(|t| *t == all)
    });
    let back = repaired.elapsed();
    eprintln!(
        "COUNT health: decapsulation broken on node2 -> out of the tables after {} ms \
         (its agent answered 200 directly); repaired -> back after {} ms",
        decap_removal.as_millis(),
        back.as_millis()
    );
    assert!(decap_removal <= REMOVAL_TARGET, "{decap_removal:?}");

    // (e) node3 dies under traffic: its agent killed, its link silent both ways.
    let counts = node_dies(&mut cluster, &director, local_target);
    eprintln!("COUNT node3 dies: {counts:?}");
    eprintln!(
        "COUNT (e) node dies: {TCP_FLOWS} TCP ({} on node3: {} failed; others: {} reset or \
         failed, {} moved), {UDP_FLOWS} UDP ({} on node3, {} round trips failed there, all moved \
         on: {}; others: {} failed), out of the tables after {} ms, last failed new connection \
         started {} ms after the death, {} of {} new connections failed",
        counts.tcp_on_dead,
        counts.tcp_dead_failed,
        counts.tcp_other_failed,
        counts.tcp_other_moved,
        counts.udp_on_dead,
        counts.udp_dead_failed,
        counts.udp_dead_recovered,
        counts.udp_other_failed,
        counts.removal_ms,
        counts.last_failed_new_ms,
        counts.new_failed,
        counts.new_total
    );
    assert_eq!(counts.tcp_other_failed, 0, "{counts:?}");
    assert_eq!(counts.tcp_other_moved, 0, "{counts:?}");
    assert_eq!(counts.udp_other_failed, 0, "{counts:?}");
    assert!(counts.tcp_on_dead > 0 && counts.udp_on_dead > 0, "{counts:?}");
    assert!(counts.removal_ms <= REMOVAL_TARGET.as_millis(), "{counts:?}");
    assert!(counts.last_failed_new_ms <= counts.removal_ms + 500, "{counts:?}");
    let left = names(&["node1", "node2"]);
    assert!(table_nodes(&director, &cluster).iter().all(|t| *t == left));
}

/// `switchyard status` on the director (JSON and text) shows each node's health: node2's four
/// targets down, the others up.
fn assert_status_shows_node2_down(cluster: &Cluster) {
    let dir = cluster.lab.director("dir1").unwrap().bpf_dir.display().to_string();
    let run = |extra: &[&str]| {
        let output = Command::new(&*BIN).args(["status", "--bpf-dir", &dir]).args(extra).output();
        let output = output.unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let doc: serde_json::Value = serde_json::from_str(&run(&["-o", "json"])).unwrap();
    let health = doc["health"].as_array().unwrap();
    assert_eq!(health.len(), TARGETS, "{health:?}");
    for t in health {
        let want = if t["node"] == "node2" { "down" } else { "up" };
        assert_eq!(t["state"], want, "{t}");
    }
    let text = run(&[]);
    assert!(text.contains(&format!("node health: {TARGETS} targets")), "{text}");
    let node2 = format!("node2 {}:{AGENT_HEALTH_PORT} down", cluster.node_ip("node2", false));
    assert!(text.contains(&node2), "{text}");
}

/// Drops every packet on a node's router link both ways (in the router: the carrier stays up,
/// as behind a switch).
fn silence_link(lab: &switchyard_lab::Lab, link: &str) {
    let nft = |args: &str| {
        let mut command = Command::new("nft");
        command.args(args.split(' '));
        let out = lab.output_in("fabric", command).unwrap();
        assert!(out.status.success(), "nft {args}: {}", String::from_utf8_lossy(&out.stderr));
    };
    nft("add table inet sy-dead-node");
    nft(&format!(
        "add chain inet sy-dead-node from_node {{ type filter hook prerouting priority -300 ; \
         iifname {link} drop ; }}"
    ));
    nft(&format!(
        "add chain inet sy-dead-node to_node {{ type filter hook postrouting priority 300 ; \
         oifname {link} drop ; }}"
    ));
}

/// Issue 17: draining nodes are probed too. node2 drains (`switchyard.io/drain`), so the UDP
/// `Local` VIP's table names it as the previous node of its old slots; then node2 dies (agent
/// SIGKILLed, link silent). A new UDP flow in those slots reaches a node that does not hold
/// it, which re-sends it to node2, where it is lost — until the director's probes find node2
/// down and the UDP table stops naming it (same slots, no previous node there). New UDP flows
/// opened one after another must all be answered again within the health bound, not after
/// the previous-node TTL (600 s).
#[test]
fn a_draining_node_that_dies_stops_being_the_udp_previous_node() {
    if !require_root("a_draining_node_that_dies_stops_being_the_udp_previous_node") {
        return;
    }
    let mut cluster = cluster();
    cluster.apply_and_wait("web.yaml", &vip_services(&cluster));
    let director = Director::start(&cluster, "dir1", &[]);
    cluster.lab.route_to_directors(format!("{LOCAL_VIP}/32").parse().unwrap(), &["dir1"]).unwrap();
    let target = at(LOCAL_VIP.parse().unwrap(), 80);
    let answers = cluster.lab.run_in("ext", || clients::udp(target, 3, TIMEOUT)).unwrap();
    assert!(answers.iter().all(|a| a.error.is_none()), "the VIP answers: {answers:?}");
    let programmed = director.programmed();
    let drained = cluster.nodes_yaml().replace(
        "  name: node2\n",
        "  name: node2\n  annotations: {switchyard.io/drain: \"true\"}\n",
    );
    cluster.apply("nodes.yaml", &drained);
    cluster.eventually("node2 drained", || director.programmed() > programmed);

    let log_mark = director.log.lock().unwrap().len();
    let link = cluster.lab.node("node2").unwrap().router_link.clone();
    silence_link(&cluster.lab, &link);
    let agent = cluster.agent_index("node2");
    let died = Instant::now();
    let died_at = SystemTime::now();
    cluster.agents[agent].child.kill().unwrap();
    cluster.agents[agent].child.wait().unwrap();
    // New UDP flows one after another for 7 s, each one round trip within 300 ms.
    let mut flows: Vec<(Duration, bool)> = Vec::new();
    while died.elapsed() < Duration::from_secs(7) {
        let started = died.elapsed();
        let ok = cluster
            .lab
            .run_in("ext", || {
                clients::udp(target, 1, Duration::from_millis(300))[0].error.is_none()
            })
            .unwrap();
        flows.push((started, ok));
        std::thread::sleep(Duration::from_millis(20));
    }
    let failed: Vec<Duration> = flows.iter().filter(|(_, ok)| !ok).map(|(t, _)| *t).collect();
    let last_failed = failed.iter().max().copied().unwrap_or_default();
    let late = flows.iter().filter(|(t, _)| *t >= Duration::from_secs(4)).count();
    let node = "node=\"node2\"";
    let out = director.programmed_after(log_mark, &[&["node health: out of service", node]]);
    let out_after = out.map(|(_, at)| at.duration_since(died_at).unwrap_or_default());
    eprintln!(
        "COUNT draining node dies: {} new UDP flows, {} failed, the last failed one started {} ms \
         after the death; node2 out of service (tables programmed) after {:?} ms",
        flows.len(),
        failed.len(),
        last_failed.as_millis(),
        out_after.map(|d| d.as_millis())
    );
    assert!(out_after.is_some_and(|d| d <= REMOVAL_TARGET), "node2 not seen down: {out_after:?}");
    assert!(last_failed <= REMOVAL_TARGET + Duration::from_millis(500), "{failed:?}");
    assert!(late >= 20, "too few new flows after 4 s: {late}");
}

/// What (e) counted.
#[derive(Debug, Default)]
struct Dies {
    tcp_on_dead: usize,
    tcp_dead_failed: usize,
    tcp_other_failed: usize,
    tcp_other_moved: usize,
    udp_on_dead: usize,
    udp_dead_failed: usize,
    udp_dead_recovered: usize,
    udp_other_failed: usize,
    removal_ms: u128,
    last_failed_new_ms: u128,
    new_failed: usize,
    new_total: usize,
}

/// Holds the flows, kills node3 (agent SIGKILL, every packet on its router link dropped) once
/// all are established, keeps them 6 s longer (removal + a round trip timeout) and counts;
/// meanwhile a client opens new connections one after another.
fn node_dies(cluster: &mut Cluster, director: &Director, target: SocketAddr) -> Dies {
    let stop = AtomicBool::new(false);
    let killed: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let log_mark = director.log.lock().unwrap().len();
    let link = cluster.lab.node("node3").unwrap().router_link.clone();
    let agent = cluster.agent_index("node3");
    let lab = &cluster.lab;
    let agent_child = &mut cluster.agents[agent].child;
    let mut removal = None;
    let (tcp, udp, new): (Vec<HoldReport>, Vec<UdpHoldReport>, Vec<(Instant, bool)>) =
        std::thread::scope(|scope| {
            let tcp: Vec<_> = (0..TCP_FLOWS)
                .map(|_| {
                    scope.spawn(|| {
                        lab.run_in("ext", || {
                            clients::hold_until(target, INTERVAL, TIMEOUT, || {
                                stop.load(Ordering::SeqCst)
                            })
                        })
                    })
                })
                .collect();
            let udp: Vec<_> = (0..UDP_FLOWS)
                .map(|_| {
                    scope.spawn(|| {
                        lab.run_in("ext", || {
                            clients::udp_hold(target, Duration::from_secs(9), INTERVAL, TIMEOUT)
                        })
                    })
                })
                .collect();
            let new = scope.spawn(|| {
                let mut out = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let ok = lab
                        .run_in("ext", || {
                            clients::tcp(target, 1, Duration::from_millis(300))[0].error.is_none()
                        })
                        .unwrap();
                    if killed.get().is_some() {
                        out.push((started, ok));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                out
            });
            let _stop = StopOnDrop(&stop);
            std::thread::sleep(Duration::from_millis(1_500)); // every flow established
            silence_link(lab, &link);
            let at = Instant::now();
            agent_child.kill().unwrap();
            agent_child.wait().unwrap();
            killed.set(at).unwrap();
            if wait_until(Duration::from_secs(6), || removed(director, "node3", HCNP, log_mark)) {
                removal = Some(at.elapsed());
            }
            let rest = Duration::from_secs(6).saturating_sub(at.elapsed());
            std::thread::sleep(rest);
            stop.store(true, Ordering::SeqCst);
            (
                tcp.into_iter().map(|h| h.join().unwrap().unwrap()).collect(),
                udp.into_iter().map(|h| h.join().unwrap().unwrap()).collect(),
                new.join().unwrap(),
            )
        });
    let killed = *killed.get().unwrap();
    let on_dead = |backends: &[String]| backends.first().is_some_and(|b| b == "c1");
    let mut d = Dies {
        removal_ms: removal.map_or(u128::MAX, |r| r.as_millis()),
        new_total: new.len(),
        new_failed: new.iter().filter(|(_, ok)| !ok).count(),
        last_failed_new_ms: new
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(t, _)| t.saturating_duration_since(killed).as_millis())
            .max()
            .unwrap_or(0),
        ..Dies::default()
    };
    for h in &tcp {
        let failed = h.reset || h.error.is_some();
        if on_dead(&h.backends) {
            d.tcp_on_dead += 1;
            d.tcp_dead_failed += usize::from(failed);
        } else {
            d.tcp_other_failed += usize::from(failed);
            d.tcp_other_moved += usize::from(h.backends.len() > 1);
        }
    }
    for u in &udp {
        let failed: usize = u.errors.values().sum();
        if on_dead(&u.answers) {
            d.udp_on_dead += 1;
            d.udp_dead_failed += failed;
            d.udp_dead_recovered += usize::from(u.answers.last().is_some_and(|b| b != "c1"));
        } else {
            d.udp_other_failed += failed;
        }
    }
    d
}

/// Issue 17: an agent stopped with SIGTERM answers 503 for its `--shutdown-grace-seconds`, so the
/// director marks its node *draining* and takes it out of every VIP's table while the agent
/// still runs (before it exits); meanwhile connections to the `Local` VIP all succeed and new
/// ones no longer reach the node's pod once it is out. The agent then exits successfully after
/// the grace. Timed by the director's own log (signal → tables programmed without the node,
/// within the 3 s health target).
#[test]
fn a_stopping_agent_is_drained_by_the_director_during_its_grace() {
    if !require_root("a_stopping_agent_is_drained_by_the_director_during_its_grace") {
        return;
    }
    const GRACE: Duration = Duration::from_secs(5);
    let nodes: [(&str, &[&str]); 3] = [("node1", &["a1"]), ("node2", &["b1"]), ("node3", &["c1"])];
    let mut cluster = Cluster::with_topology(&topology(&nodes, &["ext"], &["dir1"]), |lab| {
        let mut args = director_lab::agent_args(lab);
        args.extend(["--shutdown-grace-seconds".to_owned(), GRACE.as_secs().to_string()]);
        args
    });
    cluster.apply_and_wait("web.yaml", &vip_services(&cluster));
    let director = Director::start(&cluster, "dir1", &[]);
    for vip in [VIP, LOCAL_VIP, VIP6, LOCAL_VIP6] {
        let len = if vip.contains(':') { 128 } else { 32 };
        cluster.lab.route_to_directors(format!("{vip}/{len}").parse().unwrap(), &["dir1"]).unwrap();
    }
    let local_target = at(LOCAL_VIP.parse().unwrap(), 80);
    cluster.eventually("every target up", || {
        let h = health(&cluster);
        h.len() == TARGETS && h.iter().all(|(_, _, s)| *s == HEALTH_UP)
    });

    let index = cluster.agent_index("node2");
    let mut agent = cluster.agents.remove(index);
    let log_mark = director.log.lock().unwrap().len();
    let signalled = SystemTime::now();
    let kill = Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status();
    assert!(kill.unwrap().success());
    // The director's own time, from its log's timestamps: the test only waits for the lines
    // (cheap), it does not time its own polling of the maps.
    let (v4, v6) = (cluster.node_ip("node2", false), cluster.node_ip("node2", true));
    let lines: Vec<[String; 4]> = [v4, v6]
        .into_iter()
        .flat_map(|address| {
            [AGENT_HEALTH_PORT, HCNP].map(|port| {
                [
                    "node health: out of service".to_owned(),
                    "node=\"node2\"".to_owned(),
                    format!("address={address} "),
                    format!("port={port} "),
                ]
            })
        })
        .collect();
    let wanted: Vec<Vec<&str>> =
        lines.iter().map(|l| l.iter().map(String::as_str).collect()).collect();
    let wanted: Vec<&[&str]> = wanted.iter().map(Vec::as_slice).collect();
    let mut programmed = None;
    let logged = wait_until(GRACE, || {
        programmed = director.programmed_after(log_mark, &wanted);
        programmed.is_some()
    });
    assert!(logged, "node2 not drained within the grace: {:?}", health(&cluster));
    let (_, at) = programmed.unwrap();
    let drained_after = at.duration_since(signalled).unwrap_or_default();
    // Draining (503), not down: read once the director said so, while the agent still runs.
    assert_eq!(states_of(&cluster, "node2"), [HEALTH_DRAINING; 4], "{:?}", health(&cluster));
    let rest = names(&["node1", "node3"]);
    assert!(table_nodes(&director, &cluster).iter().all(|t| *t == rest));
    assert!(drained_after <= REMOVAL_TARGET, "drained {drained_after:?} after SIGTERM");
    // Out of the tables while still forwarding: new connections reach node1 and node3 only.
    let answers = cluster.lab.run_in("ext", || clients::tcp(local_target, 20, TIMEOUT)).unwrap();
    assert!(answers.iter().all(|a| a.error.is_none()), "{answers:?}");
    assert!(answers.iter().all(|a| a.backend.as_deref() != Some("b1")), "{answers:?}");

    let exited =
        wait_until(GRACE + Duration::from_secs(5), || agent.child.try_wait().unwrap().is_some());
    let exit_after = signalled.elapsed().unwrap_or_default();
    assert!(exited, "the agent still runs {exit_after:?} after SIGTERM");
    assert!(agent.child.wait().unwrap().success());
    // It ran its grace, so the drain above (≤ 3 s) happened while it still forwarded.
    assert!(exit_after >= GRACE, "{exit_after:?}");
    eprintln!(
        "COUNT agent SIGTERM (grace {} s): node2 draining and out of all 4 tables after {} ms, \
         agent exited after {} ms",
        GRACE.as_secs(),
        drained_after.as_millis(),
        exit_after.as_millis()
    );
}
