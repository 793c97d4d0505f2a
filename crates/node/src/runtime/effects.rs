//! The core's effects carried out on the kernel, the health check node ports and the logs.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use switchyard_bpf::{Datapath, LoadOptions};
use switchyard_dataplane::kernel::{KernelMaps, KernelOp};
use switchyard_dataplane::packet_settings::PacketState;
use switchyard_dataplane::reconciler::{
    limits_for, sizes_for_state, state_maps_smaller, state_needs,
};
use switchyard_dataplane::sockdiag;
use switchyard_dataplane::{MapOps, planner::PlanError};
use switchyard_error::ErrorChain;
use switchyard_k8s::health::{RetryOutcome, ServiceHealthError, ServiceHealthServers};
use switchyard_k8s::manifest::ManifestUpdate;
use switchyard_model::{Change, HealthCheck};
use tracing::{debug, error, info, warn};

use super::observability::AgentObservability;
use super::per_packet::{self, PerPacketPrograms};
use crate::announce::Announcer;
use crate::config::NodeConfig;
use crate::core::{Effect, Endpoint, NodeCore};
use crate::error::NodeError;

/// The core and everything its effects act on.
pub(super) struct Agent {
    pub(super) core: NodeCore,
    pub(super) datapath: Datapath,
    /// The TC programs and their state (`devices`), if any.
    pub(super) per_packet: Option<PerPacketPrograms>,
    /// The loadBalancerSourceRanges written into the shared `sy_src_ranges`.
    pub(super) source_ranges: PacketState,
    pub(super) cgroup: PathBuf,
    pub(super) bpf_dir: PathBuf,
    /// Manifest problems already logged, so each is logged once while it lasts.
    pub(super) problems: BTreeSet<String>,
    pub(super) observe: AgentObservability,
    pub(super) health_servers: ServiceHealthServers,
    /// Whether the first reconciliation is done (it is logged as such).
    pub(super) started: bool,
    /// The last plan refused frontends because a state map was full ([`Agent::grow_if_full`]).
    pub(super) maps_full: bool,
    /// The BGP speakers of this node ([`crate::announce`]).
    pub(super) announcer: Announcer,
}

impl Agent {
    /// Carries out `effects` and the core's answers to them, in order. Returns false when the
    /// maps could not be brought up to date (health then keeps the update pending); errors
    /// only for what stops the agent (attaching the programs).
    pub(super) fn carry_out(
        &mut self,
        effects: Vec<Effect>,
        arrived: Instant,
        plan_time: Duration,
    ) -> Result<bool, NodeError> {
        let mut queue: VecDeque<Effect> = effects.into();
        let mut up_to_date = true;
        let mut kernel_time = Duration::ZERO;
        while let Some(effect) = queue.pop_front() {
            let follow_ups = match effect {
                Effect::NodeAddresses { node_port_addresses, primary } => {
                    if let Some(per_packet) = &mut self.per_packet {
                        per_packet.node_changed(
                            self.datapath.maps_mut(),
                            &node_port_addresses,
                            primary,
                        );
                    }
                    Vec::new()
                }
                Effect::DsrNodes { sources, backends } => {
                    if let Some(per_packet) = &mut self.per_packet {
                        per_packet.dsr_changed(&sources, &backends);
                    }
                    Vec::new()
                }
                Effect::HealthCheck { port, check } => {
                    self.serve_health_check(port, check);
                    Vec::new()
                }
                Effect::SourceRanges { before, full, frontends } => {
                    per_packet::source_ranges(
                        &mut self.source_ranges,
                        self.datapath.maps_mut(),
                        before,
                        full,
                        &frontends,
                    );
                    Vec::new()
                }
                Effect::Program { ops, .. } => {
                    let started = Instant::now();
                    let written = self.program(&ops);
                    kernel_time += started.elapsed();
                    self.core.programmed(written)
                }
                Effect::ReadBack => {
                    match KernelMaps::new(self.datapath.maps_mut()).and_then(|m| m.snapshot()) {
                        Ok(snapshot) => self.core.read_back(snapshot),
                        Err(err) => {
                            error!(
                                err = %ErrorChain(&err),
                                "reading the maps back failed; will retry on the next change"
                            );
                            Vec::new()
                        }
                    }
                }
                Effect::Synced { full, ops, released, errors } => {
                    up_to_date = true;
                    self.log_synced(full, ops, released, &errors, plan_time, kernel_time);
                    let sync_time = plan_time + kernel_time;
                    let desired = self.core.model().desired();
                    self.observe.synced(full, sync_time, errors.len(), desired, arrived);
                    Vec::new()
                }
                Effect::SyncFailed { reading_back } => {
                    up_to_date = false;
                    self.observe.sync_failed();
                    if reading_back {
                        warn!(
                            "applying changes failed; re-reading the maps and reconciling everything"
                        );
                    } else {
                        error!("resync failed; will retry on the next change");
                    }
                    Vec::new()
                }
                Effect::Attach => {
                    self.attach()?;
                    Vec::new()
                }
                Effect::SweepSockets(targets) => {
                    self.tear_down_stale(&targets);
                    Vec::new()
                }
                Effect::Announcements { changed, full } => {
                    if full {
                        self.announcer.invalidate();
                    }
                    for diff in &changed {
                        self.announcer.touched(diff);
                    }
                    self.announcer.sync(self.core.model().desired());
                    Vec::new()
                }
            };
            for follow_up in follow_ups.into_iter().rev() {
                queue.push_front(follow_up);
            }
        }
        Ok(up_to_date)
    }

    /// Shows the BGP speakers the changes the core is about to get (BGP objects, pools, this
    /// node's labels): they decide on them at the next [`Effect::Announcements`].
    pub(super) fn observe_changes(&mut self, changes: &[Change]) {
        for change in changes {
            self.announcer.observe(change);
        }
        self.observe.note_trigger_times(changes);
    }

    /// Loads the maps again at `options.sizes` where they are smaller (their entries copied
    /// into larger maps, `switchyard_bpf::loader`), before the programs of this agent are
    /// attached: the programs attached by an earlier agent keep the old maps until then.
    pub(super) fn resize_maps(&mut self, options: &LoadOptions) -> Result<(), NodeError> {
        let before = self.datapath.sizes();
        let datapath = Datapath::load(options).map_err(|source| NodeError::Bpf {
            what: "migrating the BPF maps to larger ones".into(),
            source: source.into(),
        })?;
        self.datapath = datapath;
        self.observe.maps_replaced();
        let sizes = self.datapath.sizes();
        let table_size =
            self.datapath.maps().maglev_table_size().unwrap_or(options.maglev_table_size);
        self.core.resized(limits_for(&sizes, table_size));
        info!(?before, after = ?sizes, "state maps sized for the state");
        Ok(())
    }

    /// After a plan refused frontends for a full state map: when the configured maxima
    /// (`options.sizes`) allow, migrates the state maps to ones sized for the state (twice
    /// over), attaches a new generation of every program against them (as a restart does:
    /// the old programs keep the old maps until then), and plans everything again within the
    /// new capacities. Returns the effects of that plan; none when nothing was full or the
    /// maps are at their maxima (the refusals stay, logged and counted).
    pub(super) fn grow_if_full(
        &mut self,
        options: &LoadOptions,
        config: &NodeConfig,
    ) -> Result<Vec<Effect>, NodeError> {
        if !std::mem::take(&mut self.maps_full) {
            return Ok(Vec::new());
        }
        let wanted = sizes_for_state(state_needs(self.core.model().desired()), &options.sizes);
        if !state_maps_smaller(&self.datapath.sizes(), &wanted) {
            warn!(sizes = ?self.datapath.sizes(), "state maps at their configured maxima (--max-*)");
            return Ok(Vec::new());
        }
        self.resize_maps(&LoadOptions { sizes: wanted, ..options.clone() })?;
        if self.started {
            if let Some(old) = &self.per_packet {
                let snat_ports = old.snat_ports();
                let maps = self.datapath.maps_mut();
                let model = self.core.model();
                self.per_packet =
                    Some(PerPacketPrograms::load(options, maps, config, snat_ports, model)?);
            }
            self.attach()?;
        }
        Ok(self.core.replan_full())
    }

    /// Writes map operations; a failure is logged here, the core only learns that it failed.
    fn program(&mut self, ops: &[KernelOp]) -> bool {
        let written =
            KernelMaps::new(self.datapath.maps_mut()).and_then(|mut maps| maps.apply(ops));
        if let Err(err) = &written {
            error!(err = %ErrorChain(err), "writing the maps failed");
        }
        written.is_ok()
    }

    /// The socket programs to the cgroup, the per-packet programs to the devices (and off the
    /// devices no longer listed).
    fn attach(&mut self) -> Result<(), NodeError> {
        self.datapath.attach(&self.cgroup).map_err(|source| NodeError::Bpf {
            what: format!("attaching to cgroup {}", self.cgroup.display()),
            source: source.into(),
        })?;
        match &mut self.per_packet {
            Some(per_packet) => per_packet.attach(&self.bpf_dir),
            None => {
                super::pod_devices::detach_all(&self.bpf_dir);
                per_packet::detach_others(&self.bpf_dir, &[], &[], &[])
            }
        }
    }

    fn log_synced(
        &mut self,
        full: bool,
        ops: usize,
        released: usize,
        errors: &[PlanError],
        plan_time: Duration,
        kernel_time: Duration,
    ) {
        for err in errors {
            error!(err = %ErrorChain(err), "frontend not programmed");
            self.maps_full |= matches!(
                err,
                PlanError::FrontendsFull { .. }
                    | PlanError::BackendsFull { .. }
                    | PlanError::SlotsFull { .. }
            );
        }
        let what = match (std::mem::replace(&mut self.started, true), full) {
            (false, _) => "initial reconciliation",
            (true, true) => "resync",
            (true, false) => "update",
        };
        info!(
            ops,
            released_backends = released,
            plan_us = plan_time.as_micros() as u64,
            kernel_us = kernel_time.as_micros() as u64,
            frontends = self.core.model().desired().len(),
            "{what} applied"
        );
    }

    /// Starts, updates or stops (`None`) the health check node port server of one port; a port
    /// that cannot be bound is logged with its Service and retried with backoff
    /// ([`Agent::retry_health_checks`]), and at once on the Service's next change.
    fn serve_health_check(&mut self, port: u16, check: Option<HealthCheck>) {
        let what = check.as_ref().map(|c| (c.service.to_string(), c.local_endpoints));
        match self.health_servers.update(port, check) {
            Ok(()) => match what {
                Some((service, local_endpoints)) => {
                    debug!(port, %service, local_endpoints, "health check node port")
                }
                None => info!(port, "health check node port closed"),
            },
            Err(err) => log_health_bind_failure(&err),
        }
    }

    /// Binds the health check node ports whose retry is due.
    pub(super) fn retry_health_checks(&mut self) {
        for outcome in self.health_servers.retry(Instant::now()) {
            match outcome {
                RetryOutcome::Bound { port, service, attempts } => {
                    info!(port, %service, attempts, "health check node port bound after retrying")
                }
                RetryOutcome::Failed(err) => log_health_bind_failure(&err),
            }
        }
    }

    pub(super) fn report_problems(&mut self, update: &ManifestUpdate) {
        let now: BTreeSet<String> = update.errors.iter().map(ToString::to_string).collect();
        for problem in now.difference(&self.problems) {
            warn!(problem = %problem, "manifest problem; the object keeps its last good version");
        }
        for problem in self.problems.difference(&now) {
            info!(problem = %problem, "manifest problem resolved");
        }
        self.problems = now;
    }

    /// Destroys the sockets of the cgroup connected to `targets`, and only sockets our
    /// programs translated.
    fn tear_down_stale(&self, targets: &BTreeSet<Endpoint>) {
        let maps = self.datapath.maps();
        let translated = |socket: &sockdiag::FoundSocket| {
            let (addr, family) = switchyard_bpf::abi::Addr::from_ip(socket.destination.0);
            let key = switchyard_bpf::abi::SockRevnatKey {
                cookie: socket.cookie,
                addr,
                port: socket.destination.1.to_be(),
                family,
                pad: [0; 5],
            };
            // Keep the socket unless our programs translated it to this backend.
            maps.sock_revnat.get(&key, 0).is_err()
        };
        let targets: HashSet<Endpoint> = targets.iter().copied().collect();
        let report = sockdiag::sweep_cgroup(&self.cgroup, &targets, &translated);
        for err in &report.errors {
            warn!(%err, "socket sweep");
        }
        debug!(?targets, "stale backends");
        info!(
            backends = targets.len(),
            namespaces = report.namespaces,
            destroyed = report.destroyed,
            kept = report.kept,
            "sockets to removed backends torn down"
        );
    }
}

/// A health check node port that could not be bound: which Service, which port, when again.
fn log_health_bind_failure(err: &ServiceHealthError) {
    error!(
        port = err.port,
        service = %err.service,
        attempts = err.attempts,
        retry_in_ms = err.retry_in.as_millis() as u64,
        error = %err.source,
        "health check node port not served (port in use?); retrying"
    );
}
