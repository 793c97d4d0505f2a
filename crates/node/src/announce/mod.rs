//! The agent's BGP speakers: one session per BGPPeer that selects this node, announcing what the
//! model's plan says (`switchyard_model::announce`). The sessions themselves are
//! `switchyard_announce::Speakers` (shared with the director); this decides when to plan again.
//! On shutdown, sessions with graceful restart close without a NOTIFICATION (the router keeps
//! our routes while the agent restarts); the others send Cease (the router withdraws at once).
//!
//! L2 mode sits beside it: the model's L2 plan (`switchyard_model::announce::l2`) names the one
//! node that answers ARP / NDP for each address; the addresses this node owns go to the
//! responder (`switchyard_l2`), which answers and announces them on the chosen interfaces.

use std::collections::HashSet;
use std::net::IpAddr;

use std::sync::{Arc, Mutex, PoisonError};
use switchyard_announce::Speakers;
use switchyard_l2::{L2Runtime, Ownership, Scope};
use switchyard_model::announce::l2::Interfaces;
use switchyard_model::announce::{self, BgpInputs, L2Inputs};
use switchyard_model::{Change, DesiredState, FrontendKind, StateDiff};
use switchyard_observe::bgp::{BgpSource, L2AddressReport};

/// The node's speakers, kept in line with the plan.
pub(crate) struct Announcer {
    inputs: BgpInputs,
    /// An input of the plan changed since the last sync.
    dirty: bool,
    /// Candidate addresses of the last plan, to tell whether a difference touches them.
    candidates: HashSet<IpAddr>,
    speakers: Speakers,
    l2_inputs: L2Inputs,
    /// An input of the L2 plan changed since the last sync.
    l2_dirty: bool,
    l2: L2Runtime,
    /// Every address of the last L2 plan with its decision, for `/bgp`.
    l2_plan: Arc<Mutex<Vec<L2AddressReport>>>,
}

impl Announcer {
    /// Speakers of `node_name`; `restarting`: the data plane kept forwarding across a restart.
    pub(crate) fn new(node_name: &str, restarting: bool) -> Announcer {
        Announcer {
            inputs: BgpInputs::new(node_name),
            dirty: true,
            candidates: HashSet::new(),
            speakers: Speakers::new(restarting),
            l2_inputs: L2Inputs::new(node_name),
            l2_dirty: true,
            l2: L2Runtime::start(),
            l2_plan: Arc::default(),
        }
    }

    /// What `/bgp` and the metrics read.
    pub(crate) fn source(&self) -> BgpSource {
        let speakers = self.speakers.source();
        let plan = Arc::clone(&self.l2_plan);
        let responder = self.l2.reporter();
        BgpSource::new(move || {
            let mut report = speakers.report();
            let responder = responder.report();
            report.l2.addresses = plan.lock().unwrap_or_else(PoisonError::into_inner).clone();
            report.l2.interfaces = responder.interfaces;
            report.l2.missing_interfaces = responder.missing_interfaces;
            report
        })
    }

    /// Notes a change the model is about to see (BGP objects, pools, labels, this node).
    pub(crate) fn observe(&mut self, change: &Change) {
        if self.inputs.apply(change) {
            self.dirty = true;
        }
        if self.l2_inputs.apply(change) {
            self.l2_dirty = true;
        }
    }

    /// Decides again at the next sync whatever changed (after a full reconciliation of the
    /// maps, whose differences are not listed).
    pub(crate) fn invalidate(&mut self) {
        self.dirty = true;
        self.l2_dirty = true;
    }

    /// Notes a difference of the desired state; only LoadBalancer IPs and externalIPs matter.
    pub(crate) fn touched(&mut self, diff: &StateDiff) {
        let external = diff.upserted.iter().any(|(key, frontend)| {
            matches!(frontend.kind, FrontendKind::LoadBalancer | FrontendKind::ExternalIp)
                || self.candidates.contains(&key.ip)
        });
        if external || diff.removed.iter().any(|key| self.candidates.contains(&key.ip)) {
            self.dirty = true;
            self.l2_dirty = true;
        }
    }

    /// Brings the sessions and their routes in line with the plan for `desired`, if anything
    /// the plan depends on changed.
    pub(crate) fn sync(&mut self, desired: &DesiredState) {
        if std::mem::take(&mut self.l2_dirty) {
            self.sync_l2(desired);
        }
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let candidates = announce::candidates(desired, self.inputs.node_drain());
        self.candidates = candidates.keys().copied().collect();
        self.speakers.sync(announce::plan(&self.inputs, &candidates));
    }

    /// Hands the responder the addresses this node owns by the L2 plan for `desired`.
    fn sync_l2(&mut self, desired: &DesiredState) {
        let plan = announce::l2_plan(desired, &self.l2_inputs);
        let node = self.l2_inputs.node_name();
        let owned: Ownership = plan
            .answered_by(node)
            .map(|(address, interfaces)| {
                let scope = match interfaces {
                    Interfaces::All => Scope::All,
                    Interfaces::Named(names) => Scope::Named(names.clone()),
                };
                (address, scope)
            })
            .collect();
        self.l2.set(owned);
        let report = plan
            .addresses
            .iter()
            .map(|(address, entry)| L2AddressReport {
                address: address.to_string(),
                services: entry.services.iter().map(ToString::to_string).collect(),
                owner: match &entry.decision {
                    announce::L2Decision::Answered { node, .. } => Some(node.clone()),
                    announce::L2Decision::Unanswered(_) => None,
                },
                decision: entry.decision.to_string(),
            })
            .collect();
        *self.l2_plan.lock().unwrap_or_else(PoisonError::into_inner) = report;
    }

    /// Ends every session: without a NOTIFICATION where graceful restart keeps the routes at
    /// the router, with Cease (withdrawing everything) elsewhere.
    pub(crate) async fn shutdown(self) {
        self.speakers.shutdown().await;
    }
}
