//! What the metrics' Service index keeps, counted in live heap bytes by a global allocator
//! (issue 20: the agent holds one for as long as it runs). One test in this binary: the counter
//! is process-wide.
#![allow(clippy::unwrap_used)]

use switchyard_model::NodeModel;
use switchyard_model::synthetic::{self, SyntheticCluster};
use switchyard_observe::labels::ServiceIndex;
use switchyard_testing::live_heap::{LiveHeap, live};

#[global_allocator]
static GLOBAL: LiveHeap = LiveHeap;

/// Sorted vectors and shared strings: 116 B per frontend here (1,450 frontends of 1,000
/// Services), where a `BTreeMap` keyed by a `String` protocol with four `String`s of label per
/// entry took 336 (3.4 MB of the agent's heap at 10,000 Services × 25 endpoints). Every
/// frontend stays findable.
#[test]
fn the_service_index_keeps_shared_labels_in_sorted_vectors() {
    let state = synthetic::generate(&SyntheticCluster { services: 1_000, ..Default::default() });
    let model = NodeModel::from_state(synthetic::config(), &state);
    let desired = model.desired();

    let before = live();
    let index = ServiceIndex::from_desired(desired);
    let kept = live() - before;

    let frontends = desired.frontends.len();
    let per_frontend = kept / frontends;
    eprintln!("{frontends} frontends: the index keeps {kept} B, {per_frontend} B per frontend");
    for (key, frontend) in &desired.frontends {
        let protocol = key.protocol.as_str().to_ascii_lowercase();
        let label = index.lookup(Some(key.ip), key.port, &protocol).unwrap();
        assert_eq!(
            (
                label.namespace.clone(),
                label.name.clone(),
                label.port_name.clone(),
                label.kind.clone()
            ),
            (
                frontend.service.namespace.to_string(),
                frontend.service.name.to_string(),
                frontend.port_name.clone(),
                frontend.kind.to_string()
            ),
            "{key}"
        );
    }
    assert_eq!(index.len(), frontends);
    assert!(per_frontend <= 150, "{per_frontend} B per frontend");
}
