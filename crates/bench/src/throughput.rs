//! Item 3: forwarding throughput. Small UDP packets from an external client namespace to a
//! NodePort on node 1, forwarded (DNAT + masquerade) to a pod on node 2; the rate the pod
//! receives, and the CPU the sending and receiving threads used.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_lab::{Lab, LabOptions, NodeSpec, Topology};

use crate::error::BenchError;
use crate::latency::{apply, clear};
use crate::netns::Netns;
use crate::programming::Peer;
use crate::state::{Endpoint, NodeConfig, Protocol};
use crate::synthetic::{self, Shape};

const SERVER_POD: &str = "tp-server";
const CLIENT: &str = "tp-client";
const SERVER_PORT: u16 = 9000;
/// NodePort of the measured Service (outside the synthetic Services' 30000+ range at 1,000).
const NODE_PORT: u16 = 32000;
/// Payload of every packet: 18 bytes makes a 64-byte Ethernet frame.
const PAYLOAD: [u8; 18] = [0x5a; 18];

/// Packets per second one peer forwarded, and CPU spent.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputPoint {
    pub peer: Peer,
    pub services: usize,
    pub seconds: f64,
    pub sent: u64,
    pub received: u64,
    pub received_per_second: f64,
    /// CPU time of the sending thread (its system time includes forwarding the kernel did in
    /// its context: veth transmit runs the receive path on the same CPU).
    pub sender_cpu_seconds: f64,
    pub receiver_cpu_seconds: f64,
    pub error: Option<String>,
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

/// Runs the throughput measurement for each peer in a lab of its own.
pub fn run(
    peers: &[Peer],
    services: usize,
    duration: Duration,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<ThroughputPoint>, BenchError> {
    let lab_error = |e: switchyard_lab::LabError| BenchError::Lab(e.to_string());
    let topology = Topology {
        nodes: vec![
            NodeSpec { name: "node1".into(), pods: Vec::new() },
            NodeSpec { name: "node2".into(), pods: vec![SERVER_POD.into()] },
        ],
        clients: vec![CLIENT.into()],
    };
    let lab = Lab::up_with(&topology, &LabOptions::default()).map_err(lab_error)?;
    let node = lab.node("node1").map_err(lab_error)?.clone();
    let server_ip = lab.pod(SERVER_POD).map_err(lab_error)?.ipv4;
    let node_ns = Netns::existing(node.netns.clone());
    let config = NodeConfig {
        cluster_cidr: "10.244.0.0/16".into(),
        node_ip: node.ipv4,
        ..NodeConfig::default()
    };
    let mut state = synthetic::cluster(Shape { services, endpoints_per_service: 1 });
    if let Some(last) = state.services.last_mut() {
        last.protocol = Protocol::Udp;
        last.node_port = Some(NODE_PORT);
        last.endpoints = vec![Endpoint { ip: server_ip, port: SERVER_PORT }];
    }
    let target = SocketAddr::V4(SocketAddrV4::new(node.ipv4, NODE_PORT));

    let mut points = Vec::new();
    for &peer in peers {
        if peer == Peer::Switchyard {
            log("throughput switchyard: data plane not available yet");
            points.push(ThroughputPoint {
                peer,
                services,
                seconds: 0.0,
                sent: 0,
                received: 0,
                received_per_second: 0.0,
                sender_cpu_seconds: 0.0,
                receiver_cpu_seconds: 0.0,
                error: Some("Switchyard data plane not available yet".into()),
            });
            continue;
        }
        apply(peer, &node_ns, &config, &state)?;
        let receiver = lab
            .run_in(SERVER_POD, || -> std::io::Result<UdpSocket> {
                let socket =
                    UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT))?;
                socket.set_read_timeout(Some(Duration::from_millis(300)))?;
                Ok(socket)
            })
            .map_err(lab_error)?
            .map_err(|e| BenchError::Lab(format!("binding the UDP sink in {SERVER_POD}: {e}")))?;
        let stop = AtomicBool::new(false);
        let (sent_tx, sent_rx) = mpsc::channel();
        let (received, receiver_cpu) = std::thread::scope(|scope| {
            let counter = scope.spawn(|| count(&receiver, &stop));
            let sent = lab.run_in(CLIENT, || blast(target, duration));
            stop.store(true, Ordering::SeqCst);
            let _ = sent_tx.send(sent);
            counter.join().unwrap_or_default()
        });
        let point = match sent_rx.recv() {
            Ok(Ok(Ok((sent, sender_cpu)))) => ThroughputPoint {
                peer,
                services,
                seconds: duration.as_secs_f64(),
                sent,
                received,
                received_per_second: received as f64 / duration.as_secs_f64(),
                sender_cpu_seconds: sender_cpu.as_secs_f64(),
                receiver_cpu_seconds: receiver_cpu.as_secs_f64(),
                error: (received == 0).then(|| "nothing arrived".to_string()),
            },
            Ok(Ok(Err(error))) => failed(peer, services, format!("sending: {error}")),
            Ok(Err(error)) => failed(peer, services, error.to_string()),
            Err(error) => failed(peer, services, error.to_string()),
        };
        log(&format!(
            "throughput {:<16} {} Services: {:.0} packets/s received ({} sent, {} received), sender CPU {:.2} s, receiver CPU {:.2} s",
            peer.label(),
            services,
            point.received_per_second,
            point.sent,
            point.received,
            point.sender_cpu_seconds,
            point.receiver_cpu_seconds
        ));
        points.push(point);
        clear(peer, &node_ns)?;
    }
    Ok(points)
}

fn failed(peer: Peer, services: usize, error: String) -> ThroughputPoint {
    ThroughputPoint {
        peer,
        services,
        seconds: 0.0,
        sent: 0,
        received: 0,
        received_per_second: 0.0,
        sender_cpu_seconds: 0.0,
        receiver_cpu_seconds: 0.0,
        error: Some(error),
    }
}
