//! The sessions of one role and what each was last told.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use switchyard_bgp::runtime::{Peer, PeerStatus};
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
}

/// A running session and what it was last told.
struct Running {
    settings: PeerSettings,
    peer: Peer,
    routes: BTreeMap<Prefix, RouteAttributes>,
}

/// The running sessions of a role. [`Speakers::sync`] spawns tasks: call it inside a tokio
/// runtime.
pub struct Speakers {
    /// The next sessions announce that this process restarted with forwarding kept (R and F
    /// bits): true at start when the data plane was adopted from pinned maps.
    restarting: bool,
    running: BTreeMap<String, Running>,
    shown: Arc<Mutex<Shown>>,
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
        Speakers { restarting, running: BTreeMap::new(), shown: Arc::default() }
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
                        Some(translate::session_report(plan, &status))
                    })
                    .collect(),
                not_peering: shown
                    .plan
                    .not_peering
                    .iter()
                    .map(|(name, why)| (name.clone(), why.to_string()))
                    .collect(),
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
                tokio::spawn(running.peer.stop());
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
                    self.running.insert(name.clone(), Running { settings, peer, routes });
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
        shown.plan = plan;
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
            if running.settings.graceful_restart {
                info!(peer = %name, "closing the BGP session for graceful restart; the router keeps our routes");
                running.peer.abandon().await;
            } else {
                info!(peer = %name, "closing the BGP session with Cease; the router withdraws our routes");
                running.peer.stop().await;
            }
        }
    }

    /// Ends every session with Cease (the router withdraws whatever is left), graceful restart
    /// or not: for a process that leaves for good.
    pub async fn stop(self) {
        for (name, running) in self.running {
            info!(peer = %name, "closing the BGP session with Cease");
            running.peer.stop().await;
        }
    }
}
