//! `switchyard-bench`: runs the benchmarks of issue 8 and writes their results (target/benchmarks/,
//! or docs/benchmarks/ with `--out` to publish).
//!
//! `cargo run --release -p switchyard-bench -- all [--quick]` runs everything (as root: it
//! creates network namespaces of its own and never touches the host's rules).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use switchyard_bench::connection_rate;
use switchyard_bench::forwarding;
use switchyard_bench::golden;
use switchyard_bench::kube_proxy::{iptables, nftables};
use switchyard_bench::latency::{self, LatencyPath, LatencyPlan};
use switchyard_bench::machine::Machine;
use switchyard_bench::netns::Netns;
use switchyard_bench::plot;
use switchyard_bench::programming::{self, Limits, Peer, Step};
use switchyard_bench::report::{
    self, ConnectionReport, LatencyReport, ProgrammingReport, ThroughputReport,
};
use switchyard_bench::state::NodeConfig;
use switchyard_bench::synthetic::{self, Shape};
use switchyard_bench::throughput::{self, Forwarder, ThroughputPlan};

#[derive(Debug, Parser)]
#[command(name = "switchyard-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Ruleset {
    Iptables,
    IptablesPartial,
    Nftables,
    NftablesPartial,
}

#[derive(Debug, Args)]
struct RunOptions {
    /// Small clusters and short limits: a smoke run of a few minutes.
    #[arg(long)]
    quick: bool,
    /// Where results go (default: target/benchmarks, or target/benchmarks/quick with --quick,
    /// so a look never rewrites tracked files; `--out docs/benchmarks` publishes).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl RunOptions {
    fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let results = root.canonicalize().unwrap_or(root).join("target/benchmarks");
            if self.quick { results.join("quick") } else { results }
        })
    }
}

#[derive(Debug, Args)]
struct ProgrammingOptions {
    #[command(flatten)]
    run: RunOptions,
    /// Only these shapes, as SERVICESxENDPOINTS (e.g. 5000x50); default: the whole plan.
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
    /// Only these peers; default: all.
    #[arg(long, value_delimiter = ',', value_enum)]
    peers: Vec<PeerArg>,
    /// Keep the other measurements already in programming.json and replace only these.
    #[arg(long)]
    merge: bool,
}

#[derive(Debug, Args)]
struct LatencyOptions {
    #[command(flatten)]
    run: RunOptions,
    /// Only these peers (still Switchyard first, legacy last); default: all.
    #[arg(long, value_delimiter = ',', value_enum)]
    peers: Vec<PeerArg>,
    /// Only these numbers of Services (e.g. 1,100,1000); default: the whole plan.
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Connections per point (default 1000; 200 with --quick).
    #[arg(long)]
    connections: Option<usize>,
    /// Go through all sizes this many times, a share of the connections each time, so noise
    /// falls on every size alike (for comparing p99 between sizes; reloads each peer's ruleset
    /// at every visit).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Run the clients and the echo server under SCHED_FIFO (priority 10): on a machine busy
    /// with other work, what a p99 then measures is the path, not the wait for a CPU.
    #[arg(long)]
    realtime: bool,
}

#[derive(Debug, Args)]
struct MemoryOptions {
    #[command(flatten)]
    run: RunOptions,
    /// Services of the measured cluster.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Endpoints per Service.
    #[arg(long, default_value_t = 25)]
    endpoints: usize,
    /// Only write the cluster's manifests (as the agent run reads them) into this directory and
    /// exit: for profiling the agent by hand (heaptrack, massif).
    #[arg(long, value_name = "DIR")]
    write_manifests: Option<PathBuf>,
    /// Only the running agent (`$SWITCHYARD_AGENT_BIN`): no in-process part, no peers. For
    /// comparing two agent builds in one run.
    #[arg(long)]
    agent_only: bool,
    /// Several shapes in one run, as SERVICESxENDPOINTS (e.g. 1000x25,10000x25,30000x10):
    /// each measured as one shape is (files memory-SxE.{md,json}), then one table of them all
    /// (memory-shapes.{md,json}). Replaces --services and --endpoints.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["services", "endpoints", "write_manifests"])]
    shapes: Vec<String>,
}

#[derive(Debug, Args)]
struct ForwardingOptions {
    #[command(flatten)]
    run: RunOptions,
    /// Numbers of Services (default 1,10000; 1,100 with --quick).
    #[arg(long, value_delimiter = ',')]
    services: Vec<usize>,
    /// Only these forwarders; default: all.
    #[arg(long, value_delimiter = ',', value_enum)]
    forwarders: Vec<ForwarderArg>,
    /// Seconds per sample (default 5; 1 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Rounds (default 3; 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Nice value of the forwarder's and the generator's threads while a sample runs (default
    /// -20: each nearly alone on its CPU; 0 shares the CPUs with everything else).
    #[arg(long, allow_hyphen_values = true)]
    nice: Option<i32>,
}

#[derive(Debug, Args)]
struct ConnectionOptions {
    #[command(flatten)]
    run: RunOptions,
    /// Numbers of Services (default 10000; 1000 with --quick).
    #[arg(long, value_delimiter = ',')]
    services: Vec<usize>,
    /// Only these peers (still Switchyard first, legacy last); default: all.
    #[arg(long, value_delimiter = ',', value_enum)]
    peers: Vec<PeerArg>,
    /// Client threads opening connections at once.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Seconds per point (default 3; 1 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Switchyard's SNAT source ports as MIN-MAX (the agent's `--snat-port-range`); default:
    /// what the agent chooses on a node with the default NodePort and ephemeral ranges
    /// (1024-29999, `PacketSettings::default()`).
    #[arg(long, value_name = "MIN-MAX")]
    snat_ports: Option<String>,
    /// Measure every peer this many times, peer after peer in each round: the ratios are taken
    /// round by round, so a drifting load on a shared machine falls on every peer alike
    /// (default 5; 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ForwarderArg {
    Kernel,
    SwitchyardTc,
    SwitchyardXdp,
    Nftables,
    IptablesNft,
    IptablesLegacy,
    Director,
}

impl From<ForwarderArg> for forwarding::Forwarder {
    fn from(f: ForwarderArg) -> Self {
        match f {
            ForwarderArg::Kernel => Self::KernelForwarding,
            ForwarderArg::SwitchyardTc => Self::SwitchyardTc,
            ForwarderArg::SwitchyardXdp => Self::SwitchyardXdp,
            ForwarderArg::Nftables => Self::Nftables,
            ForwarderArg::IptablesNft => Self::IptablesNft,
            ForwarderArg::IptablesLegacy => Self::IptablesLegacy,
            ForwarderArg::Director => Self::DirectorXdp,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PeerArg {
    IptablesNft,
    IptablesLegacy,
    Nftables,
    Switchyard,
}

impl From<PeerArg> for Peer {
    fn from(peer: PeerArg) -> Self {
        match peer {
            PeerArg::IptablesNft => Peer::IptablesNft,
            PeerArg::IptablesLegacy => Peer::IptablesLegacy,
            PeerArg::Nftables => Peer::Nftables,
            PeerArg::Switchyard => Peer::Switchyard,
        }
    }
}

fn parse_shape(text: &str) -> Result<Shape> {
    let (services, endpoints) = text
        .split_once('x')
        .with_context(|| format!("shape {text:?}: expected SERVICESxENDPOINTS, e.g. 5000x50"))?;
    Ok(Shape {
        services: services.parse().with_context(|| format!("shape {text:?}: services"))?,
        endpoints_per_service: endpoints
            .parse()
            .with_context(|| format!("shape {text:?}: endpoints"))?,
    })
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything below (items 1–4, 3c included), results and plots under --out (needs root).
    All(RunOptions),
    /// Item 1: programming time of each data plane (needs root; namespaces of its own).
    Programming(ProgrammingOptions),
    /// Rewrite programming.md and the programming plots from programming.json (no measuring).
    Report(RunOptions),
    /// Item 2: latency against the number of Services (needs root; a lab of its own).
    Latency(LatencyOptions),
    /// Item 3 (earlier form): NodePort throughput from a socket sender, which is the
    /// bottleneck (needs root; a lab of its own). See `forwarding`.
    Throughput(RunOptions),
    /// Item 3: packets per second per forwarder CPU, from a live-frames generator that outruns
    /// the forwarder (needs root and two CPUs; namespaces of its own).
    Forwarding(ForwardingOptions),
    /// Item 3b: new connections per second through a NodePort, per peer (needs root; a lab of
    /// its own).
    Connections(ConnectionOptions),
    /// Item 4: BPF map memory, agent RSS and the peers' kernel memory at 10,000 Services × 25
    /// endpoints (needs root).
    Memory(MemoryOptions),
    /// Internal: the latency client as a process of its own (started by `latency` inside a pod
    /// and its node's cgroup); prints samples as JSON.
    #[command(name = "latency-client", hide = true)]
    LatencyClient {
        target: std::net::SocketAddr,
        connections: usize,
        /// Under SCHED_FIFO (latency --realtime).
        #[arg(long)]
        realtime: bool,
    },
    /// Print the ruleset kube-proxy would write (the small golden cluster, or a synthetic one).
    Ruleset {
        #[arg(value_enum)]
        kind: Ruleset,
        /// Render a synthetic cluster of this many Services instead of the golden one.
        #[arg(long)]
        services: Option<usize>,
        /// Endpoints per Service of the synthetic cluster.
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::All(options) => {
            let started = Instant::now();
            let programming = ProgrammingOptions {
                run: options,
                shapes: Vec::new(),
                peers: Vec::new(),
                merge: false,
            };
            run_programming(&programming)?;
            let options = programming.run;
            run_latency(&options, &[], &[], 1, None, false)?;
            run_throughput(&options)?;
            run_connections(&ConnectionOptions {
                run: RunOptions { quick: options.quick, out: options.out.clone() },
                services: Vec::new(),
                peers: Vec::new(),
                clients: 4,
                seconds: None,
                snat_ports: None,
                rounds: None,
            })?;
            // --quick: a tenth of the Services (the peers' 10,000 × 25 rulesets take minutes).
            let services = if options.quick { 1000 } else { 10_000 };
            let forwarding = ForwardingOptions {
                run: RunOptions { quick: options.quick, out: options.out.clone() },
                services: Vec::new(),
                forwarders: Vec::new(),
                seconds: None,
                rounds: None,
                nice: None,
            };
            run_memory(&MemoryOptions {
                run: options,
                services,
                endpoints: 25,
                write_manifests: None,
                agent_only: false,
                shapes: Vec::new(),
            })?;
            // Last: it fails the run when the generator check fails, after writing its report.
            run_forwarding(&forwarding)?;
            eprintln!("all benchmarks done in {:.0} s", started.elapsed().as_secs_f64());
        }
        Command::Programming(options) => run_programming(&options)?,
        Command::Latency(options) => run_latency(
            &options.run,
            &options.peers,
            &options.sizes,
            options.rounds,
            options.connections,
            options.realtime,
        )?,
        Command::Report(options) => {
            let path = options.out_dir().join("programming.json");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let report: ProgrammingReport = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            write_programming(&options.out_dir(), &report)?;
        }
        Command::Throughput(options) => run_throughput(&options)?,
        Command::Forwarding(options) => run_forwarding(&options)?,
        Command::Connections(options) => run_connections(&options)?,
        Command::Memory(options) => run_memory(&options)?,
        Command::LatencyClient { target, connections, realtime } => {
            let (samples_us, failures) = latency::round_trips_with(target, connections, realtime)?;
            let result = latency::ClientResult { samples_us, failures };
            println!("{}", serde_json::to_string(&result).context("encoding client samples")?);
        }
        Command::Ruleset { kind, services, endpoints } => {
            print!("{}", render_ruleset(kind, services, endpoints));
        }
    }
    Ok(())
}

fn render_ruleset(kind: Ruleset, services: Option<usize>, endpoints: usize) -> String {
    let (config, before, after) = match services {
        None => (golden::node_config(), golden::state(), golden::state_after_endpoint_change()),
        Some(services) => {
            let before = synthetic::cluster(Shape { services, endpoints_per_service: endpoints });
            let after = synthetic::replace_one_endpoint(&before);
            (NodeConfig::default(), before, after)
        }
    };
    match kind {
        Ruleset::Iptables => {
            iptables::render(&config, &before, iptables::Sync::Full { previous: None })
        }
        Ruleset::IptablesPartial => {
            iptables::render(&config, &after, iptables::Sync::Partial { previous: &before })
        }
        Ruleset::Nftables => nftables::render(&config, &before, None),
        Ruleset::NftablesPartial => nftables::render(&config, &after, Some(&before)),
    }
}

/// The shapes of issue 8 (or small ones with --quick), each with its repetitions.
fn programming_plan(quick: bool) -> (Vec<(Shape, usize)>, Duration) {
    let shape = |services, endpoints_per_service| Shape { services, endpoints_per_service };
    if quick {
        (
            vec![(shape(100, 10), 3), (shape(300, 10), 3), (shape(100, 50), 3)],
            Duration::from_secs(30),
        )
    } else {
        (
            vec![
                (shape(1000, 10), 3),
                (shape(3000, 10), 1),
                (shape(10_000, 10), 1),
                (shape(30_000, 10), 1),
                (shape(5000, 50), 1),
            ],
            Duration::from_secs(60),
        )
    }
}

/// `big` needs at least what `small` needs: no fewer Services and no fewer endpoints in all.
fn dominates(big: Shape, small: Shape) -> bool {
    big.services >= small.services
        && big.services * big.endpoints_per_service >= small.services * small.endpoints_per_service
}

/// Wall time after which item 1 measures no more peers (Switchyard's steps take seconds and are
/// still measured), so the whole set stays within its 30 minutes on a loaded machine.
fn programming_budget(quick: bool) -> Duration {
    Duration::from_secs(if quick { 4 * 60 } else { 18 * 60 })
}

fn run_programming(options: &ProgrammingOptions) -> Result<()> {
    let out = options.run.out_dir();
    for name in Netns::sweep_stale("sybench") {
        eprintln!("deleted namespace {name} left by an earlier, killed run");
    }
    let (mut plan, per_run) = programming_plan(options.run.quick);
    if !options.shapes.is_empty() {
        let wanted = options.shapes.iter().map(|s| parse_shape(s)).collect::<Result<Vec<_>>>()?;
        let repetitions =
            |shape: &Shape| plan.iter().find(|(s, _)| s == shape).map_or(1, |(_, r)| *r);
        plan = wanted.iter().map(|shape| (*shape, repetitions(shape))).collect();
    }
    let peers: Vec<Peer> = if options.peers.is_empty() {
        Peer::ALL.to_vec()
    } else {
        options.peers.iter().map(|&p| p.into()).collect()
    };
    let json_path = out.join("programming.json");
    let mut measurements = Vec::new();
    if options.merge {
        let text = std::fs::read_to_string(&json_path)
            .with_context(|| format!("--merge: reading {}", json_path.display()))?;
        let previous: ProgrammingReport = serde_json::from_str(&text)
            .with_context(|| format!("--merge: parsing {}", json_path.display()))?;
        measurements = previous.measurements;
    }
    let started = Instant::now();
    let budget = programming_budget(options.run.quick);
    // (peer, shape) whose full sync exceeded the limit: larger clusters are not tried for it.
    let mut exceeded: Vec<(Peer, Shape)> = Vec::new();
    for (shape, repetitions) in plan {
        let limits = Limits { per_run, repetitions };
        let mut measured = Vec::new();
        let mut fresh = Vec::new();
        for &peer in &peers {
            let reason = if started.elapsed() > budget && peer != Peer::Switchyard {
                Some(format!(
                    "not tried: the programming budget of {} min was used up",
                    budget.as_secs() / 60
                ))
            } else {
                exceeded.iter().find(|(p, smaller)| *p == peer && dominates(shape, *smaller)).map(
                    |(_, smaller)| {
                        format!(
                            "not tried: its full sync exceeded {} s at {} × {}",
                            per_run.as_secs(),
                            smaller.services,
                            smaller.endpoints_per_service
                        )
                    },
                )
            };
            match reason {
                Some(reason) => {
                    eprintln!(
                        "{:>6} × {:<3} {:<16} {reason}",
                        shape.services,
                        shape.endpoints_per_service,
                        peer.label()
                    );
                    fresh.push(programming::not_tried(peer, shape, &reason));
                }
                None => measured.push(peer),
            }
        }
        fresh.extend(programming::measure_shape(&measured, shape, limits, &mut |line| {
            eprintln!("{line}")
        }));
        for m in &fresh {
            if m.step == Step::Full && m.exceeded_seconds.is_some() {
                exceeded.push((m.peer, shape));
            }
        }
        measurements.retain(|m| {
            !(m.services == shape.services
                && m.endpoints_per_service == shape.endpoints_per_service
                && peers.contains(&m.peer))
        });
        measurements.extend(fresh);
        // Written after every shape, so a run stopped early keeps what it measured.
        let report = ProgrammingReport {
            machine: Machine::detect(),
            quick: options.run.quick,
            per_run_limit_seconds: per_run.as_secs_f64(),
            measurements: measurements.clone(),
        };
        write_programming(&out, &report)?;
    }
    eprintln!("programming results in {}", out.display());
    Ok(())
}

fn write_programming(out: &Path, report: &ProgrammingReport) -> Result<()> {
    report::write_json(&out.join("programming.json"), report)?;
    report::write_file(&out.join("programming.md"), &report::programming_markdown(report))?;
    plot::programming_chart(
        &out.join("programming-full.svg"),
        "Full programming: empty node → N Services",
        &report.measurements,
        &[Step::Full],
    )
    .context("plotting full programming")?;
    plot::programming_chart(
        &out.join("programming-change.svg"),
        "One endpoint change at N Services",
        &report.measurements,
        &[Step::ChangePartial, Step::ChangeFullRewrite],
    )
    .context("plotting endpoint change")?;
    Ok(())
}

fn run_connections(options: &ConnectionOptions) -> Result<()> {
    let out = options.run.out_dir();
    let mut peers = vec![Peer::Switchyard, Peer::Nftables, Peer::IptablesNft, Peer::IptablesLegacy];
    if !options.peers.is_empty() {
        let chosen: Vec<Peer> = options.peers.iter().map(|&p| p.into()).collect();
        peers.retain(|p| chosen.contains(p));
    }
    let quick = options.run.quick;
    let services = if !options.services.is_empty() {
        options.services.clone()
    } else if quick {
        vec![1000]
    } else {
        vec![10_000]
    };
    anyhow::ensure!(services.iter().all(|&n| n > 0), "--services: at least 1 Service each");
    let seconds = options.seconds.unwrap_or(if quick { 1.0 } else { 3.0 });
    anyhow::ensure!(seconds > 0.0 && seconds.is_finite(), "--seconds: a positive number");
    let snat_ports = match &options.snat_ports {
        None => None,
        Some(text) => {
            let parsed = text.split_once('-').and_then(|(min, max)| {
                Some((min.trim().parse::<u16>().ok()?, max.trim().parse::<u16>().ok()?))
            });
            let Some((min, max)) = parsed.filter(|(min, max)| 0 < *min && min <= max) else {
                anyhow::bail!("--snat-ports {text:?}: expected MIN-MAX, 1 <= MIN <= MAX <= 65535");
            };
            Some(min..=max)
        }
    };
    let plan = connection_rate::RatePlan {
        services,
        peers,
        clients: options.clients,
        seconds,
        snat_ports,
        rounds: options.rounds.unwrap_or(if options.run.quick { 1 } else { 5 }),
    };
    let points = connection_rate::run(&plan, &mut |line| eprintln!("{line}"))?;
    let report = ConnectionReport {
        machine: Machine::detect(),
        clients: plan.clients,
        seconds_per_point: seconds,
        rounds: plan.rounds,
        points,
    };
    report::write_json(&out.join("connections.json"), &report)?;
    report::write_file(&out.join("connections.md"), &report::connection_markdown(&report))?;
    eprintln!("connection-rate results in {}", out.display());
    Ok(())
}

fn run_latency(
    options: &RunOptions,
    only_peers: &[PeerArg],
    only_sizes: &[usize],
    rounds: usize,
    connections: Option<usize>,
    realtime: bool,
) -> Result<()> {
    anyhow::ensure!(rounds > 0, "--rounds: at least 1");
    let out = options.out_dir();
    // Switchyard first, in a node namespace no peer has touched yet (a peer's tables can leave
    // netfilter hooks registered there); nftables deletes its table; legacy x_tables last.
    let mut peers = vec![Peer::Switchyard, Peer::Nftables, Peer::IptablesNft, Peer::IptablesLegacy];
    if !only_peers.is_empty() {
        let chosen: Vec<Peer> = only_peers.iter().map(|&p| p.into()).collect();
        peers.retain(|p| chosen.contains(p));
    }
    let client_exe = std::env::current_exe().context("finding this binary")?;
    let mut plan = if options.quick {
        LatencyPlan {
            sizes: vec![1, 100, 1000],
            connections: 200,
            rounds,
            peers,
            client_exe,
            realtime,
        }
    } else {
        LatencyPlan {
            sizes: vec![1, 100, 1000, 5000, 10_000, 30_000],
            connections: 1000,
            rounds,
            peers,
            client_exe,
            realtime,
        }
    };
    if let Some(connections) = connections {
        anyhow::ensure!(connections >= rounds, "--connections: at least one per round");
        plan.connections = connections;
    }
    if !only_sizes.is_empty() {
        anyhow::ensure!(only_sizes.iter().all(|&n| n > 0), "--sizes: at least 1 Service each");
        plan.sizes = only_sizes.to_vec();
    }
    let points = latency::run(&plan, &mut |line| eprintln!("{line}"))?;
    let report = LatencyReport {
        machine: Machine::detect(),
        quick: options.quick,
        connections_per_point: plan.connections,
        rounds: plan.rounds,
        realtime: plan.realtime,
        points,
    };
    report::write_json(&out.join("latency.json"), &report)?;
    report::write_file(&out.join("latency.md"), &report::latency_markdown(&report))?;
    plot::latency_chart(&out.join("latency.svg"), &report.points, LatencyPath::PodToClusterIp)
        .context("plotting latency")?;
    plot::latency_chart(
        &out.join("latency-nodeport.svg"),
        &report.points,
        LatencyPath::ExternalToNodePort,
    )
    .context("plotting NodePort latency")?;
    eprintln!("latency results in {}", out.display());
    Ok(())
}

/// The `switchyard` binary whose `agent` item 4 runs: `$SWITCHYARD_AGENT_BIN`, else the one
/// next to this binary, else the workspace's release build.
fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHYARD_AGENT_BIN") {
        return path.into();
    }
    let sibling =
        std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("switchyard")));
    sibling.filter(|p| p.exists()).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/switchyard")
    })
}

/// Item 4 at the given size (10,000 × 25 in the full set, 1,000 × 25 with `all --quick`), or
/// at several (`--shapes`) in one run.
fn run_memory(options: &MemoryOptions) -> Result<()> {
    let out = options.run.out_dir();
    if !options.shapes.is_empty() {
        let shapes = options.shapes.iter().map(|s| parse_shape(s)).collect::<Result<Vec<_>>>()?;
        let mut reports = Vec::new();
        for shape in shapes {
            let report = measure_memory(shape, options.agent_only);
            let name = format!("memory-{}x{}", shape.services, shape.endpoints_per_service);
            report::write_json(&out.join(format!("{name}.json")), &report)?;
            report::write_file(
                &out.join(format!("{name}.md")),
                &switchyard_bench::memory::markdown(&report),
            )?;
            reports.push(report);
        }
        let text = switchyard_bench::memory::shapes_markdown(&reports);
        eprint!("{text}");
        report::write_json(&out.join("memory-shapes.json"), &reports)?;
        report::write_file(&out.join("memory-shapes.md"), &text)?;
        return Ok(());
    }
    let shape = Shape { services: options.services, endpoints_per_service: options.endpoints };
    if let Some(dir) = &options.write_manifests {
        let (files, bytes) = switchyard_bench::memory::write_cluster_manifests(shape, dir)?;
        eprintln!("memory: wrote {files} files ({bytes} bytes) to {}", dir.display());
        return Ok(());
    }
    let report = measure_memory(shape, options.agent_only);
    let text = switchyard_bench::memory::markdown(&report);
    eprint!("{text}");
    report::write_json(&out.join("memory.json"), &report)?;
    report::write_file(&out.join("memory.md"), &text)?;
    Ok(())
}

/// One shape: in process (unless `agent_only`), the running agent, then the peers' rulesets.
fn measure_memory(shape: Shape, agent_only: bool) -> switchyard_bench::memory::MemoryReport {
    // A failure here (say, ENOMEM creating a large map on a busy machine) leaves the agent and
    // the peers to be measured all the same.
    let mut report = if agent_only {
        switchyard_bench::memory::MemoryReport::in_process_failed(
            shape,
            "not run (--agent-only)".into(),
        )
    } else {
        switchyard_bench::memory::measure(shape).unwrap_or_else(|error| {
            eprintln!("memory: in-process measurement failed: {error}");
            switchyard_bench::memory::MemoryReport::in_process_failed(shape, error.to_string())
        })
    };
    let agent_bin = agent_binary();
    eprintln!(
        "memory: running {} agent on {} × {}",
        agent_bin.display(),
        shape.services,
        shape.endpoints_per_service
    );
    let (agent, agent_kernel) =
        switchyard_bench::memory::measure_agent(shape, &agent_bin, Duration::from_secs(300));
    report.agent = Some(agent);
    report.kernel.push(agent_kernel);
    let state = synthetic::cluster(shape);
    let peers = if agent_only {
        Vec::new()
    } else {
        vec![Peer::Nftables, Peer::IptablesNft, Peer::IptablesLegacy]
    };
    for peer in peers {
        eprintln!(
            "memory: loading {} for {} × {}",
            peer.label(),
            shape.services,
            shape.endpoints_per_service
        );
        report.kernel.push(switchyard_bench::memory::peer_kernel_memory(peer, &state));
    }
    report
}

fn run_forwarding(options: &ForwardingOptions) -> Result<()> {
    let quick = options.run.quick;
    let out = options.run.out_dir();
    let plan = forwarding::FwdPlan {
        forwarders: if options.forwarders.is_empty() {
            forwarding::Forwarder::ALL.to_vec()
        } else {
            options.forwarders.iter().map(|&f| f.into()).collect()
        },
        services: if !options.services.is_empty() {
            options.services.clone()
        } else if quick {
            vec![1, 100]
        } else {
            vec![1, 10_000]
        },
        duration: Duration::from_secs_f64(options.seconds.unwrap_or(if quick { 1.0 } else { 5.0 })),
        rounds: options.rounds.unwrap_or(if quick { 1 } else { 3 }),
        nice: options.nice.unwrap_or(forwarding::DEFAULT_NICE),
    };
    let points = forwarding::run(&plan, &mut |line| eprintln!("{line}"))?;
    let report = forwarding::FwdReport {
        machine: Machine::detect(),
        quick,
        seconds_per_sample: plan.duration.as_secs_f64(),
        rounds: plan.rounds,
        nice: plan.nice,
        check: forwarding::check(&points),
        summary: forwarding::summarize(&points),
        points,
    };
    let text = forwarding::markdown(&report);
    eprint!("{text}");
    report::write_json(&out.join("forwarding.json"), &report)?;
    report::write_file(&out.join("forwarding.md"), &text)?;
    eprintln!("forwarding results in {}", out.display());
    match &report.check {
        Some(check) if check.ok => Ok(()),
        Some(check) if check.closed_loop => anyhow::bail!(
            "the generator offered only {:.1}× what {} forwarded (needs ≥ {}×): \
             the figures may measure the generator, not the forwarders",
            check.lowest_sample_ratio,
            check.lowest_sample,
            forwarding::REQUIRED_HEADROOM
        ),
        Some(check) => anyhow::bail!(
            "the generator offered only {:.1}× what the best forwarder forwarded (needs ≥ {}×): \
             the figures may measure the generator, not the forwarders",
            check.ratio,
            forwarding::REQUIRED_HEADROOM
        ),
        None => anyhow::bail!("no forwarding sample succeeded"),
    }
}

fn run_throughput(options: &RunOptions) -> Result<()> {
    let out = options.out_dir();
    let plan = ThroughputPlan {
        forwarders: Forwarder::ALL.to_vec(),
        services: 1000,
        duration: Duration::from_secs(if options.quick { 1 } else { 5 }),
        rounds: if options.quick { 1 } else { 3 },
    };
    let points = throughput::run(&plan, &mut |line| eprintln!("{line}"))?;
    let report = ThroughputReport {
        machine: Machine::detect(),
        quick: options.quick,
        services: plan.services,
        rounds: plan.rounds,
        seconds_per_sample: plan.duration.as_secs_f64(),
        summary: throughput::summarize(&points),
        points,
    };
    report::write_json(&out.join("throughput.json"), &report)?;
    report::write_file(&out.join("throughput.md"), &report::throughput_markdown(&report))?;
    eprintln!("throughput results in {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_go_to_target_unless_a_directory_is_named() {
        for quick in [false, true] {
            let dir = RunOptions { quick, out: None }.out_dir();
            assert!(dir.to_string_lossy().contains("target/benchmarks"), "{}", dir.display());
            assert!(!dir.to_string_lossy().contains("docs"), "{}", dir.display());
        }
        let named = RunOptions { quick: true, out: Some(PathBuf::from("docs/benchmarks")) };
        assert_eq!(named.out_dir(), PathBuf::from("docs/benchmarks"));
    }

    #[test]
    fn a_cluster_dominates_those_with_no_more_services_and_endpoints() {
        let shape = |services, endpoints_per_service| Shape { services, endpoints_per_service };
        assert!(dominates(shape(10_000, 10), shape(3000, 10)));
        assert!(dominates(shape(5000, 50), shape(3000, 10)));
        assert!(dominates(shape(3000, 10), shape(3000, 10)));
        assert!(!dominates(shape(5000, 50), shape(10_000, 10)));
        assert!(dominates(shape(30_000, 10), shape(5000, 50)));
        assert!(!dominates(shape(5000, 50), shape(30_000, 10)));
        assert!(!dominates(shape(1000, 10), shape(3000, 10)));
    }

    #[test]
    fn shapes_parse_as_services_x_endpoints() {
        let shape = parse_shape("5000x50").expect("valid shape");
        assert_eq!(shape, Shape { services: 5000, endpoints_per_service: 50 });
        for bad in ["5000", "x50", "5000x", "5k x50", "5000x50x2"] {
            assert!(parse_shape(bad).is_err(), "{bad}");
        }
    }
}
