//! Behaviour of the planner, one test per rule, against the in-memory kernel.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use switchyard_dataplane::fake::FakeKernel;
use switchyard_dataplane::{
    BackendId, FrontendId, FrontendSpec, Limits, MapOps, Op, Phase, Plan, PlanError, Planner,
    TableBuilder,
};

type Key = u8;
type Backend = u8;
type Attrs = u8;

/// A small deterministic "Maglev": table of 7 entries spread over the sorted backends.
struct SevenTable;

impl TableBuilder<Backend> for SevenTable {
    fn build(&self, backends: &[Backend]) -> Vec<u32> {
        (0..7u32).map(|i| (i * 3 + backends.len() as u32) % backends.len() as u32).collect()
    }
}

const LIMITS: Limits = Limits { frontends: 64, backends: 64, slots: 1024, slots_per_frontend: 32 };

fn planner() -> Planner<Key, Backend, Attrs> {
    Planner::new(LIMITS, Arc::new(SevenTable))
}

fn spec(backends: &[Backend]) -> FrontendSpec<Backend, Attrs> {
    FrontendSpec { backends: backends.to_vec(), maglev: false, attrs: 0 }
}

fn kernel() -> FakeKernel<Key, Backend, Attrs> {
    FakeKernel { check_each_op: true, ..FakeKernel::default() }
}

fn apply(kernel: &mut FakeKernel<Key, Backend, Attrs>, plan: &Plan<Key, Backend, Attrs>) {
    kernel.apply(&plan.ops).unwrap();
    kernel.check_no_debris().unwrap();
}

fn phases(plan: &Plan<Key, Backend, Attrs>) -> Vec<Phase> {
    plan.ops.iter().map(Op::phase).collect()
}

#[test]
fn new_frontend_writes_backends_then_pointers_then_the_frontend() {
    let mut planner = planner();
    let plan = planner.plan([(1, Some(spec(&[10, 11])))]);
    assert_eq!(
        phases(&plan),
        [
            Phase::WriteBackends,
            Phase::WriteBackends,
            Phase::WritePointers,
            Phase::WritePointers,
            Phase::WritePointers,
            Phase::WriteFrontends
        ]
    );
    let mut kernel = kernel();
    apply(&mut kernel, &plan);
    assert_eq!(kernel.frontends[&1].count, 2);
}

#[test]
fn unchanged_desired_state_plans_nothing() {
    let mut planner = planner();
    planner.plan([(1, Some(spec(&[10, 11]))), (2, Some(spec(&[11])))]);
    let plan = planner.plan([(1, Some(spec(&[10, 11]))), (2, Some(spec(&[11])))]);
    assert!(plan.is_empty(), "{:?}", plan.ops);
}

#[test]
fn a_shared_backend_is_written_once_and_deleted_with_its_last_user() {
    let mut planner = planner();
    let mut kernel = kernel();
    let plan = planner.plan([(1, Some(spec(&[10]))), (2, Some(spec(&[10])))]);
    let puts = plan.ops.iter().filter(|op| matches!(op, Op::PutBackend { .. })).count();
    assert_eq!(puts, 1);
    apply(&mut kernel, &plan);

    let plan = planner.plan([(1, None)]);
    assert!(!plan.ops.iter().any(|op| matches!(op, Op::DeleteBackend { .. })));
    assert!(plan.released.is_empty());
    apply(&mut kernel, &plan);

    let plan = planner.plan([(2, Some(spec(&[])))]);
    assert_eq!(plan.released, [10]);
    assert_eq!(plan.ops.last().map(Op::phase), Some(Phase::DeleteBackends));
    apply(&mut kernel, &plan);
}

#[test]
fn removing_a_backend_moves_the_last_one_into_its_slot_and_shrinks_after_the_count() {
    let mut planner = planner();
    let mut kernel = kernel();
    apply(&mut kernel, &planner.plan([(1, Some(spec(&[10, 11, 12])))]));
    let id_12 = planner.backend_id(&12).unwrap();
    let id_11 = planner.backend_id(&11).unwrap();
    let fid = planner.frontend_id(&1).unwrap();

    let plan = planner.plan([(1, Some(spec(&[10, 12])))]);
    let expected_value =
        switchyard_dataplane::FrontendValue { id: fid, count: 2, maglev: false, attrs: 0 };
    assert_eq!(
        plan.ops,
        [
            Op::PutSlot { frontend: fid, slot: 1, backend: id_12 },
            Op::PutFrontend { key: 1, value: expected_value },
            Op::DeleteSlot { frontend: fid, slot: 2 },
            Op::DeleteBackend { id: id_11 },
        ]
    );
    apply(&mut kernel, &plan);
}

#[test]
fn backends_that_stay_keep_their_slots() {
    let mut planner = planner();
    let mut kernel = kernel();
    apply(&mut kernel, &planner.plan([(1, Some(spec(&[10, 11, 12])))]));
    let before = kernel.slots.clone();
    // Same set in another order, plus one more: only the new slot is written.
    let plan = planner.plan([(1, Some(spec(&[12, 13, 10, 11])))]);
    let slot_writes: Vec<u32> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::PutSlot { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect();
    assert_eq!(slot_writes, [3]);
    apply(&mut kernel, &plan);
    for (slot, backend) in before {
        assert_eq!(kernel.slots[&slot], backend);
    }
}

#[test]
fn attribute_change_rewrites_only_the_frontend_entry() {
    let mut planner = planner();
    planner.plan([(1, Some(spec(&[10, 11])))]);
    let plan = planner.plan([(1, Some(FrontendSpec { attrs: 7, ..spec(&[10, 11]) }))]);
    assert_eq!(phases(&plan), [Phase::WriteFrontends]);
}

#[test]
fn maglev_table_is_swapped_whole_before_the_count_changes_and_dropped_after() {
    let mut planner = planner();
    let mut kernel = kernel();
    let maglev = |b: &[Backend]| FrontendSpec { maglev: true, ..spec(b) };
    apply(&mut kernel, &planner.plan([(1, Some(maglev(&[10, 11])))]));
    assert_eq!(kernel.maglev.len(), 1);

    let plan = planner.plan([(1, Some(maglev(&[10, 11, 12])))]);
    let tables = plan.ops.iter().filter(|op| matches!(op, Op::PutMaglev { .. })).count();
    assert_eq!(tables, 1);
    apply(&mut kernel, &plan);

    // Same set, other order: the table depends on the set only.
    assert!(planner.plan([(1, Some(maglev(&[12, 10, 11])))]).is_empty());

    let plan = planner.plan([(1, Some(spec(&[10, 11, 12])))]);
    assert_eq!(phases(&plan), [Phase::WriteFrontends, Phase::DeletePointers]);
    apply(&mut kernel, &plan);
    assert!(kernel.maglev.is_empty());
}

#[test]
fn an_empty_frontend_stays_in_the_map_with_count_zero() {
    let mut planner = planner();
    let mut kernel = kernel();
    apply(&mut kernel, &planner.plan([(1, Some(spec(&[10])))]));
    apply(&mut kernel, &planner.plan([(1, Some(spec(&[])))]));
    assert_eq!(kernel.frontends[&1].count, 0);
    assert!(kernel.backends.is_empty());
}

#[test]
fn a_released_frontend_id_is_not_reused_in_the_same_batch() {
    let limits = Limits { frontends: 1, ..LIMITS };
    let mut planner = Planner::new(limits, Arc::new(SevenTable));
    planner.plan([(1, Some(spec(&[10])))]);
    let plan = planner.plan([(1, None), (2, Some(spec(&[10])))]);
    assert!(matches!(plan.errors[..], [PlanError::FrontendsFull { .. }]), "{:?}", plan.errors);
    let plan = planner.plan([(2, Some(spec(&[10])))]);
    assert!(plan.errors.is_empty());
    assert_eq!(planner.frontend_id(&2), Some(FrontendId(1)));
}

#[test]
fn a_frontend_that_does_not_fit_is_refused_and_left_as_it_was() {
    let limits = Limits { backends: 3, ..LIMITS };
    let mut planner = Planner::new(limits, Arc::new(SevenTable));
    let mut kernel = kernel();
    apply(&mut kernel, &planner.plan([(1, Some(spec(&[10, 11])))]));
    let before = kernel.resolve();
    let plan = planner.plan([(1, Some(spec(&[10, 12, 13])))]);
    assert!(matches!(plan.errors[..], [PlanError::BackendsFull { needed: 2, free: 1, .. }]));
    assert!(plan.is_empty());
    assert_eq!(kernel.resolve(), before);
    // A frontend that fits in the same batch still goes through.
    let plan = planner.plan([(1, Some(spec(&[10, 11, 12, 13]))), (2, Some(spec(&[10])))]);
    assert_eq!(plan.errors.len(), 1);
    apply(&mut kernel, &plan);
    assert!(kernel.frontends.contains_key(&2));
}

/// Issue 20: the agent grows full maps by copying every entry into larger ones (the kernel's
/// contents and ids do not change), raises the planner's limits and plans everything again:
/// what was refused goes in, checked after every single operation, and nothing else moves.
#[test]
fn refused_frontends_fit_once_the_limits_are_raised_and_nothing_else_moves() {
    let limits = Limits { frontends: 2, backends: 3, slots: 4, ..LIMITS };
    let mut planner = Planner::new(limits, Arc::new(SevenTable));
    let mut kernel = kernel();
    apply(&mut kernel, &planner.plan([(1, Some(spec(&[10, 11]))), (2, Some(spec(&[12])))]));
    let desired = [(1, spec(&[10, 11, 13])), (2, spec(&[12])), (3, spec(&[10]))];
    let plan = planner.plan_full(desired.clone());
    assert!(
        matches!(
            plan.errors[..],
            [PlanError::BackendsFull { .. }, PlanError::FrontendsFull { .. }]
        ),
        "{:?}",
        plan.errors
    );
    assert!(plan.is_empty());
    let ids = (planner.frontend_id(&1), planner.frontend_id(&2), planner.backend_id(&12));

    planner.raise_limits(Limits { frontends: 8, backends: 8, slots: 16, ..LIMITS });
    assert_eq!(planner.limits().frontends, 8);
    let plan = planner.plan_full(desired);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    assert!(
        !plan.ops.iter().any(|op| matches!(op, Op::DeleteFrontend { .. })),
        "nothing is removed: {:?}",
        plan.ops
    );
    apply(&mut kernel, &plan);
    assert_eq!((planner.frontend_id(&1), planner.frontend_id(&2), planner.backend_id(&12)), ids);
    assert_eq!(kernel.frontends[&1].count, 3);
    assert!(kernel.frontends.contains_key(&3));
    // Limits only grow.
    planner.raise_limits(LIMITS_SMALL);
    assert_eq!(planner.limits().frontends, 8);
}

const LIMITS_SMALL: Limits = Limits { frontends: 1, backends: 1, slots: 1, slots_per_frontend: 1 };

#[test]
fn too_many_backends_for_one_frontend_is_refused() {
    let limits = Limits { slots_per_frontend: 2, ..LIMITS };
    let mut planner = Planner::new(limits, Arc::new(SevenTable));
    let plan = planner.plan([(1, Some(spec(&[10, 11, 12])))]);
    assert!(matches!(plan.errors[..], [PlanError::TooManyBackends { count: 3, max: 2, .. }]));
}

#[test]
fn adopting_what_a_planner_wrote_and_reconciling_the_same_state_changes_nothing() {
    let mut planner = planner();
    let mut kernel = kernel();
    let maglev = |b: &[Backend]| FrontendSpec { maglev: true, ..spec(b) };
    let desired = [(1, spec(&[10, 11])), (2, maglev(&[11, 12, 13])), (3, spec(&[]))];
    apply(&mut kernel, &planner.plan_full(desired.clone()));

    let (mut adopted, report) = Planner::adopt(kernel.snapshot(), LIMITS, Arc::new(SevenTable));
    assert_eq!((report.frontends, report.backends, report.orphans), (3, 4, 0));
    let plan = adopted.plan_full(desired);
    assert!(plan.is_empty(), "{:?}", plan.ops);
    for key in [1, 2, 3] {
        assert_eq!(adopted.frontend_id(&key), planner.frontend_id(&key));
    }
}

#[test]
fn adoption_deletes_debris_only_after_the_new_state_is_in_place() {
    let mut kernel = kernel();
    // Debris of a crash: slots and a reverse translation of a frontend id nothing uses, and an
    // unreferenced backend.
    kernel.backends.insert(BackendId(5), 10);
    kernel.backends.insert(BackendId(6), 11);
    kernel.slots.insert((FrontendId(9), 1), BackendId(5));
    kernel.rev_nat.insert(FrontendId(9), 4);
    let (mut planner, report) = Planner::adopt(kernel.snapshot(), LIMITS, Arc::new(SevenTable));
    assert_eq!(report.orphans, 2);
    let plan = planner.plan_full([(1, spec(&[10]))]);
    // Backend 10 is reused under its id; 11 is deleted; frontend id 9 is not handed out.
    assert_eq!(planner.backend_id(&10), Some(BackendId(5)));
    assert_ne!(planner.frontend_id(&1), Some(FrontendId(9)));
    assert_eq!(plan.released, [11]);
    apply(&mut kernel, &plan);
}

#[test]
fn a_held_backend_keeps_its_entry_and_id_until_released_also_across_adoption() {
    let mut planner = planner();
    let mut kernel = kernel();
    let plan = planner.plan([(1, Some(spec(&[10, 11])))]);
    apply(&mut kernel, &plan);
    let id = planner.backend_id(&10).unwrap();

    // 10 leaves the frontend while held: its slot goes, its entry and id stay.
    assert!(planner.hold(&10));
    assert!(!planner.hold(&99), "only backends in the maps can be held");
    let plan = planner.plan([(1, Some(spec(&[11])))]);
    kernel.apply(&plan.ops).unwrap();
    assert!(plan.released.is_empty(), "{:?}", plan.released);
    assert_eq!(kernel.backends.get(&id), Some(&10));
    assert_eq!(kernel.frontends[&1].count, 1);

    // A restart: the entry is unreferenced debris to adoption, unless held before the plan.
    let (mut adopted, _) = Planner::adopt(kernel.snapshot(), LIMITS, Arc::new(SevenTable));
    assert!(adopted.hold(&10));
    let plan = adopted.plan_full([(1, spec(&[11]))]);
    kernel.apply(&plan.ops).unwrap();
    assert_eq!(kernel.backends.get(&id), Some(&10), "kept across adoption");

    // Released: the next plan (even an empty one) deletes it and reports it.
    adopted.release(&10);
    let plan = adopted.plan(std::iter::empty());
    apply(&mut kernel, &plan);
    assert_eq!(plan.released, vec![10]);
    assert!(!kernel.backends.contains_key(&id));

    // A held backend that a frontend uses again is not deleted on release.
    let plan = adopted.plan([(2, Some(spec(&[12])))]);
    apply(&mut kernel, &plan);
    assert!(adopted.hold(&12));
    adopted.release(&12);
    let plan = adopted.plan(std::iter::empty());
    assert!(plan.ops.is_empty() && plan.released.is_empty(), "{:?}", plan.ops);
}
