//! Interoperation with real routers, as root, in lab namespaces only: BIRD 2 in the lab's router
//! namespace (`switchyard_lab::tools::bird`: own config, socket and pid file) peers with a
//! speaker in each node namespace (GoBGP likewise, `tools::gobgp`);
//! routes appear in and disappear from the router's kernel table (ECMP with `merge paths`); a
//! peer that sends garbage gets a NOTIFICATION and a reset session.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use switchyard_bgp::runtime::{ConnectOptions, Peer, PeerSpec, PeerStatus};
use switchyard_bgp::{DownReason, Prefix, RouteAttributes, SessionConfig, State};
use switchyard_lab::tools::bird::{Bird, Neighbor, ROUTER_ASN, router_next_hops};
use switchyard_lab::tools::gobgp::GoBgp;
use switchyard_lab::{Lab, NodeSpec, Topology, require_root, wait_until};
use tokio::sync::{mpsc, watch};

const ROUTER_AS: u32 = ROUTER_ASN;
const NODE_AS: u32 = 64512;

enum Cmd {
    Routes(BTreeMap<Prefix, RouteAttributes>),
    /// CPU time of the speaker's thread (all its sessions run on it).
    Cpu(std::sync::mpsc::Sender<Duration>),
    Stop,
}

/// Speakers (one task per peer) on one thread inside a node's namespace.
struct Speaker {
    commands: mpsc::UnboundedSender<Cmd>,
    status: watch::Receiver<PeerStatus>,
    all: Vec<watch::Receiver<PeerStatus>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

impl Speaker {
    fn start(lab: &Lab, node: &str, spec: PeerSpec) -> Speaker {
        Speaker::start_many(lab, node, vec![spec])
    }

    fn start_many(lab: &Lab, node: &str, specs: Vec<PeerSpec>) -> Speaker {
        let netns = lab.netns_of(node).expect("node netns");
        let (commands, mut rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let _ = switchyard_lab::netns::run_in(&netns, move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let peers: Vec<Peer> = specs
                        .into_iter()
                        .map(|s| Peer::spawn(s, None).expect("valid peer"))
                        .collect();
                    let _ = status_tx.send(peers.iter().map(Peer::watch).collect::<Vec<_>>());
                    while let Some(cmd) = rx.recv().await {
                        match cmd {
                            Cmd::Routes(routes) => {
                                peers.iter().for_each(|p| p.set_routes(routes.clone()))
                            }
                            Cmd::Cpu(reply) => {
                                let _ = reply.send(thread_cpu());
                            }
                            Cmd::Stop => break,
                        }
                    }
                    for peer in peers {
                        peer.stop().await;
                    }
                });
            });
        });
        let all = status_rx.recv_timeout(Duration::from_secs(10)).expect("speaker started");
        Speaker { commands, status: all[0].clone(), all, thread: Some(thread) }
    }

    fn set_routes(&self, routes: &[&str]) {
        let routes = routes
            .iter()
            .map(|p| (p.parse().expect("prefix"), RouteAttributes::default()))
            .collect();
        let _ = self.commands.send(Cmd::Routes(routes));
    }

    fn cpu(&self) -> Duration {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = self.commands.send(Cmd::Cpu(tx));
        rx.recv_timeout(Duration::from_secs(10)).expect("speaker answers")
    }

    fn state(&self) -> State {
        self.status.borrow().state
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        let _ = self.commands.send(Cmd::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn spec(name: &str, node_ip: IpAddr, router: SocketAddr, lab: &Lab, node: &str) -> PeerSpec {
    let info = lab.node(node).expect("node");
    let mut session = SessionConfig::new(NODE_AS, ROUTER_AS, info.ipv4);
    session.next_hop_v4 = Some(info.ipv4);
    session.next_hop_v6 = Some(info.ipv6);
    session.hold_time = Duration::from_secs(9);
    session.connect_retry_time = Duration::from_secs(1);
    PeerSpec {
        name: name.to_owned(),
        address: router,
        session,
        connect: ConnectOptions { local_address: Some(node_ip), md5_key: None, ttl: Some(1) },
    }
}

/// BIRD on the lab router (`switchyard_lab::tools::bird`) peered with each source address of
/// the nodes' speakers.
fn bird(lab: &Lab, sources: &[(Ipv4Addr, Ipv4Addr)]) -> Bird {
    let neighbors: Vec<Neighbor> = sources
        .iter()
        .map(|&(router, node)| Neighbor::new(router.into(), node.into(), NODE_AS))
        .collect();
    Bird::start(lab, &neighbors, 9).expect("bird starts")
}

/// BIRD peered with `nodes` (each on its link to the router).
fn bird_for(lab: &Lab, nodes: &[&str]) -> Bird {
    let sources: Vec<(Ipv4Addr, Ipv4Addr)> = nodes
        .iter()
        .map(|node| {
            let info = lab.node(node).expect("node");
            (info.router_ipv4, info.ipv4)
        })
        .collect();
    bird(lab, &sources)
}

fn birdc(bird: &Bird, lab: &Lab, args: &[&str]) -> String {
    bird.birdc(lab, args).expect("birdc runs")
}

/// How many next hops the router's kernel route to `prefix` has (0: no route).
fn hops(lab: &Lab, prefix: &str) -> usize {
    router_next_hops(lab, prefix).expect("ip route").len()
}

fn two_nodes() -> Topology {
    Topology {
        nodes: ["node1", "node2"].map(|n| NodeSpec { name: n.to_owned(), pods: vec![] }).to_vec(),
        clients: vec!["client1".to_owned()],
        directors: Vec::new(),
    }
}

fn time_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    wait_until(timeout, &mut probe).then(|| start.elapsed())
}

#[test]
fn bird_learns_lb_ips_from_two_nodes_as_ecmp_and_forgets_them_on_withdraw() {
    if !require_root("bird_learns_lb_ips_from_two_nodes_as_ecmp_and_forgets_them_on_withdraw") {
        return;
    }
    let lab = Lab::up(&two_nodes()).expect("lab");
    let bird = bird_for(&lab, &["node1", "node2"]);
    let speakers: Vec<Speaker> = ["node1", "node2"]
        .iter()
        .map(|node| {
            let info = lab.node(node).expect("node");
            let router = SocketAddr::new(IpAddr::V4(info.router_ipv4), 179);
            Speaker::start(&lab, node, spec("router", IpAddr::V4(info.ipv4), router, &lab, node))
        })
        .collect();
    let up = wait_until(Duration::from_secs(20), || {
        speakers.iter().all(|s| s.state() == State::Established)
    });
    assert!(up, "sessions did not establish: {}", birdc(&bird, &lab, &["show", "protocols"]));
    let negotiated = speakers[0].status.borrow().negotiated.clone().expect("negotiated");
    assert_eq!(negotiated.families.len(), 2, "IPv4 and IPv6 unicast: {negotiated:?}");
    assert!(negotiated.four_octet_as && negotiated.peer_graceful_restart);

    let (v4, v6) = ("198.51.100.10", "2001:db8:100::10");
    for s in &speakers {
        s.set_routes(&[v4, v6]);
    }
    let announce =
        time_until(Duration::from_secs(10), || hops(&lab, v4) == 2 && hops(&lab, v6) == 2);
    assert!(
        announce.is_some(),
        "no ECMP routes: v4 {:?} v6 {:?}",
        router_next_hops(&lab, v4),
        router_next_hops(&lab, v6)
    );
    let route = router_next_hops(&lab, v4).expect("ip route");
    for node in ["node1", "node2"] {
        let ip = IpAddr::V4(lab.node(node).expect("node").ipv4);
        assert!(route.contains(&ip), "{node} ({ip}) missing from {route:?}");
    }

    // Node 1 withdraws (its last local endpoint went): only node 2 is left.
    speakers[0].set_routes(&[]);
    let withdraw =
        time_until(Duration::from_secs(10), || hops(&lab, v4) == 1 && hops(&lab, v6) == 1);
    assert!(withdraw.is_some(), "withdraw not seen: {:?}", router_next_hops(&lab, v4));
    let node2 = IpAddr::V4(lab.node("node2").expect("node").ipv4);
    assert!(router_next_hops(&lab, v4).expect("ip route").contains(&node2));
    eprintln!(
        "FIGURE announce->router table {:?}, withdraw->router table {:?}",
        announce, withdraw
    );

    // A stopped speaker (Cease) takes its routes with it at once.
    let sent = speakers[1].status.borrow().stats.updates_sent;
    drop(speakers);
    assert!(
        wait_until(Duration::from_secs(5), || hops(&lab, v4) == 0),
        "route stayed: {:?}",
        router_next_hops(&lab, v4)
    );
    assert!(sent >= 3, "routes and End-of-RIB markers were sent ({sent})");
}

#[test]
fn a_peer_that_sends_garbage_gets_a_notification_and_a_reset_session() {
    if !require_root("a_peer_that_sends_garbage_gets_a_notification_and_a_reset_session") {
        return;
    }
    let lab = Lab::up(&two_nodes()).expect("lab");
    let info = lab.node("node1").expect("node").clone();
    // A fake router on port 1790 in the router namespace: accepts, sends garbage, reads the answer.
    let router = SocketAddr::new(IpAddr::V4(info.router_ipv4), 1790);
    let listener =
        lab.run_in("fabric", move || TcpListener::bind(router)).expect("in fabric").expect("bind");
    let speaker = Speaker::start(
        &lab,
        "node1",
        spec("garbage", IpAddr::V4(info.ipv4), router, &lab, "node1"),
    );
    let (mut conn, _) = listener.accept().expect("the speaker connects");
    conn.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    conn.write_all(&[0x42; 40]).expect("send garbage");
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    // Our OPEN first, then a NOTIFICATION: header error 1, connection not synchronized 1.
    let notification = answer.windows(21).find(|w| w[..16] == [0xff; 16] && w[18] == 3);
    let notification = notification.expect("a NOTIFICATION came back");
    assert_eq!((notification[19], notification[20]), (1, 1));
    assert!(wait_until(Duration::from_secs(5), || matches!(
        speaker.status.borrow().last_down,
        Some(DownReason::Sent { ref notification, .. }) if notification.code == 1
    )));
    // The session is reset and tried again by itself.
    let (_again, _) = listener.accept().expect("the speaker reconnects after connect-retry");
}

/// How many paths (one per announcing node) GoBGP holds for `prefix`.
fn paths(gobgp: &GoBgp, lab: &Lab, prefix: &str) -> usize {
    gobgp.next_hops(lab, prefix).expect("gobgp runs").len()
}

#[test]
fn gobgp_learns_lb_ips_from_two_nodes_and_forgets_them_on_withdraw() {
    if !require_root("gobgp_learns_lb_ips_from_two_nodes_and_forgets_them_on_withdraw") {
        return;
    }
    let lab = Lab::up(&two_nodes()).expect("lab");
    let gobgp = GoBgp::for_nodes(&lab, NODE_AS).expect("gobgpd starts");
    let speakers: Vec<Speaker> = ["node1", "node2"]
        .iter()
        .map(|node| {
            let info = lab.node(node).expect("node");
            let router = SocketAddr::new(IpAddr::V4(info.router_ipv4), 179);
            Speaker::start(&lab, node, spec("gobgp", IpAddr::V4(info.ipv4), router, &lab, node))
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(30), || speakers
            .iter()
            .all(|s| s.state() == State::Established)),
        "sessions with GoBGP did not establish: {:?}",
        speakers.iter().map(|s| s.status.borrow().last_down.clone()).collect::<Vec<_>>()
    );
    let negotiated = speakers[0].status.borrow().negotiated.clone().expect("negotiated");
    assert_eq!(negotiated.families.len(), 2, "IPv4 and IPv6 unicast: {negotiated:?}");
    let (v4, v6) = ("198.51.100.20/32", "2001:db8:100::20/128");
    for s in &speakers {
        s.set_routes(&[v4, v6]);
    }
    assert!(
        wait_until(Duration::from_secs(10), || paths(&gobgp, &lab, v4) == 2
            && paths(&gobgp, &lab, v6) == 2),
        "GoBGP does not have both paths: v4 {} v6 {}",
        paths(&gobgp, &lab, v4),
        paths(&gobgp, &lab, v6)
    );
    let next_hops = gobgp.next_hops(&lab, v4).expect("gobgp runs");
    assert_eq!(next_hops, ["10.100.1.2", "10.100.2.2"], "each node's own address");
    speakers[0].set_routes(&[]);
    assert!(
        wait_until(Duration::from_secs(10), || paths(&gobgp, &lab, v4) == 1
            && paths(&gobgp, &lab, v6) == 1),
        "withdraw not seen by GoBGP"
    );
    drop(speakers);
    assert!(
        wait_until(Duration::from_secs(10), || paths(&gobgp, &lab, v4) == 0),
        "route stayed in GoBGP"
    );
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Scale: one node's speaker announces 1,000 LoadBalancer IPs to 3 peers (three BIRD sessions,
/// from three source addresses of the node). Prints time to the router's table, the speaker
/// thread's CPU time and the process's resident memory growth.
#[test]
fn one_thousand_lb_ips_to_three_peers() {
    if !require_root("one_thousand_lb_ips_to_three_peers") {
        return;
    }
    let lab = Lab::up(&two_nodes()).expect("lab");
    let info = lab.node("node1").expect("node").clone();
    let sources: Vec<Ipv4Addr> = (2..5).map(|h| Ipv4Addr::new(10, 100, 1, h)).collect();
    for extra in &sources[1..] {
        lab.add_address("node1", &info.uplink, switchyard_lab::Cidr::new(*extra, 24))
            .expect("extra node address");
    }
    let neighbors: Vec<(Ipv4Addr, Ipv4Addr)> =
        sources.iter().map(|s| (info.router_ipv4, *s)).collect();
    let bird = bird(&lab, &neighbors);
    let rss_before = vm_rss_kib();
    let router = SocketAddr::new(IpAddr::V4(info.router_ipv4), 179);
    let specs = sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut spec = spec(&format!("peer{i}"), IpAddr::V4(*s), router, &lab, "node1");
            spec.session.families = vec![switchyard_bgp::Family::Ipv4Unicast];
            spec.session.router_id = *s;
            // Each session's own source address as next hop, so the router keeps three paths.
            spec.session.next_hop_v4 = Some(*s);
            spec
        })
        .collect();
    let speaker = Speaker::start_many(&lab, "node1", specs);
    assert!(
        wait_until(Duration::from_secs(20), || speaker
            .all
            .iter()
            .all(|s| s.borrow().state == State::Established)),
        "sessions did not establish: {}",
        birdc(&bird, &lab, &["show", "protocols"])
    );
    let cpu_idle = speaker.cpu();
    let ips: Vec<String> =
        (0..1000u32).map(|i| Ipv4Addr::from(0xc633_0000 + i).to_string()).collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    let start = Instant::now();
    speaker.set_routes(&ips);
    let counted = || birdc(&bird, &lab, &["show", "route", "count"]);
    let converged = wait_until(Duration::from_secs(30), || {
        counted().contains("3000 of 3000 routes for 1000 networks")
    });
    let elapsed = start.elapsed();
    assert!(converged, "BIRD did not learn 1,000 prefixes from 3 peers: {}", counted());
    let cpu_announce = speaker.cpu() - cpu_idle;
    let route = router_next_hops(&lab, "198.51.3.231").expect("ip route");
    assert_eq!(route.len(), 3, "ECMP over the three sessions: {route:?}");
    let rss_after = vm_rss_kib();
    // Withdraw everything: only changed prefixes travel, one withdraw per prefix per peer.
    let start_withdraw = Instant::now();
    speaker.set_routes(&[]);
    let gone = wait_until(Duration::from_secs(30), || counted().contains("0 of 0 routes"));
    assert!(gone, "withdrawals not seen: {}", counted());
    let withdraw = start_withdraw.elapsed();
    // BIRD can show the last withdrawal a moment before a speaker publishes its counters (the
    // status follows the write), so wait for them rather than read them once (this flaked under
    // load).
    let stats = || -> Vec<_> { speaker.all.iter().map(|s| s.borrow().stats).collect() };
    let counted_all = wait_until(Duration::from_secs(10), || {
        stats().iter().all(|s| s.prefixes_announced == 1000 && s.prefixes_withdrawn == 1000)
    });
    let stats = stats();
    assert!(counted_all, "each peer: 1,000 prefixes announced and withdrawn once: {stats:?}");
    assert!(stats.iter().all(|s| s.flaps == 0), "no session went down: {stats:?}");
    eprintln!(
        "FIGURE 1000 LB IPs x 3 peers: router table full after {elapsed:?}, empty {withdraw:?} after withdraw; \
         speaker CPU {cpu_announce:?} for the announcement; process RSS +{} KiB; UPDATEs per peer {}",
        rss_after.saturating_sub(rss_before),
        stats[0].updates_sent
    );
}
