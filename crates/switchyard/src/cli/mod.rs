//! Command-line interface. Each subcommand lives in a module of its own.

mod about;
mod agent;
mod bgp;
mod controller;
mod demo;
mod demo_edge;
mod director;
mod director_monitor;
mod director_view;
mod doctor;
mod explain;
mod inspect;
mod ipam;
mod l2;
mod lab;
mod maglev;
mod monitor;
mod output;
mod services;
mod status;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Kubernetes service load balancing for bare-metal clusters, with an eBPF data plane.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version = about::version(), about, propagate_version = true)]
pub(crate) struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A multi-node cluster in network namespaces on this machine.
    Lab(lab::LabArgs),
    /// Build a Maglev table from a backend list and show its distribution.
    Maglev(maglev::MaglevArgs),
    Validate(validate::ValidateArgs),
    Services(services::ServicesArgs),
    /// What is programmed in the kernel: programs, frontends, backends, counters, map fill.
    Status(status::StatusArgs),
    /// For one flow: frontend, policy, candidate backends, the choice and the translation.
    Explain(explain::ExplainArgs),
    /// The per-packet path's conntrack entries: tuple, backend, SNAT, state, age.
    Conntrack(inspect::ConntrackArgs),
    /// The backends in the kernel, who uses them, and differences from a manifest directory.
    Backends(inspect::BackendsArgs),
    /// A live stream of decisions and drops from the programs (sampled; off unless running).
    Monitor(monitor::MonitorArgs),
    /// The node role: socket-level load balancing for a cgroup, per-packet on --devices.
    Agent(Box<agent::AgentArgs>),
    /// The agent's BGP sessions and, per peer, each address announced or not and why.
    Bgp(bgp::BgpArgs),
    /// L2 mode: which node answers ARP/NDP for each LoadBalancer IP, and this node's responder.
    L2(l2::L2Args),
    /// The director role: stateless Maglev load balancing of VIPs to nodes over XDP (GUE/IPIP).
    Director(director::DirectorArgs),
    /// The controller role: LoadBalancer addresses from IPPools, written to Service status.
    Controller(controller::ControllerArgs),
    /// LoadBalancer pools of a manifest directory: usage, who holds which address, who waits.
    Ipam(ipam::IpamArgs),
    /// A lab cluster with the node agent on every node, example Services and traffic (root).
    Demo(demo::DemoArgs),
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh or fish) on standard output.
    Completion(about::CompletionArgs),
    /// Write man pages (switchyard.1 and one per subcommand) into a directory.
    Man(about::ManArgs),
}

/// Sets up `tracing` once; the level comes from `RUST_LOG` (default `info`). Colour only on a
/// terminal (and not with `NO_COLOR`): `kubectl logs` and files get plain text.
pub(crate) fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Lab(args) => lab::run(args),
        Command::Maglev(args) => maglev::run(&args),
        Command::Validate(args) => validate::run(args),
        Command::Services(args) => services::run(args),
        Command::Status(args) => status::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Conntrack(args) => inspect::conntrack(&args),
        Command::Backends(args) => inspect::backends(&args),
        Command::Monitor(args) => monitor::run(&args),
        Command::Agent(args) => agent::run(*args),
        Command::Bgp(args) => bgp::run(&args),
        Command::L2(args) => l2::run(&args),
        Command::Director(args) => director::run(args),
        Command::Controller(args) => controller::run(args),
        Command::Ipam(args) => ipam::run(&args),
        Command::Demo(args) => demo::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Completion(args) => about::completion(&args),
        Command::Man(args) => about::man(&args),
    }
}
