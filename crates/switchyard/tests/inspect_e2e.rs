//! `switchyard services DIR --live` and `switchyard backends DIR` against a running agent in the
//! lab (root): they agree with the manifests while the agent is in charge, and name the
//! difference after the test removes a frontend entry and adds a backend behind its back.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness")]

use std::net::IpAddr;
use std::process::Command;

use switchyard_bpf::Maps;
use switchyard_bpf::abi::{Backend, FrontendKey, PROTO_UDP, SCOPE_DEFAULT};
use switchyard_lab::require_root;
use switchyard_testing::e2e::*;

fn run(args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(&*BIN).args(args).output().unwrap();
    let code = out.status.code().unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (code, json)
}

#[test]
fn services_live_and_backends_show_differences_from_the_manifests() {
    if !require_root("services_live_and_backends_show_differences_from_the_manifests") {
        return;
    }
    let cluster = Cluster::up();
    let ip: IpAddr = "10.96.7.10".parse().unwrap();
    let endpoints = [("a1", State::Ready), ("b1", State::Ready)];
    cluster.apply_and_wait("web.yaml", &cluster.service("web", &[ip], 80, "", &endpoints));
    let bpf_dir = cluster.lab.node("node1").unwrap().bpf_dir.clone();
    let dir = cluster.manifests.to_str().unwrap().to_owned();
    let bpf = bpf_dir.to_str().unwrap().to_owned();
    let live =
        ["services", &dir, "--node-name", "node1", "--live", "--bpf-dir", &bpf, "-o", "json"];
    let backends = ["backends", &dir, "--node-name", "node1", "--bpf-dir", &bpf, "-o", "json"];

    let (code, rows) = run(&live);
    assert_eq!(code, 0, "{rows:#}");
    let all = rows.clone();
    let rows = rows.as_array().unwrap();
    assert!(rows.len() >= 2, "TCP and UDP frontends of web: {all:#}");
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{all:#}");
    assert!(rows.iter().any(|r| r["service"] == "e2e/web"), "{all:#}");
    let (code, doc) = run(&backends);
    assert_eq!(code, 0, "{doc:#}");
    assert!(doc["missing"].as_array().unwrap().is_empty(), "{doc:#}");
    assert!(doc["backends"].as_array().unwrap().iter().all(|b| b["desired"] == true), "{doc:#}");
    // Without DIR, the same answers from the agent's own desired state (its `/desired`).
    let socket = Agent::api_socket(&cluster.lab, "node1");
    let socket = socket.to_str().unwrap().to_owned();
    let live_api = ["services", "--live", "--api-socket", &socket, "--bpf-dir", &bpf, "-o", "json"];
    let backends_api = ["backends", "--api-socket", &socket, "--bpf-dir", &bpf, "-o", "json"];
    assert_eq!(run(&live_api), (0, all.clone()));
    assert_eq!(run(&backends_api), (0, doc.clone()));

    // explain from a pod, run in its namespace, names the Service from the manifests.
    let pod_ip = cluster.pod_ip("a1", false).to_string();
    let mut command = Command::new(&*BIN);
    command
        .args(["explain", &pod_ip, "10.96.7.10:80/tcp", "--from", "inside", "-o", "json"])
        .args(["--manifests", &dir, "--node-name", "node1", "--bpf-dir", &bpf]);
    let out = cluster.lab.output_in("a1", command).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["frontend"]["service"], "e2e/web (ClusterIP port tcp)", "{e:#}");
    assert_eq!(e["decision"]["method"], "random", "{e:#}");
    assert_eq!(e["candidates"].as_array().unwrap().len(), 2, "{e:#}");

    // Behind the agent's back: the UDP frontend goes, an unknown backend appears.
    let mut maps = Maps::open_pinned(&bpf_dir).unwrap();
    maps.frontends.remove(&FrontendKey::new(ip, 80, PROTO_UDP, SCOPE_DEFAULT)).unwrap();
    let stray: IpAddr = "10.250.0.1".parse().unwrap();
    maps.backends.insert(60_000, Backend::new(stray, 9, 0), 0).unwrap();

    let (code, rows) = run(&live);
    assert_eq!(code, 3, "{rows:#}");
    let missing: Vec<_> = rows.as_array().unwrap().iter().filter(|r| r["status"] != "ok").collect();
    assert_eq!(missing.len(), 1, "{rows:#}");
    assert_eq!(missing[0]["status"], "missing");
    assert_eq!(missing[0]["frontend"], "10.96.7.10:80/udp");
    assert_eq!(missing[0]["service"], "e2e/web");
    let (code, doc) = run(&backends);
    assert_eq!(code, 3, "{doc:#}");
    let undesired: Vec<_> =
        doc["backends"].as_array().unwrap().iter().filter(|b| b["desired"] == false).collect();
    assert_eq!(undesired.len(), 1, "{doc:#}");
    assert_eq!(undesired[0]["address"], "10.250.0.1:9");
    assert_eq!(run(&live_api), (3, rows));
    assert_eq!(run(&backends_api), (3, doc));
    cluster.assert_nothing_left_the_lab();
}

/// A Service beside the broken ones, programmed although its neighbours are not valid.
const GOOD: &str = "apiVersion: v1
kind: Service
metadata: {name: good, namespace: fine}
spec:
  clusterIP: 10.96.200.10
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: good-1
  namespace: fine
  labels: {kubernetes.io/service-name: good}
addressType: IPv4
endpoints: [{addresses: [10.244.0.5], conditions: {ready: true}}]
ports: [{name: http, port: 8080, protocol: TCP}]
";

/// `--log-format json`: every line the agent logs is a JSON object, the warning about a
/// broken manifest names where it is (file, line, document), an object the API server would
/// refuse (testdata/broken/addresses.yaml) is warned about naming the object and the field, and
/// the valid Service beside them is programmed.
#[test]
fn json_logs_name_the_object_in_a_warning() {
    if !require_root("json_logs_name_the_object_in_a_warning") {
        return;
    }
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let topology =
        switchyard_lab::Topology::from_yaml("nodes:\n  - name: node1\n    pods: []\n", "inline")
            .unwrap();
    let lab = switchyard_lab::Lab::up(&topology).unwrap();
    let node = lab.node("node1").unwrap().clone();
    let manifests = tempfile::tempdir().unwrap();
    let api = tempfile::tempdir().unwrap();
    for file in ["syntax.yaml", "addresses.yaml"] {
        std::fs::copy(format!("../../testdata/broken/{file}"), manifests.path().join(file))
            .unwrap();
    }
    std::fs::write(manifests.path().join("good.yaml"), GOOD).unwrap();
    let mut command = Command::new(&*BIN);
    command
        .args(["--log-format", "json", "agent", "--manifests"])
        .arg(manifests.path())
        .args(["--node-name", "node1", "--cgroup"])
        .arg(&node.cgroup)
        .arg("--bpf-dir")
        .arg(&node.bpf_dir)
        .arg("--api-socket")
        .arg(api.path().join("agent.sock"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut agent = lab.spawn_in("node1", command).unwrap();
    let stderr = agent.stderr.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) else { continue };
        let ready = line.contains("agent ready");
        seen.push(line);
        if ready {
            break;
        }
    }
    let status = Command::new(&*BIN)
        .args(["status", "-o", "json", "--bpf-dir"])
        .arg(&node.bpf_dir)
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    let parsed: Vec<serde_json::Value> = seen
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(parsed.iter().any(|v| v["fields"]["message"] == "agent ready"), "{seen:#?}");
    let problems: Vec<&str> = parsed
        .iter()
        .filter(|v| v["level"] == "WARN")
        .filter_map(|v| v["fields"]["problem"].as_str())
        .collect();
    // testdata/broken/syntax.yaml: document 2 (from line 13) is not valid YAML.
    assert!(
        problems
            .iter()
            .any(|p| p.contains("syntax.yaml:13 (document 2)") && p.contains("YAML syntax error")),
        "{problems:#?}"
    );
    // testdata/broken/addresses.yaml: the API server would refuse both objects, so they do not
    // apply (issue 21: the Service used to apply without its frontends); each refused field is
    // a problem of its own, naming file, line, object and field.
    for expected in [
        "addresses.yaml:10 (document 1): Service broken/bad-addresses: spec.clusterIP: \"10.96.100.300\"",
        "addresses.yaml:12 (document 1): Service broken/bad-addresses: spec.externalIPs[0]",
        "addresses.yaml:30 (document 2): EndpointSlice broken/bad-addresses-4kx9p: endpoints[0].addresses[0]",
    ] {
        assert!(problems.iter().any(|p| p.contains(expected)), "{expected}: {problems:#?}");
    }
    // Each problem once.
    let mut unique = problems.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), problems.len(), "{problems:#?}");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let programmed = status["kernel"]["frontends"].as_array().unwrap();
    assert!(programmed.iter().any(|f| f["ip"] == "10.96.200.10"), "{status:#}");
    drop(lab);
}

/// `--lab-node node2` reads node2's maps and is the Node whose desired state the manifests give
/// (lab nodes are Nodes of the same name): `backends` agrees with the kernel, `monitor
/// --service` shows node2's events and `conntrack --service` its flows. With the first Node
/// (node1) as the default, each of them was wrong.
#[test]
fn lab_node_is_the_node_name_of_every_inspection_command() {
    if !require_root("lab_node_is_the_node_name_of_every_inspection_command") {
        return;
    }
    use std::process::Stdio;
    use std::time::Duration;
    use switchyard_bpf::monitor::read_settings;

    let nodes: &[(&str, &[&str])] = &[("node1", &["a1"]), ("node2", &["b1"])];
    let cluster = Cluster::with_clients(nodes, &["ext"], &["--devices", "eth0"]);
    let baseline = cluster.containment_baseline();
    let endpoints = [("a1", State::Ready), ("b1", State::Ready)];
    cluster.apply_and_wait("web.yaml", &cluster.load_balancer("web", 30421, "", &[], &endpoints));
    let prefix = cluster.lab.prefix().to_owned();
    let dir = cluster.manifests.to_str().unwrap().to_owned();
    let node2 = cluster.lab.node("node2").unwrap().clone();
    let on_node2 = |args: &[&str]| {
        let mut command = Command::new(&*BIN);
        command.args(args).args(["--lab-node", "node2", "--lab", &prefix]);
        command
    };

    let (code, doc) = run_command(on_node2(&["backends", &dir, "-o", "json"]));
    assert_eq!(code, 0, "node2's own desired state: {doc:#}");
    assert!(doc["backends"].as_array().unwrap().iter().all(|b| b["desired"] == true), "{doc:#}");
    // The comparison can fail: node1's desired state marks other backends local.
    let (code, doc) =
        run_command(on_node2(&["backends", &dir, "--node-name", "node1", "-o", "json"]));
    assert_eq!(code, 3, "{doc:#}");

    // services --live: the lab node picks the bpffs directory and is the default Node name.
    let mut live = Command::new(&*BIN);
    live.args(["services", &dir, "--live", "--lab-node", "node2", "--lab", &prefix, "-o", "json"]);
    let (code, rows) = run_command(live);
    assert_eq!(code, 0, "node2's maps match node2's desired state: {rows:#}");
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty() && rows.iter().all(|r| r["status"] == "ok"), "{rows:#?}");

    let target = at(node2.ipv4.into(), 30421);
    let mut monitor = on_node2(&["monitor", "--service", "e2e/web", "--manifests", &dir]);
    monitor.args(["--count", "1", "--duration-ms", "10000", "-o", "json"]).stdout(Stdio::piped());
    let monitor = monitor.spawn().unwrap();
    let on = switchyard_lab::wait_until(Duration::from_secs(5), || {
        read_settings(&node2.bpf_dir).is_ok_and(|m| m.enabled != 0)
    });
    assert!(on, "monitor switched node2's stream on");
    cluster.client("ext", "tcp", target, 1);
    let output = monitor.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let event: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(event["service"], "e2e/web", "{event:#}");
    assert_eq!(event["path"], "packet", "{event:#}");

    let conntrack =
        ["conntrack", "--service", "e2e/web", "--manifests", &dir, "--all", "-o", "json"];
    let (code, flows) = run_command(on_node2(&conntrack));
    assert_eq!(code, 0, "{flows:#}");
    let flows = flows.as_array().unwrap();
    assert!(!flows.is_empty(), "node2's flow of e2e/web");
    let client = IpAddr::from(cluster.lab.client("ext").unwrap().ipv4);
    assert!(
        flows.iter().all(|f| f["service"] == "e2e/web"
            && f["client"].as_str().unwrap().parse::<std::net::SocketAddr>().unwrap().ip()
                == client),
        "{flows:#?}"
    );
    cluster.assert_nothing_left_the_lab_since(&baseline);
}

fn run_command(mut command: Command) -> (i32, serde_json::Value) {
    let out = command.output().unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{command:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), json)
}
