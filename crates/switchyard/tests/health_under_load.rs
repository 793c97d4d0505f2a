//! /healthz and a health check node port keep answering while the agent programs 10,000
//! Services at once (99 % of answers within 100 ms, every one within 1 s): they run on a
//! runtime of their own, not between the agent's reconciling steps. The agent runs in a
//! network namespace of the test's (loopback only).
//! Root: BPF maps on a bpffs and a cgroup of its own.

#![allow(clippy::unwrap_used, reason = "tests may panic on bad fixtures")]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_bpf::Maps;
use switchyard_bpf::abi::PROTO_TCP;
use switchyard_testing::objects::{NODE, endpoint, service, slice, this_node, with};
use switchyard_testing::{BpfDir, Cgroup, KillOnDrop};

const SERVICES: u32 = 10_000;
const HEALTH: &str = "127.0.0.1:10256";
const HEALTH_CHECK_NODE_PORT: u16 = 32_100;

/// How long `GET /` on `address` took to answer, and its status (`None`: no answer in 2 s).
fn answer(address: SocketAddr, path: &str) -> (Duration, Option<u16>) {
    let start = Instant::now();
    let status = (|| {
        let mut stream =
            std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    })();
    (start.elapsed(), status)
}

/// The `n`th bulk Service's cluster IP: 10.100.0.0/16 upwards.
fn bulk_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) + n + 1)
}

/// 10,000 ClusterIP Services, each with one endpoint on another node.
fn bulk() -> String {
    let mut text = String::new();
    for n in 0..SERVICES {
        let name = format!("bulk-{n}");
        let svc = service(&name, json!({"clusterIP": bulk_ip(n).to_string()}));
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 0)) + n + 1).to_string();
        let eps = slice(&format!("{name}-a"), &name, vec![endpoint(&ip, "node-b", "ready")]);
        for object in [svc, eps] {
            text.push_str("---\n");
            text.push_str(&serde_json::to_string(&object).unwrap());
            text.push('\n');
        }
    }
    text
}

fn documents(objects: &[Value]) -> String {
    objects.iter().map(|o| format!("---\n{o}\n")).collect()
}

#[test]
fn health_answers_within_100_ms_while_10000_services_are_programmed() {
    if !switchyard_lab::require_root("health_answers_within_100_ms_while_10000_services") {
        return;
    }
    // The agent and the probes share a network namespace of the test's own.
    std::thread::spawn(run).join().unwrap();
}

fn run() {
    switchyard_testing::nodeport_fixture::enter_private_netns();
    let up = Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
    assert!(up.success());
    let work = tempfile::tempdir().unwrap();
    let manifests = work.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    // A Local LoadBalancer Service with a ready endpoint here: its health check node port.
    let local = with(
        service(
            "local",
            json!({"clusterIP": "10.96.0.50", "type": "LoadBalancer",
                   "externalTrafficPolicy": "Local",
                   "healthCheckNodePort": HEALTH_CHECK_NODE_PORT,
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                              "targetPort": "http", "nodePort": 30100}]}),
        ),
        json!({}),
    );
    let local_eps = slice("local-a", "local", vec![endpoint("10.244.200.1", NODE, "ready")]);
    std::fs::write(manifests.join("local.yaml"), documents(&[this_node(), local, local_eps]))
        .unwrap();

    let bpf = BpfDir::new("health-load");
    let cgroup = Cgroup::new("health-load");
    let _agent = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["agent", "--node-name", NODE, "--max-maglev-tables", "4"])
            .args(["--healthz-bind-address", HEALTH])
            .arg("--manifests")
            .arg(&manifests)
            .arg("--cgroup")
            .arg(cgroup.path())
            .arg("--bpf-dir")
            .arg(bpf.path())
            .arg("--api-socket")
            .arg(work.path().join("agent.sock"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let health: SocketAddr = HEALTH.parse().unwrap();
    let node_port: SocketAddr = (Ipv4Addr::LOCALHOST, HEALTH_CHECK_NODE_PORT).into();
    let deadline = Instant::now() + Duration::from_secs(60);
    while answer(node_port, "/").1 != Some(200) {
        assert!(Instant::now() < deadline, "the health check node port never answered 200");
        std::thread::sleep(Duration::from_millis(50));
    }

    // 10,000 Services arrive at once (renamed into place: one change).
    let staged = work.path().join("bulk.yaml");
    std::fs::write(&staged, bulk()).unwrap();
    let last = SocketAddr::from((bulk_ip(SERVICES - 1), 80));
    let programmed = || {
        Maps::open_pinned(bpf.path())
            .ok()
            .and_then(|maps| maps.resolve(last, PROTO_TCP).ok().flatten())
            .is_some()
    };
    assert!(!programmed());
    std::fs::rename(&staged, manifests.join("bulk.yaml")).unwrap();
    let start = Instant::now();
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut probes = 0;
    loop {
        for (slot, (address, path)) in [(health, "/healthz"), (node_port, "/")].iter().enumerate() {
            let (took, status) = answer(*address, path);
            times[slot].push(took);
            assert_eq!(status, Some(200), "{path} on {address} after {:?}", start.elapsed());
        }
        probes += 1;
        if probes % 10 == 0 && programmed() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "10,000 Services never programmed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let window = start.elapsed();
    // The 99th percentile and the slowest answer of each server.
    let [healthz, check] = times.map(|mut t| {
        t.sort_unstable();
        (t[(t.len() * 99 / 100).min(t.len() - 1)], t[t.len() - 1])
    });
    eprintln!(
        "programming {SERVICES} Services took {window:?}; {probes} probes each; /healthz p99 \
         {:?}, slowest {:?}; health check node port p99 {:?}, slowest {:?}",
        healthz.0, healthz.1, check.0, check.1
    );
    // The measurement means something only if the work took much longer than the bound.
    assert!(window > Duration::from_millis(500), "the sync took only {window:?}");
    // Servers the agent's loop blocked would wait for its kernel work (seconds: the node port
    // did not answer within 2 s that way), so most answers would be slow; one answer of
    // thousands can wait ~100 ms for a CPU on a loaded two-core machine (session 26's CI run:
    // 108 ms once in 2,580 probes, at load 10).
    for (what, (p99, slowest)) in
        ["/healthz", "health check node port"].iter().zip([healthz, check])
    {
        assert!(p99 < Duration::from_millis(100), "{what}: p99 {p99:?} during the sync");
        assert!(slowest < Duration::from_secs(1), "{what} took {slowest:?} during the sync");
    }
}
