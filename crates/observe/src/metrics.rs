//! Prometheus metrics.
//!
//! Naming: every metric starts with `switchyard_`. Where kube-proxy has a metric with the same
//! meaning, the rest of the name is kube-proxy's (`kubeproxy_sync_proxy_rules_duration_seconds`
//! becomes `switchyard_sync_proxy_rules_duration_seconds`), so dashboards port by changing the
//! prefix. Histogram buckets are kube-proxy's; the network-programming histogram adds
//! millisecond buckets below kube-proxy's first (0.25 s) because a BPF map update takes well
//! under a millisecond, and every kube-proxy bucket boundary is still present.
//!
//! Two kinds of source:
//! - [`SyncMetrics`]: kept by the agent as it syncs (durations, last sync, pending changes).
//! - [`KernelCollector`]: read from the pinned maps on every scrape (per-Service counters,
//!   reasons, map fill and memory), so the figures are the kernel's, not the agent's belief.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::registry::Registry;
use switchyard_bpf::Maps;
use switchyard_bpf::abi::Reason;
use switchyard_bpf::decap::DecapReason;
use switchyard_bpf::nodeport_abi::PacketReason;
use switchyard_error::ErrorChain;
use tracing::warn;

use crate::kernel::{self, KernelState};
use crate::labels::ServiceIndex;

/// kube-proxy's `SyncProxyRulesLatency` buckets: 1 ms doubling 15 times (to ~16 s).
pub fn sync_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 15).collect()
}

/// kube-proxy's `NetworkProgrammingLatency` buckets (0.25 s .. 5 min), preceded by
/// 1 ms .. 128 ms doubling.
pub fn network_programming_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 8)
        .chain(linear_buckets(0.25, 0.25, 2))
        .chain(linear_buckets(1.0, 1.0, 59))
        .chain(linear_buckets(60.0, 5.0, 12))
        .chain(linear_buckets(120.0, 30.0, 7))
        .collect()
}

/// Metrics the agent updates as it syncs.
#[derive(Debug, Clone)]
pub struct SyncMetrics {
    sync_duration: Histogram,
    full_sync_duration: Histogram,
    partial_sync_duration: Histogram,
    network_programming: Histogram,
    change_latency: Histogram,
    last_sync: Gauge<f64, AtomicU64>,
    pending_changes: Gauge,
    sync_errors: Counter,
    frontends_not_programmed: Gauge,
    frontends_refused: Gauge,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        SyncMetrics {
            sync_duration: Histogram::new(sync_buckets()),
            full_sync_duration: Histogram::new(sync_buckets()),
            partial_sync_duration: Histogram::new(sync_buckets()),
            network_programming: Histogram::new(network_programming_buckets()),
            change_latency: Histogram::new(network_programming_buckets()),
            last_sync: Gauge::default(),
            pending_changes: Gauge::default(),
            sync_errors: Counter::default(),
            frontends_not_programmed: Gauge::default(),
            frontends_refused: Gauge::default(),
        }
    }
}

impl SyncMetrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "switchyard_sync_proxy_rules_duration_seconds",
            "Time to plan and write one sync to the BPF maps (kube-proxy: sync_proxy_rules_duration_seconds)",
            self.sync_duration.clone(),
        );
        registry.register(
            "switchyard_sync_full_proxy_rules_duration_seconds",
            "Time of full syncs (whole desired state against the maps)",
            self.full_sync_duration.clone(),
        );
        registry.register(
            "switchyard_sync_partial_proxy_rules_duration_seconds",
            "Time of incremental syncs (changed frontends only)",
            self.partial_sync_duration.clone(),
        );
        registry.register(
            "switchyard_network_programming_duration_seconds",
            "Time from an EndpointSlice's endpoints.kubernetes.io/last-change-trigger-time (the Pod or Service change behind it) to the change being in the maps, as kube-proxy's network_programming_duration_seconds; slices without the annotation, or with a time before the agent started, are not observed",
            self.network_programming.clone(),
        );
        registry.register(
            "switchyard_sync_change_latency_seconds",
            "Time from a change reaching the agent to it being in the maps (any object, with or without a trigger time)",
            self.change_latency.clone(),
        );
        registry.register(
            "switchyard_sync_proxy_rules_last_timestamp_seconds",
            "Unix time of the last successful sync",
            self.last_sync.clone(),
        );
        registry.register(
            "switchyard_sync_proxy_rules_changes_pending",
            "Frontend changes received but not yet written to the maps",
            self.pending_changes.clone(),
        );
        registry.register(
            "switchyard_sync_proxy_rules_errors",
            "Syncs that failed (the agent retries with a full resync)",
            self.sync_errors.clone(),
        );
        registry.register(
            "switchyard_frontends_not_programmed",
            "Frontends that did not fit in the maps after the last sync",
            self.frontends_not_programmed.clone(),
        );
        registry.register(
            "switchyard_frontends_refused",
            "Frontend addresses Services ask for and do not get: special addresses, externalIPs outside --external-ip-cidrs, external addresses that are another Service's cluster IP or a node's address",
            self.frontends_refused.clone(),
        );
    }

    /// Sets the number of frontend addresses refused to Services (see `switchyard_model::Refusal`).
    pub fn set_refused(&self, refused: usize) {
        self.frontends_refused.set(i64::try_from(refused).unwrap_or(i64::MAX));
    }

    /// Records a successful sync that took `duration` and finished at `now`.
    pub fn observe_sync(
        &self,
        full: bool,
        duration: Duration,
        now: SystemTime,
        not_programmed: usize,
    ) {
        let seconds = duration.as_secs_f64();
        self.sync_duration.observe(seconds);
        if full {
            self.full_sync_duration.observe(seconds);
        } else {
            self.partial_sync_duration.observe(seconds);
        }
        let unix = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        self.last_sync.set(unix);
        self.frontends_not_programmed.set(i64::try_from(not_programmed).unwrap_or(i64::MAX));
    }

    /// Records the time from an EndpointSlice's trigger time to its change being programmed.
    pub fn observe_programming(&self, latency: Duration) {
        self.network_programming.observe(latency.as_secs_f64());
    }

    /// Records how long a change waited between arriving and being programmed.
    pub fn observe_change_latency(&self, latency: Duration) {
        self.change_latency.observe(latency.as_secs_f64());
    }

    /// Sets the number of changes waiting to be programmed.
    pub fn set_pending(&self, pending: usize) {
        self.pending_changes.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// Counts a failed sync.
    pub fn sync_failed(&self) {
        self.sync_errors.inc();
    }

    /// Unix time of the last successful sync (0: none yet).
    pub fn last_sync_unix(&self) -> f64 {
        self.last_sync.get()
    }
}

/// Reads the pinned maps on every scrape and reports what the kernel counted.
#[derive(Debug)]
pub struct KernelCollector {
    maps: Mutex<Maps>,
    bpf_dir: PathBuf,
    services: Arc<RwLock<ServiceIndex>>,
}

impl KernelCollector {
    /// A collector over maps opened from `bpf_dir` (see [`Maps::open_pinned`]).
    pub fn new(maps: Maps, bpf_dir: PathBuf, services: Arc<RwLock<ServiceIndex>>) -> Self {
        KernelCollector { maps: Mutex::new(maps), bpf_dir, services }
    }
}

impl KernelCollector {
    /// The kernel state now (for `/status`).
    pub fn read(&self) -> Result<KernelState, crate::Error> {
        let maps = self.maps.lock().map_err(|_| crate::Error::MapInfo {
            name: "all",
            detail: "map handles poisoned by a panic".into(),
        })?;
        kernel::read(&maps, &self.bpf_dir)
    }

    /// Opens the pinned maps again: the agent migrated some to larger maps, and the handles
    /// held so far name the old ones.
    pub fn reopen(&self) -> Result<(), crate::Error> {
        let fresh = Maps::open_pinned(&self.bpf_dir)?;
        let mut maps = self.maps.lock().map_err(|_| crate::Error::MapInfo {
            name: "all",
            detail: "map handles poisoned by a panic".into(),
        })?;
        *maps = fresh;
        Ok(())
    }

    /// The bpffs directory read.
    pub fn bpf_dir(&self) -> &std::path::Path {
        &self.bpf_dir
    }
}

impl Collector for KernelCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let state = {
            let Ok(maps) = self.maps.lock() else { return Ok(()) };
            match kernel::read(&maps, &self.bpf_dir) {
                Ok(state) => state,
                Err(err) => {
                    warn!(
                        bpf_dir = %self.bpf_dir.display(),
                        err = %ErrorChain(&err),
                        "reading the maps for metrics failed"
                    );
                    return Ok(());
                }
            }
        };
        let Ok(services) = self.services.read() else { return Ok(()) };
        encode_kernel(&state, &services, encoder)
    }
}

/// Labels of one frontend's series.
fn frontend_labels(
    frontend: &kernel::ProgrammedFrontend,
    services: &ServiceIndex,
) -> Vec<(&'static str, String)> {
    let service = services.lookup(frontend.ip, frontend.port, &frontend.protocol);
    // The IPv4 and IPv6 wildcards of one dual-stack NodePort are two entries, so two series:
    // `*:PORT` and `[*]:PORT`.
    let address = match frontend.ip {
        Some(ip) => ip.to_string(),
        None if frontend.family == "ipv6" => "[*]".to_owned(),
        None => "*".to_owned(),
    };
    vec![
        ("namespace", service.as_ref().map(|s| s.namespace.clone()).unwrap_or_default()),
        ("service", service.as_ref().map(|s| s.name.clone()).unwrap_or_default()),
        ("port_name", service.map(|s| s.port_name).unwrap_or_default()),
        ("frontend", format!("{address}:{}", frontend.port)),
        ("protocol", frontend.protocol.clone()),
        ("scope", frontend.scope.to_owned()),
    ]
}

/// Writes the kernel-side metrics of `state`.
pub fn encode_kernel(
    state: &KernelState,
    services: &ServiceIndex,
    mut encoder: DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    type Pick = fn(&kernel::FrontendTraffic) -> u64;
    let per_service: [(&str, &str, Pick); 3] = [
        (
            "switchyard_service_new_connections",
            "New flows translated to a backend (socket path: connect or first sendmsg)",
            |c| c.connections,
        ),
        ("switchyard_service_packets", "Packets translated (per-packet path)", |c| c.packets),
        ("switchyard_service_bytes", "Bytes translated (per-packet path)", |c| c.bytes),
    ];
    for (name, help, pick) in per_service {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for frontend in &state.frontends {
            let value = state.frontend_counters.get(&frontend.id).map(pick).unwrap_or(0);
            let labels = frontend_labels(frontend, services);
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
    }

    let names = Reason::ALL
        .into_iter()
        .filter(|r| *r != Reason::NotService)
        .map(Reason::name)
        .chain(PacketReason::ALL.into_iter().map(PacketReason::name))
        .chain(DecapReason::ALL.into_iter().map(DecapReason::name));
    let reasons = names.map(|name| (name, state.reasons.get(name).map(|c| c.packets).unwrap_or(0)));
    encode_reasons(reasons, &mut encoder)?;

    type Fill = fn(&kernel::MapFill) -> Option<i64>;
    let fills: [(&str, &str, Fill); 3] = [
        (
            "switchyard_bpf_map_entries",
            "Entries in each BPF map (tables: conntrack-like socket and affinity maps included)",
            |m| i64::try_from(m.entries).ok(),
        ),
        ("switchyard_bpf_map_max_entries", "Capacity of each BPF map", |m| {
            Some(i64::from(m.max_entries))
        }),
        (
            "switchyard_bpf_map_memory_bytes",
            "Memory the kernel accounts to each BPF map (fdinfo memlock)",
            |m| m.memory_bytes.and_then(|b| i64::try_from(b).ok()),
        ),
    ];
    for (name, help, pick) in fills {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for map in &state.maps {
            if let Some(value) = pick(map) {
                let labels = vec![("map", map.name.to_owned())];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    // The programs never delete sy_ct entries: entries created minus entries present is what
    // the LRU evicted to make room (live flows among them), since the maps were created.
    if let Some(ct) = state.maps.iter().find(|m| m.name == "sy_ct") {
        let created = state.reasons.get(PacketReason::CtCreated.name()).map_or(0, |c| c.packets);
        let family = encoder.encode_descriptor(
            "switchyard_conntrack_evictions",
            "sy_ct entries the LRU evicted to make room (entries created minus entries present)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(created.saturating_sub(ct.entries)).encode(family)?;
    }
    let frontends = i64::try_from(state.frontends.len()).unwrap_or(i64::MAX);
    let family = encoder.encode_descriptor(
        "switchyard_frontends_programmed",
        "Frontend entries in the kernel",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(frontends).encode(family)?;
    Ok(())
}

/// `switchyard_datapath_decisions` and `switchyard_datapath_drops` (the `drop_*`, `reject_*`
/// and `err_*` reasons) from (reason, packets): the node's programs and the director's alike.
pub fn encode_reasons<'a>(
    reasons: impl Iterator<Item = (&'a str, u64)> + Clone,
    encoder: &mut DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "switchyard_datapath_decisions",
        "Program decisions by reason (sy_counters, sy_dir_counters, sy_decap_counters)",
        None,
        MetricType::Counter,
    )?;
    for (name, value) in reasons.clone() {
        let labels = vec![("reason", name.to_owned())];
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    let mut family = encoder.encode_descriptor(
        "switchyard_datapath_drops",
        "Flows refused or dropped by the programs, by reason",
        None,
        MetricType::Counter,
    )?;
    for (name, value) in reasons.filter(|(n, _)| kernel::is_drop_name(n)) {
        let labels = vec![("reason", name.to_owned())];
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The kernel-side metrics alone, in the Prometheus text format (for tools and tests that have
/// no agent registry).
pub fn render_kernel(collector: KernelCollector) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    render(&registry)
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}
