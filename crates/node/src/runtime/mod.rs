//! The node role's runtime: tokio, the source, the kernel, the local API, wired in order.
//!
//! source (manifest watcher or API server) -> model (NodeModel) -> reconciler (planner + BPF
//! maps). The maps, the cgroup attachments and the TC attachments of the devices are pinned under
//! the bpffs directory and outlive the process: a restarted agent adopts them and reconciles
//! without a moment where a Service is missing. Services with externalTrafficPolicy Local get a
//! health check node port.

mod observability;
mod per_packet;
mod source;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use switchyard_bpf::{Datapath, LoadOptions};
use switchyard_dataplane::maglev_tables::MaglevTables;
use switchyard_dataplane::reconciler::{Applied, Reconciler, limits_for};
use switchyard_dataplane::sockdiag;
use switchyard_error::ErrorChain;
use switchyard_k8s::health::{RetryOutcome, ServiceHealthServers};
use switchyard_k8s::manifest::ManifestUpdate;
use switchyard_model::{
    DesiredState, Frontend, FrontendKey, HealthCheckIndex, NodeModel, ProxyConfig, StateDiff,
    validate::ValidationOptions,
};
use tracing::{debug, error, info, warn};

use crate::announce::Announcer;
use crate::config::{NodeConfig, check_port_ranges};
use crate::error::NodeError;
use crate::findings::Findings;
use observability::AgentObservability;
use per_packet::PerPacketPrograms;

/// Removes everything an agent installed under `bpf_dir`: links first (cgroup and TC:
/// detaching the programs), then every map pin.
pub fn cleanup(bpf_dir: &Path) -> Result<(), NodeError> {
    let what = || format!("cleaning up {}", bpf_dir.display());
    switchyard_bpf::loader::cleanup(bpf_dir)
        .map_err(|source| NodeError::Bpf { what: what(), source: source.into() })?;
    switchyard_bpf::tc::cleanup(bpf_dir)
        .map_err(|source| NodeError::Bpf { what: what(), source: source.into() })?;
    switchyard_bpf::decap::cleanup(bpf_dir)
        .map_err(|source| NodeError::Bpf { what: what(), source: source.into() })?;
    info!(bpf_dir = %bpf_dir.display(), "removed programs, links and maps");
    Ok(())
}

/// Runs the node role until SIGTERM or Ctrl-C. Programs and maps stay in place when it returns.
pub async fn run(mut config: NodeConfig) -> Result<(), NodeError> {
    config.devices.retain(|device| !device.trim().is_empty());
    if config.node_name.is_empty() || config.cgroup.as_os_str().is_empty() {
        return Err(NodeError::MissingIdentity);
    }
    if !config.devices.is_empty() {
        check_port_ranges(config.snat_port_range, config.node_port_range)?;
    }
    for device in &config.devices {
        switchyard_bpf::tc::check_device(device)
            .map_err(|source| NodeError::Device(source.into()))?;
    }
    let node_name = config.node_name.clone();
    let cgroup = config.cgroup.clone();
    let sizes = config.sizes;
    let tables = MaglevTables::new(config.maglev_table_size)
        .map_err(|source| NodeError::MaglevTableSize { size: config.maglev_table_size, source })?;
    let options = LoadOptions {
        sizes,
        maglev_table_size: config.maglev_table_size,
        ..LoadOptions::new(&config.bpf_dir)
    };
    let mut datapath = Datapath::load(&options).map_err(|source| NodeError::Bpf {
        what: "loading the BPF maps".into(),
        source: source.into(),
    })?;
    let limits = limits_for(&sizes, config.maglev_table_size);
    let (mut reconciler, adopted) =
        Reconciler::adopt(datapath.maps_mut(), limits, Arc::new(tables)).map_err(|source| {
            NodeError::Maps { what: "reading the pinned maps", source: source.into() }
        })?;
    info!(
        frontends = adopted.frontends,
        backends = adopted.backends,
        orphans = adopted.orphans,
        "adopted pinned state"
    );

    let mut watcher = source::Source::open(&config.source, config.debounce, &node_name).await?;
    let health = source::Health::start(&config.source, &watcher, &node_name).await?;
    // A restarted agent whose data plane kept forwarding says so to routers (graceful restart).
    let announcer = Announcer::new(&node_name, adopted.frontends > 0);
    let observe = AgentObservability::start(
        &config.bpf_dir,
        &config.api_socket,
        config.metrics_bind_address,
        announcer.source(),
    )
    .await?;
    let mut agent = Agent {
        model: NodeModel::new(ProxyConfig {
            proxy_name: config.source.proxy_name.clone(),
            node_port_range: config.node_port_range,
            ..ProxyConfig::new(node_name.clone())
        }),
        problems: BTreeSet::new(),
        cgroup: cgroup.clone(),
        destroy_stale: config.destroy_stale_sockets,
        draining: HashSet::new(),
        observe,
        packet: None,
        health_checks: HealthCheckIndex::default(),
        health_servers: ServiceHealthServers::new(health.shared()),
        findings: Findings::new(ValidationOptions { node_port_range: config.node_port_range }),
        announcer,
    };

    // First reconciliation: everything the directory holds against what was adopted. Existing
    // frontends keep their ids and stay in place while their slots are brought up to date.
    let first = watcher.next().await.ok_or(NodeError::SourceStopped)?;
    let arrived = Instant::now();
    agent.report_problems(&first);
    agent.findings.record(&first.changes);
    health.queued(&first.changes);
    for change in first.changes {
        agent.announcer.observe(&change);
        agent.model.apply(change);
    }
    if !config.devices.is_empty() {
        agent.packet = Some(PerPacketPrograms::load(
            &options,
            datapath.maps_mut(),
            config.devices.clone(),
            config.snat_port_range,
            config.node_port_range,
            &agent.model,
            &config.directors,
        )?);
    }
    if let Some(packet) = &mut agent.packet {
        packet.prepare(reconciler.planner(), all_frontends(agent.model.desired()));
    }
    reconciler.hold(&agent.model.terminating_endpoints());
    let applied =
        reconciler.apply_full(datapath.maps_mut(), agent.model.desired()).map_err(|source| {
            NodeError::Maps { what: "programming the maps", source: source.into() }
        })?;
    if let Some(packet) = &mut agent.packet {
        packet.finish_full(reconciler.planner(), agent.model.desired());
    }
    agent.log_applied("initial reconciliation", &applied);
    agent.observe.synced(true, &applied, agent.model.desired(), arrived);

    datapath.attach(&cgroup).map_err(|source| NodeError::Bpf {
        what: format!("attaching to cgroup {}", cgroup.display()),
        source: source.into(),
    })?;
    match &mut agent.packet {
        Some(packet) => packet.attach(&config.bpf_dir)?,
        None => per_packet::detach_others(&config.bpf_dir, &[])?,
    }
    agent.health_checks = HealthCheckIndex::new(agent.model.desired());
    for (port, check) in agent.health_checks.checks() {
        agent.serve_health_check(port, Some(check));
    }
    agent.findings.report();
    info!(
        node = %node_name,
        cgroup = %cgroup.display(),
        bpf_dir = %config.bpf_dir.display(),
        frontends = reconciler.planner().frontend_count(),
        devices = ?config.devices,
        health_check_node_ports = ?agent.health_servers.ports(),
        health_check_node_ports_pending = ?agent.health_servers.pending_ports(),
        "agent ready"
    );
    health.updated();
    agent.announcer.sync(agent.model.desired());

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(NodeError::Signal)?;
    loop {
        // A health check node port that could not be bound is tried again on its own.
        let retry_at = agent.health_servers.next_retry();
        let health_retry = async move {
            match retry_at {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = health_retry => agent.retry_health_checks(),
            update = watcher.next() => {
                let Some(update) = update else { return Err(NodeError::SourceStopped) };
                health.queued(&update.changes);
                agent.findings.record(&update.changes);
                if agent.handle(update, &mut reconciler, &mut datapath) {
                    health.updated();
                }
                agent.announcer.sync(agent.model.desired());
                agent.findings.report();
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    agent.announcer.shutdown().await;
    info!(
        bpf_dir = %config.bpf_dir.display(),
        "stopping; programs and maps stay in place (`switchyard agent --cleanup` removes them)"
    );
    Ok(())
}

struct Agent {
    model: NodeModel,
    /// Manifest problems already logged, so each is logged once while it lasts.
    problems: BTreeSet<String>,
    cgroup: PathBuf,
    destroy_stale: bool,
    /// Backends released while terminating: their connections were kept, and are torn down
    /// once the endpoint is gone for good (no longer terminating, not used again).
    draining: HashSet<(std::net::IpAddr, u16)>,
    observe: AgentObservability,
    /// The TC programs and their state (`--devices`), if any.
    packet: Option<PerPacketPrograms>,
    health_checks: HealthCheckIndex,
    health_servers: ServiceHealthServers,
    /// Semantic problems of the objects read, logged once per object version.
    findings: Findings,
    /// The BGP speakers (sessions only when BGPPeers select this node).
    announcer: Announcer,
}

/// A health check node port that could not be bound: which Service, which port, when again.
fn log_health_bind_failure(err: &switchyard_k8s::health::ServiceHealthError) {
    error!(
        port = err.port,
        service = %err.service,
        attempts = err.attempts,
        retry_in_ms = err.retry_in.as_millis() as u64,
        error = %err.source,
        "health check node port not served (port in use?); retrying"
    );
}

/// Every frontend of `desired` as a change.
fn all_frontends(desired: &DesiredState) -> impl Iterator<Item = (FrontendKey, Option<&Frontend>)> {
    desired.frontends.iter().map(|(k, f)| (*k, Some(f)))
}

/// The changes of `diffs`, in order (a later one wins).
fn diff_changes(diffs: &[StateDiff]) -> impl Iterator<Item = (FrontendKey, Option<&Frontend>)> {
    diffs.iter().flat_map(|diff| {
        diff.upserted
            .iter()
            .map(|(k, f)| (*k, Some(f)))
            .chain(diff.removed.iter().map(|k| (*k, None)))
    })
}

impl Agent {
    /// Applies an update; false when the maps could not be brought up to date (health then
    /// keeps the update pending).
    fn handle(
        &mut self,
        update: ManifestUpdate,
        reconciler: &mut Reconciler,
        datapath: &mut Datapath,
    ) -> bool {
        let arrived = Instant::now();
        self.report_problems(&update);
        let mut diffs: Vec<StateDiff> = Vec::with_capacity(update.changes.len());
        for change in update.changes {
            self.announcer.observe(&change);
            let diff = self.model.apply(change);
            self.announcer.touched(&diff);
            if !diff.is_empty() {
                diffs.push(diff);
            }
        }
        if let Some(packet) = &mut self.packet {
            packet.node_changed(datapath.maps_mut(), &self.model);
        }
        for diff in &diffs {
            for (port, check) in self.health_checks.apply(diff) {
                self.serve_health_check(port, check);
            }
        }
        // Terminating endpoints keep their backend entries (their per-packet flows go on).
        let holds_ended = reconciler.hold(&self.model.terminating_endpoints());
        if diffs.is_empty() && holds_ended {
            // No frontend changed, but an endpoint that was terminating is gone: delete it.
            diffs.push(StateDiff::default());
        }
        if diffs.is_empty() {
            // No map change, but a draining endpoint may have left its slice for good.
            let finished = self.finished_draining(reconciler);
            self.tear_down_stale(datapath, finished);
            return true;
        }
        self.observe.pending(diffs.len());
        if let Some(packet) = &mut self.packet {
            packet.prepare(reconciler.planner(), diff_changes(&diffs));
        }
        let (full, applied) = match reconciler.apply_diffs(datapath.maps_mut(), &diffs) {
            Ok(applied) => (false, applied),
            Err(err) => {
                self.observe.sync_failed();
                warn!(
                    err = %ErrorChain(&err),
                    "applying changes failed; re-reading the maps and reconciling everything"
                );
                match reconciler.resync(datapath.maps_mut(), self.model.desired()) {
                    Ok(applied) => (true, applied),
                    Err(err) => {
                        self.observe.sync_failed();
                        error!(
                            err = %ErrorChain(&err),
                            "resync failed; will retry on the next change"
                        );
                        return false;
                    }
                }
            }
        };
        if let Some(packet) = &mut self.packet {
            if full {
                packet.finish_full(reconciler.planner(), self.model.desired());
            } else {
                packet.finish(reconciler.planner(), diff_changes(&diffs));
            }
        }
        self.log_applied("update", &applied);
        self.observe.synced(full, &applied, self.model.desired(), arrived);
        let mut targets = self.finished_draining(reconciler);
        for backend in &applied.released {
            let target = (backend.ip, backend.port);
            if reconciler.uses_address(backend.ip, backend.port) {
                continue;
            }
            if self.model.is_terminating(backend.ip) {
                self.draining.insert(target);
            } else {
                targets.insert(target);
            }
        }
        self.tear_down_stale(datapath, targets);
        true
    }

    /// Draining backends whose endpoint is no longer terminating: gone (their sockets are torn
    /// down) or back in use (forgotten).
    fn finished_draining(&mut self, reconciler: &Reconciler) -> HashSet<(std::net::IpAddr, u16)> {
        let mut finished = HashSet::new();
        self.draining.retain(|&(ip, port)| {
            if reconciler.uses_address(ip, port) {
                return false;
            }
            if self.model.is_terminating(ip) {
                return true;
            }
            finished.insert((ip, port));
            false
        });
        finished
    }

    /// Starts, updates or stops (`None`) the health check node port server of one port; a port
    /// that cannot be bound is logged with its Service and retried with backoff
    /// ([`Agent::retry_health_checks`]), and at once on the Service's next change.
    fn serve_health_check(&mut self, port: u16, check: Option<switchyard_model::HealthCheck>) {
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
    fn retry_health_checks(&mut self) {
        for outcome in self.health_servers.retry(Instant::now()) {
            match outcome {
                RetryOutcome::Bound { port, service, attempts } => {
                    info!(port, %service, attempts, "health check node port bound after retrying")
                }
                RetryOutcome::Failed(err) => log_health_bind_failure(&err),
            }
        }
    }

    fn report_problems(&mut self, update: &ManifestUpdate) {
        let now: BTreeSet<String> = update.errors.iter().map(ToString::to_string).collect();
        for problem in now.difference(&self.problems) {
            warn!(problem = %problem, "manifest problem; the object keeps its last good version");
        }
        for problem in self.problems.difference(&now) {
            info!(problem = %problem, "manifest problem resolved");
        }
        self.problems = now;
    }

    fn log_applied(&self, what: &str, applied: &Applied) {
        for err in &applied.errors {
            error!(err = %ErrorChain(err), "frontend not programmed");
        }
        info!(
            ops = applied.ops,
            released_backends = applied.released.len(),
            plan_us = applied.plan_time.as_micros() as u64,
            kernel_us = applied.apply_time.as_micros() as u64,
            frontends = self.model.desired().len(),
            "{what} applied"
        );
    }

    /// Destroys sockets to backends that are gone for good (not terminating, not in use by any
    /// other frontend), and only sockets our programs translated.
    fn tear_down_stale(&self, datapath: &Datapath, targets: HashSet<(std::net::IpAddr, u16)>) {
        if !self.destroy_stale || targets.is_empty() {
            return;
        }
        let maps = datapath.maps();
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
