//! `switchyard explain` against the kernel (root): a lab node with three local pods, the
//! socket and per-packet datapaths loaded in its bpffs and attached to its uplink (as
//! crates/bpf/tests/nodeport_lab.rs does, until the agent attaches TC itself), a Maglev
//! NodePort and a random NodePort. An external client opens connections; for every one,
//! explain (the binary, reading the pins) must name the backend that actually answered: from
//! its own Maglev computation (SipHash over the 5-tuple with the seed it reads from sy_config;
//! the test uses a non-default seed) and from the flow's conntrack entry.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness")]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use switchyard_bpf::{
    Datapath, LoadOptions,
    abi::*,
    nodeport::{PacketDatapath, PacketMapSizes, PacketSettings},
};
use switchyard_lab::tools::{
    clients,
    servers::{self, ServerKind},
};
use switchyard_lab::{Lab, Topology, require_root};
use switchyard_maglev::{MaglevConfig, Seed, Table, TableSize};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const ECHO: u16 = 8080;
const PODS: [&str; 3] = ["p1", "p2", "p3"];
const MAGLEV_PORT: u16 = 30090;
const RANDOM_PORT: u16 = 30091;
const EMPTY_PORT: u16 = 30092;
/// UDP to a port nothing listens on in p1 (exact node-address entries): metrics test.
const SINK_PORT: u16 = 30093;
/// externalTrafficPolicy Local without a local endpoint: dropped (monitor test).
const LOCAL_DROP_PORT: u16 = 30094;
/// A Maglev ClusterIP for the socket path (pods of n1 connect to it).
const CLUSTER_IPS: [&str; 2] = ["10.96.9.9", "fd00:96::9:9"];
/// A ClusterIP without endpoints (connect() refused by the socket programs).
const EMPTY_CLUSTER_IPS: [&str; 2] = ["10.96.9.10", "fd00:96::9:10"];
const SEED: [u8; 16] = *b"explain-testseed";
const M: u32 = 251;

fn options(bpf_dir: &Path) -> LoadOptions {
    let mut options = LoadOptions::new(bpf_dir);
    options.sizes = switchyard_testing::socket_probe::small_sizes();
    options.maglev_table_size = M;
    options.hash_seed = SEED;
    options
}

/// Backend ids: IPv4 of pod i is id i + 1, IPv6 is id i + 11. Frontends per family: Maglev,
/// random, empty with reject.
fn program_node(lab: &Lab) {
    let node = lab.node("n1").unwrap().clone();
    let pods: Vec<_> = PODS.iter().map(|p| lab.pod(p).unwrap().clone()).collect();
    lab.run_in("n1", move || {
        let options = options(&node.bpf_dir);
        let mut sock = Datapath::load(&options).unwrap();
        let settings = PacketSettings {
            snat_ipv4: Some(node.ipv4),
            snat_ipv6: Some(node.ipv6),
            ..PacketSettings::default()
        };
        let mut pkt = PacketDatapath::load(&options, PacketMapSizes::default(), &settings).unwrap();
        let maps = sock.maps_mut();
        for ip in [IpAddr::from(node.ipv4), IpAddr::from(node.ipv6)] {
            maps.node_addrs.insert(NodeAddrKey::new(ip), 0, 0).unwrap();
        }
        let mut next_id = 1;
        for (family, base) in [(AF_INET, 1u32), (AF_INET6, 11)] {
            let ids: Vec<u32> = (0..3).map(|i| base + i).collect();
            let mut identities = Vec::new();
            for (i, pod) in pods.iter().enumerate() {
                let ip: IpAddr = if family == AF_INET { pod.ipv4.into() } else { pod.ipv6.into() };
                maps.backends.insert(ids[i], Backend::new(ip, ECHO, BE_LOCAL), 0).unwrap();
                identities.push((
                    switchyard_maglev::Backend::from_socket_addr(SocketAddr::new(ip, ECHO), 1),
                    ids[i],
                ));
            }
            let config =
                MaglevConfig { size: TableSize::new(M).unwrap(), seed: Seed::from_bytes(SEED) };
            let backends: Vec<_> = identities.iter().map(|(b, _)| b.clone()).collect();
            let built = Table::build(&config, &backends).unwrap().table;
            let table: Vec<u32> = built
                .slots()
                .iter()
                .map(|&index| {
                    let identity = built.backends()[index as usize].identity();
                    identities.iter().find(|(b, _)| b.identity() == identity).unwrap().1
                })
                .collect();
            let cluster_ip: IpAddr = CLUSTER_IPS[usize::from(family == AF_INET6)].parse().unwrap();
            let empty_ip: IpAddr =
                EMPTY_CLUSTER_IPS[usize::from(family == AF_INET6)].parse().unwrap();
            for (ip, port, flags, count) in [
                (None, MAGLEV_PORT, FE_NODEPORT | FE_MAGLEV, 3u32),
                (None, RANDOM_PORT, FE_NODEPORT, 3),
                (None, EMPTY_PORT, FE_NODEPORT | FE_REJECT_EMPTY, 0),
                (Some(cluster_ip), 80, FE_MAGLEV, 3),
                (None, LOCAL_DROP_PORT, FE_NODEPORT | FE_LOCAL_ONLY, 0),
                (Some(empty_ip), 80, 0, 0),
            ] {
                let id = next_id;
                next_id += 1;
                for slot in 0..count {
                    maps.slots
                        .insert(SlotKey { frontend_id: id, slot }, ids[slot as usize], 0)
                        .unwrap();
                }
                if flags & FE_MAGLEV != 0 {
                    maps.set_maglev_table(id, &table).unwrap();
                }
                let key = match ip {
                    Some(ip) => FrontendKey::new(ip, port, PROTO_TCP, SCOPE_DEFAULT),
                    None => FrontendKey::node_port(family, port, PROTO_TCP, SCOPE_DEFAULT),
                };
                let fe = Frontend { id, flags, backend_count: count, affinity_timeout_s: 0 };
                maps.frontends.insert(key, fe, 0).unwrap();
            }
        }
        let sink = lab_pod_p1_addresses(&pods);
        for (id, (node_ip, pod_ip)) in
            (100u32..).zip([(IpAddr::from(node.ipv4), sink.0), (IpAddr::from(node.ipv6), sink.1)])
        {
            let maps = sock.maps_mut();
            maps.backends.insert(id, Backend::new(pod_ip, 9, BE_LOCAL), 0).unwrap();
            maps.slots.insert(SlotKey { frontend_id: id, slot: 0 }, id, 0).unwrap();
            let key = FrontendKey::new(node_ip, SINK_PORT, PROTO_UDP, SCOPE_DEFAULT);
            let fe = Frontend { id, flags: 0, backend_count: 1, affinity_timeout_s: 0 };
            maps.frontends.insert(key, fe, 0).unwrap();
        }
        pkt.attach(&node.uplink).unwrap();
        sock.attach(&node.cgroup).unwrap();
    })
    .unwrap();
}

fn lab_pod_p1_addresses(pods: &[switchyard_lab::PodInfo]) -> (IpAddr, IpAddr) {
    let p1 = pods.iter().find(|p| p.name == "p1").unwrap();
    (p1.ipv4.into(), p1.ipv6.into())
}

fn explain(bpf_dir: &Path, source: &str, destination: &str) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["explain", source, destination, "-o", "json", "--bpf-dir"])
        .arg(bpf_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "explain failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn backend_addr(value: &serde_json::Value) -> Option<SocketAddr> {
    let ip: IpAddr = value.get("ip")?.as_str()?.parse().ok()?;
    Some(SocketAddr::new(ip, u16::try_from(value.get("port")?.as_u64()?).ok()?))
}

#[test]
fn explain_names_the_backend_the_kernel_chose_for_every_flow() {
    if !require_root("explain_names_the_backend_the_kernel_chose_for_every_flow") {
        return;
    }
    let lab = one_node_lab();
    let _servers: Vec<_> = PODS
        .into_iter()
        .map(|pod| lab.run_in(pod, || servers::start(ServerKind::TcpEcho, pod, ECHO).unwrap()))
        .collect::<Result<_, _>>()
        .unwrap();
    program_node(&lab);
    let node = lab.node("n1").unwrap().clone();
    let pod_of = |addr: SocketAddr| -> String {
        PODS.iter()
            .find(|p| {
                let info = lab.pod(p).unwrap();
                addr.ip() == IpAddr::from(info.ipv4) || addr.ip() == IpAddr::from(info.ipv6)
            })
            .map_or_else(|| format!("not a pod: {addr}"), ToString::to_string)
    };

    for node_ip in [IpAddr::from(node.ipv4), IpAddr::from(node.ipv6)] {
        for port in [MAGLEV_PORT, RANDOM_PORT] {
            let target = SocketAddr::new(node_ip, port);
            let attempts =
                lab.run_in("c1", || clients::tcp(target, 12, Duration::from_secs(3))).unwrap();
            let mut answered = BTreeSet::new();
            for a in &attempts {
                assert_eq!(a.error, None, "{target}: {a:?}");
                let backend = a.backend.clone().unwrap();
                answered.insert(backend.clone());
                let local = a.local.as_deref().unwrap();
                assert_eq!(a.seen_as.as_deref(), Some(local), "local backends see the client");
                let e = explain(&node.bpf_dir, local, &format!("{target}/tcp"));
                assert_eq!(e["path"], "packet", "{e:#}");
                assert_eq!(e["frontend"]["port"], port, "{e:#}");
                assert_eq!(e["candidates"].as_array().unwrap().len(), 3, "{e:#}");
                // The flow just closed: its conntrack entry (closing, 10 s) names the backend.
                assert_eq!(e["decision"]["method"], "conntrack", "{e:#}");
                let ct = backend_addr(&e["decision"]["backend"]).expect("conntrack backend");
                assert_eq!(pod_of(ct), backend, "conntrack of {local} -> {target}: {e:#}");
                if port == MAGLEV_PORT {
                    // explain's own hash of the 5-tuple, independent of the conntrack entry.
                    let m = backend_addr(&e["maglev"]["backend"]).expect("maglev backend");
                    assert_eq!(pod_of(m), backend, "Maglev of {local} -> {target}: {e:#}");
                    assert!(e["maglev"]["slot"].as_u64().unwrap() < u64::from(M));
                } else {
                    assert!(e["maglev"].is_null(), "{e:#}");
                }
            }
            // `switchyard conntrack` lists the same flows with the backends that answered.
            let out = Command::new(BIN)
                .args(["conntrack", "-o", "json", "--bpf-dir"])
                .arg(&node.bpf_dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let flows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            for a in &attempts {
                let local = a.local.as_deref().unwrap();
                let flow = flows
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["client"] == local && f["frontend"] == target.to_string())
                    .unwrap_or_else(|| panic!("{local} -> {target} not in conntrack: {flows:#}"));
                let backend: SocketAddr = flow["backend"].as_str().unwrap().parse().unwrap();
                assert_eq!(Some(pod_of(backend)), a.backend, "{flow:#}");
                assert_eq!(flow["snat"], false, "{flow:#}");
                assert_eq!(flow["reverseEntry"], true, "{flow:#}");
                assert_eq!(flow["state"], "closing", "{flow:#}");
            }
            // Several backends answered, so the check covered more than one table slot.
            assert!(answered.len() >= 2, "{target}: only {answered:?} answered");
        }

        // A fresh source port explains a new flow: Maglev names a backend; random does not.
        let fresh_ip: IpAddr = if node_ip.is_ipv4() {
            "192.0.2.1".parse().unwrap()
        } else {
            "2001:db8::1".parse().unwrap()
        };
        let fresh = SocketAddr::new(fresh_ip, 40000).to_string();
        let at = |port: u16| format!("{}/tcp", SocketAddr::new(node_ip, port));
        let e = explain(&node.bpf_dir, &fresh, &at(MAGLEV_PORT));
        assert_eq!(e["decision"]["method"], "maglev", "{e:#}");
        assert!(backend_addr(&e["decision"]["backend"]).is_some(), "{e:#}");
        assert!(e["translation"][0].as_str().unwrap().starts_with("DNAT"), "{e:#}");
        let e = explain(&node.bpf_dir, &fresh, &at(RANDOM_PORT));
        assert_eq!(e["decision"]["method"], "random", "{e:#}");
        assert!(e["decision"]["backend"].is_null(), "{e:#}");
        let e = explain(&node.bpf_dir, &fresh, &at(EMPTY_PORT));
        assert_eq!(e["decision"]["method"], "rejected", "{e:#}");
        let e = explain(&node.bpf_dir, &fresh, &at(30099));
        assert!(e["frontend"].is_null(), "{e:#}");
        // The node address is also an exact frontend (the UDP sink), so that is what is said.
        assert!(e["noMatch"].as_str().unwrap().contains("not port 30099/tcp"), "{e:#}");
    }

    // Socket path: connections held open from pod p1 to the Maglev ClusterIP. explain, run in
    // p1's network namespace, finds p1's sockets (sock_diag), their cookies in sy_sock_revnat,
    // and recomputes each cookie's Maglev slot; it must name the backend each socket reached.
    for cluster_ip in CLUSTER_IPS {
        let target = SocketAddr::new(cluster_ip.parse().unwrap(), 80);
        let pod = lab.pod("p1").unwrap().clone();
        let source: IpAddr = if target.is_ipv4() { pod.ipv4.into() } else { pod.ipv6.into() };
        let mut holders: Vec<_> = (0..6)
            .map(|_| {
                let mut command = Command::new(BIN);
                command
                    .args(["lab", "client", "hold", "--until-stdin-closes", "--interval-ms", "50"])
                    .arg("--target")
                    .arg(target.to_string())
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped());
                lab.spawn_in("p1", command).unwrap()
            })
            .collect();
        // Every holder has connected once explain sees six translated sockets.
        let mut e = serde_json::Value::Null;
        let seen_all = switchyard_lab::wait_until(Duration::from_secs(5), || {
            let mut command = Command::new(BIN);
            command
                .args(["explain", &source.to_string(), &format!("{target}/tcp"), "-o", "json"])
                .args(["--from", "inside", "--bpf-dir"])
                .arg(&node.bpf_dir);
            let out = lab.output_in("p1", command).unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            e = serde_json::from_slice(&out.stdout).unwrap();
            e["sockets"].as_array().unwrap().len() == holders.len()
        });
        assert!(seen_all, "explain found the sockets: {e:#}");
        assert_eq!(e["path"], "socket", "{e:#}");
        assert_eq!(e["decision"]["method"], "maglev-per-socket", "{e:#}");
        let mut explained = Vec::new();
        for s in e["sockets"].as_array().unwrap() {
            let backend: SocketAddr = s["backend"].as_str().unwrap().parse().unwrap();
            let maglev = backend_addr(&s["maglev"]["backend"]).expect("maglev backend");
            assert_eq!(maglev, backend, "cookie {} hashed to another slot: {e:#}", s["cookie"]);
            explained.push(pod_of(backend));
        }
        let mut answered = Vec::new();
        for mut holder in holders.drain(..) {
            drop(holder.stdin.take());
            let out = holder.wait_with_output().unwrap();
            let report: clients::HoldReport = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(report.error, None, "{report:?}");
            answered.extend(report.backends);
        }
        explained.sort();
        answered.sort();
        assert_eq!(explained, answered, "{target}: explain vs the backends that answered");
    }
    drop(lab);
}

/// The per-Service counters of the per-packet path, as Prometheus renders them, against the
/// datagrams the test sent: 3 sockets (new flows) x 4 datagrams of 100 bytes per family, to a
/// port nothing listens on (the pod's ICMP errors are not Service traffic). Bytes are what TC
/// sees: Ethernet + IP + UDP headers + payload.
#[test]
fn per_service_metrics_match_the_traffic_sent() {
    if !require_root("per_service_metrics_match_the_traffic_sent") {
        return;
    }
    use std::sync::{Arc, RwLock};
    use switchyard_observe::labels::{ServiceIndex, ServiceLabel};
    use switchyard_observe::metrics::{KernelCollector, render_kernel};

    let lab = one_node_lab();
    program_node(&lab);
    let node = lab.node("n1").unwrap().clone();
    const SOCKETS: usize = 3;
    const DATAGRAMS: usize = 4;
    const PAYLOAD: usize = 100;
    let targets = [
        (SocketAddr::new(node.ipv4.into(), SINK_PORT), 14 + 20 + 8),
        (SocketAddr::new(node.ipv6.into(), SINK_PORT), 14 + 40 + 8),
    ];
    for (target, _) in targets {
        lab.run_in("c1", || {
            let bind: SocketAddr = if target.is_ipv4() {
                "0.0.0.0:0".parse().unwrap()
            } else {
                "[::]:0".parse().unwrap()
            };
            for _ in 0..SOCKETS {
                let socket = std::net::UdpSocket::bind(bind).unwrap();
                for _ in 0..DATAGRAMS {
                    socket.send_to(&[7u8; PAYLOAD], target).unwrap();
                }
            }
        })
        .unwrap();
    }

    // One SYN to an externalTrafficPolicy Local NodePort without local endpoints: one drop
    // (the connect gives up before the kernel's first retransmission, 1 s later).
    let dropped = SocketAddr::new(node.ipv4.into(), LOCAL_DROP_PORT);
    let attempt =
        lab.run_in("c1", || clients::tcp(dropped, 1, Duration::from_millis(300))).unwrap();
    assert_eq!(attempt[0].error.as_deref(), Some("timed out"), "{attempt:?}");

    let mut index = ServiceIndex::default();
    for (target, _) in targets {
        let label = ServiceLabel {
            namespace: "e2e".into(),
            name: "sink".into(),
            port_name: String::new(),
            kind: "ExternalIP".into(),
        };
        index.insert(target.ip(), SINK_PORT, "udp", label);
    }
    let index = Arc::new(RwLock::new(index));
    let value = |text: &str, metric: &str, frontend: &str| -> Option<u64> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")))
            .filter(|l| {
                l.contains("service=\"sink\"") && l.contains(&format!("frontend=\"{frontend}\""))
            })
            .find_map(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let expected_packets = (SOCKETS * DATAGRAMS) as u64;
    let mut text = String::new();
    // Packets are processed on the receiving side's softirq: wait until all were counted.
    let counted = switchyard_lab::wait_until(Duration::from_secs(3), || {
        let maps = switchyard_bpf::Maps::open_pinned(&node.bpf_dir).unwrap();
        let collector = KernelCollector::new(maps, node.bpf_dir.clone(), Arc::clone(&index));
        text = render_kernel(collector).unwrap();
        targets.iter().all(|(t, _)| {
            value(&text, "switchyard_service_packets_total", &format!("{}:{SINK_PORT}", t.ip()))
                >= Some(expected_packets)
        })
    });
    assert!(counted, "{text}");
    let drops = text
        .lines()
        .find(|l| {
            l.starts_with("switchyard_datapath_drops_total{reason=\"drop_no_local_backend\"}")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert_eq!(drops, Some(1), "{text}");
    for (target, headers) in targets {
        let frontend = format!("{}:{SINK_PORT}", target.ip());
        let get = |metric| value(&text, metric, &frontend);
        assert_eq!(get("switchyard_service_new_connections_total"), Some(SOCKETS as u64), "{text}");
        assert_eq!(get("switchyard_service_packets_total"), Some(expected_packets), "{text}");
        assert_eq!(
            get("switchyard_service_bytes_total"),
            Some(expected_packets * (headers + PAYLOAD) as u64),
            "{text}"
        );
    }
    drop(lab);
}

/// `switchyard monitor` shows a drop with its reason and the client, and a decision with the
/// backend that answered; the stream is off before and after.
#[test]
fn monitor_shows_a_drop_with_its_reason_and_a_decision_with_its_backend() {
    if !require_root("monitor_shows_a_drop_with_its_reason_and_a_decision_with_its_backend") {
        return;
    }
    use std::io::{BufRead, BufReader};
    use switchyard_bpf::monitor::read_settings;

    let lab = one_node_lab();
    let _servers: Vec<_> = PODS
        .into_iter()
        .map(|pod| lab.run_in(pod, || servers::start(ServerKind::TcpEcho, pod, ECHO).unwrap()))
        .collect::<Result<_, _>>()
        .unwrap();
    program_node(&lab);
    let node = lab.node("n1").unwrap().clone();
    let client = lab.client("c1").unwrap().clone();
    assert_eq!(read_settings(&node.bpf_dir).unwrap().enabled, 0, "off by default");

    let monitor = |extra: &[&str]| {
        let mut child = Command::new(BIN)
            .args(["monitor", "-o", "json", "--count", "1", "--duration-ms", "10000", "--bpf-dir"])
            .arg(&node.bpf_dir)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let on = switchyard_lab::wait_until(Duration::from_secs(5), || {
            read_settings(&node.bpf_dir).unwrap().enabled != 0
        });
        assert!(on, "monitor switched the stream on");
        let stdout = child.stdout.take().unwrap();
        (child, BufReader::new(stdout))
    };

    let status = || {
        let out =
            Command::new(BIN).args(["status", "--bpf-dir"]).arg(&node.bpf_dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(status().contains("monitor: off"), "{}", status());

    // A drop: ETP Local without a local endpoint.
    let (mut child, mut out) = monitor(&["--drops-only", "--sample", "7"]);
    let shown = status();
    assert!(shown.contains("monitor: on (decisions 1 in 7, drops 1 in 1)"), "{shown}");
    let target = SocketAddr::new(node.ipv4.into(), LOCAL_DROP_PORT);
    let attempt = lab.run_in("c1", || clients::tcp(target, 1, Duration::from_millis(500))).unwrap();
    assert_eq!(attempt[0].error.as_deref(), Some("timed out"), "{attempt:?}");
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(child.wait().unwrap().success());
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["reason"], "drop_no_local_backend", "{event:#}");
    assert_eq!(event["drop"], true, "{event:#}");
    assert_eq!(event["path"], "packet", "{event:#}");
    assert_eq!(event["destination"], target.to_string(), "{event:#}");
    let seen: SocketAddr = event["client"].as_str().unwrap().parse().unwrap();
    assert_eq!(seen.ip(), IpAddr::from(client.ipv4), "{event:#}");
    assert!(event["frontendId"].as_u64().is_some(), "frontend resolved: {event:#}");
    assert_eq!(read_settings(&node.bpf_dir).unwrap().enabled, 0, "off after the monitor");
    assert!(status().contains("monitor: off"), "{}", status());

    // A decision: the new flow's backend is the pod that answered.
    let (mut child, mut out) = monitor(&["--addr", &client.ipv4.to_string()]);
    let target = SocketAddr::new(node.ipv4.into(), MAGLEV_PORT);
    let attempt = lab.run_in("c1", || clients::tcp(target, 1, Duration::from_secs(3))).unwrap();
    assert_eq!(attempt[0].error, None, "{attempt:?}");
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(child.wait().unwrap().success());
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["reason"], "dnat", "{event:#}");
    assert_eq!(event["drop"], false, "{event:#}");
    assert_eq!(event["client"], attempt[0].local.clone().unwrap(), "{event:#}");
    let backend: SocketAddr = event["backend"].as_str().unwrap().parse().unwrap();
    let answered = lab.pod(attempt[0].backend.as_deref().unwrap()).unwrap();
    assert_eq!(backend.ip(), IpAddr::from(answered.ipv4), "{event:#}");
    assert_eq!(read_settings(&node.bpf_dir).unwrap().enabled, 0);

    // The socket path: a pod's connect() to a ClusterIP without endpoints is refused.
    let (mut child, mut out) = monitor(&["--drops-only"]);
    let target = SocketAddr::new(EMPTY_CLUSTER_IPS[0].parse().unwrap(), 80);
    let mut command = Command::new(BIN);
    command.args(["lab", "client", "tcp", "--target", &target.to_string()]);
    let refused = lab.output_in("p1", command).unwrap();
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("connection refused"),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(child.wait().unwrap().success());
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["reason"], "reject_no_backend", "{event:#}");
    assert_eq!(event["path"], "socket", "{event:#}");
    assert_eq!(event["destination"], target.to_string(), "{event:#}");
    assert!(event["cookie"].as_u64().is_some_and(|c| c != 0), "{event:#}");
    drop(lab);
}

/// One node with three pods and one external client, the lab every test here uses.
fn one_node_lab() -> Lab {
    let topology = Topology::from_yaml(
        "nodes:\n  - name: n1\n    pods: [p1, p2, p3]\nclients: [c1]\n",
        "inline",
    )
    .unwrap();
    Lab::up(&topology).unwrap()
}
