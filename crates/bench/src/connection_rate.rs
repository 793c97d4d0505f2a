//! Item 3b: new connections per second through a NodePort.
//!
//! Several client threads in the external client's namespace open connections to node 1's
//! NodePort as fast as they can for a fixed time: connect, send one byte, read it back, wait for
//! the server's close. Every connection is new, so each one takes the data plane's first-packet
//! path (iptables: the linear walk of KUBE-SERVICES and KUBE-NODEPORTS; nftables: one map
//! lookup; Switchyard: the per-packet program at TC on node 1's uplink) and creates a conntrack
//! entry on node 1, DNAT plus SNAT to the echo server's pod on node 2.
//!
//! The client closes last and abortively (RST), so no TIME_WAIT is left on either side and each
//! peer starts from the same echo server.
//!
//! On veth, node 1's forwarding runs on the CPU of the thread that sent the packet, so the rate
//! is a whole-machine figure (clients, forwarder and server share two CPUs): only ratios between
//! peers measured in the same run mean anything. Retransmitted segments (the client's and the
//! server's namespaces, `/proc/net/snmp`) are counted, so a rate held down by drops shows.
//!
//! On a machine shared with other work the share of CPU a point gets drifts from one point to
//! the next, so two more things keep that out of the comparison: `rounds` (every peer measured
//! once per round, the ratios taken round by round, between points seconds apart), and the
//! process's own CPU time during each burst (clients and echo server are this process's
//! threads, and veth forwards in the sending thread's context, charged to it), which gives
//! connections per CPU second of the whole path, data plane included.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::BenchError;
use crate::latency::{self, NodePortLab, lab_error};
use crate::programming::Peer;
use crate::switchyard;

/// Long enough for one SYN retransmission (1 s): a dropped packet then shows as a slow
/// connection and a retransmitted segment, not as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection this slow waited for a retransmission (the data plane's own work is
/// microseconds).
const SLOW: Duration = Duration::from_millis(200);
/// The pods' names in the latency lab, whose namespaces' counters are read.
const CLIENT: &str = "lat-ext";
const SERVER: &str = "lat-server";

/// What one connection-rate run is asked to do.
#[derive(Debug, Clone)]
pub struct RatePlan {
    pub services: Vec<usize>,
    pub peers: Vec<Peer>,
    /// Client threads opening connections at once.
    pub clients: usize,
    pub seconds: f64,
    /// Switchyard's SNAT source ports, when not the default range (`--snat-port-range`).
    pub snat_ports: Option<std::ops::RangeInclusive<u16>>,
    /// Times every peer is measured at every size, peer after peer within a round.
    pub rounds: usize,
}

/// New connections per second for one peer at one number of Services.
#[derive(Debug, Clone, Serialize)]
pub struct RatePoint {
    pub peer: Peer,
    pub services: usize,
    /// Which round (from 0) measured this point.
    pub round: usize,
    pub connections: u64,
    pub failures: u64,
    /// Connections that took longer than 200 ms (they waited for a retransmission).
    pub slow: u64,
    pub seconds: f64,
    pub per_second: Option<f64>,
    /// CPU time (user + system) this process spent during the burst: clients, echo server and
    /// the forwarding their packets caused.
    pub cpu_seconds: Option<f64>,
    /// Connections per CPU second of [`RatePoint::cpu_seconds`].
    pub per_cpu_second: Option<f64>,
    /// TCP segments retransmitted in the client's and the server's namespaces meanwhile.
    pub retransmitted_segments: Option<u64>,
    /// Switchyard only: its per-packet counters that moved during the burst (reason, packets),
    /// drops included, so a stall can be told apart from the data plane's decisions.
    pub switchyard_counters: Vec<(String, u64)>,
    pub error: Option<String>,
}

/// Counts of one timed burst of connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Burst {
    pub connections: u64,
    pub failures: u64,
    pub slow: u64,
    pub seconds: f64,
    /// This process's CPU time over the burst (`getrusage(RUSAGE_SELF)`), `None` if unreadable.
    pub cpu_seconds: Option<f64>,
}

/// One connection: connect, one byte there and back, the server's close, then the client's
/// abortive close (RST), so neither side keeps the connection in TIME_WAIT: the next peer then
/// meets an echo server that remembers no earlier peer's tuples (with TIME_WAIT at the server,
/// a peer run after one that used many ports had its SYNs answered with ACKs of old
/// connections, and stalled).
fn one_connection(target: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    stream.write_all(&[1])?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    reset_on_close(&stream)
}

/// SO_LINGER with a zero timeout: close() sends RST instead of FIN.
fn reset_on_close(stream: &TcpStream) -> std::io::Result<()> {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a descriptor `stream` owns, with a pointer to a live `linger` of the
    // size passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// `clients` threads (spawned from the calling thread, so in its network namespace) open
/// connections to `target` until `duration` has passed.
pub fn burst(target: SocketAddr, clients: usize, duration: Duration) -> Burst {
    let connections = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let slow = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients.max(1) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    match one_connection(target) {
                        Ok(()) => connections.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                    };
                    if began.elapsed() >= SLOW {
                        slow.fetch_add(1, Ordering::Relaxed);
                    }
                    if started.elapsed() >= duration {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Burst {
        connections: connections.into_inner(),
        failures: failures.into_inner(),
        slow: slow.into_inner(),
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: process_cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| (after - before).max(0.0)),
    }
}

/// User plus system CPU time of this process, all threads, in seconds.
fn process_cpu_seconds() -> Option<f64> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
    Some(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// `RetransSegs` of the calling thread's network namespace (`/proc/thread-self/net/snmp`: the
/// thread's namespace, not the process's).
pub fn retransmitted_segments() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/thread-self/net/snmp")
        .map_err(|e| format!("reading /proc/thread-self/net/snmp: {e}"))?;
    retrans_segs(&text).ok_or_else(|| "no Tcp RetransSegs in /proc/net/snmp".into())
}

/// `RetransSegs` from the text of `/proc/net/snmp` (a `Tcp:` header line, then a `Tcp:` values
/// line).
pub fn retrans_segs(snmp: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let header = tcp.next()?;
    let values = tcp.next()?;
    let column = header.split_whitespace().position(|name| name == "RetransSegs")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

/// Retransmitted segments of the client and the server namespace together.
fn lab_retransmits(lab: &NodePortLab) -> Result<u64, BenchError> {
    let mut total = 0;
    for member in [CLIENT, SERVER] {
        total += lab
            .lab
            .run_in(member, retransmitted_segments)
            .map_err(lab_error)?
            .map_err(BenchError::Lab)?;
    }
    Ok(total)
}

/// Lets the client namespace use every port above 1024, so a peer's rate is never capped by
/// ephemeral ports (the server closes first, so TIME_WAIT stays on its side).
fn widen_client_ports(lab: &NodePortLab) -> Result<(), BenchError> {
    lab.lab
        .run_in(CLIENT, || {
            std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535")
                .map_err(|e| format!("widening the client's port range: {e}"))
        })
        .map_err(lab_error)?
        .map_err(BenchError::Lab)
}

/// Runs the plan in a lab of its own: every peer at every number of Services.
pub fn run(plan: &RatePlan, log: &mut dyn FnMut(&str)) -> Result<Vec<RatePoint>, BenchError> {
    let lab = NodePortLab::up(plan.clients, false)?;
    widen_client_ports(&lab)?;
    let duration = Duration::from_secs_f64(plan.seconds);
    let mut points = Vec::new();
    for round in 0..plan.rounds.max(1) {
        for &peer in &plan.peers {
            for &services in &plan.services {
                let state = latency::state_with_target(services, lab.server);
                let point =
                    point_of(peer, services, round, measure(&lab, peer, &state, plan, duration));
                log(&describe(&point));
                points.push(point);
            }
            latency::clear(peer, &lab.node_ns)?;
        }
    }
    Ok(points)
}

fn point_of(
    peer: Peer,
    services: usize,
    round: usize,
    measured: Result<Measured, BenchError>,
) -> RatePoint {
    match measured {
        Ok(Measured { burst, retransmits, switchyard_counters }) => RatePoint {
            peer,
            services,
            round,
            connections: burst.connections,
            failures: burst.failures,
            slow: burst.slow,
            seconds: burst.seconds,
            per_second: (burst.connections > 0).then(|| burst.connections as f64 / burst.seconds),
            cpu_seconds: burst.cpu_seconds,
            per_cpu_second: burst
                .cpu_seconds
                .filter(|&cpu| cpu > 0.0 && burst.connections > 0)
                .map(|cpu| burst.connections as f64 / cpu),
            retransmitted_segments: Some(retransmits),
            switchyard_counters,
            error: (burst.connections == 0)
                .then(|| format!("no connection got through ({} failed)", burst.failures)),
        },
        Err(error) => RatePoint {
            peer,
            services,
            round,
            connections: 0,
            failures: 0,
            slow: 0,
            seconds: 0.0,
            per_second: None,
            cpu_seconds: None,
            per_cpu_second: None,
            retransmitted_segments: None,
            switchyard_counters: Vec::new(),
            error: Some(error.to_string()),
        },
    }
}

/// One peer at one size: load its ruleset (Switchyard: the per-packet programs), warm up, then
/// the timed burst.
fn measure(
    lab: &NodePortLab,
    peer: Peer,
    state: &crate::state::DesiredState,
    plan: &RatePlan,
    duration: Duration,
) -> Result<Measured, BenchError> {
    let programmed = if peer == Peer::Switchyard {
        Some(switchyard::load_packet_path_with(
            state,
            lab.node.ipv4,
            &lab.node.netns,
            &lab.node.uplink,
            "sybench-rate",
            plan.snat_ports.clone(),
        )?)
    } else {
        latency::apply(peer, &lab.node_ns, &lab.config, state)?;
        None
    };
    let target = lab.node_port;
    let warm = lab.lab.run_in(CLIENT, || burst(target, 1, Duration::from_millis(200)));
    let warm = warm.map_err(lab_error)?;
    if warm.connections == 0 {
        return Err(BenchError::Lab(format!(
            "{target}: no connection got through while warming up ({} failed)",
            warm.failures
        )));
    }
    let counters_before = packet_counters(programmed.as_ref())?;
    let before = lab_retransmits(lab)?;
    let counted =
        lab.lab.run_in(CLIENT, || burst(target, plan.clients, duration)).map_err(lab_error)?;
    let retransmits = lab_retransmits(lab)?.saturating_sub(before);
    let moved = packet_counters(programmed.as_ref())?
        .into_iter()
        .filter_map(|(reason, after)| {
            let before = counters_before.iter().find(|(r, _)| *r == reason).map_or(0, |c| c.1);
            (after > before).then(|| (reason, after - before))
        })
        .collect();
    // Switchyard's programs are detached and unpinned here, before the next size or peer.
    drop(programmed);
    Ok(Measured { burst: counted, retransmits, switchyard_counters: moved })
}

/// What [`measure`] found for one peer at one size.
struct Measured {
    burst: Burst,
    retransmits: u64,
    switchyard_counters: Vec<(String, u64)>,
}

/// Switchyard's per-packet counters by reason name (none for the other peers).
fn packet_counters(
    programmed: Option<&switchyard::Programmed>,
) -> Result<Vec<(String, u64)>, BenchError> {
    let Some(packet) = programmed.and_then(|p| p.packet.as_ref()) else {
        return Ok(Vec::new());
    };
    let counters = packet.maps().counters().map_err(|e| {
        BenchError::Switchyard(format!("per-packet counters: {}", switchyard_error::ErrorChain(&e)))
    })?;
    Ok(counters.into_iter().map(|(reason, c)| (reason.name().to_owned(), c.packets)).collect())
}

fn describe(point: &RatePoint) -> String {
    match (point.per_second, &point.error) {
        (Some(rate), _) => format!(
            "connections round {} {:<16} {:>6} Services: {rate:.0}/s, {} per CPU s ({} in {:.1} s, {} failed, {} slower than 200 ms, {} segments retransmitted){}",
            point.round + 1,
            point.peer.label(),
            point.services,
            point.per_cpu_second.map_or_else(|| "?".into(), |r| format!("{r:.0}")),
            point.connections,
            point.seconds,
            point.failures,
            point.slow,
            point.retransmitted_segments.unwrap_or(0),
            if point.switchyard_counters.is_empty() {
                String::new()
            } else {
                format!("; counters {:?}", point.switchyard_counters)
            },
        ),
        (None, Some(error)) => {
            format!(
                "connections {:<16} {:>6} Services: {error}",
                point.peer.label(),
                point.services
            )
        }
        (None, None) => format!(
            "connections {:<16} {:>6} Services: no samples",
            point.peer.label(),
            point.services
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmitted_segments_are_read_by_column_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RtoMin ActiveOpens RetransSegs InErrs\n\
                    Tcp: 1 200 17 42 0\nUdp: InDatagrams\nUdp: 5\n";
        assert_eq!(retrans_segs(snmp), Some(42));
        assert_eq!(retrans_segs("Tcp: RtoAlgorithm\nTcp: 1\n"), None);
        assert_eq!(retrans_segs(""), None);
    }
}
