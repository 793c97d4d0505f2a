//! `switchyard agent --kubeconfig` against a fake API server (real HTTP list/watch): nothing is
//! programmed before the first complete list, the Service then appears in the pinned maps,
//! /healthz reports the sync, and an EndpointSlice deleted while the watch was down leaves the
//! maps after the relist. Its node name, kubeconfig and addresses come from a kube-proxy
//! configuration file (`--config`); the metrics port serves `/metrics` only; `/readyz` waits for
//! the first sync. Privileged: BPF maps and programs on a bpffs and cgroup of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_bpf::Maps;
use switchyard_bpf::abi::PROTO_TCP;
use switchyard_testing::fake_api::{FakeApi, Resource, node, service, slice};
use switchyard_testing::{BpfDir, Cgroup, KillOnDrop};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn healthz(address: SocketAddr) -> Option<(u16, serde_json::Value)> {
    let (status, body) = get(address, "/healthz").await?;
    Some((status, serde_json::from_str(&body).ok()?))
}

/// Status and body of `GET path`.
async fn get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    Some((status, response.split_once("\r\n\r\n")?.1.to_owned()))
}

/// The backend count the pinned maps hold for 10.96.0.10:80/TCP (`None`: no frontend).
fn web_backends(bpf_dir: &Path) -> Option<u32> {
    let maps = Maps::open_pinned(bpf_dir).ok()?;
    let found = maps.resolve("10.96.0.10:80".parse().unwrap(), PROTO_TCP).ok()??;
    Some(found.1.backend_count)
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_programs_only_after_the_first_list_and_drops_slices_deleted_during_an_outage() {
    if !switchyard_lab::require_root("agent_programs_only_after_the_first_list") {
        return;
    }
    let api = FakeApi::start().await;
    api.put(service("default", "web", json!({}), "10.96.0.10", 80));
    api.put(slice("default", "web-abc", "web", json!({}), &["10.0.0.1", "10.0.0.2"]));
    api.put(slice("default", "web-def", "web", json!({}), &["10.0.0.3"]));
    api.put(node("node-a", "192.168.1.10", "zone-1"));
    api.hold(Resource::EndpointSlices);

    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\n",
            api.addr
        ),
    )
    .unwrap();
    let bpf = BpfDir::new("agent-kube");
    let cgroup = Cgroup::new("agent-kube");
    let health: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // kube-proxy's file: what applies replaces the flags; the rest is ignored (and logged).
    let config = work.path().join("kube-proxy.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n\
             hostnameOverride: node-a\nclientConnection:\n  kubeconfig: {}\n  qps: 5\n\
             healthzBindAddress: {health}\nmetricsBindAddress: {metrics}\nmode: iptables\n",
            kubeconfig.display()
        ),
    )
    .unwrap();

    let _agent = KillOnDrop(
        // Only the capabilities deploy/daemonset.yaml grants, to show they suffice.
        Command::new("setpriv")
            .arg(format!(
                "--bounding-set=-all,{}",
                switchyard_testing::deploy::daemon_set_capabilities(
                    "daemonset.yaml",
                    "switchyard",
                    "agent"
                )
            ))
            .arg(env!("CARGO_BIN_EXE_switchyard"))
            .args(["agent", "--max-maglev-tables", "4"])
            .arg("--config")
            .arg(&config)
            .arg("--api-socket")
            .arg(work.path().join("agent.sock"))
            .env_remove("NODE_NAME")
            .arg("--cgroup")
            .arg(cgroup.path())
            .arg("--bpf-dir")
            .arg(bpf.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // EndpointSlices not listed yet: health answers, nothing synced, nothing programmed.
    let (_, body) = wait_for("the health server", async || healthz(health).await).await;
    assert_eq!(body["lastUpdated"], "", "{body}");
    let (status, _) = get(health, "/readyz").await.unwrap();
    assert_eq!(status, 503, "ready before the first sync");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(web_backends(bpf.path()), None, "programmed before the first complete list");

    api.release(Resource::EndpointSlices);
    let count =
        wait_for("the Service in the maps", async || web_backends(bpf.path()).filter(|n| *n == 3))
            .await;
    assert_eq!(count, 3);
    let (status, body) = wait_for("a synced /healthz", async || {
        healthz(health).await.filter(|(_, b)| b["lastUpdated"] != "")
    })
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(health, "/readyz").await.unwrap();
    assert_eq!(status, 200, "ready after the first sync");
    // The metrics port: metrics, and nothing of the local API.
    let (status, text) = get(metrics, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("switchyard_frontends_programmed"), "{text}");
    for path in ["/status", "/desired", "/bgp"] {
        let (status, _) = get(metrics, path).await.unwrap();
        assert_eq!(status, 404, "{path} on the metrics port");
    }

    // The watch breaks; a slice is deleted and history compacted meanwhile: relist, deletion.
    api.outage(|outage| {
        outage.delete(Resource::EndpointSlices, "default", "web-abc");
        outage.compact();
    });
    wait_for("the deleted slice's backends to leave", async || {
        web_backends(bpf.path()).filter(|n| *n == 1)
    })
    .await;
}
