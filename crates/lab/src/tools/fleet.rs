//! Many long-lived flows at once (TCP connections and connected UDP sockets to the echo
//! servers), each doing one round trip per round, counted: the measure of "nothing reset,
//! nothing stalled" while directors or nodes come and go (issue 17's lab counts).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::clients::{connect, connected_udp, parse_reply};

/// What the flows saw from the first round to the last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReport {
    /// TCP connections and UDP flows that were opened (and answered their first round trip).
    pub tcp: usize,
    pub udp: usize,
    /// Flows that could not be opened or never answered at the start (the counts below are
    /// about the others).
    pub failed_to_open: usize,
    /// Rounds completed and round trips answered in them.
    pub rounds: usize,
    pub round_trips: u64,
    /// TCP connections reset or closed by the far end.
    pub resets: usize,
    /// Round trips not answered within the stall time: a TCP answer that came later, a UDP
    /// datagram never answered (counted once per round trip).
    pub stalls: usize,
    /// Of the stalls, UDP datagrams never answered (lost on the way: nothing retransmits them).
    #[serde(default)]
    pub udp_lost: usize,
    /// TCP connections given up (no answer within five stall times after a stall) or failing
    /// with another error.
    pub dead: usize,
    /// Flows answered by another backend than at the start (a moved TCP connection would have
    /// been reset by its new backend; a moved UDP flow reached another pod).
    pub moved: usize,
    /// The slowest answered round trip, in milliseconds.
    pub max_round_trip_ms: u64,
}

struct TcpFlow {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    backend: String,
    alive: bool,
    moved: bool,
}

struct UdpFlow {
    socket: UdpSocket,
    backend: String,
    moved: bool,
}

/// Opens `tcp` connections and `udp` connected sockets to each of `targets`, then runs rounds
/// (every flow one round trip, then `pause`) until `done()` says so (checked after each round).
/// A round trip slower than `stall` is a stall.
pub fn fleet(
    targets: &[SocketAddr],
    tcp: usize,
    udp: usize,
    stall: Duration,
    pause: Duration,
    mut done: impl FnMut() -> bool,
) -> FleetReport {
    let mut report = FleetReport::default();
    let mut tcp_flows = Vec::new();
    let mut udp_flows = Vec::new();
    for target in targets {
        for _ in 0..tcp {
            match open_tcp(*target, stall) {
                Ok(flow) => tcp_flows.push(flow),
                Err(_) => report.failed_to_open += 1,
            }
        }
        for _ in 0..udp {
            match open_udp(*target, stall) {
                Ok(flow) => udp_flows.push(flow),
                Err(_) => report.failed_to_open += 1,
            }
        }
    }
    report.tcp = tcp_flows.len();
    report.udp = udp_flows.len();
    let mut sequence = 0u64;
    loop {
        for flow in tcp_flows.iter_mut().filter(|f| f.alive) {
            sequence += 1;
            let started = Instant::now();
            match tcp_round_trip(flow, sequence) {
                Ok((backend, stalled)) => {
                    report.round_trips += 1;
                    report.stalls += usize::from(stalled);
                    note_backend(&mut flow.backend, &mut flow.moved, backend);
                    report.max_round_trip_ms = report.max_round_trip_ms.max(millis(started));
                }
                Err(err) => {
                    flow.alive = false;
                    if matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::BrokenPipe
                            | io::ErrorKind::ConnectionAborted
                    ) {
                        report.resets += 1;
                    } else {
                        report.stalls += 1;
                        report.dead += 1;
                    }
                }
            }
        }
        for flow in &mut udp_flows {
            sequence += 1;
            let started = Instant::now();
            match udp_round_trip(&flow.socket, sequence, stall) {
                Ok(backend) => {
                    report.round_trips += 1;
                    note_backend(&mut flow.backend, &mut flow.moved, backend);
                    report.max_round_trip_ms = report.max_round_trip_ms.max(millis(started));
                }
                Err(_) => {
                    report.stalls += 1;
                    report.udp_lost += 1;
                }
            }
        }
        report.rounds += 1;
        if done() {
            break;
        }
        std::thread::sleep(pause);
    }
    report.moved =
        tcp_flows.iter().filter(|f| f.moved).count() + udp_flows.iter().filter(|f| f.moved).count();
    report
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn note_backend(first: &mut String, moved: &mut bool, backend: String) {
    if *first != backend {
        *moved = true;
    }
}

fn open_tcp(target: SocketAddr, stall: Duration) -> io::Result<TcpFlow> {
    let (stream, _) = connect(target, stall)?;
    stream.set_read_timeout(Some(stall))?;
    let mut flow = TcpFlow {
        writer: stream.try_clone()?,
        reader: BufReader::new(stream),
        backend: String::new(),
        alive: true,
        moved: false,
    };
    let (backend, _) = tcp_round_trip(&mut flow, 0)?;
    flow.backend = backend;
    Ok(flow)
}

fn open_udp(target: SocketAddr, stall: Duration) -> io::Result<UdpFlow> {
    let socket = connected_udp(target, stall)?;
    let backend = udp_round_trip(&socket, 0, stall)?;
    Ok(UdpFlow { socket, backend, moved: false })
}

/// One request line and its answer: the backend, and whether it took longer than the socket's
/// read timeout (the stall time). Waits up to five stall times before giving up.
fn tcp_round_trip(flow: &mut TcpFlow, sequence: u64) -> io::Result<(String, bool)> {
    flow.writer.write_all(format!("ping {sequence}\n").as_bytes())?;
    let mut line = Vec::new();
    let mut waits = 0;
    loop {
        match flow.reader.read_until(b'\n', &mut line) {
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "closed by peer"));
            }
            Ok(_) if line.ends_with(b"\n") => break,
            Ok(_) => {}
            Err(err)
                if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                waits += 1;
                if waits >= 5 {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"));
                }
            }
            Err(err) => return Err(err),
        }
    }
    let reply = parse_reply(&String::from_utf8_lossy(&line))?;
    Ok((reply.backend, waits > 0))
}

/// One datagram and its answer within `stall` (late answers to earlier datagrams are skipped).
fn udp_round_trip(socket: &UdpSocket, sequence: u64, stall: Duration) -> io::Result<String> {
    let request = format!("ping {sequence}");
    socket.send(request.as_bytes())?;
    let deadline = Instant::now() + stall;
    let mut buf = vec![0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"));
        }
        socket.set_read_timeout(Some(left))?;
        let len = socket.recv(&mut buf)?;
        let reply = parse_reply(&String::from_utf8_lossy(&buf[..len]))?;
        if reply.echo.trim() == request {
            return Ok(reply.backend);
        }
    }
}
