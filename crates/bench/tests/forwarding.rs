//! Privileged smoke test of the forwarding benchmark's harness (tiny samples, a few seconds):
//! every forwarder forwards the generator's frames to the sink in namespaces of its own, the
//! forwarder's NAPI thread is charged CPU time, nothing is left behind.

use std::time::Duration;

use switchyard_bench::forwarding::generator::Method;
use switchyard_bench::forwarding::{self, Forwarder, FwdPlan};

#[test]
fn every_forwarder_forwards_the_generators_frames_on_its_own_cpu() {
    if !switchyard_lab::require_root(
        "every_forwarder_forwards_the_generators_frames_on_its_own_cpu",
    ) {
        return;
    }
    let plan = FwdPlan {
        forwarders: Forwarder::ALL.to_vec(),
        services: vec![3],
        duration: Duration::from_millis(200),
        rounds: 1,
        nice: forwarding::DEFAULT_NICE,
    };
    let points = forwarding::run(&plan, &mut |line| eprintln!("{line}")).expect("forwarding run");
    assert_eq!(points.len(), Forwarder::ALL.len());
    for point in &points {
        assert_eq!(point.error, None, "{point:?}");
        assert!(point.forwarded > 0 && point.forwarded <= point.offered, "{point:?}");
        assert!(point.forwarder_cpu_seconds > 0.0, "{point:?}");
        assert_ne!(point.forwarder_cpu, point.generator_cpu, "{point:?}");
        if point.generator == Some(Method::Reflector) {
            // Every frame offered was forwarded or dropped at the forwarder's full ring (up to
            // the seeder's frames refused in the middle of a batch, not counted as offered).
            assert!(point.reflected > 0, "{point:?}");
            let accounted = point.forwarded + point.ring_dropped;
            assert!(accounted.abs_diff(point.offered) <= point.offered / 50, "{point:?}");
        }
    }
    let summary = forwarding::summarize(&points);
    assert!(summary.iter().all(|s| s.samples == 1 && s.services == 3), "{summary:?}");
    assert!(forwarding::check(&points).is_some());
    let leftover: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(&format!("-{}-", std::process::id())))
                .filter(|n| n.starts_with("sybench-fwd"))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftover.is_empty(), "namespaces left behind: {leftover:?}");
}
