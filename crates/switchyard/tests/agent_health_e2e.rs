//! The proxy health and metrics of running agents (root): /healthz and /livez with
//! kube-proxy's JSON on `--healthz-bind-address` inside the node, /healthz failing while the
//! Node is going away (autoscaler taint) and /livez not, both 503 while an update cannot be
//! written, and the sync and programming metrics on the local API socket. See
//! docs/conformance.md.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use switchyard_lab::require_root;
use switchyard_lab::tools::clients;
use switchyard_testing::e2e::{Agent, Cluster, State, at, set, v4};

/// Status and JSON body of `GET path` on node1's health server (from inside node1).
fn get(cluster: &Cluster, path: &str) -> (u16, serde_json::Value) {
    let target = "127.0.0.1:10256".parse().unwrap();
    let attempts = cluster
        .lab
        .run_in("node1", || clients::http(target, path, 1, Duration::from_secs(3)))
        .unwrap();
    let attempt = &attempts[0];
    // A 503 is an answer too (the client reports it as an error as well).
    assert!(attempt.status.is_some(), "{path}: {attempt:?}");
    let body = serde_json::from_str(attempt.body.as_deref().unwrap()).unwrap();
    (attempt.status.unwrap(), body)
}

/// `GET /metrics` on node1's agent API socket: the Prometheus text.
fn metrics(cluster: &Cluster) -> String {
    let mut stream = UnixStream::connect(Agent::api_socket(&cluster.lab, "node1")).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // The body is OpenMetrics (it ends with `# EOF`), and the content type says so.
    let content_type =
        "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n";
    assert!(response.to_ascii_lowercase().contains(content_type), "{response}");
    assert!(response.trim_end().ends_with("# EOF"), "{response}");
    response
}

/// `at` as RFC 3339 UTC with whole seconds (how the EndpointSlice controller writes it).
fn trigger_time_text(at: std::time::SystemTime) -> String {
    let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The value of the first sample line starting with `name` (a full series name).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(name))?.rsplit(' ').next()?.parse().ok()
}

#[test]
fn healthz_livez_and_metrics_of_running_agents() {
    if !require_root("healthz_livez_and_metrics_of_running_agents") {
        return;
    }
    let mut cluster = Cluster::with_clients(
        &[("node1", &["a1", "a2"]), ("node2", &["b1", "b2"])],
        &[],
        &["--healthz-bind-address", "127.0.0.1:10256"],
    );
    let ip = v4("10.96.180.10");
    let text = cluster.service("web", &[ip], 80, "", &[("a1", State::Ready), ("b1", State::Ready)]);
    cluster.apply_until_it_answers("web.yaml", &text, "a2", at(ip, 80));
    assert_eq!(cluster.backends("a2", "tcp", at(ip, 80), 20), set(&["a1", "b1"]));

    for path in ["/healthz", "/livez"] {
        let (status, body) = get(&cluster, path);
        assert_eq!(status, 200, "{path}: {body}");
        assert_ne!(body["lastUpdated"], "", "{path}: {body}");
        assert!(body["currentTime"].as_str().is_some_and(|t| !t.is_empty()), "{path}: {body}");
    }
    assert_eq!(get(&cluster, "/healthz").1["nodeEligible"], true);

    let text = metrics(&cluster);
    for series in [
        "switchyard_sync_proxy_rules_duration_seconds_count",
        "switchyard_sync_change_latency_seconds_count",
    ] {
        assert!(sample(&text, series).is_some_and(|n| n >= 1.0), "{series}: {text}");
    }
    // The fixture's slices carry no trigger time: nothing to measure programming latency from.
    let programming = "switchyard_network_programming_duration_seconds";
    assert_eq!(sample(&text, &format!("{programming}_count")), Some(0.0), "{text}");
    assert_eq!(sample(&text, "switchyard_sync_proxy_rules_changes_pending"), Some(0.0), "{text}");
    let last = sample(&text, "switchyard_sync_proxy_rules_last_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    assert!(last > now.as_secs_f64() - 120.0 && last <= now.as_secs_f64() + 1.0, "{last}");

    // A slice whose trigger time (the Pod change behind it) is 2 s old: kube-proxy's network
    // programming latency is measured from there, so one observation of 2-3 s (whole seconds
    // in the annotation). Trigger times before the agent started are not observed, so the
    // agent has run for longer than that first.
    std::thread::sleep(Duration::from_secs(4));
    let triggered = std::time::SystemTime::now() - Duration::from_secs(2);
    let stamp = trigger_time_text(triggered);
    let lat = v4("10.96.180.20");
    let text = cluster.service("lat", &[lat], 80, "", &[("a1", State::Ready)]).replace(
        "  labels: {kubernetes.io/service-name: lat}\n",
        &format!(
            "  labels: {{kubernetes.io/service-name: lat}}\n  annotations: \
             {{endpoints.kubernetes.io/last-change-trigger-time: \"{stamp}\"}}\n"
        ),
    );
    assert!(text.contains(&stamp), "{text}");
    cluster.apply_until_it_answers("lat.yaml", &text, "a2", at(lat, 80));
    let text = metrics(&cluster);
    assert_eq!(sample(&text, &format!("{programming}_count")), Some(1.0), "{text}");
    let sum = sample(&text, &format!("{programming}_sum")).unwrap();
    assert!((2.0..30.0).contains(&sum), "latency from the trigger time {stamp}: {sum} s");

    // The cluster autoscaler marks node1 for deletion: /healthz fails (load balancers stop
    // sending new traffic), /livez does not (the agent itself is fine).
    let nodes = cluster.nodes_yaml().replacen(
        "spec:\n",
        "spec:\n  taints: [{key: ToBeDeletedByClusterAutoscaler, effect: NoSchedule}]\n",
        1,
    );
    assert!(nodes.contains("name: node1\nspec:\n  taints"), "{nodes}");
    cluster.apply("nodes.yaml", &nodes);
    cluster.eventually("node1's /healthz turns 503", || {
        let (status, body) = get(&cluster, "/healthz");
        status == 503 && body["nodeEligible"] == false
    });
    assert_eq!(get(&cluster, "/livez").0, 200);
    // Traffic is not affected.
    assert_eq!(cluster.backends("a2", "tcp", at(ip, 80), 20), set(&["a1", "b1"]));
    cluster.assert_nothing_left_the_lab();

    // A second agent on node1's --bpf-dir is refused before it writes anything.
    let node1 = cluster.lab.node("node1").unwrap().clone();
    let mut second = std::process::Command::new(&*switchyard_testing::e2e::BIN)
        .args(["agent", "--manifests"])
        .arg(&cluster.manifests)
        .args(["--node-name", "node1", "--cgroup"])
        .arg(&node1.cgroup)
        .arg("--bpf-dir")
        .arg(&node1.bpf_dir)
        .arg("--api-socket")
        .arg(std::env::temp_dir().join(format!("{}-second.sock", cluster.lab.prefix())))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = switchyard_lab::wait_until(Duration::from_secs(20), || {
        second.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = second.kill();
    }
    let output = second.wait_with_output().unwrap();
    assert!(ended, "a second agent on the same --bpf-dir kept running");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another agent runs on"), "{stderr}");
    assert_eq!(cluster.backends("a2", "tcp", at(ip, 80), 10), set(&["a1", "b1"]));

    // SIGTERM: the agent removes its API socket (the programs stay).
    let socket = Agent::api_socket(&cluster.lab, "node1");
    assert!(socket.exists());
    let index = cluster.agent_index("node1");
    cluster.agents.remove(index).stop();
    assert!(!socket.exists(), "{} left behind after SIGTERM", socket.display());
}

/// `/healthz` and `/livez` answer 503 once an update has waited longer than
/// `--health-timeout-seconds` to be programmed, against a running agent (conformance row 51).
/// The stall is a real kernel refusal: the test freezes node1's pinned frontends map
/// (`bpftool map freeze`, BPF_MAP_FREEZE), so every later write from the agent fails. The
/// Service programmed before keeps answering. A frozen map cannot be thawed: the agent is
/// stopped, `--cleanup` removes its pins, and a new agent programs everything: 200 again.
#[test]
fn healthz_answers_503_while_an_update_cannot_be_written() {
    if !require_root("healthz_answers_503_while_an_update_cannot_be_written") {
        return;
    }
    let mut cluster = Cluster::with_clients(
        &[("node1", &["a1", "a2"])],
        &[],
        &["--healthz-bind-address", "127.0.0.1:10256", "--health-timeout-seconds", "2"],
    );
    let ip = v4("10.96.182.10");
    let text = cluster.service("web", &[ip], 80, "", &[("a1", State::Ready)]);
    cluster.apply_until_it_answers("web.yaml", &text, "a2", at(ip, 80));
    assert_eq!(get(&cluster, "/healthz").0, 200);

    let bpf_dir = cluster.lab.node("node1").unwrap().bpf_dir.clone();
    let frontends = bpf_dir.join(switchyard_bpf::maps::names::FRONTENDS);
    let freeze = std::process::Command::new("bpftool")
        .args(["map", "freeze", "pinned"])
        .arg(&frontends)
        .output()
        .unwrap();
    assert!(freeze.status.success(), "bpftool map freeze: {freeze:?}");
    let late = v4("10.96.182.11");
    cluster.apply("late.yaml", &cluster.service("late", &[late], 80, "", &[("a2", State::Ready)]));
    cluster.eventually("/healthz turns 503: the update waits longer than 2 s", || {
        get(&cluster, "/healthz").0 == 503
    });
    let (status, body) = get(&cluster, "/livez");
    assert_eq!(status, 503, "/livez too: {body}");
    assert_ne!(body["lastUpdated"], "", "the last programmed update is reported: {body}");
    assert_eq!(cluster.backends("a2", "tcp", at(ip, 80), 5), set(&["a1"]), "web still served");

    let index = cluster.agent_index("node1");
    cluster.agents.remove(index).stop();
    let cleanup = std::process::Command::new(&*switchyard_testing::e2e::BIN)
        .args(["agent", "--cleanup", "--bpf-dir"])
        .arg(&bpf_dir)
        .output()
        .unwrap();
    assert!(cleanup.status.success(), "agent --cleanup: {cleanup:?}");
    let agent = cluster.start_agent("node1");
    cluster.agents.push(agent);
    cluster.eventually("/healthz answers 200 once a new agent programmed everything", || {
        get(&cluster, "/healthz").0 == 200
    });
    assert_eq!(cluster.backends("a1", "tcp", at(late, 80), 5), set(&["a2"]), "late now served");
    cluster.assert_nothing_left_the_lab();
}

/// Issue 17: on SIGTERM the agent answers 503 on /healthz (directors probing it drain the node)
/// for `--shutdown-grace-seconds` while it keeps forwarding, /livez stays 200, and it exits
/// cleanly once the grace is over, not before.
#[test]
fn healthz_answers_503_during_the_shutdown_grace_then_the_agent_exits() {
    if !require_root("healthz_answers_503_during_the_shutdown_grace_then_the_agent_exits") {
        return;
    }
    const GRACE: Duration = Duration::from_secs(4);
    let grace = GRACE.as_secs().to_string();
    let mut cluster = Cluster::with_clients(
        &[("node1", &["a1", "a2"]), ("node2", &["b1"])],
        &[],
        &["--healthz-bind-address", "127.0.0.1:10256", "--shutdown-grace-seconds", &grace],
    );
    let ip = v4("10.96.180.30");
    let text = cluster.service("web", &[ip], 80, "", &[("a1", State::Ready), ("b1", State::Ready)]);
    cluster.apply_until_it_answers("web.yaml", &text, "a2", at(ip, 80));
    let (status, body) = get(&cluster, "/healthz");
    assert_eq!((status, body["shuttingDown"].clone()), (200, serde_json::json!(false)), "{body}");

    let index = cluster.agent_index("node1");
    let mut agent = cluster.agents.remove(index);
    let signalled = std::time::Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    // Within the grace: 503 with shuttingDown, /livez 200, the Service still answers on node1.
    let draining = switchyard_lab::wait_until(Duration::from_secs(2), || {
        let (status, body) = get(&cluster, "/healthz");
        status == 503 && body["shuttingDown"] == true && body["nodeEligible"] == true
    });
    assert!(draining, "/healthz did not turn 503 after SIGTERM: {:?}", get(&cluster, "/healthz"));
    assert_eq!(get(&cluster, "/livez").0, 200);
    assert_eq!(cluster.backends("a2", "tcp", at(ip, 80), 10), set(&["a1", "b1"]));
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent left before its grace ended");
    let in_grace = signalled.elapsed();
    assert!(in_grace < GRACE, "the checks took {in_grace:?}, longer than the grace");

    // Then it exits on its own, successfully, no earlier than the grace.
    let exited = switchyard_lab::wait_until(GRACE + Duration::from_secs(5), || {
        agent.child.try_wait().unwrap().is_some()
    });
    let took = signalled.elapsed();
    assert!(exited, "the agent still runs {took:?} after SIGTERM");
    let status = agent.child.wait().unwrap();
    assert!(status.success(), "agent exited with {status}");
    assert!(took >= GRACE, "the agent left after {took:?}, before its {GRACE:?} grace");
    eprintln!("503 seen within the grace; agent exited {took:?} after SIGTERM (grace {GRACE:?})");
    assert!(agent.logged("shutting down"), "{:#?}", agent.log.lock().unwrap());
}
