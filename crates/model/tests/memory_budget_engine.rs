//! What the model keeps per endpoint, counted in live heap bytes by a global allocator (issue 20:
//! agent RSS at 10,000 Services × 25 endpoints, where the model was the largest item). One test
//! in this binary: the counter is process-wide.
#![allow(clippy::unwrap_used)]

use switchyard_testing::live_heap::{LiveHeap, live};

use switchyard_model::NodeModel;
use switchyard_model::synthetic::{self, SyntheticCluster, changes};

#[global_allocator]
static GLOBAL: LiveHeap = LiveHeap;

/// The model holds each endpoint twice: its facts (per EndpointSlice) and a backend in every
/// frontend that uses it. The facts share one interned record of where the endpoint is (node,
/// zone, zone hints) instead of three references each, the backends share that record too, and
/// backend lists have no spare capacity. Both ways in (a whole snapshot, and change by change as
/// the agent feeds it) stay within the budget: 24 B of facts plus 32 B per backend plus the
/// Services, slices and frontends themselves (127 B per endpoint here with 24-byte facts and
/// names that copy without allocating, `switchyard_model::Name`; 132 B with 32-byte facts, the
/// Services' and slices' facts boxed in their hash tables and their lists without spare
/// capacity; 149 B with
/// the facts in the buckets, with the desired state's map rebuilt in one pass after the bulk
/// load, 155 B inserted one by one; 181 B with 56-byte backends holding their own node and zone
/// references, 243 B with 80-byte facts and lists of spare capacity). It fails above 129.
#[test]
fn the_model_keeps_compact_endpoint_facts_and_exact_backend_lists() {
    // One slice per Service, as the benchmark's cluster (and the endpointslice controller at
    // 25 endpoints) has.
    let spec = SyntheticCluster {
        services: 1_000,
        endpoints_per_slice: 100,
        ..SyntheticCluster::default()
    };
    let state = synthetic::generate(&spec);
    let endpoints: usize = state.endpoint_slices.values().map(|s| s.endpoints.len()).sum();
    let backends = |model: &NodeModel| -> usize {
        model.desired().frontends.values().map(|f| f.backends.len()).sum()
    };

    let before = live();
    let mut bulk = NodeModel::from_state(synthetic::config(), &state);
    // As the agent does after its first reading.
    bulk.compact();
    let bulk_kept = live() - before;

    // The changes are consumed as they are applied: count from before they existed.
    let before = live();
    let changes = changes(&state);
    let mut incremental = NodeModel::new(synthetic::config());
    for change in changes {
        incremental.apply(change);
    }
    // As the agent does after its first reading.
    incremental.compact();
    let incremental_kept = live() - before;
    assert_eq!(bulk.desired(), incremental.desired(), "both ways in give the same state");
    assert!(backends(&bulk) >= endpoints, "every endpoint is a backend somewhere");

    for (how, kept) in [("from_state", bulk_kept), ("apply", incremental_kept)] {
        let per_endpoint = kept / endpoints;
        eprintln!(
            "{how}: {endpoints} endpoints, {} backends: the model keeps {kept} B, {per_endpoint} B \
             per endpoint",
            backends(&bulk)
        );
        assert!(per_endpoint <= 129, "{how}: {per_endpoint} B per endpoint");
    }
}
