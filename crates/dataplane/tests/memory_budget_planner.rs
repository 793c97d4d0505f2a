//! What the planner keeps per frontend backend (slot), counted in live heap bytes by a global
//! allocator (issue 20: agent RSS at 10,000 Services × 25 endpoints, where the planner's view
//! of the maps was 22 MB). One test in this binary: the counter is process-wide.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use switchyard_dataplane::translate::{self, MapBackend};
use switchyard_dataplane::{Limits, Planner, TableBuilder};
use switchyard_model::NodeModel;
use switchyard_model::synthetic::{self, SyntheticCluster};
use switchyard_testing::live_heap::{LiveHeap, live};

#[global_allocator]
static GLOBAL: LiveHeap = LiveHeap;

/// The synthetic cluster has no Maglev frontends; a table is never asked for.
struct NoTables;

impl TableBuilder<MapBackend> for NoTables {
    fn build(&self, backends: &[MapBackend]) -> Vec<u32> {
        (0..backends.len() as u32).collect()
    }
}

/// Each backend is kept once (with its id and reference count) and each slot names it by a
/// 4-byte position. With a `HashMap` from backend to state and a copy of the backend in every
/// slot, the planner kept 66 B per slot here (2.02 MB; measured when the check was written);
/// it keeps 47 (1.44 MB) and fails above 52. The frontends (key, id, what their entry holds)
/// are most of the rest.
#[test]
fn the_planner_keeps_each_backend_once_and_slots_as_positions() {
    let spec = SyntheticCluster {
        services: 1_000,
        endpoints_per_slice: 100,
        ..SyntheticCluster::default()
    };
    let model = NodeModel::from_state(synthetic::config(), &synthetic::generate(&spec));
    // The input is consumed by the plan: count from before it existed.
    let before = live();
    let desired = translate::desired(model.desired());
    let input = live() - before;
    let slots: usize = desired.iter().map(|(_, s)| s.backends.len()).sum();
    let frontends = desired.len();
    let limits = Limits {
        frontends: 1 << 20,
        backends: 1 << 20,
        slots: 1 << 24,
        slots_per_frontend: 1 << 16,
    };

    let before = live() - input;
    let mut planner = Planner::new(limits, Arc::new(NoTables));
    let plan = planner.plan_full(desired);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    assert_eq!(planner.frontend_count(), frontends);
    drop(plan);
    let kept = live() - before;

    let per_slot = kept / slots;
    eprintln!(
        "{frontends} frontends, {slots} slots, {} backends: the planner keeps {kept} B, \
         {per_slot} B per slot",
        planner.backend_count()
    );
    assert!(planner.backend_count() > slots / 2, "most slots hold a backend of their own");
    assert!(per_slot <= 52, "{per_slot} B per slot");
}
