//! Sending health probes (the IO half of [`crate::health`]): an HTTP `GET /healthz` over TCP
//! from the director's own address, its socket marked [`PROBE_MARK`] so the director's TC
//! egress program (`sy_dir_probe`) encapsulates every packet of it to the node exactly as VIP
//! traffic is (docs/director.md, node health). The node decapsulates it (it accepts only
//! directors), its stack answers, and the answer comes back directly, as a VIP flow's would.
//! A node whose decapsulation is broken therefore fails its probes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

pub use switchyard_bpf::director::PROBE_MARK;

use crate::health::{Outcome, Probe, Target};

/// The HTTP path asked on every target: the agent's health endpoint; a health check node port
/// answers any path.
pub const PATH: &str = "/healthz";

/// How probes are sent.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Source address towards IPv4 targets (the director's `--address`).
    pub source4: Option<Ipv4Addr>,
    /// Source address towards IPv6 targets.
    pub source6: Option<Ipv6Addr>,
    /// Socket mark; `None`: probes go out unencapsulated (`--health-probe direct`).
    pub mark: Option<u32>,
    /// The whole probe (connect, ask, read the status line) must finish within this.
    pub timeout: Duration,
}

/// Probes `target` once.
pub async fn probe(target: &Target, settings: &ProbeSettings) -> Outcome {
    let address = SocketAddr::new(target.address, target.port);
    match tokio::time::timeout(settings.timeout, exchange(address, settings)).await {
        Ok(Ok(status)) => match status {
            200 => Outcome::Healthy,
            503 => Outcome::Unavailable,
            other => Outcome::Failed(format!("HTTP status {other}")),
        },
        Ok(Err(err)) => Outcome::Failed(err.to_string()),
        Err(_) => Outcome::Failed(format!("no answer within {:?}", settings.timeout)),
    }
}

/// Connects, sends the request, returns the status code.
async fn exchange(address: SocketAddr, settings: &ProbeSettings) -> std::io::Result<u16> {
    let (socket, source) = match address.ip() {
        IpAddr::V4(_) => (tokio::net::TcpSocket::new_v4()?, settings.source4.map(IpAddr::V4)),
        IpAddr::V6(_) => (tokio::net::TcpSocket::new_v6()?, settings.source6.map(IpAddr::V6)),
    };
    if let Some(mark) = settings.mark {
        socket2::SockRef::from(&socket).set_mark(mark)?;
    }
    if let Some(source) = source {
        // The node answers this address directly: the director's own, as the outer source.
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let mut stream = socket.connect(address).await?;
    let request = format!(
        "GET {PATH} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: switchyard-director\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = [0u8; 64];
    let mut filled = 0;
    while filled < 12 {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    status_code(&buf[..filled]).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP/1 status line")
    })
}

/// The status code of an HTTP/1 status line (`HTTP/1.1 200 OK`).
pub fn status_code(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Sends probes in the background and hands their outcomes back in arrival order. Must be
/// used within a tokio runtime.
#[derive(Debug)]
pub struct Prober {
    settings: Arc<ProbeSettings>,
    sender: mpsc::UnboundedSender<(Probe, Outcome)>,
    receiver: mpsc::UnboundedReceiver<(Probe, Outcome)>,
}

impl Prober {
    /// Nothing sent yet.
    pub fn new(settings: ProbeSettings) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Prober { settings: Arc::new(settings), sender, receiver }
    }

    /// Starts `probes`, each a task of its own.
    pub fn send(&self, probes: Vec<Probe>) {
        for p in probes {
            let settings = Arc::clone(&self.settings);
            let sender = self.sender.clone();
            tokio::spawn(async move {
                let outcome = probe(&p.target, &settings).await;
                // The receiver lives as long as self; a send after it is gone is moot.
                let _ = sender.send((p, outcome));
            });
        }
    }

    /// The next outcome (waits while none is ready; never ends: self holds a sender).
    pub async fn next(&mut self) -> Option<(Probe, Outcome)> {
        self.receiver.recv().await
    }

    /// An outcome that is ready now, if any.
    pub fn try_next(&mut self) -> Option<(Probe, Outcome)> {
        self.receiver.try_recv().ok()
    }
}
