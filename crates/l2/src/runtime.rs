//! The responder at work: one task per interface that owns an address, reading its two packet
//! sockets and answering, announcing gained addresses; a supervisor that follows the desired
//! ownership and the host's interfaces. Dropping [`L2Runtime`] stops everything (sockets close,
//! multicast memberships go with them).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{info, warn};

use crate::frame::{self, Refused};
use crate::interfaces::{self, Interface};
use crate::responder::{Counters, Responder};
use crate::socket::PacketSocket;

/// Where an owned address is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every interface that is up, broadcast-capable, does ARP and is not loopback.
    All,
    /// These interfaces (by name) only.
    Named(BTreeSet<String>),
}

/// The addresses this node answers for and where.
pub type Ownership = BTreeMap<IpAddr, Scope>;

/// How often the supervisor looks for interfaces that appeared or went away.
const RESCAN: Duration = Duration::from_secs(10);

/// What one interface's responder reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceReport {
    /// Interface name.
    pub name: String,
    /// Its MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The addresses answered for on it.
    pub addresses: Vec<IpAddr>,
    /// What it did.
    pub counters: Counters,
    /// Why it does not answer, if it cannot (sockets that would not open).
    pub error: Option<String>,
}

/// The responder's state: per interface, and the named interfaces that do not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponderReport {
    pub interfaces: Vec<InterfaceReport>,
    /// Interfaces an advertisement names that this host does not have.
    pub missing_interfaces: Vec<String>,
}

type Shared = Arc<Mutex<BTreeMap<String, InterfaceReport>>>;

/// The running responder.
#[derive(Debug)]
pub struct L2Runtime {
    desired: watch::Sender<Ownership>,
    reports: Shared,
    missing: Arc<Mutex<BTreeSet<String>>>,
    supervisor: JoinHandle<()>,
}

impl L2Runtime {
    /// Starts answering for nothing; must be called within a tokio runtime.
    pub fn start() -> L2Runtime {
        let (desired, receiver) = watch::channel(Ownership::new());
        let reports = Shared::default();
        let missing = Arc::new(Mutex::new(BTreeSet::new()));
        let supervisor =
            tokio::spawn(supervise(receiver, Arc::clone(&reports), Arc::clone(&missing)));
        L2Runtime { desired, reports, missing, supervisor }
    }

    /// Answers for exactly `ownership` from now on.
    pub fn set(&self, ownership: Ownership) {
        self.desired.send_if_modified(|current| {
            let changed = *current != ownership;
            *current = ownership;
            changed
        });
    }

    /// A handle for reports, usable after the runtime moved.
    pub fn reporter(&self) -> L2Reporter {
        L2Reporter { reports: Arc::clone(&self.reports), missing: Arc::clone(&self.missing) }
    }
}

impl Drop for L2Runtime {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

/// Reads the responder's report.
#[derive(Debug, Clone)]
pub struct L2Reporter {
    reports: Shared,
    missing: Arc<Mutex<BTreeSet<String>>>,
}

impl L2Reporter {
    /// The report now.
    pub fn report(&self) -> ResponderReport {
        let interfaces =
            self.reports.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        let missing = self.missing.lock().unwrap_or_else(PoisonError::into_inner);
        ResponderReport { interfaces, missing_interfaces: missing.iter().cloned().collect() }
    }
}

/// What an interface task is told: the addresses it owns, and the interface's link-local
/// address (it may appear after the task started, once duplicate address detection is done).
type Told = (BTreeSet<IpAddr>, Option<Ipv6Addr>);

/// A running interface task and what it is told.
struct Serving {
    interface: Interface,
    owned: watch::Sender<Told>,
    task: JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn supervise(
    mut desired: watch::Receiver<Ownership>,
    reports: Shared,
    missing: Arc<Mutex<BTreeSet<String>>>,
) {
    let mut serving: BTreeMap<String, Serving> = BTreeMap::new();
    let mut rescan = tokio::time::interval(RESCAN);
    loop {
        tokio::select! {
            changed = desired.changed() => if changed.is_err() { return },
            _ = rescan.tick() => {}
        }
        let ownership = desired.borrow_and_update().clone();
        let interfaces = match interfaces::list() {
            Ok(interfaces) => interfaces,
            Err(err) => {
                warn!(%err, "L2: listing interfaces failed; keeping the responders as they are");
                continue;
            }
        };
        let mut wanted: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        let mut absent = BTreeSet::new();
        for (address, scope) in &ownership {
            match scope {
                Scope::All => {
                    for interface in interfaces.values().filter(|i| i.answers_by_default) {
                        wanted.entry(interface.name.clone()).or_default().insert(*address);
                    }
                }
                Scope::Named(names) => {
                    for name in names {
                        if interfaces.contains_key(name) {
                            wanted.entry(name.clone()).or_default().insert(*address);
                        } else {
                            absent.insert(name.clone());
                        }
                    }
                }
            }
        }
        *missing.lock().unwrap_or_else(PoisonError::into_inner) = absent;
        // Stop first (an interface whose index or MAC changed is served anew).
        serving.retain(|name, s| {
            wanted.contains_key(name)
                && interfaces
                    .get(name)
                    .is_some_and(|i| (i.index, i.mac) == (s.interface.index, s.interface.mac))
        });
        reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|n, _| serving.contains_key(n));
        for (name, owned) in wanted {
            let owned = (owned, interfaces[&name].link_local);
            match serving.get(&name) {
                Some(s) => {
                    s.owned.send_if_modified(|current| {
                        let changed = *current != owned;
                        *current = owned;
                        changed
                    });
                }
                None => {
                    let interface = interfaces[&name].clone();
                    let (sender, receiver) = watch::channel(owned);
                    let task = tokio::spawn(serve_logged(
                        interface.clone(),
                        receiver,
                        Arc::clone(&reports),
                    ));
                    serving.insert(name, Serving { interface, owned: sender, task });
                }
            }
        }
    }
}

async fn serve_logged(interface: Interface, owned: watch::Receiver<Told>, reports: Shared) {
    let name = interface.name.clone();
    let mac = mac_text(interface.mac);
    if let Err(err) = serve(interface, owned, Arc::clone(&reports)).await {
        warn!(interface = %name, %err, "L2: not answering on this interface");
        let mut reports = reports.lock().unwrap_or_else(PoisonError::into_inner);
        let report = reports.entry(name.clone()).or_default();
        report.name = name;
        report.mac = mac;
        report.error = Some(err.to_string());
    }
}

fn mac_text(mac: frame::Mac) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Answers on one interface until its task is aborted.
async fn serve(
    interface: Interface,
    mut owned: watch::Receiver<Told>,
    reports: Shared,
) -> io::Result<()> {
    let arp = readiness(PacketSocket::arp(interface.index)?)?;
    let ndp = readiness(PacketSocket::ndp(interface.index)?)?;
    let mut responder = Responder::new(interface.mac, interface.link_local);
    let mut buffer = vec![0u8; 2048];
    let report = |responder: &Responder| {
        let mut reports = reports.lock().unwrap_or_else(PoisonError::into_inner);
        reports.insert(
            interface.name.clone(),
            InterfaceReport {
                name: interface.name.clone(),
                mac: mac_text(interface.mac),
                addresses: responder.owned().iter().copied().collect(),
                counters: responder.counters().clone(),
                error: None,
            },
        );
    };
    let mut first = true;
    loop {
        if first || owned.has_changed().unwrap_or(false) {
            first = false;
            let now = Instant::now();
            let (set, link_local) = owned.borrow_and_update().clone();
            responder.set_link_local(link_local);
            let (gained, lost) = responder.set_owned(set, now.into_std());
            for (addresses, join) in [(&gained, true), (&lost, false)] {
                for address in addresses.iter() {
                    let IpAddr::V6(v6) = address else { continue };
                    if let Err(err) = ndp.get_ref().membership(frame::solicited_node_mac(*v6), join)
                    {
                        warn!(interface = %interface.name, %address, %err, "L2: multicast membership");
                    }
                }
            }
            if !gained.is_empty() || !lost.is_empty() {
                info!(interface = %interface.name, ?gained, ?lost, "L2: answering for a new set of addresses");
            }
        }
        for frame in responder.due(std::time::Instant::now()) {
            let socket = if frame.get(12..14) == Some(&[0x08, 0x06]) { &arp } else { &ndp };
            if let Err(err) = socket.get_ref().send(&frame) {
                warn!(interface = %interface.name, %err, "L2: sending an announcement failed");
            }
        }
        report(&responder);
        let deadline = responder
            .next_announcement()
            .map_or_else(|| Instant::now() + Duration::from_secs(3600), Instant::from_std);
        tokio::select! {
            changed = owned.changed() => if changed.is_err() { return Ok(()) },
            guard = arp.readable() => {
                let mut guard = guard?;
                drain(guard.get_inner(), &mut buffer, &mut responder, &interface.name);
                guard.clear_ready();
            }
            guard = ndp.readable() => {
                let mut guard = guard?;
                drain(guard.get_inner(), &mut buffer, &mut responder, &interface.name);
                guard.clear_ready();
            }
            () = sleep_until(deadline) => {}
        }
    }
}

/// `socket` registered with the reactor (readable only: sends never wait).
fn readiness(socket: PacketSocket) -> io::Result<AsyncFd<PacketSocket>> {
    // SAFETY: the descriptor is the socket's own `OwnedFd`, open until the socket drops, and
    // `as_raw_fd` always returns it.
    let registered = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) };
    Ok(registered?)
}

/// Answers every frame waiting on `socket`.
fn drain(socket: &PacketSocket, buffer: &mut [u8], responder: &mut Responder, interface: &str) {
    loop {
        match socket.receive(buffer) {
            Ok(Some(length)) if length > buffer.len() => responder.refuse(Refused::Truncated),
            Ok(Some(length)) => {
                if let Some(answer) = responder.answer(&buffer[..length])
                    && let Err(err) = socket.send(&answer)
                {
                    warn!(%interface, %err, "L2: sending an answer failed");
                }
            }
            Ok(None) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
            Err(err) => {
                warn!(%interface, %err, "L2: receiving failed");
                return;
            }
        }
    }
}
