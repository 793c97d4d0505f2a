//! Directors announce their VIPs over BGP (root): BIRD 2 on the lab router learns every VIP from
//! both directors (next hop self) and spreads VIP traffic over them with ECMP; `switchyard bgp`
//! shows a director's sessions. Then issue 17's counts: 200 long-lived TCP connections and 50
//! UDP flows through the VIPs while (a) a director joins and (b) a director leaves gracefully
//! (SIGTERM: withdraw, forward for the grace period, exit), and a director dies (SIGKILL and its
//! link down) with BFD beside its BGP session. docs/director.md has the table.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchyard_lab::require_root;
use switchyard_lab::tools::clients;
use switchyard_lab::tools::fleet::{FleetReport, fleet};
use switchyard_testing::StopOnDrop;
use switchyard_testing::director_lab::{
    self, Director, bird_for_directors, bird_for_directors_with, director_bgp_yaml_with,
    director_nodes_yaml, vip_service,
};
use switchyard_testing::e2e::{BIN, Cluster, State, at, topology};

const TIMEOUT: Duration = Duration::from_secs(3);
/// Hold time of the directors' sessions (BIRD and the BGPPeers propose the same).
const HOLD_SECONDS: u16 = 9;
/// The directors' `--shutdown-grace-seconds` in the lab.
const GRACE_SECONDS: u64 = 2;
const WEB: [&str; 2] = ["10.96.80.1", "fd00:96::80:1"];

/// Three nodes with one pod each, client `ext`, directors `dir1` and `dir2` (not started), the
/// directors' Node objects and BGPPeers, and the Service `web` behind the directors.
fn cluster() -> Cluster {
    cluster_with(false)
}

/// As [`cluster`]; with `bfd`, the BGPPeers run BFD.
fn cluster_with(bfd: bool) -> Cluster {
    let nodes: [(&str, &[&str]); 3] = [("node1", &["a1"]), ("node2", &["b1"]), ("node3", &["c1"])];
    let cluster = Cluster::with_topology(&topology(&nodes, &["ext"], &["dir1", "dir2"]), |lab| {
        director_lab::agent_args(lab)
    });
    let all: Vec<(&str, State)> = ["a1", "b1", "c1"].map(|p| (p, State::Ready)).to_vec();
    let manifests = director_nodes_yaml(&cluster.lab)
        + &director_bgp_yaml_with(&cluster.lab, HOLD_SECONDS, bfd)
        + &vip_service(&cluster, "web", "", WEB, &all);
    cluster.apply_and_wait("directors.yaml", &manifests);
    cluster
}

fn start(cluster: &Cluster, name: &str) -> Director {
    let grace = GRACE_SECONDS.to_string();
    Director::start(cluster, name, &["--node-name", name, "--shutdown-grace-seconds", &grace])
}

/// True when the router's kernel routes both VIPs (IPv4 and IPv6) over exactly `directors`.
fn routed_over(cluster: &Cluster, directors: &[&str]) -> bool {
    director_lab::routed_over(cluster, &WEB, directors)
}

/// Waits until the router routes both VIPs over exactly `directors`: directors that start for
/// the first time announce after their settle window (`--announce-delay-seconds`, default 5 s),
/// so longer than the harness's usual convergence time is allowed.
fn announced(cluster: &Cluster, directors: &[&str]) {
    let routed =
        switchyard_lab::wait_until(Duration::from_secs(30), || routed_over(cluster, directors));
    assert!(routed, "the router does not route the VIPs over {directors:?}");
}

fn targets() -> Vec<SocketAddr> {
    WEB.iter().map(|vip| at(vip.parse().unwrap(), 80)).collect()
}

/// `switchyard bgp` against a director's local API (`-o json`).
fn bgp_report(cluster: &Cluster, name: &str, json: bool) -> String {
    let mut command = Command::new(&*BIN);
    command.arg("bgp").arg("--api-socket").arg(Director::api_socket(cluster, name));
    if json {
        command.args(["-o", "json"]);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn directors_announce_their_vips_over_bgp_and_the_router_spreads_flows_over_both() {
    if !require_root(
        "directors_announce_their_vips_over_bgp_and_the_router_spreads_flows_over_both",
    ) {
        return;
    }
    let cluster = cluster();
    let _bird = bird_for_directors(&cluster.lab, HOLD_SECONDS);
    let started = Instant::now();
    let grace = GRACE_SECONDS.to_string();
    let dir1_args = ["--node-name", "dir1", "--shutdown-grace-seconds", &grace];
    let metrics_port = ["--metrics-bind-address", "127.0.0.1:9464"];
    let dir1 = Director::start(&cluster, "dir1", &[&dir1_args[..], &metrics_port[..]].concat());
    let directors = [dir1, start(&cluster, "dir2")];

    // The metrics port (the network may reach it) serves /metrics only; /status and /bgp stay
    // on the local unix socket.
    let get = |path: &str| -> String {
        use std::io::{Read as _, Write as _};
        cluster
            .lab
            .run_in("dir1", || {
                let mut stream = std::net::TcpStream::connect("127.0.0.1:9464").unwrap();
                write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
                let mut answer = String::new();
                stream.read_to_string(&mut answer).unwrap();
                answer
            })
            .unwrap()
    };
    let metrics = get("/metrics");
    assert!(
        metrics.starts_with("HTTP/1.0 200") || metrics.starts_with("HTTP/1.1 200"),
        "{metrics}"
    );
    assert!(metrics.contains("switchyard_bgp_"), "director metrics with BGP series: {metrics}");
    for path in ["/status", "/bgp"] {
        let answer = get(path);
        assert!(answer.contains(" 404 "), "{path} on the metrics port: {answer}");
    }

    // Both directors' routes, IPv4 and IPv6, as one ECMP route in the router's kernel table.
    announced(&cluster, &["dir1", "dir2"]);
    eprintln!(
        "director bgp: directors started -> ECMP route over both at the router in {} ms",
        started.elapsed().as_millis()
    );

    // Traffic flows through the learned route, and the router spreads it over both directors.
    let before: Vec<u64> = directors.iter().map(|d| d.encapsulated(&cluster.lab)).collect();
    for target in targets() {
        let tcp = cluster.lab.run_in("ext", || clients::tcp(target, 40, TIMEOUT)).unwrap();
        let udp = cluster.lab.run_in("ext", || clients::udp(target, 40, TIMEOUT)).unwrap();
        for attempt in tcp.iter().chain(&udp) {
            assert_eq!(attempt.error, None, "{target}: {attempt:?}");
        }
    }
    let carried: Vec<u64> =
        directors.iter().zip(&before).map(|(d, b)| d.encapsulated(&cluster.lab) - b).collect();
    eprintln!("director bgp: 160 flows, packets encapsulated by dir1 / dir2: {carried:?}");
    assert!(carried.iter().all(|&n| n > 0), "ECMP uses both directors: {carried:?}");
    assert!(carried.iter().sum::<u64>() >= 320, "every flow passed a director: {carried:?}");

    // `switchyard bgp` on a director: its session, each VIP announced, the other director's
    // peer not used by this one.
    let json: serde_json::Value =
        serde_json::from_str(&bgp_report(&cluster, "dir1", true)).unwrap();
    let sessions = json["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{json}");
    assert_eq!(sessions[0]["peer"], "tor-dir1", "{json}");
    assert_eq!(sessions[0]["state"], "established", "{json}");
    assert_eq!(sessions[0]["routesAnnounced"], 2, "{json}");
    let text = bgp_report(&cluster, "dir1", false);
    eprintln!("director bgp: switchyard bgp on dir1:\n{text}");
    for vip in WEB {
        let length = if vip.contains(':') { 128 } else { 32 };
        assert!(
            text.contains(&format!("{vip:<20} announced as {vip}/{length} (BGPAdvertisement all)")),
            "{text}"
        );
    }
    assert!(text.contains("peer tor-dir2: no session:"), "{text}");
}

/// Runs the fleet (100 TCP connections and 25 UDP flows per VIP family: 200 and 50) in `ext`
/// while `during` runs on this thread, after the fleet's first rounds; stops it `after` rounds
/// later.
fn with_fleet(cluster: &Cluster, during: impl FnOnce(), after: usize) -> FleetReport {
    let rounds = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            cluster
                .lab
                .run_in("ext", || {
                    fleet(
                        &targets(),
                        100,
                        25,
                        Duration::from_secs(1),
                        Duration::from_millis(50),
                        || {
                            rounds.fetch_add(1, Ordering::SeqCst);
                            stop.load(Ordering::SeqCst)
                        },
                    )
                })
                .unwrap()
        });
        // Stops the fleet also when a check below panics (the scope waits for it).
        let _stop = StopOnDrop(&stop);
        cluster.eventually("the fleet runs", || rounds.load(Ordering::SeqCst) >= 3);
        during();
        let now = rounds.load(Ordering::SeqCst);
        cluster.eventually("the fleet runs on", || rounds.load(Ordering::SeqCst) >= now + after);
        stop.store(true, Ordering::SeqCst);
        running.join().unwrap()
    })
}

fn assert_untouched(what: &str, report: &FleetReport) {
    eprintln!("director bgp: COUNT {what}: {report:?}");
    assert_eq!((report.tcp, report.udp, report.failed_to_open), (200, 50, 0), "{what}: {report:?}");
    assert_eq!(report.resets, 0, "{what}: connections reset: {report:?}");
    assert_eq!(report.stalls, 0, "{what}: stalls: {report:?}");
    assert_eq!(report.dead, 0, "{what}: {report:?}");
    assert_eq!(report.moved, 0, "{what}: flows moved to another backend: {report:?}");
}

#[test]
fn no_flow_resets_or_stalls_while_a_director_joins_or_leaves_gracefully() {
    if !require_root("no_flow_resets_or_stalls_while_a_director_joins_or_leaves_gracefully") {
        return;
    }
    let cluster = cluster();
    let _bird = bird_for_directors(&cluster.lab, HOLD_SECONDS);
    let dir1 = start(&cluster, "dir1");
    announced(&cluster, &["dir1"]);

    // (a) dir2 joins under traffic: the router rehashes part of the flows onto it, and dir2
    //     sends each to the node dir1 did.
    let mut dir2 = None;
    let mut joined_ms = 0;
    let mut carried_by_dir2 = 0;
    let joining = with_fleet(
        &cluster,
        || {
            let started = Instant::now();
            let joined = start(&cluster, "dir2");
            announced(&cluster, &["dir1", "dir2"]);
            joined_ms = started.elapsed().as_millis();
            let before = joined.encapsulated(&cluster.lab);
            cluster.eventually("dir2 carries part of the flows", || {
                joined.encapsulated(&cluster.lab) >= before + 250
            });
            carried_by_dir2 = joined.encapsulated(&cluster.lab) - before;
            dir2 = Some(joined);
        },
        5,
    );
    let mut dir2 = dir2.unwrap();
    eprintln!(
        "director bgp: dir2 started -> in the router's ECMP route in {joined_ms} ms; it then \
         carried {carried_by_dir2} packets while the fleet ran"
    );
    assert_untouched("(a) a director joins", &joining);

    // (b) dir2 leaves gracefully: SIGTERM withdraws its routes while it still forwards; the
    //     router moves its flows back to dir1; dir2 exits after the grace period. Then its
    //     program is detached (what removing a director does), so a flow the router still
    //     sent there would stall and be counted.
    let mut withdrawn_ms = 0;
    let mut after_withdraw = 0;
    let leaving = with_fleet(
        &cluster,
        || {
            let before = dir2.encapsulated(&cluster.lab);
            cluster.eventually("dir2 carries part of the flows", || {
                dir2.encapsulated(&cluster.lab) >= before + 250
            });
            let started = Instant::now();
            dir2.terminate();
            cluster.eventually("the router routes the VIPs over dir1 alone", || {
                routed_over(&cluster, &["dir1"])
            });
            withdrawn_ms = started.elapsed().as_millis();
            let at_withdraw = dir2.encapsulated(&cluster.lab);
            assert!(
                dir2.wait_exit(Duration::from_secs(GRACE_SECONDS + 10)),
                "dir2 exits after the grace period: {:#?}",
                dir2.log
            );
            assert!(
                started.elapsed() >= Duration::from_secs(GRACE_SECONDS),
                "dir2 forwarded for the grace period"
            );
            after_withdraw = dir2.encapsulated(&cluster.lab) - at_withdraw;
            let bpf_dir = cluster.lab.director("dir2").unwrap().bpf_dir.clone();
            let cleanup = Command::new(&*BIN)
                .args(["director", "--cleanup", "--bpf-dir"])
                .arg(&bpf_dir)
                .output()
                .unwrap();
            assert!(cleanup.status.success(), "{}", String::from_utf8_lossy(&cleanup.stderr));
        },
        10,
    );
    eprintln!(
        "director bgp: SIGTERM to dir2 -> withdrawn from the router's route in {withdrawn_ms} ms; \
         dir2 encapsulated {after_withdraw} packets after that, until it exited"
    );
    assert_untouched("(b) a director leaves gracefully", &leaving);
    let log = dir2.log.lock().unwrap().join("\n");
    assert!(log.contains("every VIP withdrawn"), "{log}");
    assert!(log.contains("BGP sessions closed"), "{log}");
    drop(dir1);
}

/// Sudden director failure: the router's link to a director goes silent both ways (its carrier
/// still up, as behind a switch), then the process is killed — a dead machine: a process dying
/// on a live machine closes its BGP connection (FIN), which the router notices at once, and
/// leaves its XDP program forwarding; a link going down tells the router without any protocol.
/// Returns how long until the router's routes leave the director, and the fleet's counts.
fn sudden_death(bfd: bool) -> (u128, FleetReport) {
    let cluster = cluster_with(bfd);
    let bird = bird_for_directors_with(&cluster.lab, HOLD_SECONDS, bfd);
    let dir1 = start(&cluster, "dir1");
    let mut dir2 = start(&cluster, "dir2");
    announced(&cluster, &["dir1", "dir2"]);
    if bfd {
        for name in ["dir1", "dir2"] {
            cluster.eventually(&format!("{name}'s BFD session is up"), || {
                bgp_report(&cluster, name, false).contains("bfd: up, 100ms x 3")
            });
        }
        let sessions = bird.birdc(&cluster.lab, &["show", "bfd", "sessions"]).unwrap();
        assert_eq!(
            sessions.matches(" Up ").count(),
            2,
            "BIRD has both BFD sessions Up: {sessions}"
        );
    }
    let mut failover_ms = 0;
    let report = with_fleet(
        &cluster,
        || {
            let before = dir2.encapsulated(&cluster.lab);
            cluster.eventually("dir2 carries part of the flows", || {
                dir2.encapsulated(&cluster.lab) >= before + 250
            });
            let link = cluster.lab.director("dir2").unwrap().router_link.clone();
            // nftables in the router: every packet from and to dir2's link dropped.
            let nft = |args: &str| {
                let mut command = Command::new("nft");
                command.args(args.split(' '));
                let out = cluster.lab.output_in("fabric", command).unwrap();
                assert!(
                    out.status.success(),
                    "nft {args}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            let started = Instant::now();
            nft("add table inet sy-dead");
            nft(&format!(
                "add chain inet sy-dead from_dir2 {{ type filter hook prerouting priority -300 ; \
                 iifname {link} drop ; }}"
            ));
            nft(&format!(
                "add chain inet sy-dead to_dir2 {{ type filter hook postrouting priority 300 ; \
                 oifname {link} drop ; }}"
            ));
            dir2.kill();
            let timeout = Duration::from_secs(u64::from(HOLD_SECONDS) + 10);
            let gone = switchyard_lab::wait_until(timeout, || routed_over(&cluster, &["dir1"]));
            assert!(gone, "the router still routes the VIPs over dir2 after {timeout:?}");
            failover_ms = started.elapsed().as_millis();
        },
        5,
    );
    drop(dir1);
    (failover_ms, report)
}

/// BFD beside the BGP session (100 ms × 3): a dead director leaves the router's ECMP route within
/// a second, against the hold time (9 s) without BFD, measured in the same run; with BFD no flow
/// is reset, stalls or moves to another node (identical tables: the other director sends each
/// to the same node).
#[test]
fn with_bfd_a_dead_director_leaves_the_routers_ecmp_within_a_second_and_no_flow_resets() {
    if !require_root(
        "with_bfd_a_dead_director_leaves_the_routers_ecmp_within_a_second_and_no_flow_resets",
    ) {
        return;
    }
    let (with_ms, with_bfd) = sudden_death(true);
    let (without_ms, without_bfd) = sudden_death(false);
    eprintln!(
        "director bgp: COUNT sudden death of dir2 (link silent, SIGKILL): out of the router's \
         ECMP route in {with_ms} ms with BFD 100ms x 3, {without_ms} ms without (hold time \
         {HOLD_SECONDS} s); with BFD: {with_bfd:?}; without: {without_bfd:?}"
    );
    assert!(with_ms < 1000, "with BFD the failover took {with_ms} ms");
    assert!(
        without_ms >= 3000,
        "without BFD the router noticed in {without_ms} ms: the death was not silent"
    );
    assert_eq!((with_bfd.tcp, with_bfd.udp, with_bfd.failed_to_open), (200, 50, 0), "{with_bfd:?}");
    assert_eq!(with_bfd.resets, 0, "connections reset: {with_bfd:?}");
    // A datagram that reaches the dead director within BFD's detection time is lost (nothing
    // retransmits it; the fleet has one round trip in flight at a time, so at most a couple);
    // every TCP round trip is answered within the stall time.
    assert_eq!(with_bfd.stalls, with_bfd.udp_lost, "TCP round trips stalled: {with_bfd:?}");
    assert!(with_bfd.udp_lost <= 2, "UDP datagrams lost: {with_bfd:?}");
    assert!(with_bfd.max_round_trip_ms < 1000, "{with_bfd:?}");
    assert_eq!(with_bfd.dead, 0, "{with_bfd:?}");
    assert_eq!(with_bfd.moved, 0, "flows moved to another backend: {with_bfd:?}");
}
