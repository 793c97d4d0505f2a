//! The director's BGP sessions: every VIP it serves, announced with itself as next hop to the
//! BGPPeers that select its own Node object (the model decides which: `Role::Director`,
//! docs/bgp.md), so the routers spread VIP traffic over the directors with ECMP. On a graceful
//! shutdown every VIP is withdrawn first while the sessions and the data path stay up. A
//! director that starts for the first time holds its VIPs back until its tables are settled
//! ([`crate::settle`]); the sessions come up meanwhile, announcing nothing.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use switchyard_announce::Speakers;
use switchyard_model::announce::{self, BgpInputs, Role};
use switchyard_model::{Change, ObjectKey};
use switchyard_observe::bgp::BgpSource;

use crate::vips::VipSet;

/// The director's speakers and what they announce.
#[derive(Debug)]
pub struct Announcer {
    inputs: BgpInputs,
    speakers: Speakers,
    /// Every VIP address with its Service, from the last programmed set.
    vips: Vec<(IpAddr, ObjectKey)>,
    /// Withdrawing everything before leaving.
    shutting_down: bool,
    /// Why nothing is announced yet (`None`: the VIPs are announced); shown by `/bgp`.
    held: Arc<Mutex<Option<String>>>,
}

impl Announcer {
    /// Speakers of the director whose Node object is `node_name`; `restarting`: the data path
    /// kept forwarding across a restart (graceful restart's R and F bits).
    pub fn new(node_name: &str, restarting: bool) -> Announcer {
        Announcer {
            inputs: BgpInputs::new(node_name).with_role(Role::Director),
            speakers: Speakers::new(restarting),
            vips: Vec::new(),
            shutting_down: false,
            held: Arc::new(Mutex::new(None)),
        }
    }

    /// What `/bgp` and the metrics read (with why nothing is announced yet, if held).
    pub fn source(&self) -> BgpSource {
        let (sessions, held) = (self.speakers.source(), Arc::clone(&self.held));
        BgpSource::new(move || {
            let mut report = sessions.report();
            report.announce_held = held.lock().ok().and_then(|h| h.clone());
            report
        })
    }

    /// Holds every VIP back (`Some(why)`) or lets them be announced (`None`).
    pub fn hold(&mut self, why: Option<String>) {
        if let Ok(mut held) = self.held.lock() {
            *held = why;
        }
        self.replan();
    }

    /// Whether the VIPs are held back.
    pub fn held(&self) -> bool {
        self.held.lock().is_ok_and(|h| h.is_some())
    }

    /// Notes a change (BGP objects, pools, Secrets, the director's own Node).
    pub fn observe(&mut self, change: &Change) {
        self.inputs.apply(change);
    }

    /// Announces the VIPs of `set` (call once they are programmed: a router sends traffic as
    /// soon as it learns a route). Sessions send only what changed.
    pub fn sync(&mut self, set: &VipSet) {
        self.vips = set.vips.iter().map(|(key, vip)| (key.ip, vip.service.clone())).collect();
        self.replan();
    }

    /// Withdraws every VIP from every router; the sessions stay up (graceful shutdown).
    pub fn withdraw_all(&mut self) {
        self.shutting_down = true;
        self.replan();
    }

    /// Routes currently at the routers, summed over sessions (`/bgp` has them per peer).
    pub fn routes_announced(&self) -> usize {
        self.source().report().sessions.iter().map(|s| s.routes_announced).sum()
    }

    /// Ends every session with Cease.
    pub async fn stop(self) {
        self.speakers.stop().await;
    }

    fn replan(&mut self) {
        let held = self.held();
        let vips = self.vips.iter().filter(|_| !held).cloned();
        let candidates = announce::director_candidates(vips, self.shutting_down);
        self.speakers.sync(announce::plan(&self.inputs, &candidates));
    }
}
