//! What the agent's long-lived structures keep, counted in live heap bytes by a global allocator
//! (issue 20: agent RSS at 10,000 Services), so that a representation which keeps whole objects
//! fails here instead of only showing in a benchmark. One test in this binary: the counter is
//! process-wide.
#![allow(clippy::unwrap_used)]

use switchyard_testing::live_heap::{LiveHeap, live};

use switchyard_model::synthetic::{self, SyntheticCluster, changes};
use switchyard_model::validate::{IncrementalValidation, ValidationOptions, validate};

#[global_allocator]
static GLOBAL: LiveHeap = LiveHeap;

/// The agent's validation keeps the facts its cross-object rules read, not a second copy of
/// every object: at 1,000 Services × 25 endpoints it holds a small fraction of what the objects
/// themselves take (a copy of the objects, as it kept before, is more than all of it). The
/// node each endpoint names is a thin reference (8 bytes; 105 B per endpoint in all, 113 with a
/// 16-byte `Arc<str>`), and each Service's and slice's key is one allocation shared by the maps
/// and indexes, NodePort claims a sorted vector, Service port names interned (74 B per
/// endpoint, 105 with a copy of the key per entry and a `BTreeMap` per claim), its maps rebuilt
/// in one pass after a bulk load, so that their B-tree nodes are full (64 B), a Service's lists
/// without spare capacity and the address indexes B-trees rather than hash tables (53 B), and
/// names that copy without allocating ([`switchyard_model::Name`]: 50 B; it fails above 52).
#[test]
fn incremental_validation_keeps_facts_not_objects() {
    let spec = SyntheticCluster { services: 1_000, nodes: 50, ..SyntheticCluster::default() };
    let state = synthetic::generate(&spec);
    let before = live();
    let changes = changes(&state);
    let objects = live() - before;

    let before = live();
    let mut validation = IncrementalValidation::new(ValidationOptions::default());
    validation.update(&changes);
    let kept = live().saturating_sub(before);
    // The same findings as a whole-state validation, so nothing was left out to save memory.
    assert!(validation.findings().eq(validate(&state, &ValidationOptions::default()).iter()));
    let endpoints: usize = state.endpoint_slices.values().map(|s| s.endpoints.len()).sum();
    eprintln!(
        "objects {objects} B, validation keeps {kept} B ({:.3}×, {} B per endpoint)",
        kept as f64 / objects as f64,
        kept / endpoints
    );
    assert!(kept * 5 < objects, "validation keeps {kept} B for {objects} B of objects");
    assert!(kept / endpoints <= 52, "validation keeps {} B per endpoint", kept / endpoints);

    // Endpoints that name no node (outside the cluster, or the benchmark's) are not listed one
    // by one: 8 B per endpoint less (44 B per endpoint here, 52 when each kept a `None`).
    let mut nameless = state.clone();
    for slice in nameless.endpoint_slices.values_mut() {
        for endpoint in &mut slice.endpoints {
            endpoint.node_name = None;
        }
    }
    let changes = synthetic::changes(&nameless);
    let before = live();
    let mut validation = IncrementalValidation::new(ValidationOptions::default());
    validation.update(&changes);
    let kept_nameless = live().saturating_sub(before);
    assert!(validation.findings().eq(validate(&nameless, &ValidationOptions::default()).iter()));
    eprintln!("without node names: {} B per endpoint", kept_nameless / endpoints);
    assert!(
        kept_nameless + 7 * endpoints <= kept,
        "without node names the validation keeps {kept_nameless} B, with them {kept} B"
    );
}
