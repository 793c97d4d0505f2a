//! Privileged: in a lab of its own, a pod reaches the last of N Services through each peer's
//! ruleset and Switchyard's socket-level programs, an external client reaches its NodePort
//! through each peer's ruleset and Switchyard's TC programs, and the latency sweep reports every
//! point.

use switchyard_bench::latency::{self, LatencyPath, LatencyPlan};
use switchyard_bench::programming::Peer;

#[test]
fn every_peer_routes_the_pod_and_the_external_client_to_the_last_service() {
    if !switchyard_lab::require_root(
        "every_peer_routes_the_pod_and_the_external_client_to_the_last_service",
    ) {
        return;
    }
    let peers = vec![Peer::Switchyard, Peer::Nftables, Peer::IptablesNft, Peer::IptablesLegacy];
    let plan = LatencyPlan {
        sizes: vec![1, 25],
        connections: 20,
        rounds: 2,
        peers: peers.clone(),
        client_exe: env!("CARGO_BIN_EXE_switchyard-bench").into(),
        // The clients and the echo server under SCHED_FIFO (a failure to raise one is a
        // point's error, asserted below).
        realtime: true,
    };
    let points = latency::run(&plan, &mut |line| eprintln!("{line}")).expect("latency run");
    assert_eq!(points.len(), peers.len() * 2 * LatencyPath::ALL.len());
    for point in &points {
        assert_eq!(point.error, None, "{point:?}");
        assert_eq!(point.failures, 0, "{point:?}");
        assert_eq!(point.connections, 20, "{point:?}");
        assert!(point.p50_us.is_some_and(|p50| p50 > 0.0), "{point:?}");
        assert!(point.retransmitted_segments.is_some(), "{point:?}");
    }
    for path in LatencyPath::ALL {
        assert!(points.iter().any(|p| p.peer == Peer::Switchyard && p.path == path), "{path:?}");
    }
}
