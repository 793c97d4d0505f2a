//! `switchyard lab`: a multi-node cluster in network namespaces on this machine.
//!
//! `up` builds a lab and leaves it running (its state file lives under the run directory), so
//! `status`, `exec` and `down` find it again by name (`--lab`, default `sy-lab`). `serve` and `client` are the built-in test
//! servers and clients as processes, for running inside pods through `exec` or `Lab::spawn_in`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use switchyard_lab::tools::{clients, servers};
use switchyard_lab::{Lab, LabOptions, LabPlan, Topology};

use super::output::{OutputArgs, Table, say};

/// Name of the lab the CLI manages unless `--name` says otherwise.
const DEFAULT_LAB_NAME: &str = "sy-lab";

#[derive(Debug, Args)]
pub(crate) struct LabArgs {
    #[command(flatten)]
    location: Location,
    #[command(subcommand)]
    command: LabCommand,
}

/// Where the lab lives; the same flags find it again later.
#[derive(Debug, Args)]
struct Location {
    /// Lab name: the prefix of its namespaces, cgroups and directories.
    #[arg(long = "lab", global = true, default_value = DEFAULT_LAB_NAME)]
    name: String,
    /// cgroup v2 mount under which the lab creates its cgroups.
    #[arg(long, global = true, default_value = switchyard_lab::DEFAULT_CGROUP_ROOT)]
    cgroup_root: PathBuf,
    /// Directory for lab state files and bpffs mounts.
    #[arg(long, global = true, default_value = switchyard_lab::DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
}

impl Location {
    fn options(&self) -> LabOptions {
        LabOptions {
            prefix: Some(self.name.clone()),
            cgroup_root: self.cgroup_root.clone(),
            run_dir: self.run_dir.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build a lab (default: 3 nodes, 2 pods each, 1 external client) and leave it running.
    Up {
        /// YAML topology file: `nodes: [{name, pods: [..]}]`, `clients: [..]`.
        topology: Option<PathBuf>,
    },
    /// Show the lab's nodes, pods and clients with their addresses (exit 1 if parts are missing).
    Status {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The labs running on this machine (their names are what --lab takes).
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Run a command inside a node, pod or client (pods and nodes: inside the node's cgroup).
    Exec {
        /// Node, pod or client name (`fabric` for the router).
        member: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Tear the lab down (processes, namespaces, cgroups, pins, state) and remove leftovers of
    /// labs whose owner process died.
    Down,
    /// Run a built-in server until killed (prints one JSON line once listening); run it in a
    /// pod with `lab exec POD -- switchyard lab serve ...`.
    Serve {
        kind: ServeKind,
        #[arg(long)]
        port: u16,
        /// Name the server answers with (usually the pod name).
        #[arg(long)]
        name: String,
    },
    /// Run a built-in client; prints JSON lines; exits 1 if any attempt failed.
    Client(ClientArgs),
}

#[derive(Debug, Args)]
struct ClientArgs {
    kind: ClientKind,
    /// `ip:port` or `[ipv6]:port`.
    #[arg(long)]
    target: SocketAddr,
    /// Connections or requests to make (tcp, udp, http, latency).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Per-attempt timeout.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// hold, udp-hold: how long to keep the connection or socket.
    #[arg(long, default_value_t = 5000)]
    duration_ms: u64,
    /// hold, udp-hold: time between round trips.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// hold: keep the connection until standard input is closed (instead of --duration-ms).
    #[arg(long)]
    until_stdin_closes: bool,
    /// udp: connect() the socket and send(), instead of sendto() on an unconnected socket.
    #[arg(long)]
    connected: bool,
    /// tcp, udp (unconnected): bind each socket to this address first, so its source is known
    /// at connect()/sendto().
    #[arg(long)]
    source: Option<std::net::IpAddr>,
    /// http: the request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// upload: bytes to send in one request.
    #[arg(long, default_value_t = 1 << 20)]
    bytes: usize,
    /// latency: a second address measured in the same run, alternating (e.g. the pod behind a
    /// ClusterIP), for a ratio that drift cannot skew.
    #[arg(long)]
    peer: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ServeKind {
    /// TCP and UDP echo on the same port.
    Echo,
    TcpEcho,
    UdpEcho,
    Http,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ClientKind {
    /// New TCP connection per request to an echo server.
    Tcp,
    /// New UDP socket per request to an echo server.
    Udp,
    /// HTTP GET per connection.
    Http,
    /// One long-lived TCP connection; reports whether it was reset.
    Hold,
    /// Connect-time statistics.
    Latency,
    /// One connected UDP socket over time; re-connects after socket errors.
    UdpHold,
    /// One large request to a TCP echo server, checked end to end.
    Upload,
}

pub(crate) fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    let options = args.location.options();
    let name = &args.location.name;
    match args.command {
        LabCommand::Up { topology } => up(&options, name, topology),
        LabCommand::Status { output } => {
            let lab = Lab::open(&options, name)?;
            let missing = lab.missing();
            output.print(lab.plan(), |_| {
                let mut text = plan_text(lab.plan());
                for thing in &missing {
                    text += &format!("MISSING {thing}\n");
                }
                text
            })?;
            Ok(if missing.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        LabCommand::List { output } => {
            let labs: Vec<LabPlan> =
                Lab::list(&options).into_iter().map(|state| state.plan).collect();
            output.print(&labs, |_| {
                let mut table = Table::new(["LAB", "NODES", "PODS", "CLIENTS", "DIRECTORS"]);
                let names = |names: Vec<&str>| {
                    if names.is_empty() { "-".to_owned() } else { names.join(",") }
                };
                for plan in &labs {
                    table.row([
                        plan.prefix.clone(),
                        names(plan.nodes.iter().map(|n| n.name.as_str()).collect()),
                        names(plan.pods.iter().map(|p| p.name.as_str()).collect()),
                        names(plan.clients.iter().map(|c| c.name.as_str()).collect()),
                        names(plan.directors.iter().map(|d| d.name.as_str()).collect()),
                    ]);
                }
                if labs.is_empty() {
                    "no lab is running (`switchyard lab up` starts one)\n".to_owned()
                } else {
                    table.render()
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Exec { member, command } => {
            let lab = Lab::open(&options, name)?;
            let (program, rest) = command.split_first().context("exec needs a command")?;
            let mut cmd = Command::new(program);
            cmd.args(rest);
            // Only returns if the command could not be started.
            Err(lab.exec_in(&member, cmd).into())
        }
        LabCommand::Down => {
            Lab::down_by_prefix(&options, name)?;
            println!("lab {name} is down");
            for stale in Lab::sweep_stale(&options)? {
                println!("removed leftover lab {stale} (its owner process is gone)");
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Serve { kind, port, name } => serve(kind, port, &name),
        LabCommand::Client(args) => client(&args),
    }
}

fn client(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let (target, count) = (args.target, args.count);
    let timeout = Duration::from_millis(args.timeout_ms);
    let duration = Duration::from_millis(args.duration_ms);
    let interval = Duration::from_millis(args.interval_ms);
    let ok = match args.kind {
        ClientKind::Tcp => {
            attempts("tcp", target, &clients::tcp_from(args.source, target, count, timeout))?
        }
        ClientKind::Udp if args.connected => {
            attempts("udp-connected", target, &clients::udp_connected(target, count, timeout))?
        }
        ClientKind::Udp => {
            attempts("udp", target, &clients::udp_from(args.source, target, count, timeout))?
        }
        ClientKind::Http => {
            attempts("http", target, &clients::http(target, &args.path, count, timeout))?
        }
        ClientKind::Hold if args.until_stdin_closes => {
            let closed = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&closed);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
                flag.store(true, Ordering::SeqCst);
            });
            let report =
                clients::hold_until(target, interval, timeout, || closed.load(Ordering::SeqCst));
            print_json(&report)?;
            report.error.is_none()
        }
        ClientKind::Hold => {
            let report = clients::hold(target, duration, interval, timeout);
            print_json(&report)?;
            report.error.is_none()
        }
        ClientKind::UdpHold => {
            let report = clients::udp_hold(target, duration, interval, timeout);
            print_json(&report)?;
            report.errors.is_empty()
        }
        ClientKind::Upload => {
            let attempt = clients::upload(target, args.bytes, timeout);
            print_json(&attempt)?;
            attempt.error.is_none()
        }
        ClientKind::Latency => match args.peer {
            None => {
                let report = clients::connect_latency(target, count, timeout);
                print_json(&report)?;
                report.failures == 0
            }
            Some(peer) => {
                let (report, peer_report) =
                    clients::connect_latency_pair(target, peer, count, timeout);
                print_json(&report)?;
                print_json(&peer_report)?;
                #[derive(Serialize)]
                struct Ratio {
                    kind: &'static str,
                    p50_ratio: f64,
                    mean_ratio: f64,
                }
                let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
                print_json(&Ratio {
                    kind: "latency-ratio",
                    p50_ratio: ratio(report.p50_us as f64, peer_report.p50_us as f64),
                    mean_ratio: ratio(report.mean_us, peer_report.mean_us),
                })?;
                report.failures == 0 && peer_report.failures == 0
            }
        },
    };
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn up(options: &LabOptions, name: &str, topology: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let topology = match topology {
        Some(path) => Topology::from_file(&path)?,
        None => Topology::default(),
    };
    let started = std::time::Instant::now();
    let plan = Lab::up_with(&topology, options)?.keep_running()?;
    print!("{}", plan_text(&plan));
    println!("\nbuilt in {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
    // The hints must work as printed: they name this lab unless it is the default one.
    let lab = if name == DEFAULT_LAB_NAME { String::new() } else { format!(" --lab {name}") };
    let pod = plan.pods.first().map_or("<pod>", |p| &p.name);
    let node = plan.nodes.first().map_or("<node>", |n| &n.name);
    println!("try:  switchyard lab{lab} exec {pod} -- ip addr");
    println!("      switchyard status --lab-node {node}{lab}");
    println!("stop: switchyard lab{lab} down");
    Ok(ExitCode::SUCCESS)
}

/// The lab's name and router, then its members in a table (`KIND NAME IPV4 IPV6 DETAILS`).
fn plan_text(plan: &LabPlan) -> String {
    let mut out = String::new();
    say!(out, "lab {} (router netns {})", plan.prefix, plan.router_netns);
    let mut table = Table::new(["KIND", "NAME", "IPV4", "IPV6", "DETAILS"]);
    for node in &plan.nodes {
        table.row([
            "node".to_owned(),
            node.name.clone(),
            node.ipv4.to_string(),
            node.ipv6.to_string(),
            format!(
                "pods {} / {}  dev {}  cgroup {}  bpffs {}",
                node.pod_cidr_v4,
                node.pod_cidr_v6,
                node.uplink,
                node.cgroup.display(),
                node.bpf_dir.display()
            ),
        ]);
    }
    for pod in &plan.pods {
        let on = format!("on {}", pod.node);
        table.row([
            "pod".to_owned(),
            pod.name.clone(),
            pod.ipv4.to_string(),
            pod.ipv6.to_string(),
            on,
        ]);
    }
    for client in &plan.clients {
        let (v4, v6) = (client.ipv4.to_string(), client.ipv6.to_string());
        table.row(["client".to_owned(), client.name.clone(), v4, v6, String::new()]);
    }
    out += &table.render();
    out
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Prints each attempt and a summary; returns whether every attempt got an answer.
fn attempts(kind: &str, target: SocketAddr, attempts: &[clients::Attempt]) -> anyhow::Result<bool> {
    for attempt in attempts {
        print_json(attempt)?;
    }
    let summary = clients::Summary::of(kind, target, attempts);
    print_json(&summary)?;
    Ok(summary.errors.is_empty())
}

fn serve(kind: ServeKind, port: u16, name: &str) -> anyhow::Result<ExitCode> {
    let kinds: &[servers::ServerKind] = match kind {
        ServeKind::Echo => &[servers::ServerKind::TcpEcho, servers::ServerKind::UdpEcho],
        ServeKind::TcpEcho => &[servers::ServerKind::TcpEcho],
        ServeKind::UdpEcho => &[servers::ServerKind::UdpEcho],
        ServeKind::Http => &[servers::ServerKind::Http],
    };
    let mut handles = Vec::new();
    for kind in kinds {
        let handle = servers::start(*kind, name, port)
            .with_context(|| format!("starting {kind:?} server {name} on port {port}"))?;
        #[derive(Serialize)]
        struct Listening<'a> {
            kind: &'static str,
            server: servers::ServerKind,
            name: &'a str,
            addr: String,
        }
        print_json(&Listening {
            kind: "listening",
            server: *kind,
            name,
            addr: handle.local_addr().to_string(),
        })?;
        handles.push(handle);
    }
    // Servers run until the process is killed.
    for handle in handles {
        handle.wait();
    }
    Ok(ExitCode::SUCCESS)
}
