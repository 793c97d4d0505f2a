//! `switchyard controller --manifests DIR`, `ipam` and `services`, run as a user runs them: what
//! the standalone controller allocates shows up in every tool reading the directory.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use switchyard_testing::KillOnDrop;

const MANIFESTS: &str = "apiVersion: switchyard.io/v1alpha1
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
