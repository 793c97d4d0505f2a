//! `switchyard doctor`: will Switchyard work on this node, and is its agent healthy?

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use switchyard_doctor::{Finding, Options, Report, Verdict};
use switchyard_model::PortRange;

use super::output::{OutputArgs, Table};

/// Check this node before installing (kernel features, mounts, conflicting kube-proxy or Cilium
/// state, port ranges, API server) and an installed agent after: one line per check, ok / warn /
/// fail with what to do. Exits 1 when a check fails. Run as root, with the agent's flags.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// The agent's bpffs directory.
    #[arg(long, value_name = "PATH", default_value = "/sys/fs/bpf/switchyard")]
    bpf_dir: PathBuf,

    /// The agent's cgroup v2 directory (checked to be on cgroup v2).
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,

    /// Devices that receive traffic from outside the node (the agent's and the director's
    /// --devices): each must exist; native XDP support is reported.
    #[arg(long, value_name = "DEV[,DEV..]", value_delimiter = ',')]
    devices: Vec<String>,

    /// Check that the API server in this kubeconfig answers.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,

    /// The agent's --node-port-range.
    #[arg(long, value_name = "FIRST-LAST", default_value = "30000-32767")]
    node_port_range: PortRange,

    /// The agent's --snat-port-range; without it, the range the agent would choose (the
    /// widest gap of 1024-65535 outside --node-port-range and net.ipv4.ip_local_port_range) is
    /// reported, with why.
    #[arg(long, value_name = "FIRST-LAST")]
    snat_port_range: Option<PortRange>,

    /// The agent's --director-addresses: a node that decapsulates keeps --gue-port out of the
    /// SNAT ports it reports.
    #[arg(long, value_name = "IP[,IP..]", value_delimiter = ',')]
    director_addresses: Vec<std::net::IpAddr>,

    /// The agent's --gue-port.
    #[arg(long, value_name = "PORT", default_value_t = switchyard_bpf::director::GUE_PORT_DEFAULT)]
    gue_port: u16,

    /// The agent's --nodeport-mode (dsr: the node decapsulates its peers' GUE).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = super::agent::NodePortModeArg::Snat)]
    nodeport_mode: super::agent::NodePortModeArg,

    /// The agent's --api-socket (an agent answering there counts as running).
    #[arg(long, value_name = "PATH", default_value = "/run/switchyard/agent.sock")]
    api_socket: PathBuf,

    /// `-o json`: `{"findings": [{"check", "verdict", "detail", "remedy"}]}`.
    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) fn run(mut args: DoctorArgs) -> anyhow::Result<ExitCode> {
    args.devices.retain(|device| !device.trim().is_empty());
    let report = switchyard_doctor::examine(&Options {
        bpf_dir: args.bpf_dir,
        cgroup: args.cgroup,
        devices: args.devices,
        kubeconfig: args.kubeconfig,
        node_port_range: args.node_port_range,
        snat_port_range: args.snat_port_range,
        decap_port: (!args.director_addresses.is_empty()
            || args.nodeport_mode == super::agent::NodePortModeArg::Dsr)
            .then_some(args.gue_port),
        api_socket: args.api_socket,
    });
    args.output.print(&report, |_| table(&report))?;
    Ok(match report.worst() {
        Verdict::Fail => ExitCode::FAILURE,
        Verdict::Ok | Verdict::Warn => ExitCode::SUCCESS,
    })
}

/// `VERDICT CHECK DETAIL` (a table like every table), the remedy in a row of its own below a
/// finding that is not ok, and a summary line.
fn table(report: &Report) -> String {
    let mut table = Table::new(["VERDICT", "CHECK", "DETAIL"]);
    for Finding { check, verdict, detail, remedy } in &report.findings {
        table.row([verdict.as_str(), check.as_str(), detail.as_str()]);
        if let Some(remedy) = remedy.as_ref().filter(|_| *verdict != Verdict::Ok) {
            table.row([String::new(), String::new(), format!("-> {remedy}")]);
        }
    }
    let mut out = table.render();
    let (warnings, failures) = (report.count(Verdict::Warn), report.count(Verdict::Fail));
    out += &match failures {
        0 => format!("\n{warnings} warning(s), no failures: Switchyard can run on this node\n"),
        _ => format!(
            "\n{failures} failure(s), {warnings} warning(s): Switchyard cannot run on this node \
             until the failures are fixed\n"
        ),
    };
    out
}
