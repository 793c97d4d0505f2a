//! Privileged: in a lab of its own, a pod reaches the last of N Services through each peer's
//! ruleset, and the latency sweep reports every point.

use switchyard_bench::latency::{self, LatencyPlan};
use switchyard_bench::programming::Peer;

#[test]
fn every_peer_routes_the_pod_to_the_last_service() {
    if !switchyard_lab::require_root("every_peer_routes_the_pod_to_the_last_service") {
        return;
    }
    let plan = LatencyPlan {
        sizes: vec![1, 25],
        connections: 20,
        peers: vec![Peer::Nftables, Peer::IptablesNft, Peer::IptablesLegacy],
    };
    let points = latency::run(&plan, &mut |line| eprintln!("{line}")).expect("latency run");
    assert_eq!(points.len(), 6);
    for point in &points {
        assert_eq!(point.error, None, "{point:?}");
        assert_eq!(point.failures, 0, "{point:?}");
        assert_eq!(point.connections, 20, "{point:?}");
        assert!(point.p50_us.is_some_and(|p50| p50 > 0.0), "{point:?}");
    }
}
