//! `switchyard director --kubeconfig` end to end (root): the director reads Services,
//! EndpointSlices and Nodes from the fake API server (crates/testing's `fake_api`: real HTTP
//! list/watch) instead of a manifest directory. The fake listens on 127.0.0.1 *inside the
//! director's network namespace* (the lab's namespaces cannot reach the host's loopback); the
//! nodes' agents read the same Service from manifests. Checked: the director programs the VIP
//! and carries real traffic to the nodes its maps name; changes served by the fake reach the
//! maps (a node added, a node drained, a Service deleted); malformed objects (an opt-in
//! annotation that is neither "true" nor "false", a node weight that is no number) are
//! reported by name while everything else is served, and served once fixed; an object that
//! cannot be decoded at all is named and does not stop the rest. The director runs as
//! deploy/director.yaml runs it: with only its DaemonSet's capabilities (its health probes then
//! work) and its Node's name (its previous-node record is written there).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use serde_json::{Value, json};
use switchyard_director::previous::PREVIOUS_ANNOTATION;
use switchyard_lab::{require_root, wait_until};
use switchyard_testing::deploy::daemon_set_capabilities;
use switchyard_testing::director_lab::{self, Director, flow, route_vips, vip_service};
use switchyard_testing::e2e::{CONVERGE, Cluster, State, at, set, topology};
use switchyard_testing::fake_api::{FakeApi, Resource, yaml_objects};

const TCP: u8 = 6;
const WEB: [&str; 2] = ["10.96.70.1", "fd00:96::70:1"];
const ODD: [&str; 2] = ["10.96.72.1", "fd00:96::72:1"];

/// The nodes the director's maps name for 300 TCP flows from `ext` to `vip`:80 (`none` for a
/// flow the maps have no node for, `no VIP` when the VIP is not in the maps).
fn nodes_in_maps(cluster: &Cluster, director: &Director, vip: &str) -> BTreeSet<String> {
    let vip: IpAddr = vip.parse().unwrap();
    let client = cluster.client_ip("ext", vip.is_ipv6());
    let maps = director.maps(&cluster.lab);
    (0..300u16)
        .map(|i| {
            let f = flow(SocketAddr::new(client, 20_000 + i), at(vip, 80), TCP);
            match maps.lookup(&f).unwrap() {
                None => "no VIP".to_string(),
                Some(l) => l
                    .node
                    .and_then(|(_, n)| director_lab::node_named(&cluster.lab, n.ip()))
                    .unwrap_or_else(|| "none".to_string()),
            }
        })
        .collect()
}

fn wait_for_nodes(cluster: &Cluster, director: &Director, vip: &str, want: &[&str]) {
    let want = set(want);
    let reached = wait_until(CONVERGE, || nodes_in_maps(cluster, director, vip) == want);
    assert!(
        reached,
        "{vip}: the maps name {:?}, expected {want:?}",
        nodes_in_maps(cluster, director, vip)
    );
}

/// The lab's Node object `name` (as `Cluster::nodes_yaml` writes it) with `annotations`.
fn node(cluster: &Cluster, name: &str, annotations: Value) -> Value {
    let mut node = yaml_objects(&cluster.nodes_yaml())
        .into_iter()
        .find(|n| n["metadata"]["name"] == name)
        .unwrap();
    node["metadata"]["annotations"] = annotations;
    node
}

/// [`spread`] through the one director to `vip`:80.
fn spread(
    cluster: &Cluster,
    director: &Director,
    vip: &str,
    count: usize,
) -> std::collections::BTreeMap<String, usize> {
    let target = at(vip.parse().unwrap(), 80);
    director_lab::spread(cluster, std::slice::from_ref(director), target, count)
}

/// The states (`up`, `down`, ...) of the director's health targets, as `switchyard status`
/// reports them.
fn health_states(cluster: &Cluster) -> BTreeSet<String> {
    let dir = &cluster.lab.director("dir1").unwrap().bpf_dir;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["status", "-o", "json", "--bpf-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    let targets = status["health"].as_array().cloned().unwrap_or_default();
    targets.iter().map(|t| t["state"].as_str().unwrap_or("?").to_owned()).collect()
}

fn logged(director: &Director, texts: &[&str]) -> bool {
    director.log.lock().unwrap().iter().any(|line| texts.iter().all(|t| line.contains(t)))
}

#[test]
fn a_director_reading_the_api_server_programs_vips_follows_changes_and_names_bad_objects() {
    if !require_root("a_director_reading_the_api_server_programs_vips") {
        return;
    }
    let nodes: [(&str, &[&str]); 3] = [("node1", &["a1"]), ("node2", &["b1"]), ("node3", &["c1"])];
    let cluster =
        Cluster::with_topology(&topology(&nodes, &["ext"], &["dir1"]), director_lab::agent_args);
    let all: Vec<(&str, State)> = ["a1", "b1", "c1"].map(|p| (p, State::Ready)).to_vec();
    let web = vip_service(&cluster, "web", "", WEB, &all);
    // The agents serve the VIP from manifests; the director sees only the fake API server.
    cluster.apply_and_wait("vips.yaml", &web);
    let odd = vip_service(&cluster, "odd", "", ODD, &all);
    let odd_bad =
        odd.replace("switchyard.io/director: \"true\"", "switchyard.io/director: \"yes\"");
    assert_ne!(odd, odd_bad);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener =
        cluster.lab.run_in("dir1", || std::net::TcpListener::bind("127.0.0.1:0")).unwrap().unwrap();
    let api = runtime.block_on(FakeApi::start_on(listener));
    api.put_yaml(&web);
    api.put_yaml(&odd_bad);
    // An object no client can decode (a real API server validates Services, so only a version
    // skew could serve one): the watch skips it, names it in the log and goes on.
    api.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "broken", "namespace": "e2e",
                     "annotations": {"switchyard.io/director": "true"}},
        "spec": {"type": "LoadBalancer", "ports": "eighty"},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.96.73.1"}]}}
    }));
    // node3 is not there yet; node1's weight annotation is no number (weight 1 is used).
    api.put(node(&cluster, "node1", json!({"switchyard.io/director-weight": "heavy"})));
    api.put(node(&cluster, "node2", json!({})));
    // The director's own Node (excluded from the VIPs' nodes by its label), where it
    // publishes its previous-node record.
    api.put_yaml(&director_lab::director_nodes_yaml(&cluster.lab));
    let kubeconfig = cluster.manifests.join("dir1-kubeconfig");
    api.write_kubeconfig(&kubeconfig);

    // As deploy/director.yaml runs it: only the capabilities its DaemonSet adds, its Node's
    // name, health probes through the encapsulation (their socket mark needs NET_ADMIN).
    let capabilities = daemon_set_capabilities("director.yaml", "switchyard-director", "director");
    let director = Director::start_with_capabilities(
        &cluster,
        "dir1",
        &capabilities,
        &["--kubeconfig", &kubeconfig.display().to_string()],
        &["--node-name", "dir1"],
    );
    route_vips(&cluster, WEB, &["dir1"]);

    // 1. Programmed from the API server: both nodes, real traffic carried as the maps say; the
    //    malformed objects reported by name, the bad Service not served, the node serving.
    for vip in WEB {
        wait_for_nodes(&cluster, &director, vip, &["node1", "node2"]);
        let per_node = spread(&cluster, &director, vip, 20);
        eprintln!("director api: {vip} with node1, node2: flows per node {per_node:?}");
        assert_eq!(per_node.keys().cloned().collect::<BTreeSet<_>>(), set(&["node1", "node2"]));
    }
    assert!(
        logged(&director, &["e2e/odd", "switchyard.io/director", "\"yes\""]),
        "the Service with a bad annotation is not named: {:#?}",
        director.log
    );
    assert!(
        logged(&director, &["node1", "switchyard.io/director-weight", "\"heavy\""]),
        "the Node with a bad weight is not named: {:#?}",
        director.log
    );
    assert!(
        logged(&director, &["cannot be decoded", "e2e/broken", "Service", "\"eighty\""]),
        "the Service that cannot be decoded is not named: {:#?}",
        director.log
    );
    for vip in ODD.into_iter().chain(["10.96.73.1"]) {
        assert_eq!(nodes_in_maps(&cluster, &director, vip), set(&["no VIP"]), "{vip}");
    }
    // With those capabilities the probes work: every node up.
    let healthy = wait_until(CONVERGE, || health_states(&cluster) == set(&["up"]));
    assert!(healthy, "node health with {capabilities}: {:?}", health_states(&cluster));

    // 2. A node added in the API server reaches the tables and carries traffic.
    api.put(node(&cluster, "node3", json!({})));
    for vip in WEB {
        wait_for_nodes(&cluster, &director, vip, &["node1", "node2", "node3"]);
        let per_node = spread(&cluster, &director, vip, 30);
        eprintln!("director api: {vip} after node3 joined: flows per node {per_node:?}");
        assert!(per_node.contains_key("node3"), "{vip}: {per_node:?}");
    }
    // Slots moved to node3 name their previous nodes: the record is written on Node dir1.
    let published = wait_until(CONVERGE, || {
        let node = api.get(Resource::Nodes, "", "dir1");
        node.is_some_and(|n| n["metadata"]["annotations"][PREVIOUS_ANNOTATION].is_string())
    });
    assert!(published, "no previous-node record on Node dir1: {:#?}", director.log);

    // 3. A node drained in the API server leaves the tables; new flows avoid it.
    api.put(node(&cluster, "node2", json!({"switchyard.io/drain": "true"})));
    for vip in WEB {
        wait_for_nodes(&cluster, &director, vip, &["node1", "node3"]);
        let per_node = spread(&cluster, &director, vip, 20);
        eprintln!("director api: {vip} with node2 drained: flows per node {per_node:?}");
        assert!(!per_node.contains_key("node2"), "{vip}: {per_node:?}");
    }

    // 4. The malformed Service fixed: served, beside the rest.
    api.put_yaml(&odd);
    for vip in ODD {
        wait_for_nodes(&cluster, &director, vip, &["node1", "node3"]);
    }

    // 5. A Service deleted in the API server leaves the maps; the other stays.
    api.delete(Resource::Services, "e2e", "web");
    for vip in WEB {
        wait_for_nodes(&cluster, &director, vip, &["no VIP"]);
    }
    for vip in ODD {
        assert_eq!(nodes_in_maps(&cluster, &director, vip), set(&["node1", "node3"]), "{vip}");
    }
    // The director read everything over HTTP list/watch.
    let requests = api.requests();
    for resource in [Resource::Services, Resource::EndpointSlices, Resource::Nodes] {
        assert!(
            requests.iter().any(|r| r.resource == Some(resource) && r.is_watch()),
            "no watch of {resource:?}"
        );
    }
    drop(director);
    drop(runtime);
}
