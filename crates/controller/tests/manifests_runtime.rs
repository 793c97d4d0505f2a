//! The standalone controller on a manifest directory: what it allocates, every reader of the
//! directory sees as `status.loadBalancer.ingress`; a restart moves nothing; deletions release.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use switchyard_controller::runtime::manifests;
use switchyard_k8s::manifest::{ManifestDirectory, STATUS_FILE};
use switchyard_model::ObjectKey;
use tokio::sync::watch;

const POOL: &str = "apiVersion: switchyard.io/v1alpha1
kind: IPPool
metadata:
  name: lab
spec:
  addresses: [192.0.2.10-192.0.2.11]
";

fn load_balancer(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: demo
  creationTimestamp: \"2026-01-01T00:00:0{}Z\"
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.{}
  ports:
  - port: 80
",
        name.len() % 10,
        name.len()
    )
}

/// The ingress IPs a node agent reading `dir` sees for `demo/name`.
fn seen_by_agents(dir: &Path, name: &str) -> Vec<String> {
    let state = ManifestDirectory::load(dir).state();
    let Some(service) = state.services.get(&ObjectKey::new("demo", name)) else {
        return Vec::new();
    };
    let ingress = service.status.clone().and_then(|s| s.load_balancer).and_then(|lb| lb.ingress);
    ingress.into_iter().flatten().filter_map(|i| i.ip).collect()
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start(dir: &Path) -> Running {
    let (stop, stopped) = watch::channel(false);
    let dir = dir.to_owned();
    let task = tokio::spawn(async move { manifests::run(dir, None, stopped).await.unwrap() });
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), self.task).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn allocations_reach_every_reader_of_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pool.yaml"), POOL).unwrap();
    std::fs::write(dir.path().join("a.yaml"), load_balancer("a")).unwrap();
    std::fs::write(dir.path().join("bb.yaml"), load_balancer("bb")).unwrap();
    let controller = start(dir.path());
    eventually("both Services have addresses", || {
        seen_by_agents(dir.path(), "a") == ["192.0.2.10"]
            && seen_by_agents(dir.path(), "bb") == ["192.0.2.11"]
    })
    .await;
    let status = std::fs::read_to_string(dir.path().join(STATUS_FILE)).unwrap();
    assert!(
        status.contains("switchyard.io/IPAllocated") && status.contains("\"usedIPv4\": 2"),
        "{status}"
    );

    // A third waits; deleting a holder's manifest hands its address on.
    std::fs::write(dir.path().join("ccc.yaml"), load_balancer("ccc")).unwrap();
    eventually("the third is told the pool is full", || {
        std::fs::read_to_string(dir.path().join(STATUS_FILE)).unwrap().contains("PoolExhausted")
    })
    .await;
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    eventually("the freed address moves to the waiting Service", || {
        seen_by_agents(dir.path(), "ccc") == ["192.0.2.10"]
    })
    .await;
    controller.stop().await;

    // A restart reads the status back through the directory and changes nothing.
    let before = std::fs::read(dir.path().join(STATUS_FILE)).unwrap();
    let controller = start(dir.path());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        std::fs::read(dir.path().join(STATUS_FILE)).unwrap(),
        before,
        "a restart rewrote the status"
    );
    assert_eq!(seen_by_agents(dir.path(), "bb"), ["192.0.2.11"]);
    controller.stop().await;
}

#[tokio::test]
async fn namespace_selectors_read_the_directorys_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pool.yaml"), POOL).unwrap();
    // First in name order, but only for namespaces labelled team=red.
    let red_pool = "apiVersion: switchyard.io/v1alpha1
kind: IPPool
metadata:
  name: a-red
spec:
  addresses: [192.0.2.20-192.0.2.21]
  namespaceSelector:
    matchLabels:
      team: red
";
    std::fs::write(dir.path().join("red-pool.yaml"), red_pool).unwrap();
    let namespace = |team: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n  labels:\n    team: {team}\n"
        )
    };
    std::fs::write(dir.path().join("namespace.yaml"), namespace("red")).unwrap();
    std::fs::write(dir.path().join("a.yaml"), load_balancer("a")).unwrap();
    let elsewhere = load_balancer("b").replace("namespace: demo", "namespace: other");
    std::fs::write(dir.path().join("b.yaml"), elsewhere).unwrap();
    let controller = start(dir.path());
    eventually("demo/a gets an address of the red pool", || {
        seen_by_agents(dir.path(), "a") == ["192.0.2.20"]
    })
    .await;
    let other = || {
        let state = ManifestDirectory::load(dir.path()).state();
        let service = state.services.get(&ObjectKey::new("other", "b")).cloned();
        let ingress = service.and_then(|s| s.status?.load_balancer?.ingress);
        ingress.into_iter().flatten().filter_map(|i| i.ip).collect::<Vec<_>>()
    };
    eventually("other/b (no Namespace object, no labels) gets one of the lab pool", || {
        other() == ["192.0.2.10"]
    })
    .await;

    // Relabelled: new Services in demo no longer match; a's address stays.
    std::fs::write(dir.path().join("namespace.yaml"), namespace("blue")).unwrap();
    std::fs::write(dir.path().join("cc.yaml"), load_balancer("cc")).unwrap();
    eventually("demo/cc gets an address of the lab pool", || {
        seen_by_agents(dir.path(), "cc") == ["192.0.2.11"]
    })
    .await;
    assert_eq!(seen_by_agents(dir.path(), "a"), ["192.0.2.20"], "a held address never moves");
    controller.stop().await;
}
