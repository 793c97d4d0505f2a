//! End to end in a lab (root): `switchyard agent` on node1 serves ClusterIPs to node1's pods
//! from a manifest directory — TCP, UDP and IPv6 to every backend, ECONNREFUSED for an empty
//! Service, an endpoint removed while running, a restart under a long-lived connection without a
//! reset, and `--cleanup` removing everything.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchyard_lab::tools::clients::{ClientOutput, HoldReport};
use switchyard_lab::{Lab, Topology, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn manifests(lab: &Lab, backends: &[&str]) -> String {
    let mut v4 = String::new();
    let mut v6 = String::new();
    for name in backends {
        let pod = lab.pod(name).unwrap();
        let endpoint = |ip: String| {
            format!(
                "- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n  nodeName: {}\n",
                pod.node
            )
        };
        v4.push_str(&endpoint(pod.ipv4.to_string()));
        v6.push_str(&endpoint(pod.ipv6.to_string()));
    }
    let ports = "ports:\n- {name: tcp, port: 8080, protocol: TCP}\n- {name: udp, port: 8080, protocol: UDP}\n";
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: ["10.96.0.10", "fd00:96::10"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports:
  - {{name: tcp, port: 80, targetPort: 8080, protocol: TCP}}
  - {{name: udp, port: 80, targetPort: 8080, protocol: UDP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-v4, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
{ports}endpoints:
{v4}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-v6, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv6
{ports}endpoints:
{v6}---
apiVersion: v1
kind: Service
metadata: {{name: empty, namespace: default}}
spec:
  clusterIP: 10.96.0.12
  clusterIPs: ["10.96.0.12"]
  ports:
  - {{name: tcp, port: 80, targetPort: 8080, protocol: TCP}}
"#
    )
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn start_agent(lab: &Lab, dir: &Path) -> Child {
    let node = lab.node("node1").unwrap();
    let mut command = Command::new(BIN);
    command.args(["agent", "--manifests"]).arg(dir);
    command.args(["--node-name", "node1", "--cgroup"]).arg(&node.cgroup);
    command.arg("--bpf-dir").arg(&node.bpf_dir);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    lab.spawn_in("node1", command).unwrap()
}

/// SIGTERM to an agent we started (by pid), then wait for it.
fn stop(mut child: Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

fn client(lab: &Lab, kind: &str, target: &str, count: usize) -> ClientOutput {
    let mut command = Command::new(BIN);
    command.args(["lab", "client", kind, "--target", target, "--count", &count.to_string()]);
    let output = lab.output_in("pod1a", command).unwrap();
    ClientOutput::parse(&String::from_utf8_lossy(&output.stdout)).unwrap()
}

#[test]
fn agent_serves_cluster_ips_follows_changes_survives_restart_and_cleans_up() {
    if !switchyard_lab::require_root("agent_serves_cluster_ips") {
        return;
    }
    let lab = Lab::up(&Topology::default()).unwrap();
    let backends = ["pod2a", "pod2b", "pod3a"];
    let mut servers = Vec::new();
    for name in backends {
        let mut command = Command::new(BIN);
        command.args(["lab", "serve", "echo", "--port", "8080", "--name", name]);
        command.stdout(Stdio::null());
        servers.push(lab.spawn_in(name, command).unwrap());
    }
    let dir = std::env::temp_dir().join(format!("sy-agent-e2e-{}", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup_dir = RemoveDir(dir.clone());
    let file = dir.join("web.yaml");
    write(&file, &manifests(&lab, &backends));

    let agent = start_agent(&lab, &dir);
    assert!(
        wait_until(Duration::from_secs(20), || client(&lab, "tcp", "10.96.0.10:80", 1)
            .summary
            .successes()
            == 1),
        "the ClusterIP never answered"
    );

    // Every backend gets traffic, over TCP and UDP, IPv4 and IPv6; replies come from the
    // service address (the UDP client checks the reply's source).
    for (kind, target) in [
        ("tcp", "10.96.0.10:80"),
        ("udp", "10.96.0.10:80"),
        ("tcp", "[fd00:96::10]:80"),
        ("udp", "[fd00:96::10]:80"),
    ] {
        let out = client(&lab, kind, target, 60);
        assert!(out.summary.errors.is_empty(), "{kind} {target}: {:?}", out.summary);
        for name in backends {
            assert!(
                out.summary.backends.get(name).copied().unwrap_or(0) > 0,
                "{kind} {target}: {name} got nothing: {:?}",
                out.summary
            );
        }
    }

    // An empty Service refuses at once.
    let out = client(&lab, "tcp", "10.96.0.12:80", 3);
    assert_eq!(out.summary.errors.get("connection refused"), Some(&3), "{:?}", out.summary);

    // An endpoint removed while running disappears from the choices.
    write(&file, &manifests(&lab, &backends[..2]));
    assert!(
        wait_until(Duration::from_secs(10), || {
            let out = client(&lab, "tcp", "10.96.0.10:80", 20);
            out.summary.successes() == 20 && !out.summary.backends.contains_key("pod3a")
        }),
        "pod3a still chosen after its removal"
    );

    // A restart under a long-lived connection: no reset.
    let mut command = Command::new(BIN);
    command.args([
        "lab",
        "client",
        "hold",
        "--target",
        "10.96.0.10:80",
        "--interval-ms",
        "20",
        "--until-stdin-closes",
    ]);
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut hold = lab.spawn_in("pod1a", command).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop(agent);
    let agent = start_agent(&lab, &dir);
    std::thread::sleep(Duration::from_millis(1500));
    let out = client(&lab, "tcp", "10.96.0.10:80", 10);
    assert_eq!(out.summary.successes(), 10, "after restart: {:?}", out.summary);
    hold.stdin.take().unwrap().write_all(b"").unwrap();
    let output = hold.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&output.stdout);
    let report: HoldReport = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert!(!report.reset && report.pings > 10, "{report:?}");

    // --cleanup removes programs and maps: the ClusterIP is no longer translated.
    stop(agent);
    let node = lab.node("node1").unwrap();
    let mut command = Command::new(BIN);
    command.args(["agent", "--cleanup", "--bpf-dir"]).arg(&node.bpf_dir);
    assert!(command.status().unwrap().success());
    assert!(!node.bpf_dir.join("links").exists());
    assert!(!node.bpf_dir.join("sy_frontends").exists());
    // Nothing left there: a second --cleanup (or one with a wrong --bpf-dir) says so and fails.
    let mut again = Command::new(BIN);
    let output =
        again.args(["agent", "--cleanup", "--bpf-dir"]).arg(&node.bpf_dir).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nothing to clean up in") && stderr.contains("wrong --bpf-dir"),
        "{stderr}"
    );
    let out = client(&lab, "tcp", "10.96.0.10:80", 1);
    assert_eq!(out.summary.successes(), 0, "{:?}", out.summary);
    for mut server in servers {
        let _ = server.kill();
        let _ = server.wait();
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
