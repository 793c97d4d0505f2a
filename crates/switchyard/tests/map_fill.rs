//! Map fill as `switchyard status` and the metrics read it (root): the per-packet conntrack
//! and reverse-NAT tables and the source ranges are counted, and a full `sy_ct` reports the
//! flows its LRU evicted (entries created minus entries present).

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use switchyard_bpf::abi::*;
use switchyard_bpf::nodeport::{PacketMapSizes, SourceRangeMap as _};
use switchyard_bpf::nodeport_abi::{PacketReason, SrcRangeKey};
use switchyard_observe::kernel;
use switchyard_testing::frames::*;
use switchyard_testing::nodeport_fixture::*;

#[test]
fn conntrack_nat_and_source_ranges_are_counted_and_evictions_reported() {
    if !switchyard_lab::require_root("conntrack_nat_and_source_ranges_are_counted") {
        return;
    }
    let sizes = PacketMapSizes { ct: 256, nat: 4096 };
    let mut tc = Tc::with_sizes("map-fill", &settings(), sizes);
    let (node, client, remote) = (NODE4, CLIENT4, "10.244.2.9");
    tc.frontend(1, None, AF_INET, NODE_PORT, UDP, FE_NODEPORT, &[(9, remote, 8080, 0)]);
    let range = SrcRangeKey::new(1, "192.0.2.0".parse().unwrap(), 24).unwrap();
    tc.sock.maps_mut().add_source_range(1, range).unwrap();

    // 1000 flows through a conntrack table of 256 entries.
    let flows = 1000u16;
    for sport in 0..flows {
        let (rc, _) = tc.run(INGRESS, &Spec::udp(client, 20_000 + sport, node, NODE_PORT).frame());
        assert_eq!(rc, TC_ACT_OK, "flow {sport}");
    }
    assert_eq!(tc.count(PacketReason::CtCreated), u64::from(flows));
    // The same flow again finds its entry (if the LRU kept it) or is created again: never
    // counted as created while its entry is there.
    let last = Spec::udp(client, 20_000 + flows - 1, node, NODE_PORT).frame();
    tc.run(INGRESS, &last);
    assert_eq!(tc.count(PacketReason::CtCreated), u64::from(flows));

    let state = kernel::read(tc.sock.maps(), tc.bpf_dir()).unwrap();
    let fill = |name: &str| state.maps.iter().find(|m| m.name == name).cloned().unwrap();
    let ct = fill("sy_ct");
    assert_eq!(ct.max_entries, 256);
    assert!(ct.entries > 0 && ct.entries <= 256, "{ct:?}");
    let nat = fill("sy_nat");
    assert!(nat.entries >= ct.entries, "{nat:?}");
    assert_eq!(fill("sy_src_ranges").entries, 1);
    assert_eq!(state.reasons["ct_created"].packets, u64::from(flows));

    // What switchyard_conntrack_evictions_total reports (metrics_text.rs checks the formula).
    assert!(u64::from(flows) - ct.entries >= 1000 - 256);
}
