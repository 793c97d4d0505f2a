//! Programming figures on real BPF maps (needs root):
//! - 10,000 Services × 25 endpoints from scratch (model, plan, kernel maps);
//! - one EndpointSlice change (model diff, plan, kernel maps), repeated;
//! - one EndpointSlice change from file write (manifest directory, watched) to kernel maps;
//! - peer in the same run: the same from-scratch load with one syscall per map entry instead of
//!   batched updates.
//!
//! `cargo bench -p switchyard-dataplane --bench program [-- SERVICES ENDPOINTS]`

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use switchyard_k8s::manifest::{ManifestWatcher, WatchOptions};
use switchyard_model::{Change, ClusterState};

use switchyard_bpf::{LoadOptions, MapSizes};
use switchyard_dataplane::TableBuilder;
use switchyard_dataplane::reconciler::{Reconciler, limits_for};
use switchyard_dataplane::translate::MapBackend;
use switchyard_model::NodeModel;
use switchyard_model::synthetic::{self, SyntheticCluster};

/// The synthetic cluster has no Maglev Services; a table request would be a bug here.
struct NoTables;

impl TableBuilder<MapBackend> for NoTables {
    fn build(&self, _: &[MapBackend]) -> Vec<u32> {
        panic!("synthetic clusters have no Maglev services")
    }
}

const FILE_ROUNDS: usize = 50;

/// One JSON `List` per Service holding the Service and its EndpointSlices, plus the Nodes.
fn write_manifests(spec: &SyntheticCluster, state: &ClusterState) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sy-dataplane-bench-manifests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let nodes: Vec<serde_json::Value> =
        state.nodes.values().map(|n| serde_json::to_value(n).unwrap()).collect();
    write_list(&dir.join("nodes.json"), nodes);
    for index in 0..spec.services {
        write_service(spec, state, &dir, index, None);
    }
    dir
}

fn write_list(path: &Path, items: Vec<serde_json::Value>) {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&list).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Writes the file of Service `index`, with `replacement` instead of its first IPv4 slice.
fn write_service(
    spec: &SyntheticCluster,
    state: &ClusterState,
    dir: &Path,
    index: usize,
    replacement: Option<&EndpointSlice>,
) {
    let key = synthetic::service_key(spec, index);
    let first_slice = synthetic::slice_key(spec, index, 0);
    let mut items = vec![serde_json::to_value(&state.services[&key]).unwrap()];
    for (slice_key, slice) in &state.endpoint_slices {
        let owner =
            slice.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name"));
        if slice_key.namespace != key.namespace || owner != Some(&key.name) {
            continue;
        }
        let slice = match replacement {
            Some(new) if *slice_key == first_slice => new,
            _ => slice,
        };
        items.push(serde_json::to_value(slice).unwrap());
    }
    write_list(&dir.join(format!("svc-{index}.json")), items);
}

/// Rewrites one Service file per round and times until its change is in the kernel maps.
fn file_to_kernel(
    spec: &SyntheticCluster,
    manifests: &Path,
    debounce_ms: u64,
    datapath: &mut switchyard_bpf::Datapath,
    limits: switchyard_dataplane::Limits,
) -> (f64, f64, f64) {
    let state = synthetic::generate(spec);
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
    for round in 0..FILE_ROUNDS {
        let index = (round * 7919 + 13) % spec.services;
        let Change::EndpointSlice(_, Some(slice)) =
            synthetic::changed_slice(spec, index, 0, 2 * (round as u64 + debounce_ms * 1_000) + 1)
        else {
            unreachable!("changed_slice returns a slice")
        };
        let started = Instant::now();
        write_service(spec, &state, manifests, index, Some(&slice));
        let mut applied_ops = 0;
        while applied_ops == 0 {
            let update = watcher.blocking_next().expect("the watcher stopped");
            let diffs: Vec<_> = update.changes.into_iter().map(|c| model.apply(c)).collect();
            applied_ops += reconciler.apply_diffs(datapath.maps_mut(), &diffs).unwrap().ops;
        }
        times.push(started.elapsed());
    }
    times.sort();
    (ms(times[FILE_ROUNDS / 2]), ms(times[FILE_ROUNDS * 99 / 100]), ms(times[FILE_ROUNDS - 1]))
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
    let dir = common::BpfDir::new("bench");
    let options = LoadOptions { sizes, maglev_table_size: 251, ..LoadOptions::new(dir.path()) };

    // From scratch, batched (the agent's path).
    let mut datapath = switchyard_bpf::Datapath::load(&options).unwrap();
    let limits = limits_for(&sizes, 251);
    let (mut reconciler, _) =
        Reconciler::adopt(datapath.maps_mut(), limits, Arc::new(NoTables)).unwrap();
    let started = Instant::now();
    let applied = reconciler.apply_full(datapath.maps_mut(), &desired).unwrap();
    let total = started.elapsed();
    let scratch_kernel = applied.apply_time;
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    println!(
        "from scratch (batched): {} map operations: plan {:.1} ms + kernel {:.1} ms = {:.1} ms (target < 1000 ms)",
        applied.ops,
        ms(applied.plan_time),
        ms(applied.apply_time),
        ms(total)
    );

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

    // File write -> kernel maps, through the manifest watcher (debounce as the agent's default
    // and as small as it goes).
    let manifests = write_manifests(&spec, &state);
    for debounce_ms in [10, 1] {
        let (median, p99, max) =
            file_to_kernel(&spec, &manifests, debounce_ms, &mut datapath, limits);
        println!(
            "one EndpointSlice change, file write -> kernel maps (debounce {debounce_ms} ms), {FILE_ROUNDS} rounds: median {median:.2} ms, p99 {p99:.2} ms, max {max:.2} ms (target < 5 ms)"
        );
    }
    let _ = std::fs::remove_dir_all(&manifests);
    drop(datapath);
    drop(dir);

    // Peer: one syscall per entry.
    let dir = common::BpfDir::new("bench-peer");
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
