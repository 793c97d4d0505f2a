//! Privileged: in a lab of its own, several clients open new connections through node 1's
//! NodePort for every peer, and the connection-rate run reports a rate for each.

use switchyard_bench::connection_rate::{self, RatePlan};
use switchyard_bench::programming::Peer;

#[test]
fn every_peer_carries_new_connections_through_the_node_port() {
    if !switchyard_lab::require_root("every_peer_carries_new_connections_through_the_node_port") {
        return;
    }
    let peers = vec![Peer::Switchyard, Peer::Nftables, Peer::IptablesNft, Peer::IptablesLegacy];
    let plan = RatePlan {
        services: vec![20],
        peers: peers.clone(),
        clients: 2,
        seconds: 0.3,
        snat_ports: None,
        rounds: 1,
    };
    let points = connection_rate::run(&plan, &mut |line| eprintln!("{line}")).expect("rate run");
    assert_eq!(points.len(), peers.len());
    for (point, peer) in points.iter().zip(&peers) {
        assert_eq!(point.peer, *peer);
        assert_eq!(point.error, None, "{point:?}");
        assert!(point.connections >= 10, "{point:?}");
        assert!(point.per_second.is_some_and(|r| r > 0.0), "{point:?}");
        assert!(point.per_cpu_second.is_some_and(|r| r > 0.0), "{point:?}");
        assert!(point.retransmitted_segments.is_some(), "{point:?}");
    }
}
