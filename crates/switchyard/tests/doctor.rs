//! `switchyard doctor` on this machine: it passes as root, and each hidden prerequisite (a cgroup
//! v2 mount unmounted in a mount namespace of the test's own, a missing device, a bad --cgroup,
//! an unreachable API server) fails with a clear line; kube-proxy rules in a network namespace
//! of the test's own give a warning that names them.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// `doctor` with a bpffs directory and API socket of the test's own, plus `args`.
fn doctor(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("doctor")
        .arg("--bpf-dir")
        .arg(dir.join("bpf"))
        .arg("--api-socket")
        .arg(dir.join("agent.sock"))
        .args(args);
    command
}

fn text(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The line of `check` in the table output.
fn line<'a>(stdout: &'a str, check: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| {
            line.split_whitespace().skip(1).collect::<Vec<_>>().join(" ").starts_with(check)
        })
        .unwrap_or_else(|| panic!("no {check} line in\n{stdout}"))
}

fn cgroup2_mounts() -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    switchyard_doctor::parse::mountinfo(&mountinfo)
        .into_iter()
        .filter(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point.display().to_string())
        .collect()
}

#[test]
fn doctor_passes_on_this_machine_as_root() {
    if !switchyard_lab::require_root("doctor_passes_on_this_machine_as_root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cgroup = cgroup2_mounts().into_iter().next().expect("this machine mounts cgroup v2");
    let output = doctor(dir.path(), &["--cgroup", &cgroup, "-o", "json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let failed: Vec<_> = findings.iter().filter(|f| f["verdict"] == "fail").collect();
    assert!(failed.is_empty(), "failures on this machine: {failed:#?}");
    assert!(output.status.success(), "{output:?}");
    for check in ["kernel", "bpf", "cgroup-v2", "tc", "cilium", "agent"] {
        let finding = findings.iter().find(|f| f["check"] == check).unwrap();
        assert_eq!(finding["verdict"], "ok", "{finding}");
    }

    let table = doctor(dir.path(), &[]).output().unwrap();
    assert!(table.status.success(), "{table:?}");
    assert!(text(&table).contains("no failures: Switchyard can run on this node"), "{table:?}");
    let yaml = doctor(dir.path(), &["-o", "yaml"]).output().unwrap();
    assert!(text(&yaml).contains("check: kernel"), "{yaml:?}");
}

#[test]
fn doctor_fails_when_cgroup_v2_is_hidden_in_a_mount_namespace() {
    if !switchyard_lab::require_root("doctor_fails_when_cgroup_v2_is_hidden_in_a_mount_namespace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mounts = cgroup2_mounts();
    assert!(!mounts.is_empty(), "this machine mounts cgroup v2");
    // The unmounts happen in the new, private mount namespace only; the host keeps its mounts.
    let script =
        format!("for m in {}; do umount -l \"$m\" || exit 99; done; exec \"$@\"", mounts.join(" "));
    let doctor = doctor(dir.path(), &[]);
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(doctor.get_program())
        .args(doctor.get_args())
        .output()
        .unwrap();
    let stdout = text(&output);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let cgroup = line(&stdout, "cgroup-v2");
    assert!(cgroup.starts_with("fail"), "{stdout}");
    assert!(cgroup.contains("cgroup v2 is not mounted"), "{stdout}");
    assert!(stdout.contains("mount -t cgroup2 none /sys/fs/cgroup"), "says what to do: {stdout}");
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("fail")).collect();
    assert_eq!(failures.len(), 1, "only the hidden prerequisite fails: {stdout}");
    assert_eq!(cgroup2_mounts(), mounts, "the host's mounts are untouched");
}

#[test]
fn doctor_fails_on_a_missing_device_and_a_cgroup_flag_off_cgroup_v2() {
    let dir = tempfile::tempdir().unwrap();
    let not_cgroup = dir.path().display().to_string();
    let output = doctor(dir.path(), &["--devices", "sy-no-such0", "--cgroup", &not_cgroup])
        .output()
        .unwrap();
    let stdout = text(&output);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let device = line(&stdout, "device sy-no-such0");
    assert!(device.starts_with("fail") && device.contains("no device \"sy-no-such0\""), "{stdout}");
    let cgroup = line(&stdout, "cgroup-v2");
    assert!(cgroup.starts_with("fail"), "{stdout}");
    assert!(cgroup.contains(&format!("--cgroup {not_cgroup} is not a cgroup v2 directory")));
}

/// Deletes the named network namespace, also when the test fails half-way.
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn doctor_warns_about_kube_proxy_rules_in_its_network_namespace() {
    if !switchyard_lab::require_root("doctor_warns_about_kube_proxy_rules_in_its_network_namespace")
    {
        return;
    }
    let name = format!("sy-doctor-{:x}", std::process::id());
    assert!(Command::new("ip").args(["netns", "add", &name]).status().unwrap().success());
    let _guard = NetnsGuard(name.clone());
    let netns = format!("--net=/run/netns/{name}");
    let in_netns = |program: &str, args: &[&str]| {
        Command::new("nsenter").arg(&netns).arg(program).args(args).output().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let doctor = doctor(dir.path(), &[]);
    let args: Vec<&str> = doctor.get_args().map(|a| a.to_str().unwrap()).collect();

    let clean = in_netns(BIN, &args);
    assert!(line(&text(&clean), "kube-proxy").starts_with("ok"), "{clean:?}");

    for (table, chain) in [("nat", "KUBE-SERVICES"), ("filter", "KUBE-FORWARD")] {
        let added = in_netns("iptables", &["-t", table, "-N", chain]);
        assert!(added.status.success(), "{added:?}");
    }
    let kubelet = in_netns("iptables", &["-t", "filter", "-N", "KUBE-FIREWALL"]);
    assert!(kubelet.status.success(), "{kubelet:?}");
    let output = in_netns(BIN, &args);
    let stdout = text(&output);
    let kube_proxy = line(&stdout, "kube-proxy");
    assert!(kube_proxy.starts_with("warn"), "{stdout}");
    assert!(kube_proxy.contains("KUBE-FORWARD, KUBE-SERVICES"), "{stdout}");
    assert!(!kube_proxy.contains("KUBE-FIREWALL"), "the kubelet's chain is not kube-proxy's");
    assert!(stdout.contains("kube-proxy --cleanup"), "says what to do: {stdout}");
}

/// A kubeconfig for `server` with no credentials.
fn kubeconfig(dir: &Path, server: &str) -> String {
    let path = dir.join("kubeconfig");
    let config = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  \
         cluster:\n    server: {server}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    \
         user: test\nusers:\n- name: test\n  user: {{}}\n"
    );
    std::fs::write(&path, config).unwrap();
    path.display().to_string()
}

#[test]
fn doctor_checks_the_api_server_of_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    // A one-request API server on loopback: GET /version.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let answer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request_line = String::new();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        reader.read_line(&mut request_line).unwrap();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                break;
            }
        }
        let body = r#"{"major":"1","minor":"34","gitVersion":"v1.34.0","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":"linux/amd64"}"#;
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        request_line
    });
    let config = kubeconfig(dir.path(), &server);
    let output = doctor(dir.path(), &["--kubeconfig", &config]).output().unwrap();
    let stdout = text(&output);
    assert!(answer.join().unwrap().starts_with("GET /version"), "asked for the version");
    let api = line(&stdout, "api-server");
    assert!(api.starts_with("ok") && api.contains("v1.34.0"), "{stdout}");

    // Nothing listens on that port any more.
    let config = kubeconfig(dir.path(), &server);
    let output = doctor(dir.path(), &["--kubeconfig", &config]).output().unwrap();
    let stdout = text(&output);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let api = line(&stdout, "api-server");
    assert!(api.starts_with("fail") && api.contains("no answer with"), "{stdout}");
}
