//! End to end in a lab (root): `switchyard agent` on node1 serves ClusterIPs to node1's pods
//! from a manifest directory — TCP, UDP and IPv6 to every backend, ECONNREFUSED for an empty
//! Service, an endpoint removed while running, a restart under a long-lived connection without a
//! reset, and `--cleanup` removing everything (and unmounting a bpffs the agent mounted).

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
    // SIGTERM stops at once (agent_health_e2e counts the grace).
    command.args(["--shutdown-grace-seconds", "0"]);
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

    // The state maps are sized from the state (issue 20): a handful of Services get the
    // floor, not the configured maxima (65,536 frontends, 1,048,576 slots).
    let node = lab.node("node1").unwrap();
    assert_eq!(max_entries(&node.bpf_dir, "sy_frontends"), 1024);
    assert_eq!(max_entries(&node.bpf_dir, "sy_slots"), 4096);
    assert_eq!(max_entries(&node.bpf_dir, "sy_backends"), 4096);

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
    // The restarted agent finds more Services than the pinned maps hold twice over: it
    // migrates them to larger ones, under the live connection.
    write(&dir.join("many.yaml"), &many_services("many", 97, 600));
    let agent = start_agent(&lab, &dir);
    assert!(
        wait_until(Duration::from_secs(20), || frontends_programmed(&node.bpf_dir) > 600),
        "the 600 Services never reached the maps"
    );
    let programmed = u32::try_from(frontends_programmed(&node.bpf_dir)).unwrap();
    assert_eq!(max_entries(&node.bpf_dir, "sy_frontends"), 2 * programmed);
    // The running agent outgrows them too: it migrates again and programs what the full
    // map refused, still under the live connection.
    write(&dir.join("more.yaml"), &many_services("more", 98, 700));
    assert!(
        wait_until(Duration::from_secs(20), || {
            frontends_programmed(&node.bpf_dir) == u64::from(programmed) + 700
        }),
        "the 700 more Services never reached the maps"
    );
    assert_eq!(max_entries(&node.bpf_dir, "sy_frontends"), 2 * (programmed + 700));
    std::thread::sleep(Duration::from_millis(500));
    let out = client(&lab, "tcp", "10.96.0.10:80", 10);
    assert_eq!(out.summary.successes(), 10, "after restart: {:?}", out.summary);
    hold.stdin.take().unwrap().write_all(b"").unwrap();
    let output = hold.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&output.stdout);
    let report: HoldReport = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert!(!report.reset && report.pings > 10, "{report:?}");

    // --cleanup removes programs and maps: the ClusterIP is no longer translated.
    stop(agent);
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

/// `count` ClusterIP Services `<name>-<i>` on `10.<octet>.0.0/16`, one TCP port each, no
/// endpoints (one frontend each).
fn many_services(name: &str, octet: u8, count: u32) -> String {
    let mut out = String::new();
    for i in 0..count {
        let ip = format!("10.{octet}.{}.{}", i / 200, i % 200 + 1);
        out.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}-{i}, namespace: default}}\n\
             spec:\n  clusterIP: {ip}\n  clusterIPs: [\"{ip}\"]\n  ports:\n  \
             - {{name: tcp, port: 80, protocol: TCP}}\n---\n"
        ));
    }
    out
}

/// max_entries of the map pinned as `name`.
fn max_entries(bpf_dir: &Path, name: &str) -> u32 {
    let maps = switchyard_bpf::Maps::open_pinned(bpf_dir).unwrap();
    let fill = switchyard_observe::kernel::map_fill(&maps, bpf_dir).unwrap();
    fill.iter().find(|m| m.name == name).unwrap().max_entries
}

/// Frontend entries in the pinned `sy_frontends`.
fn frontends_programmed(bpf_dir: &Path) -> u64 {
    let Ok(maps) = switchyard_bpf::Maps::open_pinned(bpf_dir) else { return 0 };
    maps.frontends.keys().count() as u64
}

/// Whether `path` is a mount point (listed in /proc/self/mountinfo).
fn is_mount_point(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_string_lossy();
    mountinfo.lines().any(|line| line.split(' ').nth(4) == Some(&*path))
}

/// Unmounts what the test mounted if the test failed before `--cleanup` did.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        while is_mount_point(&self.0) {
            let status = Command::new("umount").arg("-l").arg(&self.0).status();
            if !status.is_ok_and(|s| s.success()) {
                break;
            }
        }
    }
}

/// Runs an agent on node1 with `bpf_dir` until it attached its programs, stops it, and runs
/// `agent --cleanup` on `bpf_dir`; returns cleanup's standard error.
fn run_and_clean_up(lab: &Lab, scratch: &Path, bpf_dir: &Path) -> String {
    let node = lab.node("node1").unwrap();
    let manifests = scratch.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let mut command = Command::new(BIN);
    command.args(["agent", "--manifests"]).arg(&manifests);
    command.args(["--node-name", "node1", "--cgroup"]).arg(&node.cgroup);
    command.arg("--bpf-dir").arg(bpf_dir);
    command.arg("--api-socket").arg(scratch.join("agent.sock"));
    command.args(["--shutdown-grace-seconds", "0"]);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let agent = lab.spawn_in("node1", command).unwrap();
    let ready = wait_until(Duration::from_secs(20), || bpf_dir.join("links").exists());
    stop(agent);
    assert!(ready, "the agent never attached its programs under {}", bpf_dir.display());
    assert!(is_mount_point(bpf_dir), "no bpffs on {}", bpf_dir.display());
    let output =
        Command::new(BIN).args(["agent", "--cleanup", "--bpf-dir"]).arg(bpf_dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert!(!bpf_dir.join("links").exists() && !bpf_dir.join("sy_frontends").exists(), "{stderr}");
    stderr
}

/// Issue 21: an agent whose --bpf-dir is not on a bpffs mounts one there, and `--cleanup`
/// unmounts it (it stayed mounted before); a bpffs someone else mounted (the host, an init
/// container: here the test) stays mounted after `--cleanup`.
#[test]
fn cleanup_unmounts_the_bpffs_the_agent_mounted_and_only_that() {
    if !switchyard_lab::require_root("cleanup_unmounts_the_bpffs_the_agent_mounted") {
        return;
    }
    let topology = Topology::from_yaml("nodes:\n  - name: node1\n", "inline").unwrap();
    let lab = Lab::up(&topology).unwrap();
    let scratch = tempfile::tempdir().unwrap();

    let agents = scratch.path().join("mounted-by-agent");
    let _unmount = Unmount(agents.clone());
    let stderr = run_and_clean_up(&lab, scratch.path(), &agents);
    assert!(!is_mount_point(&agents), "still mounted after --cleanup: {stderr}");
    assert!(std::fs::read_dir(&agents).unwrap().next().is_none(), "left behind: {stderr}");

    let hosts = scratch.path().join("mounted-by-host");
    std::fs::create_dir(&hosts).unwrap();
    let _unmount_hosts = Unmount(hosts.clone());
    let status = Command::new("mount").args(["-t", "bpf", "bpffs"]).arg(&hosts).status().unwrap();
    assert!(status.success());
    let stderr = run_and_clean_up(&lab, scratch.path(), &hosts);
    assert!(is_mount_point(&hosts), "a bpffs the agent did not mount was unmounted: {stderr}");
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
