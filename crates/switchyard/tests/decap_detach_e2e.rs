//! The agent's decapsulation program leaves a device dropped from `--devices` at the next start
//! (issue 16), as its other per-device programs do, and every device once no director (and no
//! DSR) is configured — without `--cleanup`. Root, in a lab node's network namespace: the
//! kernel's own list of tcx attachments is checked, not only the link pins.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::process::Command;

use switchyard_bpf::decap;
use switchyard_lab::require_root;
use switchyard_testing::e2e::{Agent, Cluster, tc_ingress_programs};

/// The programs attached at TC ingress of `device` in node1's namespace, as the kernel says.
fn tc_programs(cluster: &Cluster, device: &str) -> Vec<String> {
    tc_ingress_programs(&cluster.lab, "node1", device)
}

fn restart(cluster: &Cluster, agent: Agent, args: &[&str]) -> Agent {
    agent.stop();
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    Agent::start_with(&cluster.lab, &cluster.manifests, "node1", &args)
}

#[test]
fn decapsulation_leaves_devices_no_longer_listed_at_the_next_start() {
    if !require_root("decapsulation_leaves_devices_no_longer_listed_at_the_next_start") {
        return;
    }
    let mut cluster = Cluster::with_clients(&[("node1", &["a1"])], &[], &["--devices", "eth0"]);
    // A second device on the node: a veth pair of the test's own inside node1's namespace.
    let made = cluster
        .lab
        .run_in("node1", || {
            Command::new("ip")
                .args(["link", "add", "dx0", "type", "veth", "peer", "name", "dx1"])
                .status()
                .unwrap()
                .success()
                && Command::new("ip").args(["link", "set", "dx0", "up"]).status().unwrap().success()
        })
        .unwrap();
    assert!(made, "veth dx0/dx1 in node1");
    let bpf_dir = cluster.lab.node("node1").unwrap().bpf_dir.clone();
    let agent = cluster.agents.pop().unwrap();
    let directors = "10.99.0.1,fd00:99::1";

    // Decapsulation on both devices.
    let agent =
        restart(&cluster, agent, &["--devices", "eth0,dx0", "--director-addresses", directors]);
    assert_eq!(decap::attached_devices(&bpf_dir).unwrap(), ["dx0", "eth0"]);
    for device in ["eth0", "dx0"] {
        let listed = tc_programs(&cluster, device);
        assert_eq!(listed.first().map(String::as_str), Some("sy_decap"), "{device}: {listed:?}");
    }

    // dx0 dropped from --devices: its decapsulation goes with the per-packet programs.
    let agent = restart(&cluster, agent, &["--devices", "eth0", "--director-addresses", directors]);
    assert_eq!(decap::attached_devices(&bpf_dir).unwrap(), ["eth0"]);
    let listed = tc_programs(&cluster, "dx0");
    assert!(listed.is_empty(), "dx0 still has programs of ours: {listed:?}");
    let listed = tc_programs(&cluster, "eth0");
    assert_eq!(listed.first().map(String::as_str), Some("sy_decap"), "eth0: {listed:?}");
    assert!(agent.logged("decapsulation detached"), "{:#?}", agent.log.lock().unwrap());

    // No director addresses any more: no decapsulation anywhere (the per-packet programs stay).
    let agent = restart(&cluster, agent, &["--devices", "eth0"]);
    assert!(decap::attached_devices(&bpf_dir).unwrap().is_empty());
    let listed = tc_programs(&cluster, "eth0");
    assert!(!listed.iter().any(|p| p == "sy_decap"), "eth0 still decapsulates: {listed:?}");
    assert!(!listed.is_empty(), "eth0 lost its per-packet programs: {listed:?}");
    agent.stop();
}
