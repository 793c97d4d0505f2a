//! `switchyard demo`: the node role end to end on this machine, no cluster needed.
//!
//! Brings up a lab (3 nodes, 2 pods each, see docs/lab.md), starts an echo server in every pod
//! and `switchyard agent` on every node, applies the example Services shipped in
//! examples/demo (built into the binary, so the release binary is enough), sends traffic from
//! pods and from nodes (socket level) and from the lab's external client to NodePorts and
//! LoadBalancer IPs (per packet, `--devices` on every node's uplink), prints how it spread over
//! the backends and which client address they saw, and tears everything down, also on failure
//! and on Ctrl-C. Needs root.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use switchyard_lab::tools::bird::{Bird, router_next_hops};
use switchyard_lab::tools::clients::{Attempt, ClientOutput};
use switchyard_lab::tools::servers::{self, ServerHandle, ServerKind};
use switchyard_lab::{Lab, LabOptions, Topology, wait_until};

use super::demo_edge;
use super::output::Table;

/// Bring up a lab cluster with the node agent on every node, apply example Services, send
/// traffic and show how it spread over the backends; everything is removed at the end.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Requests per row of the table.
    #[arg(long, default_value_t = 60)]
    requests: usize,
}

/// The example manifests (examples/demo), written for the demo lab's addresses.
const EXAMPLES: [(&str, &str); 10] = [
    ("nodes.yaml", include_str!("../../../../examples/demo/nodes.yaml")),
    ("web.yaml", include_str!("../../../../examples/demo/web.yaml")),
    ("cache.yaml", include_str!("../../../../examples/demo/cache.yaml")),
    ("sticky.yaml", include_str!("../../../../examples/demo/sticky.yaml")),
    ("empty.yaml", include_str!("../../../../examples/demo/empty.yaml")),
    ("shop.yaml", include_str!("../../../../examples/demo/shop.yaml")),
    ("local.yaml", include_str!("../../../../examples/demo/local.yaml")),
    ("edge.yaml", include_str!("../../../../examples/demo/edge.yaml")),
    ("bgp.yaml", include_str!("../../../../examples/demo/bgp.yaml")),
    ("pooled.yaml", include_str!("../../../../examples/demo/pooled.yaml")),
];

/// The address the controller gives `pooled` (the first of its IPPool).
const POOLED_IP: &str = "10.96.100.8";

/// LoadBalancer IPs of the examples and the nodes that should announce them over BGP (`local`
/// is ETP Local: only nodes with endpoints announce it).
const LOAD_BALANCER_ROUTES: [(&str, &[&str]); 3] = [
    ("10.96.100.1", &["node1", "node2", "node3"]),
    ("10.96.100.2", &["node1", "node2"]),
    (POOLED_IP, &["node1", "node2", "node3"]),
];

/// The AS of the nodes in examples/demo/bgp.yaml.
const NODE_ASN: u32 = 64512;

/// The health check node port of the `local` example (externalTrafficPolicy Local).
const HEALTH_CHECK_NODE_PORT: u16 = 32081;

/// Claimed by whoever tears the lab down first: the main thread when the demo ends, or the
/// signal thread on Ctrl-C; the other one leaves it alone (two teardowns would race).
static TEARDOWN_CLAIMED: AtomicBool = AtomicBool::new(false);

fn claim_teardown() -> bool {
    TEARDOWN_CLAIMED.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok()
}

/// Port of the echo servers in the pods (the examples' targetPort).
const ECHO_PORT: u16 = 8080;

/// One row of the table: a client in `from` sending `kind` requests to `target`.
struct Row {
    service: &'static str,
    what: &'static str,
    from: &'static str,
    kind: &'static str,
    target: &'static str,
}

const ROWS: [Row; 19] = [
    Row { service: "web", what: "random", from: "pod1a", kind: "tcp", target: "10.96.0.80:80" },
    Row { service: "web", what: "random", from: "pod1a", kind: "udp", target: "10.96.0.80:80" },
    Row { service: "web", what: "IPv6", from: "pod2a", kind: "tcp", target: "[fd00:96::80]:80" },
    Row { service: "web", what: "IPv6", from: "pod2a", kind: "udp", target: "[fd00:96::80]:80" },
    Row { service: "web", what: "from node", from: "node3", kind: "tcp", target: "10.96.0.80:80" },
    Row {
        service: "cache",
        what: "ITP Local",
        from: "pod1a",
        kind: "tcp",
        target: "10.96.0.81:80",
    },
    Row {
        service: "cache",
        what: "ITP Local",
        from: "pod2b",
        kind: "tcp",
        target: "10.96.0.81:80",
    },
    Row {
        service: "cache",
        what: "ITP Local",
        from: "node3",
        kind: "udp",
        target: "10.96.0.81:80",
    },
    Row {
        service: "sticky",
        what: "ClientIP",
        from: "pod1a",
        kind: "tcp",
        target: "10.96.0.82:80",
    },
    Row {
        service: "sticky",
        what: "ClientIP",
        from: "pod3b",
        kind: "tcp",
        target: "10.96.0.82:80",
    },
    Row { service: "empty", what: "refused", from: "pod1a", kind: "tcp", target: "10.96.0.83:80" },
    Row {
        service: "shop",
        what: "NodePort",
        from: "client1",
        kind: "tcp",
        target: "10.100.1.2:30080",
    },
    Row {
        service: "shop",
        what: "NodePort",
        from: "client1",
        kind: "udp",
        target: "10.100.2.2:30080",
    },
    Row {
        service: "shop",
        what: "NodePort",
        from: "client1",
        kind: "tcp",
        target: "10.100.3.2:30080",
    },
    Row { service: "shop", what: "LB IP", from: "client1", kind: "tcp", target: "10.96.100.1:80" },
    Row {
        service: "local",
        what: "ETP Local",
        from: "client1",
        kind: "tcp",
        target: "10.100.1.2:30081",
    },
    Row {
        service: "local",
        what: "ETP Local",
        from: "client1",
        kind: "udp",
        target: "10.100.2.2:30081",
    },
    Row { service: "local", what: "LB IP", from: "client1", kind: "tcp", target: "10.96.100.2:80" },
    Row {
        service: "pooled",
        what: "IPPool",
        from: "client1",
        kind: "tcp",
        target: "10.96.100.8:80",
    },
];

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the switchyard binary")?;
    let started = Instant::now();
    let topology = Topology {
        directors: demo_edge::DIRECTORS.map(String::from).to_vec(),
        ..Topology::default()
    };
    let lab = Lab::up(&topology).context("bringing up the lab (needs root)")?;
    let work = std::env::temp_dir().join(format!("{}-demo", lab.prefix()));
    tear_down_on_signal(lab.prefix().to_string(), work.clone());
    let result = demo(&lab, &exe, &work, &args, started);
    if !claim_teardown() {
        // Interrupted: the signal thread removes the lab and exits the process.
        std::mem::forget(lab);
        loop {
            std::thread::park();
        }
    }
    // Agents run in the nodes' cgroups: the lab's teardown (on drop) stops them with the rest.
    drop(lab);
    match &result {
        Ok(_) => {
            let _ = std::fs::remove_dir_all(&work);
        }
        Err(_) => eprintln!("demo: agent logs kept in {}", work.display()),
    }
    println!("lab removed (namespaces, cgroups, programs, pinned maps)");
    result
}

fn demo(
    lab: &Lab,
    exe: &Path,
    work: &Path,
    args: &DemoArgs,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let manifests = work.join("manifests");
    std::fs::create_dir_all(&manifests)
        .with_context(|| format!("creating {}", manifests.display()))?;
    for (file, text) in EXAMPLES {
        std::fs::write(manifests.join(file), text)
            .with_context(|| format!("writing {}", manifests.join(file).display()))?;
    }
    let mut servers: Vec<ServerHandle> = Vec::new();
    for pod in lab.pods() {
        for kind in [ServerKind::TcpEcho, ServerKind::UdpEcho] {
            let name = pod.name.as_str();
            let server = lab
                .run_in(name, || servers::start(kind, name, ECHO_PORT))?
                .with_context(|| format!("starting an echo server in {name}"))?;
            servers.push(server);
        }
    }
    // The controller gives `pooled` its address before the agents start.
    let controller = start_controller(exe, work, &manifests)?;
    // The router learns the LoadBalancer IPs from the agents over BGP.
    let bird = Bird::for_nodes(lab, NODE_ASN, 9).context("starting BIRD on the lab router")?;
    let mut agents = Vec::new();
    for node in lab.nodes() {
        agents.push(start_agent(lab, exe, work, &manifests, &node.name)?);
    }
    let directors = demo_edge::start(lab, exe, work, &manifests)?;
    println!(
        "lab {} up: {} nodes, {} pods, agent on every node, {} directors ({} ms); Services from \
         examples/demo",
        lab.prefix(),
        lab.nodes().len(),
        lab.pods().len(),
        lab.directors().len(),
        started.elapsed().as_millis()
    );
    // The lab counts a stray packet or two while it comes up (IPv6 housekeeping before its
    // routes exist): only what the demo's traffic adds is about the data plane.
    let baseline = no_route_counts(lab)?;
    wait_for_services(lab, exe)?;
    println!("{}", announced(lab, &bird)?);

    let pods: Vec<&str> = lab.pods().iter().map(|p| p.name.as_str()).collect();
    let names = address_names(lab);
    let mut headers: Vec<String> =
        ["SERVICE", "", "FROM", "PROTO", "TARGET"].map(String::from).to_vec();
    headers.extend(pods.iter().map(|pod| pod.to_string()));
    headers.extend(["SEEN AS".to_owned(), "ERRORS".to_owned()]);
    let mut table = Table::new(headers);
    for column in 5..5 + pods.len() {
        table.align_right(column);
    }
    for row in &ROWS {
        let target: SocketAddr = row.target.parse().context("demo target")?;
        let out = client(lab, exe, row.from, row.kind, target, args.requests)?;
        let mut cells: Vec<String> =
            [row.service, row.what, row.from, row.kind, row.target].map(String::from).to_vec();
        for pod in &pods {
            cells.push(out.summary.backends.get(*pod).map_or(".".to_owned(), |n| n.to_string()));
        }
        cells.push(seen_as(&out, &names));
        let errors: Vec<String> =
            out.summary.errors.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
        cells.push(if errors.is_empty() { "-".into() } else { errors.join(", ") });
        table.row(cells);
    }
    let table = table.render();
    println!("\n{table}");
    println!(
        "{} requests per row, each on a new connection (TCP) or socket (UDP); '.' = none.",
        args.requests
    );
    println!("web: every pod; cache: only pods on the client's node; sticky: one pod per client;");
    println!("empty: no endpoints, so connect() fails at once with ECONNREFUSED.");
    println!("shop (from outside, per packet): every pod; pods on another node than the one the");
    println!("client sent to see that node's address (SNAT), pods on it the client's.");
    println!(
        "local (externalTrafficPolicy Local): only the receiving node's pods, client address kept."
    );
    println!(
        "pooled: written without an address; `switchyard controller --manifests` gave it {POOLED_IP}"
    );
    println!("from IPPool demo (examples/demo/pooled.yaml), the agents announced it over BGP.");
    println!("SEEN AS: the client addresses the pods saw, by name.");
    println!("\n{}", health_checks(lab, exe)?);

    let from = lab.clients().first().map(|c| c.name.clone()).context("the lab has no client")?;
    let (edge, edge_failed) = demo_edge::table(lab, &from, args.requests)?;
    println!("\n{edge}");
    println!(
        "edge (from {from}, through the directors): the router spreads each VIP over dir1 and \
         dir2 (ECMP);"
    );
    println!("both pick the node with the same Maglev table and encapsulate (GUE) to it; the node");
    println!("answers the client directly. Director and node columns: connections each carried");
    println!("(by their counters). REPLIES: packets the client received; OTHER@DIR: packets the");
    println!("directors received but did not encapsulate (ARP / neighbour discovery; a reply");
    println!("passing a director would count here).");

    let after = no_route_counts(lab)?;
    let (escaped4, escaped6) =
        (after.0.saturating_sub(baseline.0), after.1.saturating_sub(baseline.1));
    let escaped = escaped4 + escaped6;
    println!(
        "packets of the demo's traffic that tried to leave the lab (router without a route): \
         {escaped} (IPv4 {escaped4}, IPv6 {escaped6})"
    );
    drop(directors);
    drop(agents);
    drop(controller);
    drop(bird);
    drop(servers);
    Ok(if escaped == 0 && edge_failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Waits until the router's kernel table routes each LoadBalancer IP to the nodes that should
/// announce it (BIRD, ECMP), and says which nodes announce which address.
fn announced(lab: &Lab, bird: &Bird) -> anyhow::Result<String> {
    let names = address_names(lab);
    let mut text =
        String::from("BGP: the router (BIRD) learned the LoadBalancer IPs from the agents:");
    for (address, nodes) in LOAD_BALANCER_ROUTES {
        let want: BTreeSet<IpAddr> = nodes
            .iter()
            .map(|node| lab.node(node).map(|n| IpAddr::V4(n.ipv4)))
            .collect::<Result<_, _>>()?;
        let routed = wait_until(Duration::from_secs(20), || {
            router_next_hops(lab, address).is_ok_and(|hops| hops == want)
        });
        let hops = router_next_hops(lab, address)?;
        if !routed {
            let routes = bird.birdc(lab, &["show", "route"]).unwrap_or_default();
            bail!("the router routes {address} via {hops:?}, expected {want:?}; BIRD:\n{routes}");
        }
        let by: Vec<&str> =
            hops.iter().filter_map(|ip| names.get(ip)).map(String::as_str).collect();
        let _ = write!(text, "\n  {address:<14} announced by {}", by.join(", "));
    }
    Ok(text)
}

/// Lab addresses (nodes, pods, clients; IPv4 and IPv6) and whose they are.
fn address_names(lab: &Lab) -> BTreeMap<IpAddr, String> {
    let mut names = BTreeMap::new();
    for node in lab.nodes() {
        names.insert(IpAddr::V4(node.ipv4), node.name.clone());
        names.insert(IpAddr::V6(node.ipv6), node.name.clone());
    }
    for pod in lab.pods() {
        names.insert(IpAddr::V4(pod.ipv4), pod.name.clone());
        names.insert(IpAddr::V6(pod.ipv6), pod.name.clone());
    }
    for client in lab.clients() {
        names.insert(IpAddr::V4(client.ipv4), client.name.clone());
        names.insert(IpAddr::V6(client.ipv6), client.name.clone());
    }
    names
}

/// The distinct client addresses the backends saw, by name (an unknown one as it is).
fn seen_as(out: &ClientOutput, names: &BTreeMap<IpAddr, String>) -> String {
    let seen: BTreeSet<String> = out
        .attempts
        .iter()
        .filter_map(|a| a.seen_as.as_deref()?.parse::<SocketAddr>().ok())
        .map(|addr| names.get(&addr.ip()).cloned().unwrap_or_else(|| addr.ip().to_string()))
        .collect();
    if seen.is_empty() { "-".to_string() } else { seen.into_iter().collect::<Vec<_>>().join(",") }
}

/// One line on the `local` example's health check node port as the external client gets it
/// from every node: 200 with the number of local endpoints, or 503 where there is none.
fn health_checks(lab: &Lab, exe: &Path) -> anyhow::Result<String> {
    let mut line =
        format!("health check node port {HEALTH_CHECK_NODE_PORT} of local, from client1:");
    let from = lab.clients().first().map(|c| c.name.clone()).context("the lab has no client")?;
    for node in lab.nodes() {
        let target = SocketAddr::new(IpAddr::V4(node.ipv4), HEALTH_CHECK_NODE_PORT);
        let out = client(lab, exe, &from, "http", target, 1)?;
        let answer = match out.attempts.first() {
            Some(Attempt { status: Some(status), body, .. }) => {
                let local = body
                    .as_deref()
                    .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                    .and_then(|v| v.get("localEndpoints")?.as_u64());
                match local {
                    Some(n) => format!("{status} ({n} local)"),
                    None => status.to_string(),
                }
            }
            Some(Attempt { error: Some(err), .. }) => err.clone(),
            _ => "no answer".to_string(),
        };
        let _ = write!(line, " {} {answer};", node.name);
    }
    line.pop();
    Ok(line)
}

/// The router's (IPv4, IPv6) counts of packets it had no route for: any packet to a ClusterIP
/// that was not translated, or to anything outside the lab, ends there.
fn no_route_counts(lab: &Lab) -> anyhow::Result<(u64, u64)> {
    let fabric = lab.ip_counters("fabric")?;
    let count = |key: &str| fabric.get(key).copied().unwrap_or(0);
    Ok((count("IpExt.InNoRoutes"), count("Ip6.InNoRoutes")))
}

/// A running agent; killed when dropped (the lab's teardown would too).
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(
    lab: &Lab,
    exe: &Path,
    work: &Path,
    manifests: &Path,
    node: &str,
) -> anyhow::Result<AgentProcess> {
    let info = lab.node(node)?;
    let log_path = work.join(format!("agent-{node}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = Command::new(exe);
    command
        .arg("agent")
        .arg("--manifests")
        .arg(manifests)
        .args(["--node-name", node])
        .arg("--cgroup")
        .arg(&info.cgroup)
        .arg("--bpf-dir")
        .arg(&info.bpf_dir)
        .arg("--devices")
        .arg(&info.uplink)
        .args(demo_edge::agent_args(lab))
        .arg("--api-socket")
        .arg(work.join(format!("agent-{node}.sock")))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut agent = AgentProcess(lab.spawn_in(node, command)?);
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let ready = wait_until(Duration::from_secs(20), || {
        read_log().contains("agent ready") || matches!(agent.0.try_wait(), Ok(Some(_)))
    });
    if !ready || !read_log().contains("agent ready") {
        bail!("the agent on {node} did not start:\n{}", read_log());
    }
    Ok(agent)
}

/// Runs `switchyard controller --manifests` (on the host: it only reads and writes files) and
/// waits until it has recorded `pooled`'s address in the directory's status file.
fn start_controller(exe: &Path, work: &Path, manifests: &Path) -> anyhow::Result<AgentProcess> {
    let log_path = work.join("controller.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = Command::new(exe);
    command
        .arg("controller")
        .arg("--manifests")
        .arg(manifests)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let controller = AgentProcess(command.spawn().context("starting the controller")?);
    let status = manifests.join(switchyard_k8s::manifest::STATUS_FILE);
    let allocated = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&status).is_ok_and(|s| s.contains(POOLED_IP))
    });
    if !allocated {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        bail!("the controller did not allocate {POOLED_IP}:\n{log}");
    }
    Ok(controller)
}

/// Waits until the example Services answer on every node (agents apply them within
/// milliseconds of reading the directory; this only covers start-up).
fn wait_for_services(lab: &Lab, exe: &Path) -> anyhow::Result<()> {
    let target: SocketAddr = "10.96.0.80:80".parse().context("demo target")?;
    for node in lab.nodes() {
        let pod = node.pods.first().map_or(node.name.as_str(), String::as_str);
        let answered = wait_until(Duration::from_secs(10), || {
            client(lab, exe, pod, "tcp", target, 1).is_ok_and(|o| o.summary.errors.is_empty())
        });
        if !answered {
            bail!("the web Service does not answer from {pod}");
        }
    }
    Ok(())
}

/// Runs `switchyard lab client KIND` in `member` (inside its node's cgroup, so the node's
/// programs translate its connections) and parses its JSON lines.
fn client(
    lab: &Lab,
    exe: &Path,
    member: &str,
    kind: &str,
    target: SocketAddr,
    count: usize,
) -> anyhow::Result<ClientOutput> {
    let mut command = Command::new(exe);
    command.args(["lab", "client", kind, "--target", &target.to_string()]).args([
        "--count",
        &count.to_string(),
        "--timeout-ms",
        "1000",
    ]);
    let output = lab.output_in(member, command)?;
    ClientOutput::parse(&String::from_utf8_lossy(&output.stdout)).map_err(|err| {
        anyhow::anyhow!(
            "{kind} client in {member}: {err}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// On Ctrl-C or SIGTERM, removes the lab by its prefix (the main thread may be anywhere) and
/// exits; the agents and clients die with the lab's cgroups.
fn tear_down_on_signal(prefix: String, work: PathBuf) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        let signalled = runtime.block_on(async {
            let Ok(mut terminate) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return tokio::signal::ctrl_c().await.is_ok();
            };
            tokio::select! {
                result = tokio::signal::ctrl_c() => result.is_ok(),
                _ = terminate.recv() => true,
            }
        });
        if !signalled || !claim_teardown() {
            // The demo is already tearing down; it exits when done.
            return;
        }
        eprintln!("\ndemo: interrupted; removing lab {prefix}");
        if let Err(err) = Lab::down_by_prefix(&LabOptions::default(), &prefix) {
            eprintln!("demo: {err}");
        }
        let _ = std::fs::remove_dir_all(&work);
        let _ = std::io::stdout().flush();
        std::process::exit(130);
    });
}
