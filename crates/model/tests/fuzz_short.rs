//! The short fuzz pass of the model's incremental apply (issue 18 item 7; the long run is
//! `--example fuzz_apply`, docs/model.md).

#[test]
fn ten_thousand_random_changes_cause_no_panic_and_match_a_full_recomputation() {
    let report = switchyard_testing::fuzz_model::run(0x5eed, 10_000);
    assert_eq!(report.panics, 0, "failing sequences: {:#?}", report.failures);
    assert_eq!(report.mismatches, 0, "failing sequences: {:#?}", report.failures);
    assert!(report.changes >= 10_000 && report.comparisons > 1_000, "{report:?}");
    // The objects reach the engine's paths: frontends programmed, addresses refused.
    assert!(report.max_frontends > 5, "{report:?}");
    assert!(report.max_refusals > 0, "{report:?}");
}
