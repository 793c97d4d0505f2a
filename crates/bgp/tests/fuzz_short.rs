//! The short fuzz pass of the suite (the long run is `--example fuzz_decoder`, docs/bgp.md).

#[test]
fn fifty_thousand_mutated_inputs_cause_no_panic_and_roundtrip() {
    let report = switchyard_bgp::fuzz::run(0x5eed, 50_000);
    assert_eq!(report.panics, 0, "panicking inputs: {:?}", report.panic_inputs);
    assert_eq!(report.roundtrip_mismatches, 0);
    // The mutator reaches the parsers behind the header, not only the framing checks.
    assert!(report.decoded > 1_000, "{report:?}");
    for (code, subcode) in [(1, 1), (1, 2), (1, 3), (2, 1), (3, 1), (3, 10), (3, 11)] {
        assert!(
            report.rejected.contains_key(&(code, subcode)),
            "never reached {code}/{subcode}: {report:?}"
        );
    }
    assert!(report.session_resets > 0);
}
