//! Programming figures on real BPF maps (needs root):
//! - 10,000 Services × 25 endpoints from scratch (model, plan, kernel maps);
//! - one EndpointSlice change (model diff, plan, kernel maps), repeated;
//! - one EndpointSlice change from file write (manifest directory, watched) to kernel maps;
//! - peer in the same run: the same from-scratch load with one syscall per map entry instead of
//!   batched updates.
//!
//! `cargo bench -p switchyard-dataplane --bench program [-- SERVICES ENDPOINTS [--scratch-only]]`

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use switchyard_k8s::manifest::{ManifestWatcher, WatchOptions};
use switchyard_model::{Change, ClusterState, ObjectKey, ObjectKind};

use switchyard_bpf::{LoadOptions, MapSizes};
use switchyard_dataplane::kernel::KernelMaps;
use switchyard_dataplane::reconciler::{Reconciler, limits_for};
use switchyard_dataplane::translate::MapBackend;
use switchyard_dataplane::{MapOps, Planner, TableBuilder, translate};
use switchyard_model::NodeModel;
use switchyard_model::synthetic::{self, SyntheticCluster};
use switchyard_testing::BpfDir;

/// The synthetic cluster has no Maglev Services; a table request would be a bug here.
struct NoTables;

impl TableBuilder<MapBackend> for NoTables {
    fn build(&self, _: &[MapBackend]) -> Vec<u32> {
        panic!("synthetic clusters have no Maglev services")
    }
}

const FILE_ROUNDS: usize = 200;

/// Slices of each Service (namespace/name), so writing a Service's file does not scan all.
type SlicesByService = BTreeMap<(String, String), Vec<ObjectKey>>;

fn slices_by_service(state: &ClusterState) -> SlicesByService {
    let mut owners = SlicesByService::new();
    for (key, slice) in &state.endpoint_slices {
        let owner =
            slice.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name"));
        if let Some(owner) = owner {
            owners.entry((key.namespace.to_string(), owner.clone())).or_default().push(key.clone());
        }
    }
    owners
}

/// One JSON `List` per Service holding the Service and its EndpointSlices, plus the Nodes.
fn write_manifests(
    spec: &SyntheticCluster,
    state: &ClusterState,
    owners: &SlicesByService,
) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sy-dataplane-bench-manifests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let nodes: Vec<serde_json::Value> =
        state.nodes.values().map(|n| serde_json::to_value(n).unwrap()).collect();
    write_atomically(&dir.join("nodes.json"), &list(nodes));
    for index in 0..spec.services {
        let bytes = service_file(spec, state, owners, index, None);
        write_atomically(&dir.join(format!("svc-{index}.json")), &bytes);
    }
    dir
}

fn list(items: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}))
        .unwrap()
}

/// A hidden temporary, then a rename: the watcher sees the whole file at once.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The file of Service `index`, with `replacement` instead of its first IPv4 slice.
fn service_file(
    spec: &SyntheticCluster,
    state: &ClusterState,
    owners: &SlicesByService,
    index: usize,
    replacement: Option<&EndpointSlice>,
) -> Vec<u8> {
    let key = synthetic::service_key(spec, index);
    let first_slice = synthetic::slice_key(spec, index, 0);
    let mut items = vec![serde_json::to_value(&state.services[&key]).unwrap()];
    let slices = owners
        .get(&(key.namespace.to_string(), key.name.to_string()))
        .map_or(&[][..], Vec::as_slice);
    for slice_key in slices {
        let slice = match replacement {
            Some(new) if *slice_key == first_slice => new,
            _ => &state.endpoint_slices[slice_key],
        };
        items.push(serde_json::to_value(slice).unwrap());
    }
    list(items)
}

/// Rewrites one Service file per round and times until its change is in the kernel maps.
fn file_to_kernel(
    spec: &SyntheticCluster,
    manifests: &Path,
    debounce_ms: u64,
    datapath: &mut switchyard_bpf::Datapath,
    limits: switchyard_dataplane::Limits,
) -> (f64, f64, f64, f64) {
    let state = synthetic::generate(spec);
    let owners = slices_by_service(&state);
    let options =
        WatchOptions { debounce: Duration::from_millis(debounce_ms), ..WatchOptions::default() };
    let mut watcher = ManifestWatcher::start(manifests, options).unwrap();
    let first = watcher.blocking_next().unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors.first());
    let mut model = NodeModel::new(synthetic::config());
    for change in first.changes {
        model.apply(change);
    }
    let (mut reconciler, _) =
        Reconciler::adopt(datapath.maps_mut(), limits, Arc::new(NoTables)).unwrap();
    reconciler.apply_full(datapath.maps_mut(), model.desired()).unwrap();
    let mut times = Vec::with_capacity(FILE_ROUNDS);
    let mut ops = 0;
    for round in 0..FILE_ROUNDS {
        let index = (round * 7919 + 13) % spec.services;
        let Change::EndpointSlice(_, Some(slice)) =
            synthetic::changed_slice(spec, index, 0, 2 * (round as u64 + debounce_ms * 1_000) + 1)
        else {
            unreachable!("changed_slice returns a slice")
        };
        let bytes = service_file(spec, &state, &owners, index, Some(&slice));
        let path = manifests.join(format!("svc-{index}.json"));
        let started = Instant::now();
        write_atomically(&path, &bytes);
        // Until the update that carries this slice is in the maps. Some changes need no map
        // operation on this node (an endpoint elsewhere under a Local policy): waiting for
        // operations instead would wait for ever.
        let changed = synthetic::slice_key(spec, index, 0);
        loop {
            let update = watcher.blocking_next().expect("the watcher stopped");
            let seen = update
                .changes
                .iter()
                .any(|c| c.kind() == ObjectKind::EndpointSlice && *c.key() == changed);
            let diffs: Vec<_> = update.changes.into_iter().map(|c| model.apply(c)).collect();
            ops += reconciler.apply_diffs(datapath.maps_mut(), &diffs).unwrap().ops;
            if seen {
                break;
            }
        }
        times.push(started.elapsed());
    }
    times.sort();
    let ops = ops as f64 / FILE_ROUNDS as f64;
    (ms(times[FILE_ROUNDS / 2]), ms(times[FILE_ROUNDS * 99 / 100]), ms(times[FILE_ROUNDS - 1]), ops)
}

/// User and system CPU time of this process so far (all threads): wall time on a busy machine
/// includes waiting for a core, this does not.
fn cpu_times() -> (Duration, Duration) {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (time(usage.ru_utime), time(usage.ru_stime))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if !switchyard_lab::require_root("bench program") {
        return;
    }
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let spec = SyntheticCluster {
        services: args.first().copied().unwrap_or(10_000),
        endpoints_per_service: args.get(1).copied().unwrap_or(25),
        ..SyntheticCluster::default()
    };
    println!(
        "synthetic cluster: {} Services × {} endpoints, {} nodes",
        spec.services, spec.endpoints_per_service, spec.nodes
    );
    let state = synthetic::generate(&spec);
    let started = Instant::now();
    let mut model = NodeModel::from_state(synthetic::config(), &state);
    let model_time = started.elapsed();
    let desired = model.desired().clone();
    let backends: usize = desired.frontends.values().map(|f| f.backends.len()).sum();
    println!(
        "model: {} frontends, {backends} backend references, {:.1} ms",
        desired.len(),
        ms(model_time)
    );

    let sizes = MapSizes {
        frontends: (desired.len() as u32 * 2).max(1024),
        slots: (backends as u32 * 2).max(4096),
        backends: (backends as u32 * 2).max(4096),
        ..MapSizes::default()
    };
    let dir = BpfDir::new("bench");
    let options = LoadOptions { sizes, maglev_table_size: 251, ..LoadOptions::new(dir.path()) };

    // From scratch, batched (the agent's path).
    let mut datapath = switchyard_bpf::Datapath::load(&options).unwrap();
    let limits = limits_for(&sizes, 251);
    let (mut reconciler, _) =
        Reconciler::adopt(datapath.maps_mut(), limits, Arc::new(NoTables)).unwrap();
    let (user_before, sys_before) = cpu_times();
    let started = Instant::now();
    let applied = reconciler.apply_full(datapath.maps_mut(), &desired).unwrap();
    let total = started.elapsed();
    let (user_after, sys_after) = cpu_times();
    let scratch_kernel = applied.apply_time;
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    println!(
        "from scratch (batched): {} map operations: plan {:.1} ms + kernel {:.1} ms = {:.1} ms (target < 1000 ms)",
        applied.ops,
        ms(applied.plan_time),
        ms(applied.apply_time),
        ms(total)
    );
    println!(
        "from scratch, CPU time of the process: user {:.1} ms + system {:.1} ms; load average {}",
        ms(user_after - user_before),
        ms(sys_after - sys_before),
        load_average()
    );
    // The same from scratch with one writer thread per batch, on fresh maps, right after.
    {
        let dir = BpfDir::new("bench-one-thread");
        let options = LoadOptions { sizes, maglev_table_size: 251, ..LoadOptions::new(dir.path()) };
        let mut datapath = switchyard_bpf::Datapath::load(&options).unwrap();
        let mut planner = Planner::new(limits, Arc::new(NoTables));
        let started = Instant::now();
        let plan = planner.plan_full(translate::desired(&desired));
        let planned = started.elapsed();
        let mut kernel = KernelMaps::new(datapath.maps_mut()).unwrap().with_threads(1);
        kernel.apply(&plan.ops).unwrap();
        let total = started.elapsed();
        println!(
            "from scratch, one writer thread: plan {:.1} ms + kernel {:.1} ms = {:.1} ms",
            ms(planned),
            ms(total - planned),
            ms(total)
        );
    }
    if std::env::args().any(|a| a == "--scratch-only") {
        return;
    }

    // One EndpointSlice change at a time, repeated.
    let rounds = 200;
    let mut times = Vec::with_capacity(rounds);
    let mut ops = 0;
    for generation in 1..=rounds as u64 {
        let index = (generation as usize * 7919) % spec.services;
        let change = synthetic::changed_slice(&spec, index, 0, generation);
        let started = Instant::now();
        let diff = model.apply(change);
        let applied = reconciler.apply_diff(datapath.maps_mut(), &diff).unwrap();
        times.push(started.elapsed());
        ops += applied.ops;
    }
    times.sort();
    println!(
        "one EndpointSlice change (model + plan + kernel), {rounds} rounds, {:.1} ops each: median {:.3} ms, p99 {:.3} ms, max {:.3} ms (target < 5 ms)",
        ops as f64 / rounds as f64,
        ms(times[rounds / 2]),
        ms(times[rounds * 99 / 100]),
        ms(times[rounds - 1])
    );

    // Restart: adopt what is pinned, reconcile the same state.
    drop(datapath);
    let mut datapath = switchyard_bpf::Datapath::load(&options).unwrap();
    let started = Instant::now();
    let (mut reconciler, report) =
        Reconciler::adopt(datapath.maps_mut(), limits, Arc::new(NoTables)).unwrap();
    let adopt_time = started.elapsed();
    let applied = reconciler.apply_full(datapath.maps_mut(), model.desired()).unwrap();
    println!(
        "restart: adopt {} frontends / {} backends in {:.1} ms, first reconcile {} ops in {:.1} ms",
        report.frontends,
        report.backends,
        ms(adopt_time),
        applied.ops,
        ms(applied.plan_time + applied.apply_time)
    );
    drop(reconciler);

    // File write -> kernel maps, through the manifest watcher (debounce 10 ms, the agent's
    // default of 1 ms, and none).
    let owners = slices_by_service(&state);
    for debounce_ms in [10, 1, 0] {
        // Fresh files each time: a version written by an earlier run could equal this run's.
        let manifests = write_manifests(&spec, &state, &owners);
        let (median, p99, max, ops) =
            file_to_kernel(&spec, &manifests, debounce_ms, &mut datapath, limits);
        println!(
            "one EndpointSlice change, file write -> kernel maps (debounce {debounce_ms} ms), {FILE_ROUNDS} rounds, {ops:.1} ops each: median {median:.2} ms, p99 {p99:.2} ms, max {max:.2} ms (target < 5 ms)"
        );
        let _ = std::fs::remove_dir_all(&manifests);
    }
    drop(datapath);
    drop(dir);

    // Peer: one syscall per entry.
    let dir = BpfDir::new("bench-peer");
    let options = LoadOptions { sizes, maglev_table_size: 251, ..LoadOptions::new(dir.path()) };
    let mut datapath = switchyard_bpf::Datapath::load(&options).unwrap();
    let (mut reconciler, _) =
        Reconciler::adopt(datapath.maps_mut(), limits, Arc::new(NoTables)).unwrap();
    reconciler.set_batch_size(1);
    let started = Instant::now();
    let peer = reconciler.apply_full(datapath.maps_mut(), &desired).unwrap();
    let peer_total = started.elapsed();
    println!(
        "peer, one syscall per entry: plan {:.1} ms + kernel {:.1} ms = {:.1} ms; batched is {:.1}x faster in the kernel phase",
        ms(peer.plan_time),
        ms(peer.apply_time),
        ms(peer_total),
        peer.apply_time.as_secs_f64() / scratch_kernel.as_secs_f64()
    );
}
