//! Property: after any sequence of batches, restarts and crashes, the in-memory kernel holds
//! exactly what the desired state demands, and no single operation on the way lets a lookup of a
//! live frontend dangle, lose a frontend that stays, or change a live frontend's id.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use switchyard_dataplane::fake::{FakeKernel, Resolved};
use switchyard_dataplane::{FrontendSpec, Limits, Op, Plan, Planner, TableBuilder};

type Key = u8;
type Backend = u8;
type Attrs = u8;
type Spec = FrontendSpec<Backend, Attrs>;
type Kernel = FakeKernel<Key, Backend, Attrs>;

struct SevenTable;

impl TableBuilder<Backend> for SevenTable {
    fn build(&self, backends: &[Backend]) -> Vec<u32> {
        (0..7u32).map(|i| (i * 3 + backends.len() as u32) % backends.len() as u32).collect()
    }
}

/// Small enough that ids wrap around and get reused during a run.
const LIMITS: Limits = Limits { frontends: 12, backends: 24, slots: 256, slots_per_frontend: 16 };

#[derive(Debug, Clone)]
enum Step {
    Batch(Vec<(Key, Option<Spec>)>),
    /// A new planner adopts the maps and reconciles the whole desired state.
    Restart,
    /// The batch is planned, only `cut` of its operations reach the kernel, then a restart.
    Crash(Vec<(Key, Option<Spec>)>, usize),
}

fn spec() -> impl Strategy<Value = Spec> {
    (prop::collection::vec(0u8..10, 0..6), any::<bool>(), 0u8..2)
        .prop_map(|(backends, maglev, attrs)| FrontendSpec { backends, maglev, attrs })
}

fn changes() -> impl Strategy<Value = Vec<(Key, Option<Spec>)>> {
    prop::collection::vec((0u8..6, prop::option::weighted(0.75, spec())), 0..6)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => changes().prop_map(Step::Batch),
        1 => Just(Step::Restart),
        1 => (changes(), any::<usize>()).prop_map(|(c, cut)| Step::Crash(c, cut)),
    ]
}

/// What a lookup must find for the desired state.
fn expected(desired: &BTreeMap<Key, Spec>) -> BTreeMap<Key, Resolved<Backend, Attrs>> {
    desired
        .iter()
        .map(|(key, spec)| {
            let backends: BTreeSet<Backend> = spec.backends.iter().copied().collect();
            let sorted: Vec<Backend> = backends.iter().copied().collect();
            let maglev = (spec.maglev && !sorted.is_empty())
                .then(|| SevenTable.build(&sorted).iter().map(|i| sorted[*i as usize]).collect());
            let resolved =
                Resolved { slot_count: backends.len(), backends, maglev, attrs: spec.attrs };
            (*key, resolved)
        })
        .collect()
}

/// Shuffles operations within each phase (any order inside a phase must be safe).
fn shuffle_within_phases(
    plan: &Plan<Key, Backend, Attrs>,
    seed: u64,
) -> Vec<Op<Key, Backend, Attrs>> {
    let mut ops = plan.ops.clone();
    let mut state = seed | 1;
    let mut start = 0;
    while start < ops.len() {
        let phase = ops[start].phase();
        let end = start + ops[start..].iter().take_while(|op| op.phase() == phase).count();
        for i in (start + 1..end).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let j = start + (state % (i - start + 1) as u64) as usize;
            ops.swap(i, j);
        }
        start = end;
    }
    ops
}

/// Applies operations one at a time, checking after each one that every lookup resolves, that
/// frontends wanted before and after the batch never disappear, and that live ids never change.
fn apply_checked(
    kernel: &mut Kernel,
    ops: &[Op<Key, Backend, Attrs>],
    staying: &BTreeSet<Key>,
) -> Result<(), TestCaseError> {
    for op in ops {
        let ids_before: BTreeMap<Key, u32> =
            kernel.frontends.iter().map(|(k, v)| (*k, v.id.0)).collect();
        kernel.apply_one(op).map_err(|e| TestCaseError::fail(e.to_string()))?;
        kernel.check_lookups().map_err(|e| TestCaseError::fail(format!("after {op:?}: {e}")))?;
        for (key, id) in &ids_before {
            match kernel.frontends.get(key) {
                None if staying.contains(key) => {
                    return Err(TestCaseError::fail(format!("{op:?} lost frontend {key}")));
                }
                Some(value) if value.id.0 != *id => {
                    return Err(TestCaseError::fail(format!("{op:?} renumbered frontend {key}")));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn apply_changes(desired: &mut BTreeMap<Key, Spec>, changes: &[(Key, Option<Spec>)]) {
    for (key, change) in changes {
        match change {
            Some(spec) => desired.insert(*key, spec.clone()),
            None => desired.remove(key),
        };
    }
}

fn restart(kernel: &Kernel) -> Planner<Key, Backend, Attrs> {
    Planner::adopt(kernel.snapshot(), LIMITS, Arc::new(SevenTable)).0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn kernel_converges_to_desired_state_and_never_dangles(
        steps in prop::collection::vec(step(), 1..12),
        seed in any::<u64>(),
    ) {
        let mut planner = Planner::new(LIMITS, Arc::new(SevenTable));
        let mut kernel = Kernel::default();
        let mut desired: BTreeMap<Key, Spec> = BTreeMap::new();
        for step in steps {
            let before = desired.clone();
            let plan = match &step {
                Step::Batch(changes) => {
                    apply_changes(&mut desired, changes);
                    planner.plan(changes.clone())
                }
                Step::Restart => {
                    planner = restart(&kernel);
                    planner.plan_full(desired.clone())
                }
                Step::Crash(changes, cut) => {
                    apply_changes(&mut desired, changes);
                    let plan = planner.plan(changes.clone());
                    let staying: BTreeSet<Key> =
                        before.keys().filter(|k| desired.contains_key(*k)).copied().collect();
                    let ops = shuffle_within_phases(&plan, seed);
                    let cut = if ops.is_empty() { 0 } else { cut % ops.len() };
                    apply_checked(&mut kernel, &ops[..cut], &staying)?;
                    planner = restart(&kernel);
                    planner.plan_full(desired.clone())
                }
            };
            prop_assert!(plan.errors.is_empty(), "{:?}", plan.errors);
            let staying: BTreeSet<Key> =
                before.keys().filter(|k| desired.contains_key(*k)).copied().collect();
            apply_checked(&mut kernel, &shuffle_within_phases(&plan, seed), &staying)?;
            kernel.check_no_debris().map_err(TestCaseError::fail)?;
            prop_assert_eq!(kernel.resolve(), expected(&desired));
            // A second plan of the same state is empty: the first was complete and minimal.
            let again = planner.plan_full(desired.clone());
            prop_assert!(again.is_empty(), "replanning changed {:?}", again.ops);
        }
    }
}
