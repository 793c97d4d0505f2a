//! The agent's BGP speakers: one session per BGPPeer that selects this node, announcing what the
//! model's plan says (`switchyard_model::announce`). The sessions themselves are
//! `switchyard_announce::Speakers` (shared with the director); this decides when to plan again.
//! On shutdown, sessions with graceful restart close without a NOTIFICATION (the router keeps
//! our routes while the agent restarts); the others send Cease (the router withdraws at once).

use std::collections::HashSet;
use std::net::IpAddr;

use switchyard_announce::Speakers;
use switchyard_model::announce::{self, BgpInputs};
use switchyard_model::{Change, DesiredState, FrontendKind, StateDiff};
use switchyard_observe::bgp::BgpSource;

/// The node's speakers, kept in line with the plan.
pub(crate) struct Announcer {
    inputs: BgpInputs,
    /// An input of the plan changed since the last sync.
    dirty: bool,
    /// Candidate addresses of the last plan, to tell whether a difference touches them.
    candidates: HashSet<IpAddr>,
    speakers: Speakers,
}

impl Announcer {
    /// Speakers of `node_name`; `restarting`: the data plane kept forwarding across a restart.
    pub(crate) fn new(node_name: &str, restarting: bool) -> Announcer {
        Announcer {
            inputs: BgpInputs::new(node_name),
            dirty: true,
            candidates: HashSet::new(),
            speakers: Speakers::new(restarting),
        }
    }

    /// What `/bgp` and the metrics read.
    pub(crate) fn source(&self) -> BgpSource {
        self.speakers.source()
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
        self.speakers.sync(announce::plan(&self.inputs, &candidates));
    }

    /// Ends every session: without a NOTIFICATION where graceful restart keeps the routes at
    /// the router, with Cease (withdrawing everything) elsewhere.
    pub(crate) async fn shutdown(self) {
        self.speakers.shutdown().await;
    }
}
