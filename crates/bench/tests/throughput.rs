//! Privileged: UDP packets from an external client reach the pod behind a NodePort through each
//! peer's ruleset and Switchyard's TC programs, and straight through node 1 without either (the
//! baseline), in a lab of its own; nothing is left attached.

use std::time::Duration;

use switchyard_bench::throughput::{self, Forwarder, ThroughputPlan};

#[test]
fn nodeport_traffic_reaches_the_pod_on_another_node_through_every_forwarder() {
    if !switchyard_lab::require_root(
        "nodeport_traffic_reaches_the_pod_on_another_node_through_every_forwarder",
    ) {
        return;
    }
    let plan = ThroughputPlan {
        forwarders: Forwarder::ALL.to_vec(),
        services: 20,
        duration: Duration::from_millis(500),
        rounds: 1,
    };
    let points = throughput::run(&plan, &mut |line| eprintln!("{line}")).expect("throughput run");
    assert_eq!(points.len(), Forwarder::ALL.len());
    for point in &points {
        assert_eq!(point.error, None, "{point:?}");
        assert!(point.received > 0 && point.received <= point.sent, "{point:?}");
        assert!(point.node1_forwarded >= point.received, "{point:?}");
    }
    let summary = throughput::summarize(&points);
    assert!(summary.iter().all(|s| s.samples == 1), "{summary:?}");
}
