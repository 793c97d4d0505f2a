//! The short fuzz pass of manifest reading (issue 18 item 7; the long run is `--example
//! fuzz_manifests`, docs/manifests.md).

#[test]
fn five_thousand_mutated_manifests_cause_no_panic() {
    let report = switchyard_k8s::manifest::fuzz::run(0x5eed, 5_000);
    assert_eq!(report.panics, 0, "panicking inputs: {:#?}", report.panic_inputs);
    // The repository's test data was found, so the mutations start from every kind.
    assert!(report.seeds > 20, "{report:?}");
    // The mutations reach past the tokenizer: objects apply, some are refused by the semantic
    // checks, and validation finds problems in what applies.
    assert!(report.objects > report.inputs / 2, "{report:?}");
    assert!(report.broken > 500, "{report:?}");
    assert!(report.refused > 100, "{report:?}");
    assert!(report.findings > 500, "{report:?}");
}
