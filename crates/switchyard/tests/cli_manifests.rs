//! `switchyard validate` and `switchyard services`, run as a user runs them, on testdata/.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use switchyard_testing::KillOnDrop;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata").join(name)
}

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard")).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn arg(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn validate_accepts_the_example_cluster() {
    let dir = testdata("cluster");
    let output = switchyard(&["validate", arg(&dir)]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains(": valid: 0 errors, 0 warnings;"), "{text}");
    assert!(text.contains("3 Nodes, 1 IPPool, 1 BGPPeer, 1 BGPAdvertisement"), "{text}");
    assert!(
        text.contains("Deployment shop/frontend (apps/v1): not read by Switchyard, ignored"),
        "{text}"
    );
}

#[test]
fn validate_pinpoints_every_broken_file_and_exits_1() {
    let dir = testdata("broken");
    let output = switchyard(&["validate", arg(&dir)]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    // (file:line (document), object and field, reason) — each must appear on one error line.
    let expected: &[(&str, &str, &str)] = &[
        ("syntax.yaml:13 (document 2)", "YAML syntax error", "line 19 column 10"),
        ("types.json:1 (document 1)", "Service broken/bad-type: spec.ports[0].port", "\"eighty\""),
        (
            "ports.yaml:13 (document 1)",
            "Service broken/bad-ports: spec.ports[0].port",
            "70000 is outside 1-65535",
        ),
        (
            "ports.yaml:19 (document 1)",
            "spec.ports[1].nodePort",
            "NodePort 8443 is outside the NodePort range 30000-32767",
        ),
        ("ports.yaml:16 (document 1)", "spec.ports[1].name", "duplicate port name \"http\""),
        ("ports.yaml:18 (document 1)", "spec.ports[1].targetPort", "\"https_port\""),
        (
            "addresses.yaml:10 (document 1)",
            "Service broken/bad-addresses: spec.clusterIP",
            "\"10.96.100.300\" is not an IP address",
        ),
        (
            "addresses.yaml:12 (document 1)",
            "spec.externalIPs[0]",
            "\"10.210.0.9/32\" is not an IP address",
        ),
        (
            "addresses.yaml:14 (document 1)",
            "spec.loadBalancerSourceRanges[0]",
            "\"10.0.0.0/33\" is not a CIDR",
        ),
        (
            "addresses.yaml:30 (document 2)",
            "EndpointSlice broken/bad-addresses-4kx9p: endpoints[0].addresses[0]",
            "not an IPv4 address",
        ),
        (
            "collision.yaml:26 (document 2)",
            "Service broken/collide-b: spec.ports[0].nodePort",
            "30200/TCP is already used by Service broken/collide-a",
        ),
        (
            "nodes.yaml:11 (document 1)",
            "Node node-broken: status.addresses[0].address",
            "\"192.168.10.300\"",
        ),
        (
            "duplicate-b.yaml:2 (document 1): Service broken/dup",
            "is already defined in",
            "duplicate-a.yaml:2 (document 1); that first definition is used",
        ),
        (
            "pools.yaml:9 (document 1)",
            "IPPool pool-a: spec.addresses[0]",
            "\"10.250.0.0/33\" is not a CIDR",
        ),
        (
            "pools.yaml:18 (document 2)",
            "IPPool pool-b: spec.addresses[0]",
            "overlaps IPPool pool-a (spec.addresses[1])",
        ),
        ("pools.yaml:26 (document 3)", "BGPPeer bad-peer: spec.peerASN", "AS_TRANS"),
        ("pools.yaml:28 (document 3)", "BGPPeer bad-peer: spec.holdTime", "at least 3s"),
    ];
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    for (location, object, reason) in expected {
        assert!(
            errors.iter().any(|l| l.contains(location) && l.contains(object) && l.contains(reason)),
            "no error line with {location} / {object} / {reason} in:\n{text}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "unexpected extra errors:\n{text}");
    assert!(
        text.contains("warning: ") && text.contains("typos.yaml:14 (document 1): Service broken/typos: unknown field \"spec.ports[0].nodeport\" (ignored)"),
        "misspelt fields must be reported:\n{text}"
    );
    assert!(text.contains(": INVALID: 17 errors,"), "{text}");
}

#[test]
fn validate_reports_a_missing_directory() {
    let output = switchyard(&["validate", "/nonexistent/switchyard-manifests"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("/nonexistent/switchyard-manifests: cannot list directory"));
}

#[test]
fn validate_takes_the_node_port_range_as_a_flag() {
    let file = testdata("broken/ports.yaml");
    let output = switchyard(&["validate", "--node-port-range", "8000-31000", arg(&file)]);
    let text = stdout(&output);
    assert!(!text.contains("NodePort 8443"), "8443 is inside 8000-31000:\n{text}");
    assert!(text.contains("70000 is outside 1-65535"), "{text}");
}

#[test]
fn validate_strict_fails_on_warnings() {
    let file = testdata("broken/duplicate-b.yaml");
    assert_eq!(switchyard(&["validate", arg(&file)]).status.code(), Some(0));
    assert_eq!(switchyard(&["validate", "--strict", arg(&file)]).status.code(), Some(1));
}

#[test]
fn services_table_shows_every_frontend_kind_for_the_first_node() {
    let dir = testdata("cluster");
    let output = switchyard(&["services", arg(&dir)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("showing node node-a (the first Node in"),
        "{}",
        stderr(&output)
    );
    let text = stdout(&output);
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["SERVICE", "PORT", "TYPE", "FRONTEND", "POLICY", "BACKENDS"]);
    // One line per (service, port, type, frontend) that must be there, with a fragment of the rest.
    let expected: &[(&str, &str, &str, &str, &str)] = &[
        ("infra/cluster-dns", "dns", "ClusterIP", "10.96.0.10:53/UDP", "10.244.0.2:53"),
        ("infra/cluster-dns", "dns-tcp", "ClusterIP", "10.96.0.10:53/TCP", "10.244.0.2:53"),
        ("shop/checkout", "http", "NodePort", "192.168.10.11:30080/TCP", "Local"),
        ("shop/checkout", "http", "ClusterIP", "10.96.33.7:80/TCP", "10.244.2.61:8081"),
        ("shop/storefront", "https", "LoadBalancer", "[fd00:200::10]:443/TCP", "from=fd00::/8"),
        ("shop/storefront", "http", "NodePort", "[fd00:10::11]:31080/TCP", "healthCheck=:32001"),
        ("shop/status-page", "http", "ExternalIP", "10.210.0.5:80/TCP", "10.244.1.95:8080"),
        ("shop/cart", "http", "ClusterIP", "10.96.51.9:80/TCP", "affinity=1800s"),
        ("shop/search", "http", "ClusterIP", "10.96.66.6:80/TCP", "10.244.0.66:7700 (terminating)"),
        ("shop/reports", "http", "ClusterIP", "10.96.90.1:80/TCP", "<none: reject>"),
    ];
    for (service, port, kind, frontend, fragment) in expected {
        assert!(
            text.lines().any(|l| {
                let columns: Vec<&str> = l.split_whitespace().collect();
                columns.len() >= 5
                    && columns[..4] == [*service, *port, *kind, *frontend]
                    && l.contains(fragment)
            }),
            "no row {service} {port} {kind} {frontend} …{fragment}… in:\n{text}"
        );
    }
    // Not proxied: headless, ExternalName, and the Service labelled for another proxy.
    for absent in ["shop/orders-db", "shop/legacy-db", "infra/edge-gateway"] {
        assert!(!text.contains(absent), "{absent} must not be served:\n{text}");
    }
}

#[test]
fn services_json_for_a_chosen_node() {
    let dir = testdata("cluster");
    let output = switchyard(&["services", arg(&dir), "--node-name", "node-b", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["node"], "node-b");
    let frontends = json["frontends"].as_array().unwrap();
    let node_port = frontends
        .iter()
        .find(|f| f["ip"] == "192.168.10.12" && f["port"] == 30080)
        .expect("checkout's NodePort on node-b's address");
    let backends = node_port["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 1, "externalTrafficPolicy Local: only node-b's endpoint");
    assert_eq!(backends[0]["ip"], "10.244.1.52");
    assert_eq!(backends[0]["isLocal"], true);
}

#[test]
fn services_with_another_proxy_name_serves_only_its_services() {
    let dir = testdata("cluster");
    let output = switchyard(&["services", arg(&dir), "--proxy-name", "edge-proxy"]);
    let text = stdout(&output);
    let services: Vec<&str> =
        text.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert!(!services.is_empty(), "{text}");
    assert!(services.iter().all(|s| *s == "infra/edge-gateway"), "{text}");
}

#[test]
fn services_rejects_an_unknown_node_and_lists_the_known_ones() {
    let dir = testdata("cluster");
    let output = switchyard(&["services", arg(&dir), "--node", "node-x"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("node \"node-x\" is not in") && text.contains("node-a, node-b, node-c"),
        "{text}"
    );
}

#[test]
fn services_still_shows_valid_objects_of_a_broken_directory() {
    let dir = testdata("broken");
    let output = switchyard(&["services", arg(&dir)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("problem(s) in"), "{}", stderr(&output));
    assert!(stdout(&output).contains("broken/syntax-ok-too"), "{}", stdout(&output));
}

#[test]
fn help_is_available_for_both_commands() {
    for command in ["validate", "services"] {
        let output = switchyard(&[command, "--help"]);
        assert_eq!(output.status.code(), Some(0));
        assert!(stdout(&output).contains("Usage: switchyard"), "{command}");
    }
}

#[test]
fn services_watch_prints_what_changes_when_a_file_changes() {
    use std::io::BufRead as _;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    for file in ["nodes.yaml", "shop/search.yaml", "shop/reports.json"] {
        let target = dir.path().join(file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(testdata("cluster").join(file), target).unwrap();
    }
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["services", arg(dir.path()), "--watch"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let wait_for = |fragment: &str| {
        let mut seen = Vec::new();
        loop {
            match received.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(fragment) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line with {fragment:?}; saw:\n{}", seen.join("\n")),
            }
        }
    };
    // Rows are sorted by Service: reports, then search.
    wait_for("shop/reports");
    wait_for("10.244.0.66:7700 (terminating)");

    // Replace the file atomically, as editors and deploy tools do.
    let search = dir.path().join("shop/search.yaml");
    let text = std::fs::read_to_string(&search).unwrap().replace("port: 7700", "port: 7701");
    std::fs::write(dir.path().join("shop/.search.yaml.tmp"), text).unwrap();
    std::fs::rename(dir.path().join("shop/.search.yaml.tmp"), &search).unwrap();
    assert_eq!(wait_for("# "), "# 1 frontend(s) added or changed, 0 removed");
    let row = wait_for("shop/search");
    assert!(row.contains("10.244.0.66:7701 (terminating)"), "{row}");

    std::fs::remove_file(dir.path().join("shop/reports.json")).unwrap();
    assert_eq!(wait_for("# "), "# 0 frontend(s) added or changed, 1 removed");
    assert_eq!(wait_for("removed"), "removed 10.96.90.1:80/TCP (shop/reports)");
}

/// Issue 18 item 1 (CVE-2020-8554): an externalIP naming another Service's cluster IP is refused
/// — `services` keeps the owner's frontend and lists the refusal (`refused:` lines, JSON
/// `refused`), `validate` names the owner.
#[test]
fn services_lists_refused_external_addresses_and_validate_names_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = r#"
apiVersion: v1
kind: Node
metadata: {name: node-a}
status: {addresses: [{type: InternalIP, address: 192.168.0.10}]}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec: {clusterIP: 10.96.0.10, ports: [{name: dns, port: 53, protocol: UDP}]}
---
apiVersion: v1
kind: Service
metadata: {name: evil, namespace: aaa}
spec:
  clusterIP: 10.96.7.7
  externalIPs: [10.96.0.10]
  ports: [{name: dns, port: 53, protocol: UDP}]
"#;
    std::fs::write(dir.path().join("cluster.yaml"), manifests).unwrap();
    let output = switchyard(&["services", arg(dir.path())]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let owner_row = text.lines().find(|l| l.contains("10.96.0.10:53/UDP")).unwrap_or_default();
    assert!(owner_row.starts_with("kube-system/kube-dns"), "{text}");
    let refused: Vec<&str> = text.lines().filter(|l| l.starts_with("refused:")).collect();
    assert_eq!(refused.len(), 1, "{text}");
    assert!(refused[0].contains("aaa/evil") && refused[0].contains("10.96.0.10"), "{text}");

    let output = switchyard(&["services", arg(dir.path()), "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["refused"].as_array().map(Vec::len), Some(1), "{json}");

    let output = switchyard(&["validate", arg(dir.path())]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let report = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        report.contains("aaa/evil")
            && report.contains("spec.externalIPs[0]")
            && report.contains("the cluster IP of Service kube-system/kube-dns"),
        "{report}"
    );
}

/// Issue 18 item 1: `--external-ip-cidrs` (here on `services`, which shares the agent's parser
/// and model setting) serves externalIPs only inside the list and lists the others as refused.
#[test]
fn external_ip_cidrs_limit_which_external_ips_are_served() {
    let dir = testdata("cluster");
    let row = "10.210.0.5:80/TCP";
    for (value, served) in [("all", true), ("10.210.0.0/16", true), ("none", false)] {
        let output = switchyard(&["services", arg(&dir), "--external-ip-cidrs", value]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let text = stdout(&output);
        let listed = text.lines().any(|l| l.contains("ExternalIP") && l.contains(row));
        let refused = text.lines().any(|l| l.starts_with("refused:") && l.contains("10.210.0.5"));
        assert_eq!((listed, refused), (served, !served), "--external-ip-cidrs {value}:\n{text}");
    }
    let output = switchyard(&["services", arg(&dir), "--external-ip-cidrs", "10.210.0.0/33"]);
    assert_eq!(output.status.code(), Some(2), "a bad prefix is refused: {}", stderr(&output));
}
