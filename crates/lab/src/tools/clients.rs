//! Clients for the built-in servers. Each returns serde structs: one per attempt plus a summary,
//! so tests assert on fields and the CLI prints JSON lines.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Reply;
use super::servers::canonical;

/// One request on its own connection (TCP, HTTP) or socket (UDP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// `tcp`, `udp` or `http`.
    pub kind: String,
    pub target: String,
    /// The server that answered, if any.
    pub backend: Option<String>,
    /// The client address as the server saw it.
    pub seen_as: Option<String>,
    /// The local address the client used.
    pub local: Option<String>,
    /// UDP: the source address of the reply (a socket-level load balancer must make this the
    /// address the client sent to).
    pub reply_from: Option<String>,
    /// Time to establish the connection (TCP, HTTP), or the round trip (UDP), in microseconds.
    pub micros: Option<u64>,
    /// HTTP: the response status and body (at most 4 KiB), whatever server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub error: Option<String>,
}

impl Attempt {
    pub(crate) fn new(kind: &str, target: SocketAddr) -> Self {
        Self {
            kind: kind.to_string(),
            target: target.to_string(),
            backend: None,
            seen_as: None,
            local: None,
            reply_from: None,
            micros: None,
            status: None,
            body: None,
            error: None,
        }
    }

    pub(crate) fn fail(mut self, err: &io::Error) -> Self {
        self.error = Some(error_name(err));
        self
    }
}

/// Error text that keeps the kind tests look for (`connection refused`, `timed out`, ...).
fn error_name(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        // An RST from the peer; the clients' own "closed by peer" (a FIN where a reply was
        // due) keeps its text, so a failure says which of the two ended the connection.
        io::ErrorKind::ConnectionReset if err.get_ref().is_none() => "connection reset".to_string(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_string(),
        _ => err.to_string(),
    }
}

/// Counts per backend and failures over a series of attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub kind: String,
    pub target: String,
    pub attempts: usize,
    pub backends: BTreeMap<String, usize>,
    pub errors: BTreeMap<String, usize>,
}

impl Summary {
    pub fn of(kind: &str, target: SocketAddr, attempts: &[Attempt]) -> Self {
        let mut summary = Summary {
            kind: format!("{kind}-summary"),
            target: target.to_string(),
            attempts: attempts.len(),
            ..Default::default()
        };
        for attempt in attempts {
            if let Some(backend) = &attempt.backend {
                *summary.backends.entry(backend.clone()).or_default() += 1;
            }
            if let Some(error) = &attempt.error {
                *summary.errors.entry(error.clone()).or_default() += 1;
            }
        }
        summary
    }

    pub fn successes(&self) -> usize {
        self.backends.values().sum()
    }
}

pub(crate) fn parse_reply(line: &str) -> io::Result<Reply> {
    serde_json::from_str(line.trim()).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}

pub(crate) fn connect(target: SocketAddr, timeout: Duration) -> io::Result<(TcpStream, Duration)> {
    let started = Instant::now();
    let stream = TcpStream::connect_timeout(&target, timeout)?;
    let elapsed = started.elapsed();
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok((stream, elapsed))
}

/// [`connect`] from a socket bound to `source` first, so its source is known at connect()
/// (loadBalancerSourceRanges are then checked by the call itself).
pub(crate) fn connect_from(
    source: IpAddr,
    target: SocketAddr,
    timeout: Duration,
) -> io::Result<(TcpStream, Duration)> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage};
    use std::os::fd::AsRawFd as _;
    let family = if source.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(SocketAddr::new(source, 0)))?;
    connect_socket(fd, target, timeout)
}

/// Connects the TCP socket `fd` (set up as the caller wants: bound, with options) to `target`,
/// giving up after `timeout`; the stream gets `timeout` for reads and writes too.
pub(crate) fn connect_socket(
    fd: std::os::fd::OwnedFd,
    target: SocketAddr,
    timeout: Duration,
) -> io::Result<(TcpStream, Duration)> {
    use nix::sys::socket::{self, SockaddrStorage, sockopt};
    use std::os::fd::AsRawFd as _;
    // A blocking connect() gives up after the send timeout.
    let limit = nix::sys::time::TimeVal::new(
        i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        i64::from(timeout.subsec_micros()),
    );
    socket::setsockopt(&fd, sockopt::SendTimeout, &limit)?;
    let started = Instant::now();
    socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(target)).map_err(|errno| {
        // EINPROGRESS here means the send timeout ran out.
        if errno == nix::errno::Errno::EINPROGRESS {
            io::Error::from(io::ErrorKind::TimedOut)
        } else {
            io::Error::from(errno)
        }
    })?;
    let elapsed = started.elapsed();
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok((stream, elapsed))
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Opens `count` TCP connections to an echo server, one request each.
pub fn tcp(target: SocketAddr, count: usize, timeout: Duration) -> Vec<Attempt> {
    tcp_from(None, target, count, timeout)
}

/// [`tcp`] from sockets bound to `source` (when given) before they connect.
pub fn tcp_from(
    source: Option<IpAddr>,
    target: SocketAddr,
    count: usize,
    timeout: Duration,
) -> Vec<Attempt> {
    (0..count).map(|i| tcp_once(source, target, i, timeout)).collect()
}

fn tcp_once(
    source: Option<IpAddr>,
    target: SocketAddr,
    sequence: usize,
    timeout: Duration,
) -> Attempt {
    let mut attempt = Attempt::new("tcp", target);
    let connected = match source {
        Some(source) => connect_from(source, target, timeout),
        None => connect(target, timeout),
    };
    let connected = match connected {
        Ok(connected) => connected,
        Err(err) => return attempt.fail(&err),
    };
    // Known from here on, so a request that fails names its connection too.
    attempt.local = connected.0.local_addr().ok().map(|a| canonical(a).to_string());
    tcp_exchange(connected, sequence, &attempt).unwrap_or_else(|err| attempt.fail(&err))
}

/// One request and its reply line over a connected stream: `attempt` filled in.
pub(crate) fn tcp_exchange(
    (mut stream, elapsed): (TcpStream, Duration),
    sequence: usize,
    attempt: &Attempt,
) -> io::Result<Attempt> {
    let mut attempt = attempt.clone();
    attempt.micros = Some(micros(elapsed));
    attempt.local = Some(canonical(stream.local_addr()?).to_string());
    stream.write_all(format!("request {sequence}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed without a reply"));
    }
    let reply = parse_reply(&line)?;
    attempt.backend = Some(reply.backend);
    attempt.seen_as = Some(reply.peer);
    Ok(attempt)
}

/// Sends `request` from `socket` to `target` (unconnected, like dig: the reply's source is
/// then checked by hand) and reads one reply: `attempt` filled in from its first line, and
/// the bytes after that line.
pub(crate) fn udp_exchange(
    socket: &UdpSocket,
    target: SocketAddr,
    request: &[u8],
    attempt: &Attempt,
) -> io::Result<(Attempt, Vec<u8>)> {
    let started = Instant::now();
    socket.send_to(request, target)?;
    let mut buf = vec![0u8; 65536];
    let (len, from) = socket.recv_from(&mut buf)?;
    let mut attempt = attempt.clone();
    attempt.micros = Some(micros(started.elapsed()));
    attempt.local = Some(socket.local_addr()?.to_string());
    attempt.reply_from = Some(canonical(from).to_string());
    let reply = &buf[..len];
    let (line, rest) = match reply.iter().position(|&b| b == b'\n') {
        Some(at) => (&reply[..at], &reply[at + 1..]),
        None => (reply, &[][..]),
    };
    let parsed = parse_reply(&String::from_utf8_lossy(line))?;
    attempt.backend = Some(parsed.backend);
    attempt.seen_as = Some(parsed.peer);
    Ok((attempt, rest.to_vec()))
}

/// Sends `count` UDP requests, each from a new socket (a new source port), and waits for replies.
pub fn udp(target: SocketAddr, count: usize, timeout: Duration) -> Vec<Attempt> {
    udp_from(None, target, count, timeout)
}

/// Sends `count` UDP datagrams of `bytes` bytes each (a request line, then a pattern that
/// differs per datagram), each from a new socket, and checks that the echo's reply carries the
/// pattern back whole: datagrams larger than the path MTU travel as IP fragments both ways.
/// An attempt whose pattern came back changed or cut fails with `payload mismatch`.
pub fn udp_large(
    target: SocketAddr,
    bytes: usize,
    count: usize,
    timeout: Duration,
) -> Vec<Attempt> {
    (0..count).map(|i| udp_large_once(target, bytes, i, timeout)).collect()
}

fn udp_large_once(target: SocketAddr, bytes: usize, sequence: usize, timeout: Duration) -> Attempt {
    let attempt = Attempt::new("udp", target);
    let result = (|| -> io::Result<Attempt> {
        let socket = UdpSocket::bind(unspecified(target))?;
        socket.set_read_timeout(Some(timeout))?;
        let mut request = format!("large {sequence}\n").into_bytes();
        let pattern: Vec<u8> = (0..bytes.saturating_sub(request.len()))
            .map(|i| b'a' + ((i + sequence) % 26) as u8)
            .collect();
        request.extend_from_slice(&pattern);
        let (attempt, rest) = udp_exchange(&socket, target, &request, &attempt)?;
        if rest != pattern {
            let error =
                format!("payload mismatch: {} of {} bytes came back", rest.len(), pattern.len());
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(attempt)
    })();
    result.unwrap_or_else(|err| attempt.fail(&err))
}

/// The unspecified address of `target`'s family, port 0.
fn unspecified(target: SocketAddr) -> SocketAddr {
    match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// [`udp`] from sockets bound to `source` (when given).
pub fn udp_from(
    source: Option<IpAddr>,
    target: SocketAddr,
    count: usize,
    timeout: Duration,
) -> Vec<Attempt> {
    (0..count).map(|i| udp_once(source, target, i, timeout)).collect()
}

fn udp_once(
    source: Option<IpAddr>,
    target: SocketAddr,
    sequence: usize,
    timeout: Duration,
) -> Attempt {
    let attempt = Attempt::new("udp", target);
    let result = (|| -> io::Result<Attempt> {
        let bind: SocketAddr = match (source, target) {
            (Some(source), _) => (source, 0).into(),
            (None, SocketAddr::V4(_)) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            (None, SocketAddr::V6(_)) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(bind)?;
        socket.set_read_timeout(Some(timeout))?;
        let request = format!("request {sequence}");
        Ok(udp_exchange(&socket, target, request.as_bytes(), &attempt)?.0)
    })();
    result.unwrap_or_else(|err| attempt.fail(&err))
}

/// Sends `count` HTTP GET requests for `path`, each on a new connection. A response that is not
/// 2xx counts as an error (`http status N`) but keeps its status and body.
pub fn http(target: SocketAddr, path: &str, count: usize, timeout: Duration) -> Vec<Attempt> {
    (0..count).map(|_| http_once(target, path, timeout)).collect()
}

/// Longest HTTP body kept in an [`Attempt`].
const MAX_BODY: usize = 4096;

fn http_once(target: SocketAddr, path: &str, timeout: Duration) -> Attempt {
    let attempt = Attempt::new("http", target);
    let result = (|| -> io::Result<Attempt> {
        let (mut stream, elapsed) = connect(target, timeout)?;
        let mut attempt = attempt.clone();
        attempt.micros = Some(micros(elapsed));
        attempt.local = Some(canonical(stream.local_addr()?).to_string());
        let request = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let response = String::from_utf8_lossy(&raw);
        let status_line = response.lines().next().unwrap_or_default();
        let status: u16 =
            status_line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or_else(
                || {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad status line {status_line:?}"),
                    )
                },
            )?;
        let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
        attempt.status = Some(status);
        attempt.body = Some(body.chars().take(MAX_BODY).collect());
        if let Ok(reply) = parse_reply(body) {
            attempt.backend = Some(reply.backend);
            attempt.seen_as = Some(reply.peer);
        }
        if !(200..300).contains(&status) {
            attempt.error = Some(format!("http status {status}"));
        }
        Ok(attempt)
    })();
    result.unwrap_or_else(|err| attempt.fail(&err))
}

/// Sends `count` requests over one connected UDP socket each (connect() then send(), as most
/// UDP applications do, which is where socket-level load balancing translates).
pub fn udp_connected(target: SocketAddr, count: usize, timeout: Duration) -> Vec<Attempt> {
    (0..count)
        .map(|i| {
            let attempt = Attempt::new("udp-connected", target);
            let result = (|| -> io::Result<Attempt> {
                let socket = connected_udp(target, timeout)?;
                let mut attempt = attempt.clone();
                attempt.local = Some(socket.local_addr()?.to_string());
                let started = Instant::now();
                let reply = udp_round_trip(&socket, &format!("request {i}"))?;
                attempt.micros = Some(micros(started.elapsed()));
                attempt.reply_from = Some(canonical(socket.peer_addr()?).to_string());
                attempt.backend = Some(reply.backend);
                attempt.seen_as = Some(reply.peer);
                Ok(attempt)
            })();
            result.unwrap_or_else(|err| attempt.fail(&err))
        })
        .collect()
}

pub(crate) fn connected_udp(target: SocketAddr, timeout: Duration) -> io::Result<UdpSocket> {
    connected_udp_from(0, target, timeout)
}

/// [`connected_udp`] from source port `port` (0: the kernel's choice).
fn connected_udp_from(port: u16, target: SocketAddr, timeout: Duration) -> io::Result<UdpSocket> {
    let bind: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, port).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, port).into(),
    };
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(target)?;
    Ok(socket)
}

fn udp_round_trip(socket: &UdpSocket, request: &str) -> io::Result<Reply> {
    socket.send(request.as_bytes())?;
    let mut buf = vec![0u8; 65536];
    let len = socket.recv(&mut buf)?;
    parse_reply(&String::from_utf8_lossy(&buf[..len]))
}

/// What a long-lived connected UDP socket saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpHoldReport {
    pub kind: String,
    pub target: String,
    /// The answering backend of every round trip that got one, in order.
    pub answers: Vec<String>,
    /// Failed round trips by error (`timed out`, `connection refused`, socket errors such as
    /// `Software caused connection abort` after the kernel destroyed the socket).
    pub errors: BTreeMap<String, usize>,
    /// Times the socket was re-created and re-connected after a socket error.
    pub reconnects: usize,
    /// The client's address of the first socket (its flow, for diagnosing a move); empty
    /// when none was made.
    #[serde(default)]
    pub local: String,
}

/// Keeps one connected UDP socket for `duration`, one round trip every `interval`. After a
/// socket error (not a timeout) it re-creates and re-connects the socket, as a resilient
/// application would, so a test sees both the error and where traffic went next.
pub fn udp_hold(
    target: SocketAddr,
    duration: Duration,
    interval: Duration,
    timeout: Duration,
) -> UdpHoldReport {
    let started = Instant::now();
    udp_hold_until(target, interval, timeout, || started.elapsed() >= duration)
}

/// [`udp_hold`] until `done` says so (checked before each round trip).
pub fn udp_hold_until(
    target: SocketAddr,
    interval: Duration,
    timeout: Duration,
    done: impl FnMut() -> bool,
) -> UdpHoldReport {
    udp_hold_from_until(0, target, interval, timeout, done)
}

/// [`udp_hold_until`] from source port `port` (0: the kernel's choice; a re-created socket
/// takes the same port). A test that holds flows one after another picks distinct ports: a
/// reused port is the same 5-tuple, and a node may still hold it from the earlier flow.
pub fn udp_hold_from_until(
    port: u16,
    target: SocketAddr,
    interval: Duration,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> UdpHoldReport {
    let mut report = UdpHoldReport {
        kind: "udp-hold".to_string(),
        target: target.to_string(),
        answers: Vec::new(),
        errors: BTreeMap::new(),
        reconnects: 0,
        local: String::new(),
    };
    let mut socket = None;
    let mut sequence = 0usize;
    while !done() {
        let outcome = match &socket {
            Some(socket) => udp_round_trip(socket, &format!("ping {sequence}")),
            None => connected_udp_from(port, target, timeout).and_then(|fresh| {
                if report.local.is_empty() {
                    report.local = fresh.local_addr().map(|a| a.to_string()).unwrap_or_default();
                }
                let reply = udp_round_trip(&fresh, &format!("ping {sequence}"));
                socket = Some(fresh);
                reply
            }),
        };
        sequence += 1;
        match outcome {
            Ok(reply) => report.answers.push(reply.backend),
            Err(err) => {
                *report.errors.entry(error_name(&err)).or_default() += 1;
                let timed_out =
                    matches!(err.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock);
                if !timed_out && socket.take().is_some() {
                    report.reconnects += 1;
                }
            }
        }
        std::thread::sleep(interval);
    }
    report
}

/// Sends `bytes` bytes as one request line to a TCP echo server and checks the whole line comes
/// back (path-MTU discovery, large transfers). `micros` is the whole exchange.
pub fn upload(target: SocketAddr, bytes: usize, timeout: Duration) -> Attempt {
    let attempt = Attempt::new("upload", target);
    let result = (|| -> io::Result<Attempt> {
        let (stream, _) = connect(target, timeout)?;
        let mut attempt = attempt.clone();
        attempt.local = Some(canonical(stream.local_addr()?).to_string());
        let started = Instant::now();
        let payload = "u".repeat(bytes);
        let mut writer = stream.try_clone()?;
        // Write from a second thread: the echo comes back while we are still sending.
        let sender =
            std::thread::spawn(move || writer.write_all(format!("{payload}\n").as_bytes()));
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        sender.join().map_err(|_| io::Error::other("sender thread panicked"))??;
        let reply = parse_reply(&line)?;
        if reply.echo.len() != bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("echo has {} bytes, sent {bytes}", reply.echo.len()),
            ));
        }
        attempt.micros = Some(micros(started.elapsed()));
        attempt.backend = Some(reply.backend);
        attempt.seen_as = Some(reply.peer);
        Ok(attempt)
    })();
    result.unwrap_or_else(|err| attempt.fail(&err))
}

/// The JSON lines of `switchyard lab client tcp|udp|http`: every attempt, then the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOutput {
    pub attempts: Vec<Attempt>,
    pub summary: Summary,
}

impl ClientOutput {
    /// Parses a client process's standard output (for tests that run clients in pods).
    pub fn parse(stdout: &str) -> Result<Self, String> {
        let mut attempts = Vec::new();
        let mut summary = None;
        for line in stdout.lines().filter(|line| !line.trim().is_empty()) {
            if line.contains("-summary\"") {
                summary =
                    Some(serde_json::from_str(line).map_err(|err| format!("{line:?}: {err}"))?);
            } else {
                attempts
                    .push(serde_json::from_str(line).map_err(|err| format!("{line:?}: {err}"))?);
            }
        }
        let summary = summary.ok_or_else(|| format!("no summary line in {stdout:?}"))?;
        Ok(Self { attempts, summary })
    }
}

/// How a long-lived connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReport {
    pub kind: String,
    pub target: String,
    /// Backends that answered over the connection's life (more than one means it moved).
    pub backends: Vec<String>,
    /// Round trips that got an answer.
    pub pings: usize,
    /// The connection was reset (or closed by the far end) before `duration` was over.
    pub reset: bool,
    pub error: Option<String>,
    pub held_ms: u64,
    /// The client's address of the connection (its flow, for diagnosing a reset); empty
    /// when it never connected.
    #[serde(default)]
    pub local: String,
    /// When it ended (Unix milliseconds), to set a failure against logs.
    #[serde(default)]
    pub ended_unix_ms: u64,
}

/// Holds one TCP connection for `duration`, sending a request every `interval`, and reports
/// whether it survived. A failed connect is reported as an error, not as a reset.
pub fn hold(
    target: SocketAddr,
    duration: Duration,
    interval: Duration,
    timeout: Duration,
) -> HoldReport {
    let started = Instant::now();
    hold_until(target, interval, timeout, || started.elapsed() >= duration)
}

/// Like [`hold`], but keeps the connection until `done()` returns true (checked after every
/// round trip), for tests that do not know in advance how long a restart takes.
pub fn hold_until(
    target: SocketAddr,
    interval: Duration,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> HoldReport {
    let mut report = HoldReport {
        kind: "hold".to_string(),
        target: target.to_string(),
        backends: Vec::new(),
        pings: 0,
        reset: false,
        error: None,
        held_ms: 0,
        local: String::new(),
        ended_unix_ms: 0,
    };
    let started = Instant::now();
    let (stream, _) = match connect(target, timeout) {
        Ok(connected) => connected,
        Err(err) => {
            report.error = Some(format!("connect: {}", error_name(&err)));
            report.ended_unix_ms = unix_ms();
            return report;
        }
    };
    report.local = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(err) => {
            report.error = Some(err.to_string());
            return report;
        }
    };
    let mut reader = BufReader::new(stream);
    loop {
        let outcome = (|| -> io::Result<Reply> {
            writer.write_all(format!("ping {}\n", report.pings).as_bytes())?;
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "closed by peer"));
            }
            parse_reply(&line)
        })();
        match outcome {
            Ok(reply) => {
                report.pings += 1;
                if !report.backends.contains(&reply.backend) {
                    report.backends.push(reply.backend);
                }
            }
            Err(err) => {
                report.reset = matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionAborted
                );
                report.error = Some(error_name(&err));
                break;
            }
        }
        if done() {
            break;
        }
        std::thread::sleep(interval);
    }
    report.held_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report.ended_unix_ms = unix_ms();
    report
}

/// Now as Unix milliseconds (0 before 1970).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Connect-time statistics over many connections, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    pub kind: String,
    pub target: String,
    pub connections: usize,
    pub failures: usize,
    pub min_us: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// Opens and closes `count` TCP connections, measuring how long each connect() takes.
pub fn connect_latency(target: SocketAddr, count: usize, timeout: Duration) -> LatencyReport {
    let mut samples = Vec::with_capacity(count);
    let mut failures = 0;
    for _ in 0..count {
        match connect(target, timeout) {
            Ok((_, elapsed)) => samples.push(micros(elapsed)),
            Err(_) => failures += 1,
        }
    }
    latency_report(target, samples, failures)
}

/// Connect-time statistics for `target` and a `peer` to compare it with (a ClusterIP and the pod
/// IP behind it, say), measured in the same run with connects alternating so drift hits both.
pub fn connect_latency_pair(
    target: SocketAddr,
    peer: SocketAddr,
    count: usize,
    timeout: Duration,
) -> (LatencyReport, LatencyReport) {
    let mut samples = [Vec::with_capacity(count), Vec::with_capacity(count)];
    let mut failures = [0, 0];
    for _ in 0..count {
        for (i, addr) in [target, peer].into_iter().enumerate() {
            match connect(addr, timeout) {
                Ok((_, elapsed)) => samples[i].push(micros(elapsed)),
                Err(_) => failures[i] += 1,
            }
        }
    }
    let [target_samples, peer_samples] = samples;
    (
        latency_report(target, target_samples, failures[0]),
        latency_report(peer, peer_samples, failures[1]),
    )
}

pub(crate) fn latency_report(
    target: SocketAddr,
    mut samples: Vec<u64>,
    failures: usize,
) -> LatencyReport {
    samples.sort_unstable();
    let at = |q: f64| -> u64 {
        if samples.is_empty() {
            return 0;
        }
        // Nearest-rank percentile.
        let rank = (q * samples.len() as f64).ceil() as usize;
        samples[rank.clamp(1, samples.len()) - 1]
    };
    let mean = if samples.is_empty() {
        0.0
    } else {
        samples.iter().sum::<u64>() as f64 / samples.len() as f64
    };
    LatencyReport {
        kind: "latency".to_string(),
        target: target.to_string(),
        connections: samples.len(),
        failures,
        min_us: samples.first().copied().unwrap_or(0),
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: samples.last().copied().unwrap_or(0),
        mean_us: mean,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target() -> SocketAddr {
        "10.0.0.1:80".parse().unwrap()
    }

    #[test]
    fn client_output_round_trips_through_json_lines() {
        let mut a = Attempt::new("udp", target());
        a.backend = Some("pod1".into());
        a.reply_from = Some("10.0.0.1:80".into());
        let b = Attempt::new("udp", target()).fail(&io::Error::from(io::ErrorKind::TimedOut));
        let summary = Summary::of("udp", target(), &[a.clone(), b.clone()]);
        let text = [
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap(),
            serde_json::to_string(&summary).unwrap(),
        ]
        .join("\n");
        let parsed = ClientOutput::parse(&text).unwrap();
        assert_eq!(parsed.attempts, vec![a, b]);
        assert_eq!(parsed.summary, summary);
        assert!(ClientOutput::parse("").unwrap_err().contains("no summary"));
        assert!(ClientOutput::parse("{").is_err());
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let cases: [(Vec<u64>, u64, u64, u64); 4] = [
            (vec![], 0, 0, 0),
            (vec![7], 7, 7, 7),
            ((1..=100).collect(), 50, 99, 1),
            (vec![30, 10, 20], 20, 30, 10),
        ];
        for (samples, p50, p99, min) in cases {
            let report = latency_report(target(), samples.clone(), 0);
            assert_eq!(
                (report.p50_us, report.p99_us, report.min_us),
                (p50, p99, min),
                "{samples:?}"
            );
        }
    }

    #[test]
    fn summary_counts_backends_and_errors() {
        let mut a = Attempt::new("tcp", target());
        a.backend = Some("pod1".into());
        let mut b = a.clone();
        b.backend = Some("pod2".into());
        let c =
            Attempt::new("tcp", target()).fail(&io::Error::from(io::ErrorKind::ConnectionRefused));
        let summary = Summary::of("tcp", target(), &[a.clone(), b, a, c]);
        assert_eq!(summary.backends.get("pod1"), Some(&2));
        assert_eq!(summary.backends.get("pod2"), Some(&1));
        assert_eq!(summary.errors.get("connection refused"), Some(&1));
        assert_eq!(summary.successes(), 3);
        assert_eq!(summary.attempts, 4);
    }
}
