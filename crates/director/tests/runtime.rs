//! The runtime against the kernel (root): a cluster's VIPs reach the XDP program's maps, the
//! maps answer every flow like the tables, and a node leaving is carried out without leftovers.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use switchyard_bpf::director::{DirMapSizes, XdpMode};
use switchyard_director::runtime::{Runtime, RuntimeOptions};
use switchyard_director::{DirectorConfig, Encap};
use switchyard_maglev::FlowKey;
use switchyard_model::{Change, FrontendKey, ObjectKey, Protocol};

fn changes(state: &switchyard_model::ClusterState) -> Vec<Change> {
    let mut out = Vec::new();
    for (k, n) in &state.nodes {
        out.push(Change::Node(k.clone(), Some(Box::new(n.clone()))));
    }
    for (k, s) in &state.services {
        out.push(Change::Service(k.clone(), Some(Box::new(s.clone()))));
    }
    for (k, s) in &state.endpoint_slices {
        out.push(Change::EndpointSlice(k.clone(), Some(Box::new(s.clone()))));
    }
    out
}

#[test]
fn privileged_maps_follow_the_tables() {
    if !switchyard_lab::require_root("director runtime") {
        return;
    }
    std::thread::spawn(|| {
        // SAFETY: unshare affects only this thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        let status = std::process::Command::new("ip")
            .args(["link", "add", "up0", "type", "veth", "peer", "name", "up1"])
            .status()
            .unwrap();
        assert!(status.success());
        let bpf = switchyard_testing::BpfDir::new("director-runtime");
        let options = RuntimeOptions {
            bpf_dir: bpf.path().to_owned(),
            mount_bpffs: false,
            devices: vec!["up0".into()],
            mode: XdpMode::Generic,
            source4: Some("10.0.0.100".parse().unwrap()),
            source6: None,
            encap: Encap::Gue,
            gue_port: 6080,
            sizes: DirMapSizes::default(),
        };
        let mut runtime = Runtime::load(DirectorConfig::default(), options).unwrap();
        let state = cluster(
            &[lb_service("web", &["192.0.2.10"], false, Some("true"))],
            &[],
            &three_nodes(),
        );
        runtime.apply(changes(&state)).unwrap();
        let key = FrontendKey::new("192.0.2.10".parse().unwrap(), 80, Protocol::Tcp);
        let check = |runtime: &Runtime| {
            for port in 1000..1200u16 {
                let flow = FlowKey {
                    source: "198.51.100.7".parse().unwrap(),
                    destination: key.ip,
                    source_port: port,
                    destination_port: 80,
                    protocol: 6,
                };
                let hash = flow.hash(&DirectorConfig::default().seed).unwrap();
                let chosen = runtime.tables().choose(&key, hash).unwrap();
                let found = runtime.datapath().maps().lookup(&flow).unwrap().unwrap();
                assert_eq!(found.node.unwrap().1.ip(), chosen.node.address);
                assert_eq!(found.slot, Some(chosen.slot));
            }
        };
        check(&runtime);
        // node-b goes: its flows move, the maps keep up, nothing of it is left.
        let plan = runtime.apply(vec![Change::Node(ObjectKey::cluster("node-b"), None)]).unwrap();
        assert!(plan.moved_slots[&key] > 0);
        check(&runtime);
        let maps = runtime.datapath().maps();
        let nodes: Vec<_> = maps.nodes.iter().map(|e| e.unwrap().1.ip().to_string()).collect();
        assert!(!nodes.contains(&"10.0.0.2".to_string()), "{nodes:?}");
        assert_eq!(maps.tables.keys().count(), 1, "the old table is gone");
    })
    .join()
    .unwrap();
}
