//! Model speed on a cluster of 10,000 Services × 25 endpoints (3 slices each, 100 nodes):
//! the full desired state of one node, and the incremental update for one changed EndpointSlice.
//! Targets on the 2-core CI machine: < 200 ms full, < 1 ms incremental.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use switchyard_model::NodeModel;
use switchyard_model::synthetic::{self, SyntheticCluster};

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

fn full_desired_state(c: &mut Criterion) {
    let spec = spec();
    let state = synthetic::generate(&spec);
    let mut group = c.benchmark_group("model");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("full_10k_services_x_25_endpoints", |b| {
        b.iter_with_large_drop(|| NodeModel::from_state(synthetic::config(), black_box(&state)))
    });
    group.finish();
}

fn incremental_endpoint_slice(c: &mut Criterion) {
    let spec = spec();
    let state = synthetic::generate(&spec);
    let mut model = NodeModel::from_state(synthetic::config(), &state);
    let mut generation = 0_u64;
    let mut group = c.benchmark_group("model");
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

criterion_group!(benches, full_desired_state, incremental_endpoint_slice);
criterion_main!(benches);
