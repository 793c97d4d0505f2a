//! The agent's observability: sync metrics, the kernel collector and the local API.
//!
//! Kept apart from the agent loop so it only reports what it did; everything here reads
//! the pinned maps through handles of its own.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use switchyard_bpf::Maps;
use switchyard_error::ErrorChain;
use switchyard_model::{Change, DesiredState};
use switchyard_observe::bgp::BgpSource;
use switchyard_observe::labels::ServiceIndex;
use switchyard_observe::metrics::{KernelCollector, SyncMetrics};
use switchyard_observe::server::{self, ApiState, DesiredRequests, DesiredSource};
use tracing::{error, warn};

use crate::error::NodeError;

/// Metrics and the local API of a running agent.
pub(crate) struct AgentObservability {
    sync: SyncMetrics,
    services: Arc<RwLock<ServiceIndex>>,
    /// Reads the pinned maps for `/metrics` and `/status`.
    collector: Arc<KernelCollector>,
    /// The local API; dropped (socket file removed) when the agent stops.
    _api: Option<server::UnixServer>,
    /// Trigger times of EndpointSlice changes not yet programmed (kube-proxy's
    /// `lastChangeTriggerTimes`), observed as network programming latency at the next sync.
    triggers: Vec<SystemTime>,
    /// Trigger times before this are not observed: the first list holds every slice, with the
    /// time of changes programmed long ago by someone else (kube-proxy's trackerStartTime).
    started_at: SystemTime,
}

/// The EndpointSlice annotation kube-proxy measures network programming latency from.
pub(crate) const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

impl AgentObservability {
    /// Opens the pinned maps in `bpf_dir` and serves `/metrics`, `/status`, `/desired` and `/bgp`
    /// on the unix socket `api_socket`, and `/metrics` alone on TCP at `metrics_address`.
    /// `/desired` is answered by the agent's loop from the requests returned.
    pub(crate) async fn start(
        bpf_dir: &Path,
        api_socket: &Path,
        metrics_address: Option<SocketAddr>,
        bgp: BgpSource,
    ) -> Result<(Self, DesiredRequests), NodeError> {
        let maps = Maps::open_pinned(bpf_dir).map_err(|source| NodeError::Bpf {
            what: format!("opening the maps pinned in {} for metrics", bpf_dir.display()),
            source: source.into(),
        })?;
        let services = Arc::new(RwLock::new(ServiceIndex::default()));
        let collector =
            Arc::new(KernelCollector::new(maps, bpf_dir.to_owned(), Arc::clone(&services)));
        let sync = SyncMetrics::default();
        let (desired, desired_requests) = DesiredSource::channel();
        let state = ApiState::new(sync.clone(), Arc::clone(&collector), desired, bgp);
        let router = server::router(state.clone());
        // The local API is for inspection; a socket that cannot be served must not keep the
        // data plane from running, so it is an error in the log, not a reason to stop.
        let api = match server::serve_unix(api_socket, router.clone()) {
            Ok(api) => Some(api),
            Err(err) => {
                error!(err = %ErrorChain(&err), "local API not served; the agent runs without it");
                None
            }
        };
        if let Some(address) = metrics_address {
            // Metrics only: the TCP port is reachable from the network.
            server::serve_tcp(address, server::metrics_router(state))
                .await
                .map_err(|source| NodeError::Metrics(source.into()))?;
        }
        let observability = AgentObservability {
            sync,
            services,
            collector,
            _api: api,
            triggers: Vec::new(),
            started_at: SystemTime::now(),
        };
        Ok((observability, desired_requests))
    }

    /// Some maps were migrated to larger ones: read the new ones from now on.
    pub(crate) fn maps_replaced(&self) {
        if let Err(err) = self.collector.reopen() {
            error!(err = %ErrorChain(&err), "metrics keep reading the maps opened before");
        }
    }

    /// Changes are waiting to be programmed.
    pub(crate) fn pending(&self, changes: usize) {
        self.sync.set_pending(changes);
    }

    /// Remembers the trigger times of changed (not deleted) EndpointSlices, as kube-proxy does;
    /// an unparsable annotation is skipped.
    pub(crate) fn note_trigger_times(&mut self, changes: &[Change]) {
        for change in changes {
            let Change::EndpointSlice(_, Some(slice)) = change else { continue };
            let text =
                slice.metadata.annotations.as_ref().and_then(|a| a.get(TRIGGER_TIME_ANNOTATION));
            let Some(at) = text.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else { continue };
            let at = SystemTime::from(at);
            if at > self.started_at {
                self.triggers.push(at);
            }
        }
    }

    /// A sync finished: record its duration, the latency since the changes `arrived` and since
    /// the trigger times noted, and refresh the Service names of the frontends.
    pub(crate) fn synced(
        &mut self,
        full: bool,
        duration: Duration,
        errors: usize,
        desired: &DesiredState,
        arrived: Instant,
    ) {
        self.sync.observe_sync(full, duration, SystemTime::now(), errors);
        self.sync.observe_change_latency(arrived.elapsed());
        let now = SystemTime::now();
        for at in self.triggers.drain(..) {
            // A trigger time ahead of this node's clock (skew) is observed as 0.
            self.sync.observe_programming(now.duration_since(at).unwrap_or_default());
        }
        self.sync.set_pending(0);
        match self.services.write() {
            Ok(mut index) => *index = ServiceIndex::from_desired(desired),
            Err(_) => warn!("service index poisoned; metrics keep the previous Service names"),
        }
    }

    /// `count` frontend addresses are refused to the Services that ask for them.
    pub(crate) fn refused(&self, count: usize) {
        self.sync.set_refused(count);
    }

    /// A sync failed.
    pub(crate) fn sync_failed(&self) {
        self.sync.sync_failed();
    }
}
