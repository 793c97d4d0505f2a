//! Switchyard's programming step against real BPF maps (root): the benchmark's own cluster goes
//! through the model and the reconciler, and one endpoint change is a handful of map operations.

use std::time::Duration;

use switchyard_bench::programming::{Limits, Step};
use switchyard_bench::switchyard::measure_programming;
use switchyard_bench::synthetic::{self, Shape};

#[test]
fn full_programming_writes_every_backend_and_a_change_writes_only_a_few_entries() {
    if !switchyard_lab::require_root("full_programming_writes_every_backend") {
        return;
    }
    let before = synthetic::cluster(Shape { services: 50, endpoints_per_service: 4 });
    let after = synthetic::replace_one_endpoint(&before);
    let limits = Limits { per_run: Duration::from_secs(60), repetitions: 2 };
    let Some(records) = measure_programming(&before, &after, limits) else {
        panic!("Switchyard's programming hook returned nothing");
    };
    let steps: Vec<Step> = records.iter().map(|r| r.step).collect();
    assert_eq!(steps, vec![Step::Full, Step::ChangePartial]);
    for record in &records {
        assert_eq!(record.error, None, "{:?}", record.step);
        assert_eq!(record.wall.len(), 2, "{:?}", record.step);
        assert_eq!(record.cpu.len(), 2, "{:?}", record.step);
    }
    // 50 ClusterIP frontends + 5 NodePort ones, 4 backends each: at least one write per slot.
    assert!(records[0].input_lines >= 55 * 4, "full: {} ops", records[0].input_lines);
    assert!(
        (1..=8).contains(&records[1].input_lines),
        "one endpoint change: {} ops",
        records[1].input_lines
    );
}
