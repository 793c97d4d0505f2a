//! Item 3: forwarding throughput. Small UDP packets from an external client namespace to a
//! NodePort on node 1, forwarded (DNAT + SNAT) to a pod on node 2; the rate the pod receives,
//! and the CPU the sending and receiving threads used. Measured for each peer's ruleset, for
//! Switchyard's TC programs, and for the kernel's own forwarding of the same traffic without any
//! of them (addressed straight to the pod, routed through node 1, no rules): the baseline.
//!
//! Every round brings up a lab of its own (so netfilter hooks a peer's tables leave registered
//! in node 1's namespace cannot slow the next one down) and measures every forwarder once, in
//! [`Forwarder::ALL`]'s order; the figures are medians over rounds.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard_error::ErrorChain;
use switchyard_lab::{Lab, LabOptions, NodeSpec, Topology};

use crate::error::BenchError;
use crate::latency::{apply, clear, percentile};
use crate::netns::Netns;
use crate::programming::Peer;
use crate::state::{DesiredState, Endpoint, NodeConfig, Protocol};
use crate::switchyard;
use crate::synthetic::{self, Shape};

const SERVER_POD: &str = "tp-server";
const CLIENT: &str = "tp-client";
const ROUTER: &str = "fabric";
const SERVER_PORT: u16 = 9000;
/// NodePort of the measured Service (outside the synthetic Services' 30000+ range at 1,000).
const NODE_PORT: u16 = 32000;
/// Payload of every packet: 18 bytes makes a 64-byte Ethernet frame.
const PAYLOAD: [u8; 18] = [0x5a; 18];
/// Routing table and rule priority in the router for the baseline's detour through node 1.
const BASELINE_TABLE: &str = "100";
const BASELINE_PRIORITY: &str = "100";

/// What forwards the packets on node 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forwarder {
    /// No rules, no programs: the client sends to the pod's address and the router sends that
    /// through node 1, which routes it on (the same hops as the NodePort path, without NAT).
    KernelForwarding,
    /// Switchyard's per-packet programs at TC on node 1's uplink (NodePort, SNAT).
    SwitchyardTc,
    /// kube-proxy nftables mode.
    Nftables,
    /// kube-proxy iptables mode, nf_tables backend.
    IptablesNft,
    /// kube-proxy iptables mode, legacy backend.
    IptablesLegacy,
}

impl Forwarder {
    /// Measurement order within a round: nothing first, then what leaves nothing behind.
    pub const ALL: [Forwarder; 5] = [
        Forwarder::KernelForwarding,
        Forwarder::SwitchyardTc,
        Forwarder::Nftables,
        Forwarder::IptablesNft,
        Forwarder::IptablesLegacy,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::KernelForwarding => "kernel forwarding",
            Self::SwitchyardTc => "switchyard TC",
            Self::Nftables => "nftables",
            Self::IptablesNft => "iptables-nft",
            Self::IptablesLegacy => "iptables-legacy",
        }
    }

    /// The kube-proxy peer whose ruleset this is, if any.
    pub fn peer(self) -> Option<Peer> {
        match self {
            Self::Nftables => Some(Peer::Nftables),
            Self::IptablesNft => Some(Peer::IptablesNft),
            Self::IptablesLegacy => Some(Peer::IptablesLegacy),
            Self::KernelForwarding | Self::SwitchyardTc => None,
        }
    }
}

/// One sample: packets one forwarder passed in one round, and the CPU spent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputPoint {
    pub forwarder: Forwarder,
    pub round: usize,
    pub services: usize,
    pub seconds: f64,
    pub sent: u64,
    pub received: u64,
    pub received_per_second: f64,
    /// CPU time of the sending thread (its system time includes forwarding the kernel did in
    /// its context: veth transmit runs the receive path on the same CPU).
    pub sender_cpu_seconds: f64,
    pub receiver_cpu_seconds: f64,
    /// Packets node 1 passed on during the sample, as node 1 counts them: `Ip.ForwDatagrams`
    /// (the kernel's IP forwarding) for the kernel baseline and the peers; for Switchyard the TC
    /// program's own counters of translated packets (`DnatSnat` + `CtHit`), since it redirects
    /// translated packets itself and they bypass IP forwarding. A sample in which fewer passed
    /// node 1 than arrived is an error (the traffic took another path).
    pub node1_forwarded: u64,
    /// `/proc/loadavg`'s 1-minute figure right after the sample.
    pub load_1m: f64,
    pub error: Option<String>,
}

impl ThroughputPoint {
    /// Packets received per CPU second of the two threads.
    pub fn per_cpu_second(&self) -> f64 {
        self.received as f64 / (self.sender_cpu_seconds + self.receiver_cpu_seconds).max(1e-9)
    }
}

/// Medians over the rounds of one forwarder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputSummary {
    pub forwarder: Forwarder,
    pub samples: usize,
    pub median_received_per_second: Option<f64>,
    pub median_per_cpu_second: Option<f64>,
    pub min_received_per_second: Option<f64>,
    pub max_received_per_second: Option<f64>,
}

/// Medians of the successful samples of every forwarder that has any.
pub fn summarize(points: &[ThroughputPoint]) -> Vec<ThroughputSummary> {
    Forwarder::ALL
        .iter()
        .filter(|f| points.iter().any(|p| p.forwarder == **f))
        .map(|&forwarder| {
            let ok: Vec<&ThroughputPoint> =
                points.iter().filter(|p| p.forwarder == forwarder && p.error.is_none()).collect();
            let sorted = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v
            };
            let pps = sorted(ok.iter().map(|p| p.received_per_second).collect());
            let per_cpu = sorted(ok.iter().map(|p| p.per_cpu_second()).collect());
            ThroughputSummary {
                forwarder,
                samples: ok.len(),
                median_received_per_second: percentile(&pps, 0.5),
                median_per_cpu_second: percentile(&per_cpu, 0.5),
                min_received_per_second: pps.first().copied(),
                max_received_per_second: pps.last().copied(),
            }
        })
        .collect()
}

/// What a throughput run does.
#[derive(Debug, Clone)]
pub struct ThroughputPlan {
    pub forwarders: Vec<Forwarder>,
    pub services: usize,
    pub duration: Duration,
    pub rounds: usize,
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage only writes into the zero-initialised struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Sends as fast as one thread can for `duration`; returns packets sent and the thread's CPU.
fn blast(target: SocketAddr, duration: Duration) -> std::io::Result<(u64, Duration)> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(target)?;
    let cpu = thread_cpu();
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < duration {
        for _ in 0..64 {
            // Drops on a full queue are part of what is measured.
            if socket.send(&PAYLOAD).is_ok() {
                sent += 1;
            }
        }
    }
    Ok((sent, thread_cpu().saturating_sub(cpu)))
}

/// Counts packets until `stop` is set and the socket has been quiet for a moment.
fn count(socket: &UdpSocket, stop: &AtomicBool) -> (u64, Duration) {
    let cpu = thread_cpu();
    let mut received = 0u64;
    let mut buffer = [0u8; 2048];
    loop {
        match socket.recv(&mut buffer) {
            Ok(_) => received += 1,
            Err(_) if stop.load(Ordering::SeqCst) => break,
            Err(_) => {}
        }
    }
    (received, thread_cpu().saturating_sub(cpu))
}

fn load_1m() -> f64 {
    crate::machine::load_average()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// One round's lab: the client, node 1 (the forwarder) and the pod on node 2.
struct RoundLab {
    lab: Lab,
    node: switchyard_lab::NodeInfo,
    client: switchyard_lab::ClientInfo,
    server_ip: Ipv4Addr,
    state: DesiredState,
    config: NodeConfig,
}

fn lab_error(e: switchyard_lab::LabError) -> BenchError {
    BenchError::Lab(e.to_string())
}

impl RoundLab {
    fn up(services: usize) -> Result<Self, BenchError> {
        let topology = Topology {
            nodes: vec![
                NodeSpec { name: "node1".into(), pods: Vec::new() },
                NodeSpec { name: "node2".into(), pods: vec![SERVER_POD.into()] },
            ],
            clients: vec![CLIENT.into()],
            directors: Vec::new(),
        };
        let lab = Lab::up_with(&topology, &LabOptions::default()).map_err(lab_error)?;
        let node = lab.node("node1").map_err(lab_error)?.clone();
        let client = lab.client(CLIENT).map_err(lab_error)?.clone();
        let server_ip = lab.pod(SERVER_POD).map_err(lab_error)?.ipv4;
        let config = NodeConfig {
            cluster_cidr: "10.244.0.0/16".into(),
            node_ip: node.ipv4,
            ..NodeConfig::default()
        };
        Ok(Self {
            lab,
            node,
            client,
            server_ip,
            state: nodeport_state(services, server_ip),
            config,
        })
    }

    fn router(&self) -> Result<Netns, BenchError> {
        Ok(Netns::existing(self.lab.netns_of(ROUTER).map_err(lab_error)?))
    }

    /// The baseline's route: the router sends what the client addresses to the pod through
    /// node 1 (a policy rule on the client's link only, so node 1's own forwarding of it still
    /// takes the router's ordinary route to node 2).
    fn detour_through_node1(&self, on: bool) -> Result<(), BenchError> {
        let router = self.router()?;
        let pod = format!("{}/32", self.server_ip);
        let via = self.node.ipv4.to_string();
        let client_link = self.client.router_link.as_str();
        if on {
            router
                .output("ip", &["route", "replace", &pod, "via", &via, "table", BASELINE_TABLE])?;
            router.output(
                "ip",
                &[
                    "rule",
                    "add",
                    "priority",
                    BASELINE_PRIORITY,
                    "iif",
                    client_link,
                    "to",
                    &pod,
                    "lookup",
                    BASELINE_TABLE,
                ],
            )?;
        } else {
            router.output("ip", &["rule", "del", "priority", BASELINE_PRIORITY])?;
            router.output("ip", &["route", "flush", "table", BASELINE_TABLE])?;
        }
        Ok(())
    }

    /// Sets node 1 up for `forwarder`, measures, and takes it down again. The Switchyard
    /// programs are detached and unpinned when `_programmed` drops, also on failure.
    fn measure(
        &self,
        forwarder: Forwarder,
        round: usize,
        duration: Duration,
    ) -> Result<ThroughputPoint, BenchError> {
        let node_ns = Netns::existing(self.node.netns.clone());
        let node_port = SocketAddr::V4(SocketAddrV4::new(self.node.ipv4, NODE_PORT));
        let mut _programmed = None;
        let target = match forwarder {
            Forwarder::KernelForwarding => {
                self.detour_through_node1(true)?;
                SocketAddr::V4(SocketAddrV4::new(self.server_ip, SERVER_PORT))
            }
            Forwarder::SwitchyardTc => {
                _programmed = Some(switchyard::load_packet_path(
                    &self.state,
                    self.node.ipv4,
                    &self.node.netns,
                    &self.node.uplink,
                    "sybench-tp",
                )?);
                node_port
            }
            peer => {
                let peer = peer.peer().ok_or_else(|| BenchError::Lab("no peer".into()))?;
                apply(peer, &node_ns, &self.config, &self.state)?;
                node_port
            }
        };
        let passed = || -> Result<u64, BenchError> {
            match &_programmed {
                Some(programmed) => translated_by(programmed),
                None => self.forwarded_by_node1(),
            }
        };
        let measured = self.sample(forwarder, round, target, duration, &passed);
        match forwarder {
            Forwarder::KernelForwarding => self.detour_through_node1(false)?,
            Forwarder::SwitchyardTc => drop(_programmed.take()),
            peer => {
                if let Some(peer) = peer.peer() {
                    clear(peer, &node_ns)?;
                }
            }
        }
        measured
    }

    fn forwarded_by_node1(&self) -> Result<u64, BenchError> {
        let counters = self.lab.ip_counters("node1").map_err(lab_error)?;
        Ok(counters.get("Ip.ForwDatagrams").copied().unwrap_or(0))
    }

    fn sample(
        &self,
        forwarder: Forwarder,
        round: usize,
        target: SocketAddr,
        duration: Duration,
        passed: &dyn Fn() -> Result<u64, BenchError>,
    ) -> Result<ThroughputPoint, BenchError> {
        let services = self.state.services.len();
        let receiver = self
            .lab
            .run_in(SERVER_POD, || -> std::io::Result<UdpSocket> {
                let socket =
                    UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT))?;
                socket.set_read_timeout(Some(Duration::from_millis(300)))?;
                Ok(socket)
            })
            .map_err(lab_error)?
            .map_err(|e| BenchError::Lab(format!("binding the UDP sink in {SERVER_POD}: {e}")))?;
        let forwarded_before = passed()?;
        let stop = AtomicBool::new(false);
        let (sent_tx, sent_rx) = mpsc::channel();
        let (received, receiver_cpu) = std::thread::scope(|scope| {
            let counter = scope.spawn(|| count(&receiver, &stop));
            let sent = self.lab.run_in(CLIENT, || blast(target, duration));
            stop.store(true, Ordering::SeqCst);
            let _ = sent_tx.send(sent);
            counter.join().unwrap_or_default()
        });
        let node1_forwarded = passed()?.saturating_sub(forwarded_before);
        let point = match sent_rx.recv() {
            Ok(Ok(Ok((sent, sender_cpu)))) => {
                let error = if received == 0 {
                    Some("nothing arrived".to_string())
                } else if node1_forwarded < received {
                    Some(format!(
                        "only {node1_forwarded} of {received} received packets passed node 1"
                    ))
                } else {
                    None
                };
                ThroughputPoint {
                    forwarder,
                    round,
                    services,
                    seconds: duration.as_secs_f64(),
                    sent,
                    received,
                    received_per_second: received as f64 / duration.as_secs_f64(),
                    sender_cpu_seconds: sender_cpu.as_secs_f64(),
                    receiver_cpu_seconds: receiver_cpu.as_secs_f64(),
                    node1_forwarded,
                    load_1m: load_1m(),
                    error,
                }
            }
            Ok(Ok(Err(error))) => failed(forwarder, round, services, format!("sending: {error}")),
            Ok(Err(error)) => failed(forwarder, round, services, error.to_string()),
            Err(error) => failed(forwarder, round, services, error.to_string()),
        };
        Ok(point)
    }
}

/// Packets Switchyard's TC program translated (new flows SNATed, and packets of known flows).
fn translated_by(programmed: &switchyard::Programmed) -> Result<u64, BenchError> {
    use switchyard_bpf::nodeport_abi::PacketReason;
    let packet = programmed
        .packet
        .as_ref()
        .ok_or_else(|| BenchError::Switchyard("per-packet programs not loaded".into()))?;
    let counters = packet.maps().counters().map_err(|e| {
        BenchError::Switchyard(format!("reading the TC counters: {}", ErrorChain(&e)))
    })?;
    Ok([PacketReason::DnatSnat, PacketReason::CtHit]
        .iter()
        .filter_map(|r| counters.get(r))
        .map(|c| c.packets)
        .sum())
}

/// `services` synthetic Services (one endpoint each); the last one is the measured UDP
/// NodePort Service, whose one endpoint is the sink in the pod on node 2.
pub fn nodeport_state(services: usize, server_ip: Ipv4Addr) -> DesiredState {
    let mut state = synthetic::cluster(Shape { services, endpoints_per_service: 1 });
    if let Some(last) = state.services.last_mut() {
        last.protocol = Protocol::Udp;
        last.node_port = Some(NODE_PORT);
        last.endpoints = vec![Endpoint { ip: server_ip, port: SERVER_PORT }];
    }
    state
}

/// Runs `plan.rounds` rounds, each in a lab of its own, every forwarder once per round.
pub fn run(
    plan: &ThroughputPlan,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<ThroughputPoint>, BenchError> {
    let mut points = Vec::new();
    for round in 0..plan.rounds {
        let lab = RoundLab::up(plan.services)?;
        for &forwarder in &plan.forwarders {
            let point = lab
                .measure(forwarder, round, plan.duration)
                .unwrap_or_else(|error| failed(forwarder, round, plan.services, error.to_string()));
            log(&describe(&point));
            points.push(point);
        }
        drop(lab);
    }
    Ok(points)
}

fn describe(p: &ThroughputPoint) -> String {
    match &p.error {
        Some(error) => format!(
            "throughput round {} {:<17} {} Services: {error}",
            p.round,
            p.forwarder.label(),
            p.services
        ),
        None => format!(
            "throughput round {} {:<17} {} Services: {:.0} packets/s received ({} sent, {} received, node 1 forwarded {}), sender CPU {:.2} s, receiver CPU {:.2} s, load {:.1}",
            p.round,
            p.forwarder.label(),
            p.services,
            p.received_per_second,
            p.sent,
            p.received,
            p.node1_forwarded,
            p.sender_cpu_seconds,
            p.receiver_cpu_seconds,
            p.load_1m
        ),
    }
}

fn failed(forwarder: Forwarder, round: usize, services: usize, error: String) -> ThroughputPoint {
    ThroughputPoint {
        forwarder,
        round,
        services,
        seconds: 0.0,
        sent: 0,
        received: 0,
        received_per_second: 0.0,
        sender_cpu_seconds: 0.0,
        receiver_cpu_seconds: 0.0,
        node1_forwarded: 0,
        load_1m: load_1m(),
        error: Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(forwarder: Forwarder, round: usize, pps: f64, error: Option<&str>) -> ThroughputPoint {
        ThroughputPoint {
            forwarder,
            round,
            services: 10,
            seconds: 1.0,
            sent: pps as u64 * 2,
            received: pps as u64,
            received_per_second: pps,
            sender_cpu_seconds: 0.5,
            receiver_cpu_seconds: 0.5,
            node1_forwarded: pps as u64,
            load_1m: 1.0,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn summaries_take_medians_of_successful_rounds_only() {
        let points = [
            point(Forwarder::KernelForwarding, 0, 100.0, None),
            point(Forwarder::KernelForwarding, 1, 300.0, None),
            point(Forwarder::KernelForwarding, 2, 200.0, None),
            point(Forwarder::SwitchyardTc, 0, 50.0, Some("nothing arrived")),
            point(Forwarder::SwitchyardTc, 1, 80.0, None),
        ];
        let summary = summarize(&points);
        assert_eq!(summary.len(), 2);
        assert_eq!(summary[0].forwarder, Forwarder::KernelForwarding);
        assert_eq!(summary[0].samples, 3);
        assert_eq!(summary[0].median_received_per_second, Some(200.0));
        assert_eq!(summary[0].min_received_per_second, Some(100.0));
        assert_eq!(summary[0].max_received_per_second, Some(300.0));
        assert_eq!(summary[0].median_per_cpu_second, Some(200.0));
        assert_eq!(summary[1].samples, 1);
        assert_eq!(summary[1].median_received_per_second, Some(80.0));
    }

    #[test]
    fn only_the_last_service_is_the_udp_node_port_to_the_sink() {
        let sink = Ipv4Addr::new(10, 244, 2, 2);
        let state = nodeport_state(30, sink);
        let last = state.services.last().expect("services");
        assert_eq!(last.protocol, Protocol::Udp);
        assert_eq!(last.node_port, Some(NODE_PORT));
        assert_eq!(last.endpoints, vec![Endpoint { ip: sink, port: SERVER_PORT }]);
        assert!(state.services.iter().rev().skip(1).all(|s| s.node_port != Some(NODE_PORT)));
    }
}
