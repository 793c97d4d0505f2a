//! Model speed on a cluster of 10,000 Services × 25 endpoints (3 slices each, 100 nodes):
//! the full desired state of one node, and the incremental update for one changed EndpointSlice.
//! Targets on the 2-core CI machine: < 200 ms full, < 1 ms incremental.
//!
//! Each is measured twice: wall time (group `model`) and the thread's CPU time (group
//! `model_cpu`), because on a machine shared with other builds wall time mostly measures waiting.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use switchyard_model::NodeModel;
use switchyard_model::synthetic::{self, SyntheticCluster};

use switchyard_testing::cpu_time::ThreadCpuTime;

fn spec() -> SyntheticCluster {
    SyntheticCluster {
        services: 10_000,
        endpoints_per_service: 25,
        endpoints_per_slice: 10,
        nodes: 100,
        zones: 3,
        namespaces: 50,
    }
}

fn model_benches<M: Measurement>(c: &mut Criterion<M>, group_name: &str) {
    let spec = spec();
    let state = synthetic::generate(&spec);
    let mut group = c.benchmark_group(group_name);
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("full_10k_services_x_25_endpoints", |b| {
        // Dropping the model afterwards is not part of computing it.
        b.iter_with_large_drop(|| NodeModel::from_state(synthetic::config(), black_box(&state)))
    });

    let mut model = NodeModel::from_state(synthetic::config(), &state);
    let mut generation = 0_u64;
    group.sample_size(100).measurement_time(Duration::from_secs(5));
    group.bench_function("incremental_one_endpoint_slice", |b| {
        b.iter_batched(
            || {
                // Each iteration flips one endpoint's readiness, so every change is a real one;
                // building the object is setup, not measured.
                generation += 1;
                synthetic::changed_slice(&spec, 4_242, 1, generation)
            },
            |change| {
                let diff = model.apply(change);
                assert!(!diff.is_empty());
                diff
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn wall_time(c: &mut Criterion) {
    model_benches(c, "model");
}

fn cpu_time(c: &mut Criterion<ThreadCpuTime>) {
    model_benches(c, "model_cpu");
}

criterion_group!(wall, wall_time);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu_time
}
criterion_main!(wall, cpu);
