//! The tokio runtime: one task per peer owns the TCP connection and drives a [`Session`]; a
//! [`Listener`] (passive peers only) accepts connections and hands each to its peer. An
//! active-only speaker opens no listening socket at all.

mod bfd;
mod socket;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use bfd::{BfdListener, BfdPeer, BfdRuntimeError, BfdStatus};
pub use socket::{ConnectOptions, MD5_MAX_KEY_LEN, connect, set_md5_key, set_ttl};

use crate::prefix::Prefix;
use crate::session::{
    ConfigError, DownReason, Event, Negotiated, RouteAttributes, Session, SessionConfig, State,
    Stats,
};

/// One peer to run a session with.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// Name for logs and status (e.g. the BGPPeer object).
    pub name: String,
    /// The peer's address and port.
    pub address: SocketAddr,
    /// The session's settings (passive or active among them).
    pub session: SessionConfig,
    /// How to connect (source address, MD5 key, TTL); the key also applies to the listener.
    pub connect: ConnectOptions,
}

/// A snapshot of one peer, for `switchyard bgp` and the metrics.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    /// Peer name.
    pub name: String,
    /// Peer address.
    pub address: SocketAddr,
    /// Session state.
    pub state: State,
    /// When the session reached Established (wall clock), if it is Established.
    pub established_since: Option<SystemTime>,
    /// What the OPENs agreed on.
    pub negotiated: Option<Negotiated>,
    /// Counters.
    pub stats: Stats,
    /// Routes the peer has from us.
    pub announced: BTreeMap<Prefix, RouteAttributes>,
    /// Routes we want announced.
    pub desired: BTreeMap<Prefix, RouteAttributes>,
    /// Why the session last went down.
    pub last_down: Option<DownReason>,
    /// Why the last TCP connection attempt failed (refused, unreachable, or no answer within the
    /// connect-retry time, which is how a router with another TCP MD5 password looks); cleared
    /// once a session establishes.
    pub connect_error: Option<String>,
}

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The session configuration is unusable.
    #[error("peer {peer}")]
    Config {
        /// Peer name.
        peer: String,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
    /// A passive peer was started without a listener.
    #[error("peer {0} is passive but the speaker has no listener")]
    NoListener(String),
    /// The listening socket could not be set up.
    #[error("listening on {address}")]
    Listen {
        /// Address asked for.
        address: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A passive peer's MD5 key could not be set on the listening socket.
    #[error("setting the TCP MD5 key of {peer} on the listener")]
    ListenerKey {
        /// Peer name.
        peer: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

enum Command {
    SetRoutes(BTreeMap<Prefix, RouteAttributes>),
    Stop,
    Abandon,
    BfdDown,
}

type Incoming = Arc<Mutex<HashMap<IpAddr, mpsc::Sender<TcpStream>>>>;

/// A listening socket shared by passive peers; connections from unknown addresses are closed.
#[derive(Debug)]
pub struct Listener {
    local: SocketAddr,
    listener: Arc<TcpListener>,
    peers: Incoming,
    task: JoinHandle<()>,
}

impl Listener {
    /// Listens on `address` (port 179 normally; port 0 picks one).
    pub async fn bind(address: SocketAddr) -> Result<Listener, RuntimeError> {
        let listen = |source| RuntimeError::Listen { address, source };
        let listener = Arc::new(TcpListener::bind(address).await.map_err(listen)?);
        let local = listener.local_addr().map_err(listen)?;
        let peers: Incoming = Arc::default();
        let task = tokio::spawn(accept_loop(listener.clone(), peers.clone()));
        Ok(Listener { local, listener, peers, task })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: Arc<TcpListener>, peers: Incoming) {
    loop {
        let Ok((stream, from)) = listener.accept().await else { continue };
        let peer = peers.lock().ok().and_then(|p| p.get(&canonical(from.ip())).cloned());
        match peer {
            Some(tx) => {
                let _ = tx.send(stream).await;
            }
            None => tracing::info!(%from, "BGP connection from an unknown address closed"),
        }
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack listener) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A running peer: its task, a command channel and its latest status.
#[derive(Debug)]
pub struct Peer {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<PeerStatus>,
    task: JoinHandle<()>,
}

impl Peer {
    /// Starts the session with `spec`; passive peers register with `listener`.
    pub fn spawn(spec: PeerSpec, listener: Option<&Listener>) -> Result<Peer, RuntimeError> {
        let session = Session::new(spec.session.clone())
            .map_err(|source| RuntimeError::Config { peer: spec.name.clone(), source })?;
        let (incoming_tx, incoming) = mpsc::channel(1);
        if spec.session.passive {
            let Some(listener) = listener else { return Err(RuntimeError::NoListener(spec.name)) };
            if let Some(key) = &spec.connect.md5_key {
                set_md5_key(listener.listener.as_ref(), spec.address.ip(), key).map_err(
                    |source| RuntimeError::ListenerKey { peer: spec.name.clone(), source },
                )?;
            }
            if let Ok(mut peers) = listener.peers.lock() {
                peers.insert(canonical(spec.address.ip()), incoming_tx);
            }
        }
        let (status_tx, status) = watch::channel(snapshot(&spec, &session, Instant::now()));
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(spec, session, commands_rx, incoming, status_tx));
        Ok(Peer { commands, status, task })
    }

    /// Replaces the routes to announce (only differences reach the wire).
    pub fn set_routes(&self, routes: BTreeMap<Prefix, RouteAttributes>) {
        let _ = self.commands.send(Command::SetRoutes(routes));
    }

    /// The latest status.
    pub fn status(&self) -> PeerStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (tests wait on it).
    pub fn watch(&self) -> watch::Receiver<PeerStatus> {
        self.status.clone()
    }

    /// Tears the session down whenever `bfd` reports a failure (its session went from Up to
    /// Down, not by the peer's AdminDown): RFC 5882 §4.1, so a dead link ends the BGP session
    /// in BFD's detection time on our side too, not after the hold time. The watching task ends
    /// with either session.
    pub fn follow_bfd(&self, mut bfd: watch::Receiver<BfdStatus>) {
        let commands = self.commands.clone();
        let mut seen = bfd.borrow().failures;
        tokio::spawn(async move {
            while bfd.changed().await.is_ok() {
                let failures = bfd.borrow_and_update().failures;
                if failures > seen {
                    seen = failures;
                    if commands.send(Command::BfdDown).is_err() {
                        return;
                    }
                }
            }
        });
    }

    /// Sends Cease (the peer withdraws our routes at once) and ends the task.
    pub async fn stop(self) {
        let _ = self.commands.send(Command::Stop);
        let _ = self.task.await;
    }

    /// Closes the connection without a NOTIFICATION (graceful restart keeps our routes at the
    /// peer for the restart time) and ends the task.
    pub async fn abandon(self) {
        let _ = self.commands.send(Command::Abandon);
        let _ = self.task.await;
    }
}

fn snapshot(spec: &PeerSpec, session: &Session, now: Instant) -> PeerStatus {
    PeerStatus {
        name: spec.name.clone(),
        address: spec.address,
        state: session.state(),
        established_since: session
            .established_at()
            .map(|at| SystemTime::now() - now.saturating_duration_since(at)),
        negotiated: session.negotiated().cloned(),
        stats: session.stats(),
        announced: session.announced().clone(),
        desired: session.desired().clone(),
        last_down: session.last_down().cloned(),
        connect_error: None,
    }
}

/// The connection being set up or in use.
enum Link {
    None,
    Connecting(JoinHandle<std::io::Result<TcpStream>>),
    Up(OwnedReadHalf, OwnedWriteHalf),
}

async fn run(
    spec: PeerSpec,
    mut session: Session,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut incoming: mpsc::Receiver<TcpStream>,
    status: watch::Sender<PeerStatus>,
) {
    let mut link = Link::None;
    let mut buf = vec![0u8; 65536];
    let mut ending = false;
    let mut connect_error: Option<String> = None;
    session.start(Instant::now());
    loop {
        // Effects first: bytes before a Disconnect, so a NOTIFICATION reaches the peer.
        while let Some(event) = session.poll_event() {
            flush(&mut session, &mut link).await;
            match event {
                Event::Connect => {
                    if let Link::Connecting(task) = &link {
                        task.abort();
                        connect_error = Some(unanswered(&spec));
                    }
                    let (address, options) = (spec.address, spec.connect.clone());
                    link =
                        Link::Connecting(tokio::spawn(
                            async move { connect(address, &options).await },
                        ));
                }
                Event::Disconnect => {
                    if let Link::Up(_, mut write) = std::mem::replace(&mut link, Link::None) {
                        let _ = write.shutdown().await;
                    }
                }
                Event::Established => {
                    connect_error = None;
                    tracing::info!(peer = %spec.name, address = %spec.address, "BGP session established")
                }
                Event::Down(reason) => {
                    tracing::warn!(peer = %spec.name, address = %spec.address, ?reason, "BGP session down")
                }
            }
        }
        flush(&mut session, &mut link).await;
        let mut now = snapshot(&spec, &session, Instant::now());
        now.connect_error.clone_from(&connect_error);
        status.send_replace(now);
        if ending {
            if let Link::Connecting(task) = &link {
                task.abort();
            }
            return;
        }
        let sleep = sleep_until(session.poll_timeout());
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::SetRoutes(routes)) => session.set_routes(routes),
                Some(Command::Abandon) => { session.abandon(Instant::now()); ending = true; }
                Some(Command::BfdDown) => session.bfd_down(Instant::now()),
                Some(Command::Stop) | None => { session.stop(Instant::now()); ending = true; }
            },
            happened = on_link(&mut link, &mut buf) => match happened {
                LinkEvent::Connected(Ok(stream)) => {
                    let (read, write) = stream.into_split();
                    link = Link::Up(read, write);
                    if !session.connection_up(Instant::now()) {
                        link = Link::None;
                    }
                }
                LinkEvent::Connected(Err(error)) => {
                    tracing::debug!(peer = %spec.name, %error, "BGP connection attempt failed");
                    connect_error = Some(format!("connecting to {}: {error}", spec.address));
                    link = Link::None;
                    session.connection_lost(Instant::now());
                }
                LinkEvent::Read(Ok(n)) if n > 0 => session.receive(&buf[..n], Instant::now()),
                LinkEvent::Read(_) => {
                    link = Link::None;
                    session.connection_lost(Instant::now());
                }
            },
            Some(stream) = incoming.recv() => {
                if matches!(link, Link::None) && session.connection_up(Instant::now()) {
                    let _ = stream.set_nodelay(true);
                    let (read, write) = stream.into_split();
                    link = Link::Up(read, write);
                }
            }
            () = sleep => session.handle_timeout(Instant::now()),
        }
    }
}

/// Sleeps until a sans-IO core's next deadline (forever when it has none): the timer arm of
/// the BGP and BFD tasks' `select!`.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// The connection attempt to `spec`'s peer got no answer before the next one was due.
fn unanswered(spec: &PeerSpec) -> String {
    let waited = spec.session.connect_retry_time.as_secs();
    let mut text = format!("no answer from {} within {waited}s", spec.address);
    if spec.connect.md5_key.is_some() {
        // RFC 2385: a segment with a wrong or missing signature is dropped without a reply.
        text.push_str(" (TCP MD5: a router with another password or none drops our segments)");
    }
    text
}

enum LinkEvent {
    Connected(std::io::Result<TcpStream>),
    Read(std::io::Result<usize>),
}

/// The next thing that happens on the connection: an attempt finishes, or bytes (or EOF) arrive.
async fn on_link(link: &mut Link, buf: &mut [u8]) -> LinkEvent {
    match link {
        Link::Connecting(task) => LinkEvent::Connected(match task.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }),
        Link::Up(read, _) => LinkEvent::Read(read.read(buf).await),
        Link::None => std::future::pending().await,
    }
}

/// Writes what the session has to send; a failed write is noticed by the next read.
async fn flush(session: &mut Session, link: &mut Link) {
    let bytes = session.poll_transmit();
    if bytes.is_empty() {
        return;
    }
    if let Link::Up(_, write) = link {
        let _ = tokio::time::timeout(Duration::from_secs(5), write.write_all(&bytes)).await;
    }
}
