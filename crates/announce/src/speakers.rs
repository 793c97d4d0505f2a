//! The sessions of one role and what each was last told.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use switchyard_bgp::runtime::{BfdListener, BfdPeer, BfdStatus, Peer, PeerStatus};
use switchyard_bgp::{Prefix, RouteAttributes};
use switchyard_error::ErrorChain;
use switchyard_model::announce::{PeerSettings, Plan};
use switchyard_observe::bgp::{BgpReport, BgpSource};
use tokio::sync::watch;
use tracing::{error, info};

use crate::translate;

/// The plan and the sessions' live status, as `/bgp` shows them.
#[derive(Default)]
struct Shown {
    plan: Plan,
    statuses: BTreeMap<String, watch::Receiver<PeerStatus>>,
    bfd: BTreeMap<String, watch::Receiver<BfdStatus>>,
}

/// A running session and what it was last told.
struct Running {
    settings: PeerSettings,
    peer: Peer,
    /// The BFD session beside it (`spec.bfd`).
    bfd: Option<BfdPeer>,
    routes: BTreeMap<Prefix, RouteAttributes>,
}

impl Running {
    /// Tells the router first that BFD goes AdminDown (an orderly goodbye, which the router must
    /// not treat as a failure, RFC 5882 §3.2), then ends the BGP session as `end` says.
    async fn end(self, graceful_restart: bool) {
        if let Some(bfd) = self.bfd {
            bfd.stop().await;
        }
        if graceful_restart {
            self.peer.abandon().await;
        } else {
            self.peer.stop().await;
        }
    }
}

/// The running sessions of a role. [`Speakers::sync`] spawns tasks: call it inside a tokio
/// runtime.
pub struct Speakers {
    /// The next sessions announce that this process restarted with forwarding kept (R and F
    /// bits): true at start when the data plane was adopted from pinned maps.
    restarting: bool,
    running: BTreeMap<String, Running>,
    shown: Arc<Mutex<Shown>>,
    /// Receives the BFD packets of every session; opened when the first peer asks for BFD.
    bfd_listener: Option<BfdListener>,
    /// The next BFD session's discriminator.
    next_discriminator: u32,
}

impl std::fmt::Debug for Speakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speakers")
            .field("restarting", &self.restarting)
            .field("peers", &self.running.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Speakers {
    /// No sessions yet; `restarting`: the data plane kept forwarding across a restart.
    pub fn new(restarting: bool) -> Speakers {
        Speakers {
            restarting,
            running: BTreeMap::new(),
            shown: Arc::default(),
            bfd_listener: None,
            next_discriminator: 1,
        }
    }

    /// What `/bgp` and the metrics read.
    pub fn source(&self) -> BgpSource {
        let shown = Arc::clone(&self.shown);
        BgpSource::new(move || {
            let shown = shown.lock().unwrap_or_else(PoisonError::into_inner);
            BgpReport {
                sessions: shown
                    .plan
                    .peers
                    .iter()
                    .filter_map(|(name, plan)| {
                        let status = shown.statuses.get(name)?.borrow().clone();
                        let bfd = shown.bfd.get(name).map(|b| b.borrow().clone());
                        Some(translate::session_report(plan, &status, bfd.as_ref()))
                    })
                    .collect(),
                not_peering: shown
                    .plan
                    .not_peering
                    .iter()
                    .map(|(name, why)| (name.clone(), why.to_string()))
                    .collect(),
                ..BgpReport::default()
            }
        })
    }

    /// Brings the sessions and their routes in line with `plan`.
    pub fn sync(&mut self, plan: Plan) {
        let ended: Vec<String> = self
            .running
            .iter()
            .filter(|(name, running)| {
                plan.peers.get(*name).is_none_or(|p| p.settings != running.settings)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in ended {
            if let Some(running) = self.running.remove(&name) {
                info!(peer = %name, "BGP peer removed or changed; closing its session with Cease");
                tokio::spawn(running.end(false));
            }
        }
        for (name, peer_plan) in &plan.peers {
            let routes = translate::routes(peer_plan);
            if let Some(running) = self.running.get_mut(name) {
                if running.routes != routes {
                    running.peer.set_routes(routes.clone());
                    running.routes = routes;
                }
                continue;
            }
            let spec = translate::peer_spec(name, &peer_plan.settings, self.restarting);
            match Peer::spawn(spec, None) {
                Ok(peer) => {
                    info!(peer = %name, address = %peer_plan.settings.address, "BGP session started");
                    peer.set_routes(routes.clone());
                    let settings = peer_plan.settings.clone();
                    let bfd = self.start_bfd(name, &settings);
                    if let Some(bfd) = &bfd {
                        peer.follow_bfd(bfd.watch());
                    }
                    self.running.insert(name.clone(), Running { settings, peer, bfd, routes });
                }
                Err(err) => {
                    error!(peer = %name, err = %ErrorChain(&err), "BGP session not started")
                }
            }
        }
        self.restarting = false;
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        shown.statuses = self
            .running
            .iter()
            .map(|(name, running)| (name.clone(), running.peer.watch()))
            .collect();
        shown.bfd = self
            .running
            .iter()
            .filter_map(|(name, running)| Some((name.clone(), running.bfd.as_ref()?.watch())))
            .collect();
        shown.plan = plan;
    }

    /// Starts the BFD session of a peer whose settings ask for one (the listener on port 3784
    /// with the first). A failure is logged and shown; the BGP session runs without BFD.
    fn start_bfd(&mut self, name: &str, settings: &PeerSettings) -> Option<BfdPeer> {
        let timers = settings.bfd?;
        if self.bfd_listener.is_none() {
            match BfdListener::bind() {
                Ok(listener) => self.bfd_listener = Some(listener),
                Err(err) => {
                    error!(peer = %name, err = %ErrorChain(&err), "BFD not started");
                    return None;
                }
            }
        }
        let listener = self.bfd_listener.as_ref()?;
        let discriminator = self.next_discriminator;
        self.next_discriminator = self.next_discriminator.checked_add(1).unwrap_or(1);
        let config = translate::bfd_config(&timers, discriminator);
        match BfdPeer::spawn(listener, settings.source, settings.address, config) {
            Ok(bfd) => {
                info!(peer = %name, interval = ?timers.interval, multiplier = timers.detect_multiplier, "BFD session started");
                Some(bfd)
            }
            Err(err) => {
                error!(peer = %name, err = %ErrorChain(&err), "BFD session not started");
                None
            }
        }
    }

    /// True when no session runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Ends every session: without a NOTIFICATION where graceful restart keeps the routes at
    /// the router (a process restarting over a data plane that keeps forwarding), with Cease
    /// (withdrawing everything) elsewhere.
    pub async fn shutdown(self) {
        for (name, running) in self.running {
            let graceful_restart = running.settings.graceful_restart;
            if graceful_restart {
                info!(peer = %name, "closing the BGP session for graceful restart; the router keeps our routes");
            } else {
                info!(peer = %name, "closing the BGP session with Cease; the router withdraws our routes");
            }
            running.end(graceful_restart).await;
        }
    }

    /// Ends every session with Cease (the router withdraws whatever is left), graceful restart
    /// or not: for a process that leaves for good.
    pub async fn stop(self) {
        for (name, running) in self.running {
            info!(peer = %name, "closing the BGP session with Cease");
            running.end(false).await;
        }
    }
}
