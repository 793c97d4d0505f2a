//! What L2 mode's inputs keep per EndpointSlice, counted in live heap bytes by a global
//! allocator (issue 20: the agent keeps them for as long as it runs, L2Advertisements or not).
//! One test in this binary: the counter is process-wide.
#![allow(clippy::unwrap_used)]

use switchyard_model::announce::L2Inputs;
use switchyard_model::synthetic::{self, SyntheticCluster};
use switchyard_testing::live_heap::{LiveHeap, live};

#[global_allocator]
static GLOBAL: LiveHeap = LiveHeap;

/// L2 mode counts, per Service, the nodes of its ready endpoints. A slice none of whose ready
/// endpoints names a node (no ready endpoint, or none with a `nodeName`, as in the benchmark's
/// cluster) adds nothing to those counts and is not kept: 1,000 such slices cost nothing (they
/// cost 174 B each when every slice was kept: 2 MB of the agent's heap at 10,000 Services),
/// while slices whose endpoints name nodes are kept as before.
#[test]
fn slices_without_ready_nodes_are_not_kept() {
    let spec = SyntheticCluster { services: 1_000, ..SyntheticCluster::default() };
    let with_nodes = synthetic::generate(&spec);
    let mut without_nodes = with_nodes.clone();
    for slice in without_nodes.endpoint_slices.values_mut() {
        for endpoint in &mut slice.endpoints {
            endpoint.node_name = None;
        }
    }
    let mut no_slices = with_nodes.clone();
    no_slices.endpoint_slices.clear();
    let kept = |state| {
        let before = live();
        let inputs = L2Inputs::from_state("node-0", state);
        let kept = live() - before;
        drop(inputs);
        kept
    };

    let base = kept(&no_slices);
    let slices = without_nodes.endpoint_slices.len();
    let without = kept(&without_nodes).saturating_sub(base);
    let with = kept(&with_nodes).saturating_sub(base);
    eprintln!(
        "{slices} slices: without nodes {without} B ({} B each), with nodes {with} B ({} B each)",
        without / slices,
        with / slices
    );
    assert_eq!(without, 0, "slices naming no node kept {without} B");
    assert!(with >= slices * 48, "slices naming nodes are kept ({with} B)");
}
