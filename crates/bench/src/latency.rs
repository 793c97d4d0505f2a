//! Item 2: latency against the number of Services (the LPC 2019 graph).
//!
//! A pod on node 1 opens a TCP connection to the ClusterIP of the Service last in the list,
//! sends one byte and waits for one byte back; the endpoint is a one-byte echo server in a pod on
//! node 2. Every connection is new, so every one goes through the NAT lookup the peer's ruleset
//! does for a first packet (iptables: a linear walk of KUBE-SERVICES; nftables: one map lookup).
//! The ruleset is the peer's full sync for N Services, applied in node 1's namespace.
//!
//! The same Service is a NodePort Service too, and with every ruleset loaded an external client
//! (a namespace behind the router, outside the cluster) does the same through node 1's NodePort:
//! DNAT plus SNAT to the pod on node 2. Switchyard answers the first path with its socket-level
//! programs (cgroup, `connect()` rewritten) and the second with its per-packet programs at TC on
//! node 1's uplink.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_lab::{Lab, LabOptions, NodeSpec, Topology};

use crate::error::BenchError;
use crate::kube_proxy::{iptables, nftables};
use crate::netns::Netns;
use crate::programming::Peer;
use crate::state::{DesiredState, Endpoint, NodeConfig};
use crate::switchyard;
use crate::synthetic::{self, Shape};

const CLIENT_POD: &str = "lat-client";
const SERVER_POD: &str = "lat-server";
/// External client (outside the cluster) of the NodePort path.
const EXTERNAL_CLIENT: &str = "lat-ext";
/// NodePort of the last Service (the first Service's, handed over: at 30,000 Services every
/// port of the range is taken).
pub const TARGET_NODE_PORT: u16 = 30000;
const SERVER_PORT: u16 = 8080;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the echo server waits for a connected client's byte: longer than any client waits
/// (so it never decides a round trip), short enough that a vanished client frees its thread.
const ECHO_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections made before measuring at each size (caches, ARP, conntrack warm-up).
const WARM_UP: usize = 20;

/// Which way the client reaches the Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyPath {
    /// A pod on node 1 to the ClusterIP (Switchyard: socket level).
    PodToClusterIp,
    /// An external client to node 1's NodePort, forwarded to the pod on node 2 (Switchyard:
    /// per packet, TC).
    ExternalToNodePort,
}

impl LatencyPath {
    pub const ALL: [LatencyPath; 2] =
        [LatencyPath::PodToClusterIp, LatencyPath::ExternalToNodePort];

    pub fn label(self) -> &'static str {
        match self {
            Self::PodToClusterIp => "pod → ClusterIP",
            Self::ExternalToNodePort => "external client → NodePort",
        }
    }

    /// What Switchyard's series on this path is called.
    pub fn switchyard_label(self) -> &'static str {
        match self {
            Self::PodToClusterIp => "switchyard socket-level",
            Self::ExternalToNodePort => "switchyard per-packet",
        }
    }
}

/// p50/p99 of connect + one-byte round trip for one peer at one number of Services.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyPoint {
    pub peer: Peer,
    pub path: LatencyPath,
    pub services: usize,
    pub connections: usize,
    pub failures: usize,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Where the true p99 lies with 97.5 % confidence ([`percentile_interval`]): two sizes'
    /// p99s differ by less than their intervals' overlap says nothing.
    pub p99_interval_us: Option<[f64; 2]>,
    /// Each round's visit's own p99 (`None`: the visit got no samples), in round order: the
    /// visits of one round are minutes apart at most, so comparing sizes round by round keeps
    /// the machine's drifting load out of the comparison ([`P99Ratio`]).
    pub p99_per_round_us: Vec<Option<f64>>,
    pub mean_us: Option<f64>,
    /// TCP segments retransmitted in the client's and the server's namespaces while this point
    /// was measured: a p99 made of retransmissions is not the data plane's.
    pub retransmitted_segments: Option<u64>,
    /// Why there are no samples (the ruleset did not load, or the peer does not exist yet).
    pub error: Option<String>,
}

/// What a latency run needs to know.
#[derive(Debug, Clone)]
pub struct LatencyPlan {
    pub sizes: Vec<usize>,
    /// Connections per point, spread over the rounds.
    pub connections: usize,
    /// Each peer goes through all sizes this many times, `connections / rounds` per visit, so
    /// the machine's noise falls on every size alike (what a p99 comparison between sizes
    /// needs). A peer's ruleset is loaded again at every visit.
    pub rounds: usize,
    pub peers: Vec<Peer>,
    /// The `switchyard-bench` binary, whose hidden [`CLIENT_SUBCOMMAND`] is Switchyard's
    /// socket-level client (a process of its own in the node's cgroup).
    pub client_exe: std::path::PathBuf,
    /// Clients and the echo server run under `SCHED_FIFO` ([`raise_to_realtime`]): on a machine
    /// shared with builds, a p99 otherwise measures how long they waited for a CPU.
    pub realtime: bool,
}

/// `SCHED_FIFO` priority of the measuring threads with [`LatencyPlan::realtime`]: above every
/// normal task (builds, other tests), below the kernel's own real-time threads (50 and up).
pub const REALTIME_PRIORITY: i32 = 10;

/// Puts the calling thread under `SCHED_FIFO` at [`REALTIME_PRIORITY`], so it runs as soon as
/// its packet arrives instead of queueing behind other work; the packets' softirq work runs in
/// its context too (veth delivers in the sender's). Only threads that block on the network
/// between round trips use it (the kernel's real-time throttling keeps 5 % of each CPU for
/// everything else in any case).
pub fn raise_to_realtime() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: REALTIME_PRIORITY };
    // SAFETY: sched_setscheduler reads `param` only; pid 0 is the calling thread.
    let status = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if status == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// [`round_trips`] from a thread raised to real time first when `realtime` (failing to raise it
/// is an error: the figures would not be what the report says).
pub fn round_trips_with(
    target: SocketAddr,
    count: usize,
    realtime: bool,
) -> Result<(Vec<f64>, usize), BenchError> {
    if realtime {
        raise_to_realtime()
            .map_err(|e| BenchError::Lab(format!("SCHED_FIFO for the latency client: {e}")))?;
    }
    Ok(round_trips(target, count))
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Normal quantile for a 95 % two-sided [`percentile_interval`].
pub const QUANTILE_Z: f64 = 1.96;

/// Distribution-free confidence interval of the `q` quantile of sorted samples: the order
/// statistics whose ranks lie `z` binomial standard deviations either side of `n·q` (the count
/// of samples below the true quantile is Binomial(n, q), whatever the samples' distribution).
/// `None` without samples; the ends are clamped to the smallest and largest sample.
pub fn percentile_interval(sorted: &[f64], q: f64, z: f64) -> Option<[f64; 2]> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let centre = n as f64 * q;
    let spread = z * (n as f64 * q * (1.0 - q)).sqrt();
    // 1-based ranks, as in `percentile`.
    let low = ((centre - spread).floor() as usize).clamp(1, n);
    let high = ((centre + spread).ceil() as usize + 1).clamp(1, n);
    Some([sorted[low - 1], sorted[high - 1]])
}

/// How `large`'s p99 compares with `small`'s. The pooled ratio is the two points' p99s; the
/// verdict comes from the rounds: each round's ratio of the two visits' p99s, whose median has a
/// distribution-free 95 % interval ([`percentile_interval`] at q = 0.5). On a shared machine the
/// samples of one point are not independent (the load drifts over minutes), so an interval from
/// the pooled samples alone is too narrow: two runs measured 1.12× and 0.99× with pooled
/// intervals that excluded each other.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct P99Ratio {
    pub pooled: f64,
    pub rounds: usize,
    pub round_median: f64,
    pub low: f64,
    pub high: f64,
}

impl P99Ratio {
    pub fn of(large: &LatencyPoint, small: &LatencyPoint) -> Option<Self> {
        let (large_p99, small_p99) = (large.p99_us?, small.p99_us?);
        let per_round: Vec<f64> = large
            .p99_per_round_us
            .iter()
            .zip(&small.p99_per_round_us)
            .filter_map(|pair| match pair {
                (Some(large), Some(small)) if *small > 0.0 => Some(large / small),
                _ => None,
            })
            .collect();
        let rounds = per_round.len();
        let RoundRatio { median, low, high } = RoundRatio::of(per_round)?;
        (small_p99 > 0.0).then(|| P99Ratio {
            pooled: large_p99 / small_p99,
            rounds,
            round_median: median,
            low,
            high,
        })
    }

    /// Whether the ratio lies within `tolerance` of 1 (`Some(true)`: the whole interval does;
    /// `Some(false)`: none of it does; `None`: the rounds cannot tell).
    pub fn within(&self, tolerance: f64) -> Option<bool> {
        let (lowest, highest) = (1.0 - tolerance, 1.0 + tolerance);
        if self.low >= lowest && self.high <= highest {
            Some(true)
        } else if self.high < lowest || self.low > highest {
            Some(false)
        } else {
            None
        }
    }
}

/// The median of ratios taken round by round, with its distribution-free 95 % interval
/// ([`percentile_interval`] at q = 0.5): what a comparison between two points of one run
/// rests on when the machine's load drifts between rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundRatio {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

impl RoundRatio {
    /// `None` without ratios.
    pub fn of(mut ratios: Vec<f64>) -> Option<Self> {
        ratios.sort_by(f64::total_cmp);
        let median = percentile(&ratios, 0.5)?;
        let [low, high] = percentile_interval(&ratios, 0.5, QUANTILE_Z)?;
        Some(RoundRatio { median, low, high })
    }
}

/// The node settings matching the lab's addressing (pods in 10.244.0.0/16).
fn node_config(node_ip: Ipv4Addr) -> NodeConfig {
    NodeConfig { cluster_cidr: "10.244.0.0/16".into(), node_ip, ..NodeConfig::default() }
}

/// N Services with one endpoint each; the last one's endpoint is the real echo server, and it
/// is a NodePort Service on [`TARGET_NODE_PORT`] (taken from the first Service).
/// (One endpoint per Service: the first-packet path walks Services, not the endpoints of
/// Services it skips, and one keeps loading 30,000 Services quick.)
pub fn state_with_target(services: usize, server: SocketAddrV4) -> DesiredState {
    let mut state = synthetic::cluster(Shape { services, endpoints_per_service: 1 });
    if let Some(first) = state.services.first_mut() {
        first.node_port = None;
    }
    if let Some(last) = state.services.last_mut() {
        last.endpoints = vec![Endpoint { ip: *server.ip(), port: server.port() }];
        last.node_port = Some(TARGET_NODE_PORT);
    }
    state
}

/// A one-byte echo server: reads one byte, writes it back, closes (so TIME_WAIT stays on the
/// server side and the client never runs out of ports). `threads` accept on the one listener.
pub(crate) struct EchoServer {
    stop: Arc<AtomicBool>,
    fd: i32,
    threads: Vec<JoinHandle<()>>,
    _listener: Arc<TcpListener>,
}

impl EchoServer {
    /// `realtime`: every thread under `SCHED_FIFO` ([`raise_to_realtime`]; a thread that cannot
    /// be raised says so on stderr and serves all the same).
    pub(crate) fn start(listener: TcpListener, threads: usize, realtime: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let fd = listener.as_raw_fd();
        let listener = Arc::new(listener);
        let threads = (0..threads.max(1))
            .map(|_| {
                let stopped = Arc::clone(&stop);
                let listener = Arc::clone(&listener);
                std::thread::spawn(move || {
                    if realtime && let Err(e) = raise_to_realtime() {
                        eprintln!("echo server: SCHED_FIFO not set: {e}");
                    }
                    while !stopped.load(Ordering::SeqCst) {
                        let Ok((mut stream, _)) = listener.accept() else {
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        // A client that vanishes after connecting (its connection failed on the
                        // way) must not hold this thread, nor the join in `drop`, for ever.
                        let _ = stream.set_read_timeout(Some(ECHO_READ_TIMEOUT));
                        let mut byte = [0u8; 1];
                        if stream.read_exact(&mut byte).is_ok() {
                            let _ = stream.write_all(&byte);
                        }
                    }
                })
            })
            .collect();
        Self { stop, fd, threads, _listener: listener }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Shutting a listening socket down wakes a thread blocked in accept().
        // SAFETY: shutdown on a descriptor the server thread still owns; no memory is touched.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One measured connection: connect, send one byte, receive one byte. Returns microseconds.
fn one_round_trip(target: SocketAddr) -> std::io::Result<f64> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    stream.write_all(&[1])?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)?;
    let elapsed = started.elapsed();
    // Untimed: wait for the server's close so the connection ends on its side.
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    Ok(elapsed.as_secs_f64() * 1e6)
}

/// Samples (sorted, microseconds) and failures of `count` round trips.
pub fn round_trips(target: SocketAddr, count: usize) -> (Vec<f64>, usize) {
    let warmed = (0..WARM_UP).filter(|_| one_round_trip(target).is_ok()).count();
    if warmed == 0 {
        // Nothing gets through: do not spend `count` timeouts finding that out again.
        return (Vec::new(), WARM_UP);
    }
    let mut samples = Vec::with_capacity(count);
    let mut failures = 0;
    for _ in 0..count {
        match one_round_trip(target) {
            Ok(us) => samples.push(us),
            Err(_) => failures += 1,
        }
    }
    samples.sort_by(f64::total_cmp);
    (samples, failures)
}

/// What the `latency-client` subcommand prints: the client runs as a process of its own when
/// it must sit in the node's cgroup (Switchyard's socket-level programs hook the cgroup; a thread
/// cannot leave its process's cgroup).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ClientResult {
    pub samples_us: Vec<f64>,
    pub failures: usize,
}

/// Subcommand that runs [`round_trips`] in a process of its own (see [`ClientResult`]).
pub const CLIENT_SUBCOMMAND: &str = "latency-client";

const APPLY_LIMIT: Duration = Duration::from_secs(600);

/// Loads a peer's full ruleset for `state` into the node, replacing whatever the peer had there.
pub(crate) fn apply(
    peer: Peer,
    node: &Netns,
    config: &NodeConfig,
    state: &DesiredState,
) -> Result<(), BenchError> {
    match peer {
        Peer::IptablesNft | Peer::IptablesLegacy => {
            let program = if peer == Peer::IptablesNft {
                "iptables-nft-restore"
            } else {
                "iptables-legacy-restore"
            };
            let ruleset = iptables::render(config, state, iptables::Sync::Full { previous: None });
            // Without --noflush: replace the tables, then put back the jump rules.
            node.run(program, &["-w", "5"], ruleset.as_bytes(), APPLY_LIMIT)?;
            node.run(
                program,
                &["-w", "5", "--noflush"],
                iptables::render_jump_rules(false).as_bytes(),
                APPLY_LIMIT,
            )?;
        }
        Peer::Nftables => {
            clear(peer, node)?;
            // In chunks: the same rules, loaded faster (the load is not what is measured here).
            for transaction in
                nftables::render_in_chunks(config, state, crate::programming::NFT_CHUNK)
            {
                node.run("nft", &["-f", "-"], transaction.as_bytes(), APPLY_LIMIT)?;
            }
        }
        Peer::Switchyard => {}
    }
    Ok(())
}

/// Removes a peer's rules from the node so the next peer runs alone.
pub(crate) fn clear(peer: Peer, node: &Netns) -> Result<(), BenchError> {
    let empty = "*filter\nCOMMIT\n*nat\nCOMMIT\n";
    match peer {
        Peer::IptablesNft => node
            .run("iptables-nft-restore", &["-w", "5"], empty.as_bytes(), APPLY_LIMIT)
            .map(|_| ()),
        Peer::IptablesLegacy => node
            .run("iptables-legacy-restore", &["-w", "5"], empty.as_bytes(), APPLY_LIMIT)
            .map(|_| ()),
        Peer::Nftables => {
            let transaction = format!("add table {t}\ndelete table {t}\n", t = nftables::TABLE);
            node.run("nft", &["-f", "-"], transaction.as_bytes(), APPLY_LIMIT).map(|_| ())
        }
        Peer::Switchyard => Ok(()),
    }
}

/// The lab both the latency sweep and the connection rate run in: two nodes (a client pod on
/// node 1, the echo server's pod on node 2) and an external client behind the router.
pub(crate) struct NodePortLab {
    pub(crate) lab: Lab,
    pub(crate) node: switchyard_lab::NodeInfo,
    pub(crate) node_ns: Netns,
    pub(crate) config: NodeConfig,
    /// The echo server in node 2's pod.
    pub(crate) server: SocketAddrV4,
    /// The target NodePort on node 1.
    pub(crate) node_port: SocketAddr,
    _echo: EchoServer,
}

impl NodePortLab {
    /// Brings the lab up with an echo server of `server_threads` threads (under `SCHED_FIFO`
    /// with `realtime`).
    pub(crate) fn up(server_threads: usize, realtime: bool) -> Result<Self, BenchError> {
        let topology = Topology {
            nodes: vec![
                NodeSpec { name: "node1".into(), pods: vec![CLIENT_POD.into()] },
                NodeSpec { name: "node2".into(), pods: vec![SERVER_POD.into()] },
            ],
            clients: vec![EXTERNAL_CLIENT.into()],
            directors: Vec::new(),
        };
        let lab = Lab::up_with(&topology, &LabOptions::default()).map_err(lab_error)?;
        let node = lab.node("node1").map_err(lab_error)?.clone();
        let server_ip = lab.pod(SERVER_POD).map_err(lab_error)?.ipv4;
        let listener = lab
            .run_in(SERVER_POD, || {
                TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT))
            })
            .map_err(lab_error)?
            .map_err(|e| {
                BenchError::Lab(format!("binding the echo server in {SERVER_POD}: {e}"))
            })?;
        let echo = EchoServer::start(listener, server_threads, realtime);
        let node_ns = Netns::existing(node.netns.clone());
        let config = node_config(node.ipv4);
        let server = SocketAddrV4::new(server_ip, SERVER_PORT);
        let node_port = SocketAddr::V4(SocketAddrV4::new(node.ipv4, TARGET_NODE_PORT));
        Ok(NodePortLab { lab, node, node_ns, config, server, node_port, _echo: echo })
    }
}

pub(crate) fn lab_error(e: switchyard_lab::LabError) -> BenchError {
    BenchError::Lab(e.to_string())
}

/// Runs the whole latency sweep in a lab of its own (two nodes, one pod each).
pub fn run(plan: &LatencyPlan, log: &mut dyn FnMut(&str)) -> Result<Vec<LatencyPoint>, BenchError> {
    let NodePortLab { lab, node, node_ns, config, server, node_port, _echo } =
        NodePortLab::up(1, plan.realtime)?;

    // Samples per (peer, size, path), gathered over the rounds.
    let mut gathered: Vec<Gathered> = Vec::new();
    // Switchyard's per-packet conntrack, carried from one N to the next (switchyard::Flows).
    let mut flows = switchyard::Flows::default();
    let rounds = plan.rounds.max(1);
    let per_visit = plan.connections.div_ceil(rounds);
    for &peer in &plan.peers {
        let mut unavailable = false;
        for round in 0..rounds {
            for &services in &plan.sizes {
                let state = state_with_target(services, server);
                let cluster_ip = SocketAddr::V4(SocketAddrV4::new(
                    synthetic::cluster_ip(services - 1),
                    synthetic::SERVICE_PORT,
                ));
                let loaded = if peer == Peer::Switchyard {
                    Ok(())
                } else {
                    apply(peer, &node_ns, &config, &state)
                };
                for path in LatencyPath::ALL {
                    let client = match path {
                        LatencyPath::PodToClusterIp => CLIENT_POD,
                        LatencyPath::ExternalToNodePort => EXTERNAL_CLIENT,
                    };
                    let before = namespace_retransmits(&lab, client);
                    let measured = match (loaded.as_ref(), peer, path) {
                        (Err(error), _, _) => Err(BenchError::Lab(error.to_string())),
                        (Ok(()), Peer::Switchyard, LatencyPath::PodToClusterIp) => {
                            let client = switchyard::SocketClient {
                                exe: &plan.client_exe,
                                pod: CLIENT_POD,
                                realtime: plan.realtime,
                            };
                            switchyard::measure_latency(
                                &lab, &client, node.ipv4, &state, cluster_ip, per_visit,
                            )
                        }
                        (Ok(()), Peer::Switchyard, LatencyPath::ExternalToNodePort) => {
                            switchyard::load_packet_path(
                                &state,
                                node.ipv4,
                                &node.netns,
                                &node.uplink,
                                "sybench-latpkt",
                            )
                            .and_then(|mut programmed| {
                                flows.restore(&mut programmed)?;
                                let measured = lab
                                    .run_in(EXTERNAL_CLIENT, || {
                                        round_trips_with(node_port, per_visit, plan.realtime)
                                    })
                                    .map_err(lab_error)
                                    .and_then(|measured| measured);
                                flows = switchyard::Flows::of(&programmed)?;
                                // Detached and unpinned here, before the next size.
                                drop(programmed);
                                measured
                            })
                        }
                        (Ok(()), _, LatencyPath::PodToClusterIp) => lab
                            .run_in(CLIENT_POD, || {
                                round_trips_with(cluster_ip, per_visit, plan.realtime)
                            })
                            .map_err(lab_error)
                            .and_then(|measured| measured),
                        (Ok(()), _, LatencyPath::ExternalToNodePort) => lab
                            .run_in(EXTERNAL_CLIENT, || {
                                round_trips_with(node_port, per_visit, plan.realtime)
                            })
                            .map_err(lab_error)
                            .and_then(|measured| measured),
                    };
                    let retransmits = before.and_then(|before| {
                        namespace_retransmits(&lab, client)
                            .map(|after| after.saturating_sub(before))
                    });
                    let visit = visit_of(measured);
                    if rounds > 1 {
                        log(&format!(
                            "round {}/{rounds}: {:<16} {:<27} {:>6} Services: {} samples, {} failed",
                            round + 1,
                            peer.label(),
                            path.label(),
                            services,
                            visit.samples.len(),
                            visit.failures
                        ));
                    }
                    unavailable |= peer == Peer::Switchyard && visit.error.is_some();
                    let slot = match gathered
                        .iter_mut()
                        .position(|g| g.peer == peer && g.path == path && g.services == services)
                    {
                        Some(i) => &mut gathered[i],
                        None => {
                            gathered.push(Gathered { peer, path, services, ..Gathered::default() });
                            let last = gathered.len() - 1;
                            &mut gathered[last]
                        }
                    };
                    slot.add(visit, retransmits);
                }
                if unavailable {
                    break;
                }
            }
            if unavailable {
                break;
            }
        }
        clear(peer, &node_ns)?;
    }
    let points: Vec<LatencyPoint> = gathered.into_iter().map(Gathered::point).collect();
    for point in &points {
        log(&describe(point));
    }
    Ok(points)
}

/// Retransmitted segments of `client`'s namespace plus the echo server's (`None` when a count
/// could not be read: the point then says nothing about retransmissions).
fn namespace_retransmits(lab: &Lab, client: &str) -> Option<u64> {
    let mut total = 0;
    for member in [client, SERVER_POD] {
        total += lab.run_in(member, crate::connection_rate::retransmitted_segments).ok()?.ok()?;
    }
    Some(total)
}

/// One point's samples over the rounds.
#[derive(Debug)]
struct Gathered {
    peer: Peer,
    path: LatencyPath,
    services: usize,
    samples: Vec<f64>,
    /// Each visit's p99, in round order.
    round_p99s: Vec<Option<f64>>,
    failures: usize,
    retransmits: Option<u64>,
    error: Option<String>,
}

impl Default for Gathered {
    fn default() -> Self {
        Gathered {
            peer: Peer::Switchyard,
            path: LatencyPath::PodToClusterIp,
            services: 0,
            samples: Vec::new(),
            round_p99s: Vec::new(),
            failures: 0,
            retransmits: Some(0),
            error: None,
        }
    }
}

impl Gathered {
    fn add(&mut self, visit: Visit, retransmits: Option<u64>) {
        // A visit's samples arrive sorted (`round_trips`).
        self.round_p99s.push(percentile(&visit.samples, 0.99));
        self.samples.extend(visit.samples);
        self.failures += visit.failures;
        self.retransmits = self.retransmits.zip(retransmits).map(|(a, b)| a + b);
        if self.error.is_none() {
            self.error = visit.error;
        }
    }

    fn point(mut self) -> LatencyPoint {
        self.samples.sort_by(f64::total_cmp);
        let n = self.samples.len();
        LatencyPoint {
            peer: self.peer,
            path: self.path,
            services: self.services,
            connections: n,
            failures: self.failures,
            p50_us: percentile(&self.samples, 0.50),
            p99_us: percentile(&self.samples, 0.99),
            p99_interval_us: percentile_interval(&self.samples, 0.99, QUANTILE_Z),
            p99_per_round_us: self.round_p99s,
            mean_us: (n > 0).then(|| self.samples.iter().sum::<f64>() / n as f64),
            retransmitted_segments: self.retransmits,
            // An error of one visit counts only when no visit got samples.
            error: if n == 0 { self.error } else { None },
        }
    }
}

/// What one visit of a point measured.
struct Visit {
    samples: Vec<f64>,
    failures: usize,
    error: Option<String>,
}

fn visit_of(measured: Result<(Vec<f64>, usize), BenchError>) -> Visit {
    match measured {
        Ok((samples, failures)) if samples.is_empty() => Visit {
            samples,
            failures,
            error: Some(format!("no connection got through ({failures} failed)")),
        },
        Ok((samples, failures)) => Visit { samples, failures, error: None },
        Err(error) => Visit { samples: Vec::new(), failures: 0, error: Some(error.to_string()) },
    }
}

fn describe(point: &LatencyPoint) -> String {
    match (point.p50_us, point.p99_us, &point.error) {
        (Some(p50), Some(p99), _) => format!(
            "latency {:<16} {:<27} {:>6} Services: p50 {p50:.0} µs, p99 {p99:.0} µs ({}) ({} connections, {} failed)",
            point.peer.label(),
            point.path.label(),
            point.services,
            point
                .p99_interval_us
                .map_or_else(String::new, |[low, high]| format!("{low:.0}–{high:.0}")),
            point.connections,
            point.failures
        ),
        (_, _, Some(error)) => format!(
            "latency {:<16} {:<27} {:>6} Services: {error}",
            point.peer.label(),
            point.path.label(),
            point.services
        ),
        _ => {
            format!("latency {:<16} {:>6} Services: no samples", point.peer.label(), point.services)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests: a failure should panic")]
mod tests {
    use super::*;

    #[test]
    fn client_results_survive_the_trip_through_json() {
        let cases = [
            ClientResult { samples_us: vec![], failures: 20 },
            ClientResult { samples_us: vec![71.5, 80.25, 9000.0], failures: 1 },
        ];
        for case in cases {
            let text = serde_json::to_string(&case).unwrap();
            assert_eq!(serde_json::from_str::<ClientResult>(&text).unwrap(), case);
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.50), Some(50.0));
        assert_eq!(percentile(&samples, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn a_percentile_interval_holds_the_percentile_and_narrows_with_more_samples() {
        let ranks = |n: usize| (1..=n).map(|i| i as f64).collect::<Vec<_>>();
        let [low, high] = percentile_interval(&ranks(10_000), 0.99, QUANTILE_Z).unwrap();
        // n·q = 9,900, spread 1.96 · √99 ≈ 19.5.
        assert_eq!((low, high), (9880.0, 9921.0));
        let [wide_low, wide_high] = percentile_interval(&ranks(1_000), 0.99, QUANTILE_Z).unwrap();
        assert!(wide_low <= 990.0 && 990.0 <= wide_high);
        assert!((wide_high - wide_low) / 1_000.0 > (high - low) / 10_000.0);
        // Too few samples for a tail: the interval reaches the largest sample.
        assert_eq!(percentile_interval(&ranks(10), 0.99, QUANTILE_Z), Some([9.0, 10.0]));
        assert_eq!(percentile_interval(&[], 0.99, QUANTILE_Z), None);
    }

    fn point_with(p99: f64, per_round: &[f64]) -> LatencyPoint {
        LatencyPoint {
            peer: Peer::Switchyard,
            path: LatencyPath::PodToClusterIp,
            services: 1,
            connections: 1,
            failures: 0,
            p50_us: Some(p99 / 2.0),
            p99_us: Some(p99),
            p99_interval_us: Some([p99, p99]),
            p99_per_round_us: per_round.iter().copied().map(Some).collect(),
            mean_us: None,
            retransmitted_segments: Some(0),
            error: None,
        }
    }

    #[test]
    fn a_p99_ratio_is_within_a_tolerance_only_when_its_rounds_say_so() {
        let small = point_with(100.0, &[100.0; 20]);
        // Round by round 1.00–1.03: the median's interval is inside 0.95–1.05.
        let steady: Vec<f64> = (0..20).map(|i| 100.0 + f64::from(i % 4)).collect();
        let close = P99Ratio::of(&point_with(102.0, &steady), &small).unwrap();
        assert_eq!((close.rounds, close.within(0.05)), (20, Some(true)));
        assert!((close.pooled - 1.02).abs() < 1e-12);
        let slow: Vec<f64> = (0..20).map(|i| 115.0 + f64::from(i % 5)).collect();
        let far = P99Ratio::of(&point_with(117.0, &slow), &small).unwrap();
        assert_eq!(far.within(0.05), Some(false));
        // Rounds that scatter 0.90–1.19: no claim either way.
        let scattered: Vec<f64> = (0..20).map(|i| 90.0 + 1.5 * f64::from(i * 7 % 20)).collect();
        let unsure = P99Ratio::of(&point_with(104.0, &scattered), &small).unwrap();
        assert_eq!(unsure.within(0.05), None);
        assert!(unsure.low <= unsure.round_median && unsure.round_median <= unsure.high);
    }

    #[test]
    fn a_round_without_samples_is_left_out_of_the_ratio() {
        let mut large = point_with(100.0, &[100.0, 100.0, 100.0]);
        large.p99_per_round_us[1] = None;
        let ratio = P99Ratio::of(&large, &point_with(100.0, &[100.0, 50.0, 100.0])).unwrap();
        assert_eq!((ratio.rounds, ratio.low, ratio.high), (2, 1.0, 1.0));
    }
}
