//! `switchyard agent`: the node role, fed from a manifest directory or the API server.
//!
//! source (manifest watcher) -> model (NodeModel) -> reconciler (planner + BPF maps). The maps,
//! the cgroup attachments and the TC attachments of `--devices` are pinned under `--bpf-dir` and
//! outlive the process: a restarted agent adopts them and reconciles without a moment where a
//! Service is missing. Services with externalTrafficPolicy Local get a health check node port.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use switchyard_bpf::{Datapath, LoadOptions, MapSizes};
use switchyard_dataplane::maglev_tables::MaglevTables;
use switchyard_dataplane::reconciler::{Applied, Reconciler, limits_for};
use switchyard_dataplane::sockdiag;
use switchyard_dataplane::stale::TerminatingEndpoints;
use switchyard_k8s::health::{RetryOutcome, ServiceHealthServers};
use switchyard_k8s::manifest::{ManifestUpdate, WatchOptions};
use switchyard_model::{
    DesiredState, Frontend, FrontendKey, HealthCheckIndex, NodeModel, PortRange, ProxyConfig,
    StateDiff, validate::ValidationOptions,
};
use tracing::{debug, error, info, warn};

mod findings;
mod packet;
mod source;
use super::agent_observe::AgentObservability;

/// Run the node role: socket-level load balancing for a cgroup, and per-packet NodePort /
/// LoadBalancer / external IP translation on --devices.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Directory of Kubernetes manifests (Services, EndpointSlices, Nodes); watched for changes.
    /// Without it the API server is the source (--kubeconfig, or in-cluster configuration).
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,

    /// Name of the Node this agent serves (endpoints with this nodeName are local).
    #[arg(long, value_name = "NAME", env = "NODE_NAME", required_unless_present = "cleanup")]
    node_name: Option<String>,

    /// cgroup v2 directory whose processes get socket-level load balancing.
    #[arg(long, value_name = "PATH", required_unless_present = "cleanup")]
    cgroup: Option<PathBuf>,

    /// bpffs directory for pinned maps and program links (a bpffs is mounted there if needed).
    #[arg(long, value_name = "PATH", default_value = "/sys/fs/bpf/switchyard")]
    bpf_dir: PathBuf,

    /// Remove everything an agent installed under --bpf-dir (programs, links, maps) and exit.
    #[arg(long)]
    cleanup: bool,

    /// Capacity of the frontends map (address, port, protocol, scope).
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().frontends)]
    max_frontends: u32,

    /// Capacity of the backends map (distinct endpoints).
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().backends)]
    max_backends: u32,

    /// Capacity of the slots map (backend references summed over all frontends).
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().slots)]
    max_slots: u32,

    /// Number of Maglev tables (frontends using Maglev).
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().maglev_tables)]
    max_maglev_tables: u32,

    /// Maglev table size M, a prime; the same on every node.
    #[arg(long, value_name = "M", default_value_t = switchyard_bpf::abi::MAGLEV_DEFAULT_TABLE_SIZE)]
    maglev_table_size: u32,

    /// Quiet time after a manifest change before the changed files are re-read: long enough to
    /// join an editor's or `kubectl cp`'s burst of writes, short enough to keep a change from
    /// file to kernel under 5 ms (docs/reconciler.md).
    #[arg(long, value_name = "MS", default_value_t = 1)]
    debounce_ms: u64,

    /// Leave sockets connected to removed backends alone (default: destroy them).
    #[arg(long)]
    keep_stale_sockets: bool,

    /// Network devices that receive traffic from outside the node (NodePort, LoadBalancer and
    /// external IPs): the per-packet programs are attached at TC ingress and egress of each.
    /// Devices attached by an earlier agent but no longer listed are detached. Empty entries are
    /// ignored, so `--devices=` (an empty ConfigMap value) means none.
    #[arg(long, value_name = "DEV[,DEV..]", value_delimiter = ',')]
    devices: Vec<String>,

    /// Source ports for flows SNATed to this node's address (to pods on other nodes); must not
    /// overlap --node-port-range.
    #[arg(long, value_name = "FIRST-LAST", default_value = "61000-65535")]
    snat_port_range: PortRange,

    /// The cluster's NodePort range (kube-apiserver --service-node-port-range): NodePorts
    /// outside it are not opened.
    #[arg(long, value_name = "FIRST-LAST", default_value = "30000-32767")]
    node_port_range: PortRange,

    /// Addresses the directors send encapsulated VIP traffic from: GUE, FOU and IPIP packets from
    /// these are decapsulated on --devices (first at TC ingress) and go on to the per-packet
    /// path; encapsulated packets from anyone else are dropped and counted (docs/director.md).
    #[arg(long, value_name = "IP[,IP..]", value_delimiter = ',')]
    director_addresses: Vec<std::net::IpAddr>,

    /// Destination UDP port of the directors' GUE and FOU packets.
    #[arg(long, value_name = "PORT", default_value_t = switchyard_bpf::director::GUE_PORT_DEFAULT)]
    gue_port: u16,

    #[command(flatten)]
    source: source::SourceArgs,
    /// Unix socket of the local API (`/metrics`, `/status`, `/desired`); mode 0600.
    #[arg(long, value_name = "PATH", default_value = "/run/switchyard/agent.sock")]
    api_socket: PathBuf,

    /// Also serve `/metrics` (and `/status`) on this TCP address; off unless given.
    #[arg(long, value_name = "ADDR")]
    metrics_bind_address: Option<std::net::SocketAddr>,
}

pub(crate) fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if args.cleanup {
        // Links first (cgroup and TC: detaching the programs), then every map pin.
        switchyard_bpf::loader::cleanup(&args.bpf_dir)
            .with_context(|| format!("cleaning up {}", args.bpf_dir.display()))?;
        switchyard_bpf::tc::cleanup(&args.bpf_dir)
            .with_context(|| format!("cleaning up {}", args.bpf_dir.display()))?;
        switchyard_bpf::decap::cleanup(&args.bpf_dir)
            .with_context(|| format!("cleaning up {}", args.bpf_dir.display()))?;
        info!(bpf_dir = %args.bpf_dir.display(), "removed programs, links and maps");
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(mut args: AgentArgs) -> anyhow::Result<ExitCode> {
    args.devices.retain(|device| !device.trim().is_empty());
    let (Some(node_name), Some(cgroup)) = (args.node_name.clone(), args.cgroup.clone()) else {
        bail!("--node-name and --cgroup are required");
    };
    if !args.devices.is_empty() {
        packet::check_port_ranges(args.snat_port_range, args.node_port_range)?;
    }
    for device in &args.devices {
        switchyard_bpf::tc::check_device(device).context("--devices")?;
    }
    let sizes = MapSizes {
        frontends: args.max_frontends,
        backends: args.max_backends,
        slots: args.max_slots,
        maglev_tables: args.max_maglev_tables,
        ..MapSizes::default()
    };
    let tables = MaglevTables::new(args.maglev_table_size)
        .with_context(|| format!("--maglev-table-size {}", args.maglev_table_size))?;
    let options = LoadOptions {
        sizes,
        maglev_table_size: args.maglev_table_size,
        ..LoadOptions::new(&args.bpf_dir)
    };
    let mut datapath = Datapath::load(&options).context("loading the BPF maps")?;
    let limits = limits_for(&sizes, args.maglev_table_size);
    let (mut reconciler, adopted) =
        Reconciler::adopt(datapath.maps_mut(), limits, Arc::new(tables))
            .context("reading the pinned maps")?;
    info!(
        frontends = adopted.frontends,
        backends = adopted.backends,
        orphans = adopted.orphans,
        "adopted pinned state"
    );

    let watch = WatchOptions {
        debounce: Duration::from_millis(args.debounce_ms),
        ..WatchOptions::default()
    };
    let mut watcher =
        source::Source::open(args.manifests.as_deref(), watch, &node_name, &args.source).await?;
    let health = source::Health::start(&args.source, &watcher, &node_name).await?;
    let observe =
        AgentObservability::start(&args.bpf_dir, &args.api_socket, args.metrics_bind_address)
            .await?;
    let mut agent = Agent {
        model: NodeModel::new(ProxyConfig {
            proxy_name: args.source.proxy_name(),
            node_port_range: args.node_port_range,
            ..ProxyConfig::new(node_name.clone())
        }),
        terminating: TerminatingEndpoints::default(),
        problems: BTreeSet::new(),
        cgroup: cgroup.clone(),
        destroy_stale: !args.keep_stale_sockets,
        draining: HashSet::new(),
        observe,
        packet: None,
        health_checks: HealthCheckIndex::default(),
        health_servers: ServiceHealthServers::new(health.shared()),
        findings: findings::Findings::new(ValidationOptions {
            node_port_range: args.node_port_range,
        }),
    };

    // First reconciliation: everything the directory holds against what was adopted. Existing
    // frontends keep their ids and stay in place while their slots are brought up to date.
    let first = watcher.next().await.context("the manifest watcher stopped before reading")?;
    let arrived = Instant::now();
    agent.report_problems(&first);
    agent.findings.record(&first.changes);
    health.queued(&first.changes);
    for change in first.changes {
        agent.terminating.observe(&change);
        agent.model.apply(change);
    }
    if !args.devices.is_empty() {
        agent.packet = Some(packet::PacketPath::load(
            &options,
            datapath.maps_mut(),
            args.devices.clone(),
            args.snat_port_range,
            args.node_port_range,
            &agent.model,
            packet::Directors {
                addresses: args.director_addresses.iter().copied().collect(),
                gue_port: args.gue_port,
            },
        )?);
    }
    if let Some(packet) = &mut agent.packet {
        packet.prepare(reconciler.planner(), all_frontends(agent.model.desired()));
    }
    reconciler.hold(&agent.terminating.endpoints());
    let applied = reconciler
        .apply_full(datapath.maps_mut(), agent.model.desired())
        .context("programming the maps")?;
    if let Some(packet) = &mut agent.packet {
        packet.finish_full(reconciler.planner(), agent.model.desired());
    }
    agent.log_applied("initial reconciliation", &applied);
    agent.observe.synced(true, &applied, agent.model.desired(), arrived);

    datapath
        .attach(&cgroup)
        .with_context(|| format!("attaching to cgroup {}", cgroup.display()))?;
    match &mut agent.packet {
        Some(packet) => packet.attach(&args.bpf_dir)?,
        None => packet::detach_others(&args.bpf_dir, &[])?,
    }
    agent.health_checks = HealthCheckIndex::new(agent.model.desired());
    for (port, check) in agent.health_checks.checks() {
        agent.serve_health_check(port, Some(check));
    }
    agent.findings.report();
    info!(
        node = %node_name,
        cgroup = %cgroup.display(),
        bpf_dir = %args.bpf_dir.display(),
        frontends = reconciler.planner().frontend_count(),
        devices = ?args.devices,
        health_check_node_ports = ?agent.health_servers.ports(),
        health_check_node_ports_pending = ?agent.health_servers.pending_ports(),
        "agent ready"
    );
    health.updated();

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
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
                let Some(update) = update else { bail!("the source stopped") };
                health.queued(&update.changes);
                agent.findings.record(&update.changes);
                if agent.handle(update, &mut reconciler, &mut datapath) {
                    health.updated();
                }
                agent.findings.report();
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    info!(
        bpf_dir = %args.bpf_dir.display(),
        "stopping; programs and maps stay in place (`switchyard agent --cleanup` removes them)"
    );
    Ok(ExitCode::SUCCESS)
}

struct Agent {
    model: NodeModel,
    terminating: TerminatingEndpoints,
    /// Manifest problems already logged, so each is logged once while it lasts.
    problems: BTreeSet<String>,
    cgroup: PathBuf,
    destroy_stale: bool,
    /// Backends released while terminating: their connections were kept, and are torn down
    /// once the endpoint is gone for good (no longer terminating, not used again).
    draining: HashSet<(std::net::IpAddr, u16)>,
    observe: AgentObservability,
    /// The TC programs and their state (`--devices`), if any.
    packet: Option<packet::PacketPath>,
    health_checks: HealthCheckIndex,
    health_servers: ServiceHealthServers,
    /// Semantic problems of the objects read, logged once per object version.
    findings: findings::Findings,
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
            self.terminating.observe(&change);
            let diff = self.model.apply(change);
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
        let holds_ended = reconciler.hold(&self.terminating.endpoints());
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
                warn!(%err, "applying changes failed; re-reading the maps and reconciling everything");
                match reconciler.resync(datapath.maps_mut(), self.model.desired()) {
                    Ok(applied) => (true, applied),
                    Err(err) => {
                        self.observe.sync_failed();
                        error!(%err, "resync failed; will retry on the next change");
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
            if self.terminating.is_terminating(backend.ip) {
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
            if self.terminating.is_terminating(ip) {
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
            error!(%err, "frontend not programmed");
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
