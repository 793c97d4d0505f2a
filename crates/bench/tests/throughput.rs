//! Privileged: UDP packets from an external client reach the pod behind a NodePort through each
//! peer's ruleset, in a lab of its own.

use std::time::Duration;

use switchyard_bench::programming::Peer;
use switchyard_bench::throughput;

#[test]
fn nodeport_traffic_reaches_the_pod_on_another_node_through_each_peer() {
    if !switchyard_lab::require_root(
        "nodeport_traffic_reaches_the_pod_on_another_node_through_each_peer",
    ) {
        return;
    }
    let peers = [Peer::Nftables, Peer::IptablesNft, Peer::IptablesLegacy];
    let points =
        throughput::run(&peers, 20, Duration::from_millis(500), &mut |line| eprintln!("{line}"))
            .expect("throughput run");
    assert_eq!(points.len(), 3);
    for point in &points {
        assert_eq!(point.error, None, "{point:?}");
        assert!(point.received > 0 && point.received <= point.sent, "{point:?}");
    }
}
