//! `switchyard controller --manifests DIR`, `ipam` and `services`, run as a user runs them: what
//! the standalone controller allocates shows up in every tool reading the directory.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use switchyard_k8s::manifest::ManifestDirectory;
use switchyard_testing::KillOnDrop;
use switchyard_testing::fake_api::{FakeApi, Resource};

const MANIFESTS: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: demo
  labels:
    team: red
---
apiVersion: switchyard.io/v1alpha1
kind: IPPool
metadata:
  name: lab
spec:
  addresses: [192.0.2.0/30]
  avoidBuggyIPs: true
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  ports:
  - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: demo
  annotations:
    switchyard.io/load-balancer-ips: 192.0.2.9
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.11
  ports:
  - port: 443
";

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard")).args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn standalone_allocations_show_in_ipam_and_services() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), MANIFESTS).unwrap();

    // validate reads the Namespace (for IPPool namespaceSelector) rather than ignoring it.
    let validate = switchyard(&["validate", arg(dir.path())]);
    let summary = format!("{}{}", text(&validate), String::from_utf8_lossy(&validate.stderr));
    assert!(validate.status.success(), "{summary}");
    assert!(summary.contains("1 Namespace") && !summary.contains("ignored"), "{summary}");

    // Before any controller ran, ipam says so and shows what it would do.
    let before = text(&switchyard(&["ipam", arg(dir.path())]));
    assert!(before.contains("no controller has run here"), "{before}");

    let controller = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["controller", "--manifests", arg(dir.path())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status = dir.path().join(".switchyard-status.json");
    let start = Instant::now();
    while !std::fs::read_to_string(&status).is_ok_and(|s| s.contains("192.0.2.1")) {
        assert!(start.elapsed() < Duration::from_secs(15), "no allocation written");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(controller);

    let ipam = text(&switchyard(&["ipam", arg(dir.path())]));
    assert!(!ipam.contains("no controller has run here"), "{ipam}");
    let row =
        |start: &str| ipam.lines().find(|l| l.starts_with(start)).unwrap_or_default().to_owned();
    let pool_row: Vec<String> = row("lab").split_whitespace().map(str::to_owned).collect();
    assert_eq!(pool_row[..4], ["lab", "yes", "1", "2"], "{ipam}");
    assert!(row("192.0.2.1").contains("demo/web"), "{ipam}");
    let refused = row("demo/api");
    assert!(refused.contains("RequestedNotInPool") && refused.contains("192.0.2.9"), "{ipam}");

    let services = text(&switchyard(&["services", arg(dir.path())]));
    assert!(services.contains("192.0.2.1"), "the LoadBalancer address is programmed:\n{services}");
}

/// `ipam --kubeconfig` shows the same as `ipam DIR` for the same objects, and reads held
/// addresses from the Services' status on the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipam_reads_the_api_server_like_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), MANIFESTS).unwrap();
    let fake = FakeApi::start().await;
    let state = ManifestDirectory::load(dir.path()).state();
    for namespace in state.namespaces.values() {
        fake.put(serde_json::to_value(namespace).unwrap());
    }
    for pool in state.ip_pools.values() {
        fake.put(serde_json::to_value(pool).unwrap());
    }
    for service in state.services.values() {
        fake.put(serde_json::to_value(service).unwrap());
    }
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            switchyard(&args)
        })
    };
    let from_dir = run(vec!["ipam".into(), arg(dir.path()).into()]).await.unwrap();
    let ipam =
        |kubeconfig: &Path| run(vec!["ipam".into(), "--kubeconfig".into(), arg(kubeconfig).into()]);
    let from_api = ipam(&kubeconfig).await.unwrap();
    assert!(from_api.status.success(), "{}", String::from_utf8_lossy(&from_api.stderr));
    let tables = |output: &Output| {
        let text = text(output);
        text[text.find("POOL").unwrap()..].to_owned()
    };
    assert_eq!(tables(&from_api), tables(&from_dir));

    // An address the Service holds in its status is shown as held.
    let mut web = fake.get(Resource::Services, "demo", "web").unwrap();
    web["status"] =
        serde_json::json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.2", "ipMode": "VIP"}]}});
    fake.put(web);
    let held = text(&ipam(&kubeconfig).await.unwrap());
    let row = held.lines().find(|l| l.starts_with("192.0.2.2")).unwrap_or_default();
    assert!(row.contains("lab") && row.contains("demo/web"), "{held}");
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), MANIFESTS).unwrap();
    let mut controller = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["controller", "--manifests", arg(dir.path())])
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = dir.path().join(".switchyard-status.json");
    let start = Instant::now();
    while !std::fs::read_to_string(&status).is_ok_and(|s| s.contains("192.0.2.1")) {
        assert!(start.elapsed() < Duration::from_secs(15), "no allocation written");
        std::thread::sleep(Duration::from_millis(50));
    }
    controller.0.kill().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut controller.0.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("INFO"), "the controller logged nothing: {log:?}");
    assert!(!log.contains('\x1b'), "colour codes in a piped log: {log:?}");
}
