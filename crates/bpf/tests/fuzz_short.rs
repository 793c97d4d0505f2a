//! A short pass of the per-packet fuzzer (root): 20,000 generated and mutated frames through
//! `sy_nodeport_xdp`, `sy_nodeport_ingress` and `sy_nodeport_egress`; the long run is `cargo run -p switchyard-bpf
//! --example fuzz_packets -- 1000000`.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_lab::require_root;

#[test]
fn mutated_frames_never_fail_leave_with_bad_checksums_or_drop_without_a_reason() {
    if !require_root("mutated_frames_never_fail_leave_with_bad_checksums_or_drop_without_a_reason")
    {
        return;
    }
    let report = std::thread::spawn(|| switchyard_testing::fuzz_packets::run(0x5eed_0017, 20_000))
        .join()
        .expect("the fuzz thread");
    println!("{report:#?}");
    assert!(report.clean(), "{report:#?}");
    // The generator reaches the translations: a fuzzer that only hits the parser's drops
    // would pass too.
    assert!(report.well_formed_inputs > 5_000, "{report:#?}");
    assert!(report.changed > 2_000, "frames translated (both ways): {report:#?}");
    assert!(report.shots() > 100, "frames dropped: {report:#?}");
    // The XDP program forwards (translates) too, not only passes everything to TC.
    assert!(report.xdp_changed > 1_000, "frames XDP forwarded: {report:#?}");
    assert!(report.xdp_drops() > 10, "frames XDP dropped: {report:#?}");
}

/// The checker the fuzzer relies on refuses what it should (a fuzzer whose checker accepts
/// everything would pass too).
#[test]
fn the_frame_checker_refuses_bad_checksums_and_lengths() {
    use switchyard_testing::frames::Spec;
    use switchyard_testing::fuzz_packets::check;
    for spec in [
        Spec::tcp("192.0.2.7", 40000, "10.0.0.1", 30080, 2),
        Spec::udp("2001:db8::7", 40000, "fd00::1", 30080),
        Spec::sctp("192.0.2.7", 40000, "10.0.0.1", 30080, 1),
    ] {
        let good = spec.frame();
        assert_eq!(check(&good), Ok(()), "{spec:?}");
        let mut bad_payload = good.clone();
        *bad_payload.last_mut().unwrap() ^= 0x40;
        assert!(check(&bad_payload).is_err(), "transport checksum: {spec:?}");
        let mut longer = good.clone();
        longer.push(0);
        assert!(check(&longer).is_err(), "length: {spec:?}");
    }
    // IPv4 UDP may go without a checksum, IPv6 UDP may not.
    let mut no_checksum = Spec::udp("192.0.2.7", 40000, "10.0.0.1", 30080).frame();
    no_checksum[40..42].copy_from_slice(&[0, 0]);
    assert_eq!(check(&no_checksum), Ok(()));
    let mut no_checksum6 = Spec::udp("2001:db8::7", 40000, "fd00::1", 30080).frame();
    no_checksum6[60..62].copy_from_slice(&[0, 0]);
    assert!(check(&no_checksum6).is_err());
    let mut bad_header = Spec::tcp("192.0.2.7", 40000, "10.0.0.1", 30080, 2).frame();
    bad_header[22] ^= 1; // TTL
    assert!(check(&bad_header).is_err(), "IPv4 header checksum");
}
