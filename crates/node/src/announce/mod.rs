//! The agent's BGP speakers: one session per BGPPeer that selects this node, announcing what the
//! model's plan says (`switchyard_model::announce`). Sessions are added, removed and restarted as
//! objects change; only changed routes reach a session, and a session whose settings did not
//! change is never reset. On shutdown, sessions with graceful restart close without a
//! NOTIFICATION (the router keeps our routes while the agent restarts); the others send Cease
//! (the router withdraws at once).

mod translate;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use switchyard_bgp::runtime::{Peer, PeerStatus};
use switchyard_bgp::{Prefix, RouteAttributes};
use switchyard_error::ErrorChain;
use switchyard_model::announce::{self, BgpInputs, PeerSettings, Plan};
use switchyard_model::{Change, DesiredState, FrontendKind, StateDiff};
use switchyard_observe::bgp::{BgpReport, BgpSource};
use tokio::sync::watch;
use tracing::{error, info};

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

/// The node's speakers, kept in line with the plan.
pub(crate) struct Announcer {
    inputs: BgpInputs,
    /// The next sessions announce that this agent restarted with forwarding kept (R and F
    /// bits): true at start when the data plane was adopted from pinned maps.
    restarting: bool,
    /// An input of the plan changed since the last sync.
    dirty: bool,
    /// Candidate addresses of the last plan, to tell whether a difference touches them.
    candidates: HashSet<IpAddr>,
    running: BTreeMap<String, Running>,
    shown: Arc<Mutex<Shown>>,
}

impl Announcer {
    /// Speakers of `node_name`; `restarting`: the data plane kept forwarding across a restart.
    pub(crate) fn new(node_name: &str, restarting: bool) -> Announcer {
        Announcer {
            inputs: BgpInputs::new(node_name),
            restarting,
            dirty: true,
            candidates: HashSet::new(),
            running: BTreeMap::new(),
            shown: Arc::default(),
        }
    }

    /// What `/bgp` and the metrics read.
    pub(crate) fn source(&self) -> BgpSource {
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

    /// Notes a change the model is about to see (BGP objects, pools, labels, this node).
    pub(crate) fn observe(&mut self, change: &Change) {
        if self.inputs.apply(change) {
            self.dirty = true;
        }
    }

    /// Decides again at the next sync whatever changed (after a full reconciliation of the
    /// maps, whose differences are not listed).
    pub(crate) fn invalidate(&mut self) {
        self.dirty = true;
    }

    /// Notes a difference of the desired state; only LoadBalancer IPs and externalIPs matter.
    pub(crate) fn touched(&mut self, diff: &StateDiff) {
        let external = diff.upserted.iter().any(|(key, frontend)| {
            matches!(frontend.kind, FrontendKind::LoadBalancer | FrontendKind::ExternalIp)
                || self.candidates.contains(&key.ip)
        });
        if external || diff.removed.iter().any(|key| self.candidates.contains(&key.ip)) {
            self.dirty = true;
        }
    }

    /// Brings the sessions and their routes in line with the plan for `desired`, if anything
    /// the plan depends on changed.
    pub(crate) fn sync(&mut self, desired: &DesiredState) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let candidates = announce::candidates(desired, self.inputs.node_drain());
        self.candidates = candidates.keys().copied().collect();
        let plan = announce::plan(&self.inputs, &candidates);
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

    /// Ends every session: without a NOTIFICATION where graceful restart keeps the routes at
    /// the router, with Cease (withdrawing everything) elsewhere.
    pub(crate) async fn shutdown(self) {
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
}
