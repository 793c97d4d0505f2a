//! The per-packet state the reconciler writes besides frontends, against real pinned maps
//! (root): loadBalancerSourceRanges follow their frontends' ids through changes and restarts,
//! `FE_SOURCE_RANGES` is set exactly on frontends with prefixes, node addresses are replaced.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;
use switchyard_bpf::abi::FE_SOURCE_RANGES;
use switchyard_bpf::nodeport::{PacketDatapath, PacketMapSizes, PacketSettings};
use switchyard_dataplane::maglev_tables::MaglevTables;
use switchyard_dataplane::packet_settings::PacketState;
use switchyard_dataplane::reconciler::{Reconciler, limits_for};
use switchyard_dataplane::translate::{MapKey, Scope};
use switchyard_model::{Change, FrontendKey, NodeModel, ObjectKey, Protocol, ProxyConfig};
use switchyard_testing::BpfDir;

fn service(ranges: &[&str]) -> Change {
    let service = json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "loadBalancerSourceRanges": ranges,
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    });
    Change::Service(
        ObjectKey::new("shop", "web"),
        Some(Box::new(serde_json::from_value(service).unwrap())),
    )
}

fn slice() -> Change {
    let slice = json!({
        "metadata": {"name": "web-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "n1"}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    });
    Change::EndpointSlice(
        ObjectKey::new("shop", "web-1"),
        Some(Box::new(serde_json::from_value(slice).unwrap())),
    )
}

/// (frontend id, "prefix/len") of every entry in `sy_src_ranges`.
fn ranges(packet: &PacketDatapath) -> BTreeSet<(u32, String)> {
    packet
        .maps()
        .src_ranges
        .keys()
        .map(|k| {
            let k = k.unwrap();
            let ip = k.data().addr.to_ip(switchyard_bpf::abi::AF_INET);
            (k.data().frontend_id, format!("{ip}/{}", k.prefix_len() - 32 - 96))
        })
        .collect()
}

#[test]
fn source_ranges_follow_their_frontends_through_changes_and_restarts() {
    if !switchyard_lab::require_root(
        "source_ranges_follow_their_frontends_through_changes_and_restarts",
    ) {
        return;
    }
    let dir = BpfDir::new("packet-ranges");
    let options = dir.options();
    let mut datapath = dir.load();
    let mut packet =
        PacketDatapath::load(&options, PacketMapSizes::default(), &PacketSettings::default())
            .unwrap();
    let limits = limits_for(&options.sizes, options.maglev_table_size);
    let tables = Arc::new(MaglevTables::new(options.maglev_table_size).unwrap());
    let (mut reconciler, _) =
        Reconciler::adopt(datapath.maps_mut(), limits, tables.clone()).unwrap();
    let mut state = PacketState::adopt(datapath.maps()).unwrap();
    let mut model = NodeModel::new(ProxyConfig::new("n1"));
    model.apply(slice());
    model.apply(service(&["10.0.0.0/8", "198.51.100.0/24"]));

    let lb = FrontendKey::new("192.0.2.10".parse().unwrap(), 80, Protocol::Tcp);
    let cluster_ip = FrontendKey::new("10.96.0.10".parse().unwrap(), 80, Protocol::Tcp);
    let id = |r: &Reconciler, k: FrontendKey| {
        r.planner().frontend_id(&MapKey { frontend: k, scope: Scope::Default }).unwrap().0
    };
    let flags = |datapath: &switchyard_bpf::Datapath, k: FrontendKey| {
        let key =
            switchyard_bpf::abi::FrontendKey::new(k.ip, k.port, switchyard_bpf::abi::PROTO_TCP, 0);
        datapath.maps().frontends.get(&key, 0).unwrap().flags
    };

    let desired = model.desired().clone();
    assert!(
        state
            .prepare(
                packet.maps_mut(),
                reconciler.planner(),
                desired.frontends.iter().map(|(k, f)| (*k, Some(f)))
            )
            .is_empty()
    );
    reconciler.apply_full(datapath.maps_mut(), &desired).unwrap();
    assert!(state.finish_full(packet.maps_mut(), reconciler.planner(), &desired).is_empty());
    let lb_id = id(&reconciler, lb);
    assert_eq!(
        ranges(&packet),
        BTreeSet::from([(lb_id, "10.0.0.0/8".to_string()), (lb_id, "198.51.100.0/24".to_string())])
    );
    assert_ne!(flags(&datapath, lb) & FE_SOURCE_RANGES, 0, "LoadBalancer IP checks sources");
    assert_eq!(flags(&datapath, cluster_ip) & FE_SOURCE_RANGES, 0, "ClusterIP does not");

    // One prefix fewer: only the changed frontend is touched, under the same id.
    let diff = model.apply(service(&["10.0.0.0/8"]));
    let changes = || {
        diff.upserted
            .iter()
            .map(|(k, f)| (*k, Some(f)))
            .chain(diff.removed.iter().map(|k| (*k, None)))
    };
    assert!(state.prepare(packet.maps_mut(), reconciler.planner(), changes()).is_empty());
    reconciler.apply_diff(datapath.maps_mut(), &diff).unwrap();
    assert!(state.finish(packet.maps_mut(), reconciler.planner(), changes()).is_empty());
    assert_eq!(id(&reconciler, lb), lb_id);
    assert_eq!(ranges(&packet), BTreeSet::from([(lb_id, "10.0.0.0/8".to_string())]));

    // A restart with debris of an earlier agent: adoption keeps what is wanted, drops the rest.
    let stale = switchyard_bpf::nodeport_abi::SrcRangeKey::new(
        lb_id + 500,
        "203.0.113.0".parse().unwrap(),
        24,
    )
    .unwrap();
    packet.maps_mut().add_source_range(stale.frontend_id, stale).unwrap();
    drop((packet, datapath, reconciler, state));
    let mut datapath = dir.load();
    let mut packet =
        PacketDatapath::load(&options, PacketMapSizes::default(), &PacketSettings::default())
            .unwrap();
    let (mut reconciler, _) = Reconciler::adopt(datapath.maps_mut(), limits, tables).unwrap();
    let mut state = PacketState::adopt(datapath.maps()).unwrap();
    assert_eq!(ranges(&packet).len(), 2);
    let desired = model.desired().clone();
    reconciler.apply_full(datapath.maps_mut(), &desired).unwrap();
    assert!(state.finish_full(packet.maps_mut(), reconciler.planner(), &desired).is_empty());
    assert_eq!(ranges(&packet), BTreeSet::from([(lb_id, "10.0.0.0/8".to_string())]));

    // No ranges any more: the flag goes with the plan, then the prefixes.
    let diff = model.apply(service(&[]));
    reconciler.apply_diff(datapath.maps_mut(), &diff).unwrap();
    let changes = diff.upserted.iter().map(|(k, f)| (*k, Some(f)));
    assert!(state.finish(packet.maps_mut(), reconciler.planner(), changes).is_empty());
    assert!(ranges(&packet).is_empty());
    assert_eq!(flags(&datapath, lb) & FE_SOURCE_RANGES, 0);

    // Node addresses: replaced as a set.
    let addrs = |list: &[&str]| list.iter().map(|a| a.parse().unwrap()).collect::<Vec<IpAddr>>();
    assert!(
        state.set_node_addresses(datapath.maps_mut(), &addrs(&["10.100.1.2", "fd00::2"])).unwrap()
    );
    assert!(
        !state.set_node_addresses(datapath.maps_mut(), &addrs(&["fd00::2", "10.100.1.2"])).unwrap()
    );
    assert!(state.set_node_addresses(datapath.maps_mut(), &addrs(&["10.100.1.3"])).unwrap());
    let pinned: Vec<IpAddr> = datapath
        .maps()
        .node_addrs
        .keys()
        .map(|k| {
            let k = k.unwrap();
            k.addr.to_ip(k.family)
        })
        .collect();
    assert_eq!(pinned, addrs(&["10.100.1.3"]));
    drop(packet);
    switchyard_bpf::nodeport::cleanup(dir.path()).unwrap();
}
