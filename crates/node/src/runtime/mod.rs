//! The node role's runtime: tokio, the source, the kernel and the local API around the core.
//!
//! source (manifest watcher or API server) -> [`NodeCore`] (model, planner, ordering) -> effects
//! carried out here (BPF maps, per-packet settings, attachments, health check node ports, socket
//! sweep). The maps, the cgroup attachments and the TC attachments of the devices are pinned
//! under the bpffs directory and outlive the process: a restarted agent adopts them and
//! reconciles without a moment where a Service is missing.

mod effects;
mod observability;
mod per_packet;
pub mod pod_devices;
mod source;
mod trim;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use switchyard_bpf::{Datapath, LoadOptions};
use switchyard_dataplane::kernel::KernelMaps;
use switchyard_dataplane::maglev_tables::MaglevTables;
use switchyard_dataplane::packet_settings::PacketState;
use switchyard_dataplane::reconciler::{
    StateNeeds, limits_for, sizes_for_state, state_maps_smaller, state_needs,
};
use switchyard_k8s::health::ServiceHealthServers;
use switchyard_model::ProxyConfig;
use switchyard_model::validate::ValidationOptions;
use tracing::{info, warn};

use crate::announce::Announcer;
use crate::config::NodeConfig;
use crate::core::{CoreConfig, Effect, NodeCore};
use crate::error::NodeError;
use crate::findings::{Findings, Refusals};
use effects::Agent;
use observability::AgentObservability;
use per_packet::PerPacketPrograms;

/// Removes everything an agent installed under `bpf_dir`: links first (cgroup and TC:
/// detaching the programs), then every map pin, then the bpffs if the agent mounted it (a
/// bpffs the host or an init container mounted stays).
pub fn cleanup(bpf_dir: &Path) -> Result<(), NodeError> {
    if !holds_pins(bpf_dir) {
        return Err(NodeError::NothingToCleanUp { bpf_dir: bpf_dir.to_owned() });
    }
    let what = || format!("cleaning up {}", bpf_dir.display());
    switchyard_bpf::loader::cleanup(bpf_dir)
        .map_err(|source| NodeError::Bpf { what: what(), source: source.into() })?;
    switchyard_bpf::nodeport::cleanup(bpf_dir)
        .map_err(|source| NodeError::Bpf { what: what(), source: source.into() })?;
    switchyard_bpf::decap::cleanup(bpf_dir)
        .map_err(|source| NodeError::Bpf { what: what(), source: source.into() })?;
    switchyard_bpf::nodeport_xdp::cleanup(bpf_dir)
        .map_err(|source| NodeError::Bpf { what: what(), source: source.into() })?;
    info!(bpf_dir = %bpf_dir.display(), "removed programs, links and maps");
    if switchyard_bpf::loader::unmount_if_ours(bpf_dir)
        .map_err(|source| NodeError::Bpf { what: what(), source: source.into() })?
    {
        info!(bpf_dir = %bpf_dir.display(), "unmounted the bpffs the agent had mounted");
    }
    Ok(())
}

/// Mounts a bpffs on `path` unless one is there (creating the directory): what the
/// DaemonSet's init container runs on the host's `/sys/fs/bpf`, with CAP_SYS_ADMIN and
/// Bidirectional mount propagation, so the host and the agent's container see it. Unlike a
/// bpffs the agent mounts for itself it carries no mark: `--cleanup` never unmounts it.
/// Returns whether it mounted.
pub fn mount_bpffs(path: &Path) -> Result<bool, NodeError> {
    let failed = |source: switchyard_bpf::Error| NodeError::Bpf {
        what: format!("mounting a bpffs on {}", path.display()),
        source: source.into(),
    };
    if path.is_dir() && switchyard_bpf::loader::is_bpffs(path).map_err(failed)? {
        info!(path = %path.display(), "a bpffs is mounted already");
        return Ok(false);
    }
    std::fs::create_dir_all(path).map_err(|source| {
        failed(switchyard_bpf::Error::BpfDir { path: path.to_owned(), reason: "creating", source })
    })?;
    switchyard_bpf::loader::mount_bpffs(path).map_err(failed)?;
    info!(path = %path.display(), "mounted a bpffs");
    Ok(true)
}

/// Whether `bpf_dir` holds anything an agent pins: maps (`sy_*`), the links directory, or
/// the mark of a bpffs the agent mounted. A wrong `--bpf-dir` must not look like a successful
/// clean-up.
fn holds_pins(bpf_dir: &Path) -> bool {
    std::fs::read_dir(bpf_dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("sy_")
                || name == switchyard_bpf::loader::LINKS_DIR
                || name == switchyard_bpf::loader::MOUNTED_MARK
        })
    })
}

/// Locks `bpf_dir` for this agent's lifetime (released when the process ends, however it
/// ends): a second agent on the same directory would fight the first over maps and links.
fn lock_bpf_dir(bpf_dir: &Path) -> Result<std::fs::File, NodeError> {
    let lock_err = |source| NodeError::BpfDirLock { bpf_dir: bpf_dir.to_owned(), source };
    let dir = std::fs::File::open(bpf_dir).map_err(lock_err)?;
    match dir.try_lock() {
        Ok(()) => Ok(dir),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(NodeError::BpfDirBusy { bpf_dir: bpf_dir.to_owned() })
        }
        Err(std::fs::TryLockError::Error(source)) => Err(lock_err(source)),
    }
}

/// First signal: /healthz turns 503 and the agent goes on forwarding for the grace period;
/// false when it should leave now (a second signal, or no grace).
fn begin_shutdown(
    leave_at: &mut Option<tokio::time::Instant>,
    config: &NodeConfig,
    health: &source::Health,
) -> bool {
    if leave_at.is_some() || config.shutdown_grace.is_zero() {
        return false;
    }
    health.shutting_down();
    *leave_at = Some(tokio::time::Instant::now() + config.shutdown_grace);
    info!(
        grace = ?config.shutdown_grace,
        "shutting down: /healthz answers 503 while forwarding goes on for the grace period"
    );
    true
}

/// Completes at `at`, never without it.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs the node role until SIGTERM or Ctrl-C (after the shutdown grace). Programs and maps stay in place when it returns.
pub async fn run(mut config: NodeConfig) -> Result<(), NodeError> {
    trim::limit_arenas();
    config.devices.retain(|device| !device.trim().is_empty());
    config.pod_devices.retain(|pattern| !pattern.trim().is_empty());
    // Either kind of interface needs the per-packet programs and their settings.
    let per_packet = !config.devices.is_empty() || !config.pod_devices.is_empty();
    if config.node_name.is_empty() || config.cgroup.as_os_str().is_empty() {
        return Err(NodeError::MissingIdentity);
    }
    // Checked before anything is loaded: a refused range stops the agent at once.
    let snat_ports = if per_packet {
        let chosen = switchyard_model::choose_snat_ports(
            config.snat_port_range,
            config.node_port_range,
            local_port_range(),
            config.decap_port(),
        )?;
        info!(snat_ports = %chosen, "SNAT source ports");
        if let Some(warning) = chosen.warning() {
            warn!("{warning}");
        }
        Some(chosen.range)
    } else {
        None
    };
    for device in &config.devices {
        switchyard_bpf::nodeport::check_device(device)
            .map_err(|source| NodeError::Device(source.into()))?;
    }
    let node_name = config.node_name.clone();
    let tables = MaglevTables::new(config.maglev_table_size)
        .map_err(|source| NodeError::MaglevTableSize { size: config.maglev_table_size, source })?;
    // The configured sizes are upper bounds: the state maps start at their floor (or a pin's
    // size) and are sized from the first reading before anything is written.
    let options = LoadOptions {
        sizes: config.sizes,
        maglev_table_size: config.maglev_table_size,
        ..LoadOptions::new(&config.bpf_dir)
    };
    let floor = LoadOptions {
        sizes: sizes_for_state(StateNeeds::default(), &config.sizes),
        ..options.clone()
    };
    let mut datapath = Datapath::load(&floor).map_err(|source| NodeError::Bpf {
        what: "loading the BPF maps".into(),
        source: source.into(),
    })?;
    // Before anything is written: the maps are only created or opened so far.
    let _bpf_dir_lock = lock_bpf_dir(&config.bpf_dir)?;
    let snapshot = KernelMaps::new(datapath.maps_mut()).and_then(|maps| maps.snapshot()).map_err(
        |source| NodeError::Maps { what: "reading the pinned maps", source: source.into() },
    )?;
    let core_config = CoreConfig {
        proxy: ProxyConfig {
            proxy_name: config.source.proxy_name.clone(),
            node_port_range: config.node_port_range,
            external_ip_cidrs: config.external_ip_cidrs.clone(),
            node_port_addresses: config.node_port_addresses.clone(),
            ..ProxyConfig::new(node_name.clone())
        },
        limits: limits_for(&datapath.sizes(), config.maglev_table_size),
        per_packet,
        dsr: config.nodeport_mode == crate::config::NodePortMode::Dsr,
        destroy_stale_sockets: config.destroy_stale_sockets,
    };
    let source_ranges = PacketState::adopt(datapath.maps()).map_err(NodeError::PacketMaps)?;
    let (core, adopted) = NodeCore::adopt(core_config, snapshot, Arc::new(tables));
    info!(
        frontends = adopted.frontends,
        backends = adopted.backends,
        orphans = adopted.orphans,
        "adopted pinned state"
    );

    let validation = ValidationOptions { node_port_range: config.node_port_range };
    let mut watcher =
        source::Source::open(&config.source, config.debounce, validation, &node_name).await?;
    let health = source::Health::start(&config.source, &watcher, &node_name).await?;
    // A restarted agent whose data plane kept forwarding says so to routers (graceful restart).
    let announcer = Announcer::new(&node_name, adopted.frontends > 0);
    let (observe, mut desired_requests) = AgentObservability::start(
        &config.bpf_dir,
        &config.api_socket,
        config.metrics_bind_address,
        announcer.source(),
    )
    .await?;
    let mut findings = Findings::new(validation);
    let mut agent = Agent {
        core,
        datapath,
        per_packet: None,
        source_ranges,
        cgroup: config.cgroup.clone(),
        bpf_dir: config.bpf_dir.clone(),
        problems: BTreeSet::new(),
        observe,
        health_servers: ServiceHealthServers::on(health.runtime(), health.shared()),
        started: false,
        maps_full: false,
        announcer,
    };

    // First reconciliation: everything the source holds against what was adopted.
    let first = watcher.next().await.ok_or(NodeError::SourceStopped)?;
    let arrived = Instant::now();
    agent.report_problems(&first);
    findings.record(&first.changes);
    health.queued(&first.changes);
    agent.observe_changes(&first.changes);
    agent.core.absorb_first(first.changes);
    let wanted = sizes_for_state(state_needs(agent.core.model().desired()), &config.sizes);
    if state_maps_smaller(&agent.datapath.sizes(), &wanted) {
        agent.resize_maps(&LoadOptions { sizes: wanted, ..options.clone() })?;
    }
    let effects = agent.core.begin();
    let plan_time = arrived.elapsed();
    if let Some(snat_ports) = snat_ports {
        agent.per_packet = Some(PerPacketPrograms::load(
            &options,
            agent.datapath.maps_mut(),
            &config,
            snat_ports,
            agent.core.model(),
        )?);
    }
    if !agent.carry_out(effects, arrived, plan_time)? {
        return Err(NodeError::FirstSync);
    }
    let grown = agent.grow_if_full(&options, &config)?;
    if !grown.is_empty() {
        agent.carry_out(grown, arrived, plan_time)?;
    }
    findings.report();
    // The first reading and the first plan are the start-up peak; their memory is free now.
    trim::release_free_memory();
    let mut refusals = Refusals::default();
    agent.observe.refused(refusals.report(agent.core.model()));
    info!(
        node = %node_name,
        cgroup = %config.cgroup.display(),
        bpf_dir = %config.bpf_dir.display(),
        frontends = agent.core.planner().frontend_count(),
        devices = ?config.devices,
        pod_devices = ?config.pod_devices,
        health_check_node_ports = ?agent.health_servers.ports(),
        health_check_node_ports_pending = ?agent.health_servers.pending_ports(),
        "agent ready"
    );
    health.updated();

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(NodeError::Signal)?;
    // Set by the first signal: the end of the shutdown grace (a second signal leaves at once).
    let mut leave_at: Option<tokio::time::Instant> = None;
    let mut pod_scan = tokio::time::interval(pod_devices::RESCAN);
    pod_scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            _ = pod_scan.tick(), if !config.pod_devices.is_empty() => {
                if let Some(per_packet) = &mut agent.per_packet {
                    per_packet.rescan_pods(&config.bpf_dir);
                }
            }
            update = watcher.next() => {
                let Some(update) = update else { return Err(NodeError::SourceStopped) };
                let arrived = Instant::now();
                health.queued(&update.changes);
                findings.record(&update.changes);
                agent.report_problems(&update);
                let changes = update.changes.len();
                agent.observe_changes(&update.changes);
                let effects = agent.core.update(update.changes);
                let plan_time = arrived.elapsed();
                if effects.iter().any(|e| matches!(e, Effect::Program { .. })) {
                    agent.observe.pending(changes);
                }
                let mut up_to_date = agent.carry_out(effects, arrived, plan_time)?;
                let grown = agent.grow_if_full(&options, &config)?;
                if !grown.is_empty() {
                    up_to_date = agent.carry_out(grown, arrived, plan_time)?;
                }
                if up_to_date {
                    health.updated();
                }
                findings.report();
                agent.observe.refused(refusals.report(agent.core.model()));
                if changes >= trim::TRIM_AFTER_CHANGES {
                    trim::release_free_memory();
                }
            }
            Some(request) = desired_requests.next() => {
                request.answer(agent.core.model().desired());
            }
            () = until(leave_at) => break,
            _ = tokio::signal::ctrl_c() => if !begin_shutdown(&mut leave_at, &config, &health) { break },
            _ = terminate.recv() => if !begin_shutdown(&mut leave_at, &config, &health) { break },
        }
    }
    agent.announcer.shutdown().await;
    info!(
        bpf_dir = %config.bpf_dir.display(),
        "stopping; programs and maps stay in place (`switchyard agent --cleanup` removes them)"
    );
    Ok(())
}

/// `net.ipv4.ip_local_port_range` of the agent's network namespace (the node's, hostNetwork):
/// only read, never written. None when unreadable (Linux's default is then assumed, with a
/// warning).
fn local_port_range() -> Option<switchyard_model::PortRange> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    switchyard_model::snat_ports::parse_local_port_range(&text)
}
