//! The output convention (`-o table|wide|json|yaml`, docs/output.md): walks `switchyard --help`,
//! checks that every command printing state offers `-o` with the four formats, and runs each
//! one with `-o json` and `-o yaml`: offline commands on the repository's test data without
//! root, the kernel-reading ones (as root) against an agent in a lab of the test's own.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use switchyard_lab::require_root;

/// Commands that print state: each takes `-o`.
const STATE: &[&str] = &[
    "maglev",
    "validate",
    "services",
    "status",
    "explain",
    "conntrack",
    "backends",
    "monitor",
    "bgp",
    "l2",
    "ipam",
    "doctor",
];

/// Commands that do something (run a role, build a lab, write files) rather than show state.
const ACTIONS: &[&str] =
    &["lab", "agent", "director", "controller", "demo", "completion", "man", "help"];

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The subcommands `switchyard --help` lists.
fn listed_commands() -> Vec<String> {
    let output = Command::new(bin()).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = stdout(&output);
    let section = help.split("Commands:\n").nth(1).expect("a Commands: section");
    section
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn every_state_command_offers_the_four_formats() {
    let commands = listed_commands();
    assert!(commands.len() >= STATE.len() + ACTIONS.len() - 1, "{commands:?}");
    for command in &commands {
        let state = STATE.contains(&command.as_str());
        assert!(
            state || ACTIONS.contains(&command.as_str()),
            "`switchyard {command}` is new: list it in STATE (and give it -o) or in ACTIONS"
        );
        if !state {
            continue;
        }
        let output = Command::new(bin()).args([command, "-h"]).output().unwrap();
        let help = stdout(&output);
        assert!(help.contains("-o, --output <FORMAT>"), "switchyard {command} --help:\n{help}");
        assert!(
            help.contains("[default: table] [possible values: table, wide, json, yaml]"),
            "switchyard {command} --help:\n{help}"
        );
        assert!(!help.contains("--json"), "--json is a hidden alias now: {command}:\n{help}");
    }
    for state in STATE {
        assert!(commands.iter().any(|c| c == state), "{state} is not in --help: {commands:?}");
    }
}

/// Runs `switchyard ARGS -o json` and `-o yaml`; both must parse to the same document, with
/// camelCase keys only. Returns the JSON.
fn both_formats(
    args: &[&str],
    success: bool,
    run: impl Fn(&[&str]) -> Output,
) -> serde_json::Value {
    let mut documents = Vec::new();
    for format in ["json", "yaml"] {
        let mut full = args.to_vec();
        full.extend(["-o", format]);
        let output = run(&full);
        let text = stdout(&output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.success(), success, "switchyard {full:?}:\n{text}\n{stderr}");
        let value: serde_json::Value = match format {
            "json" => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("switchyard {full:?}: not JSON ({e}):\n{text}")),
            _ => serde_norway::from_str(&text)
                .unwrap_or_else(|e| panic!("switchyard {full:?}: not YAML ({e}):\n{text}")),
        };
        assert_camel_case(&value, &format!("{full:?}"));
        documents.push(value);
    }
    assert_eq!(documents[0], documents[1], "JSON and YAML differ for {args:?}");
    // The old spelling still works, as a hidden alias.
    let mut old = args.to_vec();
    old.push("--json");
    let legacy: serde_json::Value = serde_json::from_slice(&run(&old).stdout).unwrap();
    assert_eq!(legacy, documents[0], "--json differs from -o json for {args:?}");
    documents.swap_remove(0)
}

/// Fields whose values are maps keyed by data (reason names, frontend ids), not field names.
const DATA_KEYED: &[&str] = &["reasons", "frontendCounters"];

fn assert_camel_case(value: &serde_json::Value, context: &str) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                assert!(
                    !key.contains('_') && !key.starts_with(|c: char| c.is_ascii_uppercase()),
                    "{context}: key {key:?} is not camelCase"
                );
                match inner.as_object() {
                    Some(entries) if DATA_KEYED.contains(&key.as_str()) => {
                        entries.values().for_each(|v| assert_camel_case(v, context));
                    }
                    _ => assert_camel_case(inner, context),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| assert_camel_case(v, context)),
        _ => {}
    }
}

fn offline(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env_remove("SWITCHYARD_MAGLEV_SEED").output().unwrap()
}

#[test]
fn offline_commands_print_json_and_yaml() {
    let cluster = repo("testdata/cluster");
    let cluster = cluster.to_str().unwrap();
    let services = both_formats(&["services", cluster, "--node-name", "node-a"], true, offline);
    let frontends = services["frontends"].as_array().unwrap();
    assert!(frontends.iter().any(|f| f["kind"] == "ClusterIP"), "{services:#}");
    assert!(frontends.iter().all(|f| f.get("portName").is_some()), "{services:#}");

    let broken = repo("testdata/broken");
    let validate = both_formats(&["validate", broken.to_str().unwrap()], false, offline);
    assert_eq!(validate["valid"], false);
    assert!(validate["errors"].as_u64().unwrap() > 0, "{validate:#}");
    let problems = validate["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["severity"] == "error"), "{validate:#}");

    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("backends.txt");
    std::fs::write(&list, "10.0.0.1:80\n10.0.0.2:80 2\n").unwrap();
    let maglev = both_formats(
        &[
            "maglev",
            "--backends",
            list.to_str().unwrap(),
            "--size",
            "251",
            "--remove",
            "10.0.0.1:80",
        ],
        true,
        offline,
    );
    let slots: u64 =
        maglev["backends"].as_array().unwrap().iter().map(|b| b["slots"].as_u64().unwrap()).sum();
    assert_eq!(slots, 251, "{maglev:#}");
    assert!(maglev["removal"]["moved"].as_u64().unwrap() > 0, "{maglev:#}");

    let demo = repo("examples/demo");
    let ipam = both_formats(&["ipam", demo.to_str().unwrap()], true, offline);
    assert!(!ipam["pools"].as_array().unwrap().is_empty(), "{ipam:#}");
}

/// One meaning per flag (issue 21): `--node-name` is a Kubernetes Node, `--lab-node` a lab member,
/// and the old `--node` is in no `--help` but still works, as a hidden alias of the flag it used
/// to be on each command, for one release.
#[test]
fn old_flag_spellings_are_hidden_aliases() {
    for command in STATE {
        let help = stdout(&offline(&[command, "-h"]));
        let listed = |flag: &str| help.lines().any(|l| l.trim_start().starts_with(flag));
        assert!(!listed("--node <"), "switchyard {command} -h lists --node:\n{help}");
    }
    // services: --node was the Node name.
    let cluster = repo("testdata/cluster");
    let cluster = cluster.to_str().unwrap();
    let new = offline(&["services", cluster, "--node-name", "node-b", "-o", "json"]);
    let old = offline(&["services", cluster, "--node", "node-b", "-o", "json"]);
    assert!(new.status.success() && old.status.success(), "{}", stdout(&old));
    assert_eq!(stdout(&old), stdout(&new));
    assert!(stdout(&new).contains("\"node\": \"node-b\""), "{}", stdout(&new));
    // The inspection commands: --node was the lab node (looked up among running labs).
    let flow = ["192.0.2.7:40000", "10.96.0.10:53/udp"];
    for args in [
        &["status"][..],
        &["conntrack"],
        &["backends"],
        &["monitor"],
        &["explain", flow[0], flow[1]],
    ] {
        let mut full = args.to_vec();
        full.extend(["--node", "no-such-lab-node"]);
        let output = offline(&full);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success()
                && stderr.contains("no running lab has a node \"no-such-lab-node\""),
            "switchyard {full:?}: {stderr}"
        );
    }
}

/// Table and wide: aligned columns under upper-case headers; wide has more of them.
#[test]
fn wide_adds_columns_to_the_table() {
    let cluster = repo("testdata/cluster");
    let table = stdout(&offline(&["services", cluster.to_str().unwrap()]));
    let wide = stdout(&offline(&["services", cluster.to_str().unwrap(), "-o", "wide"]));
    let header =
        |text: &str| text.lines().next().unwrap().split("   ").filter(|c| !c.is_empty()).count();
    assert!(table.starts_with("SERVICE "), "{table}");
    assert!(header(&wide) > header(&table), "{table}\n{wide}");
    assert_eq!(table.lines().count(), wide.lines().count());
}

/// The commands that read pinned maps or the agent's API, against a running agent (root).
#[test]
fn kernel_commands_print_json_and_yaml() {
    if !require_root("kernel_commands_print_json_and_yaml") {
        eprintln!(
            "SKIPPED: status, explain, conntrack, backends, monitor, bgp and doctor -o json/yaml \
             were not run (they need root)"
        );
        return;
    }
    use std::process::Stdio;
    use std::time::Duration;
    use switchyard_bpf::monitor::read_settings;
    use switchyard_testing::e2e::*;
    let cluster = Cluster::with_clients(&[("node1", &["a1"])], &[], &["--devices", "eth0"]);
    let ip = v4("10.96.9.10");
    let web = cluster.service("web", &[ip], 80, "", &[("a1", State::Ready)]);
    cluster.apply_and_wait("web.yaml", &web);
    let bpf = cluster.lab.node("node1").unwrap().bpf_dir.to_str().unwrap().to_owned();
    let dir = cluster.manifests.to_str().unwrap().to_owned();
    let socket = Agent::api_socket(&cluster.lab, "node1").to_str().unwrap().to_owned();
    let run = |args: &[&str]| Command::new(&*BIN).args(args).output().unwrap();

    let status = both_formats(&["status", "--bpf-dir", &bpf], true, run);
    assert!(!status["kernel"]["frontends"].as_array().unwrap().is_empty(), "{status:#}");
    let explain = both_formats(
        &["explain", "10.244.1.1", "10.96.9.10:80/tcp", "--from", "outside", "--bpf-dir", &bpf],
        true,
        run,
    );
    assert!(explain["frontend"].is_object(), "{explain:#}");
    let conntrack = both_formats(&["conntrack", "--bpf-dir", &bpf, "--manifests", &dir], true, run);
    assert!(conntrack.is_array(), "{conntrack:#}");
    let backends = both_formats(&["backends", &dir, "--bpf-dir", &bpf], true, run);
    assert_eq!(backends["backends"].as_array().unwrap().len(), 1, "{backends:#}");
    assert_eq!(backends["compared"], true, "{backends:#}");
    // Without a desired state nothing is compared, and the summary says so.
    let alone = run(&["backends", "--bpf-dir", &bpf]);
    assert!(alone.status.success());
    let text = stdout(&alone);
    assert!(text.contains("1 backend(s), not compared with a desired state"), "{text}");
    assert!(!text.contains("difference"), "{text}");
    let bgp = both_formats(&["bgp", "--api-socket", &socket], true, run);
    assert!(bgp["sessions"].as_array().unwrap().is_empty(), "{bgp:#}");
    // No L2Advertisement: nobody answers, and the responder serves no interface.
    let l2 = both_formats(&["l2", "--api-socket", &socket], true, run);
    assert!(l2["interfaces"].as_array().unwrap().is_empty(), "{l2:#}");
    for address in l2["addresses"].as_array().unwrap() {
        assert_eq!(address["owner"], serde_json::Value::Null, "{l2:#}");
    }
    // A stream: one event per connection, JSON on a line of its own, YAML as a document.
    for format in ["json", "yaml"] {
        let child = Command::new(&*BIN)
            .args(["monitor", "--count", "1", "--duration-ms", "10000", "--bpf-dir", &bpf])
            .args(["-o", format])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let on = switchyard_lab::wait_until(Duration::from_secs(5), || {
            read_settings(Path::new(&bpf)).is_ok_and(|m| m.enabled != 0)
        });
        assert!(on, "monitor switched the stream on");
        let target = at(ip, 80);
        cluster.client("a1", "tcp", target, 1);
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let text = stdout(&output);
        let event: serde_json::Value = match format {
            "json" => serde_json::from_str(text.lines().next().unwrap()).unwrap(),
            _ => {
                let document = text.strip_prefix("---\n").expect("a YAML document per event");
                serde_norway::from_str(document).unwrap()
            }
        };
        assert_camel_case(&event, "monitor");
        assert_eq!(event["path"], "socket", "{event:#}");
        assert!(event["frontendId"].as_u64().is_some(), "{event:#}");
    }
    let doctor = both_formats(&["doctor", "--bpf-dir", &bpf, "--api-socket", &socket], true, run);
    assert!(!doctor["findings"].as_array().unwrap().is_empty(), "{doctor:#}");
    cluster.assert_nothing_left_the_lab();
}

/// The director's views (`status` and `explain` on a director's bpffs directory) follow the
/// convention too: a director with an empty manifest directory in a network namespace of the
/// test's own (root).
#[test]
fn director_views_print_json_and_yaml() {
    if !require_root("director_views_print_json_and_yaml") {
        eprintln!("SKIPPED director_views_print_json_and_yaml: status, explain on a director");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let scratch = scratch.path();
    let manifests = scratch.join("manifests");
    let bpf_dir = scratch.join("bpf");
    std::fs::create_dir_all(&manifests).unwrap();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // Only this thread (and the processes it starts) changes namespace.
                switchyard_testing::nodeport_fixture::enter_private_netns();
                for args in ["link set lo up", "link add up0 type veth peer name up1"] {
                    let status = Command::new("ip").args(args.split_whitespace()).status().unwrap();
                    assert!(status.success(), "ip {args}");
                }
                let status = Command::new("ip").args(["link", "set", "up0", "up"]).status();
                assert!(status.unwrap().success());
                let mut director = Command::new(bin())
                    .args(["director", "--manifests"])
                    .arg(&manifests)
                    .args(["--devices", "up0", "--address", "10.0.0.100,fd00::100"])
                    .args(["--xdp-mode", "generic", "--shutdown-grace-seconds", "0"])
                    .arg("--bpf-dir")
                    .arg(&bpf_dir)
                    .arg("--api-socket")
                    .arg(scratch.join("director.sock"))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                let attached =
                    switchyard_lab::wait_until(std::time::Duration::from_secs(30), || {
                        std::fs::read_dir(bpf_dir.join("links"))
                            .is_ok_and(|mut d| d.next().is_some())
                    });
                let bpf = bpf_dir.to_str().unwrap();
                let result = std::panic::catch_unwind(|| {
                    assert!(attached, "the director never attached its program");
                    let status = both_formats(&["status", "--bpf-dir", bpf], true, offline);
                    assert_eq!(status["role"], "director", "{status:#}");
                    assert_eq!(status["director"]["settings"]["source6"], "fd00::100");
                    let flow = ["198.51.100.7:40000", "192.0.2.10:80/tcp"];
                    let explain = both_formats(
                        &["explain", flow[0], flow[1], "--bpf-dir", bpf],
                        true,
                        offline,
                    );
                    assert!(explain.get("flow").is_some(), "{explain:#}");
                });
                let pid = director.id().to_string();
                let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                assert!(term.success());
                director.wait().unwrap();
                let cleanup = offline(&["director", "--cleanup", "--bpf-dir", bpf]);
                assert!(cleanup.status.success(), "{}", String::from_utf8_lossy(&cleanup.stderr));
                if let Err(panic) = result {
                    std::panic::resume_unwind(panic);
                }
            })
            .join()
            .unwrap();
    });
}
