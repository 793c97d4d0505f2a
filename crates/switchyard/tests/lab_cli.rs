//! Privileged test of `switchyard lab up|status|list|exec|down|serve|client`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn lab(name: &str, args: &[&str]) -> Output {
    Command::new(BIN).args(["lab", "--lab", name]).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Takes the lab down if the test fails half-way.
struct DownOnDrop(String);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = lab(&self.0, &["down"]);
    }
}

#[test]
fn lab_cli_up_exec_serve_client_down() {
    if !switchyard_lab::require_root("lab_cli_up_exec_serve_client_down") {
        return;
    }
    let name = format!("sy-cli-{:x}", std::process::id());
    let topology = std::env::temp_dir().join(format!("{name}.yaml"));
    std::fs::write(
        &topology,
        "nodes:\n  - name: n1\n    pods: [web]\n  - name: n2\nclients: [ext]\n",
    )
    .unwrap();

    let _guard = DownOnDrop(name.clone());
    let up = stdout(&lab(&name, &["up", topology.to_str().unwrap()]));
    // The members as a table (comfy-table, like every table): a header, then a row each.
    let row =
        |kind: &str, name: &str| up.lines().any(|l| l.split_whitespace().take(2).eq([kind, name]));
    assert!(up.lines().any(|l| l.starts_with("KIND ") && l.contains("IPV6")), "{up}");
    assert!(
        row("pod", "web") && row("node", "n1") && row("node", "n2") && row("client", "ext"),
        "{up}"
    );
    // The hints work as printed: they name this lab.
    assert!(up.contains(&format!("switchyard lab --lab {name} down")), "{up}");
    assert!(up.contains(&format!("switchyard status --lab-node n1 --lab {name}")), "{up}");
    let list: serde_json::Value =
        serde_json::from_str(&stdout(&lab(&name, &["list", "-o", "json"]))).unwrap();
    assert!(list.as_array().unwrap().iter().any(|l| l["prefix"] == name.as_str()), "{list:#}");
    let table = stdout(&lab(&name, &["list"]));
    assert!(table.starts_with("LAB ") && table.contains(&name), "{table}");
    // `lab --help` shows every subcommand, the built-in servers and clients included.
    let help = stdout(&lab(&name, &["--help"]));
    for command in ["up", "status", "list", "exec", "down", "serve", "client"] {
        assert!(help.contains(&format!("\n  {command} ")), "{command} in:\n{help}");
    }
    // The lab outlives the command.
    assert!(Path::new("/run/netns").join(format!("{name}-web")).exists());

    let status: serde_json::Value =
        serde_json::from_str(&stdout(&lab(&name, &["status", "--json"]))).unwrap();
    let web_ip = status["pods"][0]["ipv4"].as_str().unwrap().to_string();
    let web_ip6 = status["pods"][0]["ipv6"].as_str().unwrap().to_string();

    // A server in the pod, started through exec; wait for its "listening" lines.
    let mut server = Command::new(BIN)
        .args([
            "lab", "--lab", &name, "exec", "web", "--", BIN, "lab", "serve", "echo", "--port",
            "80", "--name", "web",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().unwrap().unwrap();
        assert!(line.contains("\"listening\""), "{line}");
    }

    for target in [format!("{web_ip}:80"), format!("[{web_ip6}]:80")] {
        for kind in ["tcp", "udp"] {
            let out = stdout(&lab(
                &name,
                &[
                    "exec", "ext", "--", BIN, "lab", "client", kind, "--target", &target,
                    "--count", "3",
                ],
            ));
            let summary: serde_json::Value =
                serde_json::from_str(out.lines().last().unwrap()).unwrap();
            assert_eq!(summary["backends"]["web"], 3, "{kind} {target}: {out}");
        }
    }
    let connected = stdout(&lab(
        &name,
        &[
            "exec",
            "ext",
            "--",
            BIN,
            "lab",
            "client",
            "udp",
            "--connected",
            "--target",
            &format!("{web_ip}:80"),
        ],
    ));
    assert!(connected.contains("\"udp-connected-summary\""), "{connected}");
    let upload = stdout(&lab(
        &name,
        &[
            "exec",
            "ext",
            "--",
            BIN,
            "lab",
            "client",
            "upload",
            "--bytes",
            "300000",
            "--target",
            &format!("{web_ip}:80"),
        ],
    ));
    let upload: serde_json::Value = serde_json::from_str(upload.trim()).unwrap();
    assert_eq!(upload["backend"], "web");
    let latency = stdout(&lab(
        &name,
        &[
            "exec",
            "ext",
            "--",
            BIN,
            "lab",
            "client",
            "latency",
            "--count",
            "5",
            "--target",
            &format!("{web_ip}:80"),
            "--peer",
            &format!("[{web_ip6}]:80"),
        ],
    ));
    let lines: Vec<serde_json::Value> =
        latency.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        (lines[0]["connections"].as_u64(), lines[1]["connections"].as_u64()),
        (Some(5), Some(5))
    );
    assert!(lines[2]["p50_ratio"].as_f64().unwrap() > 0.0, "{latency}");

    // A long-lived connection held until the test closes the client's stdin.
    let mut hold = Command::new(BIN)
        .args(["lab", "--lab", &name, "exec", "ext", "--", BIN, "lab", "client", "hold"])
        .args(["--until-stdin-closes", "--interval-ms", "20", "--target", &format!("{web_ip}:80")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(hold.stdin.take());
    let held = hold.wait_with_output().unwrap();
    let held: serde_json::Value = serde_json::from_str(stdout(&held).trim()).unwrap();
    assert!(held["pings"].as_u64().unwrap() >= 3, "{held}");
    assert_eq!(held["reset"], false);

    // A failing client exits non-zero and says why.
    let refused = lab(
        &name,
        &["exec", "ext", "--", BIN, "lab", "client", "tcp", "--target", &format!("{web_ip}:81")],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).contains("connection refused"));

    // exec becomes the command: same pid, so a test can signal it directly.
    let mut sleeper = Command::new(BIN)
        .args(["lab", "--lab", &name, "exec", "web", "--", "sleep", "100"])
        .spawn()
        .unwrap();
    let is_sleep = || {
        std::fs::read_to_string(format!("/proc/{}/comm", sleeper.id()))
            .is_ok_and(|c| c.trim() == "sleep")
    };
    assert!(switchyard_lab::wait_until(std::time::Duration::from_secs(5), is_sleep));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();

    // exec passes the exit code through; an unknown member is an error naming it.
    assert_eq!(lab(&name, &["exec", "n2", "--", "sh", "-c", "exit 7"]).status.code(), Some(7));
    let unknown = lab(&name, &["exec", "nobody", "--", "true"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nobody"));

    stdout(&lab(&name, &["down"]));
    // Down killed the server (it ran in the node's cgroup).
    server.wait().unwrap();
    assert!(!Path::new("/run/netns").join(format!("{name}-web")).exists());
    assert!(!Path::new(switchyard_lab::DEFAULT_CGROUP_ROOT).join(&name).exists());
    assert!(!Path::new(switchyard_lab::DEFAULT_RUN_DIR).join(&name).exists());
    assert!(!lab(&name, &["status"]).status.success());
    std::fs::remove_file(topology).unwrap();
}

/// docs/lab.md "Lab by hand" (issue 21: nothing said how to run agents in a lab without `demo`):
/// the block runs as written, under a lab name of the test's own, and every client it runs
/// (ClusterIP from a pod, LoadBalancer IP and NodePort from outside) reaches both backends.
#[test]
fn lab_by_hand_as_documented() {
    if !switchyard_lab::require_root("lab_by_hand_as_documented") {
        return;
    }
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/lab.md")).unwrap();
    let section = &doc[doc.find("## Lab by hand").expect("the section")..];
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let script = &section[start..start + section[start..].find("\n```").unwrap()];
    let name = format!("sy-hand-{:x}", std::process::id());
    let _down = DownOnDrop(name.clone());
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("LAB", &name)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summaries: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|line| line.contains("-summary\""))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let targets: Vec<&str> = summaries.iter().map(|s| s["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["10.96.0.10:80", "10.96.100.10:80", "10.100.1.2:30080"], "{stdout}");
    for summary in &summaries {
        assert_eq!(summary["errors"], serde_json::json!({}), "{summary}");
        let backends = summary["backends"].as_object().unwrap();
        assert!(backends.contains_key("pod2a") && backends.contains_key("pod3a"), "{summary}");
    }
    // The block took its lab down and removed its directory.
    assert!(!Path::new(&format!("/tmp/{name}")).exists());
    assert!(!Path::new(&format!("/run/netns/{name}-fabric")).exists());
}
