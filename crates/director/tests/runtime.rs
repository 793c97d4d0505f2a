//! The runtime against the kernel (root): a cluster's VIPs reach the XDP program's maps, the
//! maps answer every flow like the tables, and a node leaving is carried out without leftovers.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use switchyard_bpf::director::{DirMapSizes, XdpMode};
use switchyard_director::runtime::{Runtime, RuntimeOptions};
use switchyard_director::{DirectorConfig, Encap};
use switchyard_maglev::FlowKey;
use switchyard_model::synthetic::changes;
use switchyard_model::{Change, FrontendKey, ObjectKey, Protocol};

/// A private network namespace with the uplink `up0` (call on a thread of its own).
fn enter_netns_with_uplink() {
    switchyard_testing::nodeport_fixture::enter_private_netns();
    let args = ["link", "add", "up0", "type", "veth", "peer", "name", "up1"];
    assert!(std::process::Command::new("ip").args(args).status().unwrap().success());
}

fn options_in(bpf: &switchyard_testing::BpfDir) -> RuntimeOptions {
    RuntimeOptions {
        bpf_dir: bpf.path().to_owned(),
        mount_bpffs: false,
        devices: vec!["up0".into()],
        mode: XdpMode::Generic,
        source4: Some("10.0.0.100".parse().unwrap()),
        source6: None,
        encap: Encap::Gue,
        gue_port: 6080,
        sizes: DirMapSizes::default(),
    }
}

/// The maps send 200 flows to VIP `key` where the tables say (node and slot).
fn maps_answer_like_the_tables(runtime: &Runtime, key: &FrontendKey) {
    for port in 1000..1200u16 {
        let flow = FlowKey {
            source: "198.51.100.7".parse().unwrap(),
            destination: key.ip,
            source_port: port,
            destination_port: key.port,
            protocol: 6,
        };
        let hash = flow.hash(&DirectorConfig::default().seed).unwrap();
        let chosen = runtime.tables().choose(key, hash).unwrap();
        let found = runtime.datapath().maps().lookup(&flow).unwrap().unwrap();
        assert_eq!(found.node.unwrap().1.ip(), chosen.node.address);
        assert_eq!(found.slot, Some(chosen.slot));
    }
}

#[test]
fn privileged_maps_follow_the_tables() {
    if !switchyard_lab::require_root("director runtime") {
        return;
    }
    std::thread::spawn(|| {
        enter_netns_with_uplink();
        let bpf = switchyard_testing::BpfDir::new("director-runtime");
        let mut runtime = Runtime::load(DirectorConfig::default(), options_in(&bpf)).unwrap();
        let state = cluster(
            &[lb_service("web", &["192.0.2.10"], false, Some("true"))],
            &[],
            &three_nodes(),
        );
        runtime.apply(changes(&state)).unwrap();
        let key = FrontendKey::new("192.0.2.10".parse().unwrap(), 80, Protocol::Tcp);
        let check = |runtime: &Runtime| maps_answer_like_the_tables(runtime, &key);
        check(&runtime);
        // node-b goes: its flows move, the maps keep up; node-b stays only as the previous
        // node of its old slots (the second chance) and goes with the next change.
        let plan = runtime.apply(vec![Change::Node(ObjectKey::cluster("node-b"), None)]).unwrap();
        assert!(plan.moved_slots[&key] > 0);
        check(&runtime);
        let node_ips = |runtime: &Runtime| -> Vec<String> {
            let maps = runtime.datapath().maps();
            maps.node_entries().unwrap().values().map(|n| n.ip().to_string()).collect()
        };
        let maps = runtime.datapath().maps();
        assert!(node_ips(&runtime).contains(&"10.0.0.2".to_string()), "a previous node");
        // The old table is gone; the TCP VIP's new table names node-b, the UDP VIP's does not
        // (a deleted node may be dead: tables.rs, a_udp_vip_names_only_previous_nodes_that_are_alive),
        // so they are two tables now, each with previous nodes.
        assert_eq!(maps.table_ids().unwrap().len(), 2, "the old table is gone");
        assert_eq!(maps.prev_table_ids().unwrap().len(), 2, "the new tables name previous nodes");
        let _ = runtime.apply(vec![Change::Node(ObjectKey::cluster("node-c"), None)]).unwrap();
        check(&runtime);
        let nodes = node_ips(&runtime);
        assert!(!nodes.contains(&"10.0.0.2".to_string()), "nothing of node-b is left: {nodes:?}");
        assert!(nodes.contains(&"10.0.0.3".to_string()), "node-c, a previous node: {nodes:?}");
        let maps = runtime.datapath().maps();
        assert_eq!(maps.table_ids().unwrap().len(), 2, "the old tables are gone (TCP, UDP)");
        assert_eq!(maps.prev_table_ids().unwrap().len(), 2, "and their previous nodes");
    })
    .join()
    .unwrap();
}

/// The XDP program id attached to `device` (from `ip -j link`).
fn xdp_program(device: &str) -> u64 {
    let out =
        std::process::Command::new("ip").args(["-j", "link", "show", device]).output().unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    links[0]["xdp"]["prog"]["id"].as_u64().unwrap_or(0)
}

#[test]
fn privileged_a_restarted_director_takes_over_its_pinned_state() {
    if !switchyard_lab::require_root("director restart") {
        return;
    }
    std::thread::spawn(|| {
        enter_netns_with_uplink();
        let bpf = switchyard_testing::BpfDir::new("director-restart");
        let options = options_in(&bpf);
        let services = [
            lb_service("web", &["192.0.2.10"], false, Some("true")),
            lb_service("api", &["192.0.2.11"], false, Some("true")),
        ];
        let state = cluster(&services, &[], &three_nodes());
        let ids = |runtime: &Runtime| {
            let maps = runtime.datapath().maps();
            let mut vips: Vec<(String, u32)> = maps
                .vip_entries()
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.addr.to_ip(k.family).to_string(), v.id))
                .collect();
            vips.sort();
            let mut nodes: Vec<(String, u32)> = maps
                .node_entries()
                .unwrap()
                .into_iter()
                .map(|(id, n)| (n.ip().to_string(), id))
                .collect();
            nodes.sort();
            (vips, nodes)
        };
        let choices = |runtime: &Runtime| -> Vec<std::net::IpAddr> {
            (1000..1200u16)
                .map(|port| {
                    let flow = FlowKey {
                        source: "198.51.100.7".parse().unwrap(),
                        destination: "192.0.2.10".parse().unwrap(),
                        source_port: port,
                        destination_port: 80,
                        protocol: 6,
                    };
                    runtime.datapath().maps().lookup(&flow).unwrap().unwrap().node.unwrap().1.ip()
                })
                .collect()
        };

        let mut first = Runtime::load(DirectorConfig::default(), options.clone()).unwrap();
        first.apply(changes(&state)).unwrap();
        let program_before = xdp_program("up0");
        let (ids_before, choices_before) = (ids(&first), choices(&first));
        let tables_before: Vec<u32> = first.datapath().maps().table_ids().unwrap();
        assert_ne!(program_before, 0, "attached");
        // The process ends: its program, maps and link stay pinned (traffic keeps flowing).
        drop(first);
        assert_eq!(xdp_program("up0"), program_before, "still attached after the exit");

        let mut second = Runtime::load(DirectorConfig::default(), options).unwrap();
        second.apply(changes(&state)).unwrap();
        let program_after = xdp_program("up0");
        assert_ne!(program_after, 0, "attached");
        assert_ne!(program_after, program_before, "the new program took over the link");
        assert_eq!(ids(&second), ids_before, "VIP and node ids adopted (their counters continue)");
        assert_eq!(choices(&second), choices_before, "every flow keeps its node");
        let tables_after: Vec<u32> = second.datapath().maps().table_ids().unwrap();
        // Same nodes: the pinned tables are taken over as they are (same ids, not rewritten).
        assert_eq!(tables_after, tables_before, "pinned tables taken over");
        let pins = std::fs::read_dir(bpf.path().join("links")).unwrap().count();
        assert_eq!(pins, 1, "one link pin");
    })
    .join()
    .unwrap();
}

/// Issue 17 (f): a director that restarts reads back the tables it pinned (`runtime::adopt`:
/// nodes with names and weights, slots, previous nodes), so it keeps naming the previous nodes
/// of a change it saw before it stopped, and a change made while no process ran gets the
/// pinned table's choices as its previous nodes — as a director that ran throughout names them.
#[test]
fn privileged_a_restarted_director_names_the_previous_nodes_it_pinned() {
    if !switchyard_lab::require_root("director restart, previous nodes") {
        return;
    }
    std::thread::spawn(|| {
        enter_netns_with_uplink();
        let services = [lb_service("web", &["192.0.2.10"], false, Some("true"))];
        let all = cluster(&services, &[], &three_nodes());
        let without = |gone: &[&str]| {
            let nodes: Vec<_> = three_nodes()
                .into_iter()
                .filter(|n| !gone.contains(&n["metadata"]["name"].as_str().unwrap()))
                .collect();
            cluster(&services, &[], &nodes)
        };
        let key = FrontendKey::new("192.0.2.10".parse().unwrap(), 80, Protocol::Tcp);
        let named = |runtime: &Runtime| -> Vec<(String, Option<String>)> {
            (0..2_000u64)
                .map(|h| runtime.tables().choose(&key, h.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .map(|c| c.unwrap())
                .map(|c| (c.node.address.to_string(), c.previous.map(|p| p.1.address.to_string())))
                .collect()
        };
        // Ran throughout (in a namespace of its own: one XDP link per device): all three
        // nodes, then node-b deleted, then node-c too.
        let (after_b, after_c) = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter_netns_with_uplink();
                    let bpf = switchyard_testing::BpfDir::new("director-restart-prev-a");
                    let mut throughout =
                        Runtime::load(DirectorConfig::default(), options_in(&bpf)).unwrap();
                    throughout.apply(changes(&all)).unwrap();
                    throughout
                        .apply(vec![Change::Node(ObjectKey::cluster("node-b"), None)])
                        .unwrap();
                    let after_b = named(&throughout);
                    throughout
                        .apply(vec![Change::Node(ObjectKey::cluster("node-c"), None)])
                        .unwrap();
                    (after_b, named(&throughout))
                })
                .join()
                .unwrap()
        });
        assert!(after_b.iter().any(|(_, p)| p.as_deref() == Some("10.0.0.2")));

        let bpf = switchyard_testing::BpfDir::new("director-restart-prev-b");
        let mut first = Runtime::load(DirectorConfig::default(), options_in(&bpf)).unwrap();
        first.apply(changes(&all)).unwrap();
        first.apply(vec![Change::Node(ObjectKey::cluster("node-b"), None)]).unwrap();
        let tables = first.datapath().maps().table_ids().unwrap();
        let (built, expiry) = (first.tables().built_times(), first.previous_next_expiry().unwrap());
        assert!(!built.is_empty());
        drop(first);
        std::thread::sleep(std::time::Duration::from_secs(1));
        // Restarted after node-b's deletion: the same previous nodes, from the same tables,
        // built when the first run built them (pinned): they expire when they would have.
        let mut second = Runtime::load(DirectorConfig::default(), options_in(&bpf)).unwrap();
        second.apply(changes(&without(&["node-b"]))).unwrap();
        assert_eq!(named(&second), after_b, "previous nodes kept across the restart");
        let ms = |t: &std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
        };
        let built_ms = |b: &std::collections::BTreeMap<u32, std::time::SystemTime>| {
            b.iter().map(|(id, t)| (*id, ms(t))).collect::<Vec<_>>()
        };
        assert_eq!(
            built_ms(&second.tables().built_times()),
            built_ms(&built),
            "build times pinned"
        );
        let again = second.previous_next_expiry().unwrap();
        let apart = again.max(expiry) - again.min(expiry);
        assert!(
            apart < std::time::Duration::from_millis(200),
            "expiry moved by {apart:?} (restart: 1 s)"
        );
        assert_eq!(second.datapath().maps().table_ids().unwrap(), tables);
        maps_answer_like_the_tables(&second, &key);
        drop(second);
        // node-c deleted while no process runs: the restart names what the pinned tables chose.
        let mut third = Runtime::load(DirectorConfig::default(), options_in(&bpf)).unwrap();
        third.apply(changes(&without(&["node-b", "node-c"]))).unwrap();
        assert_eq!(named(&third), after_c, "previous nodes of a change made while down");
        assert!(after_c.iter().any(|(_, p)| p.as_deref() == Some("10.0.0.3")));
        maps_answer_like_the_tables(&third, &key);
        let prev = |runtime: &Runtime| {
            let maps = runtime.datapath().maps();
            (1000..1200u16)
                .filter(|port| {
                    let flow = FlowKey {
                        source: "198.51.100.7".parse().unwrap(),
                        destination: key.ip,
                        source_port: *port,
                        destination_port: 80,
                        protocol: 6,
                    };
                    let found = maps.lookup(&flow).unwrap().unwrap();
                    maps.prev_node(found.vip.table_id, found.slot.unwrap()).unwrap() != 0
                })
                .count()
        };
        assert!(prev(&third) > 0, "the maps name previous nodes");
    })
    .join()
    .unwrap();
}

/// Ids are small and reused (the program's counters and node entries are arrays indexed by
/// them): a VIP that takes the id of one removed earlier starts with zero counters.
#[test]
fn privileged_a_reused_vip_id_starts_with_zero_counters() {
    if !switchyard_lab::require_root("director id reuse") {
        return;
    }
    std::thread::spawn(|| {
        enter_netns_with_uplink();
        let bpf = switchyard_testing::BpfDir::new("director-id-reuse");
        let mut runtime = Runtime::load(DirectorConfig::default(), options_in(&bpf)).unwrap();
        let web = lb_service("web", &["192.0.2.10"], false, Some("true"));
        let api = lb_service("api", &["192.0.2.11"], false, Some("true"));
        let db = lb_service("db", &["192.0.2.12"], false, Some("true"));
        runtime.apply(changes(&cluster(&[web.clone(), api], &[], &three_nodes()))).unwrap();
        let id_of = |runtime: &Runtime, ip: &str| {
            let key = FrontendKey::new(ip.parse().unwrap(), 80, Protocol::Tcp);
            runtime.tables().vips().find(|(k, _, _)| **k == key).map(|(_, id, _)| id).unwrap()
        };
        let api_id = id_of(&runtime, "192.0.2.11");
        // The program counted traffic for api: 5 packets on each CPU.
        let cpus = aya::util::nr_cpus().unwrap();
        let counted = switchyard_bpf::director::DirCounter { packets: 5, bytes: 500 };
        let values = aya::maps::PerCpuValues::try_from(vec![counted; cpus]).unwrap();
        let mut pinned = switchyard_bpf::director::DirMaps::open_pinned(bpf.path()).unwrap();
        pinned.vip_counters.set(api_id, values, 0).unwrap();
        assert_eq!(runtime.datapath().maps().vip_counter(api_id).unwrap().packets, 5 * cpus as u64);
        // api goes; then db comes and takes the freed id.
        runtime.apply(vec![Change::Service(ObjectKey::new("default", "api"), None)]).unwrap();
        let state = cluster(&[web, db], &[], &three_nodes());
        runtime.apply(changes(&state)).unwrap();
        assert_eq!(id_of(&runtime, "192.0.2.12"), api_id, "db reuses api's id");
        assert_eq!(
            runtime.datapath().maps().vip_counter(api_id).unwrap(),
            Default::default(),
            "db's counters start at zero"
        );
    })
    .join()
    .unwrap();
}

/// Pins of an older layout (the hash maps of earlier builds) while the program of an earlier
/// run is attached: the new director recreates the whole map set, programs it from the
/// objects and takes over the link; the old program forwards with its own maps meanwhile.
#[test]
fn privileged_pins_of_an_older_layout_are_recreated() {
    if !switchyard_lab::require_root("director pin migration") {
        return;
    }
    std::thread::spawn(|| {
        enter_netns_with_uplink();
        let bpf = switchyard_testing::BpfDir::new("director-migrate");
        let state = cluster(
            &[lb_service("web", &["192.0.2.10"], false, Some("true"))],
            &[],
            &three_nodes(),
        );
        let mut first = Runtime::load(DirectorConfig::default(), options_in(&bpf)).unwrap();
        first.apply(changes(&state)).unwrap();
        let program_before = xdp_program("up0");
        assert_ne!(program_before, 0, "attached");
        drop(first);
        // An earlier build pinned node entries and per-id counters as hash maps.
        let nodes = bpf.path().join(switchyard_bpf::director::names::NODES);
        std::fs::remove_file(&nodes).unwrap();
        let old: aya::maps::HashMap<_, u32, switchyard_bpf::director::DirNode> =
            aya::maps::HashMap::create(8192, 1).unwrap();
        old.pin(&nodes).unwrap();
        let why =
            switchyard_bpf::director_ids::incompatible_pin(bpf.path(), DirMapSizes::default());
        assert!(why.unwrap().unwrap().contains("sy_dir_nodes"), "the hash pin is seen");

        let mut second = Runtime::load(DirectorConfig::default(), options_in(&bpf)).unwrap();
        assert!(second.datapath().recreated_pins(), "the map set was recreated");
        second.apply(changes(&state)).unwrap();
        let program_after = xdp_program("up0");
        assert_ne!(program_after, 0, "attached");
        assert_ne!(program_after, program_before, "the new program took over the link");
        let why =
            switchyard_bpf::director_ids::incompatible_pin(bpf.path(), DirMapSizes::default());
        assert_eq!(why.unwrap(), None, "every pin has this build's layout");
        let key = FrontendKey::new("192.0.2.10".parse().unwrap(), 80, Protocol::Tcp);
        maps_answer_like_the_tables(&second, &key);
        let pins = std::fs::read_dir(bpf.path().join("links")).unwrap().count();
        assert_eq!(pins, 1, "one link pin");
        // A third start finds this build's layout: nothing is recreated, ids are adopted.
        drop(second);
        let third = Runtime::load(DirectorConfig::default(), options_in(&bpf)).unwrap();
        assert!(!third.datapath().recreated_pins(), "nothing recreated");
    })
    .join()
    .unwrap();
}
